//! Consul backend: `consul://HOST:PORT[,HOST:PORT...][/PREFIX]` (or `consul+https://`), on
//! Consul's KV HTTP API, with the semantics the etcd backend has (docs/stores.md):
//!
//! - A revision is Consul's Raft index: `X-Consul-Index` of an answer, `CreateIndex` and
//!   `ModifyIndex` of a key. It grows with every write, as etcd's revision does.
//! - A lease is a session with `Behavior: delete`, no lock delay and no health checks (a session
//!   tied to the Consul server's own node would end when that server dies, and take every host
//!   record with it: liveness must follow the netd host only). A key "under a lease" is acquired
//!   by the session (`lock`), so it goes when the session does. Consul ends a session up to twice
//!   its TTL after the last renewal, so the session gets half the lease TTL: a dead host's keys
//!   still go within the TTL netd was given. A server refuses a session TTL under its
//!   `session_ttl_min` (10 s by default, so under 20 s of lease TTL): the answer names its
//!   range, and the lease gets that minimum instead (the [`Lease`] says so, and a warning once).
//! - Conditional writes are `/v1/txn` transactions: `cas` with index 0 (create if absent) or the
//!   key's `ModifyIndex`, `check-not-exists`, `check-index`, `delete-cas`. A refused transaction
//!   (HTTP 409) wrote nothing.
//! - A watch is a blocking query on the prefix (`index` = the last index seen, bounded `wait`
//!   with jitter); puts and deletes come from comparing each answer with the previous one. An
//!   index that goes backwards (a restored snapshot, a new cluster) ends the watch as
//!   [`StoreError::Compacted`]: the caller lists again.
//! - Consul cannot read at an older index, so a listing taken in pages cannot be made consistent
//!   page by page. Instead, a listing ([`ConsulStore::list_page`] without a revision) reads all
//!   of netd's keys in one answer and serves every page at that index, and the watch that
//!   follows takes that same answer as what it compares the first change with. Nothing between
//!   the listing and the watch is missed.
//!
//! Every request goes to the member in use; a member that cannot be reached, or that cannot serve
//! now (no leader, no path to the leader), moves the request to the next one. A write is moved
//! only when it was never applied (a connection refused, no leader to apply it), because one
//! that timed out, or whose leader was lost while committing it, may have been. A 5xx answer
//! that is none of these is the server refusing the request ([`StoreError::Refused`]): Consul
//! answers 500 for its own errors too ("Invalid Session TTL ..."), also through a follower
//! ("rpc error making call: ...").

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::{
    Backend, Expect, KeptListing, KeyValue, Lease, LeaseId, Listing, Page, Result, StoreError,
    Watch, WatchEvent, keys,
};

/// Time for one request: connecting plus Consul's answer. Consul answers a healthy write within
/// milliseconds; a member that takes this long is treated as away.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one blocking query waits for a change (Consul adds up to 1/16 of jitter itself; we
/// add our own so that a thousand hosts do not come back in step after an outage).
const WATCH_WAIT: Duration = Duration::from_secs(60);

/// Most operations Consul (1.8) accepts in one transaction.
const MAX_TXN_OPS: usize = 64;

/// Largest answer read from Consul. A listing of every netd key is one answer: about 70 MiB
/// for 100,000 endpoints (base64 values in JSON). Values up to Consul's 512 KiB
/// `kv_max_value_size` written by someone else could make it any size, and it would be held in
/// memory whole: past this, the read is refused, naming the size, instead.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// Consul ends a session this many times its TTL after the last renewal, at the latest (its
/// `SessionTTLMultiplier`): what a lease's keys take to go.
const SESSION_TTL_MULTIPLIER: u32 = 2;

/// Where and how to reach a Consul cluster.
#[derive(Clone, Debug)]
pub struct ConsulConfig {
    /// `http://HOST:PORT` or `https://HOST:PORT` of every member to try, in order.
    pub members: Vec<String>,
    /// Consul keys are `PREFIX/v1/...` for netd's `/netd/v1/...` (default `netd`).
    pub prefix: String,
    /// ACL token (`X-Consul-Token`), if the cluster needs one.
    pub token: Option<String>,
    /// The CA the servers' certificates must chain to and this client's certificate (https
    /// only; [`crate::tls`]).
    pub tls: crate::tls::ClientTls,
}

impl ConsulConfig {
    /// Parses the part of a store URL after `consul://` (`https`: after `consul+https://`).
    pub fn parse(url: &str, rest: &str, https: bool) -> Result<Self> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: url.into(),
            reason: reason.into(),
        };
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let members = crate::members(hosts, https);
        if members.is_empty() {
            return Err(bad(
                "no Consul member (consul://HOST:PORT[,HOST:PORT...][/PREFIX])",
            ));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { "netd" } else { prefix };
        if prefix
            .split('/')
            .any(|part| !keys::valid_name(part) || part == "." || part == "..")
        {
            return Err(bad(
                "the key prefix takes letters, digits, '-', '_', '.' and '/' between parts",
            ));
        }
        Ok(Self {
            members,
            prefix: prefix.to_string(),
            token: None,
            tls: crate::tls::ClientTls::default(),
        })
    }
}

