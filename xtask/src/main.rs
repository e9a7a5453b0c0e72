//! `cargo xtask <command>`: the developer commands.

mod bench;
// netd-bench's options, so that `cargo xtask bench --help` needs no build of netd-bench.
#[path = "../../tests/src/bench/cli.rs"]
mod bench_cli;
mod build_ebpf;
mod demo;
mod foreign;
mod kernels;
// The nested cargo command that builds netd-ebpf, shared with netd/build.rs.
#[path = "../../netd-ebpf/cargo_command.rs"]
mod ebpf_command;
mod lint;
mod run;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what building and testing netd needs on Debian 12 (idempotent).
    Setup,
    /// Build the eBPF programs (nightly, build-std, bpf-linker, BTF) and report their size.
    BuildEbpf,
    /// Check formatting and run clippy (warnings are errors) on every crate, netd-ebpf included.
    Lint,
    /// Set up, lint, then run every test (unit, kernel packet tests, namespace labs).
    Test {
        /// Extra arguments for the test binaries (e.g. a test name filter; options after `--`).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Run the kernel tier alone: tests inside Debian's 5.10, 6.1 and 6.12 kernels under qemu
    /// (after `cargo xtask setup`; `cargo xtask test` runs it last).
    TestKernels,
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run(),
        Command::BuildEbpf => build_ebpf::run().map(|_| ()),
        Command::Lint => lint::run(),
        Command::Test { args } => test::run(&args),
        Command::TestKernels => kernels::run(),
        Command::Demo => demo::run(),
        Command::Bench { args } => bench::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
