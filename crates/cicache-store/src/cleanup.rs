//! Leftovers of killed processes: the temp dirs and files a restore keeps beside its target.
//!
//! A restore writes `.cicache-staging-<host>-<pid>-*` (the new tree) and
//! `.cicache-manifest-<host>-<pid>-*` (the manifest object) beside the target, and while
//! swapping on a filesystem without `RENAME_EXCHANGE`, `.cicache-old-<host>-<pid>-*`. They are
//! removed when the restore ends, however it ends, except when the process is killed:
//!
//! - [`install_signal_handlers`] (the binary calls it first thing) makes SIGTERM, SIGINT and
//!   SIGHUP (what a Jenkins abort and Ctrl-C send) remove every path [`register`]ed and still
//!   live, then end the process by the same signal.
//! - [`clear_stale`] (every restore calls it on its target's parent) removes those a killed
//!   process left anyway (kill -9, a power loss): the ones of this host whose process is gone,
//!   and any older than a day. `<host>` is 8 hex digits of a hash of the host name, so an
//!   agent never judges another host's process ids.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

/// Prefix of a restore's staging dir.
pub const STAGING_PREFIX: &str = ".cicache-staging-";
/// Prefix of a restore's temp copy of the manifest object.
pub const MANIFEST_PREFIX: &str = ".cicache-manifest-";
/// Prefix of the old tree while it is swapped out (no `RENAME_EXCHANGE`).
pub const OLD_PREFIX: &str = ".cicache-old-";

/// Leftovers of other hosts (or of names without a host and pid) older than this are stale.
const STALE_AGE: Duration = Duration::from_secs(24 * 3600);
/// Leftovers named as older cicache versions named them (no host, no pid): stale after this.
const STALE_AGE_UNNAMED: Duration = Duration::from_secs(3600);

static LIVE: Mutex<Vec<(u64, PathBuf)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

/// 8 hex digits naming this host in temp names.
pub fn host_tag() -> String {
    blake3::hash(crate::store::hostname().as_bytes()).to_hex()[..8].to_string()
}

/// `<kind><host>-<pid>-`: the prefix of a temp name that [`clear_stale`] can judge.
pub fn temp_prefix(kind: &str) -> String {
    format!("{kind}{}-{}-", host_tag(), std::process::id())
}

/// A path removed on SIGTERM/SIGINT/SIGHUP while this guard lives.
#[derive(Debug)]
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut v) = LIVE.lock() {
            v.retain(|(id, _)| *id != self.0);
        }
    }
}

/// Registers `path` (a temp dir or file) for removal if the process is ended by a signal.
pub fn register(path: &Path) -> Registered {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut v) = LIVE.lock() {
        v.push((id, path.to_path_buf()));
    }
    Registered(id)
}

/// Removes every registered path now; returns how many were removed. The signal handler's
/// work, callable on its own (tests, a binary's own shutdown path).
pub fn remove_registered() -> usize {
    let paths: Vec<PathBuf> = match LIVE.lock() {
        Ok(v) => v.iter().map(|(_, p)| p.clone()).collect(),
        Err(_) => return 0,
    };
    paths.iter().filter(|p| remove_any(p)).count()
}

/// Removes a file or a whole directory; a writer still adding files to it (another thread
/// of this process) can make one pass fail, so it tries a few times.
fn remove_any(p: &Path) -> bool {
    for _ in 0..5 {
        let res = match std::fs::symlink_metadata(p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
            Err(_) => return false,
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
            Ok(_) => std::fs::remove_file(p),
        };
        match res {
            Ok(()) => return true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; fd is the pipe's write end, b one byte.
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
}

/// Installs handlers for SIGTERM, SIGINT and SIGHUP that remove the [`register`]ed paths and
/// then end the process by the same signal (so its exit status still says which). The
/// handler only writes to a pipe; a thread does the removal. Call once, early; a second call
/// does nothing.
pub fn install_signal_handlers() -> io::Result<()> {
    if PIPE_WRITE.load(Ordering::Relaxed) >= 0 {
        return Ok(());
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    PIPE_WRITE.store(write_fd, Ordering::Relaxed);
    std::thread::Builder::new()
        .name("cicache-signals".into())
        .spawn(move || {
            let mut b = 0u8;
            // SAFETY: read_fd is the pipe's read end, owned by this thread; b one byte.
            while unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) } != 1 {}
            remove_registered();
            let sig = b as libc::c_int;
            // SAFETY: restoring the default action and raising the signal again ends the
            // process as the signal would have; _exit is the fallback if it is blocked.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
                libc::_exit(128 + sig);
            }
        })?;
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: on_signal is async-signal-safe (one write(2)); the sigaction is zeroed and
        // then filled in.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// True when process `pid` exists on this host.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether a leftover named `rest` (the part after its kind prefix), `age` old, is stale.
fn is_stale(rest: &str, age: Duration, host: &str) -> bool {
    let mut parts = rest.splitn(3, '-');
    let (h, pid) = (
        parts.next(),
        parts.next().and_then(|p| p.parse::<u32>().ok()),
    );
    match (h, pid, parts.next()) {
        (Some(h), Some(pid), Some(_)) if h.len() == 8 => {
            if h == host {
                pid != std::process::id() && !pid_alive(pid) || age > STALE_AGE
            } else {
                age > STALE_AGE
            }
        }
        _ => age > STALE_AGE_UNNAMED,
    }
}

/// Removes the staging dirs and temp files that killed restores left in `dir` (the parent
/// of a restore's target); returns the paths removed.
pub fn clear_stale(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let host = host_tag();
    let mut removed = Vec::new();
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = [STAGING_PREFIX, MANIFEST_PREFIX, OLD_PREFIX]
            .iter()
            .find_map(|p| name.strip_prefix(p))
        else {
            continue;
        };
        let age = ent
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .unwrap_or_default();
        if is_stale(rest, age, &host) && remove_any(&ent.path()) {
            removed.push(ent.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_by_host_pid_and_age() {
        let host = host_tag();
        let me = std::process::id();
        let fresh = Duration::from_secs(5);
        let old = STALE_AGE + Duration::from_secs(1);
        // This process: live.
        assert!(!is_stale(&format!("{host}-{me}-abc"), fresh, &host));
        // A process that cannot exist (pid_max is at most 2^22).
        assert!(is_stale(&format!("{host}-99999999-abc"), fresh, &host));
        // Another host's: judged by age only.
        assert!(!is_stale("0123abcd-99999999-abc", fresh, &host) || host == "0123abcd");
        assert!(is_stale("0123abcd-1-abc", old, &host));
        // Names of older versions: an hour.
        assert!(!is_stale("Xy12Ab", fresh, &host));
        assert!(is_stale("Xy12Ab", STALE_AGE_UNNAMED + fresh, &host));
    }

    #[test]
    fn registered_paths_are_removed_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir_all(a.join("x/y")).unwrap();
        std::fs::write(a.join("x/y/f"), "1").unwrap();
        let b = d.path().join("b");
        std::fs::write(&b, "1").unwrap();
        let ga = register(&a);
        let gb = register(&b);
        drop(gb);
        assert!(remove_registered() >= 1);
        assert!(!a.exists());
        assert!(b.exists(), "a dropped registration is not removed");
        drop(ga);
    }
}
