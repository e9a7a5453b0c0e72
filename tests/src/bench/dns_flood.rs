//! `netd-bench --dns-flood` (`cargo xtask bench --dns-flood`): one container floods its DNS
//! listener (TCP connections held open, re-opened when closed, and UDP queries as fast as one
//! thread sends them, for names that go upstream) while the bench checks, every second, that
//! the daemon is up and `netd status` healthy, that a store change from the other host (an
//! endpoint added there) reaches this host's FDB, and that the flooder's neighbour gets its
//! answer; and samples the daemon's RSS, descriptors and CPU from /proc.

use std::{
    net::SocketAddr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use netd::api::{Endpoint, Status};

use crate::{
    cluster::{Cluster, STORE_IP, StoreKind},
    dns::{FakeUpstream, addresses, ask},
    dns_flood::{Flood, FloodConfig, ProcessSample, cpu_percent, sample},
};

#[derive(Clone, Debug)]
pub struct FloodBench {
    pub seconds: u64,
    pub tcp_connections: usize,
}

/// One second of the flood.
struct Tick {
    second: u64,
    rss_kib: u64,
    fds: usize,
    cpu: f64,
    tcp_open: u64,
    udp_sent: u64,
    udp_answered: u64,
    /// How long an endpoint added on the other host took to reach this host's FDB.
    change: Option<Duration>,
    neighbour: Option<Duration>,
    healthy: bool,
}

pub fn run(config: &FloodBench) -> anyhow::Result<()> {
    let upstream_addr = SocketAddr::from((STORE_IP, 5353));
    let upstream_arg = upstream_addr.to_string();
    let mut c = Cluster::new_with("df", 2, StoreKind::Etcd, 10, |_, _| {
        Ok(vec![
            "--no-docker".into(),
            "--dns-upstream".into(),
            upstream_arg.clone(),
        ])
    })?;
    let _upstream = FakeUpstream::start(&c.switch, upstream_addr, &[])?;
    c.netd(
        0,
        &["network", "create", "--subnet", "172.27.0.0/16", "mynet"],
    )?;
    let (flooder, neighbour, far) = (c.container()?, c.container()?, c.container()?);
    add(&c, 0, flooder, "flooder")?;
    add(&c, 0, neighbour, "neighbour")?;
    let web = add(&c, 1, far, "web")?;
    let dns = netd::dns::DEFAULT_ADDRESS;
    crate::wait_until(
        Duration::from_secs(10),
        || ask(&c.containers[neighbour], dns, "web").filter(|a| addresses(a) == vec![web.ip]),
        "web to resolve before the flood",
    )?;
    let pid = c.hosts[0].pid().context("host 0's daemon is not running")?;

    // Idle first: what the flood adds to.
    let idle_from = sample(pid)?;
    std::thread::sleep(Duration::from_secs(2));
    let idle_to = sample(pid)?;
    eprintln!(
        "dns-flood: idle: RSS {} MiB, {} descriptors, CPU {:.1} %",
        idle_to.rss_kib / 1024,
        idle_to.fds,
        cpu_percent(&idle_from, &idle_to)
    );
    eprintln!(
        "dns-flood: {} TCP connections held to {dns}:53 and a UDP flood, for {} s",
        config.tcp_connections, config.seconds
    );
    let flood = Flood::start(
        &c.containers[flooder],
        &FloodConfig {
            target: dns,
            tcp_connections: config.tcp_connections,
            udp_rate: 0,
        },
    )?;
    let counts = flood.counts.clone();
    let started = Instant::now();
    let mut ticks = Vec::new();
    let mut last = sample(pid)?;
    for second in 1..=config.seconds {
        let due = started + Duration::from_secs(second);
        // The checks of this second: a store change, the neighbour's query, the status.
        let ns = c.container()?;
        let change = {
            let at = Instant::now();
            let added = add(&c, 1, ns, &format!("late{second}"))?;
            let mac = added.mac.to_string();
            crate::wait_until(
                Duration::from_secs(10),
                || {
                    c.fdb(0)
                        .ok()?
                        .iter()
                        .any(|e| e.get("mac").and_then(|m| m.as_str()) == Some(mac.as_str()))
                        .then_some(())
                },
                "the new endpoint in this host's FDB",
            )
            .ok()
            .map(|()| at.elapsed())
        };
        let neighbour = {
            let at = Instant::now();
            ask(&c.containers[neighbour], dns, "web")
                .filter(|a| addresses(a) == vec![web.ip])
                .map(|_| at.elapsed())
        };
        let healthy = c.netd_as::<Status>(0, &["status"]).is_ok_and(|s| s.healthy);
        if let Some(rest) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
        let now = sample(pid).context("the daemon ended during the flood")?;
        ticks.push(Tick {
            second,
            rss_kib: now.rss_kib,
            fds: now.fds,
            cpu: cpu_percent(&last, &now),
            tcp_open: counts.tcp_open.load(Ordering::Relaxed),
            udp_sent: counts.udp_sent.load(Ordering::Relaxed),
            udp_answered: counts.udp_answered.load(Ordering::Relaxed),
            change,
            neighbour,
            healthy,
        });
        last = now;
    }
    let opened = counts.tcp_opened.load(Ordering::Relaxed);
    drop(flood);
    let alive = c.hosts[0].exited().is_none();
    print_report(&ticks, opened, alive, &idle_to);
    Ok(())
}

fn add(c: &Cluster, host: usize, ns: usize, name: &str) -> anyhow::Result<Endpoint> {
    c.endpoint_add(host, "mynet", ns, name, &[])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "none".into(), |d| format!("{}", d.as_millis()))
}

