//! Keeps Docker and the store in step, following the Engine's event stream and re-checking
//! everything on start, on every reconnect and periodically (the stream drops events for slow
//! readers, and events are lost while netd is down).
//!
//! - store -> Docker: every netd network exists in this host's Docker (created with the
//!   `netd.network` option); one that left the store leaves Docker.
//! - Docker -> store: an endpoint of this host that Docker no longer has (its container went
//!   away while netd was down) is removed, and its address released.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use netd_store::{Backend, backoff::Backoff, keys, options::MIRROR_OF};
use serde_json::{Value, json};

use super::state::DockerState;
use crate::health::LinkState;

const RESYNC_EVERY: Duration = Duration::from_secs(15);
/// An endpoint younger than this may not be visible in Docker yet (created, not yet joined).
const GRACE: Duration = Duration::from_secs(60);

pub async fn run(state: Arc<DockerState>) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    loop {
        match follow(&state).await {
            Ok(()) => backoff.reset(),
            Err(error) => {
                state.health.set_docker(
                    LinkState::Unreachable,
                    format!("unreachable: {error:#} (retrying)"),
                );
                backoff.wait().await;
            }
        }
    }
}

/// Connects, reconciles, then follows events until the stream breaks. Store changes that
/// matter here (networks, this host's endpoints) come from the reconciler's summary; a pass
/// also runs every [`RESYNC_EVERY`], since Docker's event stream is lossy.
async fn follow(state: &Arc<DockerState>) -> anyhow::Result<()> {
    state.engine.ping().await?;
    let mut events = state.engine.events().await?;
    state.health.set_docker(
        LinkState::Connected,
        format!("connected to {}", state.engine.socket().display()),
    );
    let mut summaries = state.service.control.subscribe();
    // Taken before the pass: a change during it gets a pass of its own.
    let mut last_inputs = store_inputs(state);
    resync(state).await?;
    let mut resync_at = tokio::time::Instant::now() + RESYNC_EVERY;
    loop {
        tokio::select! {
            event = events.next() => {
                let event = event?;
                let relevant = matches!(
                    (event["Type"].as_str(), event["Action"].as_str()),
                    (Some("container"), Some("die" | "destroy" | "stop" | "kill"))
                        | (Some("network"), Some("disconnect" | "destroy" | "create"))
                );
                if relevant {
                    resync(state).await?;
                }
            }
            changed = summaries.changed() => {
                changed.map_err(|_| anyhow::anyhow!("the reconciler stopped"))?;
                let now = store_inputs(state);
                if now != last_inputs {
                    resync(state).await?;
                    last_inputs = now;
                }
            }
            () = tokio::time::sleep_until(resync_at) => {
                resync(state).await?;
                last_inputs = store_inputs(state);
                resync_at = tokio::time::Instant::now() + RESYNC_EVERY;
            }
        }
    }
}

/// What `resync` acts on from the store: the networks and this host's endpoints. The endpoints
/// matter on their own: the pass that removes those whose container went while netd was down
/// (releasing their addresses) must not wait for the periodic one.
fn store_inputs(state: &DockerState) -> (Vec<String>, Vec<String>) {
    let summary = state.service.control.summary();
    (
        summary.networks.keys().cloned().collect(),
        summary
            .local
            .iter()
            .filter(|e| e.record.is_some())
            .map(|e| e.id.clone())
            .collect(),
    )
}

