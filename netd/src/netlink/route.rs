//! Address and route requests (RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE).

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use netlink_packet_route::address::AddressAttribute;
use rtnetlink::Handle;

use super::NetlinkError;

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

/// ifindex of the interface that has `address` as one of its own (IFA_LOCAL: on a
/// point-to-point link IFA_ADDRESS is the peer's), if one has.
pub(super) async fn address_holder(
    handle: &Handle,
    address: Ipv4Addr,
) -> Result<Option<u32>, NetlinkError> {
    let mut addresses = handle.address().get().execute();
    while let Some(message) = addresses
        .try_next()
        .await
        .map_err(|e| NetlinkError::from_rtnl("list addresses", e))?
    {
        let local = message.attributes.iter().any(
            |attribute| matches!(attribute, AddressAttribute::Local(ip) if *ip == IpAddr::V4(address)),
        );
        if local {
            return Ok(Some(message.header.index));
        }
    }
    Ok(None)
}

/// Every IPv4 address of this namespace: (ifindex, address, prefix length).
pub(super) async fn addresses(handle: &Handle) -> Result<Vec<(u32, Ipv4Addr, u8)>, NetlinkError> {
    let mut found = Vec::new();
    let mut addresses = handle.address().get().execute();
    while let Some(message) = addresses
        .try_next()
        .await
        .map_err(|e| NetlinkError::from_rtnl("list addresses", e))?
    {
        for attribute in &message.attributes {
            if let AddressAttribute::Local(IpAddr::V4(ip)) = attribute {
                found.push((message.header.index, *ip, message.header.prefix_len));
            }
        }
    }
    Ok(found)
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
