//! `cicache docker prune`: BuildKit builder cache housekeeping through
//! `docker builder prune`, with what it freed measured, and a dry run that lists what
//! would go.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{Docker, DockerError};

/// What to prune.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneOptions {
    /// Keep this much build cache (a docker size: `20GB`, `500MB`).
    pub keep_storage: Option<String>,
    /// Only records unused for this long.
    pub until: Option<Duration>,
    /// Only cache mounts (`RUN --mount=type=cache` contents).
    pub cache_mounts_only: bool,
    /// All unused records, not only dangling ones.
    pub all: bool,
    pub dry_run: bool,
}

/// One build cache record as `docker system df -v` lists it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CacheRecord {
    #[serde(rename = "ID")]
    pub id: String,
    pub cache_type: String,
    pub description: String,
    pub size: String,
    pub in_use: String,
    pub last_used_at: Option<String>,
}

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct PruneResult {
    pub dry_run: bool,
    /// The `docker builder prune` arguments (after the program name).
    pub command: Vec<String>,
    /// Build cache size before and after (`docker system df`).
    pub before_bytes: u64,
    pub after_bytes: u64,
    /// What docker says it reclaimed (`Total reclaimed space:`), or, dry, the sum of the
    /// records that would go.
    pub reclaimed_bytes: u64,
    /// Records removed (or that would be), when docker lists them.
    pub records: usize,
    /// Cache-mount records before, and their size.
    pub cache_mounts_before: usize,
    pub cache_mounts_before_bytes: u64,
}

/// Parses docker's sizes: `1.878kB`, `189.7MB`, `0B`, `2GiB`, `20GB` (SI and IEC units, as
/// [`cicache_units::parse_size`] reads them everywhere in cicache).
pub fn parse_size(s: &str) -> Option<u64> {
    cicache_units::parse_size(s).ok()
}

/// The `docker builder prune` arguments for `opts`.
pub fn prune_command(opts: &PruneOptions) -> Vec<String> {
    let mut a: Vec<String> = vec!["builder".into(), "prune".into(), "--force".into()];
    if opts.all {
        a.push("--all".into());
    }
    if let Some(k) = &opts.keep_storage {
        a.push("--keep-storage".into());
        a.push(k.clone());
    }
    if let Some(u) = opts.until {
        a.push("--filter".into());
        a.push(format!("until={}s", u.as_secs()));
    }
    if opts.cache_mounts_only {
        a.push("--filter".into());
        a.push("type=exec.cachemount".into());
    }
    a
}

/// The build cache records of the daemon.
pub fn list_records(docker: &Docker) -> Result<Vec<CacheRecord>, DockerError> {
    let out = docker.output(&[
        "system".into(),
        "df".into(),
        "-v".into(),
        "--format".into(),
        "{{json .BuildCache}}".into(),
    ])?;
    let t = out.trim();
    if t.is_empty() || t == "null" {
        return Ok(Vec::new());
    }
    serde_json::from_str(t).map_err(|e| {
        DockerError::Invalid(format!(
            "cannot read `docker system df -v` build cache records: {e}"
        ))
    })
}

/// Total build cache size (`docker system df`, type `Build Cache`).
pub fn cache_size(docker: &Docker) -> Result<u64, DockerError> {
    let out = docker.output(&[
        "system".into(),
        "df".into(),
        "--format".into(),
        "{{json .}}".into(),
    ])?;
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("Type").and_then(|t| t.as_str()) == Some("Build Cache") {
            return Ok(v
                .get("Size")
                .and_then(|s| s.as_str())
                .and_then(parse_size)
                .unwrap_or(0));
        }
    }
    Ok(0)
}

/// Prunes (or, with `dry_run`, lists what would be pruned: records not in use that match the
/// filters, oldest first, until `keep_storage` is reached).
pub fn prune(docker: &Docker, opts: &PruneOptions) -> Result<PruneResult, DockerError> {
    if let Some(k) = &opts.keep_storage
        && parse_size(k).is_none()
    {
        return Err(DockerError::Invalid(format!(
            "--keep-storage {k:?} is not a size: use e.g. 20GB, 500MB"
        )));
    }
    let command = prune_command(opts);
    let before = cache_size(docker)?;
    let records = list_records(docker)?;
    let mounts: Vec<&CacheRecord> = records
        .iter()
        .filter(|r| r.cache_type == "exec.cachemount")
        .collect();
    let mounts_bytes = mounts.iter().filter_map(|r| parse_size(&r.size)).sum();
    let mut result = PruneResult {
        dry_run: opts.dry_run,
        command: command.clone(),
        before_bytes: before,
        after_bytes: before,
        reclaimed_bytes: 0,
        records: 0,
        cache_mounts_before: mounts.len(),
        cache_mounts_before_bytes: mounts_bytes,
    };
    if opts.dry_run {
        let (n, bytes) = would_remove(&records, opts);
        result.records = n;
        result.reclaimed_bytes = bytes;
        result.after_bytes = before.saturating_sub(bytes);
        return Ok(result);
    }
    let out = docker.run_checked(&command, None, None, None)?;
    result.after_bytes = cache_size(docker)?;
    let said = out
        .lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("Total reclaimed space:"))
        .and_then(parse_size);
    result.reclaimed_bytes = said.unwrap_or(before.saturating_sub(result.after_bytes));
    result.records = out
        .lines
        .iter()
        .filter(|l| {
            let t = l.trim();
            t.len() >= 20 && t.chars().all(|c| c.is_ascii_alphanumeric())
        })
        .count();
    Ok(result)
}

