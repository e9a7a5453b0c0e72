//! `cargo xtask test [TIER...] [-- FILTER...]`: setup for the tiers asked for, then each tier in
//! turn (all of them when none is named), then the table. A failing tier does not stop the ones
//! after it; the run fails when any tier failed. The tiers are in tiers.rs.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    cmd::{is_root, workspace_root},
    report::{Row, Tally, count_libtest, table},
    tiers::{Runner, SETUP_BUDGET_MINUTES, TOTAL_BUDGET_MINUTES, Tier},
};

pub fn run(asked: &[Tier], filter: &[String]) -> anyhow::Result<()> {
    let tiers = chosen(asked, filter)?;
    refuse_without_root(&tiers)?;

    let mut rows = Vec::new();
    let started = Instant::now();
    let mut parts = Vec::new();
    for part in tiers.iter().flat_map(|t| t.setup()) {
        if !parts.contains(part) {
            parts.push(*part);
        }
    }
    // Without setup nothing after it can run: its failure ends the run.
    crate::setup::run(&parts)?;
    rows.push(Row {
        name: "setup",
        tally: None,
        took: started.elapsed(),
        budget: minutes(SETUP_BUDGET_MINUTES),
    });

    for tier in tiers {
        eprintln!("\n=== tier {} ===", tier.name());
        let started = Instant::now();
        let tally =
            run_tier(tier, filter).unwrap_or_else(|error| Tally::broken(format!("{error:#}")));
        rows.push(Row {
            name: tier.name(),
            tally: Some(tally),
            took: started.elapsed(),
            budget: tier.budget(),
        });
    }

    eprintln!("\n{}", table(&rows, minutes(TOTAL_BUDGET_MINUTES)));
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.tally.as_ref().is_some_and(|t| !t.ok()))
        .map(|r| r.name)
        .collect();
    if !failed.is_empty() {
        bail!("tiers failed: {}", failed.join(", "));
    }
    Ok(())
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// The tiers to run: those named, else all of them; with a test filter and none named, those
/// the filter applies to.
fn chosen(asked: &[Tier], filter: &[String]) -> anyhow::Result<Vec<Tier>> {
    if asked.is_empty() {
        return Ok(Tier::ALL
            .into_iter()
            .filter(|t| filter.is_empty() || t.takes_filter())
            .collect());
    }
    if !filter.is_empty()
        && let Some(tier) = asked.iter().find(|t| !t.takes_filter())
    {
        bail!(
            "the {} tier takes no test filter (it runs a fixed set)",
            tier.name()
        );
    }
    // In the order of Tier::ALL, each once.
    Ok(Tier::ALL
        .into_iter()
        .filter(|t| asked.contains(t))
        .collect())
}

/// Stops at once, on one line, when a privileged tier is asked for without root.
fn refuse_without_root(tiers: &[Tier]) -> anyhow::Result<()> {
    if is_root() {
        return Ok(());
    }
    let privileged: Vec<(Tier, &str)> = tiers
        .iter()
        .filter_map(|t| Some((*t, t.needs_root()?)))
        .collect();
    match privileged.as_slice() {
        [] => Ok(()),
        [(tier, why)] => bail!("the {} tier needs root: {why}", tier.name()),
        more => {
            let names: Vec<&str> = more.iter().map(|(t, _)| t.name()).collect();
            let (last, others) = names.split_last().unwrap_or((&"", &[]));
            bail!(
                "the {} and {last} tiers need root: they load eBPF programs and create network namespaces (`cargo xtask test lint unit` runs without)",
                others.join(", ")
            )
        }
    }
}

fn run_tier(tier: Tier, filter: &[String]) -> anyhow::Result<Tally> {
    match tier.runner() {
        Runner::Lint => Ok(crate::lint::run()),
        Runner::CargoTest => cargo_test(filter),
        Runner::Nextest { binaries, lib } => {
            crate::nextest::run(tier.name(), binaries, lib, filter)
        }
        Runner::Kernels => crate::kernels::run(),
    }
}

/// `cargo test` of the default members, as anyone would run it, counted from libtest's summary
/// lines (stdout, passed through as it comes).
fn cargo_test(filter: &[String]) -> anyhow::Result<Tally> {
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "--no-fail-fast"]);
    if !filter.is_empty() {
        cmd.arg("--").args(filter);
    }
    let mut child = cmd
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let mut text = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("cannot read cargo test's output")?;
            println!("{line}");
            text.push_str(&line);
            text.push('\n');
        }
    }
    let exit = child.wait().context("cargo test")?;
    let mut tally = count_libtest(&text);
    if !exit.success() && tally.failed == 0 {
        tally.problems.push(format!(
            "cargo test failed ({exit}) with no failed test: see its output"
        ));
    }
    Ok(tally)
}
