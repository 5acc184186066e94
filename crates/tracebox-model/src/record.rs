//! The typed input and output of each kind of trace: what the writers record and what the trace
//! page reads back, one struct per kind and side. The store keeps them as JSON; a field renamed
//! here is renamed for both.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::handler::HandlerInput;
use crate::sandbox::{CellInput, CommandInput, OpInput, OpOutput, SandboxInput, SandboxOutput};
use crate::tool::{ReplayInput, ReplayOutput, ToolInput, ToolOutput};
use crate::{Execution, Language, NodeAttempt, PolicyHit, RunLimits, Status, Strategy, TraceId, TraceKind};

/// A file a record names: an upload given to a run or a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    pub name: String,
    pub size: u64,
}

/// What went wrong, as the error body said it (`code` is the API's error code, when it had one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

/// A run's request, as kept: secrets redacted, of the environment only the names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInput {
    pub language: Language,
    pub code: String,
    pub stdin: String,
    #[serde(default)]
    pub env_names: Vec<String>,
    #[serde(default)]
    pub files: Vec<FileRef>,
    pub limits: RunLimits,
    #[serde(default)]
    pub policy_hits: Vec<PolicyHit>,
    /// Bytes of code and stdin left out of this record (a request refused before it ran keeps
    /// only their start).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_bytes: u64,
    /// Handler mode: the function called and its event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<HandlerInput>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Tokens of one Claude call. Anthropic's `input_tokens` leaves out the cached ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "count")]
    pub input_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub output_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub cache_creation_input_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub cache_read_input_tokens: u64,
}

impl Usage {
    /// Every input token, cached or not.
    pub fn total_input(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }
}

/// A count the API may send as null.
fn count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(deserializer)?.unwrap_or(0))
}

/// One attempt of a Claude call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    pub request_id: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub ms: f64,
    /// How long the client waited before the next attempt, when there was one.
    pub waited_ms: Option<f64>,
}

/// A Claude call's request, as kept (secrets redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaudeInput {
    /// The last user message's text.
    pub prompt: Option<String>,
    /// The messages, in Anthropic's own shape.
    pub messages: Value,
    pub system: Option<Value>,
    pub model: String,
    pub max_tokens: u64,
    pub temperature: Option<f64>,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
    pub stream: bool,
    /// Run the reply's code blocks.
    pub execute: bool,
    pub language: Language,
    pub limits: RunLimits,
    #[serde(default)]
    pub files: Vec<FileRef>,
}

/// How a Claude call ended: a reply, or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClaudeOutput {
    Failed(ClaudeFailure),
    Answered(Box<ClaudeAnswer>),
}

/// A Claude call that got its reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaudeAnswer {
    pub text: String,
    /// The reply's blocks, in Anthropic's own shape.
    pub content: Value,
    pub model: String,
    pub message_id: String,
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
    /// US dollars, from the price table; None for a model it has no price for.
    pub cost_usd: Option<f64>,
    pub request_id: Option<String>,
    pub attempts: Vec<Attempt>,
    pub retries: usize,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    /// The runs of the reply's code blocks (each its own trace).
    pub executions: Vec<RunRef>,
    /// The tags of blocks not run (```bash, ```json…).
    pub skipped_blocks: Vec<String>,
}

/// A Claude call that got no reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaudeFailure {
    pub error: ErrorReport,
    /// The text that streamed in before the reply broke off.
    #[serde(default)]
    pub partial_text: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default)]
    pub latency_ms: Option<f64>,
}

/// How a code cell of a sandbox's kernel ended, besides its output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CellOutcome {
    /// The last expression's value as text (Python's `repr`, Node's `util.inspect`), when the
    /// cell ended with one.
    pub result: Option<String>,
    /// What the cell raised; the kernel survives it.
    pub error: Option<CellError>,
    /// The cell was interrupted (its timeout, its client).
    pub interrupted: bool,
    /// The kernel was restarted: its variables are gone.
    pub restarted: bool,
}

/// An exception a cell raised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CellError {
    pub name: String,
    pub value: String,
    pub traceback: String,
}

/// A run another trace started, as that trace names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRef {
    pub trace_id: TraceId,
    pub status: Status,
    pub exit_code: Option<i64>,
}

/// An upload request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadInput {
    /// The client's address.
    pub client: Option<String>,
    pub overwrite: bool,
}

/// A file as an upload stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// The name asked for, when the file was stored under another (that one was taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_name: Option<String>,
}

/// How an upload ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UploadOutput {
    Stored { files: Vec<StoredFile> },
    Refused { error: ErrorReport },
}

/// A download request: an upload by its name, or a run's artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadInput {
    pub name: String,
    /// The run whose artifact it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    pub client: Option<String>,
    /// The `Range` header, when the client asked for part of the file.
    pub range: Option<String>,
}

