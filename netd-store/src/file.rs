//! Embedded single-machine backend: a directory that several processes on one machine share.
//!
//! The whole store lives in `DIR/state.json`. Every operation, reads included, takes an exclusive
//! `flock` on `DIR/lock`, reads the state, expires overdue leases, applies its change and, when
//! something changed, writes `state.json.tmp` and renames it over `state.json`. The lock makes
//! each operation a serialisable transaction across processes; the rename means a crash never
//! leaves a half-written state behind.
//!
//! Lease expiry is done by whoever touches the store next (any process's operation or any
//! watcher's poll), so the keys of a daemon that died still go away on time.
//!
//! Watches poll the event log kept in the state (the last [`EVENT_LOG_LEN`] events); a watch whose
//! start has fallen out of the log fails with [`StoreError::Compacted`], as with etcd.
//!
//! The state has no older versions to read, so a listing in pages at one revision is served from
//! a snapshot: [`Backend::list_page`] without a revision keeps every key as of now, and the pages
//! at that revision come from it.
//!
//! Revisions follow etcd: the store starts at revision 1, every change (put, delete, transaction,
//! lease expiry) that touches at least one key adds exactly one revision, shared by all the keys it
//! touches.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{
    Backend, Expect, KeptListing, KeyValue, Lease, LeaseId, Listing, Page, Result, StoreError,
    Watch, WatchEvent,
};

const STATE_FILE: &str = "state.json";
const STATE_TMP_FILE: &str = "state.json.tmp";
const LOCK_FILE: &str = "lock";
/// How many events the log keeps: how far behind a watcher may fall before it gets `Compacted`.
pub const EVENT_LOG_LEN: usize = 10_000;
/// How often a watcher looks for new events (and expires leases).
const WATCH_POLL: Duration = Duration::from_millis(100);

/// A store in a directory; cheap to hold, every operation goes to the files.
pub struct FileStore {
    dir: Arc<Path>,
    /// The last listing of every key, for the pages at its revision.
    listing: KeptListing,
}

impl FileStore {
    /// Opens the store in `dir`, creating the directory (mode 0700: the state is only for netd)
    /// if it is missing. The state itself is read on first use, so a corrupt `state.json` shows
    /// up as an error from the first operation.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, &e))?;
        // Fail now, not on first use, when the directory is not usable (permissions, not a dir).
        drop(open_lock_file(dir)?);
        Ok(Self {
            dir: dir.into(),
            listing: KeptListing::default(),
        })
    }

    /// Runs `op` on the state under the lock, off the async runtime.
    async fn transact<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut State, i64) -> Result<T> + Send + 'static,
    {
        let dir = Arc::clone(&self.dir);
        run_blocking(move || transact_blocking(&dir, op)).await
    }
}

