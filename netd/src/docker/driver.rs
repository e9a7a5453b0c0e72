//! Docker's remote `NetworkDriver` and `IpamDriver` protocols, both served as `netd`.
//!
//! Docker keeps networks per host and never tells a driver a network's name, so:
//! - IPAM pools are handed out before the network exists and bound to it when `CreateNetwork`
//!   arrives with the same subnet;
//! - the name is looked up through the Engine API right after `CreateNetwork` returns, and the
//!   network is then created in (or, when another host made it, bound to) the cluster store;
//! - networks netd creates on a host's Docker itself (to mirror the store) carry the option
//!   `netd.network=<name>`, which binds them at once and never creates anything again: no loops.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use ipnet::Ipv4Net;
use netd_store::{
    ipam, keys,
    schema::{self, EndpointRecord, Mac},
};
use serde_json::{Value, json};

use super::engine::Engine;
use crate::{
    api::SubnetSpec,
    health::Health,
    netlink,
    service::{
        Service,
        endpoints::{Address, NewEndpoint, Plumbing},
        networks::NewNetwork,
    },
};

/// Locks, recovering from a poisoned mutex (a panicking call must not wedge the plugin).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Option (driver and IPAM) naming the netd network a Docker network mirrors.
pub const NETD_NETWORK_OPTION: &str = "netd.network";
/// IPAM claim value of addresses handed to Docker on a host.
fn docker_claim(host: &str) -> String {
    format!("docker:{host}")
}

/// An IPAM pool Docker asked for.
#[derive(Clone, Debug)]
struct Pool {
    subnet: Ipv4Net,
    ip_range: Option<Ipv4Net>,
    /// The netd network, once known.
    network: Option<String>,
    /// Whether `CreateNetwork` came for it: before that, Docker only asks for the gateway and
    /// aux addresses.
    in_network: bool,
    created: Instant,
}

pub struct Driver {
    pub service: Service,
    pub health: Arc<Health>,
    pub engine: Engine,
    pools: Mutex<HashMap<String, Pool>>,
    /// Docker network ID -> netd network name.
    networks: Mutex<HashMap<String, String>>,
    /// Docker endpoint ID -> when this daemon created it (the reconciler leaves young ones alone).
    pub created: Mutex<HashMap<String, Instant>>,
    next_pool: AtomicU64,
}

fn opt_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Docker sends addresses as CIDR ("172.31.0.5/16") or plain.
fn parse_addr(text: &str) -> anyhow::Result<Ipv4Addr> {
    let ip = text.split('/').next().unwrap_or_default();
    ip.parse()
        .map_err(|_| anyhow!("invalid IPv4 address {text:?}"))
}

impl Driver {
    pub fn new(service: Service, health: Arc<Health>, engine: Engine) -> Self {
        Self {
            service,
            health,
            engine,
            pools: Mutex::new(HashMap::new()),
            networks: Mutex::new(HashMap::new()),
            created: Mutex::new(HashMap::new()),
            next_pool: AtomicU64::new(1),
        }
    }

