//! TC ingress on a container's host-side veth: everything the container sends.
//!
//! Anti-spoofing first (source MAC, no VLAN tag, then source IPv4 or ARP sender), then ARP is
//! answered from the neighbour map, IPv4 unicast goes to a local endpoint or is encapsulated to the
//! remote endpoint's VTEP. Everything else is dropped and counted by reason.

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_OUTPUT, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
        bpf_fib_lookup,
    },
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_ktime_get_ns},
    macros::classifier,
    programs::TcContext,
};
use netd_common::{
    maps::{
        DatapathConfig, EndpointInfo, FdbKey, NEXTHOP_TTL_NS, NeighKey, NextHop, endpoint_flags,
        fdb_kind,
    },
    monitor::hook,
    packet::{
        self, ARP_FRAME_LEN, ENCAP_HLEN, ENCAP_ROOM, ETH_HLEN, ETH_P_ARP, ETH_P_IP, IPPROTO_TCP,
        IPPROTO_UDP, IPV4_HLEN, OuterParams,
    },
    stats::Counter,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};

use crate::{
    deliver,
    maps::{ENDPOINTS, FDB, NEIGH, NEXTHOPS, config, count},
    redirect, room,
    sender::{checked_ipv4, untagged},
    skb::{ifindex, is_gso, ptr_at},
    verdict::{DropReason, Outcome, tc_action},
};

const AF_INET: u8 = 2;

#[classifier]
pub fn netd_from_endpoint(ctx: TcContext) -> i32 {
    count(Counter::Rx);
    tc_action(&ctx, hook::ENDPOINT, from_endpoint(&ctx))
}

