//! Handing a packet to a local endpoint.

use aya_ebpf::helpers::generated::{bpf_redirect, bpf_redirect_peer};
use netd_common::{
    maps::{DatapathConfig, config_flags},
    stats,
};

use crate::maps::count;

/// Redirects to the container behind the host-side veth `ifindex`.
///
/// `bpf_redirect_peer` switches to the container's namespace without a second pass through the
/// host-side veth's queue; it only works from TC ingress and toward a veth whose peer is in
/// another namespace (design §8), which is where both callers are. Kernels without it (< 5.10)
/// get plain `bpf_redirect`, the loader clears the flag there.
#[inline(always)]
pub fn to_endpoint(config: &DatapathConfig, ifindex: u32) -> i32 {
    count(stats::TX);
    // SAFETY: helpers with no pointer arguments.
    let action = unsafe {
        if config.flags & config_flags::REDIRECT_PEER != 0 {
            bpf_redirect_peer(ifindex, 0)
        } else {
            bpf_redirect(ifindex, 0)
        }
    };
    action as i32
}
