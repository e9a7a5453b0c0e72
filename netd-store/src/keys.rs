//! The key layout (docs/architecture.md#store-layout). Every key netd writes is built here.

use std::net::Ipv4Addr;

pub const ROOT: &str = "/netd/v1/";
pub const NETWORKS: &str = "/netd/v1/networks/";
pub const VNIS: &str = "/netd/v1/vnis/";
pub const HOSTS: &str = "/netd/v1/hosts/";
pub const ENDPOINTS: &str = "/netd/v1/endpoints/";
pub const IPAM: &str = "/netd/v1/ipam/";

pub fn network(name: &str) -> String {
    format!("{NETWORKS}{name}")
}

pub fn vni(vni: u32) -> String {
    format!("{VNIS}{vni}")
}

pub fn host(host: &str) -> String {
    format!("{HOSTS}{host}")
}

/// Prefix of a network's endpoints.
pub fn endpoints_of(network: &str) -> String {
    format!("{ENDPOINTS}{network}/")
}

pub fn endpoint(network: &str, id: &str) -> String {
    format!("{ENDPOINTS}{network}/{id}")
}

/// Prefix of a network's address claims.
pub fn ipam_of(network: &str) -> String {
    format!("{IPAM}{network}/")
}

pub fn ipam(network: &str, ip: Ipv4Addr) -> String {
    format!("{IPAM}{network}/{ip}")
}

/// What a key under [`ROOT`] names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    Network(&'a str),
    Vni(&'a str),
    Host(&'a str),
    Endpoint { network: &'a str, id: &'a str },
    Ipam { network: &'a str, ip: &'a str },
}

/// Parses a key; `None` for anything outside the layout.
pub fn parse(key: &str) -> Option<Key<'_>> {
    let rest = key.strip_prefix(ROOT)?;
    let (kind, rest) = rest.split_once('/')?;
    let valid = |s: &str| !s.is_empty() && !s.contains('/');
    match kind {
        "networks" if valid(rest) => Some(Key::Network(rest)),
        "vnis" if valid(rest) => Some(Key::Vni(rest)),
        "hosts" if valid(rest) => Some(Key::Host(rest)),
        "endpoints" => {
            let (network, id) = rest.split_once('/')?;
            (valid(network) && valid(id)).then_some(Key::Endpoint { network, id })
        }
        "ipam" => {
            let (network, ip) = rest.split_once('/')?;
            (valid(network) && valid(ip)).then_some(Key::Ipam { network, ip })
        }
        _ => None,
    }
}

/// Names of networks, endpoints and hosts: what Docker accepts for names, so they are also safe
/// path components.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(parse(&network("mynet")), Some(Key::Network("mynet")));
        assert_eq!(
            parse(&endpoint("mynet", "web1")),
            Some(Key::Endpoint {
                network: "mynet",
                id: "web1"
            })
        );
        assert_eq!(
            parse(&ipam("n", Ipv4Addr::new(10, 0, 0, 1))),
            Some(Key::Ipam {
                network: "n",
                ip: "10.0.0.1"
            })
        );
        assert_eq!(parse("/netd/v1/endpoints/onlynet"), None);
        assert_eq!(parse("/netd/v1/networks/a/b"), None);
        assert_eq!(parse("/other/key"), None);
    }

    #[test]
    fn names() {
        assert!(valid_name("my-net_1.x"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
