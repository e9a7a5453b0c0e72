//! `cargo xtask lint`: formatting and clippy over every crate, warnings as errors. The host
//! crates and netd-ebpf need two clippy runs: netd-ebpf only builds for the BPF target, with
//! nightly and its own flags. `cargo xtask test` runs this first.

use std::process::Command;

use anyhow::Context as _;

use crate::{
    build_ebpf, ebpf_command,
    run::{status, workspace_root},
};

pub fn run() -> anyhow::Result<()> {
    let root = workspace_root();
    let mut fmt = Command::new("cargo");
    fmt.args(["fmt", "--all", "--", "--check"]);
    // The default members: every crate but netd-ebpf.
    let mut host = Command::new("cargo");
    host.args(["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"]);
    let mut ebpf =
        ebpf_command::nightly_cargo("clippy", std::env::consts::ARCH, &build_ebpf::target_dir());
    ebpf.args(["--quiet", "--", "-D", "warnings"]);

    let steps = [
        ("rustfmt --check", fmt),
        ("clippy, host crates", host),
        ("clippy, netd-ebpf (BPF target)", ebpf),
    ];
    let total = steps.len();
    for (i, (what, mut cmd)) in steps.into_iter().enumerate() {
        let n = i + 1;
        eprintln!("[lint {n}/{total}] {what}");
        status(cmd.current_dir(&root))
            .with_context(|| format!("lint step {n}/{total} ({what}) failed"))?;
    }
    eprintln!("lint passed");
    Ok(())
}
