//! The docker engines the binary's docker tests run on, each started fresh per agent (a new
//! data-root is a fresh agent):
//!
//! - [`Engine::Docker20`]: Debian bookworm's docker.io 20.10 (BuildKit 0.8 built in), its own
//!   20.10 client `/usr/bin/docker`, no buildx (test/lib/docker.sh);
//! - [`Engine::Docker26Graph`] and [`Engine::Docker26Containerd`]: Debian trixie's docker.io
//!   26.1.5 on its own containerd 1.7.24, on the graph-driver image store (overlay2,
//!   daemon.json `{}`) or the containerd image store (`containerd-snapshotter`), with the
//!   static docker 28 client and buildx 0.13.1 in a private DOCKER_CONFIG
//!   (test/lib/docker26.sh fetches them; bookworm's runc runs the containers).
//!
//! Every engine loads the base images from the same `docker save` tarballs
//! ($CICACHE_TEST_IMAGES). Needs CICACHE_TEST_DOCKERD=1 and CICACHE_TEST_IMAGES, and for the
//! 26 engines CICACHE_TEST_DOCKER26; without them a test prints "skipped: ..." unless
//! CICACHE_TEST_REQUIRE_SERVICES=1.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "cicache-test/busybox:latest";
pub const PYTHON: &str = "cicache-test/python:3.11-bookworm";
/// The 20.10 client (the static 28 client in /usr/local/bin builds only through buildx).
const DOCKER20_CLIENT: &str = "/usr/bin/docker";
const DOCKER26_CLIENT: &str = "/usr/local/bin/docker";

/// Which docker engine an agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker20,
    Docker26Graph,
    Docker26Containerd,
}

impl Engine {
    pub const ALL: [Engine; 3] = [
        Engine::Docker20,
        Engine::Docker26Graph,
        Engine::Docker26Containerd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker20 => "20.10",
            Engine::Docker26Graph => "26-graph",
            Engine::Docker26Containerd => "26-containerd",
        }
    }

    pub fn has_buildx(self) -> bool {
        self != Engine::Docker20
    }

    /// The extracted trixie tree, for the 26 engines.
    fn docker26_root() -> Option<PathBuf> {
        std::env::var("CICACHE_TEST_DOCKER26")
            .ok()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    /// The directory of the base images' tarballs when this engine can run here, else
    /// `None` (skipped).
    pub fn services(self) -> Option<PathBuf> {
        service("CICACHE_TEST_DOCKERD", "dockerd may be started by tests")?;
        let images = service(
            "CICACHE_TEST_IMAGES",
            "docker-save tarballs of the base images",
        )?;
        if self != Engine::Docker20 {
            service(
                "CICACHE_TEST_DOCKER26",
                "docker 26 + containerd + buildx extracted from Debian trixie (test/lib/docker26.sh)",
            )?;
        }
        Some(PathBuf::from(images))
    }
}

pub fn service(var: &str, why: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CICACHE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{var} is not set ({why}); test/run.sh starts it");
            }
            eprintln!("skipped: {var} is not set ({why})");
            None
        }
    }
}

