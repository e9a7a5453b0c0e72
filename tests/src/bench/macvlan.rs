//! The macvlan paths (netd's macvlan networks): the kernel's own macvlan device and netd's
//! macvlan-style datapath, on one topology so the comparison is fair.
//!
//! ```text
//!  container c1 (eth0 10.10.10.11/24)          container c2 (eth0 10.10.10.12/24)
//!   kernel-macvlan: eth0 is a macvlan of ul     (same on host h2)
//!   netd-macvlan:   eth0 is a veth (ep0 on h1),  from-endpoint on ep0, from-parent and
//!                   to-parent on ul
//!  host h1: parent ul ========= veth "LAN" ========= parent ul: host h2
//! ```
//!
//! The parents are the two ends of one veth pair, as in the recipe that measured Docker's own
//! macvlan here (docs/docker.md#macvlan-across-two-namespaces), bridge mode on both paths. netd is
//! programmed without a daemon or a store: the maps are planned from the records of one
//! bridge-mode network with an endpoint per host, as its daemon plans them
//! ([`netd::control::snapshot`]), and the hooks are those its daemon attaches.

use std::{net::Ipv4Addr, path::PathBuf};

use netd::{
    control::{plan::ParentPort, snapshot::Snapshot},
    datapath::{Datapath, DatapathOptions, Hook, MapState},
};

use super::path::{BenchPath, Built, Endpoints};
use crate::{
    lab::{self, CONTAINER_MACS, UNDERLAY_MTU, VTEPS},
    netns::Netns,
    records,
};

pub const KERNEL_MACVLAN: &str = "kernel-macvlan";
pub const NETD_MACVLAN: &str = "netd-macvlan";

/// Container `i`'s address on the LAN; the server is container 1.
pub const LAN_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 10, 10, 11), Ipv4Addr::new(10, 10, 10, 12)];
const LAN_PREFIX: u8 = 24;
/// The parent on each host: its end of the LAN.
const PARENT: &str = "ul";
/// netd's number for the network (what the daemon stores as the network's VNI).
const NETWORK: u32 = 300;

/// Builds a container's `eth0` on its host's parent: a macvlan device, or a veth and netd.
type Plumb = fn(usize, &Netns, &Netns) -> anyhow::Result<Option<NetdHost>>;

/// One of the two macvlan paths: the same LAN topology, the containers plumbed differently.
pub struct MacvlanPath {
    name: &'static str,
    describe: &'static str,
    plumb: Plumb,
}

impl MacvlanPath {
    /// The kernel's macvlan device, bridge mode.
    pub const KERNEL: Self = Self {
        name: KERNEL_MACVLAN,
        describe: "kernel macvlan device (bridge mode) on each host's end of a veth LAN (Docker macvlan's datapath)",
        plumb: kernel_macvlan,
    };

    /// netd's macvlan-style datapath, bridge mode.
    pub const NETD: Self = Self {
        name: NETD_MACVLAN,
        describe: "netd's TC programs: container veth to the parent, demux by MAC at the parent's ingress",
        plumb: netd_macvlan,
    };
}

impl BenchPath for MacvlanPath {
    fn name(&self) -> &'static str {
        self.name
    }
    fn describe(&self) -> &'static str {
        self.describe
    }
    fn build(&self, tag: &str) -> anyhow::Result<Built> {
        let lab = MacvlanLab::build(tag, self.plumb)?;
        Ok(Built::new(lab.endpoints(), lab))
    }
}

/// Two hosts whose parents `ul` are the ends of one veth pair (the LAN), a container namespace on
/// each with its `eth0` on the LAN.
struct MacvlanLab {
    // Dropped first: unpinning detaches netd's programs before the namespaces go.
    netd: Vec<NetdHost>,
    containers: [Netns; 2],
    hosts: [Netns; 2],
}

impl MacvlanLab {
    /// `plumb(i, host, container)` gives container `i` its `eth0` on host `i`'s parent.
    fn build(tag: &str, plumb: Plumb) -> anyhow::Result<Self> {
        let hosts = lab::underlay(tag)?;
        let containers = [
            Netns::new(&format!("{tag}c"))?,
            Netns::new(&format!("{tag}c"))?,
        ];
        // Built first, so a failing step below still removes everything made so far.
        let mut lab = Self {
            netd: Vec::new(),
            containers,
            hosts,
        };
        for i in 0..2 {
            let netd = plumb(i, &lab.hosts[i], &lab.containers[i])?;
            lab.netd.extend(netd);
            let eth0 = &lab.containers[i];
            eth0.ip(&[
                "link",
                "set",
                "eth0",
                "address",
                &crate::pkt::fmt_mac(&CONTAINER_MACS[i]),
                "mtu",
                &UNDERLAY_MTU.to_string(),
                "up",
            ])?;
            eth0.ip(&[
                "addr",
                "add",
                &format!("{}/{LAN_PREFIX}", LAN_IPS[i]),
                "dev",
                "eth0",
            ])?;
        }
        Ok(lab)
    }

