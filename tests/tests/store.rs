#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! The store backends on real servers at their defaults (tests/src/stores.rs), each alone in a
//! namespace of its own: the store contract (`netd_store::conformance`) on etcd and on Consul,
//! then what is each backend's own. The embedded store's conformance run is netd-store's own
//! test (the unit tier).

use std::time::{Duration, Instant};

use netd_store::{
    Backend, Expect, KeyValue, Store, StoreConfig, StoreError, Watch, WatchEvent,
    consul::ConsulConfig, tls::TlsFiles,
};
use netd_tests::{
    pki::Pki,
    stores::{ConsulSettings, EtcdSettings, StoreKind, StoreLab, StoreSetup},
    wait_until_async,
};

fn kv(key: &str, value: &[u8]) -> (String, Vec<u8>) {
    (key.to_owned(), value.to_vec())
}

/// A put, a listing, and a watch from it that sees the next put.
async fn a_put_is_watched(store: &Store) {
    store.put("/netd/v1/networks/a", b"1").await.unwrap();
    let page = store.list_page("/netd/v1/", None, None).await.unwrap();
    let mut watch = store.watch("/netd/v1/", page.revision + 1).await.unwrap();
    store.put("/netd/v1/networks/b", b"2").await.unwrap();
    let events = netd_tests::wait::watch_events(&mut watch, 1).await;
    assert!(matches!(&events[0], WatchEvent::Put(kv) if kv.key == "/netd/v1/networks/b"));
}

/// A client of `url` with `files` and none of the test process's environment.
async fn connect_with(url: &str, files: &TlsFiles) -> netd_store::Result<Store> {
    StoreConfig::new(url, files, |_| None)?.connect().await
}

/// On a store that requires client certificates: a client with the lab's files writes, reads,
/// watches and holds a lease; without a client certificate, with one from another CA, or
/// trusting another CA, it gets the TLS failure (not an outage), saying what to do, at once.
async fn client_certificates_are_required(lab: &StoreLab) {
    let files = lab.client_files();
    let store = connect_with(&lab.url, &files).await.unwrap();
    a_put_is_watched(&store).await;
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    store.keep_alive(&lease.id).await.unwrap();

    let other = Pki::new(&lab.dir.0.join("other-ca"), "another CA").unwrap();
    let stranger = other.client("stranger").unwrap();
    let ca = files.ca.as_ref().map(|f| f.path.clone());
    let refused_client = [
        (
            "no client certificate",
            TlsFiles::from_flags(ca.clone(), None, None),
        ),
        (
            "a client certificate from another CA",
            TlsFiles::from_flags(ca, Some(stranger.cert.clone()), Some(stranger.key.clone())),
        ),
    ];
    let untrusted = TlsFiles {
        ca: TlsFiles::from_flags(Some(other.ca.clone()), None, None).ca,
        ..files
    };
    for (what, files, expected) in refused_client
        .into_iter()
        .map(|(what, files)| (what, files, "the store refused this client (TLS alert"))
        .chain([(
            "another CA trusted",
            untrusted,
            "the store's certificate is not signed by a CA this client trusts",
        )])
    {
        let started = Instant::now();
        // Consul's client asks for the leader when it connects; etcd's on its first request.
        let error = match connect_with(&lab.url, &files).await {
            Ok(store) => store.get("/netd/v1/networks/a").await.map(drop),
            Err(e) => Err(e),
        }
        .expect_err(what);
        eprintln!("{what}: {error} (after {:?})", started.elapsed());
        assert!(
            matches!(&error, StoreError::Tls(e) if e.contains(expected)),
            "{what}: {error:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            started.elapsed()
        );
    }
}

mod etcd {
    use super::*;

    fn lab() -> StoreLab {
        StoreLab::start("se", StoreKind::Etcd).expect("etcd starts")
    }

    fn client_url(lab: &StoreLab) -> String {
        lab.url.replace("etcd://", "http://")
    }

    /// A plain etcd-client connection, for what the store does not do (compaction).
    async fn raw_client(lab: &StoreLab) -> etcd_client::Client {
        etcd_client::Client::connect([client_url(lab)], None)
            .await
            .unwrap()
    }

    #[test]
    fn conforms_to_the_store_contract() {
        lab().block_on(async |lab| {
            let store = Store::connect(&lab.url).await.unwrap();
            let mut client = raw_client(lab).await;
            let compact = async |revision| {
                client.compact(revision, None).await.unwrap();
            };
            netd_store::conformance::run_all(&store, "/netd/v1/conformance/", compact).await;
        });
    }

