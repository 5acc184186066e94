//! One program in one fresh container: create, attach, start, send the program, pass its
//! output on as it comes within the limits, learn how it ended, and remove the container on
//! every path.

use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SandboxError;
use super::docker::{Engine, ExitState};
use super::limits::{ContainerJob, ContainerSettings, container_body};
use crate::trace::EventLog;

pub use super::docker::Chunk;

/// How long a killed container may take to report that it stopped.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Output kept past the limit, per stream, only so that a secret the limit cuts in two is
/// still recognised and redacted; it is never returned.
const LOOKAHEAD_BYTES: usize = 16 * 1024;

/// How a run talks to whoever asked for it while it runs.
pub struct RunIo {
    /// Output within the limit, chunk by chunk as the program writes it. Dropped when the run
    /// ends, which ends the receiver's stream.
    pub output: mpsc::UnboundedSender<Chunk>,
    /// More stdin after the framed program, until the sender is dropped; `None` closes stdin
    /// right after the program's initial stdin.
    pub stdin: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    /// Cancelled when the client wants the run stopped.
    pub kill: CancellationToken,
    /// Told once the program is running.
    pub started: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The raw result of a run, before decoding and redaction. The output itself went out
/// through [`RunIo::output`].
#[derive(Debug, Default)]
pub struct RawOutcome {
    pub exit_code: Option<i64>,
    /// Up to [`LOOKAHEAD_BYTES`] of stdout written after the limit cut it, only to redact a
    /// secret the cut split in two; never shown.
    pub stdout_beyond: Vec<u8>,
    /// The same for stderr.
    pub stderr_beyond: Vec<u8>,
    pub timed_out: bool,
    pub oom_killed: bool,
    /// The output limit was reached: output is cut there and the run was stopped.
    pub output_limited: bool,
    /// The client stopped the run.
    pub killed: bool,
    /// From container start to exit.
    pub duration: Duration,
}

/// The program framed for the runner: `TRACEBOX1 <length>\n`, the code, then its stdin.
pub fn frame(code: &str, stdin: &str) -> Vec<u8> {
    let mut framed = format!("TRACEBOX1 {}\n", code.len()).into_bytes();
    framed.extend_from_slice(code.as_bytes());
    framed.extend_from_slice(stdin.as_bytes());
    framed
}

/// Run `job` with `input` (a [`frame`]) in a new container, which is gone when this returns.
pub async fn run_in_fresh_container(
    engine: &Engine,
    settings: &ContainerSettings,
    job: &ContainerJob<'_>,
    input: Vec<u8>,
    io: RunIo,
    log: &mut EventLog,
) -> Result<RawOutcome, SandboxError> {
    if io.kill.is_cancelled() {
        return Ok(RawOutcome { killed: true, ..RawOutcome::default() });
    }
    let name = format!("tracebox-{}", job.trace_id);
    let id = engine.create(&name, container_body(settings, job)).await?;
    log.record("container.created", json!({ "name": name }));
    let removal = RemoveOnDrop { engine: engine.clone(), id: Some(id.clone()) };
    let outcome = drive(engine, &id, job, input, io, log).await;
    removal.remove_now().await;
    log.record("container.removed", Value::Null);
    outcome
}

/// Why tracebox stopped a run before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Timeout,
    OutputLimit,
    Killed,
}

async fn drive(
    engine: &Engine,
    id: &str,
    job: &ContainerJob<'_>,
    input: Vec<u8>,
    io: RunIo,
    log: &mut EventLog,
) -> Result<RawOutcome, SandboxError> {
    let RunIo { output: sink, stdin: more_stdin, kill, started: on_start } = io;
    let (output, stdin) = engine.attach(id).await?;
    engine.start(id).await?;
    let started = Instant::now();
    let deadline = started + job.limits.timeout;
    log.record("container.started", Value::Null);
    if let Some(on_start) = on_start {
        let _ = on_start.send(());
    }

    // Feed stdin beside reading output: a program that prints before it reads would otherwise
    // deadlock against a full pipe. Closing stdin gives the program its end of file.
    let feeder = tokio::spawn(feed_stdin(stdin, input, more_stdin));
    let mut collector = Collector::new(job.limits.output_bytes, sink);
    let mut output = Box::pin(output);
    let read = tokio::select! {
        read = tokio::time::timeout_at(deadline, collector.read_to_limit(&mut output)) => read.map(Some),
        () = kill.cancelled() => Ok(None),
    };
    feeder.abort();
    if let Ok(Some(Ok(()))) = read
        && collector.limited
    {
        collector.take_ready(&mut output)?;
    }
    // Docker does not call a container stopped until its attached output is drained or
    // dropped: stop reading before killing, or the kill would wait on us.
    drop(output);
    let stop = match read {
        Err(_elapsed) => Stop::Timeout,
        Ok(None) => Stop::Killed,
        Ok(Some(Err(error))) => return Err(error),
        Ok(Some(Ok(()))) if collector.limited => Stop::OutputLimit,
        // The output ends when the program closes it, which is not always when it exits:
        // the deadline and the client's kill still hold while waiting.
        Ok(Some(Ok(()))) => tokio::select! {
            exit = tokio::time::timeout_at(deadline, engine.wait(id)) => match exit {
                Ok(exit) => return Ok(collector.finish(exit?, None, started, log)),
                Err(_elapsed) => Stop::Timeout,
            },
            () = kill.cancelled() => Stop::Killed,
        },
    };
    let stopped = stop_container(engine, id, stop, job, log).await?;
    Ok(collector.finish(stopped.0, stopped.1, started, log))
}

