//! `cargo xtask bench`: netd's overlay side by side with the kernel's own datapaths on one
//! topology (two host namespaces on a veth underlay, a container namespace on each), in
//! interleaved rounds, plus the in-kernel cost of netd's programs next to a null program.
//!
//! One job per module:
//! - [`path`]: what a datapath under test is (one small trait impl each) and the registry;
//! - [`macvlan`]: the kernel's macvlan and netd's macvlan-style datapath on one LAN topology;
//! - [`metrics`]: the measurements (iperf3, sockperf) and what they report;
//! - [`rounds`]: the interleaved rounds (shuffled path order, quiet wait, progress lines);
//! - [`nic_like`]: `--nic-like`, every path again on an underlay with a NIC's offloads;
//! - [`cli`]: netd-bench's options (xtask shares them for `--help`);
//! - [`cpu`], [`process`], [`interrupt`]: /proc/stat deltas, child processes, Ctrl-C;
//! - [`idle`]: idle cores kept polling for the run, so latency does not include waking one;
//! - [`kernel_cost`]: `BPF_PROG_TEST_RUN` loops and `bpf_stats` on live traffic;
//! - [`stats`]: medians, ranges and within-round ratios; [`goals`]: the performance targets;
//! - [`table`], [`json`], [`svg`]: the three outputs.
//!
//! Timings live only here, never in `cargo xtask test`.

pub mod cli;
pub mod cpu;
pub mod dns_flood;
pub mod docker_overlay;
pub mod goals;
pub mod idle;
pub mod interrupt;
pub mod json;
pub mod kernel_cost;
pub mod macvlan;
pub mod metrics;
pub mod nic_like;
pub mod path;
pub mod process;
pub mod profile;
pub mod rounds;
pub mod scale;
pub mod stats;
pub mod svg;
pub mod table;

use std::time::{Duration, Instant};

use self::{
    kernel_cost::KernelCosts,
    metrics::Measurement,
    path::{BenchPath, Built},
    stats::Samples,
};

/// How long and how often to measure.
#[derive(Clone, Debug)]
pub struct Config {
    pub rounds: usize,
    /// Length of each iperf3 / sockperf run.
    pub seconds: u32,
    /// Length of each live-traffic run of the in-kernel cost phase.
    pub live_seconds: u32,
    /// ARP requests sent per repetition to time the ARP responder.
    pub arp_requests: u32,
    /// `BPF_PROG_TEST_RUN` repeat count (at least [`Self::MIN_REPEAT`]).
    pub repeat: u32,
    /// Seed of the per-round path order (printed, so a run's order can be repeated).
    pub seed: u64,
    /// Only these paths (`None`: all; empty: none, for a run of the in-kernel phase alone).
    pub only: Option<Vec<String>>,
    pub kernel_cost: bool,
    /// Profile the fresh-packet TEST_RUN phase with `perf` (`--profile`).
    pub profile: bool,
    /// Also run every path with a NIC-like underlay (`--nic-like`, see [`nic_like`]).
    pub nic_like: bool,
    /// Let idle cores sleep (`--allow-cpu-sleep`; by default they poll, see [`idle`]).
    pub allow_cpu_sleep: bool,
}

impl Config {
    pub const DEFAULT_ROUNDS: usize = 5;
    pub const DEFAULT_SECONDS: u32 = 5;
    pub const MIN_REPEAT: u32 = 1_000_000;

    /// The default run: 5 rounds of 5-second measurements, about 16 minutes on 2 cores.
    pub fn full(seed: u64) -> Self {
        Self {
            rounds: Self::DEFAULT_ROUNDS,
            seconds: Self::DEFAULT_SECONDS,
            live_seconds: 3,
            arp_requests: 200_000,
            repeat: Self::MIN_REPEAT,
            seed,
            only: None,
            kernel_cost: true,
            profile: false,
            nic_like: false,
            allow_cpu_sleep: false,
        }
    }

    /// `--quick`: a smoke run of everything (2 rounds, 1-second measurements), about 3 minutes.
    pub fn quick(seed: u64) -> Self {
        Self {
            rounds: 2,
            seconds: 1,
            live_seconds: 1,
            arp_requests: 20_000,
            ..Self::full(seed)
        }
    }

    /// A rough wall-clock estimate, shown before starting.
    pub fn estimate(&self, measured_paths: usize) -> Duration {
        // Per measurement: its length, sockperf's 0.4 s warm-up, server start and the quiet wait.
        let per_path_round = Measurement::ALL.len() as f64 * (f64::from(self.seconds) + 1.5);
        let rounds = per_path_round * (measured_paths * self.rounds) as f64;
        let kernel = if self.kernel_cost {
            self.rounds as f64 * (f64::from(self.live_seconds) + 4.0) + 3.0
        } else {
            0.0
        };
        Duration::from_secs_f64(rounds + kernel)
    }
}

