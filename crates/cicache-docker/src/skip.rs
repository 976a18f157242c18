//! Unchanged builds: the hash of everything an image is built from, so that `cicache build
//! --push` can tag the image the registry already has instead of building it again.
//!
//! The hash ([`compute`]) covers what the base-image hash covers (the Dockerfile's bytes, the
//! files of its `COPY`/`ADD` lines by path, content and owner-exec bit, the build arguments,
//! the platform; see [`crate::base`]) and also:
//! - which image every external `FROM`, `COPY --from=IMAGE`, `RUN --mount=from=IMAGE` and
//!   `# syntax=` names, as the caller resolves it (a digest or image id: a `FROM python:3.12-slim` that
//!   moved upstream is another input);
//! - `--target`, the labels and the arguments passed to docker after `--`;
//! - `.dockerignore` (or `<Dockerfile>.dockerignore`, which BuildKit prefers): its bytes, and
//!   its rules applied to the files as docker applies them, so a `COPY . .` does not hash
//!   `.git` or the cache dir when they are ignored.
//!
//! The build records the hash as the label [`LABEL`] on the image; the classic flavour's cache
//! tag is the image itself, so the next build reads it there ([`Plan::Never`] lists what makes
//! a build never skippable: `--no-cache`/`--pull`, a `RUN --mount=type=bind` of the context,
//! an `ADD` of a URL, a `FROM` that cannot be resolved, the cache dir among the inputs).
//! Hashing more than docker reads only costs a needless build, never a wrong image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::base::{self, BaseError, BaseSpec};
use crate::dockerfile::{self, Dockerfile};

/// Label on images built by `cicache build`: the hash of their inputs.
pub const LABEL: &str = "io.cicache.inputs";
/// Label on images built by `cicache build`: the hash of the inputs of the Dockerfile's
/// lines up to its last `RUN` with a cache mount ([`compute_mount_steps`]).
pub const LABEL_MOUNT_STEPS: &str = "io.cicache.mount-inputs";
/// Label on images built by `cicache build`: the hashes of the steps up to each `RUN` with a
/// cache mount whose layer is in the image ([`image_mount_runs`]), in order, separated by
/// spaces. A build whose first hashes match reads those layers from the cache tag, so
/// it can pull them while the cache dir is restored and injected (the prefetch).
pub const LABEL_MOUNT_STEP_LIST: &str = "io.cicache.mount-steps";
/// Bump when the hashed text changes meaning.
const KIND: &str = "cicache-app-v1";

/// What a build is made from.
#[derive(Debug, Clone)]
pub struct SkipSpec {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    /// `KEY=VALUE`.
    pub build_args: Vec<String>,
    pub target: Option<String>,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// `KEY=VALUE` labels the build adds (not [`LABEL`] itself).
    pub labels: Vec<String>,
    /// Arguments after `--`.
    pub extra: Vec<String>,
    /// The workspace cache dir (never an input: restores change it).
    pub cache_dir: PathBuf,
}

/// The inputs of a build, hashed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildInputs {
    /// blake3 (hex) over every input.
    pub hash: String,
    /// Per-input hashes (`dockerfile`, `platform`, `arg:K`, `file:P`, `from:REF`, `target`,
    /// `extra`, `label:K`, `dockerignore:NAME`).
    pub inputs: BTreeMap<String, String>,
}

/// Whether a build can be skipped when its inputs are unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Hashed(BuildInputs),
    /// Never skipped, and why.
    Never(String),
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Expands `$VAR` and `${VAR}` (with `:-`/`-` defaults) from `vars`; `None` when a variable
/// has no value.
fn expand(word: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}')?;
            let inner = &body[..end];
            let (name, default) = match inner.find(":-").or_else(|| inner.find('-')) {
                Some(j) => {
                    let d = inner[j..].trim_start_matches(':');
                    (&inner[..j], Some(&d[1..]))
                }
                None => (inner, None),
            };
            match vars.get(name).filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(v),
                None => out.push_str(default?),
            }
            rest = &body[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                return None;
            }
            out.push_str(vars.get(&after[..len]).filter(|v| !v.is_empty())?);
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Some(out)
}

