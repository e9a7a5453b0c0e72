#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! netd as Docker's network and IPAM driver, with the real engine: Debian's docker.io 20.10
//! running as two simulated hosts, `netd daemon` on each, etcd between them. The user types the
//! seed's commands with `-d netd` and no cluster store.

use std::{net::Ipv4Addr, time::Duration};

use netd::api::{Endpoint, Network, Status};
use netd_tests::{
    cluster::{Cluster, STORE_IP, StoreKind},
    dns::{FakeUpstream, parse_nslookup},
    docker::{DockerHost, Engine, EngineOptions, IMAGE},
    netns::Netns,
};

/// Engines first: they are dropped before the cluster's namespaces.
struct DockerCluster {
    dockers: Vec<DockerHost>,
    c: Cluster,
}

fn docker_cluster(tag: &str, engine: Engine) -> DockerCluster {
    docker_cluster_with(tag, engine, serde_json::json!({}), &[])
}

/// Like [`docker_cluster`], with a daemon.json for the engines and more `netd daemon` options.
fn docker_cluster_with(
    tag: &str,
    engine: Engine,
    daemon_json: serde_json::Value,
    netd_args: &[&str],
) -> DockerCluster {
    docker_cluster_on(tag, engine, StoreKind::Etcd, daemon_json, netd_args)
}

/// Like [`docker_cluster_with`], on the given store.
fn docker_cluster_on(
    tag: &str,
    engine: Engine,
    store: StoreKind,
    daemon_json: serde_json::Value,
    netd_args: &[&str],
) -> DockerCluster {
    let mut dockers = Vec::new();
    let c = Cluster::new_with(tag, 2, store, 10, |i, ns| {
        let options = EngineOptions {
            engine,
            daemon_json: daemon_json.clone(),
            ..EngineOptions::default()
        };
        let d = DockerHost::start_with_options(ns, &format!("{tag}-host{}", i + 1), &options)?;
        let mut args = vec![
            "--docker-plugin-dir".to_string(),
            d.plugin_dir().display().to_string(),
            "--docker-host".to_string(),
            d.socket().display().to_string(),
        ];
        args.extend(netd_args.iter().map(|a| a.to_string()));
        dockers.push(d);
        Ok(args)
    })
    .expect("cluster with Docker engines");
    let dc = DockerCluster { dockers, c };
    for i in 0..2 {
        netd_tests::wait_until(
            Duration::from_secs(20),
            || {
                let s: Status = dc.c.netd_as(i, &["status"]).ok()?;
                s.docker.starts_with("connected").then_some(())
            },
            "netd to connect to Docker",
        )
        .expect("netd connected to Docker");
    }
    dc
}

impl DockerCluster {
    fn docker(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        self.dockers[i].docker(args)
    }

    /// `docker network create -d netd --ipam-driver netd ARGS...` on host `i`.
    fn create_network(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["network", "create", "-d", "netd", "--ipam-driver", "netd"];
        all.extend_from_slice(args);
        self.docker(i, &all)
    }

    fn ip_of(&self, i: usize, container: &str, network: &str) -> String {
        let f = format!("{{{{.NetworkSettings.Networks.{network}.IPAddress}}}}");
        self.docker(i, &["inspect", "-f", &f, container])
            .unwrap()
            .trim()
            .to_string()
    }

    fn wait_network(&self, i: usize, name: &str, present: bool) {
        netd_tests::wait_until(
            Duration::from_secs(20),
            || {
                let ls = self
                    .docker(i, &["network", "ls", "--format", "{{.Name}} {{.Driver}}"])
                    .ok()?;
                (ls.lines().any(|l| l == format!("{name} netd")) == present).then_some(())
            },
            "Docker's network list to change",
        )
        .unwrap_or_else(|e| panic!("network {name} present={present} on host {}: {e}", i + 1));
    }
}

fn the_seeds_commands_work_with_dash_d_netd(engine: Engine) {
    the_seeds_commands(engine, StoreKind::Etcd);
}

/// The seed's exact setup: its cluster store was Consul. Once, on the current engine: what the
/// store changes is netd's side, which the 20.10 engine's run on etcd already meets.
#[test]
fn the_seeds_commands_work_on_consul() {
    the_seeds_commands(Engine::V26, StoreKind::Consul);
}

