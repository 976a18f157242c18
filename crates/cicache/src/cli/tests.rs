//! The command line keeps its word (issue 22): every command has examples that parse, every
//! flag has a `CICACHE_*` variable, global options sit under their own heading, and
//! docs/CLI.md is the help of every command as it is now.

use std::path::PathBuf;

use super::command;

/// Every command and subcommand with its path (`["registry", "gc"]`), the top one first;
/// the built-in `help` subcommands left out.
fn all_commands() -> Vec<(Vec<String>, clap::Command)> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        out.push((path.clone(), cmd.clone()));
        let mut subs: Vec<&clap::Command> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        subs.sort_by_key(|c| c.get_display_order());
        for sub in subs {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            walk(sub, p, out);
        }
    }
    let mut cmd = command();
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, Vec::new(), &mut out);
    out
}

fn name(path: &[String]) -> String {
    std::iter::once("cicache")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The example lines of a help text: `cicache ...` commands, cut at `|`, `&&` and `>`.
fn examples(help: &str) -> Vec<String> {
    let Some((_, ex)) = help.split_once("Examples:\n") else {
        return Vec::new();
    };
    ex.lines()
        .take_while(|l| l.starts_with("  "))
        .flat_map(|l| l.split(" && ").flat_map(|p| p.split(" | ")))
        .map(|p| p.split(" > ").next().unwrap_or(p).trim().to_string())
        .filter(|p| p.starts_with("cicache "))
        .collect()
}

/// Splits a shell line into words: single quotes, double quotes (with `\"`), blanks.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') if chars.peek() == Some(&'"') => {
                cur.get_or_insert_default().push('"');
                chars.next();
            }
            (Some(_), c) => cur.get_or_insert_default().push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.get_or_insert_default();
            }
            (None, '\\') => cur.get_or_insert_default().extend(chars.next()),
            (None, c) if c.is_whitespace() => words.extend(cur.take()),
            (None, c) => cur.get_or_insert_default().push(c),
        }
    }
    words.extend(cur);
    words
}

#[test]
fn every_command_shows_examples_and_they_parse() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for (path, cmd) in all_commands() {
        let help = cmd
            .get_after_long_help()
            .or(cmd.get_after_help())
            .map(|s| s.to_string())
            .unwrap_or_default();
        let ex = examples(&help);
        if ex.is_empty() {
            missing.push(name(&path));
        }
        for line in ex {
            let words = shell_words(&line);
            let shown = |e: &clap::Error| e.kind() == clap::error::ErrorKind::DisplayHelp;
            if let Err(e) = command()
                .try_get_matches_from(&words)
                .map_err(|e| (shown(&e), e))
                && !e.0
            {
                let e = e.1;
                panic!(
                    "the example `{line}` of `{}` does not parse:\n{e}",
                    name(&path)
                );
            }
            checked += 1;
        }
    }
    assert!(missing.is_empty(), "commands without examples: {missing:?}");
    assert!(checked > 40, "only {checked} examples");
}

