//! The maps' whole contents as plain data, and writing the difference between two such states:
//! what the reconciler uses to make the maps equal to the desired state (mark and sweep) without
//! ever flushing them.

use std::collections::BTreeMap;

use netd_common::maps::{
    EndpointInfo, EndpointKey, FdbEntry, FdbKey, NeighEntry, NeighKey, ParentInfo, ParentKey,
    VtepEntry, VtepKey, names,
};

use super::{Datapath, DatapathError};

/// Entries of every per-network map (CONFIG and STATS are not part of it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapState {
    pub endpoints: BTreeMap<EndpointKey, EndpointInfo>,
    pub fdb: BTreeMap<FdbKeyOrd, FdbEntry>,
    pub neigh: BTreeMap<NeighKeyOrd, NeighEntry>,
    pub vteps: BTreeMap<VtepKeyOrd, VtepEntry>,
    pub parents: BTreeMap<ParentKeyOrd, ParentInfo>,
}

/// Ordered wrappers (the shared map keys are plain `repr(C)` structs without `Ord`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbKeyOrd(pub u32, pub [u8; 6]);
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NeighKeyOrd(pub u32, pub [u8; 4]);
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VtepKeyOrd(pub [u8; 4], pub u32);
/// (parent ifindex, VLAN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ParentKeyOrd(pub u32, pub u16);

impl From<ParentKeyOrd> for ParentKey {
    fn from(k: ParentKeyOrd) -> Self {
        ParentKey {
            ifindex: k.0,
            vlan: k.1,
            _pad: 0,
        }
    }
}

impl From<FdbKeyOrd> for FdbKey {
    fn from(k: FdbKeyOrd) -> Self {
        FdbKey::new(k.0, k.1)
    }
}
impl From<NeighKeyOrd> for NeighKey {
    fn from(k: NeighKeyOrd) -> Self {
        NeighKey {
            vni: k.0,
            ipv4: k.1,
        }
    }
}
impl From<VtepKeyOrd> for VtepKey {
    fn from(k: VtepKeyOrd) -> Self {
        VtepKey {
            vtep: k.0,
            vni: k.1,
        }
    }
}

/// What [`Datapath::apply`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub written: usize,
    pub deleted: usize,
}

/// Entries of `desired` that `current` lacks or has with another value, and keys of `current`
/// that `desired` lacks.
fn diff<K: Ord + Copy, V: PartialEq + Copy>(
    current: &BTreeMap<K, V>,
    desired: &BTreeMap<K, V>,
) -> (Vec<(K, V)>, Vec<K>) {
    let upserts = desired
        .iter()
        .filter(|(k, v)| current.get(k) != Some(v))
        .map(|(k, v)| (*k, *v))
        .collect();
    let deletes = current
        .keys()
        .filter(|k| !desired.contains_key(k))
        .copied()
        .collect();
    (upserts, deletes)
}

macro_rules! write_map {
    ($self:ident, $name:expr, $K:ty, $V:ty, $upserts:expr, $stats:ident) => {{
        let mut map = $self.hash_map::<$K, $V>($name)?;
        for (k, v) in $upserts {
            map.insert(<$K>::from(k), v, 0)
                .map_err(|source| DatapathError::Map {
                    name: $name,
                    source,
                })?;
            $stats.written += 1;
        }
    }};
}

macro_rules! delete_from_map {
    ($self:ident, $name:expr, $K:ty, $V:ty, $deletes:expr, $stats:ident) => {{
        let mut map = $self.hash_map::<$K, $V>($name)?;
        for k in $deletes {
            match map.remove(&<$K>::from(k)) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(DatapathError::Map {
                        name: $name,
                        source,
                    });
                }
            }
            $stats.deleted += 1;
        }
    }};
}