impl Backend for FileStore {
    type Watch = FileWatch;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.transact(move |state, _| Ok(state.keys.get(&key).map(|e| e.to_key_value(&key))))
            .await
    }

    /// Every key starting with `prefix`, sorted, with the revision the listing is consistent at.
    async fn list(&self, prefix: &str) -> Result<Listing> {
        let prefix = prefix.to_owned();
        self.transact(move |state, _| {
            let (kvs, oversized) = crate::sort_oversized(
                state
                    .keys
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(&prefix))
                    .map(|(key, entry)| entry.to_key_value(key)),
            );
            Ok(Listing {
                kvs,
                oversized,
                revision: state.revision,
            })
        })
        .await
    }

    /// The keys starting with `prefix` after `after`, as of `revision`: all of them, in one
    /// page (the whole state is read by every operation anyway, so paging would only add
    /// transactions). Without a revision, a snapshot of every key is kept for the pages of the
    /// other prefixes at its revision; a revision that is neither the snapshot's nor the
    /// current one is [`StoreError::Compacted`].
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        revision: Option<i64>,
    ) -> Result<Page> {
        let snapshot = match revision {
            None => self.listing.keep(self.list("").await?),
            Some(revision) => match self.listing.at(revision) {
                Some(snapshot) => snapshot,
                None => {
                    let now = self.list("").await?;
                    if now.revision != revision {
                        return Err(StoreError::Compacted(revision));
                    }
                    Arc::new(now)
                }
            },
        };
        Ok(snapshot.page(prefix, after))
    }

    /// Writes `key` only if it is as `expect` says; returns whether it was written.
    async fn put_if(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<&LeaseId>,
        expect: Expect,
    ) -> Result<bool> {
        let key = validate_key(key)?.to_owned();
        let value = validate_value(&key, value)?;
        let lease = numbered(lease)?;
        self.transact(move |state, _| {
            let as_expected = match (expect, state.keys.get(&key)) {
                (Expect::Absent, None) => true,
                (Expect::ModRevision(revision), Some(entry)) => entry.mod_revision == revision,
                _ => false,
            };
            if !as_expected {
                return Ok(false);
            }
            state.put_leased(key, value, lease)?;
            Ok(true)
        })
        .await
    }

    /// Creates every key, in one revision, if none of them exists (and, if given, while the key
    /// `required` does); otherwise writes nothing.
    async fn create_all_if(
        &self,
        kvs: &[(String, Vec<u8>)],
        required: Option<&str>,
    ) -> Result<bool> {
        let kvs = validate_kvs(kvs)?;
        if kvs.is_empty() {
            // Like an etcd transaction with no operations: succeeds, changes nothing.
            return Ok(true);
        }
        let required = required.map(str::to_owned);
        self.transact(move |state, _| {
            if kvs.iter().any(|(key, _)| state.keys.contains_key(key))
                || required.is_some_and(|r| !state.keys.contains_key(&r))
            {
                return Ok(false);
            }
            let revision = state.next_revision();
            for (key, value) in kvs {
                state.put_key(revision, key, value, None);
            }
            Ok(true)
        })
        .await
    }

    /// Writes a key (attached to `lease`, or to no lease) and returns the new revision.
    async fn put_leased(&self, key: &str, value: &[u8], lease: Option<&LeaseId>) -> Result<i64> {
        let key = validate_key(key)?.to_owned();
        let value = validate_value(&key, value)?;
        let lease = numbered(lease)?;
        self.transact(move |state, _| state.put_leased(key, value, lease))
            .await
    }

    /// Writes every key in one revision; returns it.
    async fn put_all(&self, kvs: &[(String, Vec<u8>)]) -> Result<i64> {
        let kvs = validate_kvs(kvs)?;
        self.transact(move |state, _| {
            if kvs.is_empty() {
                return Ok(state.revision);
            }
            let revision = state.next_revision();
            for (key, value) in kvs {
                state.put_key(revision, key, value, None);
            }
            Ok(revision)
        })
        .await
    }

    /// Deletes the keys that exist, in one revision; returns how many did.
    async fn delete_all(&self, keys: &[String]) -> Result<usize> {
        let keys: BTreeSet<String> = keys.iter().cloned().collect();
        self.transact(move |state, _| Ok(state.delete_keys(&keys)))
            .await
    }

    /// Deletes `keys` and, in the same transaction, `claim` if its value is still `owner`.
    async fn delete_with_claim(&self, keys: &[String], claim: &str, owner: &[u8]) -> Result<usize> {
        let mut keys: BTreeSet<String> = keys.iter().cloned().collect();
        let claim = claim.to_owned();
        let owner = owner.to_vec();
        self.transact(move |state, _| {
            if state
                .keys
                .get(&claim)
                .is_some_and(|entry| entry.value.as_bytes() == owner.as_slice())
            {
                keys.insert(claim);
            }
            Ok(state.delete_keys(&keys))
        })
        .await
    }

    /// Grants a lease of exactly `ttl` (to the millisecond).
    async fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        if ttl_ms <= 0 {
            return Err(StoreError::refused(
                format!("a lease of {ttl:?}"),
                "a lease lasts at least 1 ms",
            ));
        }
        let id = self
            .transact(move |state, now| Ok(state.grant_lease(ttl_ms, now)))
            .await?;
        Ok(Lease { id, ttl })
    }

    /// Renews the lease for another TTL from now.
    async fn keep_alive(&self, lease: &LeaseId) -> Result<()> {
        let id = lease.number()?;
        let lease = lease.clone();
        self.transact(move |state, now| {
            let entry = state
                .leases
                .get_mut(&id)
                .ok_or(StoreError::LeaseLost(lease))?;
            entry.expires_at_unix_ms = now.saturating_add(entry.ttl_ms);
            state.dirty = true;
            Ok(())
        })
        .await
    }

    /// Ends the lease now and deletes its keys (nothing to do for one already gone).
    async fn revoke(&self, lease: &LeaseId) -> Result<()> {
        let Ok(id) = lease.number() else {
            // Not one of ours: it cannot exist here.
            return Ok(());
        };
        self.transact(move |state, _| {
            state.remove_lease(id);
            Ok(())
        })
        .await
    }

    /// Watches the keys starting with `prefix` from `from_revision` (inclusive; 0 or less means
    /// "from the revision after the current one when [`FileWatch::next`] first runs").
    /// Nothing is read here: a compacted start revision is reported by the first `next`.
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<FileWatch> {
        Ok(FileWatch {
            dir: Arc::clone(&self.dir),
            prefix: prefix.into(),
            position: from_revision,
        })
    }

    /// One machine: no members to name.
    async fn member_in_use(&self) -> Option<String> {
        None
    }
}

