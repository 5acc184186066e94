//! The execution pipeline every door calls: policy check → sandbox run → output redaction →
//! trace. One path, so every run is screened, limited, redacted and recorded the same way.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::config::Config;
use crate::execution::{Execution, ExecutionRequest, Status};
use crate::policy::{Action, Policy, PolicyHit};
use crate::sandbox::{RawOutcome, RunSpec, Sandbox, SandboxError};
use crate::trace::{EventLog, FinishedTrace, NewTrace, StoreError, TraceId, TraceStore};

/// The pipeline failed to run the program at all. The trace records why, and its id is here.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{source}")]
    Sandbox {
        trace_id: TraceId,
        source: SandboxError,
    },
    #[error(
        "all {slots} run slots stayed busy for {waited_secs} s (TRACEBOX_MAX_CONCURRENT_RUNS, TRACEBOX_QUEUE_TIMEOUT_SECS); retry shortly"
    )]
    Busy {
        trace_id: TraceId,
        slots: usize,
        waited_secs: f64,
    },
    #[error("recording the trace failed: {0}")]
    Store(#[from] StoreError),
    #[error("the run task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl RunError {
    pub fn trace_id(&self) -> Option<TraceId> {
        match self {
            RunError::Sandbox { trace_id, .. } | RunError::Busy { trace_id, .. } => Some(*trace_id),
            RunError::Store(_) | RunError::Task(_) => None,
        }
    }
}

/// The pipeline. Cheap to clone; one per server (or CLI run).
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    policy: Arc<Policy>,
    sandbox: Sandbox,
    store: TraceStore,
    slots: Semaphore,
    /// Runs execute here, detached from the caller: a client that goes away cancels neither the
    /// container's removal nor the trace.
    runtime: tokio::runtime::Handle,
}

