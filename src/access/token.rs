//! Short-lived tokens: what a key hands to a browser or an agent. `tbt_<payload>.<signature>`,
//! the payload (base64url JSON) naming the key it came from, when it ends, and what it is limited
//! to; the signature an HMAC-SHA256 of it under the server's token secret. A token carries no
//! rights of its own: every use looks its key up again, so it never outlives a revoked key nor
//! does more than the key (role, tenant and limits are the key's).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const TOKEN_PREFIX: &str = "tbt_";

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The id of the key it was made from.
    pub kid: String,
    /// When it ends (Unix seconds).
    pub exp: i64,
    /// The one sandbox it may act on, when limited to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbx: Option<String>,
    /// Reads only (GET and HEAD).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ro: bool,
    /// The token's own id, by which it can be ended before its time (a sign-out).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed; ask POST /auth/token for a new one")]
    Malformed,
    #[error(
        "the token's signature does not match (it was altered, or the server's token secret changed); ask POST /auth/token for a new one"
    )]
    BadSignature,
    #[error("the token expired; ask POST /auth/token for a new one")]
    Expired,
    #[error("the token was ended (signed out); sign in again, or ask POST /auth/token for a new one")]
    Ended,
}

/// The secret tokens are signed with.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(…)")
    }
}

impl Signer {
    pub fn new(secret: Vec<u8>) -> Signer {
        Signer { secret }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        Hmac::<Sha256>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// The token of `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(TOKEN_PREFIX.as_bytes());
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{TOKEN_PREFIX}{payload}.{signature}")
    }

    /// The claims of `token` when it is one this server signed and it has not expired at `now`
    /// (Unix seconds). The signature is checked in constant time, before anything is decoded.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let body = token.strip_prefix(TOKEN_PREFIX).ok_or(TokenError::Malformed)?;
        let (payload, signature) = body.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(TOKEN_PREFIX.as_bytes());
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims { kid: "0123456789abcdef".into(), exp, sbx: Some("sbx_x".into()), ro: true, jti: "abc".into() }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let signer = Signer::new(b"secret".to_vec());
        let token = signer.sign(&claims(100));
        assert!(token.starts_with("tbt_"));
        assert_eq!(signer.verify(&token, 99), Ok(claims(100)));
        assert_eq!(signer.verify(&token, 100), Err(TokenError::Expired), "it ends at exp");
    }

    #[test]
    fn an_altered_token_or_another_secret_is_refused() {
        let signer = Signer::new(b"secret".to_vec());
        let token = signer.sign(&claims(100));
        assert_eq!(Signer::new(b"other".to_vec()).verify(&token, 0), Err(TokenError::BadSignature));
        // A payload that widens the claims (no sandbox, not read-only, later) under the old signature.
        let (_, signature) = token.split_once('.').unwrap();
        let widened = URL_SAFE_NO_PAD.encode(br#"{"kid":"0123456789abcdef","exp":99999999999}"#);
        assert_eq!(signer.verify(&format!("tbt_{widened}.{signature}"), 0), Err(TokenError::BadSignature));
        for bad in ["", "tbt_", "tbt_abc", "tbx_a.b", "tbt_a.!!"] {
            assert!(signer.verify(bad, 0).is_err(), "{bad:?}");
        }
    }
}
