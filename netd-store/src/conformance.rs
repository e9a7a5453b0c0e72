//! The store contract's test suite ([`crate::backend`]): one function per property, each
//! given a backend and a prefix of its own, and [`run_all`]. The embedded store runs it in this
//! crate's tests; etcd and Consul, on real servers at their defaults, in netd-tests'
//! `tests/tests/store.rs` (feature `conformance`).
//!
//! A property panics when the backend breaks it (these are tests). Keys are under the prefix
//! given, which must be under `/netd/v1/` (Consul keeps netd's keys only) and end with `/`;
//! nothing else of the store is touched, so one server can take several runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::{Backend, Expect, KeyValue, StoreError, Watch, WatchEvent};

/// How long a watch gets to deliver what was written.
const DELIVERY: Duration = Duration::from_secs(15);
/// How long after its TTL (as granted) a lease's keys may take to go: the store's expiry check
/// and the deletion's commit.
const EXPIRY_SLACK: Duration = Duration::from_secs(5);

/// Every property, each under `prefix` + its name. `compact(revision)` makes the backend forget
/// the history before `revision` (etcd: a compaction; the embedded store: enough writes to
/// push it out of the event log; Consul keeps no history, so there it does nothing).
pub async fn run_all<B: Backend, F: Future<Output = ()>>(
    store: &B,
    prefix: &str,
    compact: impl FnOnce(i64) -> F,
) {
    macro_rules! run {
        ($($property:ident),* $(,)?) => {$(
            // Captured by the test harness, shown with a failure: which property broke.
            eprintln!("conformance: {}", stringify!($property));
            $property(store, &format!("{prefix}{}/", stringify!($property))).await;
        )*};
    }
    run!(
        keys_carry_their_revisions,
        pages_are_read_at_one_revision,
        values_too_large_for_a_record_are_listed_by_key_only,
        create_all_writes_every_key_or_none,
        create_all_requiring_needs_the_required_key,
        put_if_compares_before_it_writes,
        put_all_writes_every_key,
        delete_all_counts_what_existed,
        delete_with_claim_frees_only_the_owners_claim,
        a_watch_from_a_listing_misses_nothing,
        a_watch_sees_a_write_of_several_keys_at_one_revision,
        a_revoked_lease_takes_its_keys_and_is_lost,
        a_key_taken_over_by_another_lease_goes_with_that_one,
        a_lease_not_kept_alive_ends_and_takes_its_keys,
    );
    eprintln!("conformance: a_watch_from_compacted_history_is_compacted");
    a_watch_from_compacted_history_is_compacted(
        store,
        &format!("{prefix}a_watch_from_compacted_history_is_compacted/"),
        compact,
    )
    .await;
}