/// How a download ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DownloadOutput {
    Refused {
        error: ErrorReport,
    },
    Served {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<String>,
        size: u64,
        /// Known for uploads; for an artifact when it was asked for.
        sha256: Option<String>,
    },
}

/// A prompt set as it started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInput {
    pub name: String,
    pub items: usize,
    pub concurrency: usize,
}

/// How an item of a prompt set went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its expectations held.
    Passed,
    /// It ran, and an expectation did not hold.
    Failed,
    /// The policy refused its code (and that was not what it expected).
    Blocked,
    /// It could not run: Claude failed, its reply held no code, the sandbox failed.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Blocked => "blocked",
            Outcome::Error => "error",
        }
    }
}

/// A batch's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    pub items: usize,
    pub passed: usize,
    pub failed: usize,
    pub blocked: usize,
    pub errors: usize,
    /// Item latency, median and 95th percentile.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// The whole batch.
    pub wall_ms: f64,
    /// Claude tokens of the prompt items: every input token (cached or not), and output.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// US dollars, for the calls the price table knows the model of.
    pub cost_usd: f64,
}

/// One item of a finished batch, as its trace lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub id: String,
    /// Where it was in the prompt set (`line 3`).
    pub at: String,
    pub outcome: Outcome,
    /// The run's status (the last block's, for a prompt), or `no_code` / `claude_error`.
    pub status: String,
    pub trace_id: Option<TraceId>,
    pub duration_ms: f64,
    pub failures: Vec<String>,
}

/// How a batch ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchOutput {
    pub summary: BatchSummary,
    pub items: Vec<BatchItem>,
}

/// A schedule as it started: tasks placed over the nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInput {
    pub tasks: usize,
    pub strategy: Strategy,
}

/// One task of a finished schedule, as its trace lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleTask {
    /// Its run's status, or `refused` when it never ran (the error says why).
    pub status: String,
    pub trace_id: Option<TraceId>,
    /// The node that ran it.
    pub node: Option<String>,
    pub attempts: Vec<NodeAttempt>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// How a schedule ended: each task in the order sent, and the wall time of all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleOutput {
    pub tasks: Vec<ScheduleTask>,
    pub wall_ms: u64,
}

/// What a trace records as it starts, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceInput {
    Execution(ExecutionInput),
    Claude(ClaudeInput),
    Upload(UploadInput),
    Download(DownloadInput),
    Batch(BatchInput),
    Sandbox(SandboxInput),
    Command(CommandInput),
    Cell(CellInput),
    SandboxOp(OpInput),
    Tool(ToolInput),
    Replay(ReplayInput),
    Schedule(ScheduleInput),
}

/// What a trace records as it ends, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceOutput {
    Execution(Box<Execution>),
    Claude(ClaudeOutput),
    Upload(UploadOutput),
    Download(DownloadOutput),
    Batch(BatchOutput),
    Sandbox(SandboxOutput),
    Command(Box<Execution>),
    Cell(Box<Execution>),
    SandboxOp(OpOutput),
    Tool(ToolOutput),
    Replay(ReplayOutput),
    Schedule(ScheduleOutput),
}

/// A trace read back: its kind's input, and its output once it ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Execution { input: ExecutionInput, output: Option<Box<Execution>> },
    Claude { input: ClaudeInput, output: Option<ClaudeOutput> },
    Upload { input: UploadInput, output: Option<UploadOutput> },
    Download { input: DownloadInput, output: Option<DownloadOutput> },
    Batch { input: BatchInput, output: Option<BatchOutput> },
    Sandbox { input: SandboxInput, output: Option<SandboxOutput> },
    Command { input: CommandInput, output: Option<Box<Execution>> },
    Cell { input: CellInput, output: Option<Box<Execution>> },
    SandboxOp { input: OpInput, output: Option<OpOutput> },
    Tool { input: ToolInput, output: Option<ToolOutput> },
    Replay { input: ReplayInput, output: Option<ReplayOutput> },
    Schedule { input: ScheduleInput, output: Option<ScheduleOutput> },
}

macro_rules! kinds {
    ($($kind:ident($input:ty, $output:ty)),* $(,)?) => {
        impl TraceInput {
            pub fn kind(&self) -> TraceKind {
                match self { $(TraceInput::$kind(_) => TraceKind::$kind,)* }
            }

            /// The JSON the store keeps.
            pub fn to_json(&self) -> Value {
                match self { $(TraceInput::$kind(input) => serde_json::to_value(input),)* }.unwrap_or_default()
            }
        }

        impl TraceOutput {
            pub fn kind(&self) -> TraceKind {
                match self { $(TraceOutput::$kind(_) => TraceKind::$kind,)* }
            }

            /// The JSON the store keeps.
            pub fn to_json(&self) -> Value {
                match self { $(TraceOutput::$kind(output) => serde_json::to_value(output),)* }.unwrap_or_default()
            }
        }

        $(
            impl From<$input> for TraceInput {
                fn from(input: $input) -> Self {
                    TraceInput::$kind(input)
                }
            }

        )*

        impl Record {
            /// Read back the JSON the store kept for a trace of `kind` (`output` is null while it
            /// runs).
            pub fn decode(kind: TraceKind, input: Value, output: Value) -> Result<Record, serde_json::Error> {
                Ok(match kind {
                    $(TraceKind::$kind => Record::$kind {
                        input: serde_json::from_value(input)?,
                        output: if output.is_null() { None } else { Some(serde_json::from_value(output)?) },
                    },)*
                })
            }

            pub fn kind(&self) -> TraceKind {
                match self { $(Record::$kind { .. } => TraceKind::$kind,)* }
            }
        }
    };
}