    /// etcd keeps history: a watch delivers every revision's change, also two of one key.
    #[test]
    fn a_watch_delivers_every_change() {
        lab().block_on(async |lab| {
            let store = Store::connect(&lab.url).await.unwrap();
            store.put("/w/before", b"0").await.unwrap();
            let listing = store.list("/w/").await.unwrap();
            let r1 = store.put("/w/a", b"1").await.unwrap();
            let mut watch = store.watch("/w/", listing.revision + 1).await.unwrap();
            let r2 = store.put("/w/a", b"2").await.unwrap();
            let r3 = store.put("/w/b", b"3").await.unwrap();
            store
                .delete_all(&["/w/a".into(), "/w/before".into()])
                .await
                .unwrap();
            let events = netd_tests::wait::watch_events(&mut watch, 5).await;
            let r4 = events[3].revision();
            assert!(r4 > r3);
            let put = |key: &str, value: &[u8], create_revision, mod_revision| {
                WatchEvent::Put(KeyValue {
                    key: key.into(),
                    value: value.to_vec(),
                    create_revision,
                    mod_revision,
                })
            };
            let delete = |key: &str| WatchEvent::Delete {
                key: key.into(),
                mod_revision: r4,
            };
            assert_eq!(
                events,
                [
                    put("/w/a", b"1", r1, r1),
                    put("/w/a", b"2", r1, r2),
                    put("/w/b", b"3", r3, r3),
                    delete("/w/a"),
                    delete("/w/before"),
                ]
            );
        });
    }

    /// With etcd killed, every call fails as unavailable within its deadline (also from a client
    /// made while it is down); the same client works again once etcd is back.
    #[test]
    fn a_dead_etcd_is_unavailable_and_its_return_is_noticed() {
        lab().block_on(async |lab| {
            let store = Store::connect(&lab.url).await.unwrap();
            store.put("/x", b"1").await.unwrap();
            let mut watch = store.watch("/", 1).await.unwrap();
            lab.server.as_mut().unwrap().stop();

            let unavailable = |what: &str, result: Result<netd_store::Result<()>, _>| {
                let result = result.unwrap_or_else(|_| panic!("{what} hung with etcd down"));
                assert!(
                    matches!(result, Err(StoreError::Unavailable(_))),
                    "{what}: {result:?}"
                );
            };
            let bound = Duration::from_secs(12);
            let started = Instant::now();
            unavailable(
                "get",
                tokio::time::timeout(bound, store.get("/x"))
                    .await
                    .map(|r| r.map(drop)),
            );
            unavailable(
                "watch",
                tokio::time::timeout(bound, watch.next())
                    .await
                    .map(|r| r.map(drop)),
            );
            unavailable(
                "put",
                tokio::time::timeout(bound, store.put("/y", b""))
                    .await
                    .map(|r| r.map(drop)),
            );
            unavailable(
                "a new watch",
                tokio::time::timeout(bound, store.watch("/", 1))
                    .await
                    .map(|r| r.map(drop)),
            );
            eprintln!("etcd down noticed in {:?}", started.elapsed());
            // Connecting is lazy: a client made now fails on use, in bounded time too.
            let late = tokio::time::timeout(bound, Store::connect(&lab.url))
                .await
                .expect("connect hung with etcd down")
                .unwrap();
            unavailable(
                "get from a new client",
                tokio::time::timeout(bound, late.get("/x"))
                    .await
                    .map(|r| r.map(drop)),
            );

            lab.server.as_mut().unwrap().restart().unwrap();
            let got = wait_until_async(
                Duration::from_secs(15),
                async || -> anyhow::Result<Option<KeyValue>> { Ok(store.get("/x").await?) },
                "the client to work again",
            )
            .await
            .unwrap();
            assert_eq!(got.unwrap().value, b"1");
        });
    }

