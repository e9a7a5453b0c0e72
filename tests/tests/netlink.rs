#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! netd's netlink module against the real kernel (privileged).
//!
//! Each test plays a host in a namespace of its own (`H`, entered by a thread, as a daemon started
//! with `nsenter --net` would be) and a container namespace (`C`). Both are deleted on drop, and
//! every link a test makes lives in one of them, so a failing test leaves nothing behind. The
//! test that needs the daemon's own namespace removes its link with a guard.

use std::net::Ipv4Addr;

use netd::netlink::{self, EndpointLink, NetlinkError};
use netd_tests::{netns::Netns, unique_name};

/// Runs `f` on a thread inside `ns`.
fn inside<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let _in = netd::netns::enter(&ns.path()).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// Names of the links in `ns`.
fn links(ns: &Netns) -> Vec<String> {
    ns.ip(&["-o", "link", "show"])
        .unwrap()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

struct Lab {
    host: Netns,
    container: Netns,
    network: String,
}

impl Lab {
    fn new() -> Self {
        let host = Netns::new("nlh").unwrap();
        // The host has an `eth0` of its own: the container's must not collide with it.
        host.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ])
        .unwrap();
        Self {
            host,
            container: Netns::new("nlc").unwrap(),
            network: unique_name("nln"),
        }
    }

    fn endpoint<'a>(&'a self, netns: &'a std::path::Path) -> EndpointLink<'a> {
        EndpointLink {
            network: &self.network,
            endpoint: "web1",
            netns,
            ifname: "eth0",
            mac: "02:42:0a:09:00:02",
            address: Ipv4Addr::new(10, 9, 0, 2),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 9, 0, 1)),
            mtu: 1400,
        }
    }

    /// Asserts that the host namespace holds only what the lab put there.
    fn assert_untouched(&self) {
        let mut left = links(&self.host);
        left.sort();
        assert_eq!(left, ["eth0", "eth0p", "lo"]);
    }
}

#[test]
fn an_endpoint_is_plumbed_found_and_deleted() {
    let lab = Lab::new();
    let netns = lab.container.path();
    let spec = lab.endpoint(&netns);
    let host_if = inside(&lab.host, || netlink::create_endpoint(&spec)).unwrap();
    assert_eq!(host_if, netlink::host_ifname(&lab.network, "web1"));

    // Container side: renamed, addressed, up, MAC and MTU, default route; lo up.
    let eth0 = lab
        .container
        .ip(&["-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(eth0.contains("inet 10.9.0.2/24 brd 10.9.0.255"), "{eth0}");
    let link = lab
        .container
        .ip(&["-o", "link", "show", "dev", "eth0"])
        .unwrap();
    assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
    assert_eq!(lab.container.mac("eth0").unwrap(), [2, 0x42, 10, 9, 0, 2]);
    let routes = lab.container.ip(&["route", "show", "default"]).unwrap();
    assert!(routes.contains("default via 10.9.0.1 dev eth0"), "{routes}");
    let lo = lab
        .container
        .ip(&["-o", "link", "show", "dev", "lo"])
        .unwrap();
    assert!(lo.contains(",UP"), "{lo}");
    // The address is found on its interface from inside the container (how a daemon without
    // --uplink finds its own); an address nobody holds is on none.
    let holders = inside(&lab.container, || {
        (
            netlink::address_holder(Ipv4Addr::new(10, 9, 0, 2)),
            netlink::address_holder(Ipv4Addr::new(10, 9, 0, 3)),
        )
    });
    assert_eq!(holders.0.unwrap().as_deref(), Some("eth0"));
    assert_eq!(holders.1.unwrap(), None);

    // Host side: up, with the alias a restarted daemon finds it by.
    let (info, found, ifindex) = inside(&lab.host, || {
        (
            netlink::link_info(&host_if).unwrap(),
            netlink::local_endpoints().unwrap(),
            netlink::ifindex(&host_if),
        )
    });
    assert_eq!(info.mtu, 1400);
    assert!(!info.promisc);
    assert!(ifindex.is_some());
    assert_eq!(
        found.get(&(lab.network.clone(), "web1".to_string())),
        Some(&host_if)
    );
    let host_link = lab
        .host
        .ip(&["-o", "link", "show", "dev", &host_if])
        .unwrap();
    assert!(host_link.contains(",UP"), "{host_link}");
    assert!(!links(&lab.host).contains(&format!("{host_if}p")));

    inside(&lab.host, || {
        netlink::set_promisc(&host_if, true).unwrap();
        assert!(netlink::link_info(&host_if).unwrap().promisc);
        netlink::set_promisc(&host_if, false).unwrap();
        assert!(!netlink::link_info(&host_if).unwrap().promisc);
        netlink::delete_link(&host_if).unwrap();
        // Deleting what is gone is fine; asking about it is a typed error.
        netlink::delete_link(&host_if).unwrap();
        assert!(matches!(
            netlink::link_info(&host_if),
            Err(NetlinkError::NoSuchLink(name)) if name == host_if
        ));
        assert!(matches!(
            netlink::set_promisc(&host_if, true),
            Err(NetlinkError::NoSuchLink(_))
        ));
    });
    // The peer went with it.
    assert_eq!(links(&lab.container), ["lo"]);
}

#[test]
fn a_failed_address_add_leaves_nothing_behind() {
    let lab = Lab::new();
    let netns = lab.container.path();
    let spec = EndpointLink {
        prefix_len: 33,
        ..lab.endpoint(&netns)
    };
    let error = inside(&lab.host, || netlink::create_endpoint(&spec)).unwrap_err();
    assert!(
        matches!(&error, NetlinkError::Kernel { op, errno } if *errno == libc::EINVAL && op.starts_with("add address")),
        "{error}"
    );
    lab.assert_untouched();
}

#[test]
fn a_taken_interface_name_leaves_nothing_behind() {
    let lab = Lab::new();
    lab.container
        .ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ])
        .unwrap();
    let netns = lab.container.path();
    let spec = lab.endpoint(&netns);
    let error = inside(&lab.host, || netlink::create_endpoint(&spec)).unwrap_err();
    assert!(
        matches!(error, NetlinkError::AlreadyExists { .. }),
        "{error}"
    );
    let mut left = links(&lab.container);
    left.sort();
    assert_eq!(left, ["eth0", "eth1", "lo"]);
    lab.assert_untouched();
}

