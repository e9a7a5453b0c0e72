//! TC ingress on a macvlan parent: frames from the LAN, demuxed by destination MAC straight into
//! the right container (the walk is `macvlan.rs`'s).

use aya_ebpf::{macros::classifier, programs::TcContext};
use netd_common::{monitor::hook, stats::Counter};

use crate::{
    macvlan::{self, Source},
    maps::count,
    verdict::tc_action,
};

#[classifier]
pub fn netd_from_parent(ctx: TcContext) -> i32 {
    count(Counter::Rx);
    tc_action(&ctx, hook::PARENT, macvlan::from_parent(&ctx, Source::Lan))
}
