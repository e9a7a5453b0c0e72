//! `endpoint add|rm|ls` for network namespaces.

use std::net::Ipv4Addr;

use anyhow::{Context as _, anyhow, bail};
use netd_store::{
    KeyValue, WatchEvent, ipam, keys,
    schema::{self, EndpointRecord, Mac, MacvlanMode, NetworkRecord, SCHEMA_VERSION},
};
use serde_json::{Value, json};

use super::networks::load_network;
use crate::daemon::Shared;
use crate::{datapath::Hook, netlink};

pub(super) fn endpoint_json(e: &crate::reconcile::Endpoint) -> Value {
    json!({
        "name": e.id,
        "network": e.network,
        "ip": e.record.ip,
        "mac": e.record.mac,
        "host": e.record.host,
        "vtep": e.record.vtep_ip,
    })
}

pub(super) fn endpoint_ls(shared: &Shared, network: Option<&str>) -> Value {
    let cluster = shared.cluster();
    json!(
        cluster
            .endpoints
            .iter()
            .filter(|e| network.is_none_or(|n| e.network == n))
            .map(endpoint_json)
            .collect::<Vec<_>>()
    )
}

/// Records a change this daemon just made in its view and applies it at once, instead of waiting
/// for the watch to echo it (the echo then changes nothing).
pub(crate) fn apply_locally(shared: &Shared, event: WatchEvent) -> anyhow::Result<()> {
    {
        let mut view = shared.view();
        let revision = view.revision;
        view.apply(&[event]);
        view.revision = revision;
    }
    shared.reconcile()
}

pub(super) async fn endpoint_add(
    shared: &Shared,
    network: &str,
    netns: &str,
    ip: Option<Ipv4Addr>,
    mac: Option<&str>,
    ifname: &str,
    name: &str,
) -> anyhow::Result<Value> {
    if !keys::valid_name(name) {
        bail!("invalid endpoint name {name:?} (letters, digits, '-', '_', '.'; at most 64)");
    }
    if ifname.is_empty() || ifname.len() > 15 || ifname.contains('/') {
        bail!("invalid interface name {ifname:?} (1 to 15 characters)");
    }
    let net = load_network(shared, network).await?;
    let netns_path = netlink::netns_path(netns)?;
    let mac = mac
        .map(str::parse::<Mac>)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    if let Some(m) = mac
        && !m.is_unicast()
    {
        bail!("MAC {m} is not a unicast address");
    }
    let key = keys::endpoint(network, name);
    if shared.store.get(&key).await?.is_some() {
        bail!("endpoint {name:?} already exists in network {network:?}");
    }
    let ip = ipam::allocate(&shared.store, &net, name, ip).await?;
    let mac = mac.unwrap_or_else(|| Mac::from_ipv4(ip));
    let result = plumb_and_publish(shared, &net, &netns_path, ip, mac, ifname, name).await;
    if result.is_err() {
        // Nothing half-made stays: the address goes back.
        let _ = ipam::release(&shared.store, network, ip, name).await;
    }
    result
}