/// Write the framed program, then whatever more stdin the client sends, then close stdin.
async fn feed_stdin(
    mut stdin: impl tokio::io::AsyncWrite + Unpin,
    input: Vec<u8>,
    more: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
) {
    if stdin.write_all(&input).await.is_err() {
        return;
    }
    if let Some(mut more) = more {
        let _ = stdin.flush().await;
        while let Some(data) = more.recv().await {
            if stdin.write_all(&data).await.is_err() || stdin.flush().await.is_err() {
                return;
            }
        }
    }
    let _ = stdin.shutdown().await;
}

/// Kill the container for `stop` and wait until it is gone; the reason is `None` when it had
/// already ended by itself (it beat the deadline by a hair).
async fn stop_container(
    engine: &Engine,
    id: &str,
    stop: Stop,
    job: &ContainerJob<'_>,
    log: &mut EventLog,
) -> Result<(ExitState, Option<Stop>), SandboxError> {
    let killed = engine.kill(id).await?;
    let stop = killed.then_some(stop);
    match stop {
        Some(Stop::Timeout) => log.record("timeout", json!({ "after_ms": job.limits.timeout.as_millis() as u64 })),
        Some(Stop::OutputLimit) => log.record("output_limit", json!({ "bytes": job.limits.output_bytes })),
        Some(Stop::Killed) => log.record("killed", json!({ "by": "client" })),
        None => {}
    }
    let exit = tokio::time::timeout(STOP_GRACE, engine.wait(id)).await.map_err(|_| SandboxError::StopTimeout)??;
    Ok((exit, stop))
}

/// Output of both streams, passed on up to a combined limit; the head is kept.
struct Collector {
    /// Closed once the limit is reached, so the screen knows at once that the output ended
    /// there (and never releases a held piece by itself while the container is being stopped).
    sink: Option<mpsc::UnboundedSender<Chunk>>,
    stdout_beyond: Vec<u8>,
    stderr_beyond: Vec<u8>,
    room: u64,
    limited: bool,
}

impl Collector {
    fn new(limit: u64, sink: mpsc::UnboundedSender<Chunk>) -> Collector {
        Collector {
            sink: Some(sink),
            stdout_beyond: Vec::new(),
            stderr_beyond: Vec::new(),
            room: limit,
            limited: false,
        }
    }

    /// Read until the output ends or passes the limit.
    async fn read_to_limit(
        &mut self,
        output: &mut (impl Stream<Item = Result<Chunk, SandboxError>> + Unpin),
    ) -> Result<(), SandboxError> {
        while let Some(chunk) = output.next().await {
            self.push(chunk?);
            if self.limited {
                break;
            }
        }
        Ok(())
    }

    /// Take what the program already wrote past the limit, without waiting for more.
    fn take_ready(
        &mut self,
        output: &mut (impl Stream<Item = Result<Chunk, SandboxError>> + Unpin),
    ) -> Result<(), SandboxError> {
        while self.stdout_beyond.len() + self.stderr_beyond.len() < LOOKAHEAD_BYTES {
            match output.next().now_or_never() {
                Some(Some(chunk)) => self.push(chunk?),
                Some(None) | None => break,
            }
        }
        Ok(())
    }

    /// Pass on a chunk, as much of it as fits; the rest goes to the lookahead.
    fn push(&mut self, chunk: Chunk) {
        let (bytes, beyond) = match &chunk {
            Chunk::Stdout(bytes) => (bytes, &mut self.stdout_beyond),
            Chunk::Stderr(bytes) => (bytes, &mut self.stderr_beyond),
        };
        let fits = bytes.len().min(usize::try_from(self.room).unwrap_or(usize::MAX));
        self.room -= fits as u64;
        if fits < bytes.len() {
            self.limited = true;
            let wanted = LOOKAHEAD_BYTES.saturating_sub(beyond.len());
            let rest = &bytes[fits..];
            beyond.extend_from_slice(&rest[..rest.len().min(wanted)]);
        }
        if fits > 0
            && let Some(sink) = &self.sink
        {
            let kept = match chunk {
                Chunk::Stdout(bytes) => Chunk::Stdout(bytes.slice(..fits)),
                Chunk::Stderr(bytes) => Chunk::Stderr(bytes.slice(..fits)),
            };
            // Nobody listening any more is fine: the run still ends, is recorded and cleaned up.
            let _ = sink.send(kept);
        }
        if self.limited {
            self.sink = None;
        }
    }

