//! `gc` planning: which cache tags and untagged manifests to delete. A pure function of the
//! repository listing and the policy, so that `gc --dry-run` shows exactly what `gc` does.
//!
//! Rules (each one proven by the tests below):
//! - only `cache-<scope>` tags (and, with `keep_bases`, `base-<hash>` tags) are ever
//!   deleted: never `cache`, never a `--keep` tag, a store entry or a tag outside those
//!   patterns;
//! - a tag is deleted only when it is older than `max_age` (by push time); a tag whose age is
//!   unknown is kept;
//! - `base-<hash>` tags are deleted only with `keep_bases` (`--keep-bases N`), never the N
//!   newest (by push time), never one an app image still names (`bases_in_use`, read from
//!   the `io.cicache.base` label of the other images), never one whose age is unknown, and
//!   only when older than `max_age`;
//! - untagged manifests are deleted only with `untagged`, only when older than `max_age`,
//!   never when an index still refers to them, and never when they are store entries;
//! - where deleting means deleting the whole manifest (any registry but ECR, which can remove
//!   a single tag), a manifest is deleted only when every one of its tags may go.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::model::ImageRecord;
use crate::tags::{DEFAULT_CACHE_TAG, TagClass};

#[derive(Debug, Clone)]
pub struct GcPolicy {
    /// The time ages are measured at.
    pub now: SystemTime,
    /// Cache tags pushed longer ago than this are deleted.
    pub max_age: Duration,
    /// Tags that are never deleted (besides `cache`, which never is).
    pub keep: BTreeSet<String>,
    /// Whether untagged manifests are deleted too.
    pub untagged: bool,
    /// Whether the registry removes one tag from a manifest (ECR), or only whole manifests
    /// with all their tags (the distribution API).
    pub delete_by_tag: bool,
    /// `--keep-bases N`: manage `base-<hash>` tags, keeping the N newest. `None`: base tags
    /// are never deleted.
    pub keep_bases: Option<usize>,
    /// Base tags (`base-<hash>`, without the repository) that an image in the repository
    /// names in its `io.cicache.base` label; never deleted.
    pub bases_in_use: BTreeSet<String>,
}

/// One deletion: the tags removed from a manifest, and whether the manifest goes with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deletion {
    pub digest: String,
    /// Tags removed (empty for an untagged manifest).
    pub tags: Vec<String>,
    /// Whether the manifest itself is deleted (its last tag goes, or it was untagged).
    pub manifest: bool,
    /// Age in seconds at planning time.
    pub age_seconds: Option<u64>,
    pub size: Option<u64>,
}

/// Why a tag or manifest stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// `cache`, the default branch's cache.
    DefaultCache,
    /// Named by `--keep`.
    Keep,
    /// Younger than `--max-age`.
    Young,
    /// Its push time is unknown.
    AgeUnknown,
    /// Not a cache tag (`base-<hash>` without `--keep-bases`, an application tag, ...).
    NotCacheTag,
    /// One of the `--keep-bases` newest base images.
    NewestBase,
    /// A base image that an image in the repository still names (`io.cicache.base`).
    BaseInUse,
    /// A cicache store entry.
    StoreEntry,
    /// The registry can only delete the whole manifest, and another tag on it stays.
    SharesManifest,
    /// Untagged, and `--untagged` was not given.
    UntaggedNotRequested,
    /// Untagged, but an index in the repository refers to it.
    ReferencedByIndex,
}

