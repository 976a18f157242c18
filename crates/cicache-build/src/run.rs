//! The phase sequence of one build, with its overlaps:
//!
//! ```text
//! check ─┬─ restore ── inject ─┬─ build ─────────────┬─ push ── cache-export ─┬─ outcome
//!        └─ prefetch ──────────┘   └ at its export ── extract ── save ───────┘
//! ```
//!
//! Restore and inject run beside the prefetch (the store's disk and the daemon's network);
//! when the inject cannot pay, the restore waits for the extract (cache_in.rs). Extract and
//! save start when BuildKit begins the build's export (every step has run:
//! overlap.rs) and run beside the export and the push (the daemon's disk and the store beside
//! gzip and the registry's network). The check may end the build early: an unchanged image is
//! tagged.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use cicache_docker::build::{BuildPlan, cache_refs};
use cicache_docker::dance::{self, DanceOptions};
use cicache_docker::dockerfile::{self, CacheMount};
use cicache_docker::engine::{
    BuildMode, Docker, DockerError, Exporter, Flavour, pull_keeps_inline_cache,
};
use cicache_docker::report::BuildReport;
use cicache_docker::transient::transient_reason;

use crate::base::{BaseRequest, ensure_base};
use crate::cache_dir::{self, CacheStore, RestoreDoc, SaveDoc, SaveMode};
use crate::cache_in::{self, CacheIn};
use crate::check::{self, CheckInput, Decision};
use crate::error::BuildError;
use crate::events::Events;
use crate::inputs::{self, Hashed};
use crate::mounts::{describe_dance, select_mounts};
use crate::outcome::{BaseFailedDoc, BuildDoc, BuildResult, DryRunDoc, DryRunMount};
use crate::overlap::StepsDone;
use crate::phase::{PhaseDetail, PhaseLog};
use crate::prefetch;
use crate::registry::{RegistryAccess, has_registry_host};
use crate::spec::{BuildSpec, CacheSettings};
use crate::unchanged;

/// What every build of one command shares: the settings, the store (opened once), where the
/// messages go, and the cache keys (rendered once).
pub struct Env<'a> {
    pub settings: &'a CacheSettings,
    pub store: &'a CacheStore,
    pub events: &'a dyn Events,
    pub(crate) registry: RegistryAccess,
    keys: OnceLock<Result<(String, Vec<String>), String>>,
}

impl<'a> Env<'a> {
    pub fn new(settings: &'a CacheSettings, store: &'a CacheStore, events: &'a dyn Events) -> Self {
        Env {
            settings,
            store,
            events,
            registry: RegistryAccess {
                timeout: settings.registry_timeout,
            },
            keys: OnceLock::new(),
        }
    }

