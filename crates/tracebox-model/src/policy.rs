//! What the security policy found: input rules that matched, secrets that were redacted. The
//! rules themselves and the matching live in tracebox's `policy` module.

use serde::{Deserialize, Serialize};

/// What an input rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Refuse the run.
    Block,
    /// Run it and record the hit.
    Warn,
}

/// A rule that matched, where, and what it means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyHit {
    pub rule: String,
    pub action: Action,
    pub reason: String,
    /// `code`, `stdout` or `stderr`.
    pub source: String,
    /// 1-based line of the first match.
    pub line: usize,
}

/// How many matches of one redaction rule were replaced in one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redaction {
    pub rule: String,
    pub stream: String,
    pub count: usize,
}