impl ConsulConfig {
    /// The ACL token as Consul's own CLI takes it: `CONSUL_HTTP_TOKEN`, else the contents of
    /// the file `CONSUL_HTTP_TOKEN_FILE` names. `env` looks a variable up.
    pub fn token_from(env: impl Fn(&str) -> Option<String>) -> Result<Option<String>> {
        if let Some(token) = env("CONSUL_HTTP_TOKEN").filter(|t| !t.is_empty()) {
            return Ok(Some(token));
        }
        let Some(path) = env("CONSUL_HTTP_TOKEN_FILE").filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(&path).map_err(|e| StoreError::BadUrl {
            url: format!("CONSUL_HTTP_TOKEN_FILE={path}"),
            reason: format!("cannot read it: {e}"),
        })?;
        Ok(Some(token.trim().to_string()))
    }
}

/// A connection to a Consul cluster; cheap to clone (clones share the HTTP connections, the
/// member in use and what was learned of the servers).
#[derive(Clone)]
pub struct ConsulStore {
    members: Arc<[String]>,
    /// Index into `members` of the one requests go to first.
    in_use: Arc<AtomicUsize>,
    http: reqwest::Client,
    /// consul+https: tells a refused client certificate from a closed connection
    /// ([`Self::tls_failure`]).
    probe: Option<crate::tls::Probe>,
    token: Option<String>,
    /// `PREFIX/`: what replaces `/netd/` of netd's keys.
    prefix: String,
    /// The last listing of every netd key, kept from the first page of a listing until the
    /// pages at its index and the watch after it have used it.
    listing: Arc<KeptListing>,
    /// The servers' `session_ttl_min` once a session create learned it (seconds; 0: not
    /// known), so that later leases ask for it at once, and whether the warning was given.
    session_ttl_min: Arc<AtomicU64>,
    warned_ttl: Arc<AtomicBool>,
}

impl std::fmt::Debug for ConsulStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulStore")
            .field("members", &self.members)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// One KV entry as Consul's API returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    key: String,
    #[serde(default)]
    value: Option<String>,
    create_index: i64,
    modify_index: i64,
    #[serde(default)]
    session: Option<String>,
}

/// Why an answer's body was not read.
enum BodyError {
    Read(reqwest::Error),
    /// Longer than the cap: not read further.
    TooLarge,
}

