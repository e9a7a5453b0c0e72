#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! macvlan-style networks, side by side with the kernel's own macvlan as the reference: the same
//! reachability matrix on both, per mode, on a LAN (a bridge) shared by two hosts and an outside
//! machine. Daemons, CLI and traffic are real.

use std::time::Duration;

use netd::api::ErrorKind;
use netd_tests::{
    cluster::{Cluster, StoreKind},
    netns::Netns,
};

/// An outside machine on the LAN.
fn lan_host(c: &Cluster, addrs: &[&str], vlan: Option<u16>) -> Netns {
    let ns = Netns::new("lan").unwrap();
    let port = netd_tests::unique_name("lp");
    netd_tests::ip(&[
        "link",
        "add",
        "eth0",
        "netns",
        &ns.name,
        "type",
        "veth",
        "peer",
        "name",
        &port,
        "netns",
        &c.switch.name,
    ])
    .unwrap();
    c.switch
        .ip(&["link", "set", &port, "master", "br0", "up"])
        .unwrap();
    ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    let dev = match vlan {
        Some(v) => {
            let dev = format!("eth0.{v}");
            ns.ip(&[
                "link",
                "add",
                "link",
                "eth0",
                "name",
                &dev,
                "type",
                "vlan",
                "id",
                &v.to_string(),
            ])
            .unwrap();
            ns.ip(&["link", "set", &dev, "up"]).unwrap();
            dev
        }
        None => "eth0".to_string(),
    };
    for a in addrs {
        ns.ip(&["addr", "add", a, "dev", &dev]).unwrap();
    }
    ns
}

fn reaches(from: &Netns, to: &str) -> bool {
    from.exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", to])
        .is_ok()
}

/// A kernel macvlan device on host `host`'s `ul`, moved into a new namespace with `addr`.
fn kernel_macvlan(c: &Cluster, host: usize, mode: &str, addr: &str) -> Netns {
    let ns = Netns::new("km").unwrap();
    let dev = netd_tests::unique_name("km");
    c.hosts[host]
        .ns
        .ip(&[
            "link", "add", &dev, "link", "ul", "type", "macvlan", "mode", mode,
        ])
        .unwrap();
    c.hosts[host]
        .ns
        .ip(&["link", "set", &dev, "netns", &ns.name])
        .unwrap();
    ns.ip(&["link", "set", &dev, "name", "eth0"]).unwrap();
    ns.ip(&["addr", "add", addr, "dev", "eth0"]).unwrap();
    ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    ns
}

/// (same host, across hosts, to the outside, host to its own container)
type Matrix = [bool; 4];

fn matrix(c: &Cluster, a: &Netns, b_ip: &str, other_host_ip: &str, own_ip: &str) -> Matrix {
    [
        reaches(a, b_ip),
        reaches(a, other_host_ip),
        reaches(a, "10.201.0.200"),
        c.hosts[0]
            .ns
            .exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", own_ip])
            .is_ok(),
    ]
}

