//! The maps' contents as plain data, and writing changes to them.
//!
//! [`MapState`] is a whole picture of the per-network maps (what a mark-and-sweep compares);
//! [`ChangeSet`] is a list of single-entry writes and deletes that [`Datapath::apply_changes`]
//! carries out one by one, recording each one's outcome, so that one failed write (a full map)
//! never stops the others. Deletes go first, so space freed in this set is there for its writes.

use std::collections::BTreeMap;

use aya::maps::MapError;
use netd_common::maps::{
    EndpointInfo, EndpointKey, FdbEntry, FdbKey, MapDef, MapId, NeighEntry, NeighKey, ParentInfo,
    ParentKey, VtepEntry, VtepKey, def,
};

use super::{Datapath, DatapathError, map_error};

/// Entries of every per-network map (CONFIG and STATS are not part of it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapState {
    pub endpoints: BTreeMap<EndpointKey, EndpointInfo>,
    pub fdb: BTreeMap<FdbKeyOrd, FdbEntry>,
    pub neigh: BTreeMap<NeighKeyOrd, NeighEntry>,
    pub vteps: BTreeMap<VtepKeyOrd, VtepEntry>,
    pub parents: BTreeMap<ParentKeyOrd, ParentInfo>,
}

impl MapState {
    /// The maps it holds, in [`MapId`] order: the per-network maps, which the reconciler
    /// writes and whose fill and failures `netd status` and the metrics show.
    pub const MAPS: [MapId; 5] = [
        MapId::Endpoints,
        MapId::Fdb,
        MapId::Neigh,
        MapId::Vteps,
        MapId::Parents,
    ];

    /// How many entries of map `id` it holds (none of a map not in [`Self::MAPS`]).
    pub fn len_of(&self, id: MapId) -> usize {
        match id {
            MapId::Endpoints => self.endpoints.len(),
            MapId::Fdb => self.fdb.len(),
            MapId::Neigh => self.neigh.len(),
            MapId::Vteps => self.vteps.len(),
            MapId::Parents => self.parents.len(),
            _ => 0,
        }
    }
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

impl From<FdbKey> for FdbKeyOrd {
    fn from(k: FdbKey) -> Self {
        Self(k.vni, k.mac)
    }
}
impl From<NeighKey> for NeighKeyOrd {
    fn from(k: NeighKey) -> Self {
        Self(k.vni, k.ipv4)
    }
}
impl From<VtepKey> for VtepKeyOrd {
    fn from(k: VtepKey) -> Self {
        Self(k.vtep, k.vni)
    }
}
impl From<ParentKey> for ParentKeyOrd {
    fn from(k: ParentKey) -> Self {
        Self(k.ifindex, k.vlan)
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

    /// How map `id`'s changes went (none, for a map not in [`MapState::MAPS`]).
    pub fn outcome(&self, id: MapId) -> MapOutcome<'_> {
        fn of<K, V>(changes: &[Change<K, V>]) -> MapOutcome<'_> {
            let mut outcome = MapOutcome::default();
            for change in changes {
                match &change.outcome {
                    Some(Ok(())) => outcome.any_done = true,
                    Some(Err(error)) => {
                        outcome.failed += 1;
                        outcome.first_error.get_or_insert(error);
                    }
                    None => {}
                }
            }
            outcome
        }
        match id {
            MapId::Endpoints => of(&self.endpoints),
            MapId::Fdb => of(&self.fdb),
            MapId::Neigh => of(&self.neigh),
            MapId::Vteps => of(&self.vteps),
            MapId::Parents => of(&self.parents),
            _ => MapOutcome::default(),
        }
    }

    /// The first failure, with its map.
    pub fn first_failure(&self) -> Option<(MapId, &WriteError)> {
        MapState::MAPS
            .into_iter()
            .find_map(|id| Some((id, self.outcome(id).first_error?)))
    }
}

/// How one map's changes went, once applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapOutcome<'a> {
    /// Changes that failed.
    pub failed: u64,
    /// Whether any change succeeded.
    pub any_done: bool,
    /// The first failure.
    pub first_error: Option<&'a WriteError>,
}

/// What [`Datapath::apply_changes`] did. What failed, and why, is in each change's outcome
/// ([`ChangeSet::outcome`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub written: usize,
    pub deleted: usize,
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

