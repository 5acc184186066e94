//! Uploaded files: the one module that touches `<data dir>/uploads/`.
//!
//! An upload is staged: each file streams into a hidden `.partial-<uuid>` in `uploads/` while
//! its sha256 is computed, within the per-file and per-request limits. Only when every file of
//! the request arrived whole are they moved to their names (a hard link never replaces a file,
//! so a taken name is numbered instead; `overwrite` renames over it). A staged file that is not
//! committed, because of a limit, a bad name or a client gone mid-upload, is removed when
//! dropped. Every name in and out passes [`FileName`], so no path leaves `uploads/`. All the
//! files together stay within a quota (see [`quota`]).
//!
//! What runs leave in `/workspace/out/` is kept apart, in `uploads/artifacts/<trace_id>/`
//! (see [`artifacts`]).
//!
//! With API keys, each tenant's uploads are a directory of their own, `uploads/tenants/<tenant>/`
//! (a tenant is a plain word, see `tracebox_model::access`): two tenants may each have `data.csv`,
//! and neither can name the other's. The files of an open server stay in `uploads/` itself.

mod artifacts;
mod name;
mod quota;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

pub use artifacts::{
    ARTIFACTS_DIR, ArtifactLimits, ArtifactReport, ArtifactSink, Receiving, artifact_preview_url, artifact_url,
    is_image,
};
pub use name::{FileName, MAX_NAME_BYTES, NameError};

use tracebox_model::record::StoredFile;
use tracebox_model::{EventLog, InputFile, Source, Status, TraceId, TraceInput, TraceOutput, format_us, now_us};

use crate::trace::{FileRecord, FinishedTrace, NewTrace, StoreError, TraceStore};
use quota::{OverQuota, Quota};

/// Prefix of the files being received; hidden, so no [`FileName`] can name one.
const PARTIAL_PREFIX: &str = ".partial-";

/// The directory of `uploads/` that holds each tenant's own.
pub const TENANTS_DIR: &str = "tenants";

/// Most uploaded files one run may be given.
pub const MAX_INPUT_FILES: usize = 100;

/// Names in `/workspace/` the runners write the program to, or the run's own output directory:
/// an input file there would shadow them.
const RESERVED_INPUTS: &[&str] = &["main.py", "main.js", "main.mjs", "out"];

/// Most numbered alternatives tried for a taken name before giving up.
const MAX_NUMBERED: u64 = 10_000;

/// Something asked of the uploads directory that cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("no file named {0:?} in uploads/; GET /files lists them")]
    NoSuchFile(String),
    #[error(
        "run {trace_id} has no artifact {name:?} (artifacts expire after TRACEBOX_ARTIFACTS_RETENTION_HOURS); GET /trace/{trace_id} lists what it made"
    )]
    NoSuchArtifact { trace_id: TraceId, name: String },
    #[error(
        "the name {0:?} is where uploads/ keeps the artifacts of runs and the files of tenants; upload the file under another name"
    )]
    ReservedName(String),
    #[error(
        "the file {name:?} is over {limit} bytes, the largest upload_max_file_bytes (TRACEBOX_UPLOAD_MAX_FILE_BYTES) allows; nothing was stored"
    )]
    FileTooLarge { name: String, limit: u64 },
    #[error(
        "the files of this request are over {limit} bytes in total, the most upload_max_request_bytes (TRACEBOX_UPLOAD_MAX_REQUEST_BYTES) allows; nothing was stored, send them in several requests"
    )]
    UploadTooLarge { limit: u64 },
    #[error(
        "this upload would take the files in uploads/ past {limit} bytes, the quota upload_max_total_bytes (TRACEBOX_UPLOAD_MAX_TOTAL_BYTES); other files hold {taken} bytes. Nothing was stored: delete files (GET /files lists them, DELETE /files/{{name}} removes one) or raise the quota"
    )]
    QuotaExceeded { limit: u64, taken: u64 },
    #[error(
        "this upload would take tenant {tenant:?}'s files past {limit} bytes, its API key's upload quota; its other files hold {taken} bytes. Nothing was stored: delete files (GET /files lists them, DELETE /files/{{name}} removes one)"
    )]
    TenantQuotaExceeded { tenant: String, limit: u64, taken: u64 },
    #[error("no free name like {0:?} in uploads/; delete some files or upload with ?overwrite=true")]
    NoFreeName(String),
    /// A run's `files` that cannot be given to it (too many, repeated, a reserved name).
    #[error("`files`: {0}")]
    Inputs(String),
    #[error("cannot {what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_owned();
    move |source| FileError::Io { what, path, source }
}

