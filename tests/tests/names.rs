#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! Names across hosts without Docker: namespaces attached with `netd endpoint add NAME` resolve
//! each other by NAME through netd's DNS (their resolv.conf names 169.254.53.53), only within
//! the networks they are on; other names go to the host's resolvers.

use std::{net::Ipv4Addr, sync::atomic::Ordering, time::Duration};

use hickory_proto::op::ResponseCode;
use netd::api::{Endpoint, Status};
use netd_tests::{
    cluster::{Cluster, STORE_IP, StoreKind},
    dns::{FakeUpstream, addresses, ask, lookup},
    dns_flood::{Flood, FloodConfig},
    netns::Netns,
};

const DNS: &str = "169.254.53.53";
const DNS_IP: Ipv4Addr = netd::dns::DEFAULT_ADDRESS;
const UPSTREAM_PORT: u16 = 5353;

/// Two hosts whose daemons forward other names to a stand-in upstream on the switch, which
/// knows `example.test`.
fn cluster(tag: &str) -> (Cluster, FakeUpstream) {
    let upstream_addr = std::net::SocketAddr::from((STORE_IP, UPSTREAM_PORT));
    let upstream_arg = upstream_addr.to_string();
    let c = Cluster::new_with(tag, 2, StoreKind::Etcd, 10, |_, _| {
        Ok(vec![
            "--no-docker".into(),
            "--dns-upstream".into(),
            upstream_arg.clone(),
            "--metrics-address".into(),
            METRICS.to_string(),
        ])
    })
    .unwrap();
    let upstream =
        FakeUpstream::start(&c.switch, upstream_addr, &[("example.test", OUTSIDE)]).unwrap();
    (c, upstream)
}

const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// Every host is a namespace of its own: any port of its loopback is free.
const METRICS: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// Queries host `i`'s DNS answered REFUSED (not one of the listener's own), from /metrics.
fn not_served(c: &Cluster, i: usize) -> u64 {
    let (code, scrape) =
        netd_tests::cluster::http(&c.hosts[i].ns.path(), METRICS, "GET", "/metrics").unwrap();
    assert_eq!(code, 200, "{scrape}");
    let series = r#"netd_dns_turned_away_total{reason="not_served"} "#;
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.parse().ok())
        .unwrap_or_else(|| panic!("no {series:?} in\n{scrape}"))
}

fn add(c: &Cluster, host: usize, network: &str, container: usize, name: &str) -> Ipv4Addr {
    c.endpoint_add(host, network, container, name, &[])
        .unwrap()
        .ip
}

#[test]
fn namespaces_resolve_each_other_by_name_across_hosts() {
    let upstream_addr = std::net::SocketAddr::from((STORE_IP, 5353));
    let upstream_arg = upstream_addr.to_string();
    let mut c = Cluster::new_with("nm", 2, StoreKind::Etcd, 10, |_, _| {
        Ok(vec![
            "--no-docker".into(),
            "--dns-upstream".into(),
            upstream_arg.clone(),
        ])
    })
    .unwrap();
    let outside = Ipv4Addr::new(192, 0, 2, 10);
    let _upstream =
        FakeUpstream::start(&c.switch, upstream_addr, &[("example.test", outside)]).unwrap();
    for net in ["mynet", "other"] {
        let subnet = if net == "mynet" {
            "172.27.0.0/16"
        } else {
            "172.26.0.0/16"
        };
        c.netd(0, &["network", "create", "--subnet", subnet, net])
            .unwrap();
    }
    let (a, b, o) = (
        c.container().unwrap(),
        c.container().unwrap(),
        c.container().unwrap(),
    );
    let web1 = add(&c, 0, "mynet", a, "web1");
    let web2 = add(&c, 1, "mynet", b, "web2");
    add(&c, 1, "other", o, "lonely");
    // Across hosts, both ways, as soon as the other host has the record.
    netd_tests::wait_until(
        Duration::from_secs(10),
        || (lookup(&c.containers[b], "web1", DNS) == vec![web1]).then_some(()),
        "web1 to resolve",
    )
    .unwrap();
    assert_eq!(
        lookup(&c.containers[a], "WEB2", DNS),
        vec![web2],
        "names are not case-sensitive"
    );
    // Not from another network.
    assert!(lookup(&c.containers[o], "web1", DNS).is_empty());
    // Other names go to the host's resolvers, from every namespace.
    assert_eq!(lookup(&c.containers[a], "example.test", DNS), vec![outside]);
    assert_eq!(lookup(&c.containers[o], "example.test", DNS), vec![outside]);
    assert!(lookup(&c.containers[a], "nowhere.test", DNS).is_empty());
    // A name goes with its endpoint.
    c.netd(0, &["endpoint", "rm", "web1"]).unwrap();
    netd_tests::wait_until(
        Duration::from_secs(10),
        || {
            lookup(&c.containers[b], "web1", DNS)
                .is_empty()
                .then_some(())
        },
        "web1 to stop resolving",
    )
    .unwrap();
    // A restarted daemon serves its namespaces again.
    c.hosts[1].kill();
    c.hosts[1].start().unwrap();
    netd_tests::wait_until(
        Duration::from_secs(10),
        || (lookup(&c.containers[b], "web2", DNS) == vec![web2]).then_some(()),
        "web2 to resolve",
    )
    .unwrap();
}

