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

mod name;

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{FileError, Files, Located, hex};
use crate::policy::{Policy, Redaction};
use crate::trace::TraceId;
use name::{MAX_DEPTH, Screened, artifact_path, numbered};

/// The directory of `uploads/` that holds the artifacts; no upload may take its name.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// Most omissions named one by one (the rest are only counted), and the longest name kept.
const MAX_NAMED_OMISSIONS: usize = 20;
const MAX_OMITTED_NAME_BYTES: usize = 256;

/// What a tar may add to the files it carries: a 512-byte header and up to 511 bytes of
/// padding per entry (directories too), and the closing blocks and record padding.
const TAR_BYTES_PER_ENTRY: u64 = 1024;
const TAR_CLOSING_BYTES: u64 = 20 * 512;

/// Tar bytes in flight between the run and the extraction.
const CHANNEL_CHUNKS: usize = 16;

/// Characters of a path component that stay as they are in a URL.
const URL_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A file a run left in `/workspace/out/`, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Its path in `/workspace`, e.g. `out/plot.png`.
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Where to download it (`GET`, traced as a download).
    pub url: String,
}

/// A file of `/workspace/out/` that did not come back, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Omitted {
    pub name: String,
    pub reason: String,
}

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
                let cut = (0..=MAX_OMITTED_NAME_BYTES).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0);
                name.truncate(cut);
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
        let store = Store {
            dir: self.artifacts_dir(trace_id),
            trace_id,
            limits,
            usage: Arc::clone(&self.inner.artifact_usage),
            policy,
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
        let dir = self.artifacts_dir(trace_id);
        let freed = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || size_of_tree(&dir)
        })
        .await
        .unwrap_or(0);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {
                self.inner.artifact_usage.fetch_sub(freed.min(self.artifact_usage()), Ordering::Relaxed);
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(dir = %dir.display(), %error, "could not remove a failed run's artifacts"),
        }
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
                    let usage = &self.inner.artifact_usage;
                    let _ = usage.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(size)));
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

/// Where and within what one run's artifacts are stored.
struct Store {
    dir: PathBuf,
    trace_id: TraceId,
    limits: ArtifactLimits,
    /// Bytes of artifacts of every run, shared by the server.
    usage: Arc<AtomicU64>,
    /// Redacts what the archive names, and what the tar reader says about it.
    policy: Arc<Policy>,
}