/// What the files module is given of the server's configuration: where uploads go, and the
/// limits on them and on runs' artifacts.
#[derive(Debug, Clone)]
pub struct FilesSettings {
    /// The uploads directory (`<data dir>/uploads`); artifacts go in its `artifacts/`.
    pub dir: PathBuf,
    /// Largest file one upload stores, in bytes.
    pub upload_max_file_bytes: u64,
    /// Largest total of the files of one upload request, in bytes.
    pub upload_max_request_bytes: u64,
    /// Most bytes the uploaded files may hold together (artifacts aside), in bytes.
    pub upload_max_total_bytes: u64,
    pub artifacts: ArtifactLimits,
}

/// The uploads directory and what is recorded about its files. Cheap to clone.
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    store: TraceStore,
    boot_id: String,
    max_file_bytes: u64,
    max_request_bytes: u64,
    artifact_limits: ArtifactLimits,
    /// Bytes of every run's artifacts, counted at start and as runs store and expire them.
    artifact_usage: Arc<std::sync::atomic::AtomicU64>,
    /// Bytes of the uploaded files, and how many they may hold.
    quota: Arc<Quota>,
    /// Bytes of each tenant's files, counted on the tenant's first upload since the start (its
    /// key says how many it may hold).
    tenant_quotas: Mutex<HashMap<String, Arc<Quota>>>,
    /// Held while a file of one tenant's uploads (None: the open server's) is stored or removed:
    /// a size read and the rename or unlink after it must not interleave with another's, or two
    /// overwrites of one file would both give its bytes back to the quota.
    changing: Mutex<HashMap<Option<String>, Arc<tokio::sync::Mutex<()>>>>,
}

/// A file of the list.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// Null for a file put in `uploads/` by other means than an upload.
    pub sha256: Option<String>,
    pub uploaded_at: Option<String>,
}

/// A file ready to be served.
#[derive(Debug)]
pub struct Located {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Option<String>,
}

impl Files {
    /// The uploads directory and limits of `settings`, its records in `store`; traces are made
    /// as `boot_id`.
    pub fn new(settings: FilesSettings, store: TraceStore, boot_id: &str) -> Files {
        let FilesSettings { dir, upload_max_file_bytes, upload_max_request_bytes, upload_max_total_bytes, artifacts } =
            settings;
        Files {
            inner: Arc::new(Inner {
                dir,
                store,
                boot_id: boot_id.to_owned(),
                max_file_bytes: upload_max_file_bytes,
                max_request_bytes: upload_max_request_bytes,
                artifact_limits: artifacts,
                artifact_usage: Default::default(),
                quota: Arc::new(Quota::new(upload_max_total_bytes)),
                tenant_quotas: Mutex::default(),
                changing: Mutex::default(),
            }),
        }
    }

    /// The uploads directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The directory of `owner`'s uploads: its own under `tenants/`, or `uploads/` itself for an
    /// open server's. A tenant is a plain word (the doors check it); anything else is refused
    /// here too, so no name of a tenant ever leads out of `tenants/`.
    fn dir_of(&self, owner: Option<&str>) -> Result<PathBuf, FileError> {
        match owner {
            Some(tenant) if tracebox_model::access::is_valid_name(tenant) => {
                Ok(self.inner.dir.join(TENANTS_DIR).join(tenant))
            }
            Some(tenant) => Err(FileError::Inputs(format!("{tenant:?} is not a tenant"))),
            None => Ok(self.inner.dir.clone()),
        }
    }

