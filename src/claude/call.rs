//! The loop an agent runs, as one traced step: ask Claude, and with `execute` run the code of
//! its reply through the one execution pipeline (policy included), each block a child trace.
//! Every door (`POST /claude`, the WebSocket, a batch) calls [`Claude::ask`].

use std::sync::Arc;

use futures_util::FutureExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use tracebox_model::record::{ClaudeAnswer, ClaudeFailure, ClaudeInput, ClaudeOutput, ErrorReport, FileRef, RunRef};
use tracebox_model::{
    EventLog, Execution, ExecutionRequest, InputFile, Language, RunLimits, Source, Status, TraceId, TraceInput,
    TraceOutput,
};

use super::blocks::code_blocks;
use super::client::{ClaudeError, Exchange, MessagesClient};
use super::messages::{MessagesRequest, Reply};
use super::price::PriceTable;
use super::settings::CallSettings;
use crate::policy::Policy;
use crate::runner::{RunError, Runner};
use crate::trace::{FinishedTrace, NewTrace, StoreError, TraceStore};

/// One question for Claude, as a door hands it over.
#[derive(Debug, Clone)]
pub struct Ask {
    pub request: MessagesRequest,
    /// Run the code blocks of the reply.
    pub execute: bool,
    /// The language of untagged blocks.
    pub language: Language,
    /// Limits of each block's run.
    pub limits: RunLimits,
    /// Uploaded files each block's run reads.
    pub files: Vec<InputFile>,
    pub source: Source,
    /// The trace this call belongs to (a batch).
    pub parent: Option<TraceId>,
    /// Whose the call and its runs are (see `ExecutionRequest::owner`).
    pub owner: Option<String>,
}

/// What a live door hears while a call goes on.
#[derive(Debug, Clone)]
pub enum AskEvent {
    /// Reply text as it streams in.
    Text(String),
    /// A code block of the reply has run.
    Execution(Box<Execution>),
}

/// A call that got its reply.
#[derive(Debug, Clone)]
pub struct Answer {
    pub trace_id: TraceId,
    pub reply: Reply,
    pub exchange: Exchange,
    /// US dollars, from the price table; None for a model it has no price for.
    pub cost_usd: Option<f64>,
    /// Each runnable block's run, in the order of the reply.
    pub executions: Vec<Execution>,
    /// The tags of blocks not run (```bash, ```json…).
    pub skipped_blocks: Vec<String>,
}

/// A call that got no reply. The trace records it, with every attempt.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("{error}")]
    Claude { trace_id: TraceId, error: ClaudeError },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The call's task panicked or was cancelled; its trace says so.
    #[error("the Claude call failed inside tracebox: {message}")]
    Task { trace_id: TraceId, message: String },
}

impl AskError {
    pub fn trace_id(&self) -> Option<TraceId> {
        match self {
            AskError::Claude { trace_id, .. } | AskError::Task { trace_id, .. } => Some(*trace_id),
            AskError::Store(_) => None,
        }
    }
}

/// A call under way, detached from its door.
pub struct Call {
    pub trace_id: TraceId,
    handle: tokio::task::JoinHandle<Result<Answer, AskError>>,
}

impl Call {
    /// How the call ended.
    pub async fn outcome(self) -> Result<Answer, AskError> {
        let trace_id = self.trace_id;
        self.handle.await.unwrap_or_else(|error| Err(AskError::Task { trace_id, message: error.to_string() }))
    }
}

/// The loop. Cheap to clone; one per server (or CLI).
#[derive(Clone)]
pub struct Claude {
    inner: Arc<Inner>,
}

struct Inner {
    client: MessagesClient,
    prices: PriceTable,
    settings: CallSettings,
    runner: Runner,
    policy: Arc<Policy>,
    store: TraceStore,
    boot_id: String,
}

impl Claude {
    pub fn new(
        client: MessagesClient,
        prices: PriceTable,
        settings: CallSettings,
        runner: Runner,
        policy: Arc<Policy>,
        store: TraceStore,
        boot_id: &str,
    ) -> Claude {
        let boot_id = boot_id.to_owned();
        Claude { inner: Arc::new(Inner { client, prices, settings, runner, policy, store, boot_id }) }
    }

    /// What a call takes where its question does not say (for the doors that check questions).
    pub fn settings(&self) -> &CallSettings {
        &self.inner.settings
    }

    /// Can calls be made (is there an API key)?
    pub fn configured(&self) -> bool {
        self.inner.client.has_key()
    }

    /// The pipeline that runs the code of replies.
    pub fn runner(&self) -> &Runner {
        &self.inner.runner
    }

