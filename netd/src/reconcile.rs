//! Desired state: from what the store says (and which endpoints live here) to what the maps must
//! hold. Pure functions: the daemon feeds them the store view, the tests feed them records.
//!
//! Every value is decoded and validated; what fails is skipped and reported with its key. Two
//! claims on one address or MAC in a network, or on one VNI: the earliest claim (lowest create
//! revision) wins, deterministically on every host, and the other is reported, never flapping.

use std::collections::{BTreeMap, HashMap, HashSet};

use netd_common::maps::{
    EndpointInfo, FdbEntry, MAX_PARENT_PORTS, NeighEntry, ParentInfo, VtepEntry, endpoint_flags,
    macvlan_mode,
};
use netd_store::{
    KeyValue, Listing, WatchEvent,
    keys::{self, Key},
    schema::{self, EndpointRecord, HostRecord, MacvlanMode, NetworkRecord},
};

use crate::datapath::{
    MapState,
    state::{FdbKeyOrd, NeighKeyOrd, ParentKeyOrd, VtepKeyOrd},
};

/// Where a macvlan network's frames leave on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentPort {
    pub ifindex: u32,
    pub vlan: u16,
    /// The parent's MAC (host access).
    pub mac: [u8; 6],
}

/// Endpoint flags of a macvlan network (kind, mode, host access).
fn macvlan_flags(net: &NetworkRecord) -> u32 {
    let Some(spec) = net.macvlan() else {
        return 0;
    };
    let mode = match spec.mode {
        MacvlanMode::Bridge => macvlan_mode::BRIDGE,
        MacvlanMode::Private => macvlan_mode::PRIVATE,
        MacvlanMode::Vepa => macvlan_mode::VEPA,
        MacvlanMode::Passthru => macvlan_mode::PASSTHRU,
    };
    let host = if spec.host_access {
        endpoint_flags::HOST_ACCESS
    } else {
        0
    };
    endpoint_flags::MACVLAN | host | (mode << endpoint_flags::MODE_SHIFT)
}

/// The store's contents under `/netd/v1/` as last seen: a listing plus the watch events since.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub kvs: BTreeMap<String, KeyValue>,
    pub revision: i64,
}

impl View {
    pub fn from_listing(listing: Listing) -> Self {
        Self {
            kvs: listing
                .kvs
                .into_iter()
                .map(|kv| (kv.key.clone(), kv))
                .collect(),
            revision: listing.revision,
        }
    }

    pub fn apply(&mut self, events: &[WatchEvent]) {
        for event in events {
            self.revision = self.revision.max(event.revision());
            match event {
                WatchEvent::Put(kv) => {
                    self.kvs.insert(kv.key.clone(), kv.clone());
                }
                WatchEvent::Delete { key, .. } => {
                    self.kvs.remove(key);
                }
            }
        }
    }
}

/// A valid endpoint with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub network: String,
    pub id: String,
    pub record: EndpointRecord,
    pub vni: u32,
}

/// The store's contents, decoded and validated.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub networks: BTreeMap<String, NetworkRecord>,
    pub hosts: BTreeMap<String, HostRecord>,
    pub endpoints: Vec<Endpoint>,
    /// Keys whose values were refused, with the reason.
    pub invalid: Vec<(String, String)>,
}

impl Cluster {
    pub fn from_view(view: &View) -> Self {
        let mut cluster = Self::default();
        // Oldest claims first: conflicts are settled by create revision.
        let mut kvs: Vec<&KeyValue> = view.kvs.values().collect();
        kvs.sort_by_key(|kv| (kv.create_revision, kv.key.clone()));
        let mut vnis = HashSet::new();
        for kv in &kvs {
            if let Some(Key::Network(name)) = keys::parse(&kv.key) {
                match schema::decode::<NetworkRecord>(&kv.value)
                    .and_then(|n| n.validate(name).map(|()| n))
                {
                    Ok(n) if !vnis.insert(n.vni) => {
                        cluster.invalid.push((
                            kv.key.clone(),
                            format!("VNI {} already used by an earlier network", n.vni),
                        ));
                    }
                    Ok(n) => {
                        cluster.networks.insert(name.to_string(), n);
                    }
                    Err(e) => cluster.invalid.push((kv.key.clone(), e.to_string())),
                }
            }
        }
        for kv in &kvs {
            if let Some(Key::Host(name)) = keys::parse(&kv.key) {
                match schema::decode::<HostRecord>(&kv.value)
                    .and_then(|h| h.validate(name).map(|()| h))
                {
                    Ok(h) => {
                        cluster.hosts.insert(name.to_string(), h);
                    }
                    Err(e) => cluster.invalid.push((kv.key.clone(), e.to_string())),
                }
            }
        }
        let mut ips = HashSet::new();
        let mut macs = HashSet::new();
        for kv in &kvs {
            let Some(Key::Endpoint { network, id }) = keys::parse(&kv.key) else {
                continue;
            };
            let Some(net) = cluster.networks.get(network) else {
                cluster.invalid.push((
                    kv.key.clone(),
                    format!("network {network:?} does not exist"),
                ));
                continue;
            };
            let record = match schema::decode::<EndpointRecord>(&kv.value)
                .and_then(|r| r.validate(id, net, cluster.hosts.get(&r.host)).map(|()| r))
            {
                Ok(r) => r,
                Err(e) => {
                    cluster.invalid.push((kv.key.clone(), e.to_string()));
                    continue;
                }
            };
            if !ips.insert((net.vni, record.ip)) {
                cluster.invalid.push((
                    kv.key.clone(),
                    format!(
                        "address {} already claimed by an earlier endpoint",
                        record.ip
                    ),
                ));
                continue;
            }
            if !macs.insert((net.vni, record.mac)) {
                cluster.invalid.push((
                    kv.key.clone(),
                    format!("MAC {} already claimed by an earlier endpoint", record.mac),
                ));
                continue;
            }
            cluster.endpoints.push(Endpoint {
                network: network.to_string(),
                id: id.to_string(),
                vni: net.vni,
                record,
            });
        }
        cluster
    }

