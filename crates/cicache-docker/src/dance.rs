//! The cache dance: moving a directory into and out of BuildKit cache mounts.
//!
//! A `RUN --mount=type=cache` lives inside the builder, not in the workspace, so an ephemeral
//! agent starts with it empty. `inject` fills it from a directory with a tiny helper build
//! whose context is that directory and whose `RUN` copies a bind mount of the context into
//! the cache mount; `extract` copies the cache mount out through `--output type=local`.
//! Both go through the docker client only (the daemon may be on another machine), use
//! `--network none`, and mount the cache with exactly the options the user's Dockerfile
//! uses ([`CacheMount::dance_flag`]), or BuildKit would fill a different cache.
//!
//! Directory layout: with one cache mount, the directory IS the mount's content (so it also
//! works as `pip --cache-dir`). With several, each mount has a subdirectory named by
//! [`mount_dir_name`] (`root_.cache_pip` for `/root/.cache/pip`).
//!
//! Why the copy step always runs: `--no-cache` would also give the helper an EMPTY cache
//! mount, so a changing build argument (`CICACHE_NONCE`) makes BuildKit rerun the step
//! instead. Copy failures fail the helper build (`set -e`, nothing swallowed).

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::dockerfile::CacheMount;
use crate::engine::{Docker, DockerError, Flavour};

mod incremental;

/// The helper image default: any image with a POSIX `sh`, `cp`, `find`, `stat`, `chown`, `du`,
/// and for the changed-only extract `awk`, `cut` and `cpio` (else `cp -a` file by file).
pub const DEFAULT_HELPER_IMAGE: &str = "busybox:1.36";

/// How the helper builds run.
#[derive(Debug, Clone)]
pub struct DanceOptions {
    pub flavour: Flavour,
    /// The image the helper builds start `FROM` (see [`DEFAULT_HELPER_IMAGE`]).
    pub helper_image: String,
    /// Extra arguments for every helper build (e.g. `--builder NAME`).
    pub extra_args: Vec<String>,
    /// Where the helper builds' output is appended, if anywhere.
    pub log: Option<PathBuf>,
}

/// What moved for one cache mount.
#[derive(Debug, Clone, Serialize)]
pub struct MountResult {
    pub id: String,
    pub target: String,
    /// Where in the directory its content is: `.` or a subdirectory name.
    pub dir: String,
    pub files: u64,
    pub bytes: u64,
    /// Set when the mount was left alone, with the reason.
    pub skipped: Option<String>,
    /// After an inject: regular files in the cache mount (old and new), as counted in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_files: Option<u64>,
    /// After an inject: disk use of the cache mount (`du -sk`, in bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_bytes: Option<u64>,
    /// After an extract: files and symlinks copied out of the builder (all of them in a full
    /// extract; the new and changed ones in a changed-only extract).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_files: Option<u64>,
    /// After an extract: bytes of the regular files copied out of the builder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_bytes: Option<u64>,
    /// After a changed-only extract: files and symlinks of the old copy the mount no longer held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_files: Option<u64>,
}

/// The outcome of an inject or extract.
#[derive(Debug, Clone, Serialize)]
pub struct DanceResult {
    pub mounts: Vec<MountResult>,
    pub seconds: f64,
    /// Whether a helper build ran.
    pub ran: bool,
    /// Extract only: `changed` (only what differs from the directory left the builder) or
    /// `full` (everything was copied out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    /// Extract only: why a changed-only extract was tried and given up for a full one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Extract only: files of the directory that the mounts lacked were kept.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub merged: bool,
}

/// The subdirectory name of a mount in a multi-mount directory: its id with every character
/// outside `[A-Za-z0-9._-]` replaced by `_`, leading `_` and `.` removed.
pub fn mount_dir_name(m: &CacheMount) -> String {
    let s: String =
        m.id.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
    let s = s.trim_start_matches(['_', '.']).to_string();
    if s.is_empty() { "cache".to_string() } else { s }
}

