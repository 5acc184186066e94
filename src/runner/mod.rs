//! The execution pipeline every door calls: policy check → sandbox run → output redaction →
//! trace. One path, so every run is screened, limited, redacted and recorded the same way,
//! whether its door waits for the end (`/execute`) or follows it live (WebSocket, CLI).

mod handler;
mod screen;
mod settings;
mod turn;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use tracebox_model::record::{ExecutionInput, FileRef};
use tracebox_model::sandbox::{CellInput, CommandInput};
use tracebox_model::{
    Action, EventLog, Execution, ExecutionRequest, Omitted, OutputStream, PolicyHit, RunEvent, Status, TraceId,
    TraceInput, TraceKind, TraceOutput,
};

use crate::files::{ArtifactReport, Files};
use crate::nodes::{Nodes, NodesError, Placed};
use crate::policy::Policy;
use crate::sandbox::{
    ArtifactsCut, Chunk, CommandLine, RawOutcome, RunIo, RunSpec, Sandbox, SandboxError, Session, Step, StepProgram,
};
use crate::submission::RequestLimits;
use crate::trace::{self, FinishedTrace, NewTrace, StoreError, TraceStore};
use screen::StreamScreen;

pub use settings::RunnerSettings;

/// Bytes of code, and of stdin, that the trace of a request refused before it ran keeps (its
/// start, cut back to a character boundary). Such a refusal costs the client nothing of the
/// sandbox, so a loop of them could otherwise write whole requests to the store as fast as
/// they arrive (79 MB/s measured); the start is what a reader needs to see what was refused.
pub const REFUSED_KEPT_BYTES: usize = 4096;

/// How long a live run's output may sit unreleased for want of a line end (a prompt printed
/// before `input()`): after this quiet spell it goes to the client anyway.
const IDLE_FLUSH: Duration = Duration::from_millis(50);

/// Chunks of output (up to 64 KiB each) waiting between the sandbox and the screen, and events
/// waiting for a live door: bounded, so a reader that falls behind slows the program down
/// (through its pipes) instead of the server holding its output in memory.
const CHUNK_QUEUE: usize = 16;
const EVENT_QUEUE: usize = 64;

/// The pipeline failed to run the program at all. The trace records why, and its id is here.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sandbox failed (Docker unreachable, image missing, …).
    #[error("{source}")]
    Sandbox { trace_id: TraceId, source: SandboxError },
    /// No node could take it: none carries its labels, none that does is up, or they stayed full.
    #[error("{source}")]
    Placement { trace_id: TraceId, source: NodesError },
    /// Every run slot stayed busy, or too many runs were already waiting for one.
    #[error("{message}; retry shortly")]
    Busy { trace_id: TraceId, message: String },
    /// The trace could not be recorded.
    #[error("recording the trace failed: {0}")]
    Store(#[from] StoreError),
    /// The run's task was cancelled (its runtime shut down).
    #[error("the run task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The run panicked: a bug of tracebox's. Its trace was ended as `internal_error` at once.
    #[error("the run failed inside tracebox: {message}")]
    Panicked { trace_id: TraceId, message: String },
}

impl RunError {
    /// The trace that records the failure, when there is one.
    pub fn trace_id(&self) -> Option<TraceId> {
        match self {
            RunError::Sandbox { trace_id, .. }
            | RunError::Placement { trace_id, .. }
            | RunError::Busy { trace_id, .. }
            | RunError::Panicked { trace_id, .. } => Some(*trace_id),
            RunError::Store(_) | RunError::Task(_) => None,
        }
    }
}

/// A run in progress, for a door that follows it live.
pub struct LiveRun {
    pub trace_id: TraceId,
    /// `Started`, then output as the program writes it; ends when the run does.
    pub events: mpsc::Receiver<RunEvent>,
    /// Feeds the run's stdin and stops it.
    pub control: RunControl,
    /// How the run ended, once it has. Dropping it does not stop the run.
    pub outcome: JoinHandle<Result<Execution, RunError>>,
}

/// Talks to a live run: more stdin, end of stdin, kill. Dropping it closes stdin; it never
/// stops the run (call [`RunControl::kill`] for that).
pub struct RunControl {
    stdin: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// Bytes of stdin the run may still be sent, and may be sent in all (TRACEBOX_MAX_STDIN_BYTES).
    stdin_room: usize,
    stdin_limit: usize,
    kill: CancellationToken,
}

/// Stdin a live run cannot take.
#[derive(Debug, thiserror::Error)]
pub enum StdinError {
    #[error("stdin of this run is closed (it was closed by an `eof`, or the run has ended)")]
    Closed,
    #[error("this would take the run's stdin past {limit} bytes in all (TRACEBOX_MAX_STDIN_BYTES)")]
    TooLarge { limit: usize },
}

