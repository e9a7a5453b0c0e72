//! Address claims: who a claim is for, and why one is refused. Claiming (unique across all
//! hosts, judged from every host's claims) is the daemon's, which watches them all
//! (netd/src/service/claims.rs).

use std::net::Ipv4Addr;

use crate::{Backend, Store, StoreError};

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

/// Binds the claim under `key` that `host` handed to Docker to the endpoint `eid`; returns
/// whether it did (`false`: the claim is not one `host` handed out and no endpoint has).
pub async fn bind_docker_claim(
    store: &Store,
    key: &str,
    host: &str,
    eid: &str,
) -> Result<bool, StoreError> {
    let Some(kv) = store.get(key).await? else {
        return Ok(false);
    };
    if docker_claim(host, &kv.value) != Some(DockerClaim::Requested) {
        return Ok(false);
    }
    let owner = docker_endpoint_owner(host, eid);
    store
        .put_if(
            key,
            owner.as_bytes(),
            None,
            crate::Expect::ModRevision(kv.mod_revision),
        )
        .await
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
