//! How netd-ebpf is compiled: the nested nightly `cargo` command shared by netd/build.rs (which
//! embeds the object), `cargo xtask build-ebpf` and `cargo xtask lint`. Both include this file
//! with `#[path]` rather than depending on a crate, because xtask must build before anything of
//! netd's can, and a build script cannot depend on xtask. So: std only.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The BPF target: little-endian, like every host netd runs on.
pub const TARGET: &str = "bpfel-unknown-none";

const PACKAGE: &str = "netd-ebpf";

/// The nightly that compiles the programs, pinned: its LLVM (22) must be the one bpf-linker is
/// built against (`cargo xtask setup`), or bpf-linker cannot read the bitcode ("Invalid
/// record", as with LLVM 23's nightlies). Move it with bpf-linker's LLVM.
pub const NIGHTLY: &str = "nightly-2026-05-20";

/// `rustup run NIGHTLY cargo SUBCOMMAND` for netd-ebpf on the BPF target, in `target_dir`.
/// `bpf_target_arch` is the architecture of the kernel the programs run on (aya-ebpf reads it).
pub fn nightly_cargo(subcommand: &str, bpf_target_arch: &str, target_dir: &Path) -> Command {
    // BTF for the loader, and the debug info BTF's line info is made from.
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{bpf_target_arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
    ]
    .join("\x1f");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", NIGHTLY, "cargo", subcommand, "--package", PACKAGE])
        // build-std: there is no prebuilt core for the BPF target; it needs nightly.
        .args(["--release", "--target", TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // A parent cargo (a build script's, clippy's) points these at its own toolchain's
        // compiler; the nested cargo must pick nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    cmd
}

/// The object `nightly_cargo("build", ..)` produces in `target_dir`.
pub fn object(target_dir: &Path) -> PathBuf {
    target_dir.join(TARGET).join("release").join(PACKAGE)
}