/// The images a Dockerfile reads that are not its own stages (`FROM`, `COPY --from=`,
/// `RUN --mount=...,from=`), with `ARG`s expanded; `Err` names one that cannot be expanded.
pub fn external_images(df: &Dockerfile, build_args: &[String]) -> Result<Vec<String>, String> {
    let given = base::build_arg_map(build_args).map_err(|e| e.to_string())?;
    // Global ARGs (before the first FROM) with their defaults, overridden by the build args.
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for ins in df.instructions.iter().filter(|i| i.stage.is_none()) {
        if ins.keyword != "ARG" {
            continue;
        }
        for w in ins.args.split_whitespace() {
            let (k, v) = w.split_once('=').unwrap_or((w, ""));
            let v = v.trim_matches('"').trim_matches('\'');
            vars.insert(k.to_string(), v.to_string());
        }
    }
    for (k, v) in &given {
        if vars.contains_key(k) {
            vars.insert(k.clone(), v.clone());
        }
    }
    let stage_names: BTreeSet<String> = df
        .stages
        .iter()
        .filter_map(|s| s.name.as_ref().map(|n| n.to_ascii_lowercase()))
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut add = |word: &str, line: usize, what: &str| -> Result<(), String> {
        let image = expand(word, &vars).ok_or_else(|| {
            format!("line {line}: {what} {word}: an ARG without a value names the image")
        })?;
        if image.is_empty() {
            return Err(format!("line {line}: {what} {word} names no image"));
        }
        let lower = image.to_ascii_lowercase();
        if lower == "scratch" || stage_names.contains(&lower) || image.parse::<usize>().is_ok() {
            return Ok(());
        }
        if !out.contains(&image) {
            out.push(image);
        }
        Ok(())
    };
    if let (Some(syntax), Some(line)) = (&df.syntax, df.syntax_line) {
        add(syntax, line, "# syntax=")?;
    }
    for s in &df.stages {
        add(&s.base, s.line, "FROM")?;
    }
    for ins in &df.instructions {
        if matches!(ins.keyword.as_str(), "COPY" | "ADD") {
            for f in &ins.flags {
                if let Some(v) = f.strip_prefix("--from=") {
                    add(v, ins.line, "COPY --from")?;
                }
            }
        }
        for m in &ins.mounts {
            for (k, v) in &m.options {
                if k == "from"
                    && let Some(v) = v
                {
                    add(v, ins.line, "RUN --mount from=")?;
                }
            }
        }
    }
    Ok(out)
}

