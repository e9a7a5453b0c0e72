//! Handing a packet to a local endpoint.

use aya_ebpf::programs::TcContext;
use netd_common::{
    maps::{DatapathConfig, config_flags},
    stats::Counter,
};

use crate::{maps::count, redirect, traffic, verdict::Verdict};

/// Redirects to the container behind the host-side veth `ifindex`.
///
/// `bpf_redirect_peer` switches to the container's namespace without a second pass through the
/// host-side veth's queue; it only works from TC ingress and toward a veth whose peer is in
/// another namespace (docs/architecture.md), where both callers are. The loader always sets the
/// flag (it refuses kernels without the helper); a config written without it gets plain
/// `bpf_redirect`.
#[inline(always)]
pub fn to_endpoint(ctx: &TcContext, config: &DatapathConfig, ifindex: u32) -> Verdict {
    count(Counter::Tx);
    traffic::received(config, ifindex, ctx.len());
    if config.flags & config_flags::REDIRECT_PEER != 0 {
        redirect::to_peer(ctx, ifindex)
    } else {
        redirect::out_of(ifindex)
    }
}
