//! The quota on uploaded files: bytes of every file in `uploads/` (artifacts aside, they have
//! their own total), counted at start and kept as files are received, stored and deleted.
//!
//! Bytes are reserved as they arrive, before they are written, so uploads running at once can
//! never pass the quota together; a staged file that is not kept gives its bytes back.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ARTIFACTS_DIR, PARTIAL_PREFIX};

/// The bytes uploads may hold, and those they hold now.
#[derive(Debug)]
pub(super) struct Quota {
    limit: u64,
    used: AtomicU64,
}

/// Bytes that would take the uploads past the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OverQuota {
    pub limit: u64,
    /// Bytes held when the reservation was refused (files stored and being received).
    pub used: u64,
}

impl Quota {
    pub(super) fn new(limit: u64) -> Quota {
        Quota { limit, used: AtomicU64::new(0) }
    }

    /// Take `bytes` more, or none when they would pass the quota (reaching it is fine).
    pub(super) fn reserve(&self, bytes: u64) -> Result<(), OverQuota> {
        self.reserve_within(bytes, self.limit)
    }

    /// Take `bytes` more, or none when they would pass `limit` (a tenant's quota is its key's,
    /// which may differ from one key of the tenant to the next).
    pub(super) fn reserve_within(&self, bytes: u64, limit: u64) -> Result<(), OverQuota> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .map(|_| ())
            .map_err(|used| OverQuota { limit, used })
    }

    /// Give back `bytes` (a file deleted or replaced, a staged file not kept).
    pub(super) fn release(&self, bytes: u64) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(bytes)));
    }

    /// Start again from what `dir` holds (at start, once partial files are gone).
    pub(super) fn count(&self, dir: &Path) -> std::io::Result<()> {
        self.used.store(stored_bytes(dir)?, Ordering::Release);
        Ok(())
    }

    pub(super) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// Bytes of the regular files directly in `dir`: uploads, whatever their name (a file put there
/// by hand counts too), but not the artifacts directory nor a partial upload.
fn stored_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ARTIFACTS_DIR || name == super::TENANTS_DIR || name.to_string_lossy().starts_with(PARTIAL_PREFIX) {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_reach_the_quota_and_never_pass_it() {
        let quota = Quota::new(10);
        quota.reserve(6).unwrap();
        assert_eq!(quota.reserve(5), Err(OverQuota { limit: 10, used: 6 }));
        quota.reserve(4).unwrap();
        assert_eq!(quota.used(), 10, "exactly at the quota");
        assert!(quota.reserve(1).is_err(), "one byte over");
        quota.release(3);
        quota.reserve(3).unwrap();
        quota.release(100);
        assert_eq!(quota.used(), 0, "never below nothing");
        assert!(Quota::new(u64::MAX).reserve(u64::MAX).is_ok());
    }

    #[test]
    fn the_count_takes_uploads_and_leaves_out_artifacts_and_partials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), b"123").unwrap();
        std::fs::write(dir.path().join("by-hand.bin"), b"12").unwrap();
        std::fs::write(dir.path().join(".partial-x"), b"1234567").unwrap();
        std::fs::create_dir_all(dir.path().join(ARTIFACTS_DIR).join("run")).unwrap();
        std::fs::write(dir.path().join(ARTIFACTS_DIR).join("run/out"), b"1234567").unwrap();
        let quota = Quota::new(100);
        quota.count(dir.path()).unwrap();
        assert_eq!(quota.used(), 5);
    }
}
