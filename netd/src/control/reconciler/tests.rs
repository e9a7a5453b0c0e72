//! The reconciler's decisions, driven through its commands against an in-memory kernel
//! ([`FakeKernel`]): the same model, planner and apply logic the daemon runs, without root.
//!
//! What the maps should hold is worked out independently: every record of the (simulated)
//! store planned from scratch ([`plan::from_scratch`]), as a daemon starting afresh would.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use netd_common::maps::FdbEntry;
use netd_store::{KeyValue, keys, schema::Mac};
use tokio::sync::oneshot;

use super::*;
use crate::{
    control::{
        FULL_CHECK_EVERY,
        fake::FakeKernel,
        kernel::Links as _,
        model::{
            decode_endpoint,
            tests::{endpoint, host, host_record, network, network_with_gateway},
        },
        plan,
    },
    datapath::{
        MapState,
        state::{FdbKeyOrd, NeighKeyOrd, ParentKeyOrd, VtepKeyOrd},
    },
};

const ME: &str = "a";
const VTEP_A: &str = "192.168.0.1";
const VTEP_B: &str = "192.168.0.2";
const VNI: u32 = 300;

/// The batch durations the reconciler reported.
#[derive(Clone, Default)]
struct Batches(Arc<Mutex<Vec<Duration>>>);

impl BatchObserver for Batches {
    fn observe(&self, took: Duration) {
        self.0.lock().unwrap().push(took);
    }
}

/// A run directory of its own, removed on drop.
struct RunDir(PathBuf);

impl RunDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self(std::env::temp_dir().join(format!("netd-reconciler-test-{}-{n}", std::process::id())))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One host's reconciler, a store it is fed from, and what it publishes.
struct Host {
    reconciler: Reconciler<FakeKernel>,
    tx: mpsc::Sender<Command>,
    queue: mpsc::Receiver<Command>,
    summary: watch::Receiver<Arc<Summary>>,
    progress: watch::Receiver<Progress>,
    /// DNS's snapshot, as the reconciler publishes it.
    names: watch::Receiver<Arc<crate::control::Names>>,
    batches: Batches,
    run_dir: RunDir,
    /// The store: every record at its latest revision.
    store: BTreeMap<String, KeyValue>,
    revision: i64,
    /// This host's endpoints -> the interface each is behind (what the expected maps use).
    interfaces: BTreeMap<(String, String), String>,
}

fn ifname(id: &str) -> String {
    format!("nd-{id}")
}

/// An endpoint record of host `host` ("a" is this one, "b" the other).
fn ep(id: &str, ip: &str, host: &str) -> Vec<u8> {
    let vtep = if host == ME { VTEP_A } else { VTEP_B };
    endpoint(id, ip, host, vtep)
}

fn mac(ip: &str) -> [u8; 6] {
    Mac::from_ipv4(ip.parse().unwrap()).0
}

fn fdb(ip: &str) -> FdbKeyOrd {
    FdbKeyOrd(VNI, mac(ip))
}

fn neigh(ip: &str) -> NeighKeyOrd {
    NeighKeyOrd(VNI, ip.parse::<std::net::Ipv4Addr>().unwrap().octets())
}

/// The summary's fill of `map` (found by its name, as `netd status` shows it).
fn fill(summary: &Summary, map: MapId) -> &MapFill {
    summary.maps.iter().find(|m| m.name == map.name()).unwrap()
}

impl Host {
    /// This host ("a"), with `kernel`, and interfaces found at start for `local` (network,
    /// endpoint) as an earlier run left them.
    fn new(mut kernel: FakeKernel, local: &[(&str, &str)]) -> Self {
        let mut interfaces = BTreeMap::new();
        for &(network, id) in local {
            kernel.add_link(&ifname(id));
            interfaces.insert((network.to_string(), id.to_string()), ifname(id));
        }
        let run_dir = RunDir::new();
        let batches = Batches::default();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let (summary_tx, summary) = watch::channel(Arc::new(Summary::default()));
        let (names_tx, names) = watch::channel(Arc::new(crate::control::Names::default()));
        let setup = Setup {
            identity: Identity {
                host: ME.into(),
                record: host_record(VTEP_A),
            },
            datapath: kernel,
            local: interfaces.clone().into_iter().collect(),
            macvlan_parent: None,
            run_dir: run_dir.0.clone(),
            batch_duration: Box::new(batches.clone()),
        };
        let (tx, queue) = mpsc::channel(1024);
        Self {
            reconciler: Reconciler::new(
                setup,
                Parents::default(),
                progress_tx,
                summary_tx,
                names_tx,
            ),
            tx,
            queue,
            summary,
            progress,
            names,
            batches,
            run_dir,
            store: BTreeMap::new(),
            revision: 0,
            interfaces,
        }
    }

    fn kernel(&mut self) -> &mut FakeKernel {
        &mut self.reconciler.kernel
    }

    fn maps(&self) -> MapState {
        self.reconciler.kernel.maps.clone()
    }