/// The issue's "one container can stop the daemon through DNS": a task and a socket per query
/// without limit, TCP connections kept for ever, and an accept error (no descriptor left) that
/// ended the daemon through its API server. The daemon starts here with a soft descriptor
/// limit of 1024 (a systemd service's default); one container holds 1500 TCP connections to
/// its DNS listener and floods it over UDP. The daemon must stay up and healthy, a store
/// change from the other host must still reach this host's maps, and the flooder's neighbour
/// on the same host must still get its answers. No timing threshold: generous deadlines only
/// (the numbers are `cargo xtask bench --dns-flood`'s).
#[test]
fn one_container_cannot_stop_the_daemon_through_dns() {
    let (mut c, _upstream) = with_soft_nofile(1024, || cluster("fl"));
    c.netd(
        0,
        &["network", "create", "--subnet", "172.27.0.0/16", "mynet"],
    )
    .unwrap();
    let (flooder, neighbour, far) = (
        c.container().unwrap(),
        c.container().unwrap(),
        c.container().unwrap(),
    );
    add(&c, 0, "mynet", flooder, "flooder");
    add(&c, 0, "mynet", neighbour, "neighbour");
    let web = add(&c, 1, "mynet", far, "web");
    netd_tests::wait_until(
        Duration::from_secs(10),
        || (lookup(&c.containers[neighbour], "web", DNS) == vec![web]).then_some(()),
        "web to resolve before the flood",
    )
    .unwrap();

    let flood = Flood::start(
        &c.containers[flooder],
        &FloodConfig {
            target: DNS_IP,
            tcp_connections: 1500,
            udp_rate: 0,
        },
    )
    .unwrap();
    let counts = flood.counts.clone();
    // The flood is under way once 1500 connections were opened; a daemon that cannot accept
    // them (or has ended) leaves the count short, and the checks below say what went wrong.
    let _ = netd_tests::wait_until(
        Duration::from_secs(20),
        || {
            (counts.tcp_opened.load(Ordering::Relaxed) >= 1500 || c.hosts[0].exited().is_some())
                .then_some(())
        },
        "the flooder to have opened 1500 TCP connections",
    );
    let status: Status = c
        .netd_as(0, &["status"])
        .expect("netd status during the flood");
    assert!(status.healthy, "{:?}", status.problems);

    // A store change from the other host reaches this host's maps and its DNS.
    let late_ns = c.container().unwrap();
    let late: Endpoint = c
        .netd_as(
            1,
            &[
                "endpoint",
                "add",
                "--network",
                "mynet",
                "--netns",
                &c.containers[late_ns].name.clone(),
                "late",
            ],
        )
        .unwrap();
    let mac = late.mac.to_string();
    netd_tests::wait_until(
        Duration::from_secs(10),
        || {
            c.fdb(0)
                .ok()?
                .iter()
                .any(|e| e.get("mac").and_then(|m| m.as_str()) == Some(mac.as_str()))
                .then_some(())
        },
        "the late endpoint in host 1's FDB during the flood",
    )
    .unwrap();
    netd_tests::wait_until(
        Duration::from_secs(10),
        || (lookup(&c.containers[neighbour], "late", DNS) == vec![late.ip]).then_some(()),
        "the flooder's neighbour to resolve the late endpoint during the flood",
    )
    .unwrap();
    let status: Status = c.netd_as(0, &["status"]).unwrap();
    assert!(status.healthy, "{:?}", status.problems);
    assert!(c.hosts[0].exited().is_none(), "the daemon ended");
    let sent = counts.udp_sent.load(Ordering::Relaxed);
    assert!(sent > 0, "the UDP flood sent nothing");
    drop(flood);
    assert!(c.hosts[0].exited().is_none(), "the daemon ended");
}