    fn finish(self, exit: ExitState, stop: Option<Stop>, started: Instant, log: &mut EventLog) -> RawOutcome {
        log.record("container.exited", json!({ "exit_code": exit.exit_code, "oom_killed": exit.oom_killed }));
        RawOutcome {
            exit_code: exit.exit_code,
            stdout_beyond: self.stdout_beyond,
            stderr_beyond: self.stderr_beyond,
            timed_out: stop == Some(Stop::Timeout),
            oom_killed: exit.oom_killed,
            output_limited: self.limited,
            killed: stop == Some(Stop::Killed),
            duration: started.elapsed(),
        }
    }
}

/// Removes the container when dropped without `remove_now` (the run was cancelled).
struct RemoveOnDrop {
    engine: Engine,
    id: Option<String>,
}

impl RemoveOnDrop {
    async fn remove_now(mut self) {
        if let Some(id) = self.id.take() {
            attempt_remove(&self.engine, &id).await;
        }
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let engine = self.engine.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { attempt_remove(&engine, &id).await });
            }
            Err(_) => {
                tracing::warn!(container = %id, "run cancelled outside a runtime; the sweeper will remove its container")
            }
        }
    }
}

async fn attempt_remove(engine: &Engine, id: &str) {
    if let Err(error) = engine.remove(id).await {
        tracing::warn!(container = %id, %error, "could not remove a container; the sweeper will retry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn the_frame_carries_the_code_length_then_code_then_stdin() {
        assert_eq!(frame("print('é')", "1\n"), b"TRACEBOX1 11\nprint('\xc3\xa9')1\n".to_vec());
        assert_eq!(frame("", ""), b"TRACEBOX1 0\n".to_vec());
    }

    fn collector(limit: u64) -> (Collector, mpsc::UnboundedReceiver<Chunk>) {
        let (sink, chunks) = mpsc::unbounded_channel();
        (Collector::new(limit, sink), chunks)
    }

    fn passed_on(chunks: &mut mpsc::UnboundedReceiver<Chunk>) -> (Vec<u8>, Vec<u8>) {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Ok(chunk) = chunks.try_recv() {
            match chunk {
                Chunk::Stdout(bytes) => stdout.extend_from_slice(&bytes),
                Chunk::Stderr(bytes) => stderr.extend_from_slice(&bytes),
            }
        }
        (stdout, stderr)
    }

    #[test]
    fn the_collector_passes_on_the_head_up_to_the_limit_across_streams() {
        let (mut collector, mut chunks) = collector(10);
        collector.push(Chunk::Stdout(Bytes::from_static(b"hello")));
        collector.push(Chunk::Stderr(Bytes::from_static(b"oops")));
        assert!(!collector.limited);
        collector.push(Chunk::Stdout(Bytes::from_static(b"world")));
        assert!(collector.limited);
        assert_eq!(passed_on(&mut chunks), (b"hellow".to_vec(), b"oops".to_vec()));
        assert_eq!(collector.stdout_beyond, b"orld", "what was cut is kept aside for redaction");
    }

    #[test]
    fn the_output_channel_closes_when_the_limit_is_reached() {
        let (mut collector, mut chunks) = collector(3);
        collector.push(Chunk::Stdout(Bytes::from_static(b"abcd")));
        assert_eq!(passed_on(&mut chunks).0, b"abc");
        assert!(chunks.is_closed(), "the screen learns at once that the output ended at the cut");
    }

    #[test]
    fn output_exactly_at_the_limit_is_not_truncated() {
        let (mut collector, _chunks) = collector(5);
        collector.push(Chunk::Stdout(Bytes::from_static(b"12345")));
        assert!(!collector.limited);
        collector.push(Chunk::Stdout(Bytes::from_static(b"6")));
        assert!(collector.limited);
    }

    #[test]
    fn the_lookahead_is_bounded() {
        let (mut collector, mut chunks) = collector(1);
        collector.push(Chunk::Stderr(Bytes::from(vec![b'x'; LOOKAHEAD_BYTES * 3])));
        assert_eq!(passed_on(&mut chunks).1.len(), 1);
        assert_eq!(collector.stderr_beyond.len(), LOOKAHEAD_BYTES);
    }
}
