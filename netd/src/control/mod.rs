//! The one owner of the desired state and the datapath.
//!
//! A single reconciler thread holds the store's records ([`model`]), this host's endpoints
//! ([`local`]), what the maps must and do hold ([`plan`]), the [`Datapath`] and the macvlan
//! parents' hooks ([`parents`]); it reaches the kernel only through the traits of [`kernel`],
//! so that its decisions are unit-tested against a fake one. Everything else talks to it
//! through [`Control`]: the store watcher feeds it listings and events, the API and the Docker
//! frontend submit intents (attach or detach an endpoint) and questions, and wait for "applied
//! at revision >= N".
//! Changes are applied in the order they arrive, so an older state can never be applied after
//! a newer one, and map syscalls never run on the async runtime.

#[cfg(test)]
mod fake;
pub mod kernel;
pub mod local;
pub mod model;
pub mod names;
pub mod parents;
pub mod plan;
mod reconciler;
pub mod snapshot;
pub mod sources;

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf, sync::Arc, time::Duration};

use netd_store::{
    KeyValue, WatchEvent,
    schema::{HostRecord, Mac, NetworkRecord},
};
use tokio::sync::{mpsc, oneshot, watch};

pub use self::{
    model::{EndpointKey, Identity, Record},
    names::Names,
    sources::Claim,
};
use crate::datapath::{Datapath, DatapathError};

/// How often the reconciler re-checks interfaces and retries failed writes; every
/// [`FULL_CHECK_EVERY`] ticks (5 minutes) it also reads every map back and repairs what differs
/// from what it believes they hold. Reading 100,000 entries takes the reconciler about a second,
/// during which store changes wait: hence not more often.
pub const TICK: Duration = Duration::from_secs(2);
pub const FULL_CHECK_EVERY: u32 = 150;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the reconciler has stopped")]
    Stopped,
    #[error(
        "this daemon has not applied the store up to revision {wanted} yet (at {applied}); \
         it may still be syncing, try again"
    )]
    NotApplied { wanted: i64, applied: i64 },
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error("endpoint {endpoint:?} cannot be programmed: {reason}")]
    NotProgrammed { endpoint: String, reason: String },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
}

/// An endpoint of this host to program, behind its host-side veth.
#[derive(Clone, Debug)]
pub struct Attach {
    pub network: String,
    pub id: String,
    pub ifname: String,
    /// Its record as it will be published (the store's copy replaces it once seen).
    pub record: Record,
}

/// A valid endpoint, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointView {
    pub network: String,
    pub id: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub host: String,
    pub vtep: Ipv4Addr,
}

/// One of this host's endpoints: in the store (a record naming this host), here (an
/// interface), or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalView {
    pub network: String,
    pub id: String,
    /// Its record, from the store (or from the attach, until the store has it).
    pub record: Option<Record>,
    pub ifname: Option<String>,
    /// Whether its entries are in the maps.
    pub programmed: bool,
}

/// Fill and failures of one map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapFill {
    pub name: &'static str,
    pub entries: usize,
    pub capacity: u32,
    /// Writes and deletes that failed since the daemon started.
    pub failed_writes: u64,
    /// The last failure, while the map is failing.
    pub last_error: Option<String>,
}

/// What the reconciler has done, published after every batch (cheap to read, never waits for
/// the reconciler).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Whether a full listing has been applied.
    pub synced: bool,
    /// The store revision the maps reflect.
    pub revision: i64,
    pub networks: Arc<BTreeMap<String, NetworkRecord>>,
    pub hosts: Arc<BTreeMap<String, HostRecord>>,
    pub local: Arc<Vec<LocalView>>,
    /// Endpoints known, valid or not.
    pub endpoints_known: usize,
    /// Endpoints programmed: this host's, and other hosts' (in the networks this host is on).
    pub programmed_local: usize,
    pub programmed_remote: usize,
    /// Networks this host has endpoints in (whose peers it programs).
    pub active_networks: usize,
    pub invalid_values: u64,
    /// Hosts named by endpoint records whose lease has ended, sorted.
    pub absent_hosts: Arc<Vec<String>>,
    /// Live hosts whose netd reads only the shared key layout: while there is one, this host
    /// writes that layout too.
    pub shared_layout_hosts: Arc<Vec<String>>,
    pub maps: Vec<MapFill>,
    pub events_applied: u64,
    /// Entries found different from what the daemon believed the maps held, and repaired.
    pub drift_repaired: u64,
    /// How long the last batch took, from its first event to its last map write.
    pub last_batch: Duration,
    pub last_batch_events: usize,
}

