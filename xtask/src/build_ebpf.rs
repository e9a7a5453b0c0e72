//! `cargo xtask build-ebpf`: the programs on their own, with the command netd/build.rs uses.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{
    cmd::{status, workspace_root},
    ebpf_command,
};

/// `target/ebpf`: nightly's host artifacts (build scripts, proc macros) in `target/release`
/// would evict stable's, and each toolchain would rebuild them for the other.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target").join("ebpf")
}

pub fn run() -> anyhow::Result<PathBuf> {
    let target_dir = target_dir();
    status(
        ebpf_command::nightly_cargo("build", std::env::consts::ARCH, &target_dir)
            .current_dir(workspace_root()),
    )?;
    let object = ebpf_command::object(&target_dir);
    let size = std::fs::metadata(&object)
        .with_context(|| format!("{} was not produced", object.display()))?
        .len();
    eprintln!("built {} ({size} bytes)", object.display());
    Ok(object)
}
