//! What a running sandbox does on request: commands and code cells (one at a time, through the
//! one pipeline, as child traces of the sandbox's), and its files (resolved inside its
//! container, within `/workspace`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tracebox_model::sandbox::{OpInput, OpOutput, SandboxOp, SandboxRecord};
use tracebox_model::{Execution, ExecutionRequest, Isolation, RunLimits, Source};

use super::{Live, Sandboxes, SandboxesError, check_env, seconds};
use crate::runner::{LiveRun, Place, StepKind};
use crate::sandbox::{OpError, OpFrame};

/// `POST /sandboxes/{id}/commands`
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    pub cmd: String,
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub timeout: Option<f64>,
    #[serde(default)]
    pub stdin: String,
}

/// `POST /sandboxes/{id}/code`
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub code: String,
    /// The sandbox's own language; another is refused (a sandbox has one kernel).
    pub language: Option<String>,
    pub timeout: Option<f64>,
}

/// A sandbox's one step slot, held by the step's run until it ends (whoever follows it, or
/// stops following it). Letting it go marks the sandbox active: its idle timeout counts from
/// the end of its last step.
struct StepSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    sandboxes: Sandboxes,
    id: String,
}

impl Drop for StepSlot {
    fn drop(&mut self) {
        let (sandboxes, id) = (self.sandboxes.clone(), std::mem::take(&mut self.id));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // A sandbox removed meanwhile has nothing to mark.
                let _ = sandboxes.touch(&id, false).await;
            });
        }
    }
}

impl Sandboxes {
    /// Run a command to its end.
    pub async fn command(&self, id: &str, request: CommandRequest) -> Result<Execution, SandboxesError> {
        finish(self.start_command(id, request, false).await?).await
    }

    /// Start a command, followed live (the WebSocket).
    pub async fn start_command(
        &self,
        id: &str,
        request: CommandRequest,
        keep_stdin_open: bool,
    ) -> Result<LiveRun, SandboxesError> {
        check_env(&request.env)?;
        if request.cmd.trim().is_empty() {
            return Err(SandboxesError::Invalid("`cmd` is empty: send the command to run with bash -c".into()));
        }
        let record = self.record(id).await?;
        let live = self.session_of(&record).await?;
        let limits = self.step_limits(request.timeout)?;
        if let Some(cwd) = &request.cwd {
            check_cwd(&live, cwd).await?;
        }
        let execution = ExecutionRequest {
            language: record.language,
            code: request.cmd,
            stdin: request.stdin,
            env: request.env,
            limits,
            source: Source::Http,
            files: Vec::new(),
            parent: Some(record.trace_id),
            isolation: Isolation::Fresh,
            tenant: None,
            owner: record.tenant.clone(),
            handler: None,
            placement: Default::default(),
        };
        self.start_step(
            &record,
            &live,
            execution,
            StepKind::Command { cwd: request.cwd, merged: false },
            keep_stdin_open,
        )
        .await
    }

    /// Run a code cell to its end.
    pub async fn code(&self, id: &str, request: CodeRequest) -> Result<Execution, SandboxesError> {
        finish(self.start_code(id, request).await?).await
    }

    /// Start a code cell, followed live.
    pub async fn start_code(&self, id: &str, request: CodeRequest) -> Result<LiveRun, SandboxesError> {
        let record = self.record(id).await?;
        if let Some(asked) = &request.language {
            let asked = super::language(Some(asked))?;
            if asked != record.language {
                return Err(SandboxesError::Invalid(format!(
                    "`language`: sandbox {id} runs {} code; make a {asked} sandbox for {asked}",
                    record.language
                )));
            }
        }
        let live = self.session_of(&record).await?;
        let limits = self.step_limits(request.timeout)?;
        let execution = ExecutionRequest {
            language: record.language,
            code: request.code,
            stdin: String::new(),
            env: BTreeMap::new(),
            limits,
            source: Source::Http,
            files: Vec::new(),
            parent: Some(record.trace_id),
            isolation: Isolation::Fresh,
            tenant: None,
            owner: record.tenant.clone(),
            handler: None,
            placement: Default::default(),
        };
        self.start_step(&record, &live, execution, StepKind::Cell, false).await
    }

