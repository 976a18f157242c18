//! `cicache registry ...`. (Owned by the registry work, issue 5.)

use anyhow::{Result, bail};
use clap::Args;

use crate::cli::Context;

#[derive(Debug, Args)]
pub struct RegistryArgs {}

pub fn registry(_a: RegistryArgs, _ctx: &Context) -> Result<u8> {
    bail!("`cicache registry` is not built yet")
}
