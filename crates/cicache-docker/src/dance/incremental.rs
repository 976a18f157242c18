//! The incremental extract: only what the build added or changed leaves the builder.
//!
//! A full extract copies every byte of every cache mount out of the builder: the same 300 MB
//! whether the build added one wheel or nothing. When the workspace copy already holds the
//! mount's content as it was (restored and injected before the build, or extracted by the
//! last one), the helper build gets that copy's listing (size, mtime in seconds and path of
//! each file and symlink: the quick check rsync makes) and sends back only the files whose
//! line is not in it, with the mount's own listing (`extract-changed.sh`).
//!
//! cicache then builds the new directory beside the old one, as the full extract does:
//! hard links of the old files, minus what the mount no longer holds, plus what came out,
//! each directory with the mount's mode; it checks every copied file against the mount's
//! listing (present, same size) and every path (relative, no `..`, never written through a
//! symlink), then swaps the directory in. Whatever does not fit (a path that the listing
//! cannot carry, a helper image without awk, a file missing from the output) is an error
//! and [`super::extract`] falls back to the full extract.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::dockerfile::CacheMount;
use crate::engine::{Docker, DockerError};

use super::{
    DanceOptions, bind_flag, helper_build_args, io, mount_path, nonce, sh_quote, tempfile_dir,
};

/// The helper's script (see the file for what it writes).
pub(super) const SCRIPT: &str = include_str!("extract-changed.sh");
const SCRIPT_NAME: &str = "extract-changed.sh";

/// What one mount's incremental extract found and copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Applied {
    /// Files and symlinks the mount holds (the directory holds the same afterwards).
    pub files: u64,
    /// Bytes of its regular files.
    pub bytes: u64,
    /// Files and symlinks copied out of the builder (new or changed).
    pub copied_files: u64,
    /// Bytes of the regular files copied out.
    pub copied_bytes: u64,
    /// Files and symlinks of the old copy that the mount no longer holds.
    pub removed: u64,
}

fn invalid(msg: String) -> DockerError {
    DockerError::Invalid(msg)
}

/// `SIZE MTIME ./PATH` for each file and symlink (MTIME -1) under `dir` (directories are
/// walked, never followed); `None` when a path cannot be a line of it (not UTF-8, a newline).
pub(super) fn listing(dir: &Path) -> Result<Option<String>, DockerError> {
    let mut lines = String::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false).min_depth(1) {
        let e = e.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            DockerError::Io {
                what: "cannot list",
                path,
                source: e.into(),
            }
        })?;
        if e.file_type().is_dir() {
            continue;
        }
        let md = e
            .path()
            .symlink_metadata()
            .map_err(io("cannot stat", e.path()))?;
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        let Some(rel) = rel.to_str() else {
            return Ok(None);
        };
        if rel.contains('\n') {
            return Ok(None);
        }
        // A symlink's mtime does not survive every copy (the `type=local` export gives it
        // the time of the export): -1 matches no line, so symlinks, a few bytes each, always
        // come out.
        let mtime = if md.file_type().is_symlink() {
            -1
        } else {
            md.mtime()
        };
        lines.push_str(&format!("{} {mtime} ./{rel}\n", md.len()));
    }
    Ok(Some(lines))
}

/// The Dockerfile of the incremental extract: each mount's listing compared with
/// `/cicache-src/<i>.list`, the result in `/cicache-out/<i>/`.
pub(super) fn dockerfile(helper_image: &str, mounts: &[&CacheMount]) -> String {
    let mut s = format!(
        "# cicache: cache dance, extract (what changed)\nFROM {helper_image} AS dance\n\
         ARG CICACHE_NONCE\nRUN mkdir -p /cicache-out\n"
    );
    for (i, m) in mounts.iter().enumerate() {
        s.push_str(&format!(
            "RUN {bind} {cache} \\\n    sh /cicache-src/{SCRIPT_NAME} {t} /cicache-src/{i}.list /cicache-out/{i}\n",
            bind = bind_flag("."),
            cache = m.dance_flag(),
            t = sh_quote(&m.target),
        ));
    }
    s.push_str("FROM scratch\nCOPY --from=dance /cicache-out /\n");
    s
}

