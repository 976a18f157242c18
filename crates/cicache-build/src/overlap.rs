//! When the extract may start: as soon as BuildKit begins the export, not when the build
//! command returns.
//!
//! BuildKit exports (compresses the layers, pushes them, writes the cache) only after every
//! step of the build has run, so from its first `exporting ...` line the cache mounts hold
//! all the build will write to them. With `docker buildx build --push` the export and the push
//! are most of a cold build's tail (32 s of gzip for the layered bench app on Docker 26's
//! containerd store), and the extract and save after it cost 3 s more; started at the
//! export they run beside it (the daemon's CPU is gzip's single thread, the copy is disk).
//!
//! [`StepsDone`] watches the build's lines and hands the lines seen so far to the waiting
//! extract (which reads from them whether any cache-mount step ran). A build whose log never
//! shows an export (it failed in a step, or a builder that prints no such line) releases the
//! extract when it returns, as before: [`StepsDone::finish`].

use std::sync::{Condvar, Mutex};

/// Whether a line of BuildKit's plain progress starts the export: `#13 exporting to image`,
/// `#13 exporting layers`, `#14 exporting cache to registry` (the first of them comes after
/// the last step).
pub(crate) fn starts_export(line: &str) -> bool {
    let rest = match line.strip_prefix('#') {
        Some(r) => {
            let Some((n, rest)) = r.split_once(' ') else {
                return false;
            };
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            rest
        }
        None => return false,
    };
    rest.starts_with("exporting to ")
        || rest.starts_with("exporting layers")
        || rest.starts_with("exporting cache")
}

#[derive(Debug)]
enum State {
    /// The build runs; its lines so far.
    Building(Vec<String>),
    /// The extract may go, with the build's lines up to then; `early` when the export began
    /// before the build returned.
    Go { lines: Vec<String>, early: bool },
    /// The build failed before its export: the extract does not run here.
    Cancelled,
    /// The waiting extract took the lines.
    Taken { early: bool },
}

/// The build's progress as the extract waits for it (module doc).
#[derive(Debug)]
pub(crate) struct StepsDone {
    state: Mutex<State>,
    changed: Condvar,
}

impl Default for StepsDone {
    fn default() -> Self {
        StepsDone {
            state: Mutex::new(State::Building(Vec::new())),
            changed: Condvar::new(),
        }
    }
}

impl StepsDone {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One line of the build's output.
    pub(crate) fn observe(&self, line: &str) {
        let mut st = self.lock();
        if let State::Building(lines) = &mut *st {
            lines.push(line.to_string());
            if starts_export(line) {
                let lines = std::mem::take(lines);
                *st = State::Go { lines, early: true };
                self.changed.notify_all();
            }
        }
    }

    /// The build returned: a successful one releases the extract if its export did not
    /// already, a failed one cancels it if it did not start. Returns whether the extract was
    /// released before (by the export), so it runs or ran with this build's steps done.
    pub(crate) fn finish(&self, succeeded: bool) -> bool {
        let mut st = self.lock();
        let early = match &mut *st {
            State::Building(lines) => {
                let lines = std::mem::take(lines);
                *st = if succeeded {
                    State::Go {
                        lines,
                        early: false,
                    }
                } else {
                    State::Cancelled
                };
                false
            }
            State::Go { early, .. } | State::Taken { early } => *early,
            State::Cancelled => false,
        };
        self.changed.notify_all();
        early
    }

    /// Blocks until the extract may go (the build's lines so far, and whether the export
    /// released it before the build returned) or will not (`None`).
    pub(crate) fn wait(&self) -> Option<(Vec<String>, bool)> {
        let mut st = self.lock();
        loop {
            match &mut *st {
                State::Building(_) => {
                    st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                State::Go { lines, early } => {
                    let lines = std::mem::take(lines);
                    let early = *early;
                    *st = State::Taken { early };
                    return Some((lines, early));
                }
                State::Cancelled | State::Taken { .. } => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_starts_at_its_first_line() {
        for l in [
            "#13 exporting to image",
            "#13 exporting layers",
            "#13 exporting layers 1.4s done",
            "#14 exporting cache to registry",
            "#9 exporting to docker image format",
            "#12 exporting to oci image format",
        ] {
            assert!(starts_export(l), "{l}");
        }
        for l in [
            "#11 [stage-0 6/7] RUN pip install -r requirements.txt",
            "#11 0.512 exporting to image",
            "exporting to image",
            "#x exporting to image",
            "# exporting to image",
            "#13 DONE 1.9s",
            "#15 pushing 127.0.0.1:5000/app:x with docker",
            "",
        ] {
            assert!(!starts_export(l), "{l}");
        }
    }

    #[test]
    fn the_export_releases_the_extract_with_the_lines_so_far() {
        let d = StepsDone::default();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| d.wait());
            d.observe("#9 [stage-0 4/7] RUN --mount=type=cache,target=/c pip install x");
            d.observe("#9 DONE 7.2s");
            d.observe("#13 exporting to image");
            d.observe("#13 exporting layers 1.4s done");
            let (lines, early) = waiter.join().expect("waiter").expect("released");
            assert!(early);
            assert_eq!(lines.len(), 3);
            assert_eq!(lines[2], "#13 exporting to image");
        });
        // The build then fails in its push: the extract ran with every step done.
        assert!(d.finish(false));
        assert_eq!(d.wait(), None);
    }

    #[test]
    fn a_build_without_an_export_line_releases_it_when_it_returns() {
        let d = StepsDone::default();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| d.wait());
            d.observe("Step 1/3 : FROM busybox");
            assert!(!d.finish(true));
            assert_eq!(
                waiter.join().expect("waiter"),
                Some((vec!["Step 1/3 : FROM busybox".to_string()], false))
            );
        });
    }

    #[test]
    fn a_build_that_fails_before_its_export_cancels_it() {
        let d = StepsDone::default();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| d.wait());
            d.observe("#9 ERROR: process did not complete successfully");
            assert!(!d.finish(false));
            assert_eq!(waiter.join().expect("waiter"), None);
        });
        // Lines after the end change nothing.
        d.observe("#13 exporting to image");
        assert_eq!(d.wait(), None);
    }
}