    fn summary(&self) -> Arc<Summary> {
        self.summary.borrow().clone()
    }

    /// Writes a record to the store; returns the watch event that says so.
    fn put(&mut self, key: String, value: Vec<u8>) -> WatchEvent {
        self.revision += 1;
        let create_revision = self
            .store
            .get(&key)
            .map_or(self.revision, |kv| kv.create_revision);
        let kv = KeyValue {
            key: key.clone(),
            value,
            create_revision,
            mod_revision: self.revision,
        };
        self.store.insert(key, kv.clone());
        WatchEvent::Put(kv)
    }

    fn delete(&mut self, key: String) -> WatchEvent {
        self.revision += 1;
        self.store.remove(&key);
        WatchEvent::Delete {
            key,
            mod_revision: self.revision,
        }
    }

    /// Queues a command, as [`super::super::Control`] does.
    fn send(&mut self, command: Command) {
        self.tx.try_send(command).unwrap();
    }

    /// Handles every queued command, as the reconciler's thread does.
    fn run_queued(&mut self) {
        let mut next = None;
        while let Some(command) = next.take().or_else(|| self.queue.try_recv().ok()) {
            match self.reconciler.handle(command, &mut self.queue) {
                After::Continue => {}
                After::Then(command) => next = Some(command),
                After::Stop => panic!("stopped"),
            }
        }
    }

    /// Feeds the whole store as a listing, two records a page.
    fn list(&mut self) {
        self.send(Command::Feed(Feed::ListBegin {
            revision: self.revision,
        }));
        let records: Vec<KeyValue> = self.store.values().cloned().collect();
        for page in records.chunks(2) {
            self.send(Command::Feed(Feed::ListPage(page.to_vec())));
        }
        self.send(Command::Feed(Feed::ListEnd));
        self.run_queued();
    }

    fn events(&mut self, events: Vec<WatchEvent>) {
        self.send(Command::Feed(Feed::Events(events)));
        self.run_queued();
    }

    fn tick(&mut self) {
        self.send(Command::Tick);
        self.run_queued();
    }

    /// Ticks until the next full check has run.
    fn full_check(&mut self) {
        for _ in 0..FULL_CHECK_EVERY - self.reconciler.ticks % FULL_CHECK_EVERY {
            self.tick();
        }
    }

    /// Attaches an endpoint of this host behind `nd-<id>` with the record `value`.
    fn attach(&mut self, network: &str, id: &str, value: &[u8]) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        let attach = Attach {
            network: network.into(),
            id: id.into(),
            ifname: ifname(id),
            record: decode_endpoint(id, value).unwrap(),
        };
        self.send(Command::Attach(attach, reply));
        self.run_queued();
        let result = answer.blocking_recv().unwrap();
        if result.is_ok() {
            self.interfaces
                .insert((network.into(), id.into()), ifname(id));
        }
        result
    }

    fn detach(&mut self, network: &str, id: &str) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Detach {
            network: network.into(),
            id: id.into(),
            reply,
        });
        self.run_queued();
        self.interfaces.remove(&(network.into(), id.into()));
        answer.blocking_recv().unwrap()
    }

    /// The valid endpoints, as the API lists them.
    fn endpoint_ids(&mut self) -> Vec<String> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Query(Query::Endpoints {
            network: None,
            reply,
        }));
        self.run_queued();
        let list = answer.blocking_recv().unwrap();
        list.into_iter().map(|e| e.id).collect()
    }

    /// The maps of a daemon planning every record of the store from scratch, with this host's
    /// endpoints behind their interfaces as the fake kernel has them now.
    fn expected(&self) -> MapState {
        let mut model = Model::new(Identity {
            host: ME.into(),
            record: host_record(VTEP_A),
        });
        for kv in self.store.values() {
            model.apply(&WatchEvent::Put(kv.clone()), &mut Touched::default());
        }
        let mut local = LocalTable::default();
        for ((network, id), ifname) in &self.interfaces {
            local.insert(
                network.as_str().into(),
                id.as_str().into(),
                LocalEndpoint {
                    ifname: ifname.clone(),
                    ifindex: self.reconciler.kernel.ifindex(ifname),
                    pending: None,
                },
            );
        }
        plan::from_scratch(&Context {
            model: &model,
            local: &local,
            parents: &HashMap::new(),
        })
    }

    /// An overlay network "n", hosts a and b registered.
    fn with_network(&mut self) {
        self.put(keys::network("n"), network("n", VNI));
        self.put(keys::host(ME), host(VTEP_A));
        self.put(keys::host("b"), host(VTEP_B));
    }

    /// An overlay network "n" with the gateway 10.1.0.254, hosts a and b registered, and this
    /// host's endpoint "mine" (10.1.0.1) in it.
    fn with_gateway_network(&mut self) {
        self.put(
            keys::network("n"),
            network_with_gateway("n", VNI, "10.1.0.254"),
        );
        self.put(keys::host(ME), host(VTEP_A));
        self.put(keys::host("b"), host(VTEP_B));
        self.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME));
    }
}

