//! A host namespace with an uplink, two local endpoints and a loaded (unpinned) datapath, for
//! running the programs on hand-made packets with `BPF_PROG_TEST_RUN`.
//!
//! `bpf_fib_lookup` and the redirect helpers look at real devices of the namespace the test
//! thread is in, so the fixture builds them for real: the uplink `up0` (10.200.0.1/24) with a
//! permanent neighbour for VTEP 10.200.0.2, none for 10.200.0.3, and no route at all to
//! 192.0.2.1.

use std::{collections::HashMap, net::Ipv4Addr};

use aya::programs::{TestRun as _, TestRunOptions};
use netd::{
    control::{plan::ParentPort, snapshot::Snapshot},
    datapath::{Datapath, DatapathOptions, Hook},
};
use netd_common::maps::DatapathConfig;

use crate::{netns::Netns, records};

pub const VNI: u32 = 4242;
pub const OTHER_VNI: u32 = 4343;
pub const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
pub const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
pub const UNRESOLVED_VTEP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 3);
pub const UNROUTABLE_VTEP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x02];
pub const VXLAN_PORT: u16 = 4789;
pub const UNDERLAY_MTU: u16 = 1500;

pub const EP_A: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(172, 31, 0, 10), [0x02, 0xaa, 0, 0, 0, 0x0a]);
pub const EP_B: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(172, 31, 0, 11), [0x02, 0xaa, 0, 0, 0, 0x0b]);
pub const REMOTE: (Ipv4Addr, [u8; 6]) =
    (Ipv4Addr::new(172, 31, 0, 20), [0x02, 0xbb, 0, 0, 0, 0x14]);
pub const REMOTE_UNRESOLVED: (Ipv4Addr, [u8; 6]) =
    (Ipv4Addr::new(172, 31, 0, 30), [0x02, 0xbb, 0, 0, 0, 0x1e]);
pub const REMOTE_UNROUTABLE: (Ipv4Addr, [u8; 6]) =
    (Ipv4Addr::new(172, 31, 0, 40), [0x02, 0xbb, 0, 0, 0, 0x28]);

/// TC return codes. "Not mine" is TC_ACT_UNSPEC (-1): the next program on the hook decides,
/// or the stack gets the packet untouched.
pub const TC_ACT_PASS: u32 = u32::MAX;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

pub const MACVLAN_NET: u32 = 5000;
pub const EP_C: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(10, 10, 10, 5), [0x02, 0xcc, 0, 0, 0, 0x05]);
pub const EP_D: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(10, 10, 10, 6), [0x02, 0xcc, 0, 0, 0, 0x06]);
pub const LAN_HOST: (Ipv4Addr, [u8; 6]) =
    (Ipv4Addr::new(10, 10, 10, 100), [0x02, 0xdd, 0, 0, 0, 0x64]);

/// The store's names for the lab's networks and hosts.
const OVERLAY: &str = "pk-overlay";
const LAN: &str = "pk-lan";
const THIS_HOST: &str = "pk-here";

pub struct PacketLab {
    pub datapath: Datapath,
    /// The records the maps are planned from, as this host's daemon would plan them.
    records: Snapshot,
    pub uplink_ifindex: u32,
    pub uplink_mac: [u8; 6],
    pub ep_a_ifindex: u32,
    pub ep_b_ifindex: u32,
    pub parent_ifindex: u32,
    pub parent_mac: [u8; 6],
    pub ep_c_ifindex: u32,
    pub ep_d_ifindex: u32,
    // Last: dropped after the datapath (its programs reference no device, but order is tidy).
    pub ns: Netns,
}

/// The `__sk_buff` fields a run sets (the rest are zero).
#[derive(Clone, Copy, Debug, Default)]
pub struct Skb {
    /// The device the packet is on.
    pub ifindex: u32,
    /// The device it was received on (`skb->skb_iif`; 0: sent by the host).
    pub ingress_ifindex: u32,
    /// `skb->mark`.
    pub mark: u32,
}

/// Result of one program run.
#[derive(Debug)]
pub struct Run {
    pub verdict: u32,
    pub out: Vec<u8>,
    /// Counter increments caused by this run, by name (zeros omitted).
    pub counted: HashMap<&'static str, u64>,
}

