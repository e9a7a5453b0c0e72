//! The store's records as the reconciler keeps them: each value decoded once, when it arrives,
//! and validity worked out again only for what a change can affect.
//!
//! An endpoint is *valid* (it may be programmed) when
//! - its record decodes, names its key and has a unicast MAC;
//! - its network is valid and holds its VNI (the network with the lowest create revision among
//!   those claiming a VNI holds it);
//! - its address lies in the network and its VTEP is that of the host publishing it, which must
//!   be registered. This host's own endpoints are checked against this host's identity instead
//!   of its record in the store, so that losing its lease never takes its containers off its
//!   own maps;
//! - it is the earliest claimant (lowest create revision, then name) of its address and of its
//!   MAC in the network, among the endpoints that pass the checks above.
//!
//! The last rule differs from settling claims one endpoint at a time in create order in one
//! corner: an endpoint that loses one of its claims does not free its other claim for a later
//! endpoint. It is as deterministic on every host, and it can be kept incrementally: a change
//! touches only the claimants of the same address and MAC. IPAM makes such conflicts rare; the
//! rule only has to be the same everywhere.
//!
//! Every change reports the endpoints whose validity or inputs may have changed ([`Touched`]):
//! the planner recomputes those, and only those.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::Ipv4Addr,
    sync::Arc,
};

use netd_store::{
    KeyValue, WatchEvent,
    keys::{self, Key},
    schema::{self, EndpointRecord, HostRecord, Mac, NetworkRecord},
};

use super::sources::{Claim, Claims, EndpointSources, Source};

/// A shared name (network, host, endpoint): cloned into indexes without copying the text.
pub type Name = Arc<str>;

/// Handle of an endpoint in the model (an index into its slab). Stable while the endpoint
/// exists; a deleted endpoint's slot is reused only after [`Model::reap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u32);

impl Slot {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// This host, as its own endpoints are checked against.
#[derive(Clone, Debug)]
pub struct Identity {
    pub host: Name,
    pub record: HostRecord,
}

/// A key holding an endpoint's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointKey {
    pub key: String,
    /// The host its record names (`None`: it does not decode).
    pub host: Option<String>,
}

/// What netd keeps of an endpoint record (its name is the key's; version checked on decode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub host: Name,
    pub vtep: Ipv4Addr,
    /// DNS names, lower-cased.
    pub names: Vec<Name>,
}

#[derive(Clone, Debug)]
pub struct Endpoint {
    pub network: Name,
    pub id: Name,
    /// Create revision of the store record; `None` while the endpoint exists only in this
    /// daemon (one it is adding, whose record the store has not echoed yet). It then loses any
    /// claim conflict, as the newest claim would.
    pub create_revision: Option<i64>,
    /// The decoded record, or why it did not decode.
    pub record: Result<Record, String>,
    /// Deleted, waiting for the planner to take its entries out before [`Model::reap`].
    pub dead: bool,
    /// Whether it passed every check but the claims, and so takes part in them.
    in_claims: bool,
}

impl Endpoint {
    fn claim_order(&self) -> i64 {
        self.create_revision.unwrap_or(i64::MAX)
    }
}

#[derive(Clone, Debug)]
struct NetworkEntry {
    record: Result<NetworkRecord, String>,
    /// Address claims older than this are an earlier network's of the same name.
    create_revision: i64,
}

/// Claimants of one (network, address) or (network, MAC), earliest first.
type Claimants = Vec<Slot>;

/// What a batch of changes may have affected.
#[derive(Debug, Default)]
pub struct Touched {
    pub slots: HashSet<Slot>,
    /// Networks whose record or validity changed.
    pub networks: HashSet<Name>,
    /// Whether any host record changed.
    pub hosts: bool,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.networks.is_empty() && !self.hosts
    }
}

/// Why an endpoint is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Its host is not registered: normal while a host is away, not a bad value.
    HostGone,
    Deleted,
    Other(String),
}

#[derive(Debug)]
pub struct Model {
    identity: Identity,
    networks: BTreeMap<Name, NetworkEntry>,
    /// VNI -> networks claiming it, earliest first.
    vni_claims: HashMap<u32, Vec<(i64, Name)>>,
    hosts: BTreeMap<Name, Result<HostRecord, String>>,
    /// VTEP -> hosts whose valid records name it, earliest registered first: the first holds
    /// it (a host record cannot take another live host's address).
    vtep_claims: HashMap<Ipv4Addr, Vec<(i64, Name)>>,
    slab: Vec<Option<Endpoint>>,
    free: Vec<u32>,
    dead: Vec<Slot>,
    index: HashMap<(Name, Name), Slot>,
    by_network: HashMap<Name, HashSet<Slot>>,
    by_host: HashMap<Name, HashSet<Slot>>,
    ip_claims: HashMap<(Name, Ipv4Addr), Claimants>,
    mac_claims: HashMap<(Name, Mac), Claimants>,
    /// The keys behind each endpoint (the earliest is the one in `slab`).
    sources: EndpointSources,
    claims: Claims,
    /// Network and host names, shared by every endpoint that names them.
    names: HashSet<Name>,
    revision: i64,
}

