//! TC egress on a macvlan parent, attached for host access: the host's frames for a local
//! endpoint go straight to it instead of out onto the LAN (the walk is `macvlan.rs`'s).

use aya_ebpf::{macros::classifier, programs::TcContext};
use netd_common::monitor::hook;

use crate::{
    macvlan::{self, Source},
    verdict::tc_action,
};

#[classifier]
pub fn netd_to_parent(ctx: TcContext) -> i32 {
    tc_action(
        &ctx,
        hook::TO_PARENT,
        macvlan::from_parent(&ctx, Source::Host),
    )
}