#[test]
fn a_listing_then_watch_events_program_exactly_the_desired_entries() {
    let mut h = Host::new(FakeKernel::default(), &[("n", "mine")]);
    h.with_gateway_network();
    h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"));
    h.list();
    let maps = h.maps();
    assert_eq!(maps, h.expected());
    // This host's endpoint, its peer and the gateway; the peer's host as a VTEP.
    assert_eq!(maps.endpoints.len(), 1);
    assert_eq!(maps.fdb.len(), 3);
    assert_eq!(maps.neigh.len(), 3);
    assert_eq!(
        maps.fdb.get(&fdb("10.1.0.2")),
        Some(&FdbEntry::remote([192, 168, 0, 2]))
    );
    assert!(maps.vteps.contains_key(&VtepKeyOrd([192, 168, 0, 2], VNI)));
    assert_eq!(
        h.batches.0.lock().unwrap().len(),
        0,
        "a listing is no batch"
    );

    // A peer comes, one goes, and another network this host is not on gets one.
    let events = vec![
        h.put(keys::endpoint("n", "p2"), ep("p2", "10.1.0.3", "b")),
        h.delete(keys::endpoint("n", "p1")),
        h.put(keys::network("m"), network("m", 301)),
        h.put(keys::endpoint("m", "q"), ep("q", "10.1.0.9", "b")),
    ];
    h.events(events);
    let maps = h.maps();
    assert_eq!(maps, h.expected());
    assert!(maps.fdb.contains_key(&fdb("10.1.0.3")));
    assert!(!maps.fdb.contains_key(&fdb("10.1.0.2")));
    assert!(!maps.neigh.contains_key(&neigh("10.1.0.2")));
    assert!(
        !maps.fdb.contains_key(&FdbKeyOrd(301, mac("10.1.0.9"))),
        "a peer of a network this host is not on"
    );
    let summary = h.summary();
    assert_eq!(summary.events_applied, 4);
    assert_eq!(summary.last_batch_events, 4);
    assert_eq!(summary.revision, h.revision);
    assert_eq!(h.batches.0.lock().unwrap().len(), 1);
}

/// The "every query waits in the reconciler's channel": DNS reads the names the
/// reconciler publishes after each batch, without a query to it.
#[test]
fn names_are_published_for_dns_after_each_batch_without_a_query() {
    let mut h = Host::new(FakeKernel::default(), &[("n", "mine")]);
    h.with_gateway_network();
    h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"));
    h.list();
    let ip = |s: &str| -> std::net::Ipv4Addr { s.parse().unwrap() };
    let resolve = |h: &Host, network: &str, name: &str| h.names.borrow().resolve(&[network], name);
    assert_eq!(resolve(&h, "n", "p1"), vec![ip("10.1.0.2")]);
    let events = vec![
        h.put(keys::endpoint("n", "p2"), ep("p2", "10.1.0.3", "b")),
        h.delete(keys::endpoint("n", "p1")),
        h.put(keys::network("m"), network("m", 301)),
        h.put(keys::endpoint("m", "q"), ep("q", "10.1.0.9", "b")),
    ];
    h.events(events);
    assert_eq!(resolve(&h, "n", "P2"), vec![ip("10.1.0.3")]);
    assert!(resolve(&h, "n", "p1").is_empty(), "gone with its record");
    assert_eq!(resolve(&h, "m", "q"), vec![ip("10.1.0.9")]);
    assert!(resolve(&h, "n", "q").is_empty(), "not from another network");
}

#[test]
fn watch_batches_queued_behind_one_are_applied_with_it() {
    let mut h = Host::new(FakeKernel::default(), &[("n", "mine")]);
    h.with_network();
    h.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME));
    h.list();
    let first = vec![h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"))];
    let second = vec![h.put(keys::endpoint("n", "p2"), ep("p2", "10.1.0.3", "b"))];
    let third = vec![h.delete(keys::endpoint("n", "p1"))];
    h.send(Command::Feed(Feed::Events(first)));
    h.send(Command::Feed(Feed::Events(second)));
    h.send(Command::Feed(Feed::Events(third)));
    // A question queued behind them is answered after, from the state they made.
    let (reply, answer) = oneshot::channel();
    h.send(Command::Query(Query::Endpoints {
        network: Some("n".into()),
        reply,
    }));
    let before = h.reconciler.kernel.operations;
    h.run_queued();
    assert_eq!(h.batches.0.lock().unwrap().len(), 1, "one batch of three");
    assert_eq!(h.summary().last_batch_events, 3);
    assert_eq!(h.maps(), h.expected());
    // p1 came and went within the batch: only p2's entries (FDB, NEIGH and its host's
    // VTEPS entry) were written.
    assert_eq!(h.reconciler.kernel.operations - before, 3);
    let ids: Vec<String> = answer
        .blocking_recv()
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["mine", "p2"]);
}

