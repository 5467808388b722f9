//! The lock of a state file: one process at a time may write it. An OS lock (`flock`) on
//! `<state>.lock`, which the kernel releases when the process dies, so the lock of a killed
//! run is taken over without anyone deleting anything.

use crate::error::{Error, Result, StateProblem};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file beside a state file.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

pub(crate) fn take_lock(path: &Path) -> Result<File> {
    let lp = lock_path(path);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lp)
        .map_err(|e| Error::State {
            path: lp.display().to_string(),
            problem: StateProblem::OpenLock(e),
        })?;
    match f.try_lock() {
        Ok(()) => {
            let _ = f.set_len(0);
            let _ = writeln!(f, "{}", std::process::id());
            let _ = f.flush();
            Ok(f)
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.display().to_string(),
            pid: lock_holder(path),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::State {
            path: lp.display().to_string(),
            problem: StateProblem::Lock(e),
        }),
    }
}

/// The pid written in a state file's lock file, if a live process holds the lock.
pub fn lock_holder(path: &Path) -> Option<u32> {
    std::fs::read_to_string(lock_path(path))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether a live process holds the lock of a state file.
pub fn is_locked(path: &Path) -> bool {
    let Ok(f) = File::open(lock_path(path)) else {
        return false;
    };
    match f.try_lock_shared() {
        Ok(()) => {
            let _ = f.unlock();
            false
        }
        Err(_) => true,
    }
}
