//! State and its lock: one writer at a time, on a lease the holder renews.

use std::path::{Path, PathBuf};
use std::time::Duration;

use miette::Result;

use crate::render::print_stderr;
use crate::state::{StateError, StateStore};

/// How long a lock lease lasts; the holder renews it at a third of that.
pub const LOCK_LEASE: Duration = Duration::from_secs(30);

pub fn open_state(path: &Path) -> Result<StateStore> {
    Ok(StateStore::open(path)?)
}

/// Holds the state lock for as long as it lives, renewing the lease in the background.
pub struct LockGuard {
    path: PathBuf,
    stop: Option<std::sync::mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl LockGuard {
    pub fn acquire(path: &Path, holder: &str) -> Result<Self> {
        let mut store = open_state(path)?;
        match store.acquire_lock(holder, LOCK_LEASE) {
            Ok(Some(previous)) => print_stderr(&format!(
                "note: took over the state lock left by {} (pid {} on {}), which is no longer running\n",
                previous.holder, previous.pid, previous.host
            )),
            Ok(None) => {}
            Err(StateError::Locked(info)) => {
                return Err(StateError::Locked(info).into());
            }
            Err(e) => return Err(e.into()),
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let renewer = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(LOCK_LEASE / 3)
            {
                let _ = store.renew_lock(LOCK_LEASE);
            }
        });
        Ok(LockGuard {
            path: path.to_owned(),
            stop: Some(stop),
            renewer: Some(renewer),
        })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        if let Ok(store) = StateStore::open(&self.path) {
            let _ = store.release_lock();
        }
    }
}
