//! The reconciler thread: one loop that applies store input, intents and periodic checks to
//! the model, plans the map changes and writes them, in arrival order.
//!
//! Watch batches that queue up while a batch is being written are merged into one, so a burst
//! of events costs one planning pass and one write per changed key.
//!
//! It reaches the kernel only through [`Kernel`] (the maps, the interfaces and the programs'
//! hooks): its unit tests (reconciler/tests.rs) drive it with commands against an in-memory
//! fake.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use netd_common::maps::MapId;
use netd_store::WatchEvent;
use tokio::sync::{mpsc, watch};

use super::{
    Attach, BatchObserver, Command, ControlError, EndpointView, Feed, LocalView, MapFill, Progress,
    Query, Setup, Summary,
    kernel::Kernel,
    local::{LocalEndpoint, LocalTable},
    model::{Identity, Invalid, Model, Name, Touched},
    names::Names,
    parents::Parents,
    plan::{Context, ParentPort, Planner},
};
use crate::datapath::{ChangeSet, Hook, MapState};

#[cfg(test)]
mod tests;

/// Failures of one map, logged once per run of failures.
#[derive(Debug, Default)]
struct MapHealth {
    failed_writes: u64,
    failing: Option<String>,
}

/// What comes after a command.
pub(super) enum After {
    Continue,
    /// A command taken off the queue while merging watch batches: the next one to handle.
    Then(Command),
    Stop,
}

pub(super) struct Reconciler<K> {
    identity: Identity,
    model: Model,
    planner: Planner,
    local: LocalTable,
    /// The maps, the interfaces and the hooks (the [`crate::datapath::Datapath`] outside tests).
    kernel: K,
    hooks: Parents,
    parent_ports: HashMap<Name, ParentPort>,
    macvlan_parent: Option<String>,
    run_dir: std::path::PathBuf,
    /// A listing being received.
    staging: Option<Model>,
    synced: bool,
    /// Per map the reconciler writes ([`MapState::MAPS`]).
    health: BTreeMap<MapId, MapHealth>,
    /// Keys whose value was refused -> the reason logged for them.
    invalid: HashMap<String, String>,
    invalid_total: u64,
    /// Networks whose MTU was reported as too big for this host's uplink.
    mtu_warned: HashSet<Name>,
    events_applied: u64,
    drift_repaired: u64,
    ticks: u32,
    last_batch: (Duration, usize),
    batch_duration: Box<dyn BatchObserver>,
    progress: watch::Sender<Progress>,
    summary: watch::Sender<Arc<Summary>>,
    /// DNS's snapshot: every network's names, republished when a batch changed some.
    names: Names,
    names_tx: watch::Sender<Arc<Names>>,
    /// Parts of the summary rebuilt only when they change.
    networks_view: Arc<BTreeMap<String, netd_store::schema::NetworkRecord>>,
    hosts_view: Arc<BTreeMap<String, netd_store::schema::HostRecord>>,
    local_view: Arc<Vec<LocalView>>,
}

impl<K: Kernel> Reconciler<K> {
    /// `hooks`: the macvlan parents found hooked at start (by an earlier run).
    pub(super) fn new(
        setup: Setup<K>,
        hooks: Parents,
        progress: watch::Sender<Progress>,
        summary: watch::Sender<Arc<Summary>>,
        names_tx: watch::Sender<Arc<Names>>,
    ) -> Self {
        let mut local = LocalTable::default();
        for ((network, id), ifname) in setup.local {
            let ifindex = setup.datapath.ifindex(&ifname);
            local.insert(
                network.as_str().into(),
                id.as_str().into(),
                LocalEndpoint {
                    ifname,
                    ifindex,
                    pending: None,
                },
            );
        }
        let me = setup.identity.host.clone();
        Self {
            model: Model::new(setup.identity.clone()),
            identity: setup.identity,
            planner: Planner::new(me),
            local,
            kernel: setup.datapath,
            hooks,
            parent_ports: HashMap::new(),
            macvlan_parent: setup.macvlan_parent,
            run_dir: setup.run_dir,
            staging: None,
            synced: false,
            health: BTreeMap::new(),
            invalid: HashMap::new(),
            invalid_total: 0,
            mtu_warned: HashSet::new(),
            events_applied: 0,
            drift_repaired: 0,
            ticks: 0,
            last_batch: (Duration::ZERO, 0),
            batch_duration: setup.batch_duration,
            progress,
            summary,
            names: Names::default(),
            names_tx,
            networks_view: Arc::default(),
            hosts_view: Arc::default(),
            local_view: Arc::default(),
        }
    }