impl Store {
    /// Store the regular files of the tar `reader`, within the limits, under their names with
    /// every secret redacted.
    fn extract(&self, reader: impl Read) -> ArtifactReport {
        let mut report = ArtifactReport::default();
        let mut total: u64 = 0;
        let mut archive = tar::Archive::new(reader);
        let entries = match archive.entries() {
            // Raw: a long-name or extension entry is an entry like any other (refused below),
            // never read whole into memory to rename the next one.
            Ok(entries) => entries.raw(true),
            Err(error) => {
                report.error = Some(self.policy.redact(&format!("the artifacts could not be read: {error}")));
                return report;
            }
        };
        for entry in entries {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    // The tar reader's messages quote the header (its path, its fields).
                    let message = format!("the artifacts arrived cut short or malformed: {error}");
                    report.error = Some(self.policy.redact(&message));
                    break;
                }
            };
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            let screened = Screened::new(&String::from_utf8_lossy(&entry.path_bytes()), &self.policy);
            report.count(&screened.redactions);
            let size = entry.size();
            let admitted = artifact_path(&screened.name)
                .and_then(|path| self.admit(kind, size, report.stored.len(), total).map(|()| path));
            let path = match admitted {
                Ok(path) => path,
                Err(reason) => {
                    report.omit(screened.name, reason);
                    continue;
                }
            };
            match self.store(&mut entry, &screened, &path, size) {
                Ok((name, sha256)) => {
                    total += size;
                    let url = artifact_url(self.trace_id, &name);
                    report.stored.push(Artifact { name, size, sha256, url });
                }
                Err(error) => {
                    self.release(size);
                    if error.kind() != ErrorKind::UnexpectedEof {
                        tracing::warn!(dir = %self.dir.display(), artifact = %screened.name, %error, "could not store an artifact");
                    }
                    report.omit(screened.name, format!("could not be stored: {error}"));
                }
            }
        }
        report
    }

    /// May an entry of `kind` and `size` be stored, after `stored` files of `total` bytes? Its
    /// bytes are counted toward the server's total when it may.
    fn admit(&self, kind: tar::EntryType, size: u64, stored: usize, total: u64) -> Result<(), String> {
        let limits = &self.limits;
        if !kind.is_file() {
            return Err("not a regular file (a link, FIFO or device); only files come back".to_owned());
        }
        if stored >= limits.max_files {
            return Err(format!("over the {} files a run may return (TRACEBOX_ARTIFACTS_MAX_FILES)", limits.max_files));
        }
        if total.saturating_add(size) > limits.max_bytes {
            return Err(format!(
                "over the {} bytes a run may return in all (TRACEBOX_ARTIFACTS_MAX_BYTES)",
                limits.max_bytes
            ));
        }
        if !self.reserve(size) {
            return Err(format!(
                "the server's space for artifacts is full ({} bytes, TRACEBOX_ARTIFACTS_MAX_TOTAL_BYTES); older ones expire after TRACEBOX_ARTIFACTS_RETENTION_HOURS",
                limits.max_total_bytes
            ));
        }
        Ok(())
    }

    /// Count `size` bytes toward the server's total, if they fit.
    fn reserve(&self, size: u64) -> bool {
        let max = self.limits.max_total_bytes;
        self.usage
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(size).filter(|after| *after <= max)
            })
            .is_ok()
    }

    fn release(&self, size: u64) {
        let _ = self.usage.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| Some(used.saturating_sub(size)));
    }

    /// Write one entry of `size` bytes to a new file at `path` (of `screened`), returning the
    /// name it was stored under and its sha256; nothing is left when it fails.
    fn store(
        &self,
        entry: &mut impl Read,
        screened: &Screened,
        path: &Path,
        size: u64,
    ) -> io::Result<(String, String)> {
        let (name, path, mut file) = self.create(screened, path)?;
        let result = copy_hashing(entry, &mut file, size);
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        result.map(|sha256| (name, sha256))
    }

    /// A new file for `screened` at `path`: never one that is there (a program's repeated entry
    /// is left out). A name tracebox redacted is its own to keep unique: two keys, or a key and a
    /// file of the program's, may redact to the same name, so it takes the first free `-1`,
    /// `-2`… instead.
    fn create(&self, screened: &Screened, path: &Path) -> io::Result<(String, PathBuf, File)> {
        let path = self.dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match create_new(&path) {
            Err(error) if error.kind() == ErrorKind::AlreadyExists && screened.is_redacted() => {}
            created => return created.map(|file| (screened.name.clone(), path, file)),
        }
        for (name, alternative) in numbered(&screened.name) {
            let path = self.dir.join(alternative);
            match create_new(&path) {
                Err(error) if error.kind() == ErrorKind::AlreadyExists => continue,
                created => return created.map(|file| (name, path, file)),
            }
        }
        Err(io::Error::new(ErrorKind::AlreadyExists, "its redacted name and every numbered alternative are taken"))
    }
}

fn create_new(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

fn copy_hashing(from: &mut impl Read, to: &mut impl Write, size: u64) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let want = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = from.read(&mut buffer[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "the archive ended inside this file"));
        }
        to.write_all(&buffer[..n])?;
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    Ok(hex(&hasher.finalize()))
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

