//! Where sandboxes' `/workspace`s are kept when they are paused or snapshotted: gzip-compressed
//! tars under `TRACEBOX_DATA_DIR/snapshots/`, named by the sha256 of their bytes, so the same
//! workspace saved twice is kept once. The store records which snapshot holds which file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The files of kept snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    dir: PathBuf,
}

/// A workspace's tar, compressed and not yet kept.
pub struct Compressed {
    pub sha256: String,
    bytes: Vec<u8>,
}

impl Compressed {
    /// Its compressed size.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A snapshot's file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("snapshot file {path}: {source}")]
pub struct SnapshotFileError {
    path: PathBuf,
    source: std::io::Error,
}

impl SnapshotFiles {
    pub fn new(dir: PathBuf) -> SnapshotFiles {
        SnapshotFiles { dir }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.tar.gz"))
    }

    /// Compress and keep `tar`; its hash and its compressed size. Blocking: call it off the
    /// async runtime.
    pub fn keep(&self, tar: &[u8]) -> Result<(String, u64), SnapshotFileError> {
        let compressed = self.compress(tar)?;
        self.store(&compressed)?;
        Ok((compressed.sha256.clone(), compressed.len()))
    }

    /// `tar` compressed, in memory: what it would take, known before anything is written.
    /// Blocking.
    pub fn compress(&self, tar: &[u8]) -> Result<Compressed, SnapshotFileError> {
        let failed = |source| SnapshotFileError { path: self.dir.clone(), source };
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(tar).map_err(failed)?;
        let bytes = encoder.finish().map_err(failed)?;
        let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        Ok(Compressed { sha256, bytes })
    }

    /// Keep a compressed snapshot under its hash (once: the same bytes kept twice are one
    /// file). Blocking.
    pub fn store(&self, compressed: &Compressed) -> Result<(), SnapshotFileError> {
        let failed = |path: &Path| {
            let path = path.to_owned();
            move |source| SnapshotFileError { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(failed(&self.dir))?;
        let path = self.path(&compressed.sha256);
        if !path.exists() {
            // Written aside, then renamed: a crash never leaves half a snapshot under its name.
            let partial = self.dir.join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
            std::fs::write(&partial, &compressed.bytes).map_err(failed(&partial))?;
            std::fs::rename(&partial, &path).map_err(failed(&path))?;
        }
        Ok(())
    }

    /// The tar a kept snapshot holds. Blocking.
    pub fn open(&self, sha256: &str) -> Result<Vec<u8>, SnapshotFileError> {
        let path = self.path(sha256);
        let file = std::fs::File::open(&path).map_err(|source| SnapshotFileError { path: path.clone(), source })?;
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut tar)
            .map_err(|source| SnapshotFileError { path, source })?;
        Ok(tar)
    }

    /// Remove the files of snapshots nothing holds any more. Blocking.
    pub fn forget(&self, hashes: &[String]) {
        for sha256 in hashes {
            let path = self.path(sha256);
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), %error, "could not remove a snapshot file");
            }
        }
    }

    /// How many snapshot files there are (for tests and health).
    pub fn count(&self) -> usize {
        std::fs::read_dir(&self.dir).map(|dir| dir.filter_map(Result::ok).count()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_kept_once_by_its_hash_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::new(dir.path().join("snapshots"));
        let tar = vec![7u8; 100_000];
        let (first, bytes) = files.keep(&tar).unwrap();
        let (second, _) = files.keep(&tar).unwrap();
        assert_eq!(first, second);
        assert!(bytes < 10_000, "compressed: {bytes}");
        assert_eq!(files.count(), 1);
        assert_eq!(files.open(&first).unwrap(), tar);
        files.forget(&[first]);
        assert_eq!(files.count(), 0);
    }
}
