//! An API key as a client holds it: `tbx_<id>_<secret>`, where the id (16 hex digits) is public
//! and names the key in the store, and the secret (32 random bytes, base64url) is known only to
//! the client: the store keeps its sha256, compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every key starts so: recognisable in a config file, a log line or a secret scanner.
pub const KEY_PREFIX: &str = "tbx_";
const ID_HEX: usize = 16;
const SECRET_BYTES: usize = 32;

/// A key parsed from a request: which key it names, and the secret it carries.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub id: String,
    secret: String,
}

/// The secret is never printed.
impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PresentedKey({}, …)", self.id)
    }
}

impl PresentedKey {
    /// `text` as a key, or None when it does not have a key's shape.
    pub fn parse(text: &str) -> Option<PresentedKey> {
        let rest = text.strip_prefix(KEY_PREFIX)?;
        let (id, secret) = (rest.get(..ID_HEX)?, rest.get(ID_HEX..)?.strip_prefix('_')?);
        let id_ok = id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let secret_ok = !secret.is_empty() && secret.len() <= 128;
        (id_ok && secret_ok).then(|| PresentedKey { id: id.to_owned(), secret: secret.to_owned() })
    }

    /// Does the secret match `digest` (the stored sha256)? In constant time.
    pub fn matches(&self, digest: &[u8; 32]) -> bool {
        digest_of(&self.secret).ct_eq(digest).into()
    }
}

/// A new key: the text to hand the user once, its id, and the digest to store.
pub struct NewKey {
    pub text: String,
    pub id: String,
    pub digest: [u8; 32],
}

/// Make a key from the system's random source.
pub fn generate() -> Result<NewKey, getrandom::Error> {
    let mut id = [0u8; ID_HEX / 2];
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret = URL_SAFE_NO_PAD.encode(secret);
    Ok(NewKey { text: format!("{KEY_PREFIX}{id}_{secret}"), digest: digest_of(&secret), id })
}

fn digest_of(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_parses_back_and_matches_only_its_own_digest() {
        let key = generate().unwrap();
        assert!(key.text.starts_with("tbx_") && key.text.len() > 60, "{}", key.text);
        let presented = PresentedKey::parse(&key.text).unwrap();
        assert_eq!(presented.id, key.id);
        assert!(presented.matches(&key.digest));
        assert!(!presented.matches(&generate().unwrap().digest));
        assert!(!format!("{presented:?}").contains(&key.text[21..]), "Debug hides the secret");
    }

    #[test]
    fn what_is_not_a_key_does_not_parse() {
        let key = generate().unwrap().text;
        for bad in [
            "",
            "tbx_",
            "tbx_0123",
            &key[4..],
            &key.replace("tbx_", "tbt_"),
            &format!("tbx_ABCDEF0123456789{}", &key[20..]),
        ] {
            assert!(PresentedKey::parse(bad).is_none(), "{bad:?}");
        }
        assert!(PresentedKey::parse(&format!("{}_", &key[..20])).is_none(), "an empty secret");
    }
}
