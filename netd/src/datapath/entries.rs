//! Typed operations on the maps: what the reconciler (and the tests) call.
//!
//! A local endpoint owns three entries (ENDPOINTS by ifindex, FDB and NEIGH in its VNI), a remote
//! one two (FDB pointing at its VTEP, NEIGH), and a VTEP one per VNI it may send.

use std::net::Ipv4Addr;

use aya::maps::MapError;
use netd_common::{
    VNI_MAX,
    maps::{
        EndpointInfo, EndpointKey, FdbEntry, FdbKey, NeighEntry, NeighKey, VtepEntry, VtepKey,
        names,
    },
    packet::is_unicast_mac,
};

use super::{Datapath, DatapathError};

/// An endpoint on this host, behind the host-side veth `ifindex`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub ifindex: u32,
    pub vni: u32,
    pub mac: [u8; 6],
    pub ipv4: Ipv4Addr,
}

/// An endpoint on another host, reached through that host's VTEP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub vni: u32,
    pub mac: [u8; 6],
    pub ipv4: Ipv4Addr,
    pub vtep: Ipv4Addr,
}

fn check(vni: u32, mac: &[u8; 6]) -> Result<(), DatapathError> {
    if vni == 0 || vni > VNI_MAX {
        return Err(DatapathError::BadVni(vni));
    }
    if !is_unicast_mac(mac) {
        return Err(DatapathError::NotUnicast(
            crate::datapath::inspect::fmt_mac(mac),
        ));
    }
    Ok(())
}

/// Deleting what is already gone is not an error: removal is idempotent.
fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        other => other,
    }
}

macro_rules! map_op {
    ($name:expr, $e:expr) => {
        $e.map_err(|source| DatapathError::Map {
            name: $name,
            source,
        })
    };
}

impl Datapath {
    /// Adds (or updates) an endpoint of this host. Entries are written in the order that keeps
    /// every intermediate state safe: the ARP answer exists only once the FDB can deliver.
    pub fn add_local_endpoint(&mut self, ep: &LocalEndpoint) -> Result<(), DatapathError> {
        check(ep.vni, &ep.mac)?;
        let info = EndpointInfo {
            vni: ep.vni,
            mac: ep.mac,
            vlan: 0,
            ipv4: ep.ipv4.octets(),
            flags: 0,
            parent_ifindex: 0,
        };
        map_op!(
            names::FDB,
            self.hash_map::<FdbKey, FdbEntry>(names::FDB)?.insert(
                FdbKey::new(ep.vni, ep.mac),
                FdbEntry::local(ep.ifindex),
                0
            )
        )?;
        map_op!(
            names::ENDPOINTS,
            self.hash_map::<EndpointKey, EndpointInfo>(names::ENDPOINTS)?
                .insert(ep.ifindex, info, 0)
        )?;
        map_op!(
            names::NEIGH,
            self.hash_map::<NeighKey, NeighEntry>(names::NEIGH)?.insert(
                NeighKey {
                    vni: ep.vni,
                    ipv4: ep.ipv4.octets()
                },
                NeighEntry::new(ep.mac),
                0
            )
        )
    }

    /// Removes the endpoint behind `ifindex` and its FDB and ARP entries.
    pub fn remove_local_endpoint(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        let mut endpoints = self.hash_map::<EndpointKey, EndpointInfo>(names::ENDPOINTS)?;
        let info = match endpoints.get(&ifindex, 0) {
            Ok(info) => info,
            Err(MapError::KeyNotFound) => return Err(DatapathError::NoSuchEndpoint(ifindex)),
            Err(source) => {
                return Err(DatapathError::Map {
                    name: names::ENDPOINTS,
                    source,
                });
            }
        };
        map_op!(names::ENDPOINTS, ignore_missing(endpoints.remove(&ifindex)))?;
        self.remove_neigh_and_fdb(info.vni, info.mac, Ipv4Addr::from(info.ipv4))
    }