impl Model {
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            networks: BTreeMap::new(),
            vni_claims: HashMap::new(),
            hosts: BTreeMap::new(),
            vtep_claims: HashMap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            dead: Vec::new(),
            index: HashMap::new(),
            by_network: HashMap::new(),
            by_host: HashMap::new(),
            ip_claims: HashMap::new(),
            mac_claims: HashMap::new(),
            sources: EndpointSources::default(),
            claims: Claims::default(),
            names: HashSet::new(),
            revision: 0,
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The highest store revision applied.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn set_revision(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    fn intern(&mut self, name: &str) -> Name {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Name = name.into();
        self.names.insert(n.clone());
        n
    }

    /// Applies one store event. Keys outside the records netd keeps (VNIs, anything unknown)
    /// are ignored.
    pub fn apply(&mut self, event: &WatchEvent, touched: &mut Touched) {
        self.set_revision(event.revision());
        let Some(key) = keys::parse(event.key()) else {
            return;
        };
        match (key, event) {
            (Key::Network(name), WatchEvent::Put(kv)) => self.put_network(name, kv, touched),
            (Key::Network(name), WatchEvent::Delete { .. }) => {
                self.delete_network(name, touched);
            }
            (Key::Host(name), WatchEvent::Put(kv)) => self.put_host(name, Some(kv), touched),
            (Key::Host(name), WatchEvent::Delete { .. }) => self.put_host(name, None, touched),
            (Key::Endpoint { host, network, id }, WatchEvent::Put(kv)) => {
                let record = decode_endpoint(id, &kv.value).and_then(|r| match host {
                    Some(host) if *r.host != *host => Err(format!(
                        "the record names host {:?} but is under host {host:?}'s keys",
                        &*r.host
                    )),
                    _ => Ok(r),
                });
                let source = Source {
                    key: kv.key.as_str().into(),
                    create_revision: kv.create_revision,
                    record,
                };
                let (network, id) = (self.intern(network), Name::from(id));
                let winner = self.sources.put(&network, &id, source).cloned();
                self.follow_sources(&network, &id, winner, touched);
            }
            (Key::Endpoint { network, id, .. }, WatchEvent::Delete { key, .. }) => {
                let (network, id) = (self.intern(network), Name::from(id));
                let winner = self.sources.delete(&network, &id, key).cloned();
                self.follow_sources(&network, &id, winner, touched);
            }
            (Key::Claim { network, ip, .. }, WatchEvent::Put(kv)) => {
                // A key whose address does not parse is nobody's claim.
                if let Ok(ip) = ip.parse() {
                    let network = self.intern(network);
                    let claim = Claim {
                        key: kv.key.clone(),
                        create_revision: kv.create_revision,
                        owner: String::from_utf8_lossy(&kv.value).into_owned(),
                    };
                    self.claims.put(&network, ip, claim);
                }
            }
            (Key::Claim { network, ip, .. }, WatchEvent::Delete { key, .. }) => {
                if let Ok(ip) = ip.parse() {
                    self.claims.delete(&Name::from(network), ip, key);
                }
            }
            _ => {}
        }
    }

    /// Makes the endpoint what its earliest source says (gone when it has none left).
    fn follow_sources(
        &mut self,
        network: &Name,
        id: &Name,
        winner: Option<Source>,
        touched: &mut Touched,
    ) {
        let current = self
            .slot_of(network, id)
            .and_then(|s| self.get(s))
            .map(|e| (e.create_revision, e.record.clone()));
        match winner {
            Some(w) if current != Some((Some(w.create_revision), w.record.clone())) => {
                self.put_endpoint(network, id, Some(w.create_revision), w.record, touched);
            }
            Some(_) => {}
            None => self.delete_endpoint(network, id, touched),
        }
    }

    // ---- keys and claims --------------------------------------------------------------------

    /// The key of the record an endpoint is made of (for logs and counts).
    pub fn key_of(&self, slot: Slot) -> String {
        let Some(ep) = self.get(slot) else {
            return String::new();
        };
        let keys = self.sources.keys(&ep.network, &ep.id);
        keys.into_iter()
            .next()
            .unwrap_or_else(|| keys::endpoint(&ep.network, &ep.id))
    }

    /// The keys of an endpoint's record, the one that counts first, each with the host its
    /// record names (`None`: a record that does not decode).
    pub fn endpoint_keys(&self, network: &str, id: &str) -> Vec<EndpointKey> {
        self.sources
            .of(network, id)
            .map(|s| EndpointKey {
                key: s.key.to_string(),
                host: s.record.as_ref().ok().map(|r| r.host.to_string()),
            })
            .collect()
    }

    /// Every endpoint key and every claim key (leftovers of an earlier network of the name
    /// included) of a network.
    pub fn network_keys(&self, network: &str) -> (Vec<String>, Vec<String>) {
        let claims = self.claims.of_network(network).map(|c| c.key.clone());
        (self.sources.keys_of_network(network), claims.collect())
    }

    /// Create revision of a network's record; claims older than it are not its.
    fn network_since(&self, network: &str) -> i64 {
        self.networks.get(network).map_or(0, |n| n.create_revision)
    }

    /// The claims of an address in a network, the holder first.
    pub fn claims_of(&self, network: &str, ip: Ipv4Addr) -> Vec<Claim> {
        self.claims.of(network, ip, self.network_since(network))
    }

    /// The addresses of a network some claim holds.
    pub fn taken(&self, network: &str) -> Vec<Ipv4Addr> {
        self.claims.taken(network, self.network_since(network))
    }

    /// Keys `host` wrote in the shared layout (endpoint records naming it and claims it
    /// made: those under its name, and Docker's for it): what it moves under its own prefix.
    pub fn shared_keys_of(&self, host: &str) -> Vec<String> {
        let shared = |key: &str| {
            matches!(
                keys::parse(key),
                Some(Key::Endpoint { host: None, .. } | Key::Claim { host: None, .. })
            )
        };
        let endpoints = self
            .sources
            .keys_of_host(host)
            .filter(|k| shared(k))
            .map(str::to_string);
        let mine: HashSet<(Name, String)> = self
            .slots_of_host(host)
            .filter_map(|s| self.get(s))
            .map(|e| (e.network.clone(), e.id.to_string()))
            .collect();
        let claims = self.claims.iter().filter(|(network, c)| {
            shared(&c.key)
                && (mine.contains(&((*network).clone(), c.owner.clone()))
                    || netd_store::ipam::docker_claim(host, c.owner.as_bytes()).is_some())
        });
        endpoints
            .chain(claims.map(|(_, c)| c.key.clone()))
            .collect()
    }

    /// Claims under `host`'s prefix that hold nothing: their network is gone, or was made
    /// again since they were.
    pub fn leftover_claims_of(&self, host: &str) -> Vec<String> {
        let prefix = keys::host_prefix(host);
        self.claims
            .iter()
            .filter(|(network, c)| {
                c.key.starts_with(&prefix)
                    && self
                        .networks
                        .get(*network)
                        .is_none_or(|n| n.create_revision > c.create_revision)
            })
            .map(|(_, c)| c.key.clone())
            .collect()
    }

    /// Live hosts other than this one whose netd reads only the shared layout.
    pub fn shared_layout_hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|(name, h)| {
                **name != self.identity.host && h.as_ref().is_ok_and(|h| !h.per_host_keys)
            })
            .map(|(name, _)| name.to_string())
            .collect()
    }

    // ---- networks -------------------------------------------------------------------------

    fn put_network(&mut self, name: &str, kv: &KeyValue, touched: &mut Touched) {
        let record = schema::decode::<NetworkRecord>(&kv.value)
            .and_then(|n| n.validate(name).map(|()| n))
            .map_err(|e| e.to_string());
        let name = self.intern(name);
        let mut affected = self.release_vni(&name);
        if let Ok(net) = &record {
            let claims = self.vni_claims.entry(net.vni).or_default();
            let before = claims.first().map(|(_, n)| n.clone());
            claims.push((kv.create_revision, name.clone()));
            claims.sort();
            affected.extend(before);
        }
        let create_revision = kv.create_revision;
        self.networks.insert(
            name.clone(),
            NetworkEntry {
                record,
                create_revision,
            },
        );
        affected.insert(name);
        self.refresh_networks(affected, touched);
    }

    fn delete_network(&mut self, name: &str, touched: &mut Touched) {
        let name = self.intern(name);
        let mut affected = self.release_vni(&name);
        self.networks.remove(&name);
        affected.insert(name);
        self.refresh_networks(affected, touched);
    }

    /// Takes `name`'s claim on its VNI back; returns the network that holds the VNI afterwards
    /// (it may have just won it).
    fn release_vni(&mut self, name: &Name) -> HashSet<Name> {
        let mut affected = HashSet::new();
        let Some(Ok(old)) = self.networks.get(name).map(|e| &e.record) else {
            return affected;
        };
        let vni = old.vni;
        if let Some(claims) = self.vni_claims.get_mut(&vni) {
            claims.retain(|(_, n)| n != name);
            if let Some((_, winner)) = claims.first() {
                affected.insert(winner.clone());
            } else {
                self.vni_claims.remove(&vni);
            }
        }
        affected
    }

    fn refresh_networks(&mut self, networks: HashSet<Name>, touched: &mut Touched) {
        for network in networks {
            let slots: Vec<Slot> = self
                .by_network
                .get(&network)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for slot in slots {
                self.refresh(slot, touched);
            }
            touched.networks.insert(network);
        }
    }

    /// A valid network that holds its VNI.
    pub fn network(&self, name: &str) -> Option<&NetworkRecord> {
        let entry = self.networks.get(name)?;
        let record = entry.record.as_ref().ok()?;
        let holder = self.vni_claims.get(&record.vni)?.first()?;
        (&*holder.1 == name).then_some(record)
    }

    /// Every valid network.
    pub fn networks(&self) -> impl Iterator<Item = &NetworkRecord> {
        self.networks.keys().filter_map(|name| self.network(name))
    }

    /// Network keys whose value was refused, with the reason.
    pub fn invalid_networks(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.networks.iter().filter_map(|(name, entry)| {
            let reason = match &entry.record {
                Err(e) => e.clone(),
                Ok(net) if self.network(name).is_none() => {
                    format!("VNI {} already used by an earlier network", net.vni)
                }
                Ok(_) => return None,
            };
            Some((keys::network(name), reason))
        })
    }

    // ---- hosts ----------------------------------------------------------------------------

    fn put_host(&mut self, name: &str, kv: Option<&KeyValue>, touched: &mut Touched) {
        let name = self.intern(name);
        let old = match kv {
            Some(kv) => {
                let record = schema::decode::<HostRecord>(&kv.value)
                    .and_then(|h| h.validate(&name).map(|()| h))
                    .map_err(|e| e.to_string());
                self.hosts.insert(name.clone(), record)
            }
            None => self.hosts.remove(&name),
        };
        let old_vtep = old.and_then(|o| o.ok()).map(|h| h.vtep_ip);
        let new_vtep = match (kv, self.hosts.get(&name)) {
            (Some(kv), Some(Ok(h))) => Some((h.vtep_ip, kv.create_revision)),
            _ => None,
        };
        let mut affected = self.claim_vtep(&name, old_vtep, new_vtep);
        affected.push(name);
        affected.sort();
        affected.dedup();
        touched.hosts = true;
        for host in affected {
            let slots: Vec<Slot> = self
                .by_host
                .get(&host)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for slot in slots {
                self.refresh(slot, touched);
            }
        }
    }

    /// Hosts that endpoint records name but that have no host record (its lease ended):
    /// stopped, or gone for good. Sorted.
    pub fn absent_hosts(&self) -> Vec<String> {
        let mut absent: Vec<String> = self
            .by_host
            .iter()
            .filter(|(name, slots)| !slots.is_empty() && !self.hosts.contains_key(*name))
            .map(|(name, _)| name.to_string())
            .collect();
        absent.sort();
        absent
    }

    /// Every registered host with a valid record that holds its VTEP.
    pub fn hosts(&self) -> impl Iterator<Item = (&Name, &HostRecord)> {
        self.hosts
            .iter()
            .filter_map(|(name, h)| h.as_ref().ok().map(|h| (name, h)))
            .filter(|(name, h)| self.vtep_holder(h.vtep_ip) == Some(name))
    }

    /// Host keys whose value was refused, with the reason.
    pub fn invalid_hosts(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.hosts.iter().filter_map(|(name, h)| {
            let reason = match h {
                Err(e) => e.clone(),
                Ok(h) => match self.vtep_holder(h.vtep_ip) {
                    Some(holder) if holder != name => format!(
                        "VTEP {} is host {:?}'s, registered first",
                        h.vtep_ip, &**holder
                    ),
                    _ => return None,
                },
            };
            Some((keys::host(name), reason))
        })
    }

    /// The record a host's endpoints are checked against: this host's own identity for itself;
    /// none for a host whose VTEP another host holds.
    fn host_for(&self, name: &str) -> Option<&HostRecord> {
        if name == &*self.identity.host {
            return Some(&self.identity.record);
        }
        let host = self.hosts.get(name)?.as_ref().ok()?;
        (self.vtep_holder(host.vtep_ip).map(|h| &**h) == Some(name)).then_some(host)
    }

    /// The host that holds VTEP `vtep`: the earliest registered of those naming it, and always
    /// this host for its own (a record registered after it, or while it was down, is
    /// another machine's claim on this host's address).
    fn vtep_holder(&self, vtep: Ipv4Addr) -> Option<&Name> {
        if vtep == self.identity.record.vtep_ip {
            return Some(&self.identity.host);
        }
        self.vtep_claims.get(&vtep)?.first().map(|(_, name)| name)
    }

    /// Moves host `name`'s claim from the VTEP of its old record to that of its new one;
    /// returns the hosts whose standing may have changed (the claimants of both VTEPs).
    fn claim_vtep(
        &mut self,
        name: &Name,
        old: Option<Ipv4Addr>,
        new: Option<(Ipv4Addr, i64)>,
    ) -> Vec<Name> {
        let mut affected = Vec::new();
        if let Some(old) = old
            && let Some(claims) = self.vtep_claims.get_mut(&old)
        {
            claims.retain(|(_, n)| n != name);
            affected.extend(claims.iter().map(|(_, n)| n.clone()));
            if claims.is_empty() {
                self.vtep_claims.remove(&old);
            }
        }
        if let Some((vtep, revision)) = new {
            let claims = self.vtep_claims.entry(vtep).or_default();
            let at = claims.partition_point(|(r, n)| (*r, n) < (revision, name));
            claims.insert(at, (revision, name.clone()));
            affected.extend(claims.iter().map(|(_, n)| n.clone()));
        }
        affected
    }

    // ---- endpoints ------------------------------------------------------------------------

    /// Adds or replaces an endpoint; `create_revision: None` for one that exists only here.
    pub fn put_endpoint(
        &mut self,
        network: &str,
        id: &str,
        create_revision: Option<i64>,
        record: Result<Record, String>,
        touched: &mut Touched,
    ) -> Slot {
        let network = self.intern(network);
        let record = record.map(|r| Record {
            host: self.intern(&r.host),
            ..r
        });
        let slot = match self.index.get(&(network.clone(), Name::from(id))) {
            Some(&slot) => {
                self.leave_claims(slot, touched);
                if let Some(Ok(old)) = self.get(slot).map(|e| e.record.clone())
                    && let Some(set) = self.by_host.get_mut(&old.host)
                {
                    set.remove(&slot);
                }
                if let Some(ep) = self.slab_mut(slot) {
                    ep.record = record.clone();
                    ep.create_revision = create_revision;
                }
                slot
            }
            None => {
                let id: Name = id.into();
                let slot = self.allocate(Endpoint {
                    network: network.clone(),
                    id: id.clone(),
                    create_revision,
                    record: record.clone(),
                    dead: false,
                    in_claims: false,
                });
                self.index.insert((network.clone(), id), slot);
                self.by_network.entry(network).or_default().insert(slot);
                slot
            }
        };
        if let Ok(r) = &record {
            self.by_host.entry(r.host.clone()).or_default().insert(slot);
        }
        self.refresh(slot, touched);
        slot
    }

    /// The DNS names of `network`'s valid endpoints and their addresses (sorted, once each):
    /// the network's table in [`super::names::Names`].
    pub fn names_of(&self, network: &str) -> HashMap<Name, Vec<Ipv4Addr>> {
        let mut table: HashMap<Name, Vec<Ipv4Addr>> = HashMap::new();
        for slot in self.slots_of(network) {
            let (Some(endpoint), Ok(record)) = (self.get(slot), self.check(slot)) else {
                continue;
            };
            for name in dns_names(&endpoint.id, record) {
                let addresses = table.entry(name).or_default();
                if let Err(at) = addresses.binary_search(&record.ip) {
                    addresses.insert(at, record.ip);
                }
            }
        }
        table
    }

    /// Removes an endpoint; its slot stays (dead) until [`Self::reap`].
    pub fn delete_endpoint(&mut self, network: &str, id: &str, touched: &mut Touched) {
        let Some(slot) = self.index.remove(&(Name::from(network), Name::from(id))) else {
            return;
        };
        self.leave_claims(slot, touched);
        if let Some(set) = self.by_network.get_mut(network) {
            set.remove(&slot);
            if set.is_empty() {
                self.by_network.remove(network);
            }
        }
        if let Some(Ok(record)) = self.get(slot).map(|e| e.record.clone())
            && let Some(set) = self.by_host.get_mut(&record.host)
        {
            set.remove(&slot);
            if set.is_empty() {
                self.by_host.remove(&record.host);
            }
        }
        if let Some(ep) = self.slab_mut(slot) {
            ep.dead = true;
        }
        self.dead.push(slot);
        touched.slots.insert(slot);
    }

    /// Frees the slots of deleted endpoints (once their entries are out of the maps).
    pub fn reap(&mut self) {
        for slot in std::mem::take(&mut self.dead) {
            if let Some(entry) = self.slab.get_mut(slot.index()) {
                *entry = None;
                self.free.push(slot.0);
            }
        }
    }

    fn allocate(&mut self, endpoint: Endpoint) -> Slot {
        match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(endpoint);
                Slot(i)
            }
            None => {
                // More than 4 billion endpoints do not fit any map either.
                let i = u32::try_from(self.slab.len()).unwrap_or(u32::MAX);
                self.slab.push(Some(endpoint));
                Slot(i)
            }
        }
    }

    fn slab_mut(&mut self, slot: Slot) -> Option<&mut Endpoint> {
        self.slab.get_mut(slot.index())?.as_mut()
    }

    pub fn get(&self, slot: Slot) -> Option<&Endpoint> {
        self.slab.get(slot.index())?.as_ref()
    }

    pub fn slot_of(&self, network: &str, id: &str) -> Option<Slot> {
        self.index
            .get(&(Name::from(network), Name::from(id)))
            .copied()
    }

    /// Every live endpoint's slot.
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.index.values().copied()
    }

    /// The endpoints (valid or not) keyed under a network.
    pub fn slots_of(&self, network: &str) -> impl Iterator<Item = Slot> + '_ {
        self.by_network.get(network).into_iter().flatten().copied()
    }

    /// One more than the highest slot index in use (the planner sizes its tables by it).
    pub fn slab_len(&self) -> usize {
        self.slab.len()
    }

    /// The endpoints whose record names `host`.
    pub fn slots_of_host(&self, host: &str) -> impl Iterator<Item = Slot> + '_ {
        self.by_host.get(host).into_iter().flatten().copied()
    }

    pub fn endpoint_count(&self) -> usize {
        self.index.len()
    }

    /// Re-checks an endpoint after something it depends on changed, moving it into or out of
    /// the claims; marks it (and any claimant whose standing changed) touched.
    fn refresh(&mut self, slot: Slot, touched: &mut Touched) {
        let passes = self.passes_checks(slot).is_ok();
        let in_claims = self.get(slot).is_some_and(|e| e.in_claims);
        if in_claims && !passes {
            self.leave_claims(slot, touched);
        } else if !in_claims && passes {
            self.join_claims(slot, touched);
        }
        touched.slots.insert(slot);
    }

    /// Every check but the claims.
    fn passes_checks(&self, slot: Slot) -> Result<&Record, Invalid> {
        let ep = self.get(slot).ok_or(Invalid::Deleted)?;
        if ep.dead {
            return Err(Invalid::Deleted);
        }
        let record = ep.record.as_ref().map_err(|e| Invalid::Other(e.clone()))?;
        let net = self.network(&ep.network).ok_or_else(|| {
            Invalid::Other(match self.networks.get(&ep.network) {
                None => format!("network {:?} does not exist", &*ep.network),
                Some(_) => format!("network {:?} is invalid", &*ep.network),
            })
        })?;
        let host = self.host_for(&record.host);
        if host.is_none() {
            return Err(Invalid::HostGone);
        }
        schema::validate_placement(record.ip, record.mac, record.vtep, &record.host, net, host)
            .map_err(|e| Invalid::Other(e.to_string()))?;
        Ok(record)
    }

    /// The endpoint's record if it is valid, else why not.
    pub fn check(&self, slot: Slot) -> Result<&Record, Invalid> {
        let record = self.passes_checks(slot)?;
        let Some(ep) = self.get(slot) else {
            return Err(Invalid::Deleted);
        };
        let ip_winner = self
            .ip_claims
            .get(&(ep.network.clone(), record.ip))
            .and_then(|c| c.first());
        if ip_winner != Some(&slot) {
            return Err(Invalid::Other(format!(
                "address {} already claimed by an earlier endpoint",
                record.ip
            )));
        }
        let mac_winner = self
            .mac_claims
            .get(&(ep.network.clone(), record.mac))
            .and_then(|c| c.first());
        if mac_winner != Some(&slot) {
            return Err(Invalid::Other(format!(
                "MAC {} already claimed by an earlier endpoint",
                record.mac
            )));
        }
        Ok(record)
    }

    /// Orders claimants: earliest create revision, then name.
    fn claim_key(&self, slot: Slot) -> (i64, Name) {
        self.get(slot)
            .map(|e| (e.claim_order(), e.id.clone()))
            .unwrap_or((i64::MAX, Name::from("")))
    }

    fn join_claims(&mut self, slot: Slot, touched: &mut Touched) {
        let Some((network, record)) = self
            .get(slot)
            .and_then(|e| Some((e.network.clone(), e.record.clone().ok()?)))
        else {
            return;
        };
        let key = self.claim_key(slot);
        let order = |model: &Model, claims: &Claimants| {
            claims.partition_point(|&other| model.claim_key(other) < key)
        };
        let claims = self
            .ip_claims
            .remove(&(network.clone(), record.ip))
            .unwrap_or_default();
        let claims = insert_claim(self, claims, slot, order, touched);
        self.ip_claims.insert((network.clone(), record.ip), claims);
        let claims = self
            .mac_claims
            .remove(&(network.clone(), record.mac))
            .unwrap_or_default();
        let claims = insert_claim(self, claims, slot, order, touched);
        self.mac_claims.insert((network, record.mac), claims);
        if let Some(ep) = self.slab_mut(slot) {
            ep.in_claims = true;
        }
    }

    fn leave_claims(&mut self, slot: Slot, touched: &mut Touched) {
        let Some((network, record, in_claims)) = self
            .get(slot)
            .and_then(|e| Some((e.network.clone(), e.record.clone().ok()?, e.in_claims)))
        else {
            return;
        };
        if !in_claims {
            return;
        }
        remove_claim(
            &mut self.ip_claims,
            (network.clone(), record.ip),
            slot,
            touched,
        );
        remove_claim(&mut self.mac_claims, (network, record.mac), slot, touched);
        if let Some(ep) = self.slab_mut(slot) {
            ep.in_claims = false;
        }
    }
}

