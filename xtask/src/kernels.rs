//! The kernel tier of `cargo xtask test`: Debian's own 5.10, 6.1 and 6.12 kernels booted under
//! qemu with TCG (KVM does not work here: docs/kernels.md), this machine's root filesystem shared
//! read-only over 9p, each running a part of the test binaries already built for the host: the
//! datapath is tested on the kernels users run, not only on the one CI runs on.
//!
//! `guest/run-guest.sh` boots a kernel and runs one command in it (`guest/init` is the guest's
//! first process); this module fetches the kernels, chooses the tests and reports per kernel.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{
    cmd::{status, workspace_root},
    report::{Tally, count_libtest},
};

/// A Debian kernel, as `linux-image-amd64` of its suite depends on it.
struct Kernel {
    label: &'static str,
    suite: &'static str,
}

const KERNELS: [Kernel; 3] = [
    Kernel {
        label: "5.10",
        suite: "bullseye",
    },
    Kernel {
        label: "6.1",
        suite: "bookworm",
    },
    Kernel {
        label: "6.12",
        suite: "trixie",
    },
];

/// What runs in every guest: test binary, test name filters. Each datapath load costs ~13 s
/// under TCG, so this is the least covering each kernel difference (docs/kernels.md): the probes,
/// local delivery (`pkt_type` after `bpf_redirect_peer`), encap and decap with the flags the
/// kernel takes; daemons with real traffic on one host and across hosts (TC attach method,
/// redirect helpers), a kill -9 + restart (TCX link or netlink filter replaced in place), and
/// the GRO device's path (from-tunnel, `bpf_skb_get_tunnel_key`).
const GUEST_TESTS: [(&str, &[&str]); 3] = [
    (
        "packets",
        &[
            "the_probes_find_the_adjust_room_flags",
            "local_delivery_leaves_the_frame_untouched",
            "encap_builds_rfc7348_outer_headers",
            "decap_delivers_the_inner_frame",
            "macvlan::the_parent_demuxes_by_destination_mac",
        ],
    ),
    (
        "cluster",
        &[
            "containers_on_one_host_reach_each_other",
            "embedded::network_created_on_one_host_is_used_on_another",
            "embedded::kill_9_and_restart_of_a_daemon_loses_no_packet",
            "monitor::netd_monitor_shows_drops_traces_and_lost_events",
        ],
    ),
    // The vxlan device kept for GRO and from-tunnel behind it (veth does GRO only from 5.13,
    // so the aggregates themselves are tested on the host).
    (
        "nic_offloads",
        &["vxlan_that_bypasses_the_uplink_is_checked_before_delivery"],
    ),
];

/// How much longer the waits the tests bound may take under TCG (`netd_tests::patience`): a
/// datapath load alone takes ~13 s in a guest, against ~0.3 s on the host.
const TIME_SCALE: u32 = 10;

/// The modules the tests need; the guest loads them from the kernel's own package.
const GUEST_MODULES: &str = "veth vxlan macvlan sch_ingress cls_bpf";

/// Seconds one guest may take before it counts as failed.
const GUEST_TIMEOUT_SECS: u32 = 540;

fn kernel_dir(kernel: &Kernel) -> PathBuf {
    crate::foreign::tools_dir().join(format!("kernel-{}", kernel.label))
}

/// Where [`fetch`] unpacks the kernels.
pub fn dirs() -> Vec<PathBuf> {
    KERNELS.iter().map(kernel_dir).collect()
}

/// Setup step: the three kernel packages, unpacked with their module index.
pub fn fetch() -> anyhow::Result<String> {
    let mut done = Vec::new();
    for kernel in &KERNELS {
        let dir = kernel_dir(kernel);
        let what = crate::foreign::unpack_dependency(
            kernel.suite,
            "linux-image-amd64",
            "linux-image-",
            &dir,
        )?;
        // trixie's package has merged-/usr paths; kmod looks in <root>/lib/modules.
        if !dir.join("lib").exists() {
            std::os::unix::fs::symlink("usr/lib", dir.join("lib"))?;
        }
        let version = module_version(&dir)?;
        if !dir
            .join("lib/modules")
            .join(&version)
            .join("modules.dep")
            .exists()
        {
            status(
                Command::new("/usr/sbin/depmod")
                    .arg("-b")
                    .arg(&dir)
                    .arg(&version),
            )?;
        }
        done.push(format!("{} {what}", kernel.label));
    }
    Ok(done.join("; "))
}

