//! Link requests (RTM_NEWLINK, RTM_SETLINK, RTM_DELLINK, RTM_GETLINK) on one netlink socket.
//!
//! Links are addressed by name where the kernel allows it (index 0 plus IFLA_IFNAME): one round
//! trip instead of a lookup and a request, and no window in which the index could be stale.

use std::{fs::File, os::fd::AsRawFd as _, path::Path};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{
        InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlag, LinkInfo as InfoNla,
        LinkMessage,
    },
};
use rtnetlink::{Handle, LinkSetRequest};

use super::{LinkInfo, NetlinkError, ask::ask};

/// A veth pair to create; both ends stay down.
pub(super) struct Veth<'a> {
    pub host: &'a str,
    pub peer: &'a str,
    pub mtu: u16,
    pub peer_mac: Option<[u8; 6]>,
}

pub(super) async fn add_veth(handle: &Handle, veth: &Veth<'_>) -> Result<(), NetlinkError> {
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(veth.peer.into()));
    peer.attributes.push(LinkAttribute::Mtu(veth.mtu.into()));
    if let Some(mac) = veth.peer_mac {
        peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    // rtnetlink's own `veth()` builder brings the pair up at once; netd brings the host end up
    // last, once the container side is ready.
    let mut request = handle.link().add();
    let message = request.message_mut();
    message
        .attributes
        .push(LinkAttribute::IfName(veth.host.into()));
    message.attributes.push(LinkAttribute::Mtu(veth.mtu.into()));
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        InfoNla::Kind(InfoKind::Veth),
        InfoNla::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    request.execute().await.map_err(|e| {
        NetlinkError::from_rtnl(format!("create veth pair {}/{}", veth.host, veth.peer), e)
    })
}

/// A flow-based (`external`, collect_md) vxlan device on UDP `port`, without learning; it stays
/// down. The kernel takes any VNI on it and hands the tunnel's metadata to TC.
pub(super) async fn add_flow_vxlan(
    handle: &Handle,
    name: &str,
    port: u16,
) -> Result<(), NetlinkError> {
    let mut request = handle.link().add();
    let message = request.message_mut();
    message.attributes.push(LinkAttribute::IfName(name.into()));
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        InfoNla::Kind(InfoKind::Vxlan),
        InfoNla::Data(InfoData::Vxlan(flow_vxlan_data(port))),
    ]));
    request
        .execute()
        .await
        .map_err(|e| NetlinkError::from_rtnl(format!("create vxlan device {name}"), e))
}

fn flow_vxlan_data(port: u16) -> Vec<InfoVxlan> {
    vec![
        InfoVxlan::CollectMetadata(true),
        InfoVxlan::Port(port),
        InfoVxlan::Learning(false),
    ]
}

/// Whether `link` is a flow-based vxlan device on UDP `port`.
pub(super) fn is_flow_vxlan(link: &LinkMessage, port: u16) -> bool {
    let data = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(info) => info.iter().find_map(|i| match i {
            InfoNla::Data(InfoData::Vxlan(data)) => Some(data),
            _ => None,
        }),
        _ => None,
    });
    data.is_some_and(|data| {
        data.contains(&InfoVxlan::CollectMetadata(true)) && data.contains(&InfoVxlan::Port(port))
    })
}

/// An RTM_SETLINK for the link called `name`.
fn set_by_name(handle: &Handle, name: &str) -> LinkSetRequest {
    let mut request = handle.link().set(0);
    request
        .message_mut()
        .attributes
        .push(LinkAttribute::IfName(name.into()));
    request
}

async fn execute_on(
    name: &str,
    op: impl FnOnce() -> String,
    request: LinkSetRequest,
) -> Result<(), NetlinkError> {
    request
        .execute()
        .await
        .map_err(|e| NetlinkError::on_link(name, op(), e))
}

pub(super) async fn set_alias(
    handle: &Handle,
    name: &str,
    alias: &str,
) -> Result<(), NetlinkError> {
    let mut request = set_by_name(handle, name);
    request
        .message_mut()
        .attributes
        .push(LinkAttribute::IfAlias(alias.into()));
    execute_on(name, || format!("set the alias of {name}"), request).await
}

pub(super) async fn set_up(handle: &Handle, name: &str) -> Result<(), NetlinkError> {
    execute_on(
        name,
        || format!("bring {name} up"),
        set_by_name(handle, name).up(),
    )
    .await
}

