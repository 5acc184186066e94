//! One program in one fresh container: create, attach, start, send the program, pass its
//! output on as it comes within the limits, learn how it ended, pass on the tar of what it
//! left in `/workspace/out`, and remove the container on every path.

use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SandboxError;
use super::docker::{Engine, ExitState};
use super::end::EndScanner;
use super::limits::{ContainerJob, ContainerSettings, container_body};
use crate::trace::EventLog;

pub use super::docker::Chunk;

/// How long a killed container may take to report that it stopped.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long the artifacts may take to arrive after the program ended: longer than the 10 s the
/// supervisor gives its `tar`, so a container normally ends by itself.
pub const ARTIFACTS_GRACE: Duration = Duration::from_secs(15);

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
    /// The tar of `/workspace/out`, as the container sends it once the program ended; dropped
    /// when the run ends. A receiver that goes away makes the rest be discarded.
    pub artifacts: mpsc::Sender<bytes::Bytes>,
    /// The most tar bytes taken; past it the artifacts are cut (a program that forged the end
    /// line cannot stream into them for ever).
    pub artifacts_budget: u64,
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
    /// The program ended, but its artifacts were cut short, and why.
    pub artifacts_cut: Option<ArtifactsCut>,
    /// From container start to the program's end.
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

/// Why the artifacts of a program that ended were cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactsCut {
    /// They did not all arrive within [`ARTIFACTS_GRACE`].
    Late,
    /// The client stopped the run while they came.
    Killed,
    /// Output after the program's end passed the output limit.
    OutputLimit,
    /// More came than the limits allow (only a program that forged the end line can send it).
    TooLarge,
}

/// Why tracebox stopped a run before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Timeout,
    OutputLimit,
    Killed,
}

/// How far to read a container's output.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Until {
    /// The supervisor's end line: the program has ended.
    ProgramEnd,
    /// The end of the output: the container is ending.
    OutputEnd,
}

/// How a read of the output ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Read {
    /// It got as far as asked, or the output ended before.
    Done,
    /// The output limit was reached.
    Limited,
    /// The time allowed passed.
    Late,
    /// The client wants the run stopped.
    Killed,
    /// More artifacts came than the budget.
    TooLarge,
}

