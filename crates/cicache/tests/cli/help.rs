//! Help, version, completions and man pages through the real binary (issue 22).

use std::path::Path;
use std::process::Command;

fn cicache(args: &[&str]) -> (i32, String, String) {
    crate::run(Path::new(env!("CARGO_MANIFEST_DIR")), &[], args)
}

/// The "Global options:" section of a help text and what comes before it.
fn sections(help: &str) -> (&str, String) {
    let (own, rest) = help
        .split_once("Global options:\n")
        .unwrap_or_else(|| panic!("no global options section:\n{help}"));
    let global = rest
        .split("\n\n")
        .take_while(|block| block.starts_with(' '))
        .collect::<Vec<_>>()
        .join("\n\n");
    (own, global)
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let (code, out, _) = cicache(&["--version"]);
    assert_eq!(code, 0);
    let v = out.trim();
    let rest = v
        .strip_prefix(concat!("cicache ", env!("CARGO_PKG_VERSION"), " (commit "))
        .unwrap_or_else(|| panic!("{v}"));
    let (commit, date) = rest
        .trim_end_matches(')')
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{v}"));
    // The commit of this checkout (a tree without git says `unknown`).
    let head = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(commit, head.as_deref().unwrap_or("unknown"), "{v}");
    let d: Vec<&str> = date.split('-').collect();
    assert!(
        d.len() == 3 && d[0].len() == 4 && d.iter().all(|p| p.parse::<u32>().is_ok()),
        "{v}"
    );
}

#[test]
fn global_options_have_their_own_section_and_key_hides_what_it_ignores() {
    let (code, out, _) = cicache(&["key", "--help"]);
    assert_eq!(code, 0);
    let (own, global) = sections(&out);
    assert!(own.contains("--base"), "{out}");
    assert!(
        global.contains("--json") && !global.contains("--base"),
        "{out}"
    );
    for ignored in ["--store", "--strict", "--timeout"] {
        assert!(!out.contains(ignored), "key --help lists {ignored}:\n{out}");
    }
    assert!(out.contains("Examples:\n  cicache key "), "{out}");
    let (code, out, _) = cicache(&["save", "--help"]);
    assert_eq!(code, 0);
    let (own, global) = sections(&out);
    assert!(
        own.contains("--if-changed") && !own.contains("--store"),
        "{out}"
    );
    assert!(
        global.contains("--store") && global.contains("--strict"),
        "{out}"
    );
}

#[test]
fn the_help_names_only_files_that_exist() {
    let (_, top, _) = cicache(&["--help"]);
    assert!(!top.contains("DESIGN.md"), "{top}");
    // docs/CLI.md holds the help of every command (a unit test keeps it current).
    let all = std::fs::read_to_string(repo().join("docs/CLI.md")).unwrap();
    assert!(all.contains(&top.lines().next().unwrap_or("?").to_string()));
    let mut named = 0;
    for (i, _) in all.match_indices(".md") {
        let start = all[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-'))
            .map(|s| s + 1)
            .unwrap_or(0);
        let name = &all[start..i + 3];
        if name.len() <= 3 {
            continue;
        }
        let path = if name.contains('/') {
            repo().join(name)
        } else {
            repo().join("docs").join(name)
        };
        assert!(
            path.is_file(),
            "the help names {name}, which does not exist"
        );
        named += 1;
    }
    assert!(named > 5, "only {named} files named");
}

#[test]
fn completions_and_man_pages() {
    let (code, out, err) = cicache(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("_cicache()") && out.contains("--restore-key"),
        "{out}"
    );
    let (code, out, _) = cicache(&["completions", "zsh"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("#compdef cicache"), "{out}");
    let (code, _, err) = cicache(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{err}");

    let (code, out, _) = cicache(&["man"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(".TH cicache 1") && out.contains("restore"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let (code, _, err) = cicache(&["man", "--dir", pages.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in ["cicache.1", "cicache-restore.1", "cicache-registry-gc.1"] {
        let body = std::fs::read_to_string(pages.join(page)).unwrap_or_default();
        assert!(body.contains(".TH"), "{page}: {body}");
    }
    assert!(
        std::fs::read_to_string(pages.join("cicache-restore.1"))
            .unwrap()
            .contains("restore\\-key"),
        "the restore page has its flags"
    );
}
