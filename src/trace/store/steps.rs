//! A sandbox's steps as its page lists them: a window of its children in the order they began,
//! each cut to excerpts by SQLite (a command or code, a tool call's params, the start of each
//! output, the end of a traceback), so that a page of steps never loads a whole output however
//! long the sandbox ran.

use std::sync::LazyLock;

use rusqlite::types::FromSql;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use tracebox_model::TraceId;

use super::StoreError;
use super::queries::{CHILD_IDS, count_children, parse_name, window_values};
use crate::trace::{ChildWindow, Excerpt, StepExcerpt, StepPage, ToolCallExcerpt};

/// What a page of steps shows of each, in characters: the command or code (and a tool call's
/// shell command or file content), each output stream (its start), a cell's result and error
/// value, the end of its traceback; a name, a path or a message.
pub(super) const STEP_SOURCE_CHARS: usize = 4_000;
pub(super) const STEP_OUTPUT_CHARS: usize = 2_000;
pub(super) const STEP_LINE_CHARS: usize = 500;

/// The params of a tool call that may be long, cut to [`STEP_SOURCE_CHARS`] each.
const LONG_PARAMS: [&str; 2] = ["command", "content"];

/// `expr`'s first `chars` characters and its size in bytes: the two columns of an [`Excerpt`].
fn head(expr: &str, chars: usize) -> String {
    format!("substr({expr}, 1, {chars}), octet_length({expr})")
}

/// `expr`'s last `chars` characters and its size in bytes.
fn tail(expr: &str, chars: usize) -> String {
    format!("substr({expr}, -{chars}), octet_length({expr})")
}

fn input(path: &str) -> String {
    format!("json_extract(input, '$.{path}')")
}

fn output(path: &str) -> String {
    format!("json_extract(output, '$.{path}')")
}

/// A tool call's params with its long ones cut, and the bytes cut from them: two columns.
fn tool_params() -> String {
    let cuts: Vec<String> = LONG_PARAMS
        .iter()
        .map(|name| {
            let param = input(&format!("params.{name}"));
            format!("'$.{name}', substr({param}, 1, {STEP_SOURCE_CHARS})")
        })
        .collect();
    let omitted: Vec<String> = LONG_PARAMS
        .iter()
        .map(|name| {
            let param = input(&format!("params.{name}"));
            format!("coalesce(octet_length({param}) - octet_length(substr({param}, 1, {STEP_SOURCE_CHARS})), 0)")
        })
        .collect();
    format!("json_replace({}, {}), {}", input("params"), cuts.join(", "), omitted.join(" + "))
}

/// The query of a page of steps: `?1` the sandbox's trace, `?2` the limit, `?3` the offset.
/// SQLite reads each step's JSON and hands back only the excerpts ([`step`] reads them in this
/// order).
pub(super) static STEPS: LazyLock<String> = LazyLock::new(|| {
    let replay = |expr: String| format!("CASE kind WHEN 'replay' THEN {expr} END");
    // An operation's error is an object with a message; a tool call's is the message itself.
    let message = format!(
        "coalesce({}, {}, CASE json_type(output, '$.error') WHEN 'text' THEN {} END)",
        output("message"),
        output("error.message"),
        output("error")
    );
    let columns = [
        "id, kind, status, started_at_us - (SELECT started_at_us FROM traces WHERE id = ?1), \
         ended_at_us - started_at_us, exit_code"
            .to_owned(),
        head(&format!("coalesce({}, {})", input("cmd"), input("code")), STEP_SOURCE_CHARS),
        input("tool"),
        tool_params(),
        head(&output("stdout"), STEP_OUTPUT_CHARS),
        head(&output("stderr"), STEP_OUTPUT_CHARS),
        head(&output("output"), STEP_OUTPUT_CHARS),
        head(&output("diff"), STEP_OUTPUT_CHARS),
        head(&output("cell.result"), STEP_OUTPUT_CHARS),
        head(&output("cell.error.name"), STEP_LINE_CHARS),
        head(&output("cell.error.value"), STEP_OUTPUT_CHARS),
        tail(&output("cell.error.traceback"), STEP_OUTPUT_CHARS),
        head(&message, STEP_LINE_CHARS),
        input("op"),
        head(&input("path"), STEP_LINE_CHARS),
        head(&input("snapshot"), STEP_LINE_CHARS),
        output("bytes"),
        output("snapshot_id"),
        replay(input("steps")),
        replay(output("divergence_step")),
    ];
    format!("SELECT {} FROM traces WHERE id IN ({CHILD_IDS}) ORDER BY id", columns.join(",\n  "))
});

