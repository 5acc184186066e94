//! Artifacts: the files a run leaves in `/workspace/out/`, stored per run under
//! `uploads/artifacts/<trace_id>/out/…`.
//!
//! The sandbox hands over a tar of `/workspace/out` once the program ended. It comes from inside
//! the sandbox, so nothing in it is trusted: the archive is read raw (an extension header such
//! as a GNU long name is never gathered into memory, only refused), only regular files are
//! kept, each path has its secrets redacted and then each component passes
//! [`FileName`](super::FileName) (see [`name`]), and the count and size per run and in all are
//! bounded; whatever is left out is named with the reason. Extraction streams from the run to
//! disk (a blocking thread reads the tar as it arrives), so a large artifact is never held in
//! memory. Artifacts expire after `artifacts_retention_hours`.

mod extract;
mod name;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracebox_model::{Artifact, Omitted, Redaction, TraceId};

use super::{FileError, Files, Located};
use crate::policy::Policy;
use crate::trace::{StoreError, Swept};
use extract::{ChannelReader, Store};
use name::{MAX_DEPTH, artifact_path};

/// The directory of `uploads/` that holds the artifacts; no upload may take its name.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// Most omissions named one by one (the rest are only counted), and the longest name kept.
const MAX_NAMED_OMISSIONS: usize = 20;
pub(super) const MAX_OMITTED_NAME_BYTES: usize = 256;

/// What a tar may add to the files it carries: a 512-byte header and up to 511 bytes of
/// padding per entry (directories too), and the closing blocks and record padding.
const TAR_BYTES_PER_ENTRY: u64 = 1024;
const TAR_CLOSING_BYTES: u64 = 20 * 512;

/// Tar bytes in flight between the run and the extraction.
const CHANNEL_CHUNKS: usize = 16;

/// Characters of a path component that stay as they are in a URL.
const URL_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// What came back of a run's `/workspace/out/`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArtifactReport {
    pub stored: Vec<Artifact>,
    /// Secrets replaced in the names of files, stored or left out (stream `artifacts`).
    pub redactions: Vec<Redaction>,
    /// The first few files left out, with the reason.
    pub omitted: Vec<Omitted>,
    /// How many were left out in all.
    pub omitted_count: usize,
    /// Why the archive could not be read to its end, when it could not.
    pub error: Option<String>,
}

impl ArtifactReport {
    fn count(&mut self, redactions: &[Redaction]) {
        for redaction in redactions {
            match self.redactions.iter_mut().find(|known| known.rule == redaction.rule) {
                Some(known) => known.count += redaction.count,
                None => self.redactions.push(redaction.clone()),
            }
        }
    }

    fn omit(&mut self, mut name: String, reason: String) {
        self.omitted_count += 1;
        if self.omitted.len() < MAX_NAMED_OMISSIONS {
            if name.len() > MAX_OMITTED_NAME_BYTES {
                name.truncate(tracebox_model::text::head(&name, MAX_OMITTED_NAME_BYTES).len());
                name.push('…');
            }
            self.omitted.push(Omitted { name, reason });
        }
    }
}

/// Bounds on what runs may hand back.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactLimits {
    /// Per run.
    pub max_files: usize,
    pub max_bytes: u64,
    /// Of every run's artifacts together, on this data directory.
    pub max_total_bytes: u64,
    /// How long artifacts are kept; None: for ever.
    pub retention: Option<Duration>,
}

impl ArtifactLimits {
    /// The most tar bytes a run's artifacts can take within the limits; what is sent past it is
    /// not read (a program that forged the end line cannot stream for ever).
    pub fn tar_budget(&self) -> u64 {
        let entries = (self.max_files as u64).saturating_mul(2).saturating_add(MAX_DEPTH as u64);
        self.max_bytes.saturating_add(entries.saturating_mul(TAR_BYTES_PER_ENTRY)).saturating_add(TAR_CLOSING_BYTES)
    }

    /// A limit of 0 returns nothing at all.
    fn disabled(&self) -> bool {
        self.max_files == 0 || self.max_bytes == 0
    }
}

