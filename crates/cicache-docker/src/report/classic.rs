//! The classic builder (`DOCKER_BUILDKIT=0 docker build`).
//!
//! ```text
//! Step 4/6 : RUN echo "preparing"        a step starts
//!  ---> Using cache                      cached
//!  ---> Running in 1e9ea5d71838          it runs; its output follows, unprefixed
//! preparing
//! Removing intermediate container 1e9ea5d71838
//!  ---> a6f728eab211                     the step's image: done
//! The command '/bin/sh -c ...' returned a non-zero code: 1     the failure
//! ```
//!
//! The classic builder prints no times.

use super::{Collector, StepStatus, instruction_kind, lines};

/// `Step 2/6 : RUN x` -> (2, 6, "RUN x").
pub(crate) fn step_header(line: &str) -> Option<(u64, u64, &str)> {
    let rest = line.strip_prefix("Step ")?;
    let (pos, instr) = rest.split_once(" : ")?;
    let (n, m) = pos.split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?, instr))
}

pub(crate) fn parse(text: &str, c: &mut Collector) {
    let mut build = 0usize;
    let mut last_n = 0u64;
    let mut current: Option<usize> = None;
    let mut stage: Option<String> = None;
    let mut stage_count = 0usize;
    for line in lines(text) {
        if let Some((n, m, instr)) = step_header(&line) {
            if n <= last_n && current.is_some() {
                build += 1;
                stage_count = 0;
            }
            last_n = n;
            if instruction_kind(instr) == super::StepKind::From {
                // `FROM image AS name`: the stage's name, else its index like BuildKit's.
                let words: Vec<&str> = instr.split_whitespace().collect();
                stage = match words.as_slice() {
                    [_, _, as_, name, ..] if as_.eq_ignore_ascii_case("as") => {
                        Some((*name).to_string())
                    }
                    _ => Some(format!("stage-{stage_count}")),
                };
                stage_count += 1;
            }
            let key = format!("{build}:{n}");
            let i = c.step(&key, build, n, &format!("Step {n}/{m}"), line.trim());
            if let Some(s) = c.step_mut(i) {
                s.position = Some(format!("{n}/{m}"));
                s.instruction = Some(instr.trim().to_string());
                s.kind = instruction_kind(instr);
                s.stage = stage.clone();
            }
            current = Some(i);
            continue;
        }
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("---> ") {
            let Some(i) = current else { continue };
            let Some(s) = c.step_mut(i) else { continue };
            let image_id = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit());
            if rest == "Using cache" {
                s.status = StepStatus::Cached;
            } else if rest.starts_with("Running in ")
                || (image_id && s.status == StepStatus::Incomplete)
            {
                s.status = StepStatus::Done;
            }
            continue;
        }
        if t.starts_with("Removing intermediate container")
            || t.starts_with("Sending build context to Docker daemon")
            || t.starts_with("Successfully built ")
            || t.starts_with("Successfully tagged ")
        {
            continue;
        }
        if t.contains("returned a non-zero code:")
            || t.starts_with("COPY failed:")
            || t.starts_with("ADD failed:")
            || t.starts_with("Error response from daemon:")
        {
            match current.and_then(|i| c.step_mut(i)) {
                Some(s) => {
                    s.status = StepStatus::Error;
                    s.error = Some(t.to_string());
                }
                None => c.build_error(t),
            }
            continue;
        }
        match current {
            Some(i) => c.output(i, &line),
            None => c.pip_line(None, &line),
        }
    }
    c.note_build(build);
}