fn would_remove(records: &[CacheRecord], opts: &PruneOptions) -> (usize, u64) {
    let now = std::time::SystemTime::now();
    let mut candidates: Vec<(&CacheRecord, u64, Option<i64>)> = records
        .iter()
        .filter(|r| r.in_use != "true")
        .filter(|r| !opts.cache_mounts_only || r.cache_type == "exec.cachemount")
        .map(|r| {
            (
                r,
                parse_size(&r.size).unwrap_or(0),
                r.last_used_at.as_deref().and_then(parse_docker_time),
            )
        })
        .filter(|(_, _, t)| match (opts.until, t) {
            (Some(u), Some(t)) => {
                let age = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0)
                    - t;
                age >= u.as_secs() as i64
            }
            _ => true,
        })
        .collect();
    candidates.sort_by_key(|(_, _, t)| t.unwrap_or(0));
    let total: u64 = records.iter().filter_map(|r| parse_size(&r.size)).sum();
    let keep = opts.keep_storage.as_deref().and_then(parse_size);
    let mut remaining = total;
    let mut n = 0;
    let mut bytes = 0;
    for (_, size, _) in candidates {
        if keep.is_some_and(|k| remaining <= k) {
            break;
        }
        remaining = remaining.saturating_sub(size);
        bytes += size;
        n += 1;
    }
    (n, bytes)
}

/// `2026-11-25 08:34:38.330570263 +0000 UTC` to Unix seconds (UTC offsets only).
fn parse_docker_time(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let date = parts.next()?;
    let time = parts.next()?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let se: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1.878kB"), Some(1878));
        assert_eq!(parse_size("189.7MB"), Some(189_700_000));
        assert_eq!(parse_size("0B"), Some(0));
        assert_eq!(parse_size("20GB"), Some(20_000_000_000));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn command_lines() {
        let o = PruneOptions {
            keep_storage: Some("20GB".into()),
            until: Some(Duration::from_secs(72 * 3600)),
            cache_mounts_only: true,
            all: true,
            dry_run: false,
        };
        assert_eq!(
            prune_command(&o).join(" "),
            "builder prune --force --all --keep-storage 20GB --filter until=259200s --filter type=exec.cachemount"
        );
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_docker_time("1970-01-02 00:00:01.5 +0000 UTC"),
            Some(86401)
        );
        assert_eq!(
            parse_docker_time("2026-11-25 08:34:38.33 +0000 UTC"),
            Some(1795595678)
        );
    }

    #[test]
    fn dry_run_respects_filters_and_keep() {
        let rec = |id: &str, t: &str, size: &str, used: &str| CacheRecord {
            id: id.into(),
            cache_type: t.into(),
            description: String::new(),
            size: size.into(),
            in_use: "false".into(),
            last_used_at: Some(used.into()),
        };
        let rs = vec![
            rec(
                "a",
                "exec.cachemount",
                "10MB",
                "2020-01-01 00:00:00 +0000 UTC",
            ),
            rec("b", "regular", "5MB", "2020-01-02 00:00:00 +0000 UTC"),
            rec(
                "c",
                "exec.cachemount",
                "1MB",
                "2099-01-01 00:00:00 +0000 UTC",
            ),
        ];
        let mut o = PruneOptions {
            cache_mounts_only: true,
            ..Default::default()
        };
        assert_eq!(would_remove(&rs, &o), (2, 11_000_000));
        o.until = Some(Duration::from_secs(3600));
        assert_eq!(would_remove(&rs, &o), (1, 10_000_000));
        o = PruneOptions {
            keep_storage: Some("7MB".into()),
            ..Default::default()
        };
        assert_eq!(would_remove(&rs, &o), (1, 10_000_000));
    }
}
