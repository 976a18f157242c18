//! Dockerfile parsing, as far as cicache needs it: parser directives (`# syntax=`,
//! `# escape=`), stages, instructions (line continuations and heredocs joined the way
//! BuildKit joins them) and every `RUN --mount=...`, with `type=cache` mounts kept option by
//! option.
//!
//! Why options are kept exactly: BuildKit finds a cache mount by its id (default: its target)
//! and, when `uid`/`gid`/`mode` are set, by the base directory those create. The cache dance
//! (`crate::dance`) must mount it with the very same options or it fills a different mount.
//!
//! Stable API (used by `doctor`): [`parse`], [`parse_file`], [`Dockerfile`], [`Stage`],
//! [`Instruction`], [`Mount`], [`CacheMount`], [`Heredoc`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Why a Dockerfile could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerfileError {
    #[error("cannot read the Dockerfile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dockerfile {
    /// The `# syntax=` directive (a frontend image, e.g. `docker/dockerfile:1`), if any.
    pub syntax: Option<String>,
    /// 1-based line of the `# syntax=` directive.
    pub syntax_line: Option<usize>,
    /// The escape character (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// Every `FROM`, in order.
    pub stages: Vec<Stage>,
    /// Every instruction, in order (global `ARG`s before the first `FROM` have `stage: None`).
    pub instructions: Vec<Instruction>,
}

/// One build stage (`FROM base [AS name]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// 0-based position of the stage.
    pub index: usize,
    /// The `AS` name, as written.
    pub name: Option<String>,
    /// The base image or stage name, as written (ARGs not expanded).
    pub base: String,
    /// `--platform=` of the `FROM`, if given.
    pub platform: Option<String>,
    /// 1-based line of the `FROM`.
    pub line: usize,
}

/// One instruction with its continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// 1-based first line.
    pub line: usize,
    /// 1-based last line (heredoc bodies included).
    pub end_line: usize,
    /// Index into [`Dockerfile::stages`]; `None` before the first `FROM`.
    pub stage: Option<usize>,
    /// Upper-cased keyword: `RUN`, `FROM`, `ENV`...
    pub keyword: String,
    /// Leading `--flag[=value]` words, as written (`--mount=type=cache,target=/x`).
    pub flags: Vec<String>,
    /// The rest of the instruction after the flags (continuations joined with a space).
    pub args: String,
    /// Heredoc bodies following the instruction (`RUN <<EOF`).
    pub heredocs: Vec<Heredoc>,
    /// `--mount` flags of a `RUN`, parsed.
    pub mounts: Vec<Mount>,
}

/// A heredoc body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    pub delimiter: String,
    /// Body lines joined with `\n` (tabs stripped for `<<-`), without the closing delimiter.
    pub body: String,
}

/// One `--mount=` of a `RUN`: its type and its options in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// `cache`, `bind` (the default), `tmpfs`, `secret`, `ssh`.
    pub kind: String,
    /// Options other than `type`, in order; `None` for a bare flag such as `ro`.
    pub options: Vec<(String, Option<String>)>,
    /// The value of the flag exactly as written (after `--mount=`).
    pub raw: String,
    /// For `type=cache`, the cache mount with its options resolved.
    pub cache: Option<CacheMount>,
}

/// A `RUN --mount=type=cache,...`, option by option as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CacheMount {
    /// The cache id: `id=` when given, else the target (BuildKit's default).
    pub id: String,
    /// Whether `id=` was written.
    pub id_explicit: bool,
    /// `target=` (`dst=`, `destination=`): where the mount appears in the build container.
    pub target: String,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<String>,
    /// `shared` (default), `private` or `locked`.
    pub sharing: Option<String>,
    /// `from=`: a stage or image the cache starts from.
    pub from: Option<String>,
    /// `source=` (`src=`): the path in `from`.
    pub source: Option<String>,
    /// `ro` / `readonly`.
    pub readonly: bool,
    /// 1-based line of the `RUN`.
    pub line: usize,
    /// Stage index of the `RUN`.
    pub stage: Option<usize>,
}