    /// [`Claude::ask`] on the runner's runtime, detached from the door: a client that goes away
    /// cancels neither the call nor its trace, and a panic still ends the trace.
    pub fn start(&self, ask: Ask, events: Option<mpsc::UnboundedSender<AskEvent>>) -> Call {
        let trace_id = TraceId::new();
        let claude = self.clone();
        let span = tracing::info_span!("claude", %trace_id, model = %ask.request.model, source = ask.source.as_str());
        let call = async move {
            match std::panic::AssertUnwindSafe(claude.ask(trace_id, ask, events)).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "a panic".to_owned());
                    tracing::error!(%trace_id, %message, "a Claude call panicked");
                    let output = ClaudeOutput::Failed(ClaudeFailure {
                        error: ErrorReport { code: None, message: format!("tracebox failed: {message}") },
                        partial_text: None,
                        request_id: None,
                        attempts: Vec::new(),
                        latency_ms: None,
                    });
                    let log = EventLog::start();
                    if let Err(error) = claude.finish(trace_id, Status::InternalError, output, log).await {
                        tracing::error!(%trace_id, %error, "could not record the failed Claude call");
                    }
                    Err(AskError::Task { trace_id, message })
                }
            }
        };
        let handle = self.inner.runner.runtime().spawn(tracing::Instrument::instrument(call, span));
        Call { trace_id, handle }
    }

    /// Ask, record, and run the reply's code when asked; `events` hears the text as it streams
    /// and each run as it ends. The trace is finished before this returns, whatever happened.
    pub async fn ask(
        &self,
        trace_id: TraceId,
        ask: Ask,
        events: Option<mpsc::UnboundedSender<AskEvent>>,
    ) -> Result<Answer, AskError> {
        let inner = &*self.inner;
        let mut log = EventLog::start();
        inner.store.begin(NewTrace {
            id: trace_id,
            parent_id: ask.parent,
            source: ask.source,
            language: ask.execute.then_some(ask.language),
            boot_id: inner.boot_id.clone(),
            started_at_us: log.started_at_us(),
            input: self.trace_input(&ask),
            tenant: ask.owner.clone(),
        });
        let emit = |event: AskEvent| {
            if let Some(events) = &events {
                // A door that stopped listening does not stop the call.
                let _ = events.send(event);
            }
        };
        log.record("claude.request", json!({ "model": ask.request.model, "stream": ask.request.stream }));
        // What a live door was sent, kept for the record should the reply break off.
        let mut streamed = String::new();
        let mut on_text = |text: &str| {
            streamed.push_str(text);
            emit(AskEvent::Text(text.to_owned()));
        };
        let (result, exchange) = inner.client.create(&ask.request, &mut on_text).await;
        record_attempts(&exchange, &mut log);
        let reply = match result {
            Ok(reply) => reply,
            Err(error) => {
                log.record("claude.failed", json!({ "error": error.to_string() }));
                let output = ClaudeOutput::Failed(ClaudeFailure {
                    error: ErrorReport { code: None, message: error.to_string() },
                    partial_text: (!streamed.is_empty()).then(|| inner.policy.redact(&streamed)),
                    request_id: error.request_id().map(str::to_owned),
                    attempts: exchange.attempts.clone(),
                    latency_ms: Some(exchange.ms),
                });
                self.finish(trace_id, Status::Error, output, log).await?;
                return Err(AskError::Claude { trace_id, error });
            }
        };
        let cost_usd = inner.prices.estimate(&reply.model, &reply.usage);
        log.record(
            "claude.reply",
            json!({ "stop_reason": reply.stop_reason, "output_tokens": reply.usage.output_tokens, "ms": exchange.ms }),
        );
        let (executions, skipped_blocks) = if ask.execute {
            self.run_blocks(trace_id, &ask, &reply, &emit, &mut log).await
        } else {
            (Vec::new(), Vec::new())
        };
        let answer = Answer { trace_id, reply, exchange, cost_usd, executions, skipped_blocks };
        self.finish(trace_id, Status::Success, self.trace_output(&answer), log).await?;
        Ok(answer)
    }

    /// Run each runnable block of the reply, one after the other, as children of the call.
    async fn run_blocks(
        &self,
        trace_id: TraceId,
        ask: &Ask,
        reply: &Reply,
        emit: &impl Fn(AskEvent),
        log: &mut EventLog,
    ) -> (Vec<Execution>, Vec<String>) {
        let runner = &self.inner.runner;
        let allowed = runner.request_limits();
        let max_blocks = self.inner.settings.max_blocks;
        let (blocks, mut skipped) = code_blocks(&reply.text(), ask.language);
        let cut_off = reply.stop_reason.as_deref() == Some("max_tokens");
        let mut runnable = Vec::new();
        for block in blocks {
            let language = block.language.as_str();
            if !block.closed && cut_off {
                skipped.push(format!("{language} (cut off by max_tokens: it never ended)"));
            } else if block.code.len() > allowed.max_code_bytes {
                skipped.push(format!("{language} (over TRACEBOX_MAX_CODE_BYTES)"));
            } else if runnable.len() >= max_blocks {
                skipped.push(format!("{language} (over TRACEBOX_CLAUDE_MAX_BLOCKS)"));
            } else {
                runnable.push(block);
            }
        }
        log.record("code.blocks", json!({ "runnable": runnable.len(), "skipped": skipped }));
        let mut executions = Vec::new();
        for block in runnable {
            let request = ExecutionRequest {
                language: block.language,
                code: block.code,
                stdin: String::new(),
                env: Default::default(),
                limits: ask.limits.clone(),
                source: ask.source,
                files: ask.files.clone(),
                parent: Some(trace_id),
                isolation: allowed.isolation,
                tenant: None,
                owner: ask.owner.clone(),
                handler: None,
                placement: Default::default(),
            };
            let execution = runner.execute(request).await.unwrap_or_else(|error| unrun(&error));
            log.record("code.ran", json!({ "trace_id": execution.trace_id, "status": execution.status }));
            emit(AskEvent::Execution(Box::new(execution.clone())));
            executions.push(execution);
        }
        (executions, skipped)
    }

    /// What the trace keeps of the question: the text redacted like any input.
    fn trace_input(&self, ask: &Ask) -> TraceInput {
        let policy = &self.inner.policy;
        let request = &ask.request;
        TraceInput::Claude(ClaudeInput {
            prompt: last_user_text(&request.messages).map(|text| policy.redact(&text)),
            messages: redact_strings(&json!(request.messages), policy),
            system: request.system.as_ref().map(|system| redact_strings(system, policy)),
            model: request.model.clone(),
            max_tokens: u64::from(request.max_tokens),
            temperature: request.temperature,
            stop_sequences: request.stop_sequences.clone(),
            stream: request.stream,
            execute: ask.execute,
            language: ask.language,
            limits: ask.limits.clone(),
            files: ask.files.iter().map(|f| FileRef { name: f.name.clone(), size: f.size }).collect(),
        })
    }

    fn trace_output(&self, answer: &Answer) -> ClaudeOutput {
        let policy = &self.inner.policy;
        let reply = &answer.reply;
        ClaudeOutput::Answered(Box::new(ClaudeAnswer {
            text: policy.redact(&reply.text()),
            content: redact_strings(&json!(reply.content), policy),
            model: reply.model.clone(),
            message_id: reply.id.clone(),
            stop_reason: reply.stop_reason.clone(),
            stop_sequence: reply.stop_sequence.clone(),
            usage: reply.usage,
            cost_usd: answer.cost_usd,
            request_id: answer.exchange.request_id.clone(),
            attempts: answer.exchange.attempts.clone(),
            retries: answer.exchange.retries(),
            latency_ms: answer.exchange.ms,
            ttft_ms: answer.exchange.ttft_ms,
            executions: answer
                .executions
                .iter()
                .map(|e| RunRef { trace_id: e.trace_id, status: e.status, exit_code: e.exit_code })
                .collect(),
            skipped_blocks: answer.skipped_blocks.clone(),
        }))
    }

    async fn finish(
        &self,
        id: TraceId,
        status: Status,
        output: ClaudeOutput,
        mut log: EventLog,
    ) -> Result<(), StoreError> {
        log.record("finished", json!({ "status": status }));
        let ended_at_us = log.now_us();
        let output = TraceOutput::Claude(output);
        let trace = FinishedTrace { id, status, ended_at_us, exit_code: None, output, events: log.into_events() };
        self.inner.store.finish(trace).await
    }
}

