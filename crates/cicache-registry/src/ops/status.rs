//! `cicache registry status`: the cache tags of a repository, and counts of everything else.

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde::Serialize;

use super::{Connection, Doing, OpError, OpResult, fmt_size, fmt_time, short};
use crate::tags::{self, TagClass};
use crate::{ImageRecord, Registry, RepositoryInfo};

/// One cache tag.
#[derive(Debug, Serialize)]
pub struct TagRow {
    pub tag: String,
    /// `null` for `cache` (the default branch).
    pub scope: Option<String>,
    pub digest: String,
    pub size: Option<u64>,
    #[serde(serialize_with = "crate::model::ser_time")]
    pub pushed: Option<SystemTime>,
    #[serde(serialize_with = "crate::model::ser_time")]
    pub last_pulled: Option<SystemTime>,
    pub age_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct StatusResult {
    pub registry: String,
    pub repository: String,
    pub kind: &'static str,
    pub tag_mutability: Option<String>,
    pub cache_tags: Vec<TagRow>,
    /// Bytes of the distinct manifests behind the cache tags.
    pub cache_bytes: u64,
    pub other_tags: usize,
    pub base_tags: usize,
    pub store_entries: usize,
    /// `null` where the API cannot list untagged manifests (the distribution API).
    pub untagged: Option<usize>,
    /// Problems a person should fix (immutable tags).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// Lists the repository: its cache tags (default branch first), the other tags by kind,
/// the store entries and the untagged manifests.
pub fn status(conn: &Connection) -> OpResult<StatusResult> {
    let reg = conn.connect()?;
    let info = match &reg {
        Registry::Ecr { client, target } => Some(
            client
                .repository(&target.repository)
                .doing(|| format!("looking up {}", target.image()))?
                .ok_or_else(|| {
                    OpError::Refused(format!(
                        "repository {} does not exist; create it with `cicache registry ensure --image {}`",
                        target.image(),
                        target.image()
                    ))
                })?,
        ),
        Registry::Oci(_) => None,
    };
    let mut warnings = Vec::new();
    if info.as_ref().is_some_and(RepositoryInfo::tags_immutable) {
        warnings.push(crate::immutable_explanation(&conn.target));
    }
    let images = reg
        .images()
        .doing(|| format!("listing {}", conn.target.image()))?;
    let counts = Counts::of(&images, SystemTime::now());
    Ok(StatusResult {
        registry: conn.target.registry.clone(),
        repository: conn.target.repository.clone(),
        kind: conn.kind_name(),
        tag_mutability: info.and_then(|i| i.tag_mutability),
        cache_bytes: counts.cache_bytes,
        other_tags: counts.other,
        base_tags: counts.base,
        store_entries: counts.entries,
        untagged: reg.lists_untagged().then_some(counts.untagged),
        cache_tags: counts.rows,
        warnings,
    })
}

/// The repository's images sorted into what `status` shows.
#[derive(Default)]
struct Counts {
    rows: Vec<TagRow>,
    cache_bytes: u64,
    other: usize,
    base: usize,
    entries: usize,
    untagged: usize,
}

impl Counts {
    fn of(images: &[ImageRecord], now: SystemTime) -> Counts {
        let mut c = Counts::default();
        let mut cache_digests = BTreeSet::new();
        for i in images {
            if i.is_store_entry() {
                // Entries count; their last-use markers and the store's leases and locks
                // are store objects too, but not entries.
                if i.artifact_type.as_deref() == Some(tags::STORE_ENTRY_ARTIFACT_TYPE) {
                    c.entries += 1;
                }
                continue;
            }
            if i.tags.is_empty() {
                c.untagged += 1;
            }
            for t in &i.tags {
                match i.class_of(t) {
                    TagClass::Cache | TagClass::ScopeCache => {
                        cache_digests.insert(i.digest.clone());
                        c.rows.push(TagRow {
                            tag: t.clone(),
                            scope: tags::scope_of(t).map(str::to_string),
                            digest: i.digest.clone(),
                            size: i.size,
                            pushed: i.pushed,
                            last_pulled: i.last_pulled,
                            age_seconds: i.age(now).map(|d| d.as_secs()),
                        })
                    }
                    TagClass::Base => c.base += 1,
                    TagClass::StoreEntry => {}
                    TagClass::Other => c.other += 1,
                }
            }
        }
        c.rows
            .sort_by(|a, b| (a.scope.is_some(), &a.tag).cmp(&(b.scope.is_some(), &b.tag)));
        // A manifest behind several cache tags counts once.
        c.cache_bytes = images
            .iter()
            .filter(|i| cache_digests.contains(&i.digest))
            .filter_map(|i| i.size)
            .sum();
        c
    }
}

impl StatusResult {
    /// A table of the cache tags and a line of counts.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.cache_tags.is_empty() {
            out.push_str(&format!(
                "{}/{}: no cache tags\n",
                self.registry, self.repository
            ));
        } else {
            out.push_str(&format!(
                "{:<32} {:<20} {:>10} {:<21} {:<21} {}\n",
                "TAG", "SCOPE", "SIZE", "PUSHED", "LAST PULLED", "DIGEST"
            ));
            for r in &self.cache_tags {
                out.push_str(&format!(
                    "{:<32} {:<20} {:>10} {:<21} {:<21} {}\n",
                    r.tag,
                    r.scope.as_deref().unwrap_or("(default)"),
                    fmt_size(r.size),
                    fmt_time(r.pushed),
                    fmt_time(r.last_pulled),
                    short(&r.digest)
                ));
            }
        }
        let untagged = self
            .untagged
            .map(|n| n.to_string())
            .unwrap_or_else(|| "unknown".into());
        out.push_str(&format!(
            "{} cache tags, {}; other tags {}, base tags {}, store entries {}, untagged {}",
            self.cache_tags.len(),
            cicache_units::format_bytes(self.cache_bytes),
            self.other_tags,
            self.base_tags,
            self.store_entries,
            untagged
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::delete::tests::img;

    #[test]
    fn counts_sort_tags_and_count_shared_manifests_once() {
        let mut shared = img("sha256:1", &["cache", "cache-pr-1"]);
        shared.size = Some(100);
        let images = vec![
            shared,
            img("sha256:2", &["cache-main", "v1"]),
            img("sha256:3", &[]),
            img("sha256:4", &["base-0123456789abcdef"]),
        ];
        let c = Counts::of(&images, SystemTime::now());
        let tags: Vec<_> = c.rows.iter().map(|r| r.tag.as_str()).collect();
        assert_eq!(tags, vec!["cache", "cache-main", "cache-pr-1"]);
        assert_eq!(c.cache_bytes, 101, "sha256:1 once (100) + sha256:2 (1)");
        assert_eq!((c.other, c.base, c.untagged), (1, 1, 1));
    }
}
