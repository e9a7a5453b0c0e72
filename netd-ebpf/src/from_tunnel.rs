//! TC ingress of the flow-based vxlan device (`netd_vxlan`), which netd keeps on the VXLAN port
//! for its socket's UDP-tunnel GRO. The device has decapsulated the packet (checking the I flag
//! and the reserved bits as it does); this program checks what the device cannot know, as
//! from-uplink does, and delivers into the container.
//!
//! Only GRO aggregates that from-uplink checked and left to the kernel are delivered: they carry
//! its mark. The device's socket is bound to the port on every address and interface (the
//! kernel binds a flow-based device's socket to the wildcard address whatever its `local`, and to
//! a device only for a VRF), so VXLAN sent to any of the host's addresses through docker0, a
//! bridge or `lo` reaches it too, and such a packet may claim any VTEP as its source. The checks
//! of from-uplink are made again all the same (registered VTEP, local destination, a source the
//! VTEP speaks for): they cost little next to the kernel's decap and guard against a mark set by
//! the host's own rules.

use aya_ebpf::{
    helpers::generated::bpf_skb_get_tunnel_key, macros::classifier, programs::TcContext,
};
use netd_common::{maps::VtepKey, monitor::hook, packet::MARK_UPLINK_CHECKED, stats::Counter};

use crate::{
    deliver, inner,
    maps::{VTEPS, config, count},
    verdict::{DropReason, Outcome, tc_action},
};

/// The IPv4 prefix of `struct bpf_tunnel_key`. Its size (8, `offsetof(remote_ipv6[1])`) is one
/// every kernel since 4.x takes and copies only this much of; the full struct grew over time.
#[repr(C)]
struct TunnelKeyV4 {
    /// The VNI, in host order.
    tunnel_id: u32,
    /// The outer source address, in host order.
    remote_ipv4: u32,
}

#[classifier]
pub fn netd_from_tunnel(ctx: TcContext) -> i32 {
    count(Counter::Rx);
    let outcome = from_tunnel(&ctx);
    tc_action(&ctx, hook::TUNNEL, outcome)
}

fn from_tunnel(ctx: &TcContext) -> Outcome {
    // SAFETY: reading a field of the context the kernel passed in.
    if unsafe { (*ctx.skb.skb).mark } != MARK_UPLINK_CHECKED {
        return Err(DropReason::NotFromUplink);
    }
    // The mark was for this hook alone: the host stack and the container do not see it.
    ctx.set_mark(0);
    let config = config().ok_or(DropReason::NoConfig)?;
    let mut key = TunnelKeyV4 {
        tunnel_id: 0,
        remote_ipv4: 0,
    };
    // SAFETY: the context the kernel passed in, and a stack struct of the size passed. An IPv6
    // tunnel does not fit this layout and is refused by the helper.
    let got = unsafe {
        bpf_skb_get_tunnel_key(
            ctx.skb.skb,
            (&raw mut key).cast(),
            size_of::<TunnelKeyV4>() as u32,
            0,
        )
    };
    if got != 0 {
        return Err(DropReason::NoTunnelKey);
    }
    let vni = key.tunnel_id;
    let vtep = VtepKey {
        vtep: key.remote_ipv4.to_be_bytes(),
        vni,
    };
    if VTEPS.get_ptr(vtep).is_none() {
        return Err(DropReason::UnknownVtep);
    }
    let frame = inner::checked(ctx, 0, vni, vtep.vtep)?;
    count(Counter::Decap);
    Ok(deliver::to_endpoint(ctx, config, frame.endpoint.ifindex))
}
