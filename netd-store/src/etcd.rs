//! etcd v3 backend.
//!
//! A thin layer over [`etcd_client`] that maps etcd's responses to this crate's types and, above
//! all, bounds every call in time: the daemon keeps running while etcd is down, so no call may
//! wait forever. Every unary call gets a per-request timeout on the gRPC channel *and* an outer
//! deadline of our own (see [`CALL_DEADLINE`]), because tonic's balanced channel can otherwise
//! park a request until some endpoint becomes ready. Watch streams have no deadline (events may
//! legitimately be hours apart) and instead rely on HTTP/2 keep-alive pings to notice a dead peer.
//!
//! Errors are sorted by what the caller can do (`map_err`): "etcd could not be reached, did
//! not answer, or cannot serve now" is [`StoreError::Unavailable`] (retry); a request etcd
//! answered and refused (invalid, too large, too many operations, out of space, not permitted)
//! is [`StoreError::Refused`]; the rest is [`StoreError::Other`].

use std::error::Error as _;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KvClient, PutOptions, Txn,
    TxnOp, TxnOpResponse, WatchClient, WatchOptions, WatchResponse, WatchStream,
};

use crate::{
    Backend, Expect, KeyValue, Lease, LeaseId, Listing, Page, Result, StoreError, Watch, WatchEvent,
};

/// Time to establish a TCP connection to one endpoint. Loopback or LAN: a few seconds is plenty,
/// and a daemon should learn quickly that etcd is away.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Time for etcd to answer one request once connected. etcd itself gives up on proposals after
/// ~5 s ("request timed out"), so waiting longer buys nothing.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Our own deadline around each call: connecting plus answering. It is a backstop for the cases
/// the channel's timeouts do not cover (a request queued in the balancer while no endpoint is
/// ready is covered by neither).
const CALL_DEADLINE: Duration = Duration::from_secs(8);

/// HTTP/2 PING interval and timeout on the channel. They only run while a stream (a watch, a
/// lease keep-alive) is open: etcd refuses pings more frequent than every 5 s, and pings on an
/// idle connection, with `too_many_pings`. So a silently dead etcd ends a watch within ~15 s.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP keep-alive, for half-open connections while no stream is open.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Largest gRPC message the client decodes. gRPC's default is 4 MiB, which one listing of about
/// 19,000 endpoints or one lagging watch batch exceeds (docs/stores.md). Watches are fragmented
/// by etcd to its request limit (1.5 MiB by default), and a listing page over this is asked
/// again with fewer keys ([`EtcdStore::list_page_of`]), so this bounds what one answer costs in
/// memory, not what can be read.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Keys per listing page: about 1 MiB of netd's records, well inside any message limit and
/// small enough that a page costs the server little.
pub const LIST_PAGE_KEYS: i64 = 4096;

/// gRPC status codes (fixed by the gRPC specification), compared by number because tonic's
/// `Code` type is not re-exported by etcd-client and netd-store does not depend on tonic
/// directly. [`map_err`] sorts them.
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_NOT_FOUND: i32 = 5;
const GRPC_ALREADY_EXISTS: i32 = 6;
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;
const GRPC_FAILED_PRECONDITION: i32 = 9;
const GRPC_ABORTED: i32 = 10;
const GRPC_OUT_OF_RANGE: i32 = 11;
const GRPC_UNIMPLEMENTED: i32 = 12;
#[cfg(test)]
const GRPC_INTERNAL: i32 = 13;
const GRPC_UNAVAILABLE: i32 = 14;
const GRPC_UNAUTHENTICATED: i32 = 16;