/// The tar stream as a blocking reader over the channel the run sends it on.
struct ChannelReader {
    bytes: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.bytes.blocking_recv() {
                Some(bytes) => self.current = bytes,
                None => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar as GNU tar makes it of `/workspace/out`.
    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("/etc/passwd").unwrap();
            }
            builder.append_data(&mut header, path, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn limits(max_files: usize, max_bytes: u64) -> ArtifactLimits {
        ArtifactLimits { max_files, max_bytes, max_total_bytes: u64::MAX, retention: None }
    }

    fn store_in(dir: &Path, limits: ArtifactLimits, usage: &Arc<AtomicU64>) -> Store {
        let policy = Arc::new(Policy::builtin().unwrap());
        Store { dir: dir.to_owned(), trace_id: TraceId::new(), limits, usage: Arc::clone(usage), policy }
    }

    fn extract_here(dir: &Path, tar: &[u8], max_files: usize, max_bytes: u64) -> ArtifactReport {
        store_in(dir, limits(max_files, max_bytes), &Arc::default()).extract(tar)
    }

    const FILE: tar::EntryType = tar::EntryType::Regular;

    #[test]
    fn regular_files_under_out_are_stored_with_their_hash_and_url() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            ("out/", tar::EntryType::Directory, b""),
            ("out/result.txt", FILE, b"42\n"),
            ("out/plots/a b.png", FILE, b"\x89PNG"),
        ]);
        let report = extract_here(dir.path(), &tar, 10, 100);
        assert_eq!(report.error, None);
        let names: Vec<_> = report.stored.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["out/result.txt", "out/plots/a b.png"]);
        assert_eq!(report.stored[0].size, 3);
        assert_eq!(report.stored[0].sha256, hex(&Sha256::digest(b"42\n")));
        assert!(report.stored[1].url.ends_with("/out/plots/a%20b.png"), "{}", report.stored[1].url);
        assert_eq!(std::fs::read(dir.path().join("out/plots/a b.png")).unwrap(), b"\x89PNG");
    }

    #[test]
    fn links_paths_out_of_out_and_bad_names_are_omitted_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            ("out/passwd", tar::EntryType::Symlink, b""),
            ("main.py", FILE, b"x"),
            ("out/.hidden", FILE, b"x"),
            ("out/CON.txt", FILE, b"x"),
            ("out/ok", FILE, b"x"),
        ]);
        let report = extract_here(dir.path(), &tar, 10, 100);
        let omitted: Vec<_> = report.omitted.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(omitted, ["out/passwd", "main.py", "out/.hidden", "out/CON.txt"]);
        assert!(report.omitted[0].reason.contains("not a regular file"));
        assert!(report.omitted[1].reason.contains("not under out/"));
        assert!(report.omitted[2].reason.contains("starts with a dot"));
        assert_eq!(report.stored.len(), 1);
        assert!(!dir.path().join("out/passwd").exists() && !dir.path().join("main.py").exists());
    }

    #[test]
    fn count_and_size_are_bounded_at_their_edge() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("out/a", FILE, b"12345"), ("out/b", FILE, b"12345"), ("out/c", FILE, b"1")]);
        let report = extract_here(&dir.path().join("at"), &tar, 3, 11);
        assert_eq!((report.stored.len(), report.omitted_count), (3, 0), "exactly at both limits");
        let report = extract_here(&dir.path().join("files"), &tar, 2, 11);
        assert_eq!((report.stored.len(), report.omitted_count), (2, 1));
        assert!(report.omitted[0].reason.contains("TRACEBOX_ARTIFACTS_MAX_FILES"));
        let report = extract_here(&dir.path().join("bytes"), &tar, 3, 10);
        assert_eq!(report.stored.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["out/a", "out/b"]);
        assert!(report.omitted[0].reason.contains("TRACEBOX_ARTIFACTS_MAX_BYTES"));
    }

    #[test]
    fn a_cut_archive_keeps_the_whole_files_and_leaves_no_partial_one() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("out/whole", FILE, b"abc"), ("out/cut", FILE, &[7; 5000])]);
        let report = extract_here(dir.path(), &tar[..512 * 2 + 512 + 1000], 10, 100_000);
        assert_eq!(report.stored.len(), 1);
        assert_eq!(report.omitted_count, 1, "{report:?}");
        assert!(!dir.path().join("out/cut").exists());
    }

    #[test]
    fn a_long_name_entry_is_refused_without_being_gathered() {
        let dir = tempfile::tempdir().unwrap();
        // A GNU long-name entry declaring 1 MiB of name: read raw, it is one entry among others.
        let huge = vec![b'a'; 1 << 20];
        let tar = tar_of(&[("././@LongLink", tar::EntryType::GNULongName, &huge), ("out/ok", FILE, b"1")]);
        let report = extract_here(dir.path(), &tar, 10, 100);
        assert_eq!(report.stored.len(), 1, "{report:?}");
        assert_eq!(report.omitted_count, 1);
        assert!(report.omitted[0].name.len() <= MAX_OMITTED_NAME_BYTES + '…'.len_utf8());
    }

    #[test]
    fn a_repeated_entry_or_a_file_where_a_directory_goes_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("out/a", FILE, b"1"), ("out/a", FILE, b"2"), ("out/a/b", FILE, b"3")]);
        let report = extract_here(dir.path(), &tar, 10, 100);
        assert_eq!(report.stored.len(), 1);
        assert_eq!(report.omitted_count, 2, "{report:?}");
        assert_eq!(std::fs::read(dir.path().join("out/a")).unwrap(), b"1", "the first one stays");
    }

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    #[test]
    fn a_secret_in_a_name_is_redacted_everywhere_the_name_goes() {
        let dir = tempfile::tempdir().unwrap();
        let own = "out/REDACTED-aws_access_key_id.txt";
        let tar = tar_of(&[
            (own, FILE, b"the program's own"),
            ("out/AKIAIOSFODNN7EXAMPLE.txt", FILE, b"1"),
            ("out/ASIA\u{200b}IOSFODNN7EXAMPLE.txt", FILE, b"2"),
            ("out/AKIAIOSFODNN7EXAMPLE/deep.csv", FILE, b"3"),
        ]);
        let report = extract_here(dir.path(), &tar, 10, 100);
        let names: Vec<_> = report.stored.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                own,
                "out/REDACTED-aws_access_key_id-1.txt",
                "out/REDACTED-aws_access_key_id-2.txt",
                "out/REDACTED-aws_access_key_id/deep.csv"
            ],
            "two keys redacted to one name, and a file of that name, are told apart"
        );
        assert_eq!(std::fs::read(dir.path().join(own)).unwrap(), b"the program's own", "a name of the program's stays");
        assert_eq!(std::fs::read(dir.path().join("out/REDACTED-aws_access_key_id-2.txt")).unwrap(), b"2");
        assert!(report.stored[1].url.ends_with("/out/REDACTED-aws_access_key_id-1.txt"), "{}", report.stored[1].url);
        assert_eq!(
            report.redactions,
            [Redaction { rule: "aws_access_key_id".into(), stream: name::ARTIFACT_NAMES.into(), count: 3 }]
        );
        assert!(!format!("{report:?}").contains("IOSFODNN7EXAMPLE"), "{report:?}");
        assert!(!walk(dir.path()).contains("IOSFODNN7EXAMPLE"), "{}", walk(dir.path()));
    }

    /// Every path under `dir`, one a line.
    fn walk(dir: &Path) -> String {
        let mut paths = String::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            paths.push_str(&format!("{}\n", entry.path().display()));
            if entry.path().is_dir() {
                paths.push_str(&walk(&entry.path()));
            }
        }
        paths
    }

    #[test]
    fn a_name_left_out_is_named_redacted_and_so_is_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            (&format!("out/.{KEY}"), FILE, b"x"),
            (KEY, FILE, b"x"),
            (&format!("out/{KEY}.lnk"), tar::EntryType::Symlink, b""),
            (&format!("out/{KEY} "), FILE, b"x"),
        ]);
        let report = extract_here(dir.path(), &tar, 10, 100);
        let omitted: Vec<_> = report.omitted.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            omitted,
            [
                "out/.REDACTED-aws_access_key_id",
                "REDACTED-aws_access_key_id",
                "out/REDACTED-aws_access_key_id.lnk",
                "out/REDACTED-aws_access_key_id "
            ]
        );
        assert!(report.omitted[0].reason.contains("starts with a dot"), "{report:?}");
        assert!(!format!("{report:?}").contains(KEY), "{report:?}");
    }

    #[test]
    fn what_the_tar_reader_says_of_a_malformed_header_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = tar_of(&[(&format!("out/{KEY}"), FILE, b"x")]);
        // A size that is no number, with a checksum that fits: the reader quotes the path.
        tar[124..136].copy_from_slice(b"zzzzzzzzzzz\0");
        tar[148..156].copy_from_slice(b"        ");
        let sum: u32 = tar[..512].iter().map(|&b| u32::from(b)).sum();
        tar[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let report = extract_here(dir.path(), &tar, 10, 100);
        let error = report.error.unwrap();
        assert!(error.contains("when getting size for out/[REDACTED:aws_access_key_id]"), "{error}");
    }

    #[test]
    fn the_servers_total_is_shared_by_every_run_and_freed_by_failures() {
        let dir = tempfile::tempdir().unwrap();
        let usage = Arc::new(AtomicU64::new(0));
        let limits = ArtifactLimits { max_total_bytes: 8, ..limits(10, 100) };
        let tar = tar_of(&[("out/a", FILE, b"12345")]);
        assert_eq!(store_in(&dir.path().join("1"), limits, &usage).extract(tar.as_slice()).stored.len(), 1);
        let second = store_in(&dir.path().join("2"), limits, &usage).extract(tar.as_slice());
        assert!(second.omitted[0].reason.contains("TRACEBOX_ARTIFACTS_MAX_TOTAL_BYTES"), "{second:?}");
        assert_eq!(usage.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn expired_artifacts_are_removed_and_their_bytes_freed() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::trace::TraceStore::open(&dir.path().join("traces")).unwrap();
        let config = crate::config::Config { data_dir: dir.path().to_owned(), ..crate::config::Config::defaults() };
        let files = Files::new(&config, store.clone(), "boot");
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
        let config = crate::config::Config {
            data_dir: dir.path().to_owned(),
            artifacts_max_bytes: 0,
            ..crate::config::Config::defaults()
        };
        let files = Files::new(&config, store.clone(), "boot");
        let (sink, receiving) = files.receive_artifacts(TraceId::new(), Arc::new(Policy::builtin().unwrap()));
        let _ = sink.tar.send(Bytes::from(tar_of(&[("out/empty", FILE, b"")]))).await;
        drop(sink);
        assert_eq!(receiving.finish().await, ArtifactReport::default());
        assert!(!dir.path().join("uploads/artifacts").exists());
        store.close();
    }

    #[test]
    fn the_tar_budget_covers_the_largest_archive_the_limits_allow() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(String, Vec<u8>)> = (0..3).map(|n| (format!("out/d{n}/f"), vec![7; 333])).collect();
        let mut entries: Vec<(&str, tar::EntryType, &[u8])> = vec![("out/", tar::EntryType::Directory, b"")];
        for (name, bytes) in &files {
            entries.push((name, FILE, bytes));
        }
        let tar = tar_of(&entries);
        let limits = limits(3, 999);
        assert!(tar.len() as u64 <= limits.tar_budget(), "{} > {}", tar.len(), limits.tar_budget());
        assert_eq!(extract_here(dir.path(), &tar, 3, 999).stored.len(), 3);
    }
}
