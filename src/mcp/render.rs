//! What the tools answer: the API's reply laid out as plain text a model reads well (status,
//! exit code, output, trace id, each on its own line), with the API's JSON beside it as
//! structured content. A refusal of the API is a tool error (`isError`) carrying its code and
//! message; a program that failed (non-zero exit, an exception) is a result, and one that was
//! stopped (timeout, memory, output limit) an error that says why.

use std::fmt::Write;

use rmcp::model::{CallToolResult, ContentBlock};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracebox_model::record::CellError;
use tracebox_model::{Artifact, Status};

use super::client::ClientError;
use crate::trace::TraceSummary;

/// The most characters of one stream or field put in a text answer; the structured content and
/// the trace keep the whole.
const MAX_TEXT: usize = 20_000;

/// A result: `text`, the API's `reply` as structured content, an error or not.
pub fn answer(text: String, reply: Value, is_error: bool) -> CallToolResult {
    let mut result = if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    // Structured content must be an object; the API's replies are, but for `null` (a 204).
    if reply.is_object() {
        result.structured_content = Some(reply);
    }
    result
}

/// A call that failed: the API's refusal (its code, message, the rules and trace), or why the
/// API could not be asked.
pub fn failed(error: &ClientError) -> CallToolResult {
    match error {
        ClientError::Refused { status, code, message, rules, trace_id } => {
            let mut text = format!("refused: {code} (HTTP {status})\n{message}\n");
            if !rules.is_empty() {
                let _ = writeln!(text, "rules: {}", rules.join(", "));
            }
            if let Some(trace_id) = trace_id {
                let _ = writeln!(text, "trace_id: {trace_id}");
            }
            let reply = json!({
                "error": {"code": code, "message": message}, "status": status, "rules": rules, "trace_id": trace_id,
            });
            answer(text, reply, true)
        }
        other => answer(
            format!("failed: {other}"),
            json!({"error": {"code": "unreachable", "message": other.to_string()}}),
            true,
        ),
    }
}

/// A reply that is not what the route answers: tracebox and this door disagree.
pub fn unreadable(what: &str, error: &serde_json::Error, reply: Value) -> CallToolResult {
    answer(format!("failed: the server's reply to {what} could not be read: {error}"), reply, true)
}

/// Decode the fields of `reply` a rendering uses.
pub fn decode<T: DeserializeOwned>(reply: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(reply)
}

/// A run's or a step's reply, as `/execute`, `/commands` and `/code` answer it.
#[derive(Debug, Deserialize)]
pub struct Run {
    pub trace_id: String,
    pub status: Status,
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    pub duration_ms: u64,
    #[serde(default)]
    pub truncated: bool,
    pub message: Option<String>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// A cell's last expression's value.
    #[serde(default)]
    pub result: Option<String>,
    /// What a cell raised.
    #[serde(default)]
    pub error: Option<CellError>,
}

impl Run {
    /// Stopped rather than ended: the call failed, and the text says why. A non-zero exit or
    /// an exception is the program's answer, not a failure of the call.
    pub fn stopped(&self) -> bool {
        !matches!(self.status, Status::Success | Status::Error)
    }

    pub fn text(&self, base: &str) -> String {
        let exit = self.exit_code.map_or("no exit code".to_owned(), |code| format!("exit code {code}"));
        let mut text = format!("status: {} ({exit}, {} ms)\n", self.status.as_str(), self.duration_ms);
        if let Some(message) = &self.message {
            let _ = writeln!(text, "why: {message}");
        }
        let _ = writeln!(text, "trace_id: {}", self.trace_id);
        if let Some(result) = &self.result {
            let _ = writeln!(text, "result: {}", cut(result));
        }
        if let Some(error) = &self.error {
            let _ = writeln!(text, "raised: {}: {}\n{}", error.name, error.value, cut(&error.traceback));
        }
        stream(&mut text, "stdout", &self.stdout);
        stream(&mut text, "stderr", &self.stderr);
        if self.truncated {
            text.push_str("(output cut at the server's output limit)\n");
        }
        if !self.artifacts.is_empty() {
            text.push_str("artifacts (files left in /workspace/out):\n");
            for artifact in &self.artifacts {
                let _ = writeln!(text, "  {} ({} bytes) {base}{}", artifact.name, artifact.size, artifact.url);
            }
        }
        text
    }
}

fn stream(text: &mut String, name: &str, content: &str) {
    if content.is_empty() {
        let _ = writeln!(text, "{name}: (empty)");
    } else {
        let _ = write!(text, "{name}:\n{}", cut(content));
        if !content.ends_with('\n') {
            text.push('\n');
        }
    }
}

