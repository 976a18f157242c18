//! Base images keyed by their inputs: `REPO:base-<hash>` (`cicache base`,
//! `cicache build --base-dockerfile`).
//!
//! The hash covers, and only covers:
//! - the base Dockerfile's bytes, exactly as they are (line endings are not normalized: a
//!   checkout that turns LF into CRLF builds another base);
//! - every file the inputs name (`--input` globs, default: the sources of the base
//!   Dockerfile's `COPY`/`ADD` lines), by path relative to the context (`/`-separated,
//!   sorted), content and the owner-executable bit; never by mtime, inode or checkout place;
//! - the build arguments given to cicache (`KEY=VALUE`; the last of a repeated key wins);
//! - the arguments passed to docker after `--`, all of them as text (an index URL, a
//!   `--network`, a `--build-arg` there change what the base holds; only a secret's content
//!   is beyond the hash);
//! - the platform (`linux/amd64`).
//!
//! Each input also has its own hash ([`BaseInputs::inputs`]), kept as the label
//! [`LABEL_INPUTS`] on the base image and in the agent's state, so that a rebuild can say
//! which input changed ([`diff`]).
//!
//! ```text
//! <state dir>/bases/<blake3(repo, name)[..32]>.json   the last base this agent used for
//!                                                     a (repository, base Dockerfile) pair
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dockerfile::{self, Dockerfile};

/// The prefix of base image tags (the registry crate classifies `base-*` tags as bases).
pub const TAG_PREFIX: &str = "base-";
/// Hex characters of the hash in the tag (96 bits).
pub const TAG_HASH_LEN: usize = 24;
/// Bump when the hashed text changes meaning: every base is rebuilt once.
pub const HASH_VERSION: &str = "cicache-base-v1";
/// Label on app images built on a base: `REPO:base-<hash>` (what `registry gc --keep-bases`
/// reads to keep the bases still in use).
pub const LABEL_BASE: &str = "io.cicache.base";
/// Label on base images: the per-input hashes, a JSON object.
pub const LABEL_INPUTS: &str = "io.cicache.base.inputs";
/// Label on base images: the base Dockerfile's path relative to the context.
pub const LABEL_NAME: &str = "io.cicache.base.name";
/// Label on a base image: the scope of the build that made it (who may be trusted to reuse
/// it: a build reuses bases of its own scope and of its fallback scopes only).
pub const LABEL_SCOPE: &str = "io.cicache.base.scope";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaseError {
    #[error(transparent)]
    Dockerfile(#[from] dockerfile::DockerfileError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--input {pattern:?} is not a valid glob: {detail}")]
    BadGlob { pattern: String, detail: String },
    #[error(
        "{what} {pattern:?} matches no file under the context {context}; \
         fix the path (relative to the context) or drop it"
    )]
    NoMatch {
        what: &'static str,
        pattern: String,
        context: PathBuf,
    },
    #[error("{what} {pattern:?} leaves the context {context}: inputs must lie inside it")]
    OutsideContext {
        what: &'static str,
        pattern: String,
        context: PathBuf,
    },
    #[error("--build-arg {0:?}: give KEY=VALUE")]
    BadBuildArg(String),
}

/// What a base is built from.
#[derive(Debug, Clone)]
pub struct BaseSpec {
    /// The build context; input paths are relative to it.
    pub context: PathBuf,
    /// The base Dockerfile.
    pub dockerfile: PathBuf,
    /// Input globs relative to the context; empty: the base Dockerfile's COPY/ADD sources.
    pub inputs: Vec<String>,
    /// `KEY=VALUE` build arguments.
    pub build_args: Vec<String>,
    /// The arguments passed to docker after `--`.
    pub docker_args: Vec<String>,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// `.dockerignore` rules the context is read with (empty for bases: their hash has never
    /// applied it).
    pub ignore: Ignore,
}

/// `.dockerignore` rules, as docker's patternmatcher applies them: a path is left out when
/// the last rule that matches it or one of its parent directories is not a `!` exception.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<(globset::GlobMatcher, bool)>,
}

