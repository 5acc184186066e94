//! What the trace tools answer: a page of the trace list, one trace.

use std::fmt::Write;

use serde::Deserialize;
use serde_json::Value;

use super::cut;
use crate::trace::TraceSummary;

/// A trace list as `GET /traces` answers it.
#[derive(Debug, Deserialize)]
pub struct TracePage {
    pub traces: Vec<TraceSummary>,
    pub next_cursor: Option<String>,
}

impl TracePage {
    pub fn text(&self) -> String {
        if self.traces.is_empty() {
            return "no trace matches\n".to_owned();
        }
        let mut text = format!("{} traces, newest first:\n", self.traces.len());
        for trace in &self.traces {
            let _ = writeln!(text, "{}", summary_line(trace));
        }
        if self.next_cursor.is_some() {
            text.push_str("(more match; raise `limit` or narrow the search)\n");
        }
        text
    }
}

/// One trace in a line: id, kind, status, exit code, when, how long, what.
pub fn summary_line(trace: &TraceSummary) -> String {
    let exit = trace.exit_code.map(|code| format!(" exit {code}")).unwrap_or_default();
    let took = trace.duration_ms.map(|ms| format!(" {ms:.0} ms")).unwrap_or_default();
    let language = trace.language.as_deref().map(|l| format!(" {l}")).unwrap_or_default();
    format!(
        "{} {}{language} {}{exit} at {}{took}: {}",
        trace.id,
        trace.kind.as_str(),
        trace.status.as_str(),
        trace.started_at,
        trace.preview
    )
}

/// One trace as `GET /trace/{id}` answers it (what the text shows of it).
#[derive(Debug, Deserialize)]
pub struct Trace {
    #[serde(flatten)]
    pub summary: TraceSummary,
    pub input: Value,
    pub output: Value,
    #[serde(default)]
    pub children: Vec<TraceSummary>,
}

impl Trace {
    pub fn text(&self, base: &str) -> String {
        let summary = &self.summary;
        let mut text = format!("{}\n", summary_line(summary));
        if let Some(parent) = &summary.parent_id {
            let _ = writeln!(text, "parent: {parent}");
        }
        let _ = writeln!(text, "page: {base}/trace/{}", summary.id);
        for (name, value) in [("input", &self.input), ("output", &self.output)] {
            let _ = writeln!(text, "{name}:");
            if let Some(fields) = value.as_object() {
                for (key, value) in fields {
                    let shown = match value {
                        Value::String(text) => cut(text),
                        Value::Null => continue,
                        other => cut(&other.to_string()),
                    };
                    // A multi-line value (code, output) below its name, indented, as written.
                    if shown.contains('\n') {
                        let _ = writeln!(text, "  {key}:");
                        for line in shown.trim_end_matches('\n').lines() {
                            let _ = writeln!(text, "    {line}");
                        }
                    } else {
                        let _ = writeln!(text, "  {key}: {shown}");
                    }
                }
            }
        }
        if !self.children.is_empty() {
            let _ = writeln!(text, "children ({}):", self.children.len());
            for child in &self.children {
                let _ = writeln!(text, "  {}", summary_line(child));
            }
        }
        text
    }
}