    /// The quota counter of `tenant`'s files, counted from its directory on first use.
    fn tenant_quota(&self, tenant: &str) -> Result<Arc<Quota>, FileError> {
        let mut quotas = self.inner.tenant_quotas.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(quota) = quotas.get(tenant) {
            return Ok(Arc::clone(quota));
        }
        let quota = Arc::new(Quota::new(u64::MAX));
        let dir = self.dir_of(Some(tenant))?;
        match quota.count(&dir) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => return Err(io("count the files of", &dir)(error)),
        }
        quotas.insert(tenant.to_owned(), Arc::clone(&quota));
        Ok(quota)
    }

    /// Hold `owner`'s uploads still while a file is stored or removed (see `Inner::changing`).
    async fn changing(&self, owner: Option<&str>) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.inner.changing.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(locks.entry(owner.map(str::to_owned)).or_default())
        };
        lock.lock_owned().await
    }

    /// Bytes of `tenant`'s uploaded files, as this server counts them.
    pub fn tenant_usage(&self, tenant: &str) -> Result<u64, FileError> {
        Ok(self.tenant_quota(tenant)?.used())
    }

    /// The most bytes of files one request may carry.
    pub fn max_request_bytes(&self) -> u64 {
        self.inner.max_request_bytes
    }

    /// Make the directory, remove the partial files an earlier start left when it died, and
    /// count the uploads and the artifacts. Only for the one server that holds the data
    /// directory. Returns how many partial files were removed.
    pub fn prepare(&self) -> Result<usize, FileError> {
        let dir = self.dir();
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        self.prepare_artifacts()?;
        let mut removed = 0;
        for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
            let entry = entry.map_err(io("list", dir))?;
            if entry.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
                std::fs::remove_file(entry.path()).map_err(io("remove", &entry.path()))?;
                removed += 1;
            }
        }
        self.inner.quota.count(dir).map_err(io("count the files of", dir))?;
        // Tenants' files count towards the whole too.
        let tenants = dir.join(TENANTS_DIR);
        if let Ok(entries) = std::fs::read_dir(&tenants) {
            for entry in entries.flatten() {
                let Some(tenant) = entry.file_name().to_str().map(str::to_owned) else { continue };
                if !tracebox_model::access::is_valid_name(&tenant) || !entry.path().is_dir() {
                    continue;
                }
                for partial in std::fs::read_dir(entry.path()).map_err(io("list", &entry.path()))?.flatten() {
                    if partial.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
                        std::fs::remove_file(partial.path()).map_err(io("remove", &partial.path()))?;
                        removed += 1;
                    }
                }
                let used = self.tenant_quota(&tenant)?.used();
                self.inner.quota.reserve(used).ok();
            }
        }
        Ok(removed)
    }

    /// Bytes of uploaded files now (those being received included), as this server counts them.
    pub fn upload_usage(&self) -> u64 {
        self.inner.quota.used()
    }

    /// Start receiving the files of one request, for `owner` (whose files, when the tenant's
    /// key has an upload quota, stay within `quota` bytes).
    pub fn upload(&self, owner: Option<&str>, quota: Option<u64>) -> Upload {
        Upload { files: self.clone(), owner: owner.map(str::to_owned), quota, total: 0, staged: Vec::new() }
    }

    /// Where `name` is, when it is a file of `owner`'s uploads.
    pub async fn locate(&self, name: &FileName, owner: Option<&str>) -> Result<Located, FileError> {
        let path = self.dir_of(owner)?.join(name.as_str());
        let size = match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => return Err(FileError::NoSuchFile(name.to_string())),
            Err(error) if error.kind() == ErrorKind::NotFound => return Err(FileError::NoSuchFile(name.to_string())),
            Err(error) => return Err(io("read", &path)(error)),
        };
        let record = self.inner.store.file(owner.unwrap_or_default(), name.as_str()).await?;
        let sha256 = record.filter(|r| r.size == size).map(|r| r.sha256);
        Ok(Located { path, size, sha256 })
    }

    /// The uploaded files `names` as a run's inputs: each must exist, once, and not take a
    /// name the run needs for itself. Refusals name the file.
    pub async fn inputs(&self, names: &[String], owner: Option<&str>) -> Result<Vec<InputFile>, FileError> {
        if names.len() > MAX_INPUT_FILES {
            return Err(FileError::Inputs(format!(
                "{} files; a run may be given at most {MAX_INPUT_FILES}",
                names.len()
            )));
        }
        let mut inputs: Vec<InputFile> = Vec::with_capacity(names.len());
        for name in names {
            let name = FileName::parse(name)?;
            if RESERVED_INPUTS.contains(&name.as_str()) {
                return Err(FileError::Inputs(format!(
                    "{:?} is where the program itself goes in /workspace/; upload the file under another name",
                    name.as_str()
                )));
            }
            if inputs.iter().any(|input| input.name == name.as_str()) {
                return Err(FileError::Inputs(format!("{:?} is listed twice", name.as_str())));
            }
            let located = self.locate(&name, owner).await?;
            // Docker binds by absolute path, wherever the data directory was given from.
            let host_path = tokio::fs::canonicalize(&located.path).await.map_err(io("resolve", &located.path))?;
            inputs.push(InputFile { name: name.as_str().to_owned(), host_path, size: located.size });
        }
        Ok(inputs)
    }

    /// Remove `owner`'s file `name` and its record.
    pub async fn delete(&self, name: &FileName, owner: Option<&str>) -> Result<(), FileError> {
        let path = self.dir_of(owner)?.join(name.as_str());
        let _changing = self.changing(owner).await;
        let size = match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => return Err(FileError::NoSuchFile(name.to_string())),
            Err(error) if error.kind() == ErrorKind::NotFound => return Err(FileError::NoSuchFile(name.to_string())),
            Err(error) => return Err(io("read", &path)(error)),
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                self.inner.quota.release(size);
                if let Some(tenant) = owner {
                    self.tenant_quota(tenant)?.release(size);
                }
            }
            Err(error) if error.kind() == ErrorKind::NotFound => return Err(FileError::NoSuchFile(name.to_string())),
            Err(error) => return Err(io("remove", &path)(error)),
        }
        self.inner.store.remove_file(owner.unwrap_or_default(), name.as_str()).await?;
        Ok(())
    }

    /// Every file of `owner`'s uploads, by name, with its sha256 when an upload stored it.
    pub async fn list(&self, owner: Option<&str>) -> Result<Vec<FileEntry>, FileError> {
        let dir = &self.dir_of(owner)?;
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io("list", dir)(error)),
        };
        let records: HashMap<String, FileRecord> =
            self.inner.store.files(owner.unwrap_or_default()).await?.into_iter().map(|r| (r.name.clone(), r)).collect();
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(io("list", dir))? {
            let Some(name) = entry.file_name().to_str().and_then(|n| FileName::parse(n).ok()) else { continue };
            let Ok(meta) = entry.metadata().await else { continue };
            if !meta.is_file() {
                continue;
            }
            let record = records.get(name.as_str()).filter(|r| r.size == meta.len());
            let modified = meta.modified().ok().map(|t| time::OffsetDateTime::from(t).unix_timestamp_nanos() / 1000);
            files.push(FileEntry {
                name: name.to_string(),
                size: meta.len(),
                sha256: record.map(|r| r.sha256.clone()),
                uploaded_at: record.map(|r| r.uploaded_at_us).or(modified.map(|us| us as i64)).map(format_us),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// Record an upload or download as a trace, running until [`FileTrace::finish`].
    pub fn begin_trace(&self, input: impl Into<TraceInput>, owner: Option<&str>) -> FileTrace {
        let log = EventLog::start();
        let id = TraceId::new();
        self.inner.store.begin(NewTrace {
            id,
            parent_id: None,
            source: Source::Http,
            language: None,
            boot_id: self.inner.boot_id.clone(),
            started_at_us: log.started_at_us(),
            input: input.into(),
            tenant: owner.map(str::to_owned),
        });
        FileTrace { store: self.inner.store.clone(), id, log }
    }
}

/// A trace of a file transfer, being recorded.
pub struct FileTrace {
    store: TraceStore,
    id: TraceId,
    log: EventLog,
}

impl FileTrace {
    pub fn id(&self) -> TraceId {
        self.id
    }

    /// Note a step.
    pub fn record(&mut self, name: &str, detail: Value) {
        self.log.record(name, detail);
    }

    /// Write how it ended (`success` or `error`); a failure to write is logged, not returned:
    /// the transfer itself happened or not whatever the trace says.
    pub async fn finish(self, status: Status, output: impl Into<TraceOutput>) {
        let FileTrace { store, id, log } = self;
        let output = output.into();
        let ended_at_us = log.now_us();
        let events = log.into_events();
        let finished = FinishedTrace { id, status, ended_at_us, exit_code: None, output, events };
        if let Err(error) = store.finish(finished).await {
            tracing::error!(trace_id = %id, %error, "recording a file transfer's trace failed");
        }
    }
}

/// The files of one upload request, staged until [`Upload::commit`].
pub struct Upload {
    files: Files,
    /// Whose files these are, and the most bytes their key lets them hold together.
    owner: Option<String>,
    quota: Option<u64>,
    total: u64,
    staged: Vec<Partial>,
}

/// One file being received into `.partial-<uuid>`; removed, and its bytes given back to the
/// quota, when dropped uncommitted.
struct Partial {
    requested: FileName,
    path: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
    kept: bool,
    quota: Arc<Quota>,
    /// The tenant's own count, reserved beside the whole's.
    tenant_quota: Option<Arc<Quota>>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        self.quota.release(self.size);
        if let Some(quota) = &self.tenant_quota {
            quota.release(self.size);
        }
        if let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "could not remove a partial upload");
        }
    }
}