pub fn work_dir() -> PathBuf {
    std::env::var("CICACHE_TEST_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

static DAEMONS: AtomicUsize = AtomicUsize::new(0);

/// A docker engine of our own: its own data-root, exec-root and sockets (and for the 26
/// engines its own containerd with its own root and state), no bridge (builds use
/// `--network none` or `--network host`), optionally listening on tcp://127.0.0.1 too.
pub struct Daemon {
    pub engine: Engine,
    pub dir: PathBuf,
    pub host: String,
    /// The docker client for this engine.
    pub client: PathBuf,
    /// DOCKER_CONFIG with cli-plugins/docker-buildx (26 engines).
    pub config: Option<PathBuf>,
    dockerd: Child,
    containerd: Option<Child>,
}

impl Daemon {
    pub fn start(engine: Engine) -> Daemon {
        Daemon::start_with(engine, false)
    }

    pub fn start_with(engine: Engine, tcp: bool) -> Daemon {
        let n = DAEMONS.fetch_add(1, Ordering::SeqCst);
        // Short paths: unix sockets live under the directory. The names are the ones
        // test/lib/docker.sh (dockerd-*) and docker26.sh (engine-*) clean up after a killed run.
        let prefix = match engine {
            Engine::Docker20 => "dockerd",
            _ => "engine",
        };
        let dir = work_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("sock");
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let (mut cmd, containerd, client, config) = match engine {
            Engine::Docker20 => (
                Command::new("dockerd"),
                None,
                PathBuf::from(DOCKER20_CLIENT),
                None,
            ),
            Engine::Docker26Graph | Engine::Docker26Containerd => {
                let root = Engine::docker26_root().expect("CICACHE_TEST_DOCKER26");
                // The extracted binaries first; runc is bookworm's /usr/sbin/runc (trixie's
                // needs a newer libc, and none is extracted).
                let path = format!(
                    "{}:{}:{}",
                    root.join("usr/sbin").display(),
                    root.join("usr/bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                );
                let ctd = dir.join("ctd");
                let ctd_sock = dir.join("ctd.sock");
                std::fs::create_dir_all(&ctd).unwrap();
                std::fs::write(
                    dir.join("containerd.toml"),
                    format!(
                        "version = 2\nroot = \"{c}/root\"\nstate = \"{c}/state\"\n\
                         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                         [grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n\
                         [debug]\n  address = \"{d}/ctd-debug.sock\"\n\
                         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{c}/opt\"\n",
                        c = ctd.display(),
                        s = ctd_sock.display(),
                        d = dir.display()
                    ),
                )
                .unwrap();
                let containerd = Command::new(root.join("usr/bin/containerd"))
                    .arg("--config")
                    .arg(dir.join("containerd.toml"))
                    .env("PATH", &path)
                    .stdout(log("containerd.log"))
                    .stderr(log("containerd.log"))
                    .spawn()
                    .expect("starting containerd");
                std::fs::write(dir.join("containerd.pid"), containerd.id().to_string()).unwrap();
                let t = Instant::now();
                while !ctd_sock.exists() {
                    if t.elapsed() > Duration::from_secs(30) {
                        let log =
                            std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
                        panic!("containerd did not come up in 30s:\n{log}");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                std::fs::write(
                    dir.join("daemon.json"),
                    if engine == Engine::Docker26Containerd {
                        r#"{"features":{"containerd-snapshotter":true}}"#
                    } else {
                        "{}"
                    },
                )
                .unwrap();
                let plugins = dir.join("config/cli-plugins");
                std::fs::create_dir_all(&plugins).unwrap();
                let _ = std::os::unix::fs::symlink(
                    root.join("usr/libexec/docker/cli-plugins/docker-buildx"),
                    plugins.join("docker-buildx"),
                );
                let mut cmd = Command::new(root.join("usr/sbin/dockerd"));
                cmd.env("PATH", &path)
                    .arg("--containerd")
                    .arg(&ctd_sock)
                    .arg("--config-file")
                    .arg(dir.join("daemon.json"));
                let client = std::env::var("CICACHE_TEST_DOCKER26_CLIENT")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| DOCKER26_CLIENT.to_string());
                (
                    cmd,
                    Some(containerd),
                    PathBuf::from(client),
                    Some(dir.join("config")),
                )
            }
        };
        cmd.args(["--bridge", "none", "--iptables=false", "--ip-masq=false"])
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", sock.display()));
        let mut host = format!("unix://{}", sock.display());
        if tcp {
            let port = free_port();
            cmd.arg("--host").arg(format!("tcp://127.0.0.1:{port}"));
            host = format!("tcp://127.0.0.1:{port}");
        }
        let dockerd = cmd
            .stdout(log("log"))
            .stderr(log("log"))
            .spawn()
            .expect("starting dockerd");
        std::fs::write(dir.join("dockerd.pid"), dockerd.id().to_string()).unwrap();
        let d = Daemon {
            engine,
            dir,
            host,
            client,
            config,
            dockerd,
            containerd,
        };
        let t = Instant::now();
        loop {
            let ok = d
                .docker(&["version", "--format", "{{.Server.Version}}"])
                .status
                .success();
            if ok {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(d.dir.join("log")).unwrap_or_default();
                panic!("dockerd ({}) did not come up in 60s:\n{log}", engine.name());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        d
    }

    /// Points a command at this engine: DOCKER_HOST, DOCKER_CONFIG (the buildx plugin),
    /// DOCKER_BUILDKIT=1, and CICACHE_DOCKER = this engine's client.
    pub fn env(&self, c: &mut Command) {
        c.env("DOCKER_HOST", &self.host)
            .env("DOCKER_BUILDKIT", "1")
            .env("CICACHE_DOCKER", &self.client);
        match &self.config {
            Some(cfg) => c.env("DOCKER_CONFIG", cfg),
            None => c.env_remove("DOCKER_CONFIG"),
        };
    }

    /// A command of this engine's docker client.
    pub fn docker_command(&self) -> Command {
        let mut c = Command::new(&self.client);
        self.env(&mut c);
        c.stdin(Stdio::null());
        c
    }

    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        self.docker_command()
            .args(args)
            .output()
            .expect("running docker")
    }

    /// `docker build ARGS` on this engine: `docker buildx build` where the client builds
    /// only through buildx, with `--load` unless ARGS name an `--output`.
    pub fn build(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = if self.engine.has_buildx() {
            vec!["buildx", "build"]
        } else {
            vec!["build"]
        };
        if self.engine.has_buildx() && !args.iter().any(|a| a.starts_with("--output")) {
            all.push("--load");
        }
        all.extend_from_slice(args);
        self.docker(&all)
    }

    pub fn load(&self, images: &Path, name: &str) {
        let o = self.docker(&["load", "-i", images.join(name).to_str().unwrap()]);
        assert!(
            o.status.success(),
            "docker load {name} ({}): {}",
            self.engine.name(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM, so dockerd stops cleanly and unmounts; then its containerd.
        let stop = |child: &mut Child| {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
        };
        stop(&mut self.dockerd);
        if let Some(c) = &mut self.containerd {
            stop(c);
        }
        for d in ["root", "exec", "ctd"] {
            let _ = Command::new("umount")
                .arg("-R")
                .arg(self.dir.join(d))
                .stderr(Stdio::null())
                .status();
        }
        // Removing a data-root (the base images unpacked, every build's layers) takes 30 to
        // 45 s on this machine's disk (ext4 with online discard), longer than most tests:
        // move it out of the way (a name docker.sh and docker26.sh do not stop daemons in)
        // and remove it in the background; test/run.sh removes CICACHE_TEST_WORK at the end
        // whatever is left.
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        let trash = self.dir.with_file_name(format!("trash-{name}"));
        let rm = std::fs::rename(&self.dir, &trash).ok().and_then(|()| {
            Command::new("rm")
                .arg("-rf")
                .arg(&trash)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        });
        if let Some(mut rm) = rm {
            // Reaped while this test binary runs; after it exits, rm goes on alone.
            std::thread::spawn(move || rm.wait());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_dir_all(&trash);
        }
    }
}

/// One `#[test]` per engine for `fn NAME(engine: Engine)`: `NAME::docker20`,
/// `NAME::docker26_graph`, `NAME::docker26_containerd` (filter by engine with
/// `cargo test -- docker26_graph`).
#[macro_export]
macro_rules! on_each_engine {
    ($name:ident) => {
        mod $name {
            #[test]
            fn docker20() {
                super::$name($crate::engine::Engine::Docker20);
            }
            #[test]
            fn docker26_graph() {
                super::$name($crate::engine::Engine::Docker26Graph);
            }
            #[test]
            fn docker26_containerd() {
                super::$name($crate::engine::Engine::Docker26Containerd);
            }
        }
    };
}