    /// A new kernel: the variables of earlier cells are gone.
    pub async fn restart_kernel(&self, id: &str) -> Result<(), SandboxesError> {
        let record = self.record(id).await?;
        let live = self.session_of(&record).await?;
        let _only_step = live.steps.acquire().await;
        live.session.call(json!({"op": "restart"}), &[]).await?;
        self.touch(id, false).await?;
        Ok(())
    }

    pub(super) fn step_limits(&self, timeout: Option<f64>) -> Result<RunLimits, SandboxesError> {
        let settings = &self.inner.settings;
        let timeout =
            seconds("timeout", timeout, settings.default_step_timeout_secs, 0.1, settings.max_step_timeout_secs)?;
        Ok(RunLimits {
            timeout: Duration::from_secs_f64(timeout),
            memory_bytes: 0,
            cpus: 0.0,
            pids: 0,
            output_bytes: settings.output_bytes,
        })
    }

    /// Wait for the sandbox's step slot (within the queue's bound), then start the step through
    /// the pipeline.
    pub(super) async fn start_step(
        &self,
        record: &SandboxRecord,
        live: &Arc<Live>,
        request: ExecutionRequest,
        step: StepKind,
        keep_stdin_open: bool,
    ) -> Result<LiveRun, SandboxesError> {
        let queued = live.queued.fetch_add(1, Ordering::SeqCst);
        let waited = async {
            if queued >= self.inner.settings.max_queued_steps && live.steps.available_permits() == 0 {
                return Err(SandboxesError::Busy { id: record.id.clone(), queued });
            }
            Arc::clone(&live.steps)
                .acquire_owned()
                .await
                .map_err(|_| SandboxesError::Conflict(format!("sandbox {} is going away", record.id)))
        };
        let permit = waited.await;
        live.queued.fetch_sub(1, Ordering::SeqCst);
        let permit = permit?;
        let _ = self.touch(&record.id, true).await;
        let slot = StepSlot { _permit: permit, sandboxes: self.clone(), id: record.id.clone() };
        let place =
            Place::Sandbox { session: live.session.clone(), sandbox_id: record.id.clone(), step, held: Arc::new(slot) };
        let run = self.inner.runner.start_in(request, place, keep_stdin_open);
        Ok(run)
    }

    /// The entries of a directory of `/workspace`.
    pub async fn list_files(&self, id: &str, path: Option<&str>) -> Result<Value, SandboxesError> {
        let live = self.running(id).await?;
        let reply = live.session.call(json!({"op": "list", "path": path.unwrap_or(".")}), &[]).await?;
        self.touch(id, false).await?;
        Ok(reply["entries"].clone())
    }

