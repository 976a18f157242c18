//! cicache-docker: Dockerfile cache-mount parsing, the BuildKit cache dance, `build`
//! orchestration and builder housekeeping.

pub mod base;
pub mod build;
pub mod dance;
pub mod dockerfile;
pub mod doctor;
pub mod engine;
pub mod prune;
pub mod report;
pub mod skip;
pub mod transient;
