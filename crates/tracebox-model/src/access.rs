//! Access in the domain: API keys, what each may do, and whose things are whose. A key is a
//! tenant's: everything its requests make (traces, sandboxes, files) is that tenant's, and only
//! that tenant's keys (and admin keys) see it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a key may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Its own tenant's things only.
    User,
    /// Every tenant's things (and `/metrics`).
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = crate::UnknownName;

    fn from_str(text: &str) -> Result<Role, crate::UnknownName> {
        match text {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(crate::UnknownName { what: "role (user or admin)", name: other.to_owned() }),
        }
    }
}

/// A key's limits; None is no limit of that kind (the server's own limits still hold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Requests a second, on average (a burst of as many is allowed).
    pub rate_per_sec: Option<f64>,
    /// Sandboxes the tenant may hold at once (running or paused), counted over its keys.
    pub max_sandboxes: Option<u64>,
    /// Runs (one-shot runs, sandbox steps, Claude calls, batches) the key may have going at once.
    pub max_concurrent_runs: Option<u64>,
    /// Bytes the tenant's uploaded files may hold together.
    pub upload_quota_bytes: Option<u64>,
}

/// An API key as the store keeps it: never the secret, only its sha256.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// The public part of the key, which a request's key names.
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub role: Role,
    pub secret_sha256: [u8; 32],
    pub created_at_us: i64,
    pub revoked_at_us: Option<i64>,
    pub limits: KeyLimits,
}

/// The longest key name and tenant: they name directories and metric labels.
pub const MAX_NAME_CHARS: usize = 64;

/// Is `name` a key name or tenant: 1 to 64 ASCII letters, digits, `-` or `_`? (It becomes a
/// directory of the uploads and a label of `/metrics`, so nothing else is allowed.)
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_plain_words() {
        assert!(is_valid_name("ci-runner_2"));
        assert!(is_valid_name(&"a".repeat(MAX_NAME_CHARS)));
        assert!(!is_valid_name(&"a".repeat(MAX_NAME_CHARS + 1)));
        for bad in ["", "a b", "../x", "é", "a/b", "a.b"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn roles_parse_as_written() {
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert_eq!("user".parse::<Role>(), Ok(Role::User));
        assert!("root".parse::<Role>().unwrap_err().to_string().contains("user or admin"));
    }
}
