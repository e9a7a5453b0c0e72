//! Programs the loader uses to learn what this kernel has, by trying instead of reading its
//! version (`netd::datapath::features`); none is ever attached.
//!
//! - `netd_probe_redirect_peer` / `netd_probe_redirect_neigh` only have to load: the verifier
//!   refuses a helper the kernel does not have (both arrived in Linux 5.10), and netd cannot
//!   deliver or forward without them.
//! - `netd_probe_encap` / `netd_probe_decap` are test-run once on a VXLAN frame and answer 0 when
//!   `bpf_skb_adjust_room` took the full flag set of [`crate::room`], 1 when it refused it.

use aya_ebpf::{
    bindings::{TC_ACT_OK, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC},
    macros::classifier,
    programs::TcContext,
};
use netd_common::packet::ENCAP_ROOM;

use crate::{redirect, room};

#[classifier]
pub fn netd_probe_redirect_peer(ctx: TcContext) -> i32 {
    let _ = redirect::to_peer(&ctx, 0);
    TC_ACT_OK
}

#[classifier]
pub fn netd_probe_redirect_neigh(_ctx: TcContext) -> i32 {
    let _ = redirect::via_route(0);
    TC_ACT_OK
}

#[classifier]
pub fn netd_probe_encap(ctx: TcContext) -> i32 {
    accepted(ctx.adjust_room(ENCAP_ROOM as i32, BPF_ADJ_ROOM_MAC, room::ENCAP_FULL))
}

#[classifier]
pub fn netd_probe_decap(ctx: TcContext) -> i32 {
    accepted(ctx.adjust_room(-(ENCAP_ROOM as i32), BPF_ADJ_ROOM_MAC, room::DECAP_FULL))
}

#[inline(always)]
fn accepted<E>(result: Result<(), E>) -> i32 {
    if result.is_ok() { 0 } else { 1 }
}