/// A client of an etcd cluster.
///
/// `etcd_client::Client` takes `&mut self` for every call but is a bundle of reference-counted
/// handles to one shared channel, so each call works on its own clone: the methods here take
/// `&self` and may run concurrently.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// The client's KV and watch services with [`MAX_MESSAGE_BYTES`] as their decoding limit.
    kv: KvClient,
    watch: WatchClient,
    endpoints: Vec<String>,
    /// With TLS: [`Self::diagnosed`]'s probe.
    probe: Option<crate::tls::Probe>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Sets up a client for `endpoints` (`http://HOST:PORT`).
    ///
    /// The channel connects lazily: this does not contact etcd, so it succeeds while etcd is
    /// down, and the first request then fails with [`StoreError::Unavailable`] within
    /// [`CALL_DEADLINE`]. That is what a daemon wants: start, then retry until etcd is back.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        Self::connect_with(endpoints, None).await
    }

    /// [`Self::connect`] to `https://HOST:PORT` endpoints with `tls`: its CA the only one
    /// trusted (none given: the system's roots), and its client certificate, if any. A TLS
    /// failure is the first request's error, [`StoreError::Tls`].
    pub async fn connect_with(
        endpoints: &[String],
        tls: Option<&crate::tls::ClientTls>,
    ) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(StoreError::BadUrl {
                url: String::new(),
                reason: "no etcd endpoint".into(),
            });
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false)
            .with_tcp_keepalive(TCP_KEEPALIVE)
            // A member cut off from its leader answers nothing rather than stale data, and
            // cancels our watches so that we re-list from a member that has one.
            .with_require_leader(true);
        let probe = match tls {
            Some(tls) => Some(
                crate::tls::Probe::new(tls, crate::tls::Protocol::Http2).map_err(|reason| {
                    StoreError::BadTls {
                        url: endpoints.join(","),
                        reason,
                    }
                })?,
            ),
            None => None,
        };
        let options = match tls {
            Some(tls) => options.with_tls(tls_options(tls)),
            None => options,
        };
        let client =
            match tokio::time::timeout(CALL_DEADLINE, Client::connect(endpoints, Some(options)))
                .await
            {
                Ok(Ok(client)) => client,
                Ok(Err(
                    e @ (etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_)),
                )) => {
                    return Err(StoreError::BadUrl {
                        url: endpoints.join(","),
                        reason: e.to_string(),
                    });
                }
                // Nothing is sent yet (the channel connects lazily): a transport error here is
                // TLS settings tonic cannot use (no system roots to trust), not an outage.
                Ok(Err(e @ etcd_client::Error::TransportError(_))) if tls.is_some() => {
                    return Err(StoreError::BadTls {
                        url: endpoints.join(","),
                        reason: format!("cannot set up TLS: {}", with_causes(&e)),
                    });
                }
                Ok(Err(e)) => return Err(map_err("connect", e)),
                Err(_) => return Err(deadline_passed("connect")),
            };
        Ok(Self {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            client,
            endpoints: endpoints.to_vec(),
            probe,
        })
    }

    /// `result`, but an outage of a TLS store that is TLS refusing this client is said as
    /// such ([`StoreError::Tls`]): a TLS 1.3 server refuses a client certificate after the
    /// handshake, and the gRPC request sees only a closed connection, so one connection of our
    /// own reads why ([`crate::tls::Probe`]). Costs a connection attempt per member, only when
    /// a request failed as unavailable.
    pub async fn diagnosed<T>(&self, result: Result<T>) -> Result<T> {
        let (Err(StoreError::Unavailable(_)), Some(probe)) = (&result, &self.probe) else {
            return result;
        };
        for endpoint in &self.endpoints {
            if let Some(tls) = probe.run(endpoint, CONNECT_TIMEOUT).await {
                return Err(StoreError::Tls(format!(
                    "{endpoint}: {}",
                    crate::tls::failure(&tls)
                )));
            }
        }
        result
    }

    async fn list_at_one_revision(&self, prefix: &str) -> Result<Listing> {
        let first = self
            .list_page_of(prefix, None, None, LIST_PAGE_KEYS)
            .await?;
        let revision = first.revision;
        let mut more = first.more;
        let mut kvs = first.kvs;
        let mut oversized = first.oversized;
        let mut after = crate::last_key(&kvs, &oversized);
        while more {
            let page = self
                .list_page_of(prefix, after.as_deref(), Some(revision), LIST_PAGE_KEYS)
                .await?;
            more = page.more;
            after = page.last_key().or(after);
            kvs.extend(page.kvs);
            oversized.extend(page.oversized);
        }
        Ok(Listing {
            kvs,
            oversized,
            revision,
        })
    }

    /// [`Backend::list_page`] in pages of at most `limit` keys: at most `limit` keys under
    /// `prefix`, sorted, after the key `after` (from the start when
    /// `None`), as of `revision` (the current one when `None`). A revision etcd no longer has
    /// gives [`StoreError::Compacted`].
    pub async fn list_page_of(
        &self,
        prefix: &str,
        after: Option<&str>,
        revision: Option<i64>,
        limit: i64,
    ) -> Result<Page> {
        // The range [start, end): `end` is the first key past the prefix, and a continuation
        // starts just after the last key seen (`\0` is the smallest byte that can follow it).
        let end = prefix_end(prefix.as_bytes());
        let start = match after {
            Some(key) => {
                let mut start = key.as_bytes().to_vec();
                start.push(0);
                start
            }
            // etcd refuses an empty key; "\0" is the first key there is.
            None if prefix.is_empty() => vec![0],
            None => prefix.as_bytes().to_vec(),
        };
        let mut limit = limit.max(1);
        let resp = loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(limit);
            if let Some(revision) = revision {
                options = options.with_revision(revision);
            }
            let mut kv = self.kv.clone();
            match timed("list", kv.get(start.clone(), Some(options))).await? {
                Ok(resp) => break resp,
                // Values nobody should have written (netd's records are a few hundred bytes)
                // made the page larger than the client decodes: the same page with half the
                // keys, down to one key, which etcd's request limit keeps far below the cap.
                Err(e) if is_over_message_limit(&e) && limit > 1 => {
                    limit /= 2;
                    tracing::debug!(prefix, limit, "etcd listing page too large: fewer keys");
                }
                Err(e) if is_compacted(&e) => {
                    return Err(StoreError::Compacted(revision.unwrap_or_default()));
                }
                Err(e) => return Err(map_err("list", e)),
            }
        };
        let revision = match revision {
            Some(revision) => revision,
            None => header_revision("list", resp.header())?,
        };
        let (kvs, oversized) = crate::sort_oversized(resp.kvs().iter().filter_map(convert_kv));
        Ok(Page {
            kvs,
            oversized,
            more: resp.more(),
            revision,
        })
    }

    /// Runs a transaction of deletes and counts what they deleted.
    async fn delete_txn(&self, txn: Txn) -> Result<usize> {
        let mut kv = self.kv.clone();
        let resp = call("delete", kv.txn(txn)).await?;
        let deleted: i64 = resp
            .op_responses()
            .iter()
            .map(|op| match op {
                TxnOpResponse::Delete(d) => d.deleted(),
                _ => 0,
            })
            .sum();
        usize::try_from(deleted)
            .map_err(|_| StoreError::Other(format!("delete: etcd reported {deleted} deletions")))
    }
}