impl RunControl {
    /// Send more stdin to the program.
    pub fn send_stdin(&mut self, data: &str) -> Result<(), StdinError> {
        let stdin = self.stdin.as_ref().ok_or(StdinError::Closed)?;
        if data.len() > self.stdin_room {
            return Err(StdinError::TooLarge { limit: self.stdin_limit });
        }
        stdin.send(data.as_bytes().to_vec()).map_err(|_| StdinError::Closed)?;
        self.stdin_room -= data.len();
        Ok(())
    }

    /// Close the program's stdin: it reads end of file.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Stop the run: its container is killed and its trace ends `killed`.
    pub fn kill(&self) {
        self.kill.cancel();
    }
}

/// The channels between a run and its door, and where it runs.
struct Channels {
    events: Option<mpsc::Sender<RunEvent>>,
    stdin: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    kill: CancellationToken,
    place: Place,
}

/// Where a run runs.
#[derive(Clone, Default)]
pub enum Place {
    /// A container of its own, warm or made for it: a program (`/execute`, the WebSocket, the
    /// CLI, a batch, a reply's code).
    #[default]
    Container,
    /// A step in a stateful sandbox: the request's `code` is the command (`bash -c`) or the
    /// cell, its `env` the command's own, its `parent` the sandbox's trace. `held` is let go
    /// when the run ends, whoever follows it or stops following it: the sandbox's step slot.
    Sandbox { session: Session, sandbox_id: String, step: StepKind, held: Held },
}

/// What a run keeps until it ends.
pub type Held = Arc<dyn std::any::Any + Send + Sync>;

/// What a step in a sandbox is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// A command (`bash -c` the request's code), run in `cwd` (relative to /workspace; by
    /// default /workspace itself); with `merged`, its stderr comes as stdout, in the order
    /// written (what an agent's shell tool reads).
    Command { cwd: Option<String>, merged: bool },
    /// A program of tracebox's own making, `argv` (a tool's `git` or `rg`), stdout and stderr
    /// merged: the request's code is only its readable form. Not screened by the policy, whose
    /// rules are for code: its arguments are data, checked by the tool that made it.
    Program { argv: Vec<String>, cwd: Option<String> },
    /// A cell for the sandbox's kernel.
    Cell,
}

impl Place {
    /// How long a request for a run here may ask to take, in words.
    fn most_time(&self, allowed: &RequestLimits) -> String {
        match self {
            Place::Container => format!("up to {} s", allowed.max_timeout_secs),
            Place::Sandbox { .. } => "up to TRACEBOX_SANDBOX_MAX_STEP_TIMEOUT_SECS".to_owned(),
        }
    }

    /// What the trace of a run here is.
    fn kind(&self) -> TraceKind {
        match self {
            Place::Container => TraceKind::Execution,
            Place::Sandbox { step: StepKind::Command { .. } | StepKind::Program { .. }, .. } => TraceKind::Command,
            Place::Sandbox { step: StepKind::Cell, .. } => TraceKind::Cell,
        }
    }
}