/// Reads `response`'s body, at most `cap` bytes of it.
async fn read_body(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > cap as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// One operation of a `/v1/txn` body.
#[derive(Debug, Serialize)]
struct TxnOp {
    #[serde(rename = "KV")]
    kv: TxnKv,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct TxnKv {
    verb: &'static str,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnAnswer {
    #[serde(default)]
    results: Option<Vec<TxnResult>>,
    #[serde(default)]
    errors: Option<Vec<TxnError>>,
}

#[derive(Debug, Deserialize)]
struct TxnResult {
    #[serde(rename = "KV")]
    kv: Option<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnError {
    op_index: usize,
    what: String,
}

/// What a transaction did.
enum Txn {
    /// Applied: the entries its operations returned (without values).
    Applied(Vec<Entry>),
    /// Not applied (an operation's check failed): nothing was written.
    Failed(Vec<TxnError>),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionCreated {
    #[serde(rename = "ID")]
    id: String,
}

/// An answer: status, `X-Consul-Index` and body.
struct Answer {
    status: StatusCode,
    index: Option<i64>,
    body: Vec<u8>,
}

/// What a 5xx answer means ([`server_error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerError {
    /// This member cannot serve now and the request was not applied (no leader, no connection
    /// to it): any request may go to another member.
    NotApplied,
    /// This member cannot serve now, and a write may have been applied (the leader was lost
    /// while committing it): only a read may go to another member.
    Unavailable,
    /// The server answered and refused the request.
    Refused,
}

/// Whether a request may go to another member after it failed on one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads, renewals: asking twice does no harm.
    Anywhere,
    /// Writes: only if the failed attempt never reached a server.
    IfNotSent,
}

impl ConsulStore {
    pub async fn connect(config: ConsulConfig) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30));
        // The CA given is the only one trusted, as with Consul's own CLI (CONSUL_CACERT).
        if let Some(ca) = &config.tls.ca {
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| StoreError::Other(format!("the CA certificates: {e}")))?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(identity) = &config.tls.identity {
            let identity = reqwest::Identity::from_pem(&identity.pem_bundle())
                .map_err(|e| StoreError::Other(format!("the client certificate: {e}")))?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| StoreError::Other(format!("cannot set up the HTTP client: {e}")))?;
        let https = config.members.iter().any(|m| m.starts_with("https://"));
        let probe = match https {
            true => Some(
                crate::tls::Probe::new(&config.tls, crate::tls::Protocol::Http1).map_err(
                    |reason| StoreError::BadTls {
                        url: config.members.join(","),
                        reason,
                    },
                )?,
            ),
            false => None,
        };
        let store = Self {
            members: config.members.into(),
            in_use: Arc::new(AtomicUsize::new(0)),
            http,
            probe,
            token: config.token,
            prefix: format!("{}/", config.prefix),
            listing: Arc::default(),
            session_ttl_min: Arc::new(AtomicU64::new(0)),
            warned_ttl: Arc::new(AtomicBool::new(false)),
        };
        // As etcd's client does: learn now whether any member answers at all (the daemon keeps
        // retrying; the CLI reports it in one line), and whether it is Consul (plain HTTP to an
        // HTTPS port gets a 400).
        let answer = store
            .call(
                Method::GET,
                "status/leader",
                &[],
                None,
                REQUEST_TIMEOUT,
                Retry::Anywhere,
            )
            .await?;
        if !answer.status.is_success() {
            return Err(store.refused(&answer, "a status request"));
        }
        Ok(store)
    }

    /// Consul's key for netd's `key` (`/netd/v1/x` -> `PREFIX/v1/x`).
    fn consul_key(&self, key: &str) -> Result<String> {
        let rest = key
            .strip_prefix("/netd/")
            .ok_or_else(|| StoreError::Other(format!("key {key:?} is outside /netd/")))?;
        Ok(format!("{}{rest}", self.prefix))
    }

    /// netd's key for Consul's `key`; `None` for keys outside the prefix.
    fn netd_key(&self, key: &str) -> Option<String> {
        key.strip_prefix(&self.prefix)
            .map(|rest| format!("/netd/{rest}"))
    }

    fn key_value(&self, entry: Entry) -> Result<Option<KeyValue>> {
        let Some(key) = self.netd_key(&entry.key) else {
            return Ok(None);
        };
        let value = match entry.value {
            Some(v) => BASE64.decode(v).map_err(|e| {
                StoreError::Other(format!("Consul returned {key:?} with a bad value: {e}"))
            })?,
            None => Vec::new(),
        };
        Ok(Some(KeyValue {
            key,
            value,
            create_revision: entry.create_index,
            mod_revision: entry.modify_index,
        }))
    }

    /// Sends one request to the member in use, moving on to the next members as [`Retry`]
    /// allows. Answers of any status are returned, except a 5xx that says the member cannot
    /// serve now ([`server_error`]: another member may).
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
        retry: Retry,
    ) -> Result<Answer> {
        let first = self.in_use.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        let mut tls_failure = None;
        for attempt in 0..self.members.len() {
            let i = (first + attempt) % self.members.len();
            let member = &self.members[i];
            let mut request = self
                .http
                .request(method.clone(), format!("{member}/v1/{path}"))
                .query(query)
                .timeout(timeout);
            if let Some(token) = &self.token {
                request = request.header("X-Consul-Token", token);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let sent = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    failures.push(format!("{member}: {}", describe(&e)));
                    // Asking again fails the same way: a TLS failure is not an outage.
                    if let Some(tls) = self.tls_failure(member, &e).await {
                        tls_failure = Some(format!("{member}: {tls}"));
                    }
                    if retry == Retry::Anywhere || e.is_connect() {
                        continue;
                    }
                    break;
                }
            };
            let status = sent.status();
            let index = sent
                .headers()
                .get("X-Consul-Index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body = match read_body(sent, MAX_BODY_BYTES).await {
                Ok(body) => body,
                Err(BodyError::TooLarge) => {
                    return Err(StoreError::refused(
                        format!("{method} {path}"),
                        format!(
                            "an answer over {} MiB: values larger than netd's records under \
                             netd's prefix? (netd status lists the invalid ones it can read)",
                            MAX_BODY_BYTES / (1024 * 1024)
                        ),
                    ));
                }
                Err(BodyError::Read(e)) => {
                    failures.push(format!("{member}: {}", describe(&e)));
                    if retry == Retry::Anywhere {
                        continue;
                    }
                    break;
                }
            };
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                let text = String::from_utf8_lossy(&body);
                let error = server_error(status, &text);
                if error != ServerError::Refused {
                    failures.push(format!("{member}: {status} {}", text.trim()));
                    if retry == Retry::Anywhere || error == ServerError::NotApplied {
                        continue;
                    }
                    break;
                }
            }
            if i != first {
                tracing::warn!(member, "Consul: now talking to this member");
                self.in_use.store(i, Ordering::Relaxed);
            }
            return Ok(Answer {
                status,
                index,
                body,
            });
        }
        if let Some(tls) = tls_failure {
            return Err(StoreError::Tls(tls));
        }
        Err(StoreError::Unavailable(failures.join("; ")))
    }

    /// The TLS failure behind `e`, if TLS is what failed: in the error itself (the handshake
    /// failed), or read by a probe when the connection closed after the handshake (a TLS 1.3
    /// server refuses a client certificate then, and hyper may see only the closed connection).
    async fn tls_failure(&self, member: &str, e: &reqwest::Error) -> Option<String> {
        if let Some(tls) = crate::tls::rustls_error(e) {
            return Some(crate::tls::failure(tls));
        }
        let probe = self.probe.as_ref()?;
        if e.is_connect() || e.is_timeout() {
            return None;
        }
        let tls = probe.run(member, CONNECT_TIMEOUT).await?;
        Some(crate::tls::failure(&tls))
    }

    /// The error for an answer that is not a success: Consul refused `request`.
    fn refused(&self, answer: &Answer, request: &str) -> StoreError {
        let body = String::from_utf8_lossy(&answer.body);
        // A follower passes the leader's error on behind this; the error is the leader's.
        let reason = body.trim().trim_start_matches("rpc error making call: ");
        if answer.status == StatusCode::FORBIDDEN {
            return permission_denied(request, reason, self.token.is_some());
        }
        if reason.is_empty() {
            return StoreError::refused(request, answer.status.to_string());
        }
        StoreError::refused(request, reason)
    }

    async fn read_entries(&self, path: &str, query: &[(&str, String)]) -> Result<Answer> {
        self.call(
            Method::GET,
            path,
            query,
            None,
            REQUEST_TIMEOUT,
            Retry::Anywhere,
        )
        .await
    }

    /// The entries of a KV read of `what`, as Consul has them (with their sessions); none when
    /// nothing is there.
    fn raw_entries(&self, answer: &Answer, what: &str) -> Result<Vec<Entry>> {
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !answer.status.is_success() {
            return Err(self.refused(answer, &format!("a read of {what}")));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| StoreError::Other(format!("Consul's KV answer does not parse: {e}")))
    }

    /// The keys and values of a KV read of `what`.
    fn entries(&self, answer: &Answer, what: &str) -> Result<Vec<KeyValue>> {
        let entries = self.raw_entries(answer, what)?;
        let mut kvs = Vec::with_capacity(entries.len());
        for entry in entries {
            kvs.extend(self.key_value(entry)?);
        }
        Ok(kvs)
    }

    /// The key's entry as Consul has it (with its session).
    async fn entry(&self, key: &str) -> Result<Option<Entry>> {
        let answer = self
            .read_entries(&format!("kv/{}", self.consul_key(key)?), &[])
            .await?;
        Ok(self.raw_entries(&answer, key)?.into_iter().next())
    }

    /// Runs one transaction.
    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Txn> {
        if ops.len() > MAX_TXN_OPS {
            return Err(StoreError::refused(
                format!("a transaction of {} operations", ops.len()),
                format!("Consul takes at most {MAX_TXN_OPS} in one"),
            ));
        }
        let body = serde_json::to_vec(&ops)
            .map_err(|e| StoreError::Other(format!("cannot encode a transaction: {e}")))?;
        let answer = self
            .call(
                Method::PUT,
                "txn",
                &[],
                Some(body),
                REQUEST_TIMEOUT,
                Retry::IfNotSent,
            )
            .await?;
        let parsed = || -> Result<TxnAnswer> {
            serde_json::from_slice(&answer.body).map_err(|e| {
                StoreError::Other(format!("Consul's transaction answer does not parse: {e}"))
            })
        };
        match answer.status {
            StatusCode::OK => Ok(Txn::Applied(
                parsed()?
                    .results
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|r| r.kv)
                    .collect(),
            )),
            StatusCode::CONFLICT => {
                let errors = parsed()?.errors.unwrap_or_default();
                // The ACLs refused an operation: not a failed check, and no caller may take it
                // for one ("the address is taken").
                if let Some(denied) = errors.iter().find(|e| e.what.contains("Permission denied")) {
                    return Err(permission_denied(
                        "a transaction",
                        &denied.what,
                        self.token.is_some(),
                    ));
                }
                Ok(Txn::Failed(errors))
            }
            _ => Err(self.refused(&answer, "a transaction")),
        }
    }

    fn op(&self, verb: &'static str, key: &str) -> Result<TxnKv> {
        Ok(TxnKv {
            verb,
            key: self.consul_key(key)?,
            value: None,
            index: None,
            session: None,
        })
    }

    /// The operation that writes `value` to `key`: `set`, or `lock` by the lease's session.
    fn write_op(&self, key: &str, value: &[u8], lease: Option<&LeaseId>) -> Result<TxnOp> {
        let mut kv = self.op(if lease.is_some() { "lock" } else { "set" }, key)?;
        kv.value = Some(BASE64.encode(value));
        kv.session = lease.map(|l| l.as_str().to_string());
        Ok(TxnOp { kv })
    }

    /// The revision of the write: the highest index the transaction's entries carry.
    fn revision_of(entries: &[Entry]) -> i64 {
        entries.iter().map(|e| e.modify_index).max().unwrap_or(0)
    }

    /// One transaction that deletes `keys` (with `more` operations after them), counting the
    /// keys that existed (a `get-tree` before each delete: unlike `get`, it does not fail the
    /// transaction for a missing key). `None` when a check in `more` refused the transaction.
    async fn delete_counting(&self, keys: &[String], more: Vec<TxnOp>) -> Result<Option<usize>> {
        let mut ops = Vec::with_capacity(keys.len() * 2 + more.len());
        let mut wanted = std::collections::HashSet::new();
        for key in keys {
            ops.push(TxnOp {
                kv: self.op("get-tree", key)?,
            });
            ops.push(TxnOp {
                kv: self.op("delete", key)?,
            });
            wanted.insert(self.consul_key(key)?);
        }
        ops.extend(more);
        match self.txn(ops).await? {
            Txn::Applied(entries) => Ok(Some(
                entries.iter().filter(|e| wanted.remove(&e.key)).count(),
            )),
            Txn::Failed(_) => Ok(None),
        }
    }

    async fn create_session(&self, ttl: Duration) -> Result<LeaseId> {
        let body = serde_json::json!({
            "Name": "netd host",
            "TTL": format!("{}s", ttl.as_secs()),
            "Behavior": "delete",
            "LockDelay": "0s",
            "Checks": [],
            "NodeChecks": [],
        });
        let answer = self
            .call(
                Method::PUT,
                "session/create",
                &[],
                Some(body.to_string().into_bytes()),
                REQUEST_TIMEOUT,
                Retry::IfNotSent,
            )
            .await?;
        if !answer.status.is_success() {
            return Err(self.refused(&answer, "a session create"));
        }
        let created: SessionCreated = serde_json::from_slice(&answer.body).map_err(|e| {
            StoreError::Other(format!("Consul's session answer does not parse: {e}"))
        })?;
        Ok(LeaseId::new(created.id))
    }

    async fn destroy_session(&self, id: &str) -> Result<()> {
        let answer = self
            .call(
                Method::PUT,
                &format!("session/destroy/{id}"),
                &[],
                None,
                REQUEST_TIMEOUT,
                Retry::Anywhere,
            )
            .await?;
        if !answer.status.is_success() {
            return Err(self.refused(&answer, "a session destroy"));
        }
        Ok(())
    }
}

