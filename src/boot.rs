//! Boots: every start of tracebox on a data directory (a server, or one `tracebox run`) holds a
//! lock file for as long as it lives, so that another start can tell which boots are alive and
//! clean up after the dead ones: their containers and their unfinished traces.

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// This start of tracebox; its lock is released when it is dropped (or the process dies).
#[derive(Debug)]
pub struct Boot {
    id: String,
    path: PathBuf,
    _lock: File,
}

impl Boot {
    /// Start a boot in `dir` (the data directory's `traces/`).
    pub fn start(dir: &Path) -> io::Result<Boot> {
        let boots = dir.join("boots");
        std::fs::create_dir_all(&boots)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let path = boots.join(format!("{id}.lock"));
        let lock = File::create(&path)?;
        lock.lock()?;
        Ok(Boot { id, path, _lock: lock })
    }

    /// The id every container and trace of this boot carries.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The boots in `dir` that are still alive. The lock files of dead ones are removed.
pub fn live_boots(dir: &Path) -> io::Result<Vec<String>> {
    let boots = dir.join("boots");
    let entries = match std::fs::read_dir(&boots) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut live = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".lock")) else {
            continue;
        };
        // A lock that can be taken belongs to a boot that is gone.
        match File::open(&path)?.try_lock() {
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(TryLockError::WouldBlock) => live.push(id.to_owned()),
            Err(TryLockError::Error(error)) => return Err(error),
        }
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_is_alive_while_it_lives_and_forgotten_after() {
        let dir = tempfile::tempdir().unwrap();
        let first = Boot::start(dir.path()).unwrap();
        let second = Boot::start(dir.path()).unwrap();
        let mut live = live_boots(dir.path()).unwrap();
        live.sort();
        let mut expected = vec![first.id().to_owned(), second.id().to_owned()];
        expected.sort();
        assert_eq!(live, expected);
        drop(first);
        assert_eq!(live_boots(dir.path()).unwrap(), [second.id().to_owned()]);
    }

    #[test]
    fn the_lock_of_a_boot_that_died_without_cleaning_up_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("boots")).unwrap();
        // A crashed process leaves its file behind but not its lock.
        std::fs::write(dir.path().join("boots/dead.lock"), "").unwrap();
        assert!(live_boots(dir.path()).unwrap().is_empty());
        assert!(!dir.path().join("boots/dead.lock").exists());
    }

    #[test]
    fn no_boots_directory_means_no_live_boots() {
        let dir = tempfile::tempdir().unwrap();
        assert!(live_boots(dir.path()).unwrap().is_empty());
    }
}
