//! `cargo xtask bench [ARGS]`: netd's datapath against the kernel's own (issue #6). Sets up,
//! builds release binaries, then runs `netd-bench ARGS` (`--quick`, `--json FILE`,
//! `--chart FILE`, ...; `cargo xtask bench --help` lists them).

pub fn run(args: &[String]) -> anyhow::Result<()> {
    crate::run::setup_build_and_run("netd-bench", args)
}
