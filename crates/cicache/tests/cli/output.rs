//! What the store commands print for a person (issue 22): progress bars as `--progress`
//! and `-q` say, one unit system, words instead of type names, a list with a total line.

use std::fs;
use std::path::Path;

use crate::{T, random};

/// A cache dir with one 3,000,000-byte wheel and a small file.
fn cache_dir(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("big.whl"), random(3_000_000)).unwrap();
    fs::write(dir.join("small.txt"), b"hello").unwrap();
}

#[test]
fn progress_always_draws_bars_on_a_pipe_in_si_units_and_quiet_draws_none() {
    let t = T::new();
    cache_dir(&t.p("c"));
    // stderr is a pipe here: `--progress always` draws anyway, as its help says.
    let (_, err) = t.ok(&["--progress", "always", "save", "--key", "k1", "--path", "c"]);
    assert!(err.contains("save hashing ["), "{err}");
    // A local directory store is written, not uploaded.
    assert!(err.contains("save writing ["), "{err}");
    assert!(!err.contains("uploading"), "{err}");
    assert!(
        err.contains("3.00 MB/3.00 MB"),
        "the bar in SI units: {err}"
    );
    for iec in ["KiB", "MiB", "GiB"] {
        assert!(!err.contains(iec), "{iec} in {err}");
    }
    let (_, err) = t.ok(&[
        "--progress",
        "always",
        "restore",
        "--key",
        "k1",
        "--path",
        "r",
    ]);
    assert!(err.contains("restore reading ["), "{err}");
    assert!(!err.contains("downloading"), "{err}");

    // -q: no bars, whatever --progress says.
    cache_dir(&t.p("c2"));
    let (out, err) = t.ok(&[
        "-q",
        "--progress",
        "always",
        "save",
        "--key",
        "k2",
        "--path",
        "c2",
    ]);
    assert_eq!(out.trim(), "saved");
    assert!(!err.contains('['), "-q drew a bar: {err}");
    // auto on a pipe: no bar escape codes in the log.
    cache_dir(&t.p("c3"));
    let (_, err) = t.ok(&["save", "--key", "k3", "--path", "c3"]);
    assert!(!err.contains('\r') && !err.contains('['), "{err}");
}

/// On a terminal (util-linux `script` gives the command one): bars by default, none with -q.
#[test]
fn on_a_terminal_bars_unless_quiet() {
    let t = T::new();
    let bin = assert_cmd::cargo::cargo_bin("cicache");
    let in_tty = |args: &str| {
        let o = std::process::Command::new("script")
            .args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"])
            .env("TERM", "xterm")
            .env("CICACHE_STORE", t.p("store"))
            .env("CICACHE_STATE_DIR", t.p("state"))
            .current_dir(t.p(""))
            .output();
        o.ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    cache_dir(&t.p("c"));
    let Some(out) = in_tty("save --key k1 --path c") else {
        eprintln!("skipped: util-linux `script` cannot run here");
        return;
    };
    assert!(out.contains("save writing ["), "{out}");
    cache_dir(&t.p("d"));
    let out = in_tty("-q save --key k2 --path d").unwrap_or_default();
    assert!(
        out.contains("saved") && !out.contains('['),
        "-q drew on a terminal: {out}"
    );
}

#[test]
fn a_restore_key_hit_says_it_is_partial() {
    let t = T::new();
    cache_dir(&t.p("c"));
    t.out("--scope main save --key pip-aaa --path c");
    let out = t.out("--scope main restore --key pip-aaa --path r");
    assert_eq!(out, "hit pip-aaa");
    let out = t.out("--scope main restore --key pip-bbb --restore-key pip- --path r");
    assert_eq!(out, "hit pip-aaa (partial: restore key pip-)");
    let out = t.out("--scope pr-7 --fallback-scope main restore --key pip-aaa --path r");
    assert_eq!(out, "hit pip-aaa (scope main)");
}

#[test]
fn import_and_prune_speak_words() {
    let t = T::new();
    cache_dir(&t.p("c"));
    t.ok(&["save", "--key", "a", "--path", "c"]);
    t.ok(&["export", "--key", "a", "-o", "a.tar.zst"]);
    let (first, _) = t.ok(&["import", "--key", "b", "a.tar.zst"]);
    assert!(
        first.starts_with("imported a.tar.zst as b (scope default): 2 files, 3.00 MB"),
        "{first}"
    );
    let (again, _) = t.ok(&["import", "--key", "b", "a.tar.zst"]);
    assert!(again.contains("already exists"), "{again}");
    for o in [&first, &again] {
        assert!(
            !o.contains("Saved") && !o.contains("Exists"),
            "a type name: {o}"
        );
    }
    cache_dir(&t.p("d"));
    t.ok(&["save", "--key", "c", "--path", "d"]);
    let (out, _) = t.ok(&["prune", "--max-age", "0s", "--dry-run"]);
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("dry run: would remove 3 of 3 entries"),
        "{out}"
    );
    assert!(!out.contains("removed"), "{out}");
    let (out, _) = t.ok(&["list"]);
    assert!(
        out.contains("total: 3 entries"),
        "the dry run removed something: {out}"
    );
}

#[test]
fn list_counts_in_words_fits_its_cells_and_totals_logical_and_stored_size() {
    let t = T::new();
    // An empty store (a missing one is an error: reading commands create no store).
    std::fs::create_dir_all(t.p("store")).unwrap();
    let (out, _) = t.ok(&["list"]);
    assert!(out.starts_with("no entries in dir:"), "{out}");
    cache_dir(&t.p("c"));
    t.ok(&["save", "--key", "pip-one", "--path", "c"]);
    let (out, _) = t.ok(&["list"]);
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("total: 1 entry in dir:"), "{out}");
    // The same files in a second scope: twice the files, the blob stored once.
    t.ok(&["--scope", "main", "save", "--key", "pip-one", "--path", "c"]);
    let (out, _) = t.ok(&["list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("SCOPE    KEY  "), "{out}");
    for l in &lines {
        assert_eq!(l.trim_end(), *l, "trailing blanks: {l:?}");
    }
    assert!(lines[1].len() < 80, "padded row: {:?}", lines[1]);
    let total = lines[3];
    assert!(total.starts_with("total: 2 entries in dir:"), "{out}");
    assert!(
        total.contains(", 6.00 MB of files, 3.00 MB stored (each blob once)"),
        "{out}"
    );
    let (out, _) = t.ok(&["list", "--in-scope", "main"]);
    let total = out.lines().last().unwrap_or_default();
    assert!(
        total.starts_with("total: 1 entry in scope main of dir:"),
        "{out}"
    );
    assert!(
        total.ends_with("3.00 MB of files; the whole store holds 3.00 MB"),
        "{out}"
    );
}