/// Where a run sends its artifacts' tar: at most `budget` bytes of it to `tar`, which is
/// dropped at the end.
pub struct ArtifactSink {
    pub tar: mpsc::Sender<Bytes>,
    pub budget: u64,
}

/// The artifacts of one run being stored, until [`Receiving::finish`].
pub struct Receiving {
    report: JoinHandle<ArtifactReport>,
}

impl Receiving {
    /// What was stored, once the sink is gone.
    pub async fn finish(self) -> ArtifactReport {
        self.report.await.unwrap_or_else(|error| ArtifactReport {
            error: Some(format!("storing the artifacts failed: {error}")),
            ..ArtifactReport::default()
        })
    }
}

impl Files {
    /// Start receiving the artifacts of run `trace_id`, their names redacted by the run's
    /// `policy`. Nothing is written (and no blocking thread taken) until the first byte
    /// arrives; with a limit of 0, nothing is taken at all.
    pub fn receive_artifacts(&self, trace_id: TraceId, policy: Arc<Policy>) -> (ArtifactSink, Receiving) {
        let (tar, mut bytes) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let limits = self.inner.artifact_limits;
        let mut store = Store {
            dir: self.artifacts_dir(trace_id),
            trace_id,
            limits,
            usage: Arc::clone(&self.inner.artifact_usage),
            policy,
            made: Default::default(),
        };
        let report = tokio::spawn(async move {
            if limits.disabled() {
                return ArtifactReport::default();
            }
            let Some(first) = bytes.recv().await else { return ArtifactReport::default() };
            let reader = ChannelReader { bytes, current: first };
            let extraction = tokio::task::spawn_blocking(move || store.extract(reader));
            extraction.await.unwrap_or_else(|error| ArtifactReport {
                error: Some(format!("storing the artifacts failed: {error}")),
                ..ArtifactReport::default()
            })
        });
        (ArtifactSink { tar, budget: limits.tar_budget() }, Receiving { report })
    }

    /// Remove what run `trace_id` stored (a run whose trace could not list them).
    pub async fn discard_artifacts(&self, trace_id: TraceId) {
        let files = self.clone();
        let removed = tokio::task::spawn_blocking(move || files.remove_run(trace_id)).await;
        if let Ok(Err(error)) = removed {
            tracing::warn!(%trace_id, %error, "could not remove a failed run's artifacts");
        }
    }

    /// Remove the traces past `max_age` or `max_count` (see [`TraceStore::retire`]) and, as
    /// each batch of them goes, the artifacts of those runs.
    ///
    /// [`TraceStore::retire`]: crate::trace::TraceStore::retire
    pub async fn retire_traces(&self, max_age: Option<Duration>, max_count: Option<u64>) -> Result<Swept, StoreError> {
        let store = self.inner.store.clone();
        store
            .retire(max_age, max_count, |ids| {
                let files = self.clone();
                async move { files.remove_artifacts(&ids).await }
            })
            .await
    }

    /// Remove the artifacts of runs whose traces were removed (retention); returns how many
    /// runs had some. One that cannot be removed is logged and left.
    pub async fn remove_artifacts(&self, trace_ids: &[TraceId]) -> usize {
        let (files, trace_ids) = (self.clone(), trace_ids.to_vec());
        let removed = tokio::task::spawn_blocking(move || {
            let removed = |trace_id: &TraceId| match files.remove_run(*trace_id) {
                Ok(removed) => removed,
                Err(error) => {
                    tracing::warn!(%trace_id, %error, "could not remove the artifacts of a removed trace");
                    false
                }
            };
            trace_ids.iter().filter(|trace_id| removed(trace_id)).count()
        });
        removed.await.unwrap_or(0)
    }