fn kv(key: &str, value: &[u8]) -> (String, Vec<u8>) {
    (key.to_owned(), value.to_vec())
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

/// A write, a get and a listing: revisions grow with every write; a key keeps the revision that
/// created it and carries the one of its last change; a listing is sorted, holds the prefix
/// only, and is consistent at a revision no older than its keys.
pub async fn keys_carry_their_revisions<B: Backend>(store: &B, p: &str) {
    let (a1, a2, b1) = (format!("{p}a/1"), format!("{p}a/2"), format!("{p}b/1"));
    assert_eq!(store.get(&a1).await.unwrap(), None, "a missing key");
    let empty = store.list(&format!("{p}a/")).await.unwrap();
    assert!(empty.kvs.is_empty(), "{empty:?}");

    let r1 = store.put(&a1, b"one").await.unwrap();
    assert!(
        r1 > empty.revision,
        "{r1} after a listing at {}",
        empty.revision
    );
    assert_eq!(
        store.get(&a1).await.unwrap(),
        Some(KeyValue {
            key: a1.clone(),
            value: b"one".to_vec(),
            create_revision: r1,
            mod_revision: r1,
        })
    );
    let r2 = store.put(&a1, b"uno").await.unwrap();
    assert!(r2 > r1, "revisions grow: {r1} then {r2}");
    let got = store.get(&a1).await.unwrap().unwrap();
    assert_eq!(got.value, b"uno");
    assert_eq!(got.create_revision, r1, "the create revision stays");
    assert_eq!(got.mod_revision, r2, "the mod revision is the last write's");

    let r3 = store.put(&a2, b"two").await.unwrap();
    assert!(r3 > r2);
    store.put(&b1, b"other").await.unwrap();
    let listing = store.list(&format!("{p}a/")).await.unwrap();
    assert_eq!(
        keys(&listing.kvs),
        [a1.as_str(), a2.as_str()],
        "sorted, prefix only"
    );
    assert_eq!(listing.kvs[1].create_revision, r3);
    assert!(
        listing
            .kvs
            .iter()
            .all(|kv| listing.revision >= kv.mod_revision),
        "{listing:?}"
    );
    assert_eq!(store.list(p).await.unwrap().kvs.len(), 3);
}

/// A listing in pages: the pages after the first are read at its revision (a later write is not
/// in them), after the key asked, and a page at that revision is still there after a write.
pub async fn pages_are_read_at_one_revision<B: Backend>(store: &B, p: &str) {
    let all: Vec<_> = (1..=3).map(|i| kv(&format!("{p}{i}"), b"x")).collect();
    store.put_all(&all).await.unwrap();
    let mut first = store.list_page(p, None, None).await.unwrap();
    let revision = first.revision;
    let mut listed = std::mem::take(&mut first.kvs);
    let mut more = first.more;
    store.put(&format!("{p}4"), b"later").await.unwrap();
    while more {
        let after = listed.last().map(|kv| kv.key.clone());
        let page = store
            .list_page(p, after.as_deref(), Some(revision))
            .await
            .unwrap();
        assert_eq!(page.revision, revision);
        more = page.more;
        listed.extend(page.kvs);
    }
    let expected = [format!("{p}1"), format!("{p}2"), format!("{p}3")];
    assert_eq!(
        keys(&listed),
        expected,
        "the pages at the first one's revision"
    );

    let again = store.list_page(p, None, Some(revision)).await.unwrap();
    assert_eq!(again.revision, revision);
    assert_eq!(
        keys(&again.kvs),
        expected,
        "a later write is not at that revision"
    );
    let after = store
        .list_page(p, Some(&format!("{p}1")), Some(revision))
        .await
        .unwrap();
    assert_eq!(keys(&after.kvs), &expected[1..], "after the key asked");
}

/// A value larger than any netd record ([`crate::MAX_RECORD_BYTES`]; Consul's default value
/// limit is 512 KiB, so 100 KiB is one every backend takes) is named by key and size, not
/// handed on, in listings and in their pages, and a page after it starts after its key.
pub async fn values_too_large_for_a_record_are_listed_by_key_only<B: Backend>(store: &B, p: &str) {
    let big = vec![b'x'; 100 * 1024];
    let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
    store
        .put_all(&[kv(&a, b"small"), kv(&b, &big), kv(&c, b"small")])
        .await
        .unwrap();
    let listing = store.list(p).await.unwrap();
    assert_eq!(keys(&listing.kvs), [a.as_str(), c.as_str()]);
    let skipped = crate::Oversized {
        key: b.clone(),
        bytes: big.len(),
    };
    assert_eq!(listing.oversized, std::slice::from_ref(&skipped));
    let page = store.list_page(p, None, None).await.unwrap();
    assert_eq!(keys(&page.kvs), [a.as_str(), c.as_str()]);
    assert_eq!(page.oversized, [skipped]);
    assert_eq!(page.last_key(), Some(c.clone()));
    let after = store
        .list_page(p, Some(&b), Some(page.revision))
        .await
        .unwrap();
    assert_eq!(keys(&after.kvs), [c.as_str()]);
    assert!(after.oversized.is_empty(), "{:?}", after.oversized);
}

/// `create_all`: every key in one revision if none exists, nothing if one does.
pub async fn create_all_writes_every_key_or_none<B: Backend>(store: &B, p: &str) {
    let (one, two, three) = (format!("{p}1"), format!("{p}2"), format!("{p}3"));
    assert!(store.create_all(&[]).await.unwrap(), "nothing to create");
    assert!(
        store
            .create_all(&[kv(&one, b"1"), kv(&two, b"2")])
            .await
            .unwrap()
    );
    let first = store.list(p).await.unwrap();
    assert_eq!(keys(&first.kvs), [one.as_str(), two.as_str()]);
    assert_eq!(
        first.kvs[0].create_revision, first.kvs[1].create_revision,
        "one write, one revision"
    );
    assert!(
        !store
            .create_all(&[kv(&three, b"3"), kv(&two, b"changed")])
            .await
            .unwrap(),
        "one of the keys exists"
    );
    assert_eq!(store.get(&three).await.unwrap(), None, "nothing written");
    assert_eq!(
        store.list(p).await.unwrap().kvs,
        first.kvs,
        "nothing changed"
    );
    assert!(store.create_all(&[kv(&three, b"3")]).await.unwrap());
    assert_eq!(store.list(p).await.unwrap().kvs.len(), 3);
}

/// `create_all_requiring`: only while the required key exists (an endpoint only while its
/// network does).
pub async fn create_all_requiring_needs_the_required_key<B: Backend>(store: &B, p: &str) {
    let network = format!("{p}networks/a");
    store.put(&network, b"a").await.unwrap();
    let endpoint = format!("{p}endpoints/a/e1");
    assert!(
        store
            .create_all_requiring(&[kv(&endpoint, b"e")], &network)
            .await
            .unwrap()
    );
    assert!(
        !store
            .create_all_requiring(&[kv(&endpoint, b"again")], &network)
            .await
            .unwrap(),
        "the key exists"
    );
    let orphan = format!("{p}endpoints/gone/e1");
    assert!(
        !store
            .create_all_requiring(&[kv(&orphan, b"e")], &format!("{p}networks/gone"))
            .await
            .unwrap(),
        "the required key is missing"
    );
    assert_eq!(store.get(&orphan).await.unwrap(), None);
    assert_eq!(store.get(&endpoint).await.unwrap().unwrap().value, b"e");
}

/// `put_if`: absent means absent, a mod revision means nobody wrote the key since.
pub async fn put_if_compares_before_it_writes<B: Backend>(store: &B, p: &str) {
    let key = format!("{p}k");
    assert!(
        store
            .put_if(&key, b"1", None, Expect::Absent)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_if(&key, b"2", None, Expect::Absent)
            .await
            .unwrap()
    );
    let current = store.get(&key).await.unwrap().unwrap();
    assert_eq!(current.value, b"1");
    let stale = Expect::ModRevision(current.mod_revision - 1);
    assert!(!store.put_if(&key, b"x", None, stale).await.unwrap());
    assert_eq!(
        store.get(&key).await.unwrap().unwrap(),
        current,
        "unchanged"
    );
    let fresh = Expect::ModRevision(current.mod_revision);
    assert!(store.put_if(&key, b"x", None, fresh).await.unwrap());
    let written = store.get(&key).await.unwrap().unwrap();
    assert_eq!(written.value, b"x");
    assert!(written.mod_revision > current.mod_revision);
    let missing = format!("{p}missing");
    assert!(
        !store
            .put_if(
                &missing,
                b"m",
                None,
                Expect::ModRevision(written.mod_revision)
            )
            .await
            .unwrap(),
        "a missing key has no mod revision"
    );
    assert_eq!(store.get(&missing).await.unwrap(), None);
}

/// `put_all`: every key (more than one Consul transaction takes), none newer than the revision
/// it returns.
pub async fn put_all_writes_every_key<B: Backend>(store: &B, p: &str) {
    let kvs: Vec<_> = (0..100)
        .map(|i| kv(&format!("{p}k{i:03}"), format!("{i}").as_bytes()))
        .collect();
    let revision = store.put_all(&kvs).await.unwrap();
    let listing = store.list(p).await.unwrap();
    assert_eq!(listing.kvs.len(), kvs.len());
    for (written, (key, value)) in listing.kvs.iter().zip(&kvs) {
        assert_eq!((&written.key, &written.value), (key, value));
        assert!(
            written.mod_revision <= revision,
            "{written:?} after {revision}"
        );
    }
    assert_eq!(
        listing.kvs.iter().map(|kv| kv.mod_revision).max(),
        Some(revision),
        "the revision of the (last) write"
    );
    let changed: Vec<_> = kvs[..3]
        .iter()
        .map(|(key, _)| kv(key, b"changed"))
        .collect();
    assert!(store.put_all(&changed).await.unwrap() > revision);
}

/// `delete_all`: the keys that exist go (not the ones that only share their beginning), and
/// the count says how many existed.
pub async fn delete_all_counts_what_existed<B: Backend>(store: &B, p: &str) {
    let kvs: Vec<_> = ["e1", "e10", "e2"]
        .iter()
        .map(|id| kv(&format!("{p}{id}"), b"x"))
        .collect();
    store.put_all(&kvs).await.unwrap();
    assert_eq!(store.delete_all(&[]).await.unwrap(), 0);
    let gone = [format!("{p}e1"), format!("{p}e3")];
    assert_eq!(store.delete_all(&gone).await.unwrap(), 1);
    assert_eq!(
        keys(&store.list(p).await.unwrap().kvs),
        [format!("{p}e10"), format!("{p}e2")]
    );
    assert_eq!(store.delete_all(&gone).await.unwrap(), 0, "gone already");
}

/// `delete_with_claim`: the records go; the claim too, but only while its value is still the
/// owner's.
pub async fn delete_with_claim_frees_only_the_owners_claim<B: Backend>(store: &B, p: &str) {
    let (record_a, record_b) = (format!("{p}ep/a"), format!("{p}ep/b"));
    let claim = format!("{p}ipam/10.0.0.5");
    store.put(&record_a, b"{}").await.unwrap();
    // Claimed by someone else by now: the record goes, the claim stays.
    store.put(&claim, b"b").await.unwrap();
    let deleted = store
        .delete_with_claim(std::slice::from_ref(&record_a), &claim, b"a")
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(store.get(&record_a).await.unwrap(), None);
    assert_eq!(store.get(&claim).await.unwrap().unwrap().value, b"b");
    // Still the owner's: both go.
    store.put(&record_b, b"{}").await.unwrap();
    let deleted = store
        .delete_with_claim(std::slice::from_ref(&record_b), &claim, b"b")
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert!(store.list(p).await.unwrap().kvs.is_empty());
    // A missing claim is no error.
    assert_eq!(store.delete_with_claim(&[], &claim, b"b").await.unwrap(), 0);
}

/// Collects a watch's events until `done` says the state they lead to is reached (or fails
/// after [`DELIVERY`]), checking that they come in revision order and under `prefix` only.
async fn watch_until<W: Watch>(
    watch: &mut W,
    prefix: &str,
    mut done: impl FnMut(&[WatchEvent]) -> bool,
) -> Vec<WatchEvent> {
    let deadline = Instant::now() + DELIVERY;
    let mut events: Vec<WatchEvent> = Vec::new();
    while !done(&events) {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, watch.next())
            .await
            .unwrap_or_else(|_| panic!("the watch delivered only {events:?} in {DELIVERY:?}"))
            .unwrap();
        assert!(!batch.is_empty(), "a watch returned an empty batch");
        events.extend(batch);
    }
    assert!(
        events
            .windows(2)
            .all(|w| w[0].revision() <= w[1].revision()),
        "events out of revision order: {events:?}"
    );
    assert!(
        events.iter().all(|e| e.key().starts_with(prefix)),
        "an event outside {prefix}: {events:?}"
    );
    events
}

