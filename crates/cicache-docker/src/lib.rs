//! cicache-docker: Dockerfile cache-mount parsing, the BuildKit cache dance, `build`
//! orchestration and builder housekeeping.

pub mod dockerfile;
