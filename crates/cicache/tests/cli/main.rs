//! The command line as a person meets it (issue 22), through the real binary: what the
//! store commands print (`output`), and help, version, completions and man pages (`help`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

mod help;
mod output;

/// Runs `cicache args` in `dir` with a clean environment (PATH, TERM=xterm and `env`):
/// (exit code, stdout, stderr).
fn run(dir: &Path, env: &[(&str, PathBuf)], args: &[&str]) -> (i32, String, String) {
    let o = Command::cargo_bin("cicache")
        .unwrap()
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// A temp dir with its own store and state.
struct T(tempfile::TempDir);

impl T {
    fn new() -> T {
        T(tempfile::tempdir().unwrap())
    }
    fn p(&self, s: &str) -> PathBuf {
        self.0.path().join(s)
    }
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let env = [
            ("HOME", self.p("home")),
            ("CICACHE_STORE", self.p("store")),
            ("CICACHE_STATE_DIR", self.p("state")),
        ];
        run(self.0.path(), &env, args)
    }
    /// Stdout of a command whose words are split at blanks, which must succeed.
    fn out(&self, words: &str) -> String {
        let args: Vec<&str> = words.split_whitespace().collect();
        self.ok(&args).0.trim().to_string()
    }
    fn ok(&self, args: &[&str]) -> (String, String) {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        (out, err)
    }
}

/// `n` random bytes: incompressible, so they are stored as they are.
fn random(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .take(n as u64)
        .read_to_end(&mut v)
        .unwrap();
    v
}