/// Runs `f` (which starts daemons) with this process's soft descriptor limit at `soft`, so
/// that the daemons inherit it; the limit is restored after.
fn with_soft_nofile<T>(soft: u64, f: impl FnOnce() -> T) -> T {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let saved = limit;
    limit.rlim_cur = soft.min(limit.rlim_max);
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let result = f();
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) }, 0);
    result
}

/// The issue's "DNS answers whoever reaches 169.254.53.53". A namespace's listener answers
/// that namespace only: a container of another network that routes 169.254.53.53 through a
/// container on two networks learns nothing of the second network's names (the namespace's
/// sockets are bound to `lo`). The host's listener answers the host and the containers behind
/// its bridges, and REFUSED to the LAN (no open resolver). Each refusal has its positive
/// control in the same setup: the same query asked from where it is served.
#[test]
fn dns_does_not_answer_whoever_reaches_169_254_53_53() {
    let (mut c, _upstream) = cluster("wh");
    for (net, subnet) in [("mynet", "172.27.0.0/16"), ("other", "172.26.0.0/16")] {
        c.netd(0, &["network", "create", "--subnet", subnet, net])
            .unwrap();
    }
    let (outsider, bridge, secret_ns) = (
        c.container().unwrap(),
        c.container().unwrap(),
        c.container().unwrap(),
    );
    add(&c, 0, "mynet", outsider, "outsider");
    let via = add(&c, 0, "mynet", bridge, "two-nets");
    let bridge_name = c.containers[bridge].name.clone();
    c.netd_as::<Endpoint>(
        0,
        &[
            "endpoint",
            "add",
            "--network",
            "other",
            "--netns",
            &bridge_name,
            "--ifname",
            "eth1",
            "two-nets-b",
        ],
    )
    .unwrap();
    let secret = add(&c, 1, "other", secret_ns, "secret");
    // Positive control: the namespace on both networks resolves the name itself.
    netd_tests::wait_until(
        Duration::from_secs(10),
        || (lookup(&c.containers[bridge], "secret", DNS) == vec![secret]).then_some(()),
        "secret to resolve where it is served",
    )
    .unwrap();
    // The outsider sends its queries for 169.254.53.53 through the container on both
    // networks. They get there (the kernel counts them), but no socket of netd's takes them:
    // they come in through eth0, and netd's sockets there are bound to `lo`. (No answer could
    // come back anyway: the container's from-endpoint hook drops a reply from 169.254.53.53 as
    // spoofed; but netd would have done the work, forwarded it upstream.)
    let o = &c.containers[outsider];
    o.ip(&["addr", "del", &format!("{DNS}/32"), "dev", "lo"])
        .unwrap();
    o.ip(&[
        "route",
        "add",
        &format!("{DNS}/32"),
        "via",
        &via.to_string(),
    ])
    .unwrap();
    let no_ports_before = udp_no_ports(&c.containers[bridge]);
    for _ in 0..3 {
        assert!(ask(o, DNS_IP, "secret").is_none());
    }
    let no_ports = udp_no_ports(&c.containers[bridge]) - no_ports_before;
    assert!(
        no_ports >= 3,
        "queries from another network reached a socket of netd's ({no_ports} of 3 found none)"
    );
    // Positive control, after: the namespace itself is still answered.
    assert_eq!(lookup(&c.containers[bridge], "secret", DNS), vec![secret]);

    // The host's listener: the LAN (the switch, which routes 169.254.53.53 to host 0) gets
    // REFUSED and nothing forwarded...
    let host = &c.hosts[0];
    c.switch
        .ip(&[
            "route",
            "add",
            &format!("{DNS}/32"),
            "via",
            &host.vtep.to_string(),
        ])
        .unwrap();
    let refused_before = not_served(&c, 0);
    let answer = ask(&c.switch, DNS_IP, "example.test").expect("an answer to the LAN");
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    assert!(addresses(&answer).is_empty());
    // ...counted in /metrics (the host's own query below, answered, is not).
    assert_eq!(not_served(&c, 0), refused_before + 1);
    // ...while the host itself and a container behind one of its bridges get their answers.
    let answer = ask(&host.ns, DNS_IP, "example.test").expect("an answer to the host");
    assert_eq!(addresses(&answer), vec![OUTSIDE]);
    assert_eq!(not_served(&c, 0), refused_before + 1);
    let bridged = Netns::new("wb").unwrap();
    host.ns
        .ip(&["link", "add", "brt", "type", "bridge"])
        .unwrap();
    host.ns
        .ip(&["addr", "add", "10.99.0.1/24", "dev", "brt"])
        .unwrap();
    host.ns.ip(&["link", "set", "brt", "up"]).unwrap();
    host.ns
        .ip(&[
            "link",
            "add",
            "vbt",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &bridged.name,
        ])
        .unwrap();
    host.ns
        .ip(&["link", "set", "vbt", "master", "brt", "up"])
        .unwrap();
    bridged
        .ip(&["addr", "add", "10.99.0.2/24", "dev", "eth0"])
        .unwrap();
    bridged.ip(&["link", "set", "eth0", "up"]).unwrap();
    bridged
        .ip(&["route", "add", "default", "via", "10.99.0.1"])
        .unwrap();
    // A new bridge is allowed once netd has read the host's interfaces again (at a query
    // from a source it does not know, at most every 250 ms).
    netd_tests::wait_until(
        Duration::from_secs(5),
        || {
            ask(&bridged, DNS_IP, "example.test")
                .is_some_and(|a| addresses(&a) == vec![OUTSIDE])
                .then_some(())
        },
        "an answer for a container behind one of the host's bridges",
    )
    .unwrap();
}

