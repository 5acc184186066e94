//! One program in one container (warm from the pool, or made for it): hand it over, feed its
//! stdin, pass its output on as it comes within the limits, learn how it ended from the
//! supervisor's end frame, pass on the tar of what it left in `/workspace/out`, and stop the
//! container when it must be stopped. Whether the container serves again is the caller's call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tracebox_model::EventLog;

use super::SandboxError;
use super::container::{Container, Input, STOP_GRACE};
use super::docker::ExitState;
use super::handler::Channel;
use super::output::Output;
use super::protocol::{self, End, Garbled, HandlerFrame, Out};

pub use super::docker::Chunk;

/// How long the artifacts may take to arrive after the program ended.
pub const ARTIFACTS_GRACE: Duration = Duration::from_secs(15);

/// How long the stdin feeder may take to finish its frame once the run ended.
const FEEDER_GRACE: Duration = Duration::from_millis(200);

/// How a run talks to whoever asked for it while it runs.
pub struct RunIo {
    /// Output within the limit, chunk by chunk as the program writes it. Dropped when the run
    /// ends, which ends the receiver's stream.
    pub output: mpsc::Sender<Chunk>,
    /// More stdin after the request's own, until the sender is dropped; `None` closes stdin
    /// right after the request's stdin.
    pub stdin: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    /// Cancelled when the client wants the run stopped.
    pub kill: CancellationToken,
    /// Told once the program is running.
    pub started: Option<tokio::sync::oneshot::Sender<()>>,
    /// The tar of `/workspace/out`, as the container sends it once the program ended; dropped
    /// when the run ends. A receiver that goes away makes the rest be discarded.
    pub artifacts: mpsc::Sender<bytes::Bytes>,
    /// The most tar bytes taken; past it the artifacts are cut.
    pub artifacts_budget: u64,
}

/// The program, as the run hands it over.
pub struct Program<'a> {
    pub code: &'a str,
    pub env: &'a BTreeMap<String, String>,
    pub stdin: &'a str,
    pub timeout: Duration,
    pub output_bytes: u64,
    /// Handler mode: the call, and what its result's channel may carry.
    pub handler: Option<HandlerFrame<'a>>,
}

/// The raw result of a run, before decoding and redaction. The output itself went out
/// through [`RunIo::output`].
#[derive(Debug, Default)]
pub struct RawOutcome {
    pub exit_code: Option<i64>,
    /// Up to [`output::LOOKAHEAD_BYTES`] of stdout written after the limit cut it, only to redact a
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
    /// From handing the program over to its end.
    pub duration: Duration,
    /// The program ended by itself and all of its output and artifacts came: its container
    /// may serve again (when its isolation allows).
    pub clean: bool,
    /// A sandbox's code cell: its result or error.
    pub cell: Option<tracebox_model::record::CellOutcome>,
    /// Handler mode: what came on the result's channel; None when nothing did.
    pub handler: Option<tracebox_model::HandlerOutcome>,
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
    /// More came than the limits allow.
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
    /// The program's end: its end frame.
    ProgramEnd,
    /// The end of the artifacts' tar.
    TarEnd,
}

/// How a read of the output ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Read {
    /// It got as far as asked.
    Done,
    /// The output ended first: the container stopped.
    Gone,
    /// The output limit was reached.
    Limited,
    /// The time allowed passed.
    Late,
    /// The client wants the run stopped.
    Killed,
    /// More artifacts came than the budget.
    TooLarge,
    /// The channel carried something its supervisor never writes.
    Garbled,
}

/// How handing a program to a container came out.
// Nearly every run is `Ran`, returned once: boxing it would cost an allocation per run.
#[allow(clippy::large_enum_variant)]
pub enum Handover {
    /// The program ran, or was stopped: its outcome; or what failed.
    Ran(Result<RawOutcome, SandboxError>),
    /// The container stopped, as its engine confirms, before its supervisor took the program:
    /// nothing of it ran, nothing reached the client, and `io` comes back whole, so another
    /// container may take it.
    NotTaken(RunIo),
}