/// The path of a listing line, relative and plain (`./a/b` -> `a/b`; `.` -> empty).
fn safe_rel(p: &str) -> Result<PathBuf, DockerError> {
    let rest = p
        .strip_prefix("./")
        .or(if p == "." { Some("") } else { None });
    let Some(rest) = rest else {
        return Err(invalid(format!(
            "the cache mount's listing names {p:?}, not a path under ./"
        )));
    };
    let path = PathBuf::from(rest);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(invalid(format!(
            "the cache mount's listing names {p:?}: only plain relative paths are taken"
        )));
    }
    Ok(path)
}

/// The mount's files: path -> (the listing line, size).
fn parse_list(text: &str) -> Result<BTreeMap<PathBuf, (String, u64)>, DockerError> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut w = line.splitn(3, ' ');
        let (Some(size), Some(mtime), Some(path)) = (w.next(), w.next(), w.next()) else {
            return Err(invalid(format!(
                "a bad line in the cache mount's listing: {line:?}"
            )));
        };
        let size: u64 = size
            .parse()
            .map_err(|_| invalid(format!("a bad size in the cache mount's listing: {line:?}")))?;
        mtime.parse::<i64>().map_err(|_| {
            invalid(format!(
                "a bad mtime in the cache mount's listing: {line:?}"
            ))
        })?;
        let rel = safe_rel(path)?;
        if rel.as_os_str().is_empty() {
            return Err(invalid(format!(
                "the cache mount's listing names its root as a file: {line:?}"
            )));
        }
        out.insert(rel, (line.to_string(), size));
    }
    Ok(out)
}

/// The mount's directories: path -> mode.
fn parse_dirs(text: &str) -> Result<BTreeMap<PathBuf, u32>, DockerError> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let Some((mode, path)) = line.split_once(' ') else {
            return Err(invalid(format!(
                "a bad line in the cache mount's directories: {line:?}"
            )));
        };
        let mode = u32::from_str_radix(mode, 8).map_err(|_| {
            invalid(format!(
                "a bad mode in the cache mount's directories: {line:?}"
            ))
        })?;
        out.insert(safe_rel(path)?, mode & 0o7777);
    }
    Ok(out)
}

/// Makes `root/rel` a directory, each component a real directory (an existing symlink or
/// file on the way is an error: nothing is written through it).
fn make_dirs(root: &Path, rel: &Path) -> Result<(), DockerError> {
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match p.symlink_metadata() {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(invalid(format!(
                    "{} is in the way of a directory of the cache mount",
                    p.display()
                )));
            }
            Err(_) => std::fs::create_dir(&p).map_err(io("cannot create", &p))?,
        }
    }
    Ok(())
}

/// A copy of `src` at `dst` made of hard links (a copy where a link is refused).
fn link_tree(src: &Path, dst: &Path) -> Result<(), DockerError> {
    std::fs::create_dir_all(dst).map_err(io("cannot create", dst))?;
    for e in walkdir::WalkDir::new(src).follow_links(false).min_depth(1) {
        let e = e.map_err(|e| DockerError::Io {
            what: "cannot list",
            path: e.path().unwrap_or(src).to_path_buf(),
            source: e.into(),
        })?;
        let rel = e.path().strip_prefix(src).unwrap_or(e.path());
        let to = dst.join(rel);
        let ft = e.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to).map_err(io("cannot create", &to))?;
        } else if std::fs::hard_link(e.path(), &to).is_err() {
            copy_entry(e.path(), &to)?;
        }
    }
    Ok(())
}