    /// A peer that accepts connections and never answers (a hung etcd): only timeouts end the
    /// calls, and they do.
    #[test]
    fn a_silent_peer_is_unavailable_in_bounded_time() {
        lab().block_on(async |_| {
            assert!(matches!(
                Store::connect("etcd://").await,
                Err(StoreError::BadUrl { .. })
            ));
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            // The backend itself: `Store` tries a failed read three times.
            let store = netd_store::etcd::EtcdStore::connect(&[format!(
                "http://{}",
                listener.local_addr().unwrap()
            )])
            .await
            .unwrap();
            let bound = Duration::from_secs(12);
            let started = Instant::now();
            let get = tokio::time::timeout(bound, store.get("/x")).await;
            assert!(
                matches!(get, Ok(Err(StoreError::Unavailable(_)))),
                "{get:?}"
            );
            let watch = tokio::time::timeout(bound, store.watch("/", 1)).await;
            assert!(
                matches!(watch, Ok(Err(StoreError::Unavailable(_)))),
                "{:?}",
                watch.map(|w| w.map(drop))
            );
            let renewal =
                tokio::time::timeout(bound, store.keep_alive(&netd_store::LeaseId::from(1))).await;
            assert!(
                matches!(renewal, Ok(Err(StoreError::Unavailable(_)))),
                "{renewal:?}"
            );
            eprintln!("silent peer: 3 calls failed in {:?}", started.elapsed());
        });
    }

    /// More records than one page and than one 4 MiB gRPC message: the listing is complete, in
    /// key order, at one revision; a page at a compacted revision says so.
    #[test]
    fn a_prefix_past_4_mib_is_listed_in_pages() {
        lab().block_on(async |lab| {
            let store = netd_store::etcd::EtcdStore::connect(&[client_url(lab)])
                .await
                .unwrap();
            // 20,000 values of 300 bytes: 6 MB, above gRPC's 4 MiB default message limit.
            let filler = vec![b'x'; 300];
            let keys: Vec<String> = (0..20_000).map(|i| format!("/big/{i:06}")).collect();
            for chunk in keys.chunks(128) {
                let kvs: Vec<_> = chunk.iter().map(|k| (k.clone(), filler.clone())).collect();
                store.put_all(&kvs).await.unwrap();
            }
            let listing = store.list("/big/").await.unwrap();
            let listed: Vec<&str> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(listed.len(), keys.len());
            assert!(listed.iter().zip(&keys).all(|(a, b)| *a == b.as_str()));

            let first = store.list_page_of("/big/", None, None, 100).await.unwrap();
            assert!(first.more);
            store.put("/big/zzz", b"later").await.unwrap();
            let after = first.kvs.last().map(|kv| kv.key.clone());
            let rest = store
                .list_page_of("/big/", after.as_deref(), Some(first.revision), 100_000)
                .await
                .unwrap();
            assert_eq!(
                first.kvs.len() + rest.kvs.len(),
                keys.len(),
                "a page at the first revision does not see the later put"
            );
            let now = store.put("/big/zzz", b"again").await.unwrap();
            raw_client(lab).await.compact(now, None).await.unwrap();
            let old = store
                .list_page_of("/big/", after.as_deref(), Some(first.revision), 10)
                .await;
            assert!(matches!(old, Err(StoreError::Compacted(_))), "{old:?}");
        });
    }

    /// `etcd+https://` to an etcd started as its docs start one with client certificates
    /// (`--client-cert-auth --trusted-ca-file --cert-file --key-file`). The subject: those
    /// settings.
    #[test]
    fn an_etcd_with_client_cert_auth_takes_the_clients_its_ca_signed() {
        let setup = StoreSetup {
            etcd: EtcdSettings {
                tls: true,
                client_cert_auth: true,
            },
            ..StoreSetup::from(StoreKind::Etcd)
        };
        let mut lab = StoreLab::start("st", setup).expect("etcd starts");
        assert!(lab.url.starts_with("etcd+https://"), "{}", lab.url);
        lab.block_on(async |lab| client_certificates_are_required(lab).await);
    }

    /// What etcd refuses is refused, not an outage: a transaction over its `--max-txn-ops`
    /// (128), a request over its `--max-request-bytes` (1.5 MiB), a key given twice. A lease
    /// shorter than etcd's minimum is raised, and the lease says so.
    #[test]
    fn refusals_are_refused_and_a_short_lease_is_raised() {
        lab().block_on(async |lab| {
            let store = Store::connect(&lab.url).await.unwrap();
            let many: Vec<_> = (0..129).map(|i| kv(&format!("/r/{i}"), b"x")).collect();
            let refused = |result: netd_store::Result<bool>, what: &str| match result {
                Err(StoreError::Refused { request, reason }) => {
                    eprintln!("{what}: store refused {request}: {reason}");
                }
                other => panic!("{what}: {other:?}"),
            };
            refused(store.create_all(&many).await, "129 operations");
            refused(
                store
                    .create_all(&[kv("/r/big", &vec![b'x'; 2 << 20])])
                    .await,
                "2 MiB",
            );
            refused(
                store
                    .create_all(&[kv("/r/a", b"1"), kv("/r/a", b"2")])
                    .await,
                "a key twice",
            );
            assert!(store.list("/r/").await.unwrap().kvs.is_empty());

            let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
            // 1.5 × etcd's default election timeout (1 s), in whole seconds.
            assert_eq!(lease.ttl, Duration::from_secs(2), "{lease:?}");
        });
    }
}