fn compare_mode(mode: &str, host_access: bool) {
    let mut c = Cluster::new("mv", 2, StoreKind::Etcd, 10).unwrap();
    let _outside = lan_host(&c, &["10.201.0.200/24"], None);
    // netd's macvlan: two containers on host 1, one on host 2.
    let opt_mode = format!("macvlan_mode={mode}");
    let opt_host = format!("host_access={host_access}");
    c.netd(
        0,
        &[
            "network",
            "create",
            "-d",
            "macvlan",
            "--parent",
            "ul",
            "--subnet",
            "10.201.0.0/24",
            "--ip-range",
            "10.201.0.128/26",
            "-o",
            &opt_mode,
            "-o",
            &opt_host,
            "lan",
        ],
    )
    .unwrap();
    let ns: Vec<usize> = (0..3).map(|_| c.container().unwrap()).collect();
    for (k, host) in [(0usize, 0usize), (1, 0), (2, 1)] {
        let netns = c.containers[ns[k]].name.clone();
        let ip = format!("10.201.0.{}", 128 + k);
        netd_tests::wait_until(
            Duration::from_secs(5),
            || {
                c.netd(
                    host,
                    &[
                        "endpoint",
                        "add",
                        "--network",
                        "lan",
                        "--netns",
                        &netns,
                        "--ip",
                        &ip,
                        &format!("n{k}"),
                    ],
                )
                .ok()
            },
            "the endpoint add to succeed",
        )
        .unwrap();
    }
    // The kernel's, the same.
    let k1a = kernel_macvlan(&c, 0, mode, "10.201.0.64/24");
    let k1b = kernel_macvlan(&c, 0, mode, "10.201.0.65/24");
    let _k2 = kernel_macvlan(&c, 1, mode, "10.201.0.66/24");
    let kernel = matrix(&c, &k1a, "10.201.0.65", "10.201.0.66", "10.201.0.64");
    let netd = matrix(
        &c,
        &c.containers[ns[0]],
        "10.201.0.129",
        "10.201.0.130",
        "10.201.0.128",
    );
    let mut expected = kernel;
    if host_access {
        // The one thing kernel macvlan cannot do.
        assert!(!kernel[3], "kernel macvlan reached its own host?");
        expected[3] = true;
    }
    if netd != expected {
        if std::env::var_os("NETD_DEBUG_PAUSE").is_some() {
            eprintln!(
                "PAUSED host ns {} container ns {}",
                c.hosts[0].ns.name, c.containers[ns[0]].name
            );
            // A pause for a person debugging (NETD_DEBUG_PAUSE), not a wait.
            std::thread::sleep(Duration::from_secs(90));
        }
        let stats = c.netd(0, &["maps", "dump", "stats"]).unwrap_or_default();
        let parents = c.netd(0, &["maps", "dump", "parents"]).unwrap_or_default();
        let eps = c
            .netd(0, &["maps", "dump", "endpoints"])
            .unwrap_or_default()
            + &c.hosts[0].ns.ip(&["neigh"]).unwrap_or_default()
            + &c.containers[ns[0]].ip(&["neigh"]).unwrap_or_default()
            + &c.hosts[0]
                .ns
                .exec("ping", &["-c", "1", "-W", "1", "10.201.0.128"])
                .unwrap_or_else(|e| e.to_string());
        panic!(
            "mode {mode}: [same host, across hosts, outside, host->own] netd {netd:?}, expected {expected:?} (kernel {kernel:?})\n{parents}\n{eps}\n{}",
            stats
                .lines()
                .filter(|l| !l.ends_with(" 0"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    drop(k1a);
    drop(k1b);
}

#[test]
fn bridge_mode_matches_kernel_macvlan() {
    compare_mode("bridge", false);
}

#[test]
fn private_mode_matches_kernel_macvlan() {
    compare_mode("private", false);
}

#[test]
fn vepa_mode_matches_kernel_macvlan() {
    compare_mode("vepa", false);
}

#[test]
fn host_access_lets_the_host_reach_its_own_containers() {
    compare_mode("bridge", true);
}

#[test]
fn passthru_refuses_a_second_endpoint() {
    let mut c = Cluster::new("mp", 1, StoreKind::Etcd, 10).unwrap();
    c.netd(
        0,
        &[
            "network",
            "create",
            "-d",
            "macvlan",
            "--parent",
            "ul",
            "--subnet",
            "10.201.0.0/24",
            "--ip-range",
            "10.201.0.128/26",
            "-o",
            "macvlan_mode=passthru",
            "pt",
        ],
    )
    .unwrap();
    let a = c.container().unwrap();
    let b = c.container().unwrap();
    let (na, nb) = (c.containers[a].name.clone(), c.containers[b].name.clone());
    c.netd(
        0,
        &["endpoint", "add", "--network", "pt", "--netns", &na, "one"],
    )
    .unwrap();
    let (code, e) = c
        .netd_error(
            0,
            &["endpoint", "add", "--network", "pt", "--netns", &nb, "two"],
        )
        .unwrap();
    assert_eq!(code, ErrorKind::InUse.exit_code(), "{e}");
    assert!(
        e.contains("passthru") && e.contains("already has an endpoint"),
        "{e}"
    );
}

#[test]
fn vlan_parents_tag_frames_and_vlans_stay_apart() {
    let mut c = Cluster::new("vl", 2, StoreKind::Etcd, 10).unwrap();
    // A receiver on the LAN side, untagged: it sees what crosses the wire, tags included.
    let outside = lan_host(&c, &["10.201.0.200/24"], None);
    c.netd(
        0,
        &[
            "network",
            "create",
            "-d",
            "macvlan",
            "--parent",
            "ul.10",
            "--subnet",
            "10.210.0.0/24",
            "v10",
        ],
    )
    .unwrap();
    c.netd(
        0,
        &[
            "network",
            "create",
            "-d",
            "macvlan",
            "--parent",
            "ul.20",
            "--subnet",
            "10.210.0.0/24",
            "v20",
        ],
    )
    .unwrap();
    let ns: Vec<usize> = (0..3).map(|_| c.container().unwrap()).collect();
    let name = |k: usize| c.containers[ns[k]].name.clone();
    let (n0, n1, n2) = (name(0), name(1), name(2));
    let add = |host: usize, args: &[&str]| {
        netd_tests::wait_until(
            Duration::from_secs(5),
            || {
                let mut all = vec!["endpoint", "add"];
                all.extend_from_slice(args);
                c.netd(host, &all).ok()
            },
            "the endpoint add to succeed",
        )
        .unwrap()
    };
    add(
        0,
        &[
            "--network",
            "v10",
            "--netns",
            &n0,
            "--ip",
            "10.210.0.10",
            "a10",
        ],
    );
    add(
        1,
        &[
            "--network",
            "v10",
            "--netns",
            &n1,
            "--ip",
            "10.210.0.11",
            "b10",
        ],
    );
    add(
        0,
        &[
            "--network",
            "v20",
            "--netns",
            &n2,
            "--ip",
            "10.210.0.20",
            "a20",
        ],
    );
    // tcpdump says on stderr when it listens: the ping starts after that.
    let said = std::env::temp_dir().join(netd_tests::unique_name("vltcpdump"));
    let capture = outside
        .command("timeout")
        // The ARP broadcast that starts the ping is flooded to every port of the LAN; the
        // unicast that follows only to the learned ones.
        .args([
            "5",
            "tcpdump",
            "-i",
            "eth0",
            "-nn",
            "-e",
            "-c",
            "1",
            "vlan 10 and arp",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&said).unwrap())
        .spawn()
        .unwrap();
    let listening = netd_tests::wait_until(
        Duration::from_secs(5),
        || {
            std::fs::read_to_string(&said)
                .unwrap_or_default()
                .contains("listening on")
        },
        "tcpdump to listen",
    );
    let _ = std::fs::remove_file(&said);
    listening.unwrap();
    assert!(
        reaches(&c.containers[ns[0]], "10.210.0.11"),
        "VLAN 10 endpoints reach each other across hosts"
    );
    let seen = String::from_utf8_lossy(&capture.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        seen.contains("vlan 10") && seen.contains("who-has 10.210.0.11 tell 10.210.0.10"),
        "tagged on the wire: {seen}"
    );
    assert!(
        !reaches(&c.containers[ns[2]], "10.210.0.11"),
        "VLAN 20 must not reach VLAN 10 across hosts"
    );
    assert!(
        !reaches(&c.containers[ns[2]], "10.210.0.10"),
        "nor on the same host"
    );
}

#[test]
fn removing_the_network_restores_the_parent() {
    let mut c = Cluster::new("mr", 1, StoreKind::Etcd, 10).unwrap();
    let promisc = |c: &Cluster| {
        c.hosts[0]
            .ns
            .ip(&["-j", "link", "show", "ul"])
            .unwrap()
            .contains("PROMISC")
    };
    assert!(!promisc(&c));
    c.netd(
        0,
        &[
            "network",
            "create",
            "-d",
            "macvlan",
            "--parent",
            "ul",
            "--subnet",
            "10.201.0.0/24",
            "--ip-range",
            "10.201.0.128/26",
            "lan",
        ],
    )
    .unwrap();
    let a = c.container().unwrap();
    let na = c.containers[a].name.clone();
    c.netd(
        0,
        &["endpoint", "add", "--network", "lan", "--netns", &na, "one"],
    )
    .unwrap();
    assert!(
        promisc(&c),
        "parent in promiscuous mode while a macvlan endpoint uses it"
    );
    let hooks = c.hosts[0].pin_dir.join("links");
    assert!(hooks.join("ul@parent").exists());
    c.netd(0, &["endpoint", "rm", "one"]).unwrap();
    c.netd(0, &["network", "rm", "lan"]).unwrap();
    netd_tests::wait_until(
        Duration::from_secs(5),
        || (!promisc(&c)).then_some(()),
        "the parent to leave promiscuous mode",
    )
    .unwrap();
    assert!(!hooks.join("ul@parent").exists() && !hooks.join("ul@parent-egress").exists());
}
