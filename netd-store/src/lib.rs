//! netd's cluster store.
//!
//! One contract ([`Backend`], in [`backend`]) over three backends: etcd v3 ([`etcd::EtcdStore`],
//! `etcd://ADDR[,ADDR...]`, `etcd+https://...`), Consul ([`consul::ConsulStore`],
//! `consul://ADDR[,ADDR...][/PREFIX]`, `consul+https://...`) and an embedded store for one
//! machine ([`file::FileStore`], `file:///PATH`) that several daemons on that machine can share.
//! [`Store`] is the one a URL names, chosen at run time ([`StoreConfig`]: the URL with its TLS
//! files, read once; [`tls`]). All offer the same semantics, modelled on etcd's: a revision that grows with every change,
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
pub mod tls;

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

/// Largest value a listing hands on. netd's records are a few hundred bytes (a network with
/// every option under 2 KiB); anything this big was written by someone else, and a few hundred
/// such values (etcd takes up to 1.5 MiB each) would otherwise be held, and decoded, by every
/// daemon at every listing. Larger values are skipped and named in [`Page::oversized`].
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// A value a listing skipped for its size: its key, for the log and `netd status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oversized {
    pub key: String,
    pub bytes: usize,
}

/// Splits listed values into the ones handed on and the [`MAX_RECORD_BYTES`] ones skipped.
pub(crate) fn sort_oversized(
    kvs: impl Iterator<Item = KeyValue>,
) -> (Vec<KeyValue>, Vec<Oversized>) {
    let mut oversized = Vec::new();
    let kvs = kvs
        .filter_map(|kv| {
            if kv.value.len() <= MAX_RECORD_BYTES {
                return Some(kv);
            }
            oversized.push(Oversized {
                bytes: kv.value.len(),
                key: kv.key,
            });
            None
        })
        .collect();
    (kvs, oversized)
}

/// The keys under a prefix, consistent as of `revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub kvs: Vec<KeyValue>,
    /// Keys whose values were too large to be netd's ([`MAX_RECORD_BYTES`]): left out of `kvs`.
    pub oversized: Vec<Oversized>,
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
        let wanted = |key: &str| key.starts_with(prefix) && after.is_none_or(|a| key > a);
        let from = self.kvs.partition_point(|kv| {
            kv.key.as_str() < prefix || after.is_some_and(|a| kv.key.as_str() <= a)
        });
        Page {
            kvs: self.kvs[from..]
                .iter()
                .take_while(|kv| kv.key.starts_with(prefix))
                .cloned()
                .collect(),
            oversized: self
                .oversized
                .iter()
                .filter(|o| wanted(&o.key))
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
    /// Keys of this page left out of `kvs` for their size ([`MAX_RECORD_BYTES`]).
    pub oversized: Vec<Oversized>,
    pub more: bool,
    pub revision: i64,
}

impl Page {
    /// The last key this page covered, handed on or skipped: the next page starts after it.
    pub fn last_key(&self) -> Option<String> {
        last_key(&self.kvs, &self.oversized)
    }
}

/// The greater of the last keys of two sorted parts of one page.
pub(crate) fn last_key(kvs: &[KeyValue], oversized: &[Oversized]) -> Option<String> {
    let kv = kvs.last().map(|kv| kv.key.as_str());
    let skipped = oversized.last().map(|o| o.key.as_str());
    kv.max(skipped).map(str::to_owned)
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
    /// The TLS files cannot be used with this store (unreadable, not PEM, a key that is not
    /// the certificate's, files for a plain http URL): nothing was sent.
    #[error("store {url}: {reason}")]
    BadTls { url: String, reason: String },
    /// The store and this client did not agree at the TLS level: the store's certificate is
    /// not trusted, or the store refused this client's (none, or one it does not trust). Not
    /// an outage: the same client fails the same way until its files or the store change.
    #[error("TLS: {0}")]
    Tls(String),
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

/// The backend's answer; etcd's outages over TLS told from TLS refusals
/// ([`etcd::EtcdStore::diagnosed`]).
macro_rules! dispatch {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Store::Etcd($s) => $s.diagnosed($e).await,
            Store::Consul($s) => $e,
            Store::File($s) => $e,
        }
    };
}