/// Every attempt that failed, and how long the client waited after it.
fn record_attempts(exchange: &Exchange, log: &mut EventLog) {
    for (number, attempt) in exchange.attempts.iter().enumerate() {
        if attempt.error.is_some() {
            log.record(
                "claude.attempt_failed",
                json!({ "attempt": number + 1, "status": attempt.status, "error": attempt.error, "waited_ms": attempt.waited_ms }),
            );
        }
    }
    if let Some(ttft) = exchange.ttft_ms {
        log.record("claude.first_text", json!({ "ms": ttft }));
    }
}

/// A block that could not run (the engine is gone, every slot stayed busy): its trace says why
/// (none, when even the trace failed).
fn unrun(error: &RunError) -> Execution {
    Execution {
        message: Some(error.to_string()),
        ..Execution::empty(error.trace_id().unwrap_or_default(), Status::InternalError)
    }
}

/// The text of the last user turn: what a list shows and a search finds.
fn last_user_text(messages: &[Value]) -> Option<String> {
    let message = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    match message.get("content")? {
        Value::String(text) => Some(text.clone()),
        Value::Array(blocks) => {
            let texts: Vec<&str> = blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
            Some(texts.join("\n"))
        }
        _ => None,
    }
}

/// `value` with every string passed through the output rules (secrets in prompts stay out of
/// the trace).
fn redact_strings(value: &Value, policy: &Policy) -> Value {
    match value {
        Value::String(text) => Value::String(policy.redact(text)),
        Value::Array(items) => Value::Array(items.iter().map(|item| redact_strings(item, policy)).collect()),
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(key, item)| (key.clone(), redact_strings(item, policy))).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_the_last_user_turn_in_either_shape() {
        let messages = [
            json!({"role": "user", "content": "first"}),
            json!({"role": "assistant", "content": "ok"}),
            json!({"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image"}]}),
        ];
        assert_eq!(last_user_text(&messages).as_deref(), Some("second"));
        assert_eq!(last_user_text(&[json!({"role": "assistant", "content": "x"})]), None);
    }
}
