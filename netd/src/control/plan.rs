//! From valid endpoints to map entries, incrementally.
//!
//! Each endpoint *contributes* a few entries: one of this host's, behind its interface, its
//! ENDPOINTS, FDB and (overlay) NEIGH entries or a port on its macvlan parent; one of another
//! host, its FDB and NEIGH entries and a reference on its host's VTEPS entry, but only in the
//! networks this host has endpoints of its own in (as Docker's overlay did: a host needs the
//! peers of the networks it is on, not the whole cluster).
//!
//! [`Planner::plan`] recomputes the contributions of the touched endpoints, updates the desired
//! contents ([`Planner::desired`]) and marks the keys that changed. [`Planner::changes`] turns
//! the marked keys into map writes where desired and applied ([`Planner::applied`], what the
//! maps hold as far as this daemon knows) differ; [`Planner::commit`] records what was done,
//! and keeps what failed for [`Planner::retry_failed`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use netd_common::maps::{
    EndpointInfo, FdbEntry, MAX_PARENT_PORTS, NeighEntry, ParentInfo, VtepEntry, endpoint_flags,
    macvlan_mode,
};
use netd_store::schema::{Mac, MacvlanMode, NetworkRecord};

use super::{
    local::LocalTable,
    model::{Model, Name, Slot, Touched},
};
use crate::datapath::{
    Change, ChangeSet, MapState,
    state::{FdbKeyOrd, NeighKeyOrd, ParentKeyOrd, VtepKeyOrd},
};

/// Where a macvlan network's frames leave this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentPort {
    pub name: String,
    pub ifindex: u32,
    pub vlan: u16,
    /// The parent's MAC (host access).
    pub mac: [u8; 6],
    pub host_access: bool,
}

/// What the planner reads besides the model.
pub struct Context<'a> {
    pub model: &'a Model,
    pub local: &'a LocalTable,
    /// Parent port of each macvlan network on this host (absent: no such interface here).
    pub parents: &'a HashMap<Name, ParentPort>,
}

/// The entries one endpoint puts into the maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Contribution {
    #[default]
    None,
    /// An endpoint of this host behind `ifindex`. Overlay ones also answer ARP (NEIGH);
    /// macvlan ones are a port of their parent (`info.parent_ifindex`, `info.vlan`).
    Local {
        ifindex: u32,
        info: EndpointInfo,
        macvlan: bool,
        parent_mac: [u8; 6],
    },
    /// An endpoint of another host, behind its VTEP.
    Remote {
        vni: u32,
        mac: [u8; 6],
        ip: [u8; 4],
        vtep: [u8; 4],
    },
}

impl Contribution {
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local { .. })
    }
}

/// Keys whose desired value may differ from the applied one.
#[derive(Debug, Default)]
struct Keys {
    fdb: BTreeSet<FdbKeyOrd>,
    neigh: BTreeSet<NeighKeyOrd>,
    vteps: BTreeSet<VtepKeyOrd>,
    endpoints: BTreeSet<u32>,
    parents: BTreeSet<ParentKeyOrd>,
}

impl Keys {
    fn is_empty(&self) -> bool {
        self.fdb.is_empty()
            && self.neigh.is_empty()
            && self.vteps.is_empty()
            && self.endpoints.is_empty()
            && self.parents.is_empty()
    }

    fn append(&mut self, other: &mut Keys) {
        self.fdb.append(&mut other.fdb);
        self.neigh.append(&mut other.neigh);
        self.vteps.append(&mut other.vteps);
        self.endpoints.append(&mut other.endpoints);
        self.parents.append(&mut other.parents);
    }
}

/// A gateway of a network: its address answers ARP (NEIGH) with its MAC, and frames to that
/// MAC (FDB, kind gateway) are answered or routed by the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gateway {
    vni: u32,
    ip: [u8; 4],
    mac: [u8; 6],
}

