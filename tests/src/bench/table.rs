//! The terminal report: per metric and path the median, the range over rounds and the ratios to
//! kernel-vxlan and native (medians of per-round ratios); the in-kernel costs; the goals.

use std::fmt::Write as _;

use super::{
    Results, goals,
    kernel_cost::KernelCosts,
    metrics::Metric,
    nic_like,
    path::{KERNEL_VXLAN, NATIVE},
    profile::ProgramProfile,
    stats::Summary,
};

/// Fewer decimals for bigger numbers, so columns stay readable.
pub fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn range(s: &Summary) -> String {
    format!("{}-{}", num(s.min), num(s.max))
}

fn direction(metric: Metric) -> &'static str {
    if metric.higher_is_better() {
        ", higher is better"
    } else if metric.lower_is_better() {
        ", lower is better"
    } else {
        ""
    }
}

pub fn render(results: &Results) -> String {
    let mut out = String::new();
    if !results.samples.paths().is_empty() {
        end_to_end(&mut out, results);
    }
    for skipped in &results.skipped {
        let _ = writeln!(out, "  {:<30}skipped: {}", skipped.name, skipped.reason);
    }
    if let Some(kernel) = &results.kernel {
        in_kernel(&mut out, kernel, results.samples.rounds());
    }
    let _ = writeln!(
        out,
        "\n== goals (ratios are medians of per-round ratios, min-max in brackets)"
    );
    for goal in goals::evaluate(results) {
        let _ = writeln!(
            out,
            "  {:<16}{}: {}",
            format!("[{}]", goal.verdict()),
            goal.text,
            goal.measured_text()
        );
    }
    for note in &results.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "elapsed: {:.1} min",
        results.elapsed.as_secs_f64() / 60.0
    );
    out
}

fn end_to_end(out: &mut String, results: &Results) {
    let s = &results.samples;
    let _ = writeln!(
        out,
        "\n== results: {} rounds of {} s; median, min-max over rounds; ratios taken within each round, then the median",
        s.rounds(),
        results.config.seconds
    );
    let _ = writeln!(
        out,
        "{:<32}{:>10}{:>20}{:>16}{:>10}",
        "", "median", "min-max", "x kernel-vxlan", "x native"
    );
    for metric in Metric::ALL {
        let _ = writeln!(
            out,
            "{} [{}{}]",
            metric.label(),
            metric.unit(),
            direction(metric)
        );
        for &path in s.paths() {
            let Some(summary) = s.summary(path, metric) else {
                let _ = writeln!(out, "  {path:<30}{:>10}", "-");
                continue;
            };
            let ratio = |base: &str| {
                let base = nic_like::base_for(path, base);
                if !s.has_path(&base) {
                    return "n/a".to_string();
                }
                s.ratio(path, &base, metric)
                    .map_or_else(|| "-".to_string(), |r| format!("{:.2}", r.median))
            };
            let _ = writeln!(
                out,
                "  {path:<30}{:>10}{:>20}{:>16}{:>10}",
                num(summary.median),
                range(&summary),
                ratio(KERNEL_VXLAN),
                ratio(NATIVE)
            );
        }
    }
    if results.config.nic_like {
        cpu_per_gbps(out, results);
    }
    out.push_str(READING);
}

/// `--nic-like`: what each path's TCP stream costs in CPU per Gbit/s, every mode.
fn cpu_per_gbps(out: &mut String, results: &Results) {
    let _ = writeln!(
        out,
        "CPU per Gbit/s, TCP stream [busy cores / Gbit/s within each round, lower is better]"
    );
    for &path in results.samples.paths() {
        let text = nic_like::cpu_per_gbps(&results.samples, path).map_or_else(
            || format!("{:>10}", "-"),
            |c| {
                format!(
                    "{:>10}{:>20}",
                    format!("{:.3}", c.median),
                    format!("{:.3}-{:.3}", c.min, c.max)
                )
            },
        );
        let _ = writeln!(out, "  {path:<30}{text}");
    }
}

/// How to read the end-to-end figures (what each one is bound by on this kind of machine).
const READING: &str = "\
reading: UDP 64 B has one iperf3 sender; a veth hands packets on inside the sender's softirq, so
  the sender's core carries most of the path and packets/s measures its per-packet cost
  (docs/performance.md). Latencies are sockperf's half round trips. CPU is machine-wide
  (/proc/stat), in busy cores: both simulated hosts share them, and so does anything else running.
";

fn in_kernel(out: &mut String, kernel: &KernelCosts, repetitions: usize) {
    let _ = writeln!(
        out,
        "\n== in-kernel cost per packet, ns ({repetitions} repetitions; TEST_RUN loops x{0}, TEST_RUN x1 medians of {0} fresh packets in all, bpf_stats on live traffic)",
        kernel.repeat
    );
    let _ = writeln!(
        out,
        "  {:<13}{:<44}{:>8}{:>14}{:>12}",
        "method", "program: packet", "median", "min-max", "above null"
    );
    for row in &kernel.rows {
        let Some(ns) = row.ns() else { continue };
        let above = row
            .above_null()
            .map_or_else(|| "-".to_string(), |a| format!("{:.0}", a.median));
        let _ = writeln!(
            out,
            "  {:<13}{:<44}{:>8.0}{:>14}{:>12}",
            row.method.name(),
            row.label,
            ns.median,
            format!("{:.0}-{:.0}", ns.min, ns.max),
            above
        );
    }
    profiles(out, &kernel.profiles);
}

/// `--profile`: the share of each program's samples by what it was doing, largest first.
fn profiles(out: &mut String, profiles: &[ProgramProfile]) {
    if profiles.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n== where the fresh-packet TEST_RUN time went (perf samples under each program, by the function it called;\n   from-endpoint ran the encap and the ARP-reply packets, from-uplink the decap ones; sampling slows the runs a little)"
    );
    for profile in profiles {
        let _ = writeln!(out, "  {} ({} samples)", profile.program, profile.samples);
        for (part, samples) in profile.parts.iter().take(PROFILE_PARTS) {
            let _ = writeln!(out, "    {:>5.1} %  {part}", profile.share(*samples));
        }
        let rest: u64 = profile.parts.iter().skip(PROFILE_PARTS).map(|p| p.1).sum();
        if rest > 0 {
            let _ = writeln!(out, "    {:>5.1} %  everything else", profile.share(rest));
        }
    }
}

/// Parts shown per program; the rest is summed.
const PROFILE_PARTS: usize = 6;
