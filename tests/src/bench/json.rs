//! `--json FILE`: every sample, summary and ratio, for scripts and for comparing runs.

use serde_json::{Value, json};

use super::{
    Results, goals,
    metrics::Metric,
    nic_like,
    path::{KERNEL_VXLAN, NATIVE},
    stats::Summary,
};

fn summary(s: Option<Summary>) -> Value {
    s.map_or(
        Value::Null,
        |s| json!({ "median": s.median, "min": s.min, "max": s.max, "n": s.n }),
    )
}

fn machine() -> Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    json!({ "kernel": kernel.trim(), "cpus": cpus })
}

pub fn render(results: &Results) -> Value {
    let s = &results.samples;
    let c = &results.config;
    let paths: Vec<Value> = s
        .paths()
        .iter()
        .map(|&path| {
            let describe = results
                .descriptions
                .iter()
                .find(|(n, _)| *n == path)
                .map_or("", |(_, d)| *d);
            let metrics: serde_json::Map<String, Value> = Metric::ALL
                .iter()
                .map(|&m| {
                    let ratios = |base: &str| {
                        let base = nic_like::base_for(path, base);
                        json!({
                            "median_of_rounds": summary(s.ratio(path, &base, m)),
                            "per_round": s.ratios_per_round(path, &base, m),
                        })
                    };
                    let v = json!({
                        "unit": m.unit(),
                        "per_round": s.per_round(path, m),
                        "summary": summary(s.summary(path, m)),
                        "ratio_to_kernel_vxlan": ratios(KERNEL_VXLAN),
                        "ratio_to_native": ratios(NATIVE),
                    });
                    (m.key().to_string(), v)
                })
                .collect();
            let mut entry = json!({ "name": path, "status": "measured", "describe": describe, "metrics": metrics });
            if c.nic_like {
                entry["tcp_cpu_cores_per_gbit_s"] = json!({
                    "per_round": nic_like::cpu_per_gbps_per_round(s, path),
                    "summary": summary(nic_like::cpu_per_gbps(s, path)),
                });
            }
            entry
        })
        .chain(
            results
                .skipped
                .iter()
                .map(|k| json!({ "name": k.name, "status": "skipped", "reason": k.reason })),
        )
        .collect();
    let kernel = results.kernel.as_ref().map_or(Value::Null, |k| {
        json!({
            "test_run_repeat": k.repeat,
            "rows": k.rows.iter().map(|r| json!({
                "key": r.key,
                "label": r.label,
                "method": r.method.name(),
                "ns_per_packet": r.ns,
                "ns_above_null": r.above_null,
                "summary": summary(r.ns()),
                "above_null_summary": summary(r.above_null()),
            })).collect::<Vec<_>>(),
            "profiles": k.profiles.iter().map(|p| json!({
                "program": p.program,
                "samples": p.samples,
                "parts": p.parts.iter().map(|(part, samples)| json!({
                    "part": part,
                    "samples": samples,
                    "percent": p.share(*samples),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    });
    let goals: Vec<Value> = goals::evaluate(results)
        .iter()
        .map(|g| {
            json!({
                "goal": g.text,
                "target": g.target,
                "at_least": g.at_least,
                "unit": g.unit,
                "measured": summary(g.measured),
                "met": g.met(),
            })
        })
        .collect();
    json!({
        "benchmark": "netd xtask bench",
        "machine": machine(),
        "config": {
            "rounds": c.rounds,
            "seconds": c.seconds,
            "live_seconds": c.live_seconds,
            "arp_requests": c.arp_requests,
            "test_run_repeat": c.repeat,
            "seed": c.seed,
            "profile": c.profile,
            "nic_like": c.nic_like,
        },
        "paths": paths,
        "in_kernel": kernel,
        "goals": goals,
        "cpu_per_measurement": results.cpu.iter().map(|r| json!({
            "round": r.round,
            "path": r.path,
            "measurement": r.measurement.name(),
            "background_cores_before": r.background_cores,
            "busy_per_core": r.per_core,
        })).collect::<Vec<_>>(),
        "notes": results.notes,
        "elapsed_seconds": results.elapsed.as_secs_f64(),
    })
}
