//! Address and route requests (RTM_NEWADDR, RTM_NEWROUTE, RTM_GETROUTE).

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    route::{RouteAddress, RouteAttribute, RouteMessage},
};
use rtnetlink::Handle;

use super::{NetlinkError, ask::ask};

pub(super) async fn add_address(
    handle: &Handle,
    index: u32,
    name: &str,
    address: Ipv4Addr,
    prefix_len: u8,
) -> Result<(), NetlinkError> {
    // rtnetlink derives the broadcast address with a shift that overflows (and panics in debug
    // builds) past /32; let the kernel be the one to refuse a bad prefix, with its errno.
    let mut request = handle
        .address()
        .add(index, IpAddr::V4(address), prefix_len.min(32));
    request.message_mut().header.prefix_len = prefix_len;
    request.execute().await.map_err(|e| {
        NetlinkError::from_rtnl(format!("add address {address}/{prefix_len} to {name}"), e)
    })
}

/// Adds `default via gateway dev <index>` to the main table.
pub(super) async fn add_default_route(
    handle: &Handle,
    index: u32,
    name: &str,
    gateway: Ipv4Addr,
) -> Result<(), NetlinkError> {
    handle
        .route()
        .add()
        .v4()
        .gateway(gateway)
        .output_interface(index)
        .execute()
        .await
        .map_err(|e| {
            NetlinkError::from_rtnl(format!("add a default route via {gateway} dev {name}"), e)
        })
}

/// ifindex of the interface the kernel would send a packet to `to` through: the route lookup
/// `ip route get` does (RTM_GETROUTE for one destination), not a dump of the tables, so policy
/// routing and the local table count.
pub(super) async fn output_ifindex(handle: &Handle, to: Ipv4Addr) -> Result<u32, NetlinkError> {
    let mut question = RouteMessage::default();
    question.header.address_family = AddressFamily::Inet;
    question.header.destination_prefix_length = 32;
    question
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(to)));
    let op = || format!("look up the route to {to}");
    let answers = ask(handle, RouteNetlinkMessage::GetRoute(question))
        .await
        .map_err(|e| NetlinkError::from_rtnl(op(), e))?;
    answers
        .iter()
        .filter_map(|answer| match answer {
            RouteNetlinkMessage::NewRoute(route) => Some(route),
            _ => None,
        })
        .flat_map(|route| &route.attributes)
        .find_map(|attribute| match attribute {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        })
        .ok_or_else(|| NetlinkError::protocol(op(), "the route has no output interface"))
}
