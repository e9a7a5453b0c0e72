//! `network ls|inspect`: what this host's reconciler knows (create and rm are service calls).

use std::collections::HashMap;

use netd_store::schema::NetworkRecord;
use serde_json::{Value, json};

use super::endpoints::endpoint_json;
use crate::service::Service;

fn network_json(n: &NetworkRecord, endpoints: usize) -> Value {
    json!({
        "name": n.name,
        "driver": n.driver,
        "vni": n.vni,
        "subnets": n.subnets,
        "mtu": n.mtu,
        "options": n.options,
        "endpoints": endpoints,
    })
}

pub(super) async fn network_ls(service: &Service) -> anyhow::Result<Value> {
    let summary = service.control.summary();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for e in service.control.endpoints(None).await? {
        *counts.entry(e.network).or_default() += 1;
    }
    let list: Vec<Value> = summary
        .networks
        .values()
        .map(|n| network_json(n, counts.get(&n.name).copied().unwrap_or(0)))
        .collect();
    Ok(json!(list))
}

pub(super) async fn network_inspect(service: &Service, name: &str) -> anyhow::Result<Value> {
    let (record, _) = service.network_load(name).await?;
    let endpoints: Vec<Value> = service
        .control
        .endpoints(Some(name))
        .await?
        .iter()
        .map(endpoint_json)
        .collect();
    let mut v = network_json(&record, endpoints.len());
    v["endpoint_list"] = json!(endpoints);
    let warnings = mtu_warnings(&record, &service.control.summary().hosts);
    if !warnings.is_empty() {
        v["warnings"] = json!(warnings);
    }
    Ok(v)
}

/// The hosts whose uplink cannot carry this network's packets once encapsulated (mtu + 50 B):
/// their big packets are dropped (and counted), so `inspect` says so.
fn mtu_warnings(
    net: &NetworkRecord,
    hosts: &std::collections::BTreeMap<String, netd_store::schema::HostRecord>,
) -> Vec<String> {
    let Some(mtu) = net.mtu else {
        return Vec::new();
    };
    if net.macvlan().is_some() {
        return Vec::new();
    }
    let needed = mtu + netd_common::VXLAN_OVERHEAD;
    hosts
        .iter()
        .filter(|(_, h)| h.uplink_mtu < needed)
        .map(|(name, h)| {
            format!(
                "MTU {mtu} needs an uplink MTU of {needed} for VXLAN; host {name}'s is {}",
                h.uplink_mtu
            )
        })
        .collect()
}
