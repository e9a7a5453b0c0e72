//! Port 53 of the DNS address, steered to netd's listener in a served namespace.
//!
//! A container's own DNS server binds 0.0.0.0:53, and Linux refuses that while any socket of
//! the namespace holds port 53 on one of its addresses (with or without SO_REUSEADDR on both,
//! for TCP; for UDP only when both set it: measured, see docs/networks.md). So netd's sockets
//! take ports the kernel picks, and a DNAT rule in the namespace's own nftables sends what
//! the namespace sends to 169.254.53.53:53 there, as Docker does for 127.0.0.11 with
//! iptables. The rule lives in the container's namespace only (table `ip netd_dns`, output
//! hook: only what the namespace itself sends), not in the host's ruleset; conntrack turns the
//! answers' source port back into 53. The kernel's own cgroup socket hooks could do it
//! without conntrack, but they act on every namespace of the machine, and TC cannot rewrite a
//! port without a program or `act_pedit` (absent from some kernels, this one's included).
//!
//! The rule is written with `nft` (Debian installs nftables by default); without it, netd
//! takes port 53 itself as before, and says so once.

use std::{
    io::Write as _,
    net::Ipv4Addr,
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, bail};

/// The table netd owns in each served namespace.
const TABLE: &str = "netd_dns";

/// The ports netd's sockets were given.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub udp: u16,
    pub tcp: u16,
}

/// Steers `address`:53 to `ports` in this thread's namespace, replacing an earlier run's rule
/// (in one transaction: no moment without a rule).
pub fn install(address: Ipv4Addr, ports: Ports) -> anyhow::Result<()> {
    let Ports { udp, tcp } = ports;
    let script = format!(
        "add table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
           chain output {{\n\
             type nat hook output priority -100; policy accept;\n\
             ip daddr {address} udp dport 53 dnat to {address}:{udp}\n\
             ip daddr {address} tcp dport 53 dnat to {address}:{tcp}\n\
           }}\n\
         }}\n"
    );
    nft(&script)
}

/// Removes the rule from this thread's namespace, if it is there.
pub fn remove() -> anyhow::Result<()> {
    nft(&format!("add table ip {TABLE}\ndelete table ip {TABLE}\n"))
}

/// Whether `nft` was found missing once already (said once, not per namespace).
static MISSING: AtomicBool = AtomicBool::new(false);

/// Says once that port 53 is taken for want of `nft`.
pub fn warn_missing(error: &anyhow::Error) {
    if !MISSING.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            error = %format!("{error:#}"),
            "DNS: cannot steer port 53 (install nftables): netd takes port 53 itself in the \
             namespaces it serves, and a container's own DNS server cannot bind it"
        );
    }
}

/// Runs `nft -f -` with `script`; the child is forked from this thread, so it acts in this
/// thread's namespace.
fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .context("cannot write to nft")?;
    }
    let output = child.wait_with_output().context("cannot run nft")?;
    if !output.status.success() {
        bail!(
            "nft failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
