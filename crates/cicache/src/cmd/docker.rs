//! Docker commands: `mount inject|extract`, `build`, `docker prune`. (Owned by the BuildKit work, issue 4.)

use anyhow::{Result, bail};
use clap::Args;

use crate::cli::Context;

#[derive(Debug, Args)]
pub struct MountArgs {}
#[derive(Debug, Args)]
pub struct BuildArgs {}
#[derive(Debug, Args)]
pub struct DockerArgs {}

pub fn mount(_a: MountArgs, _ctx: &Context) -> Result<u8> {
    bail!("`cicache mount` is not built yet")
}
pub fn build(_a: BuildArgs, _ctx: &Context) -> Result<u8> {
    bail!("`cicache build` is not built yet")
}
pub fn docker(_a: DockerArgs, _ctx: &Context) -> Result<u8> {
    bail!("`cicache docker` is not built yet")
}
