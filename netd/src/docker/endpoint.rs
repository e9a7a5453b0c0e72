//! A container's endpoint on a netd network: `CreateEndpoint` publishes it (its veth pair made
//! here, its record in the store), `Join` tells Docker which interface to move into the
//! container and how to route, `DeleteEndpoint` withdraws it.

use std::{net::Ipv4Addr, time::Instant};

use anyhow::{anyhow, bail};
use netd_store::{
    Backend, ipam,
    schema::{self, EndpointRecord, Mac, NetworkRecord, SubnetRecord},
};

use super::{
    lock::lock,
    protocol::{
        self, CreateEndpointRequest, CreateEndpointResponse, Empty, EndpointInterface,
        EndpointRequest, InterfaceName, JoinRequest, JoinResponse, ROUTE_NEXT_HOP, StaticRoute,
    },
    state::DockerState,
};
use crate::{
    netlink,
    service::endpoints::{Address, NewEndpoint, Plumbing},
};

/// What Docker names the interface in the container: `eth<n>`.
const CONTAINER_IF_PREFIX: &str = "eth";

/// The Join answer for an endpoint on `network` whose address is in `own` (the endpoint's
/// subnet; `None` if not known) and whose host-side veth is `host_if`.
pub(super) fn join_answer(
    network: &NetworkRecord,
    own: Option<&SubnetRecord>,
    host_if: &str,
) -> JoinResponse {
    let interface_name = InterfaceName {
        // The container's end of the pair (see `netlink::create_docker_endpoint`).
        src_name: format!("{host_if}p"),
        dst_prefix: CONTAINER_IF_PREFIX.to_string(),
    };
    if network.macvlan().is_some() {
        // On the LAN: its router is the container's way out, Docker's bridge has no part in it.
        let gateway = own
            .or(network.subnets.first())
            .and_then(|s| s.gateway)
            .map(|g| g.to_string())
            .unwrap_or_default();
        return JoinResponse {
            interface_name,
            gateway,
            gateway_ipv6: String::new(),
            static_routes: Vec::new(),
            disable_gateway_service: true,
        };
    }
    // An overlay gives no gateway, so Docker attaches its docker_gwbridge for the way out
    // (outbound NAT and `-p` publishing, Docker's own way, as its classic overlay did); the
    // network's other subnets are reached through this subnet's gateway, as libnetwork's
    // overlay driver routes them.
    let static_routes = match own.and_then(|s| Some((s, s.gateway?))) {
        Some((own, gateway)) => network
            .subnets
            .iter()
            .filter(|s| s.subnet != own.subnet)
            .map(|s| StaticRoute {
                destination: s.subnet.to_string(),
                route_type: ROUTE_NEXT_HOP,
                next_hop: gateway.to_string(),
            })
            .collect(),
        None => Vec::new(),
    };
    JoinResponse {
        interface_name,
        gateway: String::new(),
        gateway_ipv6: String::new(),
        static_routes,
        disable_gateway_service: false,
    }
}