impl From<UploadOutput> for TraceOutput {
    fn from(output: UploadOutput) -> Self {
        TraceOutput::Upload(output)
    }
}

impl From<DownloadOutput> for TraceOutput {
    fn from(output: DownloadOutput) -> Self {
        TraceOutput::Download(output)
    }
}

kinds! {
    Execution(ExecutionInput, Box<Execution>),
    Claude(ClaudeInput, ClaudeOutput),
    Upload(UploadInput, UploadOutput),
    Download(DownloadInput, DownloadOutput),
    Batch(BatchInput, BatchOutput),
    Sandbox(SandboxInput, SandboxOutput),
    Command(CommandInput, Box<Execution>),
    Cell(CellInput, Box<Execution>),
    SandboxOp(OpInput, OpOutput),
    Tool(ToolInput, ToolOutput),
    Replay(ReplayInput, ReplayOutput),
    Schedule(ScheduleInput, ScheduleOutput),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn limits() -> RunLimits {
        RunLimits {
            timeout: Duration::from_secs(10),
            memory_bytes: 1 << 28,
            cpus: 1.0,
            pids: 64,
            output_bytes: 1 << 20,
        }
    }

    #[test]
    fn what_a_writer_records_reads_back_as_the_same_record() {
        let input = ExecutionInput {
            language: Language::Python,
            code: "print(1)".into(),
            stdin: String::new(),
            env_names: vec!["K".into()],
            files: vec![FileRef { name: "a.csv".into(), size: 3 }],
            limits: limits(),
            policy_hits: Vec::new(),
            omitted_bytes: 0,
            handler: Some(HandlerInput { name: "handler".into(), event: json!({"k": ["é", null]}) }),
        };
        let output = Execution {
            handler: Some(crate::HandlerOutcome::Result(Value::Null)),
            ..Execution::empty(TraceId::new(), Status::Success)
        };
        let written = (TraceInput::from(input.clone()), TraceOutput::Execution(Box::new(output.clone())));
        assert_eq!(written.0.kind(), TraceKind::Execution);
        let read = Record::decode(TraceKind::Execution, written.0.to_json(), written.1.to_json()).unwrap();
        assert_eq!(read, Record::Execution { input, output: Some(Box::new(output)) });
    }

    #[test]
    fn a_running_trace_has_no_output_yet() {
        let input = json!({"name": "set", "items": 3, "concurrency": 2});
        let read = Record::decode(TraceKind::Batch, input, Value::Null).unwrap();
        assert!(matches!(read, Record::Batch { output: None, .. }));
    }

    #[test]
    fn outputs_of_both_endings_read_back_as_theirs() {
        let refused = json!({"error": {"code": "too_large", "message": "over"}});
        let served = json!({"name": "a.txt", "size": 1, "sha256": "ab"});
        let input = json!({"name": "a.txt", "client": null, "range": null});
        let read = Record::decode(TraceKind::Download, input.clone(), refused).unwrap();
        assert!(matches!(read, Record::Download { output: Some(DownloadOutput::Refused { .. }), .. }), "{read:?}");
        let read = Record::decode(TraceKind::Download, input, served).unwrap();
        assert!(matches!(read, Record::Download { output: Some(DownloadOutput::Served { .. }), .. }), "{read:?}");
        let failed = json!({"error": {"message": "tracebox failed: boom"}});
        let read = Record::decode(TraceKind::Claude, claude_input(), failed).unwrap();
        assert!(matches!(read, Record::Claude { output: Some(ClaudeOutput::Failed(_)), .. }), "{read:?}");
    }

    fn claude_input() -> Value {
        json!({
            "prompt": "hi", "messages": [], "system": null, "model": "m", "max_tokens": 10, "temperature": null,
            "stop_sequences": [], "stream": false, "execute": false, "language": "python",
            "limits": {"timeout": 10.0, "memory_bytes": 1, "cpus": 1.0, "pids": 1, "output_bytes": 1}, "files": [],
        })
    }

    #[test]
    fn a_record_of_the_wrong_shape_is_an_error_naming_the_field() {
        let error = Record::decode(TraceKind::Batch, json!({"name": "x"}), Value::Null).unwrap_err();
        assert!(error.to_string().contains("items"), "{error}");
    }
}
