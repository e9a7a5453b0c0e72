#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! Per-host confinement (docs/stores.md, "Confining each host"): the store's own access control
//! set up as `netd_tests::access` sets it up (the recipe of the docs), on a real etcd with
//! `--client-cert-auth` and RBAC, and a real Consul with ACLs denying by default. Each host's
//! identity (etcd: its client certificate; Consul: its token) writes its record and what is
//! under its own prefix, reads everything, and is refused everything else, in one line.
//!
//! The daemon tests (`two_confined_daemons_...`, on each store) failed before the per-host key
//! layout: a confined daemon registered and created the network, then was refused its first
//! endpoint under `/netd/v1/endpoints/`.
//! `etcd::reads_outside_a_hosts_permission_are_refused_not_an_outage` failed while netd's etcd
//! backend took a watch etcd cancels for a permission as an outage.

use std::time::{Duration, Instant};

use netd_store::{Backend, Expect, Lease, Store, StoreConfig, StoreError, tls::TlsFiles};
use netd_tests::{
    access::{self, Grants},
    cluster::{Cluster, SEED_NETWORK, StoreServer},
    stores::{ConsulSettings, EtcdSettings, StoreKind, StoreLab, StoreSetup},
};

/// The identities of the store tests: hosts h1, h2 and h10 (h1 may create networks) and an
/// admin.
fn grants() -> Grants {
    Grants::new(&["h1", "h2", "h10"], &["h1"], &["admin"])
}

fn kv(key: &str, value: &[u8]) -> (String, Vec<u8>) {
    (key.to_owned(), value.to_vec())
}

