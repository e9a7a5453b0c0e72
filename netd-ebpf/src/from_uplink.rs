//! TC ingress on the underlay uplink: VXLAN for this host's VTEP is validated, decapsulated and
//! delivered into the container. Every other packet passes untouched; every refused VXLAN packet
//! is dropped and counted by reason.

use aya_ebpf::{
    bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, macros::classifier, programs::TcContext,
};
use netd_common::{
    maps::{VtepKey, config_flags},
    monitor::hook,
    packet::{
        self, ENCAP_HLEN, ENCAP_ROOM, ETH_HLEN, ETH_P_IP, IPPROTO_UDP, IPV4_HLEN, UDP_HLEN,
        VXLAN_HLEN,
    },
    stats::Counter,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};

use crate::{
    deliver, inner,
    maps::{VTEPS, config, count},
    room, skb,
    skb::ptr_at,
    verdict::{DropReason, Outcome, Verdict, tc_action},
};

/// Offsets inside an outer frame (IPv4 without options).
const UDP_OFF: usize = ETH_HLEN + IPV4_HLEN;
const VXLAN_OFF: usize = UDP_OFF + UDP_HLEN;
const INNER_ETH_OFF: usize = ETH_HLEN + ENCAP_HLEN;
/// "More fragments", of the 3 flag bits `Ipv4Hdr::frag_flags` returns.
const IP_MF: u8 = 0b001;

#[classifier]
pub fn netd_from_uplink(ctx: TcContext) -> i32 {
    count(Counter::Rx);
    let outcome = from_uplink(&ctx);
    if let Ok(Verdict::Pass) = outcome {
        // "Not mine": the next TC program on the hook (a macvlan parent hook, another tool's)
        // decides, or the stack gets the packet when there is none.
        count(Counter::Pass);
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
        return Err(DropReason::Fragment);
    }
    let ip_len = u32::from(ip.tot_len());
    if ip_len + ETH_HLEN as u32 > ctx.len() {
        return Err(DropReason::Truncated);
    }
    let udp_len = u32::from(udp.len());
    if udp_len != ip_len - IPV4_HLEN as u32 || udp_len < (UDP_HLEN + VXLAN_HLEN + ETH_HLEN) as u32 {
        return Err(DropReason::BadUdpLength);
    }
    let vxlan = ptr_at::<[u8; VXLAN_HLEN]>(ctx, VXLAN_OFF).ok_or(DropReason::Truncated)?;
    // SAFETY: bounds-checked by ptr_at.
    let vni = packet::parse_vxlan_header(unsafe { &*vxlan })?;
    let vtep = VtepKey {
        vtep: ip.src_addr,
        vni,
    };
    if VTEPS.get_ptr(vtep).is_none() {
        return Err(DropReason::UnknownVtep);
    }
    let frame = inner::checked(ctx, INNER_ETH_OFF, vni, ip.src_addr)?;
    if config.flags & config_flags::GRO_DEVICE != 0 && skb::is_gro_aggregate(ctx) {
        // One skb of many VXLAN packets, merged by the GRO of the vxlan device's socket.
        // Decapsulated here it would keep the tunnel's GSO type and `skb->encapsulation`: only
        // bpf_skb_adjust_room's DECAP_L4_UDP (bpf-next, 2026; in no kernel netd runs on) clears
        // them, and a container that forwards it would have it segmented wrongly. The kernel's
        // device clears both; every check above has been made, and from-tunnel delivers it
        // (docs/architecture.md). A local sender's GSO packet (veth underlay) stays here: via the
        // device it cost a fifth of the TCP stream (`cargo xtask bench`, netd-tc-decap).
        // The mark tells from-tunnel that this one was checked here: the device's socket also
        // takes VXLAN from other interfaces, which nothing checked.
        ctx.set_mark(packet::MARK_UPLINK_CHECKED);
        count(Counter::GroToKernel);
        return Ok(Verdict::Stack);
    }
    // MAC mode removes the 50 bytes after the outer Ethernet header (outer IPv4, UDP, VXLAN and
    // the inner Ethernet header); the inner Ethernet header is then written over the outer one.
    let shrink = -(ENCAP_ROOM as i32);
    ctx.adjust_room(shrink, BPF_ADJ_ROOM_MAC, room::decap_flags(config))
        .map_err(|_| DropReason::DecapFailed)?;
    let eth = ptr_at::<[u8; ETH_HLEN]>(ctx, 0).ok_or(DropReason::DecapFailed)?;
    // SAFETY: bounds-checked by ptr_at after adjust_room.
    unsafe { *eth = frame.eth };
    count(Counter::Decap);
    Ok(deliver::to_endpoint(ctx, config, frame.endpoint.ifindex))
}
