//! Test fixtures for netd: network namespaces that clean up after themselves, a two-host lab,
//! packet builders and a `BPF_PROG_TEST_RUN` wrapper.
//!
//! Everything a fixture creates carries a per-run prefix (`nt<pid>x<n>`), so parallel runs never
//! collide, and is removed on drop, also when a test fails.

#![allow(
    clippy::expect_used,
    reason = "test fixtures: a failed expectation is a failed test"
)]

pub mod access;
pub mod bench;
pub mod bulk;
pub mod cluster;
pub mod dns;
pub mod dns_flood;
pub mod docker;
pub mod lab;
pub mod netns;
pub mod pki;
pub mod pkt;
pub mod records;
pub mod stores;
pub mod testrun;
pub mod wait;

pub use wait::{wait_until, wait_until_async};

/// Fails the calling test at once, on one line, unless this process is root: the privileged
/// tests load eBPF programs and create namespaces. Called where they start (the namespace and
/// datapath fixtures), so that a test run without root fails rather than passing unrun.
/// (`cargo xtask test` refuses its privileged tiers without root before building anything;
/// this is for a test binary started by hand.)
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    assert!(
        uid == 0,
        "netd-tests: this test needs root (it loads eBPF programs and creates namespaces); running as uid {uid}"
    );
}

/// `bound` stretched by `NETD_TEST_TIME_SCALE` (the kernel tier sets it in its guests): for
/// the tests that assert a wait is short ("shows up within a second").
pub fn patience(bound: std::time::Duration) -> std::time::Duration {
    static SCALE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let scale = *SCALE.get_or_init(|| {
        std::env::var("NETD_TEST_TIME_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
    });
    bound * scale
}

/// Runs a command, failing with its command line and stderr.
pub fn sh(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` is an executable file in one of the `PATH` directories.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `ip ARGS...`
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    sh("ip", args)
}

/// A name unique to this process and call: `<tag><pid>x<n>`, short enough for an interface name
/// when `tag` has at most 4 characters.
pub fn unique_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{}x{n}", std::process::id() % 100_000)
}

/// The `netd` binary of this build: next to this executable (a binary in `target/<profile>/`) or
/// one level up (a test in `target/<profile>/deps/`). `cargo test` builds it because the netd
/// package has integration tests of its own.
pub fn netd_bin() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("netd"))
        .find(|bin| bin.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no netd binary near {} (cargo build -p netd)",
                exe.display()
            )
        })
}