/// The gateways an overlay network this host is on has (a macvlan network's gateway is a real
/// router on the LAN).
fn gateways_of(net: &NetworkRecord) -> Vec<Gateway> {
    if net.macvlan().is_some() {
        return Vec::new();
    }
    net.subnets
        .iter()
        .filter_map(|s| s.gateway)
        .map(|ip| Gateway {
            vni: net.vni,
            ip: ip.octets(),
            mac: Mac::from_ipv4(ip).0,
        })
        .collect()
}

/// One local port of a macvlan parent, as the parent's entry needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Port {
    vni: u32,
    flags: u32,
    parent_mac: [u8; 6],
}

#[derive(Debug, Default)]
pub struct Planner {
    me: Name,
    /// By slot index.
    contributions: Vec<Contribution>,
    /// Network -> this host's programmed endpoints in it.
    active: HashMap<Name, u32>,
    vtep_refs: HashMap<VtepKeyOrd, u32>,
    /// Parent/VLAN -> its local ports by ifindex.
    ports: BTreeMap<ParentKeyOrd, BTreeMap<u32, Port>>,
    /// Gateways programmed, by network.
    gateways: HashMap<Name, Vec<Gateway>>,
    pub desired: MapState,
    pub applied: MapState,
    dirty: Keys,
    /// Keys whose last write failed.
    failed: Keys,
    local_count: usize,
    remote_count: usize,
}

