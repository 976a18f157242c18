//! `cicache registry clear` (chosen cache tags) and `gc` (old cache tags, by the pure plan
//! of [`crate::gc`]), and the text both print.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Connection, Doing, OpError, OpResult, fmt_age, fmt_size, short};
use crate::error::error_chain;
use crate::gc::{self, Deletion, GcPolicy, KeepReason, Kept};
use crate::tags;
use crate::{DeleteFailure, ImageRecord, Registry};

/// A requested tag left alone.
#[derive(Debug, Serialize)]
pub struct Skipped {
    pub tag: String,
    pub digest: Option<String>,
    pub reason: String,
}

/// `clear`'s result.
#[derive(Debug, Serialize)]
pub struct DeleteResult {
    pub registry: String,
    pub repository: String,
    pub dry_run: bool,
    /// What was (with --dry-run: would be) deleted.
    pub deleted: Vec<Deletion>,
    /// Requested but left alone, with the reason.
    pub skipped: Vec<Skipped>,
    /// Deletions the registry refused.
    pub failures: Vec<DeleteFailure>,
}

impl DeleteResult {
    pub fn text(&self) -> String {
        deletions_text(&self.deleted, self.dry_run)
    }

    /// A warning per tag left alone and per deletion refused.
    pub fn warnings(&self) -> Vec<String> {
        let skipped = self
            .skipped
            .iter()
            .map(|s| format!("{}: not deleted: {}", s.tag, s.reason));
        skipped.chain(failure_warnings(&self.failures)).collect()
    }
}

/// Deletes the cache tags named in `wanted` (all cache tags when it is empty); with
/// `dry_run`, only says what it would delete.
pub fn clear(conn: &Connection, wanted: &[String], dry_run: bool) -> OpResult<DeleteResult> {
    if let Some(t) = wanted.iter().find(|t| !tags::classify_tag(t).is_cache()) {
        return Err(OpError::Usage(format!(
            "--tag {t:?} is not a cache tag: `clear` deletes only `cache` and `cache-<scope>` tags"
        )));
    }
    let reg = conn.connect()?;
    let images = reg
        .images()
        .doing(|| format!("listing {}", conn.target.image()))?;
    let wanted: BTreeSet<String> = wanted.iter().cloned().collect();
    let (deletions, mut skipped) =
        clear_plan(&images, &wanted, wanted.is_empty(), reg.deletes_by_tag());
    let present: BTreeSet<&str> = images
        .iter()
        .flat_map(|i| i.tags.iter().map(String::as_str))
        .collect();
    skipped.extend(
        wanted
            .iter()
            .filter(|t| !present.contains(t.as_str()))
            .map(|t| Skipped {
                tag: t.clone(),
                digest: None,
                reason: "no such tag".into(),
            }),
    );
    let failures = if dry_run {
        Vec::new()
    } else {
        reg.delete(&deletions)
            .doing(|| format!("deleting cache tags of {}", conn.target.image()))?
    };
    Ok(DeleteResult {
        registry: conn.target.registry.clone(),
        repository: conn.target.repository.clone(),
        dry_run,
        deleted: deletions,
        skipped,
        failures,
    })
}

/// Deletions for `clear`: the chosen tags of each manifest. A registry that deletes whole
/// manifests (`by_tag` false) leaves a manifest that also carries a tag not chosen.
fn clear_plan(
    images: &[ImageRecord],
    wanted: &BTreeSet<String>,
    all_cache: bool,
    by_tag: bool,
) -> (Vec<Deletion>, Vec<Skipped>) {
    let mut deletions = Vec::new();
    let mut skipped = Vec::new();
    let now = SystemTime::now();
    for i in images {
        let chosen: Vec<String> = i
            .tags
            .iter()
            .filter(|t| i.class_of(t).is_cache() && (all_cache || wanted.contains(*t)))
            .cloned()
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let all_go = chosen.len() == i.tags.len();
        if !by_tag && !all_go {
            let stays: Vec<&str> = i
                .tags
                .iter()
                .filter(|t| !chosen.contains(t))
                .map(String::as_str)
                .collect();
            skipped.extend(chosen.into_iter().map(|t| Skipped {
                tag: t,
                digest: Some(i.digest.clone()),
                reason: format!(
                    "the registry deletes whole manifests, and this one also carries {}",
                    stays.join(", ")
                ),
            }));
            continue;
        }
        deletions.push(Deletion {
            digest: i.digest.clone(),
            tags: chosen,
            manifest: all_go,
            age_seconds: i.age(now).map(|d| d.as_secs()),
            size: i.size,
        });
    }
    (deletions, skipped)
}

