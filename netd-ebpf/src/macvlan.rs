//! The macvlan walk, whole: an endpoint's frames leave through a parent interface onto the LAN
//! (tagged when the network is on a VLAN), frames from the LAN and from the host are demuxed by
//! destination MAC straight into the right container, and the kernel macvlan modes decide what
//! happens between endpoints of one parent. No bridge, no macvlan device. The hooks that enter
//! it are one file each: `from_endpoint.rs` (a container's frames, once the hook has found its
//! endpoint to be a macvlan one), `from_parent.rs` (the LAN's) and `to_parent.rs` (the host's).
//!
//! At TC the kernel has already moved any VLAN tag out of a received frame into skb metadata.

use aya_ebpf::{
    helpers::generated::{bpf_skb_vlan_pop, bpf_skb_vlan_push},
    programs::TcContext,
};
use netd_common::{
    maps::{EndpointInfo, FdbKey, ParentInfo, ParentKey, endpoint_flags, fdb_kind, macvlan_mode},
    packet::{self, ARP_FRAME_LEN, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP},
    stats::Counter,
};
use network_types::eth::EthHdr;

use crate::{
    deliver,
    maps::{FDB, PARENTS, config, count},
    redirect,
    sender::checked_ipv4,
    skb::{ifindex, ptr_at, vlan_tagged},
    verdict::{DropReason, Outcome, Verdict},
};

/// A frame from a macvlan endpoint (source MAC and the absence of a VLAN tag already checked).
pub fn from_endpoint(
    ctx: &TcContext,
    endpoint: &EndpointInfo,
    ifindex: u32,
    ethertype: u16,
    dst: [u8; 6],
) -> Outcome {
    // Anti-spoofing as in overlay networks; ARP of any kind goes to the LAN (the LAN's hosts ask
    // the endpoint and it answers), but only with the endpoint's own addresses.
    match ethertype {
        ETH_P_IP => {
            checked_ipv4(ctx, endpoint)?;
        }
        ETH_P_ARP => {
            let frame = ptr_at::<[u8; ARP_FRAME_LEN]>(ctx, 0).ok_or(DropReason::Truncated)?;
            // SAFETY: bounds-checked by ptr_at.
            packet::check_arp_sender(unsafe { &*frame }, &endpoint.mac, &endpoint.ipv4)?;
        }
        _ => return Err(DropReason::UnsupportedEthertype),
    }
    let mode = (endpoint.flags >> endpoint_flags::MODE_SHIFT) & 0xff;
    let host_access = endpoint.flags & endpoint_flags::HOST_ACCESS != 0;

    if !packet::is_unicast_mac(&dst) {
        // Broadcast and multicast: the other endpoints of the parent (bridge mode; VEPA gets
        // them back from the switch), the host (host access), and the wire.
        let parent = parent_of(endpoint)?;
        if mode == macvlan_mode::BRIDGE {
            flood(ctx, &parent, ifindex);
        }
        push_vlan(ctx, endpoint.vlan)?;
        if host_access {
            redirect::copy_into(ctx, endpoint.parent_ifindex);
            count(Counter::MacvlanHost);
        }
        return Ok(to_wire(endpoint.parent_ifindex));
    }
    // SAFETY: copied out at once.
    if let Some(local) = unsafe { FDB.get(FdbKey::new(endpoint.vni, dst)) }.copied()
        && local.kind == fdb_kind::LOCAL
    {
        return match mode {
            macvlan_mode::PRIVATE => Err(DropReason::MacvlanPrivate),
            macvlan_mode::VEPA => {
                push_vlan(ctx, endpoint.vlan)?;
                Ok(to_wire(endpoint.parent_ifindex))
            }
            _ => Ok(to_local(ctx, local.ifindex)),
        };
    }
    push_vlan(ctx, endpoint.vlan)?;
    // Unicast needs the parent's record only to recognise the host's own MAC.
    if host_access && dst == parent_of(endpoint)?.mac {
        count(Counter::MacvlanHost);
        count(Counter::Tx);
        // Up the host's stack as if it came from the LAN (a VLAN tag finds the VLAN device).
        return Ok(redirect::into(endpoint.parent_ifindex));
    }
    Ok(to_wire(endpoint.parent_ifindex))
}

/// Where a frame on a parent comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Received from the LAN (the parent's TC ingress).
    Lan,
    /// Sent by the host (the parent's TC egress, attached for host access).
    Host,
}

