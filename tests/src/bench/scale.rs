//! `cargo xtask bench --scale`: the control plane at cluster sizes, with a real etcd (or Consul,
//! `--scale-store consul`) and one real daemon measured.
//!
//! A thousand synthetic hosts and a hundred networks are written into the store; the measured
//! host has an endpoint of its own in every network, so it programs every peer. Endpoints are
//! written in bulk up to each size (1k, 10k, 100k by default), and for each size the time from
//! the end of the write until the maps hold every entry is taken. Then, with all of them in the
//! store: the latency from one store change to the map entry (polling the pinned map), a
//! `kill -9` and restart of the daemon until it is synced again while a ping runs through it,
//! its memory per endpoint, and the lease renewals both real hosts missed.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{HashMap as BpfHashMap, MapData};
use netd::api::{Endpoint, LinkState, Status};
use netd_common::maps::{FdbEntry, FdbKey, names};
use netd_store::{Backend, schema::Mac};
use serde_json::{Value, json};

use crate::{
    bulk::Synthetic,
    cluster::{Cluster, StoreKind},
};

/// What a run does.
#[derive(Clone, Debug)]
pub struct ScaleConfig {
    /// Endpoint counts to converge at, ascending.
    pub sizes: Vec<usize>,
    pub hosts: usize,
    pub networks: usize,
    /// Store changes timed at the largest size.
    pub samples: usize,
    pub store: StoreKind,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        Self {
            sizes: vec![1_000, 10_000, 100_000],
            hosts: 1_000,
            networks: 100,
            samples: 200,
            store: StoreKind::Etcd,
        }
    }
}

/// The goals on this 2-core VM.
const CONVERGE_GOAL: Duration = Duration::from_secs(5);
const P99_GOAL: Duration = Duration::from_millis(100);
const RESTART_GOAL: Duration = Duration::from_secs(5);
const RSS_GOAL_BYTES: f64 = 1024.0;

