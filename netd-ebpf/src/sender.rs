//! What an endpoint may send: checks shared by the overlay walk (`from_endpoint.rs`) and the
//! macvlan walk (`macvlan.rs`), so that neither imports the other.

use aya_ebpf::programs::TcContext;
use netd_common::{
    maps::EndpointInfo,
    packet::{ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, IPV4_HLEN},
};
use network_types::ip::Ipv4Hdr;

use crate::{
    skb::{ptr_at, vlan_tagged},
    verdict::DropReason,
};

/// Refuses a VLAN-tagged frame: an endpoint's frames are untagged, and nothing below would
/// remove a tag (the kernel keeps one in the skb's metadata through an encap and a redirect, and
/// a macvlan parent's VLAN would be pushed over it). The kernel has moved a received frame's
/// first tag into the metadata before TC runs, so `ethertype` is what follows it; a second tag
/// (QinQ), or one the kernel left in place, is the frame's EtherType.
#[inline(always)]
pub fn untagged(ctx: &TcContext, ethertype: u16) -> Result<(), DropReason> {
    if vlan_tagged(ctx) || ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Err(DropReason::VlanTagged);
    }
    Ok(())
}

/// The IPv4 header of a frame from `endpoint`, checked: well-formed, not longer than the frame,
/// and sent from the endpoint's own address (anti-spoofing).
pub fn checked_ipv4<'a>(
    ctx: &'a TcContext,
    endpoint: &EndpointInfo,
) -> Result<&'a Ipv4Hdr, DropReason> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN).ok_or(DropReason::Truncated)?;
    // SAFETY: bounds-checked by ptr_at.
    let ip = unsafe { &*ip };
    if ip.version() != 4 || usize::from(ip.ihl()) < IPV4_HLEN {
        return Err(DropReason::BadIpv4);
    }
    // A header that claims more than the frame holds. (GSO packets are whole here; BIG TCP's
    // tot_len 0 passes this check.)
    if u32::from(ip.tot_len()) + ETH_HLEN as u32 > ctx.len() {
        return Err(DropReason::Truncated);
    }
    if ip.src_addr != endpoint.ipv4 {
        return Err(DropReason::SpoofedIp);
    }
    Ok(ip)
}
