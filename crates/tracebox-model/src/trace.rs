//! What every trace has: an id that sorts by time, a kind, a status, and ordered events. The
//! typed input and output of each kind are in [`crate::record`].

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Status;

/// A trace id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TraceId(Uuid);

impl TraceId {
    /// A fresh id, later than every id made before it.
    pub fn new() -> TraceId {
        TraceId(Uuid::now_v7())
    }
}

impl Default for TraceId {
    fn default() -> Self {
        TraceId::new()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for TraceId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(TraceId)
    }
}

/// Microseconds since the Unix epoch: the store's clock.
pub fn now_us() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
}

/// RFC 3339 text of a store timestamp, for people and JSON.
pub fn format_us(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// One step of a trace, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub at_us: i64,
    pub name: String,
    #[serde(skip_serializing_if = "Value::is_null", default)]
    pub detail: Value,
}

/// Collects the events of one trace as it runs, stamped with the wall clock.
#[derive(Debug)]
pub struct EventLog {
    started_at_us: i64,
    started: Instant,
    events: Vec<TraceEvent>,
}

impl EventLog {
    /// Start the clock of a trace.
    pub fn start() -> EventLog {
        EventLog { started_at_us: now_us(), started: Instant::now(), events: Vec::new() }
    }

    /// When the trace started, in Unix microseconds.
    pub fn started_at_us(&self) -> i64 {
        self.started_at_us
    }

    /// The wall clock now, measured on a monotonic clock from the start.
    pub fn now_us(&self) -> i64 {
        self.started_at_us + self.started.elapsed().as_micros() as i64
    }

    /// Note that `name` happened now.
    pub fn record(&mut self, name: &str, detail: Value) {
        let at_us = self.now_us();
        self.events.push(TraceEvent { at_us, name: name.to_owned(), detail });
    }

    /// The events, in the order they happened.
    pub fn into_events(self) -> Vec<TraceEvent> {
        self.events
    }
}

/// What a trace records. Every kind has one typed input and output ([`crate::record`]); a new
/// kind added here fails to compile until the record and the trace page handle it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceKind {
    /// One program run (`/execute`, the WebSocket, the CLI, a batch item, a reply's code).
    Execution,
    /// One call of the Claude Messages API, with the runs of its reply's code as children.
    Claude,
    /// One `POST /upload`.
    Upload,
    /// One download of an upload or an artifact.
    Download,
    /// One prompt set, with its items as children.
    Batch,
    /// A stateful sandbox, with its steps as children; running while the sandbox lives.
    Sandbox,
    /// A command in a sandbox.
    Command,
    /// A code cell in a sandbox's kernel.
    Cell,
    /// An operation on a sandbox's files, or on the sandbox (pause, resume, snapshot, reset).
    SandboxOp,
    /// An agent's tool call in a sandbox: a step of its trajectory, with the command or file
    /// operation it made as its child.
    Tool,
    /// A replay of a trajectory, with its tool calls as children.
    Replay,
    /// Tasks placed over the nodes, each a child run.
    Schedule,
}

impl TraceKind {
    pub const ALL: [TraceKind; 12] = [
        TraceKind::Execution,
        TraceKind::Claude,
        TraceKind::Upload,
        TraceKind::Download,
        TraceKind::Batch,
        TraceKind::Sandbox,
        TraceKind::Command,
        TraceKind::Cell,
        TraceKind::SandboxOp,
        TraceKind::Tool,
        TraceKind::Replay,
        TraceKind::Schedule,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceKind::Execution => "execution",
            TraceKind::Claude => "claude",
            TraceKind::Upload => "upload",
            TraceKind::Download => "download",
            TraceKind::Batch => "batch",
            TraceKind::Sandbox => "sandbox",
            TraceKind::Command => "command",
            TraceKind::Cell => "cell",
            TraceKind::SandboxOp => "sandbox_op",
            TraceKind::Tool => "tool",
            TraceKind::Replay => "replay",
            TraceKind::Schedule => "schedule",
        }
    }
}

impl fmt::Display for TraceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no trace kind or status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}`")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
}

impl FromStr for TraceKind {
    type Err = UnknownName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        TraceKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownName { what: "trace kind", name: name.to_owned() })
    }
}

/// Where a trace stands: running, or ended as a run ends (other kinds use `success`, `error`
/// and `internal_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "StatusName", into = "StatusName")]
pub enum TraceStatus {
    Running,
    Ended(Status),
}

impl TraceStatus {
    pub const ALL: [TraceStatus; 9] = [
        TraceStatus::Running,
        TraceStatus::Ended(Status::Success),
        TraceStatus::Ended(Status::Error),
        TraceStatus::Ended(Status::Timeout),
        TraceStatus::Ended(Status::Oom),
        TraceStatus::Ended(Status::Killed),
        TraceStatus::Ended(Status::Blocked),
        TraceStatus::Ended(Status::OutputLimit),
        TraceStatus::Ended(Status::InternalError),
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceStatus::Running => "running",
            TraceStatus::Ended(status) => status.as_str(),
        }
    }
}

impl fmt::Display for TraceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TraceStatus {
    type Err = UnknownName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        TraceStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
            .ok_or_else(|| UnknownName { what: "trace status", name: name.to_owned() })
    }
}

impl From<Status> for TraceStatus {
    fn from(status: Status) -> Self {
        TraceStatus::Ended(status)
    }
}

/// A status as its name, for serde (an unknown one, from a newer tracebox, reads as an
/// internal error rather than failing the whole trace).
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct StatusName(String);

impl From<StatusName> for TraceStatus {
    fn from(name: StatusName) -> Self {
        name.0.parse().unwrap_or(TraceStatus::Ended(Status::InternalError))
    }
}

impl From<TraceStatus> for StatusName {
    fn from(status: TraceStatus) -> Self {
        StatusName(status.as_str().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_sort_by_creation_time() {
        let first = TraceId::new();
        let second = TraceId::new();
        assert!(first.to_string() < second.to_string());
        assert_eq!(first.to_string().parse::<TraceId>().unwrap(), first);
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(format_us(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_us(1_500_000), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn kinds_and_statuses_round_trip_through_their_names() {
        for kind in TraceKind::ALL {
            assert_eq!(kind.as_str().parse::<TraceKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for status in TraceStatus::ALL {
            assert_eq!(status.as_str().parse::<TraceStatus>(), Ok(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(serde_json::from_value::<TraceStatus>(status.as_str().into()).unwrap(), status);
        }
        assert!("exploded".parse::<TraceStatus>().is_err());
        for status in Status::ALL {
            assert!(TraceStatus::ALL.contains(&status.into()), "{status:?} is listed");
        }
    }
}
