//! The redirect helpers behind safe functions: every raw call is here, once. None of them takes
//! a pointer into the packet, so none can alias it; the two that take the context get the one
//! the kernel passed in. Each returns the helper's answer as a [`Verdict::Redirect`] (the
//! kernel's `TC_ACT_REDIRECT`, or `TC_ACT_SHOT` for flags it refuses).

use aya_ebpf::{
    bindings::{BPF_F_INGRESS, bpf_redir_neigh},
    helpers::generated::{bpf_clone_redirect, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};

use crate::verdict::Verdict;

const AF_INET: u32 = 2;
/// `PACKET_HOST` of linux/if_packet.h.
const PACKET_HOST: u32 = 0;

/// Out of `ifindex` (its egress: for a host-side veth, into the container).
#[inline(always)]
pub fn out_of(ifindex: u32) -> Verdict {
    // SAFETY: no pointer arguments.
    Verdict::Redirect(unsafe { bpf_redirect(ifindex, 0) } as i32)
}

/// Into `ifindex`'s receive path, as if it had arrived there.
#[inline(always)]
pub fn into(ifindex: u32) -> Verdict {
    // SAFETY: no pointer arguments.
    Verdict::Redirect(unsafe { bpf_redirect(ifindex, u64::from(BPF_F_INGRESS)) } as i32)
}

/// Into the namespace of the peer of veth `ifindex`, without a pass through its queue (TC
/// ingress only; docs/architecture.md).
///
/// The frame is marked as addressed to this host first. It arrived on another device (a
/// container's veth, the macvlan parent) whose MAC is not its destination, so the kernel set
/// `PACKET_OTHERHOST`; kernels without upstream c4327229948 (5.10; 6.1 has the backport, fixed
/// in 6.15) hand it over unchanged and the container's IP stack drops it (docs/kernels.md).
#[inline(always)]
pub fn to_peer(ctx: &TcContext, ifindex: u32) -> Verdict {
    // SAFETY: a read of the context the kernel passed in.
    if unsafe { (*ctx.skb.skb).pkt_type } != PACKET_HOST {
        // Cannot fail for PACKET_HOST on a TC program's packet.
        let _ = ctx.change_type(PACKET_HOST);
    }
    // SAFETY: no pointer arguments.
    Verdict::Redirect(unsafe { bpf_redirect_peer(ifindex, 0) } as i32)
}

/// Out of `ifindex` toward the IPv4 next hop `ipv4_nh` (network order), the kernel resolving
/// its neighbour (and queueing the packet meanwhile).
#[inline(always)]
pub fn via_neighbour(ifindex: u32, ipv4_nh: u32) -> Verdict {
    let mut nh = bpf_redir_neigh {
        nh_family: AF_INET,
        // SAFETY: all-zero is a valid value of the union; its IPv4 member is set below.
        __bindgen_anon_1: unsafe { core::mem::zeroed() },
    };
    nh.__bindgen_anon_1.ipv4_nh = ipv4_nh;
    // SAFETY: a stack struct of the size passed.
    Verdict::Redirect(unsafe {
        bpf_redirect_neigh(ifindex, &mut nh, size_of::<bpf_redir_neigh>() as i32, 0)
    } as i32)
}

/// Out of `ifindex` by the kernel's own route and neighbour lookup.
#[inline(always)]
pub fn via_route(ifindex: u32) -> Verdict {
    // SAFETY: a null parameter block of length 0 is the documented "look it up" form.
    Verdict::Redirect(unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) } as i32)
}

/// A copy out of `ifindex` (the original goes on as the caller decides).
#[inline(always)]
pub fn copy_out_of(ctx: &TcContext, ifindex: u32) {
    // SAFETY: the context the kernel passed in.
    unsafe { bpf_clone_redirect(ctx.skb.skb, ifindex, 0) };
}

/// A copy into `ifindex`'s receive path.
#[inline(always)]
pub fn copy_into(ctx: &TcContext, ifindex: u32) {
    // SAFETY: the context the kernel passed in.
    unsafe { bpf_clone_redirect(ctx.skb.skb, ifindex, u64::from(BPF_F_INGRESS)) };
}
