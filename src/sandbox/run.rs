//! One program in one fresh container: create, attach, start, send the program, collect its
//! output within the limits, learn how it ended, and remove the container on every path.

use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::SandboxError;
use super::docker::{Chunk, Engine, ExitState};
use super::limits::{ContainerJob, ContainerSettings, container_body};
use crate::trace::EventLog;

/// How long a killed container may take to report that it stopped.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Output kept past the limit, per stream, only so that a secret the limit cuts in two is
/// still recognised and redacted; it is never returned.
const LOOKAHEAD_BYTES: usize = 16 * 1024;

/// What one output stream wrote.
#[derive(Debug, Default)]
pub struct Captured {
    /// The bytes within the output limit.
    pub kept: Vec<u8>,
    /// Up to [`LOOKAHEAD_BYTES`] written after the limit cut the stream.
    pub beyond: Vec<u8>,
}

/// The raw result of a run, before decoding and redaction.
#[derive(Debug, Default)]
pub struct RawOutcome {
    pub exit_code: Option<i64>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub timed_out: bool,
    pub oom_killed: bool,
    /// The output limit was reached: output is cut there and the run was stopped.
    pub output_limited: bool,
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
    log: &mut EventLog,
) -> Result<RawOutcome, SandboxError> {
    let name = format!("tracebox-{}", job.trace_id);
    let id = engine.create(&name, container_body(settings, job)).await?;
    log.record("container.created", json!({ "name": name }));
    let removal = RemoveOnDrop { engine: engine.clone(), id: Some(id.clone()) };
    let outcome = drive(engine, &id, job, input, log).await;
    removal.remove_now().await;
    log.record("container.removed", Value::Null);
    outcome
}

/// Why tracebox stopped a run before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Timeout,
    OutputLimit,
}

async fn drive(
    engine: &Engine,
    id: &str,
    job: &ContainerJob<'_>,
    input: Vec<u8>,
    log: &mut EventLog,
) -> Result<RawOutcome, SandboxError> {
    let (output, mut stdin) = engine.attach(id).await?;
    engine.start(id).await?;
    let started = Instant::now();
    let deadline = started + job.limits.timeout;
    log.record("container.started", Value::Null);

    // Feed stdin beside reading output: a program that prints before it reads would otherwise
    // deadlock against a full pipe. Closing stdin gives the program its end of file.
    let feeder = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        let _ = stdin.shutdown().await;
    });
    let mut collector = Collector::new(job.limits.output_bytes);
    let mut output = Box::pin(output);
    let read = tokio::time::timeout_at(deadline, collector.read_to_limit(&mut output)).await;
    feeder.abort();
    if let Ok(Ok(())) = read
        && collector.limited
    {
        collector.take_ready(&mut output)?;
    }
    // Docker does not call a container stopped until its attached output is drained or
    // dropped: stop reading before killing, or the kill would wait on us.
    drop(output);
    let stop = match read {
        Err(_elapsed) => Stop::Timeout,
        Ok(Err(error)) => return Err(error),
        Ok(Ok(())) if collector.limited => Stop::OutputLimit,
        // The output ends when the program closes it, which is not always when it exits:
        // the deadline still holds while waiting.
        Ok(Ok(())) => match tokio::time::timeout_at(deadline, engine.wait(id)).await {
            Ok(exit) => return Ok(collector.finish(exit?, None, started, log)),
            Err(_elapsed) => Stop::Timeout,
        },
    };
    let stopped = stop_container(engine, id, stop, job, log).await?;
    Ok(collector.finish(stopped.0, stopped.1, started, log))
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
        None => {}
    }
    let exit = tokio::time::timeout(STOP_GRACE, engine.wait(id)).await.map_err(|_| SandboxError::StopTimeout)??;
    Ok((exit, stop))
}

/// Output of both streams, up to a combined limit; the head is kept.
struct Collector {
    stdout: Captured,
    stderr: Captured,
    room: u64,
    limited: bool,
}

impl Collector {
    fn new(limit: u64) -> Collector {
        Collector { stdout: Captured::default(), stderr: Captured::default(), room: limit, limited: false }
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
        while self.stdout.beyond.len() + self.stderr.beyond.len() < LOOKAHEAD_BYTES {
            match output.next().now_or_never() {
                Some(Some(chunk)) => self.push(chunk?),
                Some(None) | None => break,
            }
        }
        Ok(())
    }

    /// Keep a chunk, as much of it as fits; the rest goes to the lookahead.
    fn push(&mut self, chunk: Chunk) {
        let (captured, bytes) = match &chunk {
            Chunk::Stdout(bytes) => (&mut self.stdout, bytes),
            Chunk::Stderr(bytes) => (&mut self.stderr, bytes),
        };
        let fits = bytes.len().min(usize::try_from(self.room).unwrap_or(usize::MAX));
        captured.kept.extend_from_slice(&bytes[..fits]);
        self.room -= fits as u64;
        if fits < bytes.len() {
            self.limited = true;
            let wanted = LOOKAHEAD_BYTES.saturating_sub(captured.beyond.len());
            let rest = &bytes[fits..];
            captured.beyond.extend_from_slice(&rest[..rest.len().min(wanted)]);
        }
    }

    fn finish(self, exit: ExitState, stop: Option<Stop>, started: Instant, log: &mut EventLog) -> RawOutcome {
        log.record("container.exited", json!({ "exit_code": exit.exit_code, "oom_killed": exit.oom_killed }));
        RawOutcome {
            exit_code: exit.exit_code,
            stdout: self.stdout,
            stderr: self.stderr,
            timed_out: stop == Some(Stop::Timeout),
            oom_killed: exit.oom_killed,
            output_limited: self.limited,
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

    #[test]
    fn the_collector_keeps_the_head_up_to_the_limit_across_streams() {
        let mut collector = Collector::new(10);
        collector.push(Chunk::Stdout(Bytes::from_static(b"hello")));
        collector.push(Chunk::Stderr(Bytes::from_static(b"oops")));
        assert!(!collector.limited);
        collector.push(Chunk::Stdout(Bytes::from_static(b"world")));
        assert!(collector.limited);
        assert_eq!(collector.stdout.kept, b"hellow");
        assert_eq!(collector.stdout.beyond, b"orld", "what was cut is kept aside for redaction");
        assert_eq!(collector.stderr.kept, b"oops");
    }

    #[test]
    fn output_exactly_at_the_limit_is_not_truncated() {
        let mut collector = Collector::new(5);
        collector.push(Chunk::Stdout(Bytes::from_static(b"12345")));
        assert!(!collector.limited);
        collector.push(Chunk::Stdout(Bytes::from_static(b"6")));
        assert!(collector.limited);
    }

    #[test]
    fn the_lookahead_is_bounded() {
        let mut collector = Collector::new(1);
        collector.push(Chunk::Stderr(Bytes::from(vec![b'x'; LOOKAHEAD_BYTES * 3])));
        assert_eq!(collector.stderr.kept.len(), 1);
        assert_eq!(collector.stderr.beyond.len(), LOOKAHEAD_BYTES);
    }
}
