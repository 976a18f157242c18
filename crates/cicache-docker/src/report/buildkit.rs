//! BuildKit plain progress (`docker build --progress=plain`, `docker buildx build
//! --progress=plain`).
//!
//! ```text
//! #8 [stage-0 4/6] RUN pip install -r requirements.txt     first line of a vertex: its name
//! #8 sha256:04d1...                                         (engine 20.10) the vertex digest
//! #8 0.728 Collecting six                                   output: seconds since start, text
//! #8 CACHED | #8 DONE 2.0s | #8 ERROR: ... | #8 CANCELED    the end
//! ------                                                    a failure summary block: skipped,
//!  > [3/4] RUN ...:                                         it repeats output already read
//! ------
//! ERROR: failed to solve: ...                               (buildx) the build's error
//! ```
//!
//! A log can hold several builds (`#1` starts again, or buildx's `#0 building with "default"
//! instance using docker driver` opens one): each is numbered in `Step::build`. The `#0` line
//! is no step. buildx prints some errors before any step (`ERROR: Cache export is not
//! supported for the docker driver.` and the lines that say what to do): they are the build's
//! error, with the lines that follow it.
//!
//! A step that printed `#N CACHED` came from the cache whatever follows: on the containerd
//! image store BuildKit pulls a cached step's layers at export and prints `#N DONE` for it
//! again.

use std::collections::HashSet;

use super::util::parse_duration;
use super::{Collector, StepStatus, lines};

/// `#12 text` -> (12, "text").
pub(crate) fn step_number(line: &str) -> Option<(u64, &str)> {
    let rest = line.strip_prefix('#')?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if end == 0 || end > 9 {
        return None;
    }
    let n: u64 = rest[..end].parse().ok()?;
    let text = &rest[end..];
    if text.is_empty() {
        return Some((n, ""));
    }
    let text = text.strip_prefix(' ')?;
    Some((n, text))
}

fn is_end(text: &str) -> bool {
    text == "CACHED"
        || text == "CANCELED"
        || text == "CANCELLED"
        || text == "DONE"
        || text.starts_with("DONE ")
        || text.starts_with("ERROR")
}

pub(crate) fn parse(text: &str, c: &mut Collector) {
    let mut build = 0usize;
    let mut seen: HashSet<u64> = HashSet::new();
    let mut ended: HashSet<u64> = HashSet::new();
    let mut in_block = false;
    // Lines right after a build error (`ERROR: ...` outside a step) that go on with it.
    let mut error_lines = 0usize;
    for line in lines(text) {
        let Some((n, text)) = step_number(&line) else {
            let t = line.trim();
            if t.len() >= 6 && t.bytes().all(|b| b == b'-') {
                in_block = !in_block;
                error_lines = 0;
                continue;
            }
            if in_block || t.is_empty() {
                error_lines = 0;
                continue;
            }
            if let Some(msg) = t
                .strip_prefix("ERROR: ")
                .or_else(|| t.strip_prefix("error: "))
            {
                c.build_error(msg);
                error_lines = ERROR_CONTINUATION;
            } else if t.starts_with("failed to solve") {
                c.build_error(t);
                error_lines = ERROR_CONTINUATION;
            } else if error_lines > 0 {
                // `Switch to a different driver, or turn on the containerd image store, and
                // try again.` / `Learn more at https://...`: what to do about the error.
                error_lines -= 1;
                c.build_error_line(t);
            } else {
                // Output around the build (a Jenkins log): pip run on the agent counts too.
                c.pip_line(None, t);
            }
            continue;
        };
        in_block = false;
        error_lines = 0;
        // buildx opens each build with `#0 building with "default" instance using docker
        // driver`: not a step, but a new build when steps came before it.
        if n == 0 && text.starts_with("building with ") {
            if !seen.is_empty() {
                build += 1;
                seen.clear();
                ended.clear();
            }
            c.note_build(build);
            continue;
        }
        // A new build: `#1` again after it ended.
        if n <= 1 && ended.contains(&n) && !is_end(text) {
            build += 1;
            seen.clear();
            ended.clear();
        }
        let key = format!("{build}#{n}");
        if seen.insert(n) {
            if is_end(text) {
                // An end without a header: the log was cut at the top. Keep what it says.
                let i = c.step(&key, build, n, &format!("#{n}"), &format!("#{n}"));
                end(c, i, text);
                ended.insert(n);
            } else {
                c.step(&key, build, n, &format!("#{n}"), text.trim());
            }
            continue;
        }
        let Some(i) = c.get(&key) else { continue };
        if is_end(text) {
            end(c, i, text);
            ended.insert(n);
            continue;
        }
        // Output lines start with the seconds since the step started: `#8 0.728 text`.
        if let Some((t, msg)) = text.split_once(' ')
            && is_seconds(t)
        {
            c.output(i, msg);
        } else if is_seconds(text) {
            c.output(i, "");
        }
        // Anything else is a progress line (`sha256:...`, `transferring context: 2B done`).
    }
    c.note_build(build);
}

/// How many lines after a build error outside a step are kept with it.
const ERROR_CONTINUATION: usize = 4;

fn is_seconds(t: &str) -> bool {
    !t.is_empty()
        && t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && t.parse::<f64>().is_ok()
}

fn end(c: &mut Collector, i: usize, text: &str) {
    let Some(step) = c.step_mut(i) else { return };
    if text == "CACHED" {
        step.status = StepStatus::Cached;
    } else if text == "CANCELED" || text == "CANCELLED" {
        step.status = StepStatus::Canceled;
    } else if let Some(rest) = text.strip_prefix("DONE") {
        // `CACHED` then `DONE`: the cached step's layers pulled at export (containerd store).
        if step.status != StepStatus::Error && step.status != StepStatus::Cached {
            step.status = StepStatus::Done;
        }
        step.seconds = parse_duration(rest).or(step.seconds);
    } else if let Some(rest) = text.strip_prefix("ERROR") {
        step.status = StepStatus::Error;
        let msg = rest.trim_start_matches(':').trim();
        // buildx: `#8 ERROR: process "..." did not complete...`; older: `#8 ERROR: executor...`
        if !msg.is_empty() {
            step.error = Some(msg.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(step_number("#8 DONE 1.2s"), Some((8, "DONE 1.2s")));
        assert_eq!(step_number("#12"), Some((12, "")));
        assert_eq!(step_number("#x"), None);
        assert_eq!(step_number("#8x"), None);
        assert_eq!(step_number("# comment"), None);
    }
}