/// The keys and values `listing` and then `events` lead to.
fn applied(listing: &[KeyValue], events: &[WatchEvent]) -> BTreeMap<String, Vec<u8>> {
    let mut state: BTreeMap<String, Vec<u8>> = listing
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    for event in events {
        match event {
            WatchEvent::Put(kv) => state.insert(kv.key.clone(), kv.value.clone()),
            WatchEvent::Delete { key, .. } => state.remove(key),
        };
    }
    state
}

/// A watch from a listing's revision + 1 delivers every change after the listing, also those
/// made before the watch started, in revision order, deletes included, and nothing from
/// outside its prefix (not even from a prefix that only shares its beginning).
pub async fn a_watch_from_a_listing_misses_nothing<B: Backend>(store: &B, p: &str) {
    let key = |name: &str| format!("{p}{name}");
    store.put(&key("before"), b"0").await.unwrap();
    let listing = store.list_page(p, None, None).await.unwrap();
    assert_eq!(keys(&listing.kvs), [key("before")]);
    let between = store.put(&key("between"), b"1").await.unwrap();
    let mut watch = store.watch(p, listing.revision + 1).await.unwrap();
    store.put(&key("a"), b"1").await.unwrap();
    store.put(&key("a"), b"2").await.unwrap();
    store.put(&key("b"), b"3").await.unwrap();
    let sibling = format!("{}-sibling/x", p.trim_end_matches('/'));
    store.put(&sibling, b"not watched").await.unwrap();
    store.delete_all(&[key("a"), key("before")]).await.unwrap();
    let expected: BTreeMap<String, Vec<u8>> =
        [(key("between"), b"1".to_vec()), (key("b"), b"3".to_vec())].into();
    let events = watch_until(&mut watch, p, |events| {
        applied(&listing.kvs, events) == expected
    })
    .await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, WatchEvent::Put(kv) if kv.key == key("between") && kv.mod_revision == between)),
        "the write between the listing and the watch: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, WatchEvent::Delete { key: k, .. } if *k == key("before"))),
        "a delete of a listed key: {events:?}"
    );
}

