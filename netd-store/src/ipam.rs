//! Address allocation, unique across all hosts.
//!
//! An address is claimed by creating `/netd/v1/ipam/<network>/<ip>` if absent (one atomic
//! create in the store): two hosts asking at once get different addresses, or one of them an
//! error. Network, broadcast, gateway and aux addresses are never handed out.

use std::{collections::HashSet, net::Ipv4Addr};

use crate::{Backend, Store, StoreError, keys, schema::NetworkRecord};

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("address {ip} is outside network {network}'s subnets")]
    OutsideSubnet { ip: Ipv4Addr, network: String },
    #[error("address {ip} is outside the ip-range {range} of network {network}")]
    OutsideRange {
        ip: Ipv4Addr,
        range: ipnet::Ipv4Net,
        network: String,
    },
    #[error(
        "address {ip} is reserved in network {network} (network, broadcast, gateway or aux address)"
    )]
    Reserved { ip: Ipv4Addr, network: String },
    #[error("address {ip} is already in use in network {network}")]
    Taken { ip: Ipv4Addr, network: String },
    #[error("no free address left in network {0}")]
    Exhausted(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The owner of a claim of an address a host handed to Docker (`RequestAddress`) and no
/// endpoint has yet (a namespace endpoint's claim is owned by the endpoint's name). Every
/// Docker claim of netd before claims were bound to endpoints holds it too.
pub fn docker_owner(host: &str) -> String {
    format!("docker:{host}")
}

/// The owner of a claim `CreateEndpoint` bound to the Docker endpoint `eid`: one claim per
/// allocation, which a release for an earlier container on the same address cannot take.
pub fn docker_endpoint_owner(host: &str, eid: &str) -> String {
    format!("docker:{host}/{eid}")
}

/// Who holds a claim (its value) among `host`'s Docker claims; `None`: not one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DockerClaim<'a> {
    /// Handed out, no endpoint's yet ([`docker_owner`]).
    Requested,
    /// The endpoint's ([`docker_endpoint_owner`]).
    Endpoint(&'a str),
}

pub fn docker_claim<'a>(host: &str, value: &'a [u8]) -> Option<DockerClaim<'a>> {
    let value = std::str::from_utf8(value).ok()?;
    let rest = value.strip_prefix("docker:")?.strip_prefix(host)?;
    match rest.strip_prefix('/') {
        None if rest.is_empty() => Some(DockerClaim::Requested),
        Some(eid) if !eid.is_empty() => Some(DockerClaim::Endpoint(eid)),
        _ => None,
    }
}

/// Binds the claim of `ip` that `host` handed to Docker to the endpoint `eid`; returns whether
/// it did (`false`: the claim is not one `host` handed out and no endpoint has).
pub async fn bind_docker_claim(
    store: &Store,
    network: &str,
    ip: Ipv4Addr,
    host: &str,
    eid: &str,
) -> Result<bool, StoreError> {
    let key = keys::ipam(network, ip);
    let Some(kv) = store.get(&key).await? else {
        return Ok(false);
    };
    if docker_claim(host, &kv.value) != Some(DockerClaim::Requested) {
        return Ok(false);
    }
    let owner = docker_endpoint_owner(host, eid);
    store
        .put_if(
            &key,
            owner.as_bytes(),
            None,
            crate::Expect::ModRevision(kv.mod_revision),
        )
        .await
}

/// Claims `requested`, or the first free address of the network's pools, for `endpoint_id`.
pub async fn allocate(
    store: &Store,
    network: &NetworkRecord,
    endpoint_id: &str,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, IpamError> {
    let name = network.name.clone();
    if let Some(ip) = requested {
        let subnet = network.subnet_of(ip).ok_or(IpamError::OutsideSubnet {
            ip,
            network: name.clone(),
        })?;
        if let Some(range) = subnet.ip_range
            && !range.contains(&ip)
        {
            return Err(IpamError::OutsideRange {
                ip,
                range,
                network: name,
            });
        }
        if subnet.is_reserved(ip) {
            return Err(IpamError::Reserved { ip, network: name });
        }
        return if claim(store, &name, ip, endpoint_id).await? {
            Ok(ip)
        } else {
            Err(IpamError::Taken { ip, network: name })
        };
    }
    let taken: HashSet<Ipv4Addr> = store
        .list(&keys::ipam_of(&name))
        .await?
        .kvs
        .iter()
        .filter_map(|kv| kv.key.rsplit('/').next()?.parse().ok())
        .collect();
    for subnet in &network.subnets {
        for ip in subnet.pool().hosts() {
            if taken.contains(&ip) || subnet.is_reserved(ip) {
                continue;
            }
            // Another host may have claimed it since the listing: then try the next one.
            if claim(store, &name, ip, endpoint_id).await? {
                return Ok(ip);
            }
        }
    }
    Err(IpamError::Exhausted(name))
}

async fn claim(
    store: &Store,
    network: &str,
    ip: Ipv4Addr,
    endpoint_id: &str,
) -> Result<bool, StoreError> {
    store
        .create_all(&[(keys::ipam(network, ip), endpoint_id.as_bytes().to_vec())])
        .await
}

/// Deletes `records` (an endpoint's keys) and, in the same transaction, releases its address
/// `ip` if it has one and `owner` still holds it; returns how many keys went.
pub async fn delete_releasing(
    store: &Store,
    records: &[String],
    network: &str,
    ip: Option<Ipv4Addr>,
    owner: &str,
) -> Result<usize, StoreError> {
    match ip {
        Some(ip) => {
            store
                .delete_with_claim(records, &keys::ipam(network, ip), owner.as_bytes())
                .await
        }
        None => store.delete_all(records).await,
    }
}

/// Frees an address if `owner` (the name it was claimed for) still holds it; returns whether it
/// did. Idempotent, and never frees another endpoint's claim on the same address.
pub async fn release(
    store: &Store,
    network: &str,
    ip: Ipv4Addr,
    owner: &str,
) -> Result<bool, StoreError> {
    delete_releasing(store, &[], network, Some(ip), owner)
        .await
        .map(|deleted| deleted == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_claims_are_told_apart_by_host_and_endpoint() {
        assert_eq!(
            docker_claim("h1", docker_owner("h1").as_bytes()),
            Some(DockerClaim::Requested)
        );
        assert_eq!(
            docker_claim("h1", docker_endpoint_owner("h1", "abc").as_bytes()),
            Some(DockerClaim::Endpoint("abc"))
        );
        for other in [
            "docker:h10",
            "docker:h2/abc",
            "docker:h1/",
            "web1",
            "docker:",
        ] {
            assert_eq!(docker_claim("h1", other.as_bytes()), None, "{other}");
        }
    }
}
