//! What `cargo xtask demo` and `cargo xtask bench` share: set up, build the release binaries of
//! netd and its test harness, and run one of them.

use std::process::Command;

use crate::cmd::{is_root, status, target_dir, workspace_root};

/// Sets up, builds the release binaries of netd and netd-tests, and runs `binary` (`netd-demo`,
/// `netd-bench`) with `args`.
pub fn setup_build_and_run(binary: &str, args: &[String]) -> anyhow::Result<()> {
    if !is_root() {
        anyhow::bail!("{binary} needs root: it creates network namespaces and loads eBPF programs");
    }
    crate::setup::run(crate::setup::EVERYTHING)?;
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
        Command::new(target_dir().join("release").join(binary))
            .args(args)
            .current_dir(workspace_root()),
    )
}
