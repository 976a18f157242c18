//! `report` on recorded real build logs (tests/fixtures; its README.md says how each was
//! recorded). The expected figures are read off the logs by hand.

use cicache_docker::report::{
    BarStatus, BuildReport, BuildRun, BuildRunError, HelperKind, LogFormat, MissKind, PhaseStatus,
    StepKind, StepStatus, TimeAxis, TimeSource, WheelSource, parse_log, parse_log_bytes,
};
use proptest::prelude::*;

fn fixture(name: &str) -> BuildReport {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    parse_log_bytes(&bytes)
}

fn step<'a>(r: &'a BuildReport, instruction_start: &str) -> &'a cicache_docker::report::Step {
    r.step_list
        .iter()
        .find(|s| {
            s.instruction
                .as_deref()
                .is_some_and(|i| i.starts_with(instruction_start))
        })
        .unwrap_or_else(|| panic!("no step {instruction_start:?} in {:#?}", r.step_list))
}

#[test]
fn buildkit_cold_build_runs_every_step() {
    let r = fixture("bk-cold.log");
    assert_eq!(r.format, LogFormat::BuildkitPlain);
    assert_eq!(r.builds, 1);
    assert_eq!((r.steps.total, r.steps.cached, r.steps.run), (5, 0, 5));
    assert_eq!(step(&r, "RUN --mount").seconds, Some(3.2));
    assert_eq!(step(&r, "FROM").kind, StepKind::From);
    // 0.0+0.0+0.0+0.0+0.1+2.0+0.1+2.0+3.2+1.0+0.2 (every vertex, internal ones too)
    let t = r.build_seconds.unwrap();
    assert!((t - 8.6).abs() < 1e-9, "{t}");
    assert_eq!(r.time_source, Some(TimeSource::StepSum));
    assert!(r.slowest[0].name.contains("RUN --mount=type=cache"));
    assert!(r.slowest.windows(2).all(|w| w[0].seconds >= w[1].seconds));
    assert!(r.ok && r.failure.is_none());
    assert_eq!(r.verdict, "cache: 0/5 steps cached, build 8.6s");
}

#[test]
fn buildkit_warm_build_is_all_cached() {
    let r = fixture("bk-warm.log");
    assert_eq!((r.steps.total, r.steps.cached, r.steps.run), (5, 5, 0));
    assert!(
        r.verdict.starts_with("cache: 5/5 steps cached"),
        "{}",
        r.verdict
    );
    assert!(r.slowest.iter().all(|s| s.status != StepStatus::Cached));
}

#[test]
fn buildkit_partial_cache() {
    let r = fixture("bk-partial.log");
    assert_eq!((r.steps.total, r.steps.cached), (5, 1));
    assert_eq!(step(&r, "WORKDIR").status, StepStatus::Cached);
    assert_eq!(step(&r, "COPY data.txt").status, StepStatus::Done);
}

#[test]
fn buildkit_failed_build_names_the_step_and_its_error_lines() {
    let r = fixture("bk-fail.log");
    assert!(!r.ok);
    let f = r.failure.as_ref().expect("a failure");
    assert_eq!(
        f.step.as_deref(),
        Some(
            "[3/4] RUN echo \"compiling...\" && echo \"error: module 'app' not found\" >&2 && ls /does-not-exist"
        )
    );
    assert_eq!(f.exit_code, Some(1));
    assert!(
        f.error
            .starts_with("executor failed running [/bin/sh -c echo")
    );
    assert_eq!(
        f.lines,
        vec![
            "compiling...",
            "error: module 'app' not found",
            "ls: /does-not-exist: No such file or directory"
        ]
    );
    assert_eq!((r.steps.total, r.steps.failed), (2, 1));
    assert!(
        r.verdict.starts_with("build FAILED at [3/4] RUN echo")
            && r.verdict.contains("(exit code 1); cache: 0/2 steps cached"),
        "{}",
        r.verdict
    );
}

#[test]
fn buildkit_multistage_keeps_stages() {
    let r = fixture("bk-multistage.log");
    assert_eq!(r.steps.total, 7);
    let stages: std::collections::BTreeSet<_> =
        r.step_list.iter().filter_map(|s| s.stage.clone()).collect();
    assert_eq!(
        stages.into_iter().collect::<Vec<_>>(),
        vec!["builder", "stage-2", "tests"]
    );
    let s = step(&r, "RUN sleep 1 && test -s");
    assert_eq!(s.stage.as_deref(), Some("tests"));
    assert_eq!(s.position.as_deref(), Some("3/3"));
    assert_eq!(s.seconds, Some(1.6));
}

