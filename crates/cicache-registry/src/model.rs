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
}

impl RepositoryInfo {
    /// Whether a second push of `cache` would be rejected.
    pub fn tags_immutable(&self) -> bool {
        self.tag_mutability
            .as_deref()
            .is_some_and(|m| m.starts_with("IMMUTABLE"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