#[test]
fn nothing_is_deleted_before_the_first_listing_and_a_relist_sweeps_what_is_gone() {
    let mut h = Host::new(FakeKernel::default(), &[("n", "mine")]);
    h.with_network();
    h.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME));
    h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"));
    h.put(keys::endpoint("n", "stale"), ep("stale", "10.1.0.3", "b"));
    // What an earlier run left pinned; "stale" went from the store while netd was down.
    let earlier = h.expected();
    h.kernel().maps = earlier.clone();
    h.delete(keys::endpoint("n", "stale"));

    // Before a listing has ended: watch events (even ones that would program an endpoint
    // and delete another), ticks (full checks included) and a listing under way touch nothing.
    let events = vec![
        h.put(keys::network("n"), network("n", VNI)),
        h.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME)),
        h.put(keys::endpoint("n", "p2"), ep("p2", "10.1.0.4", "b")),
        h.delete(keys::endpoint("n", "p1")),
        h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b")),
    ];
    h.events(events);
    h.full_check();
    h.send(Command::Feed(Feed::ListBegin {
        revision: h.revision,
    }));
    let records: Vec<KeyValue> = h.store.values().cloned().collect();
    h.send(Command::Feed(Feed::ListPage(records[..2].to_vec())));
    h.run_queued();
    assert_eq!(h.maps(), earlier);
    assert_eq!(h.reconciler.kernel.operations, 0);
    assert!(!h.summary().synced);
    assert!(!h.progress.borrow().synced);

    // The listing ends: the maps become its desired state, touching only what differs.
    h.send(Command::Feed(Feed::ListPage(records[2..].to_vec())));
    h.send(Command::Feed(Feed::ListEnd));
    h.run_queued();
    let expected = h.expected();
    assert_eq!(h.maps(), expected);
    assert!(!h.maps().fdb.contains_key(&fdb("10.1.0.3")), "stale swept");
    assert!(h.maps().fdb.contains_key(&fdb("10.1.0.4")));
    let differences = ChangeSet::between(&earlier, &expected);
    let count = differences.fdb.len()
        + differences.neigh.len()
        + differences.vteps.len()
        + differences.endpoints.len()
        + differences.parents.len();
    assert_eq!(count, 4, "stale out, p2 in");
    assert_eq!(h.reconciler.kernel.operations, count);
    assert_eq!(
        *h.progress.borrow(),
        Progress {
            synced: true,
            revision: h.revision
        }
    );

    // An endpoint attached here whose record the store has not echoed yet.
    h.kernel().add_link(&ifname("fresh"));
    h.attach("n", "fresh", &ep("fresh", "10.1.0.5", ME))
        .unwrap();
    // The watch lost events (a compaction): a re-list sweeps what the store no longer has,
    // adds what it missed, and keeps the attached endpoint it does not have yet.
    h.delete(keys::endpoint("n", "p1"));
    h.put(keys::endpoint("n", "p3"), ep("p3", "10.1.0.6", "b"));
    h.list();
    let maps = h.maps();
    assert!(!maps.fdb.contains_key(&fdb("10.1.0.2")));
    assert!(maps.fdb.contains_key(&fdb("10.1.0.6")));
    assert!(
        maps.fdb.contains_key(&fdb("10.1.0.5")),
        "the attached one stays"
    );
    assert!(
        h.summary()
            .local
            .iter()
            .any(|l| l.id == "fresh" && l.programmed)
    );
    // Its record arrives: now the expected state has it from the store too.
    let echo = vec![h.put(keys::endpoint("n", "fresh"), ep("fresh", "10.1.0.5", ME))];
    h.events(echo);
    assert_eq!(h.maps(), h.expected());
}

