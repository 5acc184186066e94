//! Traces: the record of every run, kept in SQLite so people and tools can see what ran,
//! what it printed, what the policy caught and how long each step took.
//!
//! `store` owns the database; this file holds what is written to it and read from it. Ids,
//! events, kinds, statuses and the typed records are the domain's (`tracebox_model`).

mod store;

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracebox_model::sandbox::SandboxOp;
use tracebox_model::tool::ToolName;
use tracebox_model::{
    Language, Source, Status, TraceEvent, TraceId, TraceInput, TraceKind, TraceOutput, TraceStatus, now_us,
};

pub use store::{Doomed, FileRecord, Removed, Retention, StoreError, Swept, TraceStore};

/// A trace as it starts: written at once so it shows as running.
#[derive(Debug, Clone)]
pub struct NewTrace {
    pub id: TraceId,
    pub parent_id: Option<TraceId>,
    pub source: Source,
    pub language: Option<Language>,
    /// The tracebox start that runs it, so a later start can tell it was left unfinished.
    pub boot_id: String,
    pub started_at_us: i64,
    /// What it records as it starts; its kind is the input's.
    pub input: TraceInput,
    /// Whose it is (None on an open server); a child with none is its parent's.
    pub tenant: Option<String>,
}

/// A trace as it ends; written durably before the run's result is returned.
#[derive(Debug, Clone)]
pub struct FinishedTrace {
    pub id: TraceId,
    pub status: Status,
    pub ended_at_us: i64,
    pub exit_code: Option<i64>,
    pub output: TraceOutput,
    pub events: Vec<TraceEvent>,
}

/// One row of the trace list (read back by the MCP tools from the API's JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceSummary {
    pub id: TraceId,
    pub parent_id: Option<TraceId>,
    pub kind: TraceKind,
    pub status: TraceStatus,
    pub source: String,
    pub language: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_ms: Option<f64>,
    pub exit_code: Option<i64>,
    /// The first line of the code, shortened: what ran, at a glance.
    pub preview: String,
    /// Whose it is (the tenant of the key that made it); absent for an open server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// A child trace with its records, as a parent's listing of one kind reads it.
#[derive(Debug, Clone)]
pub struct ChildRecord {
    pub id: TraceId,
    pub status: TraceStatus,
    /// None while it runs.
    pub duration_ms: Option<f64>,
    pub input: Value,
    pub output: Value,
}

/// One trace with everything recorded about it.
#[derive(Debug, Clone, Serialize)]
pub struct TraceDetail {
    #[serde(flatten)]
    pub summary: TraceSummary,
    pub input: Value,
    pub output: Value,
    pub events: Vec<EventView>,
    /// A window of its children, in the order they started: [`ChildWindow::FIRST`] unless
    /// asked for another.
    pub children: Vec<TraceSummary>,
    /// How many children it has in all, in or out of the window.
    pub children_total: u64,
}

/// Which of a trace's children to read with it: `limit` of them from the `from`th (0-based), in
/// the order they started. A batch or a sandbox may have a great many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildWindow {
    pub from: u64,
    pub limit: u64,
}

impl ChildWindow {
    /// The most children one read gives.
    pub const PAGE: u64 = 1_000;
    /// The first page: what `GET /trace/{id}` gives unless asked for another.
    pub const FIRST: ChildWindow = ChildWindow { from: 0, limit: ChildWindow::PAGE };
    /// None of them (they are still counted).
    pub const NONE: ChildWindow = ChildWindow { from: 0, limit: 0 };

    /// The page from the `from`th child.
    pub fn from(from: u64) -> ChildWindow {
        ChildWindow { from, limit: ChildWindow::PAGE }
    }
}

/// A window of a sandbox's steps (its children), each cut to what a page shows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPage {
    pub steps: Vec<StepExcerpt>,
    /// The place of the first of `steps` among all (0-based).
    pub from: u64,
    /// Steps in all, in or out of the window.
    pub total: u64,
}