impl Backend for EtcdStore {
    type Watch = EtcdWatch;

    /// One key, or `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut kv = self.kv.clone();
        let resp = call("get", kv.get(key, None)).await?;
        Ok(resp.kvs().first().and_then(convert_kv))
    }

    /// Every key under `prefix` (all keys for `""`), sorted by key, with the revision the
    /// listing is consistent at (from the response header, so it is valid even when no key
    /// matches). Read in pages of [`LIST_PAGE_KEYS`] at one revision, so no answer grows with
    /// the cluster; a revision compacted between two pages starts the listing over.
    async fn list(&self, prefix: &str) -> Result<Listing> {
        let mut attempts = 0;
        loop {
            match self.list_at_one_revision(prefix).await {
                Err(StoreError::Compacted(_)) if attempts < 3 => attempts += 1,
                other => return other,
            }
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        revision: Option<i64>,
    ) -> Result<Page> {
        self.list_page_of(prefix, after, revision, LIST_PAGE_KEYS)
            .await
    }

    /// Puts every key in one transaction guarded by "every key's `create_revision` is 0" (that
    /// is, none exists) and, with `required`, "its `create_revision` is not 0": either all are
    /// written or none is. Returns whether they were written.
    ///
    /// etcd limits a transaction to `--max-txn-ops` (128 by default) operations and refuses
    /// the same key twice in one transaction; both come back as [`StoreError::Refused`].
    async fn create_all_if(
        &self,
        kvs: &[(String, Vec<u8>)],
        required: Option<&str>,
    ) -> Result<bool> {
        if kvs.is_empty() {
            return Ok(true);
        }
        let mut compares: Vec<Compare> = kvs
            .iter()
            .map(|(key, _)| Compare::create_revision(key.as_str(), CompareOp::Equal, 0))
            .collect();
        if let Some(required) = required {
            compares.push(Compare::create_revision(required, CompareOp::Greater, 0));
        }
        let puts: Vec<TxnOp> = kvs
            .iter()
            .map(|(key, value)| TxnOp::put(key.as_str(), value.as_slice(), None))
            .collect();
        let txn = Txn::new().when(compares).and_then(puts);
        let mut kv = self.kv.clone();
        let resp = call("create", kv.txn(txn)).await?;
        Ok(resp.succeeded())
    }

    /// Creates or replaces `key`, attached to `lease` if given (a put without one detaches the
    /// key from its lease); returns the new revision. A lease that expired or was revoked gives
    /// [`StoreError::LeaseLost`].
    async fn put_leased(&self, key: &str, value: &[u8], lease: Option<&LeaseId>) -> Result<i64> {
        let options = lease_options(lease)?;
        let mut kv = self.kv.clone();
        let resp = match timed("put", kv.put(key, value, options)).await? {
            Ok(resp) => resp,
            Err(e) => {
                // The key itself cannot be "not found" for a put: only the lease can.
                return Err(match lease {
                    Some(lease) if is_not_found(&e) => StoreError::LeaseLost(lease.clone()),
                    _ => map_err("put", e),
                });
            }
        };
        header_revision("put", resp.header())
    }

    /// Writes `key` (attached to `lease` if given) only if it is as `expect` says: absent, or
    /// last modified at a given revision. Returns whether it was written: the compare-and-swap
    /// that keeps two hosts from taking one host name.
    async fn put_if(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<&LeaseId>,
        expect: Expect,
    ) -> Result<bool> {
        let compare = match expect {
            Expect::Absent => Compare::create_revision(key, CompareOp::Equal, 0),
            Expect::ModRevision(revision) => Compare::mod_revision(key, CompareOp::Equal, revision),
        };
        let options = lease_options(lease)?;
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, value, options)]);
        let mut kv = self.kv.clone();
        match timed("put", kv.txn(txn)).await? {
            Ok(resp) => Ok(resp.succeeded()),
            Err(e) => Err(match lease {
                Some(lease) if is_not_found(&e) => StoreError::LeaseLost(lease.clone()),
                _ => map_err("put", e),
            }),
        }
    }

    /// Writes every key in one transaction (one revision); returns it. Same limits as
    /// [`Backend::create_all`].
    async fn put_all(&self, kvs: &[(String, Vec<u8>)]) -> Result<i64> {
        let puts: Vec<TxnOp> = kvs
            .iter()
            .map(|(key, value)| TxnOp::put(key.as_str(), value.as_slice(), None))
            .collect();
        let mut kv = self.kv.clone();
        let resp = call("put", kv.txn(Txn::new().and_then(puts))).await?;
        header_revision("put", resp.header())
    }

    /// Deletes the keys in one transaction (one revision, one batch for watchers); missing keys
    /// are ignored. Returns how many existed. Same transaction limits as
    /// [`Backend::create_all`].
    async fn delete_all(&self, keys: &[String]) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        let deletes: Vec<TxnOp> = keys
            .iter()
            .map(|key| TxnOp::delete(key.as_str(), None))
            .collect();
        self.delete_txn(Txn::new().and_then(deletes)).await
    }

    /// Deletes `keys` and, in the same transaction, `claim` if its value is still `owner`
    /// (a claim someone else has taken since stays). Returns how many keys existed and went.
    async fn delete_with_claim(&self, keys: &[String], claim: &str, owner: &[u8]) -> Result<usize> {
        let deletes: Vec<TxnOp> = keys
            .iter()
            .map(|key| TxnOp::delete(key.as_str(), None))
            .collect();
        let mut with_claim = deletes.clone();
        with_claim.push(TxnOp::delete(claim, None));
        // A value compare on a missing key fails in etcd: then only `keys` go.
        let txn = Txn::new()
            .when([Compare::value(claim, CompareOp::Equal, owner)])
            .and_then(with_claim)
            .or_else(deletes);
        self.delete_txn(txn).await
    }

    /// Grants a lease of `ttl`, rounded up to whole seconds (etcd's unit; at least 1 s). etcd
    /// raises a very short TTL to its own minimum (about 1.5 × its election timeout), and says
    /// so in its answer.
    async fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        let secs = ttl
            .as_secs()
            .saturating_add(u64::from(ttl.subsec_nanos() > 0))
            .max(1);
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        let mut client = self.client.clone();
        let resp = call("grant lease", client.lease_grant(secs, None)).await?;
        if !resp.error().is_empty() {
            return Err(StoreError::refused("grant lease", resp.error()));
        }
        Ok(Lease {
            id: LeaseId::from(resp.id()),
            // What etcd granted: it raises a TTL under its minimum.
            ttl: Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0)).max(ttl),
        })
    }

    /// Renews `lease` for another TTL with one keep-alive round trip (a short-lived keep-alive
    /// stream: the caller decides the rhythm). [`StoreError::LeaseLost`] when etcd no longer
    /// knows the lease, i.e. it expired or was revoked and its keys are gone.
    async fn keep_alive(&self, lease: &LeaseId) -> Result<()> {
        let id = lease.number()?;
        let mut lease_client = self.client.lease_client();
        // etcd-client sends one request and waits for the first answer; an answer with TTL <= 0
        // (lease unknown) comes back as `LeaseKeepAliveError`. Dropping the keeper and stream
        // closes the keep-alive stream.
        match tokio::time::timeout(CALL_DEADLINE, lease_client.keep_alive(id)).await {
            Ok(Ok((_keeper, _stream))) => Ok(()),
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => {
                Err(StoreError::LeaseLost(lease.clone()))
            }
            Ok(Err(e)) if is_not_found(&e) => Err(StoreError::LeaseLost(lease.clone())),
            // The stream ended before any answer (etcd-client reports it as a watch error).
            Ok(Err(etcd_client::Error::WatchError(msg))) => Err(StoreError::Unavailable(format!(
                "keep-alive: stream ended without an answer: {msg}"
            ))),
            Ok(Err(e)) => Err(map_err("keep-alive", e)),
            Err(_) => Err(deadline_passed("keep-alive")),
        }
    }

    /// Ends `lease` now; etcd deletes its keys.
    async fn revoke(&self, lease: &LeaseId) -> Result<()> {
        let id = lease.number()?;
        let mut client = self.client.clone();
        match timed("revoke lease", client.lease_revoke(id)).await? {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(map_err("revoke lease", e)),
        }
    }

    /// Watches every key under `prefix` from `from_revision` on (inclusive; etcd replays the
    /// history since then first, so events between a [`Backend::list`] and this call are not
    /// lost when watching from `listing.revision + 1`).
    ///
    /// Waits for etcd to confirm the watch, so an unreachable etcd fails here. History that was
    /// compacted is normally reported by the first [`EtcdWatch::next`] (etcd confirms the watch
    /// first and cancels it right after), occasionally by this call already.
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<EtcdWatch> {
        // Fragmented: etcd splits a response larger than its request limit (1.5 MiB by default)
        // into several, so a watch that fell behind gets its backlog in bounded pieces.
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from_revision)
            .with_fragment();
        let mut watch = self.watch.clone();
        let mut stream = call("watch", watch.watch(prefix, Some(options))).await?;
        let first = match tokio::time::timeout(CALL_DEADLINE, stream.message()).await {
            Ok(Ok(Some(resp))) => resp,
            Ok(Ok(None)) => {
                return Err(StoreError::Unavailable(
                    "watch: stream ended before etcd confirmed the watch".into(),
                ));
            }
            Ok(Err(e)) => return Err(map_err("watch", e)),
            Err(_) => return Err(deadline_passed("watch")),
        };
        if let Some(ended) = Ended::from_response(&first) {
            return Err(ended.to_error());
        }
        // The confirmation carries no events; anything else is kept for `next`.
        let pending = (!first.created() || !first.events().is_empty()).then_some(first);
        Ok(EtcdWatch {
            stream,
            pending,
            ended: None,
        })
    }

    /// The client URL of the member that answers (etcd's client spreads requests over the
    /// endpoints it was given; this asks one which member it is). `None` if nobody answers
    /// within half a second: `netd status` must not wait on it.
    async fn member_in_use(&self) -> Option<String> {
        let ask = async {
            let mut client = self.client.clone();
            let id = client.status().await.ok()?.header()?.member_id();
            let members = client.member_list().await.ok()?;
            let member = members.members().iter().find(|m| m.id() == id)?;
            Some(
                member
                    .client_urls()
                    .first()
                    .cloned()
                    .unwrap_or_else(|| member.name().to_string()),
            )
        };
        tokio::time::timeout(Duration::from_millis(500), ask)
            .await
            .ok()
            .flatten()
    }
}

