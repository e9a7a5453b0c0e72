//! clap commands, one file per verb group; doc comments are the help text.

mod maps;
mod output;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// Multi-host container networking with an eBPF VXLAN datapath.
#[derive(Debug, Parser)]
#[command(name = "netd", version, propagate_version = true)]
struct Cli {
    /// bpffs directory holding netd's pinned maps and links.
    #[arg(long, global = true, env = "NETD_PIN_DIR", default_value = netd::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = output::Format::Table)]
    format: output::Format,

    /// Shorthand for `--format json`.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect the datapath's pinned maps (works while the daemon is down).
    #[command(subcommand)]
    Maps(maps::MapsCommand),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let format = if cli.json {
        output::Format::Json
    } else {
        cli.format
    };
    let result = match cli.command {
        Command::Maps(cmd) => maps::run(cmd, &cli.pin_dir, format),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, as docker and ip do: the whole cause chain joined.
            eprintln!("netd: {error:#}");
            ExitCode::FAILURE
        }
    }
}
