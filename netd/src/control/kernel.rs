//! What the reconciler does to the kernel, behind two narrow traits: [`Maps`] (write a
//! [`ChangeSet`], read every entry back) and [`Links`] (interfaces by name, the programs'
//! hooks, promiscuous mode). The daemon's [`Datapath`] implements both, with netlink for the
//! interfaces; the reconciler's unit tests use in-memory fakes that behave as the real maps do
//! ([`conformance`] checks both against the same rules), so that its decisions are tested
//! without root or a kernel.

use netd_common::maps::MapId;

use crate::{
    datapath::{ApplyStats, ChangeSet, Datapath, DatapathError, Hook, MapState},
    netlink::{self, LinkInfo, NetlinkError},
};

/// The per-network maps, as the reconciler writes and checks them.
pub trait Maps {
    /// Carries out every change, recording each one's outcome in it: a change that fails (a
    /// full map) is recorded and the others still run; deletes run before writes, so that
    /// room freed in a set is there for its writes. Errs only when a map cannot be used at all.
    fn apply_changes(&mut self, changes: &mut ChangeSet) -> Result<ApplyStats, DatapathError>;

    /// Every entry the maps hold now.
    fn read_state(&mut self) -> Result<MapState, DatapathError>;

    /// How many entries map `map` holds at most.
    fn capacity(&self, map: MapId) -> u32;
}

/// This host's interfaces, as the reconciler finds and hooks them.
pub trait Links {
    /// The ifindex of an interface of this namespace; `None` when there is none by that name.
    fn ifindex(&self, ifname: &str) -> Option<u32>;

    /// An interface's MAC address and promiscuous mode.
    fn link_info(&self, ifname: &str) -> Result<LinkInfo, NetlinkError>;

    fn set_promisc(&mut self, ifname: &str, on: bool) -> Result<(), NetlinkError>;

    /// Hooks `hook`'s program to `ifname`; attaching again replaces it in place.
    fn attach(&mut self, hook: Hook, ifname: &str) -> Result<(), DatapathError>;

    /// Takes `hook`'s program off `ifname`; taking off what is not there is not an error.
    fn detach(&mut self, hook: Hook, ifname: &str) -> Result<(), DatapathError>;
}

/// Both sides, as one value: the daemon's [`Datapath`] holds the maps and the hooks alike.
pub trait Kernel: Maps + Links {}

impl<T: Maps + Links> Kernel for T {}

impl Maps for Datapath {
    fn apply_changes(&mut self, changes: &mut ChangeSet) -> Result<ApplyStats, DatapathError> {
        Datapath::apply_changes(self, changes)
    }

    fn read_state(&mut self) -> Result<MapState, DatapathError> {
        Datapath::read_state(self)
    }

    fn capacity(&self, map: MapId) -> u32 {
        self.capacities().of_map(map)
    }
}

impl Links for Datapath {
    fn ifindex(&self, ifname: &str) -> Option<u32> {
        netlink::ifindex(ifname)
    }

    fn link_info(&self, ifname: &str) -> Result<LinkInfo, NetlinkError> {
        netlink::link_info(ifname)
    }

    fn set_promisc(&mut self, ifname: &str, on: bool) -> Result<(), NetlinkError> {
        netlink::set_promisc(ifname, on)
    }

    fn attach(&mut self, hook: Hook, ifname: &str) -> Result<(), DatapathError> {
        Datapath::attach(self, hook, ifname)
    }

    fn detach(&mut self, hook: Hook, ifname: &str) -> Result<(), DatapathError> {
        Datapath::detach(self, hook, ifname)
    }
}

/// The rules of [`Maps`] the reconciler relies on, checked on any implementation: the real
/// maps (netd-tests' `pins`, as root) and the unit tests' fake alike, so that what the fake
/// lets the reconciler's tests prove holds on the kernel's maps too.
pub mod conformance {
    use netd_common::maps::{EndpointInfo, FdbEntry};

    use super::{MapId, Maps};
    use crate::datapath::{Change, ChangeSet, MapState, state::FdbKeyOrd};

    /// The NETD_ENDPOINTS capacities [`check`] takes (it writes every entry).
    pub const CAPACITIES: std::ops::RangeInclusive<u32> = 2..=1024;