mod consul {
    use super::*;

    fn lab(setup: impl Into<StoreSetup>) -> StoreLab {
        StoreLab::start("sc", setup).expect("Consul starts")
    }

    /// A client for the lab's server with its files and token (`Store::connect` takes those
    /// from the environment, which a test cannot set for itself alone).
    async fn connect(
        lab: &StoreLab,
        url: &str,
        token: Option<String>,
    ) -> netd_store::Result<Store> {
        let env = |name: &str| token.clone().filter(|_| name == "CONSUL_HTTP_TOKEN");
        StoreConfig::new(url, &lab.client_files(), env)?
            .connect()
            .await
    }

    #[test]
    fn conforms_to_the_store_contract() {
        lab(StoreKind::Consul).block_on(async |lab| {
            let store = Store::connect(&lab.url).await.unwrap();
            // Consul keeps no history: any write after a revision makes a watch from it
            // compacted, and the suite's writes already did.
            let compact = async |_revision| {};
            netd_store::conformance::run_all(&store, "/netd/v1/conformance/", compact).await;
        });
    }

    /// netd's keys live under the URL's prefix in Consul (`netd/` by default): two prefixes are
    /// two stores.
    #[test]
    fn keys_live_under_the_urls_prefix() {
        lab(StoreKind::Consul).block_on(async |lab| {
            let store = Store::connect(&lab.url).await.unwrap();
            store.put("/netd/v1/networks/a", b"mine").await.unwrap();
            let other = Store::connect(&format!("{}/team-b/netd", lab.url))
                .await
                .unwrap();
            assert!(other.list("/netd/v1/").await.unwrap().kvs.is_empty());
            other.put("/netd/v1/networks/a", b"b's").await.unwrap();
            let mine = store.get("/netd/v1/networks/a").await.unwrap().unwrap();
            assert_eq!(mine.value, b"mine");
            let address = lab.consul().unwrap().address();
            let raw = |path: &str| {
                lab.netns
                    .exec(
                        "curl",
                        &["-sf", &format!("http://{address}/v1/kv/{path}?raw")],
                    )
                    .unwrap()
            };
            assert_eq!(raw("team-b/netd/v1/networks/a"), "b's");
            assert_eq!(raw("netd/v1/networks/a"), "mine");
        });
    }

    /// A member that cannot be reached is skipped; with no member left, requests and new
    /// connections are unavailable, within a bound.
    #[test]
    fn a_dead_member_is_skipped_and_a_dead_cluster_is_unavailable() {
        lab(StoreKind::Consul).block_on(async |lab| {
            let address = lab.consul().unwrap().address();
            // Nothing listens there: a dead member.
            let url = format!("consul://127.0.0.2:8500,{address}");
            let store = Store::connect(&url).await.unwrap();
            store.put("/netd/v1/networks/a", b"1").await.unwrap();
            assert_eq!(
                store.member_in_use().await.as_deref(),
                Some(format!("http://{address}").as_str())
            );
            lab.server.as_mut().unwrap().stop();
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
        });
    }

    /// Consul's listing is one answer, its watch a blocking query on the whole tree: both work
    /// at 20,000 records.
    #[test]
    fn a_large_prefix_is_listed_and_watched() {
        lab(StoreKind::Consul).block_on(async |lab| {
            let store = Store::connect(&lab.url).await.unwrap();
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
            let events = netd_tests::wait::watch_events(&mut watch, 1).await;
            assert!(matches!(&events[0], WatchEvent::Put(kv) if kv.value == b"changed"));
        });
    }