    /// The key and the restore-key prefixes, rendered on first use (`hashFiles` walks the
    /// tree once per command).
    pub(crate) fn keys(&self, spec: &BuildSpec) -> Result<&(String, Vec<String>), String> {
        self.keys
            .get_or_init(|| {
                let restore_keys = spec
                    .keys
                    .restore_keys
                    .iter()
                    .map(|k| {
                        cache_dir::render_key(k)
                            .map_err(|e| format!("rendering the restore key {k:?}: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let key = cache_dir::render_key(&spec.keys.key).map_err(|e| e.to_string())?;
                Ok((key, restore_keys))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// What a build nested in another command (the base image's) does differently.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    /// Put before each phase's log line.
    pub prefix: &'static str,
    /// `KEY=VALUE` labels for the image.
    pub labels: Vec<String>,
    /// The cache refs to read instead of the scope cache tags; the image carries its own
    /// inline cache (a base image: its predecessor).
    pub own_cache: Option<Vec<String>>,
    /// The restore phase is done already (by the base build): why.
    pub restored_by: Option<&'static str>,
    /// The save phase comes later (in the app build): why.
    pub saved_by: Option<&'static str>,
    /// The base image's result, for the report.
    pub base: Option<Box<crate::base::BaseDoc>>,
    /// Warnings of the base step, for the report.
    pub warnings: Vec<String>,
}

/// `cicache build`: the base image first when asked, then the cached build.
pub fn build(mut spec: BuildSpec, env: &Env) -> Result<BuildResult, BuildError> {
    let mut hooks = Hooks::default();
    if let Some(opts) = spec.base.clone() {
        let req = BaseRequest {
            image: spec.image.clone(),
            context: spec.context.clone(),
            dockerfile: opts.dockerfile.clone(),
            inputs: opts.inputs.clone(),
            build_args: opts.build_args.clone(),
            platform: opts.platform.clone(),
            dry_run: spec.dry_run,
            build: BuildSpec {
                log: None,
                ..spec.clone()
            },
            save_later: spec.switches.save,
        };
        let out = ensure_base(req, env)?;
        if out.code != 0 {
            return Ok(BuildResult::BaseFailed(Box::new(BaseFailedDoc {
                code: out.code,
                ok: false,
                exit_code: out.code,
                image: spec.image.clone(),
                base: Box::new(out.doc),
                phases: Vec::new(),
                warnings: out.warnings,
            })));
        }
        spec.build_args
            .push(format!("{}={}", opts.arg, out.reference));
        hooks.labels.push(format!(
            "{}={}",
            cicache_docker::base::LABEL_BASE,
            out.reference
        ));
        if out.built && spec.switches.restore {
            hooks.restored_by = Some("done by the base build");
        }
        hooks.base = Some(Box::new(out.doc));
        hooks.warnings = out.warnings;
    }
    run_build(spec, env, &hooks)
}

/// Everything a build is made from, worked out before the first phase.
pub(crate) struct Prepared<'s> {
    pub spec: &'s BuildSpec,
    pub docker: Docker,
    pub flavour: Flavour,
    /// The cache exporter and builder on this engine.
    pub mode: BuildMode,
    pub dockerfile: PathBuf,
    pub mounts: Vec<CacheMount>,
    pub dance: DanceOptions,
    pub plan: BuildPlan,
    pub hashed: Hashed,
    /// The daemon's version, asked once when the build mode did not ask it.
    daemon_version: std::sync::OnceLock<Option<String>>,
}

/// One build, without its base.
pub(crate) fn run_build(
    spec: BuildSpec,
    env: &Env,
    hooks: &Hooks,
) -> Result<BuildResult, BuildError> {
    let total = Instant::now();
    if let Some(log) = &spec.log {
        // One log per build: the helper builds and the build append to it. Its directory
        // is made (`--log .cicache/build.log` in a fresh workspace).
        let parent = log.parent().filter(|p| !p.as_os_str().is_empty());
        parent
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::File::create(log).map(drop))
            .map_err(|source| BuildError::Write {
                path: log.clone(),
                source,
            })?;
    }
    let mut ph = PhaseLog::new(env.events, env.settings.strict, hooks.prefix, total);
    ph.warnings = hooks.warnings.clone();
    let p = prepare(&spec, env, hooks, &mut ph)?;
    if spec.dry_run {
        return Ok(BuildResult::DryRun(Box::new(dry_run(&p, hooks))));
    }
    execute(&p, env, hooks, ph, total).map(|d| BuildResult::Built(Box::new(d)))
}

/// The flavour, the Dockerfile, its cache mounts, the cache refs, the hashes and the
/// command lines. A Dockerfile that cannot be parsed only costs the dance (a warning).
fn prepare<'s>(
    spec: &'s BuildSpec,
    env: &Env,
    hooks: &Hooks,
    ph: &mut PhaseLog,
) -> Result<Prepared<'s>, BuildError> {
    let docker = Docker::new(&spec.docker.program);
    let mode = spec
        .docker
        .flavour
        .mode(&docker, spec.docker.builder.as_deref());
    let flavour = mode.flavour;
    env.events.info(&format!("docker: {}", mode.reason));
    let dockerfile = spec.dockerfile_path();
    if !dockerfile.is_file() {
        return Err(BuildError::Usage(format!(
            "the Dockerfile {} does not exist (pass -f FILE)",
            dockerfile.display()
        )));
    }
    let tags = if spec.tags.is_empty() {
        vec!["latest".to_string()]
    } else {
        spec.tags.clone()
    };
    let registry_cache = spec.registry_cache.unwrap_or_else(|| {
        let on = has_registry_host(&spec.image);
        if !on {
            env.events.info(&format!(
                "registry cache: off ({} names no registry host; pass --registry-cache to force it)",
                spec.image
            ));
        }
        on
    });
    // The default branch writes IMAGE:cache; other scopes IMAGE:cache-<scope> (build.rs).
    let own_scope =
        (!env.settings.fallback_scopes.is_empty()).then_some(env.settings.scope.as_str());
    let (cache_from, cache_to) = match &hooks.own_cache {
        Some(refs) => (refs.clone(), None),
        None => {
            let (from, to) = cache_refs(&spec.image, own_scope);
            (from, Some(to))
        }
    };
    let df = match dockerfile::parse_file(&dockerfile) {
        Ok(df) => Some(df),
        Err(e) => {
            ph.cache_failed(
                "parse",
                Instant::now(),
                format!("reading the Dockerfile's cache mounts: {e}"),
            )?;
            None
        }
    };
    let mounts: Vec<CacheMount> = match &df {
        Some(df) => select_mounts(df, &spec.docker.mount_ids, &dockerfile)?
            .into_iter()
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    if let (Some(c), Flavour::Classic) = (spec.docker.compression, flavour) {
        env.events.warn(&format!(
            "--compression {}: the classic builder (docker build without buildx) pushes gzip \
             layers; layer compression needs buildx (ignored)",
            c.kind.as_str()
        ));
    }
    let dance = DanceOptions {
        flavour,
        helper_image: spec.docker.helper_image.clone(),
        extra_args: mode.builder_args(),
        // --log holds the user's build only, so `cicache report LOG` (and the Jenkins step's
        // report made from it) counts no helper steps; the dance shows with -v.
        log: None,
    };
    let hashed = match inputs::not_hashed(spec.dry_run, registry_cache, hooks.own_cache.is_some()) {
        Some(why) => Hashed {
            labels: hooks.labels.clone(),
            inputs: Err(why.to_string()),
            mount_inputs: None,
            mount_steps: Vec::new(),
            mount_commands: Vec::new(),
            platform: None,
        },
        None => inputs::hash(
            spec,
            &dockerfile,
            df.as_ref(),
            &mounts,
            hooks.labels.clone(),
            &docker,
            mode.daemon_platform.as_deref(),
            &env.registry,
        ),
    };
    let plan = BuildPlan {
        flavour,
        image: spec.image.clone(),
        tags,
        dockerfile: dockerfile.clone(),
        context: spec.context.clone(),
        build_args: spec.build_args.clone(),
        target: spec.target.clone(),
        registry_cache,
        cache_from,
        cache_to,
        labels: hashed.labels.clone(),
        push: spec.push,
        extra: spec.extra.clone(),
        compression: spec.docker.compression,
    };
    Ok(Prepared {
        spec,
        docker,
        flavour,
        mode,
        dockerfile,
        mounts,
        dance,
        plan,
        hashed,
        daemon_version: std::sync::OnceLock::new(),
    })
}

/// `--dry-run`: the commands the build would run.
fn dry_run(p: &Prepared, hooks: &Hooks) -> DryRunDoc {
    let program = p.docker.program.display().to_string();
    let with_program = |a: Vec<String>| {
        let mut v = vec![program.clone()];
        v.extend(a);
        v
    };
    DryRunDoc {
        ok: true,
        dry_run: true,
        flavour: p.flavour,
        key: p.spec.keys.key.clone(),
        restore_keys: p.spec.keys.restore_keys.clone(),
        cache_dir: p.spec.cache_dir.clone(),
        mounts: p
            .mounts
            .iter()
            .map(|m| DryRunMount {
                id: m.id.clone(),
                target: m.target.clone(),
                line: m.line,
                dance_flag: m.dance_flag(),
            })
            .collect(),
        build_command: with_program(p.build_args()),
        push_commands: p
            .plan
            .push_commands()
            .into_iter()
            .map(&with_program)
            .collect(),
        cache_push_commands: p
            .plan
            .cache_push_commands_with(p.mode.exporter)
            .into_iter()
            .map(&with_program)
            .collect(),
        base: hooks.base.clone(),
    }
}

/// What the check left to do.
pub(crate) struct Plan {
    /// The cache-mount steps come from the layer cache of this cache tag.
    pub mounts_from: Option<String>,
    pub prefetch: Option<check::Prefetch>,
    /// The cache-mount steps that run again while the layer cache has the ones before them.
    pub rerun: Option<check::Rerun>,
}

/// Runs the phases.
fn execute(
    p: &Prepared,
    env: &Env,
    hooks: &Hooks,
    mut ph: PhaseLog,
    total: Instant,
) -> Result<BuildDoc, BuildError> {
    let spec = p.spec;
    let check_started = Instant::now();
    let plan = match run_check(p, env, &mut ph, check_started)? {
        Checked::Unchanged(from, hash) => {
            return Ok(unchanged::tag(
                p,
                env,
                hooks,
                ph,
                from,
                &hash,
                check_started,
                total,
            ));
        }
        Checked::Go(plan) => plan,
    };
    let job = match &plan.prefetch {
        Some(_) if !spec.switches.prefetch => {
            ph.skipped("prefetch", "--no-prefetch");
            None
        }
        Some(pf) => match prefetch::not_needed_on(p.daemon_version()) {
            Some(why) => {
                ph.skipped("prefetch", why);
                None
            }
            None => Some(prefetch::plan(pf, &p.dockerfile, &p.plan)),
        },
        None => None,
    };
    let gate = prefetch::Gate::new(job.as_ref());
    let (cache_in, finished) = std::thread::scope(|s| {
        let worker = job
            .as_ref()
            .map(|j| s.spawn(|| prefetch::run(&p.docker, j, &gate)));
        let cache_in = cache_in::restore_and_inject(p, env, hooks, &plan, &gate, &mut ph);
        (cache_in, worker.map(|h| h.join()))
    });
    let cache_in = cache_in?;
    let removable = match (&job, finished) {
        (Some(j), Some(f)) => prefetch::record(&mut ph, j, f)?,
        _ => None,
    };

    // The build, with extract and save beside its export and push (overlap.rs): they start
    // at BuildKit's first `exporting` line, when every step has run, or else when the build
    // returns.
    let steps_done = StepsDone::default();
    let mut out_ph = PhaseLog::new(env.events, env.settings.strict, hooks.prefix, total);
    let t = Instant::now();
    let (built, early_saved) = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let (lines, at_export) = steps_done.wait()?;
            let untouched = mounts_untouched(&lines);
            Some(after_steps(
                p,
                env,
                hooks,
                &cache_in,
                untouched,
                at_export,
                &mut out_ph,
            ))
        });
        let built = build_then_push(p, env, &mut ph, &steps_done, t, &removable);
        let saved = worker.join().unwrap_or_else(|_| {
            Some(Err(BuildError::Strict {
                phase: "extract".into(),
                message: "the extract and save thread panicked".into(),
            }))
        });
        (built, saved)
    });
    if built.is_err() && early_saved.is_none() {
        // docker did not run the build: the cache dir ends restored all the same.
        let _ = cache_in::restore_left(p, env, &cache_in, false, &mut ph);
    }
    let Built {
        out,
        build_cmd,
        build_secs,
        parsed,
        pushed,
    } = built?;
    let untouched = parsed.cache_mount_steps_cached() == Some(true);
    let mut report = spec.switches.report.then_some(parsed);
    if let Some(r) = report.as_mut() {
        r.set_wall_time(build_secs);
    }
    if out.code != 0 {
        let errs = out.error_lines(12);
        ph.failed(
            "build",
            t,
            build_secs,
            errs.join("\n"),
            Some(PhaseDetail::BuildFailed {
                exit_code: out.code,
                command: build_cmd,
            }),
        );
        env.events.error(&format!(
            "docker build failed with exit code {}:\n  {}",
            out.code,
            errs.join("\n  ")
        ));
        let (restored, saved) = match early_saved {
            // Every step had run when the export began: the mounts were extracted and saved
            // as after a successful build.
            Some(saved) => {
                ph.skipped("push", "the build failed");
                ph.skipped("cache-export", "the build failed");
                env.events.warn(
                    "the docker build failed in its export or push, after every step had run: \
                     extract and save had started at the export and ran as for a successful build",
                );
                ph.append(out_ph);
                saved.unwrap_or_default()
            }
            None => save_after_failure(p, env, hooks, &cache_in, untouched, &mut ph),
        };
        let restored = restored.or(cache_in.restored);
        let code = u8::try_from(out.code).ok().filter(|c| *c != 0).unwrap_or(1);
        let mut doc = finish(
            p, hooks, ph, restored, saved, report, total, false, out.code,
        );
        doc.code = code;
        return Ok(doc);
    }
    pushed?;
    ph.append(out_ph);
    let (restored, saved) = early_saved.unwrap_or(Ok((None, None)))?;
    let restored = restored.or(cache_in.restored);
    Ok(finish(
        p, hooks, ph, restored, saved, report, total, true, 0,
    ))
}

