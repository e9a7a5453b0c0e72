//! `EtcdStore` against a real etcd (`/usr/bin/etcd`): every test starts its own single-member
//! cluster on free loopback ports and kills it when done, also when the test fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is the failure report"
)]

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netd_store::etcd::{EtcdStore, EtcdWatch};
use netd_store::{KeyValue, StoreError, WatchEvent};
use tempfile::TempDir;
use tokio::time::{sleep, timeout};

const ETCD: &str = "/usr/bin/etcd";
/// How long etcd gets to start answering.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running etcd; killed (and reaped) on drop.
struct Etcd {
    child: Option<Child>,
    dir: TempDir,
    url: String,
    peer_url: String,
}

/// A free loopback port: bound, then released for etcd to take (a tiny race other processes
/// could win; `Etcd::start` then retries with new ports).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Etcd {
    async fn start() -> Self {
        let mut last_log = String::new();
        for _ in 0..3 {
            let (client_port, peer_port) = {
                // Both bound at once so that they differ.
                let a = TcpListener::bind("127.0.0.1:0").unwrap();
                let b = TcpListener::bind("127.0.0.1:0").unwrap();
                (
                    a.local_addr().unwrap().port(),
                    b.local_addr().unwrap().port(),
                )
            };
            let mut etcd = Self {
                child: None,
                dir: tempfile::tempdir().unwrap(),
                url: format!("http://127.0.0.1:{client_port}"),
                peer_url: format!("http://127.0.0.1:{peer_port}"),
            };
            etcd.spawn();
            if etcd.wait_ready().await {
                return etcd;
            }
            last_log = std::fs::read_to_string(etcd.log_path()).unwrap_or_default();
        }
        panic!("etcd did not start; last log:\n{last_log}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Starts etcd on this instance's ports and data (again, after `kill`).
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "etcd already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(ETCD)
            .arg("--name=t")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.url))
            .arg(format!("--advertise-client-urls={}", self.url))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster=t={}", self.peer_url))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Polls until etcd answers a read; false if it exited or did not answer in time.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && child.try_wait().unwrap().is_some()
            {
                self.child = None;
                return false;
            }
            if let Ok(store) = EtcdStore::connect(std::slice::from_ref(&self.url)).await
                && store.get("ready-probe").await.is_ok()
            {
                return true;
            }
            sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn store(&self) -> EtcdStore {
        EtcdStore::connect(std::slice::from_ref(&self.url))
            .await
            .unwrap()
    }

    /// A plain etcd-client connection, for what `EtcdStore` does not offer (compaction).
    async fn raw_client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.url.as_str()], None)
            .await
            .unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The next batch of a watch, failing the test after 10 s.
async fn next_batch(watch: &mut EtcdWatch) -> Vec<WatchEvent> {
    timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no watch event within 10 s")
        .unwrap()
}

/// Collects watch events until there are `n`.
async fn next_events(watch: &mut EtcdWatch, n: usize) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    while events.len() < n {
        events.extend(next_batch(watch).await);
    }
    assert_eq!(events.len(), n, "more events than expected: {events:?}");
    events
}

fn kv(key: &str, value: &[u8]) -> (String, Vec<u8>) {
    (key.to_owned(), value.to_vec())
}

#[tokio::test]
async fn get_put_list_track_revisions() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;

    assert_eq!(store.get("/a/1").await.unwrap(), None);
    let empty = store.list("/a/").await.unwrap();
    assert!(empty.kvs.is_empty());
    assert!(empty.revision >= 1);

    let r1 = store.put("/a/1", b"one", None).await.unwrap();
    assert!(r1 > empty.revision);
    let got = store.get("/a/1").await.unwrap().unwrap();
    assert_eq!(
        got,
        KeyValue {
            key: "/a/1".into(),
            value: b"one".to_vec(),
            create_revision: r1,
            mod_revision: r1,
        }
    );

    let r2 = store.put("/a/1", b"uno", None).await.unwrap();
    assert!(r2 > r1);
    let got = store.get("/a/1").await.unwrap().unwrap();
    assert_eq!(got.value, b"uno");
    assert_eq!(got.create_revision, r1, "create_revision stays");
    assert_eq!(got.mod_revision, r2, "mod_revision grows");

    let r3 = store.put("/a/2", b"two", None).await.unwrap();
    store.put("/b/1", b"other prefix", None).await.unwrap();

    let listing = store.list("/a/").await.unwrap();
    let keys: Vec<&str> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/1", "/a/2"]);
    assert_eq!(listing.kvs[1].create_revision, r3);
    for kv in &listing.kvs {
        assert!(listing.revision >= kv.mod_revision, "{listing:?}");
    }
    // The listing's revision is the store's, not only the prefix's: it counts the /b/ put.
    assert!(listing.revision > r3);

    assert_eq!(
        store.list("").await.unwrap().kvs.len(),
        3,
        "empty prefix lists all"
    );
}

