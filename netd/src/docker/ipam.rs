//! netd as Docker's IPAM driver: the pools Docker asked for on this host, and addresses from
//! the cluster store's IPAM, so that no two hosts hand out the same one.
//!
//! Docker asks for a pool (and the gateway and aux addresses in it) before the network exists;
//! `CreateNetwork` then claims the pool, and the pool is bound to its netd network once netd
//! knows the network's name (see `network.rs`).

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use ipnet::Ipv4Net;
use netd_store::{
    ipam, keys,
    schema::{self, NetworkRecord},
};

use super::{
    bindings::NETD_NETWORK_OPTION,
    driver::{Driver, lock},
    protocol::{
        self, Empty, ReleaseAddressRequest, ReleasePoolRequest, RequestAddressRequest,
        RequestAddressResponse, RequestPoolRequest, RequestPoolResponse,
    },
};

/// IPAM claim value of addresses handed to Docker on a host.
pub(super) fn docker_claim(host: &str) -> String {
    format!("docker:{host}")
}

/// How long `RequestPool` waits for the name of a Docker network being created whose pool
/// overlaps, to name it in the refusal (netd learns a name just after `CreateNetwork`).
const NAME_WAIT: Duration = Duration::from_secs(3);
/// How long an address request waits for its pool's network to be known.
const NETWORK_WAIT: Duration = Duration::from_secs(10);
/// After this, an unbound pool's network is asked from the Engine (a binding lost in a restart).
const ASK_ENGINE_AFTER: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);

/// An IPAM pool Docker asked for.
#[derive(Clone, Debug)]
pub(super) struct Pool {
    pub subnet: Ipv4Net,
    pub ip_range: Option<Ipv4Net>,
    /// The netd network, once known.
    pub network: Option<String>,
    /// Whether `CreateNetwork` came for it: before that, Docker only asks for the gateway and
    /// aux addresses.
    pub in_network: bool,
    /// The Docker network `CreateNetwork` gave it to.
    pub docker_network: Option<String>,
    /// That network's name, once the Engine shows it: the netd network it becomes, named in an
    /// overlap refusal before the store has it.
    pub docker_name: Option<String>,
    /// Rebuilt from its ID after a restart: of a network netd published or mirrored before.
    pub rebuilt: bool,
    pub created: Instant,
}

/// A pool of another Docker network, not bound yet, that a requested subnet overlaps.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PoolOverlap {
    pub subnet: Ipv4Net,
    /// The network's name, once the Engine showed it.
    pub name: Option<String>,
}

/// The pool table: pool ID -> pool.
#[derive(Default)]
pub(super) struct Pools {
    table: Mutex<HashMap<String, Pool>>,
    next: AtomicU64,
}

impl Pools {
    /// Hands out a pool; its ID describes it, so a restarted netd can rebuild a pool Docker
    /// still refers to.
    pub fn hand_out(
        &self,
        subnet: Ipv4Net,
        ip_range: Option<Ipv4Net>,
        network: Option<String>,
    ) -> String {
        let range = ip_range.map(|r| r.to_string()).unwrap_or_default();
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("netd|{subnet}|{range}|{n}");
        let pool = Pool {
            subnet,
            ip_range,
            network,
            in_network: false,
            docker_network: None,
            docker_name: None,
            rebuilt: false,
            created: Instant::now(),
        };
        lock(&self.table).insert(id.clone(), pool);
        id
    }

    pub fn release(&self, id: &str) {
        lock(&self.table).remove(id);
    }

    /// The pool with this ID, rebuilt from the ID when it was handed out before a restart.
    pub fn get(&self, id: &str) -> anyhow::Result<Pool> {
        if let Some(p) = lock(&self.table).get(id) {
            return Ok(p.clone());
        }
        let pool = rebuild(id).ok_or_else(|| anyhow!("unknown address pool {id:?}"))?;
        lock(&self.table).insert(id.to_string(), pool.clone());
        Ok(pool)
    }

    fn set_network(&self, id: &str, name: &str) {
        if let Some(p) = lock(&self.table).get_mut(id) {
            p.network = Some(name.to_string());
        }
    }

    /// `CreateNetwork` for `docker_network` with this subnet: claims the pool Docker got for it
    /// (the newest one not yet in a network), from now on its addresses are containers'.
    /// Returns the pool's ip-range.
    pub fn claim(&self, docker_network: &str, subnet: Ipv4Net) -> Option<Ipv4Net> {
        let mut table = lock(&self.table);
        let pool = table
            .values_mut()
            .filter(|p| p.subnet == subnet && !p.in_network)
            .max_by_key(|p| p.created)?;
        pool.in_network = true;
        pool.docker_network = Some(docker_network.to_string());
        pool.ip_range
    }

    /// The Engine showed `docker_network`'s name: its pools are about to become that netd
    /// network's.
    pub fn name(&self, docker_network: &str, name: &str) {
        for p in lock(&self.table).values_mut() {
            if p.docker_network.as_deref() == Some(docker_network) {
                p.docker_name = Some(name.to_string());
            }
        }
    }

    /// Binds the pools of `docker_network` to the netd network `name`.
    pub fn bind(&self, docker_network: &str, name: &str) {
        for p in lock(&self.table).values_mut() {
            if p.docker_network.as_deref() == Some(docker_network) && p.network.is_none() {
                p.network = Some(name.to_string());
            }
        }
    }

