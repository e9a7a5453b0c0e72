//! TC egress on the underlay uplink: VXLAN from this host's VTEP address leaves only if netd
//! encapsulated it.
//!
//! Peers decapsulate what comes from a registered VTEP, so a datagram to the VXLAN port with
//! this host's VTEP as its source speaks for this host. A container needs no capability to send
//! one: its UDP to a peer's VTEP leaves through Docker's gateway bridge, and the masquerade in
//! the host's POSTROUTING gives it the uplink's address, the VTEP, before this hook sees it. What
//! netd encapsulated was redirected here from TC ingress of an endpoint's veth, so the
//! interface it was received on (`__sk_buff.ingress_ifindex`, which a redirect keeps) is a
//! local endpoint's; a forwarded packet's is the bridge it came through, a host socket's 0.
//! Everything else passes untouched.

use aya_ebpf::{macros::classifier, programs::TcContext};
use netd_common::{
    monitor::hook,
    packet::{ETH_HLEN, ETH_P_IP, IPPROTO_UDP, IPV4_HLEN},
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};

use crate::{
    maps::{ENDPOINTS, config},
    skb::ptr_at,
    verdict::{DropReason, Outcome, Verdict, tc_action},
};

#[classifier]
pub fn netd_to_uplink(ctx: TcContext) -> i32 {
    tc_action(&ctx, hook::TO_UPLINK, to_uplink(&ctx))
}

fn to_uplink(ctx: &TcContext) -> Outcome {
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
    // Only a datagram's first fragment holds its UDP header; the later ones are useless to a
    // peer without it (from-uplink refuses fragmented VXLAN).
    if ip.proto != IPPROTO_UDP || ip.frag_offset() != 0 {
        return Ok(Verdict::Pass);
    }
    let Some(config) = config() else {
        return Ok(Verdict::Pass);
    };
    if ip.src_addr != config.local_vtep || udp_dst_port(ctx, ip.vihl) != Some(config.vxlan_port) {
        return Ok(Verdict::Pass);
    }
    // SAFETY: reading a field of the context the kernel passed in.
    let received_on = unsafe { (*ctx.skb.skb).ingress_ifindex };
    if ENDPOINTS.get_ptr(received_on).is_none() {
        return Err(DropReason::ForeignVxlan);
    }
    Ok(Verdict::Pass)
}

/// Destination port of a UDP header behind IPv4 header byte `vihl` (host order), if the packet
/// holds it. IPv4 options (which any socket may set) move it: read through the helper then.
#[inline(always)]
fn udp_dst_port(ctx: &TcContext, vihl: u8) -> Option<u16> {
    let header_len = usize::from(vihl & 0x0f) * 4;
    if header_len == IPV4_HLEN {
        let udp = ptr_at::<UdpHdr>(ctx, ETH_HLEN + IPV4_HLEN)?;
        // SAFETY: bounds-checked by ptr_at.
        return Some(unsafe { &*udp }.dst_port());
    }
    let port: [u8; 2] = ctx.load(ETH_HLEN + header_len + 2).ok()?;
    Some(u16::from_be_bytes(port))
}
