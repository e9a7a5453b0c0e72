//! Interface plumbing for endpoints, over rtnetlink: veth pairs, namespace moves, addresses,
//! routes, MTU, MAC, promiscuity. These are rare, slow-path operations.
//!
//! The functions here are synchronous and may be called from blocking threads and from inside
//! tokio handlers alike; `runner` keeps the netlink work off the caller's thread. Each one acts
//! on the calling thread's network namespace, except where a namespace is given.
//!
//! Host-side veths are named `nd<8 hex>` and carry `netd:<network>/<endpoint>` as their alias,
//! which is how a restarted daemon finds its endpoints again without any state file.

mod ask;
mod endpoint;
mod error;
mod link;
mod route;
mod runner;

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

pub use error::NetlinkError;

/// Resolves `--netns NAME|PATH`: a name made by `ip netns add`, or a path such as
/// `/proc/PID/ns/net`.
pub fn netns_path(spec: &str) -> Result<PathBuf, NetlinkError> {
    let path = if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        crate::netns::named(spec)
    };
    if !path.exists() {
        return Err(NetlinkError::NoNetns(spec.into()));
    }
    Ok(path)
}

/// The host-side interface name of an endpoint: stable, short enough (IFNAMSIZ), and unlikely to
/// collide (FNV-1a of network and endpoint name).
pub fn host_ifname(network: &str, endpoint: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for b in network.bytes().chain([b'/']).chain(endpoint.bytes()) {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("nd{hash:08x}")
}

const ALIAS_PREFIX: &str = "netd:";

fn alias(network: &str, endpoint: &str) -> String {
    format!("{ALIAS_PREFIX}{network}/{endpoint}")
}

/// What an endpoint's container side gets.
pub struct EndpointLink<'a> {
    pub network: &'a str,
    pub endpoint: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub mac: &'a str,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u16,
}

/// Creates the veth pair, moves one end into the namespace (renamed, addressed, routed, up) and
/// brings the host end up. Returns the host end's name. On failure nothing is left behind.
pub fn create_endpoint(link: &EndpointLink<'_>) -> Result<String, NetlinkError> {
    endpoint::create_endpoint(link)
}

/// Creates a veth pair for a Docker endpoint: both ends stay in this namespace, the peer (named
/// `<host>p`, with the endpoint's MAC and MTU) is what Docker moves into the container at Join.
/// Returns (host end, peer).
pub fn create_docker_endpoint(
    network: &str,
    endpoint: &str,
    mac: &str,
    mtu: u16,
) -> Result<(String, String), NetlinkError> {
    endpoint::create_docker_endpoint(network, endpoint, mac, mtu)
}

/// Deletes a link (its veth peer goes with it). Deleting a missing link is not an error.
pub fn delete_link(name: &str) -> Result<(), NetlinkError> {
    let name = name.to_string();
    runner::here(move |handle| async move { link::delete(&handle, &name).await })
}

/// Makes sure the link `name` is a flow-based vxlan device on UDP `port` (see
/// `link::add_flow_vxlan`): one left by an earlier run is kept when it is one, replaced when not.
/// A new device stays down until [`bring_up`].
pub fn ensure_flow_vxlan(name: &str, port: u16) -> Result<(), NetlinkError> {
    let name = name.to_string();
    runner::here(move |handle| async move {
        match link::get(&handle, link::Lookup::Name(&name)).await {
            Ok(existing) if link::is_flow_vxlan(&existing, port) => return Ok(()),
            Ok(_) => link::delete(&handle, &name).await?,
            Err(NetlinkError::NoSuchLink(_)) => {}
            Err(e) => return Err(e),
        }
        link::add_flow_vxlan(&handle, &name, port).await
    })
}

/// Brings the link `name` up.
pub fn bring_up(name: &str) -> Result<(), NetlinkError> {
    let name = name.to_string();
    runner::here(move |handle| async move { link::set_up(&handle, &name).await })
}

/// ifindex of a link in the current namespace. A plain ioctl, answered on the caller's thread:
/// it is asked often (every reconcile pass) and cannot block.
pub fn ifindex(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// What netd needs to know about a link, read over netlink (not /sys, which belongs to the
/// namespace it was mounted in: a daemon started with `nsenter --net` still sees the root one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub mtu: u16,
    pub mac: [u8; 6],
    pub promisc: bool,
}

pub fn link_info(name: &str) -> Result<LinkInfo, NetlinkError> {
    let name = name.to_string();
    runner::here(move |handle| async move {
        let message = link::get(&handle, link::Lookup::Name(&name)).await?;
        link::info(&message).ok_or_else(|| {
            NetlinkError::protocol(
                format!("look up link {name}"),
                "it has no Ethernet address or its MTU exceeds 65535",
            )
        })
    })
}

