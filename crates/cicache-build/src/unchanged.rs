//! An unchanged build: the image the check found (a cache tag with inline cache, an image
//! tag with the registry exporter) was built from the same inputs, so its manifest goes under
//! the image tags (and, with inline cache, the own cache tag) instead of a build; no layer
//! moves. A registry that refuses the tag fails the build as a failed push does.

use std::time::Instant;

use cicache_docker::engine::Exporter;
use cicache_docker::report::StepCounts;

use crate::check::CacheTag;
use crate::outcome::{BuildDoc, Unchanged};
use crate::phase::{PhaseDetail, PhaseLog, human_duration};
use crate::registry::local_image;
use crate::run::{Env, Hooks, Prepared, cache_tag_names, finish};

#[allow(clippy::too_many_arguments)]
pub(crate) fn tag(
    p: &Prepared,
    env: &Env,
    hooks: &Hooks,
    mut ph: PhaseLog,
    found: CacheTag,
    hash: &str,
    check_started: Instant,
    total: Instant,
) -> BuildDoc {
    let plan = &p.plan;
    let manifest = &found.manifest;
    let from_ref = format!("{}:{}", plan.image, found.tag);
    ph.ok(
        "check",
        check_started,
        format!(
            "{from_ref} was built from the same inputs ({}): tagging it instead of building",
            hash.get(..16).unwrap_or(hash)
        ),
        Some(PhaseDetail::CheckUnchanged {
            inputs: hash.to_string(),
            from: from_ref.clone(),
            digest: manifest.digest.clone(),
        }),
    );
    let why = format!("unchanged inputs: {from_ref} is the image");
    ph.skipped("restore", why.clone());
    ph.skipped("inject", why.clone());
    ph.skipped("build", why.clone());
    let t = Instant::now();
    let mut tags: Vec<String> = plan.tags.clone();
    // With inline cache the own scope's cache tag is the image too, when the image found is
    // a cache tag's (an image tag's may lack the inline cache of the steps its build took
    // from the cache: run.rs `kept_cache_tag`; the cache tag stays then); with the registry
    // exporter it is a cache manifest, which stays as it is (the build reads the default
    // branch's when its own is missing).
    let from_cache_tag = cache_tag_names(plan).contains(&found.tag.as_str());
    if let Some(own) = plan.cache_to.as_ref().and_then(|r| r.rsplit_once(':'))
        && p.mode.exporter == Exporter::Inline
        && from_cache_tag
        && own.1 != found.tag
        && !tags.iter().any(|t| t == own.1)
    {
        tags.push(own.1.to_string());
    }
    let pushed = env.registry.client(&plan.image).and_then(|c| {
        tags.iter().try_for_each(|t| {
            c.put_manifest(t, &manifest.media_type, &manifest.raw)
                .map(drop)
                .map_err(|e| {
                    format!(
                        "tagging {from_ref} as {}:{t}: {}",
                        plan.image,
                        crate::cache_dir::chain(&e)
                    )
                })
        })
    });
    let ok = match pushed {
        Ok(()) => {
            ph.ok(
                "push",
                t,
                format!(
                    "tagged {} as {} (no layer moved)",
                    manifest.digest,
                    plan.image_refs().join(", ")
                ),
                Some(PhaseDetail::Tagged {
                    digest: manifest.digest.clone(),
                    tags: tags.clone(),
                }),
            );
            refresh_local_tags(p, env, &mut ph);
            true
        }
        Err(e) => {
            env.events.error(&e);
            ph.failed("push", t, t.elapsed().as_secs_f64(), e, None);
            false
        }
    };
    ph.skipped("cache-export", why.clone());
    ph.skipped("extract", why.clone());
    ph.skipped("save", why);
    if let Some(log) = &p.spec.log {
        let line = format!(
            "cicache: {} unchanged since {from_ref} (inputs {hash}): tagged {} without building\n",
            plan.image, manifest.digest
        );
        if let Err(e) = std::fs::write(log, line) {
            env.events.warn(&format!(
                "cannot write the build log {}: {e}",
                log.display()
            ));
        }
    }
    let mut doc = finish(
        p,
        hooks,
        ph,
        None,
        None,
        None,
        total,
        ok,
        if ok { 0 } else { 1 },
    );
    doc.unchanged = Some(Unchanged {
        from: from_ref.clone(),
        digest: manifest.digest.clone(),
        inputs: hash.to_string(),
    });
    // What Jenkinsfiles read (result.steps, result.verdict; there is no build log to report
    // on): no step ran, none was needed.
    doc.steps = Some(StepCounts::default());
    doc.verdict = Some(format!(
        "cache: unchanged inputs, {from_ref} tagged without building ({})",
        human_duration(total.elapsed())
    ));
    doc
}

/// A tag this agent holds from an older build would now name another image than the
/// registry's: pull it (only the manifest and config move when the agent has the layers). An
/// agent without the tag gets it when it is run or pulled.
fn refresh_local_tags(p: &Prepared, env: &Env, ph: &mut PhaseLog) {
    for r in p.plan.image_refs() {
        if !local_image(&p.docker, &r) {
            continue;
        }
        let pulled = p.docker.run_checked(
            &["pull".to_string(), "--quiet".to_string(), r.clone()],
            None,
            None,
            None,
        );
        match pulled {
            Ok(_) => env.events.info(&format!(
                "pulled {r}: this agent's older image of that tag is replaced"
            )),
            Err(e) => {
                let msg = format!(
                    "{r} on this agent is an older image than the registry's and could not be \
                     pulled: {e}"
                );
                env.events.warn(&msg);
                ph.warnings.push(msg);
            }
        }
    }
}