/// The pipeline. Cheap to clone; one per server (or CLI run).
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RunnerSettings,
    policy: Arc<Policy>,
    nodes: Nodes,
    store: TraceStore,
    /// Where artifacts are stored.
    files: Files,
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
        settings: RunnerSettings,
        policy: Arc<Policy>,
        nodes: Nodes,
        store: TraceStore,
        files: Files,
        runtime: tokio::runtime::Handle,
    ) -> Runner {
        let slots = Semaphore::new(settings.max_concurrent_runs);
        let waiting = Semaphore::new(settings.max_queued_runs);
        Runner { inner: Arc::new(Inner { settings, policy, nodes, store, files, slots, waiting, runtime }) }
    }

    /// Where runs (and Claude calls) execute, detached from their doors.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    /// The limits every door checks a request against before handing it over.
    pub fn request_limits(&self) -> &RequestLimits {
        &self.inner.settings.requests
    }

    /// Runs executing now.
    pub fn active_runs(&self) -> usize {
        self.inner.settings.max_concurrent_runs - self.inner.slots.available_permits()
    }

    /// Runs waiting for a slot now.
    pub fn queued_runs(&self) -> usize {
        self.inner.settings.max_queued_runs - self.inner.waiting.available_permits()
    }

    /// Screen, run, redact and record one program; answers when it has ended.
    pub async fn execute(&self, request: ExecutionRequest) -> Result<Execution, RunError> {
        self.execute_in(request, Place::Container).await
    }

    /// [`Runner::execute`], at `place`.
    pub async fn execute_in(&self, request: ExecutionRequest, place: Place) -> Result<Execution, RunError> {
        let channels = Channels { events: None, stdin: None, kill: CancellationToken::new(), place };
        self.spawn(TraceId::new(), request, channels).await?
    }

    /// Start one program through the same pipeline and follow it live: output as it comes,
    /// stdin while it runs (kept open after the request's own stdin when `keep_stdin_open`),
    /// a kill switch.
    pub fn start(&self, request: ExecutionRequest, keep_stdin_open: bool) -> LiveRun {
        self.start_in(request, Place::Container, keep_stdin_open)
    }

    /// [`Runner::start`], at `place`.
    pub fn start_in(&self, request: ExecutionRequest, place: Place, keep_stdin_open: bool) -> LiveRun {
        let trace_id = TraceId::new();
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
        let kill = CancellationToken::new();
        let stdin_limit = self.request_limits().max_stdin_bytes;
        let stdin_room = stdin_limit.saturating_sub(request.stdin.len());
        let control =
            RunControl { stdin: keep_stdin_open.then_some(stdin_tx), stdin_room, stdin_limit, kill: kill.clone() };
        let channels = Channels { events: Some(events_tx), stdin: keep_stdin_open.then_some(stdin_rx), kill, place };
        let outcome = self.spawn(trace_id, request, channels);
        LiveRun { trace_id, events, control, outcome }
    }

    /// Runs execute on the runner's own runtime, detached from the door: a client that goes
    /// away cancels neither the container's removal nor the trace, and a run that panics ends
    /// its trace as `internal_error` at once.
    fn spawn(
        &self,
        trace_id: TraceId,
        request: ExecutionRequest,
        channels: Channels,
    ) -> JoinHandle<Result<Execution, RunError>> {
        let span =
            tracing::info_span!("run", %trace_id, language = %request.language, source = request.source.as_str());
        let runner = self.clone();
        let run = async move {
            let store = runner.inner.store.clone();
            let work = runner.run(trace_id, request, channels);
            match trace::ending_on_panic(&store, trace_id, work, |message| panicked(trace_id, message)).await {
                Ok(outcome) => outcome,
                Err(trace::Panicked { message }) => Err(RunError::Panicked { trace_id, message }),
            }
        };
        self.inner.runtime.spawn(run.instrument(span))
    }

    async fn run(
        &self,
        trace_id: TraceId,
        request: ExecutionRequest,
        channels: Channels,
    ) -> Result<Execution, RunError> {
        let inner = &*self.inner;
        let Channels { events, stdin, kill, place } = channels;
        let kind = place.kind();
        let mut log = EventLog::start();
        let hits = match &place {
            Place::Sandbox { step: StepKind::Command { .. }, .. } => inner.policy.check_command(&request.code),
            Place::Sandbox { step: StepKind::Program { .. }, .. } => Vec::new(),
            Place::Container | Place::Sandbox { step: StepKind::Cell, .. } => {
                inner.policy.check_input(request.language, &request.code)
            }
        };
        let blocking: Vec<&PolicyHit> = hits.iter().filter(|hit| hit.action == Action::Block).collect();
        let keep = if blocking.is_empty() { Keep::Whole } else { Keep::Start };
        inner.store.begin(NewTrace {
            id: trace_id,
            parent_id: request.parent,
            source: request.source,
            language: Some(request.language),
            boot_id: inner.nodes.boot_id().to_owned(),
            started_at_us: log.started_at_us(),
            input: self.trace_input(&request, &hits, &place, keep),
            tenant: request.owner.clone(),
        });

        if !blocking.is_empty() {
            log.record("policy.blocked", json!({ "rules": blocking.iter().map(|h| &h.rule).collect::<Vec<_>>() }));
            let message = blocked_message(&blocking);
            let execution =
                Execution { message: Some(message), policy_hits: hits, ..Execution::empty(trace_id, Status::Blocked) };
            self.finish(&execution, kind, log).await?;
            return Ok(execution);
        }
        if !hits.is_empty() {
            log.record("policy.warned", json!({ "rules": hits.iter().map(|h| &h.rule).collect::<Vec<_>>() }));
        }

        let wait_until = tokio::time::Instant::now() + inner.settings.queue_timeout;
        let queued = async {
            match &place {
                Place::Container => {
                    let placed = self.place(&request, wait_until, &Placed::default(), &mut log).await;
                    placed.map(|(node, slot)| (Some(node), slot))
                }
                Place::Sandbox { .. } => self.admit(wait_until, &mut log).await.map(|slot| (None, Some(slot))),
            }
        };
        let turn = tokio::select! {
            turn = queued => turn,
            () = kill.cancelled() => {
                log.record("killed", json!({ "by": "client", "while": "queued" }));
                let execution = Execution { message: Some(KILLED.to_owned()), ..Execution::empty(trace_id, Status::Killed) };
                self.finish(&execution, kind, log).await?;
                return Ok(execution);
            }
        };
        let (node, mut slot) = match turn {
            Ok(admitted) => admitted,
            Err(message) => {
                self.forget_all_but_the_start(trace_id, &request, &hits, &place);
                return Err(self.fail(RunError::Busy { trace_id, message }, kind, log, None).await);
            }
        };
        let (chunks_tx, chunks) = mpsc::channel(CHUNK_QUEUE);
        let (started_tx, started) = oneshot::channel();
        let mut screens = Screens::new(&inner.policy, events);
        let mut placed = Placed::default();
        let (outcome, receiving) = match &place {
            Place::Container => {
                let spec = RunSpec {
                    trace_id,
                    language: request.language,
                    code: &request.code,
                    stdin: &request.stdin,
                    env: &request.env,
                    limits: &request.limits,
                    files: &request.files,
                    isolation: request.isolation,
                    // With keys, a tenant's recycled containers are its own whatever it asked.
                    tenant: request.owner.as_deref().or(request.tenant.as_deref()),
                    wait_until,
                    handler: request.handler.as_ref(),
                };
                let (sink, receiving) = inner.files.receive_artifacts(trace_id, Arc::clone(&inner.policy));
                let io = RunIo {
                    output: chunks_tx,
                    stdin,
                    kill,
                    started: Some(started_tx),
                    artifacts: sink.tar,
                    artifacts_budget: sink.budget,
                };
                let Some(node) = node else { unreachable!("a run in a container reserved its node above") };
                let ran = self.run_placed(node, &mut slot, &spec, &request, io, &mut log);
                let ((ran, was_placed), ()) = tokio::join!(ran, screens.follow(chunks, started));
                placed = was_placed;
                (ran, Some(receiving))
            }
            Place::Sandbox { session, step, .. } => {
                // What a step leaves stays in the sandbox's /workspace: no artifacts come back.
                let io = RunIo {
                    output: chunks_tx,
                    stdin,
                    kill,
                    started: Some(started_tx),
                    artifacts: mpsc::channel(1).0,
                    artifacts_budget: 0,
                };
                let step = match step {
                    StepKind::Command { cwd, merged } => Step::Command {
                        line: CommandLine::Shell(&request.code),
                        cwd: cwd.as_deref(),
                        env: &request.env,
                        merged: *merged,
                    },
                    StepKind::Program { argv, cwd } => Step::Command {
                        line: CommandLine::Argv(argv),
                        cwd: cwd.as_deref(),
                        env: &request.env,
                        merged: true,
                    },
                    StepKind::Cell => Step::Cell { code: &request.code },
                };
                let limits = &request.limits;
                let program =
                    StepProgram { stdin: &request.stdin, timeout: limits.timeout, output_bytes: limits.output_bytes };
                let ran = Sandbox::run_step(session, step, program, io, &mut log);
                (tokio::join!(ran, screens.follow(chunks, started)).0.map_err(NodesError::from), None)
            }
        };
        drop(slot);
        let artifacts = match receiving {
            Some(receiving) => receiving.finish().await,
            None => ArtifactReport::default(),
        };
        let mut raw = match outcome {
            Ok(raw) => raw,
            Err(failure) => {
                let nothing_ran = match &failure {
                    NodesError::Sandbox(source) => source.is_busy() || source.is_unavailable(),
                    _ => true,
                };
                if nothing_ran && placed.attempts.is_empty() {
                    // Nothing of it ran: a refusal, as cheap to repeat as a blocked one.
                    self.forget_all_but_the_start(trace_id, &request, &hits, &place);
                }
                // The failed trace lists no artifacts, so none are kept.
                inner.files.discard_artifacts(trace_id).await;
                // What a live client already saw stays on the record, with what was held.
                screens.finish(&RawOutcome::default()).await;
                let output = (screens.stdout.into_screened().0.text, screens.stderr.into_screened().0.text);
                let error = match failure {
                    NodesError::Sandbox(source) => RunError::Sandbox { trace_id, source },
                    source => RunError::Placement { trace_id, source },
                };
                return Err(self.fail(error, kind, log, Some(output)).await);
            }
        };
        screens.finish(&raw).await;
        record_artifacts(&artifacts, &mut log);
        let judged = judge(&raw, &request, self.request_limits(), &place.most_time(self.request_limits()));
        let (judged, called) = match &request.handler {
            Some(_) => {
                let (judged, called) = handler::judge(judged, raw.handler.take(), raw.exit_code);
                (judged, Some(called))
            }
            None => (judged, None),
        };
        let mut execution = self.conclude(trace_id, judged, raw, screens, hits, artifacts);
        execution.node = placed.node;
        execution.attempts = placed.attempts;
        if let Some(called) = called {
            let (called, redactions) = handler::screen(&inner.policy, called);
            execution.redactions.extend(redactions);
            execution.handler = Some(called);
        }
        self.finish(&execution, kind, log).await?;
        tracing::info!(status = execution.status.as_str(), duration_ms = execution.duration_ms, "run finished");
        Ok(execution)
    }

    /// Turn the sandbox's raw outcome, how it was judged and the screened output into the reply.
    fn conclude(
        &self,
        trace_id: TraceId,
        (status, message): (Status, Option<String>),
        raw: RawOutcome,
        screens: Screens<'_>,
        mut hits: Vec<PolicyHit>,
        artifacts: ArtifactReport,
    ) -> Execution {
        let (stdout, stdout_lossy) = screens.stdout.into_screened();
        let (stderr, stderr_lossy) = screens.stderr.into_screened();
        hits.extend(stdout.warnings);
        hits.extend(stderr.warnings);
        let artifacts_omitted = omissions(&artifacts, raw.artifacts_cut);
        let (cell, cell_redactions) = match raw.cell.clone() {
            Some(cell) => {
                let (cell, redactions) = screen_cell(&self.inner.policy, cell);
                (Some(cell), redactions)
            }
            None => (None, Vec::new()),
        };
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
                .chain(artifacts.redactions)
                .chain(cell_redactions)
                .collect(),
            policy_hits: hits,
            message,
            artifacts_omitted,
            artifacts: artifacts.stored,
            cell,
            node: None,
            attempts: Vec::new(),
            handler: None,
        }
    }

    /// What the trace keeps of the request: secrets redacted like output, and of the
    /// environment only the names (values are how people pass credentials). A request refused
    /// before it ran keeps only the start of its code and stdin, cut after redaction so that no
    /// cut can split a secret out of a rule's reach.
    fn trace_input(&self, request: &ExecutionRequest, hits: &[PolicyHit], place: &Place, keep: Keep) -> TraceInput {
        let policy = &self.inner.policy;
        let (code, code_omitted) = keep.apply(policy.redact(&request.code));
        let (stdin, stdin_omitted) = keep.apply(policy.redact(&request.stdin));
        let omitted_bytes = code_omitted + stdin_omitted;
        let env_names = request.env.keys().cloned().collect();
        let (limits, policy_hits) = (request.limits.clone(), hits.to_vec());
        match place {
            Place::Container => TraceInput::Execution(ExecutionInput {
                language: request.language,
                code,
                stdin,
                env_names,
                files: request.files.iter().map(|f| FileRef { name: f.name.clone(), size: f.size }).collect(),
                limits,
                policy_hits,
                omitted_bytes,
                handler: request.handler.as_ref().map(|call| handler::record(policy, call)),
            }),
            Place::Sandbox {
                sandbox_id, step: StepKind::Command { cwd, .. } | StepKind::Program { cwd, .. }, ..
            } => TraceInput::Command(CommandInput {
                sandbox_id: sandbox_id.clone(),
                cmd: code,
                cwd: cwd.clone(),
                env_names,
                stdin,
                limits,
                policy_hits,
                omitted_bytes,
            }),
            Place::Sandbox { sandbox_id, step: StepKind::Cell, .. } => TraceInput::Cell(CellInput {
                sandbox_id: sandbox_id.clone(),
                language: request.language,
                code,
                limits,
                policy_hits,
                omitted_bytes,
            }),
        }
    }

    /// A run refused once its trace began with the whole request (busy, no engine): the trace
    /// keeps only the start of its code and stdin, as a blocked one does. Queued before the
    /// trace's end, so committed with it at the latest.
    fn forget_all_but_the_start(
        &self,
        trace_id: TraceId,
        request: &ExecutionRequest,
        hits: &[PolicyHit],
        place: &Place,
    ) {
        self.inner.store.replace_input(trace_id, self.trace_input(request, hits, place, Keep::Start));
    }

    async fn finish(&self, execution: &Execution, kind: TraceKind, mut log: EventLog) -> Result<(), StoreError> {
        log.record("finished", json!({ "status": execution.status }));
        let output = Box::new(execution.clone());
        let output = match kind {
            TraceKind::Command => TraceOutput::Command(output),
            TraceKind::Cell => TraceOutput::Cell(output),
            _ => TraceOutput::Execution(output),
        };
        let trace = FinishedTrace {
            id: execution.trace_id,
            status: execution.status,
            ended_at_us: log.now_us(),
            exit_code: execution.exit_code,
            output,
            events: log.into_events(),
        };
        self.inner.store.finish(trace).await
    }

    /// Record a run that could not happen, and hand back the error for the door.
    /// `output` is the stdout and stderr the program wrote before tracebox failed, if it ran.
    async fn fail(
        &self,
        error: RunError,
        kind: TraceKind,
        log: EventLog,
        output: Option<(String, String)>,
    ) -> RunError {
        let trace_id = error.trace_id().unwrap_or_default();
        let (stdout, stderr) = output.unwrap_or_default();
        let execution = Execution {
            message: Some(error.to_string()),
            stdout,
            stderr,
            ..Execution::empty(trace_id, Status::InternalError)
        };
        match self.finish(&execution, kind, log).await {
            Ok(()) => error,
            Err(store) => RunError::Store(store),
        }
    }
}