/// Each mount with its place in the directory (`.` when there is only one).
pub fn layout<'a>(mounts: &[&'a CacheMount]) -> Vec<(&'a CacheMount, String)> {
    if mounts.len() == 1 {
        return vec![(mounts[0], ".".to_string())];
    }
    let mut out: Vec<(&CacheMount, String)> = Vec::new();
    for m in mounts {
        let mut name = mount_dir_name(m);
        let base = name.clone();
        let mut n = 2;
        while out.iter().any(|(_, d)| *d == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        out.push((m, name));
    }
    out
}

/// Where a mount's content is under `base`: `base` itself for `.`, else `base/<dir>`.
fn mount_path(base: &Path, dir: &str) -> PathBuf {
    if dir == "." {
        base.to_path_buf()
    } else {
        base.join(dir)
    }
}

/// `'...'` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A `--mount=type=bind` value field, CSV-quoted when needed.
fn bind_flag(source: &str) -> String {
    if source == "." {
        "--mount=type=bind,target=/cicache-src".to_string()
    } else {
        let f = format!("source={source}");
        let f = if f.contains([',', '"']) {
            format!("\"{}\"", f.replace('"', "\"\""))
        } else {
            f
        };
        format!("--mount=type=bind,{f},target=/cicache-src")
    }
}

/// Run before the copy of an inject, in the directory copied in, with the mount as `$1` and
/// paths of the directory as the other arguments (`find . -exec sh -c CLEAR sh MOUNT {} +`):
/// removes from the mount each path the copy could not replace. `cp -a` merges a directory
/// into a directory and overwrites a file with a file, but fails on everything else: busybox
/// cannot replace an existing symlink (`cp: can't create '...': File exists`), and neither
/// cp puts a directory where a file or symlink is, or the reverse. So a symlink in the mount
/// goes (the copy never writes through one), as does a directory where the copy has a file
/// or symlink, and a file where it has a directory or symlink. `find` lists a directory
/// before what it holds, so nothing below a removed symlink is looked at through it.
const CLEAR_CONFLICTS: &str = "t=$1; shift; for f; do d=\"$t/$f\"; \
     if [ -L \"$d\" ]; then rm -f \"$d\" || exit 1; \
     elif [ -d \"$d\" ]; then if [ -L \"$f\" ] || [ ! -d \"$f\" ]; then rm -rf \"$d\" || exit 1; fi; \
     elif [ -e \"$d\" ]; then if [ -L \"$f\" ] || [ -d \"$f\" ]; then rm -f \"$d\" || exit 1; fi; fi; done";

/// The Dockerfile of the inject helper build. The copy merges into what the mount holds (a
/// warm daemon keeps its cache mounts): first [`CLEAR_CONFLICTS`] removes what `cp -a` cannot
/// replace. It keeps the mount root's owner and mode (the ones BuildKit gave it from
/// uid/gid/mode) and gives everything copied that owner. It lowers its own priority first
/// (`renice`; an image without it copies at normal priority): beside a prefetch, the pull of
/// the layers comes first (the build waits for both, and the pull is the longer one).
pub fn inject_dockerfile(helper_image: &str, mounts: &[(&CacheMount, String)]) -> String {
    let mut s = format!(
        "# cicache: cache dance, inject\nFROM {helper_image} AS dance\nARG CICACHE_NONCE\n"
    );
    for (i, (m, dir)) in mounts.iter().enumerate() {
        let t = sh_quote(&m.target);
        s.push_str(&format!(
            "RUN {bind} {cache} \\\n    set -e; renice -n 10 -p $$ >/dev/null 2>&1 || :; mkdir -p /cicache-report; \
             mode=$(stat -c %a {t}); owner=$(stat -c %u:%g {t}); \
             (cd /cicache-src && find . -exec sh -c '{CLEAR_CONFLICTS}' sh {t} {{}} +); \
             cp -a /cicache-src/. {t}/; chown -R \"$owner\" {t}; chmod \"$mode\" {t}; \
             echo \"$(find {t} -type f | wc -l) $(du -sk {t} | cut -f1)\" > /cicache-report/{i}\n",
            bind = bind_flag(dir),
            cache = m.dance_flag(),
        ));
    }
    s.push_str("FROM scratch\nCOPY --from=dance /cicache-report /\n");
    s
}

/// The Dockerfile of the extract helper build: each mount copied to `/cicache-out/<dir>`.
pub fn extract_dockerfile(helper_image: &str, mounts: &[(&CacheMount, String)]) -> String {
    let mut s = format!(
        "# cicache: cache dance, extract\nFROM {helper_image} AS dance\nARG CICACHE_NONCE\n\
         RUN mkdir -p /cicache-out\n"
    );
    for (m, dir) in mounts {
        let out = if dir == "." {
            "/cicache-out".to_string()
        } else {
            format!("/cicache-out/{dir}")
        };
        let out = sh_quote(&out);
        s.push_str(&format!(
            "RUN {cache} \\\n    set -e; mkdir -p {out}; cp -a {t}/. {out}/\n",
            cache = m.dance_flag(),
            t = sh_quote(&m.target),
        ));
    }
    s.push_str("FROM scratch\nCOPY --from=dance /cicache-out /\n");
    s
}

/// The docker arguments of a helper build (the Dockerfile comes on stdin).
pub fn helper_build_args(
    opts: &DanceOptions,
    output_dir: &Path,
    context: &Path,
    nonce: &str,
) -> Vec<String> {
    let mut a: Vec<String> = match opts.flavour {
        Flavour::Buildx => vec!["buildx".into(), "build".into()],
        Flavour::Classic => vec!["build".into()],
    };
    a.extend([
        "--progress=plain".to_string(),
        "--network".into(),
        "none".into(),
        "-f".into(),
        "-".into(),
        "--build-arg".into(),
        format!("CICACHE_NONCE={nonce}"),
        "--output".into(),
        format!("type=local,dest={}", output_dir.display()),
    ]);
    a.extend(opts.extra_args.iter().cloned());
    a.push(context.display().to_string());
    a
}

fn nonce() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{t}-{}", std::process::id())
}