fn failure_warnings(failures: &[DeleteFailure]) -> impl Iterator<Item = String> + '_ {
    failures.iter().map(|f| {
        format!(
            "the registry refused to delete {} ({}): {} {}",
            f.tag.as_deref().unwrap_or(&f.digest),
            short(&f.digest),
            f.code,
            f.reason
        )
    })
}

/// A line per deletion and a count.
fn deletions_text(deletions: &[Deletion], dry_run: bool) -> String {
    let verb = if dry_run { "would delete" } else { "deleted" };
    let mut lines = Vec::new();
    for d in deletions {
        let name = if d.tags.is_empty() {
            "(untagged)".to_string()
        } else {
            d.tags.join(", ")
        };
        lines.push(format!(
            "{verb} {name}  {}  {}  {}{}",
            short(&d.digest),
            fmt_age(d.age_seconds),
            fmt_size(d.size),
            if d.manifest { "" } else { "  (tag only)" }
        ));
    }
    let tags: usize = deletions.iter().map(|d| d.tags.len()).sum();
    let untagged = deletions.iter().filter(|d| d.tags.is_empty()).count();
    lines.push(format!(
        "{verb} {tags} cache tags{}",
        if untagged > 0 {
            format!(" and {untagged} untagged manifests")
        } else {
            String::new()
        }
    ));
    lines.join("\n")
}

/// What `gc` is asked to do.
#[derive(Debug, Clone)]
pub struct GcRequest {
    pub max_age: Duration,
    /// Tags never deleted.
    pub keep: BTreeSet<String>,
    /// Also untagged manifests (where the API can list them).
    pub untagged: bool,
    /// Manage base tags: keep the newest N and those images name.
    pub keep_bases: Option<usize>,
    pub dry_run: bool,
}

/// `gc`'s result: the plan, and what carrying it out met.
#[derive(Debug, Serialize)]
pub struct GcResult {
    pub registry: String,
    pub repository: String,
    pub dry_run: bool,
    pub max_age_seconds: u64,
    pub keep: Vec<String>,
    pub untagged: bool,
    /// `--keep-bases N`, when base tags are managed.
    pub keep_bases: Option<usize>,
    /// The base tags images of the repository name (`io.cicache.base`), with --keep-bases.
    pub bases_in_use: Vec<String>,
    /// What was (with --dry-run: would be) deleted: the plan.
    pub delete: Vec<Deletion>,
    /// Everything that stays, with the reason.
    pub kept: Vec<Kept>,
    /// Bytes of the manifests deleted (layers shared with other images may stay).
    pub bytes: u64,
    pub failures: Vec<DeleteFailure>,
    /// What could not be done as asked (the rest was).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl GcResult {
    /// The deletions, then why the rest stays (each kept tag with `verbose`).
    pub fn text(&self, verbose: bool) -> String {
        let mut text = deletions_text(&self.delete, self.dry_run);
        let mut counts = BTreeMap::<KeepReason, usize>::new();
        for k in &self.kept {
            *counts.entry(k.reason).or_default() += 1;
            if verbose {
                text.push_str(&format!(
                    "\nkept {}  {}  ({})",
                    k.tag.as_deref().unwrap_or("(untagged)"),
                    short(&k.digest),
                    k.reason.describe()
                ));
            }
        }
        if !counts.is_empty() {
            let parts: Vec<String> = counts
                .iter()
                .map(|(r, n)| format!("{n} {}", r.describe()))
                .collect();
            text.push_str(&format!("\nkept: {}", parts.join("; ")));
        }
        text
    }
}

