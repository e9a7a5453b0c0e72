//! `cargo xtask setup`: installs what is missing on a fresh Debian 12 machine, one line per step.
//! Everything already present costs a `dpkg-query` or a version check, so a second run takes
//! seconds.

use std::{process::Command, time::Instant};

use anyhow::{Context as _, bail};

use crate::run::{output, status};

/// Debian packages: LLVM 22 for bpf-linker, the tools the tests and the demo run, etcd for the
/// control plane, protoc for etcd-client's build, Docker for the plugin tests.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "iproute2",
    "iputils-ping",
    "iperf3",
    "etcd-server",
    // The test labs ask etcd's /health before starting daemons.
    "curl",
    "protobuf-compiler",
    // The Docker integration tests run Debian's engine (20.10) in network namespaces, with an
    // image made from busybox-static.
    "docker.io",
    "busybox-static",
    // The kernel tier (kernels.rs): qemu boots Debian's kernels, kmod indexes and loads their
    // modules, cpio/xz/zstd build the guest's initramfs and unpack its kernel image.
    "qemu-system-x86",
    "kmod",
    "cpio",
    "xz-utils",
    "zstd",
    // Latency in `cargo xtask bench`.
    "sockperf",
    // The macvlan tests check VLAN tags on the wire.
    "tcpdump",
    // `cargo xtask bench --nic-like` turns the underlay veth's offloads off like a NIC's.
    "ethtool",
    // `promtool check metrics` checks what `netd daemon --metrics-address` serves. The package
    // brings a Prometheus server too, stopped after the install (see `apt`).
    "prometheus",
];
/// Services the packages above start on install that nothing here uses.
const UNWANTED_SERVICES: &[&str] = &["prometheus", "prometheus-node-exporter"];
/// A setup step: checks, installs if needed, and says what it did.
type Step = fn() -> anyhow::Result<String>;

const BPF_LINKER_VERSION: &str = "0.13";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

fn step(
    n: usize,
    total: usize,
    what: &str,
    f: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("[{n}/{total}] {what} ...");
    let result = f().with_context(|| format!("setup step {n}/{total} ({what}) failed"))?;
    eprintln!(
        "[{n}/{total}] {what}: {result} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn missing_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect()
}

fn apt() -> anyhow::Result<String> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok("all present".into());
    }
    eprintln!("      installing {}", missing.join(" "));
    status(Command::new("apt-get").args(["update", "-qq"]))?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    stop_unwanted_services();
    Ok(format!("installed {}", missing.join(" ")))
}

/// Where systemd runs, the services a package started on install are stopped and kept from
/// starting at boot: a Prometheus server listening on :9090 would only be in the way (elsewhere,
/// as in containers, policy-rc.d keeps them from starting at all).
fn stop_unwanted_services() {
    if !std::path::Path::new("/run/systemd/system").exists() {
        return;
    }
    for service in UNWANTED_SERVICES {
        // Not installed (no such unit) is fine.
        let _ = Command::new("systemctl")
            .args(["disable", "--now", "--quiet", service])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn nightly() -> anyhow::Result<String> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup not found: netd needs rustup with a nightly toolchain")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
        return Ok("installed nightly".into());
    }
    Ok("present".into())
}

/// rustup components per toolchain (`None`: the active one, which builds the host crates):
/// rust-src for netd-ebpf's build-std, clippy and rustfmt for `cargo xtask lint`.
const COMPONENTS: &[(Option<&str>, &[&str])] = &[
    (Some("nightly"), &["rust-src", "clippy"]),
    (None, &["clippy", "rustfmt"]),
];

fn components() -> anyhow::Result<String> {
    let mut added = Vec::new();
    for &(toolchain, wanted) in COMPONENTS {
        let toolchain_args = toolchain.map(|t| ["--toolchain", t]);
        let installed = output(
            Command::new("rustup")
                .args(["component", "list", "--installed"])
                .args(toolchain_args.iter().flatten()),
        )
        .unwrap_or_default();
        // Listed with the host triple appended (`clippy-x86_64-...`), except rust-src.
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|c| !installed.lines().any(|l| l.starts_with(c)))
            .collect();
        if missing.is_empty() {
            continue;
        }
        status(
            Command::new("rustup")
                .args(["component", "add"])
                .args(&missing)
                .args(toolchain_args.iter().flatten()),
        )?;
        let on = toolchain.unwrap_or("the active toolchain");
        added.push(format!("{} on {on}", missing.join(" ")));
    }
    if added.is_empty() {
        return Ok("present".into());
    }
    Ok(format!("installed {}", added.join(", ")))
}

fn bpf_linker() -> anyhow::Result<String> {
    if let Some(v) = output(Command::new("bpf-linker").arg("--version"))
        && v.contains(&format!("bpf-linker {BPF_LINKER_VERSION}"))
    {
        return Ok(format!("present ({})", v.trim()));
    }
    eprintln!("      building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes)");
    let path = format!("{LLVM_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    status(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                &format!("^{BPF_LINKER_VERSION}"),
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("PATH", path),
    )?;
    Ok("installed".into())
}

fn root() -> anyhow::Result<String> {
    let uid = output(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        bail!(
            "netd's setup, tests and demo need root (they install packages, load eBPF and create namespaces)"
        );
    }
    Ok("running as root".into())
}

/// Docker 26.1 from Debian trixie, next to the system's 20.10: the Docker tests run on both.
/// trixie's runc needs glibc 2.38, so it is left out: dockerd finds the system's runc.
fn docker_26() -> anyhow::Result<String> {
    let dest = crate::foreign::tools_dir().join("docker-26");
    crate::foreign::unpack("trixie", &["docker.io", "docker-cli", "containerd"], &dest)
}

/// Consul 1.8.7 from Debian bullseye (the seed's cluster store): the store tests run on it.
fn consul() -> anyhow::Result<String> {
    let dest = crate::foreign::tools_dir().join("consul");
    crate::foreign::unpack("bullseye", &["consul"], &dest)
}

pub fn run() -> anyhow::Result<()> {
    let steps: [(&str, Step); 8] = [
        ("root", root),
        ("Debian packages", apt),
        ("nightly toolchain", nightly),
        ("rustup components", components),
        ("bpf-linker", bpf_linker),
        ("Docker 26 (Debian trixie, in target/tools)", docker_26),
        ("Consul 1.8 (Debian bullseye, in target/tools)", consul),
        (
            "kernels 5.10, 6.1, 6.12 (Debian bullseye, bookworm, trixie, in target/tools)",
            crate::kernels::fetch,
        ),
    ];
    let total = steps.len();
    for (i, (what, f)) in steps.into_iter().enumerate() {
        step(i + 1, total, what, f)?;
    }
    eprintln!("setup complete");
    Ok(())
}