/// Hashes the inputs of a build. `resolve` names the image a reference is (`Some(digest or
/// id)`), `None` when it cannot tell: the build is then never skipped.
pub fn compute(
    spec: &SkipSpec,
    resolve: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<Plan, BaseError> {
    let bytes = read(&spec.dockerfile)?;
    compute_text(spec, &bytes, true, resolve)
}

/// The hash of what the Dockerfile's lines up to `end_line` (the last `RUN` with a cache
/// mount) are made from: equal hashes mean docker takes those steps from the layer cache,
/// so the cache mounts are neither read nor written. Like [`compute`] without the target and
/// the labels, which do not change a step's cache key.
pub fn compute_mount_steps(
    spec: &SkipSpec,
    end_line: usize,
    resolve: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<Plan, BaseError> {
    let bytes = read(&spec.dockerfile)?;
    compute_text(spec, &prefix(&bytes, end_line), false, resolve)
}

/// The first `end_line` lines of a Dockerfile.
pub fn prefix(bytes: &[u8], end_line: usize) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for line in bytes.split_inclusive(|b| *b == b'\n').take(end_line) {
        out.extend_from_slice(line);
    }
    out
}

/// The last lines of the `RUN`s that use one of the cache mounts `ids` and whose layers are
/// the image's: in the target stage (`target`, else the last) or a stage it is built `FROM`,
/// in order. The classic flavour's inline cache holds only these layers.
pub fn image_mount_runs(df: &Dockerfile, ids: &[&str], target: Option<&str>) -> Vec<usize> {
    let Some(last) = df.stages.len().checked_sub(1) else {
        return Vec::new();
    };
    let by_name = |name: &str| {
        df.stages.iter().position(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    };
    let mut stage = match target {
        Some(t) => match by_name(t) {
            Some(i) => i,
            None => return Vec::new(),
        },
        None => last,
    };
    let mut lineage = vec![stage];
    while let Some(parent) = by_name(&df.stages[stage].base).filter(|p| *p < stage) {
        lineage.push(parent);
        stage = parent;
    }
    df.instructions
        .iter()
        .filter(|i| i.stage.is_some_and(|s| lineage.contains(&s)))
        .filter(|i| {
            i.mounts.iter().any(|m| {
                m.cache
                    .as_ref()
                    .is_some_and(|c| ids.contains(&c.id.as_str()))
            })
        })
        .map(|i| i.end_line)
        .collect()
}

/// How many leading entries `a` and `b` share.
pub fn common_prefix(a: &[String], b: &[String]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn read(path: &Path) -> Result<Vec<u8>, BaseError> {
    std::fs::read(path).map_err(|source| BaseError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn compute_text(
    spec: &SkipSpec,
    bytes: &[u8],
    whole: bool,
    resolve: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<Plan, BaseError> {
    if let Some(why) = extra_args_refusal(spec) {
        return Ok(Plan::Never(why));
    }
    let df = dockerfile::parse(&String::from_utf8_lossy(bytes)).map_err(|(line, message)| {
        dockerfile::DockerfileError::Syntax {
            path: spec.dockerfile.clone(),
            line,
            message,
        }
    })?;
    let (sources, notes) = base::copy_sources(&df);
    if let Some(why) = dockerfile_refusal(&df, &notes) {
        return Ok(Plan::Never(why));
    }
    let df_ignore = dockerfile_ignore(&spec.dockerfile);
    let ignore_text = ignore_text(&spec.context, &df_ignore)?;
    if let Some(why) = ignore_text.as_deref().and_then(ignore_refusal) {
        return Ok(Plan::Never(why));
    }
    let base_spec = BaseSpec {
        context: spec.context.clone(),
        dockerfile: spec.dockerfile.clone(),
        inputs: Vec::new(),
        build_args: spec.build_args.clone(),
        // Hashed below as `extra` (and refused where they change what docker reads).
        docker_args: Vec::new(),
        platform: spec.platform.clone(),
        ignore: match &ignore_text {
            Some(t) => base::Ignore::parse(t)?,
            None => base::Ignore::default(),
        },
    };
    let hashed = match base::compute_bytes(&base_spec, bytes) {
        Ok(h) => h,
        Err(e @ (BaseError::NoMatch { .. } | BaseError::OutsideContext { .. })) => {
            return Ok(Plan::Never(e.to_string()));
        }
        Err(e) => return Err(e),
    };
    if let Some(why) = files_refusal(spec, &sources, &hashed.files, &base_spec.ignore) {
        return Ok(Plan::Never(why));
    }
    let mut inputs = hashed.inputs;
    inputs.insert("modes".into(), modes_hash(spec, &hashed.files));
    inputs.insert(
        "kind".into(),
        if whole {
            KIND.into()
        } else {
            format!("{KIND}-mount-steps")
        },
    );
    let images = match external_images(&df, &spec.build_args) {
        Ok(i) => i,
        Err(why) => return Ok(Plan::Never(why)),
    };
    for image in images {
        match resolve(&image) {
            Some(id) => {
                inputs.insert(format!("from:{image}"), id);
            }
            None => {
                return Ok(Plan::Never(format!(
                    "which image {image} is could not be told (not on this agent, and its \
                     registry did not answer)"
                )));
            }
        }
    }
    if let Some(t) = spec.target.as_ref().filter(|_| whole) {
        inputs.insert("target".into(), t.clone());
    }
    if !spec.extra.is_empty() {
        inputs.insert("extra".into(), blake3_hex(spec.extra.join("\0").as_bytes()));
    }
    for l in spec.labels.iter().filter(|_| whole) {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        inputs.insert(format!("label:{k}"), blake3_hex(v.as_bytes()));
    }
    hash_ignore_files(spec, &df_ignore, &mut inputs)?;
    let hash = base::hash_of(&inputs);
    Ok(Plan::Hashed(BuildInputs { hash, inputs }))
}

/// Arguments after `--` that change what docker reads, beyond their text.
fn extra_args_refusal(spec: &SkipSpec) -> Option<String> {
    spec.extra
        .iter()
        .find(|a| {
            let a = a.as_str();
            a.starts_with("--no-cache")
                || a.starts_with("--pull")
                || a == "-f"
                || a.starts_with("--file")
                || a.starts_with("--build-context")
                || a.starts_with("--build-arg")
        })
        .map(|a| {
            format!(
                "{a} is passed to docker after `--` (give build args and the Dockerfile to cicache)"
            )
        })
}

/// What in the Dockerfile reads more than its lines name: another frontend, a bind mount of
/// the context, a URL (`notes` of [`base::copy_sources`]).
fn dockerfile_refusal(df: &Dockerfile, notes: &[String]) -> Option<String> {
    if let Some(syntax) = &df.syntax {
        let frontend = syntax.trim_start_matches("docker.io/");
        if !frontend.starts_with("docker/dockerfile") {
            return Some(format!(
                "the frontend {syntax} (# syntax=) may read any file of the context"
            ));
        }
    }
    for ins in &df.instructions {
        for m in &ins.mounts {
            if m.kind == "bind" && !m.options.iter().any(|(k, _)| k == "from") {
                return Some(format!(
                    "line {}: RUN --mount=type=bind reads the build context",
                    ins.line
                ));
            }
        }
    }
    notes.first().map(|n| {
        let line = n.split(':').next().unwrap_or_default();
        format!("{line}: docker fetches a URL, which may change")
    })
}

/// BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile when there is one, else
/// the context's `.dockerignore`.
fn dockerfile_ignore(dockerfile: &Path) -> PathBuf {
    let mut name = dockerfile.file_name().unwrap_or_default().to_owned();
    name.push(".dockerignore");
    dockerfile.with_file_name(name)
}

/// The text of the ignore file docker reads, if any.
fn ignore_text(context: &Path, df_ignore: &Path) -> Result<Option<String>, BaseError> {
    let read_ignore = |path: &Path| match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BaseError::Read {
            path: path.to_path_buf(),
            source,
        }),
    };
    match read_ignore(df_ignore)? {
        Some(t) => Ok(Some(t)),
        None => read_ignore(&context.join(".dockerignore")),
    }
}

/// Patterns where globset and docker's patternmatcher differ: `{a,b}` (literal in docker),
/// `[!x]` (`[^x]` in Go), `**` inside a path component.
fn ignore_refusal(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| {
            !l.starts_with('#')
                && (l.contains('{')
                    || l.contains("[!")
                    || l.split('/')
                        .any(|c| c.contains("**") && c.trim_start_matches('!') != "**"))
        })
        .map(|p| {
            format!(".dockerignore pattern {p:?}: cicache does not match it exactly as docker does")
        })
}

/// Copied files the hash cannot stand for: the cache dir itself (its files now, or the ones a
/// restore puts there: a COPY source that covers its path and `.dockerignore` does not
/// exclude), a symlink docker follows.
fn files_refusal(
    spec: &SkipSpec,
    sources: &[String],
    files: &[String],
    ignore: &base::Ignore,
) -> Option<String> {
    if let Some(cache_rel) = relative_inside(&spec.context, &spec.cache_dir) {
        let in_inputs = files.iter().any(|f| {
            cache_rel.is_empty()
                || f == &cache_rel
                || (f.starts_with(&cache_rel) && f.as_bytes().get(cache_rel.len()) == Some(&b'/'))
        });
        let restored_into = covering_source(sources, &cache_rel, ignore).is_some();
        if in_inputs || restored_into {
            return Some(format!(
                "the Dockerfile copies the cache dir {} into the image (a restore changes \
                 what it copies: exclude it in .dockerignore)",
                spec.cache_dir.display()
            ));
        }
    }
    // BuildKit follows a symlink named as a COPY source; the hash would cover the link only.
    let is_link =
        |rel: &str| std::fs::symlink_metadata(spec.context.join(rel)).is_ok_and(|m| m.is_symlink());
    sources
        .iter()
        .find(|src| {
            let named = src.trim_start_matches("./");
            if named.contains(['*', '?', '[']) {
                files.iter().any(|f| is_link(f))
            } else {
                is_link(named)
            }
        })
        .map(|src| format!("the COPY source {src} is (or may be) a symlink, which docker follows"))
}

/// COPY keeps every mode bit (the base hash has only owner-exec): agents with another umask
/// build another image.
fn modes_hash(spec: &SkipSpec, files: &[String]) -> String {
    use std::os::unix::fs::PermissionsExt;
    let mut modes = blake3::Hasher::new();
    for f in files {
        let mode = std::fs::symlink_metadata(spec.context.join(f))
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0);
        modes.update(format!("{f}\0{mode:o}\n").as_bytes());
    }
    modes.finalize().to_hex().to_string()
}

/// Both ignore files, when present, are inputs.
fn hash_ignore_files(
    spec: &SkipSpec,
    df_ignore: &Path,
    inputs: &mut BTreeMap<String, String>,
) -> Result<(), BaseError> {
    for (name, path) in [
        (
            ".dockerignore".to_string(),
            spec.context.join(".dockerignore"),
        ),
        (
            df_ignore
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            df_ignore.to_path_buf(),
        ),
    ] {
        match std::fs::read(&path) {
            Ok(b) => {
                inputs.insert(format!("dockerignore:{name}"), blake3_hex(&b));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(BaseError::Read { path, source }),
        }
    }
    Ok(())
}

/// The COPY/ADD source that takes the context path `cache_rel` (the cache dir) into the
/// image, whether or not it exists yet, unless the ignore file excludes it.
fn covering_source<'a>(
    sources: &'a [String],
    cache_rel: &str,
    ignore: &base::Ignore,
) -> Option<&'a str> {
    if cache_rel.is_empty() || ignore.excludes(cache_rel) {
        return None;
    }
    sources
        .iter()
        .map(String::as_str)
        .find(|s| source_covers(s, cache_rel))
}

/// Where a Dockerfile copies the cache dir into its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDirCopy {
    /// The COPY or ADD source that covers it (`.`, a parent, a glob).
    pub source: String,
    /// The instruction's first line and its text (`COPY . /app`).
    pub line: usize,
    pub instruction: String,
    /// The cache dir, relative to the context.
    pub cache_rel: String,
    /// The ignore file docker reads for this Dockerfile (where the exclusion goes).
    pub ignore_file: PathBuf,
}