/// What [`build_then_push`] did.
struct Built {
    out: cicache_docker::engine::RunOutput,
    build_cmd: Vec<String>,
    build_secs: f64,
    parsed: BuildReport,
    /// The push and cache export's result (`Ok` when the build failed: they did not run).
    pushed: Result<(), BuildError>,
}

/// The image build, then (when it succeeded) the push and the cache export; `steps_done`
/// hears its lines and is told how it ended. The build phase is recorded by the caller.
fn build_then_push(
    p: &Prepared,
    env: &Env,
    ph: &mut PhaseLog,
    steps_done: &StepsDone,
    t: Instant,
    removable: &Option<String>,
) -> Result<Built, BuildError> {
    let watch = |line: &str| steps_done.observe(line);
    let built = run_docker_build(p, env, ph, &watch);
    steps_done.finish(matches!(&built, Ok((out, _, _)) if out.code == 0));
    let build_secs = t.elapsed().as_secs_f64();
    let (out, build_cmd, exporter) = built?;
    if let Some(r) = removable {
        let _ = p.docker.output(&["rmi".to_string(), r.clone()]);
    }
    let parsed = cicache_docker::report::parse_log(&out.lines.join("\n"));
    if out.code != 0 {
        return Ok(Built {
            out,
            build_cmd,
            build_secs,
            parsed,
            pushed: Ok(()),
        });
    }
    ph.ok(
        "build",
        t,
        format!("built {}", p.plan.image_refs().join(", ")),
        Some(PhaseDetail::Build {
            command: build_cmd.clone(),
        }),
    );
    // The inline cache tag this build took every step from, or (after docker 20.10) its
    // cache-mount steps: pushing the image over it would leave a cache tag without them.
    let cache_tag_kept = (exporter == Exporter::Inline)
        .then_some(p.plan.cache_to.as_deref())
        .flatten()
        .and_then(|r| kept_cache_tag(p, &parsed, r));
    // Push and cache export beside extract and save: the push is network and gzip, the
    // extract and save are the daemon's and the store's disk; the cache work hides behind it.
    let pushed = push_and_export(p, env, exporter, cache_tag_kept.as_deref(), ph);
    Ok(Built {
        out,
        build_cmd,
        build_secs,
        parsed,
        pushed,
    })
}

