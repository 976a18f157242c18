//! `report` and `doctor`. (Owned by the BuildKit work, issue 4.)

use anyhow::{Result, bail};
use clap::Args;

use crate::cli::Context;

#[derive(Debug, Args)]
pub struct ReportArgs {}
#[derive(Debug, Args)]
pub struct DoctorArgs {}

pub fn report(_a: ReportArgs, _ctx: &Context) -> Result<u8> {
    bail!("`cicache report` is not built yet")
}
pub fn doctor(_a: DoctorArgs, _ctx: &Context) -> Result<u8> {
    bail!("`cicache doctor` is not built yet")
}