async fn drive(
    engine: &Engine,
    id: &str,
    job: &ContainerJob<'_>,
    input: Vec<u8>,
    io: RunIo,
    log: &mut EventLog,
) -> Result<RawOutcome, SandboxError> {
    let RunIo { output: sink, stdin: more_stdin, kill, started: on_start, artifacts, artifacts_budget } = io;
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
    let mut collector = Collector::new(job.limits.output_bytes, sink, job.marker, artifacts, artifacts_budget);
    let mut output = Box::pin(output);
    let read = collector.read(&mut output, Until::ProgramEnd, deadline, &kill).await;
    feeder.abort();
    let mut read = read?;
    if read == Read::Done && collector.program_ended() {
        log.record("program.ended", json!({ "exit_code": collector.program_status() }));
        read = collector.read(&mut output, Until::OutputEnd, Instant::now() + ARTIFACTS_GRACE, &kill).await?;
    }
    if read == Read::Limited {
        collector.take_ready(&mut output)?;
    }
    // Docker does not call a container stopped until its attached output is drained or
    // dropped: stop reading before killing, or the kill would wait on us.
    drop(output);
    let ended = collector.program_ended();
    if ended && read != Read::Done {
        let cut = match read {
            Read::Late => ArtifactsCut::Late,
            Read::Killed => ArtifactsCut::Killed,
            Read::Limited => ArtifactsCut::OutputLimit,
            Read::TooLarge | Read::Done => ArtifactsCut::TooLarge,
        };
        log.record("artifacts.cut", json!({ "why": format!("{cut:?}") }));
        collector.artifacts_cut = Some(cut);
    }
    let stop = match read {
        Read::Limited => Some(Stop::OutputLimit),
        // Once the program ended by itself (as it has when artifacts came), a stop only cuts
        // its artifacts short.
        Read::Late | Read::Killed if ended => None,
        Read::TooLarge => None,
        Read::Late => Some(Stop::Timeout),
        Read::Killed => Some(Stop::Killed),
        // After the end line the supervisor exits by itself. Without one, the output ended when
        // the program closed it, which is not always when it exits: the deadline and the
        // client's kill still hold while waiting.
        Read::Done => {
            let until = if ended { Instant::now() + STOP_GRACE } else { deadline };
            tokio::select! {
                exit = tokio::time::timeout_at(until, engine.wait(id)) => match exit {
                    Ok(exit) => return Ok(collector.finish(exit?, None, started, log)),
                    Err(_elapsed) => (!ended).then_some(Stop::Timeout),
                },
                () = kill.cancelled() => (!ended).then_some(Stop::Killed),
            }
        }
    };
    let (exit, stop) = stop_container(engine, id, stop, job, log).await?;
    Ok(collector.finish(exit, stop, started, log))
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

/// Kill the container, for `stop` when tracebox stopped the run, and wait until it is gone;
/// the reason is `None` when it had already ended by itself (it beat the deadline by a hair).
async fn stop_container(
    engine: &Engine,
    id: &str,
    stop: Option<Stop>,
    job: &ContainerJob<'_>,
    log: &mut EventLog,
) -> Result<(ExitState, Option<Stop>), SandboxError> {
    let killed = engine.kill(id).await?;
    let stop = stop.filter(|_| killed);
    match stop {
        Some(Stop::Timeout) => log.record("timeout", json!({ "after_ms": job.limits.timeout.as_millis() as u64 })),
        Some(Stop::OutputLimit) => log.record("output_limit", json!({ "bytes": job.limits.output_bytes })),
        Some(Stop::Killed) => log.record("killed", json!({ "by": "client" })),
        None => {}
    }
    let exit = tokio::time::timeout(STOP_GRACE, engine.wait(id)).await.map_err(|_| SandboxError::StopTimeout)??;
    Ok((exit, stop))
}

/// A container's output: the program's stdout and stderr passed on up to a combined limit
/// (the head is kept), and after the supervisor's end line the artifacts' tar.
struct Collector {
    /// Closed once the limit is reached, so the screen knows at once that the output ended
    /// there (and never releases a held piece by itself while the container is being stopped).
    sink: Option<mpsc::UnboundedSender<Chunk>>,
    /// Dropped when its receiver goes away; the rest of the tar is then discarded.
    artifacts: Option<mpsc::Sender<bytes::Bytes>>,
    /// Tar bytes that may still be taken.
    artifacts_room: u64,
    artifacts_over: bool,
    scanner: EndScanner,
    /// When the program ended, and its status as the end line gave it.
    ended: Option<(Instant, Option<i64>)>,
    stdout_beyond: Vec<u8>,
    stderr_beyond: Vec<u8>,
    room: u64,
    limited: bool,
    artifacts_cut: Option<ArtifactsCut>,
}

impl Collector {
    fn new(
        limit: u64,
        sink: mpsc::UnboundedSender<Chunk>,
        marker: &str,
        artifacts: mpsc::Sender<bytes::Bytes>,
        artifacts_budget: u64,
    ) -> Collector {
        Collector {
            sink: Some(sink),
            artifacts: Some(artifacts),
            artifacts_room: artifacts_budget,
            artifacts_over: false,
            scanner: EndScanner::new(marker),
            ended: None,
            stdout_beyond: Vec::new(),
            stderr_beyond: Vec::new(),
            room: limit,
            limited: false,
            artifacts_cut: None,
        }
    }

    fn program_ended(&self) -> bool {
        self.ended.is_some()
    }

    fn program_status(&self) -> Option<i64> {
        self.ended.and_then(|(_, status)| status)
    }

    /// Read `until` the program or the output ends, the limit is reached, `deadline` passes
    /// or the client kills the run.
    async fn read(
        &mut self,
        output: &mut (impl Stream<Item = Result<Chunk, SandboxError>> + Unpin),
        until: Until,
        deadline: Instant,
        kill: &CancellationToken,
    ) -> Result<Read, SandboxError> {
        let reading = async {
            while let Some(chunk) = output.next().await {
                self.take(chunk?).await;
                if self.limited {
                    return Ok(Read::Limited);
                }
                if self.artifacts_over {
                    return Ok(Read::TooLarge);
                }
                if until == Until::ProgramEnd && self.program_ended() {
                    return Ok(Read::Done);
                }
            }
            Ok(Read::Done)
        };
        tokio::select! {
            read = tokio::time::timeout_at(deadline, reading) => read.unwrap_or(Ok(Read::Late)),
            () = kill.cancelled() => Ok(Read::Killed),
        }
    }

    /// Sort one chunk: the program's output, its end, or the artifacts.
    async fn take(&mut self, chunk: Chunk) {
        let Chunk::Stdout(bytes) = chunk else { return self.push(chunk) };
        let split = self.scanner.scan(bytes);
        if let Some(program) = split.program {
            self.push(Chunk::Stdout(program));
        }
        if let Some(status) = split.ended {
            self.ended = Some((Instant::now(), status));
        }
        let Some(tar) = split.artifacts else { return };
        if tar.len() as u64 > self.artifacts_room {
            // The receiver sees the archive end here: what came whole is kept.
            self.artifacts = None;
            self.artifacts_over = true;
            return;
        }
        self.artifacts_room -= tar.len() as u64;
        if let Some(artifacts) = &self.artifacts
            && artifacts.send(tar).await.is_err()
        {
            self.artifacts = None;
        }
    }

    /// Take what the program already wrote past the limit, without waiting for more.
    fn take_ready(
        &mut self,
        output: &mut (impl Stream<Item = Result<Chunk, SandboxError>> + Unpin),
    ) -> Result<(), SandboxError> {
        while self.stdout_beyond.len() + self.stderr_beyond.len() < LOOKAHEAD_BYTES {
            match output.next().now_or_never() {
                // Past the limit only the lookahead matters, never the end line.
                Some(Some(chunk)) => self.push(chunk?),
                Some(None) | None => break,
            }
        }
        Ok(())
    }

    /// Pass on a chunk of the program's output, as much of it as fits; the rest goes to the
    /// lookahead.
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

    fn finish(mut self, exit: ExitState, stop: Option<Stop>, started: Instant, log: &mut EventLog) -> RawOutcome {
        // What was held back as a possible start of the end line was the program's after all.
        if let Some(held) = self.scanner.finish() {
            self.push(Chunk::Stdout(held));
        }
        log.record("container.exited", json!({ "exit_code": exit.exit_code, "oom_killed": exit.oom_killed }));
        let ended_at = self.ended.map_or_else(Instant::now, |(at, _)| at);
        RawOutcome {
            // The end line tells the program's own status even when the container had to be
            // killed afterwards; it is the container's exit code otherwise.
            exit_code: self.program_status().or(exit.exit_code),
            stdout_beyond: self.stdout_beyond,
            stderr_beyond: self.stderr_beyond,
            timed_out: stop == Some(Stop::Timeout),
            oom_killed: exit.oom_killed,
            output_limited: self.limited,
            killed: stop == Some(Stop::Killed),
            artifacts_cut: self.artifacts_cut,
            duration: ended_at.saturating_duration_since(started),
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
        let (artifacts, _) = mpsc::channel(1);
        (Collector::new(limit, sink, "marker", artifacts, 1024), chunks)
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

    #[tokio::test]
    async fn after_the_end_line_stdout_is_the_artifacts_and_stderr_still_the_programs() {
        let (sink, mut chunks) = mpsc::unbounded_channel();
        let (artifacts, mut tar) = mpsc::channel(4);
        let mut collector = Collector::new(100, sink, "m", artifacts, 7);
        collector.take(Chunk::Stdout(Bytes::from_static(b"out\0TRACEBOX-END m 7\nTAR"))).await;
        assert_eq!(collector.program_status(), Some(7));
        collector.take(Chunk::Stderr(Bytes::from_static(b"late"))).await;
        collector.take(Chunk::Stdout(Bytes::from_static(b"MORE"))).await;
        assert_eq!(passed_on(&mut chunks), (b"out".to_vec(), b"late".to_vec()));
        assert_eq!((tar.recv().await.unwrap(), tar.recv().await.unwrap()), (Bytes::from("TAR"), Bytes::from("MORE")));
        assert_eq!(collector.room, 100 - 7, "the artifacts do not count as output");
        collector.take(Chunk::Stdout(Bytes::from_static(b"!"))).await;
        assert!(collector.artifacts_over && collector.artifacts.is_none(), "past the budget the archive ends");
    }

    #[test]
    fn the_lookahead_is_bounded() {
        let (mut collector, mut chunks) = collector(1);
        collector.push(Chunk::Stderr(Bytes::from(vec![b'x'; LOOKAHEAD_BYTES * 3])));
        assert_eq!(passed_on(&mut chunks).1.len(), 1);
        assert_eq!(collector.stderr_beyond.len(), LOOKAHEAD_BYTES);
    }
}
