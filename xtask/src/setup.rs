//! `cargo xtask setup`: installs what is missing on a fresh Debian 12 machine, one line per step.
//! Everything already present costs a `dpkg-query` or a version check, so a second run takes
//! seconds.
//!
//! Two kinds of step: the system's (Debian packages, and Docker 26, Consul and kernels unpacked
//! into target/tools) need root; the user's (rustup's nightly and components, bpf-linker,
//! cargo-nextest, in the user's own rustup and cargo homes) do not. Without root, setup installs
//! the user's part and only checks the system's: a missing package is one line asking for
//! `cargo xtask setup` as root, never an apt run that cannot work.

use std::{process::Command, time::Instant};

use anyhow::{Context as _, bail};

use crate::{
    cmd::{is_root, output, status},
    ebpf_command::NIGHTLY,
};

/// Debian packages that building netd needs (the `lint` and `unit` tiers): LLVM 22 for
/// bpf-linker, protoc for etcd-client's build.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "protobuf-compiler",
];

/// Debian packages the privileged tiers, the demo and the bench run.
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "iperf3",
    // netd steers port 53 of its DNS address with nft in the namespaces it serves (names.rs).
    "nftables",
    // The control plane's store in the labs.
    "etcd-server",
    // The test labs ask etcd's /health before starting daemons.
    "curl",
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

/// What a setup step is for: `cargo xtask setup` prepares them all, `cargo xtask test` the
/// parts its tiers need (`Tier::setup`), so that `cargo xtask test unit` fetches no kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Building and linting netd, netd-ebpf included.
    Build,
    /// Running the privileged tests, the demo and the bench.
    Tests,
    /// Docker 26 next to the system's 20.10.
    Docker,
    /// Consul, the labs' second store.
    Consul,
    /// Debian's kernels for the kernel tier.
    Kernels,
}

pub const EVERYTHING: &[Part] = &[
    Part::Build,
    Part::Tests,
    Part::Docker,
    Part::Consul,
    Part::Kernels,
];

/// A setup step: says what it did (or found), or fails with one line.
type Action = fn() -> anyhow::Result<String>;

struct Step {
    what: &'static str,
    part: Part,
    /// Who may run the step: the system's steps need root, and without it only `check` runs.
    owner: Owner,
}

enum Owner {
    /// In the user's own rustup and cargo homes: no root needed.
    User(Action),
    /// System packages and target/tools: `install` as root, else `check`, which fails with a
    /// line asking for `cargo xtask setup` as root when something is missing.
    System { install: Action, check: Action },
}

const STEPS: &[Step] = &[
    Step {
        what: "Debian packages for building",
        part: Part::Build,
        owner: Owner::System {
            install: || apt(BUILD_PACKAGES),
            check: || apt_check(BUILD_PACKAGES),
        },
    },
    Step {
        what: "Debian packages for the tests",
        part: Part::Tests,
        owner: Owner::System {
            install: || apt(TEST_PACKAGES),
            check: || apt_check(TEST_PACKAGES),
        },
    },
    Step {
        what: "nightly toolchain",
        part: Part::Build,
        owner: Owner::User(nightly),
    },
    Step {
        what: "rustup components",
        part: Part::Build,
        owner: Owner::User(components),
    },
    Step {
        what: "bpf-linker",
        part: Part::Build,
        owner: Owner::User(bpf_linker),
    },
    Step {
        what: "cargo-nextest",
        part: Part::Tests,
        owner: Owner::User(nextest),
    },
    Step {
        what: "Docker 26 (Debian trixie, in target/tools)",
        part: Part::Docker,
        owner: Owner::System {
            install: docker_26,
            check: || check_unpacked(&docker_26_dir()),
        },
    },
    Step {
        what: "Consul 1.8 (Debian bullseye, in target/tools)",
        part: Part::Consul,
        owner: Owner::System {
            install: consul,
            check: || check_unpacked(&consul_dir()),
        },
    },
    Step {
        what: "kernels 5.10, 6.1, 6.12 (Debian bullseye, bookworm, trixie, in target/tools)",
        part: Part::Kernels,
        owner: Owner::System {
            install: crate::kernels::fetch,
            check: || {
                let dirs = crate::kernels::dirs();
                let found: Vec<String> = dirs
                    .iter()
                    .map(|dir| check_unpacked(dir))
                    .collect::<anyhow::Result<_>>()?;
                Ok(found.join("; "))
            },
        },
    },
];

