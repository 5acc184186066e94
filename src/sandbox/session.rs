//! A stateful sandbox's container, attached: its supervisor (`sandbox/sandboxd.py`) serves
//! operations named by ids tracebox picks, several at once. One reader task sorts the frames it
//! writes by the operation each belongs to; an operation is a request and the frames of its
//! answer, ending with its reply. The container outlives tracebox: a restart attaches again.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::SandboxError;
use super::docker::{Chunk, Engine};
use super::limits::{ContainerSettings, ContainerSpec, container_body};
use super::protocol::FrameReader;

/// How long a new sandbox's supervisor may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a found-again sandbox may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// What an operation hears, in order; its reply ends it.
#[derive(Debug, Clone, PartialEq)]
pub enum OpFrame {
    /// A command's process started.
    Started,
    Stdout(Bytes),
    Stderr(Bytes),
    /// Bytes of a file read.
    Data(Bytes),
    /// Bytes of a tar of `/workspace`.
    Tar(Bytes),
    /// The end: the supervisor's JSON reply.
    Reply(Value),
}

/// An operation the supervisor refused, or one that could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The supervisor answered with an error: `code` is one of its (`bad_path`, `not_found`…).
    #[error("{message}")]
    Refused { code: String, message: String },
    /// The container is gone (stopped, killed, removed from outside).
    #[error("the sandbox's container is gone")]
    Gone,
    /// The container was removed by tracebox (the sandbox deleted, or at its lifetime's end)
    /// while the operation was under way.
    #[error("the sandbox was removed")]
    Removed,
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

impl From<OpError> for SandboxError {
    fn from(error: OpError) -> SandboxError {
        match error {
            OpError::Sandbox(error) => error,
            OpError::Gone => SandboxError::SessionGone,
            OpError::Removed => SandboxError::SessionRemoved,
            OpError::Refused { code, message } => SandboxError::Refused { code, message },
        }
    }
}

/// A sandbox's container and the operations under way in it. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    container: String,
    input: tokio::sync::Mutex<Input>,
    ops: Mutex<HashMap<u32, mpsc::UnboundedSender<OpFrame>>>,
    next: AtomicU32,
    /// Cancelled once the container's output ended: it is gone.
    gone: CancellationToken,
    /// Set when tracebox itself removes the container: operations cut short then say so,
    /// rather than that it was killed from outside.
    removing: std::sync::atomic::AtomicBool,
}

impl Session {
    /// Create, attach and start a sandbox container of `spec`, and wait until its supervisor is
    /// ready. A container that fails on the way is removed before this returns.
    pub async fn start(
        engine: &Engine,
        settings: &ContainerSettings,
        spec: &ContainerSpec<'_>,
        name: &str,
    ) -> Result<Session, SandboxError> {
        let id = engine.create(name, container_body(settings, spec)).await?;
        let started = async {
            let (output, input) = engine.attach(&id).await?;
            engine.start(&id).await?;
            Session::serve(engine, &id, Box::pin(output), Box::pin(input), READY_TIMEOUT).await
        };
        match started.await {
            Ok(session) => Ok(session),
            Err(error) => {
                engine.remove_later(id);
                Err(error)
            }
        }
    }

    /// Attach again to a sandbox container that kept running (tracebox restarted), and make
    /// sure its supervisor answers.
    pub async fn attach(engine: &Engine, container: &str) -> Result<Session, SandboxError> {
        let (output, input) = engine.attach(container).await?;
        let session = Session::serve(engine, container, Box::pin(output), Box::pin(input), Duration::ZERO).await?;
        let answered = tokio::time::timeout(ANSWER_TIMEOUT, session.call(json!({"op": "usage"}), &[])).await;
        match answered {
            Ok(Ok(_)) => Ok(session),
            Ok(Err(error)) => Err(SandboxError::NotReady { why: format!("it did not answer: {error}") }),
            Err(_) => Err(SandboxError::NotReady { why: format!("it did not answer within {ANSWER_TIMEOUT:?}") }),
        }
    }

