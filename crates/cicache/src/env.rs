//! The `CICACHE_*` variables: which exist, empty ones as unset, misspelt ones named.
//!
//! Every variable of a flag is declared on the flag (`env = "..."`, read by clap); the others
//! are listed here. docs/CONFIG.md lists them all; a test keeps this list and the sources in
//! step (a variable read anywhere in crates/ or the Jenkins library and missing here would be
//! warned about as unknown).

use clap::CommandFactory;

/// Variables cicache reads that belong to no flag.
pub const OTHER_VARS: &[&str] = &[
    "CICACHE_BRANCH",
    // Set by crates/cicache/build.rs for the compiler (`--version`), not read at run time.
    "CICACHE_BUILD_DATE",
    "CICACHE_CRASH_AT",
    "CICACHE_GIT_COMMIT",
    "CICACHE_LEASE_HEARTBEAT_SECS",
    "CICACHE_LOG",
    // A build argument of the cache dance (cicache-docker), not a variable; listed because
    // the name appears in the sources.
    "CICACHE_NONCE",
    // Set by crates/cicache-registry's tests for the child processes they start.
    "CICACHE_OCI_ECR_CHILD",
    "CICACHE_OCI_PASSWORD",
    "CICACHE_OCI_USERNAME",
    "CICACHE_S3_CONCURRENCY",
    "CICACHE_S3_PART_SIZE",
    "CICACHE_S3_PATH_STYLE",
    "CICACHE_STATE_DIR",
    "CICACHE_SWEEP_RETRY_SECS",
    "CICACHE_SWEEP_WAIT_SECS",
];

/// Variables of the Jenkins library (vars/, src/) that an agent's environment may hold when
/// the library runs cicache: not cicache's, but not misspellings either.
pub const LIBRARY_VARS: &[&str] = &[
    "CICACHE_BIN",
    "CICACHE_CACHE_PLUGIN",
    "CICACHE_DEFAULT_BRANCH",
    "CICACHE_DOWNLOAD_URL",
    "CICACHE_HELPER_URL",
    "CICACHE_REGISTRY_PASSWORD",
    "CICACHE_REPORT_SOURCE",
    "CICACHE_SHA256",
    "CICACHE_STANDIN",
    "CICACHE_STANDIN_DIR",
    "CICACHE_STANDIN_VERSION",
    "CICACHE_URL",
];

/// Prefixes of variables used by cicache's own test harness (test/run.sh, test/lib).
const TEST_PREFIX: &str = "CICACHE_TEST_";

/// Every variable name cicache knows: the flags' and the lists above.
pub fn known_vars() -> Vec<String> {
    let mut names: Vec<String> = OTHER_VARS
        .iter()
        .chain(LIBRARY_VARS)
        .map(|s| s.to_string())
        .collect();
    fn walk(cmd: &clap::Command, names: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            if let Some(e) = a.get_env() {
                names.push(e.to_string_lossy().into_owned());
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, names);
        }
    }
    walk(&crate::cli::Cli::command(), &mut names);
    names.sort();
    names.dedup();
    names
}

/// Is `name` a variable cicache (or its library, or its tests) knows?
fn is_known(name: &str, known: &[String]) -> bool {
    name.starts_with(TEST_PREFIX) || known.iter().any(|k| k == name)
}

/// Removes every empty `CICACHE_*` variable (an empty variable counts as unset) and returns
/// the unknown ones, each with the closest known name when one is close.
///
/// Call first thing in `main`, before any thread is started.
pub fn clear_empty_and_find_unknown() -> Vec<(String, Option<String>)> {
    let vars: Vec<(String, bool)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.is_empty())))
        .filter(|(k, _)| k.starts_with("CICACHE_"))
        .collect();
    let known = known_vars();
    let mut unknown = Vec::new();
    for (name, empty) in vars {
        if empty {
            // SAFETY: called at the start of main, before any other thread exists, so no
            // thread reads the environment at the same time.
            unsafe { std::env::remove_var(&name) };
            continue;
        }
        if !is_known(&name, &known) {
            let closest = closest(&name, &known);
            unknown.push((name, closest));
        }
    }
    unknown.sort();
    unknown
}

/// `--json` on the command line (before a `--`) or a true `CICACHE_JSON`: for errors that
/// come before the flags are parsed.
pub fn json_requested() -> bool {
    let flag = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    let var = std::env::var("CICACHE_JSON").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on" | "y" | "t"
        )
    });
    flag || var
}

/// The known name closest to `name` by edit distance, when it is close enough to be a typo.
fn closest(name: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance over bytes (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names_a_typo() {
        let known = known_vars();
        assert_eq!(
            closest("CICACHE_STOR", &known).as_deref(),
            Some("CICACHE_STORE")
        );
        assert_eq!(
            closest("CICACHE_SCOEP", &known).as_deref(),
            Some("CICACHE_SCOPE")
        );
        assert_eq!(closest("CICACHE_ZZZZZZZZZZZZZZZZZZZ", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    /// Every `CICACHE_*` name in the sources (the crates, the Jenkins library) is known, so
    /// no variable cicache reads is ever warned about as unknown.
    #[test]
    fn every_variable_in_the_sources_is_known() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let known = known_vars();
        let mut missing = std::collections::BTreeSet::new();
        for dir in ["crates", "vars", "src", "resources"] {
            for e in walkdir::WalkDir::new(root.join(dir))
                .into_iter()
                .filter_map(Result::ok)
            {
                let p = e.path();
                let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
                if !e.file_type().is_file()
                    || !matches!(ext, "rs" | "groovy" | "sh")
                    || p.components().any(|c| c.as_os_str() == "target")
                    || p.components().any(|c| c.as_os_str() == "tests")
                {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(p) else {
                    continue;
                };
                if p.ends_with("cicache/src/env.rs") {
                    continue; // this file's own examples of typos
                }
                for (i, _) in text.match_indices("CICACHE_") {
                    // A word of its own (not `MEDIA_CICACHE_BLOB`).
                    let before = text[..i].chars().next_back();
                    if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                        continue;
                    }
                    let name: String = text[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    // `CICACHE_` alone, or a prefix in a comment (`CICACHE_S3_*`).
                    if name.ends_with('_') || text[i + name.len()..].starts_with('*') {
                        continue;
                    }
                    if !is_known(&name, &known) {
                        missing.insert(format!("{name} ({})", p.display()));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "read in the sources but not in env.rs: {missing:?}"
        );
    }
}
