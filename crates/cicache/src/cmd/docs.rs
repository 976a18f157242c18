//! `completions` and `man`: the shell completion scripts and the manual pages, generated from
//! the same clap types as `--help` (and docs/CLI.md).

use std::io::Write;

use anyhow::{Context as _, Result};

use crate::cli::{CompletionsArgs, ManArgs};
use crate::output::exit;
use crate::settings::Context;

pub fn completions(a: CompletionsArgs, _ctx: &Context) -> Result<u8> {
    let mut cmd = crate::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "cicache", &mut out);
    write_stdout(&out)?;
    Ok(exit::OK)
}

pub fn man(a: ManArgs, ctx: &Context) -> Result<u8> {
    // Built: each command knows its full name (`cicache-registry-gc`) and usage line.
    let mut cmd = crate::cli::command();
    cmd.build();
    match a.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("rendering the manual page")?;
            write_stdout(&out)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let n = write_pages(&cmd, &dir)?;
            ctx.out
                .info(format!("wrote {n} manual pages into {}", dir.display()));
        }
    }
    Ok(exit::OK)
}

/// `cicache.1`, `cicache-restore.1`, `cicache-registry-gc.1`, ...; returns how many.
fn write_pages(cmd: &clap::Command, dir: &std::path::Path) -> Result<usize> {
    let page = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(page.get_filename());
    let mut body = Vec::new();
    page.render(&mut body)
        .with_context(|| format!("rendering {}", path.display()))?;
    std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    let mut n = 1;
    for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
        n += write_pages(sub, dir)?;
    }
    Ok(n)
}

/// Writes to stdout; a closed pipe (`cicache man | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}
