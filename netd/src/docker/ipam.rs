//! netd as Docker's IPAM driver: the pools Docker asked for on this host ([`super::pools`]),
//! and addresses from the cluster store's IPAM, so that no two hosts hand out the same one.
//!
//! Docker asks for a pool (and the gateway and aux addresses in it) before the network exists;
//! `CreateNetwork` then claims the pool, and the pool is bound to its netd network once netd
//! knows the network's name (see `network.rs`).

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use ipnet::Ipv4Net;
use netd_store::{
    Backend, ipam, keys,
    options::MIRROR_OF,
    schema::{self, NetworkRecord},
};

use super::{
    pools::{PoolOverlap, overlap},
    protocol::{
        self, Empty, ReleaseAddressRequest, ReleasePoolRequest, RequestAddressRequest,
        RequestAddressResponse, RequestPoolRequest, RequestPoolResponse,
    },
    state::DockerState,
};

/// How long `RequestPool` waits for the name of a Docker network being created whose pool
/// overlaps, to name it in the refusal (netd learns a name just after `CreateNetwork`).
const NAME_WAIT: Duration = Duration::from_secs(3);
/// How long an address request waits for its pool's network to be known.
const NETWORK_WAIT: Duration = Duration::from_secs(10);
/// After this, an unbound pool's network is asked from the Engine (a binding lost in a restart).
const ASK_ENGINE_AFTER: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);

/// `ip/prefix`, as Docker wants addresses.
fn cidr(ip: Ipv4Addr, prefix: u8) -> RequestAddressResponse {
    RequestAddressResponse {
        address: format!("{ip}/{prefix}"),
        data: HashMap::new(),
    }
}

impl DockerState {
    pub(super) async fn request_pool(
        &self,
        req: RequestPoolRequest,
    ) -> anyhow::Result<RequestPoolResponse> {
        if req.v6 {
            bail!("IPv6 is not supported");
        }
        if req.pool.is_empty() {
            bail!("netd networks need an explicit --subnet (addresses are allocated cluster-wide)");
        }
        let subnet: Ipv4Net = req
            .pool
            .parse()
            .map_err(|_| anyhow!("invalid subnet {:?}", req.pool))?;
        let ip_range = (!req.sub_pool.is_empty())
            .then(|| {
                req.sub_pool
                    .parse::<Ipv4Net>()
                    .map_err(|_| anyhow!("invalid ip-range {:?}", req.sub_pool))
            })
            .transpose()?;
        let mirror_of = req.options.get(MIRROR_OF).cloned();
        self.check_overlap(subnet, mirror_of.as_deref()).await?;
        let id = self.pools.hand_out(subnet, ip_range, mirror_of);
        Ok(RequestPoolResponse {
            pool_id: id,
            pool: subnet.to_string(),
            data: HashMap::new(),
        })
    }