impl DockerState {
    pub(super) async fn create_endpoint(
        &self,
        req: CreateEndpointRequest,
    ) -> anyhow::Result<CreateEndpointResponse> {
        let eid = req.endpoint_id;
        let name = self.bindings.network_of_waiting(&req.network_id).await?;
        let iface = req.interface.unwrap_or_default();
        let ip = protocol::ipv4_of(&iface.address)
            .map_err(|_| anyhow!("no IPv4 address for the endpoint (use --ipam-driver netd)"))?;
        let given_mac = (!iface.mac_address.is_empty()).then_some(iface.mac_address.as_str());
        let mac: Option<Mac> = given_mac
            .map(|m| m.parse().map_err(|e: String| anyhow!(e)))
            .transpose()?;
        lock(&self.created).insert(eid.clone(), Instant::now());
        let published = self
            .service
            .endpoint_publish(NewEndpoint {
                network: name.clone(),
                id: eid.clone(),
                // Docker's IPAM call claimed it; its ReleaseAddress releases it.
                address: Address::Given(ip),
                mac,
                plumbing: Plumbing::Docker,
                // Filled in once the container is known (after Join).
                names: Vec::new(),
            })
            .await;
        let published = match published {
            Ok(p) => p,
            Err(e) => {
                lock(&self.created).remove(&eid);
                return Err(e.into());
            }
        };
        // From now on the claim is this endpoint's: a late release for an earlier container
        // on the same address (`release_address`) leaves it.
        let host = &self.service.host.name;
        let requested = self
            .service
            .own_claims(&name, ip, |owner| {
                ipam::docker_claim(host, owner.as_bytes()) == Some(ipam::DockerClaim::Requested)
            })
            .await?;
        let mut bound = false;
        for claim in &requested {
            bound |= ipam::bind_docker_claim(&self.service.store, &claim.key, host, &eid).await?;
        }
        if !bound {
            tracing::debug!(%ip, endpoint = %eid, "no claim of this host's to bind (an address netd did not hand out)");
        }
        // Docker refuses an answer that restates what it gave: only a MAC it did not give.
        Ok(CreateEndpointResponse {
            interface: given_mac.is_none().then(|| EndpointInterface {
                mac_address: published.mac.to_string(),
                ..EndpointInterface::default()
            }),
        })
    }

    pub(super) async fn join(&self, req: JoinRequest) -> anyhow::Result<JoinResponse> {
        let eid = &req.endpoint_id;
        let name = self.bindings.network_of(&req.network_id)?;
        let network = self.service.network_load(&name).await?.0;
        let host_if = netlink::host_ifname(&name, eid);
        if netlink::ifindex(&host_if).is_none() {
            bail!("endpoint {eid} has no interface");
        }
        let ip = self.endpoint_ip(&name, eid).await?;
        let own = ip.and_then(|ip| network.subnet_of(ip));
        Ok(join_answer(&network, own, &host_if))
    }

    /// The owner of `ip`'s claim if it is the endpoint `eid`'s (or, made before claims were
    /// bound to endpoints, this host's).
    async fn claim_of(
        &self,
        network: &str,
        ip: Ipv4Addr,
        eid: &str,
    ) -> anyhow::Result<Option<String>> {
        let host = &self.service.host.name;
        let claims = self.service.own_claims(network, ip, |_| true).await?;
        Ok(claims
            .into_iter()
            .find_map(|c| match ipam::docker_claim(host, c.owner.as_bytes())? {
                ipam::DockerClaim::Endpoint(owner) if owner == eid => {
                    Some(ipam::docker_endpoint_owner(host, eid))
                }
                ipam::DockerClaim::Requested => Some(ipam::docker_owner(host)),
                ipam::DockerClaim::Endpoint(_) => None,
            }))
    }

    /// The endpoint's address, from its record (written before `CreateEndpoint` answered).
    async fn endpoint_ip(&self, network: &str, eid: &str) -> anyhow::Result<Option<Ipv4Addr>> {
        let keys = self.service.own_endpoint_keys(network, eid).await?;
        for key in keys {
            if let Some(kv) = self.service.store.get(&key).await?
                && let Ok(record) = schema::decode::<EndpointRecord>(&kv.value)
            {
                return Ok(Some(record.ip));
            }
        }
        Ok(None)
    }

    pub(super) async fn delete_endpoint(&self, req: EndpointRequest) -> anyhow::Result<Empty> {
        let Ok(name) = self.bindings.network_of(&req.network_id) else {
            return Ok(Empty {});
        };
        self.remove_endpoint(&name, &req.endpoint_id, false).await?;
        Ok(Empty {})
    }