/// Listing and watch input, from the store watcher.
#[derive(Debug)]
pub enum Feed {
    /// A full listing at `revision` begins; nothing is applied until it ends.
    ListBegin {
        revision: i64,
    },
    ListPage(Vec<KeyValue>),
    /// Values a listing left unread for their size (junk: netd's records are small), each
    /// counted and logged as an invalid value.
    ListSkipped(Vec<netd_store::Oversized>),
    /// The listing is complete: the maps become exactly its desired state (mark and sweep).
    ListEnd,
    Events(Vec<WatchEvent>),
}

/// Questions, answered between batches.
#[derive(Debug)]
pub enum Query {
    Endpoints {
        network: Option<String>,
        reply: oneshot::Sender<Vec<EndpointView>>,
    },
    /// Whether `mac` is taken in `network` by a valid endpoint.
    MacInUse {
        network: String,
        mac: Mac,
        reply: oneshot::Sender<bool>,
    },
    /// The addresses of `network` that claims hold.
    Taken {
        network: String,
        reply: oneshot::Sender<Vec<Ipv4Addr>>,
    },
    /// The claims of one address, the holder first.
    ClaimsOf {
        network: String,
        ip: Ipv4Addr,
        reply: oneshot::Sender<Vec<Claim>>,
    },
    /// The keys of an endpoint's record, the one that counts first.
    EndpointKeys {
        network: String,
        id: String,
        reply: oneshot::Sender<Vec<EndpointKey>>,
    },
    /// Every endpoint key and claim key of a network.
    NetworkKeys {
        network: String,
        reply: oneshot::Sender<NetworkKeys>,
    },
    /// This host's keys that the tidying moves or removes.
    OwnKeys { reply: oneshot::Sender<OwnKeys> },
}

/// The keys of a network's endpoints and claims, on every host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkKeys {
    pub endpoints: Vec<String>,
    pub claims: Vec<String>,
}

/// This host's keys that are not where they belong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnKeys {
    /// Its endpoint records and claims in the shared layout.
    pub shared: Vec<String>,
    /// Its claims of networks that are gone or were made again since.
    pub leftover_claims: Vec<String>,
}

#[derive(Debug)]
enum Command {
    Feed(Feed),
    Attach(Attach, oneshot::Sender<Result<(), ControlError>>),
    Detach {
        network: String,
        id: String,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    Query(Query),
    Tick,
    Stop,
}

/// Where the reconciler is: the store revision its maps reflect, once synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub synced: bool,
    pub revision: i64,
}

/// A handle on the reconciler; cheap to clone.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::Sender<Command>,
    progress: watch::Receiver<Progress>,
    summary: watch::Receiver<Arc<Summary>>,
    names: watch::Receiver<Arc<Names>>,
}

/// Told how long each batch of store events took to reach the maps (the daemon's metrics keep
/// a histogram of it). A trait of the reconciler's own, so that it needs nothing of who
/// listens.
pub trait BatchObserver: Send {
    fn observe(&self, took: Duration);
}

/// What the reconciler starts with: the daemon's [`Datapath`], or a unit test's fake kernel.
pub struct Setup<K = Datapath> {
    pub identity: Identity,
    pub datapath: K,
    /// This host's endpoints found on its interfaces: (network, endpoint) -> host-side veth.
    pub local: Vec<((String, String), String)>,
    /// This host's parent for macvlan networks, if it overrides the networks' own.
    pub macvlan_parent: Option<String>,
    /// Where the parents' promiscuous-mode markers live.
    pub run_dir: PathBuf,
    /// Observes how long each batch of store events takes to reach the maps.
    pub batch_duration: Box<dyn BatchObserver>,
}

/// The reconciler's thread; joining it reports how it ended.
pub type ReconcilerThread = std::thread::JoinHandle<()>;

/// Starts the reconciler thread.
pub fn start(setup: Setup) -> std::io::Result<(Control, ReconcilerThread)> {
    // Room for a burst of watch batches; beyond it the watcher waits (and etcd buffers).
    let (tx, rx) = mpsc::channel(1024);
    let (progress_tx, progress) = watch::channel(Progress::default());
    let (summary_tx, summary) = watch::channel(Arc::new(Summary::default()));
    let (names_tx, names) = watch::channel(Arc::new(Names::default()));
    // The parents an earlier run hooked, to let go of those no network needs any more.
    let hooked = parents::Parents::from_pins(setup.datapath.pin_dir());
    let thread = std::thread::Builder::new()
        .name("netd-reconciler".into())
        .spawn(move || {
            reconciler::Reconciler::new(setup, hooked, progress_tx, summary_tx, names_tx).run(rx);
        })?;
    Ok((
        Control {
            tx,
            progress,
            summary,
            names,
        },
        thread,
    ))
}

