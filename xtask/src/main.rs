//! `cargo xtask <command>`: the developer commands.

mod bench;
// netd-bench's options, so that `cargo xtask bench --help` needs no build of netd-bench.
#[path = "../../tests/src/bench/cli.rs"]
mod bench_cli;
mod build_ebpf;
mod cmd;
mod demo;
mod foreign;
mod kernels;
// The nested cargo command that builds netd-ebpf, shared with netd/build.rs.
#[path = "../../netd-ebpf/cargo_command.rs"]
mod ebpf_command;
mod lint;
mod nextest;
mod release;
mod report;
mod setup;
mod test;
mod tiers;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what building and testing netd needs on Debian 12 (idempotent; without root,
    /// only the user's toolchain part, and a check of the rest).
    Setup,
    /// Build the eBPF programs (nightly, build-std, bpf-linker, BTF) and report their size.
    BuildEbpf,
    /// Check formatting and run clippy (warnings are errors) on every crate, netd-ebpf included.
    Lint,
    /// Set up, then run test tiers (all, in this order, when none is named): lint, unit (no
    /// root), packets, labs, docker, kernels (root); ends with a table of counts and minutes.
    Test {
        /// The tiers to run.
        #[arg(value_enum)]
        tiers: Vec<tiers::Tier>,
        /// Test name filters and libtest options for the unit, packets, labs and docker tiers
        /// (after `--`, e.g. `cargo xtask test labs -- kill_9`).
        #[arg(last = true)]
        filter: Vec<String>,
    },
    /// Set up, build, and run the two-host datapath demo in network namespaces.
    Demo,
    /// Set up, build, and benchmark netd against the kernel's datapaths (`--quick`, `--json FILE`,
    /// `--chart FILE`; `cargo xtask bench --help` for all).
    // netd-bench's own parser answers `--help` (bench::run), so that it lists netd-bench's options.
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments for netd-bench, passed through.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `cargo xtask lint`: the lint tier on its own, without setup.
fn lint_command() -> anyhow::Result<()> {
    let tally = lint::run();
    if !tally.ok() {
        anyhow::bail!("lint failed: {}", tally.problems.join(", "));
    }
    eprintln!("lint passed");
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run(setup::EVERYTHING),
        Command::BuildEbpf => build_ebpf::run().map(|_| ()),
        Command::Lint => lint_command(),
        Command::Test { tiers, filter } => test::run(&tiers, &filter),
        Command::Demo => demo::run(),
        Command::Bench { args } => bench::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