fn the_seeds_commands(engine: Engine, store: StoreKind) {
    let tag = if store == StoreKind::Consul {
        "dc"
    } else {
        "du"
    };
    let dc = docker_cluster_on(tag, engine, store, serde_json::json!({}), &[]);
    // On host A.
    dc.create_network(
        0,
        &[
            "--subnet",
            "172.31.0.0/16",
            "--gateway",
            "172.31.0.2",
            "-o",
            "com.docker.network.driver.mtu=1200",
            "mynet",
        ],
    )
    .unwrap();
    dc.docker(
        0,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "mynet",
            "-p",
            "15201:5201",
            IMAGE,
            "iperf3",
            "-s",
        ],
    )
    .unwrap();
    // On host B the network is already there.
    dc.wait_network(1, "mynet", true);
    let web_ip = dc.ip_of(0, "web", "mynet");
    assert!(
        web_ip.starts_with("172.31.") && web_ip != "172.31.0.2",
        "{web_ip}"
    );
    let out = dc
        .docker(
            1,
            &[
                "run",
                "--rm",
                "--network",
                "mynet",
                "--ip",
                "172.31.0.9",
                IMAGE,
                "ping",
                "-c",
                "3",
                &web_ip,
            ],
        )
        .unwrap();
    assert!(out.contains("3 packets received"), "{out}");
    // TCP across, and the MTU the user asked for.
    let out = dc
        .docker(
            1,
            &[
                "run",
                "--rm",
                "--network",
                "mynet",
                IMAGE,
                "iperf3",
                "-c",
                &web_ip,
                "-n",
                "5M",
            ],
        )
        .unwrap();
    assert!(out.contains("receiver"), "{out}");
    let mtu = dc
        .docker(0, &["exec", "web", "cat", "/sys/class/net/eth0/mtu"])
        .unwrap();
    assert_eq!(mtu.trim(), "1200");
    // The way out is Docker's own, as with its overlay: docker_gwbridge (eth1) has the default
    // route, with outbound NAT to the underlay and the `-p` mapping from it.
    let route = dc
        .docker(0, &["exec", "web", "ip", "route", "show", "default"])
        .unwrap();
    assert!(route.contains("dev eth1"), "{route}");
    let out = dc
        .docker(
            0,
            &[
                "exec",
                "web",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                &STORE_IP.to_string(),
            ],
        )
        .unwrap();
    assert!(out.contains("1 packets received"), "{out}");
    let host_a = dc.c.hosts[0].vtep.to_string();
    let out = dc.c.hosts[1]
        .ns
        .exec("iperf3", &["-c", &host_a, "-p", "15201", "-n", "1M"])
        .unwrap();
    assert!(out.contains("receiver"), "{out}");
    // Host B's container got the address it asked for, and the endpoint is gone after --rm.
    netd_tests::wait_until(
        Duration::from_secs(10),
        || {
            let eps: Vec<Endpoint> = dc.c.netd_as(0, &["endpoint", "ls"]).ok()?;
            (eps.len() == 1).then_some(())
        },
        "the --rm container's endpoint to go",
    )
    .unwrap();
}

fn networks_propagate_and_rm_removes_them_everywhere(engine: Engine) {
    let dc = docker_cluster("dp", engine);
    // Made with netd's own CLI: appears in both Dockers.
    dc.c.netd(
        0,
        &["network", "create", "--subnet", "10.77.0.0/24", "fromnetd"],
    )
    .unwrap();
    dc.wait_network(0, "fromnetd", true);
    dc.wait_network(1, "fromnetd", true);
    // Made with Docker on B: appears on A.
    dc.create_network(1, &["--subnet", "10.78.0.0/24", "fromdocker"])
        .unwrap();
    dc.wait_network(0, "fromdocker", true);
    // Removed with Docker on A: gone everywhere, store included; nothing comes back.
    dc.docker(0, &["network", "rm", "fromdocker"]).unwrap();
    dc.wait_network(1, "fromdocker", false);
    dc.wait_network(0, "fromdocker", false);
    let nets: Vec<Network> = dc.c.netd_as(0, &["network", "ls"]).unwrap();
    assert_eq!(nets.len(), 1, "{nets:?}");
    // The subject: the removed network stays gone for 2 s after every host saw it go (nothing
    // re-creates it from the store or the other engine). Its positive control is above: the
    // same network did propagate, within the same kind of wait.
    std::thread::sleep(Duration::from_secs(2));
    dc.wait_network(0, "fromdocker", false);
}

