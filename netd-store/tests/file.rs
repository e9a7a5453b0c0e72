//! What is the embedded store's own ([`FileStore`]): its revision numbering, its state files,
//! several stores (processes) sharing one directory, lease expiry run by whoever touches the
//! store. The store contract it shares with etcd and Consul is `netd_store::conformance`, run on
//! it by the crate's own tests (src/file.rs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is the failure report"
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netd_store::file::{EVENT_LOG_LEN, FileStore, FileWatch};
use netd_store::{Backend, StoreError, Watch, WatchEvent};
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

/// Revisions as etcd counts them: one per change, whatever it touches, none for no change.
#[tokio::test]
async fn every_change_is_one_revision() {
    let (_dir, store) = store();
    assert_eq!(store.put("a/2", b"\"x\"").await.unwrap(), 2);
    assert_eq!(store.put("a/1", b"\"y\"").await.unwrap(), 3);
    assert!(
        store
            .create_all(&[kv("c/1", "1"), kv("c/2", "2")])
            .await
            .unwrap()
    );
    assert_eq!(
        store.list("").await.unwrap().revision,
        4,
        "one for the create"
    );
    assert!(!store.create_all(&[kv("c/1", "1")]).await.unwrap());
    assert_eq!(
        store.list("").await.unwrap().revision,
        4,
        "none for a refused create"
    );
    let gone = ["c/1".to_owned(), "c/2".to_owned(), "missing".to_owned()];
    assert_eq!(store.delete_all(&gone).await.unwrap(), 2);
    assert_eq!(
        store.list("").await.unwrap().revision,
        5,
        "one for the delete"
    );
    assert_eq!(store.delete_all(&gone).await.unwrap(), 0);
    assert_eq!(
        store.list("").await.unwrap().revision,
        5,
        "none for deleting nothing"
    );
    let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    store.put_with_lease("l/1", b"1", &lease.id).await.unwrap();
    store.put_with_lease("l/2", b"2", &lease.id).await.unwrap();
    store.revoke(&lease.id).await.unwrap();
    assert_eq!(
        store.list("").await.unwrap().revision,
        8,
        "one for the revoke"
    );
}

#[tokio::test]
async fn open_creates_the_directory_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a/b");
    let store = FileStore::open(&path).unwrap();
    store.put("k", b"1").await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn bad_values_and_keys_are_rejected() {
    let (_dir, store) = store();
    let err = store.put("k", &[0xff, 0xfe]).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err:?}");
    let err = store.put("", b"1").await.unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err:?}");
    let err = store
        .create_all(&[kv("k", "1"), kv("k", "2")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "store refused a write of several keys: k is given twice"
    );
    assert_eq!(store.list("").await.unwrap().revision, 1, "nothing written");
}

#[tokio::test]
async fn two_stores_on_one_dir_share_state() {
    let dir = TempDir::new().unwrap();
    let a = FileStore::open(dir.path()).unwrap();
    let b = FileStore::open(dir.path()).unwrap();
    let rev = a.put("shared", b"1").await.unwrap();
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
async fn put_without_lease_detaches_the_key() {
    let (_dir, store) = store();
    let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    store.put_with_lease("k", b"1", &lease.id).await.unwrap();
    store.put("k", b"2").await.unwrap();
    store.revoke(&lease.id).await.unwrap();
    assert_eq!(store.get("k").await.unwrap().unwrap().value, b"2");
}

#[tokio::test]
async fn unrenewed_lease_expires_for_other_stores() {
    let dir = TempDir::new().unwrap();
    let owner = FileStore::open(dir.path()).unwrap();
    let other = FileStore::open(dir.path()).unwrap();
    let start = Instant::now();
    let lease = owner.grant_lease(Duration::from_millis(500)).await.unwrap();
    owner
        .put_with_lease("hosts/h1", b"{}", &lease.id)
        .await
        .unwrap();
    owner.put("hosts/h2", b"{}").await.unwrap();
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
    assert!(
        matches!(owner.keep_alive(&lease.id).await, Err(StoreError::LeaseLost(l)) if l == lease.id)
    );
}

/// Nobody but a watcher touches the store: its polls expire the lease, and it sees the keys go.
#[tokio::test]
async fn a_watchers_polls_expire_leases() {
    let (_dir, store) = store();
    let listing = store.list("w/").await.unwrap();
    let mut watch = store.watch("w/", listing.revision + 1).await.unwrap();
    let lease = store.grant_lease(Duration::from_millis(300)).await.unwrap();
    let lease_rev = store
        .put_with_lease("w/leased", b"1", &lease.id)
        .await
        .unwrap();
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

/// The log keeps whole revisions: from the oldest one it still has, the history is complete.
#[tokio::test]
async fn the_history_left_after_compaction_is_whole() {
    let (_dir, store) = store();
    // More events than the log keeps, 1000 per revision.
    for batch in 0..=EVENT_LOG_LEN / 1000 {
        let kvs: Vec<_> = (0..1000)
            .map(|i| kv(&format!("many/{batch}/{i}"), "1"))
            .collect();
        assert!(store.create_all(&kvs).await.unwrap());
    }
    let mut watch = store.watch("", 1).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap_err();
    let StoreError::Compacted(oldest) = err else {
        panic!("expected Compacted, got {err:?}");
    };
    assert!(oldest > 1);
    let mut watch = store.watch("many/", oldest).await.unwrap();
    let events = watch.next().await.unwrap();
    assert_eq!(events[0].revision(), oldest);
    assert_eq!(
        events.iter().filter(|e| e.revision() == oldest).count(),
        1000
    );
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
        store.put("k", b"1").await,
        Err(StoreError::Other(_))
    ));
    let mut watch = store.watch("", 0).await.unwrap();
    assert!(matches!(watch.next().await, Err(StoreError::Other(_))));
    assert_eq!(
        std::fs::read(dir.path().join("state.json")).unwrap(),
        b"not json {{{",
        "a corrupt state is left alone"
    );
}
