//! The execution pipeline every door calls: policy check → sandbox run → output redaction →
//! trace. One path, so every run is screened, limited, redacted and recorded the same way.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::Instrument;

use crate::config::Config;
use crate::execution::{Execution, ExecutionRequest, Status};
use crate::policy::{Action, Filtered, Policy, PolicyHit};
use crate::sandbox::{Captured, RawOutcome, RunSpec, Sandbox, SandboxError};
use crate::trace::{EventLog, FinishedTrace, NewTrace, StoreError, TraceId, TraceStore};

/// The pipeline failed to run the program at all. The trace records why, and its id is here.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sandbox failed (Docker unreachable, image missing, …).
    #[error("{source}")]
    Sandbox { trace_id: TraceId, source: SandboxError },
    /// Every run slot stayed busy, or too many runs were already waiting for one.
    #[error("{message}; retry shortly")]
    Busy { trace_id: TraceId, message: String },
    /// The trace could not be recorded.
    #[error("recording the trace failed: {0}")]
    Store(#[from] StoreError),
    /// The run's task panicked or was cancelled.
    #[error("the run task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl RunError {
    /// The trace that records the failure, when there is one.
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
    /// One permit per run executing at once.
    slots: Semaphore,
    /// One permit per run waiting for a slot.
    waiting: Semaphore,
    /// Runs execute here, detached from the caller: a client that goes away cancels neither the
    /// container's removal nor the trace.
    runtime: tokio::runtime::Handle,
}

impl Runner {
    /// The pipeline over these services; runs execute on `runtime`.
    pub fn new(
        config: Arc<Config>,
        policy: Arc<Policy>,
        sandbox: Sandbox,
        store: TraceStore,
        runtime: tokio::runtime::Handle,
    ) -> Runner {
        let slots = Semaphore::new(config.max_concurrent_runs);
        let waiting = Semaphore::new(config.max_queued_runs);
        Runner { inner: Arc::new(Inner { config, policy, sandbox, store, slots, waiting, runtime }) }
    }

    /// The configuration the runner checks requests against.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Runs executing now.
    pub fn active_runs(&self) -> usize {
        self.inner.config.max_concurrent_runs - self.inner.slots.available_permits()
    }

    /// Runs waiting for a slot now.
    pub fn queued_runs(&self) -> usize {
        self.inner.config.max_queued_runs - self.inner.waiting.available_permits()
    }

    /// Screen, run, redact and record one program.
    pub async fn execute(&self, request: ExecutionRequest) -> Result<Execution, RunError> {
        let trace_id = TraceId::new();
        let span =
            tracing::info_span!("run", %trace_id, language = %request.language, source = request.source.as_str());
        let runner = self.clone();
        let run = async move { runner.run(trace_id, request).await };
        self.inner.runtime.spawn(run.instrument(span)).await?
    }

    async fn run(&self, trace_id: TraceId, request: ExecutionRequest) -> Result<Execution, RunError> {
        let inner = &*self.inner;
        let mut log = EventLog::start();
        let hits = inner.policy.check_input(request.language, &request.code);
        inner.store.begin(NewTrace {
            id: trace_id,
            parent_id: None,
            kind: "execution",
            source: request.source.as_str(),
            language: Some(request.language.as_str()),
            boot_id: inner.sandbox.boot_id().to_owned(),
            started_at_us: log.started_at_us(),
            input: self.trace_input(&request, &hits),
        });

        let blocking: Vec<&PolicyHit> = hits.iter().filter(|hit| hit.action == Action::Block).collect();
        if !blocking.is_empty() {
            log.record("policy.blocked", json!({ "rules": blocking.iter().map(|h| &h.rule).collect::<Vec<_>>() }));
            let message = blocked_message(&blocking);
            let execution =
                Execution { message: Some(message), policy_hits: hits, ..empty_execution(trace_id, Status::Blocked) };
            self.finish(&execution, log).await?;
            return Ok(execution);
        }
        if !hits.is_empty() {
            log.record("policy.warned", json!({ "rules": hits.iter().map(|h| &h.rule).collect::<Vec<_>>() }));
        }

        let slot = match self.admit(&mut log).await {
            Ok(slot) => slot,
            Err(message) => return Err(self.fail(RunError::Busy { trace_id, message }, log).await),
        };
        let spec = RunSpec {
            trace_id,
            language: request.language,
            code: &request.code,
            stdin: &request.stdin,
            env: &request.env,
            limits: &request.limits,
        };
        let outcome = inner.sandbox.run(spec, &mut log).await;
        drop(slot);
        let raw = match outcome {
            Ok(raw) => raw,
            Err(source) => return Err(self.fail(RunError::Sandbox { trace_id, source }, log).await),
        };
        let execution = self.conclude(trace_id, &request, raw, hits);
        self.finish(&execution, log).await?;
        tracing::info!(status = execution.status.as_str(), duration_ms = execution.duration_ms, "run finished");
        Ok(execution)
    }