/// Links into `staged` every file and symlink of `old` that `staged` lacks (a merge after a
/// full extract); where `staged` has a file in place of a directory of `old`, the mount's
/// file wins and that directory is left out.
pub(super) fn link_missing(old: &Path, staged: &Path) -> Result<(), DockerError> {
    if !old.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(staged).map_err(io("cannot create", staged))?;
    let mut walk = walkdir::WalkDir::new(old)
        .follow_links(false)
        .min_depth(1)
        .into_iter();
    while let Some(e) = walk.next() {
        let e = e.map_err(|e| DockerError::Io {
            what: "cannot list",
            path: e.path().unwrap_or(old).to_path_buf(),
            source: e.into(),
        })?;
        let rel = e.path().strip_prefix(old).unwrap_or(e.path());
        let to = staged.join(rel);
        let here = to.symlink_metadata();
        if e.file_type().is_dir() {
            match here {
                Ok(md) if md.is_dir() => {}
                Ok(_) => walk.skip_current_dir(),
                Err(_) => std::fs::create_dir(&to).map_err(io("cannot create", &to))?,
            }
        } else if here.is_err() && std::fs::hard_link(e.path(), &to).is_err() {
            copy_entry(e.path(), &to)?;
        }
    }
    Ok(())
}

/// Copies one file or symlink, keeping the file's mode and mtime.
fn copy_entry(from: &Path, to: &Path) -> Result<(), DockerError> {
    let md = from.symlink_metadata().map_err(io("cannot stat", from))?;
    if md.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(io("cannot read", from))?;
        std::os::unix::fs::symlink(target, to).map_err(io("cannot create", to))?;
    } else {
        std::fs::copy(from, to).map_err(io("cannot copy to", to))?;
        if let Ok(mtime) = md.modified() {
            let f = std::fs::File::options()
                .write(true)
                .open(to)
                .map_err(io("cannot open", to))?;
            f.set_modified(mtime)
                .map_err(io("cannot set the mtime of", to))?;
        }
    }
    Ok(())
}

/// Builds in `staged` what the mount holds: `old` (the workspace copy, may be missing)
/// linked in, what the mount no longer has removed (kept with `merge`), `out/files` moved
/// in, the mount's directory modes set. `local` is the listing the helper compared with.
pub(super) fn apply(
    old: &Path,
    staged: &Path,
    out: &Path,
    local: &str,
    merge: bool,
) -> Result<Applied, DockerError> {
    let list_path = out.join("list");
    let list_text = std::fs::read_to_string(&list_path).map_err(io("cannot read", &list_path))?;
    let dirs_path = out.join("dirs");
    let dirs_text = std::fs::read_to_string(&dirs_path).map_err(io("cannot read", &dirs_path))?;
    let files = parse_list(&list_text)?;
    let dirs = parse_dirs(&dirs_text)?;
    if old.is_dir() {
        link_tree(old, staged)?;
    } else {
        std::fs::create_dir_all(staged).map_err(io("cannot create", staged))?;
    }

    // What the mount no longer holds goes (unless merging); a directory that is gone goes
    // whole.
    let mut applied = Applied::default();
    let mut gone_dirs = Vec::new();
    for e in walkdir::WalkDir::new(staged)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter(|_| !merge)
    {
        let e = e.map_err(|e| DockerError::Io {
            what: "cannot list",
            path: e.path().unwrap_or(staged).to_path_buf(),
            source: e.into(),
        })?;
        let rel = e
            .path()
            .strip_prefix(staged)
            .unwrap_or(e.path())
            .to_path_buf();
        if gone_dirs.iter().any(|d: &PathBuf| rel.starts_with(d)) {
            continue;
        }
        if e.file_type().is_dir() {
            if !dirs.contains_key(&rel) {
                gone_dirs.push(rel);
            }
        } else if !files.contains_key(&rel) {
            std::fs::remove_file(e.path()).map_err(io("cannot remove", e.path()))?;
            applied.removed += 1;
        }
    }
    for d in &gone_dirs {
        let p = staged.join(d);
        applied.removed += super::dir_stats(&p).0;
        super::make_writable(&p).map_err(io("cannot make writable", &p))?;
        std::fs::remove_dir_all(&p).map_err(io("cannot remove", &p))?;
    }
    for rel in dirs.keys() {
        make_dirs(staged, rel)?;
    }

    // What came out: exactly the lines the local listing lacks, each with its size.
    let have: HashSet<&str> = local.lines().collect();
    let copied = out.join("files");
    for (rel, (line, size)) in &files {
        if have.contains(line.as_str()) {
            continue;
        }
        let from = copied.join(rel);
        let md = from.symlink_metadata().map_err(|_| {
            invalid(format!(
                "{} changed in the cache mount but did not come out of the builder",
                rel.display()
            ))
        })?;
        if md.is_dir() || md.len() != *size {
            return Err(invalid(format!(
                "{} came out of the builder as {} bytes, the mount lists {size}",
                rel.display(),
                md.len()
            )));
        }
        let to = staged.join(rel);
        if let Some(parent) = rel.parent() {
            make_dirs(staged, parent)?;
        }
        if let Ok(existing) = to.symlink_metadata() {
            if existing.is_dir() {
                return Err(invalid(format!(
                    "{} is a file in the cache mount and a directory in its listing",
                    rel.display()
                )));
            }
            std::fs::remove_file(&to).map_err(io("cannot replace", &to))?;
        }
        if std::fs::rename(&from, &to).is_err() {
            copy_entry(&from, &to)?;
        }
        applied.copied_files += 1;
        if md.is_file() {
            applied.copied_bytes += size;
        }
    }

    // Directory modes as in the mount, deepest first (a directory without write permission
    // must not stop the ones below it).
    let mut by_depth: Vec<(&PathBuf, &u32)> = dirs.iter().collect();
    by_depth.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (rel, mode) in by_depth {
        let p = staged.join(rel);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
            .map_err(io("cannot set the mode of", &p))?;
    }
    let (f, b) = super::dir_stats(staged);
    applied.files = f;
    applied.bytes = b;
    Ok(applied)
}