    /// Removes a Docker endpoint of this host: store record (and, when Docker will not do it
    /// itself, its address), hook and interfaces.
    pub async fn remove_endpoint(
        &self,
        network: &str,
        eid: &str,
        release_address: bool,
    ) -> anyhow::Result<()> {
        let release = if release_address {
            match self.endpoint_ip(network, eid).await? {
                Some(ip) => self
                    .claim_of(network, ip, eid)
                    .await?
                    .map(|owner| (ip, owner)),
                None => None,
            }
        } else {
            None
        };
        // Released only while the claim is still this endpoint's (or, made by an older netd,
        // this host's), never one another endpoint or host has taken since.
        self.service
            .endpoint_withdraw(
                network,
                eid,
                release.as_ref().map(|(ip, owner)| (*ip, owner.as_str())),
            )
            .await?;
        lock(&self.created).remove(eid);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use netd_store::schema::{DRIVER_MACVLAN, DRIVER_OVERLAY, SCHEMA_VERSION};

    use super::*;

    fn subnet(cidr: &str, gateway: Option<&str>) -> SubnetRecord {
        SubnetRecord {
            subnet: cidr.parse().unwrap(),
            gateway: gateway.map(|g| g.parse().unwrap()),
            ip_range: None,
            aux: BTreeMap::new(),
        }
    }

    fn network(driver: &str, subnets: Vec<SubnetRecord>) -> NetworkRecord {
        let mut options = BTreeMap::new();
        if driver == DRIVER_MACVLAN {
            options.insert("parent".to_string(), "eth0".to_string());
        }
        NetworkRecord {
            version: SCHEMA_VERSION,
            name: "n".into(),
            driver: driver.into(),
            vni: 4096,
            subnets,
            mtu: None,
            options,
        }
    }

    #[test]
    fn overlay_gives_no_gateway_so_docker_attaches_its_gwbridge() {
        let net = network(
            DRIVER_OVERLAY,
            vec![subnet("10.1.0.0/24", Some("10.1.0.1"))],
        );
        let answer = join_answer(&net, net.subnets.first(), "nd0123abcd");
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({
                "InterfaceName": { "SrcName": "nd0123abcdp", "DstPrefix": "eth" },
                "StaticRoutes": [],
            })
        );
    }

    #[test]
    fn overlay_routes_other_subnets_through_this_subnets_gateway() {
        let net = network(
            DRIVER_OVERLAY,
            vec![
                subnet("10.1.0.0/24", Some("10.1.0.1")),
                subnet("10.2.0.0/24", Some("10.2.0.1")),
                subnet("10.3.0.0/24", None),
            ],
        );
        let own = net.subnet_of("10.2.0.7".parse().unwrap());
        let answer = join_answer(&net, own, "nd1");
        assert!(answer.gateway.is_empty() && !answer.disable_gateway_service);
        let route = |dst: &str| StaticRoute {
            destination: dst.into(),
            route_type: ROUTE_NEXT_HOP,
            next_hop: "10.2.0.1".into(),
        };
        assert_eq!(
            answer.static_routes,
            vec![route("10.1.0.0/24"), route("10.3.0.0/24")]
        );
        // A subnet without a gateway has no next hop to route through.
        let own = net.subnet_of("10.3.0.7".parse().unwrap());
        assert!(join_answer(&net, own, "nd1").static_routes.is_empty());
        // Nor does an endpoint whose address is not known.
        assert!(join_answer(&net, None, "nd1").static_routes.is_empty());
    }

    #[test]
    fn macvlan_gives_the_lans_router_and_no_gwbridge() {
        let net = network(
            DRIVER_MACVLAN,
            vec![
                subnet("192.168.1.0/24", Some("192.168.1.254")),
                subnet("192.168.2.0/24", Some("192.168.2.254")),
            ],
        );
        assert!(net.macvlan().is_some());
        let own = net.subnet_of("192.168.2.10".parse().unwrap());
        let answer = join_answer(&net, own, "nd2");
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({
                "InterfaceName": { "SrcName": "nd2p", "DstPrefix": "eth" },
                "Gateway": "192.168.2.254",
                "StaticRoutes": [],
                "DisableGatewayService": true,
            })
        );
        assert_eq!(join_answer(&net, None, "nd2").gateway, "192.168.1.254");
    }
}