    /// `consul+https://` with the cluster's CA; without it the server is not trusted, and plain
    /// HTTP to the HTTPS port is no store either. The subject: a server serving HTTPS only.
    #[test]
    fn https_with_the_clusters_ca_and_not_without_it() {
        let setup = StoreSetup {
            kind: StoreKind::Consul,
            consul: ConsulSettings {
                tls: true,
                ..ConsulSettings::default()
            },
            etcd: EtcdSettings::default(),
        };
        lab(setup).block_on(async |lab| {
            let store = connect(lab, &lab.url, None).await.unwrap();
            a_put_is_watched(&store).await;
            // A TLS failure, not an outage: asking again fails the same way.
            let error = Store::connect(&lab.url).await.err().expect("not trusted");
            assert!(
                matches!(&error, StoreError::Tls(e) if e.contains("give --store-cacert")),
                "{error}"
            );
            let plain = lab.url.replace("consul+https://", "consul://");
            let error = Store::connect(&plain).await.err().expect("plain HTTP");
            assert!(matches!(error, StoreError::Refused { .. }), "{error}");
        });
    }

    /// `consul+https://` to a Consul that requires client certificates (`verify_incoming`),
    /// made as its docs make them (`consul tls cert create -client`). The subject: that
    /// setting.
    #[test]
    fn a_consul_with_verify_incoming_takes_the_clients_its_ca_signed() {
        let setup = StoreSetup {
            consul: ConsulSettings {
                tls: true,
                verify_incoming: true,
                ..ConsulSettings::default()
            },
            ..StoreSetup::from(StoreKind::Consul)
        };
        lab(setup).block_on(async |lab| client_certificates_are_required(lab).await);
    }

    /// A deny-by-default cluster opens with the token from `CONSUL_HTTP_TOKEN` or the file
    /// `CONSUL_HTTP_TOKEN_FILE` names; without one, requests are refused (not an outage), and
    /// the error says what to set. The subject: ACLs on.
    #[test]
    fn an_acl_token_opens_a_locked_cluster() {
        const TOKEN: &str = "5f0c3e3a-netd-test-token";
        let setup = StoreSetup {
            kind: StoreKind::Consul,
            consul: ConsulSettings {
                acl_master_token: Some(TOKEN.into()),
                ..ConsulSettings::default()
            },
            etcd: EtcdSettings::default(),
        };
        lab(setup).block_on(async |lab| {
            let file = lab.dir.0.join("token");
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

            let store = connect(lab, &lab.url, from_file).await.unwrap();
            store.put("/netd/v1/networks/a", b"1").await.unwrap();
            let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
            assert!(
                store
                    .put_if("/netd/v1/hosts/h1", b"h", Some(&lease.id), Expect::Absent)
                    .await
                    .unwrap()
            );
            let anonymous = connect(lab, &lab.url, None).await.unwrap();
            for error in [
                anonymous
                    .put("/netd/v1/networks/b", b"1")
                    .await
                    .unwrap_err(),
                anonymous.get("/netd/v1/networks/a").await.unwrap_err(),
                anonymous
                    .grant_lease(Duration::from_secs(30))
                    .await
                    .unwrap_err(),
            ] {
                assert!(matches!(error, StoreError::Refused { .. }), "{error:?}");
                assert!(error.to_string().contains("CONSUL_HTTP_TOKEN"), "{error}");
            }
        });
    }

    /// A Consul server at its defaults takes sessions of 10 s to 24 h. A lease that needs
    /// shorter ones gets 10 s sessions (gone within 20 s), at once for the next lease too; one
    /// that needs longer ones is refused, and so is a value over Consul's 512 KiB: refusals,
    /// not outages.
    #[test]
    fn a_short_lease_is_raised_to_the_servers_minimum_and_refusals_are_refused() {
        lab(StoreKind::Consul).block_on(async |lab| {
            let store = Store::connect(&lab.url).await.unwrap();
            // The daemon's default --lease-ttl: sessions of 7 s asked for.
            for _ in 0..2 {
                let lease = store.grant_lease(Duration::from_secs(15)).await.unwrap();
                assert_eq!(lease.ttl, Duration::from_secs(20), "{lease:?}");
                store.keep_alive(&lease.id).await.unwrap();
                store.revoke(&lease.id).await.unwrap();
            }
            let long = store.grant_lease(Duration::from_secs(200_000)).await;
            match long {
                Err(StoreError::Refused { request, reason }) => {
                    assert_eq!(request, "a session create");
                    assert!(reason.contains("Invalid Session TTL"), "{reason}");
                }
                other => panic!("a 100,000 s session: {other:?}"),
            }
            let big = store.put("/netd/v1/big", &vec![b'x'; 600 << 10]).await;
            assert!(matches!(big, Err(StoreError::Refused { .. })), "{big:?}");
        });
    }
}