/// How much of a request's code and stdin its trace keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// A run that ran: all of it (bounded by TRACEBOX_MAX_CODE_BYTES and _STDIN_BYTES).
    Whole,
    /// A request refused before it ran: [`REFUSED_KEPT_BYTES`] of each.
    Start,
}

impl Keep {
    /// `text` as kept, and how many of its bytes were left out.
    fn apply(self, mut text: String) -> (String, u64) {
        if self == Keep::Whole || text.len() <= REFUSED_KEPT_BYTES {
            return (text, 0);
        }
        let cut = tracebox_model::text::head(&text, REFUSED_KEPT_BYTES).len();
        let omitted = (text.len() - cut) as u64;
        text.truncate(cut);
        (text, omitted)
    }
}

/// Note in the timeline what came back of `/workspace/out/`, when anything was there.
fn record_artifacts(artifacts: &ArtifactReport, log: &mut EventLog) {
    if artifacts.stored.is_empty() && artifacts.omitted_count == 0 && artifacts.error.is_none() {
        return;
    }
    let mut detail = json!({
        "files": artifacts.stored.len(),
        "bytes": artifacts.stored.iter().map(|a| a.size).sum::<u64>(),
        "omitted": artifacts.omitted_count,
    });
    if let Some(error) = &artifacts.error {
        detail["error"] = json!(error);
    }
    log.record("artifacts.stored", detail);
}