pub(super) async fn set_promisc(handle: &Handle, name: &str, on: bool) -> Result<(), NetlinkError> {
    let request = set_by_name(handle, name).promiscuous(on);
    let op = || {
        format!(
            "turn promiscuous mode of {name} {}",
            if on { "on" } else { "off" }
        )
    };
    execute_on(name, op, request).await
}

/// Moves the link `name` into the namespace at `netns`, keeping its name.
pub(super) async fn move_to_netns(
    handle: &Handle,
    name: &str,
    netns: &Path,
) -> Result<(), NetlinkError> {
    let target = File::open(netns).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => NetlinkError::NoNetns(netns.display().to_string()),
        _ => NetlinkError::io(format!("open network namespace {}", netns.display()), e),
    })?;
    // `target` stays open until the kernel has answered: it holds the namespace by this fd.
    let request = set_by_name(handle, name).setns_by_fd(target.as_raw_fd());
    let op = || format!("move {name} into network namespace {}", netns.display());
    execute_on(name, op, request).await
}

/// Renames the link at `index` (now called `from`) to `to` and sets its MAC, in one request (the
/// kernel renames before it changes the address, and both while the link is still down).
pub(super) async fn rename_and_set_mac(
    handle: &Handle,
    index: u32,
    from: &str,
    to: &str,
    mac: [u8; 6],
) -> Result<(), NetlinkError> {
    let request = handle
        .link()
        .set(index)
        .name(to.into())
        .address(mac.to_vec());
    request
        .execute()
        .await
        .map_err(|e| NetlinkError::from_rtnl(format!("rename {from} to {to} and set its MAC"), e))
}

pub(super) async fn set_up_index(
    handle: &Handle,
    index: u32,
    name: &str,
) -> Result<(), NetlinkError> {
    let request = handle.link().set(index).up();
    request
        .execute()
        .await
        .map_err(|e| NetlinkError::from_rtnl(format!("bring {name} up"), e))
}

/// Deletes the link `name` (a veth takes its peer along, wherever the peer is). A missing link
/// is not an error: the wanted state is reached.
pub(super) async fn delete(handle: &Handle, name: &str) -> Result<(), NetlinkError> {
    let mut request = handle.link().del(0);
    request
        .message_mut()
        .attributes
        .push(LinkAttribute::IfName(name.into()));
    match request.execute().await {
        Ok(()) => Ok(()),
        Err(e) => match NetlinkError::on_link(name, format!("delete {name}"), e) {
            NetlinkError::NoSuchLink(_) => Ok(()),
            other => Err(other),
        },
    }
}

/// Which link a lookup is for.
#[derive(Clone, Copy)]
pub(super) enum Lookup<'a> {
    Name(&'a str),
    Index(u32),
}

/// RTM_GETLINK of one link.
pub(super) async fn get(handle: &Handle, lookup: Lookup<'_>) -> Result<LinkMessage, NetlinkError> {
    let mut message = LinkMessage::default();
    let name = match lookup {
        Lookup::Name(name) => {
            message.attributes.push(LinkAttribute::IfName(name.into()));
            name.to_string()
        }
        Lookup::Index(index) => {
            message.header.index = index;
            format!("#{index}")
        }
    };
    let op = || format!("look up link {name}");
    let answers = ask(handle, RouteNetlinkMessage::GetLink(message))
        .await
        .map_err(|e| NetlinkError::on_link(&name, op(), e))?;
    answers
        .into_iter()
        .find_map(|answer| match answer {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        })
        .ok_or_else(|| NetlinkError::protocol(op(), "no link message in the answer"))
}

/// Every link of the namespace.
pub(super) async fn dump(handle: &Handle) -> Result<Vec<LinkMessage>, NetlinkError> {
    handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| NetlinkError::from_rtnl("list links", e))
}

pub(super) fn name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// Whether a link is a Linux bridge.
pub(super) fn is_bridge(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, InfoNla::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

pub(super) fn alias(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(alias) => Some(alias.as_str()),
        _ => None,
    })
}

/// MTU, MAC and promiscuity of a link message; `None` when one of them is missing or does not
/// fit (a 65536-byte loopback MTU, a non-Ethernet address).
pub(super) fn info(link: &LinkMessage) -> Option<LinkInfo> {
    let mut mtu = None;
    let mut mac = None;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::Mtu(m) => mtu = u16::try_from(*m).ok(),
            LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            _ => {}
        }
    }
    Some(LinkInfo {
        mtu: mtu?,
        mac: mac?,
        promisc: link.header.flags.contains(&LinkFlag::Promisc),
    })
}
