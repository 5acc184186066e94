//! `GET /ws`: live execution over a WebSocket, through the one pipeline.
//!
//! One socket carries several runs, each keyed by the client's `id`. The socket's task reads
//! client messages, writes server frames, and pings; each run has a small task that turns its
//! events into frames. When the socket goes (closed, dropped, silent), its runs are killed.

use std::collections::{BTreeMap, HashMap};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::error::{ApiError, ErrorCode};
use crate::config::Config;
use crate::execution::{Execution, RunEvent, Source, Status, Submission};
use crate::runner::{LiveRun, RunControl, Runner, StdinError};
use crate::services::Services;
use crate::trace::TraceId;

/// Longest run `id` a client may choose.
const MAX_ID_CHARS: usize = 128;

/// A message past this many times TRACEBOX_WS_MAX_MESSAGE_BYTES cannot be skipped politely:
/// the socket is closed (1009). Below it, an oversized message gets an `error` frame.
const HARD_LIMIT_FACTOR: usize = 4;

/// Silent pings after which a socket is taken for dead.
const MISSED_PINGS: u32 = 3;

/// `GET /ws`
pub async fn upgrade(
    services: web::Data<Services>,
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let config = services.runner.config();
    check_origin(&request, config)?;
    let (response, session, stream) = actix_ws::handle(&request, body).map_err(|error| {
        ApiError::new(
            ErrorCode::UpgradeRequired,
            format!("GET /ws opens a WebSocket ({error}); connect with a WebSocket client, e.g. ws://host:port/ws"),
        )
    })?;
    let hard_limit = config.ws_max_message_bytes.saturating_mul(HARD_LIMIT_FACTOR);
    let stream = stream.max_frame_size(hard_limit).aggregate_continuations().max_continuation_size(hard_limit);
    let socket = Socket::new(services.runner.clone(), session);
    tracing::info!(peer = ?request.peer_addr(), "websocket opened");
    actix_web::rt::spawn(socket.serve(stream));
    Ok(response)
}

/// Browsers send `Origin` with every WebSocket handshake, and do not stop a page of one site
/// from opening a socket to another: without this check any web page could run code here
/// through a visitor's browser. Clients that send no `Origin` are programs, not pages.
fn check_origin(request: &HttpRequest, config: &Config) -> Result<(), ApiError> {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let same_origin =
        !host.is_empty() && [format!("http://{host}"), format!("https://{host}")].iter().any(|own| own == origin);
    if same_origin || config.ws_allowed_origins.iter().any(|allowed| allowed == origin) {
        return Ok(());
    }
    tracing::warn!(origin, "websocket refused for its origin");
    Err(ApiError::new(
        ErrorCode::ForbiddenOrigin,
        format!(
            "pages from {origin:?} may not open this WebSocket; add the origin to TRACEBOX_WS_ALLOWED_ORIGINS to allow it"
        ),
    ))
}

/// A frame for the client; `ends` names the run it finishes.
struct Outgoing {
    frame: Value,
    ends: Option<String>,
}

/// One socket's state.
struct Socket {
    runner: Runner,
    session: Session,
    /// The runs going on this socket, by the client's id.
    runs: HashMap<String, RunControl>,
    frames_tx: mpsc::UnboundedSender<Outgoing>,
    frames: mpsc::UnboundedReceiver<Outgoing>,
}

/// Why a socket's loop ended.
enum Closing {
    /// The client closed it or went away.
    Client,
    /// It stopped answering pings.
    Silent,
    /// A message too large to skip.
    TooLarge,
}

impl Socket {
    fn new(runner: Runner, session: Session) -> Socket {
        let (frames_tx, frames) = mpsc::unbounded_channel();
        Socket { runner, session, runs: HashMap::new(), frames_tx, frames }
    }

