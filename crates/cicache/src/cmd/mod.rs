//! One module per command group; `run` dispatches.

pub mod docker;
pub mod docs;
pub mod registry;
pub mod report;
pub mod store;

use anyhow::Result;

use crate::cli::Command;
use crate::settings::Context;

pub fn run(command: Command, ctx: &Context) -> Result<u8> {
    match command {
        Command::Key(a) => store::key(a, ctx),
        Command::Restore(a) => store::restore(a, ctx),
        Command::Save(a) => store::save(a, ctx),
        Command::List(a) => store::list(a, ctx),
        Command::Prune(a) => store::prune(a, ctx),
        Command::Verify(a) => store::verify(a, ctx),
        Command::Export(a) => store::export(a, ctx),
        Command::Import(a) => store::import(a, ctx),
        Command::Mount(a) => docker::mount(a, ctx),
        Command::Build(a) => docker::build(*a, ctx),
        Command::Base(a) => docker::base(*a, ctx),
        Command::Docker(a) => docker::docker(a, ctx),
        Command::Report(a) => report::report(a, ctx),
        Command::Doctor(a) => report::doctor(a, ctx),
        Command::Registry(a) => registry::registry(a, ctx),
        Command::Completions(a) => docs::completions(a, ctx),
        Command::Man(a) => docs::man(a, ctx),
    }
}
