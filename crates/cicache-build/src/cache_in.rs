//! The pip cache into the build: restore the cache dir from the store, then inject it into
//! the cache mounts, before the build; or, when the inject cannot pay, leave the restore for
//! after the build's steps.
//!
//! The inject copies the whole cache dir into BuildKit's cache mounts. When the check found
//! that the cache-mount steps that run again made little of it ([`inject_cannot_pay`]), the
//! inject is skipped: pip downloads what those steps need. The restored dir then serves only
//! the extract, which keeps its files beside what the steps added so the store loses nothing;
//! the restore waits for it ([`CacheIn::restore_later`]) and runs beside the export and the push
//! instead of before the build.

use std::time::Instant;

use cicache_docker::dance;
use cicache_docker::dockerfile::CacheMount;
use cicache_docker::report::human_bytes;

use crate::cache_dir::{self, RestoreDoc};
use crate::check;
use crate::error::BuildError;
use crate::mounts::describe_dance;
use crate::phase::{PhaseDetail, PhaseLog};
use crate::prefetch;
use crate::run::{Env, Hooks, Plan, Prepared};

/// What went into the build, for the phases after it.
#[derive(Debug, Default)]
pub(crate) struct CacheIn {
    /// The restore's record, when it ran before the build.
    pub restored: Option<RestoreDoc>,
    /// The restore was left for after the build's steps: [`restore_left`] runs before the
    /// extract (nothing reads the dir before then).
    pub restore_later: bool,
    /// The mounts started with the cache dir's files (else the extract merges).
    pub injected: bool,
}

/// Restore the cache dir from the store, then inject it into the cache mounts (after the
/// prefetch build matched its steps, when one runs).
pub(crate) fn restore_and_inject(
    p: &Prepared,
    env: &Env,
    hooks: &Hooks,
    plan: &Plan,
    gate: &prefetch::Gate,
    ph: &mut PhaseLog,
) -> Result<CacheIn, BuildError> {
    let spec = p.spec;
    let cache_dir = &spec.cache_dir;
    let from_layers = plan
        .mounts_from
        .as_ref()
        .map(|from| format!("the cache-mount steps come from the layer cache of {from}"));
    let inject_skipped_by = if !spec.switches.inject {
        Some("--no-inject".to_string())
    } else if let Some(why) = &from_layers {
        Some(why.clone())
    } else if p.mounts.is_empty() {
        Some("the Dockerfile has no RUN --mount=type=cache".to_string())
    } else {
        None
    };
    let mut done = CacheIn::default();
    if let Some(why) = hooks.restored_by {
        ph.skipped("restore", why);
    } else if let Some(why) = &from_layers {
        ph.skipped("restore", why.clone());
    } else if !spec.switches.restore {
        ph.skipped("restore", "--no-restore");
    } else {
        if inject_skipped_by.is_none()
            && let Some(why) = inject_cannot_pay_before_restore(p, env, plan)
        {
            ph.skipped("inject", why);
            done.restore_later = true;
            return Ok(done);
        }
        done.restored = restore(p, env, ph, None)?;
    }

    if let Some(why) = inject_skipped_by {
        ph.skipped("inject", why);
    } else if !cache_dir.is_dir() {
        ph.skipped("inject", format!("{} does not exist", cache_dir.display()));
    } else if let Some(why) = plan.rerun.as_ref().and_then(|r| {
        // A hit made the dir the entry (the restore swaps it into place): its size, as the
        // lookup gives it; else walk the dir as it is.
        let bytes = match &done.restored {
            Some(doc) if doc.outcome.hit => doc.outcome.total_size,
            _ => dance::dir_stats(cache_dir).1,
        };
        inject_cannot_pay(r, bytes)
    }) {
        ph.skipped("inject", why);
    } else {
        let t = Instant::now();
        gate.wait();
        let refs: Vec<&CacheMount> = p.mounts.iter().collect();
        let echo = |line: &str| env.events.docker_line(line);
        let verbose = env
            .events
            .verbose()
            .then_some(&echo as &(dyn Fn(&str) + Sync));
        match dance::inject(&p.docker, &refs, cache_dir, &p.dance, verbose) {
            Ok(r) => {
                done.injected = true;
                let msg = describe_dance(&r, "injected").join("; ");
                ph.ok("inject", t, msg, Some(PhaseDetail::Dance(r)));
            }
            Err(e) => ph.cache_failed("inject", t, e)?,
        }
    }
    Ok(done)
}

/// Why the inject is skipped, decided from the size of the store entry the restore would take
/// (`None`: restore now, and decide after it as before). Only when the whole build's inputs
/// were hashed: the hash refuses a Dockerfile that copies the cache dir into the image (or
/// would copy what a restore puts there), so nothing reads the dir before the extract and
/// the restore may wait for it. Not with `strict`: a failed restore ends the command before
/// the build, not after its push.
fn inject_cannot_pay_before_restore(p: &Prepared, env: &Env, plan: &Plan) -> Option<String> {
    let rerun = plan.rerun.as_ref()?;
    if p.hashed.inputs.is_err() || env.settings.strict {
        return None;
    }
    let (key, restore_keys) = env.keys(p.spec).ok()?;
    let bytes = cache_dir::lookup_bytes(
        env.store,
        env.settings,
        key,
        restore_keys,
        &p.spec.cache_dir,
    )?;
    inject_cannot_pay(rerun, bytes)
}