/// Every RUN with a cache mount came from the layer cache (by the build's log): the mounts
/// hold nothing new.
fn mounts_untouched(lines: &[String]) -> bool {
    cicache_docker::report::parse_log(&lines.join("\n")).cache_mount_steps_cached() == Some(true)
}

impl Prepared<'_> {
    /// The daemon's version (`None`: it did not say).
    pub(crate) fn daemon_version(&self) -> Option<&str> {
        self.daemon_version
            .get_or_init(|| {
                self.mode
                    .daemon_version
                    .clone()
                    .or_else(|| self.docker.server_version().ok())
            })
            .as_deref()
    }

    /// The image build's docker arguments on this engine.
    fn build_args(&self) -> Vec<String> {
        self.plan
            .build_args_with(self.mode.exporter, self.mode.builder.as_deref())
    }
}

/// The words of a builder that refuses the registry cache export (buildx's docker driver on
/// the graph-driver image store).
fn refused_cache_export(out: &cicache_docker::engine::RunOutput) -> bool {
    out.lines.iter().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("cache export is not supported")
            || l.contains("cache export feature is currently not supported")
    })
}

/// How long a push the registry failed transiently waits before it goes again.
const PUSH_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the image build. A builder that still refuses the registry cache export is a cache
/// problem, not a failed build: the build runs again with inline cache (and the cache tag
/// pushed after it), with a warning; strict, it fails. Returns docker's output, the command
/// that made it and the exporter it used.
fn run_docker_build(
    p: &Prepared,
    env: &Env,
    ph: &mut PhaseLog,
    watch: &(dyn Fn(&str) + Sync),
) -> Result<(cicache_docker::engine::RunOutput, Vec<String>, Exporter), BuildError> {
    let cmd = p.build_args();
    let out = run_build_retrying_push(p, env, ph, &cmd, watch)?;
    if out.code == 0
        || p.mode.exporter != Exporter::Registry
        || !p.plan.registry_cache
        || !refused_cache_export(&out)
    {
        return Ok((out, cmd, p.mode.exporter));
    }
    let msg = format!(
        "the builder refused the registry cache export ({}); building again with inline cache \
         and a pushed cache tag (a docker-container builder, --builder NAME, or the containerd \
         image store export the whole cache)",
        out.error_lines(1).join(" ")
    );
    if env.settings.strict {
        return Err(BuildError::Strict {
            phase: "cache-export".into(),
            message: msg,
        });
    }
    env.events
        .warn(&format!("{msg} (--strict makes this an error)"));
    ph.warnings
        .push(format!("{}cache-export: {msg}", ph.prefix));
    let cmd = p
        .plan
        .build_args_with(Exporter::Inline, p.mode.builder.as_deref());
    let out = run_build_retrying_push(p, env, ph, &cmd, watch)?;
    Ok((out, cmd, Exporter::Inline))
}

