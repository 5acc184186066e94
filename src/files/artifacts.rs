//! Artifacts: the files a run leaves in `/workspace/out/`, stored per run under
//! `uploads/artifacts/<trace_id>/out/…`.
//!
//! The sandbox hands over a tar of `/workspace/out` once the program ended. It comes from inside
//! the sandbox, so nothing in it is trusted: only regular files are kept, each path component
//! passes [`FileName`], and the count and total size are bounded; whatever is left out is named
//! with the reason. Extraction streams from the run to disk (a blocking thread reads the tar as
//! it arrives), so a large artifact is never held in memory.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{FileError, FileName, Files, Located, hex};
use crate::trace::TraceId;

/// The directory of `uploads/` that holds the artifacts; no upload may take its name.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// The one directory of `/workspace` whose files come back.
const OUT: &str = "out";

/// Deepest path under `out/` kept, and longest path, in bytes.
const MAX_DEPTH: usize = 16;
const MAX_PATH_BYTES: usize = 1024;

/// Most omissions named one by one (the rest are only counted).
const MAX_NAMED_OMISSIONS: usize = 20;

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
    /// The first few files left out, with the reason.
    pub omitted: Vec<Omitted>,
    /// How many were left out in all.
    pub omitted_count: usize,
    /// Why the archive could not be read to its end, when it could not.
    pub error: Option<String>,
}

impl ArtifactReport {
    fn omit(&mut self, name: String, reason: String) {
        self.omitted_count += 1;
        if self.omitted.len() < MAX_NAMED_OMISSIONS {
            self.omitted.push(Omitted { name, reason });
        }
    }
}

/// Bounds on what one run may hand back.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactLimits {
    pub max_files: usize,
    pub max_bytes: u64,
}

/// The artifacts of one run being received: send the tar's bytes to `tar`, then await `report`.
pub struct Receiving {
    pub tar: mpsc::Sender<Bytes>,
    pub report: JoinHandle<ArtifactReport>,
}

impl Files {
    /// Start receiving the artifacts of run `trace_id`. Nothing is written (and no blocking
    /// thread taken) until the first byte arrives.
    pub fn receive_artifacts(&self, trace_id: TraceId) -> Receiving {
        let (tar, mut bytes) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let dir = self.artifacts_dir(trace_id);
        let limits = self.inner.artifact_limits;
        let report = tokio::spawn(async move {
            let Some(first) = bytes.recv().await else { return ArtifactReport::default() };
            let reader = ChannelReader { bytes, current: first };
            let extraction = tokio::task::spawn_blocking(move || extract(reader, &dir, trace_id, limits));
            extraction.await.unwrap_or_else(|error| ArtifactReport {
                error: Some(format!("storing the artifacts failed: {error}")),
                ..ArtifactReport::default()
            })
        });
        Receiving { tar, report }
    }

    /// Where artifact `name` (`out/…`) of run `trace_id` is, with its sha256 as the run's
    /// trace recorded it.
    pub async fn locate_artifact(&self, trace_id: TraceId, name: &str) -> Result<Located, FileError> {
        let missing = || FileError::NoSuchArtifact { trace_id, name: name.to_owned() };
        let path = artifact_path(name).map_err(|_| missing())?;
        let path = self.artifacts_dir(trace_id).join(path);
        let size = match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => return Err(missing()),
            Err(error) if error.kind() == ErrorKind::NotFound => return Err(missing()),
            Err(error) => return Err(FileError::Io { what: "read", path, source: error }),
        };
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

/// The URL the trace page shows artifact `name` with (reading a trace is not a download).
pub fn artifact_preview_url(trace_id: TraceId, name: &str) -> String {
    format!("/trace/{trace_id}/{ARTIFACTS_DIR}/{}", encoded(name))
}

fn encoded(name: &str) -> String {
    let parts: Vec<String> = name.split('/').map(|part| utf8_percent_encode(part, URL_SAFE).to_string()).collect();
    parts.join("/")
}

/// `name` as a path under the run's artifact directory, when it is one a run may return:
/// `out/` then one or more valid file names.
fn artifact_path(name: &str) -> Result<PathBuf, String> {
    let name = name.strip_suffix('/').unwrap_or(name);
    if name.len() > MAX_PATH_BYTES {
        return Err(format!("the path is over {MAX_PATH_BYTES} bytes"));
    }
    let mut parts = name.split('/');
    if parts.next() != Some(OUT) {
        return Err("not under out/".to_owned());
    }
    let mut path = PathBuf::from(OUT);
    for (depth, part) in parts.enumerate() {
        if depth >= MAX_DEPTH {
            return Err(format!("more than {MAX_DEPTH} directories deep"));
        }
        path.push(FileName::parse(part).map_err(|e| e.to_string())?.as_str());
    }
    if path.as_os_str() == OUT {
        return Err("not a file under out/".to_owned());
    }
    Ok(path)
}

/// Store the regular files of the tar `reader` under `dir`, within `limits`.
fn extract(reader: impl Read, dir: &Path, trace_id: TraceId, limits: ArtifactLimits) -> ArtifactReport {
    let mut report = ArtifactReport::default();
    let mut total: u64 = 0;
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(error) => {
            report.error = Some(format!("the artifacts could not be read: {error}"));
            return report;
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                report.error = Some(format!("the artifacts arrived cut short or malformed: {error}"));
                break;
            }
        };
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let path = match artifact_path(&name) {
            Ok(path) => path,
            Err(reason) => {
                report.omit(name, reason);
                continue;
            }
        };
        if !kind.is_file() {
            report.omit(name, "not a regular file (a link, FIFO or device); only files come back".to_owned());
            continue;
        }
        if report.stored.len() >= limits.max_files {
            let reason = format!("over the {} files a run may return (TRACEBOX_ARTIFACTS_MAX_FILES)", limits.max_files);
            report.omit(name, reason);
            continue;
        }
        let size = entry.size();
        if total.saturating_add(size) > limits.max_bytes {
            let reason =
                format!("over the {} bytes a run may return in all (TRACEBOX_ARTIFACTS_MAX_BYTES)", limits.max_bytes);
            report.omit(name, reason);
            continue;
        }
        match store(&mut entry, &dir.join(&path), size) {
            Ok(sha256) => {
                total += size;
                let url = artifact_url(trace_id, &name);
                report.stored.push(Artifact { name, size, sha256, url });
            }
            Err(error) => report.omit(name, format!("could not be stored: {error}")),
        }
    }
    report
}

/// Write one entry of `size` bytes to `path` (a new file), returning its sha256; nothing is
/// left at `path` when it fails.
fn store(entry: &mut impl Read, path: &Path, size: u64) -> std::io::Result<String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    let copied = copy_hashing(entry, &mut file, size);
    let result = copied.and_then(|sha256| file.sync_data().map(|()| sha256));
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
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

    fn extract_here(dir: &Path, tar: &[u8], max_files: usize, max_bytes: u64) -> ArtifactReport {
        extract(tar, dir, TraceId::new(), ArtifactLimits { max_files, max_bytes })
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
    fn paths_are_checked_the_same_way_for_downloads() {
        assert!(artifact_path("out/a/b.txt").is_ok());
        for bad in ["out", "out/", "x/a", "out/../a", "out//a", "/out/a", "out/a\nb"] {
            assert!(artifact_path(bad).is_err(), "{bad:?}");
        }
        assert!(artifact_path(&format!("out/{}", "d/".repeat(MAX_DEPTH + 1))).is_err());
    }
}