/// UDP datagrams a namespace received for a port no socket held (`NoPorts` of
/// /proc/net/snmp, read inside it).
fn udp_no_ports(ns: &Netns) -> u64 {
    let snmp = ns.exec("cat", &["/proc/net/snmp"]).unwrap();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "NoPorts")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// The issue's "port 53 is taken in every served namespace": a container running its own DNS
/// server on 0.0.0.0:53 must be able to, and netd's names must still resolve at
/// 169.254.53.53:53 beside it.
#[test]
fn a_containers_own_dns_server_on_port_53_keeps_working() {
    let (mut c, _upstream) = cluster("p53");
    c.netd(
        0,
        &["network", "create", "--subnet", "172.27.0.0/16", "mynet"],
    )
    .unwrap();
    let (a, b) = (c.container().unwrap(), c.container().unwrap());
    add(&c, 0, "mynet", a, "a");
    let web = add(&c, 1, "mynet", b, "web");
    // The container's own server, on every address of its namespace, UDP and TCP.
    let own = std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53));
    let (udp, tcp) = {
        let _inside = netd::netns::enter(&c.containers[a].path()).unwrap();
        (
            std::net::UdpSocket::bind(own),
            std::net::TcpListener::bind(own),
        )
    };
    let udp = udp.expect("the container's own DNS server binds 0.0.0.0:53/udp");
    let _tcp = tcp.expect("the container's own DNS server binds 0.0.0.0:53/tcp");
    // netd still answers at 169.254.53.53:53...
    netd_tests::wait_until(
        Duration::from_secs(10),
        || (lookup(&c.containers[a], "web", DNS) == vec![web]).then_some(()),
        "web to resolve through netd beside the container's own server",
    )
    .unwrap();
    // ...and the container's own server gets what is sent to its own addresses.
    let peer = {
        let _inside = netd::netns::enter(&c.containers[a].path()).unwrap();
        std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap()
    };
    peer.send_to(b"ping", (Ipv4Addr::LOCALHOST, 53)).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 16];
    let (len, _) = udp
        .recv_from(&mut buf)
        .expect("the container's server receives");
    assert_eq!(&buf[..len], b"ping");
}
