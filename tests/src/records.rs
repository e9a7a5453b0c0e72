//! Store records as `netd network create`, `netd endpoint add` and a daemon's registration
//! write them, for the fixtures that program a datapath through
//! [`netd::control::snapshot::Snapshot`] and those that write a store directly.

use std::net::Ipv4Addr;

use netd_store::schema::{
    DRIVER_MACVLAN, DRIVER_OVERLAY, EndpointRecord, HostRecord, Mac, NetworkRecord, SCHEMA_VERSION,
    SubnetRecord,
};

fn subnet(cidr: &str) -> SubnetRecord {
    SubnetRecord {
        subnet: cidr.parse().expect("a fixture's subnet is valid"),
        gateway: None,
        ip_range: None,
        aux: Default::default(),
    }
}

/// An overlay network with one subnet and no gateway.
pub fn overlay_network(name: &str, vni: u32, cidr: &str) -> NetworkRecord {
    NetworkRecord {
        version: SCHEMA_VERSION,
        name: name.into(),
        driver: DRIVER_OVERLAY.into(),
        vni,
        subnets: vec![subnet(cidr)],
        mtu: None,
        options: Default::default(),
    }
}

/// A macvlan network on `parent` (`-o parent=... -o macvlan_mode=...`).
pub fn macvlan_network(
    name: &str,
    vni: u32,
    cidr: &str,
    parent: &str,
    mode: &str,
) -> NetworkRecord {
    NetworkRecord {
        driver: DRIVER_MACVLAN.into(),
        options: [("parent", parent), ("macvlan_mode", mode)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..overlay_network(name, vni, cidr)
    }
}

/// A host's registration: its VTEP on an uplink of MTU 1500.
pub fn host(vtep: Ipv4Addr, netd: &str) -> HostRecord {
    HostRecord {
        version: SCHEMA_VERSION,
        vtep_ip: vtep,
        uplink_mtu: 1500,
        netd: netd.into(),
        per_host_keys: true,
    }
}

/// An endpoint `name` at `ip`/`mac` on host `host` (whose VTEP is `vtep`).
pub fn endpoint(
    name: &str,
    ip: Ipv4Addr,
    mac: [u8; 6],
    host: &str,
    vtep: Ipv4Addr,
) -> EndpointRecord {
    EndpointRecord {
        version: SCHEMA_VERSION,
        ip,
        mac: Mac(mac),
        host: host.into(),
        vtep_ip: vtep,
        name: name.into(),
        names: Vec::new(),
    }
}
