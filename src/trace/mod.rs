//! Traces: the record of every run, kept in SQLite so people and tools can see what ran,
//! what it printed, what the policy caught and how long each step took.
//!
//! `store` owns the database; this file holds the model that the rest of tracebox speaks.

mod store;

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

pub use store::{FileRecord, StoreError, TraceStore};

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

/// A trace as it starts: written at once so it shows as running.
#[derive(Debug, Clone)]
pub struct NewTrace {
    pub id: TraceId,
    pub parent_id: Option<TraceId>,
    pub kind: &'static str,
    pub source: &'static str,
    pub language: Option<&'static str>,
    /// The tracebox start that runs it, so a later start can tell it was left unfinished.
    pub boot_id: String,
    pub started_at_us: i64,
    pub input: Value,
}

/// A trace as it ends; written durably before the run's result is returned.
#[derive(Debug, Clone)]
pub struct FinishedTrace {
    pub id: TraceId,
    pub status: &'static str,
    pub ended_at_us: i64,
    pub exit_code: Option<i64>,
    pub output: Value,
    pub events: Vec<TraceEvent>,
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

/// One row of the trace list.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub id: TraceId,
    pub parent_id: Option<TraceId>,
    pub kind: String,
    pub status: String,
    pub source: String,
    pub language: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_ms: Option<f64>,
    pub exit_code: Option<i64>,
    /// The first line of the code, shortened: what ran, at a glance.
    pub preview: String,
}

/// One trace with everything recorded about it.
#[derive(Debug, Clone, Serialize)]
pub struct TraceDetail {
    #[serde(flatten)]
    pub summary: TraceSummary,
    pub input: Value,
    pub output: Value,
    pub events: Vec<EventView>,
    pub children: Vec<TraceSummary>,
}

/// An event as shown: its offset from the trace's start.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub offset_ms: f64,
    pub name: String,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// Which traces to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub language: Option<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    /// Only the children of this trace (the items of a batch).
    pub parent: Option<TraceId>,
    /// Only traces whose code or output contains this text.
    pub text: Option<String>,
    /// Only traces older than this one (the previous page's `next_cursor`).
    pub before: Option<TraceId>,
    pub limit: usize,
}

/// A page of the trace list.
#[derive(Debug, Clone, Serialize)]
pub struct TracePage {
    pub traces: Vec<TraceSummary>,
    /// Pass as `cursor` to get the next page; null on the last one.
    pub next_cursor: Option<TraceId>,
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
}
