//! `GET /ws`: live execution over a WebSocket, through the one pipeline.
//!
//! One socket carries several runs, each keyed by the client's `id`. The socket's task reads
//! client messages, writes server frames, and pings; each run has a small task that turns its
//! events into frames. When the socket goes (closed, dropped, silent), its runs are killed.
//!
//! Browsers let a page of any site open a socket to any other; the guard in front of every
//! route (`guard.rs`) refuses those from foreign origins, here as everywhere, before the
//! handshake reaches [`upgrade`].

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracebox_model::{Execution, OutputStream, RunEvent, Source, Status, TraceId};

mod frames;

use super::claude::reply_of;
use super::error::{ApiError, ErrorCode};
use super::execute::{ExecuteBody, ExecuteReply, Step};
use crate::access::Caller;
use crate::claude::{AskEvent, Call, Question};
use crate::runner::{LiveRun, RunControl, StdinError};
use crate::services::Services;
use frames::{ClientMessage, Ending, Kill, Run, ServerFrame, Stdin, invalid_message};

/// Longest run `id` a client may choose.
const MAX_ID_CHARS: usize = 128;

/// A message past this many times TRACEBOX_WS_MAX_MESSAGE_BYTES cannot be skipped politely:
/// the socket is closed (1009). Below it, an oversized message gets an `error` frame.
const HARD_LIMIT_FACTOR: usize = 4;

/// Silent pings after which a socket is taken for dead; a client that reads nothing for as long
/// (its frames pile up unsent) is dropped too.
const MISSED_PINGS: u32 = 3;

/// How long the close frame may wait to be taken.
const CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Frames waiting for the socket, across its runs: a client slower than its programs holds its
/// runs' output back here (and then in the runs), not in an ever-growing queue.
const FRAME_QUEUE: usize = 64;

/// Output pieces that queued up while the client was slow go out merged, up to this size.
const MERGED_FRAME_BYTES: usize = 64 * 1024;

/// `GET /ws`
pub async fn upgrade(
    services: web::Data<Services>,
    caller: Caller,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let config = &services.config;
    // The middleware judged the path; a socket runs code, so its door asks again itself.
    caller.may(request.method(), "/ws").map_err(ApiError::from)?;
    let (response, session, stream) = actix_ws::handle(&request, body).map_err(|error| {
        ApiError::new(
            ErrorCode::UpgradeRequired,
            format!("GET /ws opens a WebSocket ({error}); connect with a WebSocket client, e.g. ws://host:port/ws"),
        )
    })?;
    let hard_limit = config.ws_max_message_bytes.saturating_mul(HARD_LIMIT_FACTOR);
    let stream = stream.max_frame_size(hard_limit).aggregate_continuations().max_continuation_size(hard_limit);
    let socket = Socket::new(services.clone(), session, caller);
    tracing::info!(peer = ?request.peer_addr(), "websocket opened");
    actix_web::rt::spawn(socket.serve(stream));
    Ok(response)
}

/// A frame for the client; `ends` names the run it finishes.
struct Outgoing {
    frame: ServerFrame,
    ends: Option<String>,
}

/// What goes on under one of the client's ids.
enum Going {
    /// A program: it takes stdin and can be killed.
    Run(RunControl),
    /// A Claude call: it ends by itself (its code's runs at their timeouts).
    Claude,
}

/// One socket's state.
struct Socket {
    services: web::Data<Services>,
    session: Session,
    /// Who opened it: every run it starts is theirs.
    caller: Caller,
    /// The runs and Claude calls going on this socket, by the client's id.
    runs: HashMap<String, Going>,
    frames_tx: mpsc::Sender<Outgoing>,
    frames: mpsc::Receiver<Outgoing>,
}

/// Why a socket's loop ended.
enum Closing {
    /// The client closed it or went away.
    Client,
    /// It stopped answering pings, or reading.
    Silent,
    /// A message too large to skip.
    TooLarge,
}

impl Socket {
    fn new(services: web::Data<Services>, session: Session, caller: Caller) -> Socket {
        let (frames_tx, frames) = mpsc::channel(FRAME_QUEUE);
        Socket { services, session, caller, runs: HashMap::new(), frames_tx, frames }
    }

    /// The socket's key, checked again for each run it starts: a key revoked (or a token expired)
    /// while the socket is open starts nothing more, and each run counts against the key's rate.
    fn recheck(&self) -> Result<Option<crate::access::RunPermit>, ApiError> {
        self.services.access.recheck(&self.caller)?;
        Ok(self.caller.run_permit()?)
    }