/// One step of a sandbox (a command, a code cell, an operation, a tool call, a replay), its
/// text cut by the store's query so that a page of steps never loads a whole output.
#[derive(Debug, Clone, PartialEq)]
pub struct StepExcerpt {
    pub id: TraceId,
    pub kind: TraceKind,
    pub status: TraceStatus,
    /// From the sandbox's start to the step's.
    pub offset_us: i64,
    /// None while it runs.
    pub duration_us: Option<i64>,
    pub exit_code: Option<i64>,
    /// A command's command line or a cell's code.
    pub source: Option<Excerpt>,
    /// A tool call: which tool, with what.
    pub call: Option<ToolCallExcerpt>,
    pub stdout: Option<Excerpt>,
    pub stderr: Option<Excerpt>,
    /// A tool call's output: stdout and stderr as one stream, a file's lines, a search's matches.
    pub output: Option<Excerpt>,
    /// The change a `file_write` tool call made, as a unified diff.
    pub diff: Option<Excerpt>,
    /// A cell's last expression's value, as the kernel wrote it.
    pub result: Option<Excerpt>,
    /// What a cell raised: its name and value, and the end of its traceback.
    pub error_name: Option<Excerpt>,
    pub error_value: Option<Excerpt>,
    pub traceback: Option<Excerpt>,
    /// Why a command or cell ended as it did, or why an operation or a tool call failed.
    pub message: Option<Excerpt>,
    /// An operation's kind (`read`, `write`, `snapshot`, …).
    pub op: Option<SandboxOp>,
    pub path: Option<Excerpt>,
    /// The snapshot a reset went back to, or a snapshot's label.
    pub snapshot: Option<Excerpt>,
    /// Bytes an operation moved.
    pub bytes: Option<u64>,
    /// The snapshot an operation made.
    pub snapshot_id: Option<String>,
    /// A replay: how many steps of its trajectory it replays.
    pub replayed_steps: Option<u64>,
    /// A replay that ended: the first step whose output differed (−1 when none did).
    pub divergence_step: Option<i64>,
}

/// A tool call as a page of steps shows it: its params with the long ones (a shell command, a
/// file's content) cut by the store's query to their start.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallExcerpt {
    pub tool: ToolName,
    /// The params as the call's trace keeps them, those cut shortened.
    pub params: Value,
    /// Bytes cut from them.
    pub omitted_bytes: u64,
}

/// Part of a longer text: its start (or for a traceback its end), and the size of the whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    pub text: String,
    /// Bytes (UTF-8) of the whole text.
    pub bytes: u64,
}

impl Excerpt {
    /// Is `text` only part of the whole?
    pub fn is_cut(&self) -> bool {
        (self.text.len() as u64) < self.bytes
    }
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
    pub kind: Option<TraceKind>,
    pub status: Option<TraceStatus>,
    pub language: Option<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    /// Only the children of this trace (the items of a batch).
    pub parent: Option<TraceId>,
    /// Only traces whose code or output contains this text.
    pub text: Option<String>,
    /// Only traces older than this one (the previous page's `next_cursor`).
    pub before: Option<TraceId>,
    /// Only the traces of this tenant (a user key's own; an admin's choice).
    pub tenant: Option<String>,
    pub limit: usize,
}

/// A page of the trace list.
#[derive(Debug, Clone, Serialize)]
pub struct TracePage {
    pub traces: Vec<TraceSummary>,
    /// Pass as `cursor` to get the next page; null on the last one.
    pub next_cursor: Option<TraceId>,
}

/// The work of a trace panicked; the trace was ended as `internal_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked {
    /// What the panic said.
    pub message: String,
}

/// Await `work`, the work of trace `id`; should it panic, end the trace at once as
/// `internal_error`, its output `failed(message)` and its one event `panicked`, and return the
/// panic's message. A task that panics is not the end of the server, so it must not leave its
/// trace `running` until the next start finds it: a client waiting for it, the trace page and
/// retention (which keeps running traces) would all wait with it.
///
/// A trace that `work` ended itself before panicking keeps its own ending (a trace ends once).
pub async fn ending_on_panic<T>(
    store: &TraceStore,
    id: TraceId,
    work: impl Future<Output = T>,
    failed: impl FnOnce(&str) -> TraceOutput,
) -> Result<T, Panicked> {
    let panic = match AssertUnwindSafe(work).catch_unwind().await {
        Ok(value) => return Ok(value),
        Err(panic) => panic,
    };
    let message = panic_message(&*panic);
    tracing::error!(trace_id = %id, %message, "the work of a trace panicked");
    let at_us = now_us();
    let trace = FinishedTrace {
        id,
        status: Status::InternalError,
        ended_at_us: at_us,
        exit_code: None,
        output: failed(&message),
        events: vec![TraceEvent { at_us, name: "panicked".into(), detail: json!({ "message": message }) }],
    };
    if let Err(error) = store.finish(trace).await {
        tracing::warn!(trace_id = %id, %error, "a trace whose work panicked could not be ended (it had ended, or never began)");
    }
    Err(Panicked { message })
}

/// What a panic said, when it said it with a string.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
