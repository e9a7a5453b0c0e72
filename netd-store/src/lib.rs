//! netd's cluster store.
//!
//! One API ([`Store`]) over three backends: etcd v3 ([`etcd::EtcdStore`], `etcd://ADDR[,ADDR...]`),
//! Consul ([`consul::ConsulStore`], `consul://ADDR[,ADDR...][/PREFIX]`) and an embedded store for
//! one machine ([`file::FileStore`], `file:///PATH`) that several daemons on that machine can
//! share. All offer the same semantics, modelled on etcd's: a global
//! revision that grows with every change, per-key create/mod revisions, atomic create-if-absent
//! of several keys, leases that delete their keys when not kept alive, and watches from a
//! revision that fail with [`StoreError::Compacted`] when that history is gone.
//!
//! Kept apart from `netd` so that it builds and tests on stable Rust with no BPF toolchain.
//! The key layout is in [`keys`], the JSON records and their validation in [`schema`], address
//! allocation in [`ipam`].

pub mod consul;
pub mod etcd;
pub mod file;
pub mod ipam;
pub mod keys;
pub mod schema;

use std::time::Duration;

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
    #[error("store unreachable: {0}")]
    Unavailable(String),
    #[error("watch history before revision {0} was compacted")]
    Compacted(i64),
    #[error("lease {0} not found or expired")]
    LeaseLost(LeaseId),
    #[error("store: {0}")]
    Other(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A connected store.
pub enum Store {
    // Boxed: the etcd client is large, and a Store is moved around.
    Etcd(Box<etcd::EtcdStore>),
    // Shared: a watch keeps using the connection.
    Consul(std::sync::Arc<consul::ConsulStore>),
    File(file::FileStore),
}

/// Events from [`Store::watch`], in revision order.
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
                return Ok(Self::Consul(std::sync::Arc::new(
                    consul::ConsulStore::connect(config).await?,
                )));
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

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        retry_read(|| async { dispatch!(self, s => s.get(key).await) }).await
    }

    /// Every key under `prefix`, and the revision the listing is consistent at.
    pub async fn list(&self, prefix: &str) -> Result<Listing> {
        retry_read(|| async { dispatch!(self, s => s.list(prefix).await) }).await
    }

    /// One page of the keys under `prefix` after `after`, as of `revision` (`None`: now), for
    /// callers that process a large listing as it arrives. The embedded store answers with
    /// every remaining key at once.
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        revision: Option<i64>,
    ) -> Result<Page> {
        retry_read(|| async {
            match self {
                Store::Etcd(s) => {
                    s.list_page(prefix, after, revision, etcd::LIST_PAGE_KEYS)
                        .await
                }
                Store::Consul(s) => s.list_page(prefix, after, revision).await,
                Store::File(s) => s.list_page(prefix, after).await,
            }
        })
        .await
    }

    /// Writes `key` (under `lease`, if given) only if it is as `expect` says; returns whether
    /// it was written.
    pub async fn put_if(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<&LeaseId>,
        expect: Expect,
    ) -> Result<bool> {
        dispatch!(self, s => s.put_if(key, value, lease, expect).await)
    }

    /// Creates every key, atomically, if none of them exists. Returns `false` (and writes nothing)
    /// when one does: the building block of unique VNIs and addresses.
    pub async fn create_all(&self, kvs: &[(String, Vec<u8>)]) -> Result<bool> {
        dispatch!(self, s => s.create_all(kvs).await)
    }

    /// Like [`Self::create_all`], and only while the key `required` exists.
    pub async fn create_all_requiring(
        &self,
        kvs: &[(String, Vec<u8>)],
        required: &str,
    ) -> Result<bool> {
        dispatch!(self, s => s.create_all_requiring(kvs, Some(required)).await)
    }

    /// Writes a key (creating or replacing it); returns the new revision.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<i64> {
        dispatch!(self, s => s.put(key, value, None).await)
    }

    /// Writes every key; returns the revision. Atomic, in one revision, on etcd (at most 128
    /// keys with its default `--max-txn-ops`) and the embedded store; Consul takes 64 operations
    /// per transaction, so there a larger set is written in several.
    pub async fn put_all(&self, kvs: &[(String, Vec<u8>)]) -> Result<i64> {
        dispatch!(self, s => s.put_all(kvs).await)
    }

    /// Writes a key that goes away with `lease`.
    pub async fn put_with_lease(&self, key: &str, value: &[u8], lease: &LeaseId) -> Result<i64> {
        dispatch!(self, s => s.put(key, value, Some(lease)).await)
    }

    /// Deletes the keys atomically (missing ones are ignored); returns how many existed.
    pub async fn delete_all(&self, keys: &[String]) -> Result<usize> {
        dispatch!(self, s => s.delete_all(keys).await)
    }

    /// Deletes `keys` and, in the same transaction, `claim` only if its value is still `owner`:
    /// releasing an address must never free one that another endpoint has claimed since.
    /// `claim` must not be among `keys`. Returns how many keys existed and were deleted.
    pub async fn delete_with_claim(
        &self,
        keys: &[String],
        claim: &str,
        owner: &[u8],
    ) -> Result<usize> {
        dispatch!(self, s => s.delete_with_claim(keys, claim, owner).await)
    }

    /// Grants a lease of `ttl`.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        dispatch!(self, s => s.grant_lease(ttl).await)
    }

    /// Renews a lease for another TTL; [`StoreError::LeaseLost`] when it already expired.
    pub async fn keep_alive(&self, lease: &LeaseId) -> Result<()> {
        dispatch!(self, s => s.keep_alive(lease).await)
    }

    /// Ends a lease now, deleting its keys.
    pub async fn revoke(&self, lease: &LeaseId) -> Result<()> {
        dispatch!(self, s => s.revoke(lease).await)
    }

    /// Watches every key under `prefix` from `from_revision` (inclusive).
    pub async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        match self {
            Self::Etcd(s) => Ok(WatchStream::Etcd(Box::new(
                s.watch(prefix, from_revision).await?,
            ))),
            Self::Consul(s) => Ok(WatchStream::Consul(Box::new(
                s.watch(prefix, from_revision).await?,
            ))),
            Self::File(s) => Ok(WatchStream::File(s.watch(prefix, from_revision)?)),
        }
    }

    /// The member requests go to, where the backend knows it (`netd status` shows it).
    pub async fn member_in_use(&self) -> Option<String> {
        match self {
            Self::Etcd(s) => s.member_in_use().await,
            Self::Consul(s) => Some(s.member_in_use()),
            Self::File(_) => None,
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
    let mut attempt = 0;
    loop {
        match read().await {
            Err(StoreError::Unavailable(e)) if attempt < 2 => {
                tracing::debug!(error = %e, attempt, "store read failed, retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

impl WatchStream {
    /// The next batch of events (all events of one or more revisions, in order). An error ends the
    /// stream: the caller re-lists and watches again.
    pub async fn next(&mut self) -> Result<Vec<WatchEvent>> {
        match self {
            Self::Etcd(w) => w.next().await,
            Self::Consul(w) => w.next().await,
            Self::File(w) => w.next().await,
        }
    }
}