/// Why a watch stream ended: remembered so that every later [`EtcdWatch::next`] reports it too.
#[derive(Clone, Debug)]
enum Ended {
    Compacted(i64),
    Unavailable(String),
    /// etcd's access control does not let this client read what it watches: asking again
    /// fails the same way, so it is a refusal, not an outage.
    Refused(String),
}

impl Ended {
    /// The end a response announces, if it does: compaction, or a cancellation by etcd (for
    /// instance when the member lost its leader, or a permission this client lacks), after
    /// which no event comes.
    fn from_response(resp: &WatchResponse) -> Option<Self> {
        if resp.compact_revision() > 0 {
            Some(Self::Compacted(resp.compact_revision()))
        } else if resp.canceled() {
            let reason = resp.cancel_reason();
            // etcd says only this, in its cancel reason (etcdserver's ErrPermissionDenied).
            if reason.to_lowercase().contains("permission denied") {
                return Some(Self::Refused(reason.to_string()));
            }
            Some(Self::Unavailable(format!(
                "watch canceled by etcd: {reason}"
            )))
        } else {
            None
        }
    }

    fn to_error(&self) -> StoreError {
        match self {
            Self::Compacted(rev) => StoreError::Compacted(*rev),
            Self::Unavailable(msg) => StoreError::Unavailable(msg.clone()),
            Self::Refused(reason) => StoreError::refused("watch", reason.clone()),
        }
    }
}

