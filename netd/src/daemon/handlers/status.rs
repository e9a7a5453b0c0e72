//! `status`.

use std::{collections::BTreeMap, time::SystemTime};

use serde_json::{Value, json};

use crate::daemon::Shared;
use crate::datapath::inspect;

pub(super) fn status(shared: &Shared) -> anyhow::Result<Value> {
    let cluster = shared.cluster();
    let status = shared.status();
    let me = &shared.options.host_name;
    let store = match &status.store_error {
        None if status.synced_once => json!({ "state": "connected" }),
        None => json!({ "state": "connecting" }),
        Some((error, since)) => json!({
            "state": "unreachable",
            "error": error,
            "for_seconds": SystemTime::now().duration_since(*since).map(|d| d.as_secs()).unwrap_or(0),
        }),
    };
    let programs: Vec<Value> = shared
        .datapath()
        .program_sizes()
        .unwrap_or_default()
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
    let maps = shared.datapath().pin_dir().map(|dir| {
        inspect::list(dir)
            .map(|l| json!(l))
            .unwrap_or_else(|e| json!(e.to_string()))
    });
    let hosts: BTreeMap<&String, Value> = cluster
        .hosts
        .iter()
        .map(|(name, h)| (name, json!({ "vtep": h.vtep_ip, "netd": h.netd })))
        .collect();
    Ok(json!({
        "host": me,
        "vtep": shared.options.advertise,
        "uplink": shared.uplink,
        "uplink_mtu": shared.uplink_mtu,
        "store_url": shared.options.store,
        "store": store,
        "last_sync_revision": status.last_sync_revision,
        "lease": status.lease,
        "hosts": hosts,
        "networks": cluster.networks.len(),
        "endpoints_local": cluster.endpoints.iter().filter(|e| &e.record.host == me).count(),
        "endpoints_remote": cluster.endpoints.iter().filter(|e| &e.record.host != me).count(),
        "invalid_values": status.invalid_total,
        "docker": status.docker.clone().unwrap_or_else(|| "disabled".into()),
        "maps": maps,
        "programs": programs,
        "uptime_seconds": shared.started.elapsed().as_secs(),
    }))
}