const BPF_LINKER_VERSION: &str = "0.13";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

/// The line a non-root run gives for what only root can install.
pub const AS_ROOT: &str = "run `cargo xtask setup` as root";

fn missing_packages(packages: &[&'static str]) -> Vec<&'static str> {
    packages
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect()
}

fn apt(packages: &[&'static str]) -> anyhow::Result<String> {
    let missing = missing_packages(packages);
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

fn apt_check(packages: &[&'static str]) -> anyhow::Result<String> {
    let missing = missing_packages(packages);
    if !missing.is_empty() {
        bail!("missing {}: {AS_ROOT}", missing.join(" "));
    }
    Ok("all present".into())
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

/// The pinned nightly of netd-ebpf's build ([`ebpf_command::NIGHTLY`]).
fn nightly() -> anyhow::Result<String> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup not found: netd needs rustup with a nightly toolchain")?;
    if !toolchains.lines().any(|l| l.starts_with(NIGHTLY)) {
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
        return Ok(format!("installed {NIGHTLY}"));
    }
    Ok(format!("present ({NIGHTLY})"))
}

/// rustup components per toolchain (`None`: the active one, which builds the host crates):
/// rust-src for netd-ebpf's build-std, clippy and rustfmt for `cargo xtask lint`.
const COMPONENTS: &[(Option<&str>, &[&str])] = &[
    (Some(NIGHTLY), &["rust-src", "clippy"]),
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

/// cargo-nextest runs the privileged tiers (per-test deadlines and times, test groups; see
/// .config/nextest.toml).
fn nextest() -> anyhow::Result<String> {
    if let Some(v) = output(Command::new("cargo").args(["nextest", "--version"])) {
        return Ok(format!(
            "present ({})",
            v.lines().next().unwrap_or_default().trim()
        ));
    }
    eprintln!("      building cargo-nextest (a few minutes)");
    status(Command::new("cargo").args(["install", "--locked", "cargo-nextest"]))?;
    Ok("installed".into())
}

/// Without root: what [`crate::foreign::unpack`] left in `dest`, or the line asking for root.
fn check_unpacked(dest: &std::path::Path) -> anyhow::Result<String> {
    match crate::foreign::unpacked(dest) {
        Some(done) => Ok(format!("present ({done})")),
        None => bail!("{} is missing: {AS_ROOT}", dest.display()),
    }
}

fn docker_26_dir() -> std::path::PathBuf {
    crate::foreign::tools_dir().join("docker-26")
}

fn consul_dir() -> std::path::PathBuf {
    crate::foreign::tools_dir().join("consul")
}

/// Docker 26.1 from Debian trixie, next to the system's 20.10: the Docker tests run on both.
/// trixie's runc needs glibc 2.38, so it is left out: dockerd finds the system's runc.
fn docker_26() -> anyhow::Result<String> {
    crate::foreign::unpack(
        "trixie",
        &["docker.io", "docker-cli", "containerd"],
        &docker_26_dir(),
    )
}

/// Consul 1.8.7 from Debian bullseye (the seed's cluster store): the store tests run on it.
fn consul() -> anyhow::Result<String> {
    crate::foreign::unpack("bullseye", &["consul"], &consul_dir())
}

/// Prepares `parts`: as root, installs what is missing; otherwise installs the user's part and
/// checks the system's.
pub fn run(parts: &[Part]) -> anyhow::Result<()> {
    let root = is_root();
    let steps: Vec<&Step> = STEPS.iter().filter(|s| parts.contains(&s.part)).collect();
    let total = steps.len();
    for (i, step) in steps.into_iter().enumerate() {
        let (n, what) = (i + 1, step.what);
        let started = Instant::now();
        eprintln!("[{n}/{total}] {what} ...");
        let action = match step.owner {
            Owner::User(action) => action,
            Owner::System { install, .. } if root => install,
            Owner::System { check, .. } => check,
        };
        let result = action().with_context(|| format!("setup step {n}/{total} ({what})"))?;
        eprintln!(
            "[{n}/{total}] {what}: {result} ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!("setup complete");
    Ok(())
}