    async fn serve(mut self, mut stream: AggregatedMessageStream) {
        let interval = self.services.config.ws_ping_interval();
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        let mut heard = Instant::now();
        let patience = interval * MISSED_PINGS;
        let closing = loop {
            tokio::select! {
                message = stream.recv() => {
                    heard = Instant::now();
                    match message {
                        Some(Ok(message)) => if let Some(closing) = self.receive(message, patience).await {
                            break closing;
                        },
                        Some(Err(actix_ws::ProtocolError::Overflow)) => break Closing::TooLarge,
                        Some(Err(error)) => {
                            tracing::info!(%error, "websocket protocol error");
                            break Closing::Client;
                        }
                        None => break Closing::Client,
                    }
                }
                Some(outgoing) = self.frames.recv() => {
                    if let Some(id) = &outgoing.ends {
                        self.runs.remove(id);
                    }
                    if let Some(closing) = self.send(&outgoing.frame, patience).await {
                        break closing;
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > patience {
                        break Closing::Silent;
                    }
                    match tokio::time::timeout(patience, self.session.ping(b"")).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_closed)) => break Closing::Client,
                        Err(_stuck) => break Closing::Silent,
                    }
                }
            }
        };
        self.close(closing).await;
    }

    /// Send one frame; a client that takes no frames for `patience` is silent.
    async fn send(&mut self, frame: &ServerFrame, patience: std::time::Duration) -> Option<Closing> {
        match tokio::time::timeout(patience, self.session.text(frame.to_text())).await {
            Ok(Ok(())) => None,
            Ok(Err(_closed)) => Some(Closing::Client),
            Err(_stuck) => Some(Closing::Silent),
        }
    }

    /// Kill what still runs and say goodbye.
    async fn close(self, closing: Closing) {
        let running = self.runs.len();
        for going in self.runs.values() {
            if let Going::Run(control) = going {
                control.kill();
            }
        }
        let reason = match closing {
            Closing::Client => None,
            Closing::Silent => Some(CloseReason::from((CloseCode::Away, "silent for three ping intervals"))),
            Closing::TooLarge => {
                Some(CloseReason::from((CloseCode::Size, "message far over TRACEBOX_WS_MAX_MESSAGE_BYTES")))
            }
        };
        let why = match closing {
            Closing::Client => "client",
            Closing::Silent => "silent",
            Closing::TooLarge => "message too large",
        };
        tracing::info!(why, killed_runs = running, "websocket closed");
        // A client that stopped reading may never take the goodbye either.
        let _ = tokio::time::timeout(CLOSE_PATIENCE, self.session.close(reason)).await;
    }

    /// Handle one client message; `Some` ends the socket.
    async fn receive(&mut self, message: AggregatedMessage, patience: std::time::Duration) -> Option<Closing> {
        match message {
            AggregatedMessage::Text(text) => {
                if let Err(refusal) = self.dispatch(text.as_bytes()).await {
                    return self.send(&self.refusal_frame(refusal), patience).await;
                }
            }
            AggregatedMessage::Binary(_) => {
                let error = invalid_message("binary messages are not understood; send JSON text");
                return self.send(&self.refusal_frame(Refusal::anonymous(error)), patience).await;
            }
            AggregatedMessage::Ping(bytes) => {
                if self.session.pong(&bytes).await.is_err() {
                    return Some(Closing::Client);
                }
            }
            AggregatedMessage::Pong(_) => {}
            AggregatedMessage::Close(_) => return Some(Closing::Client),
        }
        None
    }

    async fn dispatch(&mut self, text: &[u8]) -> Result<(), Refusal> {
        let limit = self.services.config.ws_max_message_bytes;
        if text.len() > limit {
            return Err(Refusal::anonymous(ApiError::new(
                ErrorCode::MessageTooLarge,
                format!("the message is {} bytes; the limit is {limit} (TRACEBOX_WS_MAX_MESSAGE_BYTES)", text.len()),
            )));
        }
        let message = ClientMessage::decode(text).map_err(|(id, error)| Refusal { id, error })?;
        let refuse = |id: &str| {
            let id = Some(id.to_owned());
            move |error: ApiError| Refusal { id, error }
        };
        match message {
            ClientMessage::Execute(run) => {
                let refused = refuse(&run.id);
                self.execute(run).await.map_err(refused)
            }
            ClientMessage::Claude(call) => {
                let refused = refuse(&call.id);
                self.claude(call).await.map_err(refused)
            }
            ClientMessage::Stdin(stdin) => {
                let refused = refuse(&stdin.id);
                self.stdin(stdin).map_err(refused)
            }
            ClientMessage::Kill(kill) => {
                let refused = refuse(&kill.id);
                self.kill(kill).map_err(refused)
            }
        }
    }

    /// May a new run (or call) take `id`?
    fn check_new(&self, id: &str) -> Result<(), ApiError> {
        check_id(id)?;
        if self.runs.contains_key(id) {
            return Err(ApiError::new(
                ErrorCode::DuplicateRunId,
                format!("run {id:?} is still going on this socket; pick another id"),
            ));
        }
        if self.runs.len() >= self.services.config.ws_max_runs {
            return Err(ApiError::new(
                ErrorCode::TooManyRuns,
                format!(
                    "this socket already has {} runs going, the most allowed (TRACEBOX_WS_MAX_RUNS); wait for one to end",
                    self.runs.len()
                ),
            ));
        }
        Ok(())
    }

    async fn execute(&mut self, message: Run<ExecuteBody>) -> Result<(), ApiError> {
        self.check_new(&message.id)?;
        let Run { id, stdin_open, sandbox_id, cmd, body } = message;
        let keep_stdin_open = stdin_open.unwrap_or(true);
        let permit = self.recheck()?;
        let live = match sandbox_id {
            None if cmd.is_some() => {
                return Err(invalid_message("`cmd` is for a sandbox's command: give its `sandbox_id` too"));
            }
            None => {
                let request = body.into_request(&self.services, Source::WebSocket, &self.caller).await?;
                self.services.runner.start(request, keep_stdin_open)
            }
            Some(sandbox) => {
                super::sandboxes::owned(&self.services, &self.caller, &sandbox).await?;
                let step = body.into_step(cmd)?;
                match step {
                    Step::Command(command) => {
                        self.services.sandboxes.start_command(&sandbox, command, keep_stdin_open).await
                    }
                    Step::Cell(cell) => self.services.sandboxes.start_code(&sandbox, cell).await,
                }?
            }
        };
        let LiveRun { trace_id, events, control, outcome } = live;
        tracing::debug!(run = %id, %trace_id, "websocket run started");
        self.runs.insert(id.clone(), Going::Run(control));
        let frames = self.frames_tx.clone();
        actix_web::rt::spawn(async move {
            forward(id, trace_id, events, outcome, frames).await;
            drop(permit);
        });
        Ok(())
    }

    async fn claude(&mut self, message: Run<Question>) -> Result<(), ApiError> {
        self.check_new(&message.id)?;
        let Run { id, stdin_open, sandbox_id, cmd, body: mut question } = message;
        if stdin_open.is_some() || sandbox_id.is_some() || cmd.is_some() {
            return Err(invalid_message(
                "`stdin_open`, `sandbox_id` and `cmd` are for `execute`: a Claude call takes none of them",
            ));
        }
        // A live door streams unless told not to.
        question.stream.get_or_insert(true);
        let files = question.files.take().unwrap_or_default();
        let mut ask = question.check(
            self.services.runner.request_limits(),
            self.services.claude.settings(),
            Source::WebSocket,
            None,
        )?;
        let permit = self.recheck()?;
        ask.files = self.services.files.inputs(&files, self.caller.owner()).await?;
        ask.owner = self.caller.owner().map(str::to_owned);
        let (events_tx, events) = mpsc::unbounded_channel();
        let call = self.services.claude.start(ask, Some(events_tx));
        tracing::debug!(run = %id, trace_id = %call.trace_id, "websocket claude call started");
        self.runs.insert(id.clone(), Going::Claude);
        let frames = self.frames_tx.clone();
        actix_web::rt::spawn(async move {
            forward_claude(id, events, call, frames).await;
            drop(permit);
        });
        Ok(())
    }

    fn stdin(&mut self, message: Stdin) -> Result<(), ApiError> {
        let control = self.control(&message.id, "takes no stdin")?;
        if let Some(data) = &message.data {
            control.send_stdin(data).map_err(|error| match error {
                StdinError::Closed => ApiError::new(ErrorCode::StdinClosed, error.to_string()),
                StdinError::TooLarge { .. } => ApiError::new(ErrorCode::StdinTooLarge, error.to_string()),
            })?;
        }
        if message.eof {
            control.close_stdin();
        }
        Ok(())
    }

    fn kill(&mut self, message: Kill) -> Result<(), ApiError> {
        self.control(&message.id, "cannot be killed (its code's runs end at their timeouts)")?.kill();
        Ok(())
    }

    /// The program going under `id`; a Claude call there `cannot` do what was asked.
    fn control(&mut self, id: &str, cannot: &str) -> Result<&mut RunControl, ApiError> {
        match self.runs.get_mut(id) {
            Some(Going::Run(control)) => Ok(control),
            Some(Going::Claude) => Err(invalid_message(&format!("{id:?} is a Claude call, which {cannot}"))),
            None => Err(no_such_run(id)),
        }
    }

    /// A refused message's answer: `rejected` when it names a run that goes on (the run's own
    /// last frame is still to come), `error` otherwise (no such run, or an `execute` that
    /// never started, whose only frame this is).
    fn refusal_frame(&self, refusal: Refusal) -> ServerFrame {
        let Refusal { id, error } = refusal;
        let going = id.as_ref().is_some_and(|id| self.runs.contains_key(id));
        ServerFrame::refusal(id, &error, going)
    }
}