impl Backend for ConsulStore {
    type Watch = ConsulWatch;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.entry(key).await? {
            Some(entry) => self.key_value(entry),
            None => Ok(None),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        let answer = self
            .read_entries(
                &format!("kv/{}", self.consul_key(prefix)?),
                &[("recurse", String::new())],
            )
            .await?;
        let revision = answer.index.unwrap_or_default();
        let mut kvs = self.entries(&answer, prefix)?;
        kvs.sort_by(|a, b| a.key.cmp(&b.key));
        let (kvs, oversized) = crate::sort_oversized(kvs.into_iter());
        Ok(Listing {
            kvs,
            oversized,
            revision,
        })
    }

    /// The keys under `prefix` after `after`, at `revision` (`None`: a new listing of every
    /// netd key, kept for the later pages and the watch; see the module's notes). A revision
    /// that is not the kept listing's is [`StoreError::Compacted`]: list again.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        revision: Option<i64>,
    ) -> Result<Page> {
        let listing = match revision {
            None => self.listing.keep(self.list(keys::ROOT).await?),
            Some(revision) => self
                .listing
                .at(revision)
                .ok_or(StoreError::Compacted(revision))?,
        };
        Ok(listing.page(prefix, after))
    }

    /// Writes `key` only if it is as `expect` says. With a lease, a key another session holds is
    /// taken over in the same transaction (released for that session, acquired by this one): the
    /// caller read it and decided so (a host's own record, left by its previous daemon).
    async fn put_if(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<&LeaseId>,
        expect: Expect,
    ) -> Result<bool> {
        let mut ops = Vec::new();
        let mut previous_holder = None;
        match (expect, lease) {
            (Expect::Absent, None) => {
                let mut kv = self.op("cas", key)?;
                kv.value = Some(BASE64.encode(value));
                kv.index = Some(0);
                return Ok(matches!(
                    self.txn(vec![TxnOp { kv }]).await?,
                    Txn::Applied(_)
                ));
            }
            (Expect::ModRevision(revision), None) => {
                let mut kv = self.op("cas", key)?;
                kv.value = Some(BASE64.encode(value));
                kv.index = Some(revision);
                return Ok(matches!(
                    self.txn(vec![TxnOp { kv }]).await?,
                    Txn::Applied(_)
                ));
            }
            (Expect::Absent, Some(_)) => ops.push(TxnOp {
                kv: self.op("check-not-exists", key)?,
            }),
            (Expect::ModRevision(revision), Some(lease)) => {
                let Some(entry) = self.entry(key).await? else {
                    return Ok(false);
                };
                if entry.modify_index != revision {
                    return Ok(false);
                }
                let mut check = self.op("check-index", key)?;
                check.index = Some(revision);
                ops.push(TxnOp { kv: check });
                if let Some(holder) = entry.session.filter(|s| s != lease.as_str()) {
                    let mut unlock = self.op("unlock", key)?;
                    unlock.value = Some(BASE64.encode(value));
                    unlock.session = Some(holder.clone());
                    ops.push(TxnOp { kv: unlock });
                    previous_holder = Some(holder);
                }
            }
        }
        ops.push(self.write_op(key, value, lease)?);
        match self.txn(ops).await? {
            Txn::Applied(_) => {
                if let Some(holder) = previous_holder {
                    // It holds nothing now; ending it keeps Consul's session list clean.
                    let _ = self.destroy_session(&holder).await;
                }
                Ok(true)
            }
            Txn::Failed(errors) => {
                if let Some(lease) = lease
                    && errors.iter().any(|e| e.what.contains("session"))
                {
                    return Err(StoreError::LeaseLost(lease.clone()));
                }
                Ok(false)
            }
        }
    }

    async fn put_leased(&self, key: &str, value: &[u8], lease: Option<&LeaseId>) -> Result<i64> {
        match self.txn(vec![self.write_op(key, value, lease)?]).await? {
            Txn::Applied(entries) => Ok(Self::revision_of(&entries)),
            Txn::Failed(errors) => Err(refusal(key, lease, &errors)),
        }
    }

    /// Creates every key, atomically, if none exists (and, if given, while `required` does).
    async fn create_all_if(
        &self,
        kvs: &[(String, Vec<u8>)],
        required: Option<&str>,
    ) -> Result<bool> {
        if kvs.is_empty() {
            return Ok(true);
        }
        let mut ops = Vec::with_capacity(kvs.len() + 1);
        if let Some(required) = required {
            ops.push(TxnOp {
                kv: self.op("get", required)?,
            });
        }
        for (key, value) in kvs {
            let mut kv = self.op("cas", key)?;
            kv.value = Some(BASE64.encode(value));
            kv.index = Some(0);
            ops.push(TxnOp { kv });
        }
        Ok(matches!(self.txn(ops).await?, Txn::Applied(_)))
    }

    /// Writes every key; returns the revision of the last write. Consul takes at most 64
    /// operations per transaction, so a larger set is written in several.
    async fn put_all(&self, kvs: &[(String, Vec<u8>)]) -> Result<i64> {
        let mut revision = 0;
        for chunk in kvs.chunks(MAX_TXN_OPS) {
            let ops = chunk
                .iter()
                .map(|(key, value)| self.write_op(key, value, None))
                .collect::<Result<Vec<_>>>()?;
            match self.txn(ops).await? {
                Txn::Applied(entries) => revision = Self::revision_of(&entries),
                Txn::Failed(errors) => {
                    return Err(refusal(&format!("{} keys", chunk.len()), None, &errors));
                }
            }
        }
        Ok(revision)
    }

    /// Deletes the keys (in transactions of 32); returns how many existed.
    async fn delete_all(&self, keys: &[String]) -> Result<usize> {
        let mut existed = 0;
        for chunk in keys.chunks(MAX_TXN_OPS / 2) {
            existed += self.delete_counting(chunk, Vec::new()).await?.unwrap_or(0);
        }
        Ok(existed)
    }

    /// Deletes `keys` and `claim` if its value is still `owner`, in one transaction.
    async fn delete_with_claim(&self, keys: &[String], claim: &str, owner: &[u8]) -> Result<usize> {
        if keys.len() * 2 + 1 > MAX_TXN_OPS {
            return Err(StoreError::refused(
                format!("a delete of {} keys with a claim", keys.len()),
                format!(
                    "Consul deletes at most {} with a claim, in one transaction",
                    (MAX_TXN_OPS - 1) / 2
                ),
            ));
        }
        loop {
            let mut more = Vec::new();
            if let Some(entry) = self.entry(claim).await?
                && let Some(kv) = self.key_value(entry)?
                && kv.value == owner
            {
                let mut cas = self.op("delete-cas", claim)?;
                cas.index = Some(kv.mod_revision);
                more.push(TxnOp { kv: cas });
            }
            // The claim's delete counts too: applied, it deleted the claim.
            let claimed = usize::from(!more.is_empty());
            if let Some(existed) = self.delete_counting(keys, more).await? {
                return Ok(existed + claimed);
            }
            // The claim changed between the read and the delete: look again.
        }
    }

    /// Creates a session for a lease of `ttl`: half of it, since Consul ends a session up to
    /// twice its TTL after the last renewal (see the module's notes). A server that refuses so
    /// short a TTL names its range: the session then gets the shortest TTL it takes, with a
    /// warning once, and so do later sessions at once.
    async fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        let asked = Duration::from_secs((ttl.as_secs() / 2).max(1));
        let known_min = Duration::from_secs(self.session_ttl_min.load(Ordering::Relaxed));
        let session_ttl = asked.max(known_min);
        let lease = |id, session_ttl: Duration| Lease {
            id,
            ttl: session_ttl * SESSION_TTL_MULTIPLIER,
        };
        let (reason, (min, max)) = match self.create_session(session_ttl).await {
            Ok(id) => return Ok(lease(id, session_ttl)),
            Err(StoreError::Refused { request, reason }) => match session_ttl_range(&reason) {
                Some(range) => (reason, range),
                None => return Err(StoreError::Refused { request, reason }),
            },
            Err(e) => return Err(e),
        };
        // Whole seconds, as the session is asked for.
        let min = Duration::from_secs(min.as_secs() + u64::from(min.subsec_nanos() > 0));
        if session_ttl >= min || min > max {
            // Not too short: too long, or a range we do not understand. Consul's word stands.
            return Err(StoreError::refused("a session create", reason));
        }
        self.session_ttl_min.store(min.as_secs(), Ordering::Relaxed);
        if !self.warned_ttl.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                lease_ttl_secs = ttl.as_secs(),
                session_ttl_min_secs = min.as_secs(),
                "Consul's session_ttl_min is {} s, longer than the {} s sessions a lease TTL of \
                 {} s needs: sessions get {} s, so a dead host's records go within {} s",
                min.as_secs(),
                session_ttl.as_secs(),
                ttl.as_secs(),
                min.as_secs(),
                (min * SESSION_TTL_MULTIPLIER).as_secs()
            );
        }
        Ok(lease(self.create_session(min).await?, min))
    }

    async fn keep_alive(&self, lease: &LeaseId) -> Result<()> {
        let answer = self
            .call(
                Method::PUT,
                &format!("session/renew/{}", lease.as_str()),
                &[],
                None,
                REQUEST_TIMEOUT,
                Retry::Anywhere,
            )
            .await?;
        match answer.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(StoreError::LeaseLost(lease.clone())),
            _ => Err(self.refused(&answer, "a session renewal")),
        }
    }

    async fn revoke(&self, lease: &LeaseId) -> Result<()> {
        self.destroy_session(lease.as_str()).await
    }

    /// Watches `prefix` from `from_revision`: the changes after the listing at
    /// `from_revision - 1` (the kept one, or one read now if it is at that index).
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<ConsulWatch> {
        let kept = self
            .listing
            .take()
            .filter(|l| l.revision + 1 == from_revision && prefix.starts_with(keys::ROOT));
        let (known, index) = match kept {
            Some(listing) => (known_keys(&listing.kvs, prefix), listing.revision),
            None => {
                let listing = self.list(prefix).await?;
                if listing.revision >= from_revision {
                    // Changes since from_revision happened; the deletes among them are unknown.
                    return Err(StoreError::Compacted(from_revision));
                }
                (known_keys(&listing.kvs, prefix), listing.revision)
            }
        };
        Ok(ConsulWatch {
            store: self.clone(),
            path: format!("kv/{}", self.consul_key(prefix)?),
            known,
            index,
        })
    }

    async fn member_in_use(&self) -> Option<String> {
        let i = self.in_use.load(Ordering::Relaxed) % self.members.len().max(1);
        self.members.get(i).cloned()
    }
}