impl CacheMount {
    /// The `--mount=` flag the cache dance uses to reach this very cache mount: the same id,
    /// target, uid, gid, mode and sharing; read-write (the dance writes into it) and without
    /// `from`/`source` (see [`CacheMount::dance_supported`]).
    pub fn dance_flag(&self) -> String {
        let mut fields = vec![
            "type=cache".to_string(),
            format!("id={}", self.id),
            format!("target={}", self.target),
        ];
        for (k, v) in [
            ("uid", &self.uid),
            ("gid", &self.gid),
            ("mode", &self.mode),
            ("sharing", &self.sharing),
        ] {
            if let Some(v) = v {
                fields.push(format!("{k}={v}"));
            }
        }
        let fields: Vec<String> = fields.iter().map(|f| csv_quote(f)).collect();
        format!("--mount={}", fields.join(","))
    }

    /// `Err(reason)` when the dance cannot reach this mount from a helper build: a cache
    /// mount with `from=` is keyed by the content of that stage or image, which a tiny helper
    /// build does not have.
    pub fn dance_supported(&self) -> Result<(), String> {
        if let Some(from) = &self.from {
            return Err(format!(
                "the cache mount {} (line {}) starts from `from={from}`; BuildKit keys it by that \
                 stage's content, which a helper build cannot reproduce",
                self.id, self.line
            ));
        }
        Ok(())
    }

    /// Whether two mounts reach the same BuildKit cache (same id and the same base options).
    pub fn same_cache(&self, other: &CacheMount) -> bool {
        self.id == other.id
            && self.uid == other.uid
            && self.gid == other.gid
            && self.mode == other.mode
            && self.from == other.from
            && self.source == other.source
    }
}

impl Dockerfile {
    /// Every cache mount of every `RUN`, in order, duplicates included.
    pub fn cache_mounts(&self) -> Vec<&CacheMount> {
        self.instructions
            .iter()
            .flat_map(|i| i.mounts.iter())
            .filter_map(|m| m.cache.as_ref())
            .collect()
    }

    /// Cache mounts with the same cache (see [`CacheMount::same_cache`]) listed once, first
    /// occurrence kept.
    pub fn unique_cache_mounts(&self) -> Vec<&CacheMount> {
        let mut out: Vec<&CacheMount> = Vec::new();
        for m in self.cache_mounts() {
            if !out.iter().any(|o| o.same_cache(m)) {
                out.push(m);
            }
        }
        out
    }

    /// `RUN` instructions (the command in `args`, heredoc bodies in `heredocs`).
    pub fn runs(&self) -> impl Iterator<Item = &Instruction> {
        self.instructions.iter().filter(|i| i.keyword == "RUN")
    }

    /// The stage named `name` (case-insensitive, as BuildKit matches stage names).
    pub fn stage_named(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }
}

/// Reads and parses a Dockerfile.
pub fn parse_file(path: &Path) -> Result<Dockerfile, DockerfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| DockerfileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|(line, message)| DockerfileError::Syntax {
        path: path.to_path_buf(),
        line,
        message,
    })
}