/// An open etcd watch. Dropping it cancels the watch (the gRPC stream is closed).
pub struct EtcdWatch {
    /// Holds the request side open too: etcd ends the whole watch stream when the client closes
    /// its side.
    stream: WatchStream,
    /// A response received while setting up the watch that still has to be delivered.
    pending: Option<WatchResponse>,
    ended: Option<Ended>,
}

impl fmt::Debug for EtcdWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdWatch")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Watch for EtcdWatch {
    /// The events of the next watch response that has any (all events of one or more
    /// revisions, in revision order; responses without events, such as progress notifications,
    /// are skipped).
    ///
    /// Errors end the watch, and later calls repeat them: [`StoreError::Compacted`] when etcd no
    /// longer has the history asked for, [`StoreError::Unavailable`] when the stream breaks,
    /// ends, or etcd cancels it. The caller then lists again and watches from the new revision.
    /// There is no timeout here (events may be far apart); a dead etcd is noticed through the
    /// connection closing or HTTP/2 keep-alive pings going unanswered.
    async fn next(&mut self) -> Result<Vec<WatchEvent>> {
        loop {
            if let Some(ended) = &self.ended {
                return Err(ended.to_error());
            }
            let resp = match self.pending.take() {
                Some(resp) => resp,
                None => match self.stream.message().await {
                    Ok(Some(resp)) => resp,
                    Ok(None) => {
                        self.ended = Some(Ended::Unavailable("watch stream ended".into()));
                        continue;
                    }
                    Err(e) => {
                        self.ended = Some(Ended::Unavailable(format!("watch stream broke: {e}")));
                        continue;
                    }
                },
            };
            if let Some(ended) = Ended::from_response(&resp) {
                self.ended = Some(ended);
                continue;
            }
            let events: Vec<WatchEvent> = resp.events().iter().filter_map(convert_event).collect();
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}

/// Runs one etcd call under [`CALL_DEADLINE`] and maps its error.
async fn call<T>(
    what: &str,
    fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    timed(what, fut).await?.map_err(|e| map_err(what, e))
}

/// Runs one etcd call under [`CALL_DEADLINE`], leaving its own error to the caller (for the
/// calls where some errors are not errors for us).
async fn timed<T>(
    what: &str,
    fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<std::result::Result<T, etcd_client::Error>> {
    tokio::time::timeout(CALL_DEADLINE, fut)
        .await
        .map_err(|_| deadline_passed(what))
}

/// etcd's answer for a read at a revision it has compacted away
/// (`mvcc: required revision has been compacted`). tonic's own "message too large" has the
/// same code, so the message tells them apart.
fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(status)
        if status.code() as i32 == GRPC_OUT_OF_RANGE && status.message().contains("compacted"))
}