    /// Adds (or updates) an endpoint that lives behind another host's VTEP.
    pub fn add_remote_endpoint(&mut self, ep: &RemoteEndpoint) -> Result<(), DatapathError> {
        check(ep.vni, &ep.mac)?;
        map_op!(
            names::FDB,
            self.hash_map::<FdbKey, FdbEntry>(names::FDB)?.insert(
                FdbKey::new(ep.vni, ep.mac),
                FdbEntry::remote(ep.vtep.octets()),
                0
            )
        )?;
        map_op!(
            names::NEIGH,
            self.hash_map::<NeighKey, NeighEntry>(names::NEIGH)?.insert(
                NeighKey {
                    vni: ep.vni,
                    ipv4: ep.ipv4.octets()
                },
                NeighEntry::new(ep.mac),
                0
            )
        )
    }

    /// Removes a remote endpoint (idempotent).
    pub fn remove_remote_endpoint(
        &mut self,
        vni: u32,
        mac: [u8; 6],
        ipv4: Ipv4Addr,
    ) -> Result<(), DatapathError> {
        self.remove_neigh_and_fdb(vni, mac, ipv4)
    }

    fn remove_neigh_and_fdb(
        &mut self,
        vni: u32,
        mac: [u8; 6],
        ipv4: Ipv4Addr,
    ) -> Result<(), DatapathError> {
        // ARP first: nothing new is sent toward the MAC once it can no longer be resolved.
        map_op!(
            names::NEIGH,
            ignore_missing(self.hash_map::<NeighKey, NeighEntry>(names::NEIGH)?.remove(
                &NeighKey {
                    vni,
                    ipv4: ipv4.octets()
                }
            ))
        )?;
        map_op!(
            names::FDB,
            ignore_missing(
                self.hash_map::<FdbKey, FdbEntry>(names::FDB)?
                    .remove(&FdbKey::new(vni, mac))
            )
        )
    }

    /// Allows VXLAN from `vtep` in `vni` to be decapsulated on this host.
    pub fn add_vtep(&mut self, vtep: Ipv4Addr, vni: u32) -> Result<(), DatapathError> {
        if vni == 0 || vni > VNI_MAX {
            return Err(DatapathError::BadVni(vni));
        }
        map_op!(
            names::VTEPS,
            self.hash_map::<VtepKey, VtepEntry>(names::VTEPS)?.insert(
                VtepKey {
                    vtep: vtep.octets(),
                    vni
                },
                VtepEntry { flags: 0 },
                0
            )
        )
    }

    /// Withdraws a VTEP's permission for one VNI (idempotent).
    pub fn remove_vtep(&mut self, vtep: Ipv4Addr, vni: u32) -> Result<(), DatapathError> {
        map_op!(
            names::VTEPS,
            ignore_missing(
                self.hash_map::<VtepKey, VtepEntry>(names::VTEPS)?
                    .remove(&VtepKey {
                        vtep: vtep.octets(),
                        vni
                    })
            )
        )
    }

    /// Removes every entry of a network (local and remote endpoints, VTEP permissions, ARP
    /// entries). Returns how many entries went.
    pub fn remove_network(&mut self, vni: u32) -> Result<usize, DatapathError> {
        Ok(
            self.remove_where::<EndpointKey, EndpointInfo>(names::ENDPOINTS, |_, v| v.vni == vni)?
                + self.remove_where::<NeighKey, NeighEntry>(names::NEIGH, |k, _| k.vni == vni)?
                + self.remove_where::<FdbKey, FdbEntry>(names::FDB, |k, _| k.vni == vni)?
                + self.remove_where::<VtepKey, VtepEntry>(names::VTEPS, |k, _| k.vni == vni)?,
        )
    }

    /// Deletes the entries of one hash map that match `doomed`; returns how many.
    fn remove_where<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
        doomed: impl Fn(&K, &V) -> bool,
    ) -> Result<usize, DatapathError> {
        let mut map = self.hash_map::<K, V>(name)?;
        // Collect first: deleting while iterating a BPF hash map can skip or repeat keys.
        let keys: Vec<K> = map
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| doomed(k, v))
            .map(|(k, _)| k)
            .collect();
        for key in &keys {
            map_op!(name, ignore_missing(map.remove(key)))?;
        }
        Ok(keys.len())
    }
}