impl PacketLab {
    pub fn new() -> anyhow::Result<Self> {
        let ns = Netns::new("pk")?;
        ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"])?;
        ns.ip(&[
            "link", "add", "epa", "type", "veth", "peer", "name", "epa-c",
        ])?;
        ns.ip(&[
            "link", "add", "epb", "type", "veth", "peer", "name", "epb-c",
        ])?;
        // For macvlan-style endpoints: a parent on the "LAN" and two endpoints' veths.
        ns.ip(&[
            "link", "add", "par0", "type", "veth", "peer", "name", "par1",
        ])?;
        ns.ip(&[
            "link", "add", "epc", "type", "veth", "peer", "name", "epc-c",
        ])?;
        ns.ip(&[
            "link", "add", "epd", "type", "veth", "peer", "name", "epd-c",
        ])?;
        for dev in [
            "up0", "up1", "epa", "epa-c", "epb", "epb-c", "par0", "par1", "epc", "epc-c", "epd",
            "epd-c",
        ] {
            ns.ip(&["link", "set", dev, "up"])?;
        }
        ns.ip(&["addr", "add", "10.200.0.1/24", "dev", "up0"])?;
        // bpf_fib_lookup answers only where forwarding is on (as on Docker hosts); one test
        // turns it off again to cover the bpf_redirect_neigh path.
        ns.exec("sysctl", &["-qw", "net.ipv4.conf.up0.forwarding=1"])?;
        ns.ip(&[
            "neigh",
            "replace",
            "10.200.0.2",
            "lladdr",
            "02:ee:00:00:00:02",
            "dev",
            "up0",
            "nud",
            "permanent",
        ])?;
        let uplink_ifindex = ns.ifindex("up0")?;
        let uplink_mac = ns.mac("up0")?;
        let ep_a_ifindex = ns.ifindex("epa")?;
        let ep_b_ifindex = ns.ifindex("epb")?;

        let mut datapath = Datapath::load(DatapathOptions::default())?;
        datapath.set_config(&DatapathConfig {
            local_vtep: LOCAL_VTEP.octets(),
            uplink_ifindex,
            vxlan_port: VXLAN_PORT,
            underlay_mtu: UNDERLAY_MTU,
            flags: datapath.config_flags(),
        })?;
        // Network VNI: EP_A and EP_B here; REMOTE, REMOTE_UNRESOLVED and REMOTE_UNROUTABLE on
        // three other hosts, one per VTEP.
        let mut snapshot = Snapshot::new(THIS_HOST, records::host(LOCAL_VTEP, "test"));
        snapshot.network(&records::overlay_network(OVERLAY, VNI, "172.31.0.0/16"));
        for (id, ifname, (ip, mac)) in [("a", "epa", EP_A), ("b", "epb", EP_B)] {
            snapshot
                .endpoint(
                    OVERLAY,
                    &records::endpoint(id, ip, mac, THIS_HOST, LOCAL_VTEP),
                )
                .interface(OVERLAY, id, ifname, ns.ifindex(ifname)?);
        }
        for (id, vtep, (ip, mac)) in [
            ("remote", REMOTE_VTEP, REMOTE),
            ("unresolved", UNRESOLVED_VTEP, REMOTE_UNRESOLVED),
            ("unroutable", UNROUTABLE_VTEP, REMOTE_UNROUTABLE),
        ] {
            let host = format!("pk-{id}");
            snapshot
                .host(&host, &records::host(vtep, "test"))
                .endpoint(OVERLAY, &records::endpoint(id, ip, mac, &host, vtep));
        }
        let mut lab = Self {
            records: snapshot,
            parent_ifindex: ns.ifindex("par0")?,
            parent_mac: ns.mac("par0")?,
            ep_c_ifindex: ns.ifindex("epc")?,
            ep_d_ifindex: ns.ifindex("epd")?,
            datapath,
            uplink_ifindex,
            uplink_mac,
            ep_a_ifindex,
            ep_b_ifindex,
            ns,
        };
        lab.program(|_| {})?;
        Ok(lab)
    }

