//! netd's cluster store.
//!
//! One contract ([`Backend`], in [`backend`]) over three backends: etcd v3 ([`etcd::EtcdStore`],
//! `etcd://ADDR[,ADDR...]`), Consul ([`consul::ConsulStore`], `consul://ADDR[,ADDR...][/PREFIX]`)
//! and an embedded store for one machine ([`file::FileStore`], `file:///PATH`) that several
//! daemons on that machine can share. [`Store`] is the one a URL names, chosen at run time. All
//! offer the same semantics, modelled on etcd's: a revision that grows with every change,
//! per-key create/mod revisions, atomic create-if-absent of several keys, leases that delete
//! their keys when not kept alive, and watches from a revision that fail with
//! [`StoreError::Compacted`] when that history is gone. [`conformance`] (feature
//! `conformance`) is the test suite of that contract, run on every backend.
//!
//! Kept apart from `netd` so that it builds and tests on stable Rust with no BPF toolchain.
//! The key layout is in [`keys`], the JSON records and their validation in [`schema`], address
//! allocation in [`ipam`], a network's options in [`options`], interface names in [`ifname`].

pub mod backend;
pub mod backoff;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod consul;
pub mod etcd;
pub mod file;
pub mod ifname;
pub mod ipam;
pub mod keys;
pub mod options;
pub mod schema;

use std::time::Duration;

pub use backend::{Backend, Lease, Watch};

/// One key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the change that created the key (unchanged by later puts).
    pub create_revision: i64,
    /// Revision of the last change to the key.
    pub mod_revision: i64,
}

/// The keys under a prefix, consistent as of `revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub kvs: Vec<KeyValue>,
    /// The store's revision when the listing was taken: watch from `revision + 1`.
    pub revision: i64,
}

/// The last listing of every key, kept by a backend that cannot read at an older revision
/// (Consul, the embedded store) from the first page of a listing on: the later pages at its
/// revision are served from it.
#[derive(Debug, Default)]
pub(crate) struct KeptListing(std::sync::Mutex<Option<std::sync::Arc<Listing>>>);

impl KeptListing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<std::sync::Arc<Listing>>> {
        // A panic while holding this lock leaves a value that is still whole: keep using it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `listing`, replacing the one kept before; returns it.
    pub(crate) fn keep(&self, listing: Listing) -> std::sync::Arc<Listing> {
        let listing = std::sync::Arc::new(listing);
        *self.lock() = Some(std::sync::Arc::clone(&listing));
        listing
    }

    /// The kept listing, if it is at `revision`.
    pub(crate) fn at(&self, revision: i64) -> Option<std::sync::Arc<Listing>> {
        self.lock().clone().filter(|l| l.revision == revision)
    }

    /// The kept listing, no longer kept.
    pub(crate) fn take(&self) -> Option<std::sync::Arc<Listing>> {
        self.lock().take()
    }
}

impl Listing {
    /// The keys under `prefix` after the key `after`, in one page at the listing's revision.
    pub(crate) fn page(&self, prefix: &str, after: Option<&str>) -> Page {
        let from = self.kvs.partition_point(|kv| {
            kv.key.as_str() < prefix || after.is_some_and(|a| kv.key.as_str() <= a)
        });
        Page {
            kvs: self.kvs[from..]
                .iter()
                .take_while(|kv| kv.key.starts_with(prefix))
                .cloned()
                .collect(),
            more: false,
            revision: self.revision,
        }
    }
}

/// One page of a listing: keys in order, whether more follow, and the revision they are
/// consistent at (ask for the next page at that revision, after the last key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub revision: i64,
}

/// What a conditional write expects of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist.
    Absent,
    /// The key was last written at this revision (nobody changed it since it was read).
    ModRevision(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    Delete { key: String, mod_revision: i64 },
}

impl WatchEvent {
    pub fn key(&self) -> &str {
        match self {
            Self::Put(kv) => &kv.key,
            Self::Delete { key, .. } => key,
        }
    }