/// Every file of `/workspace/out/` that did not come back, as the reply names them: those left
/// out one by one, how many more, and the part of the archive that never arrived.
fn omissions(artifacts: &ArtifactReport, cut: Option<ArtifactsCut>) -> Vec<Omitted> {
    let mut omitted = artifacts.omitted.clone();
    let unnamed = artifacts.omitted_count - artifacts.omitted.len();
    if unnamed > 0 {
        omitted.push(Omitted { name: "out/".to_owned(), reason: format!("{unnamed} more files were left out") });
    }
    let missing = match cut {
        Some(ArtifactsCut::Late) => Some(format!(
            "the rest of out/ did not arrive within {} s of the program's end",
            crate::sandbox::ARTIFACTS_GRACE.as_secs()
        )),
        Some(ArtifactsCut::Killed) => Some("the rest of out/ was not taken: the run was stopped by its client".into()),
        Some(ArtifactsCut::OutputLimit) => {
            Some("the rest of out/ was not taken: output after the program's end passed the output limit".into())
        }
        Some(ArtifactsCut::TooLarge) => {
            Some("the rest of out/ was not taken: more came than the artifact limits allow".into())
        }
        None => artifacts.error.clone(),
    };
    if let Some(reason) = missing {
        omitted.push(Omitted { name: "out/".to_owned(), reason });
    }
    omitted
}