/// `text`, or its first [`MAX_TEXT`] characters and a note.
pub fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((end, _)) => format!("{}\n… ({} more bytes; the trace has all of it)", &text[..end], text.len() - end),
        None => text.to_owned(),
    }
}

/// A sandbox as the API shows it (the fields the text uses).
#[derive(Debug, Deserialize)]
pub struct Sandbox {
    pub sandbox_id: String,
    pub status: String,
    pub language: String,
    pub timeout: f64,
    pub on_timeout: String,
    pub expires_at: Option<String>,
    pub trace_id: Option<String>,
    #[serde(default)]
    pub steps: u64,
    #[serde(default)]
    pub metadata: Value,
    pub note: Option<String>,
}

impl Sandbox {
    pub fn text(&self) -> String {
        let then = if self.on_timeout == "kill" { "removed" } else { "paused" };
        let mut text = format!(
            "sandbox_id: {}\nstatus: {} ({}, {} steps)\nidle timeout: {} s, then {then}{}\n",
            self.sandbox_id,
            self.status,
            self.language,
            self.steps,
            self.timeout,
            self.expires_at.as_deref().map(|at| format!(" (at {at} if idle)")).unwrap_or_default(),
        );
        if let Some(trace_id) = &self.trace_id {
            let _ = writeln!(text, "trace_id: {trace_id} (its steps are this trace's children)");
        }
        if self.metadata.as_object().is_some_and(|labels| !labels.is_empty()) {
            let _ = writeln!(text, "metadata: {}", self.metadata);
        }
        if let Some(note) = &self.note {
            let _ = writeln!(text, "note: {note}");
        }
        text
    }
}

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

/// The sandboxes as `GET /sandboxes` lists them.
#[derive(Debug, Deserialize)]
pub struct SandboxList {
    pub sandboxes: Vec<Sandbox>,
}

impl SandboxList {
    pub fn text(&self) -> String {
        if self.sandboxes.is_empty() {
            return "no sandboxes\n".to_owned();
        }
        let mut text = String::new();
        for sandbox in &self.sandboxes {
            let expires = sandbox.expires_at.as_deref().unwrap_or("-");
            let _ = writeln!(
                text,
                "{} {} {} {} steps, idle until {expires}, then {}{}",
                sandbox.sandbox_id,
                sandbox.status,
                sandbox.language,
                sandbox.steps,
                if sandbox.on_timeout == "kill" { "removed" } else { "paused" },
                if sandbox.metadata.as_object().is_some_and(|m| !m.is_empty()) {
                    format!(" {}", sandbox.metadata)
                } else {
                    String::new()
                },
            );
        }
        text
    }
}