/// Puts `slot` into its place among `claims`; the claimant it displaces as the earliest is
/// touched (it just lost).
fn insert_claim(
    model: &Model,
    mut claims: Claimants,
    slot: Slot,
    position: impl Fn(&Model, &Claimants) -> usize,
    touched: &mut Touched,
) -> Claimants {
    let at = position(model, &claims);
    if at == 0
        && let Some(&previous) = claims.first()
    {
        touched.slots.insert(previous);
    }
    claims.insert(at, slot);
    claims
}

fn remove_claim<K: std::hash::Hash + Eq>(
    claims: &mut HashMap<K, Claimants>,
    key: K,
    slot: Slot,
    touched: &mut Touched,
) {
    let Some(list) = claims.get_mut(&key) else {
        return;
    };
    let was_first = list.first() == Some(&slot);
    list.retain(|&s| s != slot);
    if was_first && let Some(&next) = list.first() {
        // The next claimant just became the earliest.
        touched.slots.insert(next);
    }
    if list.is_empty() {
        claims.remove(&key);
    }
}

/// Decodes an endpoint value and checks what it can be checked against alone.
pub fn decode_endpoint(id: &str, value: &[u8]) -> Result<Record, String> {
    let record = schema::decode::<EndpointRecord>(value)
        .and_then(|r| r.validate_own(id).map(|()| r))
        .map_err(|e| e.to_string())?;
    Ok(Record::from(&record))
}