/// A path that could not be built, and why (shown as its row).
pub struct Skipped {
    pub name: &'static str,
    pub reason: String,
}

/// Machine-wide CPU around one measurement.
pub struct CpuRecord {
    pub round: usize,
    pub path: &'static str,
    pub measurement: Measurement,
    /// Busy cores just before it started (another tenant shows up here).
    pub background_cores: f64,
    /// Busy fraction of each core while it ran.
    pub per_core: Vec<f64>,
}

/// Everything one run measured.
pub struct Results {
    pub config: Config,
    /// Measured paths in registry order, with one sample slot per round for every metric.
    pub samples: Samples,
    /// What each measured path is, by name.
    pub descriptions: Vec<(&'static str, &'static str)>,
    pub skipped: Vec<Skipped>,
    pub kernel: Option<KernelCosts>,
    pub cpu: Vec<CpuRecord>,
    /// Notes for the reader (background load, bpf_stats already on, ...).
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

/// Runs the whole benchmark. Everything it creates is removed before it returns, also on error
/// and on Ctrl-C (checked between measurements).
pub fn run(config: Config) -> anyhow::Result<Results> {
    let started = Instant::now();
    metrics::check_tools()?;
    if config.nic_like {
        nic_like::check_tool()?;
    }
    let mut notes = Vec::new();
    // Held until the run returns, over the rounds and the in-kernel phase alike.
    let no_cpu_sleep = (!config.allow_cpu_sleep).then(idle::NoCpuSleep::hold);
    notes.push(idle::NoCpuSleep::note(no_cpu_sleep.as_ref()));
    if kernel_cost::stats_already_enabled() {
        notes.push(
            "kernel.bpf_stats_enabled was already 1: every BPF program ran with timing overhead during the rounds"
                .to_string(),
        );
    }

    let (built, skipped) = build_paths(&config)?;
    let none_asked = config.only.as_ref().is_some_and(Vec::is_empty);
    anyhow::ensure!(!built.is_empty() || none_asked, "no path could be built");
    let estimate = config.estimate(built.len());
    println!(
        "\n{} rounds x {} paths x {} measurements of {} s (path order shuffled per round, seed {}); about {:.0} min\n",
        config.rounds,
        built.len(),
        Measurement::ALL.len(),
        config.seconds,
        config.seed,
        estimate.as_secs_f64() / 60.0
    );
    let (samples, cpu_records) = rounds::run(&config, &built)?;
    notes.extend(rounds::background_note(&cpu_records));
    let descriptions = built
        .iter()
        .map(|(path, _)| (path.name(), path.describe()))
        .collect();
    // The topologies go before the in-kernel phase, so nothing else carries traffic then.
    drop(built);

    let kernel = if config.kernel_cost {
        interrupt::check()?;
        println!("\nin-kernel cost ({} repetitions)", config.rounds);
        Some(kernel_cost::measure(&config)?)
    } else {
        None
    };
    Ok(Results {
        config,
        samples,
        descriptions,
        skipped,
        kernel,
        cpu: cpu_records,
        notes,
        elapsed: started.elapsed(),
    })
}

/// The paths that could be built, each with its topology (dropping it tears that down).
pub type BuiltPaths = Vec<(Box<dyn BenchPath>, Built)>;

/// Builds every selected path and checks that its client reaches its server; a path that cannot
/// be built becomes a "skipped" row instead of failing the run.
fn build_paths(config: &Config) -> anyhow::Result<(BuiltPaths, Vec<Skipped>)> {
    let mut built = Vec::new();
    let mut skipped = Vec::new();
    let registry = if config.nic_like {
        nic_like::registry_with_variants()
    } else {
        path::registry()
    };
    for (i, path) in registry.into_iter().enumerate() {
        // `--paths` names the plain paths; their NIC-like variants come with them.
        let plain_name = path
            .name()
            .strip_suffix(nic_like::SUFFIX)
            .unwrap_or(path.name());
        if config
            .only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|n| n == plain_name))
        {
            continue;
        }
        interrupt::check()?;
        // Short tags: namespaces become `<tag><h|c><pid>x<n>`, pins `netd-<namespace>`.
        let tag = format!("b{i}");
        match path
            .build(&tag)
            .and_then(|b| b.check_reachable().map(|()| b))
        {
            Ok(b) => {
                println!("{:<14} built: {}", path.name(), path.describe());
                built.push((path, b));
            }
            Err(e) => {
                interrupt::check()?;
                println!("{:<14} skipped: {e:#}", path.name());
                skipped.push(Skipped {
                    name: path.name(),
                    reason: format!("{e:#}"),
                });
            }
        }
    }
    Ok((built, skipped))
}

/// A seed from the clock, for runs that do not ask for one.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}
