//! Running commands with a visible command line and a clear error.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs `cmd`, inheriting stdio; fails with the command line when it fails.
pub fn status(cmd: &mut Command) -> anyhow::Result<()> {
    let line = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {line}"))?;
    if !status.success() {
        bail!("{line} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout, or `None` when it cannot run or fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where cargo puts the binaries: `CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// Sets up, builds the release binaries of netd and its test harness, and runs one of them
/// (`netd-demo`, `netd-bench`) with `args`.
pub fn setup_build_and_run(binary: &str, args: &[String]) -> anyhow::Result<()> {
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
        Command::new(target_dir().join("release").join(binary))
            .args(args)
            .current_dir(workspace_root()),
    )
}
