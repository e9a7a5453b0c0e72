//! What each API request does. Errors are one clear sentence: the CLI prints them as they are.

use std::{collections::BTreeMap, net::Ipv4Addr, time::SystemTime};

use anyhow::{Context as _, anyhow, bail};
use ipnet::Ipv4Net;
use netd_store::{
    KeyValue, WatchEvent, ipam, keys,
    schema::{self, DRIVER_MACVLAN, DRIVER_OVERLAY, EndpointRecord, MacvlanMode, Mac, NetworkRecord, SCHEMA_VERSION, SubnetRecord, VNI_FIRST_AUTO, VNI_MAX},
};
use serde_json::{Value, json};

use super::Shared;
use crate::{
    api::{Request, SubnetSpec},
    datapath::{Hook, inspect},
    netlink,
};

pub async fn handle(shared: &Shared, request: Request) -> anyhow::Result<Value> {
    match request {
        Request::NetworkCreate { name, driver, subnets, mtu, vni, options } => {
            network_create(shared, name, driver, subnets, mtu, vni, options).await
        }
        Request::NetworkLs => Ok(network_ls(shared)),
        Request::NetworkInspect { name } => network_inspect(shared, &name).await,
        Request::NetworkRm { name } => network_rm(shared, &name).await,
        Request::EndpointAdd { network, netns, ip, mac, ifname, name } => {
            endpoint_add(shared, &network, &netns, ip, mac.as_deref(), &ifname, &name).await
        }
        Request::EndpointRm { name, network } => endpoint_rm(shared, &name, network.as_deref()).await,
        Request::EndpointLs { network } => Ok(endpoint_ls(shared, network.as_deref())),
        Request::Status => status(shared),
    }
}

fn parse_cidr(text: &str, what: &str) -> anyhow::Result<Ipv4Net> {
    text.parse::<Ipv4Net>()
        .map_err(|_| anyhow!("invalid {what} {text:?}: expected an IPv4 CIDR such as 172.31.0.0/16"))
}

fn parse_ip(text: &str, what: &str) -> anyhow::Result<Ipv4Addr> {
    text.parse::<Ipv4Addr>()
        .map_err(|_| anyhow!("invalid {what} {text:?}: expected an IPv4 address"))
}

fn build_subnets(specs: &[SubnetSpec]) -> anyhow::Result<Vec<SubnetRecord>> {
    specs
        .iter()
        .map(|s| {
            Ok(SubnetRecord {
                subnet: parse_cidr(&s.subnet, "subnet")?,
                gateway: s.gateway.as_deref().map(|g| parse_ip(g, "gateway")).transpose()?,
                ip_range: s.ip_range.as_deref().map(|r| parse_cidr(r, "ip-range")).transpose()?,
                aux: s
                    .aux
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), parse_ip(v, "aux address")?)))
                    .collect::<anyhow::Result<_>>()?,
            })
        })
        .collect()
}

pub(crate) async fn network_create(
    shared: &Shared,
    name: String,
    driver: String,
    subnets: Vec<SubnetSpec>,
    mtu: Option<u16>,
    vni: Option<u32>,
    options: Vec<(String, String)>,
) -> anyhow::Result<Value> {
    if driver != DRIVER_OVERLAY && driver != DRIVER_MACVLAN {
        bail!("driver {driver:?} is not supported (-d overlay or -d macvlan)");
    }
    if subnets.is_empty() {
        bail!("a network needs at least one --subnet");
    }
    let mut record = NetworkRecord {
        version: SCHEMA_VERSION,
        name: name.clone(),
        driver,
        vni: vni.unwrap_or(VNI_FIRST_AUTO),
        subnets: build_subnets(&subnets)?,
        mtu,
        options: options.into_iter().collect(),
    };
    record.validate(&name).map_err(|e| anyhow!("{e}"))?;
    let store = &shared.store;
    if let Some(vni) = vni {
        if store.create_all(&[(keys::network(&name), schema::encode(&record)), (keys::vni(vni), name.clone().into_bytes())]).await? {
            return Ok(json!(record));
        }
        return Err(creation_conflict(shared, &name, vni).await);
    }
    // The lowest free VNI from 256; a race with another host's create just moves on to the next.
    let used = store.list(keys::VNIS).await?;
    let mut taken: std::collections::HashSet<u32> = used
        .kvs
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(keys::VNIS)?.parse().ok())
        .collect();
    for candidate in VNI_FIRST_AUTO..=VNI_MAX {
        if taken.contains(&candidate) {
            continue;
        }
        record.vni = candidate;
        let kvs = [(keys::network(&name), schema::encode(&record)), (keys::vni(candidate), name.clone().into_bytes())];
        if store.create_all(&kvs).await? {
            return Ok(json!(record));
        }
        if store.get(&keys::network(&name)).await?.is_some() {
            bail!("network {name:?} already exists");
        }
        taken.insert(candidate);
    }
    bail!("no free VNI left")
}

async fn creation_conflict(shared: &Shared, name: &str, vni: u32) -> anyhow::Error {
    match shared.store.get(&keys::network(name)).await {
        Ok(Some(_)) => anyhow!("network {name:?} already exists"),
        Ok(None) => match shared.store.get(&keys::vni(vni)).await {
            Ok(Some(kv)) => anyhow!("VNI {vni} is already used by network {:?}", String::from_utf8_lossy(&kv.value)),
            Ok(None) => anyhow!("network {name:?} or VNI {vni} was created concurrently; try again"),
            Err(e) => e.into(),
        },
        Err(e) => e.into(),
    }
}

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

