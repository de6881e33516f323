//! State and its lock: one writer at a time, on a lease the holder renews.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use miette::Result;

use crate::render::print_stderr;
use crate::state::{StateError, StateLocation, StateStore};

/// How long a lock lease lasts; the holder renews it at a third of that.
pub const LOCK_LEASE: Duration = Duration::from_secs(30);

pub fn open_state(location: &StateLocation) -> Result<StateStore> {
    Ok(StateStore::open(location)?)
}

/// Holds the state lock for as long as it lives, renewing the lease in the background. Its
/// fencing token fences the writes of the stores that work under it ([`LockGuard::token`]);
/// a renewal that finds the lock taken over marks it lost.
pub struct LockGuard {
    token: Option<i64>,
    lost: Arc<AtomicBool>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl LockGuard {
    /// The hold's fencing token.
    pub fn token(&self) -> Option<i64> {
        self.token
    }

    /// Whether a renewal found the lock held by another (this hold's writes are refused).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub fn acquire(location: &StateLocation, holder: &str) -> Result<Self> {
        Self::acquire_for(location, holder, lock_lease())
    }

    /// Takes the lock on a lease of `lease` (the daemon's runs: the leader's lease, so that a
    /// standby that takes over is not kept waiting by a dead leader's lock).
    pub fn acquire_for(location: &StateLocation, holder: &str, lease: Duration) -> Result<Self> {
        Self::acquire_waiting(location, holder, lease, Duration::ZERO)
    }

    /// As [`LockGuard::acquire_for`], waiting up to `patience` for a holder's lease to run
    /// out (a reconcile daemon that took over from a leader that died: the dead leader's lock
    /// is free within its lease).
    pub fn acquire_waiting(
        location: &StateLocation,
        holder: &str,
        lease: Duration,
        patience: Duration,
    ) -> Result<Self> {
        let mut store = open_state(location)?;
        let deadline = std::time::Instant::now() + patience;
        loop {
            match store.acquire_lock(holder, lease) {
                Ok(Some(previous)) => {
                    print_stderr(&format!(
                        "note: took over the state lock left by {} (pid {} on {}), which is no longer running\n",
                        previous.holder, previous.pid, previous.host
                    ));
                    break;
                }
                Ok(None) => break,
                Err(StateError::Locked(info)) => {
                    let until = std::time::UNIX_EPOCH
                        + Duration::from_secs(u64::try_from(info.lease_until + 1).unwrap_or(0));
                    let wait = until
                        .duration_since(std::time::SystemTime::now())
                        .unwrap_or(Duration::from_millis(200));
                    if std::time::Instant::now() + wait > deadline {
                        return Err(StateError::Locked(info).into());
                    }
                    std::thread::sleep(wait);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let token = store.token();
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let marker = Arc::clone(&lost);
        let renewer = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(lease / 3)
            {
                if let Err(e) = store.renew_lock(lease)
                    && e.is_fenced()
                {
                    print_stderr(&format!("error: {e}\n"));
                    marker.store(true, Ordering::SeqCst);
                    return;
                }
            }
            let _ = store.release_lock();
        });
        Ok(LockGuard {
            token,
            lost,
            stop: Some(stop),
            renewer: Some(renewer),
        })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // The renewer gives the lock up (when it is still this hold's) as it stops.
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
    }
}

/// The lock's lease: [`LOCK_LEASE`], or `NIMBUS_LOCK_LEASE_SECS` (for tests of failover and
/// fencing, which need a lease that runs out within a test).
pub fn lock_lease() -> Duration {
    std::env::var("NIMBUS_LOCK_LEASE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(LOCK_LEASE, Duration::from_secs)
}
