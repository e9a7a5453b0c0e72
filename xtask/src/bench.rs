//! `cargo xtask bench [ARGS]`: netd's datapath against the kernel's own datapaths. Sets up,
//! builds release binaries, then runs `netd-bench ARGS` (`--quick`, `--json FILE`,
//! `--chart FILE`, ...; `cargo xtask bench --help` lists them).

use clap::CommandFactory as _;

use crate::bench_cli::Args;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    // netd-bench's options, checked here first: `--help` and a mistyped option answer at once,
    // not after setup and a release build. netd-bench parses them again for the run itself.
    let argv = std::iter::once("cargo xtask bench").chain(args.iter().map(String::as_str));
    if let Err(error) = Args::command()
        .bin_name("cargo xtask bench")
        .try_get_matches_from(argv)
    {
        // Help on stdout and success, a usage error on stderr and failure: as netd-bench would.
        error.exit();
    }
    crate::release::setup_build_and_run("netd-bench", args)
}
