//! Which netd network each of this host's Docker networks is. Docker never tells its driver a
//! network's name, so a binding is made when netd learns it: from the `netd.network` option of
//! a network netd mirrored, from the Engine just after `CreateNetwork` (see `network.rs`), or
//! from the Engine's network list at start-up (`adopt`).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::anyhow;
use ipnet::Ipv4Net;

use super::{engine::Engine, lock::lock};

/// How long a call about a network waits for its binding (made just after `CreateNetwork`).
const BINDING_WAIT: Duration = Duration::from_secs(10);

/// Docker network ID -> netd network name. Binding a network binds its pools too: that is
/// [`super::state::DockerState::bind`]'s job, which holds both tables.
#[derive(Default)]
pub(super) struct Bindings {
    by_id: Mutex<HashMap<String, String>>,
}

impl Bindings {
    pub fn get(&self, docker_network: &str) -> Option<String> {
        lock(&self.by_id).get(docker_network).cloned()
    }

    pub fn insert(&self, docker_network: &str, name: &str) {
        lock(&self.by_id).insert(docker_network.to_string(), name.to_string());
    }

    pub fn remove(&self, docker_network: &str) {
        lock(&self.by_id).remove(docker_network);
    }

    /// Docker network ID -> netd name, for the reconciler.
    pub fn all(&self) -> HashMap<String, String> {
        lock(&self.by_id).clone()
    }

    pub fn network_of(&self, docker_network: &str) -> anyhow::Result<String> {
        self.get(docker_network).ok_or_else(|| {
            anyhow!("Docker network {docker_network} is not a known netd network (yet)")
        })
    }

    /// The binding, waited for: Docker may create an endpoint as soon as `CreateNetwork`
    /// returned, before netd learned the network's name.
    pub async fn network_of_waiting(&self, docker_network: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + BINDING_WAIT;
        loop {
            match self.network_of(docker_network) {
                Ok(n) => return Ok(n),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The netd network of the bound Docker network with this subnet, asked from the Engine
    /// (after a restart, when a pool's binding was lost); `None` when not exactly one has it.
    pub async fn network_by_subnet(&self, engine: &Engine, subnet: Ipv4Net) -> Option<String> {
        let subnet = subnet.to_string();
        let mut found = None;
        for (nid, name) in &self.all() {
            let Ok(Some(n)) = engine.network(nid).await else {
                continue;
            };
            let has = n["IPAM"]["Config"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["Subnet"].as_str() == Some(subnet.as_str()));
            if has {
                if found.is_some() {
                    return None; // ambiguous
                }
                found = Some(name.clone());
            }
        }
        found
    }
}
