//! `/v1/status`: whether this host is healthy, and why not; then what it knows and runs.

use std::sync::Arc;

use axum::{Json, extract::State};
use netd_store::Backend;

use crate::{
    api::{
        HealthStatus, KernelStatus, LastBatch, MapStatus, PeerHost, ProgramStatus, Programmed,
        Status, StoreStatus,
    },
    control::MapFill,
    daemon::Daemon,
    health::{Link, LinkState},
};

/// What the host's health is judged on, read once per `status`.
pub(crate) struct HealthInputs<'a> {
    pub watch: &'a Link,
    pub lease: &'a Link,
    /// Whether the reconciler has applied a full listing of the store.
    pub synced: bool,
    pub maps: &'a [MapFill],
    /// The Docker engine's state and how `status` says it, `None` when the integration is off.
    pub docker: Option<(LinkState, String)>,
}

/// Why the host is not healthy, in the order an operator should look (empty: healthy).
pub(crate) fn problems(inputs: &HealthInputs) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, link) in [("store watch", inputs.watch), ("host lease", inputs.lease)] {
        if link.state != LinkState::Connected {
            let error = link
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            problems.push(format!("{what} {}{error}", link.state.name()));
        }
    }
    // A watch that is not up says why nothing is synced; a watch that is up while the
    // listing is still being applied does not.
    if !inputs.synced && inputs.watch.state == LinkState::Connected {
        problems.push("reconciler not synced (applying the store's listing)".into());
    }
    for map in inputs.maps {
        if let Some(error) = &map.last_error {
            problems.push(format!(
                "map {} failing ({} of {} entries): {error}",
                map.name, map.entries, map.capacity
            ));
        }
    }
    if let Some((state, detail)) = &inputs.docker
        && *state != LinkState::Connected
    {
        problems.push(format!("docker {detail}"));
    }
    problems
}

pub(super) async fn get(State(daemon): State<Arc<Daemon>>) -> Json<Status> {
    let member = daemon.service.store.member_in_use().await;
    Json(status(&daemon, member))
}

/// `member`: the store member that answers requests, where the backend can tell.
fn status(daemon: &Daemon, member: Option<String>) -> Status {
    let summary = daemon.service.control.summary();
    let links = daemon.health.store_links(summary.synced);
    let docker = daemon.health.docker_state();
    let problems = problems(&HealthInputs {
        // The watch's own state: a connected watch whose listing is not applied yet is
        // told apart by `synced`.
        watch: &daemon.health.watch(),
        lease: &daemon.health.lease().link,
        synced: summary.synced,
        maps: &summary.maps,
        docker: docker.clone(),
    });
    let healthy = problems.is_empty();
    let programs = daemon
        .programs
        .iter()
        .map(|p| ProgramStatus {
            name: p.name.to_string(),
            instructions: p.instructions,
            jited_bytes: p.jited_bytes,
            verified_instructions: p.verified_instructions,
        })
        .collect();
    let maps = summary
        .maps
        .iter()
        .map(|m| MapStatus {
            name: m.name.to_string(),
            entries: m.entries,
            max_entries: m.capacity,
            failed_writes: m.failed_writes,
            error: m.last_error.clone(),
        })
        .collect();
    let hosts = summary
        .hosts
        .iter()
        .map(|(name, h)| {
            let host = PeerHost {
                vtep: h.vtep_ip,
                netd: h.netd.clone(),
            };
            (name.clone(), host)
        })
        .collect();
    Status {
        healthy,
        health: HealthStatus {
            healthy,
            problems: problems.clone(),
        },
        problems,
        host: daemon.options.host_name.clone(),
        vtep: daemon.options.advertise,
        uplink: daemon.uplink.clone(),
        uplink_source: Some(daemon.uplink_source),
        uplink_mtu: daemon.uplink_mtu,
        kernel: KernelStatus {
            tc_attach: daemon.tc_attach.name().to_string(),
            adjust_room_encap_l2_eth: daemon.features.encap_l2_eth,
            adjust_room_decap_l3_ipv4: daemon.features.decap_l3_ipv4,
            gro_device: daemon.gro_device.then(|| crate::gro::DEVICE.to_string()),
        },
        store_url: daemon.options.store.clone(),
        store: StoreStatus {
            state: links.state,
            watch: links.watch,
            lease: links.lease,
            url: daemon.options.store.clone(),
            revision: summary.revision,
            member,
            keys: if summary.shared_layout_hosts.is_empty() {
                "per-host"
            } else {
                "shared"
            }
            .into(),
            shared_layout_hosts: summary.shared_layout_hosts.to_vec(),
        },
        hosts,
        networks: summary.networks.len(),
        networks_active: summary.active_networks,
        endpoints_local: summary.local.iter().filter(|e| e.record.is_some()).count(),
        endpoints_known: summary.endpoints_known,
        endpoints_programmed: Programmed {
            local: summary.programmed_local,
            remote: summary.programmed_remote,
        },
        invalid_values: summary.invalid_values,
        events_applied: summary.events_applied,
        drift_repaired: summary.drift_repaired,
        last_batch: LastBatch {
            events: summary.last_batch_events,
            ms: summary.last_batch.as_secs_f64() * 1000.0,
        },
        docker: docker.map_or_else(|| "disabled".into(), |(_, detail)| detail),
        maps,
        programs,
        uptime_seconds: daemon.started.elapsed().as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(state: LinkState, error: Option<&str>) -> Link {
        Link {
            state,
            since: std::time::Instant::now(),
            error: error.map(str::to_string),
        }
    }

    fn fdb(last_error: Option<&str>) -> MapFill {
        MapFill {
            name: "NETD_FDB",
            entries: 8,
            capacity: 8,
            failed_writes: u64::from(last_error.is_some()),
            last_error: last_error.map(str::to_string),
        }
    }

    #[test]
    fn a_connected_synced_host_with_room_in_its_maps_is_healthy() {
        let up = link(LinkState::Connected, None);
        let maps = [fdb(None)];
        let inputs = HealthInputs {
            watch: &up,
            lease: &up,
            synced: true,
            maps: &maps,
            docker: Some((LinkState::Connected, "connected to /run/docker.sock".into())),
        };
        assert_eq!(problems(&inputs), Vec::<String>::new());
        // Docker off is not a problem either.
        let inputs = HealthInputs {
            docker: None,
            ..inputs
        };
        assert_eq!(problems(&inputs), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_named_with_its_reason() {
        let down = link(LinkState::Unreachable, Some("connection refused"));
        let lost = link(LinkState::Connecting, Some("host lease expired"));
        let maps = [fdb(Some("no space left"))];
        let inputs = HealthInputs {
            watch: &down,
            lease: &lost,
            synced: false,
            maps: &maps,
            docker: Some((
                LinkState::Unreachable,
                "unreachable: no socket (retrying)".into(),
            )),
        };
        assert_eq!(
            problems(&inputs),
            [
                "store watch unreachable (connection refused)",
                "host lease connecting (host lease expired)",
                "map NETD_FDB failing (8 of 8 entries): no space left",
                "docker unreachable: no socket (retrying)",
            ]
        );
    }

    #[test]
    fn a_connected_watch_whose_listing_is_not_applied_is_not_synced() {
        let up = link(LinkState::Connected, None);
        let inputs = HealthInputs {
            watch: &up,
            lease: &up,
            synced: false,
            maps: &[],
            docker: None,
        };
        assert_eq!(
            problems(&inputs),
            ["reconciler not synced (applying the store's listing)"]
        );
    }
}