/// Endpoint flags of a macvlan network (kind, mode, host access).
pub fn macvlan_flags(net: &NetworkRecord) -> u32 {
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

impl Planner {
    pub fn new(me: Name) -> Self {
        Self {
            me,
            ..Self::default()
        }
    }

    /// The entries an endpoint contributes now.
    pub fn contribution(&self, slot: Slot) -> Contribution {
        self.contributions
            .get(slot.index())
            .copied()
            .unwrap_or_default()
    }

    /// (this host's endpoints, other hosts' endpoints) programmed, once the planned changes are
    /// written ([`Self::commit`]): every entry of theirs in the maps. While no write is failing,
    /// that is every one planned (counted as they are planned); while some are, each one is
    /// looked at.
    pub fn programmed(&self) -> (usize, usize) {
        if self.failed.is_empty() {
            return (self.local_count, self.remote_count);
        }
        let (mut local, mut remote) = (0, 0);
        for c in &self.contributions {
            if self.applied_in_full(c) {
                match c {
                    Contribution::Local { .. } => local += 1,
                    Contribution::Remote { .. } => remote += 1,
                    Contribution::None => {}
                }
            }
        }
        (local, remote)
    }

    /// Networks this host has programmed endpoints in.
    pub fn active_networks(&self) -> impl Iterator<Item = &Name> {
        self.active.keys()
    }

    /// Parent interfaces in use -> whether a network on them has host access.
    pub fn parents_in_use(&self, parents: &HashMap<Name, ParentPort>) -> BTreeMap<String, bool> {
        let mut wanted = BTreeMap::new();
        for port in parents.values() {
            if self
                .ports
                .contains_key(&ParentKeyOrd(port.ifindex, port.vlan))
            {
                *wanted.entry(port.name.clone()).or_insert(false) |= port.host_access;
            }
        }
        wanted
    }

    /// Recomputes the contributions of the touched endpoints and updates the desired entries.
    pub fn plan(&mut self, ctx: &Context<'_>, touched: &Touched) {
        let model = ctx.model;
        if self.contributions.len() < model.slab_len() {
            self.contributions
                .resize(model.slab_len(), Contribution::None);
        }
        // This host's endpoints first: their entries decide which networks are active.
        let mut own = Vec::new();
        let mut others = HashSet::new();
        for &slot in &touched.slots {
            if self.is_own(model, slot) {
                own.push(slot);
            } else {
                others.insert(slot);
            }
        }
        // An endpoint that stops being this host's (its record moved) is planned with the
        // others, once activity is known: as a peer it depends on it.
        let mut new: Vec<(Slot, Contribution)> = Vec::new();
        let mut networks: HashSet<Name> = touched.networks.clone();
        for slot in own {
            match contribution(ctx, &self.me, &self.active, slot) {
                c @ Contribution::Local { .. } => new.push((slot, c)),
                _ => {
                    new.push((slot, Contribution::None));
                    others.insert(slot);
                }
            }
        }
        for network in self.update_activity(model, &new) {
            networks.insert(network.clone());
            let peers: Vec<Slot> = model
                .slots_of(&network)
                .filter(|&s| !self.is_own(model, s))
                .collect();
            others.extend(peers);
        }
        new.retain(|(slot, _)| !others.contains(slot));
        new.extend(
            others
                .into_iter()
                .map(|slot| (slot, contribution(ctx, &self.me, &self.active, slot))),
        );
        // Out with every old entry before any new one goes in: two endpoints may trade a key
        // (one loses a claim, the other wins it) in one batch.
        let changed: Vec<(Slot, Contribution)> = new
            .into_iter()
            .filter(|&(slot, c)| self.contribution(slot) != c)
            .collect();
        for &(slot, _) in &changed {
            let old = self.contribution(slot);
            self.remove(old);
        }
        for &(slot, c) in &changed {
            self.add(c);
            self.contributions[slot.index()] = c;
        }
        for network in networks {
            self.refresh_gateways(model, network);
        }
        self.refresh_parents();
    }

    /// Programs the gateways of a network this host is on, and takes out those of one it left
    /// (or that changed or went).
    fn refresh_gateways(&mut self, model: &Model, network: Name) {
        let wanted = match model.network(&network) {
            Some(net) if self.active.contains_key(&network) => gateways_of(net),
            _ => Vec::new(),
        };
        let old = self.gateways.remove(&network).unwrap_or_default();
        if old == wanted {
            if !wanted.is_empty() {
                self.gateways.insert(network, wanted);
            }
            return;
        }
        let d = &mut self.desired;
        for g in &old {
            let fdb = FdbKeyOrd(g.vni, g.mac);
            remove_if(&mut d.fdb, fdb, FdbEntry::gateway(), &mut self.dirty.fdb);
            let neigh = NeighKeyOrd(g.vni, g.ip);
            remove_if(
                &mut d.neigh,
                neigh,
                NeighEntry::new(g.mac),
                &mut self.dirty.neigh,
            );
        }
        for g in &wanted {
            let fdb = FdbKeyOrd(g.vni, g.mac);
            d.fdb.insert(fdb, FdbEntry::gateway());
            self.dirty.fdb.insert(fdb);
            let neigh = NeighKeyOrd(g.vni, g.ip);
            d.neigh.insert(neigh, NeighEntry::new(g.mac));
            self.dirty.neigh.insert(neigh);
        }
        if !wanted.is_empty() {
            self.gateways.insert(network, wanted);
        }
    }

    /// Whether an endpoint is (or was, until this batch) one of this host's.
    pub fn is_own(&self, model: &Model, slot: Slot) -> bool {
        self.contribution(slot).is_local()
            || model
                .get(slot)
                .and_then(|e| e.record.as_ref().ok())
                .is_some_and(|r| r.host == self.me)
    }

    /// Applies the change in this host's endpoints per network; returns the networks that
    /// became active or inactive.
    fn update_activity(&mut self, model: &Model, new: &[(Slot, Contribution)]) -> Vec<Name> {
        let mut delta: HashMap<Name, i64> = HashMap::new();
        for &(slot, c) in new {
            let Some(network) = model.get(slot).map(|e| e.network.clone()) else {
                continue;
            };
            let change = i64::from(c.is_local()) - i64::from(self.contribution(slot).is_local());
            *delta.entry(network).or_default() += change;
        }
        let mut flipped = Vec::new();
        for (network, change) in delta {
            if change == 0 {
                continue;
            }
            let before = i64::from(self.active.get(&network).copied().unwrap_or(0));
            let after = (before + change).max(0);
            if (before > 0) != (after > 0) {
                flipped.push(network.clone());
            }
            if after == 0 {
                self.active.remove(&network);
            } else {
                self.active
                    .insert(network, u32::try_from(after).unwrap_or(u32::MAX));
            }
        }
        flipped
    }

    fn remove(&mut self, c: Contribution) {
        let d = &mut self.desired;
        match c {
            Contribution::None => {}
            Contribution::Local {
                ifindex,
                info,
                macvlan,
                ..
            } => {
                self.local_count -= 1;
                remove_if(&mut d.endpoints, ifindex, info, &mut self.dirty.endpoints);
                let fdb = FdbKeyOrd(info.vni, info.mac);
                remove_if(
                    &mut d.fdb,
                    fdb,
                    FdbEntry::local(ifindex),
                    &mut self.dirty.fdb,
                );
                if macvlan {
                    let key = ParentKeyOrd(info.parent_ifindex, info.vlan);
                    if let Some(ports) = self.ports.get_mut(&key) {
                        ports.remove(&ifindex);
                        if ports.is_empty() {
                            self.ports.remove(&key);
                        }
                    }
                    self.dirty.parents.insert(key);
                } else {
                    let neigh = NeighKeyOrd(info.vni, info.ipv4);
                    remove_if(
                        &mut d.neigh,
                        neigh,
                        NeighEntry::new(info.mac),
                        &mut self.dirty.neigh,
                    );
                }
            }
            Contribution::Remote { vni, mac, ip, vtep } => {
                self.remote_count -= 1;
                let fdb = FdbKeyOrd(vni, mac);
                remove_if(&mut d.fdb, fdb, FdbEntry::remote(vtep), &mut self.dirty.fdb);
                let neigh = NeighKeyOrd(vni, ip);
                remove_if(
                    &mut d.neigh,
                    neigh,
                    NeighEntry::new(mac),
                    &mut self.dirty.neigh,
                );
                let key = VtepKeyOrd(vtep, vni);
                if let Some(refs) = self.vtep_refs.get_mut(&key) {
                    *refs -= 1;
                    if *refs == 0 {
                        self.vtep_refs.remove(&key);
                        d.vteps.remove(&key);
                        self.dirty.vteps.insert(key);
                    }
                }
            }
        }
    }

    fn add(&mut self, c: Contribution) {
        let d = &mut self.desired;
        match c {
            Contribution::None => {}
            Contribution::Local {
                ifindex,
                info,
                macvlan,
                parent_mac,
            } => {
                self.local_count += 1;
                d.endpoints.insert(ifindex, info);
                self.dirty.endpoints.insert(ifindex);
                let fdb = FdbKeyOrd(info.vni, info.mac);
                d.fdb.insert(fdb, FdbEntry::local(ifindex));
                self.dirty.fdb.insert(fdb);
                if macvlan {
                    let key = ParentKeyOrd(info.parent_ifindex, info.vlan);
                    let port = Port {
                        vni: info.vni,
                        flags: info.flags,
                        parent_mac,
                    };
                    self.ports.entry(key).or_default().insert(ifindex, port);
                    self.dirty.parents.insert(key);
                } else {
                    let neigh = NeighKeyOrd(info.vni, info.ipv4);
                    d.neigh.insert(neigh, NeighEntry::new(info.mac));
                    self.dirty.neigh.insert(neigh);
                }
            }
            Contribution::Remote { vni, mac, ip, vtep } => {
                self.remote_count += 1;
                let fdb = FdbKeyOrd(vni, mac);
                d.fdb.insert(fdb, FdbEntry::remote(vtep));
                self.dirty.fdb.insert(fdb);
                let neigh = NeighKeyOrd(vni, ip);
                d.neigh.insert(neigh, NeighEntry::new(mac));
                self.dirty.neigh.insert(neigh);
                let key = VtepKeyOrd(vtep, vni);
                *self.vtep_refs.entry(key).or_default() += 1;
                d.vteps.insert(key, VtepEntry { flags: 0 });
                self.dirty.vteps.insert(key);
            }
        }
    }

    /// The parents' entries from their ports: flooding order must not depend on the store's,
    /// so ports are sorted and the first port's network describes the parent.
    fn refresh_parents(&mut self) {
        for key in &self.dirty.parents {
            match self.ports.get(key) {
                Some(ports) => {
                    let mut info = ParentInfo::default();
                    if let Some(first) = ports.values().next() {
                        info.vni = first.vni;
                        info.flags = first.flags;
                        info.mac = first.parent_mac;
                    }
                    for (slot, ifindex) in info.ports.iter_mut().zip(ports.keys()) {
                        *slot = *ifindex;
                    }
                    info.count = ports.len().min(MAX_PARENT_PORTS) as u32;
                    self.desired.parents.insert(*key, info);
                }
                None => {
                    self.desired.parents.remove(key);
                }
            }
        }
    }

    /// The writes and deletes that bring the marked keys to their desired values.
    pub fn changes(&mut self) -> ChangeSet {
        let dirty = std::mem::take(&mut self.dirty);
        let (d, a) = (&self.desired, &self.applied);
        ChangeSet {
            fdb: pending(&dirty.fdb, &d.fdb, &a.fdb),
            neigh: pending(&dirty.neigh, &d.neigh, &a.neigh),
            vteps: pending(&dirty.vteps, &d.vteps, &a.vteps),
            endpoints: pending(&dirty.endpoints, &d.endpoints, &a.endpoints),
            parents: pending(&dirty.parents, &d.parents, &a.parents),
        }
    }

    /// Records what [`crate::datapath::Datapath::apply_changes`] did: done changes are what
    /// the maps now hold; failed ones are kept for a retry.
    pub fn commit(&mut self, changes: &ChangeSet) {
        let a = &mut self.applied;
        let f = &mut self.failed;
        record(&changes.fdb, &mut a.fdb, &mut f.fdb);
        record(&changes.neigh, &mut a.neigh, &mut f.neigh);
        record(&changes.vteps, &mut a.vteps, &mut f.vteps);
        record(&changes.endpoints, &mut a.endpoints, &mut f.endpoints);
        record(&changes.parents, &mut a.parents, &mut f.parents);
    }

    /// Marks the keys whose last write failed again; returns whether there were any.
    pub fn retry_failed(&mut self) -> bool {
        let any = !self.failed.is_empty();
        self.dirty.append(&mut self.failed);
        any
    }

    /// Takes what the maps really hold as the applied state (a mark-and-sweep after a re-list,
    /// or a periodic check) and marks every key that differs from the desired state. Returns
    /// how many entries differed from what this daemon believed the maps held.
    pub fn adopt(&mut self, actual: MapState) -> usize {
        let drift = ChangeSet::between(&self.applied, &actual);
        let drifted = drift.fdb.len()
            + drift.neigh.len()
            + drift.vteps.len()
            + drift.endpoints.len()
            + drift.parents.len();
        let all = ChangeSet::between(&actual, &self.desired);
        self.dirty.fdb.extend(all.fdb.iter().map(|c| c.key));
        self.dirty.neigh.extend(all.neigh.iter().map(|c| c.key));
        self.dirty.vteps.extend(all.vteps.iter().map(|c| c.key));
        self.dirty
            .endpoints
            .extend(all.endpoints.iter().map(|c| c.key));
        self.dirty.parents.extend(all.parents.iter().map(|c| c.key));
        self.applied = actual;
        drifted
    }

    /// Whether every entry of an endpoint's contribution is in the maps.
    pub fn is_applied(&self, slot: Slot) -> bool {
        self.applied_in_full(&self.contribution(slot))
    }

    /// Whether every entry of a contribution is in the maps (none for [`Contribution::None`]).
    fn applied_in_full(&self, c: &Contribution) -> bool {
        let a = &self.applied;
        match *c {
            Contribution::None => false,
            Contribution::Local {
                ifindex,
                info,
                macvlan,
                ..
            } => {
                a.endpoints.get(&ifindex) == Some(&info)
                    && a.fdb.get(&FdbKeyOrd(info.vni, info.mac)) == Some(&FdbEntry::local(ifindex))
                    && (macvlan
                        || a.neigh.get(&NeighKeyOrd(info.vni, info.ipv4))
                            == Some(&NeighEntry::new(info.mac)))
                    && (!macvlan
                        || a.parents
                            .get(&ParentKeyOrd(info.parent_ifindex, info.vlan))
                            .is_some_and(|p| {
                                p.ports
                                    .get(..p.count as usize)
                                    .is_some_and(|ports| ports.contains(&ifindex))
                            }))
            }
            Contribution::Remote { vni, mac, ip, vtep } => {
                a.fdb.get(&FdbKeyOrd(vni, mac)) == Some(&FdbEntry::remote(vtep))
                    && a.neigh.get(&NeighKeyOrd(vni, ip)) == Some(&NeighEntry::new(mac))
                    && a.vteps.contains_key(&VtepKeyOrd(vtep, vni))
            }
        }
    }
}

/// The desired maps of every endpoint of `ctx.model`, planned at once, for this host (the
/// model's identity): what the incremental planner must arrive at.
pub fn from_scratch(ctx: &Context<'_>) -> MapState {
    let mut planner = Planner::new(ctx.model.identity().host.clone());
    let all = Touched {
        slots: ctx.model.slots().collect(),
        ..Touched::default()
    };
    planner.plan(ctx, &all);
    planner.desired
}

/// The entries an endpoint contributes given the model, the local table and the networks
/// this host is active in.
fn contribution(
    ctx: &Context<'_>,
    me: &Name,
    active: &HashMap<Name, u32>,
    slot: Slot,
) -> Contribution {
    let model = ctx.model;
    let (Some(ep), Ok(record)) = (model.get(slot), model.check(slot)) else {
        return Contribution::None;
    };
    let Some(net) = model.network(&ep.network) else {
        return Contribution::None;
    };
    let mac = record.mac.0;
    let ip = record.ip.octets();
    if record.host == *me {
        let Some(ifindex) = ctx.local.get(&ep.network, &ep.id).and_then(|l| l.ifindex) else {
            return Contribution::None;
        };
        let flags = macvlan_flags(net);
        if flags & endpoint_flags::MACVLAN == 0 {
            return Contribution::Local {
                ifindex,
                info: EndpointInfo {
                    vni: net.vni,
                    mac,
                    vlan: 0,
                    ipv4: ip,
                    flags: 0,
                    parent_ifindex: 0,
                },
                macvlan: false,
                parent_mac: [0; 6],
            };
        }
        let Some(port) = ctx.parents.get(&ep.network) else {
            return Contribution::None;
        };
        return Contribution::Local {
            ifindex,
            info: EndpointInfo {
                vni: net.vni,
                mac,
                vlan: port.vlan,
                ipv4: ip,
                flags,
                parent_ifindex: port.ifindex,
            },
            macvlan: true,
            parent_mac: port.mac,
        };
    }
    // Another host's: macvlan peers are reached over the LAN, overlay peers only matter in
    // the networks this host is on.
    if net.macvlan().is_some() || !active.contains_key(&ep.network) {
        return Contribution::None;
    }
    Contribution::Remote {
        vni: net.vni,
        mac,
        ip,
        vtep: record.vtep.octets(),
    }
}

/// Removes `key` from `map` only if it still holds `value` (another endpoint may have taken
/// the key since), marking it.
fn remove_if<K: Ord + Copy, V: PartialEq>(
    map: &mut BTreeMap<K, V>,
    key: K,
    value: V,
    dirty: &mut BTreeSet<K>,
) {
    if map.get(&key) == Some(&value) {
        map.remove(&key);
    }
    dirty.insert(key);
}

fn pending<K: Ord + Copy, V: PartialEq + Copy>(
    keys: &BTreeSet<K>,
    desired: &BTreeMap<K, V>,
    applied: &BTreeMap<K, V>,
) -> Vec<Change<K, V>> {
    keys.iter()
        .filter_map(|k| {
            let want = desired.get(k).copied();
            (want != applied.get(k).copied()).then(|| Change::new(*k, want))
        })
        .collect()
}

fn record<K: Ord + Copy, V: Copy>(
    changes: &[Change<K, V>],
    applied: &mut BTreeMap<K, V>,
    failed: &mut BTreeSet<K>,
) {
    for change in changes {
        if !change.done() {
            failed.insert(change.key);
            continue;
        }
        match change.value {
            Some(v) => applied.insert(change.key, v),
            None => applied.remove(&change.key),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use netd_store::{KeyValue, WatchEvent, keys};

    use super::*;
    use crate::control::{
        local::LocalEndpoint,
        model::tests::{endpoint, host, identity, kv, network, network_with_gateway},
    };

    fn local(entries: &[(&str, &str, u32)]) -> LocalTable {
        let mut table = LocalTable::default();
        for &(net, id, ifindex) in entries {
            table.insert(
                net.into(),
                id.into(),
                LocalEndpoint {
                    ifname: format!("nd{ifindex}"),
                    ifindex: Some(ifindex),
                    pending: None,
                },
            );
        }
        table
    }

    /// The desired maps of a model built from scratch out of `kvs`.
    fn from_scratch(kvs: &BTreeMap<String, KeyValue>, local: &LocalTable) -> MapState {
        let mut model = Model::new(identity("a", "192.168.0.1"));
        let mut touched = Touched::default();
        for kv in kvs.values() {
            model.apply(&WatchEvent::Put(kv.clone()), &mut touched);
        }
        from_scratch_of(&model, local)
    }

    #[test]
    fn peers_are_programmed_only_in_networks_this_host_is_on() {
        let mut model = Model::new(identity("a", "192.168.0.1"));
        let mut t = Touched::default();
        for (key, value, rev) in [
            (keys::network("n"), network("n", 300), 1),
            (keys::network("m"), network("m", 301), 2),
            (keys::host("b"), host("192.168.0.2"), 3),
            (
                keys::endpoint("n", "peer"),
                endpoint("peer", "10.1.0.2", "b", "192.168.0.2"),
                4,
            ),
            (
                keys::endpoint("m", "other"),
                endpoint("other", "10.1.0.3", "b", "192.168.0.2"),
                5,
            ),
            (
                keys::endpoint("n", "mine"),
                endpoint("mine", "10.1.0.1", "a", "192.168.0.1"),
                6,
            ),
        ] {
            model.apply(&WatchEvent::Put(kv(key, value, rev)), &mut t);
        }
        let parents = HashMap::new();
        let mut planner = Planner::new("a".into());
        // No interface here yet: nothing is programmed, not even the peers.
        let none = local(&[]);
        let ctx = Context {
            model: &model,
            local: &none,
            parents: &parents,
        };
        planner.plan(&ctx, &t);
        assert!(planner.desired.fdb.is_empty());
        // The interface appears: its own entries and network n's peer, not network m's.
        let here = local(&[("n", "mine", 7)]);
        let ctx = Context {
            model: &model,
            local: &here,
            parents: &parents,
        };
        let mine = Touched {
            slots: [model.slot_of("n", "mine").unwrap()].into(),
            ..Touched::default()
        };
        planner.plan(&ctx, &mine);
        assert_eq!(planner.desired.endpoints.len(), 1);
        assert_eq!(planner.desired.fdb.len(), 2);
        assert_eq!(planner.desired.neigh.len(), 2);
        assert!(
            planner
                .desired
                .vteps
                .contains_key(&VtepKeyOrd([192, 168, 0, 2], 300))
        );
        assert_eq!(planner.desired.vteps.len(), 1);
        assert_eq!(planner.programmed(), (1, 1));
        assert_eq!(planner.desired, from_scratch_of(&model, &here));
        // Every marked key becomes a write; committing them leaves nothing to do.
        let mut changes = planner.changes();
        assert_eq!(changes.fdb.len(), 2);
        for c in &mut changes.fdb {
            c.outcome = Some(Ok(()));
        }
        for c in &mut changes.neigh {
            c.outcome = Some(Ok(()));
        }
        for c in &mut changes.vteps {
            c.outcome = Some(Ok(()));
        }
        // ENDPOINTS fails (a full map): kept for a retry.
        for c in &mut changes.endpoints {
            c.outcome = Some(Err(crate::datapath::WriteError {
                full: true,
                message: "full".into(),
            }));
        }
        planner.commit(&changes);
        assert!(planner.changes().is_empty());
        assert!(planner.retry_failed());
        assert_eq!(planner.changes().endpoints.len(), 1);
    }

    fn from_scratch_of(model: &Model, local: &LocalTable) -> MapState {
        let parents = HashMap::new();
        super::from_scratch(&Context {
            model,
            local,
            parents: &parents,
        })
    }

    /// A small deterministic generator (no dependency for one test).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Random puts and deletes of networks (sharing VNIs), hosts (changing VTEPs) and
    /// endpoints (sharing addresses, moving between hosts): after every event the incremental
    /// desired state equals the one planned from scratch.
    #[test]
    fn incremental_planning_equals_planning_from_scratch() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let here = local(&[("n0", "e0", 10), ("n1", "e1", 11), ("n0", "e2", 12)]);
        let parents = HashMap::new();
        let mut model = Model::new(identity("a", "192.168.0.1"));
        let mut planner = Planner::new("a".into());
        let mut store: BTreeMap<String, KeyValue> = BTreeMap::new();
        for revision in 1..8000 {
            let (key, value) = match rng.below(10) {
                0 => {
                    let n = rng.below(3);
                    let vni = 300 + rng.below(2) as u32;
                    let name = format!("n{n}");
                    let value = if rng.below(2) == 0 {
                        network(&name, vni)
                    } else {
                        network_with_gateway(&name, vni, "10.1.0.254")
                    };
                    (keys::network(&name), value)
                }
                1 | 2 => {
                    let h = ["a", "b", "c"][rng.below(3) as usize];
                    let vtep = format!("192.168.0.{}", 1 + rng.below(3));
                    (keys::host(h), host(&vtep))
                }
                _ => {
                    let (n, e) = (rng.below(3), rng.below(8));
                    let h = ["a", "b", "c"][rng.below(3) as usize];
                    let vtep = format!("192.168.0.{}", 1 + rng.below(3));
                    let ip = format!("10.1.0.{}", 1 + rng.below(5));
                    let id = format!("e{e}");
                    (
                        keys::endpoint(&format!("n{n}"), &id),
                        endpoint(&id, &ip, h, &vtep),
                    )
                }
            };
            let event = if rng.below(4) == 0 {
                store.remove(&key);
                WatchEvent::Delete {
                    key,
                    mod_revision: revision,
                }
            } else {
                let create = store.get(&key).map_or(revision, |kv| kv.create_revision);
                let entry = KeyValue {
                    key: key.clone(),
                    value,
                    create_revision: create,
                    mod_revision: revision,
                };
                store.insert(key, entry.clone());
                WatchEvent::Put(entry)
            };
            let mut touched = Touched::default();
            model.apply(&event, &mut touched);
            let ctx = Context {
                model: &model,
                local: &here,
                parents: &parents,
            };
            planner.plan(&ctx, &touched);
            model.reap();
            assert_eq!(
                planner.desired,
                from_scratch(&store, &here),
                "after event {revision}: {event:?}"
            );
        }
    }
}
