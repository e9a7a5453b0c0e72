//! The privileged tiers' runner: `cargo nextest run` of some netd-tests binaries with the tier's
//! profile of .config/nextest.toml (per-test deadlines, which tests run alone, a JUnit report),
//! counted from that report.

use std::{fs, process::Command};

use anyhow::Context as _;

use crate::{
    cmd::{status, target_dir, workspace_root},
    report::{Tally, count_junit},
};

/// Runs `binaries` of netd-tests (and its library's unit tests when `lib`) with nextest profile
/// `profile`; `args` are test filters (and libtest-style options) as `cargo test -- ARGS` takes
/// them.
pub fn run(profile: &str, binaries: &[&str], lib: bool, args: &[String]) -> anyhow::Result<Tally> {
    // The tests start the netd binary found next to them: build it, or they would find an old
    // one (nextest builds only the test binaries).
    status(
        Command::new("cargo")
            .args(["build", "--quiet", "--package", "netd", "--bin", "netd"])
            .current_dir(workspace_root()),
    )?;
    let report = target_dir().join("nextest").join(profile).join("junit.xml");
    // A report left by an earlier run must not count for this one.
    let _ = fs::remove_file(&report);
    let mut cmd = Command::new("cargo");
    cmd.args([
        "nextest",
        "run",
        "--package",
        "netd-tests",
        "--profile",
        profile,
    ]);
    if lib {
        cmd.arg("--lib");
    }
    for binary in binaries {
        cmd.args(["--test", binary]);
    }
    if !args.is_empty() {
        // A filter given to every tier may choose nothing in this one: that is no failure.
        cmd.arg("--no-tests=warn").arg("--").args(args);
    }
    let line = format!("{cmd:?}");
    let exit = cmd
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot start {line}"))?;
    let Ok(xml) = fs::read_to_string(&report) else {
        // No report: nextest stopped before running tests (a build error, a bad filter).
        return Ok(Tally::broken(format!("nextest ran no tests ({exit})")));
    };
    let mut tally = count_junit(&xml)
        .with_context(|| format!("cannot read the counts in {}", report.display()))?;
    if !exit.success() && tally.failed == 0 {
        tally.problems.push(format!("nextest failed ({exit})"));
    }
    Ok(tally)
}