/// A write of several keys is one revision for a watcher too.
pub async fn a_watch_sees_a_write_of_several_keys_at_one_revision<B: Backend>(store: &B, p: &str) {
    let listing = store.list_page(p, None, None).await.unwrap();
    let mut watch = store.watch(p, listing.revision + 1).await.unwrap();
    let sibling = format!("{}-sibling/3", p.trim_end_matches('/'));
    assert!(
        store
            .create_all(&[
                kv(&format!("{p}1"), b"1"),
                kv(&format!("{p}2"), b"2"),
                kv(&sibling, b"3"),
            ])
            .await
            .unwrap()
    );
    let events = watch_until(&mut watch, p, |events| events.len() >= 2).await;
    assert_eq!(
        events.iter().map(WatchEvent::key).collect::<Vec<_>>(),
        [format!("{p}1"), format!("{p}2")]
    );
    assert_eq!(events[0].revision(), events[1].revision(), "{events:?}");
}

/// A revoked lease takes its keys (watchers see them go) and is lost: renewing it, and writing
/// under it, say so; revoking it again is no error.
pub async fn a_revoked_lease_takes_its_keys_and_is_lost<B: Backend>(store: &B, p: &str) {
    let (one, two, plain) = (format!("{p}l1"), format!("{p}l2"), format!("{p}plain"));
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    assert!(lease.ttl >= Duration::from_secs(30), "{lease:?}");
    store.put_with_lease(&one, b"1", &lease.id).await.unwrap();
    assert!(
        store
            .put_if(&two, b"2", Some(&lease.id), Expect::Absent)
            .await
            .unwrap()
    );
    store.put(&plain, b"3").await.unwrap();
    for _ in 0..3 {
        store.keep_alive(&lease.id).await.unwrap();
    }
    let listing = store.list_page(p, None, None).await.unwrap();
    assert_eq!(listing.kvs.len(), 3);
    let mut watch = store.watch(p, listing.revision + 1).await.unwrap();

    store.revoke(&lease.id).await.unwrap();
    assert_eq!(store.get(&one).await.unwrap(), None);
    assert_eq!(store.get(&two).await.unwrap(), None);
    assert!(
        store.get(&plain).await.unwrap().is_some(),
        "not the lease's"
    );
    watch_until(&mut watch, p, |events| {
        applied(&listing.kvs, events).keys().eq([&plain])
    })
    .await;

    let lost = |result: crate::Result<_>, what: &str| match result {
        Err(StoreError::LeaseLost(id)) => assert_eq!(id, lease.id, "{what}"),
        other => panic!("{what} under a revoked lease: {other:?}"),
    };
    lost(store.keep_alive(&lease.id).await.map(|()| 0), "a renewal");
    lost(store.put_with_lease(&one, b"1", &lease.id).await, "a put");
    lost(
        store
            .put_if(&one, b"1", Some(&lease.id), Expect::Absent)
            .await
            .map(i64::from),
        "a put_if",
    );
    assert_eq!(store.get(&one).await.unwrap(), None, "nothing written");
    store.revoke(&lease.id).await.unwrap();
}