    /// Like Docker's own IPAM: a new network may not overlap an existing one, or a container on
    /// both would have two routes for one destination. Existing means in the store (read there:
    /// this host's view of it lags) or being created here (its pool handed out, not yet bound).
    /// A mirror is of a network already in the store, overlaps and all: only pools are checked.
    async fn check_overlap(&self, subnet: Ipv4Net, mirror_of: Option<&str>) -> anyhow::Result<()> {
        let deadline = Instant::now() + NAME_WAIT;
        loop {
            if mirror_of.is_none() {
                for network in self.stored_networks().await? {
                    if let Some(s) = network.subnets.iter().find(|s| overlap(s.subnet, subnet)) {
                        bail!(
                            "subnet {subnet} overlaps netd network {:?} ({})",
                            network.name,
                            s.subnet
                        );
                    }
                }
            }
            match self.pools.overlapping(subnet, mirror_of) {
                None => return Ok(()),
                Some(PoolOverlap {
                    subnet: theirs,
                    name: Some(name),
                    ..
                }) => bail!("subnet {subnet} overlaps netd network {name:?} ({theirs})"),
                // Named in a moment (or in the store): wait for it, for a clear message.
                Some(PoolOverlap { name: None, .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                Some(PoolOverlap { subnet: theirs, .. }) => {
                    bail!("subnet {subnet} overlaps {theirs}, the subnet of another Docker network")
                }
            }
        }
    }

    /// Every network in the store; one that does not decode is skipped (the reconciler
    /// reports it).
    async fn stored_networks(&self) -> anyhow::Result<Vec<NetworkRecord>> {
        let listing = self.service.store.list(keys::NETWORKS).await?;
        Ok(listing
            .kvs
            .iter()
            .filter_map(|kv| schema::decode::<NetworkRecord>(&kv.value).ok())
            .collect())
    }

    pub(super) fn release_pool(&self, req: ReleasePoolRequest) -> Empty {
        self.pools.release(&req.pool_id);
        Empty {}
    }

    /// Waits (briefly) until the pool's network is known: the name is resolved just after
    /// `CreateNetwork`, and containers are only attached after that.
    async fn pool_network(&self, id: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + NETWORK_WAIT;
        loop {
            let pool = self.pools.get(id)?;
            if let Some(n) = pool.network {
                return Ok(n);
            }
            if pool.created.elapsed() > ASK_ENGINE_AFTER
                && let Some(name) = self
                    .bindings
                    .network_by_subnet(&self.engine, pool.subnet)
                    .await
            {
                self.pools.set_network(id, &name);
                return Ok(name);
            }
            if Instant::now() > deadline {
                bail!("the network of pool {id} is not known yet");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub(super) async fn request_address(
        &self,
        req: RequestAddressRequest,
    ) -> anyhow::Result<RequestAddressResponse> {
        let pool = self.pools.get(&req.pool_id)?;
        let requested = (!req.address.is_empty())
            .then(|| protocol::ipv4_of(&req.address))
            .transpose()?;
        let prefix = pool.subnet.prefix_len();
        if req.is_gateway() {
            // The gateway is never allocated from the store: it is reserved in the network.
            let gw = match requested {
                Some(ip) => ip,
                None => pool
                    .subnet
                    .hosts()
                    .next()
                    .ok_or_else(|| anyhow!("subnet {} has no host address", pool.subnet))?,
            };
            return Ok(cidr(gw, prefix));
        }
        if let Some(ip) = requested
            && !pool.in_network
        {
            // During `docker network create` (the pool has no network yet) a specific address is
            // an --aux-address: reserved in the network record, never claimed.
            return Ok(cidr(ip, prefix));
        }
        let name = self.pool_network(&req.pool_id).await?;
        let network = self.service.network_load(&name).await?.0;
        if let Some(ip) = requested
            && network
                .subnet_of(ip)
                .is_some_and(|s| s.aux.values().any(|a| *a == ip))
        {
            // A mirrored network's aux addresses are requested again on each host.
            return Ok(cidr(ip, prefix));
        }
        let ip = self
            .service
            .claim_address(
                &network,
                &ipam::docker_owner(&self.service.host.name),
                requested,
            )
            .await?;
        Ok(cidr(ip, prefix))
    }

    pub(super) async fn release_address(
        &self,
        req: ReleaseAddressRequest,
    ) -> anyhow::Result<Empty> {
        let ip = protocol::ipv4_of(&req.address)?;
        let Ok(pool) = self.pools.get(&req.pool_id) else {
            return Ok(Empty {});
        };
        // After a restart the pool is rebuilt unbound: find its network again, or the address
        // would stay claimed for ever (then say so: Docker logs it, and so does `handle`).
        let network = match pool.network {
            Some(name) => Some(name),
            None if pool.in_network => Some(self.pool_network(&req.pool_id).await?),
            None => None,
        };
        if let Some(name) = network {
            self.release_claim(&name, ip).await?;
        }
        Ok(Empty {})
    }

    /// Docker releases an address: its claim goes if it is this host's and no live endpoint's.
    /// The gateway (never claimed) and others' addresses stay; so does a claim bound to an
    /// endpoint whose record lives: that release is a late one, for an earlier container that
    /// had the same address.
    async fn release_claim(&self, network: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
        let service = &self.service;
        let host = &service.host.name;
        let claims = service
            .own_claims(network, ip, |owner| {
                ipam::docker_claim(host, owner.as_bytes()).is_some()
            })
            .await?;
        let Some(claim) = claims.first() else {
            return Ok(());
        };
        let owner = match ipam::docker_claim(host, claim.owner.as_bytes()) {
            None => return Ok(()),
            Some(ipam::DockerClaim::Requested) => ipam::docker_owner(host),
            Some(ipam::DockerClaim::Endpoint(eid)) => {
                if !service
                    .control
                    .endpoint_keys(network, eid)
                    .await?
                    .is_empty()
                {
                    tracing::warn!(%ip, network, endpoint = eid, "Docker released an address a live endpoint holds: a late release for an earlier container, ignored");
                    return Ok(());
                }
                ipam::docker_endpoint_owner(host, eid)
            }
        };
        service.release_address(network, ip, &owner).await?;
        Ok(())
    }
}