fn print_report(ticks: &[Tick], opened: u64, alive: bool, idle: &ProcessSample) {
    println!(
        "{:>3} {:>8} {:>6} {:>6} {:>8} {:>10} {:>10} {:>10} {:>11} {:>7}",
        "s",
        "RSS MiB",
        "fds",
        "CPU %",
        "TCP open",
        "UDP sent",
        "answered",
        "change ms",
        "neighbour",
        "healthy"
    );
    for t in ticks {
        println!(
            "{:>3} {:>8.1} {:>6} {:>6.1} {:>8} {:>10} {:>10} {:>10} {:>11} {:>7}",
            t.second,
            t.rss_kib as f64 / 1024.0,
            t.fds,
            t.cpu,
            t.tcp_open,
            t.udp_sent,
            t.udp_answered,
            ms(t.change),
            ms(t.neighbour),
            t.healthy
        );
    }
    let peak_rss = ticks.iter().map(|t| t.rss_kib).max().unwrap_or(0);
    let peak_fds = ticks.iter().map(|t| t.fds).max().unwrap_or(0);
    let cpu: Vec<f64> = ticks.iter().map(|t| t.cpu).collect();
    let mean_cpu = cpu.iter().sum::<f64>() / cpu.len().max(1) as f64;
    let max_cpu = cpu.iter().copied().fold(0.0, f64::max);
    let changes: Vec<Duration> = ticks.iter().filter_map(|t| t.change).collect();
    let worst_change = changes.iter().max().copied();
    let answered = ticks.iter().filter(|t| t.neighbour.is_some()).count();
    let healthy = ticks.iter().filter(|t| t.healthy).count();
    let sent = ticks.last().map_or(0, |t| t.udp_sent);
    let replies = ticks.last().map_or(0, |t| t.udp_answered);
    println!();
    println!("daemon: {}", if alive { "up" } else { "ENDED" });
    println!(
        "daemon RSS: idle {:.1} MiB, peak {:.1} MiB; descriptors: idle {}, peak {peak_fds}",
        idle.rss_kib as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        idle.fds
    );
    println!("daemon CPU: mean {mean_cpu:.1} %, max {max_cpu:.1} % of one core");
    println!(
        "flood: {opened} TCP connections opened, {sent} UDP queries sent ({:.0}/s), {replies} answered",
        sent as f64 / ticks.len().max(1) as f64
    );
    println!(
        "store changes: {} of {} reached this host's FDB, the slowest in {} ms (from the \
         `netd endpoint add` on the other host to `netd maps dump fdb` here)",
        changes.len(),
        ticks.len(),
        ms(worst_change)
    );
    println!(
        "neighbour answered: {answered} of {}; `netd status` healthy: {healthy} of {}",
        ticks.len(),
        ticks.len()
    );
}
