//! The maps one host holds for a fixed set of store records, planned the way its daemon plans
//! them: records -> [`Model`] -> [`Planner`] -> [`MapState`], which [`Datapath::apply`] writes.
//!
//! For what fills a datapath without a store or a reconciler (the packet tests, the namespace
//! labs, the benchmarks): they program exactly what a daemon would, so a planner change that
//! breaks a packet path breaks them too.
//!
//! [`Datapath::apply`]: crate::datapath::Datapath::apply

use std::collections::HashMap;

use netd_store::{
    KeyValue, WatchEvent, keys,
    schema::{self, EndpointRecord, HostRecord, NetworkRecord},
};

use super::{
    local::{LocalEndpoint, LocalTable},
    model::{Identity, Invalid, Model, Name, Touched},
    plan::{self, Context, ParentPort},
};
use crate::datapath::MapState;

/// Why a snapshot would not program what its records say.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A record the daemon would refuse (and so not program).
    #[error("{key}: {reason}")]
    Refused { key: String, reason: String },
    #[error("endpoint {network}/{id} of this host has no interface")]
    NoInterface { network: String, id: String },
    #[error("macvlan network {0} has no parent interface on this host")]
    NoParent(String),
}

pub struct Snapshot {
    model: Model,
    local: LocalTable,
    parents: HashMap<Name, ParentPort>,
    /// Store revision of the last record put; records keep their first one as their create
    /// revision (claims are settled by it), as the store keeps it.
    revision: i64,
    created: HashMap<String, i64>,
}

impl Snapshot {
    /// This host, registered under `host` with `record`, and nothing else yet.
    pub fn new(host: &str, record: HostRecord) -> Self {
        let mut snapshot = Self {
            model: Model::new(Identity {
                host: host.into(),
                record: record.clone(),
            }),
            local: LocalTable::default(),
            parents: HashMap::new(),
            revision: 0,
            created: HashMap::new(),
        };
        snapshot.host(host, &record);
        snapshot
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> &mut Self {
        self.revision += 1;
        let create_revision = *self.created.entry(key.clone()).or_insert(self.revision);
        let event = WatchEvent::Put(KeyValue {
            key,
            value,
            create_revision,
            mod_revision: self.revision,
        });
        // What a change touched does not matter here: `plan` plans every endpoint.
        self.model.apply(&event, &mut Touched::default());
        self
    }

    /// Puts (or replaces) a network's record.
    pub fn network(&mut self, record: &NetworkRecord) -> &mut Self {
        self.put(keys::network(&record.name), schema::encode(record))
    }

    /// Puts (or replaces) a host's record.
    pub fn host(&mut self, name: &str, record: &HostRecord) -> &mut Self {
        self.put(keys::host(name), schema::encode(record))
    }

    /// Puts (or replaces) an endpoint's record in `network`, under its name.
    pub fn endpoint(&mut self, network: &str, record: &EndpointRecord) -> &mut Self {
        self.put(
            keys::endpoint(network, &record.name),
            schema::encode(record),
        )
    }

    /// Places an endpoint of this host behind its host-side interface.
    pub fn interface(&mut self, network: &str, id: &str, ifname: &str, ifindex: u32) -> &mut Self {
        self.local.insert(
            network.into(),
            id.into(),
            LocalEndpoint {
                ifname: ifname.into(),
                ifindex: Some(ifindex),
                pending: None,
            },
        );
        self
    }

    /// Gives a macvlan network its parent interface on this host.
    pub fn parent(&mut self, network: &str, port: ParentPort) -> &mut Self {
        self.parents.insert(network.into(), port);
        self
    }

    /// The maps this host's daemon would hold. Refuses records the daemon would leave out, so
    /// that what a caller put in is what gets programmed.
    pub fn plan(&self) -> Result<MapState, SnapshotError> {
        self.check()?;
        let ctx = Context {
            model: &self.model,
            local: &self.local,
            parents: &self.parents,
        };
        Ok(plan::from_scratch(&ctx))
    }

    fn check(&self) -> Result<(), SnapshotError> {
        let model = &self.model;
        if let Some((key, reason)) = model.invalid_networks().chain(model.invalid_hosts()).next() {
            return Err(SnapshotError::Refused { key, reason });
        }
        let me = &model.identity().host;
        for slot in model.slots() {
            let Some(ep) = model.get(slot) else { continue };
            let record = model
                .check(slot)
                .map_err(|invalid| SnapshotError::Refused {
                    key: model.key_of(slot),
                    reason: match invalid {
                        Invalid::HostGone => "its host is not registered".into(),
                        Invalid::Deleted => "deleted".into(),
                        Invalid::Other(reason) => reason,
                    },
                })?;
            if record.host != *me {
                continue;
            }
            if self.local.get(&ep.network, &ep.id).is_none() {
                return Err(SnapshotError::NoInterface {
                    network: ep.network.to_string(),
                    id: ep.id.to_string(),
                });
            }
            let macvlan = model
                .network(&ep.network)
                .is_some_and(|n| n.macvlan().is_some());
            if macvlan && !self.parents.contains_key(&ep.network) {
                return Err(SnapshotError::NoParent(ep.network.to_string()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::model::tests::{endpoint, host_record, network};

    fn record<T: serde::de::DeserializeOwned + schema::Versioned>(value: Vec<u8>) -> T {
        schema::decode(&value).unwrap()
    }

    #[test]
    fn the_plan_is_the_daemons_own_and_bad_records_are_refused() {
        let mut s = Snapshot::new("a", host_record("192.168.0.1"));
        s.network(&record(network("n", 300)))
            .host("b", &host_record("192.168.0.2"))
            .endpoint(
                "n",
                &record(endpoint("mine", "10.1.0.1", "a", "192.168.0.1")),
            )
            .endpoint(
                "n",
                &record(endpoint("peer", "10.1.0.2", "b", "192.168.0.2")),
            );
        assert_eq!(
            s.plan(),
            Err(SnapshotError::NoInterface {
                network: "n".into(),
                id: "mine".into()
            })
        );
        s.interface("n", "mine", "nd7", 7);
        let maps = s.plan().unwrap();
        assert_eq!(maps.endpoints.len(), 1);
        assert_eq!(maps.fdb.len(), 2);
        assert_eq!(maps.vteps.len(), 1);
        // A peer whose VTEP is not its host's is left out by the daemon: refused here.
        s.endpoint(
            "n",
            &record(endpoint("liar", "10.1.0.3", "b", "192.168.0.9")),
        );
        match s.plan() {
            Err(SnapshotError::Refused { key, reason }) => {
                assert_eq!(key, keys::endpoint("n", "liar"));
                assert!(reason.contains("VTEP"), "{reason}");
            }
            other => panic!("a bad record was planned: {other:?}"),
        }
    }
}
