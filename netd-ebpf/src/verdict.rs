//! What a program decides about a packet, and the one place that decision becomes a TC action.
//!
//! Every hook's walk returns an [`Outcome`]: pass the packet on, hand it to a redirect the walk
//! already chose, or drop it for a counted reason. [`tc_action`] maps that to the kernel's
//! return codes, so no program writes `TC_ACT_*` itself, and tells `netd monitor` (drops, and
//! forwarded packets while traced).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, TC_ACT_UNSPEC},
    programs::TcContext,
};

use crate::{events, maps::count_drop};

/// A packet that is not dropped.
pub enum Verdict {
    /// Not netd's: the next TC program on the hook decides, or the stack when there is none
    /// (`TCX_NEXT` under TCX, `TC_ACT_UNSPEC` under cls_bpf: the same value).
    Pass,
    /// netd's, and for the stack (`TC_ACT_OK`: no later TC program is asked).
    Stack,
    /// Redirected by a helper (see `redirect.rs`): its return value is the action.
    Redirect(i32),
}

/// Why a packet is dropped: one of the reasons of `netd_common::stats`, each counted in its own
/// slot of `NETD_STATS`.
pub use netd_common::stats::DropReason;

pub type Outcome = Result<Verdict, DropReason>;

/// The TC action for what program `hook` (`netd_common::monitor::hook`) decided about the
/// packet in `ctx`; a drop is counted under its reason.
#[inline(always)]
pub fn tc_action(ctx: &TcContext, hook: u8, outcome: Outcome) -> i32 {
    match outcome {
        Ok(Verdict::Pass) => TC_ACT_UNSPEC,
        Ok(Verdict::Stack) => TC_ACT_OK,
        Ok(Verdict::Redirect(action)) => {
            events::trace(ctx, hook);
            action
        }
        Err(reason) => {
            count_drop(reason);
            events::drop(ctx, hook, reason);
            TC_ACT_SHOT
        }
    }
}