impl From<&EndpointRecord> for Record {
    fn from(r: &EndpointRecord) -> Self {
        Self {
            ip: r.ip,
            mac: r.mac,
            host: r.host.as_str().into(),
            vtep: r.vtep_ip,
            names: r
                .names
                .iter()
                .map(|n| Name::from(n.to_ascii_lowercase()))
                .collect(),
        }
    }
}

/// The names an endpoint answers to: those of its record, or for a record without any (an
/// older netd's) its own name, unless that is one of Docker's 64-hex endpoint IDs.
fn dns_names(id: &Name, record: &Record) -> Vec<Name> {
    if !record.names.is_empty() {
        return record.names.clone();
    }
    let docker_id = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if docker_id || !schema::valid_dns_name(id) {
        return Vec::new();
    }
    vec![Name::from(id.to_ascii_lowercase())]
}

#[cfg(test)]
pub(crate) mod tests {
    use netd_store::schema::{SCHEMA_VERSION, SubnetRecord};

    use super::*;

    pub fn kv(key: String, value: Vec<u8>, rev: i64) -> KeyValue {
        KeyValue {
            key,
            value,
            create_revision: rev,
            mod_revision: rev,
        }
    }

    pub fn network(name: &str, vni: u32) -> Vec<u8> {
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

    pub fn network_with_gateway(name: &str, vni: u32, gateway: &str) -> Vec<u8> {
        let mut record: NetworkRecord = schema::decode(&network(name, vni)).unwrap();
        record.subnets[0].gateway = Some(gateway.parse().unwrap());
        schema::encode(&record)
    }

    pub fn host_record(vtep: &str) -> HostRecord {
        HostRecord {
            version: SCHEMA_VERSION,
            vtep_ip: vtep.parse().unwrap(),
            uplink_mtu: 1500,
            netd: "test".into(),
            per_host_keys: true,
        }
    }

    pub fn host(vtep: &str) -> Vec<u8> {
        schema::encode(&host_record(vtep))
    }

    pub fn endpoint(name: &str, ip: &str, host: &str, vtep: &str) -> Vec<u8> {
        let ip: Ipv4Addr = ip.parse().unwrap();
        schema::encode(&EndpointRecord {
            version: SCHEMA_VERSION,
            ip,
            mac: Mac::from_ipv4(ip),
            host: host.into(),
            vtep_ip: vtep.parse().unwrap(),
            name: name.into(),
            names: Vec::new(),
        })
    }

    pub fn identity(host: &str, vtep: &str) -> Identity {
        Identity {
            host: host.into(),
            record: host_record(vtep),
        }
    }

    pub fn put(model: &mut Model, key: String, value: Vec<u8>, rev: i64) -> Touched {
        let mut touched = Touched::default();
        model.apply(&WatchEvent::Put(kv(key, value, rev)), &mut touched);
        touched
    }

    pub fn delete(model: &mut Model, key: String, rev: i64) -> Touched {
        let mut touched = Touched::default();
        model.apply(
            &WatchEvent::Delete {
                key,
                mod_revision: rev,
            },
            &mut touched,
        );
        touched
    }

    fn valid_ids(model: &Model) -> Vec<String> {
        let mut ids: Vec<String> = model
            .slots()
            .filter(|&s| model.check(s).is_ok())
            .filter_map(|s| model.get(s).map(|e| e.id.to_string()))
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn invalid_values_are_refused_with_a_reason() {
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::network("n"), network("n", 300), 1);
        put(&mut m, keys::network("bad"), b"{not json".to_vec(), 2);
        put(&mut m, keys::network("dupvni"), network("dupvni", 300), 3);
        put(&mut m, keys::host("b"), host("192.168.0.2"), 4);
        // Claims host b's endpoint but with another VTEP: not b's to publish.
        let foreign = endpoint("x", "10.1.0.9", "b", "192.168.0.66");
        put(&mut m, keys::endpoint("n", "x"), foreign, 5);
        let outside = endpoint("y", "10.9.0.1", "b", "192.168.0.2");
        put(&mut m, keys::endpoint("n", "y"), outside, 6);
        let first = endpoint("first", "10.1.0.5", "b", "192.168.0.2");
        put(&mut m, keys::endpoint("n", "first"), first, 7);
        let second = endpoint("second", "10.1.0.5", "b", "192.168.0.2");
        put(&mut m, keys::endpoint("n", "second"), second, 8);
        let orphan = endpoint("z", "10.1.0.7", "b", "192.168.0.2");
        put(&mut m, keys::endpoint("gone", "z"), orphan, 9);
        assert_eq!(valid_ids(&m), vec!["first"]);
        let bad: Vec<String> = m.invalid_networks().map(|(k, _)| k).collect();
        assert_eq!(
            bad,
            vec!["/netd/v1/networks/bad", "/netd/v1/networks/dupvni"]
        );
        let reason = |id: &str, net: &str| m.check(m.slot_of(net, id).unwrap()).unwrap_err();
        assert!(matches!(reason("x", "n"), Invalid::Other(r) if r.contains("VTEP")));
        assert!(
            matches!(reason("second", "n"), Invalid::Other(r) if r.contains("already claimed"))
        );
        assert!(matches!(reason("z", "gone"), Invalid::Other(r) if r.contains("does not exist")));
    }

    #[test]
    fn the_earliest_claim_wins_and_the_next_takes_over_when_it_goes() {
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::network("n"), network("n", 300), 1);
        put(&mut m, keys::host("b"), host("192.168.0.2"), 2);
        let late = endpoint("late", "10.1.0.5", "b", "192.168.0.2");
        put(&mut m, keys::endpoint("n", "late"), late, 10);
        assert_eq!(valid_ids(&m), vec!["late"]);
        // An earlier claim (a lower create revision, as after a relist) displaces it.
        let early = endpoint("early", "10.1.0.5", "b", "192.168.0.2");
        let touched = put(&mut m, keys::endpoint("n", "early"), early, 5);
        assert_eq!(valid_ids(&m), vec!["early"]);
        assert!(touched.slots.contains(&m.slot_of("n", "late").unwrap()));
        let touched = delete(&mut m, keys::endpoint("n", "early"), 11);
        assert_eq!(valid_ids(&m), vec!["late"]);
        assert!(touched.slots.contains(&m.slot_of("n", "late").unwrap()));
    }