/// Output of both streams, screened as it comes and passed on to a live door.
struct Screens<'a> {
    policy: &'a Policy,
    stdout: StreamScreen,
    stderr: StreamScreen,
    events: Option<mpsc::Sender<RunEvent>>,
}

impl<'a> Screens<'a> {
    fn new(policy: &'a Policy, events: Option<mpsc::Sender<RunEvent>>) -> Screens<'a> {
        Screens { policy, stdout: StreamScreen::new("stdout"), stderr: StreamScreen::new("stderr"), events }
    }

    /// Screen output until the run's output ends. A live door hears `Started` first, and text
    /// held for want of a line end once the program has been quiet for [`IDLE_FLUSH`].
    async fn follow(&mut self, mut chunks: mpsc::Receiver<Chunk>, started: oneshot::Receiver<()>) {
        if started.await.is_ok() {
            self.emit(RunEvent::Started).await;
        }
        loop {
            let holding = self.stdout.wants_flush() || self.stderr.wants_flush();
            let next = match &self.events {
                Some(_) if holding => tokio::time::timeout(IDLE_FLUSH, chunks.recv()).await,
                _ => Ok(chunks.recv().await),
            };
            match next {
                Ok(Some(Chunk::Stdout(bytes))) => {
                    let text = self.stdout.push(self.policy, &bytes);
                    self.emit_output(OutputStream::Stdout, text).await;
                }
                Ok(Some(Chunk::Stderr(bytes))) => {
                    let text = self.stderr.push(self.policy, &bytes);
                    self.emit_output(OutputStream::Stderr, text).await;
                }
                Ok(None) => return,
                Err(_quiet) => {
                    let text = self.stdout.flush(self.policy);
                    self.emit_output(OutputStream::Stdout, text).await;
                    let text = self.stderr.flush(self.policy);
                    self.emit_output(OutputStream::Stderr, text).await;
                }
            }
        }
    }

    /// The output ended: release what is left, cut where the output limit cut it.
    async fn finish(&mut self, raw: &RawOutcome) {
        let text = self.stdout.finish(self.policy, raw.output_limited.then_some(raw.stdout_beyond.as_slice()));
        self.emit_output(OutputStream::Stdout, text).await;
        let text = self.stderr.finish(self.policy, raw.output_limited.then_some(raw.stderr_beyond.as_slice()));
        self.emit_output(OutputStream::Stderr, text).await;
    }

    async fn emit_output(&self, stream: OutputStream, text: Option<String>) {
        if let Some(text) = text {
            self.emit(RunEvent::Output { stream, text }).await;
        }
    }

    /// Tell a live door; waits while it is behind (a door that goes away stops nothing: its
    /// client was slow for too long, or left, and the run ends and is recorded all the same).
    async fn emit(&self, event: RunEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event).await;
        }
    }
}