/// tonic's refusal of an answer over [`MAX_MESSAGE_BYTES`] (made on our side, not by etcd).
fn is_over_message_limit(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(status)
        if status.message().contains("message length too large"))
}

/// The first key after every key that starts with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or empty): every key from the prefix on ("\0" means "to the end").
    vec![0]
}

fn lease_options(lease: Option<&LeaseId>) -> Result<Option<PutOptions>> {
    Ok(match lease {
        Some(lease) => Some(PutOptions::new().with_lease(lease.number()?)),
        None => None,
    })
}

/// etcd's answer for a lease it does not know (`etcdserver: requested lease not found`).
fn is_not_found(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(status) if status.code() as i32 == GRPC_NOT_FOUND)
}

fn deadline_passed(what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "{what}: no answer from etcd within {CALL_DEADLINE:?}"
    ))
}

/// What a failed call means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// etcd could not be reached, did not answer, or cannot serve now (no leader, overloaded):
    /// retry.
    Unavailable,
    /// etcd answered and refused the request: retrying it does not help.
    Refused,
    Other,
}

/// tonic's TLS settings for `tls`.
fn tls_options(tls: &crate::tls::ClientTls) -> etcd_client::TlsOptions {
    // The handshake within the connect timeout: a peer that accepts and never answers TLS is
    // away, as one that never accepts.
    let mut options = etcd_client::TlsOptions::new().timeout(CONNECT_TIMEOUT);
    options = match &tls.ca {
        Some(ca) => options.ca_certificate(etcd_client::Certificate::from_pem(ca.as_slice())),
        None => options.with_native_roots(),
    };
    if let Some(identity) = &tls.identity {
        options = options.identity(etcd_client::Identity::from_pem(
            &identity.cert,
            &identity.key,
        ));
    }
    options
}

