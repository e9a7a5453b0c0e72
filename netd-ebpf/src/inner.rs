//! The checks a decapsulated frame passes before it is delivered, wherever it was decapsulated:
//! in TC by from-uplink (the inner frame still behind the outer headers) or by the kernel's
//! vxlan device for from-tunnel (the inner frame at offset 0).

use aya_ebpf::programs::TcContext;
use netd_common::{
    maps::{FdbEntry, FdbKey, NeighKey, fdb_kind},
    packet::{self, ETH_HLEN, ETH_P_IP, IPV4_HLEN},
};
use network_types::ip::Ipv4Hdr;

use crate::{
    maps::{FDB, NEIGH},
    skb::ptr_at,
    verdict::DropReason,
};

/// A frame that may be delivered: its Ethernet header (copied, as decap moves the packet) and
/// the local endpoint it is for.
pub struct LocalFrame {
    pub eth: [u8; ETH_HLEN],
    pub endpoint: FdbEntry,
}

/// Checks the inner frame at `eth_off` of network `vni`, sent by VTEP `vtep` (the outer source
/// the caller has found registered for `vni`): unicast IPv4 in a well-formed header, to an
/// endpoint of this host, from an endpoint `vtep` speaks for. `eth_off` is a constant at every
/// call, so the verifier sees fixed offsets.
#[inline(always)]
pub fn checked(
    ctx: &TcContext,
    eth_off: usize,
    vni: u32,
    vtep: [u8; 4],
) -> Result<LocalFrame, DropReason> {
    let inner = ptr_at::<[u8; ETH_HLEN]>(ctx, eth_off).ok_or(DropReason::Truncated)?;
    // SAFETY: bounds-checked by ptr_at; copied because adjust_room invalidates the pointer.
    let eth = unsafe { *inner };
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&eth[0..6]);
    if !packet::is_unicast_mac(&dst_mac) {
        return Err(DropReason::InnerBroadcast);
    }
    // skb->protocol stays IPv4 through the redirect: a non-IPv4 inner frame would be misparsed.
    if packet::ethertype(&eth) != ETH_P_IP {
        return Err(DropReason::InnerNotIpv4);
    }
    // The container's stack would drop a broken inner packet anyway; refusing it here keeps the
    // promise that nothing malformed is ever redirected, and counts it.
    let ip_off = eth_off + ETH_HLEN;
    let ip = ptr_at::<Ipv4Hdr>(ctx, ip_off).ok_or(DropReason::InnerBadIpv4)?;
    // SAFETY: bounds-checked by ptr_at.
    let ip = unsafe { &*ip };
    if ip.version() != 4
        || usize::from(ip.ihl()) < IPV4_HLEN
        || u32::from(ip.tot_len()) + ip_off as u32 > ctx.len()
    {
        return Err(DropReason::InnerBadIpv4);
    }
    // SAFETY: copied out at once.
    let endpoint = *unsafe { FDB.get(FdbKey::new(vni, dst_mac)) }.ok_or(DropReason::NotLocal)?;
    if endpoint.kind != fdb_kind::LOCAL {
        return Err(DropReason::NotLocal);
    }
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&eth[6..12]);
    sent_by(vni, vtep, src_mac, ip.src_addr)?;
    Ok(LocalFrame { eth, endpoint })
}

/// Whether the inner source (`src_mac`, `src_ip`) is an endpoint of network `vni` that lives
/// behind `vtep`. A registered VTEP vouches only for its own endpoints: without this, anything
/// that gets a datagram out with its address as the source (a container's, masqueraded by its
/// host) could speak as any endpoint of any network that host serves.
///
/// Both the MAC and the address are held to it: the sending host's from-endpoint lets a
/// container send only with its own (anti-spoofing), and a frame its gateway routed carries the
/// gateway's MAC (`gateway.rs`), so there the address alone names the sender. Two lookups per
/// packet, three for a routed one.
#[inline(always)]
fn sent_by(vni: u32, vtep: [u8; 4], src_mac: [u8; 6], src_ip: [u8; 4]) -> Result<(), DropReason> {
    // SAFETY: copied out at once.
    let by_mac = *unsafe { FDB.get(FdbKey::new(vni, src_mac)) }.ok_or(DropReason::InnerSource)?;
    // SAFETY: copied out at once.
    let by_ip =
        *unsafe { NEIGH.get(NeighKey { vni, ipv4: src_ip }) }.ok_or(DropReason::InnerSource)?;
    let sender = match by_mac.kind {
        // The address must be that endpoint's own.
        fdb_kind::REMOTE if by_ip.mac == src_mac => by_mac,
        // Routed by the gateway on the sending host: the address's endpoint is the sender.
        // SAFETY: copied out at once.
        fdb_kind::GATEWAY => {
            *unsafe { FDB.get(FdbKey::new(vni, by_ip.mac)) }.ok_or(DropReason::InnerSource)?
        }
        _ => return Err(DropReason::InnerSource),
    };
    if sender.kind != fdb_kind::REMOTE || sender.vtep != vtep {
        return Err(DropReason::InnerSource);
    }
    Ok(())
}
