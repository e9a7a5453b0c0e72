//! The embedded store ([`FileStore`]) against the etcd-like contract in `netd_store`'s lib.rs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is the failure report"
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netd_store::file::{FileStore, FileWatch};
use netd_store::{LeaseId, StoreError, WatchEvent};
use tempfile::TempDir;

fn store() -> (TempDir, FileStore) {
    let dir = TempDir::new().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    (dir, store)
}

fn kv(key: &str, value: &str) -> (String, Vec<u8>) {
    (key.to_owned(), value.as_bytes().to_vec())
}

/// Collects watch batches until `n` events arrived (failing after 5 s), checking batch order.
async fn collect(watch: &mut FileWatch, n: usize) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    while events.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("watch timed out")
            .unwrap();
        assert!(!batch.is_empty(), "watch returned an empty batch");
        events.extend(batch);
    }
    assert!(
        events
            .windows(2)
            .all(|w| w[0].revision() <= w[1].revision()),
        "events out of order: {events:?}"
    );
    events
}

#[tokio::test]
async fn empty_store_starts_at_revision_1() {
    let (_dir, store) = store();
    let listing = store.list("").await.unwrap();
    assert!(listing.kvs.is_empty());
    assert_eq!(listing.revision, 1);
    assert_eq!(store.get("nope").await.unwrap(), None);
}

#[tokio::test]
async fn open_creates_the_directory_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a/b");
    let store = FileStore::open(&path).unwrap();
    store.put("k", b"1", None).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn put_get_list_and_revisions() {
    let (_dir, store) = store();
    let r1 = store.put("a/2", b"\"x\"", None).await.unwrap();
    assert_eq!(r1, 2);
    let r2 = store.put("a/1", b"\"y\"", None).await.unwrap();
    assert_eq!(r2, r1 + 1);
    let r3 = store.put("a/2", b"\"z\"", None).await.unwrap();
    assert_eq!(r3, r2 + 1);
    store.put("b/1", b"1", None).await.unwrap();

    let kv = store.get("a/2").await.unwrap().unwrap();
    assert_eq!(kv.key, "a/2");
    assert_eq!(kv.value, b"\"z\"");
    assert_eq!(kv.create_revision, r1, "create_revision kept across puts");
    assert_eq!(kv.mod_revision, r3, "mod_revision is the last change");

    let listing = store.list("a/").await.unwrap();
    let keys: Vec<&str> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["a/1", "a/2"], "sorted, prefix only");
    assert!(
        listing
            .kvs
            .iter()
            .all(|kv| listing.revision >= kv.mod_revision)
    );
    assert_eq!(listing.revision, r3 + 1);
    assert_eq!(store.list("").await.unwrap().kvs.len(), 3);
}

