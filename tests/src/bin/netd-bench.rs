//! `netd-bench` (run by `cargo xtask bench`): netd's overlay against the kernel's own datapaths
//! on one two-host namespace topology, in interleaved rounds, plus the in-kernel cost of netd's
//! programs. Needs root. Prints a table; `--json` and `--chart` write the machine-readable results
//! and an SVG chart.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use netd_tests::bench::{self, Config, interrupt};

#[derive(Debug, Parser)]
#[command(
    name = "netd-bench",
    about = "Benchmark netd's datapath against the kernel's (issue #6)"
)]
struct Args {
    /// Smoke run: 2 rounds of 1-second measurements (about 3 minutes).
    #[arg(long)]
    quick: bool,
    /// Rounds (each runs every path once, in a random order).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per iperf3/sockperf measurement.
    #[arg(long)]
    seconds: Option<u32>,
    /// BPF_PROG_TEST_RUN repeat count (at least 1000000).
    #[arg(long)]
    repeat: Option<u32>,
    /// Seed for the per-round path order (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Only these paths, comma-separated (e.g. `netd-overlay,kernel-vxlan`).
    #[arg(long, value_delimiter = ',')]
    paths: Vec<String>,
    /// Skip the in-kernel cost phase.
    #[arg(long, conflicts_with = "kernel_cost_only")]
    no_kernel_cost: bool,
    /// Only the in-kernel cost phase (no end-to-end rounds).
    #[arg(long)]
    kernel_cost_only: bool,
    /// Break the in-kernel cost down by what each program calls (needs perf).
    #[arg(long, conflicts_with = "no_kernel_cost")]
    profile: bool,
    /// Write all samples, summaries, ratios and goals as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an SVG bar chart.
    #[arg(long, value_name = "FILE")]
    chart: Option<PathBuf>,
}

impl Args {
    fn config(&self) -> anyhow::Result<Config> {
        let seed = self.seed.unwrap_or_else(bench::clock_seed);
        let mut config = if self.quick {
            Config::quick(seed)
        } else {
            Config::full(seed)
        };
        if let Some(rounds) = self.rounds {
            anyhow::ensure!(rounds >= 1, "--rounds must be at least 1");
            config.rounds = rounds;
        }
        if let Some(seconds) = self.seconds {
            anyhow::ensure!(seconds >= 1, "--seconds must be at least 1");
            config.seconds = seconds;
        }
        if let Some(repeat) = self.repeat {
            anyhow::ensure!(
                repeat >= Config::MIN_REPEAT,
                "--repeat must be at least {}",
                Config::MIN_REPEAT
            );
            config.repeat = repeat;
        }
        let known: Vec<&str> = bench::path::registry().iter().map(|p| p.name()).collect();
        if let Some(unknown) = self.paths.iter().find(|p| !known.contains(&p.as_str())) {
            anyhow::bail!("no path {unknown:?}; paths: {}", known.join(", "));
        }
        if self.kernel_cost_only {
            config.only = Some(Vec::new());
        } else if !self.paths.is_empty() {
            config.only = Some(self.paths.clone());
        }
        config.kernel_cost = !self.no_kernel_cost;
        config.profile = self.profile;
        Ok(config)
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let results = bench::run(args.config()?)?;
    print!("{}", bench::table::render(&results));
    if let Some(file) = &args.json {
        let text = serde_json::to_string_pretty(&bench::json::render(&results))?;
        std::fs::write(file, text + "\n")
            .with_context(|| format!("cannot write {}", file.display()))?;
        println!("JSON: {}", file.display());
    }
    if let Some(file) = &args.chart {
        std::fs::write(file, bench::svg::render(&results))
            .with_context(|| format!("cannot write {}", file.display()))?;
        println!("chart: {}", file.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    interrupt::install();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if interrupt::interrupted() => {
            eprintln!(
                "netd-bench: interrupted; everything it started has been stopped and removed"
            );
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("netd-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
