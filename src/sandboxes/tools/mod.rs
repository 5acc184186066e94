//! An agent's tools in a sandbox: `file_read`, `file_write`, `shell`, `search` and `git`. Each
//! call is a step of the sandbox (a trace of kind `tool`, its child): its params checked first
//! (bad ones are refused, and no step is made), then run — a file operation in the container,
//! or a command through the one pipeline (screened, redacted, limited, traced as the tool
//! call's child). A tool that ran and failed answers `success: false` with why.

mod git;
mod trajectory;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tracebox_model::tool::{ToolInput, ToolName, ToolOutput};
use tracebox_model::{
    EventLog, Execution, ExecutionRequest, Isolation, Source, Status, TraceId, TraceInput, TraceOutput,
};

use super::{Live, Sandboxes, SandboxesError, steps};
use crate::runner::StepKind;
use crate::sandbox::OpError;
use crate::trace::{FinishedTrace, NewTrace};

pub use trajectory::{ReplayReport, ReplayedStep};

/// The most lines a search returns; more set `truncated`.
pub const SEARCH_MAX_RESULTS: usize = 200;
/// The longest diff a `file_write` keeps for its trace.
const DIFF_MAX_BYTES: usize = 64 * 1024;
/// A file larger than this, before or after a `file_write`, gets no diff: a diff's cost grows
/// with the product of the two sides' lines.
const DIFF_MAX_INPUT_BYTES: usize = 1 << 20;
/// How long a diff may look for the smallest change before it settles for a larger one.
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_millis(200);

/// A tool call's answer.
#[derive(Debug)]
pub struct ToolReply {
    pub output: ToolOutput,
    pub trace_id: TraceId,
    /// The policy refused the shell command: the API answers as it does for a command.
    pub blocked: Option<Box<Execution>>,
}