#[test]
fn classic_builder_cold_warm_and_failed() {
    let cold = fixture("classic-cold.log");
    assert_eq!(cold.format, LogFormat::Classic);
    assert_eq!((cold.steps.total, cold.steps.cached), (5, 0));
    assert_eq!(
        cold.build_seconds, None,
        "the classic builder prints no times"
    );
    assert_eq!(cold.verdict, "cache: 0/5 steps cached");

    let warm = fixture("classic-warm.log");
    assert_eq!((warm.steps.total, warm.steps.cached), (5, 5));
    assert_eq!(step(&warm, "CMD").status, StepStatus::Cached);

    let failed = fixture("classic-fail.log");
    let f = failed.failure.as_ref().expect("a failure");
    assert_eq!(
        f.step.as_deref().map(|s| s.starts_with("Step 3/4 : RUN")),
        Some(true)
    );
    assert_eq!(f.exit_code, Some(1));
    // stderr lines come wrapped in colour escapes in the log; the report shows them clean.
    assert_eq!(
        f.lines,
        vec![
            "compiling...",
            "error: module 'app' not found",
            "ls: /does-not-exist: No such file or directory"
        ]
    );
}

#[test]
fn pip_in_buildkit_cold_downloads_everything() {
    let r = fixture("pip-bk-cold.log");
    assert_eq!((r.wheels.from_cache, r.wheels.downloaded), (0, 7));
    // 64 kB + 18.3 MB + 11 kB + 269 kB + 69 kB + 135 kB + 134 kB, as pip printed them
    assert_eq!(r.wheels.bytes_downloaded, 18_982_000);
    let numpy = r
        .wheel_list
        .iter()
        .find(|w| w.file.starts_with("numpy-1.26.4-"))
        .expect("numpy");
    assert_eq!(numpy.bytes, Some(18_300_000));
    assert!(numpy.step.as_deref().unwrap().contains("pip install"));
    assert_eq!(
        r.verdict,
        "cache: 2/4 steps cached, 0/7 wheels from cache (19.0 MB downloaded), build 9.4s"
    );
}

#[test]
fn pip_in_buildkit_warm_cache_mount() {
    let r = fixture("pip-bk-warm.log");
    assert_eq!((r.wheels.from_cache, r.wheels.downloaded), (7, 1));
    let down: Vec<_> = r
        .wheel_list
        .iter()
        .filter(|w| w.source == WheelSource::Download)
        .map(|w| w.file.as_str())
        .collect();
    assert_eq!(down, vec!["attrs-24.2.0-py3-none-any.whl"]);
    assert_eq!(r.wheels.bytes_from_cache, 18_982_000);
    assert!(
        r.verdict
            .contains("7/8 wheels from cache (19.0 MB not downloaded, 63.0 kB downloaded)"),
        "{}",
        r.verdict
    );
}

#[test]
fn pip_step_cached_has_no_wheels() {
    let r = fixture("pip-bk-cached.log");
    assert_eq!((r.steps.total, r.steps.cached), (4, 4));
    assert_eq!(r.wheels.from_cache + r.wheels.downloaded, 0);
}

#[test]
fn pip_in_classic_builder_and_on_the_host() {
    let c = fixture("pip-classic.log");
    assert_eq!(c.format, LogFormat::Classic);
    assert_eq!((c.wheels.from_cache, c.wheels.downloaded), (0, 8));
    assert!(
        c.wheel_list
            .iter()
            .all(|w| w.step.as_deref().unwrap().starts_with("Step 5/7"))
    );

    let h = fixture("pip-host.log");
    assert_eq!(h.format, LogFormat::Pip);
    assert_eq!((h.wheels.from_cache, h.wheels.downloaded), (2, 1));
    assert_eq!(h.wheels.bytes_from_cache, 74_000);
    assert_eq!(
        h.verdict,
        "cache: 2/3 wheels from cache (74.0 kB not downloaded, 53.0 kB downloaded)"
    );
}

#[test]
fn rawjson_pip_build() {
    let r = fixture("rawjson-pip.log");
    assert_eq!(r.format, LogFormat::BuildkitRawjson);
    assert_eq!((r.wheels.from_cache, r.wheels.downloaded), (8, 1));
    assert_eq!(r.wheels.bytes_downloaded, 53_000);
    assert_eq!(r.time_source, Some(TimeSource::Timestamps));
    let pip = step(&r, "RUN --mount=type=cache");
    assert_eq!(pip.status, StepStatus::Done);
    assert!(pip.seconds.unwrap() > 1.0);
    assert!(r.build_seconds.unwrap() >= pip.seconds.unwrap());
    assert!(r.ok);
}