/// Files (regular files and symlinks) and bytes under `dir`; 0 when it does not exist.
pub fn dir_stats(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                if ft.is_file() {
                    bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
    }
    (files, bytes)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DockerError {
    let path = path.to_path_buf();
    move |source| DockerError::Io { what, path, source }
}

/// Copies `from_dir` into the cache mounts (merging with what they hold). A mount whose
/// directory is missing or empty is skipped, and nothing runs when all are.
pub fn inject(
    docker: &Docker,
    mounts: &[&CacheMount],
    from_dir: &Path,
    opts: &DanceOptions,
    echo: Option<&(dyn Fn(&str) + Sync)>,
) -> Result<DanceResult, DockerError> {
    let started = Instant::now();
    let mut results = Vec::new();
    let mut todo = Vec::new();
    for (m, dir) in layout(mounts) {
        let src = mount_path(from_dir, &dir);
        let mut r = MountResult {
            id: m.id.clone(),
            target: m.target.clone(),
            dir: dir.clone(),
            files: 0,
            bytes: 0,
            skipped: None,
            mount_files: None,
            mount_bytes: None,
            copied_files: None,
            copied_bytes: None,
            removed_files: None,
        };
        if let Err(why) = m.dance_supported() {
            r.skipped = Some(why);
        } else if !src.is_dir() {
            r.skipped = Some(format!("{} does not exist", src.display()));
        } else {
            let (f, b) = dir_stats(&src);
            r.files = f;
            r.bytes = b;
            if f == 0 {
                r.skipped = Some(format!("{} is empty", src.display()));
            } else {
                todo.push((m, dir));
            }
        }
        results.push(r);
    }
    if todo.is_empty() {
        return Ok(DanceResult {
            mounts: results,
            seconds: started.elapsed().as_secs_f64(),
            ran: false,
            method: None,
            fallback: None,
            merged: false,
        });
    }
    let dockerfile = inject_dockerfile(&opts.helper_image, &todo);
    let out = tempfile_dir(&std::env::temp_dir(), "inject-report")?;
    let args = helper_build_args(opts, out.path(), from_dir, &nonce());
    docker.run_checked(
        &args,
        Some(dockerfile.as_bytes()),
        echo,
        opts.log.as_deref(),
    )?;
    // What each mount holds now, as the helper counted it inside the builder.
    for (i, r) in results
        .iter_mut()
        .filter(|r| r.skipped.is_none())
        .enumerate()
    {
        let text = std::fs::read_to_string(out.path().join(i.to_string())).unwrap_or_default();
        let mut w = text.split_whitespace().map(|n| n.parse::<u64>().ok());
        r.mount_files = w.next().flatten();
        r.mount_bytes = w.next().flatten().map(|kb| kb * 1024);
    }
    Ok(DanceResult {
        mounts: results,
        seconds: started.elapsed().as_secs_f64(),
        ran: true,
        method: None,
        fallback: None,
        merged: false,
    })
}

/// Copies the cache mounts into `to_dir`, replacing it whole once the copy is complete (a
/// failed extract leaves `to_dir` as it was). When every mount comes out empty, `to_dir` is
/// left alone and each mount says so in `skipped`.
///
/// When `to_dir` already holds files, only what differs from them leaves the builder (the
/// changed-only extract, [`incremental`]); the result is the same directory. Should that
/// fail, everything is copied out instead, and `fallback` says why.
///
/// With `merge`, files of `to_dir` that the mounts lack are kept (the inject did not run, so
/// the mounts hold only what this build wrote: mirroring them would drop the restored cache).
pub fn extract(
    docker: &Docker,
    mounts: &[&CacheMount],
    to_dir: &Path,
    opts: &DanceOptions,
    merge: bool,
    echo: Option<&(dyn Fn(&str) + Sync)>,
) -> Result<DanceResult, DockerError> {
    let started = Instant::now();
    let mut results = Vec::new();
    let mut todo = Vec::new();
    for (m, dir) in layout(mounts) {
        let mut r = MountResult {
            id: m.id.clone(),
            target: m.target.clone(),
            dir: dir.clone(),
            files: 0,
            bytes: 0,
            skipped: None,
            mount_files: None,
            mount_bytes: None,
            copied_files: None,
            copied_bytes: None,
            removed_files: None,
        };
        match m.dance_supported() {
            Err(why) => r.skipped = Some(why),
            Ok(()) => todo.push((m, dir)),
        }
        results.push(r);
    }
    if todo.is_empty() {
        return Ok(DanceResult {
            mounts: results,
            seconds: started.elapsed().as_secs_f64(),
            ran: false,
            method: None,
            fallback: None,
            merged: false,
        });
    }
    let parent = match to_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io("cannot create", &parent))?;

    let mut fallback = None;
    let staging = tempfile_dir(&parent, "extract")?;
    match incremental::run(docker, &todo, to_dir, staging.path(), opts, merge, echo) {
        Ok(Some(applied)) => {
            let mut total = 0;
            for (r, a) in results
                .iter_mut()
                .filter(|r| r.skipped.is_none())
                .zip(&applied)
            {
                r.files = a.files;
                r.bytes = a.bytes;
                r.copied_files = Some(a.copied_files);
                r.copied_bytes = Some(a.copied_bytes);
                r.removed_files = Some(a.removed);
                total += a.files;
                if a.files == 0 {
                    r.skipped = Some("the cache mount is empty".to_string());
                }
            }
            if total > 0 {
                replace_dir(staging.path(), to_dir)?;
            }
            return Ok(DanceResult {
                mounts: results,
                seconds: started.elapsed().as_secs_f64(),
                ran: true,
                method: Some("changed"),
                fallback: None,
                merged: merge,
            });
        }
        Ok(None) => {}
        Err(e) => fallback = Some(e.to_string()),
    }
    drop(staging);

    let staging = tempfile_dir(&parent, "extract")?;
    let context = tempfile_dir(&std::env::temp_dir(), "context")?;
    let dockerfile = extract_dockerfile(&opts.helper_image, &todo);
    let args = helper_build_args(opts, staging.path(), context.path(), &nonce());
    docker.run_checked(
        &args,
        Some(dockerfile.as_bytes()),
        echo,
        opts.log.as_deref(),
    )?;

    let mut total = 0;
    for r in results.iter_mut().filter(|r| r.skipped.is_none()) {
        let (f, b) = dir_stats(&mount_path(staging.path(), &r.dir));
        r.files = f;
        r.bytes = b;
        r.copied_files = Some(f);
        r.copied_bytes = Some(b);
        total += f;
        if f == 0 {
            r.skipped = Some("the cache mount is empty".to_string());
        }
    }
    if total > 0 {
        if merge {
            for r in results.iter_mut() {
                let d = mount_path(staging.path(), &r.dir);
                incremental::link_missing(&mount_path(to_dir, &r.dir), &d)?;
                (r.files, r.bytes) = dir_stats(&d);
            }
        }
        replace_dir(staging.path(), to_dir)?;
    }
    Ok(DanceResult {
        mounts: results,
        seconds: started.elapsed().as_secs_f64(),
        ran: true,
        method: Some("full"),
        fallback,
        merged: merge && total > 0,
    })
}

