//! Two simulated hosts joined by a veth underlay, one container on each, the netd datapath
//! loaded, pinned and attached on both: the topology of the namespace tests and of the demo.
//! [`KernelLab`] builds the same hosts and containers with only the kernel's own datapaths (routed,
//! or bridge + vxlan as Docker's overlay): the benchmark's references.
//!
//! ```text
//!  container c1 (eth0 172.31.0.11)            container c2 (eth0 172.31.0.12)
//!        | veth (ep0)                                 | veth (ep0)
//!  host h1: from-endpoint on ep0              host h2: from-endpoint on ep0
//!           from-uplink on ul                          from-uplink on ul
//!  ul 10.201.0.1/24 ====== veth underlay ====== ul 10.201.0.2/24
//! ```

use std::{net::Ipv4Addr, path::PathBuf};

use netd::{
    control::snapshot::Snapshot,
    datapath::{Datapath, DatapathOptions, Hook, MapState},
};
use netd_common::{VXLAN_OVERHEAD, VXLAN_PORT_DEFAULT, maps::DatapathConfig};

use crate::{ip, netns::Netns, records};

pub const VNI: u32 = 256;
pub const UNDERLAY_MTU: u16 = 1500;

/// One simulated host with its container.
pub struct Host {
    pub datapath: Datapath,
    pub pin_dir: PathBuf,
    pub vtep: Ipv4Addr,
    pub container_ip: Ipv4Addr,
    pub container_mac: [u8; 6],
    pub container: Netns,
    pub ns: Netns,
}

pub struct TwoHostLab {
    pub hosts: [Host; 2],
}

pub(crate) fn host_config(dp: &Datapath, vtep: Ipv4Addr, uplink_ifindex: u32) -> DatapathConfig {
    DatapathConfig {
        local_vtep: vtep.octets(),
        uplink_ifindex,
        vxlan_port: VXLAN_PORT_DEFAULT,
        underlay_mtu: UNDERLAY_MTU,
        flags: dp.config_flags(),
    }
}

/// The addresses of host `i` (0 or 1) and its container.
pub const VTEPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 201, 0, 1), Ipv4Addr::new(10, 201, 0, 2)];
pub const CONTAINER_IPS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(172, 31, 0, 11), Ipv4Addr::new(172, 31, 0, 12)];
pub const CONTAINER_MACS: [[u8; 6]; 2] = [
    [0x02, 0x42, 0xac, 0x1f, 0, 11],
    [0x02, 0x42, 0xac, 0x1f, 0, 12],
];

/// The offloads that make the underlay veth `ul` behave like a NIC: segmentation in software
/// before the wire, and GRO on receive (as a NIC driver does), so MTU-sized packets cross it.
pub const NIC_LIKE_ETHTOOL: [&str; 8] = ["-K", "ul", "tso", "off", "gso", "off", "gro", "on"];

/// Makes host `host`'s underlay NIC-like ([`NIC_LIKE_ETHTOOL`]).
pub fn make_nic_like(host: &Netns) -> anyhow::Result<()> {
    host.exec("ethtool", &NIC_LIKE_ETHTOOL).map(drop)
}

/// Two host namespaces `<tag>h...` joined by the veth underlay `ul`, host `i` at `VTEPS[i]/24`.
pub fn underlay(tag: &str) -> anyhow::Result<[Netns; 2]> {
    let h = [
        Netns::new(&format!("{tag}h"))?,
        Netns::new(&format!("{tag}h"))?,
    ];
    ip(&[
        "link", "add", "ul", "netns", &h[0].name, "type", "veth", "peer", "name", "ul", "netns",
        &h[1].name,
    ])?;
    for (host, vtep) in h.iter().zip(VTEPS) {
        host.ip(&["addr", "add", &format!("{vtep}/24"), "dev", "ul"])?;
        host.ip(&["link", "set", "ul", "up"])?;
    }
    Ok(h)
}

