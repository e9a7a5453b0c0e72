//! `cargo xtask lint` and the `lint` tier: formatting and clippy over every crate, warnings as
//! errors. The host crates and netd-ebpf need two clippy runs: netd-ebpf only builds for the BPF
//! target, with nightly and its own flags.

use std::process::Command;

use crate::{
    build_ebpf,
    cmd::{status, workspace_root},
    ebpf_command,
    report::Tally,
};

/// Runs every step, also after one failed (each names its own problems), and counts them.
pub fn run() -> Tally {
    let root = workspace_root();
    let mut fmt = Command::new("cargo");
    fmt.args(["fmt", "--all", "--", "--check"]);
    // Every crate but netd-ebpf, netd-tests included (not a default member).
    let mut host = Command::new("cargo");
    host.args([
        "clippy",
        "--quiet",
        "--workspace",
        "--exclude",
        "netd-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    let mut ebpf =
        ebpf_command::nightly_cargo("clippy", std::env::consts::ARCH, &build_ebpf::target_dir());
    ebpf.args(["--quiet", "--", "-D", "warnings"]);

    let steps = [
        ("rustfmt --check", fmt),
        ("clippy, host crates", host),
        ("clippy, netd-ebpf (BPF target)", ebpf),
    ];
    let total = steps.len();
    let mut tally = Tally::default();
    for (i, (what, mut cmd)) in steps.into_iter().enumerate() {
        let n = i + 1;
        eprintln!("[lint {n}/{total}] {what}");
        match status(cmd.current_dir(&root)) {
            Ok(()) => tally.passed += 1,
            Err(error) => {
                eprintln!("[lint {n}/{total}] {what}: {error:#}");
                tally.failed += 1;
                tally.problems.push(what.to_string());
            }
        }
    }
    tally
}