    pub fn revision(&self) -> i64 {
        match self {
            Self::Put(kv) => kv.mod_revision,
            Self::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// A lease: keys put with it are deleted when it expires or is revoked. etcd's and the embedded
/// store's are numbers, Consul's are session IDs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId(String);

impl LeaseId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number of an etcd or embedded-store lease; a lease that is not one cannot exist there.
    pub(crate) fn number(&self) -> Result<i64> {
        self.0
            .parse()
            .map_err(|_| StoreError::LeaseLost(self.clone()))
    }
}

impl From<i64> for LeaseId {
    fn from(id: i64) -> Self {
        Self(id.to_string())
    }
}

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// No member could serve the request (not reachable, no answer in time, no leader): retry.
    #[error("store unreachable: {0}")]
    Unavailable(String),
    /// The store answered and refused the request (invalid, too large, not permitted, outside
    /// the server's limits): the same request fails again until someone changes something.
    #[error("store refused {request}: {reason}")]
    Refused { request: String, reason: String },
    #[error("watch history before revision {0} was compacted")]
    Compacted(i64),
    #[error("lease {0} not found or expired")]
    LeaseLost(LeaseId),
    /// Anything else: an answer that does not parse, a local failure.
    #[error("store: {0}")]
    Other(String),
}

impl StoreError {
    pub(crate) fn refused(request: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Refused {
            request: request.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A connected store: the backend its URL names.
pub enum Store {
    // Boxed: the etcd client is large, and a Store is moved around.
    Etcd(Box<etcd::EtcdStore>),
    Consul(consul::ConsulStore),
    File(file::FileStore),
}

/// Events from [`Backend::watch`] on a [`Store`], in revision order.
pub enum WatchStream {
    Etcd(Box<etcd::EtcdWatch>),
    Consul(Box<consul::ConsulWatch>),
    File(file::FileWatch),
}

macro_rules! dispatch {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Store::Etcd($s) => $e,
            Store::Consul($s) => $e,
            Store::File($s) => $e,
        }
    };
}

impl Store {
    /// Opens `etcd://HOST:PORT[,HOST:PORT...]`, `consul://HOST:PORT[,HOST:PORT...][/PREFIX]`
    /// (`consul+https://...`; token from `CONSUL_HTTP_TOKEN` or the file `CONSUL_HTTP_TOKEN_FILE`
    /// names, CA from `CONSUL_CACERT`, as Consul's own CLI takes them) or `file:///PATH`.
    pub async fn connect(url: &str) -> Result<Self> {
        for (scheme, https) in [("consul://", false), ("consul+https://", true)] {
            if let Some(rest) = url.strip_prefix(scheme) {
                let mut config = consul::ConsulConfig::parse(url, rest, https)?;
                config.token = consul::ConsulConfig::token_from(|name| std::env::var(name).ok())?;
                config.ca_file = std::env::var_os("CONSUL_CACERT").map(Into::into);
                return Ok(Self::Consul(consul::ConsulStore::connect(config).await?));
            }
        }
        if let Some(endpoints) = url.strip_prefix("etcd://") {
            let endpoints: Vec<String> = endpoints
                .split(',')
                .filter(|e| !e.is_empty())
                .map(|e| format!("http://{e}"))
                .collect();
            if endpoints.is_empty() {
                return Err(StoreError::BadUrl {
                    url: url.into(),
                    reason: "no etcd endpoint".into(),
                });
            }
            return Ok(Self::Etcd(Box::new(
                etcd::EtcdStore::connect(&endpoints).await?,
            )));
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(StoreError::BadUrl {
                    url: url.into(),
                    reason: "file:// needs an absolute path (file:///var/lib/netd)".into(),
                });
            }
            return Ok(Self::File(file::FileStore::open(path.as_ref())?));
        }
        Err(StoreError::BadUrl {
            url: url.into(),
            reason: "expected etcd://HOST:PORT[,HOST:PORT...], consul://HOST:PORT[,HOST:PORT...] \
                     or file:///PATH"
                .into(),
        })
    }
}

/// The backend's own answers, except that reads that fail as unavailable are tried again
/// (`retry_read`).
impl Backend for Store {
    type Watch = WatchStream;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        retry_read(|| async { dispatch!(self, s => s.get(key).await) }).await
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        retry_read(|| async { dispatch!(self, s => s.list(prefix).await) }).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        revision: Option<i64>,
    ) -> Result<Page> {
        retry_read(|| async { dispatch!(self, s => s.list_page(prefix, after, revision).await) })
            .await
    }

    async fn put_if(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<&LeaseId>,
        expect: Expect,
    ) -> Result<bool> {
        dispatch!(self, s => s.put_if(key, value, lease, expect).await)
    }

    async fn create_all_if(
        &self,
        kvs: &[(String, Vec<u8>)],
        required: Option<&str>,
    ) -> Result<bool> {
        dispatch!(self, s => s.create_all_if(kvs, required).await)
    }

    async fn put_leased(&self, key: &str, value: &[u8], lease: Option<&LeaseId>) -> Result<i64> {
        dispatch!(self, s => s.put_leased(key, value, lease).await)
    }

    async fn put_all(&self, kvs: &[(String, Vec<u8>)]) -> Result<i64> {
        dispatch!(self, s => s.put_all(kvs).await)
    }

    async fn delete_all(&self, keys: &[String]) -> Result<usize> {
        dispatch!(self, s => s.delete_all(keys).await)
    }

    async fn delete_with_claim(&self, keys: &[String], claim: &str, owner: &[u8]) -> Result<usize> {
        dispatch!(self, s => s.delete_with_claim(keys, claim, owner).await)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        dispatch!(self, s => s.grant_lease(ttl).await)
    }

    async fn keep_alive(&self, lease: &LeaseId) -> Result<()> {
        dispatch!(self, s => s.keep_alive(lease).await)
    }

    async fn revoke(&self, lease: &LeaseId) -> Result<()> {
        dispatch!(self, s => s.revoke(lease).await)
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        Ok(match self {
            Self::Etcd(s) => WatchStream::Etcd(Box::new(s.watch(prefix, from_revision).await?)),
            Self::Consul(s) => WatchStream::Consul(Box::new(s.watch(prefix, from_revision).await?)),
            Self::File(s) => WatchStream::File(s.watch(prefix, from_revision).await?),
        })
    }

    async fn member_in_use(&self) -> Option<String> {
        dispatch!(self, s => s.member_in_use().await)
    }
}

/// Reads are idempotent: one that fails as unavailable is tried twice more before the error is
/// reported (a connection the client is re-establishing fails a request at once, or after its
/// timeout, while the next one goes through).
async fn retry_read<T, F, Fut>(mut read: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff = backoff::Backoff::new(Duration::from_millis(100), Duration::from_millis(200));
    let mut attempt = 0;
    loop {
        match read().await {
            Err(StoreError::Unavailable(e)) if attempt < 2 => {
                tracing::debug!(error = %e, attempt, "store read failed, retrying");
                attempt += 1;
                backoff.wait().await;
            }
            other => return other,
        }
    }
}

impl Watch for WatchStream {
    async fn next(&mut self) -> Result<Vec<WatchEvent>> {
        match self {
            Self::Etcd(w) => w.next().await,
            Self::Consul(w) => w.next().await,
            Self::File(w) => w.next().await,
        }
    }
}