/// Plans the collection ([`gc::plan`]) and, unless `dry_run`, carries it out.
pub fn gc(conn: &Connection, req: GcRequest) -> OpResult<GcResult> {
    let reg = conn.connect()?;
    let mut warnings = Vec::new();
    if req.untagged && !reg.lists_untagged() {
        warnings.push(format!(
            "--untagged: the distribution API of {} cannot list untagged manifests; \
             run the registry's own garbage collection (`registry garbage-collect --delete-untagged`) on its host",
            conn.target.registry
        ));
    }
    let images = reg
        .images()
        .doing(|| format!("listing {}", conn.target.image()))?;
    let mut keep_bases = req.keep_bases;
    let mut in_use = BTreeSet::new();
    if keep_bases.is_some() {
        match bases_in_use(conn, &reg, &images) {
            Ok(found) => in_use = found,
            Err(e) => {
                warnings.push(format!(
                    "--keep-bases: cannot read which bases the images of {} name ({}); \
                     no base tag is deleted this time",
                    conn.target.image(),
                    error_chain(&e)
                ));
                keep_bases = None;
            }
        }
    }
    let policy = GcPolicy {
        now: SystemTime::now(),
        max_age: req.max_age,
        keep: req.keep.clone(),
        untagged: req.untagged,
        delete_by_tag: reg.deletes_by_tag(),
        keep_bases,
        bases_in_use: in_use.clone(),
    };
    let plan = gc::plan(&images, &policy);
    let failures = if req.dry_run {
        Vec::new()
    } else {
        reg.delete(&plan.delete)
            .doing(|| format!("deleting old cache tags of {}", conn.target.image()))?
    };
    warnings.extend(failure_warnings(&failures));
    Ok(GcResult {
        registry: conn.target.registry.clone(),
        repository: conn.target.repository.clone(),
        dry_run: req.dry_run,
        max_age_seconds: req.max_age.as_secs(),
        keep: req.keep.into_iter().collect(),
        untagged: req.untagged,
        keep_bases,
        bases_in_use: in_use.into_iter().collect(),
        bytes: plan.bytes(),
        delete: plan.delete,
        kept: plan.keep,
        failures,
        warnings,
    })
}

/// The base tags of this repository that its other images (app images, cache tags) name in
/// their `io.cicache.base` label, read from each image config through the distribution API
/// (ECR too, with a GetAuthorizationToken login); every platform's image of an index.
fn bases_in_use(
    conn: &Connection,
    reg: &Registry,
    images: &[ImageRecord],
) -> OpResult<BTreeSet<String>> {
    let reader = reg
        .reader(&conn.oci_options())
        .doing(|| "a client to read image configs".into())?;
    Ok(reader.base_tags_in_use(images)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn img(digest: &str, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            digest: digest.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            size: Some(1),
            pushed: None,
            last_pulled: None,
            media_type: None,
            artifact_type: None,
            children: Vec::new(),
        }
    }

    #[test]
    fn clear_takes_cache_tags_only() {
        let images = vec![
            img("sha256:1", &["cache"]),
            img("sha256:2", &["cache-a", "v1"]),
            img("sha256:3", &["latest"]),
            img("sha256:4", &["cache-b"]),
        ];
        let (d, s) = clear_plan(&images, &BTreeSet::new(), true, true);
        let tags: Vec<_> = d.iter().flat_map(|d| d.tags.clone()).collect();
        assert_eq!(tags, vec!["cache", "cache-a", "cache-b"]);
        assert!(s.is_empty());
        assert!(!d[1].manifest, "v1 stays on sha256:2");
        // Whole-manifest registries leave a manifest that carries another tag.
        let (d, s) = clear_plan(&images, &BTreeSet::new(), true, false);
        let tags: Vec<_> = d.iter().flat_map(|d| d.tags.clone()).collect();
        assert_eq!(tags, vec!["cache", "cache-b"]);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].tag, "cache-a");
        // Only the named ones.
        let wanted: BTreeSet<String> = ["cache-b".to_string()].into();
        let (d, _) = clear_plan(&images, &wanted, false, false);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].tags, vec!["cache-b"]);
    }

    #[test]
    fn deletions_read_as_sentences() {
        let d = vec![Deletion {
            digest: "sha256:0123456789abcdef".into(),
            tags: vec![],
            manifest: true,
            age_seconds: Some(3 * 86_400),
            size: Some(1500),
        }];
        let t = deletions_text(&d, true);
        assert!(
            t.contains("would delete (untagged)  0123456789ab  3d  1.50 kB"),
            "{t}"
        );
        assert!(
            t.ends_with("would delete 0 cache tags and 1 untagged manifests"),
            "{t}"
        );
    }
}
