#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! The control plane where it used to break: listings and watch batches larger than one gRPC
//! message, a host's own lease ending, full maps, two hosts with one name, keep-alives under a
//! bulk write. Real etcd, real daemons, real traffic.

use std::{net::Ipv4Addr, time::Duration};

use netd::api::{Endpoint, ErrorKind, LinkState, MapStatus, Status};
use netd_store::{Backend, LeaseId};
use netd_tests::{
    bulk::Synthetic,
    cluster::{Cluster, StoreKind},
};

fn add(c: &Cluster, host: usize, network: &str, container: usize, name: &str) -> Endpoint {
    c.endpoint_add(host, network, container, name, &[]).unwrap()
}

fn map<'a>(status: &'a Status, name: &str) -> &'a MapStatus {
    status.maps.iter().find(|m| m.name == name).unwrap()
}

fn fdb_entries(c: &Cluster, host: usize) -> Option<usize> {
    let status: Status = c.netd_as(host, &["status"]).ok()?;
    Some(map(&status, "NETD_FDB").entries)
}

/// 40,000 endpoints in two networks, 9 MB of records: more than a 4 MiB gRPC message, in the
/// bulk write's watch batches and in the listing of a restarted daemon. The host programs
/// every peer of the network it is on, and none of the other.
#[test]
fn more_records_than_one_grpc_message_converge_and_relist() {
    let mut c = Cluster::new("big", 1, StoreKind::Etcd, 10).unwrap();
    let synthetic = Synthetic::new(200, 2);
    c.with_store(move |store| async move {
        synthetic.write_networks_and_hosts(&store).await?;
        Ok(())
    })
    .unwrap();
    let ns = c.container().unwrap();
    add(&c, 0, "syn0", ns, "here");
    c.with_store(move |store| async move {
        synthetic.write_endpoints(store, 0..40_000, 8).await?;
        Ok(())
    })
    .unwrap();
    // syn0's 20,000 peers and the host's own endpoint; syn1's peers are not this host's business.
    let expected = 20_001;
    netd_tests::wait_until(
        Duration::from_secs(120),
        || (fdb_entries(&c, 0)? == expected).then_some(()),
        "host 1's FDB to hold every peer",
    )
    .unwrap_or_else(|e| panic!("{e}: FDB holds {:?}", fdb_entries(&c, 0)));
    // A restarted daemon lists it all again, in pages, and changes nothing.
    c.hosts[0].kill();
    c.hosts[0].start().unwrap();
    netd_tests::wait_until(
        Duration::from_secs(120),
        || {
            let status: Status = c.netd_as(0, &["status"]).ok()?;
            (status.store.state == LinkState::Connected && status.endpoints_known == 40_001)
                .then_some(())
        },
        "the restarted daemon to know every endpoint",
    )
    .unwrap();
    assert_eq!(fdb_entries(&c, 0), Some(expected));
}