impl Upload {
    /// No file received yet.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Start receiving a file to be stored as `name`; [`Upload::write`] appends to it.
    pub async fn begin_file(&mut self, name: FileName) -> Result<(), FileError> {
        if name.as_str() == ARTIFACTS_DIR || name.as_str() == TENANTS_DIR {
            return Err(FileError::ReservedName(name.to_string()));
        }
        let dir = &self.files.dir_of(self.owner.as_deref())?;
        tokio::fs::create_dir_all(dir).await.map_err(io("create", dir))?;
        let tenant_quota = self.owner.as_deref().map(|tenant| self.files.tenant_quota(tenant)).transpose()?;
        let path = dir.join(format!("{PARTIAL_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io("create", &path))?;
        let quota = Arc::clone(&self.files.inner.quota);
        self.staged.push(Partial {
            requested: name,
            path,
            file,
            hasher: Sha256::new(),
            size: 0,
            kept: false,
            quota,
            tenant_quota,
        });
        Ok(())
    }

    /// Append `chunk` to the file begun last, within the limits and the quota.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), FileError> {
        let (max_file, max_request) = (self.files.inner.max_file_bytes, self.files.inner.max_request_bytes);
        let Some(partial) = self.staged.last_mut() else { return Ok(()) };
        let len = chunk.len() as u64;
        if partial.size + len > max_file {
            return Err(FileError::FileTooLarge { name: partial.requested.to_string(), limit: max_file });
        }
        if self.total + len > max_request {
            return Err(FileError::UploadTooLarge { limit: max_request });
        }
        if let (Some(tenant_quota), Some(limit)) = (&partial.tenant_quota, self.quota) {
            tenant_quota.reserve_within(len, limit).map_err(|OverQuota { limit, used }| {
                FileError::TenantQuotaExceeded {
                    tenant: self.owner.clone().unwrap_or_default(),
                    limit,
                    taken: used.saturating_sub(self.total),
                }
            })?;
        } else if let Some(tenant_quota) = &partial.tenant_quota {
            tenant_quota.reserve_within(len, u64::MAX).ok();
        }
        let release_tenant = |partial: &Partial| {
            if let Some(quota) = &partial.tenant_quota {
                quota.release(len);
            }
        };
        if let Err(over) = partial.quota.reserve(len) {
            release_tenant(partial);
            let OverQuota { limit, used } = over;
            return Err(FileError::QuotaExceeded { limit, taken: used.saturating_sub(self.total) });
        }
        if let Err(error) = partial.file.write_all(chunk).await {
            partial.quota.release(len);
            release_tenant(partial);
            return Err(io("write", &partial.path)(error));
        }
        partial.hasher.update(chunk);
        partial.size += len;
        self.total += len;
        Ok(())
    }

    /// Move every received file to its name: the name asked for, or when that is taken (and
    /// `overwrite` is false) the first free `name-1.ext`, `name-2.ext`…
    pub async fn commit(mut self, overwrite: bool, trace_id: TraceId) -> Result<Vec<StoredFile>, FileError> {
        for partial in &mut self.staged {
            partial.file.flush().await.map_err(io("write", &partial.path))?;
        }
        let _changing = self.files.changing(self.owner.as_deref()).await;
        let mut stored = Vec::new();
        for mut partial in std::mem::take(&mut self.staged) {
            let name = self.place(&partial, overwrite).await?;
            partial.kept = true;
            let sha256 = hex(&std::mem::take(&mut partial.hasher).finalize());
            let record = FileRecord {
                tenant: self.owner.clone().unwrap_or_default(),
                name: name.to_string(),
                size: partial.size,
                sha256: sha256.clone(),
                uploaded_at_us: now_us(),
                trace_id: Some(trace_id.to_string()),
            };
            self.files.inner.store.put_file(record).await?;
            let requested_name = (name != partial.requested).then(|| partial.requested.to_string());
            stored.push(StoredFile { name: name.to_string(), size: partial.size, sha256, requested_name });
        }
        Ok(stored)
    }

    /// Give `partial` its name, returning the one it got.
    async fn place(&self, partial: &Partial, overwrite: bool) -> Result<FileName, FileError> {
        let dir = &self.files.dir_of(self.owner.as_deref())?;
        if overwrite {
            let target = dir.join(partial.requested.as_str());
            let replaced = tokio::fs::symlink_metadata(&target).await.ok().filter(|meta| meta.is_file());
            tokio::fs::rename(&partial.path, &target).await.map_err(io("store", &target))?;
            // The file it replaced no longer takes room.
            let freed = replaced.map_or(0, |meta| meta.len());
            self.files.inner.quota.release(freed);
            if let Some(quota) = &partial.tenant_quota {
                quota.release(freed);
            }
            return Ok(partial.requested.clone());
        }
        for n in 0..=MAX_NUMBERED {
            let name = if n == 0 { Some(partial.requested.clone()) } else { partial.requested.numbered(n) };
            let Some(name) = name else { break };
            let target = dir.join(name.as_str());
            match tokio::fs::hard_link(&partial.path, &target).await {
                Ok(()) => {
                    tokio::fs::remove_file(&partial.path).await.map_err(io("remove", &partial.path))?;
                    return Ok(name);
                }
                Err(error) if error.kind() == ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(io("store", &target)(error)),
            }
        }
        Err(FileError::NoFreeName(partial.requested.to_string()))
    }
}

/// Lower-case hex of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
