//! A container's names across hosts. The plugin protocol tells a driver nothing about the
//! container, so once an endpoint is joined netd asks the Engine: the container's name,
//! hostname and aliases on the network go into the endpoint's store record (every host answers
//! them from there), and netd's DNS is served in the container's namespace (through its first
//! process: `/proc/PID/ns/net` is the same namespace wherever the engine's mounts live).

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use netd_store::{
    Backend, Expect,
    schema::{self, EndpointRecord, valid_dns_name},
};
use serde_json::Value;

use super::{lock::lock, state::DockerState};

/// How long a joined container has to show up started in the Engine.
const FIND_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// What netd learns of a container.
#[derive(Debug, PartialEq, Eq)]
pub struct Container {
    pub names: Vec<String>,
    /// Its namespace, through its first process.
    pub netns: PathBuf,
}

/// The names of a container in `network` (from `GET /containers/{id}/json`): its name, its
/// hostname, its aliases there (and Docker 26's `DNSNames`), lower-cased, once each.
pub fn names_of(container: &Value, network: &str) -> Vec<String> {
    let mut names = BTreeSet::new();
    let mut add = |name: &str| {
        let name = name.trim_start_matches('/').to_ascii_lowercase();
        if valid_dns_name(&name) {
            names.insert(name);
        }
    };
    if let Some(name) = container["Name"].as_str() {
        add(name);
    }
    if let Some(hostname) = container["Config"]["Hostname"].as_str() {
        add(hostname);
    }
    let on_network = &container["NetworkSettings"]["Networks"][network];
    for list in ["Aliases", "DNSNames"] {
        for alias in on_network[list].as_array().into_iter().flatten() {
            if let Some(alias) = alias.as_str() {
                add(alias);
            }
        }
    }
    names.into_iter().take(schema::MAX_NAMES).collect()
}

impl DockerState {
    /// Looks the container behind a joined endpoint up (in the background: it is started after
    /// the join), publishes its names and serves it DNS.
    pub(super) fn follow_container(self: &Arc<Self>, nid: String, eid: String) {
        // One lookup per endpoint at a time (the periodic pass may ask again meanwhile).
        if !lock(&self.following).insert(eid.clone()) {
            return;
        }
        let docker = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(error) = docker.publish_names(&nid, &eid).await {
                tracing::warn!(endpoint = %eid, error = %format!("{error:#}"), "container names not published");
            }
            lock(&docker.following).remove(&eid);
        });
    }

    async fn publish_names(&self, nid: &str, eid: &str) -> anyhow::Result<()> {
        let network = self.bindings.network_of_waiting(nid).await?;
        let container = self.find_container(nid, eid, &network).await?;
        self.put_names(&network, eid, &container.names).await?;
        if let Some(dns) = &self.service.dns {
            dns.serve(&container.netns, &network, eid, false).await?;
        }
        tracing::debug!(endpoint = %eid, names = ?container.names, "container names published");
        Ok(())
    }

    /// Waits for the Engine to show the container of endpoint `eid` running.
    async fn find_container(
        &self,
        nid: &str,
        eid: &str,
        network: &str,
    ) -> anyhow::Result<Container> {
        let deadline = Instant::now() + FIND_TIMEOUT;
        loop {
            if let Some(found) = self.container_of(nid, eid, network).await? {
                return Ok(found);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no running container joined endpoint {eid} within {FIND_TIMEOUT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn container_of(
        &self,
        nid: &str,
        eid: &str,
        network: &str,
    ) -> anyhow::Result<Option<Container>> {
        let Some(net) = self.engine.network(nid).await? else {
            return Ok(None);
        };
        let id = net["Containers"].as_object().and_then(|containers| {
            containers
                .iter()
                .find(|(_, c)| c["EndpointID"].as_str() == Some(eid))
                .map(|(id, _)| id.clone())
        });
        let Some(id) = id else {
            return Ok(None);
        };
        let Some(container) = self.engine.container(&id).await? else {
            return Ok(None);
        };
        let pid = container["State"]["Pid"].as_u64().unwrap_or(0);
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some(Container {
            names: names_of(&container, network),
            netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
        }))
    }

    /// Writes `names` into the endpoint's record (each of its keys, while it moves to the
    /// per-host layout), unless someone changed it meanwhile (then reads it again).
    async fn put_names(&self, network: &str, eid: &str, names: &[String]) -> anyhow::Result<()> {
        for key in self.service.own_endpoint_keys(network, eid).await? {
            self.put_names_at(&key, eid, names).await?;
        }
        Ok(())
    }

    async fn put_names_at(&self, key: &str, eid: &str, names: &[String]) -> anyhow::Result<()> {
        for _ in 0..5 {
            let Some(kv) = self.service.store.get(key).await? else {
                // Withdrawn (or moved) meanwhile: nothing to name there.
                return Ok(());
            };
            let mut record: EndpointRecord = schema::decode(&kv.value)?;
            if record.names == names {
                return Ok(());
            }
            record.names = names.to_vec();
            let value = schema::encode(&record);
            if self
                .service
                .store
                .put_if(key, &value, None, Expect::ModRevision(kv.mod_revision))
                .await?
            {
                return Ok(());
            }
        }
        anyhow::bail!("endpoint {eid}'s record keeps changing")
    }

    /// For the endpoints of this host whose container is not served yet (a daemon restarted
    /// under running containers): look them up again.
    pub(super) fn follow_unserved(self: &Arc<Self>, bound: &[(String, String)]) {
        let Some(dns) = &self.service.dns else {
            return;
        };
        for (nid, eid) in bound {
            let network = self.bindings.network_of(nid).unwrap_or_default();
            if !dns.serves_endpoint(&network, eid) {
                self.follow_container(nid.clone(), eid.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_containers_names_on_a_network() {
        let container = json!({
            "Name": "/Web",
            "Config": { "Hostname": "1a2b3c4d5e6f" },
            "NetworkSettings": { "Networks": {
                "mynet": { "Aliases": ["www", "1a2b3c4d5e6f"], "DNSNames": ["web", "www", "bad name"] },
                "other": { "Aliases": ["elsewhere"] },
            }},
        });
        assert_eq!(
            names_of(&container, "mynet"),
            vec!["1a2b3c4d5e6f", "web", "www"]
        );
        assert_eq!(
            names_of(&container, "other"),
            vec!["1a2b3c4d5e6f", "elsewhere", "web"]
        );
    }
}