/// `window` of the steps of the sandbox whose trace is `sandbox`, with how many it has in all.
pub(super) fn steps(db: &Connection, sandbox: TraceId, window: ChildWindow) -> Result<StepPage, StoreError> {
    let db = db.unchecked_transaction()?;
    let total = count_children(&db, sandbox)?;
    let steps = if window.limit == 0 || window.from >= total {
        Vec::new()
    } else {
        let (limit, offset) = window_values(window);
        let mut statement = db.prepare_cached(&STEPS)?;
        let rows = statement.query_map(params![sandbox.to_string(), limit, offset], step)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    Ok(StepPage { steps, from: window.from, total })
}

/// Where `step` stands among the steps of the sandbox whose trace is `sandbox` (0-based): how
/// many began before it. None when `sandbox` is no sandbox's trace (a tool call's command is
/// its call's child, not a step of the sandbox).
pub(super) fn step_position(db: &Connection, sandbox: TraceId, step: TraceId) -> Result<Option<u64>, StoreError> {
    let count: Option<i64> = db
        .prepare_cached(
            "SELECT (SELECT count(*) FROM traces WHERE parent_id = ?1 AND id < ?2)
             FROM traces WHERE id = ?1 AND kind = 'sandbox'",
        )?
        .query_row(params![sandbox.to_string(), step.to_string()], |row| row.get(0))
        .optional()?;
    Ok(count.map(|count| u64::try_from(count).unwrap_or_default()))
}

/// The columns of a row, read in order.
struct Columns<'a, 'r> {
    row: &'a Row<'r>,
    next: usize,
}

impl Columns<'_, '_> {
    fn next<T: FromSql>(&mut self) -> rusqlite::Result<T> {
        self.next += 1;
        self.row.get(self.next - 1)
    }

    fn name<T: std::str::FromStr>(&mut self) -> rusqlite::Result<T>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let column = self.next;
        parse_name(column, &self.next::<String>()?)
    }

    fn maybe_name<T: std::str::FromStr>(&mut self) -> rusqlite::Result<Option<T>>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let column = self.next;
        self.next::<Option<String>>()?.map(|text| parse_name(column, &text)).transpose()
    }

    /// An excerpt's two columns (none when the field is absent).
    fn excerpt(&mut self) -> rusqlite::Result<Option<Excerpt>> {
        let text: Option<String> = self.next()?;
        let bytes: Option<i64> = self.next()?;
        Ok(text.map(|text| Excerpt { bytes: bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or_default(), text }))
    }

    /// A tool call's three columns: its tool, its params cut, the bytes cut (none when it is no
    /// tool call).
    fn call(&mut self) -> rusqlite::Result<Option<ToolCallExcerpt>> {
        let tool = self.maybe_name()?;
        let params: Option<String> = self.next()?;
        let omitted: i64 = self.next()?;
        Ok(tool.map(|tool| ToolCallExcerpt {
            tool,
            // SQLite made this JSON; a step that somehow kept none shows a call without params.
            params: params.and_then(|params| serde_json::from_str(&params).ok()).unwrap_or(Value::Null),
            omitted_bytes: u64::try_from(omitted).unwrap_or_default(),
        }))
    }

    fn count(&mut self) -> rusqlite::Result<Option<u64>> {
        Ok(self.next::<Option<i64>>()?.and_then(|n| u64::try_from(n).ok()))
    }
}

fn step(row: &Row) -> rusqlite::Result<StepExcerpt> {
    let mut columns = Columns { row, next: 0 };
    Ok(StepExcerpt {
        id: columns.name()?,
        kind: columns.name()?,
        status: columns.name()?,
        offset_us: columns.next()?,
        duration_us: columns.next()?,
        exit_code: columns.next()?,
        source: columns.excerpt()?,
        call: columns.call()?,
        stdout: columns.excerpt()?,
        stderr: columns.excerpt()?,
        output: columns.excerpt()?,
        diff: columns.excerpt()?,
        result: columns.excerpt()?,
        error_name: columns.excerpt()?,
        error_value: columns.excerpt()?,
        traceback: columns.excerpt()?,
        message: columns.excerpt()?,
        op: columns.maybe_name()?,
        path: columns.excerpt()?,
        snapshot: columns.excerpt()?,
        bytes: columns.count()?,
        snapshot_id: columns.next()?,
        replayed_steps: columns.count()?,
        divergence_step: columns.next()?,
    })
}