async fn plumb_and_publish(
    shared: &Shared,
    net: &NetworkRecord,
    netns: &std::path::Path,
    ip: Ipv4Addr,
    mac: Mac,
    ifname: &str,
    name: &str,
) -> anyhow::Result<Value> {
    let cluster = shared.cluster();
    if cluster
        .endpoints
        .iter()
        .any(|e| e.vni == net.vni && e.record.mac == mac)
    {
        bail!("MAC {mac} is already used in network {:?}", net.name);
    }
    let subnet = net
        .subnet_of(ip)
        .context("allocated address outside the network")?;
    let mtu = match net.macvlan() {
        // On the LAN: no encapsulation, the parent's MTU.
        Some(spec) => {
            let (parent, _) = shared
                .parent_port(net)
                .ok_or_else(|| anyhow!("parent interface of network {:?} not found on this host (see --macvlan-parent)", net.name))?;
            if spec.mode == MacvlanMode::Passthru
                && cluster
                    .endpoints
                    .iter()
                    .any(|e| e.network == net.name && e.record.host == shared.options.host_name)
            {
                bail!(
                    "network {:?} is in passthru mode and its parent {parent} already has an endpoint on this host",
                    net.name
                );
            }
            net.mtu.unwrap_or(netlink::mtu(&parent)?)
        }
        None => net
            .mtu
            .unwrap_or(crate::daemon::default_inner_mtu(shared.uplink_mtu)),
    };
    let mac_text = mac.to_string();
    let host_if = netlink::create_endpoint(&netlink::EndpointLink {
        network: &net.name,
        endpoint: name,
        netns,
        ifname,
        mac: &mac_text,
        address: ip,
        prefix_len: subnet.subnet.prefix_len(),
        gateway: subnet.gateway,
        mtu,
    })?;
    let undo = |shared: &Shared| {
        let _ = shared.datapath().detach(Hook::Endpoint, &host_if);
        let _ = netlink::delete_link(&host_if);
        shared.local().remove(&(net.name.clone(), name.to_string()));
    };
    if let Err(e) = shared.datapath().attach(Hook::Endpoint, &host_if) {
        undo(shared);
        return Err(e.into());
    }
    shared
        .local()
        .insert((net.name.clone(), name.to_string()), host_if.clone());
    let record = EndpointRecord {
        version: SCHEMA_VERSION,
        ip,
        mac,
        host: shared.options.host_name.clone(),
        vtep_ip: shared.options.advertise,
        name: name.to_string(),
    };
    let key = keys::endpoint(&net.name, name);
    let value = schema::encode(&record);
    match shared
        .store
        .create_all(&[(key.clone(), value.clone())])
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            undo(shared);
            bail!("endpoint {name:?} already exists in network {:?}", net.name);
        }
        Err(e) => {
            undo(shared);
            return Err(e.into());
        }
    }
    apply_locally(
        shared,
        WatchEvent::Put(KeyValue {
            key,
            value,
            // Newest claim: loses any conflict with an existing one, as the real revision would.
            create_revision: i64::MAX,
            mod_revision: i64::MAX,
        }),
    )?;
    Ok(json!({
        "name": name,
        "network": net.name,
        "ip": ip,
        "mac": mac,
        "host": shared.options.host_name,
        "interface": host_if,
    }))
}

pub(super) async fn endpoint_rm(
    shared: &Shared,
    name: &str,
    network: Option<&str>,
) -> anyhow::Result<Value> {
    let me = &shared.options.host_name;
    let cluster = shared.cluster();
    let mut found: Vec<(String, Option<Ipv4Addr>)> = cluster
        .endpoints
        .iter()
        .filter(|e| e.id == name && &e.record.host == me && network.is_none_or(|n| e.network == n))
        .map(|e| (e.network.clone(), Some(e.record.ip)))
        .collect();
    // An interface without a (valid) record: still ours to remove.
    for (net, ep) in shared.local().keys() {
        if ep == name && network.is_none_or(|n| n == net) && !found.iter().any(|(n, _)| n == net) {
            found.push((net.clone(), None));
        }
    }
    let (net, ip) = match found.as_slice() {
        [] => bail!("no endpoint {name:?} on this host"),
        [one] => one.clone(),
        _ => bail!("endpoint {name:?} exists in several networks; give --network"),
    };
    let key = keys::endpoint(&net, name);
    // The record and its address go together; the address only while it is still claimed for
    // this endpoint's name (ipam::allocate claimed it so).
    ipam::delete_releasing(&shared.store, std::slice::from_ref(&key), &net, ip, name).await?;
    let host_if = shared.local().remove(&(net.clone(), name.to_string()));
    if let Some(host_if) = &host_if {
        shared.datapath().detach(Hook::Endpoint, host_if)?;
        netlink::delete_link(host_if)?;
    }
    apply_locally(
        shared,
        WatchEvent::Delete {
            key,
            mod_revision: 0,
        },
    )?;
    Ok(json!({ "removed": name, "network": net }))
}