    /// Remove the artifacts directory of run `trace_id`, freeing its bytes; false when it had
    /// none.
    fn remove_run(&self, trace_id: TraceId) -> std::io::Result<bool> {
        let dir = self.artifacts_dir(trace_id);
        let size = size_of_tree(&dir);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                self.free_artifacts(size);
                Ok(true)
            }
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn free_artifacts(&self, bytes: u64) {
        let usage = &self.inner.artifact_usage;
        let _ = usage.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(bytes)));
    }

    /// Bytes of artifacts stored now, as this server counts them.
    pub fn artifact_usage(&self) -> u64 {
        self.inner.artifact_usage.load(Ordering::Relaxed)
    }

    /// Count what `uploads/artifacts/` holds (at start), refusing a file that sits where the
    /// directory should be.
    pub(super) fn prepare_artifacts(&self) -> Result<(), FileError> {
        let dir = self.dir().join(ARTIFACTS_DIR);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(FileError::Io {
                    what: "use",
                    path: dir,
                    source: std::io::Error::other(
                        "it is not a directory, but runs' artifacts are kept there; rename or remove it",
                    ),
                });
            }
            _ => {}
        }
        self.inner.artifact_usage.store(size_of_tree(&dir), Ordering::Relaxed);
        Ok(())
    }

    /// Remove the artifacts of runs older than the retention; returns how many runs' were removed.
    pub async fn expire_artifacts(&self) -> usize {
        let Some(retention) = self.inner.artifact_limits.retention else { return 0 };
        let files = self.clone();
        tokio::task::spawn_blocking(move || files.expire_older_than(retention)).await.unwrap_or(0)
    }

    fn expire_older_than(&self, retention: Duration) -> usize {
        let root = self.dir().join(ARTIFACTS_DIR);
        let Ok(runs) = std::fs::read_dir(&root) else { return 0 };
        let cutoff = SystemTime::now().checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        for run in runs.flatten() {
            let old = run.metadata().and_then(|m| m.modified()).is_ok_and(|modified| modified < cutoff);
            if !old {
                continue;
            }
            let size = size_of_tree(&run.path());
            match std::fs::remove_dir_all(run.path()) {
                Ok(()) => {
                    removed += 1;
                    self.free_artifacts(size);
                }
                Err(error) => tracing::warn!(dir = %run.path().display(), %error, "could not remove expired artifacts"),
            }
        }
        removed
    }

    /// Where artifact `name` (`out/…`) of run `trace_id` is, with (when `with_hash`) its sha256
    /// as the run's trace recorded it.
    pub async fn locate_artifact(&self, trace_id: TraceId, name: &str, with_hash: bool) -> Result<Located, FileError> {
        let missing = || FileError::NoSuchArtifact { trace_id, name: name.to_owned() };
        let path = artifact_path(name).map_err(|_| missing())?;
        let path = self.artifacts_dir(trace_id).join(path);
        let size = match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => return Err(missing()),
            Err(error) if error.kind() == ErrorKind::NotFound => return Err(missing()),
            Err(error) => return Err(FileError::Io { what: "read", path, source: error }),
        };
        if !with_hash {
            return Ok(Located { path, size, sha256: None });
        }
        let trace = self.inner.store.get(trace_id).await?;
        let recorded = trace.as_ref().and_then(|trace| trace.output.get("artifacts")).cloned();
        let recorded: Vec<Artifact> = recorded.and_then(|list| serde_json::from_value(list).ok()).unwrap_or_default();
        let sha256 = recorded.into_iter().find(|a| a.name == name && a.size == size).map(|a| a.sha256);
        Ok(Located { path, size, sha256 })
    }

    /// Where the artifacts of run `trace_id` are kept; `out/…` names are relative to it.
    pub fn artifacts_dir(&self, trace_id: TraceId) -> PathBuf {
        self.dir().join(ARTIFACTS_DIR).join(trace_id.to_string())
    }
}

/// The download URL of artifact `name` of run `trace_id` (a traced download).
pub fn artifact_url(trace_id: TraceId, name: &str) -> String {
    format!("/download/{ARTIFACTS_DIR}/{trace_id}/{}", encoded(name))
}

/// Extensions of the images the trace page shows inline (in an `<img>`, which runs no script
/// even for SVG; the file itself is always an attachment).
const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "webp", "svg"];

/// Is artifact `name` an image the trace page shows?
pub fn is_image(name: &str) -> bool {
    let extension = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default();
    IMAGE_EXTENSIONS.contains(&extension.as_str())
}