#[test]
fn rawjson_cached_failed_and_multistage() {
    let c = fixture("rawjson-cached.log");
    assert_eq!(c.steps.cached, c.steps.total);
    assert_eq!(c.steps.total, 4);

    let f = fixture("rawjson-fail.log");
    let failure = f.failure.as_ref().expect("a failure");
    assert!(
        failure
            .step
            .as_deref()
            .unwrap()
            .starts_with("[3/4] RUN echo")
    );
    assert_eq!(failure.exit_code, Some(1));
    assert!(
        failure
            .lines
            .iter()
            .any(|l| l == "error: module 'app' not found")
    );

    let m = fixture("rawjson-multistage.log");
    assert!(
        m.step_list
            .iter()
            .any(|s| s.stage.as_deref() == Some("builder"))
    );
    assert!(
        m.step_list
            .iter()
            .any(|s| s.stage.as_deref() == Some("tests"))
    );
}

#[test]
fn several_builds_in_one_log() {
    let mut log = std::fs::read_to_string(format!(
        "{}/tests/fixtures/bk-cold.log",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    log.push_str("\nsome other output\n");
    log.push_str(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/bk-warm.log",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    );
    let r = parse_log(&log);
    assert_eq!(r.builds, 2);
    assert_eq!((r.steps.total, r.steps.cached), (10, 5));
}

#[test]
fn jenkins_timestamps_and_unknown_text() {
    let log =
        "[2026-11-25T08:00:00.000Z] #5 [2/3] RUN true\n[2026-11-25T08:00:01.000Z] #5 DONE 1.5s\n";
    let r = parse_log(log);
    assert_eq!(r.steps.total, 1);
    assert_eq!(r.build_seconds, Some(1.5));

    let r = parse_log("hello\nworld\n");
    assert_eq!(r.format, LogFormat::Unknown);
    assert!(!r.ok);
    assert!(r.verdict.contains("nothing to report"));
}

#[test]
fn renderings_and_json() {
    let r = fixture("pip-bk-warm.log");
    let text = r.render_text();
    assert!(text.starts_with(&r.verdict));
    assert!(text.contains("downloaded  attrs-24.2.0-py3-none-any.whl (63.0 kB)"));
    let md = r.render_markdown();
    assert!(md.starts_with(&format!("**{}**", r.verdict)));
    assert!(md.contains("| `[stage-0 2/5] WORKDIR /app` | CACHED |"));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["format"], "buildkit_plain");
    assert_eq!(json["wheels"]["from_cache"], 7);
    assert_eq!(json["steps"]["cached"], 2);
    let workdir = json["step_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["instruction"] == "WORKDIR /app")
        .unwrap();
    assert_eq!(workdir["status"], "cached");
    assert_eq!(workdir["kind"], "step");
    assert_eq!(workdir["position"], "2/5");
    assert_eq!(json["wheel_list"][3]["source"], "download");

    let f = fixture("bk-fail.log");
    assert!(f.render_text().contains("| error: module 'app' not found"));
    assert!(
        f.render_markdown()
            .contains("```text\nexecutor failed running")
    );
}

#[test]
fn wall_time_from_the_caller() {
    let mut r = fixture("bk-cold.log");
    r.set_wall_time(72.0);
    assert_eq!(r.time_source, Some(TimeSource::WallClock));
    assert!(r.verdict.ends_with("build 1m12s"), "{}", r.verdict);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_text(s in "\\PC*") {
        let _ = parse_log(&s).render_text();
    }

    #[test]
    fn never_panics_on_log_like_lines(lines in proptest::collection::vec(
        prop_oneof![
            "#[0-9]{1,3} (\\[[a-z0-9 /-]{0,12}\\] )?[A-Z]{0,6} ?[ -~]{0,30}",
            "#[0-9]{1,2} (DONE|CACHED|ERROR:|CANCELED) ?[0-9.ms]{0,6}",
            "#[0-9]{1,2} [0-9.]{1,6} +(Using cached|Downloading) [ -~]{0,20}( \\([0-9.]{1,5} ?[kMG]?B\\))?",
            "Step [0-9]{1,2}/[0-9]{1,2} : [ -~]{0,20}",
            " ---> [ -~]{0,20}",
            "\\{\"vertexes\":\\[\\{\"digest\":\"[a-z]{0,3}\",\"name\":\"[ -~&&[^\"\\\\]]{0,10}\",\"started\":\"[0-9T:.Z-]{0,25}\",\"completed\":\"[0-9T:.Z+-]{0,25}\"\\}\\],\"logs\":\\[\\{\"vertex\":\"[a-z]{0,3}\",\"data\":\"[A-Za-z0-9+/=]{0,12}\"\\}\\]\\}",
            "-{0,8}",
            "[\\x00-\\x7f]{0,20}",
        ],
        0..40,
    )) {
        let log = lines.join("\n");
        let r = parse_log(&log);
        let _ = (r.render_text(), r.render_markdown(), serde_json::to_string(&r));
        prop_assert!(r.steps.cached + r.steps.run == r.steps.total);
    }
}

/// Not a recording: buildx's plain output (`#0 building with`, `process ... did not complete
/// successfully`, the Dockerfile excerpt block, `ERROR: failed to solve`) written by hand
/// after its documented shape, because no buildx can run here. pip ≥ 23.3 lines included
/// (`.metadata` downloads, unindented `Downloading`).
#[test]
fn buildx_style_plain_output_hand_written() {
    let log = r#"#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 215B done
#1 DONE 0.0s

#5 [2/3] RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt
#5 1.234 Collecting six==1.16.0 (from -r requirements.txt (line 1))
#5 1.300   Downloading six-1.16.0-py2.py3-none-any.whl.metadata (1.8 kB)
#5 1.310 Using cached idna-3.7-py3-none-any.whl (66 kB)
#5 1.400 Downloading six-1.16.0-py2.py3-none-any.whl (11 kB)
#5 1.900 ERROR: No matching distribution found for nothere
#5 ERROR: process "/bin/sh -c pip install -r requirements.txt" did not complete successfully: exit code: 1
------
 > [2/3] RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt:
1.400 Downloading six-1.16.0-py2.py3-none-any.whl (11 kB)
1.900 ERROR: No matching distribution found for nothere
------
Dockerfile:3
--------------------
   1 |     FROM python:3.12
   3 | >>> RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt
--------------------
ERROR: failed to solve: process "/bin/sh -c pip install -r requirements.txt" did not complete successfully: exit code: 1
"#;
    let r = parse_log(log);
    assert_eq!(r.format, LogFormat::BuildkitPlain);
    assert_eq!(r.builds, 1, "#0 is not a second build");
    // The failure block repeats a Downloading line: counted once. The .metadata is no wheel.
    assert_eq!((r.wheels.from_cache, r.wheels.downloaded), (1, 1));
    let f = r.failure.expect("a failure");
    assert_eq!(f.exit_code, Some(1));
    assert!(f.step.unwrap().starts_with("[2/3] RUN"));
    assert_eq!(
        f.lines.last().map(String::as_str),
        Some("ERROR: No matching distribution found for nothere")
    );

    // A Dockerfile error outside any step.
    let r = parse_log(
        "#1 [internal] load build definition from Dockerfile\n#1 DONE 0.0s\n\
         ERROR: failed to solve: dockerfile parse error on line 2: unknown instruction: RUNN\n",
    );
    let f = r.failure.expect("a failure");
    assert_eq!(f.step, None);
    assert!(f.error.contains("unknown instruction: RUNN"));
    assert!(
        r.verdict.starts_with(
            "build FAILED before any step ran (failed to solve: dockerfile parse error"
        ),
        "{}",
        r.verdict
    );
}

/// `cicache build --log` files, recorded from real `cicache build` runs of
/// examples/python-app (fixtures/README.md): the cache dance's helper builds are in the file
/// too, so the figures are also given per build.
#[test]
fn cicache_build_logs() {
    // Cold: a first build. The registry has no cache tag yet: BuildKit's "importing cache
    // manifest ... not found" error is not the build's failure.
    let cold = fixture("cicache-build-cold.log");
    assert!(cold.ok, "{:#?}", cold.failure);
    assert_eq!((cold.wheels.from_cache, cold.wheels.downloaded), (0, 4));

    // Warm, on a pruned builder with tomli added: the injected cache served every old wheel.
    let warm = fixture("cicache-build-warm.log");
    assert!(warm.ok);
    assert_eq!(warm.builds, 3, "inject, the build, extract");
    assert_eq!(warm.per_build.len(), 3);
    assert_eq!(warm.per_build[1].total, 4);
    assert_eq!(warm.per_build[1].cached, 1);
    // The headline is the user's build only, not the dance's helper builds (issue 22: it
    // said 1/9 steps cached for a build of 4 steps).
    assert_eq!((warm.steps.total, warm.steps.cached), (4, 1));
    assert!(
        warm.verdict
            .starts_with("cache: 1/4 steps cached, 4/5 wheels"),
        "{}",
        warm.verdict
    );
    let helpers: Vec<_> = warm
        .helper_builds
        .iter()
        .map(|h| (h.build, h.kind))
        .collect();
    assert_eq!(
        helpers,
        vec![(0, HelperKind::Inject), (2, HelperKind::Extract)]
    );
    assert!(
        warm.step_list.iter().all(|s| s.helper == (s.build != 1)),
        "every step of builds 1 and 3 (and only those) is a helper step"
    );
    assert!(warm.slowest.iter().all(|s| !s.name.contains("dance")));
    // The DONE times of the user's build: 0.3 (Dockerfile) + 0.1 (.dockerignore) + 0.6 + 6.2
    // + 1.2 (the three steps that ran); the rest 0.0.
    let t = warm.build_seconds.unwrap();
    assert!((t - 8.4).abs() < 1e-9, "{t}");
    let text = warm.render_text();
    assert!(!text.contains("[dance "), "{text}");
    assert!(
        text.contains("cicache's own builds (not counted): cicache inject 2.4s"),
        "{text}"
    );
    assert_eq!((warm.wheels.from_cache, warm.wheels.downloaded), (4, 1));
    assert_eq!(warm.wheels.bytes_from_cache, 190_000);
    let down: Vec<_> = warm
        .wheel_list
        .iter()
        .filter(|w| w.source == WheelSource::Download)
        .map(|w| w.file.as_str())
        .collect();
    assert_eq!(down, vec!["tomli-2.0.1-py3-none-any.whl"]);
    assert!(
        text.contains(
            "build 1 (cicache inject): 0/2 cached, build 2: 1/4 cached, build 3 (cicache extract)"
        ),
        "{text}"
    );

    // pip failed after taking four wheels from the injected cache.
    let pipfail = fixture("cicache-build-pip-fail.log");
    let f = pipfail.failure.as_ref().expect("a failure");
    assert!(
        f.step
            .as_deref()
            .unwrap()
            .contains("pip install -r requirements.txt")
    );
    assert_eq!(
        f.lines.last().map(String::as_str),
        Some("ERROR: No matching distribution found for tomli==2.0.1")
    );
    assert_eq!(pipfail.wheels.from_cache, 4);

    // PEP 668 refusal, and a cache import error before it: the pip step is the failure.
    let fail = fixture("cicache-build-fail.log");
    let f = fail.failure.as_ref().expect("a failure");
    assert!(
        f.step.as_deref().unwrap().starts_with("[stage-0 4/5] RUN"),
        "{f:#?}"
    );
    assert!(
        f.lines
            .iter()
            .any(|l| l.contains("--break-system-packages"))
    );
}

/// Recorded (fixtures/README.md): Docker 26.1.5 + buildx 0.13.1 on the containerd image
/// store, a fresh agent building with the registry cache: every step `CACHED`, and later the
/// last one again with `DONE` while BuildKit pulls its layers for the export. The `#0
/// building with ...` line opens the build. The log's own count: `[stage-0 2/5]` to
/// `[stage-0 5/5]`, each with a `#N CACHED` line (the FROM is no step).
#[test]
fn buildx_containerd_store_cached_then_pulled_is_cached() {
    let r = fixture("buildx-containerd-warm.log");
    assert_eq!(r.format, LogFormat::BuildkitPlain);
    assert_eq!(r.builds, 1);
    assert_eq!((r.steps.total, r.steps.cached, r.steps.run), (4, 4, 0));
    // The same counts read off the log apart from the report: the `[stage-0 i/n]` steps but
    // the FROM, and those with a `#N CACHED` line, of which one later prints `#N DONE`.
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/buildx-containerd-warm.log",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut ids: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" [stage-0 ") && !l.contains("] FROM "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let has = |id: &str, status: &str| text.lines().any(|l| l == format!("{id} {status}"));
    let cached = ids.iter().filter(|id| has(id, "CACHED")).count();
    assert_eq!((r.steps.total, r.steps.cached), (ids.len(), cached));
    assert!(
        ids.iter()
            .any(|id| has(id, "CACHED")
                && text.lines().any(|l| l.starts_with(&format!("{id} DONE ")))),
        "a step CACHED and later DONE (its layers pulled): {ids:?}"
    );
    assert_eq!(step(&r, "RUN --mount").status, StepStatus::Cached);
    assert_eq!(r.cache_mount_steps_cached(), Some(true));
    assert!(
        r.step_list
            .iter()
            .all(|s| !s.name.contains("building with")),
        "#0 is not a step: {:#?}",
        r.step_list
    );
    assert!(
        r.verdict.starts_with("cache: 4/4 steps cached"),
        "{}",
        r.verdict
    );
    assert!(r.slowest.iter().all(|s| s.status != StepStatus::Cached));
    assert!(r.ok);

    // Two builds each opened by `#0`: two builds, whatever their numbers.
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/buildx-containerd-warm.log",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let r = parse_log(&format!("{text}\n{text}"));
    assert_eq!(r.builds, 2);
    assert_eq!((r.steps.total, r.steps.cached), (8, 8));
}

/// Recorded (fixtures/README.md): buildx 0.13.1's refusal on Docker 26.1.5's graph-driver
/// store (three lines, before any step, not even `#0`). The report used to say "nothing to
/// report".
#[test]
fn buildx_error_before_any_step_is_the_failure() {
    let r = fixture("buildx-graph-cache-export.log");
    assert_eq!(r.format, LogFormat::BuildkitPlain);
    // The log's own count: no `#N` line at all.
    assert_eq!((r.steps.total, r.steps.cached, r.steps.run), (0, 0, 0));
    assert!(!r.ok);
    let f = r.failure.as_ref().expect("a failure");
    assert_eq!(f.step, None);
    assert_eq!(
        f.error,
        "Cache export is not supported for the docker driver."
    );
    assert_eq!(
        f.lines,
        vec![
            "Switch to a different driver, or turn on the containerd image store, and try again.",
            "Learn more at https://docs.docker.com/go/build-cache-backends/"
        ]
    );
    assert_eq!(
        r.verdict,
        "build FAILED before any step ran (Cache export is not supported for the docker driver.)"
    );
    assert!(r.render_text().contains("| Switch to a different driver"));

    // The same after buildx's `#0` line.
    let r = parse_log(&format!(
        "#0 building with \"default\" instance using docker driver\n\n{}",
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/buildx-graph-cache-export.log",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    ));
    assert!(r.step_list.is_empty(), "{:#?}", r.step_list);
    assert!(
        r.verdict
            .starts_with("build FAILED before any step ran (Cache export")
    );
}

#[test]
fn a_long_error_is_cut_between_words() {
    let msg = "failed to compute cache key: failed to calculate checksum of ref \
               moby::k3j2h1g0: \"/requirements-dev.txt\": not found while resolving the \
               build context of the application";
    let r = parse_log(&format!(
        "#1 [internal] load build definition from Dockerfile\n#1 DONE 0.0s\nERROR: {msg}\n"
    ));
    let why = r
        .verdict
        .strip_prefix("build FAILED before any step ran (")
        .and_then(|v| v.strip_suffix("...)"))
        .unwrap_or_else(|| panic!("{}", r.verdict));
    assert!(why.len() < msg.len() && msg.starts_with(why), "{why}");
    assert_eq!(
        msg[why.len()..].chars().next(),
        Some(' '),
        "cut inside a word: {why:?}"
    );
    // The step name in the verdict is cut between words too.
    let name = format!("[2/3] RUN {}", "make all-the-things ".repeat(8));
    let v = parse_log(&format!("#5 {name}\n#5 ERROR: boom\n")).verdict;
    let at = v
        .strip_prefix("build FAILED at ")
        .and_then(|v| v.split("... (boom)").next())
        .unwrap_or_else(|| panic!("{v}"));
    assert!(name.starts_with(at), "{v}");
    assert_eq!(name[at.len()..].chars().next(), Some(' '), "{v}");
}

#[test]
fn from_lines_are_listed_as_base_images_and_not_counted() {
    let r = fixture("bk-cold.log");
    let text = r.render_text();
    assert!(
        text.contains("steps: 0 cached, 5 ran of 5 (FROM lines are base images, not counted)"),
        "{text}"
    );
    let from_row = text
        .lines()
        .find(|l| l.contains("] FROM "))
        .expect("a FROM row");
    assert!(from_row.trim_start().starts_with("base  "), "{from_row}");
    // Rows other than FROM are exactly the counted steps.
    let counted = text
        .lines()
        .skip_while(|l| !l.starts_with("  steps:"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter(|l| !l.contains("] FROM "))
        .count();
    assert_eq!(counted, r.steps.total, "{text}");
    let md = r.render_markdown();
    assert!(md.contains("FROM") && md.contains("| base |"), "{md}");
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn kinds(r: &BuildReport) -> Vec<MissKind> {
    r.miss
        .as_ref()
        .map(|m| m.reasons.iter().map(|x| x.kind).collect())
        .unwrap_or_default()
}

#[test]
fn why_it_missed_from_the_log() {
    // Every step cached, nothing downloaded: nothing missed.
    assert_eq!(fixture("bk-warm.log").miss, None);
    assert_eq!(fixture("buildx-containerd-warm.log").miss, None);

    // No --cache-from at all, COPY data.txt ran.
    let r = fixture("bk-partial.log");
    let m = r.miss.as_ref().expect("a miss");
    assert_eq!(
        m.instruction.as_deref(),
        Some("COPY data.txt /app/data.txt")
    );
    assert_eq!(kinds(&r), vec![MissKind::NoRegistryCache]);

    // A first build: the cache tag does not exist yet.
    let r = fixture("cicache-build-cold.log");
    assert_eq!(
        r.cache_imports
            .iter()
            .map(|c| (c.reference.as_str(), c.found))
            .collect::<Vec<_>>(),
        vec![("127.0.0.1:38999/app:cache", false)]
    );
    assert_eq!(kinds(&r)[0], MissKind::NoCacheTag);
    assert!(
        r.miss.as_ref().unwrap().reasons[0]
            .message
            .starts_with("no cache tag in the registry (127.0.0.1:38999/app:cache)")
    );

    // Warm: the tag was there, requirements.txt changed, tomli was downloaded.
    let r = fixture("cicache-build-warm.log");
    let m = r.miss.as_ref().unwrap();
    assert_eq!(
        m.first_missed.as_deref(),
        Some("[stage-0 3/5] COPY requirements.txt .")
    );
    assert_eq!(
        kinds(&r),
        vec![MissKind::StepChanged, MissKind::WheelsDownloaded]
    );
    assert_eq!(
        m.reasons[1].message,
        "pip downloaded 1 file (12.0 kB) its cache did not have: tomli-2.0.1-py3-none-any.whl"
    );
    assert!(r.render_text().contains(
        "  why it missed:\n    first step that ran: [stage-0 3/5] COPY requirements.txt .\n    - 127.0.0.1:38999/app:cache has no layer"
    ));
    assert!(
        r.render_markdown()
            .contains("- first step that ran: `[stage-0 3/5] COPY requirements.txt .`")
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["miss"]["reasons"][0]["kind"], "step_changed");

    // A branch without its own cache tag: BuildKit finds the default branch's.
    let log = fixture_text("cicache-build-warm.log").replace(
        "#4 importing cache manifest from 127.0.0.1:38999/app:cache\n",
        "#13 importing cache manifest from 127.0.0.1:38999/app:cache-pr-7\n\
         #13 ERROR: 127.0.0.1:38999/app:cache-pr-7: not found\n\n\
         #4 importing cache manifest from 127.0.0.1:38999/app:cache\n",
    );
    let r = parse_log(&log);
    assert_eq!(
        r.miss.as_ref().unwrap().reasons[0].message,
        "no cache tag for this branch (127.0.0.1:38999/app:cache-pr-7): fell back to 127.0.0.1:38999/app:cache"
    );
    assert!(
        r.ok,
        "a cache import that finds nothing does not fail the build"
    );
}

const BUILD_JSON: &str = r#"{
  "ok": true,
  "cache_from": ["127.0.0.1:38999/app:cache-pr-7", "127.0.0.1:38999/app:cache"],
  "phases": [
    {"name": "check", "status": "ok", "seconds": 0.5, "message": "no cache tag was built from these inputs",
     "detail": {"inputs": "3f0c", "changed_inputs": ["file:requirements.txt", "arg:PIP_INDEX_URL"]}},
    {"name": "restore", "status": "ok", "seconds": 1.0, "detail": {"status": "miss", "hit": false, "exact": false, "key": "pip-abc"}},
    {"name": "inject", "status": "ok", "seconds": 2.0, "detail": {"mounts": [{"files": 0}, {"files": 0}], "ran": true}},
    {"name": "prefetch", "status": "ok", "seconds": 5.0},
    {"name": "build", "status": "ok", "seconds": 9.0},
    {"name": "push", "status": "ok", "seconds": 4.0},
    {"name": "cache-export", "status": "warning", "seconds": 1.0, "message": "cache-export failed"},
    {"name": "extract", "status": "ok", "seconds": 2.0},
    {"name": "save", "status": "skipped", "seconds": 0.0, "message": "unchanged"},
    {"name": "future-phase", "status": "new-status", "seconds": 0.1}
  ],
  "seconds": 22.0
}"#;

#[test]
fn build_document_adds_phases_and_reasons() {
    let run = BuildRun::from_json(BUILD_JSON).unwrap();
    let mut r = fixture("cicache-build-warm.log");
    r.add_build_run(&run);
    assert_eq!(r.build_seconds, Some(9.0));
    assert_eq!(r.time_source, Some(TimeSource::WallClock));
    let m = r.miss.as_ref().unwrap();
    let msgs: Vec<&str> = m.reasons.iter().map(|x| x.message.as_str()).collect();
    assert_eq!(
        &msgs[..4],
        &[
            "`COPY requirements.txt .` changed: requirements.txt",
            "build argument PIP_INDEX_URL changed",
            "no cache entry for pip-abc in the store: the pip cache started empty",
            "cache mount was empty: injected 0 files",
        ]
    );
    // The log's reasons follow, but not its guess that some input changed: the build said
    // which.
    assert_eq!(
        m.reasons[4..].iter().map(|x| x.kind).collect::<Vec<_>>(),
        vec![MissKind::WheelsDownloaded]
    );

    // Phases on one axis, as cicache build runs them: prefetch beside restore and inject,
    // extract and save beside push and cache-export.
    let at: Vec<(&str, f64, f64)> = r
        .phases
        .iter()
        .map(|p| (p.name.as_str(), p.start, p.seconds))
        .collect();
    assert_eq!(
        at,
        vec![
            ("check", 0.0, 0.5),
            ("restore", 0.5, 1.0),
            ("inject", 1.5, 2.0),
            ("prefetch", 0.5, 5.0),
            ("build", 5.5, 9.0),
            ("push", 14.5, 4.0),
            ("cache-export", 18.5, 1.0),
            ("extract", 14.5, 2.0),
            ("save", 16.5, 0.0),
            ("future-phase", 19.5, 0.1),
        ]
    );
    assert_eq!(r.phases[6].status, PhaseStatus::Warning);
    assert_eq!(r.phases[9].status, PhaseStatus::Ok);
    // The steps start with the build phase.
    let t = r.timeline();
    assert_eq!(t.phases.len(), 10);
    assert_eq!(t.steps[0].start, 5.5);

    // Given start times win.
    let run = BuildRun::from_json(
        r#"{"phases":[{"name":"build","status":"ok","start":2.5,"seconds":3},{"name":"push","status":"ok","start":1,"seconds":1}]}"#,
    )
    .unwrap();
    let mut r = fixture("bk-cold.log");
    r.add_build_run(&run);
    assert_eq!(
        r.phases.iter().map(|p| p.start).collect::<Vec<_>>(),
        vec![2.5, 1.0]
    );

    assert!(matches!(
        BuildRun::from_json("{\"ok\": true}"),
        Err(BuildRunError::NoPhases)
    ));
    assert!(matches!(
        BuildRun::from_json("build.log"),
        Err(BuildRunError::Json(_))
    ));
}

#[test]
fn timelines_per_log_format() {
    // rawjson: real times; the four stages of the long build ran side by side.
    let r = fixture("long-rawjson.log");
    assert_eq!(r.steps.total, 200);
    let t = r.timeline();
    assert_eq!(t.axis, TimeAxis::Clock);
    assert!(t.phases.is_empty());
    assert_eq!(
        t.steps
            .iter()
            .filter(|b| b.kind == Some(StepKind::Step))
            .count(),
        200
    );
    let stage_start = |stage: &str| {
        t.steps
            .iter()
            .filter_map(|b| {
                let s = &r.step_list[b.step?];
                (s.stage.as_deref() == Some(stage) && s.position.as_deref() == Some("2/50"))
                    .then_some(b.start)
            })
            .next()
            .unwrap()
    };
    let (a, d) = (stage_start("a"), stage_start("d"));
    assert!(
        (a - d).abs() < 2.0,
        "parallel stages start together: a {a}, d {d}"
    );
    assert!(t.end <= r.build_seconds.unwrap() + 1e-6);

    // Plain: end to end, in order.
    let r = fixture("bk-cold.log");
    let t = r.timeline();
    assert_eq!(t.axis, TimeAxis::StepTimes);
    assert!(t.steps.windows(2).all(|w| w[1].start >= w[0].start));
    assert!((t.end - r.build_seconds.unwrap()).abs() < 1e-9);
    let failed = fixture("bk-fail.log").timeline();
    assert_eq!(
        failed
            .steps
            .iter()
            .filter(|b| b.status == BarStatus::Failed)
            .count(),
        1
    );

    // Classic: one slot per step.
    let r = fixture("classic-warm.log");
    let t = r.timeline();
    assert_eq!(t.axis, TimeAxis::Order);
    assert_eq!(t.end, r.step_list.len() as f64);
    assert!(t.steps.iter().all(|b| b.length == 1.0));

    // A cicache build log alone: inject, build, extract from the helper builds.
    let r = fixture("cicache-build-warm.log");
    let t = r.timeline();
    let names: Vec<&str> = t.phases.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(names, vec!["inject", "build", "extract"]);
    assert!((t.phases[1].start - 2.4).abs() < 1e-9);
    assert!(t.steps.iter().all(|b| !r.step_list[b.step.unwrap()].helper));
}

#[test]
fn html_is_one_self_contained_page() {
    for name in [
        "bk-cold.log",
        "bk-fail.log",
        "classic-warm.log",
        "rawjson-pip.log",
        "cicache-build-warm.log",
        "buildx-graph-cache-export.log",
    ] {
        let r = fixture(name);
        let html = r.render_html(name);
        assert!(html.starts_with("<!DOCTYPE html>"), "{name}");
        for banned in [
            "<script",
            "style=\"",
            "src=\"http",
            "href=\"http",
            "@import",
            "url(http",
        ] {
            assert!(!html.contains(banned), "{name}: {banned}");
        }
        assert_eq!(
            html.matches("<div class=\"row step ").count(),
            r.steps.total,
            "{name}"
        );
        let verdict_at = html.find("class=\"verdict").unwrap();
        assert!(html[verdict_at..].contains(&cicache_docker::report::html::escape(&r.verdict)));
    }
    // Markup in a log stays text.
    let r = parse_log(
        "#5 [2/3] RUN echo '<script>alert(1)</script>' && exit 1\n#5 ERROR: <b>boom</b>\n",
    );
    let html = r.render_html("<evil>.log");
    assert!(
        !html.contains("<script>alert") && !html.contains("<b>boom") && !html.contains("<evil>")
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}
