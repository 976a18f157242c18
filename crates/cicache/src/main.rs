//! `cicache`: the command-line helper. Thin: parsing, configuration and output live here;
//! the work is done by the library crates.

mod cli;
mod cmd;
mod config;
mod env;
mod output;
mod settings;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before clap reads them, and before any thread exists: an empty `CICACHE_*` variable
    // counts as unset (`CICACHE_STORE=` must not hide cicache.yml's `store:`), and a
    // misspelt one is named, not silently ignored.
    let unknown = env::clear_empty_and_find_unknown();
    let json = env::json_requested();
    let cli = match cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return output::clap_error(e, json),
    };
    for (name, closest) in &unknown {
        let hint = closest
            .as_ref()
            .map(|c| format!("did you mean {c}? "))
            .unwrap_or_default();
        eprintln!(
            "cicache: warning: {name} is not a cicache variable and is ignored; {hint}(docs/CONFIG.md lists them all)"
        );
    }
    // A Jenkins abort sends SIGTERM: restores and saves in flight remove their staging dirs.
    if let Err(e) = cicache_store::cleanup::install_signal_handlers() {
        eprintln!(
            "cicache: warning: cannot install signal handlers ({e}); a killed restore may leave a staging dir"
        );
    }
    let ctx = match settings::Context::new(&cli.global) {
        Ok(ctx) => ctx,
        Err(e) => {
            output::print_error(cli.global.json, &e, output::exit::USAGE);
            return ExitCode::from(output::exit::USAGE);
        }
    };
    match cmd::run(cli.command, &ctx) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = if e.downcast_ref::<settings::UsageError>().is_some() {
                output::exit::USAGE
            } else {
                output::exit::FAILURE
            };
            output::print_error(ctx.out.json, &e, code);
            ExitCode::from(code)
        }
    }
}