/// Whether `df` (read from `dockerfile`) copies `cache_dir` into its image from `context`:
/// the first COPY/ADD with a source that covers the cache dir's path (whether or not it
/// exists yet) while the ignore file docker reads does not exclude it. Such an image carries
/// the pip cache, its COPY layer changes with every restore, and the unchanged-inputs check
/// never tags it (`cicache doctor`'s finding; the check refuses the same). `None` too when
/// the cache dir lies outside the context.
pub fn cache_dir_copy(
    df: &Dockerfile,
    dockerfile: &Path,
    context: &Path,
    cache_dir: &Path,
) -> Result<Option<CacheDirCopy>, BaseError> {
    let Some(cache_rel) = relative_inside(context, cache_dir) else {
        return Ok(None);
    };
    let df_ignore = dockerfile_ignore(dockerfile);
    let ignore = match ignore_text(context, &df_ignore)? {
        Some(t) => base::Ignore::parse(&t)?,
        None => base::Ignore::default(),
    };
    let found = df.instructions.iter().find_map(|ins| {
        let (sources, _) = base::instruction_sources(ins);
        covering_source(&sources, &cache_rel, &ignore).map(|s| (ins, s.to_string()))
    });
    let Some((ins, source)) = found else {
        return Ok(None);
    };
    let ignore_file = if df_ignore.is_file() {
        df_ignore
    } else {
        context.join(".dockerignore")
    };
    Ok(Some(CacheDirCopy {
        source,
        line: ins.line,
        instruction: format!("{} {}", ins.keyword, ins.args.trim()),
        cache_rel,
        ignore_file,
    }))
}

