//! `cicache doctor`: the checklist of what a cached build needs: the docker checks and the
//! Dockerfile's (cicache-docker's [`doctor`]), then the store and the registry.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cicache_docker::build::Compression;
use cicache_docker::doctor::{self, Check, DoctorReport};
use cicache_docker::engine::Docker;
use cicache_registry::{Error, OciClient, OciOptions, Target};
use cicache_store::Backend;

/// What to check.
#[derive(Debug, Clone)]
pub struct DoctorRequest {
    /// The Dockerfile (`None`: CONTEXT/Dockerfile when present).
    pub dockerfile: Option<PathBuf>,
    /// The build context and the cache dir a build restores into (whether the Dockerfile
    /// copies it into the image).
    pub context: PathBuf,
    pub cache_dir: PathBuf,
    /// The image repository whose registry to check (`None`: skipped).
    pub image: Option<String>,
    /// The docker client.
    pub docker: PathBuf,
    /// Bound on each store and registry call.
    pub timeout: Duration,
    /// The layer compression a build would ask for, and where it came from (`None`: gzip,
    /// BuildKit's default).
    pub compression: Option<(Compression, String)>,
}

/// The store the commands would use, as the caller's one store factory opened it for reading.
pub enum StoreState {
    Open(Arc<dyn Backend>),
    /// A directory store that does not exist yet (the first save makes it): its name.
    NotYet(String),
    /// Why it could not be opened.
    Failed(String),
}

/// Runs every check.
pub fn run(req: &DoctorRequest, store: StoreState) -> DoctorReport {
    let mut checks: Vec<Check> = Vec::new();
    // The Dockerfile first: its stage count tells the buildx line what inline cache loses.
    let dockerfile = req.dockerfile.clone().or_else(|| {
        let d = req.context.join("Dockerfile");
        d.is_file().then_some(d)
    });
    let (df_checks, df) = match &dockerfile {
        Some(path) => {
            let (mut checks, df) = doctor::dockerfile_checks(path);
            if let Some(d) = &df {
                checks.extend(doctor::cache_dir_finding(
                    d,
                    path,
                    &req.context,
                    &req.cache_dir,
                ));
            }
            (checks, df)
        }
        None => (
            vec![Check::skip(
                "dockerfile",
                format!(
                    "no --dockerfile given and no {}",
                    req.context.join("Dockerfile").display()
                ),
            )],
            None,
        ),
    };
    let docker = Docker::new(&req.docker);
    let env = |k: &str| std::env::var(k).ok();
    checks.extend(doctor::docker_checks(
        &docker,
        &env,
        df.as_ref().map(|d| d.stages.len()),
        req.compression.as_ref().map(|(c, s)| (*c, s.as_str())),
    ));
    checks.extend(df_checks);
    checks.push(store_check(store));
    checks.push(match &req.image {
        Some(image) => registry_check(image, req.timeout),
        None => Check::skip("registry", "no --image given (CICACHE_IMAGE)"),
    });
    DoctorReport::new(checks)
}

/// The store answers a list call.
fn store_check(store: StoreState) -> Check {
    let backend = match store {
        StoreState::Open(b) => b,
        StoreState::NotYet(name) => {
            return Check::ok(
                "store",
                format!("{name} does not exist yet; the first save makes it"),
            );
        }
        StoreState::Failed(e) => {
            return Check::fail(
                "store",
                e,
                "set --store / CICACHE_STORE to DIR, dir:DIR, s3://BUCKET/PREFIX or \
                 oci://REGISTRY/REPOSITORY (for S3: credentials and region from the AWS config \
                 chain, AWS_ENDPOINT_URL for a non-AWS endpoint)",
            );
        }
    };
    let location = backend.location();
    match backend.list("cicache-v1/refs/") {
        Ok(refs) => Check::ok(
            "store",
            format!("{location} answers a list call ({} entries)", refs.len()),
        ),
        Err(e) => Check::fail(
            "store",
            format!("{location}: listing entries failed: {e}"),
            "check that the directory exists and is readable, or that the bucket exists and \
             these credentials may list it (s3:ListBucket)",
        ),
    }
}

/// The registry of `image` answers `GET /v2/` (a 401 counts: it answers and wants a login).
fn registry_check(image: &str, timeout: Duration) -> Check {
    let target = match Target::parse(image) {
        Ok(t) => t,
        Err(e) => {
            return Check::fail(
                "registry",
                e.to_string(),
                "give --image as REGISTRY/NAME, e.g. 127.0.0.1:5000/app or \
                 123456789012.dkr.ecr.eu-west-1.amazonaws.com/app",
            );
        }
    };
    let opts = OciOptions {
        plain_http: None,
        timeout: Some(timeout),
    };
    match OciClient::new(&target, None, &opts).ping() {
        Ok(()) => Check::ok(
            "registry",
            format!("{} answers GET /v2/ (200)", target.registry),
        ),
        Err(Error::Unauthorized { .. }) => Check::ok(
            "registry",
            format!(
                "{} answers GET /v2/ and asks for credentials (docker login, or `cicache registry login` for ECR)",
                target.registry
            ),
        ),
        Err(e @ Error::Forbidden { .. }) => Check::warn(
            "registry",
            e.to_string(),
            "the registry answers but refuses these credentials the API; check their permissions",
        ),
        Err(e) => Check::fail(
            "registry",
            format!("{}: {e}", target.registry),
            format!(
                "check that {} is the registry host and that this agent reaches it (https; \
                 plain http only for loopback addresses, as docker does)",
                target.registry
            ),
        ),
    }
}