/// Why a run in a container came to no outcome.
enum Failed {
    Error(SandboxError),
    /// The container was lost before it took the program; with the run's io when it can go to
    /// another container whole.
    Lost(Option<RunIo>),
}

impl From<SandboxError> for Failed {
    fn from(error: SandboxError) -> Failed {
        Failed::Error(error)
    }
}

/// Run `program` in `container` (ready for one), talking to its client through `io` and
/// recording its steps in `log`.
pub async fn run(container: &mut Container, program: Program<'_>, io: RunIo, log: &mut EventLog) -> Handover {
    match run_program(container, program, io, log).await {
        Ok(raw) => Handover::Ran(Ok(raw)),
        Err(Failed::Error(error)) => Handover::Ran(Err(error)),
        Err(Failed::Lost(Some(io))) => Handover::NotTaken(io),
        Err(Failed::Lost(None)) => Handover::Ran(Err(SandboxError::Lost)),
    }
}

async fn run_program(
    container: &mut Container,
    program: Program<'_>,
    io: RunIo,
    log: &mut EventLog,
) -> Result<RawOutcome, Failed> {
    let RunIo { output: sink, stdin: more_stdin, kill, started: on_start, artifacts, artifacts_budget } = io;
    if kill.is_cancelled() {
        return Ok(RawOutcome { killed: true, ..RawOutcome::default() });
    }
    // The program goes now; its stdin beside reading output (a program that prints before it
    // reads, or never reads, must not stall its own run), frame by frame.
    let mut frame = protocol::program_frame(program.code, program.env, program.timeout, program.handler.as_ref());
    let stdin_now = program.stdin.as_bytes().to_vec();
    let nothing_more = more_stdin.is_none() && stdin_now.is_empty();
    if nothing_more {
        frame.extend_from_slice(protocol::END_OF_STDIN);
    }
    // A container that stopped taking input (frozen from outside) must not hold the run.
    let handed_over = tokio::select! {
        sent = tokio::time::timeout(program.timeout, container.send(&frame)) => sent,
        () = kill.cancelled() => return Ok(RawOutcome { killed: true, ..RawOutcome::default() }),
    };
    match handed_over {
        Err(_late) => {
            let why = format!("it took no program within the run's {:?} timeout", program.timeout);
            return Err(SandboxError::NotReady { why }.into());
        }
        // Its stdin is closed: the container is gone, and nothing of the program ran.
        Ok(Err(_gone)) => {
            let io = RunIo { output: sink, stdin: more_stdin, kill, started: on_start, artifacts, artifacts_budget };
            return Err(Failed::Lost(container.stopped().await.then_some(io)));
        }
        Ok(Ok(())) => {}
    }
    let started = Instant::now();
    let deadline = started + program.timeout;
    log.record("program.sent", json!({ "container": container.name }));
    let stop_feeding = CancellationToken::new();
    let feeder = (!nothing_more)
        .then(|| tokio::spawn(feed(Arc::clone(&container.stdin), stdin_now, more_stdin, stop_feeding.clone())));
    let mut collector = Collector::new(program.output_bytes, sink, artifacts, artifacts_budget, on_start);
    collector.channel = program.handler.as_ref().map(Channel::of);
    let read = collector.read(container, Until::ProgramEnd, deadline, &kill).await;
    stop_feeding.cancel();
    // What the feeder did with the client's stdin; none to feed is none taken.
    let mut fed = Fed::Untouched(None);
    if let Some(mut feeder) = feeder {
        match tokio::time::timeout(FEEDER_GRACE, &mut feeder).await {
            Ok(Ok(done)) => fed = done,
            Ok(Err(_panicked)) => fed = Fed::Took,
            Err(_stuck) => {
                fed = Fed::Took;
                // Stuck in the middle of a frame (a supervisor that stopped reading): the
                // container's stdin is no longer whole, so it serves no other run.
                feeder.abort();
                collector.stdin_cut = true;
            }
        }
    }
    let mut read = read?;
    let ended = collector.program_ended();
    if read == Read::Done {
        collector.ended_at = Some(Instant::now());
        log.record("program.ended", json!({ "exit_code": collector.end.map(|e| e.status) }));
        read = collector.read(container, Until::TarEnd, Instant::now() + ARTIFACTS_GRACE, &kill).await?;
    }
    if read == Read::Limited {
        collector.take_ready(container)?;
    }
    if let Some(garbled) = collector.garbled.take() {
        // Nothing it says can be believed any more: it serves no one, and the run says so.
        log.record("channel.garbled", json!({ "why": garbled.to_string() }));
        container.kill().await?;
        return Err(SandboxError::Garbled(garbled).into());
    }
    if read != Read::Done && (ended || read == Read::TooLarge) {
        let cut = match read {
            Read::Late | Read::Gone => ArtifactsCut::Late,
            Read::Killed => ArtifactsCut::Killed,
            Read::Limited => ArtifactsCut::OutputLimit,
            Read::TooLarge | Read::Done | Read::Garbled => ArtifactsCut::TooLarge,
        };
        log.record("artifacts.cut", json!({ "why": format!("{cut:?}") }));
        collector.artifacts_cut = Some(cut);
    }
    let stop = match read {
        Read::Done => return Ok(collector.finish(container, None, None, started, log).await),
        Read::Limited => Some(Stop::OutputLimit),
        // Once the program ended by itself, a stop only cuts its artifacts short; so does a tar
        // past the budget (its END line said the program ended, whoever wrote it).
        Read::Late | Read::Killed | Read::Gone if ended => None,
        Read::TooLarge | Read::Garbled => None,
        Read::Late => Some(Stop::Timeout),
        Read::Killed => Some(Stop::Killed),
        // Gone before the supervisor said it took the program: it never started (a container killed
        // from outside just as the run took it). Its io goes back only once the engine confirms
        // the container stopped: an attach stream cut while the container lives (an engine
        // restarting) may have lost the frame that said the program started.
        Read::Gone if !collector.started => {
            let whole = match fed {
                Fed::Untouched(stdin) if container.stopped().await => collector.give_back(kill, stdin),
                _ => None,
            };
            return Err(Failed::Lost(whole));
        }
        // The container stopped under the program (killed from outside, or the kernel's OOM
        // killer took the supervisor): Docker tells how.
        Read::Gone => {
            let exit = container.exit(STOP_GRACE).await?;
            return Ok(collector.finish(container, exit, None, started, log).await);
        }
    };
    // The stop stands even when the container is gone by the time the kill arrives: its END was
    // not seen before the deadline, the limit or the client's kill.
    let exit = container.kill().await?;
    match stop {
        Some(Stop::Timeout) => log.record("timeout", json!({ "after_ms": program.timeout.as_millis() as u64 })),
        Some(Stop::OutputLimit) => log.record("output_limit", json!({ "bytes": program.output_bytes })),
        Some(Stop::Killed) => log.record("killed", json!({ "by": "client" })),
        None => {}
    }
    Ok(collector.finish(container, Some(exit), stop, started, log).await)
}

