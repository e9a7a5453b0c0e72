//! `cargo xtask demo`: the seed's overlay scenario with netd instead of Docker's cluster store.
//! A real etcd and two simulated hosts (network namespaces on a switch), `netd daemon` on each,
//! the seed's network created on host 1 and used from both, ping and iperf3 across, then the
//! network, maps and counters shown and everything removed.

use std::{
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::Context as _;
use netd::api::{Endpoint, Network};
use netd_tests::cluster::{Cluster, StoreKind};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn step(title: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!INTERRUPTED.load(Ordering::SeqCst), "interrupted");
    println!("\n== {title}");
    Ok(())
}

/// Runs `netd ARGS` on host `i`, echoing the command line as an operator would type it.
fn netd(c: &Cluster, i: usize, args: &[&str]) -> anyhow::Result<String> {
    anyhow::ensure!(!INTERRUPTED.load(Ordering::SeqCst), "interrupted");
    println!("{}$ netd {}", c.hosts[i].name, args.join(" "));
    let out = c.netd(i, args)?;
    print!("{out}");
    Ok(out)
}

fn demo() -> anyhow::Result<()> {
    step("starting etcd, two hosts on a switch, and `netd daemon` on each")?;
    let mut c = Cluster::new("dm", 2, StoreKind::Etcd, 15)?;
    println!("etcd:   {}", c.store_url);
    for h in &c.hosts {
        println!(
            "{}: netns {}, VTEP {}, pins {}, log {}",
            h.name,
            h.ns.name,
            h.vtep,
            h.pin_dir.display(),
            h.log.display()
        );
    }

    step("the seed's network, created once on host 1")?;
    netd(&c, 0, netd_tests::cluster::SEED_NETWORK)?;
    netd_tests::wait_until(
        Duration::from_secs(10),
        || {
            let nets: Vec<Network> = c.netd_as(1, &["network", "ls"]).ok()?;
            (nets.len() == 1).then_some(())
        },
        "host 2 to list the network",
    )?;
    netd(&c, 1, &["network", "ls"])?;

    step("a container on each host (any network namespace will do)")?;
    let c1 = c.container()?;
    let c2 = c.container()?;
    let (ns1, ns2) = (c.containers[c1].name.clone(), c.containers[c2].name.clone());
    netd(
        &c,
        0,
        &[
            "endpoint",
            "add",
            "--network",
            "mynet",
            "--netns",
            &ns1,
            "web1",
        ],
    )?;
    netd(
        &c,
        1,
        &[
            "endpoint",
            "add",
            "--network",
            "mynet",
            "--netns",
            &ns2,
            "--ip",
            "172.31.0.9",
            "web2",
        ],
    )?;
    netd(&c, 1, &["endpoint", "ls"])?;
    let ip1 = c
        .netd_as::<Vec<Endpoint>>(0, &["endpoint", "ls"])?
        .into_iter()
        .find(|e| e.name == "web1")
        .map(|e| e.ip.to_string())
        .context("web1 not listed")?;

    step("ping across hosts, both ways")?;
    netd_tests::wait_until(
        Duration::from_secs(10),
        || c.containers[c1].exec("ping", &["-c", "1", "-W", "1", "172.31.0.9"]),
        "a ping across hosts",
    )?;
    print!(
        "{}",
        c.containers[c1].exec("ping", &["-c", "4", "-i", "0.2", "172.31.0.9"])?
    );
    print!(
        "{}",
        c.containers[c2].exec("ping", &["-c", "4", "-i", "0.2", &ip1])?
    );

    step("iperf3: 3 s of TCP from web1 (host 1) to web2 (host 2)")?;
    let client = netd_tests::netns::iperf3(
        &c.containers[c2],
        &c.containers[c1],
        "172.31.0.9",
        &["-t", "3", "-f", "g"],
    );
    for line in client?
        .lines()
        .filter(|l| l.contains("sender") || l.contains("receiver"))
    {
        println!("{line}");
    }

    step("what netd knows")?;
    netd(&c, 0, &["network", "inspect", "mynet"])?;
    netd(&c, 0, &["status"])?;
    netd(&c, 0, &["maps", "dump", "fdb"])?;
    netd(&c, 0, &["maps", "dump", "neigh"])?;
    step("counters of host 1 (non-zero; `netd maps dump stats` shows them all)")?;
    for (name, value) in netd::datapath::inspect::counters(&c.hosts[0].pin_dir)? {
        if value != 0 {
            println!("  {name:<28} {value}");
        }
    }

    step("cleaning up: endpoints, network, daemons, etcd, namespaces, pins")?;
    netd(&c, 0, &["endpoint", "rm", "web1"])?;
    netd(&c, 1, &["endpoint", "rm", "web2"])?;
    netd(&c, 0, &["network", "rm", "mynet"])?;
    drop(c);
    println!("done: nothing left behind");
    Ok(())
}

fn main() -> ExitCode {
    // Ctrl-C stops the child commands; the demo then unwinds and removes what it made.
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netd-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
