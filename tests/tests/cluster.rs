#![allow(clippy::unwrap_used, clippy::expect_used, reason = "integration test: a panic is a failed test")]
//! The control plane end to end: real etcd (or the embedded store), a real `netd daemon` per
//! simulated host, the CLI as an operator types it, real traffic.

use std::time::Duration;

use netd_tests::cluster::{Cluster, StoreKind};

const SEED_NET: &[&str] = &[
    "network", "create", "-d", "overlay", "--subnet", "172.31.0.0/16", "--gateway", "172.31.0.2",
    "-o", "mtu=1200", "mynet",
];

fn ping(cluster: &Cluster, container: usize, to: &str) -> anyhow::Result<String> {
    cluster.containers[container].exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", to])
}

fn endpoint_ip(cluster: &Cluster, host: usize, args: &[&str]) -> String {
    let v = cluster.netd_json(host, args).unwrap();
    v["ip"].as_str().unwrap().to_string()
}

/// The seed's scenario on the given store: a network created on host 1 is used on host 2.
fn two_host_scenario(store: StoreKind) {
    let mut c = Cluster::new("cl", 2, store, 10).expect("cluster");
    c.netd(0, SEED_NET).unwrap();
    let c1 = c.container().unwrap();
    let c2 = c.container().unwrap();
    let ns1 = c.containers[c1].name.clone();
    let ns2 = c.containers[c2].name.clone();
    // Host 2 learns of the network through the store.
    c.wait_for(Duration::from_secs(5), || {
        let nets = c.netd_json(1, &["network", "ls"]).ok()?;
        (nets.as_array()?.len() == 1).then_some(())
    })
    .unwrap();
    let ip1 = endpoint_ip(&c, 0, &["endpoint", "add", "--network", "mynet", "--netns", &ns1, "web1"]);
    let ip2 = endpoint_ip(&c, 1, &["endpoint", "add", "--network", "mynet", "--netns", &ns2, "--ip", "172.31.0.9", "web2"]);
    assert_eq!(ip2, "172.31.0.9");
    assert_ne!(ip1, "172.31.0.2", "the gateway is never handed out");
    // The network's MTU reached the container.
    let link = c.containers[c1].ip(&["-o", "link", "show", "eth0"]).unwrap();
    assert!(link.contains("mtu 1200"), "{link}");
    c.wait_for(Duration::from_secs(5), || ping(&c, c1, &ip2).ok()).unwrap();
    assert!(ping(&c, c2, &ip1).unwrap().contains("3 received"));
    for (client, server_ip, server) in [(c1, &ip2, c2), (c2, &ip1, c1)] {
        let mut srv = c.containers[server]
            .command("iperf3")
            .args(["-s", "-1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let out = c.containers[client].exec("iperf3", &["-c", server_ip, "-n", "5M", "--connect-timeout", "3000"]);
        let _ = srv.kill();
        let _ = srv.wait();
        assert!(out.unwrap().contains("receiver"));
    }
}

#[test]
fn network_created_on_one_host_is_used_on_another_etcd() {
    two_host_scenario(StoreKind::Etcd);
}

#[test]
fn network_created_on_one_host_is_used_on_another_embedded_store() {
    two_host_scenario(StoreKind::Embedded);
}