#[tokio::test]
async fn create_all_is_all_or_nothing() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;

    assert!(store.create_all(&[]).await.unwrap());
    assert!(
        store
            .create_all(&[kv("/c/1", b"1"), kv("/c/2", b"2")])
            .await
            .unwrap()
    );
    let first = store.list("/c/").await.unwrap();
    assert_eq!(first.kvs.len(), 2);
    assert_eq!(
        first.kvs[0].create_revision, first.kvs[1].create_revision,
        "one transaction, one revision"
    );

    // Overlaps /c/2: nothing of it is written.
    assert!(
        !store
            .create_all(&[kv("/c/3", b"3"), kv("/c/2", b"changed")])
            .await
            .unwrap()
    );
    let after = store.list("/c/").await.unwrap();
    assert_eq!(after.kvs, first.kvs);
    assert_eq!(
        after.revision, first.revision,
        "a failed create writes nothing"
    );

    // Disjoint: written.
    assert!(store.create_all(&[kv("/c/3", b"3")]).await.unwrap());
    assert_eq!(store.list("/c/").await.unwrap().kvs.len(), 3);
}

#[tokio::test]
async fn delete_all_counts_existing_keys() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;

    for key in ["/d/1", "/d/2", "/d/3"] {
        store.put(key, b"x", None).await.unwrap();
    }
    assert_eq!(store.delete_all(&[]).await.unwrap(), 0);
    let n = store
        .delete_all(&["/d/1".into(), "/d/2".into(), "/d/missing".into()])
        .await
        .unwrap();
    assert_eq!(n, 2);
    let left = store.list("/d/").await.unwrap();
    assert_eq!(left.kvs.len(), 1);
    assert_eq!(left.kvs[0].key, "/d/3");
    assert_eq!(store.delete_all(&["/d/1".into()]).await.unwrap(), 0);
}

#[tokio::test]
async fn delete_with_claim_frees_only_the_owners_claim() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;

    store.put("/ep/a", b"{}", None).await.unwrap();
    // Claimed by someone else by now: the record goes, the claim stays.
    store.put("/ipam/10.0.0.5", b"b", None).await.unwrap();
    let deleted = store
        .delete_with_claim(&["/ep/a".into()], "/ipam/10.0.0.5", b"a")
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(store.get("/ep/a").await.unwrap(), None);
    assert_eq!(
        store.get("/ipam/10.0.0.5").await.unwrap().unwrap().value,
        b"b"
    );

    // Still the owner's: both go.
    store.put("/ep/b", b"{}", None).await.unwrap();
    let deleted = store
        .delete_with_claim(&["/ep/b".into()], "/ipam/10.0.0.5", b"b")
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert!(store.list("/").await.unwrap().kvs.is_empty());

    // A missing claim is no error.
    let deleted = store
        .delete_with_claim(&[], "/ipam/10.0.0.5", b"b")
        .await
        .unwrap();
    assert_eq!(deleted, 0);
}

#[tokio::test]
async fn lease_keeps_key_until_revoked() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;

    let lease = store.grant_lease(Duration::from_secs(10)).await.unwrap();
    store.put("/l/node", b"alive", Some(&lease)).await.unwrap();
    for _ in 0..3 {
        store.keep_alive(&lease).await.unwrap();
    }
    assert!(store.get("/l/node").await.unwrap().is_some());

    store.revoke(&lease).await.unwrap();
    assert_eq!(
        store.get("/l/node").await.unwrap(),
        None,
        "revoke deletes the lease's keys"
    );
    assert!(matches!(
        store.keep_alive(&lease).await,
        Err(StoreError::LeaseLost(l)) if l == lease
    ));
    // Revoking again is harmless.
    store.revoke(&lease).await.unwrap();
}

