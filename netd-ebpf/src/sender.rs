//! What an endpoint may send: checks shared by the overlay walk (`from_endpoint.rs`) and the
//! macvlan walk (`macvlan.rs`), so that neither imports the other.

use aya_ebpf::programs::TcContext;
use netd_common::{
    maps::EndpointInfo,
    packet::{ETH_HLEN, IPV4_HLEN},
};
use network_types::ip::Ipv4Hdr;

use crate::{skb::ptr_at, verdict::DropReason};

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