/// Runs one docker build command. When its push failed on an answer that another try may
/// not get (a registry's 500 or 503, throttling, a dropped connection: see
/// [`cicache_docker::transient`]), it runs once more after [`PUSH_RETRY_PAUSE`], with a
/// warning: every step is in the builder's cache by then, so the second run is the export
/// and the push. A failed build step never runs again.
fn run_build_retrying_push(
    p: &Prepared,
    env: &Env,
    ph: &mut PhaseLog,
    cmd: &[String],
    watch: &(dyn Fn(&str) + Sync),
) -> Result<cicache_docker::engine::RunOutput, BuildError> {
    let echo = |line: &str| {
        watch(line);
        env.events.docker_line(line);
    };
    let run = || {
        env.events.info(&format!(
            "build: {} {}",
            p.docker.program.display(),
            cmd.join(" ")
        ));
        p.docker
            .run_streamed(cmd, None, Some(&echo), p.spec.log.as_deref())
            .map_err(|source| BuildError::Docker {
                what: "running the docker build".into(),
                source,
            })
    };
    let out = run()?;
    if out.code == 0 {
        return Ok(out);
    }
    let Some(why) = cicache_docker::transient::push_failure(&out.lines) else {
        return Ok(out);
    };
    let msg = format!(
        "the registry failed the push ({why}); building again in {} s to push once more \
         (the steps come from the builder's cache)",
        PUSH_RETRY_PAUSE.as_secs()
    );
    before_push_retry(env, ph, "build", &msg);
    run()
}

