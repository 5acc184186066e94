//! One program in one fresh container: create, attach, start, send the program, collect its
//! output within the limits, learn how it ended, and remove the container on every path.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::SandboxError;
use super::docker::{Chunk, Engine};
use super::limits::{ContainerJob, ContainerSettings, container_body};
use crate::trace::EventLog;

/// How long a killed container may take to report that it stopped.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The raw result of a run, before decoding and redaction.
#[derive(Debug, Default)]
pub struct RawOutcome {
    pub exit_code: Option<i64>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
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

/// Run `job` with `code` and `stdin` in a new container, which is gone when this returns.
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
    let removal = RemoveOnDrop {
        engine: engine.clone(),
        id: Some(id.clone()),
    };
    let outcome = drive(engine, &id, job, input, log).await;
    removal.remove_now().await;
    log.record("container.removed", serde_json::Value::Null);
    outcome
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
    log.record("container.started", serde_json::Value::Null);

    // Feed stdin beside reading output: a program that prints before it reads would otherwise
    // deadlock against a full pipe. Closing stdin gives the program its end of file.
    let feeder = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        let _ = stdin.shutdown().await;
    });

    let mut collected = Collector::new(job.limits.output_bytes);
    let deadline = started + job.limits.timeout;
    let mut outcome = RawOutcome::default();
    let finished = tokio::time::timeout_at(deadline, async {
        let mut output = std::pin::pin!(output);
        while let Some(chunk) = output.next().await {
            if !collected.push(chunk?) {
                break;
            }
        }
        Ok::<_, SandboxError>(())
    })
    .await;
    feeder.abort();
    match finished {
        Err(_elapsed) => {
            outcome.timed_out = true;
            log.record(
                "timeout",
                json!({ "after_ms": job.limits.timeout.as_millis() as u64 }),
            );
            engine.kill(id).await?;
        }
        Ok(Err(error)) => return Err(error),
        Ok(Ok(())) if collected.limited => {
            log.record("output_limit", json!({ "bytes": job.limits.output_bytes }));
            engine.kill(id).await?;
        }
        Ok(Ok(())) => {}
    }
    // The output ends when the program closes it, which is not always when it exits: the
    // deadline still holds while waiting.
    let remaining = deadline.saturating_duration_since(Instant::now());
    let exit = match tokio::time::timeout(remaining.max(Duration::from_millis(1)), engine.wait(id))
        .await
    {
        Ok(exit) => exit?,
        Err(_elapsed) => {
            outcome.timed_out = true;
            log.record(
                "timeout",
                json!({ "after_ms": job.limits.timeout.as_millis() as u64 }),
            );
            engine.kill(id).await?;
            tokio::time::timeout(STOP_GRACE, engine.wait(id))
                .await
                .map_err(|_| SandboxError::StopTimeout)??
        }
    };
    outcome.duration = started.elapsed();
    outcome.exit_code = exit.exit_code;
    outcome.oom_killed = exit.oom_killed;
    outcome.output_limited = collected.limited;
    outcome.stdout = collected.stdout;
    outcome.stderr = collected.stderr;
    log.record(
        "container.exited",
        json!({ "exit_code": exit.exit_code, "oom_killed": exit.oom_killed }),
    );
    Ok(outcome)
}

/// Output of both streams, up to a combined limit; the head is kept.
struct Collector {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    room: u64,
    limited: bool,
}

impl Collector {
    fn new(limit: u64) -> Collector {
        Collector {
            stdout: Vec::new(),
            stderr: Vec::new(),
            room: limit,
            limited: false,
        }
    }

    /// Keep a chunk (or as much of it as fits); false once the limit is passed.
    fn push(&mut self, chunk: Chunk) -> bool {
        let (buffer, bytes) = match &chunk {
            Chunk::Stdout(bytes) => (&mut self.stdout, bytes),
            Chunk::Stderr(bytes) => (&mut self.stderr, bytes),
        };
        let fits = bytes
            .len()
            .min(usize::try_from(self.room).unwrap_or(usize::MAX));
        buffer.extend_from_slice(&bytes[..fits]);
        self.room -= fits as u64;
        if fits < bytes.len() {
            self.limited = true;
        }
        !self.limited
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
        assert_eq!(
            frame("print('é')", "1\n"),
            b"TRACEBOX1 11\nprint('\xc3\xa9')1\n".to_vec()
        );
        assert_eq!(frame("", ""), b"TRACEBOX1 0\n".to_vec());
    }

    #[test]
    fn the_collector_keeps_the_head_up_to_the_limit_across_streams() {
        let mut collector = Collector::new(10);
        assert!(collector.push(Chunk::Stdout(Bytes::from_static(b"hello"))));
        assert!(collector.push(Chunk::Stderr(Bytes::from_static(b"oops"))));
        assert!(!collector.push(Chunk::Stdout(Bytes::from_static(b"world"))));
        assert_eq!(collector.stdout, b"hellow");
        assert_eq!(collector.stderr, b"oops");
        assert!(collector.limited);
    }

    #[test]
    fn output_exactly_at_the_limit_is_not_truncated() {
        let mut collector = Collector::new(5);
        assert!(collector.push(Chunk::Stdout(Bytes::from_static(b"12345"))));
        assert!(!collector.limited);
        assert!(!collector.push(Chunk::Stdout(Bytes::from_static(b"6"))));
        assert!(collector.limited);
    }
}