/// Parses Dockerfile text. The error is `(line, message)`; [`parse_file`] adds the path.
pub fn parse(text: &str) -> Result<Dockerfile, (usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut df = Dockerfile {
        escape: '\\',
        ..Dockerfile::default()
    };

    // Parser directives: only at the very top, before any blank line, comment or instruction.
    let mut i = 0;
    let mut seen = HashMap::new();
    while i < lines.len() {
        let Some((key, value)) = directive(lines[i]) else {
            break;
        };
        if seen.insert(key.clone(), ()).is_some() {
            break; // a repeated directive is a comment, and ends the directive block
        }
        match key.as_str() {
            "syntax" => {
                df.syntax = Some(value);
                df.syntax_line = Some(i + 1);
            }
            "escape" => {
                let mut chars = value.chars();
                match (chars.next(), chars.next()) {
                    (Some(c @ ('\\' | '`')), None) => df.escape = c,
                    _ => {
                        return Err((
                            i + 1,
                            format!("invalid escape directive {value:?}: use \\ or `"),
                        ));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }

    let mut stage: Option<usize> = None;
    while i < lines.len() {
        let start = i;
        let first = lines[i];
        i += 1;
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // Join continuation lines; comment and blank lines inside a continuation are skipped.
        let mut logical = String::new();
        let mut cur = first;
        loop {
            match strip_continuation(cur, df.escape) {
                Some(head) => {
                    logical.push_str(head);
                    // Find the next line that is not a comment.
                    let mut next = None;
                    while i < lines.len() {
                        let t = lines[i].trim_start();
                        i += 1;
                        if t.starts_with('#') {
                            continue;
                        }
                        if t.is_empty() {
                            continue;
                        }
                        next = Some(lines[i - 1]);
                        break;
                    }
                    match next {
                        Some(n) => cur = n,
                        None => break, // continuation at end of file: BuildKit accepts it
                    }
                }
                None => {
                    logical.push_str(cur);
                    break;
                }
            }
        }
        let logical = logical.trim();
        let (keyword, rest) = split_word(logical);
        let keyword = keyword.to_ascii_uppercase();
        let (flags, args) = split_flags(rest);

        // Heredocs (RUN, COPY, ADD): the bodies follow the instruction line.
        let mut heredocs = Vec::new();
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (delim, strip_tabs) in heredoc_delimiters(&args) {
                let mut body = Vec::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let cmp = if strip_tabs {
                        l.trim_start_matches('\t')
                    } else {
                        l
                    };
                    if cmp == delim {
                        closed = true;
                        break;
                    }
                    body.push(cmp.to_string());
                }
                if !closed {
                    return Err((
                        start + 1,
                        format!("heredoc <<{delim} is not closed by a line `{delim}`"),
                    ));
                }
                heredocs.push(Heredoc {
                    delimiter: delim,
                    body: body.join("\n"),
                });
            }
        }

        if keyword == "FROM" {
            let (from_flags, from_args) = (flags.clone(), args.clone());
            let words: Vec<&str> = from_args.split_whitespace().collect();
            let base = words
                .first()
                .ok_or((start + 1, "FROM without an image".to_string()))?;
            let name = match words.as_slice() {
                [_, kw, n, ..] if kw.eq_ignore_ascii_case("as") => Some(n.to_string()),
                _ => None,
            };
            let platform = from_flags
                .iter()
                .find_map(|f| f.strip_prefix("--platform=").map(str::to_string));
            let index = df.stages.len();
            df.stages.push(Stage {
                index,
                name,
                base: base.to_string(),
                platform,
                line: start + 1,
            });
            stage = Some(index);
        }

        let mut mounts = Vec::new();
        if keyword == "RUN" {
            for f in &flags {
                if let Some(v) = f.strip_prefix("--mount=") {
                    mounts.push(parse_mount(v, start + 1, stage)?);
                } else if f == "--mount" {
                    return Err((
                        start + 1,
                        "`--mount` needs its value after `=`: --mount=type=cache,target=DIR"
                            .to_string(),
                    ));
                }
            }
        }

        df.instructions.push(Instruction {
            line: start + 1,
            end_line: i,
            stage,
            keyword,
            flags,
            args,
            heredocs,
            mounts,
        });
    }
    Ok(df)
}

/// `# key=value` at the top of the file, key lower-cased.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix('#')?.trim();
    let (k, v) = rest.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((k.to_ascii_lowercase(), v.trim().to_string()))
}

/// The line without its trailing escape character when it continues on the next line.
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    t.strip_suffix(escape)
}

fn split_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(p) => (&s[..p], s[p..].trim_start()),
        None => (s, ""),
    }
}

