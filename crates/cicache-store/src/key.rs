//! Cache keys, scopes and key templates.
//!
//! A template is plain text with `{{ ... }}` expressions, the same syntax in `cicache key`,
//! `cicache.yml` and the Jenkins steps:
//!
//! | expression | renders as |
//! |---|---|
//! | `{{ hashFiles "requirements*.txt" "constraints.txt" }}` | 20 hex digits of a blake3 over the matched files' paths and contents (globs relative to the base dir, `**` allowed); an error when nothing matches |
//! | `{{ env "NAME" }}` | the variable's value; an error when it is unset |
//! | `{{ os }}` / `{{ arch }}` | `linux`, `x86_64` ... |
//! | `{{ branch }}` | `CICACHE_BRANCH`, `BRANCH_NAME`, `CHANGE_BRANCH` or `GIT_BRANCH` (without `origin/`) |

use std::fs::File;
use std::path::Path;

use crate::error::{Result, StoreError};

/// Longest key accepted (as actions/cache).
pub const MAX_KEY_LEN: usize = 512;

/// Checks that a key can be stored.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| StoreError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if key.is_empty() {
        return Err(bad("it is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(bad(&format!("it is longer than {MAX_KEY_LEN} bytes")));
    }
    if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("it contains whitespace or control characters"));
    }
    Ok(())
}

/// Checks that a scope (a branch name, `pr-7`) can be stored.
pub fn validate_scope(scope: &str) -> Result<()> {
    let bad = |reason: &str| StoreError::InvalidScope {
        scope: scope.to_string(),
        reason: reason.to_string(),
    };
    if scope.is_empty() {
        return Err(bad("it is empty"));
    }
    if scope.len() > 255 {
        return Err(bad("it is longer than 255 bytes"));
    }
    if scope.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("it contains whitespace or control characters"));
    }
    Ok(())
}

/// Encodes a key or scope as one path segment of an object name. Byte-wise, so the encoding
/// of a prefix is a prefix of the encoding (restore-key lookup relies on it).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"._-+=@,~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // `.` and `..` are not names a filesystem keeps.
    if out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

/// Inverse of [`encode_segment`]; `None` for names that are not a valid encoding.
pub fn decode_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What templates read from the outside world; tests substitute it.
pub trait TemplateEnv {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl TemplateEnv for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// The branch a CI build runs for, from the usual CI variables.
pub fn current_branch(env: &dyn TemplateEnv) -> Option<String> {
    [
        "CICACHE_BRANCH",
        "BRANCH_NAME",
        "CHANGE_BRANCH",
        "GIT_BRANCH",
    ]
    .iter()
    .find_map(|v| env.var(v))
    .map(|b| b.strip_prefix("origin/").unwrap_or(&b).to_string())
}

/// Renders a key template with globs resolved against `base`.
pub fn render(template: &str, base: &Path, env: &dyn TemplateEnv) -> Result<String> {
    let err = |reason: String| StoreError::Template {
        template: template.to_string(),
        reason,
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| err("a `{{` has no closing `}}`".into()))?;
        let expr = after[..end].trim();
        out.push_str(&eval(expr, base, env).map_err(err)?);
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err(err("a `}}` has no opening `{{`".into()));
    }
    out.push_str(rest);
    validate_key(&out)?;
    Ok(out)
}

fn eval(expr: &str, base: &Path, env: &dyn TemplateEnv) -> std::result::Result<String, String> {
    let (name, args) = split_call(expr)?;
    let want = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "`{name}` takes {n} argument(s), got {}",
                args.len()
            ))
        }
    };
    match name.as_str() {
        "os" => want(0).map(|_| std::env::consts::OS.to_string()),
        "arch" => want(0).map(|_| std::env::consts::ARCH.to_string()),
        "branch" => {
            want(0)?;
            current_branch(env)
                .map(|b| b.replace(|c: char| c.is_whitespace() || c.is_control(), "_"))
                .ok_or_else(|| "`branch` is unknown: set BRANCH_NAME or CICACHE_BRANCH".into())
        }
        "env" => {
            want(1)?;
            env.var(&args[0])
                .ok_or_else(|| format!("environment variable {} is not set", args[0]))
        }
        "hashFiles" => {
            if args.is_empty() {
                return Err("`hashFiles` needs at least one glob".into());
            }
            hash_files(base, &args)
        }
        other => Err(format!(
            "unknown function `{other}`; known: hashFiles, env, os, arch, branch"
        )),
    }
}

