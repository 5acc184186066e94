//! What the sandbox tools answer: a sandbox, a list of them, a directory, a file, an agent
//! tool's call and a replay, each as text plus the API's JSON.

use std::fmt::Write;

use rmcp::model::CallToolResult;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{answer, cut, decode, image, image_type, stream};

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
pub fn file(path: &str, file: &crate::mcp::client::Download) -> CallToolResult {
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
