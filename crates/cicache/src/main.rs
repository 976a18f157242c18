//! `cicache`: the command-line helper. Thin: parsing, configuration and output live here;
//! the work is done by the library crates.

mod cli;
mod cmd;
mod config;
mod output;
mod settings;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    // A Jenkins abort sends SIGTERM: restores and saves in flight remove their staging dirs.
    if let Err(e) = cicache_store::cleanup::install_signal_handlers() {
        eprintln!(
            "cicache: warning: cannot install signal handlers ({e}); a killed restore may leave a staging dir"
        );
    }
    let ctx = match settings::Context::new(&cli.global) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("cicache: error: {e:#}");
            return ExitCode::from(output::exit::USAGE);
        }
    };
    match cmd::run(cli.command, &ctx) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            ctx.out.error(&e);
            ExitCode::from(output::exit::FAILURE)
        }
    }
}
