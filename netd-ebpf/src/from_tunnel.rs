//! TC ingress of the flow-based vxlan device (`netd_vxlan`), which netd keeps on the VXLAN port
//! for its socket's UDP-tunnel GRO. The device has decapsulated the packet (checking the I flag
//! and the reserved bits as it does); this program checks what the device cannot know, as
//! from-uplink does, and delivers into the container.
//!
//! Most packets here are GRO aggregates that from-uplink already checked and left to the
//! kernel. But the device's socket takes VXLAN from every interface, also ones netd has no
//! program on, so nothing is trusted for having got here: the sender must be a registered VTEP
//! of the VNI and the inner frame must be for a local endpoint.

use aya_ebpf::{
    helpers::generated::bpf_skb_get_tunnel_key, macros::classifier, programs::TcContext,
};
use netd_common::{maps::VtepKey, monitor::hook, stats::Counter};

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
    let frame = inner::local_destination(ctx, 0, vni)?;
    count(Counter::Decap);
    Ok(deliver::to_endpoint(ctx, config, frame.endpoint.ifindex))
}