/// A client of `url` with `files` and, for Consul, `token`, and nothing from the test
/// process's environment.
async fn connect(url: &str, files: &TlsFiles, token: Option<&str>) -> Store {
    let token = token.map(str::to_owned);
    let env = move |name: &str| token.clone().filter(|_| name == "CONSUL_HTTP_TOKEN");
    StoreConfig::new(url, files, env)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `op` refused as the daemon and the CLI must see a denial: a refusal (not an outage, so not
/// retried), at once, on one line that says it is a permission the store denied.
async fn denied<T: std::fmt::Debug>(
    what: &str,
    op: impl std::future::Future<Output = netd_store::Result<T>>,
) {
    let started = Instant::now();
    let error = match op.await {
        Ok(value) => panic!("{what}: allowed ({value:?})"),
        Err(error) => error,
    };
    let took = started.elapsed();
    eprintln!("{what}: {error} (after {took:?})");
    assert!(
        matches!(error, StoreError::Refused { .. }),
        "{what}: {error:?}"
    );
    let line = error.to_string();
    assert!(!line.contains('\n'), "{what}: more than one line: {line:?}");
    assert!(
        line.to_lowercase().contains("permission denied"),
        "{what}: {line}"
    );
    assert!(took < Duration::from_secs(3), "{what}: took {took:?}");
}

const H1_RECORD: &str = "/netd/v1/hosts/h1";
const H1_ENDPOINT: &str = "/netd/v1/hosts/h1/endpoints/n/e1";
const H1_CLAIM: &str = "/netd/v1/hosts/h1/claims/n/10.0.0.5";
const H2_RECORD: &str = "/netd/v1/hosts/h2";
const H2_ENDPOINT: &str = "/netd/v1/hosts/h2/endpoints/n/e2";
const H2_CLAIM: &str = "/netd/v1/hosts/h2/claims/n/10.0.0.6";

/// What every backend's recipe gives, through netd's store: host h1 (which may create
/// networks) and host h2 each write their own record under a lease and their own endpoints and
/// claims; h1 reads, lists and watches everything, h2's writes included; every write of h1
/// outside its own keys is refused (h2's and h10's keys, a key that only starts like its own,
/// the old layout's keys), also inside a transaction with keys of its own (nothing written); h2
/// may not create networks; the admin removes h2's keys. Returns both leases, for what each
/// backend does with another host's lease.
async fn each_host_writes_only_its_own(h1: &Store, h2: &Store, admin: &Store) -> (Lease, Lease) {
    // Positive controls: h1's record under its lease, renewed; its endpoint and claim created
    // together, released as the daemon releases them, and written again.
    let lease1 = h1.grant_lease(Duration::from_secs(30)).await.unwrap();
    assert!(
        h1.put_if(H1_RECORD, b"h1", Some(&lease1.id), Expect::Absent)
            .await
            .unwrap()
    );
    h1.keep_alive(&lease1.id).await.unwrap();
    assert!(
        h1.create_all(&[kv(H1_ENDPOINT, b"e1"), kv(H1_CLAIM, b"e1")])
            .await
            .unwrap()
    );
    assert_eq!(
        h1.delete_with_claim(&[H1_ENDPOINT.into()], H1_CLAIM, b"e1")
            .await
            .unwrap(),
        2
    );
    assert!(
        h1.create_all(&[kv(H1_ENDPOINT, b"e1"), kv(H1_CLAIM, b"e1")])
            .await
            .unwrap()
    );

    // h1 watches the whole tree while h2 writes its own keys.
    let listing = h1.list("/netd/v1/").await.unwrap();
    let mut watch = h1.watch("/netd/v1/", listing.revision + 1).await.unwrap();
    let lease2 = h2.grant_lease(Duration::from_secs(30)).await.unwrap();
    assert!(
        h2.put_if(H2_RECORD, b"h2", Some(&lease2.id), Expect::Absent)
            .await
            .unwrap()
    );
    assert!(
        h2.create_all(&[kv(H2_ENDPOINT, b"e2"), kv(H2_CLAIM, b"e2")])
            .await
            .unwrap()
    );
    let mut seen: Vec<String> = netd_tests::wait::watch_events(&mut watch, 3)
        .await
        .iter()
        .map(|e| e.key().to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, [H2_RECORD, H2_CLAIM, H2_ENDPOINT]);
    let listed: Vec<String> = h1
        .list("/netd/v1/")
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    for key in [
        H1_RECORD,
        H1_ENDPOINT,
        H1_CLAIM,
        H2_RECORD,
        H2_ENDPOINT,
        H2_CLAIM,
    ] {
        assert!(listed.iter().any(|k| k == key), "{key} not in {listed:?}");
    }
    assert_eq!(h1.get(H2_ENDPOINT).await.unwrap().unwrap().value, b"e2");

    // Every write outside h1's own keys is refused.
    for key in [
        H2_RECORD,
        H2_ENDPOINT,
        "/netd/v1/hosts/h2/claims/n/10.0.0.7",
        "/netd/v1/hosts/h10",
        "/netd/v1/hosts/h10/x",
        // Starts like h1's record, and is not under h1's prefix.
        "/netd/v1/hosts/h1x",
        // The old layout, only read for migration.
        "/netd/v1/endpoints/n/x",
        "/netd/v1/ipam/n/10.0.0.7",
        "/netd/v1/elsewhere",
    ] {
        denied(&format!("h1 puts {key}"), h1.put(key, b"x")).await;
    }
    denied(
        "h1 creates a claim under h2's prefix",
        h1.put_if(
            "/netd/v1/hosts/h2/claims/n/10.0.0.8",
            b"x",
            None,
            Expect::Absent,
        ),
    )
    .await;
    let h2_record = h1.get(H2_RECORD).await.unwrap().unwrap();
    denied(
        "h1 takes h2's record over under its own lease",
        h1.put_if(
            H2_RECORD,
            b"h1",
            Some(&lease1.id),
            Expect::ModRevision(h2_record.mod_revision),
        ),
    )
    .await;
    denied(
        "h1 puts h2's record under its own lease",
        h1.put_with_lease(H2_RECORD, b"h1", &lease1.id),
    )
    .await;
    denied(
        "h1 deletes h2's endpoint",
        h1.delete_all(&[H2_ENDPOINT.into()]),
    )
    .await;
    denied("h1 deletes h2's record", h1.delete_all(&[H2_RECORD.into()])).await;
    denied(
        "h1 releases h2's claim with an endpoint of its own",
        h1.delete_with_claim(&[H1_ENDPOINT.into()], H2_CLAIM, b"e2"),
    )
    .await;
    let own = "/netd/v1/hosts/h1/claims/n/10.0.0.9";
    denied(
        "h1 creates a claim of its own and one under h2's prefix at once",
        h1.create_all(&[
            kv(own, b"x"),
            kv("/netd/v1/hosts/h2/claims/n/10.0.0.9", b"x"),
        ]),
    )
    .await;
    denied(
        "h1 writes a key of its own and one of h10's at once",
        h1.put_all(&[kv(own, b"x"), kv("/netd/v1/hosts/h10/y", b"x")]),
    )
    .await;
    // Transactions are whole: nothing of the refused ones was written.
    assert!(h1.get(own).await.unwrap().is_none());
    assert!(h1.get(H1_ENDPOINT).await.unwrap().is_some());
    for (key, value) in [
        (H2_RECORD, &b"h2"[..]),
        (H2_ENDPOINT, b"e2"),
        (H2_CLAIM, b"e2"),
    ] {
        assert_eq!(h1.get(key).await.unwrap().unwrap().value, value, "{key}");
    }

    // Networks: h1 holds the networks role (policy), h2 does not.
    h1.put("/netd/v1/networks/n", b"n").await.unwrap();
    assert!(
        h1.create_all(&[kv("/netd/v1/vnis/4242", b"n")])
            .await
            .unwrap()
    );
    denied("h2 creates a network", h2.put("/netd/v1/networks/m", b"m")).await;
    denied(
        "h2 claims a VNI",
        h2.create_all(&[kv("/netd/v1/vnis/4243", b"m")]),
    )
    .await;

    // The admin removes what a host left (`netd host rm`) and a network (`network rm`).
    assert_eq!(
        admin
            .delete_all(&[H2_ENDPOINT.into(), H2_CLAIM.into()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        admin
            .delete_all(&["/netd/v1/networks/n".into(), "/netd/v1/vnis/4242".into()])
            .await
            .unwrap(),
        2
    );
    (lease1, lease2)
}

/// The identities of the daemon tests: hosts h1 (which may create networks) and h2, and an
/// admin.
fn daemon_grants() -> Grants {
    Grants::new(&["h1", "h2"], &["h1"], &["admin"])
}

/// What a store client needs to be one identity: TLS files (etcd: its certificate), a token
/// (Consul).
struct Identity {
    files: TlsFiles,
    token: Option<String>,
}

/// Runs `work` with a client of the cluster's store as `who`, from the switch's namespace,
/// where the store listens.
fn store_as<T: Send + 'static, Fut>(
    c: &Cluster,
    who: Identity,
    work: impl FnOnce(Store) -> Fut + Send + 'static,
) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let url = c.store_url.clone();
    access::run_in(&c.switch.path(), move || async move {
        let token = who.token;
        let env = move |name: &str| token.clone().filter(|_| name == "CONSUL_HTTP_TOKEN");
        let store = StoreConfig::new(&url, &who.files, env)?.connect().await?;
        work(store).await
    })
}

/// Two daemons started in `c`, each with only its own identity (h1's also holds the networks
/// role): both register, a network from h1, an endpoint on each host, a ping across; then h1's
/// identity cannot delete h2's endpoint record, which the admin's sees still there.
fn two_confined_daemons(c: &mut Cluster, identity: impl Fn(&Cluster, &str) -> Identity) {
    c.wait_registered(0, 2).unwrap();
    c.wait_registered(1, 2).unwrap();
    // The seed's network, from host h1, which holds the networks role.
    c.netd(0, SEED_NETWORK).unwrap();
    netd_tests::wait_until(
        Duration::from_secs(5),
        || {
            let nets: Vec<netd::api::Network> = c.netd_as(1, &["network", "ls"]).ok()?;
            (nets.len() == 1).then_some(())
        },
        "host h2 to list the network",
    )
    .unwrap();
    let n1 = c.container().unwrap();
    let n2 = c.container().unwrap();
    let mut ips = Vec::new();
    for (host, ns, name) in [(0, n1, "a"), (1, n2, "b")] {
        let added = c
            .endpoint_add(host, "mynet", ns, name, &[])
            .unwrap_or_else(|e| panic!("endpoint {name} on h{}: {e:#}", host + 1));
        ips.push(added.ip.to_string());
    }
    netd_tests::wait_until(
        Duration::from_secs(5),
        || {
            c.containers[n1]
                .exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", &ips[1]])
                .ok()
        },
        "a ping from h1's container to h2's",
    )
    .unwrap();

    let h2_keys = store_as(c, identity(c, "admin"), |store| async move {
        Ok(store.list("/netd/v1/hosts/h2/").await?.kvs)
    })
    .unwrap();
    let endpoint = h2_keys
        .iter()
        .find(|kv| kv.key.contains("/endpoints/"))
        .unwrap_or_else(|| panic!("no endpoint of h2 under its prefix: {h2_keys:?}"))
        .key
        .clone();
    let key = endpoint.clone();
    store_as(c, identity(c, "h1"), |store| async move {
        denied("h1 deletes h2's endpoint", store.delete_all(&[key])).await;
        Ok(())
    })
    .unwrap();
    let still = store_as(c, identity(c, "admin"), |store| async move {
        Ok(store.get(&endpoint).await?)
    })
    .unwrap();
    assert!(still.is_some(), "h2's endpoint record is gone");
}

mod etcd {
    use super::*;
    use netd_tests::{access::run_in, stores::Etcd};

    /// An etcd started as its docs start one with client certificates (`--cert-file
    /// --key-file --client-cert-auth --trusted-ca-file`): the subject, with auth enabled by
    /// the recipe. Everything else at etcd's defaults.
    fn setup() -> StoreSetup {
        StoreSetup {
            etcd: EtcdSettings {
                tls: true,
                client_cert_auth: true,
            },
            ..StoreSetup::from(StoreKind::Etcd)
        }
    }

    /// The recipe applied to `etcd` with a certificate whose common name is `root`.
    async fn confine(etcd: &Etcd, grants: &Grants) {
        let root = etcd.client_identity("root").unwrap().unwrap();
        let mut client = access::etcd::connect_as(&etcd.client_url(), &root)
            .await
            .unwrap();
        access::etcd::confine(&mut client, grants).await.unwrap();
    }

    /// A store client whose certificate names `name`.
    async fn as_user(lab: &StoreLab, name: &str) -> Store {
        let files = lab.etcd().unwrap().client_identity(name).unwrap().unwrap();
        connect(&lab.url, &files, None).await
    }

    /// What every backend's recipe gives (above), then etcd's own: a host may not revoke
    /// another's lease (etcd asks for write access to the lease's keys), and a certificate
    /// whose common name is no user reads nothing. What etcd 3.4 does not check: who renews a
    /// lease (any user who knows its ID keeps another host's record alive).
    #[test]
    fn each_host_writes_only_under_its_own_prefix() {
        let mut lab = StoreLab::start("cfe", setup()).expect("etcd starts");
        lab.block_on(async |lab| {
            confine(lab.etcd().unwrap(), &grants()).await;
            let (h1, h2, admin) = (
                as_user(lab, "h1").await,
                as_user(lab, "h2").await,
                as_user(lab, "admin").await,
            );
            let (_, lease2) = each_host_writes_only_its_own(&h1, &h2, &admin).await;

            denied("h1 revokes h2's lease", h1.revoke(&lease2.id)).await;
            assert!(h1.get(H2_RECORD).await.unwrap().is_some());
            // Not confined by etcd 3.4: a keep-alive is not checked against the lease's keys.
            h1.keep_alive(&lease2.id).await.unwrap();

            let stranger = as_user(lab, "h3").await;
            denied("a certificate of no user reads", stranger.get(H1_RECORD)).await;
            denied(
                "a certificate of no user writes",
                stranger.put(H1_RECORD, b"x"),
            )
            .await;
        });
    }

    /// A host reads only what its role lets it: a listing outside `/netd/v1/` is refused, and
    /// so must a watch be (etcd cancels it with "permission denied"), not taken for an outage
    /// that the daemon would wait out forever.
    #[test]
    fn reads_outside_a_hosts_permission_are_refused_not_an_outage() {
        let mut lab = StoreLab::start("cfw", setup()).expect("etcd starts");
        lab.block_on(async |lab| {
            confine(lab.etcd().unwrap(), &grants()).await;
            let h1 = as_user(lab, "h1").await;
            denied("h1 lists /netd/", h1.list("/netd/")).await;
            denied("h1 watches /netd/", async {
                h1.watch("/netd/", 1).await.map(drop)
            })
            .await;
        });
    }

    /// Two daemons, each with only its own certificate ([`two_confined_daemons`]).
    #[test]
    fn two_confined_daemons_reach_each_other_and_not_each_others_keys() {
        let mut c = Cluster::new("cfd", 0, setup(), 10).expect("cluster");
        let etcd = c.store_server.as_ref().and_then(StoreServer::etcd).unwrap();
        let root = etcd.client_identity("root").unwrap().unwrap();
        let endpoint = etcd.client_url();
        run_in(&c.switch.path(), move || async move {
            let mut client = access::etcd::connect_as(&endpoint, &root).await?;
            access::etcd::confine(&mut client, &daemon_grants()).await
        })
        .unwrap();
        let identity = |c: &Cluster, name: &str| Identity {
            files: c
                .store_server
                .as_ref()
                .and_then(StoreServer::etcd)
                .unwrap()
                .client_identity(name)
                .unwrap()
                .unwrap(),
            token: None,
        };
        // Each daemon gets its own certificate: hosts are named h1, h2 in the order added.
        for host in ["h1", "h2"] {
            c.store_tls = identity(&c, host).files;
            c.add_unregistered_host(Some(10), &[]).unwrap();
        }
        two_confined_daemons(&mut c, identity);
    }
}

mod consul {
    use super::*;

    /// The management token the server starts with.
    const MASTER: &str = "7d1b9c3e-netd-confinement-master";

    /// A Consul server with ACLs on, denying by default: the subject (the recipe makes the
    /// policies and tokens). Plain HTTP otherwise: TLS is not what is tested here.
    fn setup() -> StoreSetup {
        StoreSetup {
            consul: ConsulSettings {
                acl_master_token: Some(MASTER.into()),
                ..ConsulSettings::default()
            },
            ..StoreSetup::from(StoreKind::Consul)
        }
    }

    /// What every backend's recipe gives (above), then Consul's own: the host record's session
    /// needs `session_prefix "" write` (netd's hosts are not Consul nodes: their sessions are
    /// on the server's node), so one host may end another's session and with it that host's
    /// record. Consul's ACLs do not confine sessions per host.
    #[test]
    fn each_host_writes_only_under_its_own_prefix() {
        let mut lab = StoreLab::start("cfc", setup()).expect("Consul starts");
        lab.block_on(async |lab| {
            let consul = lab.consul().unwrap();
            let tokens =
                access::consul::confine(consul, MASTER, &lab.dir.0.join("acl"), &grants()).unwrap();
            let token = |name| access::token(&tokens, name).unwrap();
            let files = TlsFiles::default();
            let (h1, h2, admin) = (
                connect(&lab.url, &files, Some(token("h1"))).await,
                connect(&lab.url, &files, Some(token("h2"))).await,
                connect(&lab.url, &files, Some(token("admin"))).await,
            );
            let (_, lease2) = each_host_writes_only_its_own(&h1, &h2, &admin).await;
            // The refusal names the token's policy as the cause: the token was given.
            let refused = h1.put("/netd/v1/hosts/h2/x", b"x").await.unwrap_err();
            assert!(
                refused
                    .to_string()
                    .contains("the ACL token's policy does not allow it"),
                "{refused}"
            );

            // Not confined: h1 renews and ends h2's session, and h2's record goes with it.
            h1.keep_alive(&lease2.id).await.unwrap();
            h1.revoke(&lease2.id).await.unwrap();
            assert!(h1.get(H2_RECORD).await.unwrap().is_none());
        });
    }

    /// Two daemons, each with only its own token ([`two_confined_daemons`]). netd reads the
    /// token from `CONSUL_HTTP_TOKEN_FILE` when it starts, and the lab starts its daemons with
    /// the test's environment: the variable names each host's file while its daemon starts.
    #[test]
    fn two_confined_daemons_reach_each_other_and_not_each_others_keys() {
        let mut c = Cluster::new("cfk", 0, setup(), 10).expect("cluster");
        let consul = c
            .store_server
            .as_ref()
            .and_then(StoreServer::consul)
            .unwrap();
        let tokens =
            access::consul::confine(consul, MASTER, &c.dir.0.join("acl"), &daemon_grants())
                .unwrap();
        for host in ["h1", "h2"] {
            let file = c.dir.0.join(format!("{host}.token"));
            std::fs::write(&file, access::token(&tokens, host).unwrap()).unwrap();
            // SAFETY: no other thread of this test process runs now (nextest runs each test
            // in a process of its own; the fixture's store threads have ended), so none reads
            // the environment while it changes.
            unsafe { std::env::set_var("CONSUL_HTTP_TOKEN_FILE", &file) };
            let added = c.add_unregistered_host(Some(10), &[]);
            // SAFETY: as above.
            unsafe { std::env::remove_var("CONSUL_HTTP_TOKEN_FILE") };
            added.unwrap();
        }
        let identity = |_: &Cluster, name: &str| Identity {
            files: TlsFiles::default(),
            token: Some(access::token(&tokens, name).unwrap().to_owned()),
        };
        two_confined_daemons(&mut c, identity);
    }
}
