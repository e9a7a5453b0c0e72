//! TC hooks on a macvlan parent: demux by destination MAC straight into the right container.
//!
//! - ingress (from the LAN): a frame for a local endpoint's MAC (on the parent's VLAN) goes to
//!   that endpoint; broadcast and multicast are copied to every endpoint and also go on to the
//!   host; anything else is not ours.
//! - egress (from the host; attached for host access): the host's frames for a local endpoint go
//!   straight to it instead of out onto the LAN, where they would never come back.
//!
//! At TC the kernel has already moved any VLAN tag out of the frame into skb metadata.

use aya_ebpf::{macros::classifier, programs::TcContext};
use netd_common::{
    maps::{FdbKey, ParentInfo, ParentKey, endpoint_flags, fdb_kind},
    monitor::hook,
    packet,
    stats::Counter,
};
use network_types::eth::EthHdr;

use crate::{
    macvlan::{flood, pop_vlan, push_vlan, to_local},
    maps::{FDB, PARENTS, count},
    redirect,
    skb::{ifindex, ptr_at},
    verdict::{DropReason, Outcome, Verdict, tc_action},
};

#[classifier]
pub fn netd_from_parent(ctx: TcContext) -> i32 {
    count(Counter::Rx);
    tc_action(&ctx, hook::PARENT, demux(&ctx, false))
}

#[classifier]
pub fn netd_to_parent(ctx: TcContext) -> i32 {
    tc_action(&ctx, hook::TO_PARENT, demux(&ctx, true))
}

/// VLAN id of the frame (0: untagged).
fn vlan(ctx: &TcContext) -> u16 {
    // SAFETY: reading fields of the context the kernel passed in.
    unsafe {
        let skb = &*ctx.skb.skb;
        if skb.vlan_present != 0 {
            (skb.vlan_tci & 0x0fff) as u16
        } else {
            0
        }
    }
}

fn demux(ctx: &TcContext, from_host: bool) -> Outcome {
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
    if from_host && parent.flags & endpoint_flags::HOST_ACCESS == 0 {
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
    if from_host {
        count(Counter::MacvlanHost);
        count(Counter::Tx);
        // Plain bpf_redirect: bpf_redirect_peer silently drops from an egress hook.
        return Ok(redirect::out_of(local.ifindex));
    }
    count(Counter::MacvlanRx);
    Ok(to_local(ctx, local.ifindex))
}

/// Copies a broadcast/multicast frame to every endpoint, untagged, and restores the tag for the
/// original, which goes on to the host (or the LAN).
fn flood_untagged(ctx: &TcContext, parent: &ParentInfo, vlan: u16) -> Result<(), DropReason> {
    if parent.count == 0 {
        return Ok(());
    }
    pop_vlan(ctx, vlan)?;
    flood(ctx, parent, 0);
    push_vlan(ctx, vlan)
}