impl Ignore {
    /// Parses `.dockerignore` text: `#` comments, blank lines, `!` exceptions; each pattern
    /// cleaned (`./a/../b/` is `b`, a leading `/` dropped); `*` and `?` stay within one path
    /// component, `**` spans any number.
    pub fn parse(text: &str) -> Result<Ignore, BaseError> {
        let mut rules = Vec::new();
        for line in text.trim_start_matches('\u{feff}').lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
            }
            let Some(clean) = normalize(pattern) else {
                continue; // leaves the context: matches nothing in it
            };
            let glob = globset::GlobBuilder::new(if clean.is_empty() { "." } else { &clean })
                .literal_separator(true)
                .build()
                .map_err(|e| BaseError::BadGlob {
                    pattern: line.to_string(),
                    detail: e.to_string(),
                })?
                .compile_matcher();
            rules.push((glob, exception));
        }
        Ok(Ignore { rules })
    }

    /// Whether the context path `rel` (`/`-separated) is left out.
    pub fn excludes(&self, rel: &str) -> bool {
        let mut out = false;
        for (glob, exception) in &self.rules {
            if matches_path_or_parent(glob, rel) {
                out = !exception;
            }
        }
        out
    }

    fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(_, e)| *e)
    }
}

/// Whether `glob` matches the context path `rel` (`/`-separated) or one of its parent
/// directories, as docker matches `.dockerignore` rules and COPY sources.
pub(crate) fn matches_path_or_parent(glob: &globset::GlobMatcher, rel: &str) -> bool {
    glob.is_match(rel)
        || rel
            .match_indices('/')
            .any(|(i, _)| glob.is_match(&rel[..i]))
}

/// The inputs of a base, hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseInputs {
    /// blake3 (hex) over every input.
    pub hash: String,
    /// `base-<first 24 hex of hash>`.
    pub tag: String,
    /// The base Dockerfile's path relative to the context (or as given when outside it).
    pub name: String,
    /// Per-input hashes: `dockerfile`, `platform` (the value itself), `arg:KEY`, `file:PATH`.
    pub inputs: BTreeMap<String, String>,
    /// The files hashed, relative to the context, sorted.
    pub files: Vec<String>,
    /// Where the file list came from: `--input` or `COPY/ADD`.
    pub source: String,
    /// Remarks worth a warning (a COPY of a whole directory, an ADD of a URL).
    pub notes: Vec<String>,
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// The sources of the Dockerfile's `COPY`/`ADD` lines that come from the build context: not
/// `--from=` copies, not heredocs, not URLs. In order, without duplicates.
pub fn copy_sources(df: &Dockerfile) -> (Vec<String>, Vec<String>) {
    let mut out: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    for ins in &df.instructions {
        let (sources, fetched) = instruction_sources(ins);
        for src in fetched {
            notes.push(format!(
                "line {}: {} {src} is fetched by docker: its content is not part of the \
                 base's hash (only the URL is, through the Dockerfile)",
                ins.line, ins.keyword
            ));
        }
        for src in sources {
            if !out.contains(&src) {
                out.push(src);
            }
        }
    }
    (out, notes)
}

/// One instruction's sources: those from the build context, then those docker fetches (URLs,
/// git). Both empty for anything but a `COPY`/`ADD` without `--from=`; heredocs are neither
/// (their body is in the Dockerfile's bytes).
pub(crate) fn instruction_sources(ins: &dockerfile::Instruction) -> (Vec<String>, Vec<String>) {
    let (mut context, mut fetched) = (Vec::new(), Vec::new());
    if !matches!(ins.keyword.as_str(), "COPY" | "ADD")
        || ins.flags.iter().any(|f| f.starts_with("--from"))
    {
        return (context, fetched);
    }
    let mut words: Vec<String> = if ins.args.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(ins.args.trim()).unwrap_or_default()
    } else {
        ins.args.split_whitespace().map(str::to_string).collect()
    };
    // The last word is the destination.
    if words.pop().is_none() {
        return (context, fetched);
    }
    for src in words {
        if src.starts_with("<<") {
            continue;
        }
        if src.contains("://") || src.starts_with("git@") {
            fetched.push(src);
        } else {
            context.push(src);
        }
    }
    (context, fetched)
}

