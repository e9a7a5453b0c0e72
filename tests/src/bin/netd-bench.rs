//! `netd-bench` (run by `cargo xtask bench`): netd's overlay against the kernel's own datapaths
//! on one two-host namespace topology, in interleaved rounds, plus the in-kernel cost of netd's
//! programs. Needs root. Prints a table; `--json` and `--chart` write the machine-readable results
//! and an SVG chart.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use netd_tests::bench::{self, Config, cli::Args, interrupt};

/// The run `args` ask for; checks what clap cannot (minimums, known path names).
fn config(args: &Args) -> anyhow::Result<Config> {
    let seed = args.seed.unwrap_or_else(bench::clock_seed);
    let mut config = if args.quick {
        Config::quick(seed)
    } else {
        Config::full(seed)
    };
    if let Some(rounds) = args.rounds {
        anyhow::ensure!(rounds >= 1, "--rounds must be at least 1");
        config.rounds = rounds;
    }
    if let Some(seconds) = args.seconds {
        anyhow::ensure!(seconds >= 1, "--seconds must be at least 1");
        config.seconds = seconds;
    }
    if let Some(repeat) = args.repeat {
        anyhow::ensure!(
            repeat >= Config::MIN_REPEAT,
            "--repeat must be at least {}",
            Config::MIN_REPEAT
        );
        config.repeat = repeat;
    }
    let known: Vec<&str> = bench::path::registry().iter().map(|p| p.name()).collect();
    if let Some(unknown) = args.paths.iter().find(|p| !known.contains(&p.as_str())) {
        anyhow::bail!("no path {unknown:?}; paths: {}", known.join(", "));
    }
    if args.kernel_cost_only {
        config.only = Some(Vec::new());
    } else if !args.paths.is_empty() {
        config.only = Some(args.paths.clone());
    }
    config.kernel_cost = !args.no_kernel_cost;
    config.profile = args.profile;
    config.nic_like = args.nic_like;
    config.allow_cpu_sleep = args.allow_cpu_sleep;
    Ok(config)
}

fn run(args: &Args) -> anyhow::Result<()> {
    if args.dns_flood {
        anyhow::ensure!(
            args.flood_seconds >= 1,
            "--flood-seconds must be at least 1"
        );
        return bench::dns_flood::run(&bench::dns_flood::FloodBench {
            seconds: args.flood_seconds,
            tcp_connections: args.flood_tcp,
        });
    }
    if args.scale {
        let mut sizes = args.scale_sizes.clone();
        sizes.sort_unstable();
        anyhow::ensure!(
            sizes.first().is_some_and(|&s| s > 0),
            "--scale-sizes needs positive counts"
        );
        let config = bench::scale::ScaleConfig {
            sizes,
            samples: args.scale_samples,
            store: match args.scale_store {
                bench::cli::ScaleStore::Etcd => netd_tests::cluster::StoreKind::Etcd,
                bench::cli::ScaleStore::Consul => netd_tests::cluster::StoreKind::Consul,
            },
            ..Default::default()
        };
        return bench::scale::run(&config, args.json.as_deref());
    }
    let results = bench::run(config(args)?)?;
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