/// A store URL with what its client needs (TLS files read and checked, Consul's token), made
/// once: a daemon connects with it again and again without reading a file twice, and a file
/// that cannot be used is an error at start.
#[derive(Clone)]
pub struct StoreConfig {
    url: String,
    target: Target,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the token.
        f.debug_struct("StoreConfig")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The backend a [`StoreConfig`] opens, with what its client is given.
#[derive(Clone)]
enum Target {
    Etcd {
        endpoints: Vec<String>,
        tls: Option<tls::ClientTls>,
    },
    Consul(consul::ConsulConfig),
    File(std::path::PathBuf),
}

const URL_FORMS: &str = "expected etcd://HOST:PORT[,HOST:PORT...] (etcd+https://...), \
                         consul://HOST:PORT[,HOST:PORT...][/PREFIX] (consul+https://...) or \
                         file:///PATH";

impl StoreConfig {
    /// `url` with the TLS files given (`files`: `--store-cacert`, `--store-cert`,
    /// `--store-key`); for Consul also what its CLI reads from the environment (`env` looks a
    /// variable up): `CONSUL_HTTP_TOKEN` or the file `CONSUL_HTTP_TOKEN_FILE` names, and
    /// `CONSUL_CACERT`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY` for a file not given.
    pub fn new(
        url: &str,
        files: &tls::TlsFiles,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let bad_tls = |e: tls::TlsError| StoreError::BadTls {
            url: url.into(),
            reason: e.to_string(),
        };
        let plain_with_files = |https: &str| StoreError::BadTls {
            url: url.into(),
            reason: format!("TLS files are given for a plain http store: use {https}"),
        };
        for (scheme, https) in [("consul://", false), ("consul+https://", true)] {
            if let Some(rest) = url.strip_prefix(scheme) {
                let mut config = consul::ConsulConfig::parse(url, rest, https)?;
                config.token = consul::ConsulConfig::token_from(&env)?;
                if https {
                    config.tls = files.clone().or_consul_env(&env).load().map_err(bad_tls)?;
                } else if !files.is_empty() {
                    return Err(plain_with_files("consul+https://"));
                } else if config.token.is_some() {
                    // Said once per configuration: the daemon makes one at start.
                    tracing::warn!(
                        url,
                        "the Consul ACL token goes to the store over plain http, readable on \
                         the way: use consul+https://"
                    );
                }
                return Ok(Self {
                    url: url.into(),
                    target: Target::Consul(config),
                });
            }
        }
        for (scheme, https) in [("etcd://", false), ("etcd+https://", true)] {
            if let Some(rest) = url.strip_prefix(scheme) {
                let endpoints = members(rest, https);
                if endpoints.is_empty() {
                    return Err(StoreError::BadUrl {
                        url: url.into(),
                        reason: "no etcd endpoint".into(),
                    });
                }
                let tls = if https {
                    Some(files.load().map_err(bad_tls)?)
                } else if !files.is_empty() {
                    return Err(plain_with_files("etcd+https://"));
                } else {
                    None
                };
                return Ok(Self {
                    url: url.into(),
                    target: Target::Etcd { endpoints, tls },
                });
            }
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(StoreError::BadUrl {
                    url: url.into(),
                    reason: "file:// needs an absolute path (file:///var/lib/netd)".into(),
                });
            }
            if !files.is_empty() {
                return Err(StoreError::BadTls {
                    url: url.into(),
                    reason: "TLS files are given for the embedded store, which has no network"
                        .into(),
                });
            }
            return Ok(Self {
                url: url.into(),
                target: Target::File(path.into()),
            });
        }
        Err(StoreError::BadUrl {
            url: url.into(),
            reason: URL_FORMS.into(),
        })
    }

    /// [`Self::new`] with this process's environment.
    pub fn from_env(url: &str, files: &tls::TlsFiles) -> Result<Self> {
        Self::new(url, files, |name| std::env::var(name).ok())
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens the store. etcd's client connects lazily (its first request fails if the store
    /// cannot be reached); Consul's asks a member for its leader first.
    pub async fn connect(&self) -> Result<Store> {
        Ok(match &self.target {
            Target::Etcd { endpoints, tls } => Store::Etcd(Box::new(
                etcd::EtcdStore::connect_with(endpoints, tls.as_ref()).await?,
            )),
            Target::Consul(config) => {
                Store::Consul(consul::ConsulStore::connect(config.clone()).await?)
            }
            Target::File(path) => Store::File(file::FileStore::open(path)?),
        })
    }
}

/// `http://` or `https://` URLs of the members of a comma-separated list (empty items dropped).
pub(crate) fn members(list: &str, https: bool) -> Vec<String> {
    let scheme = if https { "https" } else { "http" };
    list.split(',')
        .filter(|m| !m.is_empty())
        .map(|m| format!("{scheme}://{m}"))
        .collect()
}

impl Store {
    /// Opens `url` with no TLS files but Consul's from the environment ([`StoreConfig`]).
    pub async fn connect(url: &str) -> Result<Self> {
        StoreConfig::from_env(url, &tls::TlsFiles::default())?
            .connect()
            .await
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
            Self::Etcd(s) => WatchStream::Etcd(Box::new(
                s.diagnosed(s.watch(prefix, from_revision).await).await?,
            )),
            Self::Consul(s) => WatchStream::Consul(Box::new(s.watch(prefix, from_revision).await?)),
            Self::File(s) => WatchStream::File(s.watch(prefix, from_revision).await?),
        })
    }

    async fn member_in_use(&self) -> Option<String> {
        match self {
            Self::Etcd(s) => s.member_in_use().await,
            Self::Consul(s) => s.member_in_use().await,
            Self::File(s) => s.member_in_use().await,
        }
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
