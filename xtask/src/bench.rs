//! `cargo xtask bench [ARGS]`: netd's datapath against the kernel's own (issue #6). Sets up,
//! builds release binaries, then runs `netd-bench ARGS` (`--quick`, `--json FILE`,
//! `--chart FILE`, ...; `cargo xtask bench --help` lists them).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::run::{status, workspace_root};

/// Where cargo puts the binaries: `CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
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
        Command::new(target_dir().join("release/netd-bench"))
            .args(args)
            .current_dir(workspace_root()),
    )
}
