#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! Names across hosts without Docker: namespaces attached with `netd endpoint add NAME` resolve
//! each other by NAME through netd's DNS (their resolv.conf names 169.254.53.53), only within
//! the networks they are on; other names go to the host's resolvers.

use std::{net::Ipv4Addr, time::Duration};

use netd::api::Endpoint;
use netd_tests::{
    cluster::{Cluster, STORE_IP, StoreKind},
    dns::{FakeUpstream, lookup},
};

const DNS: &str = "169.254.53.53";

fn add(c: &Cluster, host: usize, network: &str, container: usize, name: &str) -> Ipv4Addr {
    let netns = c.containers[container].name.clone();
    let v: Endpoint = c
        .netd_as(
            host,
            &[
                "endpoint",
                "add",
                "--network",
                network,
                "--netns",
                &netns,
                name,
            ],
        )
        .unwrap();
    v.ip
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