#[test]
fn an_unreachable_gateway_leaves_nothing_behind() {
    let lab = Lab::new();
    let netns = lab.container.path();
    let spec = EndpointLink {
        gateway: Some(Ipv4Addr::new(172, 16, 0, 1)),
        ..lab.endpoint(&netns)
    };
    let error = inside(&lab.host, || netlink::create_endpoint(&spec)).unwrap_err();
    assert!(matches!(error, NetlinkError::Kernel { .. }), "{error}");
    lab.assert_untouched();
    assert_eq!(links(&lab.container), ["lo"]);
}

#[test]
fn a_missing_namespace_is_a_typed_error() {
    let lab = Lab::new();
    let missing = std::path::PathBuf::from(format!("/run/netns/{}", unique_name("nlx")));
    let spec = lab.endpoint(&missing);
    let error = inside(&lab.host, || netlink::create_endpoint(&spec)).unwrap_err();
    assert!(matches!(error, NetlinkError::NoNetns(_)), "{error}");
    lab.assert_untouched();
    assert!(matches!(
        netlink::netns_path(&unique_name("nlx")),
        Err(NetlinkError::NoNetns(_))
    ));
}

#[test]
fn a_docker_endpoint_replaces_its_leftover() {
    let lab = Lab::new();
    let (host_if, peer) = inside(&lab.host, || {
        netlink::create_docker_endpoint(&lab.network, "c1", "02:42:0a:09:00:07", 1300).unwrap();
        // A second creation (a crash between create and delete) starts clean.
        netlink::create_docker_endpoint(&lab.network, "c1", "02:42:0a:09:00:08", 1350).unwrap()
    });
    assert_eq!(peer, format!("{host_if}p"));
    let peer_info = inside(&lab.host, || netlink::link_info(&peer)).unwrap();
    assert_eq!(peer_info.mtu, 1350);
    assert_eq!(peer_info.mac, [2, 0x42, 10, 9, 0, 8]);
    let host_link = lab
        .host
        .ip(&["-o", "link", "show", "dev", &host_if])
        .unwrap();
    assert!(host_link.contains(",UP"), "{host_link}");
    let found = inside(&lab.host, netlink::local_endpoints).unwrap();
    assert_eq!(
        found.get(&(lab.network.clone(), "c1".into())),
        Some(&host_if)
    );
    assert_eq!(found.len(), 1);
}

/// Deletes a link of the test process's own namespace on drop.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = netd_tests::ip(&["link", "del", &self.0]);
    }
}

/// The daemon calls these from inside its tokio handlers: they must not try to run a runtime of
/// their own on the caller's thread (that panics), whatever the runtime flavour.
#[test]
fn calls_from_inside_a_runtime_use_the_worker() {
    netd_tests::require_root();
    let network = unique_name("nlr");
    let _guard = LinkGuard(netlink::host_ifname(&network, "c1"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (host_if, peer) =
            netlink::create_docker_endpoint(&network, "c1", "02:42:0a:09:00:09", 1280).unwrap();
        assert_eq!(netlink::mtu(&peer).unwrap(), 1280);
        let found = netlink::local_endpoints().unwrap();
        assert_eq!(found.get(&(network.clone(), "c1".into())), Some(&host_if));
        assert_eq!(
            netlink::address_holder(Ipv4Addr::LOCALHOST)
                .unwrap()
                .as_deref(),
            Some("lo")
        );
        netlink::delete_link(&host_if).unwrap();
        assert!(netlink::ifindex(&peer).is_none());
    });
}