impl Datapath {
    /// Reads every entry of the per-network maps.
    pub fn read_state(&mut self) -> Result<MapState, DatapathError> {
        let mut state = MapState::default();
        for item in self
            .hash_map::<EndpointKey, EndpointInfo>(names::ENDPOINTS)?
            .iter()
        {
            let (k, v) = item.map_err(|source| DatapathError::Map {
                name: names::ENDPOINTS,
                source,
            })?;
            state.endpoints.insert(k, v);
        }
        for item in self.hash_map::<FdbKey, FdbEntry>(names::FDB)?.iter() {
            let (k, v) = item.map_err(|source| DatapathError::Map {
                name: names::FDB,
                source,
            })?;
            state.fdb.insert(FdbKeyOrd(k.vni, k.mac), v);
        }
        for item in self.hash_map::<NeighKey, NeighEntry>(names::NEIGH)?.iter() {
            let (k, v) = item.map_err(|source| DatapathError::Map {
                name: names::NEIGH,
                source,
            })?;
            state.neigh.insert(NeighKeyOrd(k.vni, k.ipv4), v);
        }
        for item in self.hash_map::<VtepKey, VtepEntry>(names::VTEPS)?.iter() {
            let (k, v) = item.map_err(|source| DatapathError::Map {
                name: names::VTEPS,
                source,
            })?;
            state.vteps.insert(VtepKeyOrd(k.vtep, k.vni), v);
        }
        for item in self
            .hash_map::<ParentKey, ParentInfo>(names::PARENTS)?
            .iter()
        {
            let (k, v) = item.map_err(|source| DatapathError::Map {
                name: names::PARENTS,
                source,
            })?;
            state.parents.insert(ParentKeyOrd(k.ifindex, k.vlan), v);
        }
        Ok(state)
    }

    /// Makes the maps hold exactly `desired`, touching only entries that differ from `current`
    /// (normally what [`Self::read_state`] returned). Writes go in the order that keeps each
    /// intermediate state safe (FDB before the ARP entries that lead to it), deletes in reverse.
    pub fn apply(
        &mut self,
        current: &MapState,
        desired: &MapState,
    ) -> Result<ApplyStats, DatapathError> {
        let mut stats = ApplyStats::default();
        let (fdb_up, fdb_del) = diff(&current.fdb, &desired.fdb);
        let (vtep_up, vtep_del) = diff(&current.vteps, &desired.vteps);
        let (ep_up, ep_del) = diff(&current.endpoints, &desired.endpoints);
        let (neigh_up, neigh_del) = diff(&current.neigh, &desired.neigh);
        let (parent_up, parent_del) = diff(&current.parents, &desired.parents);
        write_map!(self, names::FDB, FdbKey, FdbEntry, fdb_up, stats);
        write_map!(self, names::VTEPS, VtepKey, VtepEntry, vtep_up, stats);
        write_map!(
            self,
            names::PARENTS,
            ParentKey,
            ParentInfo,
            parent_up,
            stats
        );
        write_map!(
            self,
            names::ENDPOINTS,
            EndpointKey,
            EndpointInfo,
            ep_up,
            stats
        );
        write_map!(self, names::NEIGH, NeighKey, NeighEntry, neigh_up, stats);
        delete_from_map!(self, names::NEIGH, NeighKey, NeighEntry, neigh_del, stats);
        delete_from_map!(
            self,
            names::ENDPOINTS,
            EndpointKey,
            EndpointInfo,
            ep_del,
            stats
        );
        delete_from_map!(
            self,
            names::PARENTS,
            ParentKey,
            ParentInfo,
            parent_del,
            stats
        );
        delete_from_map!(self, names::VTEPS, VtepKey, VtepEntry, vtep_del, stats);
        delete_from_map!(self, names::FDB, FdbKey, FdbEntry, fdb_del, stats);
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_new_changed_and_gone() {
        let current: BTreeMap<u32, u32> = [(1, 10), (2, 20), (3, 30)].into();
        let desired: BTreeMap<u32, u32> = [(1, 10), (2, 21), (4, 40)].into();
        let (up, del) = diff(&current, &desired);
        assert_eq!(up, vec![(2, 21), (4, 40)]);
        assert_eq!(del, vec![3]);
    }
}