#[test]
fn a_full_map_fails_the_write_counts_it_retries_it_and_still_applies_the_rest() {
    let kernel = FakeKernel::default().with_capacity(MapId::Fdb, 4);
    let mut h = Host::new(kernel, &[("n", "mine")]);
    h.with_network();
    h.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME));
    let peers: Vec<(String, String)> = (1..=5)
        .map(|i| (format!("p{i}"), format!("10.1.0.{}", 1 + i)))
        .collect();
    for (id, ip) in &peers {
        h.put(keys::endpoint("n", id), ep(id, ip, "b"));
    }
    h.list();
    // Six FDB entries wanted, room for four: two fail; every other map has everything.
    let expected = h.expected();
    let maps = h.maps();
    assert_eq!(expected.fdb.len(), 6);
    assert_eq!(maps.fdb.len(), 4);
    assert_eq!(maps.neigh, expected.neigh);
    assert_eq!(maps.endpoints, expected.endpoints);
    assert_eq!(maps.vteps, expected.vteps);
    let summary = h.summary();
    let fdb_fill = fill(&summary, MapId::Fdb);
    assert_eq!(
        (fdb_fill.entries, fdb_fill.capacity, fdb_fill.failed_writes),
        (4, 4, 2)
    );
    assert!(
        fdb_fill
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("too long")),
        "{fdb_fill:?}"
    );
    assert_eq!(fill(&summary, MapId::Neigh).failed_writes, 0);
    assert!(fill(&summary, MapId::Neigh).last_error.is_none());

    // Each tick retries what failed: still full, counted again.
    h.tick();
    assert_eq!(fill(&h.summary(), MapId::Fdb).failed_writes, 4);

    // Two peers whose entries are in go, in a batch that has nothing else to write: their
    // deletes are not lost to the full map, and the next retry finds room for what failed.
    let written: Vec<&(String, String)> = peers
        .iter()
        .filter(|(_, ip)| maps.fdb.contains_key(&fdb(ip)))
        .take(2)
        .collect();
    assert_eq!(written.len(), 2);
    let gone: Vec<WatchEvent> = written
        .iter()
        .map(|(id, _)| h.delete(keys::endpoint("n", id)))
        .collect();
    h.events(gone);
    for (_, ip) in written {
        assert!(!h.maps().fdb.contains_key(&fdb(ip)), "{ip} still in FDB");
        assert!(
            !h.maps().neigh.contains_key(&neigh(ip)),
            "{ip} still in NEIGH"
        );
    }
    h.tick();
    assert_eq!(h.maps(), h.expected());
    let summary = h.summary();
    let fdb_fill = fill(&summary, MapId::Fdb);
    assert_eq!((fdb_fill.entries, fdb_fill.failed_writes), (4, 4));
    assert!(fdb_fill.last_error.is_none(), "{fdb_fill:?}");

    // Full again, exactly: one batch deleting a peer and adding another. The delete runs
    // first, so the add finds the room it freed, in the same batch.
    let (left, left_ip) = peers
        .iter()
        .find(|(id, _)| h.store.contains_key(&keys::endpoint("n", id)))
        .unwrap();
    let swap = vec![
        h.put(keys::endpoint("n", "p9"), ep("p9", "10.1.0.20", "b")),
        h.delete(keys::endpoint("n", left)),
    ];
    h.events(swap);
    assert_eq!(h.maps(), h.expected());
    assert!(h.maps().fdb.contains_key(&fdb("10.1.0.20")));
    assert!(!h.maps().fdb.contains_key(&fdb(left_ip)));
    assert_eq!(
        fill(&h.summary(), MapId::Fdb).failed_writes,
        4,
        "no failure"
    );
}

#[test]
fn maps_that_cannot_be_used_are_written_once_they_can() {
    let mut h = Host::new(FakeKernel::default(), &[("n", "mine")]);
    h.with_network();
    h.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME));
    h.list();
    h.kernel().broken = true;
    let event = vec![h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"))];
    h.events(event);
    assert!(!h.maps().fdb.contains_key(&fdb("10.1.0.2")));
    h.kernel().broken = false;
    h.tick();
    assert_eq!(h.maps(), h.expected());
}