impl Datapath {
    /// Every entry of hash map `D`, keyed as [`MapState`] keys it.
    fn entries<D: MapDef, K: Ord + From<D::Key>>(
        &mut self,
    ) -> Result<BTreeMap<K, D::Value>, DatapathError> {
        self.hash_map::<D>()?
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(map_error::<D>)?;
                Ok((K::from(k), v))
            })
            .collect()
    }

    /// Reads every entry of the per-network maps.
    pub fn read_state(&mut self) -> Result<MapState, DatapathError> {
        Ok(MapState {
            endpoints: self.entries::<def::Endpoints, _>()?,
            fdb: self.entries::<def::Fdb, _>()?,
            neigh: self.entries::<def::Neigh, _>()?,
            vteps: self.entries::<def::Vteps, _>()?,
            parents: self.entries::<def::Parents, _>()?,
        })
    }

    /// Applies the deletes (`deletes == true`) or the writes of hash map `D`'s changes,
    /// recording each one's outcome in it.
    fn apply_map<D: MapDef, K: Copy>(
        &mut self,
        changes: &mut [Change<K, D::Value>],
        deletes: bool,
        stats: &mut ApplyStats,
    ) -> Result<(), DatapathError>
    where
        D::Key: From<K>,
    {
        let mut map = self.hash_map::<D>()?;
        for change in changes.iter_mut().filter(|c| c.value.is_none() == deletes) {
            let key = D::Key::from(change.key);
            let result = match change.value {
                Some(value) => map.insert(key, value, 0),
                None => match map.remove(&key) {
                    Err(e) if is_missing(&e) => Ok(()),
                    other => other,
                },
            };
            change.outcome = Some(result.as_ref().map(|_| ()).map_err(write_error));
            match (result.is_ok(), deletes) {
                (true, true) => stats.deleted += 1,
                (true, false) => stats.written += 1,
                (false, _) => {}
            }
        }
        Ok(())
    }

    /// Carries out every change, recording each one's outcome in it. A change that fails (a
    /// full map, most likely) is recorded and the rest still run. Deletes run first, in the
    /// order that never leaves an ARP answer without the FDB entry behind it (NEIGH first,
    /// FDB last); then writes, in the reverse order. Errs only when a map cannot be opened.
    pub fn apply_changes(&mut self, changes: &mut ChangeSet) -> Result<ApplyStats, DatapathError> {
        let mut stats = ApplyStats::default();
        let (c, s) = (changes, &mut stats);
        self.apply_map::<def::Neigh, _>(&mut c.neigh, true, s)?;
        self.apply_map::<def::Endpoints, _>(&mut c.endpoints, true, s)?;
        self.apply_map::<def::Parents, _>(&mut c.parents, true, s)?;
        self.apply_map::<def::Vteps, _>(&mut c.vteps, true, s)?;
        self.apply_map::<def::Fdb, _>(&mut c.fdb, true, s)?;
        self.apply_map::<def::Fdb, _>(&mut c.fdb, false, s)?;
        self.apply_map::<def::Vteps, _>(&mut c.vteps, false, s)?;
        self.apply_map::<def::Parents, _>(&mut c.parents, false, s)?;
        self.apply_map::<def::Endpoints, _>(&mut c.endpoints, false, s)?;
        self.apply_map::<def::Neigh, _>(&mut c.neigh, false, s)?;
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
            Some((id, error)) => Err(DatapathError::Write {
                name: id.name(),
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

    #[test]
    fn outcomes_are_counted_per_map() {
        let full = WriteError {
            full: true,
            message: "full".into(),
        };
        let done = |key| Change {
            outcome: Some(Ok(())),
            ..Change::new(key, Some(EndpointInfo::default()))
        };
        let mut changes = ChangeSet {
            endpoints: vec![done(1), done(2)],
            neigh: vec![Change::new(NeighKeyOrd(1, [10, 0, 0, 1]), None)],
            ..ChangeSet::default()
        };
        let failed = |key, message: &str| Change {
            outcome: Some(Err(WriteError {
                message: message.into(),
                ..full.clone()
            })),
            ..Change::new(VtepKeyOrd(key, 1), Some(VtepEntry::default()))
        };
        changes.vteps = vec![
            failed([10, 0, 0, 1], "first"),
            failed([10, 0, 0, 2], "second"),
        ];

        let endpoints = changes.outcome(MapId::Endpoints);
        assert_eq!((endpoints.failed, endpoints.any_done), (0, true));
        assert!(endpoints.first_error.is_none());
        let vteps = changes.outcome(MapId::Vteps);
        assert_eq!((vteps.failed, vteps.any_done), (2, false));
        assert_eq!(vteps.first_error.map(|e| e.message.as_str()), Some("first"));
        // Not applied yet: neither done nor failed.
        assert_eq!(changes.outcome(MapId::Neigh), MapOutcome::default());
        // A map the set does not hold.
        assert_eq!(changes.outcome(MapId::Stats), MapOutcome::default());
        assert_eq!(
            changes
                .first_failure()
                .map(|(id, e)| (id, e.message.as_str())),
            Some((MapId::Vteps, "first"))
        );
    }
}