/// Before a push goes once more: the warning (stderr and the phase log's warnings, under
/// `phase`), then [`PUSH_RETRY_PAUSE`].
fn before_push_retry(env: &Env, ph: &mut PhaseLog, phase: &str, msg: &str) {
    env.events.warn(msg);
    ph.warnings.push(format!("{}{phase}: {msg}", ph.prefix));
    std::thread::sleep(PUSH_RETRY_PAUSE);
}

/// After a failed build: no push, but the cache mounts are extracted and saved, so the
/// wheels the build downloaded before the failing step are not lost (unless
/// `--no-save-on-failure`). The build's failure is the result; a cache problem here, strict
/// or not, is only recorded in the phases.
fn save_after_failure(
    p: &Prepared,
    env: &Env,
    hooks: &Hooks,
    cache_in: &CacheIn,
    mounts_untouched: bool,
    ph: &mut PhaseLog,
) -> (Option<RestoreDoc>, Option<SaveDoc>) {
    ph.skipped("push", "the build failed");
    ph.skipped("cache-export", "the build failed");
    if !p.spec.switches.save_on_failure {
        // The cache dir ends restored all the same, as when the restore ran before the build.
        let restored = cache_in::restore_left(p, env, cache_in, false, ph)
            .ok()
            .flatten();
        env.events.warn(
            "the docker build failed; skipping push, extract and save (--no-save-on-failure)",
        );
        ph.skipped("extract", "the build failed (--no-save-on-failure)");
        ph.skipped("save", "the build failed (--no-save-on-failure)");
        return (restored, None);
    }
    env.events.warn(
        "the docker build failed; skipping push, but extracting and saving what its cache \
         mounts hold (--no-save-on-failure skips that)",
    );
    after_steps(p, env, hooks, cache_in, mounts_untouched, false, ph).unwrap_or_default()
}

/// The check's verdict.
enum Checked {
    /// Tag this cache tag's image (with these inputs) instead of building.
    Unchanged(check::CacheTag, String),
    Go(Plan),
}

/// The check phase: reads the cache tags' labels and decides (check.rs).
fn run_check(
    p: &Prepared,
    env: &Env,
    ph: &mut PhaseLog,
    started: Instant,
) -> Result<Checked, BuildError> {
    let h = &p.hashed;
    let go = |mounts_from, prefetch, rerun| {
        Ok(Checked::Go(Plan {
            mounts_from,
            prefetch,
            rerun,
        }))
    };
    if let Some(why) = check::skip_reason(&h.inputs, h.mount_inputs.as_deref(), p.spec.rebuild) {
        ph.skipped("check", why);
        return go(None, None, None);
    }
    let platform = h.platform.clone().unwrap_or_default();
    let exporter = p.mode.exporter;
    let refs = check::label_refs(exporter, &p.plan.cache_from, &p.plan.image_refs());
    // The registry exporter's cache manifests: whether one holds an image tag's layers.
    let caches: &[String] = match exporter {
        Exporter::Registry => &p.plan.cache_from,
        Exporter::Inline => &[],
    };
    let found = match env
        .registry
        .check_reads(&p.plan.image, &refs, caches, &platform)
    {
        Ok(found) => found,
        Err(e) => {
            ph.cache_failed(
                "check",
                started,
                format!("reading the labels of {}: {e}", refs.join(", ")),
            )?;
            return go(None, None, None);
        }
    };
    let input = CheckInput {
        image: p.plan.image.clone(),
        inputs: h.inputs.clone(),
        mount_inputs: h.mount_inputs.clone(),
        mount_steps: h.mount_steps.clone(),
        mount_commands: h.mount_commands.clone(),
        platform,
        push: p.spec.push,
        rebuild: p.spec.rebuild,
        exporter,
        cache_tags: cache_tag_names(&p.plan)
            .into_iter()
            .map(str::to_string)
            .collect(),
    };
    match check::decide(&input, &found.tags, &found.caches) {
        Decision::TagUnchanged { from, hash } => Ok(Checked::Unchanged(from, hash)),
        Decision::MountsFromLayerCache {
            from,
            prefetch,
            layers_in,
        } => {
            let held = layers_in
                .as_ref()
                .map(|c| format!(", whose every layer {c} holds"))
                .unwrap_or_default();
            ph.ok(
                "check",
                started,
                format!(
                    "the steps up to the last cache mount are unchanged since {from}{held}: \
                     docker takes them from the layer cache"
                ),
                Some(PhaseDetail::CheckMountSteps {
                    inputs: h.inputs.clone().ok(),
                    mount_inputs: h.mount_inputs.clone(),
                    mount_steps_from: from.clone(),
                }),
            );
            go(Some(layers_in.unwrap_or(from)), prefetch, None)
        }
        Decision::Build { prefetch, rerun } => {
            ph.ok(
                "check",
                started,
                check::build_message(&input),
                Some(PhaseDetail::CheckBuild {
                    inputs: h.inputs.clone().ok(),
                    mount_inputs: h.mount_inputs.clone(),
                    mount_steps_unchanged: prefetch
                        .as_ref()
                        .map(|p| p.unchanged)
                        .or(rerun.as_ref().map(|r| r.unchanged)),
                }),
            );
            go(None, prefetch, rerun)
        }
    }
}