/// A healthy host whose lease is revoked (as after a partition longer than the TTL) keeps its
/// own containers' traffic, registers again, and the other host takes its endpoints back.
#[test]
fn a_host_whose_lease_ended_never_drops_its_own_containers() {
    let mut c = Cluster::new("ls", 2, StoreKind::Etcd, 10).unwrap();
    c.netd(
        0,
        &["network", "create", "--subnet", "172.30.0.0/16", "mynet"],
    )
    .unwrap();
    let (a, b, far) = (
        c.container().unwrap(),
        c.container().unwrap(),
        c.container().unwrap(),
    );
    add(&c, 0, "mynet", a, "a");
    let b_ip = add(&c, 0, "mynet", b, "b").ip.to_string();
    let far_ip = add(&c, 1, "mynet", far, "far").ip.to_string();
    netd_tests::wait_until(
        Duration::from_secs(10),
        || {
            c.containers[a]
                .succeeds("ping", &["-c", "1", "-W", "1", &far_ip])
                .then_some(())
        },
        "a ping to the far host's container",
    )
    .unwrap();
    let status: Status = c.netd_as(0, &["status"]).unwrap();
    let lease = status.store.lease.lease.unwrap();
    let ping = c.containers[a].background_ping(&b_ip, 500).unwrap();
    // The test's timeline, not a wait for readiness: 1 s of pings before the lease ends.
    std::thread::sleep(Duration::from_secs(1));
    c.with_store(move |store| async move {
        store.revoke(&LeaseId::new(lease)).await?;
        Ok(())
    })
    .unwrap();
    netd_tests::wait_until(
        Duration::from_secs(15),
        || {
            let status: Status = c.netd_as(0, &["status"]).ok()?;
            (status.store.lease.registrations >= 2).then_some(())
        },
        "host 1 to register again",
    )
    .unwrap();
    let ping = ping.finish().unwrap();
    assert_eq!(
        ping.lost(),
        0,
        "between this host's own containers: {}",
        ping.line
    );
    // The other host dropped this one's endpoints with its lease, and takes them back.
    netd_tests::wait_until(
        Duration::from_secs(10),
        || {
            c.containers[far]
                .succeeds("ping", &["-c", "1", "-W", "1", &b_ip])
                .then_some(())
        },
        "a ping from the far host's container",
    )
    .unwrap();
}

/// A full FDB: what fits is written, the rest is counted and shown; deletes still apply and
/// free room for what failed; an endpoint add that cannot be programmed leaves nothing behind
/// (no record, no interface, no claim on its address).
#[test]
fn a_full_map_loses_no_delete_and_a_failed_add_leaves_nothing() {
    let mut c = Cluster::new_with("fu", 1, StoreKind::Etcd, 10, |_, _| {
        Ok(vec![
            "--no-docker".into(),
            "--max-endpoints".into(),
            "8".into(),
        ])
    })
    .unwrap();
    let synthetic = Synthetic::new(4, 1);
    c.with_store(move |store| async move {
        synthetic.write_networks_and_hosts(&store).await?;
        Ok(())
    })
    .unwrap();
    let ns = c.container().unwrap();
    add(&c, 0, "syn0", ns, "here");
    // Ten peers for the seven free entries.
    c.with_store(move |store| async move {
        synthetic.write_endpoints(store, 0..10, 1).await?;
        Ok(())
    })
    .unwrap();
    let status = netd_tests::wait_until(
        Duration::from_secs(10),
        || {
            let status: Status = c.netd_as(0, &["status"]).ok()?;
            (map(&status, "NETD_FDB").failed_writes > 0).then_some(status)
        },
        "a failed FDB write in host 1's status",
    )
    .unwrap();
    let fdb = map(&status, "NETD_FDB");
    assert_eq!(fdb.entries, 8, "{fdb:?}");
    assert!(fdb.error.is_some(), "{fdb:?}");
    assert!(!status.healthy, "{:?}", status.problems);

    // An add that cannot be programmed fails, and everything it did is undone.
    let ns2 = c.container().unwrap();
    let netns = c.containers[ns2].name.clone();
    let (code, err) = c
        .netd_error(
            0,
            &[
                "endpoint",
                "add",
                "--network",
                "syn0",
                "--netns",
                &netns,
                "--ip",
                "10.100.0.77",
                "late",
            ],
        )
        .unwrap();
    assert_eq!(code, ErrorKind::Internal.exit_code(), "{err}");
    assert!(err.contains("NETD_FDB"), "{err}");
    let left: Vec<_> = c
        .store_owned()
        .unwrap()
        .into_iter()
        .filter(|o| o.network == "syn0" && ["late", "10.100.0.77"].contains(&o.name.as_str()))
        .collect();
    assert_eq!(left, [], "the failed add left a record or a claim");
    let host_if = netd::netlink::host_ifname("syn0", "late");
    assert!(
        c.hosts[0].ns.ip(&["link", "show", &host_if]).is_err(),
        "the failed add left {host_if} behind"
    );
    assert!(c.containers[ns2].ip(&["link", "show", "eth0"]).is_err());
    // Deletes are applied although writes fail; then what failed finds room.
    c.with_store(move |store| async move {
        synthetic.delete_endpoints(&store, 0..6).await?;
        Ok(())
    })
    .unwrap();
    let status = netd_tests::wait_until(
        Duration::from_secs(15),
        || {
            let status: Status = c.netd_as(0, &["status"]).ok()?;
            (map(&status, "NETD_FDB").entries == 5 && status.healthy).then_some(status)
        },
        "the FDB to hold 5 entries and the host to be healthy",
    )
    .unwrap_or_else(|e| panic!("{e}: {}", c.netd(0, &["status"]).unwrap_or_default()));
    assert_eq!(map(&status, "NETD_FDB").error, None);
    // The address the failed add had was released: now it is given, to one endpoint.
    let again: Endpoint = c
        .netd_as(
            0,
            &[
                "endpoint",
                "add",
                "--network",
                "syn0",
                "--netns",
                &netns,
                "--ip",
                "10.100.0.77",
                "again",
            ],
        )
        .unwrap();
    let wanted = Ipv4Addr::new(10, 100, 0, 77);
    assert_eq!(again.ip, wanted);
    let holders: Vec<Endpoint> = c
        .netd_as::<Vec<Endpoint>>(0, &["endpoint", "ls", "--network", "syn0"])
        .unwrap()
        .into_iter()
        .filter(|e| e.ip == wanted)
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
}

