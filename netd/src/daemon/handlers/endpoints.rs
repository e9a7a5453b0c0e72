//! `endpoint add|rm|ls` for network namespaces.

use std::net::Ipv4Addr;

use anyhow::{anyhow, bail};
use netd_store::schema::Mac;
use serde_json::{Value, json};

use crate::{
    control::EndpointView,
    netlink,
    service::{
        Service,
        endpoints::{Address, NewEndpoint, Plumbing},
    },
};

pub(super) fn endpoint_json(e: &EndpointView) -> Value {
    json!({
        "name": e.id,
        "network": e.network,
        "ip": e.ip,
        "mac": e.mac,
        "host": e.host,
        "vtep": e.vtep,
    })
}

pub(super) async fn endpoint_ls(service: &Service, network: Option<&str>) -> anyhow::Result<Value> {
    let list = service.control.endpoints(network).await?;
    Ok(json!(list.iter().map(endpoint_json).collect::<Vec<_>>()))
}

/// `endpoint add`, as the CLI sends it.
pub(super) struct Add {
    pub network: String,
    pub netns: String,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<String>,
    pub ifname: String,
    pub name: String,
}

pub(super) async fn endpoint_add(service: &Service, add: Add) -> anyhow::Result<Value> {
    if add.ifname.is_empty() || add.ifname.len() > 15 || add.ifname.contains('/') {
        bail!(
            "invalid interface name {:?} (1 to 15 characters)",
            add.ifname
        );
    }
    let mac = add
        .mac
        .as_deref()
        .map(str::parse::<Mac>)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let netns = netlink::netns_path(&add.netns)?;
    let published = service
        .endpoint_publish(NewEndpoint {
            network: add.network,
            id: add.name.clone(),
            address: Address::Allocate(add.ip),
            mac,
            plumbing: Plumbing::Namespace {
                netns,
                ifname: add.ifname,
            },
            // Namespaces resolve each other by endpoint name.
            names: vec![add.name.clone()],
        })
        .await?;
    Ok(json!({
        "name": add.name,
        "network": published.network.name,
        "ip": published.ip,
        "mac": published.mac,
        "host": service.host.name,
        "interface": published.host_if,
    }))
}

pub(super) async fn endpoint_rm(
    service: &Service,
    name: &str,
    network: Option<&str>,
) -> anyhow::Result<Value> {
    let (net, ip) = service.local_endpoint(name, network)?;
    // The record and its address go together; the address only while it is still claimed for
    // this endpoint's name (the service claimed it so).
    service
        .endpoint_withdraw(&net, name, ip.map(|ip| (ip, name)))
        .await?;
    Ok(json!({ "removed": name, "network": net }))
}