/// The [`underlay`], and a container namespace on each host with `eth0` (its MAC, address and
/// inner MTU set) whose host-side end is `ep0`.
fn topology(tag: &str) -> anyhow::Result<([Netns; 2], [Netns; 2])> {
    let h = underlay(tag)?;
    let c = [
        Netns::new(&format!("{tag}c"))?,
        Netns::new(&format!("{tag}c"))?,
    ];
    let inner_mtu = (UNDERLAY_MTU - VXLAN_OVERHEAD).to_string();
    for i in 0..2 {
        // As on a Docker host: lets bpf_fib_lookup answer (the fast encap path).
        h[i].exec("sysctl", &["-qw", "net.ipv4.conf.ul.forwarding=1"])?;
        ip(&[
            "link", "add", "ep0", "netns", &h[i].name, "type", "veth", "peer", "name", "eth0",
            "netns", &c[i].name,
        ])?;
        h[i].ip(&["link", "set", "ep0", "up"])?;
        let mac = crate::pkt::fmt_mac(&CONTAINER_MACS[i]);
        c[i].ip(&[
            "link", "set", "eth0", "address", &mac, "mtu", &inner_mtu, "up",
        ])?;
        c[i].ip(&[
            "addr",
            "add",
            &format!("{}/16", CONTAINER_IPS[i]),
            "dev",
            "eth0",
        ])?;
    }
    Ok((h, c))
}

/// The store of the lab, as host `i` sees it: network `lab` (VNI), both hosts and one
/// endpoint on each, its own behind `ep0`.
fn lab_records(i: usize, endpoint_ifindex: u32) -> Snapshot {
    let host_name = |h: usize| format!("lab-h{h}");
    let mut snapshot = Snapshot::new(&host_name(i), records::host(VTEPS[i], "lab"));
    snapshot.network(&records::overlay_network("lab", VNI, "172.31.0.0/16"));
    for h in 0..2 {
        let id = format!("c{h}");
        snapshot
            .host(&host_name(h), &records::host(VTEPS[h], "lab"))
            .endpoint(
                "lab",
                &records::endpoint(
                    &id,
                    CONTAINER_IPS[h],
                    CONTAINER_MACS[h],
                    &host_name(h),
                    VTEPS[h],
                ),
            );
    }
    snapshot.interface("lab", &format!("c{i}"), "ep0", endpoint_ifindex);
    snapshot
}

/// Whether a lab host keeps the vxlan device for GRO, as the daemon does unless told not to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gro {
    Device,
    /// Everything decapsulated in TC (`netd daemon --no-gro-device`).
    NoDevice,
}

/// Loads, pins, fills and attaches netd's datapath on host `i`, whose peer is host `1 - i`.
fn netd_host(i: usize, ns: Netns, container: Netns, gro: Gro) -> anyhow::Result<Host> {
    let pin_dir = PathBuf::from(netd::bpffs::BPFFS_ROOT).join(format!("netd-{}", ns.name));
    let datapath = Datapath::load(DatapathOptions {
        pin_dir: Some(pin_dir.clone()),
        ..Default::default()
    })?;
    // From here on, dropping `host` removes the pins, also when a later step fails.
    let mut host = Host {
        datapath,
        pin_dir,
        vtep: VTEPS[i],
        container_ip: CONTAINER_IPS[i],
        container_mac: CONTAINER_MACS[i],
        container,
        ns,
    };
    let uplink = host.ns.ifindex("ul")?;
    let endpoint_ifindex = host.ns.ifindex("ep0")?;
    let gro_flag = match gro {
        Gro::Device => {
            let _in_host = netd::netns::enter(&host.ns.path())?;
            netd::gro::enable(&mut host.datapath, VXLAN_PORT_DEFAULT)?
        }
        Gro::NoDevice => 0,
    };
    let dp = &mut host.datapath;
    let mut config = host_config(dp, VTEPS[i], uplink);
    config.flags |= gro_flag;
    dp.set_config(&config)?;
    dp.apply(
        &MapState::default(),
        &lab_records(i, endpoint_ifindex).plan()?,
    )?;
    {
        let _in_host = netd::netns::enter(&host.ns.path())?;
        host.datapath.attach(Hook::Endpoint, "ep0")?;
        host.datapath.attach(Hook::Uplink, "ul")?;
        host.datapath.attach(Hook::UplinkEgress, "ul")?;
    }
    Ok(host)
}