    /// Writes the maps planned from the lab's records, with `amend` applied to them first (for
    /// the tests of states the daemon never programs).
    fn program(&mut self, amend: impl FnOnce(&mut netd::datapath::MapState)) -> anyhow::Result<()> {
        let mut desired = self.records.plan()?;
        amend(&mut desired);
        let current = self.datapath.read_state()?;
        self.datapath.apply(&current, &desired)?;
        Ok(())
    }

    /// Makes EP_C and EP_D endpoints of a macvlan network on `par0` (untagged) in `mode`
    /// (`-o macvlan_mode=`); `parent_entry: false` then takes the parent's entry out of the
    /// maps, as no daemon would.
    pub fn add_macvlan(&mut self, mode: &str, parent_entry: bool) -> anyhow::Result<()> {
        self.records
            .network(&records::macvlan_network(
                LAN,
                MACVLAN_NET,
                "10.10.10.0/24",
                "par0",
                mode,
            ))
            .parent(
                LAN,
                ParentPort {
                    name: "par0".into(),
                    ifindex: self.parent_ifindex,
                    vlan: 0,
                    mac: self.parent_mac,
                    host_access: false,
                },
            );
        for (id, ifname, ifindex, (ip, mac)) in [
            ("c", "epc", self.ep_c_ifindex, EP_C),
            ("d", "epd", self.ep_d_ifindex, EP_D),
        ] {
            self.records
                .endpoint(LAN, &records::endpoint(id, ip, mac, THIS_HOST, LOCAL_VTEP))
                .interface(LAN, id, ifname, ifindex);
        }
        self.program(|maps| {
            if !parent_entry {
                maps.parents.clear();
            }
        })
    }

    /// Gives network VNI a gateway at `ip` (`--gateway`); returns the MAC its address answers
    /// ARP with.
    pub fn add_gateway(&mut self, ip: Ipv4Addr) -> anyhow::Result<[u8; 6]> {
        let mut network = records::overlay_network(OVERLAY, VNI, "172.31.0.0/16");
        network.subnets[0].gateway = Some(ip);
        self.records.network(&network);
        self.program(|_| {})?;
        Ok(netd_store::schema::Mac::from_ipv4(ip).0)
    }

    /// Runs `hook`'s program on `frame` as if it arrived on `ifindex`.
    pub fn run(&self, hook: Hook, ifindex: u32, frame: &[u8]) -> anyhow::Result<Run> {
        self.run_skb(
            hook,
            Skb {
                ifindex,
                ..Skb::default()
            },
            frame,
        )
    }

    /// Runs `hook`'s program on `frame` in an skb with the fields of `skb`.
    pub fn run_skb(&self, hook: Hook, skb: Skb, frame: &[u8]) -> anyhow::Result<Run> {
        let before = self.counters()?;
        let program = self.datapath.program(hook)?;
        // struct __sk_buff: mark (offset 8), ingress_ifindex (36) and ifindex (40) are fields
        // BPF_PROG_TEST_RUN takes; the kernel requires the rest zero.
        let mut ctx = [0u8; 192];
        ctx[8..12].copy_from_slice(&skb.mark.to_ne_bytes());
        ctx[36..40].copy_from_slice(&skb.ingress_ifindex.to_ne_bytes());
        ctx[40..44].copy_from_slice(&skb.ifindex.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + 256];
        let result = {
            let _in_lab = netd::netns::enter(&self.ns.path())?;
            program.test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })?
        };
        out.truncate(result.data_size_out as usize);
        let after = self.counters()?;
        let counted = after
            .iter()
            .filter_map(|(name, value)| {
                let delta = value - before.get(name).copied().unwrap_or(0);
                (delta != 0).then_some((*name, delta))
            })
            .collect();
        Ok(Run {
            verdict: result.return_value,
            out,
            counted,
        })
    }

    pub fn counters(&self) -> anyhow::Result<HashMap<&'static str, u64>> {
        Ok(self.datapath.counters()?.into_iter().collect())
    }
}

impl Run {
    /// The drop reasons this run counted.
    pub fn drops(&self) -> Vec<&'static str> {
        let mut d: Vec<_> = self
            .counted
            .keys()
            .copied()
            .filter(|n| n.starts_with("drop-"))
            .collect();
        d.sort_unstable();
        d
    }
}