    async fn serve(mut self, mut stream: AggregatedMessageStream) {
        let interval = self.runner.config().ws_ping_interval();
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        let mut heard = Instant::now();
        let closing = loop {
            tokio::select! {
                message = stream.recv() => {
                    heard = Instant::now();
                    match message {
                        Some(Ok(message)) => if let Some(closing) = self.receive(message).await {
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
                    if self.session.text(outgoing.frame.to_string()).await.is_err() {
                        break Closing::Client;
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > interval * MISSED_PINGS {
                        break Closing::Silent;
                    }
                    if self.session.ping(b"").await.is_err() {
                        break Closing::Client;
                    }
                }
            }
        };
        self.close(closing).await;
    }

    /// Kill what still runs and say goodbye.
    async fn close(self, closing: Closing) {
        let running = self.runs.len();
        for control in self.runs.values() {
            control.kill();
        }
        let reason = match closing {
            Closing::Client => None,
            Closing::Silent => Some(CloseReason::from((CloseCode::Away, "no pong for three pings"))),
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
        let _ = self.session.close(reason).await;
    }

    /// Handle one client message; `Some` ends the socket.
    async fn receive(&mut self, message: AggregatedMessage) -> Option<Closing> {
        match message {
            AggregatedMessage::Text(text) => {
                if let Err(error) = self.dispatch(text.as_bytes()) {
                    self.send_error(error.id, &error.error);
                }
            }
            AggregatedMessage::Binary(_) => self.send_error(
                None,
                &ApiError::new(ErrorCode::InvalidMessage, "binary messages are not understood; send JSON text"),
            ),
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

    fn dispatch(&mut self, text: &[u8]) -> Result<(), Refusal> {
        let limit = self.runner.config().ws_max_message_bytes;
        if text.len() > limit {
            return Err(Refusal::anonymous(ApiError::new(
                ErrorCode::MessageTooLarge,
                format!("the message is {} bytes; the limit is {limit} (TRACEBOX_WS_MAX_MESSAGE_BYTES)", text.len()),
            )));
        }
        let message: Value = serde_json::from_slice(text).map_err(|e| {
            Refusal::anonymous(ApiError::new(ErrorCode::InvalidJson, format!("the message is not valid JSON: {e}")))
        })?;
        let Some(object) = message.as_object() else {
            return Err(Refusal::anonymous(invalid_message("a message must be a JSON object")));
        };
        let id = object.get("id").and_then(Value::as_str).map(str::to_owned);
        let refuse = |error: ApiError| Refusal { id: id.clone(), error };
        match object.get("type").and_then(Value::as_str) {
            Some("execute") => self.execute(parse(message.clone()).map_err(refuse)?).map_err(refuse),
            Some("stdin") => self.stdin(parse(message.clone()).map_err(refuse)?).map_err(refuse),
            Some("kill") => self.kill(parse(message.clone()).map_err(refuse)?).map_err(refuse),
            Some(other) => Err(refuse(invalid_message(&format!(
                "unknown message type {other:?}; send one of: execute, stdin, kill"
            )))),
            None => Err(refuse(invalid_message("a message needs a `type`: execute, stdin or kill"))),
        }
    }

    fn execute(&mut self, message: ExecuteMessage) -> Result<(), ApiError> {
        let config = self.runner.config();
        check_id(&message.id)?;
        if self.runs.contains_key(&message.id) {
            return Err(ApiError::new(
                ErrorCode::DuplicateRunId,
                format!("run {:?} is still going on this socket; pick another id", message.id),
            ));
        }
        if self.runs.len() >= config.ws_max_runs {
            return Err(ApiError::new(
                ErrorCode::TooManyRuns,
                format!(
                    "this socket already has {} runs going, the most allowed (TRACEBOX_WS_MAX_RUNS); wait for one to end",
                    self.runs.len()
                ),
            ));
        }
        let ExecuteMessage { id, code, language, stdin, timeout, memory_mb, env, stdin_open, .. } = message;
        let code = code.ok_or_else(|| ApiError::new(ErrorCode::MissingCode, "`code` is required"))?;
        let submission = Submission {
            code,
            language,
            stdin: stdin.unwrap_or_default(),
            env: env.unwrap_or_default(),
            timeout_secs: timeout,
            memory_mb,
        };
        let request = submission.check(config, Source::WebSocket)?;
        let LiveRun { trace_id, events, control, outcome } = self.runner.start(request, stdin_open.unwrap_or(true));
        tracing::debug!(run = %id, %trace_id, "websocket run started");
        self.runs.insert(id.clone(), control);
        actix_web::rt::spawn(forward(id, trace_id, events, outcome, self.frames_tx.clone()));
        Ok(())
    }

    fn stdin(&mut self, message: StdinMessage) -> Result<(), ApiError> {
        let limit = self.runner.config().max_stdin_bytes;
        let control = self.runs.get_mut(&message.id).ok_or_else(|| no_such_run(&message.id))?;
        if let Some(data) = &message.data {
            control.send_stdin(data, limit).map_err(|error| match error {
                StdinError::Closed => ApiError::new(ErrorCode::StdinClosed, error.to_string()),
                StdinError::TooLarge { .. } => ApiError::new(ErrorCode::StdinTooLarge, error.to_string()),
            })?;
        }
        if message.eof {
            control.close_stdin();
        }
        Ok(())
    }

    fn kill(&mut self, message: KillMessage) -> Result<(), ApiError> {
        let control = self.runs.get(&message.id).ok_or_else(|| no_such_run(&message.id))?;
        control.kill();
        Ok(())
    }

    fn send_error(&self, id: Option<String>, error: &ApiError) {
        let frame = json!({
            "type": "error",
            "id": id,
            "code": error.code().as_str(),
            "message": error.message(),
            "trace_id": error.trace_id(),
        });
        let _ = self.frames_tx.send(Outgoing { frame, ends: None });
    }
}

/// Turn one run's events into frames: `started`, output, then exactly one of `exit`,
/// `blocked` or `error`.
async fn forward(
    id: String,
    trace_id: TraceId,
    mut events: mpsc::UnboundedReceiver<RunEvent>,
    outcome: tokio::task::JoinHandle<Result<Execution, crate::runner::RunError>>,
    frames: mpsc::UnboundedSender<Outgoing>,
) {
    while let Some(event) = events.recv().await {
        let frame = match event {
            RunEvent::Started => json!({ "type": "started", "id": id, "trace_id": trace_id }),
            RunEvent::Output { stream, text } => json!({ "type": stream.as_str(), "id": id, "data": text }),
        };
        let _ = frames.send(Outgoing { frame, ends: None });
    }
    let last = match outcome.await {
        Ok(Ok(execution)) if execution.status == Status::Blocked => {
            let rules: Vec<&str> = execution.policy_hits.iter().map(|hit| hit.rule.as_str()).collect();
            json!({
                "type": "blocked", "id": id, "trace_id": execution.trace_id,
                "rules": rules, "message": execution.message, "policy_hits": execution.policy_hits,
            })
        }
        Ok(Ok(execution)) => exit_frame(&id, &execution),
        Ok(Err(error)) => {
            let error = ApiError::from(error);
            json!({ "type": "error", "id": id, "code": error.code().as_str(), "message": error.message(), "trace_id": error.trace_id() })
        }
        Err(join) => {
            json!({ "type": "error", "id": id, "code": "internal_error", "message": format!("the run task failed: {join}") })
        }
    };
    let _ = frames.send(Outgoing { frame: last, ends: Some(id) });
}

fn exit_frame(id: &str, execution: &Execution) -> Value {
    json!({
        "type": "exit",
        "id": id,
        "trace_id": execution.trace_id,
        "status": execution.status,
        "exit_code": execution.exit_code,
        "duration_ms": execution.duration_ms,
        "timed_out": execution.timed_out,
        "oom_killed": execution.oom_killed,
        "truncated": execution.truncated,
        "invalid_utf8": execution.invalid_utf8,
        "redactions": execution.redactions,
        "policy_hits": execution.policy_hits,
        "message": execution.message,
    })
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

fn invalid_message(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidMessage, message)
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

/// Decode a message, naming the field at fault.
fn parse<T: DeserializeOwned>(message: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(message).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { String::new() } else { format!("`{path}`: ") };
        invalid_message(&format!("{field}{}", error.into_inner()))
    })
}

/// `{"type": "execute", "id", "code", …}`: the `/execute` body plus the run's id, and
/// `stdin_open` (default true: more stdin may follow in `stdin` messages until one says `eof`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteMessage {
    #[serde(rename = "type")]
    _type: String,
    id: String,
    code: Option<String>,
    language: Option<String>,
    stdin: Option<String>,
    timeout: Option<f64>,
    memory_mb: Option<u64>,
    env: Option<BTreeMap<String, String>>,
    stdin_open: Option<bool>,
}

/// `{"type": "stdin", "id", "data", "eof"}`: more input; `eof: true` closes stdin after it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StdinMessage {
    #[serde(rename = "type")]
    _type: String,
    id: String,
    data: Option<String>,
    #[serde(default)]
    eof: bool,
}

/// `{"type": "kill", "id"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillMessage {
    #[serde(rename = "type")]
    _type: String,
    id: String,
}