fn module_version(dir: &Path) -> anyhow::Result<String> {
    fs::read_dir(dir.join("lib/modules"))
        .with_context(|| format!("no modules in {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .with_context(|| format!("no modules in {}", dir.display()))
}

/// The test binaries of [`GUEST_TESTS`] as cargo built them for the host, and the netd binary
/// the daemon tests start (found next to them, so built here too: `-p netd-tests` alone would
/// leave an old one).
fn test_binaries() -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    status(
        Command::new("cargo")
            .args(["build", "--quiet", "-p", "netd", "--bin", "netd"])
            .current_dir(workspace_root()),
    )?;
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "-p", "netd-tests", "--no-run"]);
    for (name, _) in GUEST_TESTS {
        cmd.args(["--test", name]);
    }
    let out = cmd
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "cargo test --no-run for the kernel tier failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // cargo says "Executable tests/packets.rs (/…/deps/packets-0123abcd)" for each.
    let said = String::from_utf8_lossy(&out.stderr);
    GUEST_TESTS
        .iter()
        .map(|(name, _)| {
            said.lines()
                .find_map(|l| {
                    let rest = l.trim().strip_prefix("Executable ")?;
                    let (source, exe) = rest.split_once(" (")?;
                    (source == format!("tests/{name}.rs"))
                        .then(|| PathBuf::from(exe.trim_end_matches(')')))
                })
                .map(|exe| (*name, exe))
                .with_context(|| format!("cargo built no test binary {name}"))
        })
        .collect()
}

/// The guest's command: load the modules, run each binary's tests one at a time, fail if any
/// failed.
fn guest_script(binaries: &[(&str, PathBuf)]) -> String {
    let mut script = format!(
        "modprobe -a {GUEST_MODULES} || exit 1\nexport NETD_TEST_TIME_SCALE={TIME_SCALE}\nrc=0\n"
    );
    for ((_, filters), (_, exe)) in GUEST_TESTS.iter().zip(binaries) {
        script += &format!(
            "{} --test-threads=1 {} || rc=1\n",
            exe.display(),
            filters.join(" ")
        );
    }
    script + "exit $rc\n"
}

struct GuestRun {
    label: &'static str,
    passed: bool,
    seconds: f64,
    tally: Tally,
    log: PathBuf,
}

/// Boots every kernel (all at once: each guest is one TCG thread), runs the tests in each, and
/// counts them over all guests; a guest that failed without a failed test (no boot, a timeout)
/// is a problem of its own.
pub fn run() -> anyhow::Result<Tally> {
    let binaries = test_binaries()?;
    let script = guest_script(&binaries);
    let logs = crate::cmd::target_dir().join("kernel-tier");
    fs::create_dir_all(&logs)?;
    eprintln!(
        "kernel tier: {} under qemu (TCG), logs in {}",
        KERNELS.map(|k| k.label).join(", "),
        logs.display()
    );
    let runs: Vec<GuestRun> = thread::scope(|s| {
        let handles: Vec<_> = KERNELS
            .iter()
            .map(|kernel| {
                let script = &script;
                let log = logs.join(format!("{}.log", kernel.label));
                s.spawn(move || boot_and_test(kernel, script, log))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a guest thread panicked"))
            })
            .collect::<anyhow::Result<_>>()
    })?;
    eprintln!("\n| kernel | result | tests | time |\n|---|---|---|---|");
    for r in &runs {
        eprintln!(
            "| {} | {} | {} passed, {} failed | {:.0} s |",
            r.label,
            if r.passed { "pass" } else { "FAIL" },
            r.tally.passed,
            r.tally.failed,
            r.seconds
        );
    }
    let mut tally = Tally::default();
    for r in &runs {
        tally.passed += r.tally.passed;
        tally.failed += r.tally.failed;
        if r.passed {
            continue;
        }
        eprintln!("\n--- {} ({}) ---", r.label, r.log.display());
        let text = fs::read_to_string(&r.log).unwrap_or_default();
        let tail: Vec<_> = text.lines().rev().take(60).collect();
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
        if r.tally.failed == 0 {
            tally.problems.push(format!(
                "the {} guest failed without a failed test (see {})",
                r.label,
                r.log.display()
            ));
        }
    }
    Ok(tally)
}

fn boot_and_test(kernel: &Kernel, script: &str, log: PathBuf) -> anyhow::Result<GuestRun> {
    let started = Instant::now();
    let file = fs::File::create(&log)?;
    let exit = Command::new(workspace_root().join("xtask/guest/run-guest.sh"))
        .arg(kernel_dir(kernel))
        .args(["bash", "-c", script])
        .current_dir(workspace_root())
        .env("RUN_GUEST_TIMEOUT", GUEST_TIMEOUT_SECS.to_string())
        .env("RUN_GUEST_SMP", "1")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .context("cannot start xtask/guest/run-guest.sh")?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    Ok(GuestRun {
        label: kernel.label,
        passed: exit.success(),
        seconds: started.elapsed().as_secs_f64(),
        tally: count_libtest(&text),
        log,
    })
}