impl TwoHostLab {
    /// Builds the topology; `tag` (≤ 3 characters) prefixes every namespace and pin directory.
    /// Each host keeps the vxlan device for GRO, as the daemon does.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        Self::with_gro(tag, Gro::Device)
    }

    pub fn with_gro(tag: &str, gro: Gro) -> anyhow::Result<Self> {
        let ([h0, h1], [c0, c1]) = topology(tag)?;
        let first = netd_host(0, h0, c0, gro)?;
        let second = netd_host(1, h1, c1, gro)?;
        Ok(Self {
            hosts: [first, second],
        })
    }

    /// Summed counters of host `i`, read from its pins like `netd maps dump stats` does.
    pub fn counter(&self, i: usize, name: &str) -> anyhow::Result<u64> {
        self.hosts[i].counter(name)
    }

    /// Takes to-uplink off host `i`'s uplink: VXLAN that netd did not encapsulate leaves it
    /// again, as from a host without netd's sender check (or a forger on the underlay), for the
    /// tests of what the receiver checks.
    pub fn without_sender_check(&mut self, i: usize) -> anyhow::Result<()> {
        let host = &mut self.hosts[i];
        let _in_host = netd::netns::enter(&host.ns.path())?;
        host.datapath.detach(Hook::UplinkEgress, "ul")?;
        Ok(())
    }

    /// A UDP datagram from the container on host 1 to the one on host 2, as its Ethernet frame.
    pub fn udp_across(&self, sport: u16, dport: u16) -> Vec<u8> {
        let [h1, h2] = &self.hosts;
        crate::pkt::udp(
            h1.container_mac,
            h2.container_mac,
            h1.container_ip,
            h2.container_ip,
            sport,
            dport,
            0,
        )
    }
}

impl Host {
    /// Runs `send` (in this thread) while the container listens on UDP `port`; returns the
    /// source ports of the datagrams that arrived, in order, up to the first from `last_sport`
    /// (or all within 1.5 s, stretched under emulation, when none comes from it).
    pub fn container_receives_udp(
        &self,
        port: u16,
        last_sport: u16,
        send: impl FnOnce(),
    ) -> anyhow::Result<Vec<u16>> {
        receives_udp(self.container.path(), port, last_sport, send)
    }

    /// A summed counter, read from the pins like `netd maps dump stats` does.
    pub fn counter(&self, name: &str) -> anyhow::Result<u64> {
        let all = netd::datapath::inspect::counters(&self.pin_dir)?;
        all.into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| anyhow::anyhow!("no counter {name}"))
    }
}

/// Runs `send` (in this thread) while a socket in the namespace at `netns` listens on UDP `port`;
/// returns the source ports of the datagrams that arrived, in order, up to the first from
/// `last_sport` (or all within 1.5 s, stretched under emulation, when none comes from it).
pub fn receives_udp(
    netns: PathBuf,
    port: u16,
    last_sport: u16,
    send: impl FnOnce(),
) -> anyhow::Result<Vec<u16>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let deadline =
        std::time::Instant::now() + crate::patience(std::time::Duration::from_millis(1500));
    let listener = std::thread::spawn(move || -> anyhow::Result<Vec<u16>> {
        let _in = netd::netns::enter(&netns)?;
        let socket = std::net::UdpSocket::bind(("0.0.0.0", port))?;
        let _ = ready_tx.send(());
        let mut sources = Vec::new();
        let mut buffer = [0u8; 256];
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            socket.set_read_timeout(Some(left.max(std::time::Duration::from_millis(1))))?;
            let Ok((_, from)) = socket.recv_from(&mut buffer) else {
                break;
            };
            sources.push(from.port());
            if from.port() == last_sport {
                break;
            }
        }
        Ok(sources)
    });
    if ready_rx.recv().is_ok() {
        send();
    }
    listener
        .join()
        .map_err(|_| anyhow::anyhow!("the listener panicked"))?
}

/// Host 1 runs netd; host 2 runs what Docker's overlay builds: a Linux bridge and the kernel's own
/// vxlan device with static FDB and neighbour entries. Traffic between them proves netd's wire
/// format is the kernel's.
pub struct InteropLab {
    pub netd: Host,
    pub kernel_container: Netns,
    pub kernel_host: Netns,
}

impl InteropLab {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let ([h0, h1], [c0, c1]) = topology(tag)?;
        kernel_vxlan_host(1, &h1)?;
        let netd = netd_host(0, h0, c0, Gro::Device)?;
        Ok(Self {
            netd,
            kernel_container: c1,
            kernel_host: h1,
        })
    }
}