/// `./a/b/` -> `a/b`; `.` -> ``. `None` when the path leaves the context.
pub(crate) fn normalize(pattern: &str) -> Option<String> {
    let p = Path::new(pattern);
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir | Component::RootDir => {}
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

pub(crate) fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn rel_path(context: &Path, path: &Path) -> String {
    path.strip_prefix(context)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every file and symlink under the context that `ignore` keeps: relative path
/// (`/`-separated) -> absolute path. Without exceptions an ignored directory is not entered.
fn walk(context: &Path, ignore: &Ignore) -> Result<BTreeMap<String, PathBuf>, BaseError> {
    let mut out = BTreeMap::new();
    let prune = !ignore.has_exceptions();
    let walker = walkdir::WalkDir::new(context)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            !(prune
                && e.depth() > 0
                && e.file_type().is_dir()
                && ignore.excludes(&rel_path(context, e.path())))
        });
    for e in walker {
        let e = e.map_err(|err| BaseError::Read {
            path: err
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| context.to_path_buf()),
            source: err
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("walking the context")),
        })?;
        if e.file_type().is_dir() {
            continue;
        }
        let rel = rel_path(context, e.path());
        if ignore.excludes(&rel) {
            continue;
        }
        out.insert(rel, e.path().to_path_buf());
    }
    Ok(out)
}

/// The files of the context that `patterns` name: a pattern names a file, or a directory and
/// everything in it; globs (`*`, `?`, `[...]`) match within one path component, as docker's
/// COPY does, and `**` any number of them.
fn select(
    context: &Path,
    patterns: &[String],
    what: &'static str,
    ignore: &Ignore,
) -> Result<BTreeMap<String, PathBuf>, BaseError> {
    let all = walk(context, ignore)?;
    let mut chosen = BTreeMap::new();
    for pattern in patterns {
        let norm = normalize(pattern).ok_or_else(|| BaseError::OutsideContext {
            what,
            pattern: pattern.clone(),
            context: context.to_path_buf(),
        })?;
        let before = chosen.len();
        let mut matched_any = false;
        if is_glob(&norm) {
            let glob = globset::GlobBuilder::new(&norm)
                .literal_separator(true)
                .build()
                .map_err(|e| BaseError::BadGlob {
                    pattern: pattern.clone(),
                    detail: e.to_string(),
                })?
                .compile_matcher();
            for (rel, abs) in &all {
                // The file itself, or one of its directories, matches.
                let mut hit = glob.is_match(rel);
                let mut prefix = rel.as_str();
                while !hit {
                    match prefix.rfind('/') {
                        Some(i) => {
                            prefix = &prefix[..i];
                            hit = glob.is_match(prefix);
                        }
                        None => break,
                    }
                }
                if hit {
                    matched_any = true;
                    chosen.insert(rel.clone(), abs.clone());
                }
            }
        } else {
            for (rel, abs) in &all {
                let under = norm.is_empty()
                    || rel == &norm
                    || (rel.len() > norm.len()
                        && rel.starts_with(&norm)
                        && rel.as_bytes()[norm.len()] == b'/');
                if under {
                    matched_any = true;
                    chosen.insert(rel.clone(), abs.clone());
                }
            }
        }
        if !matched_any && chosen.len() == before {
            return Err(BaseError::NoMatch {
                what,
                pattern: pattern.clone(),
                context: context.to_path_buf(),
            });
        }
    }
    Ok(chosen)
}

/// The hash of one file: its content (a symlink: its target) and the owner-executable bit.
fn file_hash(path: &Path) -> Result<String, BaseError> {
    use std::os::unix::fs::PermissionsExt;
    let read_err = |source| BaseError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(read_err)?;
    let mut h = blake3::Hasher::new();
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(read_err)?;
        h.update(b"symlink\0");
        h.update(target.as_os_str().as_encoded_bytes());
    } else {
        let exec = meta.permissions().mode() & 0o100 != 0;
        h.update(if exec { b"file+x\0" } else { b"file\0" });
        let mut f = std::fs::File::open(path).map_err(read_err)?;
        std::io::copy(&mut f, &mut h).map_err(read_err)?;
    }
    Ok(h.finalize().to_hex().to_string())
}

/// The build arguments as a map (the last of a repeated key wins).
pub fn build_arg_map(args: &[String]) -> Result<BTreeMap<String, String>, BaseError> {
    let mut m = BTreeMap::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| BaseError::BadBuildArg(a.clone()))?;
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