/// A frame on a parent: a frame for a local endpoint's MAC (on the parent's VLAN) goes to that
/// endpoint, instead of up the host's stack (from the LAN) or out onto the LAN, where it would
/// never come back (from the host, when the network gives the host access). Broadcast and
/// multicast are copied to every endpoint and go on as they were. Anything else is not netd's.
pub fn from_parent(ctx: &TcContext, source: Source) -> Outcome {
    let vlan = vlan(ctx);
    let key = ParentKey {
        ifindex: ifindex(ctx),
        vlan,
        _pad: 0,
    };
    // SAFETY: copied out at once.
    let Some(parent) = unsafe { PARENTS.get(key) }.copied() else {
        return Ok(Verdict::Pass);
    };
    if source == Source::Host && parent.flags & endpoint_flags::HOST_ACCESS == 0 {
        return Ok(Verdict::Pass);
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Ok(Verdict::Pass);
    };
    // SAFETY: bounds-checked by ptr_at.
    let dst = unsafe { &*eth }.dst_addr;
    if !packet::is_unicast_mac(&dst) {
        flood_untagged(ctx, &parent, vlan)?;
        return Ok(Verdict::Pass);
    }
    // SAFETY: copied out at once.
    let Some(local) = unsafe { FDB.get(FdbKey::new(parent.vni, dst)) }.copied() else {
        return Ok(Verdict::Pass);
    };
    if local.kind != fdb_kind::LOCAL {
        return Ok(Verdict::Pass);
    }
    pop_vlan(ctx, vlan)?;
    if source == Source::Host {
        count(Counter::MacvlanHost);
        count(Counter::Tx);
        // Plain bpf_redirect: bpf_redirect_peer silently drops from an egress hook.
        return Ok(redirect::out_of(local.ifindex));
    }
    count(Counter::MacvlanRx);
    Ok(to_local(ctx, local.ifindex))
}

/// VLAN id of a frame on a parent (0: untagged).
fn vlan(ctx: &TcContext) -> u16 {
    if !vlan_tagged(ctx) {
        return 0;
    }
    // SAFETY: reading a field of the context the kernel passed in.
    (unsafe { (*ctx.skb.skb).vlan_tci } & 0x0fff) as u16
}

/// The parent record of a macvlan endpoint (its MAC and local ports).
#[inline(always)]
fn parent_of(endpoint: &EndpointInfo) -> Result<ParentInfo, DropReason> {
    let key = ParentKey {
        ifindex: endpoint.parent_ifindex,
        vlan: endpoint.vlan,
        _pad: 0,
    };
    // SAFETY: copied out at once.
    unsafe { PARENTS.get(key) }
        .copied()
        .ok_or(DropReason::NoParent)
}

/// Delivers to a local endpoint (bridge mode, or a frame from the parent) from a TC ingress hook.
#[inline(always)]
fn to_local(ctx: &TcContext, ifindex: u32) -> Verdict {
    count(Counter::Local);
    match config() {
        Some(c) => deliver::to_endpoint(ctx, c, ifindex),
        None => {
            count(Counter::Tx);
            redirect::out_of(ifindex)
        }
    }
}

fn to_wire(parent: u32) -> Verdict {
    count(Counter::MacvlanTx);
    count(Counter::Tx);
    redirect::out_of(parent)
}

/// Tags the frame for `vlan` (no-op for 0).
fn push_vlan(ctx: &TcContext, vlan: u16) -> Result<(), DropReason> {
    if vlan == 0 {
        return Ok(());
    }
    // SAFETY: valid context.
    let rc = unsafe { bpf_skb_vlan_push(ctx.skb.skb, ETH_P_8021Q.to_be(), vlan) };
    if rc != 0 {
        return Err(DropReason::VlanFailed);
    }
    Ok(())
}

/// Removes the (offloaded) VLAN tag, if any.
fn pop_vlan(ctx: &TcContext, vlan: u16) -> Result<(), DropReason> {
    if vlan == 0 {
        return Ok(());
    }
    // SAFETY: valid context.
    if unsafe { bpf_skb_vlan_pop(ctx.skb.skb) } != 0 {
        return Err(DropReason::VlanFailed);
    }
    Ok(())
}

/// Copies a broadcast/multicast frame from a parent to every endpoint, untagged, and restores
/// the tag for the original, which goes on to the host (or the LAN).
fn flood_untagged(ctx: &TcContext, parent: &ParentInfo, vlan: u16) -> Result<(), DropReason> {
    if parent.count == 0 {
        return Ok(());
    }
    pop_vlan(ctx, vlan)?;
    flood(ctx, parent, 0);
    push_vlan(ctx, vlan)
}

/// A copy to every local endpoint of the parent but `except` (its sender), into the container:
/// out of the host-side veth.
fn flood(ctx: &TcContext, parent: &ParentInfo, except: u32) {
    let mut i = 0;
    while i < parent.ports.len() {
        if i as u32 >= parent.count {
            break;
        }
        let port = parent.ports[i];
        if port != except && port != 0 {
            redirect::copy_out_of(ctx, port);
            count(Counter::MacvlanFlood);
        }
        i += 1;
    }
}
