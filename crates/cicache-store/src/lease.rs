//! Leases: a save's marker that protects the objects it relies on from a prune's sweep
//! (invariant 5; see `maint.rs` for the protocol).
//!
//! A lease must not outlive its save by much, or a killed save blocks every sweep. So a save
//! rewrites its lease every [`heartbeat`] (default 60 s) while it runs, and a sweep judges a
//! lease abandoned when:
//! - it was written on this host by a process that is gone (pid, and the process's start time
//!   so that a reused pid does not count), or
//! - it carries a heartbeat and was not rewritten for ten heartbeats (by the store's clock), or
//! - it carries none (older versions) and is older than [`LEASE_TTL`].
//!
//! A save whose lease was judged abandoned (it stalled for ten heartbeats) finds its lease
//! gone before it publishes and publishes nothing.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::backend::{Backend, PutMode};
use crate::error::{Result, StoreError};
use crate::format::{self, Lease};
use crate::store::{LEASE_TTL, SWEEP_TTL, Store, now_rfc3339, random_id};

/// A lease not rewritten for this many heartbeats is abandoned.
const STALE_HEARTBEATS: u32 = 10;

/// How often a save rewrites its lease: `CICACHE_LEASE_HEARTBEAT_SECS`, default 60 s.
pub fn heartbeat() -> Duration {
    Duration::from_secs(
        std::env::var("CICACHE_LEASE_HEARTBEAT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(60),
    )
}

/// The start time of process `pid` (clock ticks since boot, `/proc/PID/stat` field 22): with
/// the pid, it names one process, never a later one that reuses the pid.
pub(crate) fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Holds a save's lease: rewrites it every heartbeat, deletes it when dropped.
pub(crate) struct LeaseGuard<'a> {
    store: &'a Store,
    name: String,
    /// When the lease was last written successfully.
    refreshed: Arc<Mutex<Instant>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseGuard<'_> {
    /// Checked before the ref is published: the lease is still fresh and still there (a
    /// sweep deletes abandoned leases before it sweeps).
    pub fn check(&self, scope: &str, key: &str) -> Result<()> {
        let beat = heartbeat();
        let last = self
            .refreshed
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX);
        let stale = beat * (STALE_HEARTBEATS - 2);
        let present = self.store.backend.head(&self.name)?.is_some();
        if last > stale || !present {
            return Err(StoreError::Other(format!(
                "the save of {scope}/{key} lost its lease (not renewed for {}s{}); a prune may have swept what it relies on, so nothing was published: save again",
                last.as_secs(),
                if present { "" } else { ", and it is gone" }
            )));
        }
        Ok(())
    }
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.store.backend.delete(&self.name);
    }
}

/// Rewrites the lease every `beat` until `stop` closes.
fn keep_alive(
    backend: Arc<dyn Backend>,
    name: String,
    data: Vec<u8>,
    beat: Duration,
    refreshed: Arc<Mutex<Instant>>,
    stop: mpsc::Receiver<()>,
) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(beat) {
        if backend.put_marker(&name, &data, PutMode::Overwrite).is_ok()
            && let Ok(mut t) = refreshed.lock()
        {
            *t = Instant::now();
        }
    }
}

impl Store {
    /// Takes a lease protecting the blobs of a save from a concurrent sweep, then waits for
    /// any sweep already running (see `prune`: each side writes its marker, then looks for the
    /// other's, so at least one of them sees the other).
    pub(crate) fn take_lease(&self, scope: &str, key: &str) -> Result<LeaseGuard<'_>> {
        let beat = heartbeat();
        let pid = std::process::id();
        let lease = Lease {
            scope: scope.to_string(),
            key: key.to_string(),
            host: self.host.clone(),
            pid,
            started: now_rfc3339(),
            pid_start: proc_start(pid),
            heartbeat_secs: Some(beat.as_secs()),
        };
        let name = format::lease_name(&random_id());
        let data = serde_json::to_vec(&lease).map_err(|e| StoreError::Other(e.to_string()))?;
        self.backend.put_marker(&name, &data, PutMode::CreateNew)?;
        let refreshed = Arc::new(Mutex::new(Instant::now()));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let (backend, name, refreshed) =
                (self.backend.clone(), name.clone(), refreshed.clone());
            std::thread::Builder::new()
                .name("cicache-lease".into())
                .spawn(move || keep_alive(backend, name, data, beat, refreshed, rx))
                .ok()
        };
        let guard = LeaseGuard {
            store: self,
            name,
            refreshed,
            stop: Some(tx),
            thread,
        };
        self.wait_for_sweeps()?;
        Ok(guard)
    }

    /// Waits while a fresh sweep lock exists, up to `CICACHE_SWEEP_WAIT_SECS` (default 60).
    fn wait_for_sweeps(&self) -> Result<()> {
        let wait_max = Duration::from_secs(
            std::env::var("CICACHE_SWEEP_WAIT_SECS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(60),
        );
        let start = Instant::now();
        loop {
            let now = SystemTime::now();
            let active = self
                .backend
                .list(&format!("{}/locks/sweep-", format::FORMAT_DIR))?
                .into_iter()
                .any(|o| now.duration_since(o.modified).unwrap_or_default() < SWEEP_TTL);
            if !active {
                return Ok(());
            }
            if start.elapsed() >= wait_max {
                return Err(StoreError::SweepInProgress {
                    location: self.location(),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Counts the leases of saves that may still run; deletes the abandoned ones.
    pub(crate) fn active_leases(&self) -> Result<usize> {
        let now = SystemTime::now();
        let mut active = 0;
        for o in self
            .backend
            .list(&format!("{}/leases/", format::FORMAT_DIR))?
        {
            let age = now.duration_since(o.modified).unwrap_or_default();
            let lease: Option<Lease> = self
                .read_small(&o.name, format::MAX_REF_SIZE)?
                .and_then(|b| serde_json::from_slice(&b).ok());
            if self.lease_abandoned(lease.as_ref(), age) {
                self.backend.delete(&o.name)?;
            } else {
                active += 1;
            }
        }
        Ok(active)
    }

    fn lease_abandoned(&self, lease: Option<&Lease>, age: Duration) -> bool {
        let Some(l) = lease else {
            return age >= LEASE_TTL;
        };
        if l.host == self.host && l.pid != std::process::id() {
            let gone = !crate::cleanup::pid_alive(l.pid)
                || l.pid_start.is_some_and(|s| proc_start(l.pid) != Some(s));
            if gone {
                return true;
            }
        }
        match l.heartbeat_secs {
            Some(h) if h > 0 => {
                age >= Duration::from_secs(h.saturating_mul(STALE_HEARTBEATS as u64))
            }
            _ => age >= LEASE_TTL,
        }
    }
}
