//! TC ingress on the underlay uplink: VXLAN for this host's VTEP is validated, decapsulated and
//! delivered into the container. Every other packet passes untouched; every refused VXLAN packet
//! is dropped and counted by reason.

use aya_ebpf::{
    bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, macros::classifier, programs::TcContext,
};
use netd_common::{
    maps::{FdbKey, VtepKey, fdb_kind},
    monitor::hook,
    packet::{
        self, ENCAP_HLEN, ENCAP_ROOM, ETH_HLEN, ETH_P_IP, IPPROTO_UDP, IPV4_HLEN, UDP_HLEN,
        VXLAN_HLEN,
    },
    stats,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};

use crate::{
    deliver,
    maps::{FDB, VTEPS, config, count},
    room,
    skb::ptr_at,
    verdict::{DropReason, Outcome, Verdict, tc_action},
};

/// Offsets inside an outer frame (IPv4 without options).
const UDP_OFF: usize = ETH_HLEN + IPV4_HLEN;
const VXLAN_OFF: usize = UDP_OFF + UDP_HLEN;
const INNER_ETH_OFF: usize = ETH_HLEN + ENCAP_HLEN;
const INNER_IP_OFF: usize = INNER_ETH_OFF + ETH_HLEN;
/// "More fragments", of the 3 flag bits `Ipv4Hdr::frag_flags` returns.
const IP_MF: u8 = 0b001;

#[classifier]
pub fn netd_from_uplink(ctx: TcContext) -> i32 {
    count(stats::RX);
    let outcome = from_uplink(&ctx);
    if let Ok(Verdict::Pass) = outcome {
        // "Not mine": the next TC program on the hook (a macvlan parent hook, another tool's)
        // decides, or the stack gets the packet when there is none.
        count(stats::PASS);
    }
    tc_action(&ctx, hook::UPLINK, outcome)
}

fn from_uplink(ctx: &TcContext) -> Outcome {
    // Is it VXLAN to this host's VTEP? Anything that is not, or cannot be told, passes.
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Ok(Verdict::Pass);
    };
    // SAFETY: bounds-checked by ptr_at.
    if u16::from_be(unsafe { &*eth }.ether_type) != ETH_P_IP {
        return Ok(Verdict::Pass);
    }
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return Ok(Verdict::Pass);
    };
    // SAFETY: bounds-checked by ptr_at.
    let ip = unsafe { &*ip };
    // IPv4 options are never sent by a VTEP; the stack may deal with such packets.
    if ip.vihl != 0x45 || ip.proto != IPPROTO_UDP {
        return Ok(Verdict::Pass);
    }
    let Some(config) = config() else {
        return Ok(Verdict::Pass);
    };
    if ip.dst_addr != config.local_vtep {
        return Ok(Verdict::Pass);
    }
    // A later fragment has no UDP header: nothing says it is VXLAN.
    if ip.frag_offset() != 0 {
        return Ok(Verdict::Pass);
    }
    let Some(udp) = ptr_at::<UdpHdr>(ctx, UDP_OFF) else {
        return Ok(Verdict::Pass);
    };
    // SAFETY: bounds-checked by ptr_at.
    let udp = unsafe { &*udp };
    if udp.dst_port() != config.vxlan_port {
        return Ok(Verdict::Pass);
    }

    // VXLAN to our VTEP from here on: refuse with a reason, or deliver.
    if ip.frag_flags() & IP_MF != 0 {
        return Err(DropReason(stats::DROP_FRAGMENT));
    }
    let ip_len = u32::from(ip.tot_len());
    if ip_len + ETH_HLEN as u32 > ctx.len() {
        return Err(DropReason(stats::DROP_TRUNCATED));
    }
    let udp_len = u32::from(udp.len());
    if udp_len != ip_len - IPV4_HLEN as u32 || udp_len < (UDP_HLEN + VXLAN_HLEN + ETH_HLEN) as u32 {
        return Err(DropReason(stats::DROP_BAD_UDP_LENGTH));
    }
    let vxlan = ptr_at::<[u8; VXLAN_HLEN]>(ctx, VXLAN_OFF).ok_or(stats::DROP_TRUNCATED)?;
    // SAFETY: bounds-checked by ptr_at.
    let vni = packet::parse_vxlan_header(unsafe { &*vxlan })?;
    let vtep = VtepKey {
        vtep: ip.src_addr,
        vni,
    };
    if VTEPS.get_ptr(vtep).is_none() {
        return Err(DropReason(stats::DROP_UNKNOWN_VTEP));
    }
    let inner = ptr_at::<[u8; ETH_HLEN]>(ctx, INNER_ETH_OFF).ok_or(stats::DROP_TRUNCATED)?;
    // SAFETY: bounds-checked by ptr_at; copied because adjust_room invalidates the pointer.
    let inner_eth = unsafe { *inner };
    let mut inner_dst = [0u8; 6];
    inner_dst.copy_from_slice(&inner_eth[0..6]);
    if !packet::is_unicast_mac(&inner_dst) {
        return Err(DropReason(stats::DROP_INNER_BROADCAST));
    }
    // skb->protocol stays IPv4 through the redirect: a non-IPv4 inner frame would be misparsed.
    if packet::ethertype(&inner_eth) != ETH_P_IP {
        return Err(DropReason(stats::DROP_INNER_NOT_IPV4));
    }
    // The container's stack would drop a broken inner packet anyway; refusing it here keeps the
    // promise that nothing malformed is ever redirected, and counts it.
    let inner_ip = ptr_at::<Ipv4Hdr>(ctx, INNER_IP_OFF).ok_or(stats::DROP_INNER_BAD_IPV4)?;
    // SAFETY: bounds-checked by ptr_at.
    let inner_ip = unsafe { &*inner_ip };
    if inner_ip.version() != 4
        || usize::from(inner_ip.ihl()) < IPV4_HLEN
        || u32::from(inner_ip.tot_len()) + INNER_IP_OFF as u32 > ctx.len()
    {
        return Err(DropReason(stats::DROP_INNER_BAD_IPV4));
    }
    // SAFETY: copied out at once.
    let dst = *unsafe { FDB.get(FdbKey::new(vni, inner_dst)) }.ok_or(stats::DROP_NOT_LOCAL)?;
    if dst.kind != fdb_kind::LOCAL {
        return Err(DropReason(stats::DROP_NOT_LOCAL));
    }

    // MAC mode removes the 50 bytes after the outer Ethernet header (outer IPv4, UDP, VXLAN and
    // the inner Ethernet header); the inner Ethernet header is then written over the outer one.
    let shrink = -(ENCAP_ROOM as i32);
    ctx.adjust_room(shrink, BPF_ADJ_ROOM_MAC, room::decap_flags(config))
        .map_err(|_| stats::DROP_DECAP_FAILED)?;
    let eth = ptr_at::<[u8; ETH_HLEN]>(ctx, 0).ok_or(stats::DROP_DECAP_FAILED)?;
    // SAFETY: bounds-checked by ptr_at after adjust_room.
    unsafe { *eth = inner_eth };
    count(stats::DECAP);
    Ok(deliver::to_endpoint(ctx, config, dst.ifindex))
}