/// The tags of the cache tags the build reads (`cache_from`, without the repository).
pub(crate) fn cache_tag_names(plan: &BuildPlan) -> Vec<&str> {
    plan.cache_from
        .iter()
        .filter_map(|r| r.rsplit_once(':').map(|(_, t)| t))
        .collect()
}

/// Why the inline cache tag `cache_to` keeps its image instead of this build's (`None`: the
/// build's image replaces it). BuildKit leaves an image built with every step from the cache
/// without usable inline cache (moby/buildkit#1981); and after docker 20.10 (measured on
/// Docker 26's graph store) one whose cache-mount steps came from the cache tag, with only
/// `COPY` run after them, without those steps: the next fresh agent would run pip's steps
/// again (on 20.10 the prefetch's pull keeps them). The cache tag that has them stays; the
/// steps this build ran are not in it (docs/BUILD.md, "Unchanged builds").
fn kept_cache_tag(p: &Prepared, parsed: &BuildReport, cache_to: &str) -> Option<String> {
    if parsed.every_step_cached_from(cache_to) {
        return Some(format!(
            "every step came from {cache_to}, which keeps them: not replaced by this image, \
             whose inline cache BuildKit leaves without them (moby/buildkit#1981)"
        ));
    }
    if !parsed.cache_mount_steps_cached_from(cache_to) {
        return None;
    }
    // Only now: with a forced flavour the daemon's version costs a `docker version`.
    let daemon = p.daemon_version();
    (!pull_keeps_inline_cache(daemon)).then(|| {
        format!(
            "the cache-mount steps came from {cache_to}, which keeps them: not replaced by \
             this image, whose inline cache docker {}'s BuildKit leaves without the steps it \
             took from the cache (the next fresh agent would run them again)",
            daemon.unwrap_or("(unknown version)")
        )
    })
}

/// The image push (a failure fails the build) and the registry cache export (inline cache:
/// tag and push the cache tag, unless `cache_tag_kept` says why it keeps its image; the
/// registry exporter: done by the build's --cache-to).
fn push_and_export(
    p: &Prepared,
    env: &Env,
    exporter: Exporter,
    cache_tag_kept: Option<&str>,
    ph: &mut PhaseLog,
) -> Result<(), BuildError> {
    let echo = |line: &str| env.events.docker_line(line);
    let log = p.spec.log.as_deref();
    if !p.spec.push {
        ph.skipped("push", "no --push");
    } else {
        let t = Instant::now();
        let cmds = p.plan.push_commands();
        if cmds.is_empty() {
            ph.ok("push", t, "pushed by docker buildx build --push", None);
        } else {
            for c in &cmds {
                let image = c.last().map(String::as_str).unwrap_or_default();
                let push = || p.docker.run_checked(c, None, Some(&echo), log);
                let pushed = match push() {
                    Err(DockerError::Failed { tail, .. })
                        if let Some(why) = transient_reason(&tail.join("\n")) =>
                    {
                        // The same retry as a push inside the build (run_build_retrying_push).
                        let msg = format!(
                            "the registry failed the push of {image} ({why}); pushing again in \
                             {} s",
                            PUSH_RETRY_PAUSE.as_secs()
                        );
                        before_push_retry(env, ph, "push", &msg);
                        push()
                    }
                    other => other,
                };
                pushed.map_err(|e| BuildError::Push(format!("pushing {image}: {e}")))?;
            }
            ph.ok(
                "push",
                t,
                format!("pushed {}", p.plan.image_refs().join(", ")),
                None,
            );
        }
    }
    if !p.plan.registry_cache {
        ph.skipped("cache-export", "registry cache off");
    } else if p.flavour == Flavour::Buildx && exporter == Exporter::Registry {
        ph.skipped("cache-export", "done by the build's --cache-to");
    } else if let Some(why) = cache_tag_kept {
        ph.skipped("cache-export", why);
    } else {
        let t = Instant::now();
        let pushed = p
            .plan
            .cache_push_commands_with(exporter)
            .iter()
            .try_for_each(|c| p.docker.run_checked(c, None, Some(&echo), log).map(drop));
        match pushed {
            Ok(()) => ph.ok(
                "cache-export",
                t,
                format!(
                    "pushed the cache tag {}",
                    p.plan.cache_to.clone().unwrap_or_default()
                ),
                None,
            ),
            Err(e) => ph.cache_failed("cache-export", t, e)?,
        }
    }
    Ok(())
}

