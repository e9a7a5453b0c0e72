//! The key layout (docs/architecture.md#store-layout). Every key netd writes is built here.
//!
//! Two layouts of a host's own records are read: the shared one of netd before per-host
//! confinement (`endpoints/<net>/<id>`, `ipam/<net>/<ip>`, one prefix for every host) and the
//! per-host one (`hosts/<host>/endpoints/...`, `hosts/<host>/claims/...`), in which each host
//! writes only under its own prefix, so that the store's access control can confine it.
//! Networks and VNIs are the same in both.

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

/// Which layout a host writes its endpoints and claims in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `endpoints/<net>/<id>` and `ipam/<net>/<ip>`: what netd wrote before per-host
    /// confinement, and still writes while a host of that version is alive (it reads nothing
    /// else).
    Shared,
    /// Under `hosts/<host>/`.
    PerHost,
}

impl Layout {
    /// Where `host` keeps its endpoint `id` of `network`.
    pub fn endpoint(self, host: &str, network: &str, id: &str) -> String {
        match self {
            Self::Shared => endpoint(network, id),
            Self::PerHost => host_endpoint(host, network, id),
        }
    }

    /// Where `host` keeps its claim of `ip` in `network`.
    pub fn claim(self, host: &str, network: &str, ip: Ipv4Addr) -> String {
        match self {
            Self::Shared => ipam(network, ip),
            Self::PerHost => host_claim(host, network, ip),
        }
    }
}

/// The prefix only `host` writes under (its record is the key [`host`] itself).
pub fn host_prefix(host: &str) -> String {
    format!("{HOSTS}{host}/")
}

pub fn host_endpoint(host: &str, network: &str, id: &str) -> String {
    format!("{HOSTS}{host}/endpoints/{network}/{id}")
}

pub fn host_claim(host: &str, network: &str, ip: Ipv4Addr) -> String {
    format!("{HOSTS}{host}/claims/{network}/{ip}")
}

/// Prefix of a network's endpoints (shared layout).
pub fn endpoints_of(network: &str) -> String {
    format!("{ENDPOINTS}{network}/")
}

pub fn endpoint(network: &str, id: &str) -> String {
    format!("{ENDPOINTS}{network}/{id}")
}

/// Prefix of a network's address claims (shared layout).
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
    /// An endpoint record; `host` is the prefix it is under (`None`: the shared layout, whose
    /// record alone says whose it is).
    Endpoint {
        host: Option<&'a str>,
        network: &'a str,
        id: &'a str,
    },
    /// An address claim; `host` as for endpoints.
    Claim {
        host: Option<&'a str>,
        network: &'a str,
        ip: &'a str,
    },
}

/// Parses a key; `None` for anything outside the layout.
pub fn parse(key: &str) -> Option<Key<'_>> {
    let rest = key.strip_prefix(ROOT)?;
    let (kind, rest) = rest.split_once('/')?;
    match kind {
        "networks" if valid(rest) => Some(Key::Network(rest)),
        "vnis" if valid(rest) => Some(Key::Vni(rest)),
        "hosts" if valid(rest) => Some(Key::Host(rest)),
        "hosts" => {
            let (host, rest) = rest.split_once('/')?;
            valid(host).then_some(())?;
            parse_owned(Some(host), rest)
        }
        "endpoints" | "ipam" => parse_owned(None, key.strip_prefix(ROOT)?),
        _ => None,
    }
}

/// An endpoint or claim key's `<kind>/<network>/<name>` part.
fn parse_owned<'a>(host: Option<&'a str>, rest: &'a str) -> Option<Key<'a>> {
    let (kind, rest) = rest.split_once('/')?;
    let (network, name) = rest.split_once('/')?;
    if !(valid(network) && valid(name)) {
        return None;
    }
    match (kind, host) {
        ("endpoints", _) => Some(Key::Endpoint {
            host,
            network,
            id: name,
        }),
        ("ipam", None) | ("claims", Some(_)) => Some(Key::Claim {
            host,
            network,
            ip: name,
        }),
        _ => None,
    }
}

/// One path component.
fn valid(s: &str) -> bool {
    !s.is_empty() && !s.contains('/')
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
                host: None,
                network: "mynet",
                id: "web1"
            })
        );
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(
            parse(&ipam("n", ip)),
            Some(Key::Claim {
                host: None,
                network: "n",
                ip: "10.0.0.1"
            })
        );
        assert_eq!(
            parse(&Layout::PerHost.endpoint("h1", "mynet", "web1")),
            Some(Key::Endpoint {
                host: Some("h1"),
                network: "mynet",
                id: "web1"
            })
        );
        assert_eq!(
            parse(&Layout::PerHost.claim("h1", "n", ip)),
            Some(Key::Claim {
                host: Some("h1"),
                network: "n",
                ip: "10.0.0.1"
            })
        );
        assert!(
            Layout::PerHost
                .claim("h1", "n", ip)
                .starts_with(&host_prefix("h1"))
        );
        assert!(!host_endpoint("h10", "n", "x").starts_with(&host_prefix("h1")));
        assert_eq!(parse(&host("h1")), Some(Key::Host("h1")));
        // A per-host key of the other kind's name, or a claim in the shared spelling under
        // a host, is nothing netd writes.
        assert_eq!(parse("/netd/v1/hosts/h1/ipam/n/10.0.0.1"), None);
        assert_eq!(parse("/netd/v1/hosts/h1/claims/n"), None);
        assert_eq!(parse("/netd/v1/claims/n/10.0.0.1"), None);
        assert_eq!(parse("/netd/v1/hosts//endpoints/n/x"), None);
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
