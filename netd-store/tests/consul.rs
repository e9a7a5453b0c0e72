//! `ConsulStore` against a real Consul (Debian bullseye's 1.8.7, unpacked by `cargo xtask setup`
//! into target/tools/consul): every test starts its own dev-mode server on free loopback ports
//! and kills it when done, also when the test fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is the failure report"
)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use netd_store::consul::{ConsulConfig, ConsulStore};
use netd_store::{Expect, KeyValue, Store, StoreError, WatchEvent, WatchStream};
use tempfile::TempDir;
use tokio::time::{sleep, timeout};

const READY_WITHIN: Duration = Duration::from_secs(20);

fn consul_bin() -> PathBuf {
    let tools = std::env::var_os("NETD_TOOLS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools"),
        PathBuf::from,
    );
    let bin = tools.join("consul/usr/bin/consul");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask setup`",
        bin.display()
    );
    bin
}

/// A dev-mode Consul server on loopback; killed on drop.
struct Consul {
    child: Option<Child>,
    dir: TempDir,
    http_port: u16,
    ports: [u16; 3],
    /// Serving HTTPS only, with certificates made by `consul tls` in `dir`.
    tls: bool,
    /// ACLs on, denying by default, with this management token.
    acl_token: Option<&'static str>,
}

fn free_ports<const N: usize>() -> [u16; N] {
    // All bound at once so that they differ.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

impl Consul {
    async fn start() -> Self {
        Self::start_with(false, None).await
    }

    async fn start_with(tls: bool, acl_token: Option<&'static str>) -> Self {
        let [http_port, a, b, c] = free_ports::<4>();
        let mut consul = Self {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            http_port,
            ports: [a, b, c],
            tls,
            acl_token,
        };
        if tls {
            for args in [
                &["tls", "ca", "create"][..],
                &["tls", "cert", "create", "-server"],
            ] {
                let out = Command::new(consul_bin())
                    .args(args)
                    .current_dir(consul.dir.path())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "consul {args:?}: {out:?}");
            }
        }
        consul.spawn();
        consul.wait_ready().await;
        consul
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "consul+https" } else { "consul" };
        format!("{scheme}://127.0.0.1:{}", self.http_port)
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("consul-agent-ca.pem")
    }

    /// A client for this server (with its CA when it serves HTTPS).
    async fn connect(&self, url: &str) -> netd_store::Result<Store> {
        self.connect_with(url, self.acl_token.map(str::to_string))
            .await
    }

    async fn connect_with(&self, url: &str, token: Option<String>) -> netd_store::Result<Store> {
        if !self.tls && token.is_none() {
            return Store::connect(url).await;
        }
        let (scheme, rest) = url.split_once("://").unwrap();
        let mut config = ConsulConfig::parse(url, rest, scheme == "consul+https")?;
        if self.tls {
            config.ca_file = Some(self.ca_file());
        }
        config.token = token;
        Ok(Store::Consul(Arc::new(ConsulStore::connect(config).await?)))
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("consul.log")).unwrap();
        let [server, serf_lan, serf_wan] = self.ports;
        let mut command = Command::new(consul_bin());
        command
            .args([
                "agent",
                "-dev",
                "-bind",
                "127.0.0.1",
                "-client",
                "127.0.0.1",
            ])
            .args(["-node", "netd-test"])
            .arg(format!("-server-port={server}"))
            .arg(format!("-serf-lan-port={serf_lan}"))
            .arg(format!("-serf-wan-port={serf_wan}"))
            .args(["-dns-port=-1", "-grpc-port=-1"])
            .args(["-hcl", "session_ttl_min = \"1s\""]);
        if self.tls {
            let dir = self.dir.path().display();
            command.args([
                "-hcl",
                &format!(
                    "ca_file = \"{dir}/consul-agent-ca.pem\"\n\
                     cert_file = \"{dir}/dc1-server-consul-0.pem\"\n\
                     key_file = \"{dir}/dc1-server-consul-0-key.pem\"\n\
                     ports {{\n  http = -1\n  https = {}\n}}\n",
                    self.http_port
                ),
            ]);
        } else {
            command.arg(format!("-http-port={}", self.http_port));
        }
        if let Some(token) = self.acl_token {
            command.args([
                "-hcl",
                &format!(
                    "acl {{\n  enabled = true\n  default_policy = \"deny\"\n  \
                     tokens {{\n    master = \"{token}\"\n  }}\n}}\n"
                ),
            ]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Ok(store) = self.connect(&self.url()).await
                && store.put("/netd/v1/ready-probe", b"1").await.is_ok()
            {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("consul.log")).unwrap_or_default();
        panic!("Consul did not start; log:\n{log}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn store(&self) -> Store {
        self.connect(&self.url()).await.unwrap()
    }
}

impl Drop for Consul {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kv(key: &str, value: &[u8]) -> (String, Vec<u8>) {
    (key.to_owned(), value.to_vec())
}

async fn next_events(watch: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut events = Vec::new();
    while events.len() < n {
        events.extend(
            timeout(Duration::from_secs(10), watch.next())
                .await
                .expect("no watch event within 10 s")
                .unwrap(),
        );
    }
    assert_eq!(events.len(), n, "more events than expected: {events:?}");
    events
}

async fn next_events_at_least(watch: &mut WatchStream) -> Vec<WatchEvent> {
    timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no watch event within 10 s")
        .unwrap()
}

#[tokio::test]
async fn keys_revisions_and_the_prefix() {
    let consul = Consul::start().await;
    let store = consul.store().await;
    let first = store.put("/netd/v1/networks/a", b"1").await.unwrap();
    let second = store.put("/netd/v1/networks/a", b"2").await.unwrap();
    assert!(second > first, "revisions grow: {first} then {second}");
    let got = store.get("/netd/v1/networks/a").await.unwrap().unwrap();
    assert_eq!(
        got,
        KeyValue {
            key: "/netd/v1/networks/a".into(),
            value: b"2".to_vec(),
            create_revision: first,
            mod_revision: second,
        }
    );
    assert_eq!(store.get("/netd/v1/networks/b").await.unwrap(), None);
    store.put("/netd/v1/hosts/h1", b"h").await.unwrap();
    let listing = store.list("/netd/v1/networks/").await.unwrap();
    assert_eq!(listing.kvs.len(), 1);
    assert!(listing.revision >= second);

    // The keys live under the URL's prefix in Consul, so two prefixes are two stores.
    let other = Store::connect(&format!("{}/team-b/netd", consul.url()))
        .await
        .unwrap();
    assert!(other.list("/netd/v1/").await.unwrap().kvs.is_empty());
    other.put("/netd/v1/networks/a", b"b's").await.unwrap();
    assert_eq!(
        store
            .get("/netd/v1/networks/a")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"2"
    );
    let raw = reqwest::get(format!(
        "http://127.0.0.1:{}/v1/kv/team-b/netd/v1/networks/a?raw",
        consul.http_port
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert_eq!(raw, "b's");
}

#[tokio::test]
async fn create_all_is_all_or_nothing_and_put_if_compares() {
    let consul = Consul::start().await;
    let store = consul.store().await;
    let both = [kv("/netd/v1/vnis/1", b"a"), kv("/netd/v1/networks/a", b"a")];
    assert!(store.create_all(&both).await.unwrap());
    let overlapping = [kv("/netd/v1/vnis/2", b"b"), kv("/netd/v1/networks/a", b"b")];
    assert!(!store.create_all(&overlapping).await.unwrap());
    assert_eq!(store.get("/netd/v1/vnis/2").await.unwrap(), None);

    let claim = [kv("/netd/v1/endpoints/a/e1", b"e")];
    assert!(
        store
            .create_all_requiring(&claim, "/netd/v1/networks/a")
            .await
            .unwrap()
    );
    let orphan = [kv("/netd/v1/endpoints/gone/e1", b"e")];
    assert!(
        !store
            .create_all_requiring(&orphan, "/netd/v1/networks/gone")
            .await
            .unwrap()
    );

    let current = store.get("/netd/v1/vnis/1").await.unwrap().unwrap();
    let stale = Expect::ModRevision(current.mod_revision - 1);
    assert!(
        !store
            .put_if("/netd/v1/vnis/1", b"x", None, stale)
            .await
            .unwrap()
    );
    let fresh = Expect::ModRevision(current.mod_revision);
    assert!(
        store
            .put_if("/netd/v1/vnis/1", b"x", None, fresh)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_if("/netd/v1/vnis/1", b"y", None, Expect::Absent)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn deletes_count_and_a_claim_is_freed_only_for_its_owner() {
    let consul = Consul::start().await;
    let store = consul.store().await;
    // Keys that share a prefix with the deleted ones must survive and not be counted.
    let kvs: Vec<_> = ["e1", "e10", "e2"]
        .iter()
        .map(|id| kv(&format!("/netd/v1/endpoints/n/{id}"), b"x"))
        .collect();
    store.put_all(&kvs).await.unwrap();
    let gone = [
        "/netd/v1/endpoints/n/e1".to_string(),
        "/netd/v1/endpoints/n/e3".to_string(),
    ];
    assert_eq!(store.delete_all(&gone).await.unwrap(), 1);
    let left: Vec<_> = store
        .list("/netd/v1/endpoints/")
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(
        left,
        ["/netd/v1/endpoints/n/e10", "/netd/v1/endpoints/n/e2"]
    );

    store.put("/netd/v1/ipam/n/10.0.0.2", b"e2").await.unwrap();
    let record = ["/netd/v1/endpoints/n/e2".to_string()];
    // Not the owner: the record goes, the claim stays.
    assert_eq!(
        store
            .delete_with_claim(&record, "/netd/v1/ipam/n/10.0.0.2", b"e9")
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .get("/netd/v1/ipam/n/10.0.0.2")
            .await
            .unwrap()
            .is_some()
    );
    store
        .delete_with_claim(&[], "/netd/v1/ipam/n/10.0.0.2", b"e2")
        .await
        .unwrap();
    assert!(
        store
            .get("/netd/v1/ipam/n/10.0.0.2")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_lease_is_a_session_that_takes_its_keys_along() {
    let consul = Consul::start().await;
    let store = consul.store().await;
    let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
    let key = "/netd/v1/hosts/h1";
    assert!(
        store
            .put_if(key, b"one", Some(&lease), Expect::Absent)
            .await
            .unwrap()
    );
    for _ in 0..4 {
        sleep(Duration::from_millis(500)).await;
        store.keep_alive(&lease).await.unwrap();
    }
    assert!(store.get(key).await.unwrap().is_some(), "kept alive");

    // A restarted daemon takes its own record over from its old session: in one write, so
    // the others never see the host go.
    let page = store
        .list_page("/netd/v1/hosts/", None, None)
        .await
        .unwrap();
    let mut watch = store
        .watch("/netd/v1/hosts/", page.revision + 1)
        .await
        .unwrap();
    let next = store.grant_lease(Duration::from_secs(2)).await.unwrap();
    let old = store.get(key).await.unwrap().unwrap();
    assert!(
        store
            .put_if(
                key,
                b"two",
                Some(&next),
                Expect::ModRevision(old.mod_revision)
            )
            .await
            .unwrap()
    );
    let events = next_events(&mut watch, 1).await;
    assert!(
        matches!(&events[0], WatchEvent::Put(kv) if kv.value == b"two"),
        "{events:?}"
    );
    assert!(matches!(
        store.keep_alive(&lease).await,
        Err(StoreError::LeaseLost(_))
    ));

    // Not renewed: gone within the TTL (Consul ends a session within twice its TTL, and the
    // session gets half of the lease's).
    let stopped = Instant::now();
    let events = next_events(&mut watch, 1).await;
    assert!(
        matches!(&events[0], WatchEvent::Delete { key: k, .. } if k == key),
        "{events:?}"
    );
    assert!(
        stopped.elapsed() < Duration::from_millis(2500),
        "gone after {:?}",
        stopped.elapsed()
    );
    assert!(matches!(
        store.keep_alive(&next).await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        store.put_if(key, b"3", Some(&next), Expect::Absent).await,
        Err(StoreError::LeaseLost(_))
    ));
}

#[tokio::test]
async fn a_watch_after_a_listing_misses_nothing_and_sees_deletes() {
    let consul = Consul::start().await;
    let store = consul.store().await;
    store.put("/netd/v1/networks/a", b"1").await.unwrap();
    store.put("/netd/v1/hosts/h1", b"1").await.unwrap();
    let networks = store
        .list_page("/netd/v1/networks/", None, None)
        .await
        .unwrap();
    // Written between the listing's pages: the watch from the listing's revision sees it.
    let between = store.put("/netd/v1/hosts/h2", b"1").await.unwrap();
    let hosts = store
        .list_page("/netd/v1/hosts/", None, Some(networks.revision))
        .await
        .unwrap();
    assert_eq!(hosts.revision, networks.revision);
    assert_eq!(hosts.kvs.len(), 1, "pages are at the listing's revision");
    let mut watch = store
        .watch("/netd/v1/", networks.revision + 1)
        .await
        .unwrap();
    let events = next_events(&mut watch, 1).await;
    assert!(
        matches!(&events[0], WatchEvent::Put(kv) if kv.key == "/netd/v1/hosts/h2" && kv.mod_revision == between),
        "{events:?}"
    );
    store
        .delete_all(&["/netd/v1/networks/a".into()])
        .await
        .unwrap();
    store.put("/netd/v1/networks/b", b"2").await.unwrap();
    // One answer or two, depending on how the blocking query falls between the writes.
    let mut events = Vec::new();
    while events.len() < 2 {
        events.extend(next_events_at_least(&mut watch).await);
    }
    let keys: Vec<_> = events
        .iter()
        .map(|e| (e.key().to_string(), matches!(e, WatchEvent::Put(_))))
        .collect();
    assert!(
        keys.contains(&("/netd/v1/networks/a".into(), false)),
        "{keys:?}"
    );
    assert!(
        keys.contains(&("/netd/v1/networks/b".into(), true)),
        "{keys:?}"
    );
    let revisions: Vec<_> = events.iter().map(WatchEvent::revision).collect();
    assert!(revisions.is_sorted(), "{revisions:?}");

    // A revision the kept listing is not at cannot be paged: list again.
    assert!(matches!(
        store.list_page("/netd/v1/hosts/", None, Some(1)).await,
        Err(StoreError::Compacted(1))
    ));
}

#[tokio::test]
async fn a_dead_member_is_skipped_and_a_dead_cluster_is_unavailable() {
    let mut consul = Consul::start().await;
    let [dead] = free_ports::<1>();
    let url = format!("consul://127.0.0.1:{dead},127.0.0.1:{}", consul.http_port);
    let store = Store::connect(&url).await.unwrap();
    store.put("/netd/v1/networks/a", b"1").await.unwrap();
    assert_eq!(
        store.member_in_use().await.as_deref(),
        Some(format!("http://127.0.0.1:{}", consul.http_port).as_str())
    );
    consul.kill();
    let started = Instant::now();
    assert!(matches!(
        store.get("/netd/v1/networks/a").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        Store::connect(&url).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        Store::connect("consul://").await,
        Err(StoreError::BadUrl { .. })
    ));
    assert!(matches!(
        Store::connect("consul://127.0.0.1:8500/bad prefix").await,
        Err(StoreError::BadUrl { .. })
    ));
}

#[tokio::test]
async fn large_prefixes_are_listed_and_watched() {
    let consul = Consul::start().await;
    let store = consul.store().await;
    let record = vec![b'x'; 300];
    let kvs: Vec<_> = (0..20_000)
        .map(|i| (format!("/netd/v1/endpoints/n/e{i:05}"), record.clone()))
        .collect();
    for chunk in kvs.chunks(640) {
        store.put_all(chunk).await.unwrap();
    }
    let page = store
        .list_page("/netd/v1/endpoints/", None, None)
        .await
        .unwrap();
    assert_eq!(page.kvs.len(), 20_000);
    let mut watch = store.watch("/netd/v1/", page.revision + 1).await.unwrap();
    store
        .put("/netd/v1/endpoints/n/e00007", b"changed")
        .await
        .unwrap();
    let events = next_events(&mut watch, 1).await;
    assert!(matches!(&events[0], WatchEvent::Put(kv) if kv.value == b"changed"));
}

#[tokio::test]
async fn https_with_the_clusters_ca_and_not_without_it() {
    let consul = Consul::start_with(true, None).await;
    let store = consul.store().await;
    let revision = store.put("/netd/v1/networks/a", b"1").await.unwrap();
    assert!(revision > 0);
    let page = store.list_page("/netd/v1/", None, None).await.unwrap();
    let mut watch = store.watch("/netd/v1/", page.revision + 1).await.unwrap();
    store.put("/netd/v1/networks/b", b"2").await.unwrap();
    let events = next_events(&mut watch, 1).await;
    assert!(matches!(&events[0], WatchEvent::Put(kv) if kv.key == "/netd/v1/networks/b"));
    // Without the CA the server's certificate is not trusted: no answer, and the reason.
    let error = Store::connect(&consul.url()).await.err().expect("refused");
    assert!(
        matches!(&error, StoreError::Unavailable(e) if e.contains("certificate")),
        "{error}"
    );
    // Plain HTTP to the HTTPS port is no store either.
    assert!(
        Store::connect(&format!("consul://127.0.0.1:{}", consul.http_port))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_acl_token_from_the_environment_or_a_file_opens_a_locked_cluster() {
    const TOKEN: &str = "5f0c3e3a-netd-test-token";
    let consul = Consul::start_with(false, Some(TOKEN)).await;
    // CONSUL_HTTP_TOKEN first, else the file CONSUL_HTTP_TOKEN_FILE names (trimmed).
    let file = consul.dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let from_file = ConsulConfig::token_from(|name| {
        (name == "CONSUL_HTTP_TOKEN_FILE").then(|| file.display().to_string())
    })
    .unwrap();
    assert_eq!(from_file.as_deref(), Some(TOKEN));
    let from_env = ConsulConfig::token_from(|name| {
        (name == "CONSUL_HTTP_TOKEN").then(|| "direct".to_string())
    })
    .unwrap();
    assert_eq!(from_env.as_deref(), Some("direct"));
    assert!(
        ConsulConfig::token_from(|name| {
            (name == "CONSUL_HTTP_TOKEN_FILE").then(|| "/nonexistent/token".to_string())
        })
        .is_err()
    );

    let store = consul.connect_with(&consul.url(), from_file).await.unwrap();
    store.put("/netd/v1/networks/a", b"1").await.unwrap();
    let lease = store.grant_lease(Duration::from_secs(4)).await.unwrap();
    assert!(
        store
            .put_if("/netd/v1/hosts/h1", b"h", Some(&lease), Expect::Absent)
            .await
            .unwrap()
    );
    // Without the token: refused, and told what to set.
    let anonymous = consul.connect_with(&consul.url(), None).await.unwrap();
    let error = anonymous
        .put("/netd/v1/networks/b", b"1")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("CONSUL_HTTP_TOKEN"), "{error}");
    let error = anonymous.get("/netd/v1/networks/a").await.unwrap_err();
    assert!(error.to_string().contains("CONSUL_HTTP_TOKEN"), "{error}");
}