/// Makes host `i` what Docker's classic overlay builds: the kernel's vxlan device `vx0` (with
/// Docker's flags: learning, `proxy l2miss l3miss`) and the container's veth on a Linux bridge,
/// plus the static entries Docker's peerAdd writes for the container on host `1 - i`: its MAC
/// behind the other VTEP in the FDB, its address in vx0's neighbour table. With `proxy`, vx0
/// answers the container's ARP from that table, so no ARP crosses the underlay.
fn kernel_vxlan_host(i: usize, host: &Netns) -> anyhow::Result<()> {
    let other = 1 - i;
    let vni = VNI.to_string();
    let port = VXLAN_PORT_DEFAULT.to_string();
    let local = VTEPS[i].to_string();
    let inner_mtu = (UNDERLAY_MTU - VXLAN_OVERHEAD).to_string();
    host.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", &vni, "dstport", &port, "local", &local,
        "dev", "ul", "proxy", "l2miss", "l3miss",
    ])?;
    host.ip(&["link", "add", "br0", "type", "bridge"])?;
    host.ip(&[
        "link", "set", "vx0", "master", "br0", "mtu", &inner_mtu, "up",
    ])?;
    host.ip(&["link", "set", "ep0", "master", "br0"])?;
    host.ip(&["link", "set", "br0", "up"])?;
    let other_mac = crate::pkt::fmt_mac(&CONTAINER_MACS[other]);
    host.exec(
        "bridge",
        &[
            "fdb",
            "replace",
            &other_mac,
            "dev",
            "vx0",
            "dst",
            &VTEPS[other].to_string(),
            "self",
            "permanent",
        ],
    )?;
    host.ip(&[
        "neigh",
        "replace",
        &CONTAINER_IPS[other].to_string(),
        "lladdr",
        &other_mac,
        "dev",
        "vx0",
        "nud",
        "permanent",
    ])?;
    Ok(())
}

/// Makes host `i` route its container without any encapsulation (as Calico does): a /32 route to
/// its own container on `ep0`, one to the other container via the other host's underlay address,
/// and proxy ARP on `ep0` so the container's on-link /16 resolves to the host.
fn routed_host(i: usize, host: &Netns) -> anyhow::Result<()> {
    let other = 1 - i;
    host.exec(
        "sysctl",
        &[
            "-qw",
            "net.ipv4.conf.all.forwarding=1",
            "net.ipv4.conf.ep0.proxy_arp=1",
        ],
    )?;
    host.ip(&[
        "route",
        "add",
        &format!("{}/32", CONTAINER_IPS[i]),
        "dev",
        "ep0",
    ])?;
    host.ip(&[
        "route",
        "add",
        &format!("{}/32", CONTAINER_IPS[other]),
        "via",
        &VTEPS[other].to_string(),
        "dev",
        "ul",
    ])?;
    Ok(())
}

/// The same two hosts and containers (same addresses, MACs and inner MTU) with only the kernel's
/// own datapaths on both hosts and no netd: the references the benchmark compares netd against.
pub struct KernelLab {
    pub containers: [Netns; 2],
    pub hosts: [Netns; 2],
}

impl KernelLab {
    /// Routed, no encapsulation: the limit of this machine.
    pub fn routed(tag: &str) -> anyhow::Result<Self> {
        Self::build(tag, routed_host)
    }

    /// Linux bridge and kernel vxlan device on both hosts: the datapath of Docker's overlay.
    pub fn kernel_vxlan(tag: &str) -> anyhow::Result<Self> {
        Self::build(tag, kernel_vxlan_host)
    }

    fn build(
        tag: &str,
        configure: fn(usize, &Netns) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let (hosts, containers) = topology(tag)?;
        // Built first, so a failing step below still drops (deletes) every namespace.
        let lab = Self { containers, hosts };
        for (i, host) in lab.hosts.iter().enumerate() {
            configure(i, host)?;
        }
        Ok(lab)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Unpinning the links detaches the programs; removing the directory frees the maps.
        // The namespaces (and every interface in them) go when the fields drop after this.
        if let Err(e) = std::fs::remove_dir_all(&self.pin_dir) {
            eprintln!("cleanup: cannot remove {}: {e}", self.pin_dir.display());
        }
    }
}
