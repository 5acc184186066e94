//! One step in a stateful sandbox — a command (`bash -c`) or a code cell for its kernel — run
//! like any program: its stdin fed, its output passed on within the limit, stopped at its
//! timeout, by its client or at the output limit, and told how it ended. Other steps and the
//! files of the sandbox stay; only the step is stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tracebox_model::EventLog;
use tracebox_model::record::{CellError, CellOutcome};

use super::SandboxError;
use super::docker::Chunk;
use super::output::Output;
use super::run::{RawOutcome, RunIo};
use super::session::{Op, OpError, OpFrame, Session};

/// How long a stopped step may take to say it ended, before the sandbox is taken for lost.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What a step runs.
pub enum Step<'a> {
    /// A program in `cwd` (relative to /workspace), with `env` on top of the sandbox's; with
    /// `merged`, its stderr is sent as stdout, in the order written.
    Command { line: CommandLine<'a>, cwd: Option<&'a str>, env: &'a BTreeMap<String, String>, merged: bool },
    /// A cell for the sandbox's kernel.
    Cell { code: &'a str },
}

/// What a command runs.
pub enum CommandLine<'a> {
    /// `bash -c` this.
    Shell(&'a str),
    /// This program and its arguments, no shell between.
    Argv(&'a [String]),
}

/// Run `step` in `session`: stdin first (commands only), within `timeout` and `output_bytes`.
pub async fn run(
    session: &Session,
    step: Step<'_>,
    stdin: &str,
    timeout: Duration,
    output_bytes: u64,
    io: RunIo,
    log: &mut EventLog,
) -> Result<RawOutcome, SandboxError> {
    let RunIo { output: sink, stdin: more_stdin, kill, started: on_start, .. } = io;
    let (header, body) = match step {
        Step::Command { line, cwd, env, merged } => {
            let mut header =
                json!({"op": "exec", "cwd": cwd, "env": env, "timeout": timeout.as_secs_f64(), "merge": merged});
            match line {
                CommandLine::Shell(cmd) => header["cmd"] = json!(cmd),
                CommandLine::Argv(argv) => header["argv"] = json!(argv),
            }
            (header, stdin)
        }
        Step::Cell { code } => (json!({"op": "code", "timeout": timeout.as_secs_f64()}), code),
    };
    let is_cell = header["op"] == "code";
    let mut op = session.request(header, body.as_bytes()).await.map_err(lost)?;
    let begun = Instant::now();
    log.record(if is_cell { "cell.sent" } else { "command.sent" }, json!({ "op": op.id }));
    // A cell runs at once (its kernel is there); a command once its process started.
    let mut on_start = on_start;
    if is_cell && let Some(on_start) = on_start.take() {
        let _ = on_start.send(());
    }
    let mut output = Output::new(output_bytes, sink);
    let deadline = begun + timeout;
    let stop = {
        let feeding = feed(session, op.id, (!is_cell).then_some(more_stdin).flatten());
        let reading = read(&mut op, &mut output, &mut on_start);
        tokio::pin!(feeding, reading);
        tokio::select! {
            ended = &mut reading => ended.map(Ended::Replied),
            () = &mut feeding => unreachable!("feeding stdin never ends by itself"),
            () = tokio::time::sleep_until(deadline) => Ok(Ended::Timeout),
            () = kill.cancelled() => Ok(Ended::Killed),
        }
    };
    let ended = match stop.map_err(lost)? {
        Ended::Replied(Reading::Reply(reply)) => return Ok(outcome(reply, output, None, begun)),
        Ended::Replied(Reading::Limited) => Ended::Limited,
        other => other,
    };
    // Stopped: the supervisor ends it (a command's whole session; a cell by an interrupt, or a
    // new kernel) and says so.
    op.kill().await.map_err(lost)?;
    let reply = tokio::time::timeout(STOP_GRACE, until_reply(&mut op)).await;
    let reply = match reply {
        Ok(Ok(reply)) => reply,
        Ok(Err(error)) => return Err(lost(error)),
        Err(_late) => {
            return Err(SandboxError::NotReady { why: format!("a stopped step did not end within {STOP_GRACE:?}") });
        }
    };
    match ended {
        Ended::Timeout => log.record("timeout", json!({ "after_ms": timeout.as_millis() as u64 })),
        Ended::Limited => log.record("output_limit", json!({ "bytes": output_bytes })),
        Ended::Killed => log.record("killed", json!({ "by": "client" })),
        Ended::Replied(_) => {}
    }
    Ok(outcome(reply, output, Some(ended), begun))
}

/// Why a step ended.
enum Ended {
    Replied(Reading),
    Timeout,
    Killed,
    Limited,
}

/// How reading a step's frames ended.
enum Reading {
    Reply(Value),
    Limited,
}

/// Pass on the step's output until its reply, or until the output limit is reached.
async fn read(
    op: &mut Op,
    output: &mut Output,
    on_start: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<Reading, OpError> {
    loop {
        match op.next().await? {
            OpFrame::Started => {
                if let Some(on_start) = on_start.take() {
                    let _ = on_start.send(());
                }
            }
            OpFrame::Stdout(bytes) => output.push(Chunk::Stdout(bytes)).await,
            OpFrame::Stderr(bytes) => output.push(Chunk::Stderr(bytes)).await,
            OpFrame::Reply(reply) => return Ok(Reading::Reply(reply)),
            OpFrame::Data(_) | OpFrame::Tar(_) => {}
        }
        if output.limited {
            return Ok(Reading::Limited);
        }
    }
}

/// Frames after a stop matter no more: only the reply.
async fn until_reply(op: &mut Op) -> Result<Value, OpError> {
    loop {
        if let OpFrame::Reply(reply) = op.next().await? {
            return Ok(reply);
        }
    }
}

/// More stdin for a command as its client sends it, then its end; a cell takes none.
async fn feed(session: &Session, target: u32, more: Option<tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>>) {
    let Some(mut more) = more else {
        let _ = session.tell(json!({"op": "eof", "target": target}), &[]).await;
        return std::future::pending().await;
    };
    while let Some(data) = more.recv().await {
        if session.tell(json!({"op": "stdin", "target": target}), &data).await.is_err() {
            break;
        }
    }
    let _ = session.tell(json!({"op": "eof", "target": target}), &[]).await;
    std::future::pending().await
}

/// The step's end, as its reply and how it was stopped (if it was) tell it.
fn outcome(reply: Value, output: Output, stopped: Option<Ended>, begun: Instant) -> RawOutcome {
    let cell = (reply.get("status").is_some()).then(|| cell_of(&reply));
    let exit_code = match &cell {
        Some(cell) => Some(i64::from(cell.error.is_some())),
        None => reply["exit_code"].as_i64(),
    };
    RawOutcome {
        exit_code,
        stdout_beyond: output.stdout_beyond,
        stderr_beyond: output.stderr_beyond,
        timed_out: matches!(stopped, Some(Ended::Timeout)),
        oom_killed: false,
        output_limited: output.limited,
        killed: matches!(stopped, Some(Ended::Killed)),
        artifacts_cut: None,
        duration: begun.elapsed(),
        clean: stopped.is_none(),
        cell,
        handler: None,
    }
}

/// A cell's reply: its result or its error, and whether the kernel was interrupted or restarted.
fn cell_of(reply: &Value) -> CellOutcome {
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let error = reply["error"].as_object().map(|error| CellError {
        name: error.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
        value: error.get("value").and_then(Value::as_str).unwrap_or_default().to_owned(),
        traceback: error.get("traceback").and_then(Value::as_str).unwrap_or_default().to_owned(),
    });
    CellOutcome {
        result: text(&reply["result"]),
        error,
        interrupted: reply["interrupted"].as_bool().unwrap_or(false),
        restarted: reply["restarted"].as_bool().unwrap_or(false),
    }
}

/// A step that could not run, or whose container went away, in tracebox's terms.
fn lost(error: OpError) -> SandboxError {
    SandboxError::from(error)
}
