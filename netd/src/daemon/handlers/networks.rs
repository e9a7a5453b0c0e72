//! `network create|ls|inspect|rm`.

use std::net::Ipv4Addr;

use anyhow::{anyhow, bail};
use ipnet::Ipv4Net;
use netd_store::{
    keys,
    schema::{
        self, DRIVER_MACVLAN, DRIVER_OVERLAY, NetworkRecord, SCHEMA_VERSION, SubnetRecord,
        VNI_FIRST_AUTO, VNI_MAX,
    },
};
use serde_json::{Value, json};

use crate::api::SubnetSpec;
use crate::daemon::Shared;
fn parse_cidr(text: &str, what: &str) -> anyhow::Result<Ipv4Net> {
    text.parse::<Ipv4Net>().map_err(|_| {
        anyhow!("invalid {what} {text:?}: expected an IPv4 CIDR such as 172.31.0.0/16")
    })
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
                gateway: s
                    .gateway
                    .as_deref()
                    .map(|g| parse_ip(g, "gateway"))
                    .transpose()?,
                ip_range: s
                    .ip_range
                    .as_deref()
                    .map(|r| parse_cidr(r, "ip-range"))
                    .transpose()?,
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
        if store
            .create_all(&[
                (keys::network(&name), schema::encode(&record)),
                (keys::vni(vni), name.clone().into_bytes()),
            ])
            .await?
        {
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
        let kvs = [
            (keys::network(&name), schema::encode(&record)),
            (keys::vni(candidate), name.clone().into_bytes()),
        ];
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
            Ok(Some(kv)) => anyhow!(
                "VNI {vni} is already used by network {:?}",
                String::from_utf8_lossy(&kv.value)
            ),
            Ok(None) => {
                anyhow!("network {name:?} or VNI {vni} was created concurrently; try again")
            }
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

pub(super) fn network_ls(shared: &Shared) -> Value {
    let cluster = shared.cluster();
    let list: Vec<Value> = cluster
        .networks
        .values()
        .map(|n| {
            network_json(
                n,
                cluster
                    .endpoints
                    .iter()
                    .filter(|e| e.network == n.name)
                    .count(),
            )
        })
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
    let record: NetworkRecord = schema::decode(&kv.value)
        .map_err(|e| anyhow!("network {name:?} is invalid in the store: {e}"))?;
    record
        .validate(name)
        .map_err(|e| anyhow!("network {name:?} is invalid in the store: {e}"))?;
    Ok(record)
}

pub(super) async fn network_inspect(shared: &Shared, name: &str) -> anyhow::Result<Value> {
    let record = load_network(shared, name).await?;
    let cluster = shared.cluster();
    let endpoints: Vec<Value> = cluster
        .endpoints
        .iter()
        .filter(|e| e.network == name)
        .map(super::endpoints::endpoint_json)
        .collect();
    let mut v = network_json(&record, endpoints.len());
    v["endpoint_list"] = json!(endpoints);
    Ok(v)
}

pub(crate) async fn network_rm(shared: &Shared, name: &str) -> anyhow::Result<Value> {
    let record = load_network(shared, name).await?;
    let endpoints = shared.store.list(&keys::endpoints_of(name)).await?;
    if !endpoints.kvs.is_empty() {
        let names: Vec<&str> = endpoints
            .kvs
            .iter()
            .filter_map(|kv| kv.key.rsplit('/').next())
            .collect();
        bail!(
            "network {name:?} is in use by {} endpoint(s): {}",
            names.len(),
            names.join(", ")
        );
    }
    let mut doomed = vec![keys::network(name), keys::vni(record.vni)];
    doomed.extend(
        shared
            .store
            .list(&keys::ipam_of(name))
            .await?
            .kvs
            .into_iter()
            .map(|kv| kv.key),
    );
    shared.store.delete_all(&doomed).await?;
    Ok(json!({ "removed": name }))
}