/// A key written again under another lease (a restarted daemon taking its record over) goes
/// with that lease only.
pub async fn a_key_taken_over_by_another_lease_goes_with_that_one<B: Backend>(store: &B, p: &str) {
    let key = format!("{p}hosts/h1");
    let old = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    let new = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    assert!(
        store
            .put_if(&key, b"old", Some(&old.id), Expect::Absent)
            .await
            .unwrap()
    );
    let written = store.get(&key).await.unwrap().unwrap();
    let taken = Expect::ModRevision(written.mod_revision);
    assert!(
        store
            .put_if(&key, b"new", Some(&new.id), taken)
            .await
            .unwrap()
    );
    store.revoke(&old.id).await.unwrap();
    assert_eq!(
        store.get(&key).await.unwrap().map(|kv| kv.value),
        Some(b"new".to_vec()),
        "the old lease no longer holds it"
    );
    store.revoke(&new.id).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None, "the new one did");
}

/// A lease that is not kept alive ends within its TTL (as granted) and takes its keys; one kept
/// alive all that time keeps them. Neither ends before the TTL asked for.
pub async fn a_lease_not_kept_alive_ends_and_takes_its_keys<B: Backend>(store: &B, p: &str) {
    let asked = Duration::from_secs(1);
    let (kept_key, dropped_key, plain) = (
        format!("{p}kept"),
        format!("{p}dropped"),
        format!("{p}plain"),
    );
    let granting = Instant::now();
    let kept = store.grant_lease(asked).await.unwrap();
    let dropped = store.grant_lease(asked).await.unwrap();
    assert!(dropped.ttl >= asked, "{dropped:?}");
    store
        .put_with_lease(&kept_key, b"k", &kept.id)
        .await
        .unwrap();
    store
        .put_with_lease(&dropped_key, b"d", &dropped.id)
        .await
        .unwrap();
    store.put(&plain, b"p").await.unwrap();

    // Renewed four times per TTL (the store's, which may be longer than asked), checked often.
    let renew_every = kept.ttl / 4;
    let mut renewed = Instant::now();
    loop {
        if renewed.elapsed() >= renew_every {
            store.keep_alive(&kept.id).await.unwrap();
            renewed = Instant::now();
        }
        if store.get(&dropped_key).await.unwrap().is_none() {
            break;
        }
        assert!(
            granting.elapsed() < dropped.ttl + EXPIRY_SLACK,
            "the keys of a lease of {:?} still there after {:?}",
            dropped.ttl,
            granting.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100).min(renew_every)).await;
    }
    let took = granting.elapsed();
    assert!(
        took >= asked,
        "ended after {took:?}, before its TTL of {asked:?}"
    );
    assert!(
        store.get(&kept_key).await.unwrap().is_some(),
        "a lease kept alive past {took:?} lost its key"
    );
    assert!(store.get(&plain).await.unwrap().is_some());
    assert!(matches!(
        store.keep_alive(&dropped.id).await,
        Err(StoreError::LeaseLost(id)) if id == dropped.id
    ));
    assert!(matches!(
        store.put_with_lease(&dropped_key, b"d", &dropped.id).await,
        Err(StoreError::LeaseLost(_))
    ));
    store.revoke(&kept.id).await.unwrap();
}

