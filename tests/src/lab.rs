//! Two simulated hosts joined by a veth underlay, one container on each, the netd datapath
//! loaded, pinned and attached on both: the topology of the namespace tests and of the demo.
//!
//! ```text
//!  container c1 (eth0 172.31.0.11)            container c2 (eth0 172.31.0.12)
//!        | veth (ep0)                                 | veth (ep0)
//!  host h1: from-endpoint on ep0              host h2: from-endpoint on ep0
//!           from-uplink on ul                          from-uplink on ul
//!  ul 10.201.0.1/24 ====== veth underlay ====== ul 10.201.0.2/24
//! ```

use std::{net::Ipv4Addr, path::PathBuf};

use netd::datapath::{Datapath, DatapathOptions, Hook, LocalEndpoint, RemoteEndpoint};
use netd_common::{VXLAN_OVERHEAD, VXLAN_PORT_DEFAULT, maps::DatapathConfig};

use crate::{ip, netns::Netns};

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

fn host_config(vtep: Ipv4Addr, uplink_ifindex: u32) -> DatapathConfig {
    DatapathConfig {
        local_vtep: vtep.octets(),
        uplink_ifindex,
        vxlan_port: VXLAN_PORT_DEFAULT,
        underlay_mtu: UNDERLAY_MTU,
        flags: Datapath::default_config_flags(),
    }
}

impl TwoHostLab {
    /// Builds the topology; `tag` (≤ 3 characters) prefixes every namespace and pin directory.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let h = [Netns::new(&format!("{tag}h"))?, Netns::new(&format!("{tag}h"))?];
        let c = [Netns::new(&format!("{tag}c"))?, Netns::new(&format!("{tag}c"))?];
        // The underlay: one veth pair, one end in each host.
        ip(&[
            "link", "add", "ul", "netns", &h[0].name, "type", "veth", "peer", "name", "ul",
            "netns", &h[1].name,
        ])?;
        let vteps = [Ipv4Addr::new(10, 201, 0, 1), Ipv4Addr::new(10, 201, 0, 2)];
        let ips = [Ipv4Addr::new(172, 31, 0, 11), Ipv4Addr::new(172, 31, 0, 12)];
        let macs = [[0x02, 0x42, 0xac, 0x1f, 0, 11], [0x02, 0x42, 0xac, 0x1f, 0, 12]];
        let inner_mtu = (UNDERLAY_MTU - VXLAN_OVERHEAD).to_string();
        for i in 0..2 {
            h[i].ip(&["addr", "add", &format!("{}/24", vteps[i]), "dev", "ul"])?;
            h[i].ip(&["link", "set", "ul", "up"])?;
            // As on a Docker host: lets bpf_fib_lookup answer (the fast encap path).
            h[i].exec("sysctl", &["-qw", "net.ipv4.conf.ul.forwarding=1"])?;
            // The container's veth: host end ep0, container end eth0.
            ip(&[
                "link", "add", "ep0", "netns", &h[i].name, "type", "veth", "peer", "name", "eth0",
                "netns", &c[i].name,
            ])?;
            h[i].ip(&["link", "set", "ep0", "up"])?;
            let mac = crate::pkt::fmt_mac(&macs[i]);
            c[i].ip(&["link", "set", "eth0", "address", &mac, "mtu", &inner_mtu, "up"])?;
            c[i].ip(&["addr", "add", &format!("{}/16", ips[i]), "dev", "eth0"])?;
        }

        let [h0, h1] = h;
        let [c0, c1] = c;
        let mut hosts = Vec::with_capacity(2);
        for (i, (ns, container)) in [(h0, c0), (h1, c1)].into_iter().enumerate() {
            let pin_dir = PathBuf::from(netd::bpffs::BPFFS_ROOT).join(format!("netd-{}", ns.name));
            let mut datapath = Datapath::load(DatapathOptions {
                pin_dir: Some(pin_dir.clone()),
            })?;
            let uplink = ns.ifindex("ul")?;
            let endpoint_ifindex = ns.ifindex("ep0")?;
            datapath.set_config(&host_config(vteps[i], uplink))?;
            datapath.add_local_endpoint(&LocalEndpoint {
                ifindex: endpoint_ifindex,
                vni: VNI,
                mac: macs[i],
                ipv4: ips[i],
            })?;
            let other = 1 - i;
            datapath.add_remote_endpoint(&RemoteEndpoint {
                vni: VNI,
                mac: macs[other],
                ipv4: ips[other],
                vtep: vteps[other],
            })?;
            datapath.add_vtep(vteps[other], VNI)?;
            {
                let _in_host = netd::netns::enter(&ns.path())?;
                datapath.attach(Hook::Endpoint, "ep0")?;
                datapath.attach(Hook::Uplink, "ul")?;
            }
            hosts.push(Host {
                datapath,
                pin_dir,
                vtep: vteps[i],
                container_ip: ips[i],
                container_mac: macs[i],
                container,
                ns,
            });
        }
        let hosts: [Host; 2] = hosts
            .try_into()
            .map_err(|_| anyhow::anyhow!("two hosts expected"))?;
        Ok(Self { hosts })
    }

    /// Summed counters of host `i`, read from its pins like `netd maps dump stats` does.
    pub fn counter(&self, i: usize, name: &str) -> anyhow::Result<u64> {
        let all = netd::datapath::inspect::counters(&self.hosts[i].pin_dir)?;
        all.into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| anyhow::anyhow!("no counter {name}"))
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