impl Control {
    async fn send(&self, command: Command) -> Result<(), ControlError> {
        self.tx
            .send(command)
            .await
            .map_err(|_| ControlError::Stopped)
    }

    /// Hands the reconciler listing or watch input (waiting while it is busy).
    pub async fn feed(&self, feed: Feed) -> Result<(), ControlError> {
        self.send(Command::Feed(feed)).await
    }

    /// Programs an endpoint of this host: hooks its interface and writes its entries. Nothing
    /// of it stays when it fails (a full map, say).
    pub async fn attach(&self, attach: Attach) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Attach(attach, reply)).await?;
        answer.await.map_err(|_| ControlError::Stopped)?
    }

    /// Takes an endpoint of this host off the maps and unhooks its interface (idempotent).
    pub async fn detach(&self, network: &str, id: &str) -> Result<(), ControlError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Detach {
            network: network.into(),
            id: id.into(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| ControlError::Stopped)?
    }

    /// Asks the reconciler a question.
    pub async fn query(&self, query: Query) -> Result<(), ControlError> {
        self.send(Command::Query(query)).await
    }

    /// Valid endpoints (of one network).
    pub async fn endpoints(
        &self,
        network: Option<&str>,
    ) -> Result<Vec<EndpointView>, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.query(Query::Endpoints {
            network: network.map(str::to_string),
            reply,
        })
        .await?;
        answer.await.map_err(|_| ControlError::Stopped)
    }

    /// Every network's DNS names, as last applied: read without asking the reconciler.
    pub fn names(&self) -> watch::Receiver<Arc<Names>> {
        self.names.clone()
    }

    pub async fn mac_in_use(&self, network: &str, mac: Mac) -> Result<bool, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.query(Query::MacInUse {
            network: network.into(),
            mac,
            reply,
        })
        .await?;
        answer.await.map_err(|_| ControlError::Stopped)
    }

    /// Asks the reconciler, and waits for its answer.
    async fn ask<T>(
        &self,
        question: impl FnOnce(oneshot::Sender<T>) -> Query,
    ) -> Result<T, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.query(question(reply)).await?;
        answer.await.map_err(|_| ControlError::Stopped)
    }

    /// The addresses of `network` that claims hold.
    pub async fn taken(&self, network: &str) -> Result<Vec<Ipv4Addr>, ControlError> {
        let network = network.to_string();
        self.ask(|reply| Query::Taken { network, reply }).await
    }

    /// The claims of `ip` in `network`, the holder first.
    pub async fn claims_of(&self, network: &str, ip: Ipv4Addr) -> Result<Vec<Claim>, ControlError> {
        let network = network.to_string();
        self.ask(|reply| Query::ClaimsOf { network, ip, reply })
            .await
    }

    /// The keys of an endpoint's record, the one that counts first.
    pub async fn endpoint_keys(
        &self,
        network: &str,
        id: &str,
    ) -> Result<Vec<EndpointKey>, ControlError> {
        let (network, id) = (network.to_string(), id.to_string());
        self.ask(|reply| Query::EndpointKeys { network, id, reply })
            .await
    }

    pub async fn network_keys(&self, network: &str) -> Result<NetworkKeys, ControlError> {
        let network = network.to_string();
        self.ask(|reply| Query::NetworkKeys { network, reply })
            .await
    }

    pub async fn own_keys(&self) -> Result<OwnKeys, ControlError> {
        self.ask(|reply| Query::OwnKeys { reply }).await
    }

    /// Asks for a periodic check (interfaces, failed writes, and now and then every map).
    pub fn tick(&self) {
        // A full queue means the reconciler is busy; the next tick will do.
        let _ = self.tx.try_send(Command::Tick);
    }

    /// Asks the reconciler to end its thread once it has done what is queued before this.
    /// (The daemon does not wait for it: the maps are pinned, and the next start compares
    /// them with the store anyway.)
    pub async fn stop(&self) {
        let _ = self.send(Command::Stop).await;
    }

    /// Waits until the maps reflect the store at `revision` or later.
    pub async fn wait_applied(&self, revision: i64, timeout: Duration) -> Result<(), ControlError> {
        let mut progress = self.progress.clone();
        let wanted = |p: &Progress| p.synced && p.revision >= revision;
        let waited = tokio::time::timeout(timeout, progress.wait_for(wanted)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ControlError::Stopped),
            Err(_) => Err(ControlError::NotApplied {
                wanted: revision,
                applied: self.progress.borrow().revision,
            }),
        }
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// The latest summary.
    pub fn summary(&self) -> Arc<Summary> {
        self.summary.borrow().clone()
    }

    /// A receiver that wakes on every new summary (the Docker frontend follows networks and
    /// this host's endpoints through it).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Summary>> {
        self.summary.clone()
    }
}
