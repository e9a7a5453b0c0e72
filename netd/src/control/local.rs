//! This host's endpoints: which interface each one is behind.
//!
//! Filled at start from the interfaces themselves (their `netd:<network>/<endpoint>` alias,
//! see [`crate::netlink::local_endpoints`]) and kept by attach and detach. An endpoint of this
//! host is programmed only while it is here, and only through the interface named here.

use std::collections::HashMap;

use super::model::{Name, Record};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// The host-side veth.
    pub ifname: String,
    /// Its ifindex; `None` while the interface cannot be found (gone with its namespace).
    pub ifindex: Option<u32>,
    /// Its record, while it was attached in this run and the store has not echoed it yet: it
    /// is put back into the model after a re-list that does not have it yet.
    pub pending: Option<Record>,
}

#[derive(Debug, Default)]
pub struct LocalTable {
    endpoints: HashMap<(Name, Name), LocalEndpoint>,
}

impl LocalTable {
    pub fn get(&self, network: &Name, id: &Name) -> Option<&LocalEndpoint> {
        self.endpoints.get(&(network.clone(), id.clone()))
    }

    pub fn insert(&mut self, network: Name, id: Name, endpoint: LocalEndpoint) {
        self.endpoints.insert((network, id), endpoint);
    }

    pub fn remove(&mut self, network: &Name, id: &Name) -> Option<LocalEndpoint> {
        self.endpoints.remove(&(network.clone(), id.clone()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(Name, Name), &LocalEndpoint)> {
        self.endpoints.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&(Name, Name), &mut LocalEndpoint)> {
        self.endpoints.iter_mut()
    }
}