    fn endpoint(ifindex: u32) -> EndpointInfo {
        let [a, b, c, d] = ifindex.to_be_bytes();
        EndpointInfo {
            vni: 300,
            mac: [2, 0, a, b, c, d],
            vlan: 0,
            ipv4: [10, b, c, d],
            flags: 0,
            parent_ifindex: 0,
        }
    }

    fn fdb(n: u8) -> (FdbKeyOrd, FdbEntry) {
        (
            FdbKeyOrd(300, [2, 0, 0, 0, 1, n]),
            FdbEntry::remote([192, 168, 0, n]),
        )
    }

    fn apply(maps: &mut impl Maps, mut changes: ChangeSet) -> Result<ChangeSet, String> {
        maps.apply_changes(&mut changes)
            .map_err(|e| format!("the maps could not be used: {e}"))?;
        Ok(changes)
    }

    fn read(maps: &mut impl Maps) -> Result<MapState, String> {
        maps.read_state()
            .map_err(|e| format!("the maps could not be read: {e}"))
    }

    fn expect(ok: bool, what: &str) -> Result<(), String> {
        if ok { Ok(()) } else { Err(what.to_string()) }
    }

    /// Runs every rule on `maps`, which must start empty and whose NETD_ENDPOINTS capacity is
    /// one of [`CAPACITIES`]; returns the first rule broken. Leaves entries behind.
    pub fn check(maps: &mut impl Maps) -> Result<(), String> {
        let capacity = maps.capacity(MapId::Endpoints);
        expect(
            CAPACITIES.contains(&capacity),
            &format!("NETD_ENDPOINTS holds {capacity} entries: give it {CAPACITIES:?}"),
        )?;
        expect(read(maps)? == MapState::default(), "the maps are not empty")?;

        // Filled to its capacity: every write succeeds and reads back.
        let first = 1000;
        let fill = ChangeSet {
            endpoints: (first..first + capacity)
                .map(|i| Change::new(i, Some(endpoint(i))))
                .collect(),
            ..ChangeSet::default()
        };
        let fill = apply(maps, fill)?;
        expect(
            fill.endpoints.iter().all(Change::done),
            "a write below the capacity failed",
        )?;
        let state = read(maps)?;
        expect(
            state.endpoints.len() == capacity as usize
                && state.endpoints.get(&first) == Some(&endpoint(first)),
            "the entries written do not read back",
        )?;

        // Full: a new key fails as full, the rest of the set (another map) is still written,
        // and a key already there takes a new value.
        let (fdb_key, fdb_entry) = fdb(1);
        let changed = EndpointInfo {
            vlan: 7,
            ..endpoint(first)
        };
        let full = apply(
            maps,
            ChangeSet {
                endpoints: vec![
                    Change::new(1, Some(endpoint(1))),
                    Change::new(first, Some(changed)),
                ],
                fdb: vec![Change::new(fdb_key, Some(fdb_entry))],
                ..ChangeSet::default()
            },
        )?;
        expect(
            matches!(&full.endpoints[0].outcome, Some(Err(e)) if e.full),
            "a new key in a full map did not fail as full",
        )?;
        expect(
            full.endpoints[1].done(),
            "a key already in a full map could not take a new value",
        )?;
        expect(
            full.fdb[0].done(),
            "a write to another map failed with the full one",
        )?;

        // One set deleting a key and writing a new one into the full map: the delete runs
        // first, so the write finds room; deleting what is not there is not an error.
        let swap = apply(
            maps,
            ChangeSet {
                endpoints: vec![
                    Change::new(1, Some(endpoint(1))),
                    Change::new(first + 1, None),
                    Change::new(7, None),
                ],
                ..ChangeSet::default()
            },
        )?;
        expect(
            swap.endpoints.iter().all(Change::done),
            "a write into a full map did not find the room a delete of the same set freed, \
             or deleting a missing key failed",
        )?;
        let state = read(maps)?;
        expect(
            state.endpoints.len() == capacity as usize
                && state.endpoints.get(&1) == Some(&endpoint(1))
                && !state.endpoints.contains_key(&(first + 1))
                && state.endpoints.get(&first) == Some(&changed)
                && state.fdb.get(&fdb_key) == Some(&fdb_entry),
            "the maps do not read back what was written",
        )
    }
}