    /// Pools for a Docker network found at start-up, bound at once.
    pub fn adopt(&self, docker_network: &str, name: &str, subnets: &[Ipv4Net]) {
        let mut table = lock(&self.table);
        for subnet in subnets {
            table.insert(
                format!("netd-adopted-{docker_network}-{subnet}"),
                Pool {
                    subnet: *subnet,
                    ip_range: None,
                    network: Some(name.to_string()),
                    in_network: true,
                    docker_network: Some(docker_network.to_string()),
                    docker_name: Some(name.to_string()),
                    rebuilt: false,
                    created: Instant::now(),
                },
            );
        }
    }

    /// A pool of a Docker network being created here (handed out, not bound yet) that `subnet`
    /// overlaps. Bound and rebuilt pools are of networks in the store, checked there. A mirror
    /// skips the pools of the network it mirrors.
    pub fn overlapping(&self, subnet: Ipv4Net, mirror_of: Option<&str>) -> Option<PoolOverlap> {
        let table = lock(&self.table);
        table
            .values()
            .filter(|p| p.network.is_none() && !p.rebuilt && overlap(p.subnet, subnet))
            .filter(|p| mirror_of.is_none() || p.docker_name.as_deref() != mirror_of)
            .map(|p| PoolOverlap {
                subnet: p.subnet,
                name: p.docker_name.clone(),
            })
            // A named one first: it gives the better message.
            .min_by_key(|o| o.name.is_none())
    }
}

fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b) || b.contains(&a)
}

/// A pool from its ID (`netd|<subnet>|<ip-range>|<n>`), unbound.
fn rebuild(id: &str) -> Option<Pool> {
    let mut parts = id.split('|');
    let (Some("netd"), Some(subnet), Some(range)) = (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(Pool {
        subnet: subnet.parse().ok()?,
        ip_range: range.parse().ok(),
        network: None,
        in_network: true,
        docker_network: None,
        docker_name: None,
        rebuilt: true,
        // Old: lets `pool_network` ask the Engine at once.
        created: Instant::now()
            .checked_sub(Duration::from_secs(60))
            .unwrap_or_else(Instant::now),
    })
}

/// `ip/prefix`, as Docker wants addresses.
fn cidr(ip: Ipv4Addr, prefix: u8) -> RequestAddressResponse {
    RequestAddressResponse {
        address: format!("{ip}/{prefix}"),
        data: HashMap::new(),
    }
}

impl Driver {
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
        let mirror_of = req.options.get(NETD_NETWORK_OPTION).cloned();
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
                && let Some(name) = self.network_by_subnet(pool.subnet).await
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
        let ip = ipam::allocate(
            &self.service.store,
            &network,
            &docker_claim(&self.service.host.name),
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
            // Only our own claims: the gateway (never claimed) and others' addresses stay.
            let owner = docker_claim(&self.service.host.name);
            ipam::release(&self.service.store, &name, ip, &owner).await?;
        }
        Ok(Empty {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn a_pool_id_rebuilds_its_pool() {
        let pools = Pools::default();
        let id = pools.hand_out(net("10.1.0.0/16"), Some(net("10.1.2.0/24")), None);
        let p = rebuild(&id).unwrap();
        assert_eq!(p.subnet, net("10.1.0.0/16"));
        assert_eq!(p.ip_range, Some(net("10.1.2.0/24")));
        assert!(p.in_network && p.rebuilt && p.network.is_none());
        assert!(rebuild("netd-adopted-x-10.0.0.0/24").is_none());
        assert!(Pools::default().get("netd|nonsense||1").is_err());
    }

    #[test]
    fn unbound_pools_overlap_until_bound() {
        let pools = Pools::default();
        pools.hand_out(net("10.84.0.0/16"), None, None);
        // Handed out, no CreateNetwork yet: a name may come.
        assert_eq!(
            pools.overlapping(net("10.84.1.0/24"), None),
            Some(PoolOverlap {
                subnet: net("10.84.0.0/16"),
                name: None,
            })
        );
        assert_eq!(pools.overlapping(net("10.85.0.0/24"), None), None);
        assert_eq!(pools.claim("d1", net("10.84.0.0/16")), None);
        pools.name("d1", "first");
        let o = pools.overlapping(net("10.84.1.0/24"), None).unwrap();
        assert_eq!(o.name.as_deref(), Some("first"));
        // A mirror of that same network is not in its own way; of another one, it is.
        assert_eq!(pools.overlapping(net("10.84.1.0/24"), Some("first")), None);
        assert!(
            pools
                .overlapping(net("10.84.1.0/24"), Some("other"))
                .is_some()
        );
        // Rebuilt after a restart: its network is in the store, which answers for it.
        pools.get("netd|10.86.0.0/24||9").unwrap();
        assert_eq!(pools.overlapping(net("10.86.0.0/25"), None), None);
        // Bound: the store has the network, and answers for it.
        pools.bind("d1", "first");
        assert_eq!(pools.overlapping(net("10.84.1.0/24"), None), None);
    }

    #[test]
    fn claim_takes_the_newest_unclaimed_pool_of_the_subnet() {
        let pools = Pools::default();
        let old = pools.hand_out(net("10.9.0.0/24"), None, None);
        std::thread::sleep(Duration::from_millis(2));
        let new = pools.hand_out(net("10.9.0.0/24"), Some(net("10.9.0.128/25")), None);
        assert_eq!(
            pools.claim("d1", net("10.9.0.0/24")),
            Some(net("10.9.0.128/25"))
        );
        assert!(pools.get(&new).unwrap().in_network);
        assert!(!pools.get(&old).unwrap().in_network);
        pools.bind("d1", "n");
        assert_eq!(pools.get(&new).unwrap().network.as_deref(), Some("n"));
        assert_eq!(pools.get(&old).unwrap().network, None);
    }
}
