//! `cicache report --format html` rendered by a real browser: Debian's chromium, headless
//! (test/lib/chromium.sh installs it and exports CICACHE_TEST_CHROMIUM). The reports are
//! made from the recorded logs of cicache-docker/tests/fixtures (cold, warm, failed,
//! multi-stage, a `cicache build --log` file, a build of 200 steps) and read back from the
//! DOM chromium built (`--dump-dom`): the verdict's numbers, one timeline bar per step, the
//! failed step's error. Screenshots at 1280 and 390 px wide must not be blank. Without the
//! variable the browser tests print "skipped: ..." unless CICACHE_TEST_REQUIRE_SERVICES=1.
//!
//! `CICACHE_TEST_SCREENSHOTS=DIR` keeps the screenshots there (docs/img/ holds one).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::prelude::*;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cicache-docker/tests/fixtures")
        .join(name)
}

fn cicache() -> Command {
    let mut c = Command::cargo_bin("cicache").unwrap();
    c.env_remove("CICACHE_JSON")
        .env_remove("CICACHE_REPORT_FORMAT")
        .env_remove("CICACHE_REPORT_OUTPUT")
        .env_remove("CICACHE_REPORT_BUILD_JSON")
        .env_remove("CICACHE_CONFIG")
        .env("CICACHE_PROGRESS", "never")
        .stdin(Stdio::null());
    c
}

fn chromium() -> Option<String> {
    match std::env::var("CICACHE_TEST_CHROMIUM") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CICACHE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!(
                    "CICACHE_TEST_CHROMIUM is not set (Debian's chromium); test/run.sh sets it \
                     (test/lib/chromium.sh)"
                );
            }
            eprintln!("skipped: CICACHE_TEST_CHROMIUM is not set (Debian's chromium)");
            None
        }
    }
}

/// `cicache report --format html ARGS -o DIR/NAME.html`; returns the page's path.
fn html_report(dir: &Path, name: &str, args: &[&std::ffi::OsStr]) -> PathBuf {
    let out = dir.join(format!("{name}.html"));
    let o = cicache()
        .args(["report", "--format", "html", "-o"])
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.is_empty(), "-o writes nothing on stdout");
    out
}

/// Runs chromium headless with its own profile dir; kills it after 90 s.
fn run_chromium(bin: &str, profile: &Path, args: &[String]) -> Vec<u8> {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).map(|_| buf)
    });
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium {args:?}: {status}");
            break;
        }
        if t.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap().unwrap()
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

fn dump_dom(bin: &str, dir: &Path, page: &Path) -> String {
    let out = run_chromium(
        bin,
        &dir.join("profile-dom"),
        &["--dump-dom".to_string(), file_url(page)],
    );
    String::from_utf8(out).expect("the DOM is UTF-8")
}

/// A screenshot of the page's first screen at this size; returns the PNG's bytes.
fn screenshot(bin: &str, dir: &Path, page: &Path, width: u32, height: u32) -> Vec<u8> {
    let png = dir.join(format!(
        "{}-{width}.png",
        page.file_stem().unwrap().to_string_lossy()
    ));
    run_chromium(
        bin,
        &dir.join(format!("profile-shot-{width}")),
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
            file_url(page),
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    if let Ok(keep) = std::env::var("CICACHE_TEST_SCREENSHOTS") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&png, Path::new(&keep).join(png.file_name().unwrap())).unwrap();
    }
    bytes
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