fn network_ls(shared: &Shared) -> Value {
    let cluster = shared.cluster();
    let list: Vec<Value> = cluster
        .networks
        .values()
        .map(|n| network_json(n, cluster.endpoints.iter().filter(|e| e.network == n.name).count()))
        .collect();
    json!(list)
}

/// Reads a network straight from the store (the view may lag behind a create on another host).
pub(crate) async fn load_network(shared: &Shared, name: &str) -> anyhow::Result<NetworkRecord> {
    let kv = shared
        .store
        .get(&keys::network(name))
        .await?
        .ok_or_else(|| anyhow!("network {name:?} not found"))?;
    let record: NetworkRecord = schema::decode(&kv.value).map_err(|e| anyhow!("network {name:?} is invalid in the store: {e}"))?;
    record.validate(name).map_err(|e| anyhow!("network {name:?} is invalid in the store: {e}"))?;
    Ok(record)
}

async fn network_inspect(shared: &Shared, name: &str) -> anyhow::Result<Value> {
    let record = load_network(shared, name).await?;
    let cluster = shared.cluster();
    let endpoints: Vec<Value> = cluster
        .endpoints
        .iter()
        .filter(|e| e.network == name)
        .map(endpoint_json)
        .collect();
    let mut v = network_json(&record, endpoints.len());
    v["endpoint_list"] = json!(endpoints);
    Ok(v)
}

pub(crate) async fn network_rm(shared: &Shared, name: &str) -> anyhow::Result<Value> {
    let record = load_network(shared, name).await?;
    let endpoints = shared.store.list(&keys::endpoints_of(name)).await?;
    if !endpoints.kvs.is_empty() {
        let names: Vec<&str> = endpoints.kvs.iter().filter_map(|kv| kv.key.rsplit('/').next()).collect();
        bail!("network {name:?} is in use by {} endpoint(s): {}", names.len(), names.join(", "));
    }
    let mut doomed = vec![keys::network(name), keys::vni(record.vni)];
    doomed.extend(shared.store.list(&keys::ipam_of(name)).await?.kvs.into_iter().map(|kv| kv.key));
    shared.store.delete_all(&doomed).await?;
    Ok(json!({ "removed": name }))
}

fn endpoint_json(e: &crate::reconcile::Endpoint) -> Value {
    json!({
        "name": e.id,
        "network": e.network,
        "ip": e.record.ip,
        "mac": e.record.mac,
        "host": e.record.host,
        "vtep": e.record.vtep_ip,
    })
}

fn endpoint_ls(shared: &Shared, network: Option<&str>) -> Value {
    let cluster = shared.cluster();
    json!(cluster
        .endpoints
        .iter()
        .filter(|e| network.is_none_or(|n| e.network == n))
        .map(endpoint_json)
        .collect::<Vec<_>>())
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

async fn endpoint_add(
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
    let mac = mac.map(str::parse::<Mac>).transpose().map_err(|e| anyhow!(e))?;
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
        let _ = ipam::release(&shared.store, network, ip).await;
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
    if cluster.endpoints.iter().any(|e| e.vni == net.vni && e.record.mac == mac) {
        bail!("MAC {mac} is already used in network {:?}", net.name);
    }
    let subnet = net.subnet_of(ip).context("allocated address outside the network")?;
    let mtu = match net.macvlan() {
        // On the LAN: no encapsulation, the parent's MTU.
        Some(spec) => {
            let (parent, _) = shared
                .parent_port(net)
                .ok_or_else(|| anyhow!("parent interface of network {:?} not found on this host (see --macvlan-parent)", net.name))?;
            if spec.mode == MacvlanMode::Passthru
                && cluster.endpoints.iter().any(|e| e.network == net.name && e.record.host == shared.options.host_name)
            {
                bail!("network {:?} is in passthru mode and its parent {parent} already has an endpoint on this host", net.name);
            }
            net.mtu.unwrap_or(netlink::mtu(&parent)?)
        }
        None => net.mtu.unwrap_or(super::default_inner_mtu(shared.uplink_mtu)),
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
    shared.local().insert((net.name.clone(), name.to_string()), host_if.clone());
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
    match shared.store.create_all(&[(key.clone(), value.clone())]).await {
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

async fn endpoint_rm(shared: &Shared, name: &str, network: Option<&str>) -> anyhow::Result<Value> {
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
    let mut doomed = vec![key.clone()];
    if let Some(ip) = ip {
        doomed.push(keys::ipam(&net, ip));
    }
    shared.store.delete_all(&doomed).await?;
    let host_if = shared.local().remove(&(net.clone(), name.to_string()));
    if let Some(host_if) = &host_if {
        shared.datapath().detach(Hook::Endpoint, host_if)?;
        netlink::delete_link(host_if)?;
    }
    apply_locally(shared, WatchEvent::Delete { key, mod_revision: 0 })?;
    Ok(json!({ "removed": name, "network": net }))
}

fn status(shared: &Shared) -> anyhow::Result<Value> {
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
    let maps = shared
        .datapath()
        .pin_dir()
        .map(|dir| inspect::list(dir).map(|l| json!(l)).unwrap_or_else(|e| json!(e.to_string())));
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
        "uptime_seconds": shared.started.elapsed().as_secs(),
    }))
}
