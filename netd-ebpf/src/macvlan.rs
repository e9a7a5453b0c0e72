//! macvlan-style networks: an endpoint's frames leave through a parent interface onto the LAN
//! (tagged when the network is on a VLAN), and the kernel macvlan modes decide what happens
//! between endpoints of one parent. No bridge, no macvlan device: demux by MAC happens in the
//! parent's TC hooks (`from_parent.rs`).

use aya_ebpf::{
    helpers::generated::{bpf_skb_vlan_pop, bpf_skb_vlan_push},
    programs::TcContext,
};
use netd_common::{
    maps::{EndpointInfo, FdbKey, ParentInfo, ParentKey, endpoint_flags, fdb_kind, macvlan_mode},
    packet::{self, ARP_FRAME_LEN, ETH_P_ARP, ETH_P_IP},
    stats::Counter,
};

use crate::{
    deliver,
    maps::{FDB, PARENTS, config, count},
    redirect,
    sender::checked_ipv4,
    skb::ptr_at,
    verdict::{DropReason, Outcome, Verdict},
};

const ETH_P_8021Q: u16 = 0x8100;

/// A frame from a macvlan endpoint (source MAC already checked).
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
pub fn to_local(ctx: &TcContext, ifindex: u32) -> Verdict {
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
pub fn push_vlan(ctx: &TcContext, vlan: u16) -> Result<(), DropReason> {
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
pub fn pop_vlan(ctx: &TcContext, vlan: u16) -> Result<(), DropReason> {
    if vlan == 0 {
        return Ok(());
    }
    // SAFETY: valid context.
    if unsafe { bpf_skb_vlan_pop(ctx.skb.skb) } != 0 {
        return Err(DropReason::VlanFailed);
    }
    Ok(())
}

/// A copy to every local endpoint of the parent but `except` (its sender), into the container:
/// out of the host-side veth.
pub fn flood(ctx: &TcContext, parent: &ParentInfo, except: u32) {
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