    /// A file, or the range `(offset, length)` of it. A file that is text comes back redacted
    /// as output is, whole before any range is cut from it, so that a range never shows part
    /// of a secret: its `size` and ranges are then those of the redacted text. A file over
    /// `TRACEBOX_UPLOAD_MAX_FILE_BYTES` is read in ranges only, each redacted on its own.
    pub async fn read_file(
        &self,
        id: &str,
        path: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<FileRead, SandboxesError> {
        let record = self.record(id).await?;
        let live = self.session_of(&record).await?;
        let most = self.inner.settings.max_file_bytes;
        let input =
            OpInput { sandbox_id: id.to_owned(), op: SandboxOp::Read, path: Some(path.to_owned()), snapshot: None };
        let (read, _) = self
            .traced(&record, input, async {
                let (whole, size) = read_raw(&live, path, 0, most).await?;
                let read = if size <= most {
                    let (content, redacted) = self.served(whole);
                    FileRead::cut(content, range, redacted)?
                } else {
                    let Some((offset, length)) = range else {
                        return Err(SandboxesError::TooLarge(format!(
                            "{path} is {size} bytes; one read returns at most {most} (TRACEBOX_UPLOAD_MAX_FILE_BYTES): read it in ranges (Range: bytes=0-{})",
                            most - 1
                        )));
                    };
                    let length = length.unwrap_or(most).min(most);
                    let (bytes, size) = read_raw(&live, path, offset, length).await?;
                    let (bytes, redacted) = self.served(bytes);
                    FileRead { bytes, offset, size, redacted }
                };
                let output = OpOutput { bytes: Some(read.bytes.len() as u64), ..OpOutput::default() };
                Ok((read, output))
            })
            .await?;
        Ok(read)
    }

    /// What a read serves of `bytes`: text redacted, other bytes as they are; and whether
    /// anything was redacted.
    fn served(&self, bytes: Vec<u8>) -> (Vec<u8>, bool) {
        match String::from_utf8(bytes) {
            Ok(text) => {
                let redacted = self.inner.policy.redact(&text);
                let changed = redacted != text;
                (redacted.into_bytes(), changed)
            }
            Err(binary) => (binary.into_bytes(), false),
        }
    }

    /// Write a file (its parents made), as `op` says it came (a write, an upload).
    pub async fn write_file(&self, id: &str, path: &str, bytes: &[u8], op: SandboxOp) -> Result<Value, SandboxesError> {
        let most = self.inner.settings.max_file_bytes;
        if bytes.len() as u64 > most {
            return Err(SandboxesError::TooLarge(format!(
                "the file is {} bytes; the most written at once is {most} (TRACEBOX_UPLOAD_MAX_FILE_BYTES)",
                bytes.len()
            )));
        }
        let record = self.record(id).await?;
        let live = self.session_of(&record).await?;
        let input = OpInput { sandbox_id: id.to_owned(), op, path: Some(path.to_owned()), snapshot: None };
        let (entry, _) = self
            .traced(&record, input, async {
                let reply = live.session.call(json!({"op": "write", "path": path}), bytes).await?;
                let output = OpOutput { bytes: Some(bytes.len() as u64), ..OpOutput::default() };
                Ok((reply["entry"].clone(), output))
            })
            .await?;
        Ok(entry)
    }

    /// Write `files` (name, bytes) into the directory `dir` (made when missing), as one step:
    /// what a multipart upload brings. A name is a file's own, without a directory.
    pub async fn upload(&self, id: &str, dir: &str, files: &[(String, Vec<u8>)]) -> Result<Vec<Value>, SandboxesError> {
        for (name, _) in files {
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
                return Err(SandboxesError::BadPath {
                    message: format!(
                        "the upload's file name {name:?} is not a plain file name; name the file without a directory (the directory is ?path=)"
                    ),
                });
            }
        }
        let record = self.record(id).await?;
        let live = self.session_of(&record).await?;
        let input =
            OpInput { sandbox_id: id.to_owned(), op: SandboxOp::Upload, path: Some(dir.to_owned()), snapshot: None };
        let (entries, _) = self
            .traced(&record, input, async {
                let mut entries = Vec::with_capacity(files.len());
                for (name, bytes) in files {
                    let path = format!("{}/{name}", dir.trim_end_matches('/'));
                    let reply = live.session.call(json!({"op": "write", "path": path}), bytes).await?;
                    entries.push(reply["entry"].clone());
                }
                let total = files.iter().map(|(_, bytes)| bytes.len() as u64).sum();
                Ok((entries, OpOutput { bytes: Some(total), ..OpOutput::default() }))
            })
            .await?;
        Ok(entries)
    }

