//! The datapaths under test. Adding one (Docker's overlay, macvlan) is one [`BenchPath`] impl and
//! one line in [`registry`]: build the topology, return where the client and server run.

use std::{any::Any, net::Ipv4Addr, path::PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};

use crate::{
    lab::{CONTAINER_IPS, Gro, KernelLab, TwoHostLab},
    netns::Netns,
};

use super::process;

pub const NATIVE: &str = "native";
pub const NATIVE_XDP_PASS: &str = "native+xdp-pass";
pub const KERNEL_VXLAN: &str = "kernel-vxlan";
pub const NETD_OVERLAY: &str = "netd-overlay";
pub const NETD_TC_DECAP: &str = "netd-tc-decap";
pub const DOCKER_OVERLAY: &str = "docker-overlay";

/// A datapath under test.
pub trait BenchPath {
    /// Short name for the table, JSON and chart (e.g. `kernel-vxlan`).
    fn name(&self) -> &'static str;
    /// One line: what carries the packets.
    fn describe(&self) -> &'static str;
    /// Builds the topology. `tag` (2-3 characters) prefixes whatever it names; everything it made
    /// must go away when the returned [`Built`] drops.
    fn build(&self, tag: &str) -> anyhow::Result<Built>;
}

/// Where traffic runs: the client's and server's network namespaces (any namespace file, e.g.
/// `/run/netns/NAME` or `/proc/PID/ns/net`) and the server's address as the client reaches it.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub client: PathBuf,
    pub server: PathBuf,
    pub server_addr: Ipv4Addr,
}

impl Endpoints {
    /// From container 0 (client) to container 1 (server) of a two-host lab.
    pub fn between(client: &Netns, server: &Netns) -> Self {
        Self {
            client: client.path(),
            server: server.path(),
            server_addr: CONTAINER_IPS[1],
        }
    }
}

/// A built path: its endpoints, and whatever owns the topology (dropping it tears it down).
pub struct Built {
    pub endpoints: Endpoints,
    _owner: Box<dyn Any>,
}

impl Built {
    pub fn new(endpoints: Endpoints, owner: impl Any) -> Self {
        Self {
            endpoints,
            _owner: Box::new(owner),
        }
    }

    /// The client pings the server (a few tries: ARP and neighbour resolution on the way).
    pub fn check_reachable(&self) -> anyhow::Result<()> {
        let addr = self.endpoints.server_addr.to_string();
        let args = ["-c", "1", "-W", "1", addr.as_str()];
        let mut last = None;
        for _ in 0..5 {
            match process::run(
                &self.endpoints.client,
                "ping",
                &args,
                std::time::Duration::from_secs(3),
            ) {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no reply"))
            .context(format!("client cannot ping {addr}")))
    }
}

/// Every path, in table order. Paths not written yet stay as [`NotYet`] rows.
pub fn registry() -> Vec<Box<dyn BenchPath>> {
    vec![
        Box::new(Native),
        Box::new(NativeXdpPass),
        Box::new(KernelVxlan),
        Box::new(NetdOverlay(Gro::Device)),
        Box::new(NetdOverlay(Gro::NoDevice)),
        Box::new(super::docker_overlay::DockerOverlay),
        Box::new(super::macvlan::MacvlanPath::KERNEL),
        Box::new(super::macvlan::MacvlanPath::NETD),
    ]
}

/// Routed, no encapsulation: the limit of this machine.
pub struct Native;

impl BenchPath for Native {
    fn name(&self) -> &'static str {
        NATIVE
    }
    fn describe(&self) -> &'static str {
        "routed through both hosts, proxy ARP on the host veth, no encapsulation"
    }
    fn build(&self, tag: &str) -> anyhow::Result<Built> {
        let lab = KernelLab::routed(tag)?;
        Ok(Built::new(
            Endpoints::between(&lab.containers[0], &lab.containers[1]),
            lab,
        ))
    }
}