#[tokio::test]
async fn lease_not_kept_alive_expires() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;

    let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    store.put("/l/short", b"x", Some(&lease)).await.unwrap();
    let granted = Instant::now();
    // etcd raises a 1 s TTL to its minimum (1.5 × election timeout, so 2 s by default) and
    // checks expiry every 500 ms.
    loop {
        if store.get("/l/short").await.unwrap().is_none() {
            break;
        }
        assert!(
            granted.elapsed() < Duration::from_secs(4),
            "key of an expired lease still there after 4 s"
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(
        store.keep_alive(&lease).await,
        Err(StoreError::LeaseLost(l)) if l == lease
    ));
    assert!(matches!(
        store.put("/l/late", b"x", Some(&lease)).await,
        Err(StoreError::LeaseLost(l)) if l == lease
    ));
}

#[tokio::test]
async fn watch_delivers_puts_and_deletes_in_order() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;

    store.put("/w/before", b"0", None).await.unwrap();
    let listing = store.list("/w/").await.unwrap();
    // Between the listing and the watch: must not be lost.
    let r1 = store.put("/w/a", b"1", None).await.unwrap();
    store.put("/other/x", b"not watched", None).await.unwrap();
    let mut watch = store.watch("/w/", listing.revision + 1).await.unwrap();

    let r2 = store.put("/w/a", b"2", None).await.unwrap();
    let r3 = store.put("/w/b", b"3", None).await.unwrap();
    store
        .delete_all(&["/w/a".into(), "/w/before".into()])
        .await
        .unwrap();

    let events = next_events(&mut watch, 5).await;
    let r4 = events[3].revision();
    assert_eq!(
        events,
        [
            WatchEvent::Put(KeyValue {
                key: "/w/a".into(),
                value: b"1".to_vec(),
                create_revision: r1,
                mod_revision: r1,
            }),
            WatchEvent::Put(KeyValue {
                key: "/w/a".into(),
                value: b"2".to_vec(),
                create_revision: r1,
                mod_revision: r2,
            }),
            WatchEvent::Put(KeyValue {
                key: "/w/b".into(),
                value: b"3".to_vec(),
                create_revision: r3,
                mod_revision: r3,
            }),
            WatchEvent::Delete {
                key: "/w/a".into(),
                mod_revision: r4,
            },
            WatchEvent::Delete {
                key: "/w/before".into(),
                mod_revision: r4,
            },
        ]
    );
    assert!(r4 > r3);
}

#[tokio::test]
async fn watch_from_compacted_revision_fails() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;

    let first = store.put("/k/x", b"0", None).await.unwrap();
    let mut last = first;
    for i in 1..5 {
        last = store
            .put("/k/x", format!("{i}").as_bytes(), None)
            .await
            .unwrap();
    }
    etcd.raw_client().await.compact(last, None).await.unwrap();

    let err = match store.watch("/k/", first).await {
        Err(e) => e,
        Ok(mut watch) => timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("no answer from the watch within 10 s")
            .unwrap_err(),
    };
    assert!(
        matches!(err, StoreError::Compacted(rev) if rev == last),
        "{err:?}"
    );

    // Watching from after the compaction works.
    let mut watch = store.watch("/k/", last + 1).await.unwrap();
    store.put("/k/x", b"new", None).await.unwrap();
    assert_eq!(next_batch(&mut watch).await.len(), 1);
}