/// A directory's entries as `GET /sandboxes/{id}/files` answers them, one a line.
pub fn entries(reply: &Value) -> String {
    #[derive(Deserialize)]
    struct Entry {
        path: String,
        #[serde(rename = "type")]
        kind: String,
        size: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Listing {
        entries: Vec<Entry>,
    }
    let Ok(listing) = decode::<Listing>(reply) else { return format!("{reply}\n") };
    if listing.entries.is_empty() {
        return "(empty directory)\n".to_owned();
    }
    let mut text = String::new();
    for entry in &listing.entries {
        let size = entry.size.map(|size| format!(" {size} bytes")).unwrap_or_default();
        let slash = if entry.kind == "dir" { "/" } else { "" };
        let _ = writeln!(text, "{} {}{slash}{size}", entry.kind, entry.path);
    }
    text
}

/// A file read from a sandbox: its text, an image, or what it is when neither.
pub fn file(path: &str, file: &super::client::Download) -> CallToolResult {
    let reply = json!({"path": path, "size": file.bytes.len()});
    if let Some(mime) = image_type(path) {
        let mut result = answer(format!("{path}: {mime}, {} bytes\n", file.bytes.len()), reply, false);
        result.content.push(image(&file.bytes, mime));
        return result;
    }
    match std::str::from_utf8(&file.bytes) {
        Ok(text) => answer(cut(text), json!({"path": path, "size": file.bytes.len(), "content": text}), false),
        Err(_) => answer(
            format!(
                "{path} is a binary file of {} bytes; not shown (read it with run_command, e.g. xxd)\n",
                file.bytes.len()
            ),
            reply,
            false,
        ),
    }
}

/// The image type of a file name tracebox sends back as an image, by its extension.
pub fn image_type(name: &str) -> Option<&'static str> {
    let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match extension.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// Image content of `bytes`.
pub fn image(bytes: &[u8], mime: &str) -> ContentBlock {
    use base64::Engine;
    ContentBlock::image(base64::engine::general_purpose::STANDARD.encode(bytes), mime)
}

/// An agent tool's reply (`POST /sandboxes/{id}/tools/{name}`).
pub fn tool_call(name: &str, reply: &Value) -> String {
    #[derive(Deserialize)]
    struct Call {
        #[serde(default)]
        output: String,
        exit_code: Option<i64>,
        error: Option<String>,
        success: bool,
        trace_id: Option<String>,
        #[serde(default)]
        truncated: bool,
        diff: Option<String>,
    }
    let Ok(call) = decode::<Call>(reply) else { return format!("{reply}\n") };
    let exit = call.exit_code.map(|code| format!(", exit code {code}")).unwrap_or_default();
    let mut text = format!("{name}: {}{exit}\n", if call.success { "success" } else { "failed" });
    if let Some(error) = &call.error {
        let _ = writeln!(text, "error: {error}");
    }
    if let Some(trace_id) = &call.trace_id {
        let _ = writeln!(text, "trace_id: {trace_id}");
    }
    stream(&mut text, "output", &call.output);
    if call.truncated {
        text.push_str("(output cut)\n");
    }
    if let Some(diff) = call.diff.filter(|diff| !diff.is_empty()) {
        let _ = write!(text, "diff:\n{}", cut(&diff));
    }
    text
}

/// A replay's report (`POST /sandboxes/{id}/replay`): the verdict, then a line per step.
pub fn replay(reply: &Value) -> String {
    #[derive(Deserialize)]
    struct Step {
        tool_name: String,
        exit_code: Option<i64>,
        expected_exit_code: Option<i64>,
        diverged: bool,
    }
    #[derive(Deserialize)]
    struct Report {
        success: bool,
        divergence_step: i64,
        trace_id: Option<String>,
        steps: Vec<Step>,
    }
    let Ok(report) = decode::<Report>(reply) else { return format!("{reply}\n") };
    let verdict = if report.divergence_step < 0 {
        "every step gave the recorded output".to_owned()
    } else {
        format!("step {} diverged first", report.divergence_step)
    };
    let mut text = format!("replay: {} steps, {verdict} (success: {})\n", report.steps.len(), report.success);
    if let Some(trace_id) = &report.trace_id {
        let _ = writeln!(text, "trace_id: {trace_id}");
    }
    for (index, step) in report.steps.iter().enumerate() {
        let mark = if step.diverged { "DIVERGED" } else { "same" };
        let code = |code: Option<i64>| code.map_or("-".to_owned(), |c| c.to_string());
        let _ = writeln!(
            text,
            "  {index}. {} {mark} (exit {}, recorded {})",
            step.tool_name,
            code(step.exit_code),
            code(step.expected_exit_code)
        );
    }
    text.push_str("(each step's output and expected_output are in the structured content)\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: &str, exit_code: Option<i64>) -> Run {
        decode(&json!({
            "trace_id": "t1", "status": status, "exit_code": exit_code, "stdout": "hi\n", "stderr": "",
            "duration_ms": 12, "message": null, "artifacts": [],
        }))
        .unwrap()
    }

    #[test]
    fn a_run_is_laid_out_one_fact_a_line() {
        let text = run("error", Some(3)).text("http://h");
        assert_eq!(text, "status: error (exit code 3, 12 ms)\ntrace_id: t1\nstdout:\nhi\nstderr: (empty)\n");
    }

    #[test]
    fn a_non_zero_exit_is_a_result_and_a_timeout_a_failure() {
        assert!(!run("success", Some(0)).stopped());
        assert!(!run("error", Some(1)).stopped());
        assert!(run("timeout", Some(137)).stopped());
        assert!(run("oom", Some(137)).stopped());
    }

    #[test]
    fn a_refusal_is_a_tool_error_naming_its_code_rules_and_trace() {
        let refused = ClientError::Refused {
            status: 403,
            code: "blocked_by_policy".into(),
            message: "python.subprocess: no".into(),
            rules: vec!["python.subprocess".into()],
            trace_id: Some("t9".into()),
        };
        let result = failed(&refused);
        assert_eq!(result.is_error, Some(true));
        let text = result.content[0].as_text().unwrap().text.clone();
        assert!(text.contains("blocked_by_policy") && text.contains("rules: python.subprocess"), "{text}");
        assert!(text.contains("trace_id: t9"), "{text}");
        assert_eq!(result.structured_content.unwrap()["error"]["code"], "blocked_by_policy");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_saying_how_much_is_left() {
        let long = "é".repeat(MAX_TEXT + 10);
        let shown = cut(&long);
        assert!(
            shown.starts_with(&"é".repeat(MAX_TEXT)) && shown.contains("20 more bytes"),
            "{}",
            &shown[shown.len() - 60..]
        );
        assert_eq!(cut("short"), "short");
    }
}
