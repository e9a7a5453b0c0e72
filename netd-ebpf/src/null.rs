//! The benchmark's baselines: programs that do nothing. `cargo xtask bench` runs the TC one next
//! to netd's programs, so "ns above null" subtracts what running any program costs (and, on live
//! traffic, what `bpf_stats` timing itself adds), and attaches the XDP one to a veth to show what
//! XDP costs there before a program does any work. netd's loader never loads either.

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action::XDP_PASS},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

#[classifier]
pub fn netd_null(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

#[xdp]
pub fn netd_xdp_null(_ctx: XdpContext) -> u32 {
    XDP_PASS
}