fn addresses_are_unique_across_hosts(engine: Engine) {
    let dc = docker_cluster("da", engine);
    // A second subnet, reached through the first one's gateway.
    dc.create_network(
        0,
        &[
            "--subnet",
            "10.79.0.0/28",
            "--gateway",
            "10.79.0.1",
            "--subnet",
            "10.79.1.0/28",
            "small",
        ],
    )
    .unwrap();
    dc.wait_network(1, "small", true);
    let dc = &dc;
    std::thread::scope(|s| {
        for i in 0..2 {
            for k in 0..4 {
                s.spawn(move || {
                    dc.docker(
                        i,
                        &[
                            "run",
                            "-d",
                            "--name",
                            &format!("c{k}"),
                            "--network",
                            "small",
                            IMAGE,
                            "sleep",
                            "1000",
                        ],
                    )
                    .unwrap();
                });
            }
        }
    });
    let mut ips: Vec<String> = (0..2)
        .flat_map(|i| (0..4).map(move |k| dc.ip_of(i, &format!("c{k}"), "small")))
        .collect();
    ips.sort();
    let before = ips.len();
    ips.dedup();
    assert_eq!(ips.len(), before, "an address was given twice: {ips:?}");
    // Docker's CLI hands the subnets over in no fixed order (a Go map), and addresses come from
    // the first one Docker names while it has room: all eight share a subnet, and `far` goes
    // into the other one.
    let (first, second) = if ips[0].starts_with("10.79.0.") {
        ("10.79.0.", "10.79.1.")
    } else {
        ("10.79.1.", "10.79.0.")
    };
    assert!(
        ips.iter().all(|ip| ip.starts_with(first)),
        "an address from a second subnet while the first had room: {ips:?}"
    );
    for i in 0..2 {
        let routes = dc.docker(i, &["exec", "c0", "ip", "route"]).unwrap();
        let own = dc.ip_of(i, "c0", "small");
        let (other, via) = if own.starts_with("10.79.0.") {
            ("10.79.1.0/28", "10.79.0.1")
        } else {
            ("10.79.0.0/28", "10.79.1.1")
        };
        assert!(
            routes.contains(&format!("{other} via {via} dev eth0")),
            "{own}: {routes}"
        );
    }
    // And traffic crosses between the subnets through the gateways, across hosts.
    let far_ip = format!("{second}9");
    dc.docker(
        1,
        &[
            "run",
            "-d",
            "--name",
            "far",
            "--network",
            "small",
            "--ip",
            &far_ip,
            IMAGE,
            "sleep",
            "1000",
        ],
    )
    .unwrap();
    assert!(
        dc.docker(0, &["exec", "c0", "ping", "-c", "1", "-W", "2", &far_ip])
            .is_ok(),
        "no way into the network's other subnet"
    );
}

fn a_container_removed_while_netd_is_down_is_released_when_it_returns(engine: Engine) {
    let mut dc = docker_cluster("dk", engine);
    dc.create_network(0, &["--subnet", "10.81.0.0/24", "n"])
        .unwrap();
    dc.docker(
        0,
        &[
            "run",
            "-d",
            "--name",
            "gone",
            "--network",
            "n",
            IMAGE,
            "sleep",
            "1000",
        ],
    )
    .unwrap();
    let ip = dc.ip_of(0, "gone", "n");
    dc.c.hosts[0].kill();
    // Docker cannot reach the plugin: its cleanup calls fail, the container goes anyway.
    let _ = dc.docker(0, &["rm", "-f", "gone"]);
    dc.c.hosts[0].start().unwrap();
    // "No endpoint here" only counts once the daemon's view holds this host (before, it shows
    // none of the host's endpoints). Well within the reconciler's periodic pass (15 s): released
    // by the pass the return triggers.
    let me = dc.c.hosts[0].name.clone();
    netd_tests::wait_until(
        Duration::from_secs(10),
        || {
            let s: Status = dc.c.netd_as(0, &["status"]).ok()?;
            (s.hosts.contains_key(&me) && s.endpoints_local == 0).then_some(())
        },
        "the endpoint to be released after netd came back",
    )
    .expect("endpoint released after netd came back");
    // The address is free again: asking for it works.
    let out = dc.docker(
        1,
        &["run", "--rm", "--network", "n", "--ip", &ip, IMAGE, "true"],
    );
    assert!(out.is_ok(), "{out:?}");
}