/// Leading `--flag[=value]` words (a value may hold quoted spaces), then the rest.
fn split_flags(mut rest: &str) -> (Vec<String>, String) {
    let mut flags = Vec::new();
    while rest.starts_with("--") {
        let mut end = rest.len();
        let mut quote: Option<char> = None;
        for (p, c) in rest.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c.is_whitespace() => {
                    end = p;
                    break;
                }
                None => {}
            }
        }
        flags.push(rest[..end].to_string());
        rest = rest[end..].trim_start();
    }
    (flags, rest.to_string())
}

/// Heredoc delimiters in an instruction's arguments: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`.
fn heredoc_delimiters(args: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let b = args.as_bytes();
    let mut p = 0;
    while let Some(off) = args[p..].find("<<") {
        let mut q = p + off + 2;
        // `<<<` is a here-string, not a heredoc.
        if b.get(q) == Some(&b'<') {
            p = q + 1;
            continue;
        }
        let strip = b.get(q) == Some(&b'-');
        if strip {
            q += 1;
        }
        let quote = match b.get(q) {
            Some(b'"') => Some('"'),
            Some(b'\'') => Some('\''),
            _ => None,
        };
        if quote.is_some() {
            q += 1;
        }
        let start = q;
        while q < b.len() && (b[q].is_ascii_alphanumeric() || b[q] == b'_') {
            q += 1;
        }
        if q > start {
            out.push((args[start..q].to_string(), strip));
        }
        if quote.is_some() && q < b.len() {
            q += 1;
        }
        p = q.max(p + off + 2);
    }
    out
}

/// Splits a CSV mount value like BuildKit (encoding/csv): fields separated by `,`, a field
/// may be quoted with `"` (a doubled `""` is a quote).
fn csv_fields(v: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = v.chars().peekable();
    let mut in_quotes = false;
    let mut field_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut cur));
                field_start = true;
                continue;
            }
            '"' if field_start => in_quotes = true,
            _ => cur.push(c),
        }
        field_start = false;
    }
    if in_quotes {
        return Err(format!("unterminated quote in --mount={v}"));
    }
    fields.push(cur);
    Ok(fields)
}

fn csv_quote(v: &str) -> String {
    if v.contains([',', '"']) || v.starts_with(' ') {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn parse_mount(raw: &str, line: usize, stage: Option<usize>) -> Result<Mount, (usize, String)> {
    let fields = csv_fields(raw).map_err(|e| (line, e))?;
    let mut kind = "bind".to_string();
    let mut options = Vec::new();
    for f in fields {
        let f = f.trim();
        if f.is_empty() {
            continue;
        }
        let (k, v) = match f.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (f.to_ascii_lowercase(), None),
        };
        if k == "type" {
            kind = v
                .ok_or((line, format!("--mount={raw}: `type` needs a value")))?
                .to_ascii_lowercase();
        } else {
            options.push((k, v));
        }
    }
    let cache = if kind == "cache" {
        Some(cache_mount(raw, &options, line, stage)?)
    } else {
        None
    };
    Ok(Mount {
        kind,
        options,
        raw: raw.to_string(),
        cache,
    })
}

fn cache_mount(
    raw: &str,
    options: &[(String, Option<String>)],
    line: usize,
    stage: Option<usize>,
) -> Result<CacheMount, (usize, String)> {
    let mut id = None;
    let mut target = None;
    let mut m = CacheMount {
        id: String::new(),
        id_explicit: false,
        target: String::new(),
        uid: None,
        gid: None,
        mode: None,
        sharing: None,
        from: None,
        source: None,
        readonly: false,
        line,
        stage,
    };
    for (k, v) in options {
        let val = || {
            v.clone()
                .ok_or((line, format!("--mount={raw}: `{k}` needs a value")))
        };
        match k.as_str() {
            "id" => id = Some(val()?),
            "target" | "dst" | "destination" => target = Some(val()?),
            "uid" => m.uid = Some(val()?),
            "gid" => m.gid = Some(val()?),
            "mode" => m.mode = Some(val()?),
            "sharing" => {
                let s = val()?;
                if !matches!(s.as_str(), "shared" | "private" | "locked") {
                    return Err((
                        line,
                        format!("--mount={raw}: sharing={s} is not one of shared, private, locked"),
                    ));
                }
                m.sharing = Some(s);
            }
            "from" => m.from = Some(val()?),
            "source" | "src" => m.source = Some(val()?),
            "ro" | "readonly" => m.readonly = bool_opt(v),
            "rw" | "readwrite" => m.readonly = !bool_opt(v),
            _ => {} // required, size, ...: not part of the cache identity
        }
    }
    let target = target.filter(|t| !t.is_empty()).ok_or((
        line,
        format!("--mount={raw}: a cache mount needs target=DIR"),
    ))?;
    m.id_explicit = id.as_deref().is_some_and(|i| !i.is_empty());
    m.id = id
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| target.clone());
    m.target = target;
    Ok(m)
}