/// What the stdin feeder did with the client's stdin.
enum Fed {
    /// Took nothing of it: the receiver, if there was one, so that a program whose container
    /// was lost may go whole to another.
    Untouched(Option<mpsc::UnboundedReceiver<Vec<u8>>>),
    Took,
}

/// Write the request's stdin, then whatever more the client sends, a frame at a time, then end
/// it; stopped between frames when the run ends.
async fn feed(
    stdin: Arc<Mutex<Input>>,
    now: Vec<u8>,
    mut more: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    stop: CancellationToken,
) -> Fed {
    let mut first = Some(now);
    let mut took = false;
    let untouched = |more, took| if took { Fed::Took } else { Fed::Untouched(more) };
    loop {
        let frame = match (first.take(), &mut more) {
            (Some(now), _) if !now.is_empty() => protocol::stdin_frame(&now),
            (_, None) => protocol::END_OF_STDIN.to_vec(),
            (_, Some(receiver)) => tokio::select! {
                biased;
                () = stop.cancelled() => return untouched(more, took),
                data = receiver.recv() => match data {
                    Some(data) => {
                        took |= !data.is_empty();
                        protocol::stdin_frame(&data)
                    }
                    None => protocol::END_OF_STDIN.to_vec(),
                },
            },
        };
        if frame.is_empty() {
            continue;
        }
        let mut writer = stdin.lock().await;
        let written = async {
            writer.write_all(&frame).await?;
            writer.flush().await
        };
        if written.await.is_err() || frame == protocol::END_OF_STDIN {
            return untouched(more, took);
        }
    }
}