/// A call, its params read and checked.
#[derive(Debug)]
enum Call {
    FileRead(FileRead),
    FileWrite(FileWrite),
    Shell(Shell),
    Search(Search),
    Git(Git),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRead {
    path: String,
    start_line: Option<u64>,
    end_line: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWrite {
    path: String,
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shell {
    command: String,
    timeout: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Search {
    pattern: String,
    path: Option<String>,
    glob: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Git {
    args: Vec<String>,
}

/// What each tool takes, for the refusal of params that do not fit.
fn takes(tool: ToolName) -> &'static str {
    match tool {
        ToolName::FileRead => r#"{"path", "start_line", "end_line"} (lines 1-based, inclusive, optional)"#,
        ToolName::FileWrite => r#"{"path", "content"}"#,
        ToolName::Shell => r#"{"command", "timeout"}"#,
        ToolName::Search => r#"{"pattern", "path", "glob"}"#,
        ToolName::Git => r#"{"args": ["status"]}"#,
    }
}

impl Call {
    /// Read `params` as `tool` takes them, refusing (naming the field) what does not fit.
    fn parse(tool: ToolName, params: &Value, max_file_bytes: u64) -> Result<Call, SandboxesError> {
        fn read<T: serde::de::DeserializeOwned>(tool: ToolName, params: &Value) -> Result<T, SandboxesError> {
            serde_json::from_value(params.clone())
                .map_err(|error| invalid(format!("`params`: {error}; {tool} takes {}", takes(tool))))
        }
        let call = match tool {
            ToolName::FileRead => {
                let call: FileRead = read(tool, params)?;
                match (call.start_line, call.end_line) {
                    (Some(0), _) | (_, Some(0)) => {
                        return Err(invalid("`params.start_line`, `params.end_line`: lines count from 1"));
                    }
                    (Some(start), Some(end)) if end < start => {
                        return Err(invalid(format!("`params.end_line` {end} is before `params.start_line` {start}")));
                    }
                    _ => Call::FileRead(call),
                }
            }
            ToolName::FileWrite => {
                let call: FileWrite = read(tool, params)?;
                if call.content.len() as u64 > max_file_bytes {
                    return Err(SandboxesError::TooLarge(format!(
                        "`params.content` is {} bytes; the most written at once is {max_file_bytes} (TRACEBOX_UPLOAD_MAX_FILE_BYTES)",
                        call.content.len()
                    )));
                }
                Call::FileWrite(call)
            }
            ToolName::Shell => {
                let call: Shell = read(tool, params)?;
                if call.command.trim().is_empty() {
                    return Err(invalid("`params.command` is empty"));
                }
                Call::Shell(call)
            }
            ToolName::Search => {
                let call: Search = read(tool, params)?;
                if call.pattern.is_empty() {
                    return Err(invalid("`params.pattern` is empty"));
                }
                Call::Search(call)
            }
            ToolName::Git => {
                let call: Git = read(tool, params)?;
                if let Some(why) = git::refusal(&call.args) {
                    return Err(invalid(why));
                }
                Call::Git(call)
            }
        };
        for path in call.paths() {
            if path.contains('\0') {
                return Err(SandboxesError::BadPath { message: "a path holds a NUL byte".to_owned() });
            }
        }
        Ok(call)
    }

    fn paths(&self) -> Vec<&str> {
        match self {
            Call::FileRead(call) => vec![call.path.as_str()],
            Call::FileWrite(call) => vec![call.path.as_str()],
            Call::Search(call) => call.path.iter().map(String::as_str).collect(),
            Call::Shell(_) | Call::Git(_) => Vec::new(),
        }
    }
}

fn invalid(message: impl Into<String>) -> SandboxesError {
    SandboxesError::Invalid(message.into())
}

impl Sandboxes {
    /// Call `tool` with `params` in sandbox `id`, as a step of its trajectory (or of the replay
    /// `replay`, under that replay's trace).
    pub async fn tool(
        &self,
        id: &str,
        tool: ToolName,
        params: Value,
        replay: Option<(TraceId, &str)>,
    ) -> Result<ToolReply, SandboxesError> {
        let call = Call::parse(tool, &params, self.inner.settings.max_file_bytes)?;
        let record = self.record(id).await?;
        let live = self.session_of(&record).await?;
        let parent = replay.map_or(record.trace_id, |(trace, _)| trace);
        let trace_id = TraceId::new();
        let mut log = EventLog::start();
        // What the trace keeps of the call (a file's content, a command, git's args, a pattern)
        // is redacted as code is.
        let mut kept = params;
        redact_strings(&mut kept, &self.inner.policy);
        let input = ToolInput {
            sandbox_id: id.to_owned(),
            tool,
            params: kept,
            replay: replay.map(|(_, replay)| replay.to_owned()),
        };
        self.inner.store.begin(NewTrace {
            id: trace_id,
            parent_id: Some(parent),
            source: Source::Http,
            language: None,
            boot_id: self.inner.boot_id.clone(),
            started_at_us: log.started_at_us(),
            input: TraceInput::Tool(input),
            tenant: None,
        });
        let ran = self.run_call(&record, &live, call, trace_id).await;
        let (status, output, blocked, failure) = match ran {
            Ok(Ran::Done(output)) => (if output.success { Status::Success } else { Status::Error }, output, None, None),
            Ok(Ran::Blocked(execution)) => {
                let output = ToolOutput {
                    error: execution.message.clone(),
                    exit_code: execution.exit_code,
                    ..ToolOutput::default()
                };
                (Status::Blocked, output, Some(execution), None)
            }
            Err(error) => {
                let output = ToolOutput { error: Some(error.to_string()), ..ToolOutput::default() };
                (Status::InternalError, output, None, Some(error))
            }
        };
        log.record("finished", json!({ "status": status, "success": output.success }));
        let finished = FinishedTrace {
            id: trace_id,
            status,
            ended_at_us: log.now_us(),
            exit_code: output.exit_code,
            output: TraceOutput::Tool(output.clone()),
            events: log.into_events(),
        };
        self.inner.store.finish(finished).await?;
        let _ = self.touch(id, replay.is_none()).await;
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(ToolReply { output, trace_id, blocked })
    }

    async fn run_call(
        &self,
        record: &tracebox_model::sandbox::SandboxRecord,
        live: &Arc<Live>,
        call: Call,
        parent: TraceId,
    ) -> Result<Ran, SandboxesError> {
        match call {
            Call::FileRead(call) => self.file_read(live, call).await.map(Ran::Done),
            Call::FileWrite(call) => self.file_write(live, call).await.map(Ran::Done),
            Call::Shell(call) => {
                let step = StepKind::Command { cwd: None, merged: true };
                let execution = self.tool_step(record, live, call.command, step, call.timeout, parent).await?;
                Ok(shell_outcome(execution))
            }
            Call::Search(call) => {
                if let Some(path) = &call.path {
                    tool_op(live, json!({"op": "stat", "path": path})).await?.map_err(Failure::into_error)?;
                }
                let argv = search_argv(&call);
                let shown = shown(&argv);
                let step = StepKind::Program { argv, cwd: None };
                let execution = self.tool_step(record, live, shown, step, None, parent).await?;
                Ok(search_outcome(execution))
            }
            Call::Git(call) => {
                let argv = git::argv(&call.args);
                let shown = format!("git {}", shown(&call.args));
                let step = StepKind::Program { argv, cwd: None };
                let execution = self.tool_step(record, live, shown, step, None, parent).await?;
                Ok(shell_outcome(execution))
            }
        }
    }

    /// A command for a tool, through the pipeline, as the tool call's child.
    async fn tool_step(
        &self,
        record: &tracebox_model::sandbox::SandboxRecord,
        live: &Arc<Live>,
        code: String,
        step: StepKind,
        timeout: Option<f64>,
        parent: TraceId,
    ) -> Result<Execution, SandboxesError> {
        let request = ExecutionRequest {
            language: record.language,
            code,
            stdin: String::new(),
            env: BTreeMap::new(),
            limits: self.step_limits(timeout)?,
            source: Source::Http,
            files: Vec::new(),
            parent: Some(parent),
            isolation: Isolation::Fresh,
            tenant: None,
            owner: record.tenant.clone(),
            handler: None,
            placement: Default::default(),
        };
        let run = self.start_step(record, live, request, step, false).await?;
        steps::finish(run).await
    }

    async fn file_read(&self, live: &Live, call: FileRead) -> Result<ToolOutput, SandboxesError> {
        let most = self.inner.settings.max_file_bytes;
        let read = tool_op_read(live, &call.path, most).await?;
        let (bytes, size) = match read {
            Ok(read) => read,
            Err(failure) => return Ok(failure.output()),
        };
        if size > most {
            return Ok(failed(format!(
                "{} is {size} bytes, more than the {most} read at once (TRACEBOX_UPLOAD_MAX_FILE_BYTES); read parts of it with the shell tool (sed -n '10,20p' {0})",
                call.path
            )));
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => self.inner.policy.redact(&text),
            _ => return Ok(failed(format!("{} is a binary file ({size} bytes): it has no lines to read", call.path))),
        };
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let start = call.start_line.unwrap_or(1) as usize;
        if start > lines.len().max(1) {
            return Ok(failed(format!(
                "`start_line` {start} is past the end of {} ({} lines)",
                call.path,
                lines.len()
            )));
        }
        let end = call.end_line.map_or(lines.len(), |end| (end as usize).min(lines.len()));
        let output = lines.get(start - 1..end).map(|lines| lines.concat()).unwrap_or_default();
        Ok(ToolOutput { output, exit_code: Some(0), success: true, ..ToolOutput::default() })
    }

    async fn file_write(&self, live: &Live, call: FileWrite) -> Result<ToolOutput, SandboxesError> {
        let before = match tool_op_read(live, &call.path, self.inner.settings.max_file_bytes).await? {
            Ok((bytes, _)) => String::from_utf8(bytes).ok(),
            Err(_) => Some(String::new()),
        };
        let header = json!({"op": "write", "path": call.path});
        if let Err(error) = live.session.call(header, call.content.as_bytes()).await
            && let Err(failure) = Failure::of::<()>(error)?
        {
            return Ok(failure.output());
        }
        let diff = match before {
            Some(before) if before.len().max(call.content.len()) <= DIFF_MAX_INPUT_BYTES => {
                let (path, after, policy) = (call.path.clone(), call.content.clone(), self.inner.policy.clone());
                tokio::task::spawn_blocking(move || unified_diff(&path, &before, &after, &policy)).await.ok()
            }
            _ => None,
        };
        Ok(ToolOutput {
            output: format!("wrote {} bytes to {}\n", call.content.len(), call.path),
            exit_code: Some(0),
            success: true,
            diff,
            ..ToolOutput::default()
        })
    }
}

/// Every string in `value`, redacted in place.
fn redact_strings(value: &mut Value, policy: &crate::policy::Policy) {
    match value {
        Value::String(text) => *text = policy.redact(text),
        Value::Array(items) => items.iter_mut().for_each(|item| redact_strings(item, policy)),
        Value::Object(fields) => fields.values_mut().for_each(|field| redact_strings(field, policy)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// What running a call came to.
enum Ran {
    Done(ToolOutput),
    /// The policy refused the command; nothing ran.
    Blocked(Box<Execution>),
}

/// An operation the container refused for a reason the tool reports (a missing file, a
/// directory, a full disk), as opposed to a path outside `/workspace` (refused params) or a
/// lost container (an error).
struct Failure(String);

impl Failure {
    /// Sort a refusal of the container: a path outside is the caller's error, the rest the
    /// tool's failure.
    fn of<T>(error: OpError) -> Result<Result<T, Failure>, SandboxesError> {
        match error {
            OpError::Refused { code, message } if code != "bad_path" => Ok(Err(Failure(message))),
            other => Err(other.into()),
        }
    }

    fn output(self) -> ToolOutput {
        failed(self.0)
    }

    fn into_error(self) -> SandboxesError {
        SandboxesError::NoSuchFile { message: self.0 }
    }
}

/// A file's first `most + 1` bytes and its size, or why it could not be read.
async fn tool_op_read(live: &Live, path: &str, most: u64) -> Result<Result<(Vec<u8>, u64), Failure>, SandboxesError> {
    match steps::read_raw_op(live, path, 0, most).await {
        Ok(read) => Ok(Ok(read)),
        Err(error) => Failure::of(error),
    }
}

async fn tool_op(live: &Live, header: Value) -> Result<Result<Value, Failure>, SandboxesError> {
    match live.session.call(header, &[]).await {
        Ok(reply) => Ok(Ok(reply)),
        Err(error) => Failure::of(error),
    }
}

fn failed(error: String) -> ToolOutput {
    ToolOutput { error: Some(error), exit_code: Some(1), success: false, ..ToolOutput::default() }
}

/// A command's end as a tool's: its one stream of output, and why it failed when it did.
fn shell_outcome(execution: Execution) -> Ran {
    if execution.status == Status::Blocked {
        return Ran::Blocked(Box::new(execution));
    }
    let success = execution.status == Status::Success;
    let error = execution.why_not_success();
    Ran::Done(ToolOutput {
        output: execution.stdout,
        exit_code: execution.exit_code,
        error,
        success,
        truncated: execution.truncated,
        diff: None,
    })
}

/// ripgrep's end as the search tool's: no match is a success with no lines; lines past
/// [`SEARCH_MAX_RESULTS`] are cut.
fn search_outcome(execution: Execution) -> Ran {
    let found = match shell_outcome(execution) {
        Ran::Done(found) => found,
        blocked @ Ran::Blocked(_) => return blocked,
    };
    match found.exit_code {
        Some(0 | 1) => {
            let lines: Vec<&str> = found.output.lines().collect();
            let truncated = found.truncated || lines.len() > SEARCH_MAX_RESULTS;
            // Paths as the agent would write them: `src/a.rs`, not `./src/a.rs` (the default path).
            let mut output: String = lines
                .iter()
                .take(SEARCH_MAX_RESULTS)
                .map(|line| format!("{}\n", line.strip_prefix("./").unwrap_or(line)))
                .collect();
            if lines.is_empty() {
                output.clear();
            }
            Ran::Done(ToolOutput { output, success: true, error: None, truncated, ..found })
        }
        _ => {
            let error = Some(found.output.trim().to_owned()).filter(|e| !e.is_empty()).or(found.error.clone());
            Ran::Done(ToolOutput { success: false, error, ..found })
        }
    }
}

/// ripgrep, as the search tool runs it: `path:line:text`, files in order (so that a replay
/// finds them in the same order), each line bounded.
fn search_argv(call: &Search) -> Vec<String> {
    let mut argv: Vec<String> = [
        "rg",
        "--no-config",
        "--line-number",
        "--no-heading",
        "--with-filename",
        "--color=never",
        "--sort=path",
        "--max-columns=500",
        "--max-columns-preview",
    ]
    .map(str::to_owned)
    .to_vec();
    argv.extend(["--max-count".to_owned(), (SEARCH_MAX_RESULTS + 1).to_string()]);
    if let Some(glob) = &call.glob {
        argv.extend(["--glob".to_owned(), glob.clone()]);
    }
    argv.extend(["--regexp".to_owned(), call.pattern.clone()]);
    // Always a path: with none, rg would search its stdin (a pipe here), not the files.
    argv.extend(["--".to_owned(), call.path.clone().unwrap_or_else(|| ".".to_owned())]);
    argv
}

/// An argv as a shell would read it back, for the trace (each word quoted when it needs it).
fn shown(argv: &[String]) -> String {
    let word = |arg: &String| {
        if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c)) {
            arg.clone()
        } else {
            format!("'{}'", arg.replace('\'', r"'\''"))
        }
    };
    argv.iter().map(word).collect::<Vec<_>>().join(" ")
}

/// The change from `before` to `after` as a unified diff, redacted (whole, before it is cut, so
/// that no cut splits a secret out of its rule's reach) and bounded. Blocking.
fn unified_diff(path: &str, before: &str, after: &str, policy: &crate::policy::Policy) -> String {
    let diff = similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .timeout(DIFF_DEADLINE)
        .diff_lines(before, after)
        .unified_diff()
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string();
    cut(policy.redact(&diff), DIFF_MAX_BYTES)
}

/// `text` cut to at most `most` bytes (at a character boundary), saying so.
fn cut(text: String, most: usize) -> String {
    if text.len() <= most {
        return text;
    }
    format!("{}\n… (the diff goes on; {} bytes in all)\n", tracebox_model::text::head(&text, most), text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_that_do_not_fit_are_refused_naming_the_field_and_what_the_tool_takes() {
        let refused = |tool, params: Value| match Call::parse(tool, &params, 10) {
            Err(SandboxesError::Invalid(message) | SandboxesError::TooLarge(message)) => message,
            other => panic!("{params} passed: {other:?}"),
        };
        assert!(refused(ToolName::FileRead, json!({"path": "a", "lines": 3})).contains("unknown field `lines`"));
        assert!(refused(ToolName::FileRead, json!({"path": "a", "start_line": 0})).contains("from 1"));
        assert!(refused(ToolName::FileRead, json!({"path": "a", "start_line": 5, "end_line": 2})).contains("before"));
        assert!(refused(ToolName::Shell, json!({"command": "  "})).contains("`params.command` is empty"));
        assert!(refused(ToolName::Shell, json!({})).contains(r#"shell takes {"command", "timeout"}"#));
        assert!(refused(ToolName::FileWrite, json!({"path": "a", "content": "x".repeat(11)})).contains("11 bytes"));
        assert!(refused(ToolName::Git, json!({"args": ["push"]})).contains("args[0]"));
        assert!(refused(ToolName::Search, json!({"pattern": ""})).contains("empty"));
    }

    #[test]
    fn an_argv_reads_back_as_a_shell_would_take_it() {
        let argv: Vec<String> = ["rg", "--regexp", "fn main()", "it's"].map(str::to_owned).to_vec();
        assert_eq!(shown(&argv), r"rg --regexp 'fn main()' 'it'\''s'");
    }

    #[test]
    fn a_search_passes_pattern_and_path_as_data_never_as_options() {
        let call = Search { pattern: "--pre=sh".into(), path: Some("-x".into()), glob: Some("*.rs".into()) };
        let argv = search_argv(&call);
        let at = argv.iter().position(|a| a == "--regexp").unwrap();
        assert_eq!(argv[at + 1], "--pre=sh", "the pattern is --regexp's value");
        assert_eq!(&argv[argv.len() - 2..], ["--", "-x"], "the path comes after --");
        let everywhere = search_argv(&Search { pattern: "x".into(), path: None, glob: None });
        assert_eq!(&everywhere[everywhere.len() - 2..], ["--", "."], "never stdin");
    }

    #[test]
    fn a_long_diff_is_cut_at_a_character_and_says_so() {
        let cut = cut("é".repeat(10), 5);
        assert!(cut.starts_with("éé\n… (the diff goes on; 20 bytes in all)"), "{cut}");
    }
}
