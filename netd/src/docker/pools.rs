//! The IPAM pools Docker asked for on this host: handed out before the network exists, claimed
//! by its `CreateNetwork`, and bound to a netd network once netd knows the network's name.
//! A pool's ID describes it, so that a restarted netd rebuilds a pool Docker still refers to.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::anyhow;
use ipnet::Ipv4Net;

use super::lock::lock;

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

    pub fn set_network(&self, id: &str, name: &str) {
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

pub(super) fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
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