/// A watch from history the backend no longer has is [`StoreError::Compacted`] (from the watch
/// or its first batch); one from a new listing works.
pub async fn a_watch_from_compacted_history_is_compacted<B: Backend, F: Future<Output = ()>>(
    store: &B,
    p: &str,
    compact: impl FnOnce(i64) -> F,
) {
    let key = format!("{p}x");
    let first = store.put(&key, b"0").await.unwrap();
    let mut last = first;
    for i in 1..5 {
        last = store.put(&key, format!("{i}").as_bytes()).await.unwrap();
    }
    compact(last).await;
    let error = match store.watch(p, first).await {
        Err(e) => e,
        Ok(mut watch) => tokio::time::timeout(DELIVERY, watch.next())
            .await
            .expect("the watch said nothing")
            .expect_err("a watch from compacted history"),
    };
    assert!(matches!(error, StoreError::Compacted(_)), "{error:?}");

    let listing = store.list_page(p, None, None).await.unwrap();
    let mut watch = store.watch(p, listing.revision + 1).await.unwrap();
    let revision = store.put(&key, b"new").await.unwrap();
    let events = watch_until(&mut watch, p, |events| !events.is_empty()).await;
    assert!(
        matches!(&events[..], [WatchEvent::Put(kv)] if kv.mod_revision == revision && kv.value == b"new"),
        "{events:?}"
    );
}