fn from_endpoint(ctx: &TcContext) -> Outcome {
    let ifindex = ifindex(ctx);
    // SAFETY: the value is copied out before any other map operation.
    let endpoint = *unsafe { ENDPOINTS.get(ifindex) }.ok_or(DropReason::UnknownEndpoint)?;
    // Read once here for every path below (one array lookup per packet).
    let config = config().ok_or(DropReason::NoConfig)?;
    // All it sends, also what is dropped below.
    crate::traffic::sent(config, ifindex, ctx.len());
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(DropReason::Truncated)?;
    // SAFETY: bounds-checked by ptr_at.
    let eth = unsafe { &*eth };
    if eth.src_addr != endpoint.mac {
        return Err(DropReason::SpoofedMac);
    }
    let ethertype = u16::from_be(eth.ether_type);
    untagged(ctx, ethertype)?;
    if endpoint.flags & endpoint_flags::MACVLAN != 0 {
        return crate::macvlan::from_endpoint(ctx, &endpoint, ifindex, ethertype, eth.dst_addr);
    }
    match ethertype {
        ETH_P_IP => forward_ipv4(ctx, config, &endpoint, ifindex, eth.dst_addr),
        ETH_P_ARP => answer_arp(ctx, &endpoint, ifindex),
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

/// Answers an ARP request with the target endpoint's real MAC, sent straight back to the
/// container: nothing is flooded, and no ARP ever crosses the underlay.
fn answer_arp(ctx: &TcContext, endpoint: &EndpointInfo, ifindex: u32) -> Outcome {
    let frame = ptr_at::<[u8; ARP_FRAME_LEN]>(ctx, 0).ok_or(DropReason::Truncated)?;
    // SAFETY: bounds-checked by ptr_at; nothing else aliases the packet while we hold it.
    let frame = unsafe { &mut *frame };
    let request = packet::parse_arp_request(frame, &endpoint.mac, &endpoint.ipv4)?;
    let key = NeighKey {
        vni: endpoint.vni,
        ipv4: request.target_ip,
    };
    // SAFETY: copied out at once.
    let target = *unsafe { NEIGH.get(key) }.ok_or(DropReason::ArpUnknownTarget)?;
    packet::write_arp_reply(frame, &target.mac);
    count(Counter::ArpReply);
    count(Counter::Tx);
    // Out of the host-side veth: the container receives the reply.
    Ok(redirect::out_of(ifindex))
}

fn forward_ipv4(
    ctx: &TcContext,
    config: &DatapathConfig,
    endpoint: &EndpointInfo,
    ifindex: u32,
    dst_mac: [u8; 6],
) -> Outcome {
    let ip = checked_ipv4(ctx, endpoint)?;
    if !packet::is_unicast_mac(&dst_mac) {
        return Err(DropReason::Broadcast);
    }
    refuse_vxlan(ctx, ip, config.vxlan_port)?;
    // SAFETY: copied out at once.
    let mut dst = *unsafe { FDB.get(FdbKey::new(endpoint.vni, dst_mac)) }
        .ok_or(DropReason::UnknownDestination)?;
    let ip = if dst.kind == fdb_kind::GATEWAY {
        // `ip` is not used again on this path: the gateway rewrites the frame.
        match crate::gateway::from_endpoint(ctx, endpoint, ifindex, dst_mac)? {
            crate::gateway::Next::Done(verdict) => return Ok(verdict),
            crate::gateway::Next::Deliver(target) => dst = target,
        }
        checked_ipv4(ctx, endpoint)?
    } else {
        ip
    };
    match dst.kind {
        fdb_kind::LOCAL => {
            count(Counter::Local);
            Ok(deliver::to_endpoint(ctx, config, dst.ifindex))
        }
        fdb_kind::REMOTE => {
            let flow_hash = flow_hash(ctx, ip);
            encapsulate(ctx, config, endpoint.vni, dst.vtep, ip.tos, flow_hash)
        }
        _ => Err(DropReason::UnknownDestination),
    }
}

/// Containers may not send VXLAN (UDP to the VXLAN port): netd's tunnels carry only what netd
/// encapsulated. Only a datagram's first fragment holds its UDP header; a later fragment's first
/// bytes are payload (1-7 of them in the last fragment of some sizes, or any 2 bytes where a
/// port would be), and the receiver's reassembly puts them behind the header checked here.
#[inline(always)]
fn refuse_vxlan(ctx: &TcContext, ip: &Ipv4Hdr, vxlan_port: u16) -> Result<(), DropReason> {
    if ip.proto != IPPROTO_UDP || ip.frag_offset() != 0 {
        return Ok(());
    }
    if udp_dst_port(ctx, ip.vihl)? == vxlan_port {
        return Err(DropReason::VxlanFromEndpoint);
    }
    Ok(())
}

/// Destination port of a UDP packet (host order).
#[inline(always)]
fn udp_dst_port(ctx: &TcContext, vihl: u8) -> Result<u16, DropReason> {
    let header_len = usize::from(vihl & 0x0f) * 4;
    if header_len == IPV4_HLEN {
        let udp = ptr_at::<UdpHdr>(ctx, ETH_HLEN + IPV4_HLEN).ok_or(DropReason::Truncated)?;
        // SAFETY: bounds-checked by ptr_at.
        return Ok(unsafe { &*udp }.dst_port());
    }
    // IPv4 options: a variable offset, read through the helper (rare).
    let port: [u8; 2] = ctx
        .load(ETH_HLEN + header_len + 2)
        .map_err(|_| DropReason::Truncated)?;
    Ok(u16::from_be_bytes(port))
}

/// The hash that picks a flow's outer UDP source port: the kernel's if the sending socket set one
/// (TCP does, and changes it to move a flow off a failing path), else [`packet::flow_hash`] of
/// the inner headers. `bpf_get_hash_recalc` would run the whole flow dissector for every such
/// packet.
#[inline(always)]
fn flow_hash(ctx: &TcContext, ip: &Ipv4Hdr) -> u32 {
    // SAFETY: reading a field of the context the kernel passed in.
    let hash = unsafe { (*ctx.skb.skb).hash };
    if hash != 0 {
        return hash;
    }
    let first_fragment = ip.frag_offset() == 0;
    let ports = if ip.vihl == 0x45
        && first_fragment
        && (ip.proto == IPPROTO_TCP || ip.proto == IPPROTO_UDP)
    {
        // SAFETY: bounds-checked by ptr_at.
        ptr_at::<[u8; 4]>(ctx, ETH_HLEN + IPV4_HLEN)
            .map_or(0, |p| u32::from_ne_bytes(unsafe { *p }))
    } else {
        0
    };
    packet::flow_hash(ip.src_addr, ip.dst_addr, ip.proto, ports)
}

/// Wraps the frame in outer Ethernet/IPv4/UDP/VXLAN and sends it out of the uplink.
fn encapsulate(
    ctx: &TcContext,
    config: &DatapathConfig,
    vni: u32,
    vtep: [u8; 4],
    tos: u8,
    flow_hash: u32,
) -> Outcome {
    let inner_len = ctx.len();
    if !is_gso(ctx) && inner_len + ENCAP_HLEN as u32 > u32::from(config.underlay_mtu) {
        return Err(DropReason::Oversize);
    }
    let inner_eth = *unsafe { &*ptr_at::<[u8; ETH_HLEN]>(ctx, 0).ok_or(DropReason::Truncated)? };

    // MAC mode inserts the room right after the Ethernet header: [eth][room 50][inner IPv4...].
    ctx.adjust_room(
        ENCAP_ROOM as i32,
        BPF_ADJ_ROOM_MAC,
        room::encap_flags(config),
    )
    .map_err(|_| DropReason::EncapFailed)?;

    let outer = ptr_at::<[u8; ENCAP_HLEN]>(ctx, ETH_HLEN).ok_or(DropReason::EncapFailed)?;
    let inner =
        ptr_at::<[u8; ETH_HLEN]>(ctx, ETH_HLEN + ENCAP_HLEN).ok_or(DropReason::EncapFailed)?;
    let params = OuterParams {
        src_vtep: config.local_vtep,
        dst_vtep: vtep,
        src_port: packet::udp_src_port(flow_hash),
        dst_port: config.vxlan_port,
        vni,
        tos,
        inner_len: inner_len as u16,
    };
    // SAFETY: both bounds-checked by ptr_at after adjust_room; they do not overlap.
    unsafe {
        packet::write_outer_headers(&mut *outer, &params);
        *inner = inner_eth;
    }
    send_to_vtep(ctx, config, vtep)
}

/// Fills the outer Ethernet header and redirects to the underlay device.
///
/// The header comes from `NETD_NEXTHOPS` while its entry is fresh, otherwise from the kernel's
/// FIB and neighbour tables (which then refill the entry).
fn send_to_vtep(ctx: &TcContext, config: &DatapathConfig, vtep: [u8; 4]) -> Outcome {
    let eth = ptr_at::<[u8; ETH_HLEN]>(ctx, 0).ok_or(DropReason::EncapFailed)?;
    // SAFETY: bounds-checked by ptr_at.
    let eth = unsafe { &mut *eth };
    eth[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    // SAFETY: helper with no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: copied out at once.
    let verdict = match unsafe { NEXTHOPS.get(vtep) }.copied() {
        Some(hop) if hop.expires_ns > now => {
            eth[0..6].copy_from_slice(&hop.dst_mac);
            eth[6..12].copy_from_slice(&hop.src_mac);
            redirect::out_of(hop.ifindex)
        }
        _ => {
            count(Counter::EncapFibLookup);
            redirect_via_fib(ctx, config, vtep, eth, now)?
        }
    };
    count(Counter::Encap);
    count(Counter::Tx);
    Ok(verdict)
}

/// Asks the kernel's FIB for the next hop toward `vtep`, fills the outer MACs and caches them.
///
/// `bpf_fib_lookup` answers only where forwarding is enabled on the uplink (as on every Docker
/// host); it then gives both MACs and the packet leaves at once. Where forwarding is off, or the
/// next hop is not resolved yet, `bpf_redirect_neigh` (Linux >= 5.10) does the route and
/// neighbour work in the kernel, queueing the packet while ARP resolves instead of dropping the
/// first packets toward every new VTEP; nothing is cached then, so the next packet asks again.
#[inline(always)]
fn redirect_via_fib(
    ctx: &TcContext,
    config: &DatapathConfig,
    vtep: [u8; 4],
    eth: &mut [u8; ETH_HLEN],
    now: u64,
) -> Outcome {
    // SAFETY: an all-zero bpf_fib_lookup is a valid request to fill in.
    let mut fib: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = IPPROTO_UDP;
    fib.ifindex = config.uplink_ifindex;
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(config.local_vtep);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(vtep);
    // SAFETY: valid context and a stack struct of the size we pass.
    let rc = unsafe {
        fib_lookup(
            ctx.skb.skb.cast(),
            &mut fib,
            size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    } as u32;
    let verdict = match rc {
        BPF_FIB_LKUP_RET_SUCCESS => {
            let hop = NextHop {
                dst_mac: fib.dmac,
                src_mac: fib.smac,
                ifindex: fib.ifindex,
                expires_ns: now + NEXTHOP_TTL_NS,
            };
            // A full LRU map evicts its oldest entry; a failure only means no cache this time.
            let _ = NEXTHOPS.insert(vtep, hop, 0);
            eth[0..6].copy_from_slice(&hop.dst_mac);
            eth[6..12].copy_from_slice(&hop.src_mac);
            redirect::out_of(hop.ifindex)
        }
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            // The FIB wrote the gateway (or the VTEP itself when on-link) into ipv4_dst.
            // SAFETY: reading the IPv4 member of a union the kernel filled for AF_INET.
            let next_hop = unsafe { fib.__bindgen_anon_4.ipv4_dst };
            count(Counter::EncapViaNeigh);
            redirect::via_neighbour(fib.ifindex, next_hop)
        }
        BPF_FIB_LKUP_RET_FWD_DISABLED => {
            count(Counter::EncapViaNeigh);
            // No next hop known: the helper looks the route up itself.
            redirect::via_route(config.uplink_ifindex)
        }
        BPF_FIB_LKUP_RET_FRAG_NEEDED => return Err(DropReason::Oversize),
        _ => return Err(DropReason::NoRoute),
    };
    Ok(verdict)
}