fn known_keys(kvs: &[KeyValue], prefix: &str) -> HashMap<String, i64> {
    kvs.iter()
        .filter(|kv| kv.key.starts_with(prefix))
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect()
}

/// Why a write of `what` (a key, or several) the caller did not make conditional was refused.
fn refusal(what: &str, lease: Option<&LeaseId>, errors: &[TxnError]) -> StoreError {
    if let Some(lease) = lease
        && errors.iter().any(|e| e.what.contains("session"))
    {
        return StoreError::LeaseLost(lease.clone());
    }
    let reasons: Vec<String> = errors
        .iter()
        .map(|e| format!("operation {}: {}", e.op_index, e.what))
        .collect();
    StoreError::refused(format!("the write of {what}"), reasons.join("; "))
}

/// Consul's ACLs refused `request`: without a token, say how to give one; with one, that its
/// policy is what refuses (a confined host writing outside its prefix, docs/stores.md).
fn permission_denied(request: &str, reason: &str, has_token: bool) -> StoreError {
    let what_to_do = if has_token {
        "the ACL token's policy does not allow it"
    } else {
        "set CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE to a token with key and session write access"
    };
    StoreError::refused(request, format!("{reason} ({what_to_do})"))
}

/// Sorts a Consul 5xx (or 429) answer by what the caller can do. Consul answers 500 for
/// everything that goes wrong on the server, its own refusals included: the body tells. These
/// are the messages of a member that cannot serve now, as Consul 1.8 words them (through a
/// follower they come after "rpc error making call: ").
fn server_error(status: StatusCode, body: &str) -> ServerError {
    /// Nothing was applied: there was no leader, or no connection to it.
    const NOT_APPLIED: [&str; 5] = [
        "No cluster leader",
        "No known Consul servers",
        "No path to datacenter",
        "rpc error getting client",
        "rate limit exceeded",
    ];
    /// The leader went away while the request was with it.
    const UNAVAILABLE: [&str; 10] = [
        "leadership lost",
        "not the leader",
        "leadership transfer",
        "raft is already shutdown",
        "timed out",
        "EOF",
        "stream closed",
        "connection reset",
        "broken pipe",
        "i/o timeout",
    ];
    if status == StatusCode::TOO_MANY_REQUESTS || NOT_APPLIED.iter().any(|m| body.contains(m)) {
        return ServerError::NotApplied;
    }
    if !status.is_server_error() {
        return ServerError::Refused;
    }
    if status != StatusCode::INTERNAL_SERVER_ERROR || UNAVAILABLE.iter().any(|m| body.contains(m)) {
        // 502, 503, 504: a proxy in front, or a server on its way down.
        return ServerError::Unavailable;
    }
    ServerError::Refused
}

