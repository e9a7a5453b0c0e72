//! netd-bench's command line. Only clap and std here: xtask includes this file too (with
//! `#[path]`), so that `cargo xtask bench --help` and mistyped options answer at once instead of
//! after setup and a release build, from this one list of options.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "netd-bench",
    about = "Benchmark netd's datapath against the kernel's own datapaths"
)]
pub struct Args {
    /// Smoke run: 2 rounds of 1-second measurements (about 3 minutes).
    #[arg(long)]
    pub quick: bool,
    /// Rounds (each runs every path once, in a random order).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seconds per iperf3/sockperf measurement.
    #[arg(long)]
    pub seconds: Option<u32>,
    /// BPF_PROG_TEST_RUN repeat count (at least 1000000).
    #[arg(long)]
    pub repeat: Option<u32>,
    /// Seed for the per-round path order (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Only these paths, comma-separated (e.g. `netd-overlay,kernel-vxlan`).
    #[arg(long, value_delimiter = ',')]
    pub paths: Vec<String>,
    /// Also run every selected path with both hosts' underlay veth made NIC-like
    /// (`ethtool -K ul tso off gso off gro on`: MTU-sized packets on the wire, as on a real
    /// NIC), interleaved in the same rounds and reported next to the plain run, with CPU per
    /// Gbit/s of the TCP stream. Needs ethtool.
    #[arg(long)]
    pub nic_like: bool,
    /// Let idle cores sleep during the run, as they do by default. Without it the run holds
    /// /dev/cpu_dma_latency at 0 µs, so idle cores poll and a latency does not include waking
    /// one (tens of µs on a VM).
    #[arg(long)]
    pub allow_cpu_sleep: bool,
    /// Skip the in-kernel cost phase.
    #[arg(long, conflicts_with = "kernel_cost_only")]
    pub no_kernel_cost: bool,
    /// Only the in-kernel cost phase (no end-to-end rounds).
    #[arg(long)]
    pub kernel_cost_only: bool,
    /// Break the in-kernel cost down by what each program calls (needs perf).
    #[arg(long, conflicts_with = "no_kernel_cost")]
    pub profile: bool,
    /// Write all samples, summaries, ratios and goals as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write an SVG bar chart.
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
    /// Benchmark the control plane instead: a real etcd (or Consul), synthetic hosts and endpoints
    /// written in bulk, one real daemon measured (convergence, change latency, restart,
    /// memory, lease renewals). `--json` applies; the datapath options do not.
    #[arg(long, conflicts_with_all = ["quick", "rounds", "seconds", "repeat", "paths", "kernel_cost_only", "profile", "chart", "nic_like", "allow_cpu_sleep"])]
    pub scale: bool,
    /// With --scale: endpoint counts to converge at, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        requires = "scale",
        default_value = "1000,10000,100000"
    )]
    pub scale_sizes: Vec<usize>,
    /// With --scale: store changes timed at the largest size.
    #[arg(long, requires = "scale", default_value_t = 200)]
    pub scale_samples: usize,
    /// With --scale: the store to run on.
    #[arg(long, requires = "scale", value_enum, default_value_t = ScaleStore::Etcd)]
    pub scale_store: ScaleStore,
    /// Flood one container's DNS listener instead (TCP connections held open plus a UDP
    /// query flood) on two real hosts, and report, second by second, the daemon's RSS,
    /// descriptors and CPU, whether a store change from the other host still reaches this
    /// host's FDB, the flooder's neighbour still gets its answer, and `netd status` is healthy.
    #[arg(long, conflicts_with_all = ["quick", "rounds", "seconds", "repeat", "paths", "kernel_cost_only", "profile", "chart", "nic_like", "allow_cpu_sleep", "scale", "json"])]
    pub dns_flood: bool,
    /// With --dns-flood: how long the flood lasts, in seconds.
    #[arg(long, requires = "dns_flood", default_value_t = 20)]
    pub flood_seconds: u64,
    /// With --dns-flood: TCP connections the flooder holds open.
    #[arg(long, requires = "dns_flood", default_value_t = 3000)]
    pub flood_tcp: usize,
}

/// The stores `--scale` runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScaleStore {
    Etcd,
    Consul,
}