/// How many times `needle` occurs in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// The text between `<tag class="CLASS"...>` and the next `</tag>`, tags inside removed.
fn text_of(dom: &str, tag: &str, class: &str) -> String {
    let open = format!("<{tag} class=\"{class}");
    let i = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag} class={class}> in the DOM"));
    let rest = &dom[i..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find(&format!("</{tag}>")).unwrap();
    let mut out = String::new();
    let mut in_tag = false;
    for c in rest[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

/// The `report --json` document of the same log: what the DOM must agree with.
fn json_report(log: &Path) -> Value {
    let o = cicache()
        .args(["report", "--format", "json"])
        .arg(log)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    doc["reports"][0].clone()
}

/// Each fixture's page: the DOM holds the verdict, its figures and one bar per step.
#[test]
fn html_reports_render_in_chromium() {
    let Some(bin) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.html");
    std::fs::write(
        &blank,
        "<!DOCTYPE html><html><body style=\"background:#fff\"></body></html>",
    )
    .unwrap();
    let blank_png = screenshot(&bin, dir.path(), &blank, 1280, 900);

    for name in [
        "bk-cold.log",
        "bk-warm.log",
        "bk-fail.log",
        "bk-multistage.log",
        "classic-warm.log",
        "rawjson-multistage.log",
        "pip-bk-warm.log",
        "cicache-build-warm.log",
        "long-cold.log",
        "long-rawjson.log",
    ] {
        let log = fixture(name);
        let json = json_report(&log);
        let stem = name.trim_end_matches(".log");
        let page = html_report(dir.path(), stem, &[log.as_os_str()]);
        let dom = dump_dom(&bin, dir.path(), &page);

        // The verdict first, as the text report says it.
        let verdict = json["verdict"].as_str().unwrap();
        let h1 = text_of(&dom, "h1", "verdict");
        assert!(h1.ends_with(verdict), "{name}: {h1:?} vs {verdict:?}");
        assert!(
            dom.find("class=\"verdict").unwrap() < dom.find("class=\"timeline").unwrap(),
            "{name}: the verdict comes before the timeline"
        );
        let (cached, total) = (
            json["steps"]["cached"].as_u64().unwrap(),
            json["steps"]["total"].as_u64().unwrap(),
        );
        assert!(
            dom.contains(&format!(
                "class=\"fig-steps\" data-cached=\"{cached}\" data-total=\"{total}\"><b>{cached}/{total}</b>"
            )),
            "{name}: steps figure {cached}/{total}"
        );

        // One bar per counted step; every step of the user's build has a row.
        let steps = json["step_list"].as_array().unwrap();
        let counted = steps
            .iter()
            .filter(|s| s["kind"] == "step" && s["helper"] == false)
            .count();
        assert_eq!(counted as u64, total, "{name}");
        assert_eq!(
            count(&dom, "<div class=\"row step "),
            counted,
            "{name}: one timeline bar per step"
        );
        let rows = steps.iter().filter(|s| s["helper"] == false).count();
        assert_eq!(
            count(&dom, "<rect class=\"bar "),
            rows + count(&dom, "<div class=\"row phase "),
            "{name}: a bar per row"
        );
        let cached_rows = count(&dom, "<div class=\"row step cached\"");
        assert_eq!(cached_rows as u64, cached, "{name}: cached bars");

        let png = screenshot(&bin, dir.path(), &page, 1280, 900);
        assert_eq!(png_size(&png), (1280, 900), "{name}");
        assert!(
            png.len() > 4 * blank_png.len(),
            "{name}: the screenshot ({} bytes) looks blank (an empty page: {} bytes)",
            png.len(),
            blank_png.len()
        );
    }
}

#[test]
fn html_failed_build_shows_the_error_lines() {
    let Some(bin) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let page = html_report(dir.path(), "fail", &[fixture("bk-fail.log").as_os_str()]);
    let dom = dump_dom(&bin, dir.path(), &page);
    let h1 = text_of(&dom, "h1", "verdict failed");
    assert!(
        h1.starts_with("build failed build FAILED at [3/4] RUN echo"),
        "{h1}"
    );
    let step = text_of(&dom, "code", "failed-step");
    assert!(
        step.starts_with("[3/4] RUN echo \"compiling...\""),
        "{step}"
    );
    let pre = text_of(&dom, "pre", "error");
    assert!(
        pre.starts_with("executor failed running [/bin/sh -c echo"),
        "{pre}"
    );
    assert!(pre.contains("(exit code 1)"), "{pre}");
    assert!(pre.contains("error: module 'app' not found"), "{pre}");
    assert!(
        pre.contains("ls: /does-not-exist: No such file or directory"),
        "{pre}"
    );
    assert_eq!(count(&dom, "<div class=\"row step failed\""), 1);

    // buildx refusing the build before any step: the error and what to do, no timeline.
    let page = html_report(
        dir.path(),
        "refused",
        &[fixture("buildx-graph-cache-export.log").as_os_str()],
    );
    let dom = dump_dom(&bin, dir.path(), &page);
    let pre = text_of(&dom, "pre", "error");
    assert!(pre.starts_with("Cache export is not supported for the docker driver."));
    assert!(pre.contains("turn on the containerd image store"), "{pre}");
    assert!(!dom.contains("class=\"timeline"));
}

/// A `cicache build --log` file: the helper builds are the inject and extract phases (a
/// second lane), not steps; with --build-json the phases come from the build document and
/// "why it missed" says what the restore and the inject found.
#[test]
fn html_cicache_build_log_has_a_phase_lane_and_says_why_it_missed() {
    let Some(bin) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = fixture("cicache-build-warm.log");
    let page = html_report(dir.path(), "build-log", &[log.as_os_str()]);
    let dom = dump_dom(&bin, dir.path(), &page);
    assert_eq!(
        count(&dom, "<div class=\"row phase "),
        3,
        "inject, build, extract"
    );
    assert!(
        !dom.contains("[dance "),
        "the dance's steps are phases, not steps"
    );
    let miss = text_of(&dom, "section", "miss");
    assert!(
        miss.contains("First step that ran instead of coming from the cache: [stage-0 3/5] COPY requirements.txt ."),
        "{miss}"
    );
    assert!(miss.contains("pip downloaded 1 file (12.0 kB)"), "{miss}");

    // The build document of a first build on a new branch: restore missed, inject copied
    // nothing; the check knows requirements.txt changed.
    let build_json = dir.path().join("build.json");
    std::fs::write(
        &build_json,
        serde_json::json!({
            "ok": true,
            "cache_from": ["127.0.0.1:38999/app:cache-pr-7", "127.0.0.1:38999/app:cache"],
            "phases": [
                {"name": "check", "status": "ok", "seconds": 0.05, "message": "no cache tag was built from these inputs",
                 "detail": {"inputs": "3f0c", "changed_inputs": ["file:requirements.txt"]}},
                {"name": "restore", "status": "ok", "seconds": 0.1, "message": "miss",
                 "detail": {"status": "miss", "hit": false, "exact": false, "key": "pip-linux-x86_64-abc"}},
                {"name": "inject", "status": "ok", "seconds": 2.4, "message": "injected 0 files",
                 "detail": {"mounts": [{"id": "/root/.cache/pip", "files": 0, "bytes": 0}], "ran": true}},
                {"name": "build", "status": "ok", "seconds": 9.1, "message": "built"},
                {"name": "push", "status": "ok", "seconds": 3.0},
                {"name": "extract", "status": "ok", "seconds": 1.2},
                {"name": "save", "status": "ok", "seconds": 0.4}
            ],
            "seconds": 16.0
        })
        .to_string(),
    )
    .unwrap();
    let page = html_report(
        dir.path(),
        "build-json",
        &[
            "--build-json".as_ref(),
            build_json.as_os_str(),
            log.as_os_str(),
        ],
    );
    let dom = dump_dom(&bin, dir.path(), &page);
    assert_eq!(count(&dom, "<div class=\"row phase "), 7);
    let miss = text_of(&dom, "section", "miss");
    for want in [
        "COPY requirements.txt . changed: requirements.txt",
        "no cache entry for pip-linux-x86_64-abc in the store",
        "cache mount was empty: injected 0 files",
    ] {
        assert!(miss.contains(want), "{want:?} in {miss}");
    }
    let h1 = text_of(&dom, "h1", "verdict");
    assert!(h1.ends_with("build 9.1s"), "the build phase's time: {h1}");
}

/// Readable on a phone: in a 390 px wide frame the page is not wider than the frame (no
/// sideways scrolling of the whole page), and a 390 px screenshot is not blank. (Headless
/// chromium's window is at least 500 px wide for --dump-dom, hence the frame.)
#[test]
fn html_report_fits_a_phone() {
    let Some(bin) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "pip-bk-warm.log",
        "bk-fail.log",
        "long-cold.log",
        "cicache-build-warm.log",
    ] {
        let stem = name.trim_end_matches(".log");
        let page = html_report(dir.path(), stem, &[fixture(name).as_os_str()]);
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(!html.contains("<script"), "the report needs no script");
        // The probe page measures the report in a frame; the report itself has no script.
        let probe = dir.path().join(format!("probe-{stem}.html"));
        std::fs::write(
            &probe,
            format!(
                "<!DOCTYPE html><html><body><iframe id=\"f\" src=\"{stem}.html\" width=\"390\" \
                 height=\"844\"></iframe><script>window.addEventListener('load', function() {{ \
                 var d = document.getElementById('f').contentDocument.documentElement; \
                 document.body.setAttribute('data-width', d.scrollWidth + ' ' + d.clientWidth); \
                 }});</script></body></html>"
            ),
        )
        .unwrap();
        let dom = run_chromium(
            &bin,
            &dir.path().join("profile-phone"),
            &[
                "--allow-file-access-from-files".to_string(),
                "--virtual-time-budget=5000".to_string(),
                "--dump-dom".to_string(),
                file_url(&probe),
            ],
        );
        let dom = String::from_utf8(dom).unwrap();
        let widths: Vec<u32> = dom
            .split("data-width=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(|w| w.split(' ').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        let [scroll, client] = widths[..] else {
            panic!("{name}: no width from the probe");
        };
        assert!(
            client > 300 && scroll <= client,
            "{name}: the page is {scroll} px wide in a {client} px frame"
        );
    }
    let page = dir.path().join("pip-bk-warm.html");
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_png = screenshot(&bin, dir.path(), &blank, 390, 844);
    let png = screenshot(&bin, dir.path(), &page, 390, 844);
    assert_eq!(png_size(&png), (390, 844));
    assert!(
        png.len() > 4 * blank_png.len(),
        "{} vs {}",
        png.len(),
        blank_png.len()
    );
}

/// No browser needed: `-o` for every format, `--build-json` mistakes are usage errors.
#[test]
fn report_output_file_and_build_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.txt");
    let o = cicache()
        .args(["report", "-o"])
        .arg(&out)
        .arg(fixture("bk-warm.log"))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("cache: 5/5 steps cached"), "{text}");
    // Only the report is left in the directory: the temp file was renamed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let not_a_build = dir.path().join("other.json");
    std::fs::write(&not_a_build, "{\"ok\": true}").unwrap();
    for (args, want) in [
        (
            vec![
                "--build-json".into(),
                not_a_build.clone().into_os_string(),
                fixture("bk-warm.log").into_os_string(),
                fixture("bk-cold.log").into_os_string(),
            ],
            "exactly one LOG",
        ),
        (
            vec![
                "--build-json".into(),
                not_a_build.clone().into_os_string(),
                fixture("bk-warm.log").into_os_string(),
            ],
            "no `phases` list",
        ),
        (
            vec![
                "--build-json".into(),
                dir.path().join("missing.json").into_os_string(),
                fixture("bk-warm.log").into_os_string(),
            ],
            "missing.json",
        ),
    ] {
        let o = cicache().arg("report").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{want:?} in {err}");
    }

    // The JSON report carries the explanation and the phases.
    let build_json = dir.path().join("build.json");
    std::fs::write(
        &build_json,
        r#"{"phases":[{"name":"restore","status":"ok","seconds":0.2,"detail":{"hit":false,"key":"pip-x"}},
            {"name":"inject","status":"ok","seconds":1.0,"detail":{"mounts":[{"files":0}]}},
            {"name":"build","status":"ok","seconds":7.5}]}"#,
    )
    .unwrap();
    let o = cicache()
        .args(["report", "--json", "--build-json"])
        .arg(&build_json)
        .arg(fixture("cicache-build-cold.log"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &doc["reports"][0];
    let kinds: Vec<&str> = r["miss"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        &kinds[..3],
        &["restore_miss", "cache_mount_empty", "no_cache_tag"]
    );
    assert_eq!(r["phases"].as_array().unwrap().len(), 3);
    assert_eq!(r["build_seconds"], 7.5);
}