/// Runs the incremental extract of `todo` (each mount with its place in `to_dir`) into a
/// new directory `staging`; `None` when the workspace copy holds nothing to compare with
/// (the full extract is as fast) or a path cannot be listed.
pub(super) fn run(
    docker: &Docker,
    todo: &[(&CacheMount, String)],
    to_dir: &Path,
    staging: &Path,
    opts: &DanceOptions,
    merge: bool,
    echo: Option<&(dyn Fn(&str) + Sync)>,
) -> Result<Option<Vec<Applied>>, DockerError> {
    let mut lists = Vec::new();
    for (_, dir) in todo {
        let old = mount_path(to_dir, dir);
        let list = if old.is_dir() {
            match listing(&old)? {
                Some(l) => l,
                None => return Ok(None),
            }
        } else {
            String::new()
        };
        lists.push(list);
    }
    if lists.iter().all(String::is_empty) {
        return Ok(None);
    }
    let parent = staging.parent().unwrap_or(Path::new("."));
    let context = tempfile_dir(&std::env::temp_dir(), "context")?;
    let script = context.path().join(SCRIPT_NAME);
    std::fs::write(&script, SCRIPT).map_err(io("cannot write", &script))?;
    for (i, l) in lists.iter().enumerate() {
        let p = context.path().join(format!("{i}.list"));
        std::fs::write(&p, l).map_err(io("cannot write", &p))?;
    }
    let out = tempfile_dir(parent, "extract-out")?;
    let mounts: Vec<&CacheMount> = todo.iter().map(|(m, _)| *m).collect();
    let df = dockerfile(&opts.helper_image, &mounts);
    let args = helper_build_args(opts, out.path(), context.path(), &nonce());
    docker.run_checked(&args, Some(df.as_bytes()), echo, opts.log.as_deref())?;

    let mut applied = Vec::new();
    for (i, (_, dir)) in todo.iter().enumerate() {
        let a = apply(
            &mount_path(to_dir, dir),
            &mount_path(staging, dir),
            &out.path().join(i.to_string()),
            &lists[i],
            merge,
        )?;
        applied.push(a);
    }
    Ok(Some(applied))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    fn write(p: &Path, body: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    /// Every file and symlink under `dir`: path, content or link target, mode.
    fn tree(dir: &Path) -> Vec<(String, String, u32)> {
        let mut v: Vec<_> = walkdir::WalkDir::new(dir)
            .min_depth(1)
            .into_iter()
            .flatten()
            .map(|e| {
                let md = e.path().symlink_metadata().unwrap();
                let body = if md.file_type().is_symlink() {
                    format!("-> {}", std::fs::read_link(e.path()).unwrap().display())
                } else if md.is_dir() {
                    "dir".into()
                } else {
                    std::fs::read_to_string(e.path()).unwrap()
                };
                (
                    e.path().strip_prefix(dir).unwrap().display().to_string(),
                    body,
                    md.mode() & 0o7777,
                )
            })
            .collect();
        v.sort();
        v
    }

    /// A directory of busybox applets, without cpio when `cpio` is false.
    fn busybox_path(t: &Path, cpio: bool) -> Option<PathBuf> {
        let bb = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())?;
        let bin = t.join(if cpio { "bb" } else { "bb-nocpio" });
        std::fs::create_dir_all(&bin).unwrap();
        for a in ["sh", "find", "stat", "awk", "cut", "mkdir", "cp", "cpio"] {
            if a == "cpio" && !cpio {
                continue;
            }
            symlink(&bb, bin.join(a)).unwrap();
        }
        Some(bin)
    }

    /// The helper's script run on this machine with busybox, as the helper image runs it.
    fn run_script(bin: &Path, mount: &Path, list: &Path, out: &Path) {
        let o = Command::new(bin.join("sh"))
            .env_clear()
            .env("PATH", bin)
            .arg("-c")
            .arg(SCRIPT.replace(
                "/tmp/cicache-changed",
                &format!("{}.changed", out.display()),
            ))
            .arg("sh")
            .args([mount, list, out])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// The workspace copy and the mount after a build: one file kept, one changed, one new
    /// (in a new directory), one removed, a symlink kept, a new empty directory.
    fn scene(t: &Path) -> (PathBuf, PathBuf) {
        let old = t.join("old");
        write(&old.join("http/a/keep"), "kept");
        write(&old.join("http/b/changed"), "old body");
        write(&old.join("gone/file"), "removed with its dir");
        write(&old.join("top gone"), "removed");
        symlink("http/a/keep", old.join("link")).unwrap();
        let mount = t.join("mount");
        Command::new("cp")
            .args(["-a"])
            .arg(&old)
            .arg(&mount)
            .status()
            .unwrap();
        std::fs::remove_dir_all(mount.join("gone")).unwrap();
        std::fs::remove_file(mount.join("top gone")).unwrap();
        // A new mtime as well as a new size: pip writes a new file.
        std::fs::remove_file(mount.join("http/b/changed")).unwrap();
        write(&mount.join("http/b/changed"), "the new body");
        write(&mount.join("wheels/c d/new.whl"), "new wheel");
        std::fs::create_dir_all(mount.join("empty")).unwrap();
        std::fs::set_permissions(mount.join("wheels"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        (old, mount)
    }

    /// The scene, and the helper's script run on it against the old copy's listing (an empty
    /// one with `empty_local`): (old, mount, the listing, the output dir). `None` without
    /// busybox.
    fn scene_run(
        t: &Path,
        cpio: bool,
        empty_local: bool,
    ) -> Option<(PathBuf, PathBuf, String, PathBuf)> {
        let Some(bin) = busybox_path(t, cpio) else {
            eprintln!("skipped: no busybox on this machine");
            return None;
        };
        let (old, mount) = scene(t);
        let local = if empty_local {
            String::new()
        } else {
            listing(&old).unwrap().unwrap()
        };
        let list = t.join("0.list");
        std::fs::write(&list, &local).unwrap();
        let out = t.join("out");
        run_script(&bin, &mount, &list, &out);
        Some((old, mount, local, out))
    }

    fn check_incremental(cpio: bool) {
        let t = tempfile::tempdir().unwrap();
        let Some((old, mount, local, out)) = scene_run(t.path(), cpio, false) else {
            return;
        };
        // Only the changed and the new file came out.
        let mut came: Vec<_> = tree(&out.join("files"))
            .into_iter()
            .filter(|e| e.1 != "dir")
            .map(|e| e.0)
            .collect();
        came.sort();
        assert_eq!(came, ["http/b/changed", "link", "wheels/c d/new.whl"]);

        let staged = t.path().join("staged");
        let before = tree(&old);
        let a = apply(&old, &staged, &out, &local, false).unwrap();
        assert_eq!(
            tree(&staged),
            tree(&mount),
            "the new directory mirrors the mount"
        );
        assert_eq!(a.copied_files, 3, "a symlink always comes out");
        assert_eq!(
            a.copied_bytes,
            ("the new body".len() + "new wheel".len()) as u64
        );
        assert_eq!(a.removed, 2);
        assert_eq!(a.files, 4);
        assert_eq!(tree(&old), before, "the old copy is untouched");
        assert_eq!(
            std::fs::read_to_string(old.join("http/b/changed")).unwrap(),
            "old body"
        );
    }

    #[test]
    fn only_what_changed_comes_out_and_the_result_mirrors_the_mount() {
        check_incremental(true);
    }

    #[test]
    fn merge_keeps_what_the_mount_lacks() {
        let t = tempfile::tempdir().unwrap();
        let Some((old, mount, local, out)) = scene_run(t.path(), true, false) else {
            return;
        };
        let staged = t.path().join("staged");
        let a = apply(&old, &staged, &out, &local, true).unwrap();
        assert_eq!(a.removed, 0);
        let got = tree(&staged);
        for e in tree(&mount) {
            assert!(got.contains(&e), "{e:?} from the mount");
        }
        assert!(got.iter().any(|e| e.0 == "gone/file"), "kept: {got:?}");
        assert!(got.iter().any(|e| e.0 == "top gone"), "kept: {got:?}");
        let changed = got.iter().find(|e| e.0 == "http/b/changed").unwrap();
        assert_eq!(changed.1, "the new body", "the mount's version wins");
    }

    #[test]
    fn link_missing_adds_only_what_is_missing() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("old");
        write(&old.join("a/kept"), "old a");
        write(&old.join("both"), "old both");
        write(&old.join("x/y"), "under a dir the mount has as a file");
        let staged = t.path().join("staged");
        write(&staged.join("both"), "new both");
        write(&staged.join("x"), "a file");
        link_missing(&old, &staged).unwrap();
        let got = tree(&staged);
        assert_eq!(
            got,
            [
                ("a".to_string(), "dir".to_string(), got[0].2),
                ("a/kept".to_string(), "old a".to_string(), got[1].2),
                ("both".to_string(), "new both".to_string(), got[2].2),
                ("x".to_string(), "a file".to_string(), got[3].2),
            ]
        );
    }

    #[test]
    fn without_cpio_the_script_copies_file_by_file() {
        check_incremental(false);
    }

    #[test]
    fn an_empty_local_list_copies_everything() {
        let t = tempfile::tempdir().unwrap();
        let Some((_, mount, _, out)) = scene_run(t.path(), true, true) else {
            return;
        };
        let staged = t.path().join("staged");
        let a = apply(&t.path().join("missing"), &staged, &out, "", false).unwrap();
        assert_eq!(tree(&staged), tree(&mount));
        assert_eq!(a.copied_files, 4);
    }

    /// An output dir as the helper would write it, with the given listing lines.
    fn fake_out(t: &Path, list: &str, dirs: &str, files: &[(&str, &str)]) -> PathBuf {
        let out = t.join("out");
        std::fs::create_dir_all(out.join("files")).unwrap();
        std::fs::write(out.join("list"), list).unwrap();
        std::fs::write(out.join("dirs"), dirs).unwrap();
        for (p, body) in files {
            write(&out.join("files").join(p), body);
        }
        out
    }

    #[test]
    fn hostile_listings_are_refused_and_touch_nothing() {
        for (list, dirs) in [
            ("3 1 ./../escape\n", "755 .\n"),
            ("3 1 /etc/passwd\n", "755 .\n"),
            ("3 1 ./a/../../x\n", "755 .\n"),
            ("3 1 ./ok\n", "755 ./../up\n"),
            ("x 1 ./ok\n", "755 .\n"),
            ("3 1 .\n", "755 .\n"),
        ] {
            let t = tempfile::tempdir().unwrap();
            let old = t.path().join("old");
            write(&old.join("ok"), "old");
            let out = fake_out(t.path(), list, dirs, &[("ok", "new")]);
            let staged = t.path().join("staged");
            let e = apply(&old, &staged, &out, "", false).unwrap_err();
            assert!(matches!(e, DockerError::Invalid(_)), "{list}: {e}");
            assert_eq!(std::fs::read_to_string(old.join("ok")).unwrap(), "old");
            assert!(!t.path().join("escape").exists() && !t.path().join("x").exists());
        }
    }

    #[test]
    fn a_symlink_in_the_way_is_never_written_through() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("old");
        std::fs::create_dir_all(&old).unwrap();
        let outside = t.path().join("outside");
        write(&outside.join("f"), "outside");
        // A mount that lists `d` as a symlink out of the directory and a file under it, and
        // sends `d` as that symlink (no real mount can: a hostile one).
        let out = fake_out(
            t.path(),
            &format!("{} 5 ./d\n7 1 ./d/f\n", outside.as_os_str().len()),
            "755 .\n",
            &[],
        );
        symlink(&outside, out.join("files/d")).unwrap();
        let staged = t.path().join("staged");
        assert!(apply(&old, &staged, &out, "", false).is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("f")).unwrap(),
            "outside"
        );
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            1,
            "nothing written there"
        );
    }

    #[test]
    fn a_file_missing_or_short_in_the_output_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("old");
        std::fs::create_dir_all(&old).unwrap();
        let out = fake_out(
            t.path(),
            "3 1 ./a\n5 1 ./b\n",
            "755 .\n",
            &[("a", "abc"), ("b", "ab")],
        );
        let e = apply(&old, &t.path().join("s1"), &out, "", false).unwrap_err();
        assert!(
            e.to_string()
                .contains("b came out of the builder as 2 bytes"),
            "{e}"
        );
        let out2 = t.path().join("out2");
        std::fs::rename(&out, &out2).unwrap();
        std::fs::remove_file(out2.join("files/b")).unwrap();
        let e = apply(&old, &t.path().join("s2"), &out2, "", false).unwrap_err();
        assert!(
            e.to_string().contains("did not come out of the builder"),
            "{e}"
        );
    }

    #[test]
    fn listing_has_size_mtime_and_path_and_refuses_newlines() {
        let t = tempfile::tempdir().unwrap();
        write(&t.path().join("b"), "12");
        write(&t.path().join("a/c"), "1");
        let l = listing(t.path()).unwrap().unwrap();
        let mut lines: Vec<&str> = l.lines().collect();
        lines.sort_by_key(|l| l.splitn(3, ' ').nth(2).unwrap().to_string());
        let mtime = |p: &str| t.path().join(p).metadata().unwrap().mtime();
        assert_eq!(
            lines,
            [
                format!("1 {} ./a/c", mtime("a/c")),
                format!("2 {} ./b", mtime("b"))
            ]
        );
        write(&t.path().join("new\nline"), "x");
        assert_eq!(listing(t.path()).unwrap(), None);
    }
}
