//! The maps' contents as plain data, and writing changes to them.
//!
//! [`MapState`] is a whole picture of the per-network maps (what a mark-and-sweep compares);
//! [`ChangeSet`] is a list of single-entry writes and deletes that [`Datapath::apply_changes`]
//! carries out one by one, recording each one's outcome, so that one failed write (a full map)
//! never stops the others. Deletes go first, so space freed in this set is there for its writes.

use std::collections::BTreeMap;

use aya::maps::MapError;
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdbKeyOrd(pub u32, pub [u8; 6]);
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NeighKeyOrd(pub u32, pub [u8; 4]);
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VtepKeyOrd(pub [u8; 4], pub u32);
/// (parent ifindex, VLAN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// Why one entry could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteError {
    /// The map is at its capacity (`E2BIG`).
    pub full: bool,
    pub message: String,
}

/// One write (`value: Some`) or delete (`None`) of one entry, and once applied, its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change<K, V> {
    pub key: K,
    pub value: Option<V>,
    /// `None` until [`Datapath::apply_changes`] ran.
    pub outcome: Option<Result<(), WriteError>>,
}

impl<K, V> Change<K, V> {
    pub fn new(key: K, value: Option<V>) -> Self {
        Self {
            key,
            value,
            outcome: None,
        }
    }

    /// Whether it was applied successfully.
    pub fn done(&self) -> bool {
        matches!(self.outcome, Some(Ok(())))
    }
}

/// Changes to the per-network maps, per map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    pub fdb: Vec<Change<FdbKeyOrd, FdbEntry>>,
    pub neigh: Vec<Change<NeighKeyOrd, NeighEntry>>,
    pub vteps: Vec<Change<VtepKeyOrd, VtepEntry>>,
    pub endpoints: Vec<Change<EndpointKey, EndpointInfo>>,
    pub parents: Vec<Change<ParentKeyOrd, ParentInfo>>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.fdb.is_empty()
            && self.neigh.is_empty()
            && self.vteps.is_empty()
            && self.endpoints.is_empty()
            && self.parents.is_empty()
    }

    /// The changes that turn `current` into `desired`.
    pub fn between(current: &MapState, desired: &MapState) -> Self {
        Self {
            fdb: diff(&current.fdb, &desired.fdb),
            neigh: diff(&current.neigh, &desired.neigh),
            vteps: diff(&current.vteps, &desired.vteps),
            endpoints: diff(&current.endpoints, &desired.endpoints),
            parents: diff(&current.parents, &desired.parents),
        }
    }

    /// The first failure, with its map's name.
    pub fn first_failure(&self) -> Option<(&'static str, &WriteError)> {
        fn failed<'a, K, V>(
            name: &'static str,
            changes: &'a [Change<K, V>],
        ) -> Option<(&'static str, &'a WriteError)> {
            changes.iter().find_map(|c| match &c.outcome {
                Some(Err(e)) => Some((name, e)),
                _ => None,
            })
        }
        failed(names::FDB, &self.fdb)
            .or_else(|| failed(names::NEIGH, &self.neigh))
            .or_else(|| failed(names::VTEPS, &self.vteps))
            .or_else(|| failed(names::ENDPOINTS, &self.endpoints))
            .or_else(|| failed(names::PARENTS, &self.parents))
    }
}

/// What [`Datapath::apply_changes`] did, per map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub written: usize,
    pub deleted: usize,
    /// (map, failed writes or deletes) for the maps where something failed.
    pub failed: Vec<(&'static str, usize)>,
}

/// Entries of `desired` that `current` lacks or has with another value, and keys of `current`
/// that `desired` lacks.
fn diff<K: Ord + Copy, V: PartialEq + Copy>(
    current: &BTreeMap<K, V>,
    desired: &BTreeMap<K, V>,
) -> Vec<Change<K, V>> {
    let upserts = desired
        .iter()
        .filter(|(k, v)| current.get(k) != Some(v))
        .map(|(k, v)| Change::new(*k, Some(*v)));
    let deletes = current
        .keys()
        .filter(|k| !desired.contains_key(k))
        .map(|k| Change::new(*k, None));
    upserts.chain(deletes).collect()
}

fn write_error(error: &MapError) -> WriteError {
    let full = matches!(error, MapError::SyscallError(e)
        if e.io_error.raw_os_error() == Some(libc::E2BIG));
    WriteError {
        full,
        message: error.to_string(),
    }
}