/// A watch on a [`FileStore`]: polls the event log every [`WATCH_POLL`].
pub struct FileWatch {
    dir: Arc<Path>,
    prefix: String,
    /// The first revision not yet delivered (0 or less: not started yet, start at "now").
    position: i64,
}

impl Watch for FileWatch {
    /// Waits for the next non-empty batch of events under the prefix (every such event of the
    /// revisions it covers, in revision order). Cancel-safe: the position only advances when a
    /// batch is returned, so dropping the future loses nothing.
    async fn next(&mut self) -> Result<Vec<WatchEvent>> {
        loop {
            let dir = Arc::clone(&self.dir);
            let prefix = self.prefix.clone();
            let position = self.position;
            let (events, next_position) = run_blocking(move || {
                transact_blocking(&dir, move |state, _| state.poll(&prefix, position))
            })
            .await?;
            self.position = next_position;
            if !events.is_empty() {
                return Ok(events);
            }
            tokio::time::sleep(WATCH_POLL).await;
        }
    }
}

/// The contents of `state.json`.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// The store's current revision (1 for an empty store, like etcd).
    revision: i64,
    keys: BTreeMap<String, Entry>,
    leases: BTreeMap<i64, StoredLease>,
    next_lease_id: i64,
    /// The lowest revision from which `events` is complete: watches from before it are compacted.
    compacted_before: i64,
    /// The last changes, oldest first, whole revisions only.
    events: VecDeque<Event>,
    /// Whether this operation changed anything, i.e. whether the state must be written back.
    #[serde(skip)]
    dirty: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// UTF-8 so that the state file stays readable JSON (netd's values are JSON).
    value: String,
    create_revision: i64,
    mod_revision: i64,
    lease: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredLease {
    ttl_ms: i64,
    /// Wall-clock time, because the processes sharing the store share nothing else.
    expires_at_unix_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Event {
    revision: i64,
    key: String,
    kind: EventKind,
    /// The new value for a put; `None` for a delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// The key's create revision (for a delete: that of the key deleted).
    create_revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EventKind {
    Put,
    Delete,
}

impl Default for State {
    fn default() -> Self {
        Self {
            revision: 1,
            keys: BTreeMap::new(),
            leases: BTreeMap::new(),
            next_lease_id: 1,
            compacted_before: 1,
            events: VecDeque::new(),
            dirty: false,
        }
    }
}

impl Entry {
    fn to_key_value(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: self.value.clone().into_bytes(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

impl Event {
    fn to_watch_event(&self) -> WatchEvent {
        match self.kind {
            EventKind::Put => WatchEvent::Put(KeyValue {
                key: self.key.clone(),
                value: self.value.clone().unwrap_or_default().into_bytes(),
                create_revision: self.create_revision,
                mod_revision: self.revision,
            }),
            EventKind::Delete => WatchEvent::Delete {
                key: self.key.clone(),
                mod_revision: self.revision,
            },
        }
    }
}

impl State {
    /// Rejects states that would make revisions go wrong rather than silently misbehaving.
    fn check(&self) -> std::result::Result<(), String> {
        if self.revision < 1 {
            return Err(format!("revision {} < 1", self.revision));
        }
        if self.compacted_before < 1 || self.compacted_before > self.revision + 1 {
            return Err(format!(
                "compacted_before {} outside 1..={}",
                self.compacted_before,
                self.revision + 1
            ));
        }
        if self
            .events
            .back()
            .is_some_and(|e| e.revision > self.revision)
        {
            return Err("event log is ahead of the revision".into());
        }
        Ok(())
    }

    /// Starts a new revision for a change that touches at least one key.
    fn next_revision(&mut self) -> i64 {
        self.revision += 1;
        self.dirty = true;
        self.revision
    }

    /// Creates or replaces a key at a new revision, under `lease` (its number and ID) if given;
    /// returns the revision. [`StoreError::LeaseLost`] (and nothing written) when the lease is
    /// gone.
    fn put_leased(
        &mut self,
        key: String,
        value: String,
        lease: Option<(i64, LeaseId)>,
    ) -> Result<i64> {
        if let Some((id, lease)) = &lease
            && !self.leases.contains_key(id)
        {
            return Err(StoreError::LeaseLost(lease.clone()));
        }
        let revision = self.next_revision();
        self.put_key(revision, key, value, lease.map(|(id, _)| id));
        Ok(revision)
    }

    /// Creates or replaces a key at `revision`, keeping its create revision when it exists.
    fn put_key(&mut self, revision: i64, key: String, value: String, lease: Option<i64>) {
        let create_revision = self
            .keys
            .get(&key)
            .map_or(revision, |entry| entry.create_revision);
        self.events.push_back(Event {
            revision,
            key: key.clone(),
            kind: EventKind::Put,
            value: Some(value.clone()),
            create_revision,
        });
        let entry = Entry {
            value,
            create_revision,
            mod_revision: revision,
            lease,
        };
        self.keys.insert(key, entry);
        self.dirty = true;
    }

    /// Deletes the existing ones of `keys` in one new revision (none if no key exists).
    fn delete_keys(&mut self, keys: &BTreeSet<String>) -> usize {
        let present: Vec<&String> = keys.iter().filter(|k| self.keys.contains_key(*k)).collect();
        if present.is_empty() {
            return 0;
        }
        let revision = self.next_revision();
        for key in &present {
            if let Some(entry) = self.keys.remove(*key) {
                self.events.push_back(Event {
                    revision,
                    key: (*key).clone(),
                    kind: EventKind::Delete,
                    value: None,
                    create_revision: entry.create_revision,
                });
            }
        }
        present.len()
    }

    fn grant_lease(&mut self, ttl_ms: i64, now: i64) -> LeaseId {
        let id = self.next_lease_id;
        self.next_lease_id += 1;
        let lease = StoredLease {
            ttl_ms,
            expires_at_unix_ms: now.saturating_add(ttl_ms),
        };
        self.leases.insert(id, lease);
        self.dirty = true;
        LeaseId::from(id)
    }

    /// Removes a lease and deletes its keys in one revision (as etcd's revoke); false if unknown.
    fn remove_lease(&mut self, id: i64) -> bool {
        if self.leases.remove(&id).is_none() {
            return false;
        }
        self.dirty = true;
        let keys: BTreeSet<String> = self
            .keys
            .iter()
            .filter(|(_, entry)| entry.lease == Some(id))
            .map(|(key, _)| key.clone())
            .collect();
        self.delete_keys(&keys);
        true
    }

    /// Ends every lease whose time is up, whoever its owner was.
    fn expire_leases(&mut self, now: i64) {
        let expired: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.expires_at_unix_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.remove_lease(id);
        }
    }

    /// Keeps the log at most [`EVENT_LOG_LEN`] events long, dropping whole revisions only, so
    /// that a watch from `compacted_before` or later gets every event of every revision.
    fn trim_log(&mut self) {
        while self.events.len() > EVENT_LOG_LEN {
            let Some(dropped) = self.events.pop_front() else {
                break;
            };
            while self
                .events
                .front()
                .is_some_and(|e| e.revision == dropped.revision)
            {
                self.events.pop_front();
            }
            self.compacted_before = dropped.revision + 1;
            self.dirty = true;
        }
    }

    /// A watcher's poll from `position`: the events under `prefix` it has not seen yet, and the
    /// position after them (the revision after the current one).
    fn poll(&self, prefix: &str, position: i64) -> Result<(Vec<WatchEvent>, i64)> {
        let from = if position <= 0 {
            self.revision + 1
        } else {
            position
        };
        if from < self.compacted_before {
            return Err(StoreError::Compacted(self.compacted_before));
        }
        let start = self.events.partition_point(|e| e.revision < from);
        let events = self
            .events
            .range(start..)
            .filter(|e| e.key.starts_with(prefix))
            .map(Event::to_watch_event)
            .collect();
        Ok((events, from.max(self.revision + 1)))
    }
}

/// A lease's number with the lease (for its error), or `LeaseLost` for one that is not a number.
fn numbered(lease: Option<&LeaseId>) -> Result<Option<(i64, LeaseId)>> {
    lease.map(|l| Ok((l.number()?, l.clone()))).transpose()
}

/// One transaction: lock, load, expire leases, run `op`, save if anything changed.
/// `op` must check before it changes anything, since its changes are saved even when it fails
/// (so that the lease expiry that ran before it is not lost).
fn transact_blocking<T>(dir: &Path, op: impl FnOnce(&mut State, i64) -> Result<T>) -> Result<T> {
    let lock = open_lock_file(dir)?;
    fs2::FileExt::lock_exclusive(&lock).map_err(|e| io_error(&dir.join(LOCK_FILE), &e))?;
    let mut state = load(dir)?;
    let now = now_unix_ms();
    state.expire_leases(now);
    let result = op(&mut state, now);
    if state.dirty {
        state.trim_log();
        save(dir, &state)?;
    }
    // Closing the lock file releases the lock, after the rename.
    drop(lock);
    result
}

/// Runs blocking file work on tokio's blocking pool.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Other(format!("file store task failed: {e}")))?
}

/// Opens the lock file afresh: `flock` locks belong to an open file, so each operation needs its
/// own for operations of one process (or one `FileStore`) to exclude each other.
fn open_lock_file(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io_error(&path, &e))
}

/// Reads the state; a missing file is a new, empty store.
fn load(dir: &Path) -> Result<State> {
    let path = dir.join(STATE_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(io_error(&path, &e)),
    };
    let corrupt = |reason: String| {
        StoreError::Other(format!("corrupt store state {}: {reason}", path.display()))
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    state.check().map_err(corrupt)?;
    Ok(state)
}

/// Writes the state to a temporary file, syncs it and renames it over `state.json`, so that
/// readers and crashes only ever see a complete state.
fn save(dir: &Path, state: &State) -> Result<()> {
    let bytes = serde_json::to_vec(state)
        .map_err(|e| StoreError::Other(format!("cannot encode store state: {e}")))?;
    let tmp: PathBuf = dir.join(STATE_TMP_FILE);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_error(&tmp, &e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_data())
        .map_err(|e| io_error(&tmp, &e))?;
    drop(file);
    let path = dir.join(STATE_FILE);
    fs::rename(&tmp, &path).map_err(|e| io_error(&path, &e))
}

fn io_error(path: &Path, error: &io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {error}", path.display()))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// etcd rejects empty keys; so do we.
fn validate_key(key: &str) -> Result<&str> {
    if key.is_empty() {
        return Err(StoreError::refused("a write", "the key is empty"));
    }
    Ok(key)
}

/// Values are kept as strings in `state.json`; netd only writes JSON.
fn validate_value(key: &str, value: &[u8]) -> Result<String> {
    String::from_utf8(value.to_vec()).map_err(|_| {
        StoreError::refused(
            format!("the write of {key}"),
            "the embedded store keeps UTF-8 values only",
        )
    })
}

/// Checks a `create_all` request up front (keys non-empty and distinct, as etcd requires of a
/// transaction; values UTF-8) and converts the values to strings.
fn validate_kvs(kvs: &[(String, Vec<u8>)]) -> Result<Vec<(String, String)>> {
    let mut seen = BTreeSet::new();
    kvs.iter()
        .map(|(key, value)| {
            validate_key(key)?;
            if !seen.insert(key.as_str()) {
                return Err(StoreError::refused(
                    "a write of several keys",
                    format!("{key} is given twice"),
                ));
            }
            Ok((key.clone(), validate_value(key, value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "tests: a panic is the failure report"
    )]

    use super::*;

    /// The store contract on the embedded store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conforms_to_the_store_contract() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        // Compaction here is history pushed out of the event log by later writes.
        let compact = async |_revision| {
            for batch in 0..=EVENT_LOG_LEN / 1000 {
                let kvs: Vec<_> = (0..1000)
                    .map(|i| (format!("/netd/v1/filler/{batch}/{i}"), b"1".to_vec()))
                    .collect();
                store.put_all(&kvs).await.unwrap();
            }
        };
        crate::conformance::run_all(&store, "/netd/v1/conformance/", compact).await;
    }
}