/// The URL the trace page shows image `name` with (reading a trace is not a download).
pub fn artifact_preview_url(trace_id: TraceId, name: &str) -> String {
    format!("/trace/{trace_id}/{ARTIFACTS_DIR}/{}", encoded(name))
}

fn encoded(name: &str) -> String {
    let parts: Vec<String> = name.split('/').map(|part| utf8_percent_encode(part, URL_SAFE).to_string()).collect();
    parts.join("/")
}

/// Bytes of the regular files under `dir` (0 when there is none).
fn size_of_tree(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => size_of_tree(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::tests::settings_in;
    use extract::tests::{FILE, tar_of};

    #[tokio::test]
    async fn expired_artifacts_are_removed_and_their_bytes_freed() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::trace::TraceStore::open(&dir.path().join("traces")).unwrap();
        let files = Files::new(settings_in(dir.path()), store.clone(), "boot");
        files.prepare().unwrap();
        let (sink, receiving) = files.receive_artifacts(TraceId::new(), Arc::new(Policy::builtin().unwrap()));
        sink.tar.send(Bytes::from(tar_of(&[("out/a", FILE, b"12345")]))).await.unwrap();
        drop(sink);
        assert_eq!(receiving.finish().await.stored.len(), 1);
        assert_eq!(files.artifact_usage(), 5);
        assert_eq!(files.prepare_artifacts().map(|()| files.artifact_usage()).unwrap(), 5, "a restart counts the same");
        assert_eq!(files.expire_older_than(Duration::from_secs(3600)), 0, "younger than the retention");
        assert_eq!(files.expire_older_than(Duration::ZERO), 1);
        assert_eq!(files.artifact_usage(), 0);
        assert_eq!(std::fs::read_dir(dir.path().join("uploads/artifacts")).unwrap().count(), 0);
        store.close();
    }

    #[tokio::test]
    async fn a_limit_of_zero_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::trace::TraceStore::open(&dir.path().join("traces")).unwrap();
        let mut settings = settings_in(dir.path());
        settings.artifacts.max_bytes = 0;
        let files = Files::new(settings, store.clone(), "boot");
        let (sink, receiving) = files.receive_artifacts(TraceId::new(), Arc::new(Policy::builtin().unwrap()));
        let _ = sink.tar.send(Bytes::from(tar_of(&[("out/empty", FILE, b"")]))).await;
        drop(sink);
        assert_eq!(receiving.finish().await, ArtifactReport::default());
        assert!(!dir.path().join("uploads/artifacts").exists());
        store.close();
    }

    #[tokio::test]
    async fn a_removed_trace_takes_its_artifacts_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::trace::TraceStore::open(&dir.path().join("traces")).unwrap();
        let files = Files::new(settings_in(dir.path()), store.clone(), "boot");
        files.prepare().unwrap();
        let mut ids = Vec::new();
        for bytes in [b"old".as_slice(), b"newer"] {
            let trace = files.begin_trace(tracebox_model::record::UploadInput { client: None, overwrite: false }, None);
            let id = trace.id();
            let output = tracebox_model::record::UploadOutput::Stored { files: Vec::new() };
            trace.finish(tracebox_model::Status::Success, output).await;
            let (sink, receiving) = files.receive_artifacts(id, Arc::new(Policy::builtin().unwrap()));
            sink.tar.send(Bytes::from(tar_of(&[("out/a", FILE, bytes)]))).await.unwrap();
            drop(sink);
            assert_eq!(receiving.finish().await.stored.len(), 1);
            ids.push(id);
        }
        assert_eq!(files.artifact_usage(), 8);

        let swept = files.retire_traces(None, Some(1)).await.unwrap();
        assert_eq!((swept.traces, swept.artifact_runs), (1, 1));
        assert!(!files.artifacts_dir(ids[0]).exists(), "the oldest trace's artifacts went with it");
        assert!(files.artifacts_dir(ids[1]).join("out/a").exists());
        assert_eq!(files.artifact_usage(), 5, "its bytes are freed");
        assert!(store.get(ids[0]).await.unwrap().is_none());
        store.close();
    }
}