/// A second daemon claiming a live host's name (a cloned VM) refuses to start, naming the
/// other host's VTEP, and the first host's record stays.
#[test]
fn two_daemons_with_one_hostname_refuse_clearly() {
    let mut c = Cluster::new("id", 2, StoreKind::Etcd, 10).unwrap();
    c.hosts[1].kill();
    c.hosts[1].set_arg("--hostname", "h1");
    let err = c.hosts[1].start().unwrap_err().to_string();
    assert!(
        err.contains("\"h1\" is already registered by VTEP 10.201.0.1"),
        "{err}"
    );
    let status: Status = c.netd_as(0, &["status"]).unwrap();
    let h1 = status.hosts.get("h1").map(|h| h.vtep);
    assert_eq!(h1, Some(Ipv4Addr::new(10, 201, 0, 1)), "{:?}", status.hosts);
    assert_eq!(
        status.store.lease.registrations, 1,
        "{:?}",
        status.store.lease
    );
    // Stopped as a service manager stops it, the first daemon ends at once, cleanly.
    let exit = c.hosts[0].terminate(Duration::from_secs(5));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

/// Two healthy hosts keep their leases while a bulk write of 60,000 endpoints floods their
/// watches and reconcilers, and traffic between them does not stop.
#[test]
fn keep_alives_hold_under_a_bulk_write() {
    let c = Cluster::new("ka", 2, StoreKind::Etcd, 5).unwrap();
    let mut c = c;
    let synthetic = Synthetic::new(500, 2);
    c.with_store(move |store| async move {
        synthetic.write_networks_and_hosts(&store).await?;
        Ok(())
    })
    .unwrap();
    let (a, b) = (c.container().unwrap(), c.container().unwrap());
    add(&c, 0, "syn0", a, "a");
    let b_ip = add(&c, 1, "syn0", b, "b").ip.to_string();
    netd_tests::wait_until(
        Duration::from_secs(10),
        || {
            c.containers[a]
                .succeeds("ping", &["-c", "1", "-W", "1", &b_ip])
                .then_some(())
        },
        "a ping across hosts",
    )
    .unwrap();
    let ping = c.containers[a].background_ping(&b_ip, 100_000).unwrap();
    c.with_store(move |store| async move {
        synthetic.write_endpoints(store, 0..60_000, 8).await?;
        Ok(())
    })
    .unwrap();
    netd_tests::wait_until(
        Duration::from_secs(120),
        || (fdb_entries(&c, 0)? == 30_002 && fdb_entries(&c, 1)? == 30_002).then_some(()),
        "both FDBs to hold 30,002 entries",
    )
    .unwrap();
    ping.interrupt();
    let ping = ping.finish().unwrap();
    for host in 0..2 {
        let status: Status = c.netd_as(host, &["status"]).unwrap();
        let lease = &status.store.lease;
        assert_eq!(lease.missed_renewals, 0, "host {}: {lease:?}", host + 1);
        assert_eq!(lease.registrations, 1, "host {}: {lease:?}", host + 1);
    }
    assert_eq!(ping.lost(), 0, "during the bulk write: {}", ping.line);
}

/// A namespace deleted under its endpoint (a container that died with its veth): the endpoint
/// is removed cleanly and the same name attached again works, through a fresh hook.
#[test]
fn an_endpoint_whose_namespace_went_is_removed_and_added_again() {
    let mut c = Cluster::new("gn", 1, StoreKind::Etcd, 10).unwrap();
    c.netd(
        0,
        &["network", "create", "--subnet", "172.29.0.0/16", "mynet"],
    )
    .unwrap();
    let (gone, peer) = (c.container().unwrap(), c.container().unwrap());
    add(&c, 0, "mynet", gone, "web");
    let peer_ip = add(&c, 0, "mynet", peer, "peer").ip.to_string();
    // The namespace goes, and its veth pair with it.
    let dead = c.containers.remove(gone);
    drop(dead);
    c.netd(0, &["endpoint", "rm", "web"]).unwrap();
    let pin = c.hosts[0].pin_dir.join("links").join(format!(
        "{}@endpoint",
        netd::netlink::host_ifname("mynet", "web")
    ));
    assert!(!pin.exists(), "{} left behind", pin.display());
    let again = c.container().unwrap();
    add(&c, 0, "mynet", again, "web");
    assert!(
        c.containers[again].succeeds("ping", &["-c", "1", "-W", "2", &peer_ip]),
        "the endpoint added again does not forward"
    );
}

/// Started as a service or a Docker managed plugin would start it (`--store` and `--advertise`
/// only), the daemon takes the interface that holds its address as uplink, not `lo` (which
/// routes to a host's own address), and says so; with an address no interface holds, it stops
/// in one line naming the flag.
#[test]
fn without_uplink_the_daemon_takes_the_interface_that_holds_its_address() {
    let mut c = Cluster::new("upl", 2, StoreKind::Etcd, None).unwrap();
    c.hosts[0].kill();
    c.hosts[0].remove_arg("--uplink");
    c.hosts[0].start().unwrap();
    c.wait_registered(0, 2).unwrap();
    let status: Status = c.netd_as(0, &["status"]).unwrap();
    assert_eq!(status.uplink, "ul", "{status:?}");
    assert_eq!(
        status.uplink_source,
        Some(netd::api::UplinkSource::Advertise)
    );
    let text = c.netd(0, &["status"]).unwrap();
    assert!(
        text.contains("uplink ul mtu 1500, holds --advertise"),
        "{text}"
    );
    // The uplink carries traffic: a ping crosses to the host started with --uplink.
    c.netd(0, &["network", "create", "--subnet", "10.88.0.0/24", "n"])
        .unwrap();
    let (a, b) = (c.container().unwrap(), c.container().unwrap());
    add(&c, 0, "n", a, "a");
    let far = add(&c, 1, "n", b, "b");
    netd_tests::wait_until(
        Duration::from_secs(10),
        || {
            c.containers[a]
                .exec("ping", &["-c", "1", "-W", "1", &far.ip.to_string()])
                .ok()
        },
        "a ping from host 1 to host 2",
    )
    .unwrap();

    c.hosts[1].kill();
    c.hosts[1].remove_arg("--uplink");
    c.hosts[1].set_arg("--advertise", "10.201.0.99");
    let e = c.hosts[1].start().unwrap_err().to_string();
    assert!(
        e.contains("no interface holds --advertise 10.201.0.99; give --uplink"),
        "{e}"
    );
}