/// The name a base Dockerfile goes by: its path relative to the context, else as given.
pub fn dockerfile_name(context: &Path, dockerfile: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (c, d) = (abs(context), abs(dockerfile));
    match d.strip_prefix(&c) {
        Ok(rel) => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
        Err(_) => dockerfile.display().to_string(),
    }
}

/// Hashes the inputs of a base.
pub fn compute(spec: &BaseSpec) -> Result<BaseInputs, BaseError> {
    let bytes = std::fs::read(&spec.dockerfile).map_err(|source| BaseError::Read {
        path: spec.dockerfile.clone(),
        source,
    })?;
    compute_bytes(spec, &bytes)
}

/// [`compute`] with the Dockerfile's bytes given (`spec.dockerfile` names it in errors).
pub fn compute_bytes(spec: &BaseSpec, bytes: &[u8]) -> Result<BaseInputs, BaseError> {
    let mut notes = Vec::new();
    let (patterns, what, source) = if spec.inputs.is_empty() {
        let df =
            dockerfile::parse(&String::from_utf8_lossy(bytes)).map_err(|(line, message)| {
                dockerfile::DockerfileError::Syntax {
                    path: spec.dockerfile.clone(),
                    line,
                    message,
                }
            })?;
        let (srcs, n) = copy_sources(&df);
        notes.extend(n);
        (srcs, "COPY/ADD source", "COPY/ADD")
    } else {
        (spec.inputs.clone(), "--input", "--input")
    };
    for p in &patterns {
        if source == "COPY/ADD" && normalize(p).is_some_and(|n| n.is_empty() || !is_glob(&n)) {
            let n = normalize(p).unwrap_or_default();
            if spec.context.join(&n).is_dir() {
                notes.push(format!(
                    "the base Dockerfile copies the directory {p:?}: every change in it makes \
                     a new base; COPY only the requirement files (or name them with --input)"
                ));
            }
        }
    }
    let files = select(&spec.context, &patterns, what, &spec.ignore)?;

    let mut inputs = BTreeMap::new();
    inputs.insert("dockerfile".to_string(), blake3_hex(bytes));
    inputs.insert("platform".to_string(), spec.platform.clone());
    for (k, v) in build_arg_map(&spec.build_args)? {
        inputs.insert(format!("arg:{k}"), blake3_hex(v.as_bytes()));
    }
    if !spec.docker_args.is_empty() {
        inputs.insert(
            "docker-args".to_string(),
            blake3_hex(spec.docker_args.join("\0").as_bytes()),
        );
    }
    for (rel, abs) in &files {
        inputs.insert(format!("file:{rel}"), file_hash(abs)?);
    }
    let hash = hash_of(&inputs);
    Ok(BaseInputs {
        tag: format!("{TAG_PREFIX}{}", &hash[..TAG_HASH_LEN]),
        hash,
        name: dockerfile_name(&spec.context, &spec.dockerfile),
        inputs,
        files: files.keys().cloned().collect(),
        source: source.to_string(),
        notes,
    })
}

/// The hash over the per-input hashes (sorted by input name).
pub fn hash_of(inputs: &BTreeMap<String, String>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(HASH_VERSION.as_bytes());
    h.update(b"\n");
    for (k, v) in inputs {
        // Lengths first: no two maps give the same byte stream.
        h.update(format!("{}:{k}{}:{v}\n", k.len(), v.len()).as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// How one input differs between two bases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `dockerfile`, `platform`, `arg:KEY`, `docker-args`, `file:PATH`.
    pub input: String,
    /// `added`, `removed`, `changed`.
    pub change: &'static str,
}

/// Inputs that differ between `old` and `new`, sorted by name.
pub fn diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<Change> {
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter_map(|k| {
            let change = match (old.get(k), new.get(k)) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                (Some(a), Some(b)) if a != b => "changed",
                _ => return None,
            };
            Some(Change {
                input: k.clone(),
                change,
            })
        })
        .collect()
}

/// `file:requirements.txt changed, arg:X added`.
pub fn describe_changes(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| format!("{} {}", c.input, c.change))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an agent remembers of the last base it used for a (repository, base Dockerfile):
/// the fallback when the registry cannot be asked, and the reference for "what changed".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord {
    pub version: u32,
    /// Repository without tag.
    pub image: String,
    pub name: String,
    pub tag: String,
    pub inputs: BTreeMap<String, String>,
    /// Unix seconds when it was recorded.
    pub recorded_at: u64,
}