#[tokio::test]
async fn bad_values_and_keys_are_rejected() {
    let (_dir, store) = store();
    let err = store.put("k", &[0xff, 0xfe], None).await.unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    let err = store.put("", b"1", None).await.unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    let err = store
        .create_all(&[kv("k", "1"), kv("k", "2")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert_eq!(store.list("").await.unwrap().revision, 1, "nothing written");
}

#[tokio::test]
async fn create_all_is_all_or_nothing() {
    let (_dir, store) = store();
    assert!(
        store
            .create_all(&[kv("v/1", "a"), kv("v/2", "b")])
            .await
            .unwrap()
    );
    let first = store.list("v/").await.unwrap();
    assert_eq!(first.kvs.len(), 2);
    assert_eq!(first.revision, 2, "one revision for the whole create");
    assert!(
        first
            .kvs
            .iter()
            .all(|kv| kv.create_revision == 2 && kv.mod_revision == 2)
    );

    // Overlaps by one key: nothing is written, not even the new key.
    assert!(
        !store
            .create_all(&[kv("v/3", "c"), kv("v/2", "changed")])
            .await
            .unwrap()
    );
    let second = store.list("v/").await.unwrap();
    assert_eq!(second, first, "nothing changed, revision unchanged");
    assert_eq!(store.get("v/3").await.unwrap(), None);
}

#[tokio::test]
async fn delete_all_counts_and_is_idempotent() {
    let (_dir, store) = store();
    store
        .create_all(&[kv("d/1", "1"), kv("d/2", "2"), kv("d/3", "3")])
        .await
        .unwrap();
    let before = store.list("").await.unwrap().revision;
    let keys = vec!["d/1".to_owned(), "d/2".to_owned(), "d/missing".to_owned()];
    assert_eq!(store.delete_all(&keys).await.unwrap(), 2);
    let after = store.list("").await.unwrap();
    assert_eq!(
        after.revision,
        before + 1,
        "one revision for the whole delete"
    );
    assert_eq!(after.kvs.len(), 1);
    assert_eq!(after.kvs[0].key, "d/3");

    assert_eq!(store.delete_all(&keys).await.unwrap(), 0);
    assert_eq!(
        store.list("").await.unwrap().revision,
        after.revision,
        "deleting nothing is no change"
    );
}

#[tokio::test]
async fn delete_with_claim_frees_only_the_owners_claim() {
    let (_dir, store) = store();
    store
        .create_all(&[kv("ep/a", "{}"), kv("ipam/10.0.0.5", "a")])
        .await
        .unwrap();
    // Claimed by someone else by now: the record goes, the claim stays.
    store.put("ipam/10.0.0.5", b"b", None).await.unwrap();
    let deleted = store
        .delete_with_claim(&["ep/a".to_owned()], "ipam/10.0.0.5", b"a")
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(store.get("ep/a").await.unwrap(), None);
    assert_eq!(
        store.get("ipam/10.0.0.5").await.unwrap().unwrap().value,
        b"b"
    );

    // Still the owner's: both go, in one revision.
    let before = store.list("").await.unwrap().revision;
    store.put("ep/b", b"{}", None).await.unwrap();
    let deleted = store
        .delete_with_claim(&["ep/b".to_owned()], "ipam/10.0.0.5", b"b")
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let after = store.list("").await.unwrap();
    assert!(after.kvs.is_empty(), "{:?}", after.kvs);
    assert_eq!(
        after.revision,
        before + 2,
        "the put, then one delete revision"
    );

    // A missing claim is no error.
    assert_eq!(
        store
            .delete_with_claim(&[], "ipam/10.0.0.5", b"b")
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn two_stores_on_one_dir_share_state() {
    let dir = TempDir::new().unwrap();
    let a = FileStore::open(dir.path()).unwrap();
    let b = FileStore::open(dir.path()).unwrap();
    let rev = a.put("shared", b"1", None).await.unwrap();
    let seen = b.get("shared").await.unwrap().unwrap();
    assert_eq!(seen.value, b"1");
    assert_eq!(seen.mod_revision, rev);
    assert!(!b.create_all(&[kv("shared", "2")]).await.unwrap());
    assert_eq!(b.delete_all(&["shared".to_owned()]).await.unwrap(), 1);
    assert_eq!(a.get("shared").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_create_all_from_two_stores() {
    const TASKS: usize = 4;
    const CREATES: usize = 25;
    let dir = TempDir::new().unwrap();
    let stores = [
        Arc::new(FileStore::open(dir.path()).unwrap()),
        Arc::new(FileStore::open(dir.path()).unwrap()),
    ];
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for t in 0..TASKS {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let mut won = 0;
                for n in 0..CREATES {
                    let own = kv(&format!("k/{s}/{t}/{n}"), "1");
                    assert!(store.create_all(&[own]).await.unwrap());
                    // The contended key, together with a key of this task's: all or nothing.
                    let claim = [
                        kv("contended", &format!("{s}/{t}/{n}")),
                        kv(&format!("claim/{s}/{t}/{n}"), "1"),
                    ];
                    if store.create_all(&claim).await.unwrap() {
                        won += 1;
                    }
                }
                won
            }));
        }
    }
    let mut wins = 0;
    for task in tasks {
        wins += task.await.unwrap();
    }
    assert_eq!(wins, 1, "the contended key is created exactly once");

    let listing = stores[1].list("k/").await.unwrap();
    let keys: BTreeSet<String> = listing.kvs.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys.len(), 2 * TASKS * CREATES, "every key present");
    let claims = stores[0].list("claim/").await.unwrap().kvs;
    assert_eq!(
        claims.len(),
        1,
        "only the winner's companion key was written"
    );
    let winner = stores[0].get("contended").await.unwrap().unwrap();
    assert_eq!(
        claims[0].key,
        format!("claim/{}", String::from_utf8(winner.value).unwrap())
    );
    assert_eq!(claims[0].mod_revision, winner.mod_revision);
}

#[tokio::test]
async fn keep_alive_extends_and_revoke_removes_keys() {
    let (_dir, store) = store();
    // A TTL 30 renewals long: every write fsyncs, and on a busy machine one slow fsync can
    // stall a renewal (a 500 ms TTL lapsed once in CI, right after the build).
    let lease = store.grant_lease(Duration::from_secs(3)).await.unwrap();
    store.put("l/a", b"1", Some(&lease)).await.unwrap();
    store.put("l/b", b"2", Some(&lease)).await.unwrap();
    store.put("l/plain", b"3", None).await.unwrap();

    // Past the TTL, but renewed all along.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        store.keep_alive(&lease).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.list("l/").await.unwrap().kvs.len(), 3);

    let before = store.list("").await.unwrap().revision;
    store.revoke(&lease).await.unwrap();
    let after = store.list("l/").await.unwrap();
    let keys: Vec<&str> = after.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["l/plain"]);
    assert_eq!(after.revision, before + 1, "one revision for the revoke");

    assert!(matches!(store.keep_alive(&lease).await, Err(StoreError::LeaseLost(l)) if l == lease));
    assert!(matches!(
        store.put("l/c", b"1", Some(&lease)).await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        store.revoke(&lease).await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        store.put("l/c", b"1", Some(&LeaseId::from(12_345))).await,
        Err(StoreError::LeaseLost(_))
    ));
}

