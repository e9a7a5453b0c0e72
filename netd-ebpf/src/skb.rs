//! Bounds-checked access to packet memory.

use aya_ebpf::programs::TcContext;

/// A pointer to a `T` at `offset` bytes into the packet's linear data, or `None` when the packet
/// is shorter. The comparison against `data_end` is what lets the verifier accept dereferences.
///
/// The contract of every `unsafe` dereference of such a pointer (the `SAFETY: bounds-checked by
/// ptr_at` comments refer to it), stated once here:
/// - bounds: the `T` lies inside the packet, which this function checked;
/// - aliasing: a `&mut` made from it is the only live reference to those bytes (two pointers from
///   here may both be live only for ranges that do not overlap);
/// - lifetime: no reference is kept across a helper that moves packet data
///   (`bpf_skb_adjust_room`, `bpf_skb_vlan_push`/`pop`): those invalidate every packet pointer,
///   so what is needed after them is copied out before (the verifier refuses a use after, too).
#[inline(always)]
pub fn ptr_at<T>(ctx: &TcContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// `__sk_buff.ifindex`: the device the packet is on (at TC ingress, the one it arrived on).
#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` is the context pointer the kernel passed in; reading a field is allowed.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Whether the skb carries a VLAN tag in its metadata (`__sk_buff.vlan_present`): where the
/// kernel puts a received frame's first tag (`skb_vlan_untag`, before TC runs), and where a VLAN
/// device or `bpf_skb_vlan_push` puts one to be sent. `vlan_tci` alone does not say: a priority
/// tag (VLAN 0) of priority 0 has a TCI of 0.
#[inline(always)]
pub fn vlan_tagged(ctx: &TcContext) -> bool {
    // SAFETY: as above.
    unsafe { (*ctx.skb.skb).vlan_present != 0 }
}

/// Whether the kernel will segment this packet later (GSO): its length is not what the wire sees.
#[inline(always)]
pub fn is_gso(ctx: &TcContext) -> bool {
    // SAFETY: as above.
    unsafe { (*ctx.skb.skb).gso_size != 0 }
}

/// Whether this is a GRO aggregate, many received packets merged into one skb. GRO runs in a
/// NAPI poll, which marks what it hands on with its id (`__sk_buff.napi_id`, 0 when unmarked).
/// A GSO packet without that mark was never received from a wire: a local sender's, crossing a
/// veth underlay unsegmented (a veth uses NAPI only toward a peer without TSO).
#[inline(always)]
pub fn is_gro_aggregate(ctx: &TcContext) -> bool {
    // SAFETY: as above.
    let skb = unsafe { &*ctx.skb.skb };
    skb.gso_size != 0 && skb.napi_id != 0
}