async fn resync(state: &Arc<DockerState>) -> anyhow::Result<()> {
    let summary = state.service.control.summary();
    let docker = state.engine.networks("netd").await?;
    let mut by_name: HashMap<String, String> = docker
        .iter()
        .map(|n| (n.name.clone(), n.id.clone()))
        .collect();
    let bound = state.bindings.all();

    // Docker networks found at start-up (or made while we were away): bind them.
    for n in &docker {
        if !bound.contains_key(&n.id)
            && let Some(net) = summary.networks.get(&n.name)
        {
            let subnets: Vec<_> = net.subnets.iter().map(|s| s.subnet).collect();
            state.adopt(&n.id, &n.name, &subnets);
        }
    }

    // store -> Docker.
    for (name, net) in summary.networks.iter() {
        if by_name.contains_key(name) {
            continue;
        }
        let config: Vec<Value> = net
            .subnets
            .iter()
            .map(|s| {
                let mut c = json!({ "Subnet": s.subnet.to_string() });
                if let Some(g) = s.gateway {
                    c["Gateway"] = json!(g.to_string());
                }
                if let Some(r) = s.ip_range {
                    c["IPRange"] = json!(r.to_string());
                }
                if !s.aux.is_empty() {
                    c["AuxiliaryAddresses"] = json!(
                        s.aux
                            .iter()
                            .map(|(k, v)| (k.clone(), v.to_string()))
                            .collect::<HashMap<_, _>>()
                    );
                }
                c
            })
            .collect();
        let mut options = json!({ MIRROR_OF: name });
        if let Some(mtu) = net.mtu {
            options["com.docker.network.driver.mtu"] = json!(mtu.to_string());
        }
        let internal = net
            .options
            .get(netd_store::options::INTERNAL)
            .is_some_and(|v| v == "true");
        let body = json!({
            "Name": name,
            "Driver": "netd",
            "CheckDuplicate": true,
            "Attachable": true,
            "Internal": internal,
            "IPAM": { "Driver": "netd", "Config": config, "Options": { MIRROR_OF: name } },
            "Options": options,
        });
        match state.engine.create_network(&body).await {
            Ok(()) => {
                tracing::info!(network = %name, "network mirrored into Docker");
                by_name.insert(name.clone(), String::new());
            }
            Err(error) => {
                tracing::warn!(network = %name, %error, "cannot mirror network into Docker")
            }
        }
    }
    // A Docker network bound to a netd network (published or mirrored) whose netd network left
    // the store leaves Docker. One the user just made is not bound until netd has published it,
    // so it stays; binding, not "seen in the store", is the test, because another host may
    // delete a network before this host's view ever contained it.
    for (name, id) in &by_name {
        // Not yet in this host's view is not gone: the store has the last word (a network
        // this host just published, or one its reconciler has not caught up with).
        if !summary.networks.contains_key(name)
            && bound.contains_key(id)
            && state
                .service
                .store
                .get(&keys::network(name))
                .await?
                .is_none()
        {
            match state.engine.remove_network(id).await {
                Ok(()) => {
                    tracing::info!(network = %name, "network removed from Docker (gone from the store)");
                }
                Err(error) => {
                    tracing::warn!(network = %name, %error, "cannot remove network from Docker")
                }
            }
        }
    }

    // Docker -> store: endpoints whose container is gone.
    let mut live: HashSet<String> = HashSet::new();
    let mut joined: Vec<(String, String)> = Vec::new();
    for nid in state.bindings.all().keys() {
        if let Some(n) = state.engine.network(nid).await? {
            for c in n["Containers"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, c)| c)
            {
                if let Some(eid) = c["EndpointID"].as_str() {
                    live.insert(eid.to_string());
                    joined.push((nid.clone(), eid.to_string()));
                }
            }
        }
    }
    // Containers joined before this daemon started (or whose lookup failed): names and DNS.
    state.follow_unserved(&joined);
    let young: HashSet<String> = state
        .created
        .lock()
        .map(|m| {
            m.iter()
                .filter(|(_, t)| t.elapsed() < GRACE)
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let bound_names: HashSet<String> = state.bindings.all().into_values().collect();
    for ep in summary.local.iter().filter(|e| e.record.is_some()) {
        let docker_made = ep.id.len() == 64 && ep.id.bytes().all(|b| b.is_ascii_hexdigit());
        if docker_made
            && bound_names.contains(&ep.network)
            && !live.contains(&ep.id)
            && !young.contains(&ep.id)
        {
            tracing::info!(network = %ep.network, endpoint = %ep.id, "Docker no longer has this endpoint; releasing it");
            state.remove_endpoint(&ep.network, &ep.id, true).await?;
        }
    }
    Ok(())
}
