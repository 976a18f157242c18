//! The cached build: what `cicache build` and `cicache base` do, as a library.
//!
//! The path of one build, and the module that owns each decision:
//!
//! ```text
//! BuildSpec (spec.rs: what the user asked, resolved by the binary)
//!   -> base image first, when asked         base.rs     (REPO:base-<hash>: reuse, build, fall back)
//!   -> parse the Dockerfile's cache mounts  mounts.rs
//!   -> hash the inputs (labels)             inputs.rs   (io.cicache.inputs, mount steps)
//!   -> read the labels                      registry.rs (cache tags, or image tags: check.rs)
//!   -> decide                               check.rs    (pure: tag unchanged / mounts from the
//!                                                        layer cache / prefetch / build, and
//!                                                        what the steps that run again made)
//!   -> tag instead of building              unchanged.rs
//!   -> restore + inject, prefetch beside    cache_in.rs, cache_dir.rs, prefetch.rs (no inject
//!                                                        when those steps made little; the
//!                                                        restore then waits for the extract)
//!   -> docker build                         run.rs
//!   -> push + cache export; extract + save  run.rs, overlap.rs (extract + save start at the
//!      beside the export and the push                         build's export: every step done)
//!   -> BuildOutcome                         outcome.rs, phase.rs (typed; the binary prints
//!                                                        text or the JSON of docs/JSON.md)
//! ```
//!
//! A cache phase that fails is a warning (the build goes on) unless `strict`; the Dockerfile
//! build and the image push fail the build. What the library says while it works goes
//! through [`Events`]; it prints nothing itself.

mod base;
pub mod cache_dir;
mod cache_in;
pub mod check;
pub mod doctor;
mod error;
mod events;
mod inputs;
pub mod mount;
mod mounts;
mod outcome;
mod overlap;
mod phase;
mod prefetch;
mod registry;
mod run;
mod spec;
mod text;
mod unchanged;

pub use base::{BaseDoc, BaseOutcome, BaseRequest, BaseStatus, ensure_base};
pub use cache_dir::{CacheError, CacheStore, RestoreDoc, SaveDoc, SaveMode};
pub use error::{BuildError, Result};
pub use events::Events;
pub use mounts::{describe_dance, select_mounts};
pub use outcome::{BaseFailedDoc, BuildDoc, BuildResult, DryRunDoc, DryRunMount, Unchanged};
pub use phase::{Phase, PhaseDetail, PhaseStatus, human_duration};
pub use registry::has_registry_host;
pub use run::{Env, build};
pub use spec::{
    BaseOptions, BuildSpec, CacheSettings, DEFAULT_KEY, DEFAULT_RESTORE_KEY, DockerSpec,
    FlavourChoice, KeyTemplates, Switches,
};