/// The phases after the build's steps: the restore when it was left for now (cache_in.rs),
/// then extract and save. What the restore and the save did.
fn after_steps(
    p: &Prepared,
    env: &Env,
    hooks: &Hooks,
    cache_in: &CacheIn,
    mounts_untouched: bool,
    at_export: bool,
    ph: &mut PhaseLog,
) -> Result<(Option<RestoreDoc>, Option<SaveDoc>), BuildError> {
    let restored = cache_in::restore_left(p, env, cache_in, at_export, ph)?;
    let saved = extract_and_save(
        p,
        env,
        hooks,
        cache_in.injected,
        mounts_untouched,
        at_export,
        ph,
    )?;
    Ok((restored, saved))
}

/// Extract the cache mounts into the cache dir, then save it to the store. `at_export`: the
/// build's export had begun, the build not yet returned (overlap.rs); the extract says so.
fn extract_and_save(
    p: &Prepared,
    env: &Env,
    hooks: &Hooks,
    injected: bool,
    mounts_untouched: bool,
    at_export: bool,
    ph: &mut PhaseLog,
) -> Result<Option<SaveDoc>, BuildError> {
    let spec = p.spec;
    let cache_dir = &spec.cache_dir;
    if !spec.switches.extract {
        ph.skipped("extract", "--no-extract");
    } else if p.mounts.is_empty() {
        ph.skipped("extract", "the Dockerfile has no RUN --mount=type=cache");
    } else if mounts_untouched {
        ph.skipped(
            "extract",
            "every RUN with a cache mount came from the layer cache: the mounts hold nothing new",
        );
    } else {
        let t = Instant::now();
        // Without a successful inject the mounts hold only what this build wrote: keep the
        // restored files they lack instead of mirroring the mounts.
        let merge = !injected;
        let refs: Vec<&CacheMount> = p.mounts.iter().collect();
        let echo = |line: &str| env.events.docker_line(line);
        let verbose = env
            .events
            .verbose()
            .then_some(&echo as &(dyn Fn(&str) + Sync));
        match dance::extract(&p.docker, &refs, cache_dir, &p.dance, merge, verbose) {
            Ok(r) => {
                let mut msg = describe_dance(&r, "extracted").join("; ");
                if at_export {
                    msg.push_str(" (started at the build's export)");
                }
                ph.ok("extract", t, msg, Some(PhaseDetail::Dance(r)));
            }
            Err(e) => ph.cache_failed("extract", t, e)?,
        }
    }

    if let Some(why) = hooks.saved_by {
        ph.skipped("save", why);
        return Ok(None);
    }
    if !spec.switches.save {
        ph.skipped("save", "--no-save");
        return Ok(None);
    }
    if !cache_dir.is_dir() {
        ph.skipped("save", format!("{} does not exist", cache_dir.display()));
        return Ok(None);
    }
    let t = Instant::now();
    let mode = SaveMode {
        update: false,
        if_changed: true,
    };
    let result = env.keys(spec).and_then(|(key, _)| {
        cache_dir::save(env.store, env.settings, key, cache_dir, mode, env.events)
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(doc) => {
            let msg = match doc.status() {
                "saved" => format!("saved {} as {}", cache_dir.display(), doc.key()),
                "unchanged" => "unchanged since the restore: nothing saved".to_string(),
                "exists" => format!("{} is already saved: nothing written", doc.key()),
                "concurrent" => "another agent saved the same key: theirs kept".to_string(),
                other => format!("save {other}"),
            };
            let problems = doc.warnings().to_vec();
            let failed = doc.status() == "failed";
            ph.store_result(
                "save",
                t,
                msg,
                &problems,
                failed,
                PhaseDetail::Save(doc.clone()),
            );
            Ok(Some(doc))
        }
        Err(e) => {
            ph.cache_failed("save", t, e)?;
            Ok(None)
        }
    }
}

/// The outcome of a build that ran (or failed in its build phase).
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    p: &Prepared,
    hooks: &Hooks,
    ph: PhaseLog,
    restored: Option<RestoreDoc>,
    saved: Option<SaveDoc>,
    report: Option<BuildReport>,
    total: Instant,
    ok: bool,
    exit_code: i32,
) -> BuildDoc {
    let plan = &p.plan;
    let (phases, warnings) = ph.in_order();
    BuildDoc {
        code: if ok { 0 } else { 1 },
        ok,
        exit_code,
        image: plan.image.clone(),
        tags: plan.image_refs(),
        flavour: plan.flavour,
        registry_cache: plan.registry_cache,
        cache_from: if plan.registry_cache {
            plan.cache_from.clone()
        } else {
            Vec::new()
        },
        cache_to: if plan.registry_cache {
            plan.cache_to.clone()
        } else {
            None
        },
        cache_dir: p.spec.cache_dir.clone(),
        phases,
        warnings,
        restore: restored,
        save: saved,
        report,
        base: hooks.base.clone(),
        seconds: total.elapsed().as_secs_f64(),
        unchanged: None,
        steps: None,
        verdict: None,
    }
}