    /// The maps of host `me`. `local_ifindex` finds the host-side veth of one of its endpoints;
    /// an endpoint of this host whose veth is gone is left out (and reported by the caller).
    /// `parent_of` finds where a macvlan network leaves this host (`None`: no such interface).
    pub fn desired_maps(
        &self,
        me: &str,
        local_ifindex: &HashMap<(String, String), u32>,
        parent_of: &dyn Fn(&NetworkRecord) -> Option<ParentPort>,
    ) -> MapState {
        let mut maps = MapState::default();
        for ep in &self.endpoints {
            let Some(net) = self.networks.get(&ep.network) else {
                continue;
            };
            let r = &ep.record;
            let mac = r.mac.0;
            let ip = r.ip.octets();
            let flags = macvlan_flags(net);
            if flags & endpoint_flags::MACVLAN != 0 {
                // macvlan: only this host's endpoints; the others are reached over the LAN.
                if r.host != me {
                    continue;
                }
                let (Some(&ifindex), Some(parent)) = (
                    local_ifindex.get(&(ep.network.clone(), ep.id.clone())),
                    parent_of(net),
                ) else {
                    continue;
                };
                maps.endpoints.insert(
                    ifindex,
                    EndpointInfo {
                        vni: ep.vni,
                        mac,
                        vlan: parent.vlan,
                        ipv4: ip,
                        flags,
                        parent_ifindex: parent.ifindex,
                    },
                );
                maps.fdb
                    .insert(FdbKeyOrd(ep.vni, mac), FdbEntry::local(ifindex));
                let port = maps
                    .parents
                    .entry(ParentKeyOrd(parent.ifindex, parent.vlan))
                    .or_insert(ParentInfo {
                        vni: ep.vni,
                        flags,
                        mac: parent.mac,
                        ..ParentInfo::default()
                    });
                if (port.count as usize) < MAX_PARENT_PORTS {
                    port.ports[port.count as usize] = ifindex;
                    port.count += 1;
                }
                continue;
            }
            if r.host == me {
                let Some(&ifindex) = local_ifindex.get(&(ep.network.clone(), ep.id.clone())) else {
                    continue;
                };
                maps.endpoints.insert(
                    ifindex,
                    EndpointInfo {
                        vni: ep.vni,
                        mac,
                        vlan: 0,
                        ipv4: ip,
                        flags: 0,
                        parent_ifindex: 0,
                    },
                );
                maps.fdb
                    .insert(FdbKeyOrd(ep.vni, mac), FdbEntry::local(ifindex));
            } else {
                maps.fdb
                    .insert(FdbKeyOrd(ep.vni, mac), FdbEntry::remote(r.vtep_ip.octets()));
                maps.vteps.insert(
                    VtepKeyOrd(r.vtep_ip.octets(), ep.vni),
                    VtepEntry { flags: 0 },
                );
            }
            maps.neigh
                .insert(NeighKeyOrd(ep.vni, ip), NeighEntry::new(mac));
        }
        // Flooding order must not depend on the store's: sorted ports, stable maps.
        for port in maps.parents.values_mut() {
            port.ports[..port.count as usize].sort_unstable();
        }
        maps
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use netd_store::schema::{Mac, SCHEMA_VERSION, SubnetRecord};

    use super::*;

    fn kv(key: String, value: Vec<u8>, rev: i64) -> KeyValue {
        KeyValue {
            key,
            value,
            create_revision: rev,
            mod_revision: rev,
        }
    }

    fn network(name: &str, vni: u32) -> Vec<u8> {
        schema::encode(&NetworkRecord {
            version: SCHEMA_VERSION,
            name: name.into(),
            driver: "overlay".into(),
            vni,
            subnets: vec![SubnetRecord {
                subnet: "10.1.0.0/16".parse().unwrap(),
                gateway: None,
                ip_range: None,
                aux: Default::default(),
            }],
            mtu: None,
            options: Default::default(),
        })
    }

    fn host(vtep: &str) -> Vec<u8> {
        schema::encode(&HostRecord {
            version: SCHEMA_VERSION,
            vtep_ip: vtep.parse().unwrap(),
            uplink_mtu: 1500,
            netd: "test".into(),
        })
    }

    fn endpoint(name: &str, ip: &str, host: &str, vtep: &str) -> Vec<u8> {
        let ip: Ipv4Addr = ip.parse().unwrap();
        schema::encode(&EndpointRecord {
            version: SCHEMA_VERSION,
            ip,
            mac: Mac::from_ipv4(ip),
            host: host.into(),
            vtep_ip: vtep.parse().unwrap(),
            name: name.into(),
        })
    }

    fn view(kvs: Vec<KeyValue>) -> View {
        View::from_listing(Listing { kvs, revision: 100 })
    }

    #[test]
    fn local_and_remote_endpoints_become_map_entries() {
        let v = view(vec![
            kv(keys::network("n"), network("n", 300), 1),
            kv(keys::host("a"), host("192.168.0.1"), 2),
            kv(keys::host("b"), host("192.168.0.2"), 3),
            kv(
                keys::endpoint("n", "e1"),
                endpoint("e1", "10.1.0.1", "a", "192.168.0.1"),
                4,
            ),
            kv(
                keys::endpoint("n", "e2"),
                endpoint("e2", "10.1.0.2", "b", "192.168.0.2"),
                5,
            ),
        ]);
        let cluster = Cluster::from_view(&v);
        assert!(cluster.invalid.is_empty(), "{:?}", cluster.invalid);
        let local = HashMap::from([(("n".to_string(), "e1".to_string()), 7u32)]);
        let maps = cluster.desired_maps("a", &local, &|_| None);
        assert_eq!(maps.endpoints.len(), 1);
        assert_eq!(maps.endpoints[&7].vni, 300);
        assert_eq!(maps.fdb.len(), 2);
        assert_eq!(maps.neigh.len(), 2);
        assert_eq!(maps.vteps.len(), 1);
        assert!(maps.vteps.contains_key(&VtepKeyOrd([192, 168, 0, 2], 300)));
    }

    #[test]
    fn invalid_values_are_skipped_with_their_key() {
        let v = view(vec![
            kv(keys::network("n"), network("n", 300), 1),
            kv(keys::network("bad"), b"{not json".to_vec(), 2),
            kv(keys::network("dupvni"), network("dupvni", 300), 3),
            kv(keys::host("a"), host("192.168.0.1"), 4),
            // Claims host a's endpoint but with another VTEP: not a's to publish.
            kv(
                keys::endpoint("n", "x"),
                endpoint("x", "10.1.0.9", "a", "192.168.0.66"),
                5,
            ),
            kv(
                keys::endpoint("n", "y"),
                endpoint("y", "10.9.0.1", "a", "192.168.0.1"),
                6,
            ),
            kv(
                keys::endpoint("n", "first"),
                endpoint("first", "10.1.0.5", "a", "192.168.0.1"),
                7,
            ),
            kv(
                keys::endpoint("n", "second"),
                endpoint("second", "10.1.0.5", "a", "192.168.0.1"),
                8,
            ),
            kv(
                keys::endpoint("gone", "z"),
                endpoint("z", "10.1.0.7", "a", "192.168.0.1"),
                9,
            ),
        ]);
        let cluster = Cluster::from_view(&v);
        let bad: Vec<&str> = cluster.invalid.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            bad,
            vec![
                "/netd/v1/networks/bad",
                "/netd/v1/networks/dupvni",
                "/netd/v1/endpoints/n/x",
                "/netd/v1/endpoints/n/y",
                "/netd/v1/endpoints/n/second",
                "/netd/v1/endpoints/gone/z",
            ]
        );
        assert_eq!(cluster.endpoints.len(), 1);
        assert_eq!(cluster.endpoints[0].id, "first");
    }

    #[test]
    fn endpoints_of_a_host_that_left_are_not_programmed() {
        let v = view(vec![
            kv(keys::network("n"), network("n", 300), 1),
            kv(keys::host("a"), host("192.168.0.1"), 2),
            kv(
                keys::endpoint("n", "e2"),
                endpoint("e2", "10.1.0.2", "b", "192.168.0.2"),
                5,
            ),
        ]);
        let maps = Cluster::from_view(&v).desired_maps("a", &HashMap::new(), &|_| None);
        assert!(maps.fdb.is_empty());
    }
}