    fn endpoints(&self) -> Endpoints {
        Endpoints {
            client: self.containers[0].path(),
            server: self.containers[1].path(),
            server_addr: LAN_IPS[1],
        }
    }
}

/// `ip link add link ul type macvlan mode bridge`, moved into the container as `eth0`.
fn kernel_macvlan(_: usize, host: &Netns, container: &Netns) -> anyhow::Result<Option<NetdHost>> {
    host.ip(&[
        "link", "add", "mv0", "link", PARENT, "type", "macvlan", "mode", "bridge",
    ])?;
    host.ip(&["link", "set", "mv0", "netns", &container.name])?;
    container.ip(&["link", "set", "mv0", "name", "eth0"])?;
    Ok(None)
}

/// netd's datapath on host `i`, pinned under its own directory.
struct NetdHost {
    datapath: Datapath,
    // After `datapath`: the maps and links go with the directory once nothing holds them.
    _pins: PinDir,
}

/// A pin directory removed on drop: unpinning the links detaches the programs, and the maps go
/// with their last reference.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.0) {
            Ok(()) => {}
            // Loading failed before anything was pinned.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("cleanup: cannot remove {}: {e}", self.0.display()),
        }
    }
}

/// A veth `ep0` (host) / `eth0` (container), and netd's datapath on host `i` as its daemon would
/// program it for one bridge-mode endpoint on parent `ul`: the endpoint, its MAC in the FDB, the
/// parent's port list; from-endpoint on `ep0`, both parent hooks on `ul`, `ul` promiscuous.
fn netd_macvlan(i: usize, host: &Netns, container: &Netns) -> anyhow::Result<Option<NetdHost>> {
    crate::ip(&[
        "link",
        "add",
        "ep0",
        "netns",
        &host.name,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &container.name,
    ])?;
    host.ip(&["link", "set", "ep0", "up"])?;
    host.ip(&["link", "set", PARENT, "promisc", "on"])?;

    let pins = PinDir(PathBuf::from(netd::bpffs::BPFFS_ROOT).join(format!("netd-{}", host.name)));
    let mut datapath = Datapath::load(DatapathOptions {
        pin_dir: Some(pins.0.clone()),
        ..Default::default()
    })?;
    let parent = host.ifindex(PARENT)?;
    let endpoint = host.ifindex("ep0")?;
    // What a daemon started with `--uplink ul --advertise VTEPS[i]` writes; a macvlan network uses
    // only the delivery flags (bpf_redirect_peer), nothing is encapsulated.
    datapath.set_config(&lab::host_config(&datapath, VTEPS[i], parent))?;
    datapath.apply(
        &MapState::default(),
        &bridge_mode_records(i, parent, host.mac(PARENT)?, endpoint).plan()?,
    )?;
    let mut netd = NetdHost {
        datapath,
        _pins: pins,
    };
    {
        let _in_host = netd::netns::enter(&host.path())?;
        netd.datapath.attach(Hook::Endpoint, "ep0")?;
        // As the daemon does: the egress hook only serves host access, off here.
        netd.datapath.attach(Hook::Parent, PARENT)?;
    }
    Ok(Some(netd))
}

/// The store of a bridge-mode network on `ul` with one endpoint per host, as host `i` sees it
/// (its own endpoint behind `ep0`).
fn bridge_mode_records(i: usize, parent: u32, parent_mac: [u8; 6], endpoint: u32) -> Snapshot {
    let host_name = |h: usize| format!("mv-h{h}");
    let mut snapshot = Snapshot::new(&host_name(i), records::host(VTEPS[i], "bench"));
    // LAN_IPS' subnet.
    let network = records::macvlan_network("mv", NETWORK, "10.10.10.0/24", PARENT, "bridge");
    snapshot.network(&network).parent(
        "mv",
        ParentPort {
            name: PARENT.into(),
            ifindex: parent,
            vlan: 0,
            mac: parent_mac,
            host_access: false,
        },
    );
    for h in 0..2 {
        let id = format!("c{h}");
        snapshot
            .host(&host_name(h), &records::host(VTEPS[h], "bench"))
            .endpoint(
                "mv",
                &records::endpoint(&id, LAN_IPS[h], CONTAINER_MACS[h], &host_name(h), VTEPS[h]),
            );
    }
    snapshot.interface("mv", &format!("c{i}"), "ep0", endpoint);
    snapshot
}