/// Whether the COPY/ADD source `source` copies the context path `rel` (or a directory above
/// it), whether or not it exists yet: `.`, the path or a parent named, or a glob that matches
/// one of them.
fn source_covers(source: &str, rel: &str) -> bool {
    let Some(n) = base::normalize(source) else {
        return false;
    };
    if n.is_empty() || rel == n || rel.strip_prefix(&n).is_some_and(|r| r.starts_with('/')) {
        return true;
    }
    if !base::is_glob(&n) {
        return false;
    }
    globset::GlobBuilder::new(&n)
        .literal_separator(true)
        .build()
        .is_ok_and(|g| base::matches_path_or_parent(&g.compile_matcher(), rel))
}

/// `path` relative to `context` (`/`-separated) when it lies inside it.
fn relative_inside(context: &Path, path: &Path) -> Option<String> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (c, p) = (abs(context), abs(path));
    let rel = p.strip_prefix(&c).ok()?;
    let mut parts: Vec<String> = Vec::new();
    for comp in rel.components() {
        match comp {
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dockerfile: &str) -> (tempfile::TempDir, SkipSpec) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), dockerfile).unwrap();
        std::fs::write(d.path().join("requirements.txt"), "torch==2\n").unwrap();
        std::fs::write(d.path().join("app.py"), "print(1)\n").unwrap();
        let spec = SkipSpec {
            context: d.path().to_path_buf(),
            dockerfile: d.path().join("Dockerfile"),
            build_args: vec![],
            target: None,
            platform: "linux/amd64".into(),
            labels: vec![],
            extra: vec![],
            cache_dir: d.path().join(".pip-cache"),
        };
        (d, spec)
    }

    const DF: &str = "ARG BASE=python:3.12-slim\nFROM ${BASE} AS build\nCOPY requirements.txt .\n\
        RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n\
        FROM build\nCOPY app.py .\n";

    fn hash(spec: &SkipSpec) -> String {
        match compute(spec, &mut |r| Some(format!("id-of-{r}"))).unwrap() {
            Plan::Hashed(h) => h.hash,
            Plan::Never(why) => panic!("never: {why}"),
        }
    }

    #[test]
    fn every_input_changes_the_hash_and_nothing_else_does() {
        let (d, mut spec) = ctx(DF);
        let h0 = hash(&spec);
        // Not inputs: a file no COPY names, the cache dir, mtimes.
        std::fs::write(d.path().join("README"), "x").unwrap();
        std::fs::create_dir(d.path().join(".pip-cache")).unwrap();
        std::fs::write(d.path().join(".pip-cache/w.whl"), "wheel").unwrap();
        assert_eq!(hash(&spec), h0);
        // Each input.
        std::fs::write(d.path().join("app.py"), "print(2)\n").unwrap();
        let h1 = hash(&spec);
        assert_ne!(h1, h0);
        spec.build_args = vec!["BASE=python:3.13-slim".into()];
        let h2 = hash(&spec);
        assert_ne!(h2, h1);
        spec.target = Some("build".into());
        let h3 = hash(&spec);
        assert_ne!(h3, h2);
        spec.extra = vec!["--network".into(), "host".into()];
        let h4 = hash(&spec);
        assert_ne!(h4, h3);
        spec.labels = vec!["io.cicache.base=r/app:base-1".into()];
        let h5 = hash(&spec);
        assert_ne!(h5, h4);
        std::fs::write(d.path().join(".dockerignore"), "secret\n").unwrap();
        let h6 = hash(&spec);
        assert_ne!(h6, h5);
        {
            use std::os::unix::fs::PermissionsExt;
            let p = d.path().join("app.py");
            let mut perm = std::fs::metadata(&p).unwrap().permissions();
            perm.set_mode(perm.mode() ^ 0o020);
            std::fs::set_permissions(&p, perm).unwrap();
        }
        let h6b = hash(&spec);
        assert_ne!(h6b, h6, "a group-write bit is a change (COPY keeps it)");
        let h7 = match compute(&spec, &mut |r| Some(format!("new-id-of-{r}"))).unwrap() {
            Plan::Hashed(h) => h.hash,
            Plan::Never(w) => panic!("{w}"),
        };
        assert_ne!(h7, h6b, "a FROM image that moved is a change");
    }

    #[test]
    fn copy_of_the_whole_context_with_a_dockerignore() {
        let (d, spec) = ctx("FROM alpine\nCOPY . /src\n");
        std::fs::create_dir_all(d.path().join(".pip-cache")).unwrap();
        std::fs::write(d.path().join(".pip-cache/w.whl"), "wheel").unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join(".git/HEAD"), "ref: a").unwrap();
        std::fs::write(d.path().join(".dockerignore"), ".git\n.pip-cache\n").unwrap();
        let h0 = hash(&spec);
        std::fs::write(d.path().join(".git/HEAD"), "ref: b").unwrap();
        std::fs::write(d.path().join(".pip-cache/w2.whl"), "wheel 2").unwrap();
        assert_eq!(hash(&spec), h0, "ignored files are not inputs");
        std::fs::write(d.path().join("app.py"), "print(3)\n").unwrap();
        assert_ne!(hash(&spec), h0);
    }

    const LAYERED: &str = "FROM python AS deps\nCOPY requirements-ml.txt .\n\
        RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements-ml.txt\n\
        COPY requirements.txt .\n\
        RUN --mount=type=cache,target=/root/.cache/pip \\\n  pip install -r requirements.txt\n\
        FROM python AS tools\nRUN --mount=type=cache,target=/root/.cache/pip pip install tool\n\
        FROM deps\nCOPY app.py .\n";

    #[test]
    fn image_mount_runs_follow_the_target_stage_and_its_parents() {
        let df = dockerfile::parse(LAYERED).unwrap();
        let pip = ["/root/.cache/pip"];
        // The last stage is built FROM deps: both of its RUNs, not the tools stage's.
        assert_eq!(image_mount_runs(&df, &pip, None), [3, 6]);
        assert_eq!(image_mount_runs(&df, &pip, Some("tools")), [8]);
        assert_eq!(image_mount_runs(&df, &pip, Some("DEPS")), [3, 6]);
        assert!(image_mount_runs(&df, &pip, Some("nope")).is_empty());
        assert!(image_mount_runs(&df, &["other"], None).is_empty());
    }

    #[test]
    fn a_changed_late_requirement_keeps_the_first_step_hash() {
        let (d, spec) = ctx(LAYERED);
        std::fs::write(d.path().join("requirements-ml.txt"), "numpy==2\n").unwrap();
        let steps = |spec: &SkipSpec| -> Vec<String> {
            [3, 6]
                .iter()
                .map(|end| {
                    match compute_mount_steps(spec, *end, &mut |r| Some(format!("id-{r}"))).unwrap()
                    {
                        Plan::Hashed(h) => h.hash,
                        Plan::Never(w) => panic!("{w}"),
                    }
                })
                .collect()
        };
        let before = steps(&spec);
        assert_ne!(before[0], before[1]);
        std::fs::write(d.path().join("requirements.txt"), "pillow==2\n").unwrap();
        let after = steps(&spec);
        assert_eq!(
            common_prefix(&before, &after),
            1,
            "only the second step changed"
        );
        std::fs::write(d.path().join("requirements-ml.txt"), "numpy==3\n").unwrap();
        assert_eq!(common_prefix(&after, &steps(&spec)), 0);
        assert_eq!(common_prefix(&after, &after), 2);
        assert_eq!(
            String::from_utf8(prefix(LAYERED.as_bytes(), 3)).unwrap(),
            "FROM python AS deps\nCOPY requirements-ml.txt .\n\
             RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements-ml.txt\n"
        );
    }

    #[test]
    fn the_mount_steps_hash_ignores_what_comes_after_them() {
        let (d, mut spec) = ctx(DF);
        let m =
            |spec: &SkipSpec| match compute_mount_steps(spec, 4, &mut |r| Some(format!("id-{r}")))
                .unwrap()
            {
                Plan::Hashed(h) => h.hash,
                Plan::Never(w) => panic!("{w}"),
            };
        let m0 = m(&spec);
        assert_ne!(m0, hash(&spec), "another kind of hash");
        std::fs::write(d.path().join("app.py"), "print(2)\n").unwrap();
        spec.target = Some("build".into());
        spec.labels = vec!["a=b".into()];
        let mut df = DF.to_string();
        df.push_str("RUN echo more\n");
        std::fs::write(&spec.dockerfile, &df).unwrap();
        assert_eq!(
            m(&spec),
            m0,
            "app.py, target, labels and later lines are not inputs"
        );
        std::fs::write(d.path().join("requirements.txt"), "torch==3\n").unwrap();
        assert_ne!(m(&spec), m0);
    }

    #[test]
    fn from_images_are_expanded_and_stages_left_out() {
        let df = dockerfile::parse(DF).unwrap();
        assert_eq!(external_images(&df, &[]).unwrap(), vec!["python:3.12-slim"]);
        assert_eq!(
            external_images(&df, &["BASE=reg:5000/py:1".into()]).unwrap(),
            vec!["reg:5000/py:1"]
        );
        let df = dockerfile::parse(
            "FROM scratch AS a\nFROM alpine:3\nCOPY --from=a /x /x\nCOPY --from=busybox:1 /bin/sh /sh\n\
             RUN --mount=type=cache,target=/c,from=0 true\n",
        )
        .unwrap();
        assert_eq!(
            external_images(&df, &[]).unwrap(),
            vec!["alpine:3", "busybox:1"]
        );
        let df = dockerfile::parse("ARG B\nFROM $B\n").unwrap();
        assert!(external_images(&df, &[]).is_err());
    }

    #[test]
    fn which_copy_takes_the_cache_dir() {
        let copy = |df: &str, ignore: Option<(&str, &str)>, cache: &str| {
            let (d, spec) = ctx(df);
            if let Some((name, text)) = ignore {
                std::fs::write(d.path().join(name), text).unwrap();
            }
            let parsed = dockerfile::parse(df).unwrap();
            cache_dir_copy(
                &parsed,
                &spec.dockerfile,
                &spec.context,
                &d.path().join(cache),
            )
            .unwrap()
            .map(|c| {
                let file = c.ignore_file.strip_prefix(d.path()).unwrap().to_owned();
                (c.source, c.cache_rel, file.display().to_string())
            })
        };
        let found = |src: &str, rel: &str, file: &str| Some((src.into(), rel.into(), file.into()));
        assert_eq!(
            copy("FROM a\nCOPY . /app\n", None, ".pip-cache"),
            found(".", ".pip-cache", ".dockerignore")
        );
        assert_eq!(
            copy("FROM a\nCOPY app.py ci /app/\n", None, "ci/pip"),
            found("ci", "ci/pip", ".dockerignore")
        );
        assert_eq!(
            copy("FROM a\nADD [\"./\", \"/app\"]\n", None, ".pip-cache"),
            found("./", ".pip-cache", ".dockerignore")
        );
        // The Dockerfile's own ignore file is the one docker reads, and the one to edit.
        assert_eq!(
            copy(
                "FROM a\nCOPY . /app\n",
                Some(("Dockerfile.dockerignore", "*.md\n")),
                ".pip-cache"
            ),
            found(".", ".pip-cache", "Dockerfile.dockerignore")
        );
        for (df, ignore) in [
            (
                "FROM a\nCOPY . /app\n",
                Some((".dockerignore", ".pip-cache\n")),
            ),
            ("FROM a\nCOPY . /app\n", Some((".dockerignore", ".*\n"))),
            ("FROM a\nCOPY requirements.txt app.py /app/\n", None),
            ("FROM a AS b\nFROM a\nCOPY --from=b / /\n", None),
        ] {
            assert_eq!(copy(df, ignore, ".pip-cache"), None, "{df} {ignore:?}");
        }
        // The first instruction that takes it, its line and text (for doctor's message).
        let (d, spec) = ctx("FROM a\nCOPY app.py /app/\nADD [\"./\", \"/app\"]\nCOPY . /x\n");
        let df =
            dockerfile::parse("FROM a\nCOPY app.py /app/\nADD [\"./\", \"/app\"]\nCOPY . /x\n")
                .unwrap();
        let c = cache_dir_copy(
            &df,
            &spec.dockerfile,
            &spec.context,
            &d.path().join(".pip-cache"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.line, c.instruction.as_str()),
            (3, r#"ADD ["./", "/app"]"#)
        );
        // A cache dir outside the context is never copied.
        let (_d, spec) = ctx("FROM a\nCOPY . /app\n");
        let df = dockerfile::parse("FROM a\nCOPY . /app\n").unwrap();
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(
            cache_dir_copy(&df, &spec.dockerfile, &spec.context, outside.path()).unwrap(),
            None
        );
    }

    #[test]
    fn what_makes_a_build_never_skipped() {
        let never = |spec: &SkipSpec| match compute(spec, &mut |r| Some(r.to_string())).unwrap() {
            Plan::Never(why) => why,
            Plan::Hashed(_) => panic!("hashed"),
        };
        let (_d, mut spec) = ctx(DF);
        spec.extra = vec!["--no-cache".into()];
        assert!(never(&spec).contains("--no-cache"));
        for extra in [
            &["-f", "Other.Dockerfile"][..],
            &["--build-arg", "X=1"],
            &["--build-context", "src=../x"],
            &["--no-cache=true"],
        ] {
            let (_d, mut spec) = ctx(DF);
            spec.extra = extra.iter().map(|s| s.to_string()).collect();
            assert!(never(&spec).contains(extra[0]), "{extra:?}");
        }
        let (_d, spec) = ctx("# syntax=example.com/frontend:1\nFROM alpine\n");
        assert!(never(&spec).contains("frontend"));
        let (d, spec) = ctx("FROM alpine\nCOPY app.py /\n");
        std::fs::write(d.path().join(".dockerignore"), "{a,b}.txt\n").unwrap();
        assert!(never(&spec).contains(".dockerignore"));
        let (d, spec) = ctx("FROM alpine\nCOPY lib /lib\n");
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::fs::write(d.path().join("real/x.py"), "1").unwrap();
        std::os::unix::fs::symlink("real", d.path().join("lib")).unwrap();
        assert!(never(&spec).contains("symlink"));
        let (_d, spec) = ctx("FROM alpine\nRUN --mount=type=bind,target=/src make\n");
        assert!(never(&spec).contains("type=bind"));
        let (_d, spec) = ctx("FROM alpine\nADD https://example.com/x.tgz /x\n");
        assert!(never(&spec).contains("URL"));
        let (d, spec) = ctx("FROM alpine\nCOPY . /src\n");
        std::fs::create_dir(d.path().join(".pip-cache")).unwrap();
        std::fs::write(d.path().join(".pip-cache/w.whl"), "wheel").unwrap();
        assert!(never(&spec).contains("cache dir"));
        // Before any restore (a fresh agent: no cache dir yet) all the same: a restore would
        // put files where this COPY takes them. Excluded in .dockerignore, it is hashed.
        for df in [
            "FROM alpine\nCOPY . /src\n",
            "FROM alpine\nCOPY ./ /src\n",
            "FROM alpine\nCOPY * /src/\n",
        ] {
            let (d, spec) = ctx(df);
            assert!(never(&spec).contains("cache dir"), "{df}");
            std::fs::write(d.path().join(".dockerignore"), ".pip-cache\n").unwrap();
            assert!(!hash(&spec).is_empty(), "{df}");
        }
        let (_d, spec) = ctx("FROM alpine\nCOPY *.py requirements.txt /src/\n");
        assert!(!hash(&spec).is_empty());
        let (_d, mut spec) = ctx("FROM alpine\nCOPY deps /deps\n");
        spec.cache_dir = spec.context.join("deps/.pip-cache");
        std::fs::create_dir(spec.context.join("deps")).unwrap();
        std::fs::write(spec.context.join("deps/x"), "1").unwrap();
        assert!(never(&spec).contains("cache dir"));
        let (_d, spec) = ctx("FROM alpine\nCOPY missing.txt /\n");
        assert!(!never(&spec).is_empty());
        let (_d, spec) = ctx(DF);
        assert!(matches!(
            compute(&spec, &mut |_| None).unwrap(),
            Plan::Never(w) if w.contains("python:3.12-slim")
        ));
    }

    #[test]
    fn expand_forms() {
        let v: BTreeMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$A:1", &v).as_deref(), Some("x:1"));
        assert_eq!(expand("${A}-y", &v).as_deref(), Some("x-y"));
        assert_eq!(expand("${B:-d}", &v).as_deref(), Some("d"));
        assert_eq!(expand("${B}", &v), None);
        assert_eq!(expand("plain", &v).as_deref(), Some("plain"));
    }
}