    /// Dispatches one plugin call. Errors become `{"Err": "..."}`, which Docker shows the user.
    pub async fn handle(self: &Arc<Self>, path: &str, body: &[u8]) -> Value {
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let result = match path {
            "/Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
            "/NetworkDriver.GetCapabilities" => {
                // "global" needs swarm or a cluster store in Docker; netd mirrors networks itself.
                Ok(json!({ "Scope": "local", "ConnectivityScope": "local" }))
            }
            "/NetworkDriver.CreateNetwork" => self.create_network(&req).await,
            "/NetworkDriver.DeleteNetwork" => self.delete_network(&req).await,
            "/NetworkDriver.CreateEndpoint" => self.create_endpoint(&req).await,
            "/NetworkDriver.DeleteEndpoint" => self.delete_endpoint(&req).await,
            "/NetworkDriver.EndpointOperInfo" => Ok(json!({ "Value": {} })),
            "/NetworkDriver.Join" => self.join(&req).await,
            "/NetworkDriver.Leave"
            | "/NetworkDriver.DiscoverNew"
            | "/NetworkDriver.DiscoverDelete"
            | "/NetworkDriver.ProgramExternalConnectivity"
            | "/NetworkDriver.RevokeExternalConnectivity" => Ok(json!({})),
            "/IpamDriver.GetCapabilities" => {
                Ok(json!({ "RequiresMACAddress": false, "RequiresRequestReplay": false }))
            }
            "/IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
                "LocalDefaultAddressSpace": "netd",
                "GlobalDefaultAddressSpace": "netd",
            })),
            "/IpamDriver.RequestPool" => self.request_pool(&req).await,
            "/IpamDriver.ReleasePool" => {
                if let Some(id) = opt_str(&req, "PoolID") {
                    lock(&self.pools).remove(id);
                }
                Ok(json!({}))
            }
            "/IpamDriver.RequestAddress" => self.request_address(&req).await,
            "/IpamDriver.ReleaseAddress" => self.release_address(&req).await,
            other => Err(anyhow!("netd does not implement {other}")),
        };
        match result {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(call = path, error = %format!("{e:#}"), "docker plugin call refused");
                // The two protocols name the error field differently.
                let field = if path.starts_with("/IpamDriver.") {
                    "Error"
                } else {
                    "Err"
                };
                json!({ field: format!("netd: {e:#}") })
            }
        }
    }

    async fn request_pool(&self, req: &Value) -> anyhow::Result<Value> {
        if req["V6"].as_bool() == Some(true) {
            bail!("IPv6 is not supported");
        }
        let pool = opt_str(req, "Pool")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "netd networks need an explicit --subnet (addresses are allocated cluster-wide)"
                )
            })?;
        let subnet: Ipv4Net = pool
            .parse()
            .map_err(|_| anyhow!("invalid subnet {pool:?}"))?;
        let ip_range = opt_str(req, "SubPool")
            .filter(|p| !p.is_empty())
            .map(|r| {
                r.parse::<Ipv4Net>()
                    .map_err(|_| anyhow!("invalid ip-range {r:?}"))
            })
            .transpose()?;
        let bound = opt_str(&req["Options"], NETD_NETWORK_OPTION).map(str::to_string);
        if bound.is_none() {
            // Like Docker's own IPAM: a new network may not overlap an existing one, or a
            // container on both would have two routes for one destination.
            for n in self.service.control.summary().networks.values() {
                if let Some(s) = n
                    .subnets
                    .iter()
                    .find(|s| s.subnet.contains(&subnet) || subnet.contains(&s.subnet))
                {
                    bail!(
                        "subnet {subnet} overlaps netd network {:?} ({})",
                        n.name,
                        s.subnet
                    );
                }
            }
        }
        // Self-describing, so a restarted netd can rebuild a pool Docker still refers to.
        let range = ip_range.map(|r| r.to_string()).unwrap_or_default();
        let id = format!(
            "netd|{subnet}|{range}|{}",
            self.next_pool.fetch_add(1, Ordering::Relaxed)
        );
        lock(&self.pools).insert(
            id.clone(),
            Pool {
                subnet,
                ip_range,
                network: bound,
                in_network: false,
                created: Instant::now(),
            },
        );
        Ok(json!({ "PoolID": id, "Pool": subnet.to_string(), "Data": {} }))
    }

    fn pool(&self, id: &str) -> anyhow::Result<Pool> {
        if let Some(p) = lock(&self.pools).get(id) {
            return Ok(p.clone());
        }
        // A pool handed out before this daemon restarted: rebuild it from its ID.
        let mut parts = id.split('|');
        let (Some("netd"), Some(subnet), Some(range)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("unknown address pool {id:?}");
        };
        let pool = Pool {
            subnet: subnet
                .parse()
                .map_err(|_| anyhow!("unknown address pool {id:?}"))?,
            ip_range: range.parse().ok(),
            network: None,
            in_network: true,
            // Old: lets `pool_network` ask the Engine at once.
            created: Instant::now()
                .checked_sub(Duration::from_secs(60))
                .unwrap_or_else(Instant::now),
        };
        lock(&self.pools).insert(id.to_string(), pool.clone());
        Ok(pool)
    }

    /// The netd network of a Docker network with this subnet, asked from the Engine (after a
    /// restart, when the pool's binding was lost).
    async fn network_by_subnet(&self, subnet: Ipv4Net) -> Option<String> {
        let bound = self.bound_networks();
        let mut found = None;
        for (nid, name) in &bound {
            let Ok(Some(n)) = self.engine.network(nid).await else {
                continue;
            };
            let has = n["IPAM"]["Config"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["Subnet"].as_str() == Some(&subnet.to_string()));
            if has {
                if found.is_some() {
                    return None; // ambiguous
                }
                found = Some(name.clone());
            }
        }
        found
    }

    /// Waits (briefly) until the pool's network is known: the name is resolved just after
    /// `CreateNetwork`, and containers are only attached after that.
    async fn pool_network(&self, id: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pool = self.pool(id)?;
            if let Some(n) = pool.network {
                return Ok(n);
            }
            if pool.created.elapsed() > Duration::from_secs(2)
                && let Some(name) = self.network_by_subnet(pool.subnet).await
            {
                if let Some(p) = lock(&self.pools).get_mut(id) {
                    p.network = Some(name.clone());
                }
                return Ok(name);
            }
            if Instant::now() > deadline {
                bail!("the network of pool {id} is not known yet");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn request_address(&self, req: &Value) -> anyhow::Result<Value> {
        let pool_id = opt_str(req, "PoolID").unwrap_or_default();
        let pool = self.pool(pool_id)?;
        let requested = opt_str(req, "Address")
            .filter(|a| !a.is_empty())
            .map(parse_addr)
            .transpose()?;
        let prefix = pool.subnet.prefix_len();
        let is_gateway =
            opt_str(&req["Options"], "RequestAddressType") == Some("com.docker.network.gateway");
        if is_gateway {
            // The gateway is never allocated from the store: it is reserved in the network.
            let gw = match requested {
                Some(ip) => ip,
                None => pool
                    .subnet
                    .hosts()
                    .next()
                    .ok_or_else(|| anyhow!("subnet {} has no host address", pool.subnet))?,
            };
            return Ok(json!({ "Address": format!("{gw}/{prefix}"), "Data": {} }));
        }
        if let Some(ip) = requested
            && !pool.in_network
        {
            // During `docker network create` (the pool has no network yet) a specific address is
            // an --aux-address: reserved in the network record, never claimed.
            return Ok(json!({ "Address": format!("{ip}/{prefix}"), "Data": {} }));
        }
        let name = self.pool_network(pool_id).await?;
        let network = self.service.network_load(&name).await?.0;
        if let Some(ip) = requested
            && network
                .subnet_of(ip)
                .is_some_and(|s| s.aux.values().any(|a| *a == ip))
        {
            // A mirrored network's aux addresses are requested again on each host.
            return Ok(json!({ "Address": format!("{ip}/{prefix}"), "Data": {} }));
        }
        let ip = ipam::allocate(
            &self.service.store,
            &network,
            &docker_claim(&self.service.host.name),
            requested,
        )
        .await?;
        Ok(json!({ "Address": format!("{ip}/{prefix}"), "Data": {} }))
    }

    async fn release_address(&self, req: &Value) -> anyhow::Result<Value> {
        let pool_id = opt_str(req, "PoolID").unwrap_or_default();
        let ip = parse_addr(opt_str(req, "Address").unwrap_or_default())?;
        let Ok(pool) = self.pool(pool_id) else {
            return Ok(json!({}));
        };
        // After a restart the pool is rebuilt unbound: find its network again, or the address
        // would stay claimed for ever (then say so: Docker logs it, and so does `handle`).
        let network = match pool.network {
            Some(name) => Some(name),
            None if pool.in_network => Some(self.pool_network(pool_id).await?),
            None => None,
        };
        if let Some(name) = network {
            // Only our own claims: the gateway (never claimed) and others' addresses stay.
            let owner = docker_claim(&self.service.host.name);
            ipam::release(&self.service.store, &name, ip, &owner).await?;
        }
        Ok(json!({}))
    }

    async fn create_network(self: &Arc<Self>, req: &Value) -> anyhow::Result<Value> {
        let nid = opt_str(req, "NetworkID")
            .ok_or_else(|| anyhow!("no NetworkID"))?
            .to_string();
        let generic = &req["Options"]["com.docker.network.generic"];
        let mut mtu = None;
        let mut options = Vec::new();
        let mut bound = None;
        if let Some(map) = generic.as_object() {
            for (k, v) in map {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                match k.as_str() {
                    "mtu" | "com.docker.network.driver.mtu" => {
                        let m: u16 = v
                            .parse()
                            .map_err(|_| anyhow!("invalid mtu {v:?}: expected a number"))?;
                        if !(68..=9000).contains(&m) {
                            bail!("invalid mtu {m}: outside 68..=9000");
                        }
                        mtu = Some(m);
                    }
                    NETD_NETWORK_OPTION => bound = Some(v),
                    _ => options.push((k.clone(), v)),
                }
            }
        }
        let mut subnets = Vec::new();
        for d in req["IPv4Data"].as_array().into_iter().flatten() {
            let subnet: Ipv4Net = opt_str(d, "Pool")
                .unwrap_or_default()
                .parse()
                .map_err(|_| anyhow!("invalid pool in {d}"))?;
            let gateway = opt_str(d, "Gateway")
                .filter(|g| !g.is_empty())
                .map(parse_addr)
                .transpose()?;
            let aux: Vec<(String, String)> = d["AuxAddresses"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), parse_addr(v.as_str()?).ok()?.to_string())))
                .collect();
            // The pool Docker got for this subnet (the newest one not yet in a network): its
            // ip-range, and from now on its addresses are containers'.
            let ip_range = {
                let mut pools = lock(&self.pools);
                let pool = pools
                    .values_mut()
                    .filter(|p| p.subnet == subnet && !p.in_network)
                    .max_by_key(|p| p.created);
                pool.and_then(|p| {
                    p.in_network = true;
                    p.ip_range
                })
            };
            subnets.push(SubnetSpec {
                subnet: subnet.to_string(),
                gateway: gateway.map(|g| g.to_string()),
                ip_range: ip_range.map(|r| r.to_string()),
                aux,
            });
        }
        if subnets.is_empty() {
            bail!("netd networks need --ipam-driver netd and an explicit --subnet");
        }
        if let Some(name) = bound {
            self.bind(&nid, &name, &subnets);
            return Ok(json!({}));
        }
        // Docker stores the network (and so its name) after this call returns: finish then.
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.publish_created(&nid, subnets, mtu, options).await {
                tracing::error!(network = %nid, error = %format!("{e:#}"), "cannot publish a Docker network to the store");
            }
        });
        Ok(json!({}))
    }

    fn bind(&self, nid: &str, name: &str, subnets: &[SubnetSpec]) {
        lock(&self.networks).insert(nid.to_string(), name.to_string());
        let mut pools = lock(&self.pools);
        for s in subnets {
            if let Some(p) = pools
                .values_mut()
                .filter(|p| p.subnet.to_string() == s.subnet && p.in_network && p.network.is_none())
                .max_by_key(|p| p.created)
            {
                p.network = Some(name.to_string());
            }
        }
        tracing::info!(docker_network = %nid, network = %name, "Docker network bound");
    }

    async fn publish_created(
        &self,
        nid: &str,
        subnets: Vec<SubnetSpec>,
        mtu: Option<u16>,
        options: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let name = loop {
            if let Some(n) = self.engine.network(nid).await? {
                break n["Name"].as_str().unwrap_or_default().to_string();
            }
            if Instant::now() > deadline {
                bail!("Docker never showed network {nid}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let vni = options
            .iter()
            .find(|(k, _)| k == "vni")
            .and_then(|(_, v)| v.parse().ok());
        // `-o netd.type=macvlan -o parent=eth0`: a macvlan-style network.
        let driver = options
            .iter()
            .find(|(k, _)| k == "netd.type")
            .map_or_else(|| "overlay".to_string(), |(_, v)| v.clone());
        let new = NewNetwork {
            name: name.clone(),
            driver,
            subnets: subnets.clone(),
            mtu,
            vni,
            options,
        };
        match self.service.network_create(new).await {
            Ok(_) => tracing::info!(network = %name, "Docker network published to the store"),
            // Made elsewhere first (or by `netd network create`): use it.
            Err(e) if e.to_string().contains("already exists") => {}
            Err(e) => return Err(e),
        }
        self.bind(nid, &name, &subnets);
        Ok(())
    }

    fn network_of(&self, nid: &str) -> anyhow::Result<String> {
        lock(&self.networks)
            .get(nid)
            .cloned()
            .ok_or_else(|| anyhow!("Docker network {nid} is not a known netd network (yet)"))
    }

    async fn network_of_waiting(&self, nid: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.network_of(nid) {
                Ok(n) => return Ok(n),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn delete_network(&self, req: &Value) -> anyhow::Result<Value> {
        let nid = opt_str(req, "NetworkID").unwrap_or_default();
        let Some(name) = lock(&self.networks).get(nid).cloned() else {
            tracing::info!(docker_network = %nid, "Docker removed a network netd had not bound");
            return Ok(json!({}));
        };
        tracing::info!(network = %name, "Docker removed the network here: removing it everywhere");
        if self
            .service
            .store
            .get(&keys::network(&name))
            .await?
            .is_some()
        {
            // `docker network rm` here removes the network everywhere, once nobody uses it.
            self.service.network_rm(&name).await?;
        }
        lock(&self.networks).remove(nid);
        Ok(json!({}))
    }

    async fn create_endpoint(&self, req: &Value) -> anyhow::Result<Value> {
        let nid = opt_str(req, "NetworkID").unwrap_or_default();
        let eid = opt_str(req, "EndpointID")
            .ok_or_else(|| anyhow!("no EndpointID"))?
            .to_string();
        let name = self.network_of_waiting(nid).await?;
        let iface = &req["Interface"];
        let ip = parse_addr(opt_str(iface, "Address").unwrap_or_default())
            .map_err(|_| anyhow!("no IPv4 address for the endpoint (use --ipam-driver netd)"))?;
        let given_mac = opt_str(iface, "MacAddress").filter(|m| !m.is_empty());
        let mac: Option<Mac> = given_mac
            .map(|m| m.parse().map_err(|e: String| anyhow!(e)))
            .transpose()?;
        lock(&self.created).insert(eid.clone(), Instant::now());
        let published = self
            .service
            .endpoint_publish(NewEndpoint {
                network: name,
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
                return Err(e);
            }
        };
        Ok(if given_mac.is_some() {
            json!({})
        } else {
            json!({ "Interface": { "MacAddress": published.mac.to_string() } })
        })
    }

    async fn join(&self, req: &Value) -> anyhow::Result<Value> {
        let nid = opt_str(req, "NetworkID").unwrap_or_default();
        let eid = opt_str(req, "EndpointID").unwrap_or_default();
        let name = self.network_of(nid)?;
        let network = self.service.network_load(&name).await?.0;
        let host_if = netlink::host_ifname(&name, eid);
        if netlink::ifindex(&host_if).is_none() {
            bail!("endpoint {eid} has no interface");
        }
        let mut resp = json!({
            "InterfaceName": { "SrcName": format!("{host_if}p"), "DstPrefix": "eth" },
            "StaticRoutes": [],
            "DisableGatewayService": true,
        });
        if let Some(gw) = network.subnets.first().and_then(|s| s.gateway) {
            resp["Gateway"] = json!(gw.to_string());
        }
        Ok(resp)
    }

    async fn delete_endpoint(&self, req: &Value) -> anyhow::Result<Value> {
        let nid = opt_str(req, "NetworkID").unwrap_or_default();
        let eid = opt_str(req, "EndpointID").unwrap_or_default();
        let name = match self.network_of(nid) {
            Ok(n) => n,
            Err(_) => return Ok(json!({})),
        };
        self.remove_endpoint(&name, eid, false).await?;
        Ok(json!({}))
    }

    /// Removes a Docker endpoint of this host: store record (and, when Docker will not do it
    /// itself, its address), hook and interfaces.
    pub async fn remove_endpoint(
        &self,
        network: &str,
        eid: &str,
        release_address: bool,
    ) -> anyhow::Result<()> {
        let ip = if release_address {
            self.service
                .store
                .get(&keys::endpoint(network, eid))
                .await?
                .and_then(|kv| schema::decode::<EndpointRecord>(&kv.value).ok())
                .map(|r| r.ip)
        } else {
            None
        };
        // Docker's addresses are claimed in this host's name (request_address): released only
        // while that claim still stands, never one another host has taken since.
        let owner = docker_claim(&self.service.host.name);
        self.service
            .endpoint_withdraw(network, eid, ip.map(|ip| (ip, owner.as_str())))
            .await?;
        lock(&self.created).remove(eid);
        Ok(())
    }

    /// Docker network ID -> netd name, for the reconciler.
    pub fn bound_networks(&self) -> HashMap<String, String> {
        lock(&self.networks).clone()
    }

    /// Binds an existing Docker network (found at start-up) to its netd network.
    pub fn adopt(&self, nid: &str, name: &str, subnets: &[Ipv4Net]) {
        lock(&self.networks).insert(nid.to_string(), name.to_string());
        let mut pools = lock(&self.pools);
        for subnet in subnets {
            let id = format!("netd-adopted-{nid}-{subnet}");
            pools.insert(
                id,
                Pool {
                    subnet: *subnet,
                    ip_range: None,
                    network: Some(name.to_string()),
                    in_network: true,
                    created: Instant::now(),
                },
            );
        }
    }
}