/// The record of a run that panicked.
fn panicked(trace_id: TraceId, message: &str) -> TraceOutput {
    let message = format!("tracebox failed while running this program (a bug of tracebox's): {message}");
    TraceOutput::Execution(Box::new(Execution {
        message: Some(message),
        ..Execution::empty(trace_id, Status::InternalError)
    }))
}

/// Why a killed run ended, in words.
const KILLED: &str = "stopped by its client (a `kill` message, or the connection closed)";

/// Why code was refused, framed as what the policy is: a screen of patterns over the source that
/// refuses the obvious early and cannot see everything (`__import__('sub'+'process')` passes it),
/// so the refusal must not read as the enforcement. The container is what holds every run.
fn blocked_message(blocking: &[&PolicyHit]) -> String {
    let reasons: Vec<String> =
        blocking.iter().map(|hit| format!("{} (line {}): {}", hit.rule, hit.line, hit.reason)).collect();
    format!(
        "refused by the policy's screen, which looks for known patterns in the code before it runs and cannot see \
         everything a program can do: {}. The screen is not the wall: every run that passes it is held by its \
         container (no network, no capabilities, a read-only root, limits on time, memory, CPU, processes and \
         output; see \"What the container guarantees\" in docs/security.md)",
        reasons.join("; ")
    )
}

/// A cell's result and error, redacted as output is: a value a cell computed is output too.
fn screen_cell(
    policy: &Policy,
    mut cell: tracebox_model::record::CellOutcome,
) -> (tracebox_model::record::CellOutcome, Vec<tracebox_model::Redaction>) {
    let mut redactions = Vec::new();
    let mut screen = |text: &mut String, stream: &str| {
        let filtered = policy.filter_output(text, stream);
        *text = filtered.text;
        redactions.extend(filtered.redactions);
    };
    if let Some(result) = cell.result.as_mut() {
        screen(result, "result");
    }
    if let Some(error) = cell.error.as_mut() {
        screen(&mut error.name, "error");
        screen(&mut error.value, "error");
        screen(&mut error.traceback, "error");
    }
    (cell, redactions)
}

/// The exit codes a signal can produce (128 + 1..=31); others are the program's own choice.
const SIGNAL_EXIT_CODES: std::ops::RangeInclusive<i64> = 129..=159;

