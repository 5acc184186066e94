//! One started sandbox container, attached: its supervisor's stdin (where programs go) and its
//! output (cut into the protocol's frames by a reader that lives as long as the container,
//! across the runs of a recycled one). A container is made, waits until its supervisor is ready, serves a
//! run (see `run.rs`), and is removed — or, recycled, readied again.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::SandboxError;
use super::docker::{Chunk, Engine, ExitState};
use super::limits::{ContainerSettings, ContainerSpec, Profile, container_body};
use super::protocol::{FrameReader, Out};

/// How long a new container may take to start and ready its program process.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a killed container may take to report that it stopped.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a question to the engine about a container may take before it counts as unanswered.
const ASK_GRACE: Duration = Duration::from_secs(2);

type Output = Pin<Box<dyn Stream<Item = Result<Chunk, SandboxError>> + Send>>;
pub type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// A started container with its supervisor ready (or serving).
pub struct Container {
    pub engine: Engine,
    pub id: String,
    pub name: String,
    pub profile: Profile,
    output: Output,
    /// Shared with a run's stdin feeder while it runs.
    pub stdin: Arc<Mutex<Input>>,
    /// The supervisor's frames on stdout.
    pub frames: FrameReader,
    /// When it was made: its age, which the pool bounds (so no container outlives the sweeper's
    /// idea of how long one may live).
    pub created_at: Instant,
    /// When it last became ready.
    pub ready_at: Instant,
    /// Its supervisor said it is ready, and no program was sent since.
    is_ready: bool,
    /// Runs it served.
    pub runs: u32,
    /// How long its start took (create to ready), for the trace of the run that waited for it.
    pub start_ms: f64,
}

impl Container {
    /// Create, attach and start a container of `spec`, and wait until its supervisor is ready.
    /// A container that fails on the way is removed before this returns.
    pub async fn start(
        engine: &Engine,
        settings: &ContainerSettings,
        spec: &ContainerSpec<'_>,
        name: &str,
    ) -> Result<Container, SandboxError> {
        let began = Instant::now();
        let profile = spec.profile.clone();
        let id = engine.create(name, container_body(settings, spec)).await?;
        let removal = RemoveOnDrop { engine: engine.clone(), id: Some(id.clone()) };
        let (output, stdin) = engine.attach(&id).await?;
        engine.start(&id).await?;
        let mut container = Container {
            engine: engine.clone(),
            id,
            name: name.to_owned(),
            profile,
            output: Box::pin(output),
            stdin: Arc::new(Mutex::new(Box::pin(stdin))),
            frames: FrameReader::default(),
            created_at: began,
            ready_at: Instant::now(),
            is_ready: false,
            runs: 0,
            start_ms: 0.0,
        };
        container.ready(READY_TIMEOUT).await?;
        container.start_ms = began.elapsed().as_secs_f64() * 1000.0;
        removal.keep();
        Ok(container)
    }

    /// The supervisor said it is ready again (heard while a run read its output).
    pub fn ready_again(&mut self) {
        self.is_ready = true;
        self.ready_at = Instant::now();
    }

    /// A program is on its way: the container is no longer ready.
    pub fn taken(&mut self) {
        self.is_ready = false;
        self.runs += 1;
    }

    /// Read until the supervisor says it is ready for a program.
    pub async fn ready(&mut self, within: Duration) -> Result<(), SandboxError> {
        if self.is_ready {
            return Ok(());
        }
        let deadline = Instant::now() + within;
        let not_ready = |why: String| SandboxError::NotReady { why };
        loop {
            let chunk = match tokio::time::timeout_at(deadline, self.output.next()).await {
                Err(_late) => return Err(not_ready(format!("its supervisor said nothing for {within:?}"))),
                Ok(None) => return Err(not_ready("it stopped before its supervisor was ready".into())),
                Ok(Some(chunk)) => chunk?,
            };
            match chunk {
                Chunk::Stdout(bytes) => {
                    let frames = self.frames.feed(bytes).map_err(|garbled| not_ready(garbled.to_string()))?;
                    if frames.contains(&Out::Ready) {
                        self.ready_again();
                        return Ok(());
                    }
                }
                Chunk::Stderr(bytes) => self.supervisor_said(&bytes),
            }
        }
    }

