//! What both APIs report about a repository, in one shape.

use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::tags::{self, TagClass};

/// One manifest in a repository and the tags pointing at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRecord {
    /// `sha256:...`
    pub digest: String,
    /// Tags pointing at this manifest, sorted; empty for an untagged manifest.
    pub tags: Vec<String>,
    /// Bytes of the image (config and layers; for an index, of its images), when known.
    pub size: Option<u64>,
    /// When it was pushed (ECR), or when the image says it was created (other registries).
    #[serde(serialize_with = "ser_time")]
    pub pushed: Option<SystemTime>,
    /// When it was last pulled (ECR only, recorded by ECR with a delay of up to a day).
    #[serde(serialize_with = "ser_time")]
    pub last_pulled: Option<SystemTime>,
    /// The manifest media type.
    pub media_type: Option<String>,
    /// The artifact type (or config media type) of the manifest, when known.
    pub artifact_type: Option<String>,
    /// Manifests an index refers to (its images); they must outlive the index.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
}

impl ImageRecord {
    pub fn is_store_entry(&self) -> bool {
        tags::is_store_entry(self.artifact_type.as_deref())
    }

    /// The class of one of its tags.
    pub fn class_of(&self, tag: &str) -> TagClass {
        tags::classify(tag, self.artifact_type.as_deref())
    }

    /// Age at `now`; `None` when the push time is unknown.
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        self.pushed
            .map(|p| now.duration_since(p).unwrap_or(Duration::ZERO))
    }
}

/// Serializes a time as RFC 3339 UTC with seconds (`2026-11-25T08:00:00Z`), or null.
pub fn ser_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string()),
        None => s.serialize_none(),
    }
}

/// Parses an RFC 3339 time as images write it (`2024-05-01T12:00:00.123456789Z`,
/// also with a `+00:00` offset); `None` when it cannot be read.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')) {
        return Some(t);
    }
    // An explicit offset: +HH:MM / -HH:MM.
    if s.len() > 6 {
        let (head, off) = s.split_at(s.len() - 6);
        let b = off.as_bytes();
        if (b[0] == b'+' || b[0] == b'-') && b[3] == b':' {
            let h: u64 = off[1..3].parse().ok()?;
            let m: u64 = off[4..6].parse().ok()?;
            let t = humantime::parse_rfc3339_weak(head).ok()?;
            let d = Duration::from_secs(h * 3600 + m * 60);
            return if b[0] == b'+' {
                t.checked_sub(d)
            } else {
                t.checked_add(d)
            };
        }
    }
    None
}

/// What a repository is, as far as cicache cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepositoryInfo {
    pub repository: String,
    /// `MUTABLE`, `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION`, ... (ECR); `None` when the API cannot tell.
    pub tag_mutability: Option<String>,
    /// `<registry>/<repository>` as docker names it.
    pub uri: String,
    /// The wildcard filters of `IMMUTABLE_WITH_EXCLUSION` / `MUTABLE_WITH_EXCLUSION` (ECR).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mutability_exclusions: Vec<String>,
}

impl RepositoryInfo {
    /// Whether a second push of `cache` or `cache-<scope>` would be rejected: immutable tags,
    /// unless exclusion filters make both mutable; or mutable tags with an exclusion filter
    /// that makes one of them immutable.
    pub fn tags_immutable(&self) -> bool {
        let probes = ["cache", "cache-main"];
        let excluded = |tag: &str| {
            self.mutability_exclusions
                .iter()
                .any(|f| wildcard_match(f, tag))
        };
        match self.tag_mutability.as_deref() {
            Some("IMMUTABLE") => true,
            Some("IMMUTABLE_WITH_EXCLUSION") => !probes.iter().all(|t| excluded(t)),
            Some("MUTABLE_WITH_EXCLUSION") => probes.iter().any(|t| excluded(t)),
            _ => false,
        }
    }
}

/// ECR's wildcard filters: `*` matches any run of characters.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(m: &str, ex: &[&str]) -> RepositoryInfo {
        RepositoryInfo {
            repository: "r".into(),
            tag_mutability: Some(m.into()),
            uri: "u".into(),
            mutability_exclusions: ex.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn immutability_with_exclusions() {
        assert!(!repo("MUTABLE", &[]).tags_immutable());
        assert!(repo("IMMUTABLE", &[]).tags_immutable());
        assert!(!repo("IMMUTABLE_WITH_EXCLUSION", &["cache*"]).tags_immutable());
        assert!(repo("IMMUTABLE_WITH_EXCLUSION", &["cache-*"]).tags_immutable());
        assert!(!repo("IMMUTABLE_WITH_EXCLUSION", &["cache", "cache-*"]).tags_immutable());
        assert!(!repo("MUTABLE_WITH_EXCLUSION", &["v*", "release-*"]).tags_immutable());
        assert!(repo("MUTABLE_WITH_EXCLUSION", &["c*"]).tags_immutable());
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b", "axxbc"));
    }

    #[test]
    fn parses_image_times() {
        let z = parse_time("2024-05-01T12:00:00Z").unwrap();
        let frac = parse_time("2024-05-01T12:00:00.123456789Z").unwrap();
        assert_eq!(frac.duration_since(z).unwrap().as_millis(), 123);
        let off = parse_time("2024-05-01T14:00:00+02:00").unwrap();
        assert_eq!(off, z);
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("").is_none());
    }
}
