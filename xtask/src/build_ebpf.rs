//! `cargo xtask build-ebpf`: the programs on their own, the same way netd/build.rs builds them.

use std::{path::PathBuf, process::Command};

use anyhow::Context as _;

use crate::run::{status, workspace_root};

pub const TARGET: &str = "bpfel-unknown-none";

pub fn run() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let target_dir = root.join("target").join("ebpf");
    // Same flags as aya-build: BTF for the loader, debuginfo for BTF line info.
    let rustflags = [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ]
    .join("\x1f");
    status(
        Command::new("rustup")
            .args([
                "run",
                "nightly",
                "cargo",
                "build",
                "--package",
                "netd-ebpf",
                "--bins",
            ])
            .args(["--release", "--target", TARGET, "-Z", "build-std=core"])
            .arg("--target-dir")
            .arg(&target_dir)
            .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .current_dir(&root),
    )?;
    let object = target_dir.join(TARGET).join("release").join("netd-ebpf");
    let size = std::fs::metadata(&object)
        .with_context(|| format!("{} was not produced", object.display()))?
        .len();
    eprintln!("built {} ({size} bytes)", object.display());
    Ok(object)
}