/// The restore that was left for after the build's steps ([`CacheIn::restore_later`]; `None`
/// when there is none): `at_export`, beside the build's export, else after the build returned.
pub(crate) fn restore_left(
    p: &Prepared,
    env: &Env,
    cache_in: &CacheIn,
    at_export: bool,
    ph: &mut PhaseLog,
) -> Result<Option<RestoreDoc>, BuildError> {
    if !cache_in.restore_later {
        return Ok(None);
    }
    let note = if at_export {
        " (at the build's export: the inject was skipped and nothing read the dir before)"
    } else {
        " (after the build: the inject was skipped and nothing read the dir before)"
    };
    restore(p, env, ph, Some(note))
}

/// The restore phase: the cache dir from the store (`note` ends its message: when it ran).
fn restore(
    p: &Prepared,
    env: &Env,
    ph: &mut PhaseLog,
    note: Option<&str>,
) -> Result<Option<RestoreDoc>, BuildError> {
    let spec = p.spec;
    let cache_dir = &spec.cache_dir;
    let t = Instant::now();
    let result = env.keys(spec).and_then(|(key, restore_keys)| {
        cache_dir::restore(
            env.store,
            env.settings,
            key,
            restore_keys,
            cache_dir,
            false,
            env.events,
        )
        .map_err(|e| e.to_string())
    });
    match result {
        Ok(doc) => {
            let o = &doc.outcome;
            let mut msg = if o.hit {
                format!(
                    "restored {} from {} (scope {})",
                    cache_dir.display(),
                    o.matched_key.as_deref().unwrap_or_default(),
                    o.matched_scope.as_deref().unwrap_or_default()
                )
            } else {
                "cache miss: starting with the cache dir as it is".to_string()
            };
            if let Some(note) = note {
                msg.push_str(note);
            }
            let problems = o.warnings.clone();
            ph.store_result(
                "restore",
                t,
                msg,
                &problems,
                false,
                PhaseDetail::Restore(doc.clone()),
            );
            Ok(Some(doc))
        }
        Err(e) => {
            ph.cache_failed("restore", t, e)?;
            Ok(None)
        }
    }
}

/// How many times the bytes the steps that run again made must the cache dir hold for its
/// inject to be skipped. The inject copies the whole dir into the builder (316 MB: 2.5 s on
/// the bench VM, and the pull after it slower by its writes); the steps can save at most about
/// their layers' bytes of downloads (a wheel is about the size of what it installs, both
/// compressed): 16 MB, 0.8 s at 20 MB/s, for the layered bench app's second pip step.
const INJECT_PAYS_FROM: u64 = 10;

/// Why the inject is skipped when the cache-mount steps that run again (`rerun`) made a
/// small part of the `cache_bytes` it would copy (`None`: it runs). pip then downloads what
/// those steps need; the extract keeps the cache dir's files beside what they add
/// (`merge`), so the store loses nothing.
fn inject_cannot_pay(rerun: &check::Rerun, cache_bytes: u64) -> Option<String> {
    let enough = rerun.bytes.checked_mul(INJECT_PAYS_FROM)?;
    (enough < cache_bytes).then(|| {
        format!(
            "the cache-mount steps that run again ({} of {}) made {} of layers in {}, under \
             1/{INJECT_PAYS_FROM} of the cache dir's {}: copying it into the builder would \
             cost more than it can save them; the extract keeps its files",
            rerun.total.saturating_sub(rerun.unchanged),
            rerun.total,
            human_bytes(rerun.bytes),
            rerun.from,
            human_bytes(cache_bytes),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inject_is_skipped_only_for_a_small_part_of_the_cache() {
        let rerun = |bytes| check::Rerun {
            from: "r/app:latest".into(),
            unchanged: 1,
            total: 2,
            bytes,
        };
        // The layered bench app: 16 MB of layers against a 316 MB cache dir.
        let why = inject_cannot_pay(&rerun(16_000_000), 316_000_000).expect("skipped");
        assert!(why.contains("(1 of 2)"), "{why}");
        assert!(why.contains("r/app:latest"), "{why}");
        assert!(why.contains("16.0 MB") && why.contains("316 MB"), "{why}");
        assert!(!why.contains("  "), "{why}");
        // A tenth or more: the inject runs.
        assert_eq!(inject_cannot_pay(&rerun(31_600_000), 316_000_000), None);
        assert_eq!(inject_cannot_pay(&rerun(340_000_000), 316_000_000), None);
        // Steps that made nothing, an empty dir, a size that overflows.
        assert!(inject_cannot_pay(&rerun(0), 1).is_some());
        assert_eq!(inject_cannot_pay(&rerun(0), 0), None);
        assert_eq!(inject_cannot_pay(&rerun(u64::MAX), u64::MAX), None);
    }
}