#[derive(Debug, Default)]
struct Results {
    /// (size, write seconds, converge seconds after the write).
    converge: Vec<(usize, f64, f64)>,
    latencies_ms: Vec<f64>,
    restart_synced: Option<f64>,
    restart_ping: (u32, u32),
    rss_base_kb: u64,
    rss_full_kb: u64,
    missed_renewals: u64,
    registrations: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// Entries of NETD_FDB as the daemon last wrote them (its status; the kernel's map agrees
/// unless a write failed, which the status would show).
fn fdb_entries(c: &Cluster, host: usize) -> Option<u64> {
    let status: Status = c.netd_as(host, &["status"]).ok()?;
    let fdb = status.maps.iter().find(|m| m.name == names::FDB)?;
    Some(fdb.entries as u64)
}

fn wait_fdb(
    c: &Cluster,
    host: usize,
    at_least: u64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if fdb_entries(c, host).is_some_and(|n| n >= at_least) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "host {} holds {:?} FDB entries, not {at_least}, after {timeout:?}; log: {}",
            host + 1,
            fdb_entries(c, host),
            c.hosts[host].log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run(config: &ScaleConfig, json_out: Option<&Path>) -> anyhow::Result<()> {
    let largest = config.sizes.iter().copied().max().unwrap_or(0);
    let started = Instant::now();
    eprintln!(
        "scale: {:?}, 2 real hosts, {} synthetic hosts, {} networks, up to {largest} endpoints",
        config.store, config.hosts, config.networks
    );
    let capacity = (largest + 4096).next_power_of_two().to_string();
    let vteps = (config.hosts * config.networks + 4096)
        .next_power_of_two()
        .to_string();
    let mut c = Cluster::new_with("sc", 2, config.store, 15, |_, _| {
        Ok(vec![
            "--no-docker".into(),
            "--max-endpoints".into(),
            capacity.clone(),
            "--max-vteps".into(),
            vteps.clone(),
        ])
    })?;
    let synthetic = Synthetic::new(config.hosts, config.networks);
    c.with_store(move |store| async move { synthetic.write_networks_and_hosts(&store).await })?;
    eprintln!(
        "scale: {} networks and {} hosts written",
        config.networks, config.hosts
    );

    // The measured host joins every network; host 2 joins the first (the ping's far end).
    let mut locals = 0u64;
    for j in 0..config.networks {
        let ns = c.container()?;
        let netns = c.containers[ns].name.clone();
        let network = Synthetic::network_name(j);
        c.netd(
            0,
            &[
                "endpoint",
                "add",
                "--network",
                &network,
                "--netns",
                &netns,
                &format!("m{j}"),
            ],
        )?;
        locals += 1;
    }
    let far = c.container()?;
    let netns = c.containers[far].name.clone();
    let peer: Endpoint = c.netd_as(
        1,
        &[
            "endpoint",
            "add",
            "--network",
            "syn0",
            "--netns",
            &netns,
            "far",
        ],
    )?;
    let peer_ip = peer.ip.to_string();
    wait_fdb(&c, 0, locals + 1, Duration::from_secs(30))?;
    eprintln!("scale: {locals} local endpoints on the measured host");

    let pid = c.hosts[0].pid().context("no daemon")?;
    let mut results = Results {
        rss_base_kb: rss_kb(pid)?,
        ..Results::default()
    };
    let mut written = 0;
    for &size in &config.sizes {
        let t = Instant::now();
        let range = written..size;
        c.with_store(move |store| async move { synthetic.write_endpoints(store, range, 8).await })?;
        let write = t.elapsed();
        written = size;
        let converge = wait_fdb(&c, 0, size as u64 + locals + 1, Duration::from_secs(300))?;
        eprintln!(
            "scale: {size} endpoints: written in {:.1} s, converged {:.2} s after",
            write.as_secs_f64(),
            converge.as_secs_f64()
        );
        results
            .converge
            .push((size, write.as_secs_f64(), converge.as_secs_f64()));
    }
    results.rss_full_kb = rss_kb(pid)?;

    results.latencies_ms = change_latencies(&c, synthetic, written, config.samples)?;
    eprintln!("scale: {} store changes timed", results.latencies_ms.len());

    let (synced, ping) = restart(&mut c, &peer_ip)?;
    results.restart_synced = synced;
    results.restart_ping = ping;
    for host in 0..2 {
        let status: Status = c.netd_as(host, &["status"])?;
        let lease = &status.store.lease;
        results.missed_renewals += lease.missed_renewals;
        results.registrations += lease.registrations;
    }
    print!("{}", render(config.store, &results));
    eprintln!("scale: done in {:.0} s", started.elapsed().as_secs_f64());
    if let Some(file) = json_out {
        let text = serde_json::to_string_pretty(&to_json(config, &results))?;
        std::fs::write(file, text + "\n")
            .with_context(|| format!("cannot write {}", file.display()))?;
        println!("JSON: {}", file.display());
    }
    Ok(())
}

/// Times `samples` store changes (an endpoint put, then its delete) from the store's answer
/// to the entry appearing in (or leaving) the measured host's pinned FDB.
fn change_latencies(
    c: &Cluster,
    synthetic: Synthetic,
    first: usize,
    samples: usize,
) -> anyhow::Result<Vec<f64>> {
    let fdb_pin = c.hosts[0].pin_dir.join(names::FDB);
    c.with_store(move |store| async move {
        let fdb: BpfHashMap<MapData, FdbKey, FdbEntry> =
            BpfHashMap::try_from(aya::maps::Map::HashMap(MapData::from_pin(&fdb_pin)?))?;
        let present = |k: &FdbKey| fdb.get(k, 0).is_ok();
        let mut latencies = Vec::new();
        for i in 0..samples.div_ceil(2) {
            let k = first + i;
            let (network, _, ip, _) = synthetic.endpoint(k);
            let vni = Synthetic::network(network[3..].parse()?).vni;
            let key = FdbKey::new(vni, Mac::from_ipv4(ip).0);
            for put in [true, false] {
                let t = if put {
                    let kvs = synthetic.endpoint_kvs(k);
                    store.put_all(&kvs).await?;
                    Instant::now()
                } else {
                    synthetic.delete_endpoints(&store, k..k + 1).await?;
                    Instant::now()
                };
                while present(&key) != put {
                    anyhow::ensure!(
                        t.elapsed() < Duration::from_secs(10),
                        "change {k} never reached the map"
                    );
                    // A busy wait would take the core the daemon needs: poll every 100 µs.
                    std::thread::sleep(Duration::from_micros(100));
                }
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        latencies.sort_by(f64::total_cmp);
        Ok(latencies)
    })
}

/// `kill -9` and restart of the measured daemon under a 10 ms ping through it; returns the
/// seconds until it is synced with the store again, and (received, sent) pings.
fn restart(c: &mut Cluster, peer_ip: &str) -> anyhow::Result<(Option<f64>, (u32, u32))> {
    // Container 0 is the measured host's endpoint in the first network.
    let ping = c.containers[0].background_ping(peer_ip, 1000)?;
    std::thread::sleep(Duration::from_secs(2));
    let revision =
        c.with_store(|store| async move { Ok(store.list("/netd/v1/networks/").await?.revision) })?;
    let t = Instant::now();
    c.hosts[0].kill();
    c.hosts[0].start()?;
    let mut synced = None;
    while t.elapsed() < Duration::from_secs(60) {
        if let Ok(status) = c.netd_as::<Status>(0, &["status"])
            && status.store.state == LinkState::Connected
            && status.store.revision >= revision
        {
            synced = Some(t.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ping = ping.finish()?;
    Ok((synced, (ping.received, ping.sent)))
}

struct Row {
    what: String,
    measured: String,
    goal: String,
    met: Option<bool>,
}

fn rows(r: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    for &(size, write, converge) in &r.converge {
        let goal = (size == 100_000).then_some(CONVERGE_GOAL);
        rows.push(Row {
            what: format!("converge after writing {size} endpoints (write took {write:.1} s)"),
            measured: format!("{converge:.2} s"),
            goal: goal.map_or_else(|| "-".into(), |g| format!("<= {} s", g.as_secs())),
            met: goal.map(|g| converge <= g.as_secs_f64()),
        });
    }
    let p50 = percentile(&r.latencies_ms, 0.5);
    let p99 = percentile(&r.latencies_ms, 0.99);
    rows.push(Row {
        what: format!(
            "store change -> map, p50 ({} changes)",
            r.latencies_ms.len()
        ),
        measured: format!("{p50:.1} ms"),
        goal: "-".into(),
        met: None,
    });
    rows.push(Row {
        what: "store change -> map, p99".into(),
        measured: format!("{p99:.1} ms"),
        goal: format!("<= {} ms", P99_GOAL.as_millis()),
        met: Some(p99 <= P99_GOAL.as_secs_f64() * 1000.0),
    });
    rows.push(Row {
        what: "kill -9 + restart until synced".into(),
        measured: r
            .restart_synced
            .map_or_else(|| "never".into(), |s| format!("{s:.2} s")),
        goal: format!("<= {} s", RESTART_GOAL.as_secs()),
        met: Some(
            r.restart_synced
                .is_some_and(|s| s <= RESTART_GOAL.as_secs_f64()),
        ),
    });
    let (received, sent) = r.restart_ping;
    rows.push(Row {
        what: "pings lost across the restart (10 ms interval)".into(),
        measured: format!("{} of {sent}", sent.saturating_sub(received)),
        goal: "0".into(),
        met: Some(sent > 0 && received == sent),
    });
    let endpoints = r.converge.last().map_or(1, |c| c.0).max(1);
    let per = (r.rss_full_kb.saturating_sub(r.rss_base_kb) as f64 * 1024.0) / endpoints as f64;
    rows.push(Row {
        what: format!(
            "daemon RSS per endpoint ({} -> {} KiB)",
            r.rss_base_kb, r.rss_full_kb
        ),
        measured: format!("{per:.0} B"),
        goal: format!("<= {RSS_GOAL_BYTES:.0} B"),
        met: Some(per <= RSS_GOAL_BYTES),
    });
    rows.push(Row {
        what: format!(
            "lease renewals missed (2 hosts, {} registrations)",
            r.registrations
        ),
        measured: r.missed_renewals.to_string(),
        goal: "0".into(),
        met: Some(r.missed_renewals == 0),
    });
    rows
}

fn render(store: StoreKind, r: &Results) -> String {
    let rows = rows(r);
    let width = rows.iter().map(|row| row.what.len()).max().unwrap_or(0);
    let mut out = format!("\ncontrol plane at scale ({store:?})\n");
    for row in &rows {
        let verdict = match row.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "",
        };
        out += &format!(
            "  {:<width$}  {:>10}  {:>10}  {verdict}\n",
            row.what, row.measured, row.goal
        );
    }
    out
}

fn to_json(config: &ScaleConfig, r: &Results) -> Value {
    let goals: Vec<Value> = rows(r)
        .into_iter()
        .map(|row| json!({ "what": row.what, "measured": row.measured, "goal": row.goal, "met": row.met }))
        .collect();
    json!({
        "config": {
            "sizes": config.sizes,
            "hosts": config.hosts,
            "networks": config.networks,
            "samples": config.samples,
            "store": format!("{:?}", config.store),
        },
        "converge": r.converge.iter().map(|(size, write, converge)| json!({
            "endpoints": size, "write_seconds": write, "converge_seconds": converge,
        })).collect::<Vec<_>>(),
        "change_latency_ms": {
            "p50": percentile(&r.latencies_ms, 0.5),
            "p99": percentile(&r.latencies_ms, 0.99),
            "max": r.latencies_ms.last(),
            "samples": r.latencies_ms,
        },
        "restart_synced_seconds": r.restart_synced,
        "restart_pings": { "received": r.restart_ping.0, "sent": r.restart_ping.1 },
        "rss_kib": { "before": r.rss_base_kb, "after": r.rss_full_kb },
        "missed_renewals": r.missed_renewals,
        "goals": goals,
    })
}
