//! An in-memory [`Kernel`] for the reconciler's unit tests: maps that behave as the kernel's
//! hash maps do (a new key in a full map fails with `E2BIG`, a key already there takes a new
//! value, deleting a missing key is fine; deletes before writes, in [`Datapath::apply_changes`]'s
//! order; [`super::kernel::conformance`] holds it to the same rules as the real ones), and
//! interfaces that a test adds, removes and looks at.
//!
//! [`Datapath::apply_changes`]: crate::datapath::Datapath::apply_changes

use std::collections::{BTreeMap, BTreeSet};

use netd_common::maps::MapId;

use super::kernel::{Links, Maps};
use crate::{
    datapath::{ApplyStats, Change, ChangeSet, DatapathError, Hook, MapState, WriteError},
    netlink::{LinkInfo, NetlinkError},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeLink {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub promisc: bool,
}

#[derive(Debug)]
pub struct FakeKernel {
    /// What the maps hold: a test may change it behind the reconciler's back.
    pub maps: MapState,
    /// Capacities a test gave; every other map holds [`FakeKernel::DEFAULT_CAPACITY`] entries.
    capacities: BTreeMap<MapId, u32>,
    /// While set, no map can be used: every apply and read fails as a whole.
    pub broken: bool,
    /// Single-entry writes and deletes attempted, failed ones included.
    pub operations: usize,
    pub links: BTreeMap<String, FakeLink>,
    /// (hook label, interface) of every program attached.
    pub hooks: BTreeSet<(&'static str, String)>,
    /// While set, attaching a program fails (its link cannot be pinned: bpffs full, say).
    pub refuse_hooks: bool,
    next_ifindex: u32,
}

impl Default for FakeKernel {
    fn default() -> Self {
        Self {
            maps: MapState::default(),
            capacities: BTreeMap::new(),
            broken: false,
            operations: 0,
            links: BTreeMap::new(),
            hooks: BTreeSet::new(),
            refuse_hooks: false,
            next_ifindex: 10,
        }
    }
}

impl FakeKernel {
    /// What each map holds unless a test says otherwise: room for every test's endpoints.
    pub const DEFAULT_CAPACITY: u32 = 64;

    /// Gives map `map` room for `capacity` entries.
    pub fn with_capacity(mut self, map: MapId, capacity: u32) -> Self {
        self.capacities.insert(map, capacity);
        self
    }

    /// An interface appears; returns its ifindex (a new one each time, as the kernel's).
    pub fn add_link(&mut self, ifname: &str) -> u32 {
        let ifindex = self.next_ifindex;
        self.next_ifindex += 1;
        let [_, _, a, b] = ifindex.to_be_bytes();
        self.links.insert(
            ifname.into(),
            FakeLink {
                ifindex,
                mac: [2, 0xaa, 0, 0, a, b],
                promisc: false,
            },
        );
        ifindex
    }

    /// An interface goes, and its hooks with it (as a deleted interface's do).
    pub fn remove_link(&mut self, ifname: &str) {
        self.links.remove(ifname);
        self.hooks.retain(|(_, i)| i != ifname);
    }

    pub fn hooked(&self, hook: Hook, ifname: &str) -> bool {
        self.hooks.contains(&(hook.label(), ifname.to_string()))
    }
}

fn full() -> WriteError {
    WriteError {
        full: true,
        message: "map update failed: Argument list too long (os error 7)".into(),
    }
}

/// Runs the deletes (`deletes`) or the writes of one map's changes, as the kernel would.
fn apply_map<K: Ord + Copy, V: Copy>(
    map: &mut BTreeMap<K, V>,
    capacity: u32,
    changes: &mut [Change<K, V>],
    deletes: bool,
    stats: &mut ApplyStats,
    operations: &mut usize,
) {
    for change in changes.iter_mut().filter(|c| c.value.is_none() == deletes) {
        *operations += 1;
        let outcome = match change.value {
            None => {
                map.remove(&change.key);
                stats.deleted += 1;
                Ok(())
            }
            Some(_) if !map.contains_key(&change.key) && map.len() >= capacity as usize => {
                Err(full())
            }
            Some(value) => {
                map.insert(change.key, value);
                stats.written += 1;
                Ok(())
            }
        };
        change.outcome = Some(outcome);
    }
}

impl Maps for FakeKernel {
    fn apply_changes(&mut self, changes: &mut ChangeSet) -> Result<ApplyStats, DatapathError> {
        if self.broken {
            return Err(DatapathError::MissingMap(MapId::Fdb.name()));
        }
        let mut stats = ApplyStats::default();
        let cap = |map| self.capacity(map);
        let (endpoints, fdb, neigh, vteps, parents) = (
            cap(MapId::Endpoints),
            cap(MapId::Fdb),
            cap(MapId::Neigh),
            cap(MapId::Vteps),
            cap(MapId::Parents),
        );
        let (m, c, s, o) = (&mut self.maps, changes, &mut stats, &mut self.operations);
        // Datapath::apply_changes' order: deletes NEIGH first and FDB last, writes the reverse.
        apply_map(&mut m.neigh, neigh, &mut c.neigh, true, s, o);
        apply_map(&mut m.endpoints, endpoints, &mut c.endpoints, true, s, o);
        apply_map(&mut m.parents, parents, &mut c.parents, true, s, o);
        apply_map(&mut m.vteps, vteps, &mut c.vteps, true, s, o);
        apply_map(&mut m.fdb, fdb, &mut c.fdb, true, s, o);
        apply_map(&mut m.fdb, fdb, &mut c.fdb, false, s, o);
        apply_map(&mut m.vteps, vteps, &mut c.vteps, false, s, o);
        apply_map(&mut m.parents, parents, &mut c.parents, false, s, o);
        apply_map(&mut m.endpoints, endpoints, &mut c.endpoints, false, s, o);
        apply_map(&mut m.neigh, neigh, &mut c.neigh, false, s, o);
        Ok(stats)
    }

    fn read_state(&mut self) -> Result<MapState, DatapathError> {
        if self.broken {
            return Err(DatapathError::MissingMap(MapId::Fdb.name()));
        }
        Ok(self.maps.clone())
    }

    fn capacity(&self, map: MapId) -> u32 {
        self.capacities
            .get(&map)
            .copied()
            .unwrap_or(Self::DEFAULT_CAPACITY)
    }
}

impl Links for FakeKernel {
    fn ifindex(&self, ifname: &str) -> Option<u32> {
        self.links.get(ifname).map(|l| l.ifindex)
    }

    fn link_info(&self, ifname: &str) -> Result<LinkInfo, NetlinkError> {
        let link = self
            .links
            .get(ifname)
            .ok_or_else(|| NetlinkError::NoSuchLink(ifname.into()))?;
        Ok(LinkInfo {
            mtu: 1500,
            mac: link.mac,
            promisc: link.promisc,
        })
    }

    fn set_promisc(&mut self, ifname: &str, on: bool) -> Result<(), NetlinkError> {
        let link = self
            .links
            .get_mut(ifname)
            .ok_or_else(|| NetlinkError::NoSuchLink(ifname.into()))?;
        link.promisc = on;
        Ok(())
    }

    fn attach(&mut self, hook: Hook, ifname: &str) -> Result<(), DatapathError> {
        if !self.links.contains_key(ifname) {
            return Err(DatapathError::NoSuchInterface(ifname.into()));
        }
        if self.refuse_hooks {
            return Err(DatapathError::LinkPin {
                path: format!("links/{}-{ifname}", hook.label()).into(),
                source: std::io::Error::from_raw_os_error(28),
            });
        }
        self.hooks.insert((hook.label(), ifname.into()));
        Ok(())
    }

    fn detach(&mut self, hook: Hook, ifname: &str) -> Result<(), DatapathError> {
        self.hooks.remove(&(hook.label(), ifname.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::kernel::conformance;

    #[test]
    fn the_fake_maps_follow_the_rules_of_the_real_ones() {
        for capacity in [2, 5] {
            let mut fake = FakeKernel::default().with_capacity(MapId::Endpoints, capacity);
            conformance::check(&mut fake).unwrap();
        }
    }

    /// A positive control for the conformance check: maps that run writes before deletes
    /// (losing the write a delete of the same set would have made room for) are caught.
    #[test]
    fn the_conformance_check_catches_writes_before_deletes() {
        struct WritesFirst(FakeKernel);
        impl Maps for WritesFirst {
            fn apply_changes(
                &mut self,
                changes: &mut ChangeSet,
            ) -> Result<ApplyStats, DatapathError> {
                let mut stats = ApplyStats::default();
                let cap = self.0.capacity(MapId::Endpoints);
                let (m, o) = (&mut self.0.maps, &mut self.0.operations);
                apply_map(
                    &mut m.endpoints,
                    cap,
                    &mut changes.endpoints,
                    false,
                    &mut stats,
                    o,
                );
                apply_map(
                    &mut m.endpoints,
                    cap,
                    &mut changes.endpoints,
                    true,
                    &mut stats,
                    o,
                );
                apply_map(&mut m.fdb, 64, &mut changes.fdb, false, &mut stats, o);
                Ok(stats)
            }
            fn read_state(&mut self) -> Result<MapState, DatapathError> {
                self.0.read_state()
            }
            fn capacity(&self, map: MapId) -> u32 {
                self.0.capacity(map)
            }
        }
        let mut maps = WritesFirst(FakeKernel::default().with_capacity(MapId::Endpoints, 3));
        let broken = conformance::check(&mut maps).unwrap_err();
        assert!(broken.contains("room a delete"), "{broken}");
    }
}