    /// Remove a file or a directory (with what it holds).
    pub async fn remove_file(&self, id: &str, path: &str) -> Result<(), SandboxesError> {
        let record = self.record(id).await?;
        let live = self.session_of(&record).await?;
        let input =
            OpInput { sandbox_id: id.to_owned(), op: SandboxOp::Delete, path: Some(path.to_owned()), snapshot: None };
        self.traced(&record, input, async {
            live.session.call(json!({"op": "remove", "path": path}), &[]).await?;
            Ok(((), OpOutput::default()))
        })
        .await?;
        Ok(())
    }

    async fn running(&self, id: &str) -> Result<Arc<Live>, SandboxesError> {
        let record = self.record(id).await?;
        self.session_of(&record).await
    }
}

/// A command's `cwd` must be a directory inside `/workspace`, as the sandbox resolves it (its
/// symlinks followed): `bad_path` naming the field otherwise, before anything runs.
async fn check_cwd(live: &Live, cwd: &str) -> Result<(), SandboxesError> {
    let refused = |why: String| SandboxesError::BadPath { message: format!("`cwd`: {why}") };
    match live.session.call(json!({"op": "stat", "path": cwd}), &[]).await {
        Ok(reply) if reply["entry"]["type"] == "dir" => Ok(()),
        Ok(_) => Err(refused(format!("{cwd:?} is not a directory"))),
        Err(OpError::Refused { message, .. }) => Err(refused(message)),
        Err(error) => Err(error.into()),
    }
}

/// Wait for a step's outcome.
pub(super) async fn finish(live: LiveRun) -> Result<Execution, SandboxesError> {
    let LiveRun { mut events, outcome, .. } = live;
    // Nobody follows it live: its events are let go as they come.
    let draining = async { while events.recv().await.is_some() {} };
    let (outcome, ()) = tokio::join!(outcome, draining);
    let execution = outcome.map_err(|e| SandboxesError::Invalid(format!("the step's task failed: {e}")))??;
    Ok(execution)
}

/// What a file read serves.
#[derive(Debug)]
pub struct FileRead {
    pub bytes: Vec<u8>,
    /// Where `bytes` start in the file as served.
    pub offset: u64,
    /// The size of the file as served (its redacted text's, when it is text).
    pub size: u64,
    /// Whether a secret was redacted (the size then differs from the file's on disk).
    pub redacted: bool,
}

impl FileRead {
    /// `range` of `content`, all of it when none.
    fn cut(content: Vec<u8>, range: Option<(u64, Option<u64>)>, redacted: bool) -> Result<FileRead, SandboxesError> {
        let size = content.len() as u64;
        let Some((offset, length)) = range else {
            return Ok(FileRead { bytes: content, offset: 0, size, redacted });
        };
        if offset >= size {
            return Err(SandboxesError::RangeNotSatisfiable { size });
        }
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(content.len());
        let end = match length {
            Some(length) => usize::try_from(offset.saturating_add(length)).unwrap_or(usize::MAX).min(content.len()),
            None => content.len(),
        };
        Ok(FileRead { bytes: content[start..end].to_vec(), offset, size, redacted })
    }
}

/// `length` bytes of `path` from `offset`, as they are on disk, and the file's size.
async fn read_raw(live: &Live, path: &str, offset: u64, length: u64) -> Result<(Vec<u8>, u64), SandboxesError> {
    Ok(read_raw_op(live, path, offset, length).await?)
}

/// [`read_raw`], with the container's refusal as it came (the tools sort its reasons).
pub(super) async fn read_raw_op(live: &Live, path: &str, offset: u64, length: u64) -> Result<(Vec<u8>, u64), OpError> {
    let header = json!({"op": "read", "path": path, "offset": offset, "length": length});
    let mut op = live.session.request(header, &[]).await?;
    let mut bytes = Vec::new();
    loop {
        match op.next().await? {
            OpFrame::Data(data) => bytes.extend_from_slice(&data),
            OpFrame::Reply(reply) => {
                let reply = crate::sandbox::reply_of(reply)?;
                return Ok((bytes, reply["size"].as_u64().unwrap_or_default()));
            }
            _ => {}
        }
    }
}