#[tokio::test]
async fn etcd_down_is_unavailable_and_recovers() {
    let mut etcd = Etcd::start().await;
    let store = etcd.store().await;
    store.put("/x", b"1", None).await.unwrap();
    let mut watch = store.watch("/", 0).await.unwrap();

    etcd.kill();

    let started = Instant::now();
    let res = timeout(Duration::from_secs(10), store.get("/x"))
        .await
        .expect("get hung with etcd down");
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    let res = timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("watch hung with etcd down");
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    let res = timeout(Duration::from_secs(10), store.put("/y", b"", None))
        .await
        .expect("put hung with etcd down");
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    let res = timeout(Duration::from_secs(10), store.watch("/", 0))
        .await
        .expect("watch hung with etcd down");
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    eprintln!("etcd down noticed in {:?}", started.elapsed());

    // A client made while etcd is down connects lazily and fails on use, in bounded time too.
    let late = timeout(
        Duration::from_secs(10),
        EtcdStore::connect(std::slice::from_ref(&etcd.url)),
    )
    .await
    .expect("connect hung with etcd down")
    .unwrap();
    let res = timeout(Duration::from_secs(10), late.get("/x"))
        .await
        .expect("get hung with etcd down");
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");

    // The same client works again once etcd is back (same ports and data).
    etcd.spawn();
    assert!(etcd.wait_ready().await, "etcd did not restart");
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        match store.get("/x").await {
            Ok(got) => break got,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("client did not recover: {e}"),
        }
    };
    assert_eq!(got.unwrap().value, b"1");
}

#[tokio::test]
async fn connect_rejects_no_endpoint() {
    assert!(matches!(
        EtcdStore::connect(&[]).await,
        Err(StoreError::BadUrl { .. })
    ));
    // Nothing listens on a just-released port: connecting is lazy, the first call says why.
    let url = format!("http://127.0.0.1:{}", free_port());
    let store = EtcdStore::connect(&[url]).await.unwrap();
    let res = timeout(Duration::from_secs(10), store.list("/"))
        .await
        .expect("list hung with no etcd");
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
}

#[tokio::test]
async fn silent_peer_is_unavailable_in_bounded_time() {
    // Accepts TCP connections (in the kernel's backlog) but never speaks HTTP/2, like a hung
    // etcd: only timeouts can end the calls.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let store = EtcdStore::connect(&[url]).await.unwrap();

    let started = Instant::now();
    let res = timeout(Duration::from_secs(10), store.get("/x"))
        .await
        .expect("get hung on a silent peer");
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    let res = timeout(Duration::from_secs(10), store.watch("/", 0))
        .await
        .expect("watch hung on a silent peer");
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    let res = timeout(
        Duration::from_secs(10),
        store.keep_alive(&netd_store::LeaseId::from(1)),
    )
    .await
    .expect("keep-alive hung on a silent peer");
    assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
    eprintln!("silent peer: 3 calls failed in {:?}", started.elapsed());
    drop(listener);
}

/// More records than one page (and than one 4 MiB gRPC message): the listing is complete, in
/// key order, at one revision; a page at a compacted revision says so.
#[tokio::test]
async fn large_prefixes_are_listed_in_pages() {
    let etcd = Etcd::start().await;
    let store = etcd.store().await;
    // 20,000 values of 300 bytes: 6 MB, above gRPC's 4 MiB default message limit.
    let filler = vec![b'x'; 300];
    let keys: Vec<String> = (0..20_000).map(|i| format!("/big/{i:06}")).collect();
    for chunk in keys.chunks(128) {
        let kvs: Vec<(String, Vec<u8>)> =
            chunk.iter().map(|k| (k.clone(), filler.clone())).collect();
        store.put_all(&kvs).await.unwrap();
    }
    let listing = store.list("/big/").await.unwrap();
    let listed: Vec<&str> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(listed.len(), keys.len());
    assert!(listed.iter().zip(&keys).all(|(a, b)| *a == b.as_str()));

    let first = store.list_page("/big/", None, None, 100).await.unwrap();
    assert!(first.more);
    store.put("/big/zzz", b"later", None).await.unwrap();
    let after = first.kvs.last().map(|kv| kv.key.clone());
    let at_first = store
        .list_page("/big/", after.as_deref(), Some(first.revision), 100_000)
        .await
        .unwrap();
    assert_eq!(
        first.kvs.len() + at_first.kvs.len(),
        keys.len(),
        "a page at the first revision does not see the later put"
    );
    let now = store.put("/big/zzz", b"again", None).await.unwrap();
    etcd.raw_client().await.compact(now, None).await.unwrap();
    let old = store
        .list_page("/big/", after.as_deref(), Some(first.revision), 10)
        .await;
    assert!(matches!(old, Err(StoreError::Compacted(_))), "{old:?}");
}
