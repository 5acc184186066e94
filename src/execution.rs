//! The execution domain: what a door asks the pipeline to run, and what comes back.
//!
//! These types are transport-free; each door (HTTP, CLI, WebSocket…) converts its own wire
//! format into an [`ExecutionRequest`] and an [`Execution`] back into its protocol.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::{PolicyHit, Redaction};
use crate::trace::TraceId;

/// A language the sandbox image can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Node,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Python, Language::Node];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Node => "node",
        }
    }

    /// Guess the language of a file from its extension (for `tracebox run FILE`).
    pub fn from_path(path: &std::path::Path) -> Option<Language> {
        match path.extension()?.to_str()? {
            "py" => Some(Language::Python),
            "js" | "mjs" | "cjs" => Some(Language::Node),
            _ => None,
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accepted spellings, as listed in error messages.
pub const LANGUAGE_NAMES: &str = "python (or py, python3), node (or javascript, js, nodejs)";

impl FromStr for Language {
    type Err = UnknownLanguage;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "python" | "py" | "python3" => Ok(Language::Python),
            "node" | "javascript" | "js" | "nodejs" => Ok(Language::Node),
            _ => Err(UnknownLanguage(name.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown language `{0}`; use one of: {LANGUAGE_NAMES}")]
pub struct UnknownLanguage(pub String);

/// Which door a run came through; recorded on its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Http,
    Cli,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Cli => "cli",
        }
    }
}

/// The per-run limits after the request's values were checked against the server's bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLimits {
    /// Wall-clock limit; the container is killed when it passes.
    #[serde(with = "duration_secs")]
    pub timeout: Duration,
    /// Memory limit of the container (swap is set equal, so none is usable on top).
    pub memory_bytes: u64,
    /// CPU quota, in CPUs.
    pub cpus: f64,
    /// Maximum number of processes and threads inside the container.
    pub pids: i64,
    /// Combined stdout + stderr bytes after which the run is stopped.
    pub output_bytes: u64,
}

/// One program to run, as every door hands it to the pipeline.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    pub language: Language,
    pub code: String,
    pub stdin: String,
    pub env: BTreeMap<String, String>,
    pub limits: RunLimits,
    pub source: Source,
}

/// How a run ended. A bad result of user code is data, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exit code 0.
    Success,
    /// Non-zero exit code.
    Error,
    /// Killed at its wall-clock limit.
    Timeout,
    /// Killed by the kernel for passing its memory limit.
    Oom,
    /// Refused by the input policy; never ran.
    Blocked,
    /// Stopped for writing more than the output limit.
    OutputLimit,
    /// tracebox itself failed (Docker went away, …); the trace says why.
    InternalError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Oom => "oom",
            Status::Blocked => "blocked",
            Status::OutputLimit => "output_limit",
            Status::InternalError => "internal_error",
        }
    }
}

/// The result of one run through the pipeline, already redacted.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    pub trace_id: TraceId,
    pub status: Status,
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub truncated: bool,
    /// Output bytes that were not valid UTF-8 and were replaced by U+FFFD.
    pub invalid_utf8: bool,
    pub redactions: Vec<Redaction>,
    /// Input rules that matched (blocking ones when `status` is `blocked`, warnings otherwise).
    pub policy_hits: Vec<PolicyHit>,
    /// Why the run ended the way it did, in words, when it is not a plain exit.
    pub message: Option<String>,
}

/// Serialise a `Duration` as (fractional) seconds, the unit users write limits in.
pub mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_alias_names_a_language() {
        for alias in ["python", "py", "python3", "PYTHON", " Py "] {
            assert_eq!(
                alias.parse::<Language>().unwrap(),
                Language::Python,
                "{alias}"
            );
        }
        for alias in ["node", "javascript", "js", "nodejs", "JS"] {
            assert_eq!(
                alias.parse::<Language>().unwrap(),
                Language::Node,
                "{alias}"
            );
        }
    }

    #[test]
    fn an_unknown_language_error_lists_the_accepted_names() {
        let error = "ruby".parse::<Language>().unwrap_err().to_string();
        assert!(error.contains("`ruby`") && error.contains("python") && error.contains("node"));
    }

    #[test]
    fn file_extensions_pick_the_language() {
        use std::path::Path;
        assert_eq!(
            Language::from_path(Path::new("a/b.py")),
            Some(Language::Python)
        );
        assert_eq!(
            Language::from_path(Path::new("x.mjs")),
            Some(Language::Node)
        );
        assert_eq!(Language::from_path(Path::new("x.rb")), None);
        assert_eq!(Language::from_path(Path::new("Makefile")), None);
    }
}