fn dockerd_restart_does_not_disturb_running_containers(engine: Engine) {
    let mut dc = docker_cluster("dr", engine);
    dc.create_network(0, &["--subnet", "10.82.0.0/24", "n"])
        .unwrap();
    dc.docker(
        0,
        &[
            "run",
            "-d",
            "--name",
            "pinger",
            "--network",
            "n",
            IMAGE,
            "sleep",
            "1000",
        ],
    )
    .unwrap();
    dc.wait_network(1, "n", true);
    dc.docker(
        1,
        &[
            "run",
            "-d",
            "--name",
            "target",
            "--network",
            "n",
            IMAGE,
            "sleep",
            "1000",
        ],
    )
    .unwrap();
    let b_ip = dc.ip_of(1, "target", "n");
    // Restart b's engine while a pings b: live-restore keeps b running, netd keeps forwarding.
    let mut ping = dc.dockers[0]
        .command()
        .args(["exec", "pinger", "ping", "-c", "150", "-i", "0.05", &b_ip])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The test's timeline, not a wait for readiness: 0.5 s of pings before the restart.
    std::thread::sleep(Duration::from_millis(500));
    dc.dockers[1].restart().unwrap();
    let status = ping.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(ping.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(
        status.success() && out.contains("150 packets received"),
        "{out}"
    );
}

fn bad_options_are_clear_errors(engine: Engine) {
    let dc = docker_cluster("de", engine);
    let e = dc
        .create_network(0, &["--subnet", "10.83.0.0/24", "-o", "mtu=abc", "bad"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("invalid mtu \\\"abc\\\"") || e.contains("invalid mtu \"abc\""),
        "{e}"
    );
    // A typo is refused, naming what netd knows; Docker's own com.docker.* keys pass.
    let e = dc
        .create_network(0, &["--subnet", "10.83.0.0/24", "-o", "mut=1200", "typo"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown option") && e.contains("mut") && e.contains("netd knows mtu"),
        "{e}"
    );
    dc.create_network(
        0,
        &[
            "--subnet",
            "10.83.0.0/24",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "-o",
            "com.docker.network.container_iface_prefix=nd",
            "docker_keys",
        ],
    )
    .unwrap();
    let published = netd_tests::wait_until(
        Duration::from_secs(20),
        || {
            dc.c.netd_as::<Network>(0, &["network", "inspect", "docker_keys"])
                .ok()
        },
        "the network to reach the store",
    )
    .unwrap();
    assert_eq!(published.mtu, Some(1400), "{published:?}");
    dc.create_network(0, &["--subnet", "10.84.0.0/16", "first"])
        .unwrap();
    let e = dc
        .create_network(0, &["--subnet", "10.84.1.0/24", "second"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("overlaps netd network") && e.contains("first"),
        "{e}"
    );
    let e = dc.create_network(0, &["nosubnet"]).unwrap_err().to_string();
    assert!(e.contains("explicit --subnet"), "{e}");
}

fn netd_keeps_serving_namespaces_while_docker_is_away_and_reconnects(engine: Engine) {
    let mut dc = docker_cluster("dw", engine);
    dc.dockers[0].stop();
    netd_tests::wait_until(
        Duration::from_secs(20),
        || {
            let s: Status = dc.c.netd_as(0, &["status"]).ok()?;
            s.docker.starts_with("unreachable").then_some(())
        },
        "netd to see Docker unreachable",
    )
    .expect("netd status says Docker is unreachable");
    // Namespaces are still served.
    dc.c.netd(
        0,
        &["network", "create", "--subnet", "10.85.0.0/24", "plain"],
    )
    .unwrap();
    let ns = dc.c.container().unwrap();
    let netns = dc.c.containers[ns].name.clone();
    dc.c.netd(
        0,
        &[
            "endpoint",
            "add",
            "--network",
            "plain",
            "--netns",
            &netns,
            "solo",
        ],
    )
    .unwrap();
    dc.dockers[0].restart().unwrap();
    netd_tests::wait_until(
        Duration::from_secs(30),
        || {
            let s: Status = dc.c.netd_as(0, &["status"]).ok()?;
            s.docker.starts_with("connected").then_some(())
        },
        "netd to reconnect to Docker",
    )
    .expect("netd reconnected to Docker");
    // And mirrors what happened meanwhile.
    dc.wait_network(0, "plain", true);
}

/// The edges of Docker's classic overlay, on netd: `-p` publishes a port on the host's address
/// (reachable from the LAN, shown by `docker port`), containers reach the outside through their
/// host, names and aliases resolve across hosts within a network (daemon.json's one `dns`
/// line), external names keep resolving, `--internal` has no way out, and a default-bridge
/// container cannot reach the network.
fn ports_outbound_and_names_work_as_on_dockers_overlay(engine: Engine) {
    let upstream = std::net::SocketAddr::from((STORE_IP, 5353));
    let upstream_arg = upstream.to_string();
    let dc = docker_cluster_with(
        "dx",
        engine,
        serde_json::json!({ "dns": [netd::dns::DEFAULT_ADDRESS.to_string()] }),
        &["--dns-upstream", &upstream_arg],
    );
    // "The LAN": a namespace on the hosts' switch, beyond both hosts.
    let lan = Netns::new("lan").unwrap();
    let port = format!("lp{}", std::process::id() % 100_000);
    netd_tests::ip(&[
        "link",
        "add",
        "eth0",
        "netns",
        &lan.name,
        "type",
        "veth",
        "peer",
        "name",
        &port,
        "netns",
        &dc.c.switch.name,
    ])
    .unwrap();
    dc.c.switch
        .ip(&["link", "set", &port, "master", "br0", "up"])
        .unwrap();
    lan.ip(&["addr", "add", "10.201.0.100/24", "dev", "eth0"])
        .unwrap();
    lan.ip(&["link", "set", "eth0", "up"]).unwrap();
    let outside = Ipv4Addr::new(10, 201, 0, 100);
    let _resolver =
        FakeUpstream::start(&dc.c.switch, upstream, &[("lan.example.test", outside)]).unwrap();

    dc.create_network(
        0,
        &[
            "--subnet",
            "172.31.0.0/16",
            "--gateway",
            "172.31.0.2",
            "mynet",
        ],
    )
    .unwrap();
    dc.create_network(0, &["--subnet", "172.33.0.0/16", "other"])
        .unwrap();
    dc.create_network(0, &["--internal", "--subnet", "172.34.0.0/16", "closed"])
        .unwrap();
    for net in ["mynet", "other", "closed"] {
        dc.wait_network(1, net, true);
    }
    let run = |i: usize, args: &[&str]| {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        dc.docker(i, &all)
            .unwrap_or_else(|e| panic!("docker run on host {}: {e}", i + 1));
    };
    // The seed's container, on host 2, publishing its port.
    run(
        1,
        &[
            "--name",
            "tomcat",
            "--network",
            "mynet",
            "--network-alias",
            "www",
            "-p",
            "8080:8080",
            IMAGE,
            "sh",
            "-c",
            "while true; do echo hi | nc -l -p 8080; done",
        ],
    );
    run(
        0,
        &[
            "--name",
            "client",
            "--network",
            "mynet",
            IMAGE,
            "sleep",
            "1000",
        ],
    );
    run(
        0,
        &[
            "--name",
            "stranger",
            "--network",
            "other",
            IMAGE,
            "sleep",
            "1000",
        ],
    );
    run(
        0,
        &[
            "--name",
            "hermit",
            "--network",
            "closed",
            IMAGE,
            "sleep",
            "1000",
        ],
    );
    let tomcat_ip: Ipv4Addr = dc.ip_of(1, "tomcat", "mynet").parse().unwrap();
    let client_ip: Ipv4Addr = dc.ip_of(0, "client", "mynet").parse().unwrap();

    // -p: published on host 2's address, reachable from the LAN, shown by docker port.
    let ports = dc.docker(1, &["port", "tomcat"]).unwrap();
    assert!(ports.contains("8080/tcp -> 0.0.0.0:8080"), "{ports}");
    // (busybox's static wget crashes on this system: a TCP exchange with nc instead.)
    let page = netd_tests::wait_until(
        Duration::from_secs(20),
        || {
            let out = lan
                .exec("busybox", &["nc", "-w", "2", "10.201.0.2", "8080"])
                .ok()?;
            (!out.trim().is_empty()).then_some(out)
        },
        "the published port to answer",
    );
    assert_eq!(page.unwrap().trim(), "hi");
    // Outbound: a mynet-only container reaches the LAN through its host.
    assert!(
        dc.docker(
            0,
            &[
                "exec",
                "client",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "10.201.0.100"
            ]
        )
        .is_ok(),
        "no way out"
    );
    // The gateway address answers, as on Docker's overlay.
    assert!(
        dc.docker(
            0,
            &["exec", "client", "ping", "-c", "1", "-W", "2", "172.31.0.2"]
        )
        .is_ok(),
        "the gateway does not answer"
    );
    // --internal: none, on the host that created the network and on the others.
    run(
        1,
        &[
            "--name",
            "hermit2",
            "--network",
            "closed",
            IMAGE,
            "sleep",
            "1000",
        ],
    );
    assert!(
        dc.docker(
            1,
            &[
                "exec",
                "hermit2",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "10.201.0.100"
            ]
        )
        .is_err(),
        "an --internal network's container got out on another host"
    );
    assert!(
        dc.docker(
            0,
            &[
                "exec",
                "hermit",
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "10.201.0.100"
            ]
        )
        .is_err()
    );
    // A default-bridge container cannot reach the network.
    assert!(
        dc.docker(
            0,
            &[
                "run",
                "--rm",
                IMAGE,
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                &tomcat_ip.to_string()
            ]
        )
        .is_err()
    );
    // Names and aliases across hosts, both ways; not from another network; external names.
    let resolve = |i: usize, container: &str, name: &str| -> Vec<Ipv4Addr> {
        dc.docker(i, &["exec", container, "nslookup", name])
            .map(|out| parse_nslookup(&out))
            .unwrap_or_default()
    };
    netd_tests::wait_until(
        Duration::from_secs(30),
        || (resolve(0, "client", "tomcat") == vec![tomcat_ip]).then_some(()),
        "tomcat to resolve on host 1",
    )
    .unwrap_or_else(|e| panic!("tomcat from host 1: {e}"));
    assert_eq!(resolve(0, "client", "www"), vec![tomcat_ip]);
    netd_tests::wait_until(
        Duration::from_secs(30),
        || (resolve(1, "tomcat", "client") == vec![client_ip]).then_some(()),
        "client to resolve on host 2",
    )
    .unwrap_or_else(|e| panic!("client from host 2: {e}"));
    assert!(
        resolve(0, "stranger", "tomcat").is_empty(),
        "a name leaked into another network"
    );
    assert_eq!(resolve(0, "client", "lan.example.test"), vec![outside]);
    assert!(
        dc.docker(
            0,
            &["exec", "client", "ping", "-c", "1", "-W", "2", "tomcat"]
        )
        .is_ok()
    );
    // Gone with its container.
    dc.docker(1, &["rm", "-f", "tomcat"]).unwrap();
    netd_tests::wait_until(
        Duration::from_secs(30),
        || resolve(0, "client", "tomcat").is_empty().then_some(()),
        "tomcat to stop resolving",
    )
    .unwrap_or_else(|e| panic!("tomcat still resolves: {e}"));
}

/// Docker's address claims were one per host: a late `ReleaseAddress` for a container gone
/// (here sent as Docker would, after another container took the same address) deleted the
/// live container's claim, and the next `--ip` of that address was handed out twice. Now the
/// claim is bound to its endpoint and outlives the late release; the first, timely release
/// (container a's) is the control.
#[test]
fn a_late_address_release_never_takes_a_live_containers_claim() {
    let dc = docker_cluster("dl", Engine::V26);
    dc.create_network(0, &["--subnet", "10.92.0.0/24", "late"])
        .unwrap();
    let run = |name: &str| {
        dc.docker(
            0,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "late",
                "--ip",
                "10.92.0.10",
                IMAGE,
                "sleep",
                "1000",
            ],
        )
    };
    run("late-a").unwrap();
    dc.docker(0, &["rm", "-f", "late-a"]).unwrap();
    run("late-b").unwrap();
    assert_eq!(dc.ip_of(0, "late-b", "late"), "10.92.0.10");
    // Docker's pool IDs name their subnet; netd rebuilds an unknown one from it.
    let release = r#"{"PoolID": "netd|10.92.0.0/24||9999", "Address": "10.92.0.10"}"#;
    let socket = dc.dockers[0].plugin_dir().join("netd.sock");
    let (code, body) =
        netd_tests::cluster::post_unix(&socket, "/IpamDriver.ReleaseAddress", release).unwrap();
    assert_eq!(code, 200, "{body}");
    let claim =
        dc.c.store_owned()
            .unwrap()
            .into_iter()
            .find(|o| {
                o.kind == netd_tests::cluster::OwnedKind::Claim
                    && (o.network.as_str(), o.name.as_str()) == ("late", "10.92.0.10")
            })
            .map(|o| o.value);
    assert!(
        claim.is_some_and(|owner| owner.contains('/')),
        "b's claim is gone"
    );
    let e = run("late-c").unwrap_err().to_string();
    assert!(e.contains("already in use"), "{e}");
}

/// Sends SIGCONT to a stopped dockerd when dropped, so that a failed test still leaves an
/// engine its fixture can stop.
struct Stopped(libc::pid_t);

impl Stopped {
    fn new(pid: u32) -> Self {
        let pid = libc::pid_t::try_from(pid).unwrap();
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// A dockerd that stops answering (SIGSTOP: its socket still accepts connections) must not
/// hold netd's calls for ever: they time out, `netd status` says so, and netd follows the
/// engine again once it answers. netd's own client, so one engine is enough.
#[test]
fn engine_api_calls_time_out_when_dockerd_hangs() {
    let dc = docker_cluster("dh", Engine::V26);
    let docker = |dc: &DockerCluster| -> Option<String> {
        let s: Status = dc.c.netd_as(0, &["status"]).ok()?;
        Some(s.docker)
    };
    let hung = Stopped::new(dc.dockers[0].dockerd_pid().unwrap());
    let said = netd_tests::wait_until(
        Duration::from_secs(45),
        || docker(&dc).filter(|d| d.starts_with("unreachable") && d.contains("did not answer")),
        "netd to give up on the hung engine",
    )
    .unwrap();
    assert!(said.contains("within 10 s"), "{said}");
    drop(hung);
    netd_tests::wait_until(
        Duration::from_secs(30),
        || docker(&dc).filter(|d| d.starts_with("connected")),
        "netd to follow the engine again",
    )
    .unwrap();
}

/// Issue 24, "Containers inject VXLAN into other networks", with the real engines: a container
/// with Docker's defaults on host 1 (on a netd network, so with Docker's gateway bridge for the
/// way out) sends a plain UDP datagram, no capability needed, to host 2's VTEP:4789, holding a
/// VXLAN header for another network and a frame from that network's endpoint on host 1.
/// docker_gwbridge and Docker's masquerade gave it host 1's VTEP as its source, and host 2
/// delivered the frame into the other network. Now host 1's uplink lets no VXLAN from its VTEP
/// out that netd did not encapsulate (`drop-foreign-vxlan`). Positive controls in the same
/// setup: the container's datagram to another port of host 2's VTEP arrives from host 1's VTEP
/// (the path is Docker's masquerade), and the endpoint it claimed to be reaches the target.
fn containers_inject_vxlan_into_other_networks_through_docker_gwbridge(engine: Engine) {
    use std::net::{SocketAddr, UdpSocket};

    let dc = docker_cluster("dv", engine);
    dc.create_network(0, &["--subnet", "172.31.0.0/16", "mynet"])
        .unwrap();
    dc.create_network(0, &["--subnet", "172.33.0.0/16", "other"])
        .unwrap();
    for net in ["mynet", "other"] {
        dc.wait_network(1, net, true);
    }
    for (i, name, net) in [
        (0, "injector", "mynet"),
        (0, "bystander", "other"),
        (1, "target", "other"),
    ] {
        dc.docker(
            i,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                net,
                IMAGE,
                "sleep",
                "1000",
            ],
        )
        .unwrap_or_else(|e| panic!("docker run {name}: {e}"));
    }
    let netns_of = |i: usize, container: &str| {
        let pid = dc
            .docker(i, &["inspect", "-f", "{{.State.Pid}}", container])
            .unwrap();
        std::path::PathBuf::from(format!("/proc/{}/ns/net", pid.trim()))
    };
    let mac_of = |i: usize, container: &str, network: &str| {
        let f = format!("{{{{.NetworkSettings.Networks.{network}.MacAddress}}}}");
        let mac = dc.docker(i, &["inspect", "-f", &f, container]).unwrap();
        netd_tests::netns::parse_mac(mac.trim()).unwrap()
    };
    let (bystander_ip, target_ip): (Ipv4Addr, Ipv4Addr) = (
        dc.ip_of(0, "bystander", "other").parse().unwrap(),
        dc.ip_of(1, "target", "other").parse().unwrap(),
    );
    // Both hosts hold both endpoints of `other` once the bystander reaches the target.
    netd_tests::wait_until(
        Duration::from_secs(20),
        || {
            let to = target_ip.to_string();
            dc.docker(0, &["exec", "bystander", "ping", "-c", "1", "-W", "1", &to])
                .ok()
        },
        "the bystander to reach the target",
    )
    .unwrap();
    let injector = netns_of(0, "injector");
    let send_from = |netns: std::path::PathBuf, sport: u16, payload: Vec<u8>, to: SocketAddr| {
        std::thread::spawn(move || {
            let _in = netd::netns::enter(&netns).unwrap();
            let sock = UdpSocket::bind(("0.0.0.0", sport)).unwrap();
            sock.send_to(&payload, to).unwrap();
        })
        .join()
        .unwrap();
    };

    // The path: masqueraded to host 1's VTEP.
    let (vtep1, vtep2) = (dc.c.hosts[0].vtep, dc.c.hosts[1].vtep);
    let listener = {
        let _in = netd::netns::enter(&dc.c.hosts[1].ns.path()).unwrap();
        UdpSocket::bind((vtep2, 9998)).unwrap()
    };
    listener
        .set_read_timeout(Some(netd_tests::patience(Duration::from_secs(2))))
        .unwrap();
    send_from(
        injector.clone(),
        0,
        b"hello".to_vec(),
        SocketAddr::from((vtep2, 9998)),
    );
    let mut buffer = [0u8; 16];
    let (_, from) = listener.recv_from(&mut buffer).unwrap();
    assert_eq!(from.ip(), vtep1, "masqueraded to host 1's VTEP");

    let other: Network = dc.c.netd_as(0, &["network", "inspect", "other"]).unwrap();
    let inner = netd_tests::pkt::udp(
        mac_of(0, "bystander", "other"),
        mac_of(1, "target", "other"),
        bystander_ip,
        target_ip,
        6001,
        9999,
        0,
    );
    let mut injected = vec![0x08, 0, 0, 0];
    injected.extend_from_slice(&other.vni.to_be_bytes()[1..]);
    injected.push(0);
    injected.extend_from_slice(&inner);

    let counter = |name: &str| {
        netd::datapath::inspect::counters(&dc.c.hosts[0].pin_dir)
            .unwrap()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| v)
    };
    let before = counter("drop-foreign-vxlan");
    let mut counted = Ok(());
    let received = netd_tests::lab::receives_udp(netns_of(1, "target"), 9999, 5555, || {
        send_from(
            injector.clone(),
            0,
            injected,
            SocketAddr::from((vtep2, 4789)),
        );
        counted = netd_tests::wait_until(
            Duration::from_secs(2),
            || (counter("drop-foreign-vxlan") == before + 1).then_some(()),
            "host 1 to count the datagram as drop-foreign-vxlan",
        );
        send_from(
            netns_of(0, "bystander"),
            5555,
            b"control".to_vec(),
            SocketAddr::from((target_ip, 9999)),
        );
    })
    .unwrap();
    assert_eq!(received, [5555], "source ports of what reached the target");
    counted.unwrap();
}

/// Every test above, once per engine: Debian's 20.10 and trixie's 26.1.
macro_rules! on_each_engine {
    ($($name:ident),* $(,)?) => {
        mod docker_20 {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Engine::V20);
                }
            )*
        }
        mod docker_26 {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Engine::V26);
                }
            )*
        }
    };
}

on_each_engine!(
    containers_inject_vxlan_into_other_networks_through_docker_gwbridge,
    ports_outbound_and_names_work_as_on_dockers_overlay,
    the_seeds_commands_work_with_dash_d_netd,
    networks_propagate_and_rm_removes_them_everywhere,
    addresses_are_unique_across_hosts,
    a_container_removed_while_netd_is_down_is_released_when_it_returns,
    dockerd_restart_does_not_disturb_running_containers,
    bad_options_are_clear_errors,
    netd_keeps_serving_namespaces_while_docker_is_away_and_reconnects,
);