#[tokio::test]
async fn put_without_lease_detaches_the_key() {
    let (_dir, store) = store();
    let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    store.put("k", b"1", Some(&lease)).await.unwrap();
    store.put("k", b"2", None).await.unwrap();
    store.revoke(&lease).await.unwrap();
    assert_eq!(store.get("k").await.unwrap().unwrap().value, b"2");
}

#[tokio::test]
async fn unrenewed_lease_expires_for_other_stores() {
    let dir = TempDir::new().unwrap();
    let owner = FileStore::open(dir.path()).unwrap();
    let other = FileStore::open(dir.path()).unwrap();
    let lease = owner.grant_lease(Duration::from_millis(500)).await.unwrap();
    let start = Instant::now();
    owner.put("hosts/h1", b"{}", Some(&lease)).await.unwrap();
    owner.put("hosts/h2", b"{}", None).await.unwrap();
    assert!(other.get("hosts/h1").await.unwrap().is_some());

    // The owner goes quiet; only the other store's reads run the expiry.
    loop {
        if other.get("hosts/h1").await.unwrap().is_none() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "leased key still there after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(450),
        "expired too early"
    );
    let keys: Vec<String> = other
        .list("hosts/")
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, ["hosts/h2"]);
    assert!(matches!(owner.keep_alive(&lease).await, Err(StoreError::LeaseLost(l)) if l == lease));
}