    /// Runs until told to stop or until every [`super::Control`] is gone.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut next = None;
        while let Some(command) = next.take().or_else(|| rx.blocking_recv()) {
            match self.handle(command, &mut rx) {
                After::Continue => {}
                After::Then(command) => next = Some(command),
                After::Stop => return,
            }
        }
    }

    /// Handles one command; a watch batch takes the batches queued behind it in `queue` along.
    pub(super) fn handle(
        &mut self,
        command: Command,
        queue: &mut mpsc::Receiver<Command>,
    ) -> After {
        let mut after = After::Continue;
        match command {
            Command::Feed(Feed::Events(events)) => {
                // Merge what queued up behind this batch into it.
                let started = Instant::now();
                let mut touched = Touched::default();
                let mut count = self.apply_events(&events, &mut touched);
                while let Ok(more) = queue.try_recv() {
                    match more {
                        Command::Feed(Feed::Events(events)) => {
                            count += self.apply_events(&events, &mut touched);
                        }
                        other => {
                            after = After::Then(other);
                            break;
                        }
                    }
                }
                self.settle(touched);
                let took = started.elapsed();
                self.last_batch = (took, count);
                // Batches before the first listing apply nothing: not a latency.
                if count > 0 {
                    self.batch_duration.observe(took);
                }
                self.publish();
            }
            Command::Feed(feed) => self.listing(feed),
            Command::Attach(attach, reply) => {
                let _ = reply.send(self.attach(attach));
                self.publish();
            }
            Command::Detach { network, id, reply } => {
                let _ = reply.send(self.detach(&network, &id));
                self.publish();
            }
            Command::Query(query) => self.answer(query),
            Command::Tick => {
                self.tick();
                self.publish();
            }
            Command::Stop => after = After::Stop,
        }
        after
    }

    fn apply_events(&mut self, events: &[WatchEvent], touched: &mut Touched) -> usize {
        if !self.synced {
            // Events only follow a listing; without one there is nothing to apply them to.
            return 0;
        }
        for event in events {
            self.model.apply(event, touched);
        }
        self.events_applied += events.len() as u64;
        events.len()
    }

    fn listing(&mut self, feed: Feed) {
        match feed {
            Feed::ListBegin { revision } => {
                let mut model = Model::new(self.identity.clone());
                model.set_revision(revision);
                self.staging = Some(model);
            }
            Feed::ListPage(kvs) => {
                if let Some(model) = &mut self.staging {
                    // Everything is planned anew at the end: what this touches is not needed.
                    let mut ignored = Touched::default();
                    for kv in kvs {
                        model.apply(&WatchEvent::Put(kv), &mut ignored);
                    }
                }
            }
            Feed::ListSkipped(skipped) => {
                for value in skipped {
                    let reason = format!(
                        "a value of {} bytes, more than any netd record ({} KiB): not read",
                        value.bytes,
                        netd_store::MAX_RECORD_BYTES / 1024
                    );
                    self.refuse(value.key, reason);
                }
            }
            Feed::ListEnd => {
                if let Some(model) = self.staging.take() {
                    let started = Instant::now();
                    let count = model.endpoint_count();
                    self.adopt_listing(model);
                    self.last_batch = (started.elapsed(), count);
                    tracing::info!(
                        revision = self.model.revision(),
                        endpoints = count,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "store listing applied"
                    );
                    self.publish();
                }
            }
            Feed::Events(_) => {}
        }
    }

    /// Replaces the model with a fresh listing and makes the maps exactly its desired state.
    fn adopt_listing(&mut self, mut model: Model) {
        let mut ignored = Touched::default();
        // Endpoints this daemon attached whose records the listing does not have yet.
        for ((network, id), local) in self.local.iter() {
            if let Some(record) = &local.pending
                && model.slot_of(network, id).is_none()
            {
                model.put_endpoint(network, id, None, Ok(record.clone()), &mut ignored);
            }
        }
        self.model = model;
        self.planner = Planner::new(self.identity.host.clone());
        let touched = Touched {
            slots: self.model.slots().collect(),
            networks: self
                .model
                .networks()
                .map(|n| Name::from(n.name.as_str()))
                .collect(),
            hosts: true,
        };
        self.resolve_parents(touched.networks.iter());
        self.plan(&touched);
        self.note_invalid(&touched);
        self.refresh_names(None);
        self.model.reap();
        let started = Instant::now();
        match self.kernel.read_state() {
            Ok(actual) => {
                let read_ms = started.elapsed().as_millis() as u64;
                // The planner is fresh: everything read back counts as a difference.
                let entries = self.planner.adopt(actual);
                tracing::info!(entries, read_ms, "maps read back after the listing");
            }
            Err(error) => tracing::error!(%error, "cannot read the maps back"),
        }
        self.clear_pending();
        self.sync_hooks();
        self.flush();
        self.synced = true;
        self.refresh_views(true, true, true);
    }

    /// Applies what a batch of changes touched: plans, writes, records.
    fn settle(&mut self, mut touched: Touched) {
        if touched.is_empty() {
            return;
        }
        let changed_parents = self.resolve_parents(touched.networks.iter());
        for network in changed_parents {
            touched.slots.extend(self.model.slots_of(&network));
        }
        let local_changed = touched
            .slots
            .iter()
            .any(|&s| self.planner.is_own(&self.model, s));
        self.plan(&touched);
        self.note_invalid(&touched);
        // Before the reap: a deleted endpoint's slot still names its network.
        let networks = (!touched.hosts).then(|| {
            touched
                .slots
                .iter()
                .filter_map(|&s| self.model.get(s).map(|e| e.network.clone()))
                .chain(touched.networks.iter().cloned())
                .collect::<HashSet<Name>>()
        });
        self.refresh_names(networks);
        self.model.reap();
        self.clear_pending();
        self.sync_hooks();
        self.flush();
        self.refresh_views(!touched.networks.is_empty(), touched.hosts, local_changed);
    }

    /// Plans what `touched` changed (the planner reads the model, the local table and the
    /// parents; borrowed field by field, as it is itself borrowed mutably).
    fn plan(&mut self, touched: &Touched) {
        let ctx = Context {
            model: &self.model,
            local: &self.local,
            parents: &self.parent_ports,
        };
        self.planner.plan(&ctx, touched);
    }

    /// Writes what the plan marked; what fails is recorded per map and retried later.
    fn flush(&mut self) {
        let mut changes = self.planner.changes();
        if changes.is_empty() {
            return;
        }
        let applied = self.kernel.apply_changes(&mut changes);
        // Changes that did not run (a map could not be opened) count as failed: retried.
        self.planner.commit(&changes);
        let stats = match applied {
            Ok(stats) => stats,
            Err(error) => {
                tracing::error!(%error, "cannot write the maps");
                return;
            }
        };
        if stats.written + stats.deleted > 0 {
            tracing::debug!(
                written = stats.written,
                deleted = stats.deleted,
                "maps updated"
            );
        }
        self.record_health(&changes);
    }

    /// Counts failed writes per map and logs a map's failures once per run of them, with its
    /// name and fill.
    fn record_health(&mut self, changes: &ChangeSet) {
        for map in MapState::MAPS {
            let outcome = changes.outcome(map);
            let (fill, capacity) = (self.fill(map), self.capacity(map));
            let health = self.health.entry(map).or_default();
            health.failed_writes += outcome.failed;
            match outcome.first_error.map(|e| e.message.clone()) {
                Some(error) if health.failing.is_none() => {
                    tracing::error!(
                        map = map.name(),
                        entries = fill,
                        capacity,
                        failed = outcome.failed,
                        %error,
                        "map writes failing; the rest of the desired state is still applied"
                    );
                    health.failing = Some(error);
                }
                Some(error) => health.failing = Some(error),
                None if outcome.any_done && health.failing.take().is_some() => {
                    tracing::info!(map = map.name(), entries = fill, "map writes succeed again");
                }
                None => {}
            }
        }
    }

    /// How many entries map `map` holds, as far as the reconciler knows.
    fn fill(&self, map: MapId) -> usize {
        self.planner.applied.len_of(map)
    }

    fn capacity(&self, map: MapId) -> u32 {
        self.kernel.capacity(map)
    }

    /// Logs each refused value once (per reason) and counts it. An endpoint whose host is away
    /// is a normal state, not a bad value.
    fn note_invalid(&mut self, touched: &Touched) {
        let mut refused: Vec<(String, String)> = Vec::new();
        for &slot in &touched.slots {
            if self.model.get(slot).is_none() {
                continue;
            }
            match self.model.check(slot) {
                Err(Invalid::Other(reason)) => refused.push((self.model.key_of(slot), reason)),
                Ok(_) | Err(Invalid::HostGone | Invalid::Deleted) if !self.invalid.is_empty() => {
                    self.invalid.remove(&self.model.key_of(slot));
                }
                _ => {}
            }
        }
        if !touched.networks.is_empty() {
            refused.extend(self.model.invalid_networks());
            self.note_mtu(touched);
        }
        if touched.hosts {
            refused.extend(self.model.invalid_hosts());
        }
        for (key, reason) in refused {
            self.refuse(key, reason);
        }
    }

    /// Logs and counts a refused value, once per reason.
    fn refuse(&mut self, key: String, reason: String) {
        if self.invalid.get(&key) != Some(&reason) {
            tracing::warn!(%key, %reason, "invalid value in the store skipped");
            self.invalid_total += 1;
            self.invalid.insert(key, reason);
        }
    }

    /// Warns once per network whose MTU does not fit this host's uplink once encapsulated:
    /// its big packets would be dropped (and counted) here.
    fn note_mtu(&mut self, touched: &Touched) {
        let uplink = self.identity.record.uplink_mtu;
        for name in &touched.networks {
            let Some(net) = self.model.network(name) else {
                self.mtu_warned.remove(name);
                continue;
            };
            match net.mtu {
                Some(mtu)
                    if net.macvlan().is_none() && mtu + netd_common::VXLAN_OVERHEAD > uplink =>
                {
                    if self.mtu_warned.insert(name.clone()) {
                        tracing::warn!(
                            network = %name,
                            mtu,
                            uplink_mtu = uplink,
                            "network MTU + 50 B of VXLAN exceeds this host's uplink MTU: bigger packets are dropped"
                        );
                    }
                }
                _ => {
                    self.mtu_warned.remove(name);
                }
            }
        }
    }

    /// Endpoints attached in this run whose record the model now has from the store.
    fn clear_pending(&mut self) {
        let model = &self.model;
        for ((network, id), local) in self.local.iter_mut() {
            if local.pending.is_some()
                && model
                    .slot_of(network, id)
                    .and_then(|s| model.get(s))
                    .is_some_and(|e| e.create_revision.is_some())
            {
                local.pending = None;
            }
        }
    }

    /// Works out where each touched macvlan network leaves this host; returns the networks
    /// whose port changed.
    fn resolve_parents<'a>(&mut self, networks: impl Iterator<Item = &'a Name>) -> Vec<Name> {
        let mut changed = Vec::new();
        let networks: Vec<Name> = networks.cloned().collect();
        for name in networks {
            let port = self.model.network(&name).and_then(|net| {
                let spec = net.macvlan()?;
                let parent = self.macvlan_parent.clone().unwrap_or(spec.parent);
                let ifindex = self.kernel.ifindex(&parent)?;
                let info = self.kernel.link_info(&parent).ok()?;
                Some(ParentPort {
                    name: parent,
                    ifindex,
                    vlan: spec.vlan,
                    mac: info.mac,
                    host_access: spec.host_access,
                })
            });
            let moved = match port {
                Some(port) => self.parent_ports.insert(name.clone(), port.clone()) != Some(port),
                None => self.parent_ports.remove(&name).is_some(),
            };
            if moved {
                changed.push(name);
            }
        }
        changed
    }

    /// Hooks the parents in use (before entries point frames at them) and unhooks the others.
    fn sync_hooks(&mut self) {
        let wanted = self.planner.parents_in_use(&self.parent_ports);
        self.hooks.sync(&mut self.kernel, &wanted, &self.run_dir);
    }

    fn attach(&mut self, attach: Attach) -> Result<(), ControlError> {
        let network: Name = attach.network.as_str().into();
        let id: Name = attach.id.as_str().into();
        let ifindex = self
            .kernel
            .ifindex(&attach.ifname)
            .ok_or_else(|| ControlError::NoInterface(attach.ifname.clone()))?;
        self.kernel.attach(Hook::Endpoint, &attach.ifname)?;
        let in_store = self.model.slot_of(&network, &id).is_some();
        self.local.insert(
            network.clone(),
            id.clone(),
            LocalEndpoint {
                ifname: attach.ifname.clone(),
                ifindex: Some(ifindex),
                pending: (!in_store).then(|| attach.record.clone()),
            },
        );
        let mut touched = Touched::default();
        match self.model.slot_of(&network, &id) {
            Some(slot) => {
                touched.slots.insert(slot);
            }
            None => {
                self.model
                    .put_endpoint(&network, &id, None, Ok(attach.record), &mut touched);
            }
        }
        self.settle(touched);
        let slot = self.model.slot_of(&network, &id);
        if slot
            .is_some_and(|s| self.planner.contribution(s).is_local() && self.planner.is_applied(s))
        {
            return Ok(());
        }
        // Say why, then take it all back: an endpoint is either programmed or not there.
        let reason = match slot.map(|s| (s, self.planner.contribution(s))) {
            Some((s, super::plan::Contribution::None)) => match self.model.check(s) {
                Err(Invalid::Other(reason)) => reason,
                Err(_) => "its record is not valid here".into(),
                Ok(_) if self.model.network(&network).is_none() => {
                    format!("network {network:?} is not known to this daemon yet")
                }
                Ok(_) => "its network's parent interface is not on this host".into(),
            },
            _ => self
                .health
                .iter()
                .find_map(|(&map, h)| h.failing.as_ref().map(|e| (map, e)))
                .map_or_else(
                    || "its map entries could not be written".into(),
                    |(map, error)| {
                        format!(
                            "map {} refused its entry ({error}; {} of {} entries used)",
                            map.name(),
                            self.fill(map),
                            self.capacity(map)
                        )
                    },
                ),
        };
        let _ = self.detach(&network, &id);
        Err(ControlError::NotProgrammed {
            endpoint: attach.id,
            reason,
        })
    }

    fn detach(&mut self, network: &str, id: &str) -> Result<(), ControlError> {
        let (network, id): (Name, Name) = (network.into(), id.into());
        let Some(local) = self.local.remove(&network, &id) else {
            return Ok(());
        };
        let mut touched = Touched::default();
        if let Some(slot) = self.model.slot_of(&network, &id) {
            let only_here = self
                .model
                .get(slot)
                .is_some_and(|e| e.create_revision.is_none());
            if only_here {
                self.model.delete_endpoint(&network, &id, &mut touched);
            } else {
                touched.slots.insert(slot);
            }
        }
        self.settle(touched);
        self.refresh_views(false, false, true);
        // Always: a link pinned for an interface that is already gone (its namespace deleted)
        // must go too, or it would stay for ever. Only a live interface's failure is an error.
        let detached = self.kernel.detach(Hook::Endpoint, &local.ifname);
        if self.kernel.ifindex(&local.ifname).is_some() {
            detached?;
        }
        Ok(())
    }

    fn answer(&self, query: Query) {
        match query {
            Query::Endpoints { network, reply } => {
                let _ = reply.send(self.endpoints(network.as_deref()));
            }
            Query::MacInUse {
                network,
                mac,
                reply,
            } => {
                let taken = self
                    .model
                    .slots_of(&network)
                    .any(|s| self.model.check(s).is_ok_and(|r| r.mac == mac));
                let _ = reply.send(taken);
            }
            Query::Taken { network, reply } => {
                let _ = reply.send(self.model.taken(&network));
            }
            Query::ClaimsOf { network, ip, reply } => {
                let _ = reply.send(self.model.claims_of(&network, ip));
            }
            Query::EndpointKeys { network, id, reply } => {
                let _ = reply.send(self.model.endpoint_keys(&network, &id));
            }
            Query::NetworkKeys { network, reply } => {
                let (endpoints, claims) = self.model.network_keys(&network);
                let _ = reply.send(super::NetworkKeys { endpoints, claims });
            }
            Query::OwnKeys { reply } => {
                let me = self.model.identity().host.clone();
                let _ = reply.send(super::OwnKeys {
                    shared: self.model.shared_keys_of(&me),
                    leftover_claims: self.model.leftover_claims_of(&me),
                });
            }
        }
    }

    fn endpoints(&self, network: Option<&str>) -> Vec<EndpointView> {
        let view = |slot| {
            let ep = self.model.get(slot)?;
            let record = self.model.check(slot).ok()?;
            Some(EndpointView {
                network: ep.network.to_string(),
                id: ep.id.to_string(),
                ip: record.ip,
                mac: record.mac,
                host: record.host.to_string(),
                vtep: record.vtep,
            })
        };
        let mut list: Vec<EndpointView> = match network {
            Some(network) => self.model.slots_of(network).filter_map(view).collect(),
            None => self.model.slots().filter_map(view).collect(),
        };
        list.sort_by(|a, b| (&a.network, &a.id).cmp(&(&b.network, &b.id)));
        list
    }

    /// The periodic check: interfaces that came or went, failed writes, and every
    /// [`super::FULL_CHECK_EVERY`] ticks the maps themselves and the parents.
    fn tick(&mut self) {
        if !self.synced {
            return;
        }
        self.ticks = self.ticks.wrapping_add(1);
        let mut touched = Touched::default();
        for ((network, id), local) in self.local.iter_mut() {
            let mut now = self.kernel.ifindex(&local.ifname);
            if now == local.ifindex {
                continue;
            }
            // An interface under the endpoint's name again, a new one (the old one's hook went
            // with it): hooked before its entries are written, or not programmed until it is.
            if now.is_some()
                && let Err(error) = self.kernel.attach(Hook::Endpoint, &local.ifname)
            {
                tracing::warn!(
                    %error,
                    interface = %local.ifname,
                    "cannot hook an endpoint's interface; trying again at the next check"
                );
                now = None;
            }
            if now != local.ifindex {
                local.ifindex = now;
                if let Some(slot) = self.model.slot_of(network, id) {
                    touched.slots.insert(slot);
                }
            }
        }
        if self.ticks.is_multiple_of(super::FULL_CHECK_EVERY) {
            // Parents may have appeared (or gone) since: every macvlan network looks again.
            let networks: Vec<Name> = self
                .model
                .networks()
                .filter(|n| n.macvlan().is_some())
                .map(|n| Name::from(n.name.as_str()))
                .collect();
            touched.networks.extend(networks);
            let started = Instant::now();
            let read = self.kernel.read_state();
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "maps read back"
            );
            match read {
                Ok(actual) => {
                    let drift = self.planner.adopt(actual);
                    if drift > 0 {
                        tracing::warn!(
                            entries = drift,
                            "maps differed from what netd wrote; repairing"
                        );
                        self.drift_repaired += drift as u64;
                    }
                }
                Err(error) => tracing::error!(%error, "cannot read the maps back"),
            }
        }
        let retry = self.planner.retry_failed();
        if !touched.is_empty() {
            self.settle(touched);
        } else if retry || self.ticks.is_multiple_of(super::FULL_CHECK_EVERY) {
            self.flush();
            self.refresh_views(false, false, true);
        }
    }

    /// Rebuilds the names of `networks` (of every network when `None`: a host's change can
    /// touch any) and publishes them for DNS.
    fn refresh_names(&mut self, networks: Option<HashSet<Name>>) {
        match networks {
            Some(networks) if networks.is_empty() => return,
            Some(networks) => {
                for network in networks {
                    let table = self.model.names_of(&network);
                    self.names.set(network, table);
                }
            }
            None => {
                self.names.clear();
                let networks: Vec<Name> = self
                    .model
                    .networks()
                    .map(|n| Name::from(n.name.as_str()))
                    .collect();
                for network in networks {
                    let table = self.model.names_of(&network);
                    self.names.set(network, table);
                }
            }
        }
        self.names_tx.send_replace(Arc::new(self.names.clone()));
    }

    /// Rebuilds the parts of the summary that changed.
    fn refresh_views(&mut self, networks: bool, hosts: bool, local: bool) {
        if networks {
            self.networks_view = Arc::new(
                self.model
                    .networks()
                    .map(|n| (n.name.clone(), n.clone()))
                    .collect(),
            );
        }
        if hosts {
            self.hosts_view = Arc::new(
                self.model
                    .hosts()
                    .map(|(name, h)| (name.to_string(), h.clone()))
                    .collect(),
            );
        }
        if local {
            self.local_view = Arc::new(self.local_endpoints());
        }
    }

    /// This host's endpoints: those the store names this host for and those with an
    /// interface here.
    fn local_endpoints(&self) -> Vec<LocalView> {
        let me = &self.identity.host;
        let mut seen = HashSet::new();
        let mut list = Vec::new();
        for slot in self.model.slots_of_host(me) {
            let Some(ep) = self.model.get(slot) else {
                continue;
            };
            let Ok(record) = &ep.record else {
                continue;
            };
            let local = self.local.get(&ep.network, &ep.id);
            seen.insert((ep.network.clone(), ep.id.clone()));
            list.push(LocalView {
                network: ep.network.to_string(),
                id: ep.id.to_string(),
                record: Some(record.clone()),
                ifname: local.map(|l| l.ifname.clone()),
                programmed: self.planner.is_applied(slot),
            });
        }
        for ((network, id), local) in self.local.iter() {
            if !seen.contains(&(network.clone(), id.clone())) {
                list.push(LocalView {
                    network: network.to_string(),
                    id: id.to_string(),
                    record: local.pending.clone(),
                    ifname: Some(local.ifname.clone()),
                    programmed: false,
                });
            }
        }
        list.sort_by(|a, b| (&a.network, &a.id).cmp(&(&b.network, &b.id)));
        list
    }

    fn publish(&mut self) {
        self.progress.send_replace(Progress {
            synced: self.synced,
            revision: self.model.revision(),
        });
        let (programmed_local, programmed_remote) = self.planner.programmed();
        let maps = MapState::MAPS
            .into_iter()
            .map(|map| {
                let health = self.health.get(&map);
                MapFill {
                    name: map.name(),
                    entries: self.fill(map),
                    capacity: self.capacity(map),
                    failed_writes: health.map_or(0, |h| h.failed_writes),
                    last_error: health.and_then(|h| h.failing.clone()),
                }
            })
            .collect();
        self.summary.send_replace(Arc::new(Summary {
            synced: self.synced,
            revision: self.model.revision(),
            networks: self.networks_view.clone(),
            hosts: self.hosts_view.clone(),
            local: self.local_view.clone(),
            endpoints_known: self.model.endpoint_count(),
            programmed_local,
            programmed_remote,
            active_networks: self.planner.active_networks().count(),
            invalid_values: self.invalid_total,
            absent_hosts: Arc::new(self.model.absent_hosts()),
            shared_layout_hosts: Arc::new(self.model.shared_layout_hosts()),
            maps,
            events_applied: self.events_applied,
            drift_repaired: self.drift_repaired,
            last_batch: self.last_batch.0,
            last_batch_events: self.last_batch.1,
        }));
    }
}