    /// The supervisor's own trouble (a Python traceback, on the container's stderr): worth a
    /// log line, never a program's output.
    pub fn supervisor_said(&self, bytes: &[u8]) {
        tracing::warn!(container = %self.name, stderr = %String::from_utf8_lossy(bytes), "sandbox supervisor");
    }

    /// The next piece of output.
    pub async fn next(&mut self) -> Option<Result<Chunk, SandboxError>> {
        self.output.next().await
    }

    /// The next piece of output if one is there already.
    pub fn next_ready(&mut self) -> Option<Option<Result<Chunk, SandboxError>>> {
        self.output.next().now_or_never()
    }

    /// Is it still up? A container killed from outside has ended its output. (Only for one
    /// waiting for a program: it says nothing then, so a chunk it did say is dropped.)
    pub fn alive(&mut self) -> bool {
        !matches!(self.next_ready(), Some(None | Some(Err(_))))
    }

    /// Write frames to the supervisor.
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), SandboxError> {
        let mut stdin = self.stdin.lock().await;
        let written = async {
            stdin.write_all(frame).await?;
            stdin.flush().await
        };
        written.await.map_err(|e| SandboxError::Docker { operation: "write to a container", source: e.into() })
    }

    /// Stop reading its output: Docker does not call a container stopped while its attached
    /// output is neither drained nor dropped, so a kill or a wait would wait on us.
    fn let_go(&mut self) {
        // Both halves of the attach connection: it closes when neither is held.
        self.output = Box::pin(futures_util::stream::empty());
        self.stdin = Arc::new(Mutex::new(Box::pin(tokio::io::sink())));
    }

    /// SIGKILL it (unless it already stopped), and how it ended. Its output is no longer read: a
    /// killed container serves no more. (Letting go closes its stdin, on which the supervisor
    /// ends the program itself: the container may be gone before the kill arrives.)
    pub async fn kill(&mut self) -> Result<ExitState, SandboxError> {
        self.let_go();
        self.engine.kill(&self.id).await?;
        tokio::time::timeout(STOP_GRACE, self.engine.wait(&self.id)).await.map_err(|_| SandboxError::StopTimeout)?
    }

    /// How it ended, once it stopped by itself (its output is no longer read).
    pub async fn exit(&mut self, within: Duration) -> Result<Option<ExitState>, SandboxError> {
        self.let_go();
        match tokio::time::timeout(within, self.engine.wait(&self.id)).await {
            Ok(exit) => exit.map(Some),
            Err(_late) => Ok(None),
        }
    }

    /// Has it stopped, as its engine says? False when the engine does not answer: a container
    /// whose output ended may still run (an engine restarting cut the attach stream).
    // `&mut`: a container is not `Sync` (its output stream), and a run's future must be `Send`.
    pub async fn stopped(&mut self) -> bool {
        matches!(tokio::time::timeout(ASK_GRACE, self.engine.running(&self.id)).await, Ok(Ok(false)))
    }

    /// Remove it, in the background: nobody waits for a removal.
    pub fn discard(self) {
        drop(self);
    }
}

/// A container that is not kept (a run ended, a start failed half-way, a task was cancelled)
/// is removed.
impl Drop for Container {
    fn drop(&mut self) {
        let id = std::mem::take(&mut self.id);
        if !id.is_empty() {
            self.engine.remove_later(id);
        }
    }
}

/// Removes the container when dropped before `keep` (a start that failed or was cancelled).
struct RemoveOnDrop {
    engine: Engine,
    id: Option<String>,
}

impl RemoveOnDrop {
    fn keep(mut self) {
        self.id = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.engine.remove_later(id);
        }
    }
}