/// An etcd-client error with its causes, on one line (its own `Display` stops at "transport
/// error").
fn with_causes(e: &etcd_client::Error) -> String {
    let mut line = e.to_string();
    let mut cause = match e {
        etcd_client::Error::TransportError(e) => e.source(),
        _ => None,
    };
    while let Some(c) = cause {
        line += &format!(": {c}");
        cause = c.source();
    }
    line
}

/// The TLS failure inside an etcd-client error (the handshake's, or an alert the server sent
/// after it), if there is one.
fn tls_failure(e: &etcd_client::Error) -> Option<String> {
    use etcd_client::Error as E;
    let cause: &(dyn std::error::Error + 'static) = match e {
        E::TransportError(e) => e,
        E::GRpcStatus(status) => status.source()?,
        E::IoError(e) => e,
        _ => return None,
    };
    crate::tls::rustls_error(cause).map(crate::tls::failure)
}

/// Sorts etcd-client errors by what the caller can do ([`Failure`]).
fn map_err(what: &str, e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    // Asking again fails the same way: a TLS failure is not an outage.
    if let Some(tls) = tls_failure(&e) {
        return StoreError::Tls(format!("{what}: {tls}"));
    }
    let failure = match &e {
        E::TransportError(_) | E::IoError(_) => Failure::Unavailable,
        E::GRpcStatus(status) => sort_status(
            status.code() as i32,
            status.message(),
            status.source().is_some(),
        ),
        // Only raised when the request channel of a stream is gone, i.e. the stream broke.
        E::WatchError(_) | E::LeaseKeepAliveError(_) => Failure::Unavailable,
        _ => Failure::Other,
    };
    match failure {
        Failure::Unavailable => StoreError::Unavailable(format!("{what}: {e}")),
        Failure::Refused => match &e {
            E::GRpcStatus(status) => StoreError::refused(what, status.message()),
            _ => StoreError::refused(what, e.to_string()),
        },
        Failure::Other => StoreError::Other(format!("{what}: {e}")),
    }
}