    #[test]
    fn a_hosts_endpoints_follow_its_registration_but_this_hosts_own_do_not() {
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::network("n"), network("n", 300), 1);
        let mine = endpoint("mine", "10.1.0.1", "a", "192.168.0.1");
        put(&mut m, keys::endpoint("n", "mine"), mine, 2);
        let theirs = endpoint("theirs", "10.1.0.2", "b", "192.168.0.2");
        put(&mut m, keys::endpoint("n", "theirs"), theirs, 3);
        // Neither host record is in the store: this host's own endpoint is valid regardless.
        assert_eq!(valid_ids(&m), vec!["mine"]);
        let touched = put(&mut m, keys::host("b"), host("192.168.0.2"), 4);
        assert!(touched.slots.contains(&m.slot_of("n", "theirs").unwrap()));
        assert_eq!(valid_ids(&m), vec!["mine", "theirs"]);
        delete(&mut m, keys::host("b"), 5);
        assert_eq!(valid_ids(&m), vec!["mine"]);
        let slot = m.slot_of("n", "theirs").unwrap();
        assert_eq!(m.check(slot).unwrap_err(), Invalid::HostGone);
    }

    /// Under the per-host layout a host writes only under its own prefix, and a record there
    /// that names another host is refused: a host cannot publish endpoints as another one.
    #[test]
    fn a_record_under_one_hosts_prefix_cannot_name_another_host() {
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::network("n"), network("n", 300), 1);
        put(&mut m, keys::host("b"), host("192.168.0.2"), 2);
        put(&mut m, keys::host("c"), host("192.168.0.3"), 3);
        let as_b = endpoint("x", "10.1.0.2", "b", "192.168.0.2");
        put(&mut m, keys::host_endpoint("c", "n", "x"), as_b.clone(), 4);
        assert!(valid_ids(&m).is_empty());
        let slot = m.slot_of("n", "x").unwrap();
        assert!(matches!(m.check(slot), Err(Invalid::Other(r)) if r.contains("under host \"c\"")));
        assert_eq!(m.key_of(slot), keys::host_endpoint("c", "n", "x"));
        // The control: the same record under b's own prefix is b's endpoint, and c's refused
        // one, though earlier, does not hide it.
        put(&mut m, keys::host_endpoint("b", "n", "x"), as_b, 5);
        assert_eq!(valid_ids(&m), ["x"]);
    }

    /// Two hosts adding one name at once each create a key of their own; the earliest is the
    /// endpoint on every host, and the other takes over only when it goes.
    #[test]
    fn of_two_hosts_records_of_one_endpoint_the_earliest_counts() {
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::network("n"), network("n", 300), 1);
        put(&mut m, keys::host("b"), host("192.168.0.2"), 2);
        put(&mut m, keys::host("c"), host("192.168.0.3"), 3);
        let by_c = endpoint("x", "10.1.0.3", "c", "192.168.0.3");
        put(&mut m, keys::host_endpoint("c", "n", "x"), by_c, 5);
        let by_b = endpoint("x", "10.1.0.2", "b", "192.168.0.2");
        put(&mut m, keys::host_endpoint("b", "n", "x"), by_b, 4);
        let slot = m.slot_of("n", "x").unwrap();
        assert_eq!(&*m.check(slot).unwrap().host, "b");
        let keys: Vec<String> = m
            .endpoint_keys("n", "x")
            .into_iter()
            .map(|k| k.key)
            .collect();
        assert_eq!(
            keys,
            [
                keys::host_endpoint("b", "n", "x"),
                keys::host_endpoint("c", "n", "x")
            ]
        );
        // The later one goes (its host saw it lost): nothing changes.
        let touched = delete(&mut m, keys::host_endpoint("c", "n", "x"), 6);
        assert!(touched.slots.is_empty());
        assert_eq!(&*m.check(slot).unwrap().host, "b");
        delete(&mut m, keys::host_endpoint("b", "n", "x"), 7);
        assert!(m.slot_of("n", "x").is_none());
    }

    /// A host moving its record from the shared layout to its own prefix: copy, then delete.
    /// The endpoint is valid at every step, and its entries never change.
    #[test]
    fn a_record_moving_to_its_hosts_prefix_never_leaves_the_model() {
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::network("n"), network("n", 300), 1);
        put(&mut m, keys::host("b"), host("192.168.0.2"), 2);
        let record = endpoint("x", "10.1.0.2", "b", "192.168.0.2");
        put(&mut m, keys::endpoint("n", "x"), record.clone(), 3);
        let slot = m.slot_of("n", "x").unwrap();
        let touched = put(&mut m, keys::host_endpoint("b", "n", "x"), record, 9);
        assert!(
            touched.slots.is_empty(),
            "a copy behind the original changes nothing"
        );
        delete(&mut m, keys::endpoint("n", "x"), 10);
        assert_eq!(m.slot_of("n", "x"), Some(slot));
        assert_eq!(valid_ids(&m), ["x"]);
        assert_eq!(m.key_of(slot), keys::host_endpoint("b", "n", "x"));
    }

    /// Claims: the earliest holds its address; one older than its network (left by an earlier
    /// network of the name) holds nothing and is its host's to remove.
    #[test]
    fn the_earliest_claim_holds_an_address_and_leftovers_hold_nothing() {
        let ip: Ipv4Addr = "10.1.0.5".parse().unwrap();
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::host_claim("a", "n", ip), b"old".to_vec(), 1);
        put(&mut m, keys::network("n"), network("n", 300), 2);
        assert!(m.taken("n").is_empty());
        assert_eq!(m.leftover_claims_of("a"), [keys::host_claim("a", "n", ip)]);
        put(&mut m, keys::host_claim("b", "n", ip), b"web".to_vec(), 3);
        put(&mut m, keys::ipam("n", ip), b"db".to_vec(), 4);
        let holders: Vec<String> = m.claims_of("n", ip).into_iter().map(|c| c.owner).collect();
        assert_eq!(holders, ["web", "db"]);
        assert_eq!(m.taken("n"), [ip]);
        delete(&mut m, keys::host_claim("b", "n", ip), 5);
        assert_eq!(m.claims_of("n", ip)[0].owner, "db");
        // The network goes: every claim of it is a leftover of its host.
        delete(&mut m, keys::network("n"), 6);
        assert!(m.leftover_claims_of("b").is_empty());
        assert_eq!(m.leftover_claims_of("a"), [keys::host_claim("a", "n", ip)]);
    }

    /// Keys this host wrote in the shared layout are found for the move; a live host whose
    /// netd reads only that layout is named (while it lives, hosts keep writing it).
    #[test]
    fn a_hosts_shared_layout_keys_and_older_hosts_are_found() {
        let ip: Ipv4Addr = "10.1.0.1".parse().unwrap();
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::network("n"), network("n", 300), 1);
        let mine = endpoint("mine", "10.1.0.1", "a", "192.168.0.1");
        put(&mut m, keys::endpoint("n", "mine"), mine, 2);
        put(&mut m, keys::ipam("n", ip), b"mine".to_vec(), 3);
        let docker = netd_store::ipam::docker_owner("a");
        put(
            &mut m,
            keys::ipam("n", "10.1.0.9".parse().unwrap()),
            docker.into(),
            4,
        );
        let theirs = endpoint("theirs", "10.1.0.2", "b", "192.168.0.2");
        put(&mut m, keys::endpoint("n", "theirs"), theirs, 5);
        put(
            &mut m,
            keys::ipam("n", "10.1.0.2".parse().unwrap()),
            b"theirs".to_vec(),
            6,
        );
        let mut shared = m.shared_keys_of("a");
        shared.sort();
        assert_eq!(
            shared,
            [
                keys::endpoint("n", "mine"),
                keys::ipam("n", ip),
                keys::ipam("n", "10.1.0.9".parse().unwrap())
            ]
        );
        let mut old = host_record("192.168.0.2");
        old.per_host_keys = false;
        put(&mut m, keys::host("b"), schema::encode(&old), 7);
        put(&mut m, keys::host("c"), host("192.168.0.3"), 8);
        assert_eq!(m.shared_layout_hosts(), ["b"]);
        // A record of an older netd has no such field at all.
        let older = br#"{"version":1,"vtep_ip":"192.168.0.4","uplink_mtu":1500,"netd":"0.1"}"#;
        put(&mut m, keys::host("d"), older.to_vec(), 9);
        assert_eq!(m.shared_layout_hosts(), ["b", "d"]);
    }

    /// A host record naming the VTEP of a host registered before it (a misconfigured or a
    /// rogue host) is refused, and its endpoints with it, for as long as the first one holds
    /// the address; this host's own VTEP is never taken.
    #[test]
    fn a_host_record_cannot_take_a_vtep_another_host_holds() {
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::network("n"), network("n", 300), 1);
        put(&mut m, keys::host("b"), host("192.168.0.2"), 2);
        let theirs = endpoint("theirs", "10.1.0.2", "b", "192.168.0.2");
        put(&mut m, keys::endpoint("n", "theirs"), theirs, 3);
        put(&mut m, keys::host("evil"), host("192.168.0.2"), 4);
        let stolen = endpoint("stolen", "10.1.0.3", "evil", "192.168.0.2");
        put(&mut m, keys::endpoint("n", "stolen"), stolen, 5);
        put(&mut m, keys::host("mimic"), host("192.168.0.1"), 6);
        let mimic = endpoint("mimic", "10.1.0.4", "mimic", "192.168.0.1");
        put(&mut m, keys::endpoint("n", "mimic"), mimic, 7);
        assert_eq!(valid_ids(&m), ["theirs"]);
        let refused: Vec<(String, String)> = m.invalid_hosts().collect();
        assert_eq!(
            refused,
            [
                (
                    keys::host("evil"),
                    "VTEP 192.168.0.2 is host \"b\"'s, registered first".to_string()
                ),
                (
                    keys::host("mimic"),
                    "VTEP 192.168.0.1 is host \"a\"'s, registered first".to_string()
                ),
            ]
        );
        let hosts: Vec<&str> = m.hosts().map(|(name, _)| &**name).collect();
        assert_eq!(hosts, ["b"]);
        // The first holder gone, the next one registered holds the address.
        let touched = delete(&mut m, keys::host("b"), 8);
        assert!(touched.slots.contains(&m.slot_of("n", "stolen").unwrap()));
        assert_eq!(valid_ids(&m), ["stolen"]);
    }

    #[test]
    fn names_resolve_in_their_network_only_while_valid() {
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::network("n"), network("n", 300), 1);
        put(&mut m, keys::network("o"), network("o", 301), 2);
        put(&mut m, keys::host("b"), host("192.168.0.2"), 3);
        let mut web: EndpointRecord =
            schema::decode(&endpoint("e1", "10.1.0.1", "b", "192.168.0.2")).unwrap();
        web.names = vec!["Web".into(), "alias1".into()];
        put(&mut m, keys::endpoint("n", "e1"), schema::encode(&web), 4);
        // A record without names answers to its own.
        put(
            &mut m,
            keys::endpoint("o", "db"),
            endpoint("db", "10.1.0.2", "b", "192.168.0.2"),
            5,
        );
        let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let resolve = |m: &Model, network: &str, name: &str| -> Vec<Ipv4Addr> {
            m.names_of(network).get(name).cloned().unwrap_or_default()
        };
        assert_eq!(resolve(&m, "n", "web"), vec![ip("10.1.0.1")]);
        assert_eq!(resolve(&m, "n", "alias1"), vec![ip("10.1.0.1")]);
        assert!(
            resolve(&m, "o", "web").is_empty(),
            "not from another network"
        );
        assert_eq!(resolve(&m, "o", "db"), vec![ip("10.1.0.2")]);
        delete(&mut m, keys::host("b"), 6);
        assert!(resolve(&m, "n", "web").is_empty(), "gone with its host");
        put(&mut m, keys::host("b"), host("192.168.0.2"), 7);
        delete(&mut m, keys::endpoint("n", "e1"), 8);
        assert!(resolve(&m, "n", "web").is_empty(), "gone with its record");
    }

    #[test]
    fn a_vni_passes_to_the_next_network_when_its_holder_goes() {
        let mut m = Model::new(identity("a", "192.168.0.1"));
        put(&mut m, keys::network("first"), network("first", 300), 1);
        put(&mut m, keys::network("second"), network("second", 300), 2);
        assert!(m.network("first").is_some() && m.network("second").is_none());
        let ep = endpoint("e", "10.1.0.1", "a", "192.168.0.1");
        put(&mut m, keys::endpoint("second", "e"), ep, 3);
        assert!(valid_ids(&m).is_empty());
        let touched = delete(&mut m, keys::network("first"), 4);
        assert!(m.network("second").is_some());
        assert!(touched.slots.contains(&m.slot_of("second", "e").unwrap()));
        assert_eq!(valid_ids(&m), vec!["e"]);
    }
}