fn bool_opt(v: &Option<String>) -> bool {
    match v.as_deref() {
        None => true,
        Some(s) => !matches!(s.to_ascii_lowercase().as_str(), "false" | "0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Dockerfile {
        parse(s).unwrap_or_else(|e| panic!("parse failed: {e:?}"))
    }

    #[test]
    fn simple_pip_mount_id_defaults_to_target() {
        let df = p("FROM python:3.12\n\
             RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n");
        let m = df.cache_mounts();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].id, "/root/.cache/pip");
        assert!(!m[0].id_explicit);
        assert_eq!(m[0].target, "/root/.cache/pip");
        assert_eq!(m[0].line, 2);
        assert_eq!(m[0].stage, Some(0));
        assert_eq!(
            m[0].dance_flag(),
            "--mount=type=cache,id=/root/.cache/pip,target=/root/.cache/pip"
        );
        let run = df.runs().next().unwrap();
        assert_eq!(run.args, "pip install -r requirements.txt");
    }

    #[test]
    fn all_options_kept_exactly() {
        let df = p(
            "FROM base\nRUN --mount=type=cache,id=pip-cache,target=/home/app/.cache/pip,uid=1000,gid=1001,mode=0755,sharing=locked \\\n    --mount=type=bind,source=req.txt,target=/req.txt \\\n    pip install -r /req.txt\n",
        );
        let m = df.cache_mounts();
        assert_eq!(m.len(), 1);
        let m = m[0];
        assert_eq!(m.id, "pip-cache");
        assert!(m.id_explicit);
        assert_eq!(m.target, "/home/app/.cache/pip");
        assert_eq!(m.uid.as_deref(), Some("1000"));
        assert_eq!(m.gid.as_deref(), Some("1001"));
        assert_eq!(m.mode.as_deref(), Some("0755"));
        assert_eq!(m.sharing.as_deref(), Some("locked"));
        assert_eq!(
            m.dance_flag(),
            "--mount=type=cache,id=pip-cache,target=/home/app/.cache/pip,uid=1000,gid=1001,mode=0755,sharing=locked"
        );
        let run = df.runs().next().unwrap();
        assert_eq!(run.mounts.len(), 2);
        assert_eq!(run.mounts[1].kind, "bind");
        assert_eq!(run.args, "    pip install -r /req.txt".trim_start());
        assert_eq!(run.line, 2);
        assert_eq!(run.end_line, 4);
    }

    #[test]
    fn from_source_readonly_and_aliases() {
        let df = p(
            "FROM a AS deps\nFROM b\nRUN --mount=type=cache,dst=/c,from=deps,src=/x,ro true\n\
             RUN --mount=type=cache,destination=/d,readonly=false true\n",
        );
        let m = df.cache_mounts();
        assert_eq!(m[0].target, "/c");
        assert_eq!(m[0].from.as_deref(), Some("deps"));
        assert_eq!(m[0].source.as_deref(), Some("/x"));
        assert!(m[0].readonly);
        assert!(m[0].dance_supported().is_err());
        assert_eq!(m[0].stage, Some(1));
        assert!(!m[1].readonly);
        assert!(m[1].dance_supported().is_ok());
    }

    #[test]
    fn syntax_and_escape_directives() {
        let df = p("# syntax=docker/dockerfile:1.4\n# escape=`\nFROM x\nRUN echo a `\n  b\n");
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1.4"));
        assert_eq!(df.syntax_line, Some(1));
        assert_eq!(df.escape, '`');
        assert_eq!(df.runs().next().unwrap().args, "echo a   b");
    }

    #[test]
    fn directive_after_comment_is_a_comment() {
        let df = p("# hello\n# syntax=docker/dockerfile:1\nFROM x\n");
        assert_eq!(df.syntax, None);
        let df = p("\n# syntax=docker/dockerfile:1\nFROM x\n");
        assert_eq!(df.syntax, None);
    }

    #[test]
    fn stages_and_names() {
        let df = p(
            "ARG V=3\nFROM python:${V} AS Build\nRUN true\nFROM --platform=linux/amd64 build as final\n",
        );
        assert_eq!(df.instructions[0].stage, None);
        assert_eq!(df.stages.len(), 2);
        assert_eq!(df.stages[0].name.as_deref(), Some("Build"));
        assert_eq!(df.stages[0].base, "python:${V}");
        assert_eq!(df.stages[1].platform.as_deref(), Some("linux/amd64"));
        assert_eq!(df.stages[1].base, "build");
        assert_eq!(df.stage_named("build").map(|s| s.index), Some(0));
    }

    #[test]
    fn heredoc_bodies_are_not_instructions() {
        let df = p(
            "FROM x\nRUN --mount=type=cache,target=/root/.cache/pip <<EOF\n\
             set -e\nRUN not an instruction\npip install flask\nEOF\n\
             RUN <<-'END' cat\n\t\tline\n\tEND\nCMD [\"x\"]\n",
        );
        let runs: Vec<_> = df.runs().collect();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].heredocs[0].delimiter, "EOF");
        assert!(runs[0].heredocs[0].body.contains("pip install flask"));
        assert_eq!(runs[0].mounts.len(), 1);
        assert_eq!(runs[1].heredocs[0].body, "line");
        assert_eq!(df.instructions.last().unwrap().keyword, "CMD");
        assert_eq!(df.cache_mounts().len(), 1);
    }

    #[test]
    fn unclosed_heredoc_is_an_error() {
        let e = parse("FROM x\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(e.0, 2);
        assert!(e.1.contains("EOF"));
    }

    #[test]
    fn comments_inside_continuations_are_skipped() {
        let df = p("FROM x\nRUN a \\\n# a comment\n\n  && b\n");
        assert_eq!(df.runs().next().unwrap().args, "a   && b");
        assert_eq!(df.instructions.len(), 2);
    }

    #[test]
    fn mount_errors_name_the_line() {
        let e = parse("FROM x\n\nRUN --mount=type=cache,id=x true\n").unwrap_err();
        assert_eq!(e.0, 3);
        assert!(e.1.contains("target"));
        let e = parse("FROM x\nRUN --mount=type=cache,target=/a,sharing=bogus true\n").unwrap_err();
        assert!(e.1.contains("sharing"));
    }

    #[test]
    fn quoted_csv_values() {
        let df = p("FROM x\nRUN --mount=type=cache,\"target=/a,b\",id=x true\n");
        let m = df.cache_mounts()[0].clone();
        assert_eq!(m.target, "/a,b");
        assert_eq!(m.dance_flag(), "--mount=type=cache,id=x,\"target=/a,b\"");
    }

    #[test]
    fn unique_mounts_merge_same_cache_only() {
        let df = p(
            "FROM a AS one\nRUN --mount=type=cache,target=/root/.cache/pip true\n\
             FROM a\nRUN --mount=type=cache,target=/root/.cache/pip,sharing=locked true\n\
             RUN --mount=type=cache,target=/root/.cache/pip,uid=1000 true\n",
        );
        assert_eq!(df.cache_mounts().len(), 3);
        assert_eq!(df.unique_cache_mounts().len(), 2);
    }

    #[test]
    fn parse_file_error_names_the_path() {
        let e = parse_file(Path::new("/nonexistent/Dockerfile")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/Dockerfile"));
    }
}