#[test]
fn every_flag_has_a_cicache_variable() {
    let mut missing = Vec::new();
    for (path, cmd) in all_commands() {
        for a in cmd.get_arguments() {
            let builtin = matches!(a.get_id().as_str(), "help" | "version");
            if a.is_positional() || builtin {
                continue;
            }
            match a.get_env().and_then(|e| e.to_str()) {
                Some(v) if v.starts_with("CICACHE_") => {}
                _ => missing.push(format!("{} --{}", name(&path), a.get_id())),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags without a CICACHE_* variable: {missing:?}"
    );
}

#[test]
fn global_options_have_their_own_heading_and_unused_ones_are_hidden() {
    for (path, cmd) in all_commands() {
        for a in cmd.get_arguments() {
            let heading = a.get_help_heading();
            if a.is_global_set() {
                assert_eq!(
                    heading,
                    Some("Global options"),
                    "{} --{}",
                    name(&path),
                    a.get_id()
                );
            } else {
                assert_ne!(
                    heading,
                    Some("Global options"),
                    "{} --{}",
                    name(&path),
                    a.get_id()
                );
            }
        }
    }
    let mut top = command();
    top.build();
    let key = top
        .find_subcommand_mut("key")
        .expect("key")
        .render_long_help()
        .to_string();
    for unused in ["--store", "--strict", "--timeout", "--scope", "--progress"] {
        assert!(!key.contains(unused), "key --help lists {unused}:\n{key}");
    }
    assert!(
        key.contains("Global options:\n") && key.contains("--json"),
        "{key}"
    );
    // Hidden, not gone: a pipeline's CICACHE_STORE or a --store never breaks `key`.
    command()
        .try_get_matches_from(["cicache", "key", "--store", "/x", "--timeout", "3s", "k"])
        .expect("key accepts the hidden global options");
    let restore = top
        .find_subcommand_mut("restore")
        .expect("restore")
        .render_long_help()
        .to_string();
    let global = restore
        .split("Global options:\n")
        .nth(1)
        .unwrap_or_default();
    for used in [
        "--store",
        "--scope",
        "--fallback-scope",
        "--strict",
        "--timeout",
        "--progress",
    ] {
        assert!(
            global.contains(used),
            "restore --help lacks {used}:\n{restore}"
        );
    }
}

/// docs/CLI.md: every command's `--help`, wrapped at 100 columns, no variable's value shown.
fn cli_md() -> String {
    fn plain(cmd: clap::Command) -> clap::Command {
        cmd.term_width(100)
            .mut_args(|a| a.hide_env_values(true))
            .mut_subcommands(plain)
    }
    let mut top = plain(command());
    top.build();
    let mut paths = Vec::new();
    for (path, _) in all_commands() {
        paths.push(path);
    }
    let mut md = String::from(
        "# Command reference\n\n\
         Every command's `--help`, generated from the clap types in `crates/cicache/src/cli/` \
         (do not edit: `UPDATE_DOCS=1 cargo test --workspace --bin cicache cli::tests` \
         rewrites this file, and that test fails while it is out of date). The same text: \
         `cicache COMMAND --help`, `cicache man`. Variables and cicache.yml: \
         [CONFIG.md](CONFIG.md); `--json` documents: [JSON.md](JSON.md).\n\n",
    );
    for path in &paths {
        let n = name(path);
        md.push_str(&format!("- [`{n}`](#{})\n", n.replace(' ', "-")));
    }
    for path in &paths {
        let mut cmd = &mut top;
        for p in path {
            cmd = cmd.find_subcommand_mut(p).expect("a listed command");
        }
        let help = cmd.render_long_help().to_string();
        let help: Vec<&str> = help.lines().map(str::trim_end).collect();
        md.push_str(&format!(
            "\n## {}\n\n```text\n{}\n```\n",
            name(path),
            help.join("\n").trim_end()
        ));
    }
    md
}

#[test]
fn docs_cli_md_is_every_commands_help() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/CLI.md");
    let want = cli_md();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&file, &want).expect("writing docs/CLI.md");
    }
    let have = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        have == want,
        "docs/CLI.md is not the help of every command as it is now: run \
         UPDATE_DOCS=1 cargo test --workspace --bin cicache cli::tests"
    );
}

#[test]
fn shell_words_split_like_a_shell() {
    assert_eq!(
        shell_words(r#"cicache key 'pip-{{ hashFiles "r.txt" }}' --base "a b" x\"y"#),
        [
            "cicache",
            "key",
            "pip-{{ hashFiles \"r.txt\" }}",
            "--base",
            "a b",
            "x\"y"
        ]
    );
    assert_eq!(shell_words(r#"a "q \"x\"" ''"#), ["a", "q \"x\"", ""]);
}

#[test]
fn the_readmes_commands_parse() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let mut checked = 0;
    let mut in_code = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let line = line.trim();
        if !in_code || !line.starts_with("cicache ") {
            continue;
        }
        let words = shell_words(line);
        if let Err(e) = command().try_get_matches_from(&words) {
            panic!("README.md: `{line}` does not parse:\n{e}");
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} commands in README.md");
}
