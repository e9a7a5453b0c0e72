//! `/v1/networks`: create and remove are service calls; ls and inspect say what this host's
//! reconciler knows, inspect with the network's endpoints and what will not work as asked.

use std::{collections::HashMap, sync::Arc};

use axum::{extract::State, http::StatusCode};
use netd_store::schema::NetworkRecord;

use super::{Answer, answer, endpoints::endpoint_view};
use crate::{
    api::{ApiError, CreateNetwork, Network, Removed, Subnet},
    daemon::{
        Daemon,
        server::{JsonBody, Name},
    },
    service::{Service, ServiceError},
};

fn network(n: &NetworkRecord, endpoints: usize) -> Network {
    Network {
        name: n.name.clone(),
        driver: n.driver.clone(),
        vni: n.vni,
        subnets: n.subnets.iter().map(Subnet::from).collect(),
        mtu: n.mtu,
        options: n.options.clone(),
        endpoints,
        endpoint_list: None,
        warnings: Vec::new(),
    }
}

pub(super) async fn create(
    State(daemon): State<Arc<Daemon>>,
    JsonBody(request): JsonBody<CreateNetwork>,
) -> Result<(StatusCode, axum::Json<Network>), ApiError> {
    let record = daemon.service.network_create(request).await?;
    Ok((StatusCode::CREATED, axum::Json(network(&record, 0))))
}

pub(super) async fn list(State(daemon): State<Arc<Daemon>>) -> Answer<Vec<Network>> {
    answer(network_ls(&daemon.service).await)
}

async fn network_ls(service: &Service) -> Result<Vec<Network>, ServiceError> {
    let summary = service.control.summary();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for e in service.control.endpoints(None).await? {
        *counts.entry(e.network).or_default() += 1;
    }
    Ok(summary
        .networks
        .values()
        .map(|n| network(n, counts.get(&n.name).copied().unwrap_or(0)))
        .collect())
}

pub(super) async fn inspect(
    State(daemon): State<Arc<Daemon>>,
    Name(name): Name,
) -> Answer<Network> {
    answer(network_inspect(&daemon.service, &name).await)
}

async fn network_inspect(service: &Service, name: &str) -> Result<Network, ServiceError> {
    let (record, _) = service.network_load(name).await?;
    let endpoints: Vec<_> = service
        .control
        .endpoints(Some(name))
        .await?
        .iter()
        .map(endpoint_view)
        .collect();
    let mut n = network(&record, endpoints.len());
    n.endpoint_list = Some(endpoints);
    n.warnings = mtu_warnings(&record, &service.control.summary().hosts);
    Ok(n)
}

pub(super) async fn remove(State(daemon): State<Arc<Daemon>>, Name(name): Name) -> Answer<Removed> {
    answer(daemon.service.network_rm(&name).await.map(|()| Removed {
        removed: name,
        network: None,
    }))
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