    /// Start reading `output`; with a `ready` wait, until the supervisor's first frame.
    async fn serve(
        engine: &Engine,
        container: &str,
        mut output: Pin<Box<dyn Stream<Item = Result<Chunk, SandboxError>> + Send>>,
        input: Input,
        ready: Duration,
    ) -> Result<Session, SandboxError> {
        let mut frames = FrameReader::default();
        if !ready.is_zero() {
            let deadline = tokio::time::Instant::now() + ready;
            let not_ready = |why: String| SandboxError::NotReady { why };
            'ready: loop {
                let chunk = match tokio::time::timeout_at(deadline, output.next()).await {
                    Err(_late) => return Err(not_ready(format!("its supervisor said nothing for {ready:?}"))),
                    Ok(None) => return Err(not_ready("it stopped before its supervisor was ready".into())),
                    Ok(Some(chunk)) => chunk?,
                };
                let Chunk::Stdout(bytes) = chunk else { continue };
                // Nothing but the supervisor's R comes before tracebox asked for anything.
                if frames.feed_raw(bytes).map_err(|e| not_ready(e.to_string()))?.iter().any(|(kind, _)| *kind == b'R') {
                    break 'ready;
                }
            }
        }
        let inner = Arc::new(Inner {
            engine: engine.clone(),
            container: container.to_owned(),
            input: tokio::sync::Mutex::new(input),
            ops: Mutex::new(HashMap::new()),
            next: AtomicU32::new(first_op_id(ready)),
            gone: CancellationToken::new(),
            removing: std::sync::atomic::AtomicBool::new(false),
        });
        let reader = Arc::clone(&inner);
        tokio::spawn(async move { reader.read(output, frames).await });
        Ok(Session { inner })
    }

    /// The container's id.
    pub fn container(&self) -> &str {
        &self.inner.container
    }

    /// Is the container gone (its output ended)?
    pub fn is_gone(&self) -> bool {
        self.inner.gone.is_cancelled()
    }

    /// Ask for an operation: `header` is its JSON (`op` and its fields), `body` its bytes.
    pub async fn request(&self, mut header: Value, body: &[u8]) -> Result<Op, OpError> {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (frames_tx, frames) = mpsc::unbounded_channel();
        self.inner.ops().insert(id, frames_tx);
        let op = Op { id, frames, session: self.clone() };
        header["id"] = json!(id);
        header["body"] = json!(body.len());
        self.write(&header, body).await?;
        Ok(op)
    }

    /// Ask for an operation whose answer does not matter (more stdin, a kill).
    pub async fn tell(&self, mut header: Value, body: &[u8]) -> Result<(), OpError> {
        header["id"] = json!(0);
        header["body"] = json!(body.len());
        self.write(&header, body).await
    }

    /// Ask for an operation and wait for its reply; what came before it is left out.
    pub async fn call(&self, header: Value, body: &[u8]) -> Result<Value, OpError> {
        let mut op = self.request(header, body).await?;
        loop {
            if let OpFrame::Reply(reply) = op.next().await? {
                return reply_of(reply);
            }
        }
    }

    async fn write(&self, header: &Value, body: &[u8]) -> Result<(), OpError> {
        if self.is_gone() {
            return Err(self.inner.gone_why());
        }
        let header = header.to_string();
        let mut request = format!("Q {}\n{header}", header.len()).into_bytes();
        request.extend_from_slice(body);
        let mut input = self.inner.input.lock().await;
        let written = async {
            input.write_all(&request).await?;
            input.flush().await
        };
        written.await.map_err(|_| self.inner.gone_why())
    }

    /// Stop the container and remove it (its files with it).
    pub async fn remove(&self) -> Result<(), SandboxError> {
        self.inner.removing.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.engine.remove(&self.inner.container).await
    }
}

/// A reply's fields, or the error it carries.
pub fn reply_of(reply: Value) -> Result<Value, OpError> {
    if reply["ok"] == json!(true) {
        return Ok(reply);
    }
    let error = &reply["error"];
    let text = |key: &str| error[key].as_str().unwrap_or("?").to_owned();
    Err(OpError::Refused { code: text("code"), message: text("message") })
}

impl Inner {
    /// Why an operation found the container gone: removed by tracebox, or from outside.
    fn gone_why(&self) -> OpError {
        if self.removing.load(std::sync::atomic::Ordering::SeqCst) { OpError::Removed } else { OpError::Gone }
    }

    fn ops(&self) -> std::sync::MutexGuard<'_, HashMap<u32, mpsc::UnboundedSender<OpFrame>>> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sort the supervisor's frames to their operations until the container's output ends.
    async fn read(
        &self,
        mut output: Pin<Box<dyn Stream<Item = Result<Chunk, SandboxError>> + Send>>,
        mut frames: FrameReader,
    ) {
        while let Some(Ok(chunk)) = output.next().await {
            let bytes = match chunk {
                Chunk::Stdout(bytes) => bytes,
                Chunk::Stderr(bytes) => {
                    tracing::warn!(container = %self.container, stderr = %String::from_utf8_lossy(&bytes), "sandbox supervisor");
                    continue;
                }
            };
            let Ok(split) = frames.feed_raw(bytes) else {
                tracing::error!(container = %self.container, "a sandbox's channel carried what its supervisor never writes");
                break;
            };
            for (kind, payload) in split {
                self.dispatch(kind, payload);
            }
        }
        self.gone.cancel();
        // Every operation still waiting hears that the container is gone.
        self.ops().clear();
    }

    fn dispatch(&self, kind: u8, mut payload: Bytes) {
        if payload.len() < 4 {
            return;
        }
        let id = payload.get_u32();
        let frame = match kind {
            b'G' => OpFrame::Started,
            b'o' => OpFrame::Stdout(payload),
            b'e' => OpFrame::Stderr(payload),
            b'D' => OpFrame::Data(payload),
            b'A' => OpFrame::Tar(payload),
            b'Y' => OpFrame::Reply(serde_json::from_slice(&payload).unwrap_or(Value::Null)),
            _ => return,
        };
        let last = matches!(frame, OpFrame::Reply(_));
        let mut ops = self.ops();
        if let Some(op) = ops.get(&id) {
            let _ = op.send(frame);
        }
        if last {
            ops.remove(&id);
        }
    }
}

/// An operation under way: its frames, in order, ending with its reply.
pub struct Op {
    pub id: u32,
    frames: mpsc::UnboundedReceiver<OpFrame>,
    session: Session,
}

impl Op {
    /// The next frame; `Gone` when the container went before the reply.
    pub async fn next(&mut self) -> Result<OpFrame, OpError> {
        self.frames.recv().await.ok_or_else(|| self.session.inner.gone_why())
    }

    /// Ask the supervisor to end it (a command's whole session, or a cell).
    pub async fn kill(&self) -> Result<(), OpError> {
        self.session.tell(json!({"op": "kill", "target": self.id}), &[]).await
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        self.session.inner.ops().remove(&self.id);
    }
}

/// The first operation id of a session. A new container's count from 1; one attached again
/// after a restart of tracebox from a random point of the upper half, so that an operation the
/// last tracebox left running (a command across a `kill -9`) never shares its id with a new one:
/// its output and reply, which nobody waits for any more, are then dropped, not taken for
/// another's.
fn first_op_id(ready: Duration) -> u32 {
    if ready.is_zero() { (uuid::Uuid::new_v4().as_u128() as u32) | 0x8000_0000 } else { 1 }
}