/// Splits `name "a" "b"` into the name and its quoted arguments.
fn split_call(expr: &str) -> std::result::Result<(String, Vec<String>), String> {
    let mut chars = expr.chars().peekable();
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            break;
        }
        name.push(c);
        chars.next();
    }
    if name.is_empty() {
        return Err("empty `{{ }}`".into());
    }
    let mut args = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some('"') => {
                let mut arg = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string".into()),
                        Some('"') => break,
                        Some('\\') => arg.push(chars.next().ok_or("unterminated string")?),
                        Some(c) => arg.push(c),
                    }
                }
                args.push(arg);
            }
            Some(c) => return Err(format!("arguments must be \"quoted\", found `{c}`")),
        }
    }
    Ok((name, args))
}

/// Hashes the files matched by `globs` under `base`: their relative paths and contents, in
/// path order, so the result depends on neither the walk order nor mtimes.
pub fn hash_files(base: &Path, globs: &[String]) -> std::result::Result<String, String> {
    let mut builder = globset::GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|e| format!("bad glob {g:?}: {e}"))?;
        builder.add(glob);
    }
    let set = builder.build().map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(base)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || e.file_name() != ".git");
    for entry in walk {
        let entry = entry.map_err(|e| format!("reading {}: {e}", base.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(base).unwrap_or(entry.path());
        let rel = rel.to_string_lossy().replace('\\', "/");
        if set.is_match(&rel) {
            files.push(rel);
        }
    }
    if files.is_empty() {
        return Err(format!(
            "hashFiles {globs:?} matched no file under {}; check the globs and the working directory",
            base.display()
        ));
    }
    files.sort();
    let mut h = blake3::Hasher::new();
    for rel in &files {
        let path = base.join(rel);
        let mut f = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut fh = blake3::Hasher::new();
        std::io::copy(&mut f, &mut fh).map_err(|e| format!("{}: {e}", path.display()))?;
        h.update(rel.as_bytes());
        h.update(&[0]);
        h.update(fh.finalize().as_bytes());
    }
    Ok(h.finalize().to_hex()[..20].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);
    impl TemplateEnv for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| s.to_string())
        }
    }

    #[test]
    fn renders_functions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "torch==2.1\n").unwrap();
        std::fs::write(dir.path().join("requirements-dev.txt"), "pytest\n").unwrap();
        let env = MapEnv(HashMap::from([
            ("BRANCH_NAME", "origin/main"),
            ("PY", "3.11"),
        ]));
        let k = render(
            "pip-{{ hashFiles \"requirements*.txt\" }}-{{ env \"PY\" }}-{{ os }}-{{branch}}",
            dir.path(),
            &env,
        )
        .unwrap();
        let parts: Vec<&str> = k.split('-').collect();
        assert_eq!(parts[0], "pip");
        assert_eq!(parts[1].len(), 20);
        assert_eq!(parts[2], "3.11");
        assert_eq!(parts[3], std::env::consts::OS);
        assert_eq!(parts[4], "main");
    }

    #[test]
    fn hash_changes_with_content_not_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("requirements.txt");
        std::fs::write(&f, "a\n").unwrap();
        let g = vec!["requirements*.txt".to_string()];
        let h1 = hash_files(dir.path(), &g).unwrap();
        filetime::set_file_mtime(&f, filetime::FileTime::from_unix_time(1000, 0)).unwrap();
        assert_eq!(h1, hash_files(dir.path(), &g).unwrap());
        std::fs::write(&f, "b\n").unwrap();
        assert_ne!(h1, hash_files(dir.path(), &g).unwrap());
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let env = MapEnv(HashMap::new());
        let e = render("{{ hashFiles \"nope*.txt\" }}", dir.path(), &env).unwrap_err();
        assert!(e.to_string().contains("matched no file"), "{e}");
        let e = render("{{ env \"MISSING\" }}", dir.path(), &env).unwrap_err();
        assert!(e.to_string().contains("MISSING"), "{e}");
        let e = render("{{ nope }}", dir.path(), &env).unwrap_err();
        assert!(e.to_string().contains("unknown function"), "{e}");
        let e = render("a-{{ os", dir.path(), &env).unwrap_err();
        assert!(e.to_string().contains("closing"), "{e}");
    }

    #[test]
    fn encoding_round_trips_and_keeps_prefixes() {
        for s in ["pip-abc", "feature/x y", "..", "ü-ключ", "a%b"] {
            assert_eq!(decode_segment(&encode_segment(s)).as_deref(), Some(s));
            assert!(!encode_segment(s).contains('/'));
        }
        let k = encode_segment("feature/foo-123");
        assert!(k.starts_with(&encode_segment("feature/fo")));
    }
}
