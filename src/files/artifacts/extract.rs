//! Extraction of one run's artifacts: the tar read raw as it arrives, each entry's name
//! screened (see [`name`](super::name)), each regular file within the limits written to a new
//! file under the run's directory, hashed on the way.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use tracebox_model::{Artifact, TraceId};

use super::name::{Screened, artifact_path, numbered};
use super::{ArtifactLimits, ArtifactReport, artifact_url};
use crate::files::hex;
use crate::policy::Policy;

/// Where and within what one run's artifacts are stored.
pub(super) struct Store {
    pub dir: PathBuf,
    pub trace_id: TraceId,
    pub limits: ArtifactLimits,
    /// Bytes of artifacts of every run, shared by the server.
    pub usage: Arc<AtomicU64>,
    /// Redacts what the archive names, and what the tar reader says about it.
    pub policy: Arc<Policy>,
    /// The names stored that tracebox made by redacting, not the program.
    pub made: HashSet<String>,
}

impl Store {
    /// Store the regular files of the tar `reader`, within the limits, under their names with
    /// every secret redacted.
    pub fn extract(&mut self, reader: impl Read) -> ArtifactReport {
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
        &mut self,
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
    /// is left out). But two keys, or a key and a file of the program's, may redact to the same
    /// name: when tracebox made the name or the one it meets, the file takes the first free
    /// `-1`, `-2`… instead, whichever of the two the archive held first.
    fn create(&mut self, screened: &Screened, path: &Path) -> io::Result<(String, PathBuf, File)> {
        let path = self.dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let renumber = screened.is_redacted() || self.made.contains(&screened.name);
        let mut candidates = std::iter::once((screened.name.clone(), path)).chain(
            numbered(&screened.name)
                .map(|(name, alternative)| (name, self.dir.join(alternative)))
                .take_while(|_| renumber),
        );
        let created = candidates.find_map(|(name, path)| match create_new(&path) {
            Err(error) if error.kind() == ErrorKind::AlreadyExists && renumber => None,
            created => Some(created.map(|file| (name, path, file))),
        });
        let (name, path, file) = created.unwrap_or_else(|| {
            Err(io::Error::new(ErrorKind::AlreadyExists, "its name and every numbered alternative are taken"))
        })?;
        if screened.is_redacted() {
            self.made.insert(name.clone());
        }
        Ok((name, path, file))
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

/// The tar stream as a blocking reader over the channel the run sends it on.
pub(super) struct ChannelReader {
    pub bytes: mpsc::Receiver<Bytes>,
    pub current: Bytes,
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
pub(super) mod tests {
    use super::super::MAX_OMITTED_NAME_BYTES;
    use super::*;
    use tracebox_model::Redaction;

    /// A tar as GNU tar makes it of `/workspace/out`.
    pub fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
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
        Store {
            dir: dir.to_owned(),
            trace_id: TraceId::new(),
            limits,
            usage: Arc::clone(usage),
            policy,
            made: HashSet::new(),
        }
    }

    fn extract_here(dir: &Path, tar: &[u8], max_files: usize, max_bytes: u64) -> ArtifactReport {
        store_in(dir, limits(max_files, max_bytes), &Arc::default()).extract(tar)
    }

    pub const FILE: tar::EntryType = tar::EntryType::Regular;

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
        let stream = super::super::name::ARTIFACT_NAMES.to_owned();
        assert_eq!(report.redactions, [Redaction { rule: "aws_access_key_id".into(), stream, count: 3 }]);
        assert!(!format!("{report:?}").contains("IOSFODNN7EXAMPLE"), "{report:?}");
        assert!(!walk(dir.path()).contains("IOSFODNN7EXAMPLE"), "{}", walk(dir.path()));
    }

    #[test]
    fn a_name_tracebox_made_never_takes_a_later_file_of_the_programs_away() {
        let dir = tempfile::tempdir().unwrap();
        let own = "out/REDACTED-aws_access_key_id.txt";
        let tar = tar_of(&[("out/AKIAIOSFODNN7EXAMPLE.txt", FILE, b"key"), (own, FILE, b"own")]);
        let report = extract_here(dir.path(), &tar, 10, 100);
        let names: Vec<_> = report.stored.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, [own, "out/REDACTED-aws_access_key_id-1.txt"]);
        assert_eq!(std::fs::read(dir.path().join(own)).unwrap(), b"key");
        assert_eq!(std::fs::read(dir.path().join("out/REDACTED-aws_access_key_id-1.txt")).unwrap(), b"own");
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
