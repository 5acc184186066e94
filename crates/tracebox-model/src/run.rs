//! One run: what a door asks the pipeline to run, and what comes back.
//!
//! These types are transport-free; each door (HTTP, CLI, WebSocket…) converts its own wire
//! format into an [`ExecutionRequest`] and an [`Execution`] back into its protocol.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::CellOutcome;
use crate::{
    Action, Artifact, HandlerCall, HandlerOutcome, Language, NodeAttempt, Omitted, Placement, PolicyHit, Redaction,
    TraceId,
};

/// Which door a run came through; recorded on its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Http,
    Cli,
    #[serde(rename = "websocket")]
    WebSocket,
    /// A prompt set run by `tracebox batch` (in-process, or sent to `POST /batch`).
    Batch,
}

impl Source {
    /// The name stored in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Cli => "cli",
            Source::WebSocket => "websocket",
            Source::Batch => "batch",
        }
    }
}

/// What a run may share with other runs (see docs/security.md, "Isolation: fresh or recycle").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A container of its own, used once: nothing shared.
    Fresh,
    /// A container that serves several runs of one tenant, wiped between them.
    Recycle,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Fresh => "fresh",
            Isolation::Recycle => "recycle",
        }
    }
}

/// A name that is no isolation mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown isolation `{0}`; use fresh or recycle")]
pub struct UnknownIsolation(pub String);

impl std::str::FromStr for Isolation {
    type Err = UnknownIsolation;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "fresh" => Ok(Isolation::Fresh),
            "recycle" => Ok(Isolation::Recycle),
            _ => Err(UnknownIsolation(name.to_owned())),
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

/// One program to run, checked, as every door hands it to the pipeline.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    pub language: Language,
    pub code: String,
    pub stdin: String,
    pub env: BTreeMap<String, String>,
    pub limits: RunLimits,
    pub source: Source,
    /// Uploaded files the program reads, mounted read-only under `/workspace/`.
    pub files: Vec<InputFile>,
    /// The trace this run belongs to (the Claude call whose code it is, a batch).
    pub parent: Option<TraceId>,
    /// Whether its container may serve other runs of its tenant.
    pub isolation: Isolation,
    /// Whose recycled containers it may use (recycle only).
    pub tenant: Option<String>,
    /// Whose the run is: the tenant of the API key that asked (None on an open server). Its trace
    /// is theirs, and a recycled container serves only their runs.
    pub owner: Option<String>,
    /// Handler mode: call this function of the code with an event, and return what it returns.
    pub handler: Option<HandlerCall>,
    /// Which nodes it may run on, and how one is picked.
    pub placement: Placement,
}

/// An uploaded file given to a run: `/workspace/<name>` in the container, read-only.
#[derive(Debug, Clone, PartialEq)]
pub struct InputFile {
    pub name: String,
    /// Absolute path of the file on the engine's host.
    pub host_path: std::path::PathBuf,
    pub size: u64,
}

/// How a run ended. A bad result of user code is data, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Stopped by its client (a `kill` frame, a closed WebSocket).
    Killed,
    /// tracebox itself failed (Docker went away, …); the trace says why.
    InternalError,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Success,
        Status::Error,
        Status::Timeout,
        Status::Oom,
        Status::Blocked,
        Status::OutputLimit,
        Status::Killed,
        Status::InternalError,
    ];

    /// The name clients and traces see.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Oom => "oom",
            Status::Blocked => "blocked",
            Status::OutputLimit => "output_limit",
            Status::Killed => "killed",
            Status::InternalError => "internal_error",
        }
    }
}

/// The result of one run through the pipeline, already redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Files the program left in `/workspace/out/`, stored with the trace.
    pub artifacts: Vec<Artifact>,
    /// Files of `/workspace/out/` that did not come back, and why.
    pub artifacts_omitted: Vec<Omitted>,
    /// A code cell's result or error (the runs of a sandbox's kernel only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<CellOutcome>,
    /// Handler mode: what the handler returned, or its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<HandlerOutcome>,
    /// The node (Docker engine) it ran on; None when it never reached one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Placements that failed before its program started, in order (it then ran elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<NodeAttempt>,
}

/// Which output stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// What a live run tells its door while it runs; how it ended comes after, as an [`Execution`].
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The program is running in its container.
    Started,
    /// Output, decoded and already redacted, in the order the program wrote it.
    Output { stream: OutputStream, text: String },
}

impl Execution {
    /// Why it did not succeed, in a few words: the pipeline's message (a timeout, a kill…),
    /// else its exit code, else its status; None when it succeeded.
    pub fn why_not_success(&self) -> Option<String> {
        if self.status == Status::Success {
            return None;
        }
        Some(match (&self.message, self.exit_code) {
            (Some(message), _) => message.clone(),
            (None, Some(code)) => format!("exit code {code}"),
            (None, None) => self.status.as_str().to_owned(),
        })
    }

    /// A run that ended as `status` with nothing to show: refused, killed while queued, failed.
    pub fn empty(trace_id: TraceId, status: Status) -> Execution {
        Execution {
            trace_id,
            status,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            duration_ms: 0,
            timed_out: false,
            oom_killed: false,
            truncated: false,
            invalid_utf8: false,
            redactions: Vec::new(),
            policy_hits: Vec::new(),
            message: None,
            artifacts: Vec::new(),
            artifacts_omitted: Vec::new(),
            cell: None,
            handler: None,
            node: None,
            attempts: Vec::new(),
        }
    }

    /// The rules that refused the code (only blocking rules, not warnings).
    pub fn blocking_rules(&self) -> Vec<&str> {
        let blocking = self.policy_hits.iter().filter(|hit| hit.action == Action::Block);
        blocking.map(|hit| hit.rule.as_str()).collect()
    }
}

/// Serialise a `Duration` as (fractional) seconds, the unit users write limits in.
mod duration_secs {
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