/// The range of session TTLs a server takes, from its refusal of one outside it:
/// `Invalid Session TTL '7000000000', must be between [10s=24h0m0s]`.
fn session_ttl_range(reason: &str) -> Option<(Duration, Duration)> {
    let rest = reason.split("Invalid Session TTL").nth(1)?;
    let range = rest.split_once('[')?.1.split_once(']')?.0;
    let (min, max) = range.split_once('=')?;
    Some((go_duration(min)?, go_duration(max)?))
}

/// A duration as Go prints one (`10s`, `1m30s`, `24h0m0s`, `1.5s`, `500ms`).
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" || rest == "0s" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A request error in one line: what failed, then each cause (the innermost names the reason:
/// "Connection refused", "invalid peer certificate: UnknownIssuer").
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut line = String::from(if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    });
    let mut cause = e.source();
    while let Some(c) = cause {
        line += &format!(": {c}");
        cause = c.source();
    }
    line
}

/// A watch on a prefix through blocking queries.
pub struct ConsulWatch {
    store: ConsulStore,
    path: String,
    /// Every key under the prefix with its last `ModifyIndex`, as of `index`.
    known: HashMap<String, i64>,
    index: i64,
}

impl std::fmt::Debug for ConsulWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulWatch")
            .field("path", &self.path)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Watch for ConsulWatch {
    /// The next changes: puts (new or changed `ModifyIndex`) and deletes (keys gone, at the
    /// answer's index), in revision order.
    async fn next(&mut self) -> Result<Vec<WatchEvent>> {
        loop {
            let wait = WATCH_WAIT + jitter(WATCH_WAIT / 8);
            let answer = self
                .store
                .call(
                    Method::GET,
                    &self.path,
                    &[
                        ("recurse", String::new()),
                        ("index", self.index.to_string()),
                        ("wait", format!("{}ms", wait.as_millis())),
                    ],
                    None,
                    // Consul answers within wait + wait/16.
                    wait + wait / 8 + REQUEST_TIMEOUT,
                    Retry::Anywhere,
                )
                .await?;
            let Some(index) = answer.index else {
                return Err(StoreError::Other(
                    "Consul's answer to a blocking query has no X-Consul-Index".into(),
                ));
            };
            if index < self.index {
                // A snapshot restore or a new cluster: what we know is no longer a base.
                return Err(StoreError::Compacted(self.index));
            }
            if index == self.index {
                continue;
            }
            let kvs = self.store.entries(&answer, "a watched prefix")?;
            self.index = index;
            let events = self.changes(kvs, index);
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}

impl ConsulWatch {
    fn changes(&mut self, kvs: Vec<KeyValue>, index: i64) -> Vec<WatchEvent> {
        let mut previous = std::mem::take(&mut self.known);
        let mut events = Vec::new();
        for kv in kvs {
            self.known.insert(kv.key.clone(), kv.mod_revision);
            if previous.remove(&kv.key) != Some(kv.mod_revision) {
                events.push(WatchEvent::Put(kv));
            }
        }
        events.extend(previous.into_keys().map(|key| WatchEvent::Delete {
            key,
            mod_revision: index,
        }));
        events.sort_by_key(WatchEvent::revision);
        events
    }
}

/// Up to `max` of jitter, from the clock (no RNG needed for spreading wake-ups).
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let max_ms = max.as_millis().max(1) as u64;
    Duration::from_millis(u64::from(nanos) % max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing answer past the cap is refused, whether its length is announced or not.
    #[tokio::test]
    async fn answers_are_read_up_to_the_cap() {
        let answer = |body: &'static str, announced: bool| {
            let mut builder = http::Response::builder();
            if announced {
                builder = builder.header("Content-Length", body.len());
            }
            reqwest::Response::from(builder.body(body).expect("a response"))
        };
        for announced in [true, false] {
            let read = read_body(answer("0123456789", announced), 10).await;
            assert!(matches!(read, Ok(body) if body == b"0123456789"));
            let read = read_body(answer("0123456789A", announced), 10).await;
            assert!(matches!(read, Err(BodyError::TooLarge)), "{announced}");
        }
    }

    /// Consul 1.8.7's answers, as seen from a leader and through a follower, while it has a
    /// leader and while it loses it.
    #[test]
    fn a_server_that_cannot_serve_is_told_from_one_that_refuses() {
        let error = StatusCode::INTERNAL_SERVER_ERROR;
        let cases = [
            ("No cluster leader", ServerError::NotApplied),
            (
                "rpc error getting client: failed to get conn: dial tcp 127.0.0.1:0->127.0.0.1:18302: \
                 connect: connection refused",
                ServerError::NotApplied,
            ),
            (
                "rpc error making call: leadership lost while committing log",
                ServerError::Unavailable,
            ),
            ("rpc error making call: EOF", ServerError::Unavailable),
            (
                "rpc error making call: stream closed",
                ServerError::Unavailable,
            ),
            (
                "Invalid Session TTL '7000000000', must be between [10s=24h0m0s]",
                ServerError::Refused,
            ),
            (
                "rpc error making call: Invalid Session TTL '7000000000', must be between \
                 [10s=24h0m0s]",
                ServerError::Refused,
            ),
            (
                "rpc error making call: failed session lookup: index error: UUID must be 36 \
                 characters",
                ServerError::Refused,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(server_error(error, body), expected, "{body}");
        }
        assert_eq!(
            server_error(StatusCode::SERVICE_UNAVAILABLE, ""),
            ServerError::Unavailable
        );
        assert_eq!(
            server_error(StatusCode::TOO_MANY_REQUESTS, ""),
            ServerError::NotApplied
        );
    }

    #[test]
    fn the_session_ttl_range_is_read_from_the_refusal() {
        assert_eq!(
            session_ttl_range("Invalid Session TTL '7000000000', must be between [10s=24h0m0s]"),
            Some((Duration::from_secs(10), Duration::from_secs(86_400)))
        );
        assert_eq!(
            session_ttl_range("Invalid Session TTL '1000000000', must be between [1m30s=1h0m0s]"),
            Some((Duration::from_secs(90), Duration::from_secs(3600)))
        );
        assert_eq!(
            session_ttl_range("Invalid Session TTL '1': must be between [500ms=1.5h]"),
            Some((Duration::from_millis(500), Duration::from_secs(5400)))
        );
        assert_eq!(
            session_ttl_range("Invalid Session TTL 'x': invalid duration"),
            None
        );
        assert_eq!(session_ttl_range("Permission denied"), None);
    }
}