/// How the run ended, and why in words when it is not a plain exit.
/// `most_time` says how long a request could have asked for (`up to 60 s`).
fn judge(
    raw: &RawOutcome,
    request: &ExecutionRequest,
    allowed: &RequestLimits,
    most_time: &str,
) -> (Status, Option<String>) {
    let limits = &request.limits;
    if raw.timed_out {
        let message = format!(
            "killed after its {} s timeout (request `timeout` {most_time}); output printed before that is kept",
            limits.timeout.as_secs_f64(),
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
    if raw.killed {
        return (Status::Killed, Some(KILLED.to_owned()));
    }
    if raw.oom_killed {
        let message = format!(
            "killed for using more than its {} MiB memory limit (request `memory_mb` up to {})",
            limits.memory_bytes / (1024 * 1024),
            allowed.max_memory_mb
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

    fn request() -> ExecutionRequest {
        ExecutionRequest {
            language: tracebox_model::Language::Python,
            code: String::new(),
            stdin: String::new(),
            env: Default::default(),
            limits: RequestLimits::defaults().run_limits(Some(2.0), Some(64)).unwrap(),
            source: tracebox_model::Source::Cli,
            files: Vec::new(),
            parent: None,
            isolation: tracebox_model::Isolation::Fresh,
            tenant: None,
            owner: None,
            handler: None,
            placement: Default::default(),
        }
    }

    #[test]
    fn a_refused_request_keeps_the_start_cut_at_a_character_and_a_run_keeps_everything() {
        let long = "é".repeat(REFUSED_KEPT_BYTES);
        let (kept, omitted) = Keep::Start.apply(long.clone());
        assert_eq!(kept.len(), REFUSED_KEPT_BYTES, "4096 is a boundary of two-byte characters");
        assert_eq!(omitted, (long.len() - REFUSED_KEPT_BYTES) as u64);
        let odd = format!("x{long}");
        let (kept, omitted) = Keep::Start.apply(odd.clone());
        assert_eq!(kept.len(), REFUSED_KEPT_BYTES - 1, "cut back to the last whole character");
        assert_eq!(kept.len() as u64 + omitted, odd.len() as u64);
        let at_edge = "x".repeat(REFUSED_KEPT_BYTES);
        assert_eq!(Keep::Start.apply(at_edge.clone()), (at_edge.clone(), 0), "at the edge nothing is cut");
        let over = format!("{at_edge}y");
        assert_eq!(Keep::Start.apply(over), (at_edge, 1), "one over: one byte left out");
        assert_eq!(Keep::Whole.apply(long.clone()), (long, 0));
    }

    #[test]
    fn a_timeout_outranks_the_exit_code_it_caused() {
        let raw = RawOutcome { timed_out: true, exit_code: Some(137), ..RawOutcome::default() };
        let (status, message) = judge(&raw, &request(), &RequestLimits::defaults(), "up to 60 s");
        assert_eq!(status, Status::Timeout);
        assert!(message.unwrap().contains("2 s timeout"));
    }

    #[test]
    fn oom_names_the_limit() {
        let raw = RawOutcome { oom_killed: true, exit_code: Some(137), ..RawOutcome::default() };
        let (status, message) = judge(&raw, &request(), &RequestLimits::defaults(), "up to 60 s");
        assert_eq!(status, Status::Oom);
        assert!(message.unwrap().contains("64 MiB"));
    }

    #[test]
    fn exit_codes_map_to_success_and_error_and_only_signal_codes_name_a_signal() {
        let allowed = RequestLimits::defaults();
        let exit = |code| {
            judge(&RawOutcome { exit_code: Some(code), ..RawOutcome::default() }, &request(), &allowed, "up to 60 s")
        };
        assert_eq!(exit(0), (Status::Success, None));
        assert_eq!(exit(3), (Status::Error, None));
        assert_eq!(exit(139).1.as_deref(), Some("exit code 139: killed by signal 11"));
        assert_eq!(exit(200), (Status::Error, None));
        assert_eq!(exit(128), (Status::Error, None));
    }

    #[tokio::test]
    async fn output_a_live_door_does_not_read_waits_in_bounded_queues() {
        let policy = Policy::builtin().unwrap();
        let (events_tx, _unread) = mpsc::channel(EVENT_QUEUE);
        let (chunks_tx, chunks) = mpsc::channel(CHUNK_QUEUE);
        let (started_tx, started) = oneshot::channel();
        let _ = started_tx.send(());
        let screening = async move {
            let mut screens = Screens::new(&policy, Some(events_tx));
            screens.follow(chunks, started).await;
        };
        let taken = async {
            let line = bytes::Bytes::from("a line of output\n");
            let mut taken = 0;
            // Once both queues are full, the sandbox's side is told to wait.
            while taken < 4 * (CHUNK_QUEUE + EVENT_QUEUE) && chunks_tx.try_send(Chunk::Stdout(line.clone())).is_ok() {
                taken += 1;
                tokio::task::yield_now().await;
            }
            taken
        };
        let taken = tokio::select! {
            () = screening => unreachable!("the screen ends only when the output does"),
            taken = taken => taken,
        };
        // Each line is released as an event: what fits is the two queues, and one in hand.
        assert!((CHUNK_QUEUE..=CHUNK_QUEUE + EVENT_QUEUE + 1).contains(&taken), "{taken} chunks were taken");
    }
}