/// `native` with a pass-only XDP program on the receiving host's underlay veth: what XDP costs on
/// a veth before a program does any work, which decides whether an XDP decap (where netd's TC
/// decap runs) or an XDP macvlan demux can be faster here.
pub struct NativeXdpPass;

impl BenchPath for NativeXdpPass {
    fn name(&self) -> &'static str {
        NATIVE_XDP_PASS
    }
    fn describe(&self) -> &'static str {
        "native, plus an XDP program that only passes, in driver mode on the receiving host's underlay veth"
    }
    fn build(&self, tag: &str) -> anyhow::Result<Built> {
        let lab = KernelLab::routed(tag)?;
        let xdp = XdpPass::attach(&lab.hosts[1], "ul")?;
        Ok(Built::new(
            Endpoints::between(&lab.containers[0], &lab.containers[1]),
            // The program goes first (a bpf_link: closing it detaches), then the namespaces.
            (xdp, lab),
        ))
    }
}

/// `netd_xdp_null` attached through a bpf_link, detached when this drops.
struct XdpPass {
    _ebpf: Ebpf,
}

impl XdpPass {
    const PROGRAM: &str = "netd_xdp_null";

    fn attach(netns: &Netns, ifname: &str) -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(netd::datapath::object()).context("cannot load netd's object")?;
        let program: &mut Xdp = ebpf
            .program_mut(Self::PROGRAM)
            .with_context(|| format!("no {} in the object", Self::PROGRAM))?
            .try_into()?;
        program.load().context("cannot load the XDP null program")?;
        let _inside = netd::netns::enter(&netns.path())?;
        // Driver mode: veth's own XDP support, not the generic hook that every device has.
        program
            .attach(ifname, XdpMode::Driver)
            .with_context(|| format!("cannot attach XDP to {ifname} in {}", netns.name))?;
        Ok(Self { _ebpf: ebpf })
    }
}

/// The datapath Docker's overlay builds.
pub struct KernelVxlan;

impl BenchPath for KernelVxlan {
    fn name(&self) -> &'static str {
        KERNEL_VXLAN
    }
    fn describe(&self) -> &'static str {
        "Linux bridge + kernel vxlan device, static FDB/neighbour entries (Docker overlay's datapath)"
    }
    fn build(&self, tag: &str) -> anyhow::Result<Built> {
        let lab = KernelLab::kernel_vxlan(tag)?;
        Ok(Built::new(
            Endpoints::between(&lab.containers[0], &lab.containers[1]),
            lab,
        ))
    }
}

/// netd's TC programs: encap on the container veth, decap on the uplink; with the vxlan device
/// for GRO (as `netd daemon` runs) or without it (`--no-gro-device`).
pub struct NetdOverlay(pub Gro);

impl BenchPath for NetdOverlay {
    fn name(&self) -> &'static str {
        match self.0 {
            Gro::Device => NETD_OVERLAY,
            Gro::NoDevice => NETD_TC_DECAP,
        }
    }
    fn describe(&self) -> &'static str {
        match self.0 {
            Gro::Device => {
                "netd's TC programs: encap at the container veth, decap at the uplink (GRO aggregates: by a flow-based vxlan device), no bridge"
            }
            Gro::NoDevice => {
                "netd daemon --no-gro-device: every packet decapsulated in TC, no vxlan device"
            }
        }
    }
    fn build(&self, tag: &str) -> anyhow::Result<Built> {
        let lab = TwoHostLab::with_gro(tag, self.0)?;
        let endpoints = Endpoints::between(&lab.hosts[0].container, &lab.hosts[1].container);
        Ok(Built::new(endpoints, lab))
    }
}

/// A path the benchmark is meant to compare that nobody has written yet: a "skipped" row.
pub struct NotYet(pub &'static str);

impl BenchPath for NotYet {
    fn name(&self) -> &'static str {
        self.0
    }
    fn describe(&self) -> &'static str {
        "not implemented yet"
    }
    fn build(&self, _tag: &str) -> anyhow::Result<Built> {
        anyhow::bail!("not implemented yet")
    }
}