impl Runner {
    pub fn new(
        config: Arc<Config>,
        policy: Arc<Policy>,
        sandbox: Sandbox,
        store: TraceStore,
        runtime: tokio::runtime::Handle,
    ) -> Runner {
        let slots = Semaphore::new(config.max_concurrent_runs);
        Runner {
            inner: Arc::new(Inner {
                config,
                policy,
                sandbox,
                store,
                slots,
                runtime,
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Runs executing now.
    pub fn active_runs(&self) -> usize {
        self.inner.config.max_concurrent_runs - self.inner.slots.available_permits()
    }

    /// Screen, run, redact and record one program.
    pub async fn execute(&self, request: ExecutionRequest) -> Result<Execution, RunError> {
        let trace_id = TraceId::new();
        let span = tracing::info_span!("run", %trace_id, language = %request.language, source = request.source.as_str());
        let runner = self.clone();
        let run = async move { runner.run(trace_id, request).await };
        self.inner.runtime.spawn(run.instrument(span)).await?
    }

    async fn run(
        &self,
        trace_id: TraceId,
        request: ExecutionRequest,
    ) -> Result<Execution, RunError> {
        let inner = &*self.inner;
        let mut log = EventLog::start();
        let hits = inner.policy.check_input(request.language, &request.code);
        inner.store.begin(NewTrace {
            id: trace_id,
            parent_id: None,
            kind: "execution",
            source: request.source.as_str(),
            language: Some(request.language.as_str()),
            started_at_us: log.started_at_us(),
            input: self.trace_input(&request, &hits),
        });

        let blocking: Vec<&PolicyHit> = hits
            .iter()
            .filter(|hit| hit.action == Action::Block)
            .collect();
        if !blocking.is_empty() {
            let rules: Vec<&str> = blocking.iter().map(|hit| hit.rule.as_str()).collect();
            log.record("policy.blocked", json!({ "rules": rules }));
            let message = blocked_message(&blocking);
            let execution = Execution {
                message: Some(message),
                policy_hits: hits,
                ..empty_execution(trace_id, Status::Blocked)
            };
            self.finish(&execution, log).await?;
            return Ok(execution);
        }
        if !hits.is_empty() {
            let rules: Vec<&str> = hits.iter().map(|hit| hit.rule.as_str()).collect();
            log.record("policy.warned", json!({ "rules": rules }));
        }

        let queued = tokio::time::Instant::now();
        let Ok(Ok(_slot)) =
            tokio::time::timeout(inner.config.queue_timeout(), inner.slots.acquire()).await
        else {
            let error = RunError::Busy {
                trace_id,
                slots: inner.config.max_concurrent_runs,
                waited_secs: inner.config.queue_timeout_secs,
            };
            self.finish_failed(trace_id, &error, log).await?;
            return Err(error);
        };
        let waited = queued.elapsed();
        if waited > Duration::from_millis(1) {
            log.record("queue.waited", json!({ "ms": waited.as_millis() as u64 }));
        }

        let spec = RunSpec {
            trace_id,
            language: request.language,
            code: &request.code,
            stdin: &request.stdin,
            env: &request.env,
            limits: &request.limits,
        };
        let raw = match inner.sandbox.run(spec, &mut log).await {
            Ok(raw) => raw,
            Err(source) => {
                let error = RunError::Sandbox { trace_id, source };
                self.finish_failed(trace_id, &error, log).await?;
                return Err(error);
            }
        };
        let execution = self.conclude(trace_id, &request, raw, hits);
        self.finish(&execution, log).await?;
        tracing::info!(
            status = execution.status.as_str(),
            duration_ms = execution.duration_ms,
            "run finished"
        );
        Ok(execution)
    }

    /// Turn the sandbox's raw outcome into the reply: decoded, redacted, explained.
    fn conclude(
        &self,
        trace_id: TraceId,
        request: &ExecutionRequest,
        raw: RawOutcome,
        mut hits: Vec<PolicyHit>,
    ) -> Execution {
        let policy = &self.inner.policy;
        let (stdout, stdout_lossy) = decode(&raw.stdout);
        let (stderr, stderr_lossy) = decode(&raw.stderr);
        let stdout = policy.filter_output(&stdout, "stdout");
        let stderr = policy.filter_output(&stderr, "stderr");
        let (status, message) = judge(&raw, request, self.config());
        hits.extend(stdout.warnings);
        hits.extend(stderr.warnings);
        Execution {
            trace_id,
            status,
            exit_code: raw.exit_code,
            stdout: stdout.text,
            stderr: stderr.text,
            duration_ms: raw.duration.as_millis() as u64,
            timed_out: raw.timed_out,
            oom_killed: raw.oom_killed,
            truncated: raw.output_limited,
            invalid_utf8: stdout_lossy || stderr_lossy,
            redactions: stdout
                .redactions
                .into_iter()
                .chain(stderr.redactions)
                .collect(),
            policy_hits: hits,
            message,
        }
    }

    /// What the trace keeps of the request: secrets redacted like output.
    fn trace_input(&self, request: &ExecutionRequest, hits: &[PolicyHit]) -> Value {
        let policy = &self.inner.policy;
        let env: serde_json::Map<String, Value> = request
            .env
            .iter()
            .map(|(key, value)| (key.clone(), Value::String(policy.redact(value))))
            .collect();
        json!({
            "language": request.language,
            "code": policy.redact(&request.code),
            "stdin": policy.redact(&request.stdin),
            "env": env,
            "limits": request.limits,
            "policy_hits": hits,
        })
    }

    async fn finish(&self, execution: &Execution, mut log: EventLog) -> Result<(), StoreError> {
        log.record("finished", json!({ "status": execution.status }));
        let output = json!({
            "stdout": execution.stdout,
            "stderr": execution.stderr,
            "exit_code": execution.exit_code,
            "duration_ms": execution.duration_ms,
            "timed_out": execution.timed_out,
            "oom_killed": execution.oom_killed,
            "truncated": execution.truncated,
            "invalid_utf8": execution.invalid_utf8,
            "redactions": execution.redactions,
            "policy_hits": execution.policy_hits,
            "message": execution.message,
        });
        self.inner
            .store
            .finish(FinishedTrace {
                id: execution.trace_id,
                status: execution.status.as_str(),
                ended_at_us: log.now_us(),
                exit_code: execution.exit_code,
                output,
                events: log.into_events(),
            })
            .await
    }

    async fn finish_failed(
        &self,
        trace_id: TraceId,
        error: &RunError,
        log: EventLog,
    ) -> Result<(), StoreError> {
        tracing::warn!(%trace_id, %error, "run failed");
        let execution = Execution {
            message: Some(error.to_string()),
            ..empty_execution(trace_id, Status::InternalError)
        };
        self.finish(&execution, log).await
    }
}

fn empty_execution(trace_id: TraceId, status: Status) -> Execution {
    Execution {
        trace_id,
        status,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        duration_ms: 0,
        timed_out: false,
        oom_killed: false,
        truncated: false,
        invalid_utf8: false,
        redactions: Vec::new(),
        policy_hits: Vec::new(),
        message: None,
    }
}

/// UTF-8 text of the output; invalid bytes become U+FFFD, and the flag says it happened.
fn decode(bytes: &[u8]) -> (String, bool) {
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(text) => (text.to_owned(), false),
        Cow::Owned(text) => (text, true),
    }
}

fn blocked_message(blocking: &[&PolicyHit]) -> String {
    let reasons: Vec<String> = blocking
        .iter()
        .map(|hit| format!("{} (line {}): {}", hit.rule, hit.line, hit.reason))
        .collect();
    format!(
        "the security policy refused this code: {}",
        reasons.join("; ")
    )
}

/// How the run ended, and why in words when it is not a plain exit.
fn judge(
    raw: &RawOutcome,
    request: &ExecutionRequest,
    config: &Config,
) -> (Status, Option<String>) {
    let limits = &request.limits;
    if raw.timed_out {
        let message = format!(
            "killed after its {} s timeout (request `timeout` up to {} s); output printed before that is kept",
            limits.timeout.as_secs_f64(),
            config.max_timeout_secs
        );
        return (Status::Timeout, Some(message));
    }
    if raw.output_limited {
        let message = format!(
            "stopped after {} bytes of output, the limit (TRACEBOX_OUTPUT_LIMIT_BYTES); the output is cut there",
            limits.output_bytes
        );
        return (Status::OutputLimit, Some(message));
    }
    if raw.oom_killed {
        let message = format!(
            "killed for using more than its {} MiB memory limit (request `memory_mb` up to {})",
            limits.memory_bytes / (1024 * 1024),
            config.max_memory_mb
        );
        return (Status::Oom, Some(message));
    }
    match raw.exit_code {
        Some(0) => (Status::Success, None),
        Some(code) if code > 128 => (
            Status::Error,
            Some(format!("killed by signal {}", code - 128)),
        ),
        Some(_) => (Status::Error, None),
        None => (
            Status::InternalError,
            Some("the container reported no exit code".to_owned()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_replaced_and_flagged() {
        assert_eq!(decode(b"ok\n"), ("ok\n".to_owned(), false));
        assert_eq!(decode(b"a\xffb"), ("a\u{fffd}b".to_owned(), true));
    }

    fn request() -> ExecutionRequest {
        ExecutionRequest {
            language: crate::execution::Language::Python,
            code: String::new(),
            stdin: String::new(),
            env: Default::default(),
            limits: Config::from_env().run_limits(Some(2.0), Some(64)).unwrap(),
            source: crate::execution::Source::Cli,
        }
    }

    #[test]
    fn a_timeout_outranks_the_exit_code_it_caused() {
        let raw = RawOutcome {
            timed_out: true,
            exit_code: Some(137),
            ..RawOutcome::default()
        };
        let (status, message) = judge(&raw, &request(), &Config::from_env());
        assert_eq!(status, Status::Timeout);
        assert!(message.unwrap().contains("2 s timeout"));
    }

    #[test]
    fn oom_names_the_limit() {
        let raw = RawOutcome {
            oom_killed: true,
            exit_code: Some(137),
            ..RawOutcome::default()
        };
        let (status, message) = judge(&raw, &request(), &Config::from_env());
        assert_eq!(status, Status::Oom);
        assert!(message.unwrap().contains("64 MiB"));
    }

    #[test]
    fn exit_codes_map_to_success_and_error() {
        let config = Config::from_env();
        let exit = |code| {
            judge(
                &RawOutcome {
                    exit_code: Some(code),
                    ..RawOutcome::default()
                },
                &request(),
                &config,
            )
        };
        assert_eq!(exit(0), (Status::Success, None));
        assert_eq!(exit(3), (Status::Error, None));
        assert_eq!(exit(139).1.as_deref(), Some("killed by signal 11"));
    }
}
