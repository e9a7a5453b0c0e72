//! `status`: the first line says whether this host is healthy, and why not.

use serde_json::{Value, json};

use crate::{control::Summary, daemon::Daemon};

/// Why the host is not healthy, in the order an operator should look (empty: healthy).
fn problems(daemon: &Daemon, summary: &Summary, store: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for link in ["watch", "lease"] {
        let state = store[link]["state"].as_str().unwrap_or("?");
        if state != "connected" {
            let error = store[link]["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            problems.push(format!("store {link} {state}{error}"));
        }
    }
    for map in &summary.maps {
        if let Some(error) = &map.last_error {
            problems.push(format!(
                "map {} failing ({} of {} entries): {error}",
                map.name, map.entries, map.capacity
            ));
        }
    }
    if let Some(docker) = daemon.health.docker()
        && !docker.starts_with("connected")
    {
        problems.push(format!("docker {docker}"));
    }
    problems
}

/// `member`: the store member that answers requests, where the backend can tell.
pub(super) fn status(daemon: &Daemon, member: Option<String>) -> Value {
    let summary = daemon.service.control.summary();
    let store = daemon.health.store_json(summary.synced);
    let problems = problems(daemon, &summary, &store);
    let health = if problems.is_empty() {
        json!({ "healthy": true })
    } else {
        json!({ "healthy": false, "problems": problems })
    };
    let mut store = store;
    store["url"] = json!(daemon.options.store);
    store["revision"] = json!(summary.revision);
    store["member"] = json!(member);
    let programs: Vec<Value> = daemon
        .programs
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "instructions": p.instructions,
                "jited_bytes": p.jited_bytes,
                "verified_instructions": p.verified_instructions,
            })
        })
        .collect();
    let maps: Vec<Value> = summary
        .maps
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "entries": m.entries,
                "max_entries": m.capacity,
                "failed_writes": m.failed_writes,
                "error": m.last_error,
            })
        })
        .collect();
    let hosts: serde_json::Map<String, Value> = summary
        .hosts
        .iter()
        .map(|(name, h)| (name.clone(), json!({ "vtep": h.vtep_ip, "netd": h.netd })))
        .collect();
    let me = &daemon.options.host_name;
    json!({
        "health": health,
        "host": me,
        "vtep": daemon.options.advertise,
        "uplink": daemon.uplink,
        "uplink_mtu": daemon.uplink_mtu,
        "kernel": {
            "tc_attach": daemon.tc_attach.name(),
            "adjust_room_encap_l2_eth": daemon.features.encap_l2_eth,
            "adjust_room_decap_l3_ipv4": daemon.features.decap_l3_ipv4,
        },
        "store_url": daemon.options.store,
        "store": store,
        "hosts": hosts,
        "networks": summary.networks.len(),
        "networks_active": summary.active_networks,
        "endpoints_local": summary.local.iter().filter(|e| e.record.is_some()).count(),
        "endpoints_known": summary.endpoints_known,
        "endpoints_programmed": {
            "local": summary.programmed_local,
            "remote": summary.programmed_remote,
        },
        "invalid_values": summary.invalid_values,
        "events_applied": summary.events_applied,
        "drift_repaired": summary.drift_repaired,
        "last_batch": {
            "events": summary.last_batch_events,
            "ms": summary.last_batch.as_secs_f64() * 1000.0,
        },
        "docker": daemon.health.docker().unwrap_or_else(|| "disabled".into()),
        "maps": maps,
        "programs": programs,
        "uptime_seconds": daemon.started.elapsed().as_secs(),
    })
}
