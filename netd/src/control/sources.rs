//! The store keys behind each endpoint and each address claim.
//!
//! One endpoint (network, name) may have its record under more than one key: under the shared
//! layout's key and its host's own while that host moves its records to the per-host layout,
//! or under two hosts' prefixes when both added the same name at once (each host checks only
//! its own prefix when it creates a key). The earliest created key is the endpoint's, on every
//! host (a refused record only after every good one); the host that lost sees it when its own
//! key is echoed, and takes its key back.
//!
//! Address claims are kept the same way, per (network, address): the earliest created claim
//! holds the address. A claim older than its network's record is a leftover of an earlier
//! network of that name, and holds nothing.

use std::{collections::HashMap, net::Ipv4Addr};

use super::model::{Name, Record};

/// One key holding an endpoint's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub key: Box<str>,
    pub create_revision: i64,
    /// The decoded record, or why it did not decode (or does not belong under its key).
    pub record: Result<Record, String>,
}

/// Every endpoint's sources, earliest first.
#[derive(Debug, Default)]
pub struct EndpointSources {
    by_endpoint: HashMap<(Name, Name), Vec<Source>>,
}

impl EndpointSources {
    /// Adds or replaces the source under `source.key`; returns the endpoint's source after it
    /// (the earliest).
    pub fn put(&mut self, network: &Name, id: &Name, source: Source) -> Option<&Source> {
        let sources = self
            .by_endpoint
            .entry((network.clone(), id.clone()))
            .or_default();
        sources.retain(|s| s.key != source.key);
        // A record that is refused never hides a good one: a host cannot take another's
        // endpoint off the maps by writing a bad record of its name first.
        let order = |s: &Source| (s.record.is_err(), s.create_revision, s.key.clone());
        let at = sources.partition_point(|s| order(s) < order(&source));
        sources.insert(at, source);
        sources.first()
    }

    /// Removes the source under `key`; returns the endpoint's source after it, if any is left.
    pub fn delete(&mut self, network: &Name, id: &Name, key: &str) -> Option<&Source> {
        let endpoint = (network.clone(), id.clone());
        let sources = self.by_endpoint.get_mut(&endpoint)?;
        sources.retain(|s| &*s.key != key);
        if sources.is_empty() {
            self.by_endpoint.remove(&endpoint);
            return None;
        }
        self.by_endpoint.get(&endpoint)?.first()
    }

    /// The keys of an endpoint's record, earliest (the one that counts) first.
    pub fn keys(&self, network: &str, id: &str) -> Vec<String> {
        self.of(network, id).map(|s| s.key.to_string()).collect()
    }

    /// An endpoint's sources, earliest first.
    pub fn of(&self, network: &str, id: &str) -> impl Iterator<Item = &Source> {
        self.by_endpoint
            .get(&(Name::from(network), Name::from(id)))
            .into_iter()
            .flatten()
    }

    /// Every key of an endpoint of `network`.
    pub fn keys_of_network(&self, network: &str) -> Vec<String> {
        self.by_endpoint
            .iter()
            .filter(|((n, _), _)| &**n == network)
            .flat_map(|(_, sources)| sources.iter().map(|s| s.key.to_string()))
            .collect()
    }

    /// Keys whose record names `host`, with the endpoint's network.
    pub fn keys_of_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.by_endpoint
            .values()
            .flatten()
            .filter(move |s| s.record.as_ref().is_ok_and(|r| &*r.host == host))
            .map(|s| &*s.key)
    }
}

/// One claim of an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub key: String,
    pub create_revision: i64,
    /// Who it was claimed for (the claim's value: an endpoint's name, or Docker's owner).
    pub owner: String,
}

/// Every address claim, per network and address, earliest first. By network first: an
/// allocation asks for one network's taken addresses, which must not cost a pass over every
/// claim of every network.
#[derive(Debug, Default)]
pub struct Claims {
    by_network: HashMap<Name, HashMap<Ipv4Addr, Vec<Claim>>>,
}

impl Claims {
    pub fn put(&mut self, network: &Name, ip: Ipv4Addr, claim: Claim) {
        let claims = self
            .by_network
            .entry(network.clone())
            .or_default()
            .entry(ip)
            .or_default();
        claims.retain(|c| c.key != claim.key);
        let at = claims
            .partition_point(|c| (c.create_revision, &c.key) < (claim.create_revision, &claim.key));
        claims.insert(at, claim);
    }

    pub fn delete(&mut self, network: &Name, ip: Ipv4Addr, key: &str) {
        let Some(addresses) = self.by_network.get_mut(network) else {
            return;
        };
        if let Some(claims) = addresses.get_mut(&ip) {
            claims.retain(|c| c.key != key);
            if claims.is_empty() {
                addresses.remove(&ip);
            }
        }
        if addresses.is_empty() {
            self.by_network.remove(network);
        }
    }

    /// The claims of an address that count (created since `since`, the network's create
    /// revision), earliest (the holder) first.
    pub fn of(&self, network: &str, ip: Ipv4Addr, since: i64) -> Vec<Claim> {
        self.by_network
            .get(network)
            .and_then(|addresses| addresses.get(&ip))
            .into_iter()
            .flatten()
            .filter(|c| c.create_revision >= since)
            .cloned()
            .collect()
    }

    /// The addresses of `network` that a claim created since `since` holds.
    pub fn taken(&self, network: &str, since: i64) -> Vec<Ipv4Addr> {
        self.by_network
            .get(network)
            .into_iter()
            .flatten()
            .filter(|(_, claims)| claims.iter().any(|c| c.create_revision >= since))
            .map(|(ip, _)| *ip)
            .collect()
    }

    /// Every claim of a network (leftovers included).
    pub fn of_network<'a>(&'a self, network: &str) -> impl Iterator<Item = &'a Claim> + 'a {
        self.by_network
            .get(network)
            .into_iter()
            .flat_map(|addresses| addresses.values().flatten())
    }

    /// Every claim, with its network.
    pub fn iter(&self) -> impl Iterator<Item = (&Name, &Claim)> {
        self.by_network.iter().flat_map(|(network, addresses)| {
            addresses.values().flatten().map(move |c| (network, c))
        })
    }
}
