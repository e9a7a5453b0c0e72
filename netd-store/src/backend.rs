//! The store contract: what every backend (etcd, Consul, the embedded store) does, with the same
//! meaning, so that the daemon and the tools work on any of them. [`crate::conformance`] tests
//! each backend against it.
//!
//! The semantics are etcd's:
//!
//! - A revision grows with every change; a key carries the revision that created it and the one
//!   that last changed it. A listing is consistent at one revision, and a watch from the revision
//!   after it misses nothing.
//! - Conditional writes ([`Backend::put_if`], [`Backend::create_all`],
//!   [`Backend::delete_with_claim`]) are atomic: all of their keys, or none.
//! - A lease deletes its keys when it is revoked or not kept alive within its TTL.
//! - A history the backend no longer has is [`StoreError::Compacted`](crate::StoreError::Compacted): the caller lists again.
//!
//! Errors say what to do next: [`StoreError::Unavailable`](crate::StoreError::Unavailable) (no member could serve: retry, the
//! store is away), [`StoreError::Refused`](crate::StoreError::Refused) (the store answered and refused this request: retrying
//! the same request will not help until someone changes something), [`StoreError::LeaseLost`](crate::StoreError::LeaseLost),
//! [`StoreError::Compacted`](crate::StoreError::Compacted).

use std::future::Future;
use std::time::Duration;

use crate::{Expect, KeyValue, LeaseId, Listing, Page, Result, WatchEvent};

/// A granted lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    /// How long after the last renewal the store deletes the lease's keys, at most: the TTL
    /// asked for (on Consul, twice the whole seconds of a session of half of it), or the longer
    /// one the store raised it to (etcd's and Consul's minimums).
    pub ttl: Duration,
}

/// One key-value store as netd uses it. Every method is one request (or one transaction); none
/// waits without bound.
pub trait Backend: Send + Sync {
    /// What [`Backend::watch`] returns.
    type Watch: Watch;

    /// One key, or `None` when it does not exist.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>>> + Send;

    /// Every key under `prefix`, sorted by key, and the revision the listing is consistent at
    /// (valid for a watch from the next one also when no key matches).
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Listing>> + Send;

    /// One page of the keys under `prefix` after the key `after` (from the start when `None`), as
    /// of `revision` (`None`: now; the page says which revision that was). Ask for the next page
    /// at the same revision after the page's last key, while `more`. A revision the backend can
    /// no longer serve is [`StoreError::Compacted`](crate::StoreError::Compacted): list again. A watch from the first page's
    /// revision + 1 misses nothing.
    fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        revision: Option<i64>,
    ) -> impl Future<Output = Result<Page>> + Send;

    /// Writes `key` (under `lease`, if given) only if it is as `expect` says; returns whether it
    /// was written. A key another lease held is then held by `lease` only.
    fn put_if(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<&LeaseId>,
        expect: Expect,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Creates every key, atomically, if none of them exists and, when `required` is given,
    /// while that key exists. Returns `false` (and writes nothing) otherwise. What
    /// [`Self::create_all`] and [`Self::create_all_requiring`] are made of: a backend
    /// implements this one.
    fn create_all_if(
        &self,
        kvs: &[(String, Vec<u8>)],
        required: Option<&str>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Creates every key, atomically, if none of them exists. Returns `false` (and writes
    /// nothing) when one does: the building block of unique VNIs and addresses.
    fn create_all(&self, kvs: &[(String, Vec<u8>)]) -> impl Future<Output = Result<bool>> + Send {
        self.create_all_if(kvs, None)
    }

    /// Like [`Self::create_all`], and only while the key `required` exists (an endpoint only
    /// while its network does).
    fn create_all_requiring(
        &self,
        kvs: &[(String, Vec<u8>)],
        required: &str,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.create_all_if(kvs, Some(required))
    }

    /// Writes a key (creating or replacing it), under `lease` if given: a write without one
    /// detaches the key from the lease it had. Returns the new revision;
    /// [`StoreError::LeaseLost`](crate::StoreError::LeaseLost) when the lease is gone. What
    /// [`Self::put`] and [`Self::put_with_lease`] are made of: a backend implements this one.
    fn put_leased(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<&LeaseId>,
    ) -> impl Future<Output = Result<i64>> + Send;

    /// Writes a key (creating or replacing it); returns the new revision. (Writing the value a
    /// key has may leave it as it is, at its revision: Consul does.)
    fn put(&self, key: &str, value: &[u8]) -> impl Future<Output = Result<i64>> + Send {
        self.put_leased(key, value, None)
    }

    /// Writes a key that goes away with `lease`; returns the new revision.
    /// [`StoreError::LeaseLost`](crate::StoreError::LeaseLost) when the lease is gone.
    fn put_with_lease(
        &self,
        key: &str,
        value: &[u8],
        lease: &LeaseId,
    ) -> impl Future<Output = Result<i64>> + Send {
        self.put_leased(key, value, Some(lease))
    }

    /// Writes every key; returns the revision of the write (every key's is at most that).
    /// Atomic, in one revision, on etcd (at most 128 keys with its default `--max-txn-ops`) and
    /// the embedded store; Consul takes 64 operations per transaction, so there a larger set is
    /// written in several.
    fn put_all(&self, kvs: &[(String, Vec<u8>)]) -> impl Future<Output = Result<i64>> + Send;

    /// Deletes the keys atomically (missing ones are ignored); returns how many existed.
    fn delete_all(&self, keys: &[String]) -> impl Future<Output = Result<usize>> + Send;

    /// Deletes `keys` and, in the same transaction, `claim` only if its value is still `owner`:
    /// releasing an address must never free one that another endpoint has claimed since.
    /// `claim` must not be among `keys`. Returns how many keys existed and were deleted.
    fn delete_with_claim(
        &self,
        keys: &[String],
        claim: &str,
        owner: &[u8],
    ) -> impl Future<Output = Result<usize>> + Send;

    /// Grants a lease of `ttl`, or of the shortest TTL the store accepts if that is longer (the
    /// lease says which).
    fn grant_lease(&self, ttl: Duration) -> impl Future<Output = Result<Lease>> + Send;

    /// Renews a lease for another TTL; [`StoreError::LeaseLost`](crate::StoreError::LeaseLost) when it already ended.
    fn keep_alive(&self, lease: &LeaseId) -> impl Future<Output = Result<()>> + Send;

    /// Ends a lease now, deleting its keys. A lease that already ended is no error: its keys
    /// are gone either way.
    fn revoke(&self, lease: &LeaseId) -> impl Future<Output = Result<()>> + Send;

    /// Watches every key under `prefix` from `from_revision` (inclusive, > 0). History the
    /// backend no longer has is [`StoreError::Compacted`](crate::StoreError::Compacted), from this call or the watch's first
    /// [`Watch::next`].
    fn watch(
        &self,
        prefix: &str,
        from_revision: i64,
    ) -> impl Future<Output = Result<Self::Watch>> + Send;

    /// The member requests go to, where the backend knows it (`netd status` shows it).
    fn member_in_use(&self) -> impl Future<Output = Option<String>> + Send;
}

/// The changes under a prefix, from a revision on.
pub trait Watch: Send {
    /// The next batch of events, in revision order: every change of one or more revisions (a
    /// backend that reads state, not history, may fold several changes of one key into the
    /// last). An error ends the watch, and later calls repeat it: the caller lists and watches
    /// again.
    fn next(&mut self) -> impl Future<Output = Result<Vec<WatchEvent>>> + Send;
}
