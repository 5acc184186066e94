//! What the tools answer: the API's reply laid out as plain text a model reads well (status,
//! exit code, output, trace id, each on its own line), with the API's JSON beside it as
//! structured content. A refusal of the API is a tool error (`isError`) carrying its code and
//! message; a program that failed (non-zero exit, an exception) is a result, and one that was
//! stopped (timeout, memory, output limit) an error that says why. Runs here; sandboxes and
//! their files in `sandbox.rs`, traces in `traces.rs`.

use std::fmt::Write;

use rmcp::model::{CallToolResult, ContentBlock};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracebox_model::{Artifact, Status};

use super::client::ClientError;

mod sandbox;
mod traces;

pub use sandbox::{Sandbox, SandboxList, entries, file, replay, tool_call};
pub use traces::{Trace, TracePage};

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
    /// A cell's last expression's value (its text), or what a handler returned (any JSON).
    #[serde(default)]
    pub result: Option<Value>,
    /// What a cell or a handler raised.
    #[serde(default)]
    pub error: Option<Raised>,
}

/// What a cell raised (`name`, `value`, `traceback`) or a handler (`type`, `message`, `stack`,
/// as Lambda reports it): one shape to show.
#[derive(Debug, Deserialize)]
pub struct Raised {
    #[serde(alias = "type")]
    pub name: String,
    #[serde(alias = "message")]
    pub value: String,
    #[serde(alias = "stack", default)]
    pub traceback: String,
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
        match &self.result {
            Some(Value::String(result)) => {
                let _ = writeln!(text, "result: {}", cut(result));
            }
            Some(result) => {
                let _ = writeln!(text, "result: {}", cut(&result.to_string()));
            }
            None => {}
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