impl KeepReason {
    pub fn describe(&self) -> &'static str {
        match self {
            KeepReason::DefaultCache => "the default branch cache",
            KeepReason::Keep => "kept by --keep",
            KeepReason::Young => "younger than --max-age",
            KeepReason::AgeUnknown => "push time unknown",
            KeepReason::NotCacheTag => "not a cache tag",
            KeepReason::NewestBase => "one of the --keep-bases newest bases",
            KeepReason::BaseInUse => "a base that an image in the repository names",
            KeepReason::StoreEntry => "a cicache store entry",
            KeepReason::SharesManifest => "shares its manifest with a tag that stays",
            KeepReason::UntaggedNotRequested => "untagged (gc deletes those only with --untagged)",
            KeepReason::ReferencedByIndex => "untagged, but an index refers to it",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub digest: String,
    /// The tag kept; `None` for an untagged manifest.
    pub tag: Option<String>,
    pub reason: KeepReason,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcPlan {
    pub delete: Vec<Deletion>,
    pub keep: Vec<Kept>,
}

impl GcPlan {
    pub fn deleted_tags(&self) -> impl Iterator<Item = &str> {
        self.delete
            .iter()
            .flat_map(|d| d.tags.iter().map(String::as_str))
    }

    /// Bytes freed by the manifests deleted (layers shared with other images may stay).
    pub fn bytes(&self) -> u64 {
        self.delete
            .iter()
            .filter(|d| d.manifest)
            .filter_map(|d| d.size)
            .sum()
    }
}

/// Plans a gc run. Deterministic: the same listing and policy give the same plan.
pub fn plan(images: &[ImageRecord], policy: &GcPolicy) -> GcPlan {
    let mut sorted: Vec<&ImageRecord> = images.iter().collect();
    sorted.sort_by(|a, b| a.digest.cmp(&b.digest));
    let referenced: BTreeSet<&str> = images
        .iter()
        .flat_map(|i| i.children.iter().map(String::as_str))
        .collect();

    // The N newest base tags by push time (ties: by tag), when bases are managed.
    let newest_bases: BTreeSet<&str> = match policy.keep_bases {
        None => BTreeSet::new(),
        Some(n) => {
            let mut bases: Vec<(SystemTime, &str)> = images
                .iter()
                .filter_map(|i| i.pushed.map(|p| (p, i)))
                .flat_map(|(p, i)| {
                    i.tags
                        .iter()
                        .filter(|t| i.class_of(t) == TagClass::Base)
                        .map(move |t| (p, t.as_str()))
                })
                .collect();
            bases.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
            bases.dedup_by(|a, b| a.1 == b.1);
            bases.into_iter().take(n).map(|(_, t)| t).collect()
        }
    };

    let mut plan = GcPlan::default();
    for image in sorted {
        let age = image.age(policy.now);
        let old = age.is_some_and(|a| a > policy.max_age);
        let keep = |tag: Option<&str>, reason| Kept {
            digest: image.digest.clone(),
            tag: tag.map(str::to_string),
            reason,
        };

        if image.tags.is_empty() {
            let reason = if image.is_store_entry() {
                Some(KeepReason::StoreEntry)
            } else if !policy.untagged {
                Some(KeepReason::UntaggedNotRequested)
            } else if referenced.contains(image.digest.as_str()) {
                Some(KeepReason::ReferencedByIndex)
            } else if age.is_none() {
                Some(KeepReason::AgeUnknown)
            } else if !old {
                Some(KeepReason::Young)
            } else {
                None
            };
            match reason {
                Some(r) => plan.keep.push(keep(None, r)),
                None => plan.delete.push(Deletion {
                    digest: image.digest.clone(),
                    tags: Vec::new(),
                    manifest: true,
                    age_seconds: age.map(|a| a.as_secs()),
                    size: image.size,
                }),
            }
            continue;
        }

        let mut tags: Vec<&str> = image.tags.iter().map(String::as_str).collect();
        tags.sort_unstable();
        tags.dedup();
        // Decide each tag on its own first.
        let mut verdicts: BTreeMap<&str, Option<KeepReason>> = BTreeMap::new();
        for &tag in &tags {
            let class = image.class_of(tag);
            let reason = match class {
                TagClass::StoreEntry => Some(KeepReason::StoreEntry),
                TagClass::Other => Some(KeepReason::NotCacheTag),
                TagClass::Base if policy.keep_bases.is_none() => Some(KeepReason::NotCacheTag),
                TagClass::Base if policy.keep.contains(tag) => Some(KeepReason::Keep),
                TagClass::Base if newest_bases.contains(tag) => Some(KeepReason::NewestBase),
                TagClass::Base if policy.bases_in_use.contains(tag) => Some(KeepReason::BaseInUse),
                TagClass::Base if age.is_none() => Some(KeepReason::AgeUnknown),
                TagClass::Base if !old => Some(KeepReason::Young),
                TagClass::Base => None,
                TagClass::Cache => Some(KeepReason::DefaultCache),
                TagClass::ScopeCache if tag == DEFAULT_CACHE_TAG => Some(KeepReason::DefaultCache),
                TagClass::ScopeCache if policy.keep.contains(tag) => Some(KeepReason::Keep),
                TagClass::ScopeCache if age.is_none() => Some(KeepReason::AgeUnknown),
                TagClass::ScopeCache if !old => Some(KeepReason::Young),
                TagClass::ScopeCache => None,
            };
            // `--keep cache` and `--keep` of any other tag name: kept whatever its class.
            let reason = match reason {
                None if policy.keep.contains(tag) => Some(KeepReason::Keep),
                r => r,
            };
            verdicts.insert(tag, reason);
        }
        let any_stays = verdicts.values().any(Option::is_some);
        if !policy.delete_by_tag && any_stays {
            for (tag, reason) in verdicts {
                plan.keep.push(keep(
                    Some(tag),
                    reason.unwrap_or(KeepReason::SharesManifest),
                ));
            }
            continue;
        }
        let mut removed = Vec::new();
        for (tag, reason) in verdicts {
            match reason {
                Some(r) => plan.keep.push(keep(Some(tag), r)),
                None => removed.push(tag.to_string()),
            }
        }
        if !removed.is_empty() {
            plan.delete.push(Deletion {
                digest: image.digest.clone(),
                tags: removed,
                manifest: !any_stays,
                age_seconds: age.map(|a| a.as_secs()),
                size: image.size,
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::{STORE_ENTRY_ARTIFACT_TYPE, classify_tag};
    use proptest::prelude::*;

    const DAY: u64 = 86_400;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn img(digest: &str, tags: &[&str], age_days: Option<u64>) -> ImageRecord {
        ImageRecord {
            digest: digest.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            size: Some(1000),
            pushed: age_days.map(|d| now() - Duration::from_secs(d * DAY)),
            last_pulled: None,
            media_type: None,
            artifact_type: None,
            children: Vec::new(),
        }
    }

    fn policy(untagged: bool, by_tag: bool) -> GcPolicy {
        GcPolicy {
            now: now(),
            max_age: Duration::from_secs(14 * DAY),
            keep: BTreeSet::new(),
            untagged,
            delete_by_tag: by_tag,
            keep_bases: None,
            bases_in_use: BTreeSet::new(),
        }
    }

    fn reason_of(plan: &GcPlan, tag: &str) -> Option<KeepReason> {
        plan.keep
            .iter()
            .find(|k| k.tag.as_deref() == Some(tag))
            .map(|k| k.reason)
    }

    #[test]
    fn deletes_only_old_scope_tags() {
        let images = vec![
            img("sha256:01", &["cache"], Some(100)),
            img("sha256:02", &["cache-old"], Some(30)),
            img("sha256:03", &["cache-new"], Some(2)),
            img("sha256:04", &["latest"], Some(100)),
            img("sha256:05", &["base-abc"], Some(100)),
            img("sha256:06", &["cache-unknown"], None),
            img("sha256:07", &[], Some(100)),
        ];
        for by_tag in [true, false] {
            let plan = plan(&images, &policy(false, by_tag));
            assert_eq!(plan.deleted_tags().collect::<Vec<_>>(), vec!["cache-old"]);
            assert_eq!(plan.delete.len(), 1);
            assert!(plan.delete[0].manifest);
            assert_eq!(reason_of(&plan, "cache"), Some(KeepReason::DefaultCache));
            assert_eq!(reason_of(&plan, "cache-new"), Some(KeepReason::Young));
            assert_eq!(reason_of(&plan, "latest"), Some(KeepReason::NotCacheTag));
            assert_eq!(reason_of(&plan, "base-abc"), Some(KeepReason::NotCacheTag));
            assert_eq!(
                reason_of(&plan, "cache-unknown"),
                Some(KeepReason::AgeUnknown)
            );
            assert_eq!(
                plan.keep.iter().find(|k| k.tag.is_none()).map(|k| k.reason),
                Some(KeepReason::UntaggedNotRequested)
            );
        }
    }

    #[test]
    fn untagged_only_when_asked_old_and_unreferenced() {
        let mut index = img("sha256:0a", &["cache-x"], Some(1));
        index.children = vec!["sha256:0c".into()];
        let images = vec![
            index,
            img("sha256:0b", &[], Some(30)),
            img("sha256:0c", &[], Some(30)),
            img("sha256:0d", &[], Some(1)),
        ];
        let plan = plan(&images, &policy(true, true));
        let deleted: Vec<_> = plan.delete.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(deleted, vec!["sha256:0b"]);
        let reason = |d: &str| plan.keep.iter().find(|k| k.digest == d).map(|k| k.reason);
        assert_eq!(reason("sha256:0c"), Some(KeepReason::ReferencedByIndex));
        assert_eq!(reason("sha256:0d"), Some(KeepReason::Young));
    }

    #[test]
    fn keep_list_protects_tags() {
        let images = vec![img("sha256:01", &["cache-main", "cache-old"], Some(30))];
        let mut p = policy(false, true);
        p.keep.insert("cache-main".into());
        let plan_ecr = plan(&images, &p);
        assert_eq!(
            plan_ecr.deleted_tags().collect::<Vec<_>>(),
            vec!["cache-old"]
        );
        assert!(
            !plan_ecr.delete[0].manifest,
            "cache-main stays on the manifest"
        );
        // The distribution API deletes whole manifests: cache-old has to stay with cache-main.
        p.delete_by_tag = false;
        let plan_oci = plan(&images, &p);
        assert!(plan_oci.delete.is_empty());
        assert_eq!(
            reason_of(&plan_oci, "cache-old"),
            Some(KeepReason::SharesManifest)
        );
        assert_eq!(reason_of(&plan_oci, "cache-main"), Some(KeepReason::Keep));
    }

    #[test]
    fn a_manifest_shared_with_cache_keeps_cache_on_oci() {
        let images = vec![img("sha256:01", &["cache", "cache-feature"], Some(30))];
        let plan_oci = plan(&images, &policy(true, false));
        assert!(plan_oci.delete.is_empty());
        let plan_ecr = plan(&images, &policy(true, true));
        assert_eq!(
            plan_ecr.deleted_tags().collect::<Vec<_>>(),
            vec!["cache-feature"]
        );
        assert!(!plan_ecr.delete[0].manifest);
    }

    #[test]
    fn store_entries_are_never_deleted() {
        let mut entry = img("sha256:01", &["cache-old"], Some(300));
        entry.artifact_type = Some(STORE_ENTRY_ARTIFACT_TYPE.into());
        let mut untagged_entry = img("sha256:02", &[], Some(300));
        untagged_entry.artifact_type = Some(STORE_ENTRY_ARTIFACT_TYPE.into());
        let plan = plan(&[entry, untagged_entry], &policy(true, true));
        assert!(plan.delete.is_empty());
        assert!(plan.keep.iter().all(|k| k.reason == KeepReason::StoreEntry));
    }

    #[test]
    fn bases_go_only_with_keep_bases_old_unused_and_not_newest() {
        let images = vec![
            img("sha256:01", &["base-a"], Some(100)),
            img("sha256:02", &["base-b"], Some(50)),
            img("sha256:03", &["base-c"], Some(30)),
            img("sha256:04", &["base-d"], Some(20)),
            img("sha256:05", &["base-e"], Some(3)),
            img("sha256:06", &["base-f"], None),
            img("sha256:07", &["v1"], Some(60)),
        ];
        // Without --keep-bases nothing of them goes.
        let p = policy(false, false);
        assert!(plan(&images, &p).delete.is_empty());
        let mut p = policy(false, false);
        p.keep_bases = Some(2);
        p.bases_in_use.insert("base-b".into());
        p.keep.insert("base-a".into());
        let got = plan(&images, &p);
        // e and d are the newest two; b is in use; a is kept by --keep; f's age is unknown;
        // c is old, unused and not among the newest: it goes.
        assert_eq!(got.deleted_tags().collect::<Vec<_>>(), vec!["base-c"]);
        assert_eq!(reason_of(&got, "base-e"), Some(KeepReason::NewestBase));
        assert_eq!(reason_of(&got, "base-d"), Some(KeepReason::NewestBase));
        assert_eq!(reason_of(&got, "base-b"), Some(KeepReason::BaseInUse));
        assert_eq!(reason_of(&got, "base-a"), Some(KeepReason::Keep));
        assert_eq!(reason_of(&got, "base-f"), Some(KeepReason::AgeUnknown));
        assert_eq!(reason_of(&got, "v1"), Some(KeepReason::NotCacheTag));
        // --keep-bases 0 with a long max age: young bases stay.
        p.keep_bases = Some(0);
        p.max_age = Duration::from_secs(40 * DAY);
        let got = plan(&images, &p);
        assert!(got.delete.is_empty(), "{got:?}");
        assert_eq!(reason_of(&got, "base-c"), Some(KeepReason::Young));
        assert_eq!(reason_of(&got, "base-e"), Some(KeepReason::Young));
        p.keep.clear();
        let got = plan(&images, &p);
        assert_eq!(got.deleted_tags().collect::<Vec<_>>(), vec!["base-a"]);
    }

    fn arb_tag() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("cache".to_string()),
            "cache-[a-c]{1,2}",
            "base-[a-c]{1,2}",
            "[a-z]{1,6}",
            Just("cache-".to_string()),
        ]
    }

    fn arb_image() -> impl Strategy<Value = ImageRecord> {
        (
            "[0-9a-f]{4}",
            proptest::collection::vec(arb_tag(), 0..4),
            proptest::option::of(0u64..40 * DAY),
            any::<bool>(),
            proptest::collection::vec("[0-9a-f]{4}", 0..2),
        )
            .prop_map(|(d, tags, age, entry, children)| ImageRecord {
                digest: format!("sha256:{d}"),
                tags,
                size: Some(10),
                pushed: age.map(|a| now() - Duration::from_secs(a)),
                last_pulled: None,
                media_type: None,
                artifact_type: entry.then(|| STORE_ENTRY_ARTIFACT_TYPE.to_string()),
                children: children
                    .into_iter()
                    .map(|c| format!("sha256:{c}"))
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn gc_never_deletes_what_it_must_keep(
            mut images in proptest::collection::vec(arb_image(), 0..12),
            max_age_days in 0u64..30,
            keep in proptest::collection::btree_set(arb_tag(), 0..3),
            untagged in any::<bool>(),
            by_tag in any::<bool>(),
            keep_bases in proptest::option::of(0usize..3),
            in_use in proptest::collection::btree_set("base-[a-c]{1,2}", 0..3),
        ) {
            // A registry lists every digest once, and a tag on one manifest only.
            images.sort_by(|a, b| a.digest.cmp(&b.digest));
            images.dedup_by(|a, b| a.digest == b.digest);
            let mut seen = BTreeSet::new();
            for i in &mut images {
                i.tags.retain(|t| seen.insert(t.clone()));
            }
            let policy = GcPolicy {
                now: now(),
                max_age: Duration::from_secs(max_age_days * DAY),
                keep: keep.clone(),
                untagged,
                delete_by_tag: by_tag,
                keep_bases,
                bases_in_use: in_use.clone(),
            };
            let plan = plan(&images, &policy);
            // The newest `keep_bases` base tags of known age.
            let mut bases: Vec<(SystemTime, String)> = images
                .iter()
                .filter(|i| !i.is_store_entry())
                .filter_map(|i| i.pushed.map(|p| (p, i)))
                .flat_map(|(p, i)| {
                    i.tags
                        .iter()
                        .filter(|t| classify_tag(t) == TagClass::Base)
                        .map(move |t| (p, t.clone()))
                })
                .collect();
            bases.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let newest: BTreeSet<String> = bases
                .into_iter()
                .take(keep_bases.unwrap_or(0))
                .map(|(_, t)| t)
                .collect();
            let by_digest: BTreeMap<&str, &ImageRecord> =
                images.iter().map(|i| (i.digest.as_str(), i)).collect();
            let referenced: BTreeSet<&str> =
                images.iter().flat_map(|i| i.children.iter().map(String::as_str)).collect();

            for d in &plan.delete {
                let image = by_digest[d.digest.as_str()];
                prop_assert!(!image.is_store_entry());
                let age = image.age(now());
                prop_assert!(age.is_some_and(|a| a > policy.max_age), "too young: {d:?}");
                if d.tags.is_empty() {
                    prop_assert!(untagged && image.tags.is_empty());
                    prop_assert!(!referenced.contains(d.digest.as_str()));
                }
                for t in &d.tags {
                    prop_assert_ne!(t.as_str(), "cache");
                    prop_assert!(!keep.contains(t));
                    match classify_tag(t) {
                        TagClass::ScopeCache => {}
                        TagClass::Base => {
                            prop_assert!(keep_bases.is_some(), "a base without --keep-bases");
                            prop_assert!(!in_use.contains(t), "a base in use: {t}");
                            prop_assert!(!newest.contains(t), "one of the newest bases: {t}");
                        }
                        other => prop_assert!(false, "deleted a {other:?} tag {t}"),
                    }
                    prop_assert!(image.tags.contains(t));
                }
                if !by_tag {
                    prop_assert!(d.manifest);
                }
                if d.manifest {
                    // Every tag of a deleted manifest is in the deletion.
                    let mut all = image.tags.clone();
                    all.sort();
                    all.dedup();
                    prop_assert_eq!(&all, &d.tags);
                }
            }
            // Every tag is decided exactly once.
            let mut decided: Vec<(String, String)> = plan
                .delete
                .iter()
                .flat_map(|d| d.tags.iter().map(|t| (d.digest.clone(), t.clone())))
                .chain(plan.keep.iter().filter_map(|k| k.tag.clone().map(|t| (k.digest.clone(), t))))
                .collect();
            decided.sort();
            let mut all: Vec<(String, String)> = images
                .iter()
                .flat_map(|i| i.tags.iter().map(|t| (i.digest.clone(), t.clone())))
                .collect();
            all.sort();
            all.dedup();
            prop_assert_eq!(decided, all);
            // And planning is deterministic.
            prop_assert_eq!(super::plan(&images, &policy), plan);
        }
    }
}
