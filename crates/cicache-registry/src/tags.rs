//! What a tag in the repository is to cicache.
//!
//! - `cache`: the default branch's layer cache (never removed by `gc`).
//! - `cache-<scope>`: another scope's (branch's) layer cache; `gc` removes it once old.
//! - `base-<hash>`: a base image cicache built (managed by later commands; `gc` leaves it).
//! - a cicache store entry (an OCI artifact of type [`STORE_ENTRY_ARTIFACT_TYPE`]), whatever
//!   its tag: belongs to the store, never treated as an image cache tag.
//! - anything else: not cicache's; never touched.

use serde::Serialize;

/// The artifactType of cicache store entries kept in a registry (`oci://` stores).
pub const STORE_ENTRY_ARTIFACT_TYPE: &str = "application/vnd.cicache.entry.v1+json";
/// The artifactType of an `oci://` store's other small objects (last-use markers, leases,
/// sweep locks): part of the store too, never an image.
pub const STORE_OBJECT_ARTIFACT_TYPE: &str = "application/vnd.cicache.object.v1+json";

/// The label of an app image (and of its cache tag) that names the base image it was built
/// on (`REGISTRY/REPO:base-<hash>`); `gc --keep-bases` keeps the bases named
/// (`cicache_docker::base::LABEL_BASE`).
pub const LABEL_BASE: &str = "io.cicache.base";

/// The default branch's cache tag.
pub const DEFAULT_CACHE_TAG: &str = "cache";

/// The prefix of scope cache tags.
pub const SCOPE_CACHE_PREFIX: &str = "cache-";

/// The prefix of base image tags.
pub const BASE_PREFIX: &str = "base-";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagClass {
    /// `cache`
    Cache,
    /// `cache-<scope>`
    ScopeCache,
    /// `base-<hash>`
    Base,
    /// a cicache store entry (by artifact type, not by name)
    StoreEntry,
    /// not a cicache tag
    Other,
}

impl TagClass {
    /// `cache` or `cache-<scope>`.
    pub fn is_cache(&self) -> bool {
        matches!(self, TagClass::Cache | TagClass::ScopeCache)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            TagClass::Cache => "cache",
            TagClass::ScopeCache => "scope_cache",
            TagClass::Base => "base",
            TagClass::StoreEntry => "store_entry",
            TagClass::Other => "other",
        }
    }
}

/// Classifies a tag by its name alone. A store entry is recognized by its artifact type:
/// use [`classify`] when that is known.
pub fn classify_tag(tag: &str) -> TagClass {
    if tag == DEFAULT_CACHE_TAG {
        TagClass::Cache
    } else if tag.len() > SCOPE_CACHE_PREFIX.len() && tag.starts_with(SCOPE_CACHE_PREFIX) {
        TagClass::ScopeCache
    } else if tag.len() > BASE_PREFIX.len() && tag.starts_with(BASE_PREFIX) {
        TagClass::Base
    } else {
        TagClass::Other
    }
}

/// Classifies a tag of a manifest whose artifact type (or config media type) is known.
pub fn classify(tag: &str, artifact_type: Option<&str>) -> TagClass {
    if is_store_entry(artifact_type) {
        TagClass::StoreEntry
    } else {
        classify_tag(tag)
    }
}

/// A manifest of an `oci://` store (an entry or one of its small objects).
pub fn is_store_entry(artifact_type: Option<&str>) -> bool {
    matches!(
        artifact_type,
        Some(STORE_ENTRY_ARTIFACT_TYPE | STORE_OBJECT_ARTIFACT_TYPE)
    )
}

/// The scope a cache tag serves: `None` for `cache` (the default branch), `Some(scope)` for
/// `cache-<scope>`.
pub fn scope_of(tag: &str) -> Option<&str> {
    match classify_tag(tag) {
        TagClass::ScopeCache => Some(&tag[SCOPE_CACHE_PREFIX.len()..]),
        _ => None,
    }
}

/// The cache tag of a scope: `cache-<scope>`, with characters a tag cannot hold
/// (anything but `A-Za-z0-9_.-`) turned into `-` and cut to the 128 characters a tag may have.
/// `feature/login` gives `cache-feature-login`.
pub fn cache_tag_for_scope(scope: &str) -> String {
    let mut tag = String::from(SCOPE_CACHE_PREFIX);
    for c in scope.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
            tag.push(c);
        } else {
            tag.push('-');
        }
        if tag.len() >= 128 {
            break;
        }
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_name() {
        assert_eq!(classify_tag("cache"), TagClass::Cache);
        assert_eq!(classify_tag("cache-main"), TagClass::ScopeCache);
        assert_eq!(classify_tag("cache-pr-7"), TagClass::ScopeCache);
        assert_eq!(classify_tag("cache-"), TagClass::Other);
        assert_eq!(classify_tag("caches"), TagClass::Other);
        assert_eq!(classify_tag("mycache-x"), TagClass::Other);
        assert_eq!(classify_tag("base-3f2a"), TagClass::Base);
        assert_eq!(classify_tag("latest"), TagClass::Other);
        assert_eq!(classify_tag("v1.2.3"), TagClass::Other);
    }

    #[test]
    fn store_entries_are_never_cache_tags() {
        assert_eq!(
            classify("cache-main", Some(STORE_ENTRY_ARTIFACT_TYPE)),
            TagClass::StoreEntry
        );
        assert_eq!(
            classify("cache", Some(STORE_ENTRY_ARTIFACT_TYPE)),
            TagClass::StoreEntry
        );
        assert_eq!(
            classify("cache", Some("application/vnd.oci.image.config.v1+json")),
            TagClass::Cache
        );
    }

    #[test]
    fn scopes_of_tags() {
        assert_eq!(scope_of("cache"), None);
        assert_eq!(scope_of("cache-pr-7"), Some("pr-7"));
        assert_eq!(scope_of("latest"), None);
    }

    #[test]
    fn scope_tags_are_valid_tags() {
        assert_eq!(cache_tag_for_scope("main"), "cache-main");
        assert_eq!(cache_tag_for_scope("feature/login"), "cache-feature-login");
        assert_eq!(cache_tag_for_scope(&"x".repeat(300)).len(), 128);
        let t = cache_tag_for_scope("ünï côde");
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        );
        assert_eq!(
            classify_tag(&cache_tag_for_scope("pr-9")),
            TagClass::ScopeCache
        );
    }
}