    /// A run slot: at once when one is free, else after waiting in a bounded queue.
    async fn admit(&self, log: &mut EventLog) -> Result<SemaphorePermit<'_>, String> {
        let inner = &*self.inner;
        if let Ok(slot) = inner.slots.try_acquire() {
            return Ok(slot);
        }
        let Ok(_waiting) = inner.waiting.try_acquire() else {
            return Err(format!(
                "{} runs are executing and {} waiting, the most this server takes (TRACEBOX_MAX_CONCURRENT_RUNS, TRACEBOX_MAX_QUEUED_RUNS)",
                inner.config.max_concurrent_runs, inner.config.max_queued_runs
            ));
        };
        let queued = tokio::time::Instant::now();
        match tokio::time::timeout(inner.config.queue_timeout(), inner.slots.acquire()).await {
            Ok(Ok(slot)) => {
                log.record("queue.waited", json!({ "ms": queued.elapsed().as_millis() as u64 }));
                Ok(slot)
            }
            _ => Err(format!(
                "all {} run slots stayed busy for {} s (TRACEBOX_MAX_CONCURRENT_RUNS, TRACEBOX_QUEUE_TIMEOUT_SECS)",
                inner.config.max_concurrent_runs, inner.config.queue_timeout_secs
            )),
        }
    }

    /// Turn the sandbox's raw outcome into the reply: decoded, redacted, explained.
    fn conclude(
        &self,
        trace_id: TraceId,
        request: &ExecutionRequest,
        raw: RawOutcome,
        mut hits: Vec<PolicyHit>,
    ) -> Execution {
        let (status, message) = judge(&raw, request, self.config());
        let (stdout, stdout_lossy) = self.screen(raw.stdout, raw.output_limited, "stdout");
        let (stderr, stderr_lossy) = self.screen(raw.stderr, raw.output_limited, "stderr");
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
            redactions: stdout.redactions.into_iter().chain(stderr.redactions).collect(),
            policy_hits: hits,
            message,
        }
    }

    /// Decode one stream and run the output rules over it. When the limit cut it, the cut is
    /// moved back to a character boundary, and a secret cut in two is still redacted.
    fn screen(&self, captured: Captured, cut: bool, stream: &str) -> (Filtered, bool) {
        let policy = &self.inner.policy;
        if !cut {
            let (text, lossy) = decode(&captured.kept);
            return (policy.filter_output(&text, stream), lossy);
        }
        let Captured { mut kept, mut beyond } = captured;
        let split = complete_utf8_len(&kept);
        beyond.splice(0..0, kept.drain(split..));
        let (text, lossy) = decode(&kept);
        let (after, _) = decode(&beyond);
        (policy.filter_cut_output(&text, &after, stream), lossy)
    }

    /// What the trace keeps of the request: secrets redacted like output, and of the
    /// environment only the names (values are how people pass credentials).
    fn trace_input(&self, request: &ExecutionRequest, hits: &[PolicyHit]) -> Value {
        let policy = &self.inner.policy;
        json!({
            "language": request.language,
            "code": policy.redact(&request.code),
            "stdin": policy.redact(&request.stdin),
            "env_names": request.env.keys().collect::<Vec<_>>(),
            "limits": request.limits,
            "policy_hits": hits,
        })
    }

    async fn finish(&self, execution: &Execution, mut log: EventLog) -> Result<(), StoreError> {
        log.record("finished", json!({ "status": execution.status }));
        let trace = FinishedTrace {
            id: execution.trace_id,
            status: execution.status.as_str(),
            ended_at_us: log.now_us(),
            exit_code: execution.exit_code,
            output: serde_json::to_value(execution).unwrap_or_default(),
            events: log.into_events(),
        };
        self.inner.store.finish(trace).await
    }

    /// Record a run that could not happen, and hand back the error for the door.
    async fn fail(&self, error: RunError, log: EventLog) -> RunError {
        let trace_id = error.trace_id().unwrap_or_default();
        let execution =
            Execution { message: Some(error.to_string()), ..empty_execution(trace_id, Status::InternalError) };
        match self.finish(&execution, log).await {
            Ok(()) => error,
            Err(store) => RunError::Store(store),
        }
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

/// The length of `bytes` without a trailing character that was cut off mid-way.
fn complete_utf8_len(bytes: &[u8]) -> usize {
    let len = bytes.len();
    // A character is at most 4 bytes: its lead byte is among the last 3 if it is cut.
    for i in (len.saturating_sub(3)..len).rev() {
        let width = match bytes[i] {
            0x80..=0xBF => continue,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if i + width > len { i } else { len };
    }
    len
}

fn blocked_message(blocking: &[&PolicyHit]) -> String {
    let reasons: Vec<String> =
        blocking.iter().map(|hit| format!("{} (line {}): {}", hit.rule, hit.line, hit.reason)).collect();
    format!("the security policy refused this code: {}", reasons.join("; "))
}

/// The exit codes a signal can produce (128 + 1..=31); others are the program's own choice.
const SIGNAL_EXIT_CODES: std::ops::RangeInclusive<i64> = 129..=159;

/// How the run ended, and why in words when it is not a plain exit.
fn judge(raw: &RawOutcome, request: &ExecutionRequest, config: &Config) -> (Status, Option<String>) {
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
        Some(code) if SIGNAL_EXIT_CODES.contains(&code) => {
            (Status::Error, Some(format!("exit code {code}: killed by signal {}", code - 128)))
        }
        Some(_) => (Status::Error, None),
        None => (Status::InternalError, Some("the container reported no exit code".to_owned())),
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

    #[test]
    fn a_character_cut_in_half_is_left_out_not_replaced() {
        assert_eq!(complete_utf8_len("aé".as_bytes()), 3);
        assert_eq!(complete_utf8_len(&"aé".as_bytes()[..2]), 1);
        assert_eq!(complete_utf8_len(&"a🦀".as_bytes()[..4]), 1);
        assert_eq!(complete_utf8_len(b"\xff\xfeok\xc3"), 4, "earlier invalid bytes stay; the cut tail goes");
        assert_eq!(complete_utf8_len(b"ok\xff"), 3, "a trailing invalid byte is not a cut character");
    }

    fn request() -> ExecutionRequest {
        ExecutionRequest {
            language: crate::execution::Language::Python,
            code: String::new(),
            stdin: String::new(),
            env: Default::default(),
            limits: Config::defaults().run_limits(Some(2.0), Some(64)).unwrap(),
            source: crate::execution::Source::Cli,
        }
    }

    #[test]
    fn a_timeout_outranks_the_exit_code_it_caused() {
        let raw = RawOutcome { timed_out: true, exit_code: Some(137), ..RawOutcome::default() };
        let (status, message) = judge(&raw, &request(), &Config::defaults());
        assert_eq!(status, Status::Timeout);
        assert!(message.unwrap().contains("2 s timeout"));
    }

    #[test]
    fn oom_names_the_limit() {
        let raw = RawOutcome { oom_killed: true, exit_code: Some(137), ..RawOutcome::default() };
        let (status, message) = judge(&raw, &request(), &Config::defaults());
        assert_eq!(status, Status::Oom);
        assert!(message.unwrap().contains("64 MiB"));
    }

    #[test]
    fn exit_codes_map_to_success_and_error_and_only_signal_codes_name_a_signal() {
        let config = Config::defaults();
        let exit = |code| judge(&RawOutcome { exit_code: Some(code), ..RawOutcome::default() }, &request(), &config);
        assert_eq!(exit(0), (Status::Success, None));
        assert_eq!(exit(3), (Status::Error, None));
        assert_eq!(exit(139).1.as_deref(), Some("exit code 139: killed by signal 11"));
        assert_eq!(exit(200), (Status::Error, None));
        assert_eq!(exit(128), (Status::Error, None));
    }
}
