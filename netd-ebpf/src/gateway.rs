//! Frames a container sends to its network's gateway (the gateway address's MAC, which the ARP
//! responder gives out): the gateway address answers ICMP echo, as the gateway of Docker's
//! overlay does; an address of another subnet of the network is routed (the gateway's MAC
//! becomes the source, the destination endpoint's the destination, the TTL drops by one) and
//! then delivered like any frame of the network. Nothing else goes through: the way out of a
//! network is Docker's gateway bridge, not netd's gateway.

use aya_ebpf::programs::TcContext;
use netd_common::{
    maps::{EndpointInfo, FdbEntry, FdbKey, NeighKey, fdb_kind},
    packet::{self, ETH_HLEN, ICMP_ECHO_REQUEST, IPPROTO_ICMP, IPV4_HLEN},
    stats::Counter,
};

use crate::{
    maps::{FDB, NEIGH, count},
    redirect,
    skb::ptr_at,
    verdict::{DropReason, Outcome, Verdict},
};

/// Where a frame to the gateway goes once handled here.
pub enum Next {
    /// Already answered (an echo reply back to the sender).
    Done(Verdict),
    /// Routed: deliver like a frame to this endpoint of the network.
    Deliver(FdbEntry),
}

/// Handles a frame from `endpoint` (on host-side veth `ifindex`) to the gateway MAC `gw_mac`.
pub fn from_endpoint(
    ctx: &TcContext,
    endpoint: &EndpointInfo,
    ifindex: u32,
    gw_mac: [u8; 6],
) -> Result<Next, DropReason> {
    let ip = ptr_at::<[u8; IPV4_HLEN]>(ctx, ETH_HLEN).ok_or(DropReason::Truncated)?;
    // SAFETY: bounds-checked by ptr_at; no other reference into the packet is held.
    let ip = unsafe { &mut *ip };
    let dst = [ip[16], ip[17], ip[18], ip[19]];
    let key = NeighKey {
        vni: endpoint.vni,
        ipv4: dst,
    };
    // SAFETY: copied out at once.
    let neigh = *unsafe { NEIGH.get(key) }.ok_or(DropReason::GatewayNoRoute)?;
    if neigh.mac == gw_mac {
        return echo_reply(ctx, endpoint, ifindex, gw_mac).map(Next::Done);
    }
    // SAFETY: copied out at once.
    let target = *unsafe { FDB.get(FdbKey::new(endpoint.vni, neigh.mac)) }
        .ok_or(DropReason::GatewayNoRoute)?;
    if target.kind == fdb_kind::GATEWAY {
        // Another gateway of the network is an address of it, not a way through.
        return Err(DropReason::GatewayNoRoute);
    }
    if !packet::decrement_ttl(ip) {
        return Err(DropReason::TtlExceeded);
    }
    let eth = ptr_at::<[u8; ETH_HLEN]>(ctx, 0).ok_or(DropReason::Truncated)?;
    // SAFETY: bounds-checked by ptr_at; `ip` is not used past this point.
    let eth = unsafe { &mut *eth };
    eth[0..6].copy_from_slice(&neigh.mac);
    eth[6..12].copy_from_slice(&gw_mac);
    count(Counter::Routed);
    Ok(Next::Deliver(target))
}

/// Answers an ICMP echo request to the gateway address, straight back to the sender.
fn echo_reply(ctx: &TcContext, endpoint: &EndpointInfo, ifindex: u32, gw_mac: [u8; 6]) -> Outcome {
    let ip = ptr_at::<[u8; IPV4_HLEN]>(ctx, ETH_HLEN).ok_or(DropReason::Truncated)?;
    // SAFETY: bounds-checked by ptr_at.
    let ip = unsafe { &mut *ip };
    let unfragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff == 0;
    // Options or fragments: not worth answering, nothing else listens there.
    if ip[0] != 0x45 || ip[9] != IPPROTO_ICMP || !unfragmented {
        return Err(DropReason::ToGateway);
    }
    let icmp = ptr_at::<[u8; 4]>(ctx, ETH_HLEN + IPV4_HLEN).ok_or(DropReason::Truncated)?;
    // SAFETY: bounds-checked by ptr_at; it does not overlap the IPv4 header.
    let icmp = unsafe { &mut *icmp };
    if icmp[0] != ICMP_ECHO_REQUEST {
        return Err(DropReason::ToGateway);
    }
    packet::echo_request_to_reply(icmp);
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let dst = [ip[16], ip[17], ip[18], ip[19]];
    // Swapping the addresses leaves the header's checksum as it is (a sum does not care).
    ip[12..16].copy_from_slice(&dst);
    ip[16..20].copy_from_slice(&src);
    let eth = ptr_at::<[u8; ETH_HLEN]>(ctx, 0).ok_or(DropReason::Truncated)?;
    // SAFETY: bounds-checked by ptr_at; `ip` and `icmp` are not used past this point.
    let eth = unsafe { &mut *eth };
    eth[0..6].copy_from_slice(&endpoint.mac);
    eth[6..12].copy_from_slice(&gw_mac);
    count(Counter::GatewayReply);
    count(Counter::Tx);
    // Out of the host-side veth: the container receives the reply (as ARP replies go).
    Ok(redirect::out_of(ifindex))
}