#[test]
fn an_attach_into_a_full_map_fails_and_leaves_nothing() {
    let kernel = FakeKernel::default().with_capacity(MapId::Endpoints, 1);
    let mut h = Host::new(kernel, &[]);
    h.with_network();
    h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"));
    h.list();
    assert_eq!(h.maps(), MapState::default(), "no endpoint here: no peers");

    h.kernel().add_link(&ifname("first"));
    h.attach("n", "first", &ep("first", "10.1.0.1", ME))
        .unwrap();
    assert!(h.reconciler.kernel.hooked(Hook::Endpoint, &ifname("first")));
    // Programmed from the attach's record; then the store has it (as the service publishes it).
    assert_eq!(h.maps().endpoints.len(), 1);
    let published = vec![h.put(keys::endpoint("n", "first"), ep("first", "10.1.0.1", ME))];
    h.events(published);
    assert_eq!(h.maps(), h.expected());
    assert_eq!(h.maps().fdb.len(), 2);

    // NETD_ENDPOINTS is full: the attach fails, saying why, and undoes all it did.
    let before = h.maps();
    h.kernel().add_link(&ifname("second"));
    let error = h
        .attach("n", "second", &ep("second", "10.1.0.3", ME))
        .unwrap_err();
    match &error {
        ControlError::NotProgrammed { endpoint, reason } => {
            assert_eq!(endpoint, "second");
            assert!(reason.contains("NETD_ENDPOINTS"), "{reason}");
            assert!(reason.contains("1 of 1 entries used"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.maps(), before, "its FDB and NEIGH entries stayed");
    assert!(
        !h.reconciler
            .kernel
            .hooked(Hook::Endpoint, &ifname("second"))
    );
    assert_eq!(h.endpoint_ids(), ["first", "p1"]);
    let summary = h.summary();
    let local: Vec<&str> = summary.local.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(local, ["first"]);
    assert!(fill(&summary, MapId::Endpoints).failed_writes >= 1);
    // Nothing of it is retried later either.
    let operations = h.reconciler.kernel.operations;
    h.full_check();
    assert_eq!(h.maps(), before);
    assert_eq!(h.reconciler.kernel.operations, operations);

    // No such interface, or a record this host would refuse: the same, nothing stays.
    let error = h
        .attach("n", "ghost", &ep("ghost", "10.1.0.4", ME))
        .unwrap_err();
    assert!(matches!(error, ControlError::NoInterface(_)), "{error:?}");
    h.kernel().add_link(&ifname("outside"));
    let error = h
        .attach("n", "outside", &ep("outside", "10.9.0.1", ME))
        .unwrap_err();
    assert!(
        matches!(&error, ControlError::NotProgrammed { reason, .. } if reason.contains("outside network")),
        "{error:?}"
    );
    assert!(
        !h.reconciler
            .kernel
            .hooked(Hook::Endpoint, &ifname("outside"))
    );
    assert_eq!(h.maps(), before);
    assert_eq!(h.endpoint_ids(), ["first", "p1"]);
}

#[test]
fn detach_takes_everything_out_and_again_does_nothing() {
    let mut h = Host::new(FakeKernel::default(), &[]);
    h.with_network();
    h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"));
    h.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME));
    h.list();
    h.kernel().add_link(&ifname("mine"));
    h.attach("n", "mine", &ep("mine", "10.1.0.1", ME)).unwrap();
    assert_eq!(h.maps().fdb.len(), 2);

    // Its record stays in the store (the caller deletes it): without its interface here,
    // nothing of it or of its peers is programmed.
    h.detach("n", "mine").unwrap();
    assert_eq!(h.maps(), MapState::default());
    assert_eq!(h.maps(), h.expected());
    assert!(!h.reconciler.kernel.hooked(Hook::Endpoint, &ifname("mine")));
    assert!(
        h.summary()
            .local
            .iter()
            .all(|l| l.ifname.is_none() && !l.programmed)
    );
    let operations = h.reconciler.kernel.operations;
    h.detach("n", "mine").unwrap();
    h.detach("n", "never-attached").unwrap();
    assert_eq!(h.reconciler.kernel.operations, operations);

    // An endpoint whose interface went with its namespace before the detach.
    h.kernel().add_link(&ifname("brief"));
    h.attach("n", "brief", &ep("brief", "10.1.0.7", ME))
        .unwrap();
    h.kernel().remove_link(&ifname("brief"));
    h.detach("n", "brief").unwrap();
    assert_eq!(h.maps(), MapState::default());
}

#[test]
fn drift_is_found_and_repaired_by_the_periodic_check() {
    let mut h = Host::new(FakeKernel::default(), &[("n", "mine")]);
    h.with_network();
    h.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME));
    h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"));
    h.put(keys::endpoint("n", "p2"), ep("p2", "10.1.0.3", "b"));
    h.list();
    let expected = h.expected();
    assert_eq!(h.maps(), expected);
    // Behind netd's back: one entry changed, one deleted, one added.
    let maps = &mut h.kernel().maps;
    maps.fdb
        .insert(fdb("10.1.0.2"), FdbEntry::remote([192, 168, 0, 99]));
    maps.neigh.remove(&neigh("10.1.0.3"));
    maps.fdb
        .insert(fdb("10.1.0.50"), FdbEntry::remote([192, 168, 0, 2]));
    let drifted = h.maps();
    // The cheap ticks do not read the maps; the full check does, and repairs them.
    for _ in 1..FULL_CHECK_EVERY {
        h.tick();
    }
    assert_eq!(h.maps(), drifted);
    assert_eq!(h.summary().drift_repaired, 0);
    h.tick();
    assert_eq!(h.maps(), expected);
    assert_eq!(h.summary().drift_repaired, 3);
    // Nothing differs any more: the next check writes nothing.
    let operations = h.reconciler.kernel.operations;
    h.full_check();
    assert_eq!(h.reconciler.kernel.operations, operations);
    assert_eq!(h.summary().drift_repaired, 3);
}

#[test]
fn an_invalid_store_value_is_skipped_and_counted_once() {
    let mut h = Host::new(FakeKernel::default(), &[("n", "mine")]);
    h.with_network();
    h.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME));
    h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"));
    h.put(keys::endpoint("n", "garbled"), b"{not json".to_vec());
    h.put(keys::network("bad"), b"[]".to_vec());
    // A host that is away is a normal state, not a bad value.
    h.put(
        keys::endpoint("n", "away"),
        endpoint("away", "10.1.0.8", "c", "192.168.0.3"),
    );
    h.list();
    assert_eq!(h.maps(), h.expected());
    assert_eq!(h.maps().fdb.len(), 2);
    assert_eq!(h.summary().invalid_values, 2);

    // The same bad value again is not counted again; another one is.
    let again = vec![h.put(keys::endpoint("n", "garbled"), b"{not json".to_vec())];
    h.events(again);
    assert_eq!(h.summary().invalid_values, 2);
    let elsewhere = vec![h.put(
        keys::endpoint("n", "foreign"),
        endpoint("foreign", "10.1.0.9", "b", "192.168.0.66"),
    )];
    h.events(elsewhere);
    assert_eq!(h.summary().invalid_values, 3);
    assert!(!h.maps().fdb.contains_key(&fdb("10.1.0.9")));

    // Fixed, it is programmed; broken again in the same way, it counts again.
    let fixed = vec![h.put(
        keys::endpoint("n", "garbled"),
        ep("garbled", "10.1.0.4", "b"),
    )];
    h.events(fixed);
    assert!(h.maps().fdb.contains_key(&fdb("10.1.0.4")));
    assert_eq!(h.maps(), h.expected());
    let broken = vec![h.put(keys::endpoint("n", "garbled"), b"{not json".to_vec())];
    h.events(broken);
    assert!(!h.maps().fdb.contains_key(&fdb("10.1.0.4")));
    assert_eq!(h.summary().invalid_values, 4);
}

