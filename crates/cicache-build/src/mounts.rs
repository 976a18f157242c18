//! The cache mounts a build moves (`RUN --mount=type=cache`), and how a move reads in the log.

use std::path::Path;

use cicache_docker::dance::DanceResult;
use cicache_docker::dockerfile::{CacheMount, Dockerfile};
use cicache_docker::report::human_bytes;

use crate::error::BuildError;

/// The cache mounts the dance works on: the Dockerfile's (one per cache), filtered by
/// `--mount-id`. An id the Dockerfile lacks is an error that names the ids it has.
pub fn select_mounts<'a>(
    df: &'a Dockerfile,
    ids: &[String],
    path: &Path,
) -> Result<Vec<&'a CacheMount>, BuildError> {
    let all = df.unique_cache_mounts();
    if ids.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for id in ids {
        let found: Vec<&CacheMount> = all.iter().copied().filter(|m| &m.id == id).collect();
        if found.is_empty() {
            let known: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
            return Err(BuildError::Usage(format!(
                "--mount-id {id}: {} has no cache mount with that id (it has: {})",
                path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        out.extend(found);
    }
    Ok(out)
}

/// One line per mount of an inject or extract (`verb`: injected, extracted), for the log.
pub fn describe_dance(r: &DanceResult, verb: &str) -> Vec<String> {
    let mut lines: Vec<String> = r
        .mounts
        .iter()
        .map(|m| match &m.skipped {
            Some(why) => format!("{verb} {}: skipped, {why}", m.id),
            None => {
                let target = if m.target == m.id {
                    String::new()
                } else {
                    format!(" ({})", m.target)
                };
                let mut s = format!(
                    "{verb} {}{target}: {} files, {}",
                    m.id,
                    m.files,
                    human_bytes(m.bytes)
                );
                if let Some(f) = m.mount_files {
                    s.push_str(&format!("; the mount now holds {f} files"));
                }
                if r.method == Some("changed") {
                    s.push_str(&format!(
                        " ({} new or changed, {} copied out of the builder{})",
                        m.copied_files.unwrap_or(0),
                        human_bytes(m.copied_bytes.unwrap_or(0)),
                        match m.removed_files {
                            Some(n) if n > 0 => format!(", {n} removed"),
                            _ => String::new(),
                        }
                    ));
                }
                s
            }
        })
        .collect();
    if r.merged {
        lines.push(
            "merged: the cache mounts were not filled by an inject, so the files of the cache \
             dir they lack were kept"
                .to_string(),
        );
    }
    if let Some(why) = &r.fallback {
        lines.push(format!(
            "the changed-only extract failed, so everything was copied out: {why}"
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use cicache_docker::dockerfile;

    #[test]
    fn mount_ids_select_and_unknown_ids_are_named() {
        let df = dockerfile::parse(
            "FROM x\nRUN --mount=type=cache,target=/root/.cache/pip \
             --mount=type=cache,id=npm,target=/root/.npm true\n",
        )
        .unwrap();
        let p = Path::new("Dockerfile");
        assert_eq!(select_mounts(&df, &[], p).unwrap().len(), 2);
        let one = select_mounts(&df, &["npm".to_string()], p).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].target, "/root/.npm");
        let e = select_mounts(&df, &["nope".to_string()], p).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("nope") && msg.contains("/root/.cache/pip, npm"),
            "{msg}"
        );
    }
}