/// MTU of a link.
pub fn mtu(name: &str) -> Result<u16, NetlinkError> {
    link_info(name).map(|l| l.mtu)
}

/// Turns promiscuous mode on or off.
pub fn set_promisc(name: &str, on: bool) -> Result<(), NetlinkError> {
    let name = name.to_string();
    runner::here(move |handle| async move { link::set_promisc(&handle, &name, on).await })
}

/// The interface that holds `address` (like `ip -o addr show to ADDRESS`), if one does.
pub fn address_holder(address: Ipv4Addr) -> Result<Option<String>, NetlinkError> {
    runner::here(move |handle| async move {
        match route::address_holder(&handle, address).await? {
            Some(index) => link_name(&handle, index).await.map(Some),
            None => Ok(None),
        }
    })
}

async fn link_name(handle: &rtnetlink::Handle, index: u32) -> Result<String, NetlinkError> {
    let message = link::get(handle, link::Lookup::Index(index)).await?;
    link::name(&message).map(str::to_string).ok_or_else(|| {
        NetlinkError::protocol(format!("look up link #{index}"), "the link has no name")
    })
}

/// Gives `lo` the address `ip`/32 (idempotent), in the namespace at `netns`, or this thread's
/// when `None`: the address netd's DNS answers at, local in every namespace it serves.
pub fn add_loopback_address(netns: Option<&Path>, ip: Ipv4Addr) -> Result<(), NetlinkError> {
    let job = move |handle: rtnetlink::Handle| async move {
        let lo = link::get(&handle, link::Lookup::Name("lo")).await?;
        match route::add_address(&handle, lo.header.index, "lo", ip, 32).await {
            Ok(()) | Err(NetlinkError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    };
    match netns {
        Some(netns) => runner::in_netns(netns, job),
        None => runner::here(job),
    }
}

/// Who this namespace's own processes and the containers behind its bridges send from: each
/// local IPv4 address (/32), and the subnet of each address of a bridge other than
/// `except_bridge` (the uplink, when it is one: its subnet is the LAN's). What netd's DNS in
/// the host's namespace answers (`dns::access`).
pub fn bridged_sources(except_bridge: &str) -> Result<Vec<ipnet::Ipv4Net>, NetlinkError> {
    let (links, addresses) = runner::here(|handle| async move {
        Ok((link::dump(&handle).await?, route::addresses(&handle).await?))
    })?;
    let bridges: std::collections::HashSet<u32> = links
        .iter()
        .filter(|l| link::is_bridge(l) && link::name(l) != Some(except_bridge))
        .map(|l| l.header.index)
        .collect();
    let mut sources = Vec::new();
    for (index, ip, prefix_len) in addresses {
        sources.push(ipnet::Ipv4Net::from(ip));
        if bridges.contains(&index)
            && let Ok(net) = ipnet::Ipv4Net::new(ip, prefix_len)
        {
            sources.push(net.trunc());
        }
    }
    Ok(sources)
}

/// An interface of this namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// The (network, endpoint) of its `netd:<network>/<endpoint>` alias: a netd endpoint's
    /// host side.
    pub endpoint: Option<(String, String)>,
}

/// Every interface of this namespace, by ifindex.
pub fn interfaces() -> Result<HashMap<u32, Interface>, NetlinkError> {
    let links = runner::here(|handle| async move { link::dump(&handle).await })?;
    Ok(links
        .iter()
        .filter_map(|message| {
            let endpoint = link::alias(message)
                .and_then(|a| a.strip_prefix(ALIAS_PREFIX))
                .and_then(|a| a.split_once('/'))
                .map(|(network, endpoint)| (network.to_string(), endpoint.to_string()));
            let name = link::name(message)?.to_string();
            Some((message.header.index, Interface { name, endpoint }))
        })
        .collect())
}

/// The endpoints of this host, found by their aliases: (network, endpoint) -> host ifname.
pub fn local_endpoints() -> Result<HashMap<(String, String), String>, NetlinkError> {
    Ok(interfaces()?
        .into_values()
        .filter_map(|i| Some((i.endpoint?, i.name)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ifname_fits_ifnamsiz_and_differs() {
        let a = host_ifname("mynet", "web1");
        assert!(a.len() <= 15);
        assert_ne!(a, host_ifname("mynet", "web2"));
        assert_ne!(a, host_ifname("mynet2", "web1"));
        assert_eq!(a, host_ifname("mynet", "web1"));
    }
}