/// Turn one run's events into frames: `started`, output, then exactly one of `exit`,
/// `blocked` or `error`. Output that piled up while the client was slow goes out merged.
async fn forward(
    id: String,
    trace_id: TraceId,
    mut events: mpsc::Receiver<RunEvent>,
    outcome: tokio::task::JoinHandle<Result<Execution, crate::runner::RunError>>,
    frames: mpsc::Sender<Outgoing>,
) {
    let mut next = events.recv().await;
    while let Some(event) = next.take() {
        let frame = match event {
            RunEvent::Started => ServerFrame::Started { id: id.clone(), trace_id },
            RunEvent::Output { stream, mut text } => {
                while text.len() < MERGED_FRAME_BYTES {
                    match events.try_recv() {
                        Ok(RunEvent::Output { stream: same, text: more }) if same == stream => text.push_str(&more),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                match stream {
                    OutputStream::Stdout => ServerFrame::Stdout { id: id.clone(), data: text },
                    OutputStream::Stderr => ServerFrame::Stderr { id: id.clone(), data: text },
                }
            }
        };
        if frames.send(Outgoing { frame, ends: None }).await.is_err() {
            return;
        }
        if next.is_none() {
            next = events.recv().await;
        }
    }
    let last = match outcome.await {
        Ok(Ok(execution)) if execution.status == Status::Blocked => ServerFrame::Blocked {
            id: id.clone(),
            trace_id: execution.trace_id,
            rules: execution.blocking_rules().into_iter().map(str::to_owned).collect(),
            message: execution.message,
            policy_hits: execution.policy_hits,
        },
        Ok(Ok(execution)) => {
            let ending = Ending::Run(ExecuteReply::from(execution).without_output());
            ServerFrame::Exit { id: id.clone(), ending: Box::new(ending) }
        }
        Ok(Err(error)) => ServerFrame::refusal(Some(id.clone()), &ApiError::from(error), false),
        Err(join) => ServerFrame::refusal(
            Some(id.clone()),
            &ApiError::new(ErrorCode::Internal, format!("the run task failed: {join}")),
            false,
        ),
    };
    let _ = frames.send(Outgoing { frame: last, ends: Some(id) }).await;
}

/// Turn a Claude call's events into frames: `started`, `text` as the reply streams, one
/// `execution` per block run, then `exit` (the `/claude` reply's fields) or `error`.
async fn forward_claude(
    id: String,
    mut events: mpsc::UnboundedReceiver<AskEvent>,
    call: Call,
    frames: mpsc::Sender<Outgoing>,
) {
    let trace_id = call.trace_id;
    let started = ServerFrame::Started { id: id.clone(), trace_id };
    if frames.send(Outgoing { frame: started, ends: None }).await.is_err() {
        return;
    }
    while let Some(event) = events.recv().await {
        let frame = match event {
            AskEvent::Text(data) => ServerFrame::Text { id: id.clone(), data },
            AskEvent::Execution(execution) => {
                ServerFrame::Execution { id: id.clone(), execution: Box::new(ExecuteReply::from(*execution)) }
            }
        };
        if frames.send(Outgoing { frame, ends: None }).await.is_err() {
            return;
        }
    }
    let last = match reply_of(call.outcome().await) {
        Ok(reply) => {
            let ending = Ending::Claude { status: Status::Success.as_str(), reply };
            ServerFrame::Exit { id: id.clone(), ending: Box::new(ending) }
        }
        Err(error) => {
            let trace_id = error.trace_id().or(Some(trace_id));
            let (code, message) = (error.code().as_str(), error.message().to_owned());
            ServerFrame::Error { id: Some(id.clone()), code, message, trace_id }
        }
    };
    let _ = frames.send(Outgoing { frame: last, ends: Some(id) }).await;
}

/// A refused message, and the run it named when it named one.
struct Refusal {
    id: Option<String>,
    error: ApiError,
}

impl Refusal {
    fn anonymous(error: ApiError) -> Refusal {
        Refusal { id: None, error }
    }
}

fn no_such_run(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NoSuchRun, format!("no run {id:?} is going on this socket (it may have ended)"))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Err(invalid_message(&format!("`id` must be 1 to {MAX_ID_CHARS} characters")));
    }
    Ok(())
}