#[tokio::test]
async fn watch_sees_put_delete_and_lease_expiry_in_order() {
    let (_dir, store) = store();
    store.put("w/old", b"0", None).await.unwrap();
    let listing = store.list("w/").await.unwrap();
    let mut watch = store.watch("w/", listing.revision + 1).unwrap();

    let put_rev = store.put("w/a", b"1", None).await.unwrap();
    store.put("other/x", b"1", None).await.unwrap();
    store.delete_all(&["w/a".to_owned()]).await.unwrap();
    let delete_rev = put_rev + 2;

    let events = collect(&mut watch, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    match &events[0] {
        WatchEvent::Put(kv) => {
            assert_eq!(kv.key, "w/a");
            assert_eq!(kv.value, b"1");
            assert_eq!(kv.mod_revision, put_rev);
            assert_eq!(kv.create_revision, put_rev);
        }
        other => panic!("expected a put, got {other:?}"),
    }
    assert_eq!(
        events[1],
        WatchEvent::Delete {
            key: "w/a".into(),
            mod_revision: delete_rev
        }
    );

    // Only the watcher polls from here: its polls must expire the lease.
    let lease = store.grant_lease(Duration::from_millis(300)).await.unwrap();
    let lease_rev = store.put("w/leased", b"1", Some(&lease)).await.unwrap();
    let events = collect(&mut watch, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(&events[0], WatchEvent::Put(kv) if kv.key == "w/leased" && kv.mod_revision == lease_rev)
    );
    assert!(
        matches!(&events[1], WatchEvent::Delete { key, mod_revision } if key == "w/leased" && *mod_revision == lease_rev + 1),
        "{events:?}"
    );
    assert_eq!(store.get("w/leased").await.unwrap(), None);
}

#[tokio::test]
async fn watch_batches_share_a_create_all_revision() {
    let (_dir, store) = store();
    let mut watch = store.watch("c/", 2).unwrap();
    store
        .create_all(&[kv("c/1", "1"), kv("c/2", "2"), kv("x/3", "3")])
        .await
        .unwrap();
    let events = collect(&mut watch, 2).await;
    let keys: Vec<&str> = events.iter().map(WatchEvent::key).collect();
    assert_eq!(keys, ["c/1", "c/2"]);
    assert!(events.iter().all(|e| e.revision() == 2));
}

#[tokio::test]
async fn watch_from_compacted_revision_fails() {
    let (_dir, store) = store();
    // 11 × 1000 events: more than the 10_000 the log keeps.
    for batch in 0..11 {
        let kvs: Vec<_> = (0..1000)
            .map(|i| kv(&format!("many/{batch}/{i}"), "1"))
            .collect();
        assert!(store.create_all(&kvs).await.unwrap());
    }
    let mut watch = store.watch("", 1).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap_err();
    let StoreError::Compacted(oldest) = err else {
        panic!("expected Compacted, got {err:?}");
    };
    assert!(oldest > 1);

    // From the oldest revision still available, the history is complete.
    let mut watch = store.watch("many/", oldest).unwrap();
    let events = watch.next().await.unwrap();
    assert_eq!(events[0].revision(), oldest);
    assert_eq!(
        events.iter().filter(|e| e.revision() == oldest).count(),
        1000
    );

    // A watch from a fresh listing is fine.
    let listing = store.list("many/").await.unwrap();
    let mut watch = store.watch("many/", listing.revision + 1).unwrap();
    let rev = store.put("many/new", b"1", None).await.unwrap();
    let events = collect(&mut watch, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].revision(), rev);
}

#[tokio::test]
async fn garbage_state_is_an_error_not_a_panic() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("state.json"), b"not json {{{").unwrap();
    // Opening may succeed; the first use must fail cleanly.
    let store = match FileStore::open(dir.path()) {
        Ok(store) => store,
        Err(err) => {
            assert!(matches!(err, StoreError::Other(_)), "{err:?}");
            return;
        }
    };
    assert!(matches!(store.get("k").await, Err(StoreError::Other(_))));
    assert!(matches!(
        store.put("k", b"1", None).await,
        Err(StoreError::Other(_))
    ));
    let mut watch = store.watch("", 0).unwrap();
    assert!(matches!(watch.next().await, Err(StoreError::Other(_))));
    assert_eq!(
        std::fs::read(dir.path().join("state.json")).unwrap(),
        b"not json {{{",
        "a corrupt state is left alone"
    );
}