/// Deleting what is already gone is not an error: removal is idempotent.
fn is_missing(error: &MapError) -> bool {
    match error {
        MapError::KeyNotFound => true,
        MapError::SyscallError(e) => e.io_error.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// Applies the deletes (`deletes == true`) or the writes of one map's changes.
macro_rules! apply_map {
    ($self:ident, $name:expr, $K:ty, $V:ty, $changes:expr, $deletes:expr, $stats:ident) => {{
        let mut map = $self.hash_map::<$K, $V>($name)?;
        let mut failed = 0;
        for change in $changes
            .iter_mut()
            .filter(|c| c.value.is_none() == $deletes)
        {
            let key = <$K>::from(change.key);
            let result = match change.value {
                Some(value) => map.insert(key, value, 0),
                None => match map.remove(&key) {
                    Err(e) if is_missing(&e) => Ok(()),
                    other => other,
                },
            };
            change.outcome = Some(result.as_ref().map(|_| ()).map_err(write_error));
            match (result.is_ok(), $deletes) {
                (true, true) => $stats.deleted += 1,
                (true, false) => $stats.written += 1,
                (false, _) => failed += 1,
            }
        }
        if failed > 0 {
            match $stats.failed.iter_mut().find(|(n, _)| *n == $name) {
                Some((_, n)) => *n += failed,
                None => $stats.failed.push(($name, failed)),
            }
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

    /// Carries out every change, recording each one's outcome in it. A change that fails (a
    /// full map, most likely) is recorded and the rest still run. Deletes run first, in the
    /// order that never leaves an ARP answer without the FDB entry behind it (NEIGH first,
    /// FDB last); then writes, in the reverse order. Errs only when a map cannot be opened.
    pub fn apply_changes(&mut self, changes: &mut ChangeSet) -> Result<ApplyStats, DatapathError> {
        let mut stats = ApplyStats::default();
        let c = changes;
        apply_map!(
            self,
            names::NEIGH,
            NeighKey,
            NeighEntry,
            c.neigh,
            true,
            stats
        );
        apply_map!(
            self,
            names::ENDPOINTS,
            EndpointKey,
            EndpointInfo,
            c.endpoints,
            true,
            stats
        );
        apply_map!(
            self,
            names::PARENTS,
            ParentKey,
            ParentInfo,
            c.parents,
            true,
            stats
        );
        apply_map!(self, names::VTEPS, VtepKey, VtepEntry, c.vteps, true, stats);
        apply_map!(self, names::FDB, FdbKey, FdbEntry, c.fdb, true, stats);
        apply_map!(self, names::FDB, FdbKey, FdbEntry, c.fdb, false, stats);
        apply_map!(
            self,
            names::VTEPS,
            VtepKey,
            VtepEntry,
            c.vteps,
            false,
            stats
        );
        apply_map!(
            self,
            names::PARENTS,
            ParentKey,
            ParentInfo,
            c.parents,
            false,
            stats
        );
        apply_map!(
            self,
            names::ENDPOINTS,
            EndpointKey,
            EndpointInfo,
            c.endpoints,
            false,
            stats
        );
        apply_map!(
            self,
            names::NEIGH,
            NeighKey,
            NeighEntry,
            c.neigh,
            false,
            stats
        );
        Ok(stats)
    }

    /// Makes the maps hold exactly `desired`, touching only entries that differ from `current`
    /// (normally what [`Self::read_state`] returned). Fails with the first write that failed,
    /// after every other change was made.
    pub fn apply(
        &mut self,
        current: &MapState,
        desired: &MapState,
    ) -> Result<ApplyStats, DatapathError> {
        let mut changes = ChangeSet::between(current, desired);
        let stats = self.apply_changes(&mut changes)?;
        match changes.first_failure() {
            Some((name, error)) => Err(DatapathError::Write {
                name,
                message: error.message.clone(),
            }),
            None => Ok(stats),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_new_changed_and_gone() {
        let current: BTreeMap<u32, u32> = [(1, 10), (2, 20), (3, 30)].into();
        let desired: BTreeMap<u32, u32> = [(1, 10), (2, 21), (4, 40)].into();
        let changes: Vec<(u32, Option<u32>)> = diff(&current, &desired)
            .into_iter()
            .map(|c| (c.key, c.value))
            .collect();
        assert_eq!(changes, vec![(2, Some(21)), (4, Some(40)), (3, None)]);
    }
}
