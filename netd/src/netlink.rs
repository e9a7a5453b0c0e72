//! Interface plumbing for endpoints, through iproute2 (`ip`, and `nsenter` for namespaces given
//! by path). These are rare, slow-path operations; keeping them in one module keeps the door
//! open to rtnetlink without touching callers.
//!
//! Host-side veths are named `nd<8 hex>` and carry `netd:<network>/<endpoint>` as their alias,
//! which is how a restarted daemon finds its endpoints again without any state file.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot run {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("unexpected output from {0}")]
    Parse(String),
    #[error("network namespace {0} does not exist")]
    NoNetns(String),
}

fn run(program: &str, args: &[&str]) -> Result<String, NetlinkError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetlinkError::Spawn(cmd.clone(), e))?;
    if !out.status.success() {
        return Err(NetlinkError::Failed {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ...` inside the network namespace at `netns`.
fn ip_in(netns: &Path, args: &[&str]) -> Result<String, NetlinkError> {
    let net = format!("--net={}", netns.display());
    let mut all = vec![net.as_str(), "ip"];
    all.extend_from_slice(args);
    run("nsenter", &all)
}

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

fn alias(network: &str, endpoint: &str) -> String {
    format!("netd:{network}/{endpoint}")
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
    let host = host_ifname(link.network, link.endpoint);
    // The peer gets a temporary name: `eth0` may exist in the host namespace.
    let peer = format!("{host}p");
    let mtu = link.mtu.to_string();
    run(
        "ip",
        &[
            "link", "add", &host, "mtu", &mtu, "type", "veth", "peer", "name", &peer, "mtu", &mtu,
        ],
    )?;
    let result = configure(link, &host, &peer);
    if result.is_err() {
        let _ = delete_link(&host);
    }
    result.map(|()| host)
}

fn configure(link: &EndpointLink<'_>, host: &str, peer: &str) -> Result<(), NetlinkError> {
    run(
        "ip",
        &[
            "link",
            "set",
            host,
            "alias",
            &alias(link.network, link.endpoint),
        ],
    )?;
    let netns = link.netns.display().to_string();
    run("ip", &["link", "set", peer, "netns", &netns])?;
    ip_in(link.netns, &["link", "set", peer, "name", link.ifname])?;
    ip_in(
        link.netns,
        &["link", "set", link.ifname, "address", link.mac],
    )?;
    let cidr = format!("{}/{}", link.address, link.prefix_len);
    ip_in(link.netns, &["addr", "add", &cidr, "dev", link.ifname])?;
    ip_in(link.netns, &["link", "set", link.ifname, "up"])?;
    ip_in(link.netns, &["link", "set", "lo", "up"])?;
    if let Some(gw) = link.gateway {
        // Like Docker: the gateway is the default route, unless the namespace has one already.
        let _ = ip_in(
            link.netns,
            &[
                "route",
                "add",
                "default",
                "via",
                &gw.to_string(),
                "dev",
                link.ifname,
            ],
        );
    }
    run("ip", &["link", "set", host, "up"])?;
    Ok(())
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
    let host = host_ifname(network, endpoint);
    let peer = format!("{host}p");
    let mtu = mtu.to_string();
    // A leftover from a crash between create and delete: start clean.
    delete_link(&host)?;
    run(
        "ip",
        &[
            "link", "add", &host, "mtu", &mtu, "type", "veth", "peer", "name", &peer, "mtu", &mtu,
            "address", mac,
        ],
    )?;
    let result = run(
        "ip",
        &["link", "set", &host, "alias", &alias(network, endpoint)],
    )
    .and_then(|_| run("ip", &["link", "set", &host, "up"]));
    if let Err(e) = result {
        let _ = delete_link(&host);
        return Err(e);
    }
    Ok((host, peer))
}

/// Deletes a link (its veth peer goes with it). Deleting a missing link is not an error.
pub fn delete_link(name: &str) -> Result<(), NetlinkError> {
    match run("ip", &["link", "del", name]) {
        Ok(_) => Ok(()),
        Err(NetlinkError::Failed { stderr, .. }) if stderr.contains("Cannot find device") => Ok(()),
        Err(e) => Err(e),
    }
}

/// ifindex of a link in the current namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// What netd needs to know about a link, read with `ip -j` (not /sys, which belongs to the
/// namespace it was mounted in: a daemon started with `nsenter --net` still sees the root one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub mtu: u16,
    pub mac: [u8; 6],
    pub promisc: bool,
}

pub fn link_info(name: &str) -> Result<LinkInfo, NetlinkError> {
    let out = run("ip", &["-j", "link", "show", "dev", name])?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|_| NetlinkError::Parse(format!("ip -j link show {name}")))?;
    let link = &v[0];
    let mtu = link["mtu"].as_u64().and_then(|m| u16::try_from(m).ok());
    let mac = link["address"].as_str().and_then(|a| {
        let mut mac = [0u8; 6];
        let parts: Vec<&str> = a.split(':').collect();
        (parts.len() == 6).then_some(())?;
        for (b, p) in mac.iter_mut().zip(parts) {
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        Some(mac)
    });
    let promisc = link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("PROMISC")));
    match (mtu, mac) {
        (Some(mtu), Some(mac)) => Ok(LinkInfo { mtu, mac, promisc }),
        _ => Err(NetlinkError::Parse(format!(
            "ip -j link show {name}: {out}"
        ))),
    }
}

/// MTU of a link.
pub fn mtu(name: &str) -> Result<u16, NetlinkError> {
    link_info(name).map(|l| l.mtu)
}

/// Turns promiscuous mode on or off.
pub fn set_promisc(name: &str, on: bool) -> Result<(), NetlinkError> {
    run(
        "ip",
        &[
            "link",
            "set",
            "dev",
            name,
            "promisc",
            if on { "on" } else { "off" },
        ],
    )
    .map(|_| ())
}

/// The interface the kernel routes `to` through (`ip route get`).
pub fn route_dev(to: Ipv4Addr) -> Result<String, NetlinkError> {
    let out = run("ip", &["-o", "route", "get", &to.to_string()])?;
    out.split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| NetlinkError::Parse(format!("ip route get {to}: {out}")))
}

/// The endpoints of this host, found by their aliases: (network, endpoint) -> host ifname.
pub fn local_endpoints() -> Result<HashMap<(String, String), String>, NetlinkError> {
    let out = run("ip", &["-o", "link", "show"])?;
    let mut found = HashMap::new();
    // Lines look like: `7: nd1a2b3c4d@if6: <...> ... \    alias netd:net/ep`
    for line in out.lines() {
        let Some((_, rest)) = line.split_once(": ") else {
            continue;
        };
        let name = rest.split([':', '@']).next().unwrap_or_default();
        if let Some(alias) = line.split("alias netd:").nth(1)
            && let Some((network, endpoint)) = alias.trim().split_once('/')
        {
            found.insert(
                (network.to_string(), endpoint.to_string()),
                name.to_string(),
            );
        }
    }
    Ok(found)
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
