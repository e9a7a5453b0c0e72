//! Builds netd-ebpf for the BPF target (nightly, -Z build-std=core, bpf-linker, BTF) so that a
//! plain `cargo build -p netd` embeds the programs: netd/src/datapath/mod.rs includes
//! `OUT_DIR/netd-ebpf`. `cargo xtask build-ebpf` builds the same object on its own; `cargo xtask
//! setup` installs what this needs.
//!
//! The nested build's output is captured and shown only when it fails. (aya-build, which did
//! this before, forwarded every line of it as a `cargo:warning`: each build printed dozens of
//! warnings that were only progress lines.)

#[path = "../netd-ebpf/cargo_command.rs"]
mod ebpf;

use std::{
    env, fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, bail};

/// What the object is made from: the programs, the map layouts they share with userspace, and
/// the workspace manifest and lock file (the programs' profile and dependency versions).
const INPUTS: &[&str] = &["netd-ebpf", "netd-common", "Cargo.toml", "Cargo.lock"];

fn main() -> ExitCode {
    // Printed here rather than returned: `main`'s `Err` would add a backtrace when
    // RUST_BACKTRACE is set, burying the compiler's errors.
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn build() -> anyhow::Result<()> {
    let manifest_dir = env_path("CARGO_MANIFEST_DIR")?;
    let workspace = manifest_dir
        .parent()
        .context("netd's manifest directory has no parent")?;
    let out_dir = env_path("OUT_DIR")?;
    // Cargo's target arch here is the one netd is built for: the kernel that loads the programs.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;

    // Listing inputs replaces cargo's default (rerun on any change in netd/), which would miss
    // netd-ebpf's sources and rebuild the programs for every change to netd's.
    for input in INPUTS {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    // The final link and BTF emission are bpf-linker's: a new one may produce another object.
    if let Some(linker) = find_in_path("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }

    // A target dir of its own: the outer cargo holds the lock on the workspace's.
    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = ebpf::nightly_cargo("build", &arch, &target_dir);
    cmd.current_dir(workspace);
    let output = cmd.output().with_context(|| {
        format!("cannot start {cmd:?}; `cargo xtask setup` installs rustup's nightly toolchain")
    })?;
    if !output.status.success() {
        // Cargo prints a failed build script's stderr: the compiler's errors, then this error.
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(&output.stdout)?;
        stderr.write_all(&output.stderr)?;
        bail!(
            "building netd-ebpf failed ({}), see its output above; `cargo xtask setup` installs \
             nightly rust-src and bpf-linker",
            output.status
        );
    }

    let object = ebpf::object(&target_dir);
    let embedded = out_dir.join("netd-ebpf");
    fs::copy(&object, &embedded)
        .with_context(|| format!("cannot copy {} to {}", object.display(), embedded.display()))?;
    Ok(())
}

fn env_path(name: &str) -> anyhow::Result<PathBuf> {
    env::var_os(name)
        .map(PathBuf::from)
        .with_context(|| format!("{name} not set"))
}

/// `program`'s path in PATH, like `which`.
fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| Path::is_file(candidate))
}
