//! `cargo xtask demo`: two simulated hosts, one container each, ping and iperf3 across the eBPF
//! VXLAN datapath, the maps and counters printed, everything removed afterwards.

use std::process::Command;

use crate::run::{status, workspace_root};

pub fn run() -> anyhow::Result<()> {
    crate::setup::run()?;
    status(
        Command::new("cargo")
            .args([
                "build",
                "--release",
                "--package",
                "netd",
                "--package",
                "netd-tests",
                "--bins",
            ])
            .current_dir(workspace_root()),
    )?;
    status(
        Command::new(workspace_root().join("target/release/netd-demo"))
            .current_dir(workspace_root()),
    )
}