#[test]
fn an_endpoint_whose_interface_disappears_is_taken_off_and_comes_back_with_it() {
    let mut h = Host::new(FakeKernel::default(), &[("n", "mine")]);
    h.with_network();
    h.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME));
    h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"));
    h.list();
    assert_eq!(h.maps().endpoints.len(), 1);

    // Its namespace went: at the next tick its entries go, and with it this host's only
    // endpoint in the network, so the peers' too.
    h.kernel().remove_link(&ifname("mine"));
    h.tick();
    assert_eq!(h.maps(), MapState::default());
    assert_eq!(h.maps(), h.expected());
    let summary = h.summary();
    let mine = summary.local.iter().find(|l| l.id == "mine").unwrap();
    assert!(!mine.programmed);
    assert_eq!(summary.programmed_local, 0);

    // An interface by that name is back (a new ifindex; the old one's hook went with it), and
    // the kernel refuses to hook it: not programmed, and tried again at each check.
    h.kernel().refuse_hooks = true;
    let ifindex = h.kernel().add_link(&ifname("mine"));
    h.tick();
    assert!(!h.reconciler.kernel.hooked(Hook::Endpoint, &ifname("mine")));
    assert_eq!(h.maps(), MapState::default());
    assert!(
        h.summary()
            .local
            .iter()
            .any(|l| l.id == "mine" && !l.programmed)
    );

    // Hooked at the next check, and programmed behind it.
    h.kernel().refuse_hooks = false;
    h.tick();
    assert!(h.reconciler.kernel.hooked(Hook::Endpoint, &ifname("mine")));
    assert_eq!(h.maps(), h.expected());
    assert!(h.maps().endpoints.contains_key(&ifindex));
    assert_eq!(
        h.maps().fdb.get(&fdb("10.1.0.1")),
        Some(&FdbEntry::local(ifindex))
    );
    assert!(
        h.summary()
            .local
            .iter()
            .any(|l| l.id == "mine" && l.programmed)
    );
}

#[test]
fn the_summary_says_synced_revision_fill_and_failures() {
    let kernel = FakeKernel::default().with_capacity(MapId::Neigh, 3);
    let mut h = Host::new(kernel, &[("n", "mine")]);
    assert!(!h.summary().synced);
    h.with_network();
    h.put(keys::endpoint("n", "mine"), ep("mine", "10.1.0.1", ME));
    h.put(keys::endpoint("n", "p1"), ep("p1", "10.1.0.2", "b"));
    h.put(keys::endpoint("n", "p2"), ep("p2", "10.1.0.3", "b"));
    h.put(keys::endpoint("n", "away"), ep("away", "10.1.0.9", "c"));
    h.list();
    let summary = h.summary();
    assert!(summary.synced);
    assert_eq!(summary.revision, h.revision);
    assert_eq!(
        *h.progress.borrow(),
        Progress {
            synced: true,
            revision: h.revision
        }
    );
    assert_eq!(summary.endpoints_known, 4);
    assert_eq!(
        (summary.programmed_local, summary.programmed_remote),
        (1, 2)
    );
    assert_eq!(summary.active_networks, 1);
    assert_eq!(summary.networks.keys().collect::<Vec<_>>(), ["n"]);
    assert_eq!(summary.hosts.keys().collect::<Vec<_>>(), ["a", "b"]);
    let local: Vec<(&str, bool)> = summary
        .local
        .iter()
        .map(|l| (l.id.as_str(), l.programmed))
        .collect();
    assert_eq!(local, [("mine", true)]);
    let fills: Vec<(&str, usize, u32, u64)> = summary
        .maps
        .iter()
        .map(|m| (m.name, m.entries, m.capacity, m.failed_writes))
        .collect();
    assert_eq!(
        fills,
        [
            ("NETD_ENDPOINTS", 1, 64, 0),
            ("NETD_FDB", 3, 64, 0),
            ("NETD_NEIGH", 3, 3, 0),
            ("NETD_VTEPS", 1, 64, 0),
            ("NETD_PARENTS", 0, 64, 0),
        ]
    );
    assert!(summary.maps.iter().all(|m| m.last_error.is_none()));

    // A batch moves the revision on; a peer more does not fit NEIGH: the summary says so.
    let event = vec![
        h.put(keys::network("m"), network("m", 301)),
        h.put(keys::endpoint("n", "p3"), ep("p3", "10.1.0.4", "b")),
    ];
    h.events(event);
    let summary = h.summary();
    assert_eq!(summary.revision, h.revision);
    assert_eq!(summary.networks.len(), 2);
    assert_eq!(summary.active_networks, 1);
    assert_eq!(summary.last_batch_events, 2);
    let neigh_fill = fill(&summary, MapId::Neigh);
    assert_eq!((neigh_fill.entries, neigh_fill.failed_writes), (3, 1));
    assert!(neigh_fill.last_error.is_some());
    assert_eq!(fill(&summary, MapId::Fdb).entries, 4);
    // p3 has its FDB entry and not its NEIGH one: not programmed.
    assert_eq!(
        (summary.programmed_local, summary.programmed_remote),
        (1, 2)
    );
}