/// A gRPC status by its code and message; `local`: made up on our side from a connection
/// failure (it has a source; one sent by etcd has none).
fn sort_status(code: i32, message: &str, local: bool) -> Failure {
    match code {
        GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED | GRPC_CANCELLED | GRPC_ABORTED => {
            Failure::Unavailable
        }
        GRPC_UNKNOWN if local => Failure::Unavailable,
        // etcd's "too many requests" is an overloaded member; "database space exceeded" (its
        // NOSPACE alarm) and a message over the size limit are refusals until someone acts.
        GRPC_RESOURCE_EXHAUSTED if message.contains("too many requests") => Failure::Unavailable,
        GRPC_INVALID_ARGUMENT
        | GRPC_FAILED_PRECONDITION
        | GRPC_RESOURCE_EXHAUSTED
        | GRPC_PERMISSION_DENIED
        | GRPC_UNAUTHENTICATED
        | GRPC_ALREADY_EXISTS
        | GRPC_NOT_FOUND
        | GRPC_OUT_OF_RANGE
        | GRPC_UNIMPLEMENTED => Failure::Refused,
        _ => Failure::Other,
    }
}

fn header_revision(what: &str, header: Option<&etcd_client::ResponseHeader>) -> Result<i64> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| StoreError::Other(format!("{what}: etcd response without a header")))
}

/// Our keys are UTF-8; a key that is not was not written by netd, so it is skipped (a lossy
/// conversion would produce a key that cannot be read, updated or deleted back).
fn utf8_key(key: &[u8]) -> Option<String> {
    match std::str::from_utf8(key) {
        Ok(key) => Some(key.to_owned()),
        Err(_) => {
            tracing::warn!(key = %String::from_utf8_lossy(key), "skipping non-UTF-8 etcd key");
            None
        }
    }
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Option<KeyValue> {
    Some(KeyValue {
        key: utf8_key(kv.key())?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn convert_event(event: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = event.kv()?;
    match event.event_type() {
        EventType::Put => convert_kv(kv).map(WatchEvent::Put),
        EventType::Delete => Some(WatchEvent::Delete {
            key: utf8_key(kv.key())?,
            mod_revision: kv.mod_revision(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd's own messages for its errors (etcdserver/api/v3rpc/rpctypes) and gRPC's for a
    /// message over the limit.
    #[test]
    fn refusals_and_outages_are_told_apart() {
        let cases = [
            (
                GRPC_UNAVAILABLE,
                "etcdserver: no leader",
                Failure::Unavailable,
            ),
            (
                GRPC_UNAVAILABLE,
                "etcdserver: request timed out",
                Failure::Unavailable,
            ),
            (
                GRPC_UNAVAILABLE,
                "etcdserver: leader changed",
                Failure::Unavailable,
            ),
            (
                GRPC_DEADLINE_EXCEEDED,
                "context deadline exceeded",
                Failure::Unavailable,
            ),
            (
                GRPC_RESOURCE_EXHAUSTED,
                "etcdserver: too many requests",
                Failure::Unavailable,
            ),
            (
                GRPC_INVALID_ARGUMENT,
                "etcdserver: too many operations in txn request",
                Failure::Refused,
            ),
            (
                GRPC_INVALID_ARGUMENT,
                "etcdserver: duplicate key given in txn request",
                Failure::Refused,
            ),
            (
                GRPC_INVALID_ARGUMENT,
                "etcdserver: request is too large",
                Failure::Refused,
            ),
            (
                GRPC_RESOURCE_EXHAUSTED,
                "etcdserver: mvcc: database space exceeded",
                Failure::Refused,
            ),
            (
                GRPC_RESOURCE_EXHAUSTED,
                "decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
                Failure::Refused,
            ),
            (
                GRPC_PERMISSION_DENIED,
                "etcdserver: permission denied",
                Failure::Refused,
            ),
            (
                GRPC_INVALID_ARGUMENT,
                "etcdserver: user name is empty",
                Failure::Refused,
            ),
            (
                GRPC_FAILED_PRECONDITION,
                "etcdserver: authentication is not enabled",
                Failure::Refused,
            ),
            (GRPC_INTERNAL, "etcdserver: unknown", Failure::Other),
        ];
        for (code, message, expected) in cases {
            assert_eq!(
                sort_status(code, message, false),
                expected,
                "{code} {message}"
            );
        }
        assert_eq!(
            sort_status(GRPC_UNKNOWN, "connection reset", true),
            Failure::Unavailable
        );
        assert_eq!(
            sort_status(GRPC_UNKNOWN, "something etcd said", false),
            Failure::Other
        );
    }
}