/// A temporary directory in `base` (beside a target, so a rename can publish it).
fn tempfile_dir(base: &Path, what: &str) -> Result<TempDir, DockerError> {
    let path = base.join(format!(".cicache-{what}-{}", nonce()));
    std::fs::create_dir_all(&path).map_err(io("cannot create", &path))?;
    Ok(TempDir { path })
}

/// A directory removed when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.path.exists() {
            let _ = make_writable(&self.path);
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Read-only directories (a cache copied with its modes) cannot be emptied until writable.
fn make_writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let md = std::fs::symlink_metadata(&d)?;
        if md.is_dir() {
            let mode = md.permissions().mode();
            if mode & 0o700 != 0o700 {
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode | 0o700))?;
            }
            for e in std::fs::read_dir(&d)?.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    Ok(())
}

/// Moves `new` to `target`, replacing what is there: rename the old one aside, rename the new
/// one in, remove the old one.
fn replace_dir(new: &Path, target: &Path) -> Result<(), DockerError> {
    let old = target.with_file_name(format!(
        ".{}.cicache-old-{}",
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        nonce()
    ));
    let had_old = target.exists();
    if had_old {
        std::fs::rename(target, &old).map_err(io("cannot move aside", target))?;
    }
    if let Err(e) = std::fs::rename(new, target) {
        if had_old {
            let _ = std::fs::rename(&old, target);
        }
        return Err(io("cannot move the extracted cache to", target)(e));
    }
    if had_old {
        let _ = make_writable(&old);
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    fn mounts(df: &str) -> Vec<CacheMount> {
        parse(df)
            .unwrap()
            .unique_cache_mounts()
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn single_mount_layout_is_the_dir_itself() {
        let ms = mounts("FROM x\nRUN --mount=type=cache,target=/root/.cache/pip true\n");
        let refs: Vec<&CacheMount> = ms.iter().collect();
        let l = layout(&refs);
        assert_eq!(l[0].1, ".");
        let df = inject_dockerfile("bb", &l);
        assert!(df.contains(
            "RUN --mount=type=bind,target=/cicache-src --mount=type=cache,id=/root/.cache/pip,target=/root/.cache/pip \\"
        ));
        assert!(df.contains("cp -a /cicache-src/. '/root/.cache/pip'/"));
        assert!(!df.contains("|| true"));
        let ex = extract_dockerfile("bb", &l);
        assert!(ex.contains("cp -a '/root/.cache/pip'/. '/cicache-out'/"));
        assert!(
            ex.starts_with(
                "# cicache: cache dance, extract\nFROM bb AS dance\nARG CICACHE_NONCE\n"
            )
        );
    }

    #[test]
    fn multi_mount_layout_uses_subdirs() {
        let ms = mounts(
            "FROM x\nRUN --mount=type=cache,target=/root/.cache/pip \
             --mount=type=cache,id=npm,target=/root/.npm,uid=1000,gid=1000,mode=0700,sharing=locked true\n",
        );
        let refs: Vec<&CacheMount> = ms.iter().collect();
        let l = layout(&refs);
        assert_eq!(l[0].1, "root_.cache_pip");
        assert_eq!(l[1].1, "npm");
        let df = inject_dockerfile("bb", &l);
        assert!(df.contains("--mount=type=bind,source=npm,target=/cicache-src --mount=type=cache,id=npm,target=/root/.npm,uid=1000,gid=1000,mode=0700,sharing=locked"));
        let ex = extract_dockerfile("bb", &l);
        assert!(ex.contains("cp -a '/root/.npm'/. '/cicache-out/npm'/"));
    }

    #[test]
    fn helper_args_per_flavour() {
        let mut o = DanceOptions {
            flavour: Flavour::Classic,
            helper_image: "bb".into(),
            extra_args: vec![],
            log: None,
        };
        let a = helper_build_args(&o, Path::new("/o"), Path::new("/c"), "n1");
        assert_eq!(
            a.join(" "),
            "build --progress=plain --network none -f - --build-arg CICACHE_NONCE=n1 --output type=local,dest=/o /c"
        );
        o.flavour = Flavour::Buildx;
        let a = helper_build_args(&o, Path::new("/o"), Path::new("/c"), "n1");
        assert!(a.join(" ").starts_with("buildx build --progress=plain"));
    }

    #[test]
    fn quoting_is_safe() {
        assert_eq!(sh_quote("/a b'c"), r"'/a b'\''c'");
        assert_eq!(
            bind_flag("a,b"),
            "--mount=type=bind,\"source=a,b\",target=/cicache-src"
        );
    }

    #[test]
    fn replace_dir_swaps_and_stats_count() {
        let t = std::env::temp_dir().join(format!("cicache-dance-test-{}", nonce()));
        let new = t.join("new");
        let target = t.join("target");
        std::fs::create_dir_all(new.join("sub")).unwrap();
        std::fs::write(new.join("sub/f"), b"12345").unwrap();
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("old"), b"x").unwrap();
        replace_dir(&new, &target).unwrap();
        assert!(target.join("sub/f").exists());
        assert!(!target.join("old").exists());
        assert_eq!(dir_stats(&target), (1, 5));
        let left: Vec<_> = std::fs::read_dir(&t).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "old dir removed");
        std::fs::remove_dir_all(&t).unwrap();
    }
}