#[test]
fn a_macvlan_parent_is_hooked_and_made_promiscuous_while_a_network_uses_it() {
    let mut h = Host::new(FakeKernel::default(), &[]);
    let parent = "lan0";
    let parent_ifindex = h.kernel().add_link(parent);
    let mut record: netd_store::schema::NetworkRecord =
        netd_store::schema::decode(&network("lan", VNI)).unwrap();
    record.driver = netd_store::schema::DRIVER_MACVLAN.into();
    record.options = [("parent".to_string(), format!("{parent}.10"))].into();
    h.put(keys::network("lan"), netd_store::schema::encode(&record));
    h.put(keys::host(ME), host(VTEP_A));
    h.list();
    assert!(!h.reconciler.kernel.hooked(Hook::Parent, parent));

    let m1 = h.kernel().add_link(&ifname("m1"));
    h.attach("lan", "m1", &ep("m1", "10.1.0.1", ME)).unwrap();
    let kernel = &h.reconciler.kernel;
    assert!(kernel.hooked(Hook::Parent, parent));
    assert!(
        !kernel.hooked(Hook::ParentEgress, parent),
        "no host access asked"
    );
    assert!(kernel.links[parent].promisc);
    let marker = h.run_dir.0.join("promisc").join(parent);
    assert!(marker.exists());
    let port = kernel.maps.parents[&ParentKeyOrd(parent_ifindex, 10)];
    assert_eq!((port.count, port.ports[0]), (1, m1));
    assert_eq!(kernel.maps.endpoints[&m1].parent_ifindex, parent_ifindex);

    // The last endpoint goes: the parent is let go, as it was found.
    h.detach("lan", "m1").unwrap();
    let kernel = &h.reconciler.kernel;
    assert!(!kernel.hooked(Hook::Parent, parent));
    assert!(!kernel.links[parent].promisc);
    assert!(!marker.exists());
    assert!(kernel.maps.parents.is_empty());

    // A parent already promiscuous is left so when released.
    h.kernel().links.get_mut(parent).unwrap().promisc = true;
    h.kernel().add_link(&ifname("m2"));
    h.attach("lan", "m2", &ep("m2", "10.1.0.2", ME)).unwrap();
    assert!(!marker.exists());
    h.detach("lan", "m2").unwrap();
    assert!(h.reconciler.kernel.links[parent].promisc);
}

/// A record that takes its network's gateway MAC (written by a host gone rogue, or straight
/// into the store) is never programmed: the gateway keeps its entry while the record is there
/// and after it goes.
#[test]
fn an_endpoint_may_not_take_its_gateways_mac() {
    let mut h = Host::new(FakeKernel::default(), &[("n", "mine")]);
    h.with_gateway_network();
    h.list();
    assert_eq!(
        h.maps().fdb.get(&fdb("10.1.0.254")),
        Some(&FdbEntry::gateway())
    );

    let mut rogue: netd_store::schema::EndpointRecord =
        netd_store::schema::decode(&ep("rogue", "10.1.0.7", "b")).unwrap();
    rogue.mac = Mac::from_ipv4("10.1.0.254".parse().unwrap());
    let events = vec![h.put(
        keys::endpoint("n", "rogue"),
        netd_store::schema::encode(&rogue),
    )];
    h.events(events);
    let maps = h.maps();
    assert_eq!(maps, h.expected());
    assert_eq!(maps.fdb.get(&fdb("10.1.0.254")), Some(&FdbEntry::gateway()));
    assert!(!h.endpoint_ids().contains(&"rogue".to_string()));

    let events = vec![h.delete(keys::endpoint("n", "rogue"))];
    h.events(events);
    let maps = h.maps();
    assert_eq!(maps.fdb.get(&fdb("10.1.0.254")), Some(&FdbEntry::gateway()));
    assert_eq!(
        maps.neigh.get(&neigh("10.1.0.254")).map(|n| n.mac),
        Some(mac("10.1.0.254"))
    );
    // The control: a peer with a MAC of its own is programmed in the same setup.
    let events = vec![h.put(keys::endpoint("n", "peer"), ep("peer", "10.1.0.8", "b"))];
    h.events(events);
    assert_eq!(
        h.maps().fdb.get(&fdb("10.1.0.8")),
        Some(&FdbEntry::remote([192, 168, 0, 2]))
    );
}
