//! What every plugin call and the sync loop share: the daemon's operations, the Engine client,
//! and this host's tables of Docker's pools, bindings and endpoints. The handlers of each
//! protocol (`ipam.rs`, `network.rs`, `endpoint.rs`, `names.rs`) work on it; `driver.rs`
//! routes Docker's calls to them and `sync.rs` keeps Docker and the store in step through it.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Instant,
};

use ipnet::Ipv4Net;

use super::{bindings::Bindings, engine::Engine, pools::Pools};
use crate::{health::Health, service::Service};

pub struct DockerState {
    pub service: Service,
    pub health: Arc<Health>,
    pub engine: Engine,
    pub(super) pools: Pools,
    pub(super) bindings: Bindings,
    /// Docker endpoint ID -> when this daemon created it (the reconciler leaves young ones alone).
    pub created: Mutex<HashMap<String, Instant>>,
    /// Endpoints whose container is being looked up (names, DNS).
    pub(super) following: Mutex<HashSet<String>>,
}

impl DockerState {
    pub fn new(service: Service, health: Arc<Health>, engine: Engine) -> Self {
        Self {
            service,
            health,
            engine,
            pools: Pools::default(),
            bindings: Bindings::default(),
            created: Mutex::new(HashMap::new()),
            following: Mutex::new(HashSet::new()),
        }
    }

    /// Binds a Docker network, and the pools it got, to its netd network.
    pub(super) fn bind(&self, docker_network: &str, name: &str) {
        self.bindings.insert(docker_network, name);
        self.pools.bind(docker_network, name);
        tracing::info!(docker_network, network = %name, "Docker network bound");
    }

    /// Binds an existing Docker network (found at start-up) to its netd network.
    pub fn adopt(&self, docker_network: &str, name: &str, subnets: &[Ipv4Net]) {
        self.bindings.insert(docker_network, name);
        self.pools.adopt(docker_network, name, subnets);
    }
}
