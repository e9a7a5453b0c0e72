//! The DNS names of every network, as the reconciler last applied them.
//!
//! The reconciler publishes a new [`Names`] (through a `watch` channel) after each batch that
//! changed a network's endpoints, and DNS answers from the latest one. So a query never waits
//! in the reconciler's queue behind store changes and intents, and a flood of queries never
//! delays them: the two share nothing but an `Arc` swapped once per batch.

use std::{collections::HashMap, net::Ipv4Addr, sync::Arc};

use super::model::Name;

/// One network's names (lower-case) -> their addresses (sorted).
pub type NetworkNames = HashMap<Name, Vec<Ipv4Addr>>;

/// Every network's names; cheap to clone (a network's table is shared until it changes).
#[derive(Clone, Debug, Default)]
pub struct Names {
    networks: HashMap<Name, Arc<NetworkNames>>,
}

impl Names {
    /// The addresses answering to `name` (any case) in any of `networks`, once each.
    pub fn resolve<S: AsRef<str>>(&self, networks: &[S], name: &str) -> Vec<Ipv4Addr> {
        let name = name.to_ascii_lowercase();
        let mut found = Vec::new();
        for network in networks {
            let Some(addresses) = self
                .networks
                .get(network.as_ref())
                .and_then(|table| table.get(name.as_str()))
            else {
                continue;
            };
            for ip in addresses {
                if !found.contains(ip) {
                    found.push(*ip);
                }
            }
        }
        found
    }

    /// Replaces `network`'s table (an empty one removes it).
    pub(super) fn set(&mut self, network: Name, table: NetworkNames) {
        if table.is_empty() {
            self.networks.remove(&network);
        } else {
            self.networks.insert(network, Arc::new(table));
        }
    }

    /// Forgets every network.
    pub(super) fn clear(&mut self) {
        self.networks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_resolves_in_the_networks_asked_for_only() {
        let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let mut names = Names::default();
        names.set(
            "n".into(),
            HashMap::from([(Name::from("web"), vec![ip("10.1.0.1")])]),
        );
        names.set(
            "o".into(),
            HashMap::from([(Name::from("web"), vec![ip("10.2.0.1"), ip("10.1.0.1")])]),
        );
        assert_eq!(names.resolve(&["n"], "WEB"), vec![ip("10.1.0.1")]);
        assert_eq!(
            names.resolve(&["n", "o"], "web"),
            vec![ip("10.1.0.1"), ip("10.2.0.1")]
        );
        assert!(names.resolve(&["x"], "web").is_empty());
        names.set("n".into(), HashMap::new());
        assert!(names.resolve(&["n"], "web").is_empty());
    }
}