/// A container's output during a run: the program's stdout and stderr passed on up to a
/// combined limit (the head is kept), its end, and after it the artifacts' tar.
struct Collector {
    /// The program's output, passed on up to the limit.
    output: Output,
    /// Dropped when its receiver goes away; the rest of the tar is then discarded.
    artifacts: Option<mpsc::Sender<bytes::Bytes>>,
    /// Tar bytes that may still be taken.
    artifacts_room: u64,
    artifacts_over: bool,
    /// How the program ended, as the supervisor said.
    end: Option<End>,
    ended_at: Option<Instant>,
    tar_done: bool,
    artifacts_cut: Option<ArtifactsCut>,
    /// The stdin feeder was stopped in the middle of a frame.
    stdin_cut: bool,
    /// The supervisor took the program.
    started: bool,
    /// What the channel carried that its supervisor never writes.
    garbled: Option<Garbled>,
    /// Told when it did.
    on_start: Option<tokio::sync::oneshot::Sender<()>>,
    /// Handler mode: the result's channel.
    channel: Option<Channel>,
}

impl Collector {
    fn new(
        limit: u64,
        sink: mpsc::Sender<Chunk>,
        artifacts: mpsc::Sender<bytes::Bytes>,
        artifacts_budget: u64,
        on_start: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Collector {
        Collector {
            output: Output::new(limit, sink),
            artifacts: Some(artifacts),
            artifacts_room: artifacts_budget,
            artifacts_over: false,
            end: None,
            ended_at: None,
            tar_done: false,
            artifacts_cut: None,
            stdin_cut: false,
            started: false,
            garbled: None,
            on_start,
            channel: None,
        }
    }

    /// Did the program end, with all its output in? (The supervisor relays all of it first.)
    fn program_ended(&self) -> bool {
        self.end.is_some()
    }

    /// Read `until` the program or its tar ends, the limit is reached, `deadline` passes or the
    /// client kills the run.
    async fn read(
        &mut self,
        container: &mut Container,
        until: Until,
        deadline: Instant,
        kill: &CancellationToken,
    ) -> Result<Read, SandboxError> {
        let reached = |collector: &Collector| match until {
            Until::ProgramEnd => collector.program_ended(),
            Until::TarEnd => collector.tar_done,
        };
        if reached(self) {
            return Ok(Read::Done);
        }
        let reading = async {
            while let Some(chunk) = container.next().await {
                self.take(container, chunk?).await;
                if self.output.limited {
                    return Ok(Read::Limited);
                }
                if self.artifacts_over {
                    return Ok(Read::TooLarge);
                }
                if self.garbled.is_some() {
                    return Ok(Read::Garbled);
                }
                if reached(self) {
                    return Ok(Read::Done);
                }
            }
            Ok(Read::Gone)
        };
        tokio::select! {
            read = tokio::time::timeout_at(deadline, reading) => read.unwrap_or(Ok(Read::Late)),
            () = kill.cancelled() => Ok(Read::Killed),
        }
    }

    /// The run's io as it came, when the program never started and nothing was passed on.
    fn give_back(mut self, kill: CancellationToken, stdin: Option<mpsc::UnboundedReceiver<Vec<u8>>>) -> Option<RunIo> {
        let output = self.output.untouched_sink()?;
        let artifacts = self.artifacts.take()?;
        let artifacts_budget = self.artifacts_room;
        Some(RunIo { output, stdin, kill, started: self.on_start.take(), artifacts, artifacts_budget })
    }

    /// The supervisor took the program: tell whoever waits for its start.
    fn start(&mut self) {
        self.started = true;
        if let Some(on_start) = self.on_start.take() {
            let _ = on_start.send(());
        }
    }

    /// Sort one chunk: the program's output, its end, or the artifacts.
    async fn take(&mut self, container: &mut Container, chunk: Chunk) {
        let bytes = match chunk {
            Chunk::Stderr(bytes) => return container.supervisor_said(&bytes),
            Chunk::Stdout(bytes) => bytes,
        };
        let frames = match container.frames.feed(bytes) {
            Ok(frames) => frames,
            Err(garbled) => return self.garbled = Some(garbled),
        };
        for frame in frames {
            match frame {
                Out::Started => self.start(),
                Out::Stdout(bytes) => self.push(Chunk::Stdout(bytes)).await,
                Out::Stderr(bytes) => self.push(Chunk::Stderr(bytes)).await,
                Out::Result(bytes) => match &mut self.channel {
                    Some(channel) => channel.take(&bytes),
                    None => self.garbled = Some(Garbled::new("a result's bytes in a run that has no handler")),
                },
                Out::Ended(end) => self.end = Some(end),
                Out::Tar(tar) => self.take_tar(tar).await,
                Out::TarDone => self.tar_done = true,
                // The next program may come (recycle): the pool hears it from the container.
                Out::Ready => container.ready_again(),
            }
        }
    }

    async fn take_tar(&mut self, tar: bytes::Bytes) {
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
    fn take_ready(&mut self, container: &mut Container) -> Result<(), SandboxError> {
        while !self.output.lookahead_full() {
            let Some(Some(chunk)) = container.next_ready() else { break };
            let Chunk::Stdout(bytes) = chunk? else { continue };
            let Ok(frames) = container.frames.feed(bytes) else { break };
            // Past the limit only the lookahead matters, never the end or the artifacts.
            for frame in frames {
                // Past the limit nothing is passed on: `fit` only fills the lookahead.
                let _ = match frame {
                    Out::Stdout(bytes) => self.fit(Chunk::Stdout(bytes)),
                    Out::Stderr(bytes) => self.fit(Chunk::Stderr(bytes)),
                    _ => None,
                };
            }
        }
        Ok(())
    }

    async fn push(&mut self, chunk: Chunk) {
        self.output.push(chunk).await;
    }

    fn fit(&mut self, chunk: Chunk) -> Option<Chunk> {
        self.output.fit(chunk)
    }

    /// How the run ended: by the end frame when the program ended by itself, else by how the
    /// container ended (`exit`, after `stop`).
    async fn finish(
        self,
        container: &mut Container,
        exit: Option<ExitState>,
        stop: Option<Stop>,
        started: Instant,
        log: &mut EventLog,
    ) -> RawOutcome {
        let end = self.end;
        let mut oom_killed = end.and_then(|e| e.oom_kills).is_some_and(|kills| kills > 0);
        let mut exit_code = end.map(|e| e.status);
        if let Some(exit) = exit {
            log.record("container.exited", json!({ "exit_code": exit.exit_code, "oom_killed": exit.oom_killed }));
            oom_killed |= exit.oom_killed;
            exit_code = exit_code.or(exit.exit_code);
        } else if end.is_some_and(|e| e.oom_kills.is_none()) {
            // The supervisor could not read the memory cgroup: Docker knows, once it stopped.
            if let Ok(Some(exit)) = container.exit(STOP_GRACE).await {
                oom_killed |= exit.oom_killed;
            }
        }
        let clean = end.is_some()
            && self.tar_done
            && stop.is_none()
            && !self.output.limited
            && self.artifacts_cut.is_none()
            && !self.stdin_cut;
        let ended_at = self.ended_at.unwrap_or_else(Instant::now);
        let handler = self.channel.and_then(Channel::outcome);
        RawOutcome {
            exit_code,
            stdout_beyond: self.output.stdout_beyond,
            stderr_beyond: self.output.stderr_beyond,
            timed_out: stop == Some(Stop::Timeout),
            oom_killed,
            output_limited: self.output.limited,
            killed: stop == Some(Stop::Killed),
            artifacts_cut: self.artifacts_cut,
            duration: ended_at.saturating_duration_since(started),
            clean,
            cell: None,
            handler,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn collector(limit: u64) -> (Collector, mpsc::Receiver<Chunk>) {
        let (sink, chunks) = mpsc::channel(16);
        let (artifacts, _) = mpsc::channel(1);
        (Collector::new(limit, sink, artifacts, 1024, None), chunks)
    }

    fn passed_on(chunks: &mut mpsc::Receiver<Chunk>) -> (Vec<u8>, Vec<u8>) {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Ok(chunk) = chunks.try_recv() {
            match chunk {
                Chunk::Stdout(bytes) => stdout.extend_from_slice(&bytes),
                Chunk::Stderr(bytes) => stderr.extend_from_slice(&bytes),
            }
        }
        (stdout, stderr)
    }

    #[tokio::test]
    async fn the_collector_passes_on_the_head_up_to_the_limit_across_streams() {
        let (mut collector, mut chunks) = collector(10);
        collector.push(Chunk::Stdout(Bytes::from_static(b"hello"))).await;
        collector.push(Chunk::Stderr(Bytes::from_static(b"oops"))).await;
        assert!(!collector.output.limited);
        collector.push(Chunk::Stdout(Bytes::from_static(b"world"))).await;
        assert!(collector.output.limited);
        assert_eq!(passed_on(&mut chunks), (b"hellow".to_vec(), b"oops".to_vec()));
        assert_eq!(collector.output.stdout_beyond, b"orld", "what was cut is kept aside for redaction");
    }

    #[tokio::test]
    async fn the_output_channel_closes_when_the_limit_is_reached() {
        let (mut collector, mut chunks) = collector(3);
        collector.push(Chunk::Stdout(Bytes::from_static(b"abcd"))).await;
        assert_eq!(passed_on(&mut chunks).0, b"abc");
        assert!(chunks.is_closed(), "the screen learns at once that the output ended at the cut");
    }

    #[tokio::test]
    async fn output_exactly_at_the_limit_is_not_truncated() {
        let (mut collector, _chunks) = collector(5);
        collector.push(Chunk::Stdout(Bytes::from_static(b"12345"))).await;
        assert!(!collector.output.limited);
        collector.push(Chunk::Stdout(Bytes::from_static(b"6"))).await;
        assert!(collector.output.limited);
    }

    #[tokio::test]
    async fn the_tar_is_taken_up_to_its_budget_and_ends_there() {
        let (sink, _chunks) = mpsc::channel(1);
        let (artifacts, mut tar) = mpsc::channel(4);
        let mut collector = Collector::new(100, sink, artifacts, 7, None);
        collector.take_tar(Bytes::from_static(b"TAR")).await;
        collector.take_tar(Bytes::from_static(b"MORE")).await;
        assert_eq!((tar.recv().await.unwrap(), tar.recv().await.unwrap()), (Bytes::from("TAR"), Bytes::from("MORE")));
        assert_eq!(collector.output.room, 100, "the artifacts do not count as output");
        collector.take_tar(Bytes::from_static(b"!")).await;
        assert!(collector.artifacts_over && collector.artifacts.is_none(), "past the budget the archive ends");
    }

    #[tokio::test]
    async fn the_lookahead_is_bounded() {
        let (mut collector, mut chunks) = collector(1);
        collector.push(Chunk::Stderr(Bytes::from(vec![b'x'; super::super::output::LOOKAHEAD_BYTES * 3]))).await;
        assert_eq!(passed_on(&mut chunks).1.len(), 1);
        assert_eq!(collector.output.stderr_beyond.len(), super::super::output::LOOKAHEAD_BYTES);
    }
}