/// Version of the record file; bump when its meaning changes.
pub const RECORD_VERSION: u32 = 1;

/// The record file of a (repository, base Dockerfile name) under the state dir.
pub fn record_path(state_dir: &Path, image: &str, name: &str) -> PathBuf {
    let h = blake3_hex(format!("{image}\0{name}").as_bytes());
    state_dir.join("bases").join(format!("{}.json", &h[..32]))
}

/// The record, when there is a readable one of this version (a damaged one is ignored: it is
/// a fallback, never trusted over the registry).
pub fn load_record(state_dir: &Path, image: &str, name: &str) -> Option<BaseRecord> {
    let text = std::fs::read(record_path(state_dir, image, name)).ok()?;
    let r: BaseRecord = serde_json::from_slice(&text).ok()?;
    (r.version == RECORD_VERSION && r.image == image && r.name == name).then_some(r)
}

/// Writes the record atomically (temp file + rename).
pub fn save_record(state_dir: &Path, record: &BaseRecord) -> std::io::Result<()> {
    let path = record_path(state_dir, &record.image, &record.name);
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("record path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let body = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, &path)
}

/// The platform of a machine: `linux/amd64`, `linux/arm64`, ... (Docker's names).
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    format!("linux/{arch}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const BASE: &str = "ARG PY=python:3.12-slim\nFROM ${PY}\nWORKDIR /app\n\
        COPY requirements.txt constraints/*.txt ./\n\
        COPY --from=builder /x /x\n\
        RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n";

    fn write(p: &Path, body: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    /// A checkout: the base Dockerfile, its requirement files and some app files.
    fn checkout(dir: &Path, files_first: bool) {
        let reqs = [
            ("requirements.txt", "six==1.16.0\nidna==3.7\n"),
            ("constraints/a.txt", "attrs<24\n"),
            ("constraints/b.txt", "packaging<25\n"),
        ];
        let app = [("app.py", "print('hi')\n"), ("src/x.py", "x = 1\n")];
        // Creation order differs between checkouts (directory order differs with it).
        let mut all: Vec<(&str, &str)> = reqs.iter().chain(app.iter()).copied().collect();
        if !files_first {
            all.reverse();
        }
        for (p, b) in all {
            write(&dir.join(p), b);
        }
        write(&dir.join("Dockerfile.base"), BASE);
    }

    fn spec(dir: &Path) -> BaseSpec {
        BaseSpec {
            context: dir.to_path_buf(),
            dockerfile: dir.join("Dockerfile.base"),
            inputs: vec![],
            build_args: vec!["PY=python:3.11".into()],
            docker_args: vec![],
            platform: "linux/amd64".into(),
            ignore: Ignore::default(),
        }
    }

    #[test]
    fn dockerignore_rules_as_docker_applies_them() {
        let i = Ignore::parse(
            "# comment\n.git\n*.pyc\n**/__pycache__\n/build/\n!build/keep.txt\n  \n./docs/*.md\n!docs/README.md\n",
        )
        .unwrap();
        for (path, out) in [
            (".git/HEAD", true),
            (".git", true),
            ("a.pyc", true),
            ("pkg/a.pyc", false),
            ("pkg/__pycache__/x.cpython-311.pyc", true),
            ("build/out.bin", true),
            ("build/keep.txt", false),
            ("docs/guide.md", true),
            ("docs/README.md", false),
            ("docs/sub/x.md", false),
            ("app.py", false),
        ] {
            assert_eq!(i.excludes(path), out, "{path}");
        }
        assert!(!Ignore::parse("").unwrap().excludes("x"));
    }

    #[test]
    fn ignored_files_are_not_inputs_and_ignored_dirs_not_entered() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("Dockerfile.base"), "FROM x\nCOPY . /src\n");
        write(&d.path().join("app.py"), "1");
        write(&d.path().join(".git/objects/ab"), "blob");
        write(&d.path().join(".pip-cache/w.whl"), "wheel");
        let mut s = spec(d.path());
        s.ignore = Ignore::parse(".git\n.pip-cache\n").unwrap();
        let i = compute(&s).unwrap();
        assert_eq!(i.files, vec!["Dockerfile.base", "app.py"]);
        write(&d.path().join(".git/objects/cd"), "another commit");
        assert_eq!(compute(&s).unwrap().hash, i.hash);
    }

    #[test]
    fn copy_sources_are_the_context_files() {
        let df = dockerfile::parse(
            "FROM x\nCOPY a.txt ./b/ /d/\nADD [\"c d.txt\", \"/e\"]\nCOPY --from=s /x /y\n\
             ADD https://example.com/f.tgz /f\nCOPY <<EOF /g\nhi\nEOF\nCOPY a.txt /again\n",
        )
        .unwrap();
        let (srcs, notes) = copy_sources(&df);
        assert_eq!(srcs, vec!["a.txt", "./b/", "c d.txt"]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("https://example.com/f.tgz"), "{notes:?}");
    }

    #[test]
    fn the_hash_is_stable_across_checkouts() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("one");
        let b = t.path().join("elsewhere/two");
        checkout(&a, true);
        checkout(&b, false);
        let ia = compute(&spec(&a)).unwrap();
        assert_eq!(
            ia.files,
            vec!["constraints/a.txt", "constraints/b.txt", "requirements.txt"]
        );
        assert_eq!(ia.source, "COPY/ADD");
        assert!(ia.tag.starts_with("base-") && ia.tag.len() == 5 + TAG_HASH_LEN);
        // Another place, another creation order: the same tag.
        assert_eq!(compute(&spec(&b)).unwrap(), ia);

        // mtimes do not count.
        for f in ["requirements.txt", "constraints/a.txt", "Dockerfile.base"] {
            let ft = filetime_set(&b.join(f), 1_000_000_000);
            assert!(ft);
        }
        assert_eq!(compute(&spec(&b)).unwrap().tag, ia.tag);
        // Files that are no input: renamed, added, removed, reordered: the same tag.
        std::fs::rename(b.join("app.py"), b.join("main.py")).unwrap();
        std::fs::remove_file(b.join("src/x.py")).unwrap();
        write(&b.join("src/y.py"), "y = 2\n");
        write(&b.join("README.md"), "readme\n");
        assert_eq!(compute(&spec(&b)).unwrap().tag, ia.tag);
        // The build args' order and repeats: the last value of a key counts.
        let mut s = spec(&b);
        s.build_args = vec!["PY=python:3.10".into(), "PY=python:3.11".into()];
        assert_eq!(compute(&s).unwrap().tag, ia.tag);
    }

    #[test]
    fn every_input_changes_the_tag_and_is_named() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        checkout(d, true);
        let base = compute(&spec(d)).unwrap();
        let changed = |s: &BaseSpec| {
            let i = compute(s).unwrap();
            assert_ne!(i.tag, base.tag);
            describe_changes(&diff(&base.inputs, &i.inputs))
        };

        // A requirement.
        write(
            &d.join("requirements.txt"),
            "six==1.16.0\nidna==3.7\ntomli\n",
        );
        assert_eq!(changed(&spec(d)), "file:requirements.txt changed");
        write(&d.join("requirements.txt"), "six==1.16.0\nidna==3.7\n");
        assert_eq!(compute(&spec(d)).unwrap().tag, base.tag, "back again");
        // A file a COPY glob picks up.
        write(&d.join("constraints/c.txt"), "x\n");
        assert_eq!(changed(&spec(d)), "file:constraints/c.txt added");
        std::fs::remove_file(d.join("constraints/c.txt")).unwrap();
        // The executable bit.
        let p = d.join("constraints/a.txt");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(changed(&spec(d)), "file:constraints/a.txt changed");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        // The Dockerfile's line endings are part of its bytes.
        write(&d.join("Dockerfile.base"), &BASE.replace('\n', "\r\n"));
        assert_eq!(changed(&spec(d)), "dockerfile changed");
        write(&d.join("Dockerfile.base"), BASE);
        // A build arg, the platform.
        let mut s = spec(d);
        s.build_args.push("EXTRA=1".into());
        assert_eq!(changed(&s), "arg:EXTRA added");
        let mut s = spec(d);
        s.platform = "linux/arm64".into();
        assert_eq!(changed(&s), "platform changed");
        // Arguments after `--` (issue 21 item 13: an index URL changes what the base holds).
        let mut s = spec(d);
        s.docker_args = vec![
            "--build-arg".into(),
            "PIP_INDEX_URL=https://mirror.example/simple".into(),
        ];
        assert_eq!(changed(&s), "docker-args added");
        let mut t = s.clone();
        t.docker_args[1] = "PIP_INDEX_URL=https://other.example/simple".into();
        assert_ne!(compute(&t).unwrap().tag, compute(&s).unwrap().tag);
        assert_eq!(
            compute(&spec(d)).unwrap().tag,
            base.tag,
            "none: the tag of before"
        );
    }

    #[test]
    fn input_globs_replace_the_copy_sources() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        checkout(d, true);
        let mut s = spec(d);
        s.inputs = vec!["requirements*.txt".into(), "./constraints".into()];
        let i = compute(&s).unwrap();
        assert_eq!(i.source, "--input");
        assert_eq!(
            i.files,
            vec!["constraints/a.txt", "constraints/b.txt", "requirements.txt"]
        );
        // `*` stays within one directory; `**` crosses them.
        s.inputs = vec!["*.txt".into()];
        assert_eq!(compute(&s).unwrap().files, vec!["requirements.txt"]);
        s.inputs = vec!["**/*.txt".into()];
        assert_eq!(compute(&s).unwrap().files.len(), 3);
        // Nothing matched, outside the context, a bad glob, a bad build arg: errors that
        // name the pattern.
        s.inputs = vec!["poetry.lock".into()];
        let e = compute(&s).unwrap_err().to_string();
        assert!(
            e.contains("\"poetry.lock\"") && e.contains("matches no file"),
            "{e}"
        );
        s.inputs = vec!["../secret".into()];
        let e = compute(&s).unwrap_err().to_string();
        assert!(e.contains("leaves the context"), "{e}");
        s.inputs = vec!["[a".into()];
        assert!(
            compute(&s)
                .unwrap_err()
                .to_string()
                .contains("not a valid glob")
        );
        let mut s = spec(d);
        s.build_args = vec!["NOEQUALS".into()];
        assert!(compute(&s).unwrap_err().to_string().contains("KEY=VALUE"));
        // A COPY source that does not exist is named too.
        std::fs::remove_file(d.join("requirements.txt")).unwrap();
        let e = compute(&spec(d)).unwrap_err().to_string();
        assert!(e.contains("COPY/ADD source \"requirements.txt\""), "{e}");
    }

    #[test]
    fn copying_a_directory_is_noted() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        checkout(d, true);
        write(&d.join("Dockerfile.base"), "FROM x\nCOPY . /app\n");
        let i = compute(&spec(d)).unwrap();
        assert!(i.files.contains(&"src/x.py".to_string()));
        assert!(i.notes.iter().any(|n| n.contains("copies the directory")));
    }

    #[test]
    fn records_round_trip_and_damage_is_ignored() {
        let t = tempfile::tempdir().unwrap();
        let r = BaseRecord {
            version: RECORD_VERSION,
            image: "127.0.0.1:5000/app".into(),
            name: "Dockerfile.base".into(),
            tag: "base-abc".into(),
            inputs: BTreeMap::from([("dockerfile".into(), "1".into())]),
            recorded_at: 5,
        };
        assert!(load_record(t.path(), &r.image, &r.name).is_none());
        save_record(t.path(), &r).unwrap();
        assert_eq!(load_record(t.path(), &r.image, &r.name), Some(r.clone()));
        assert!(load_record(t.path(), "other/app", &r.name).is_none());
        std::fs::write(record_path(t.path(), &r.image, &r.name), "{not json").unwrap();
        assert!(load_record(t.path(), &r.image, &r.name).is_none());
    }

    /// Sets a file's mtime (and atime) without another crate: `touch -d @SECS`.
    fn filetime_set(p: &Path, secs: u64) -> bool {
        std::process::Command::new("touch")
            .arg("-h")
            .arg("-d")
            .arg(format!("@{secs}"))
            .arg(p)
            .status()
            .is_ok_and(|s| s.success())
    }
}
