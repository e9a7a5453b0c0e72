//! Events for `netd monitor`, written into the `NETD_EVENTS` ring buffer while a monitor has
//! armed them (`netd_common::monitor`). A packet costs one array read to learn that nobody is
//! listening; the clock is read only when a switch is on.

use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    programs::TcContext,
};
use netd_common::{
    monitor::{EVENTS_PER_SECOND_PER_CPU, Event, SAMPLE_BYTES, kind},
    stats::Counter,
};

use crate::{
    maps::{EVENT_BUDGET, EVENTS, MONITOR, count},
    skb::ifindex,
    verdict::DropReason,
};

const SECOND_NS: u64 = 1_000_000_000;

/// Which events are wanted now.
#[derive(Clone, Copy)]
pub enum Wanted {
    Drops,
    Traces,
}

/// Whether a monitor wants events of this kind now.
#[inline(always)]
pub fn armed(wanted: Wanted) -> bool {
    let Some(control) = MONITOR.get(0) else {
        return false;
    };
    let until = match wanted {
        Wanted::Drops => control.drops_until_ns,
        Wanted::Traces => control.trace_until_ns,
    };
    // SAFETY: bpf_ktime_get_ns has no arguments and cannot fail.
    until != 0 && unsafe { bpf_ktime_get_ns() } < until
}

/// Takes one event from this CPU's budget for the current second; counts a refusal.
#[inline(always)]
fn within_budget() -> bool {
    let Some(budget) = EVENT_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: bpf_ktime_get_ns has no arguments and cannot fail.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: per-CPU slot, only this CPU touches it while the program runs.
    let budget = unsafe { &mut *budget };
    if now.wrapping_sub(budget.window_start_ns) >= SECOND_NS {
        budget.window_start_ns = now;
        budget.written = 0;
    }
    if budget.written >= EVENTS_PER_SECOND_PER_CPU {
        count(Counter::MonitorRateLimited);
        return false;
    }
    budget.written += 1;
    true
}

/// Writes one event about the packet in `ctx` (its first bytes included), if the budget and
/// the ring have room. `reason`: the drop reason's index, 0 for a trace.
#[inline(always)]
fn emit(ctx: &TcContext, event_kind: u8, hook: u8, reason: u16) {
    if !within_budget() {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count(Counter::MonitorRingFull);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at ring buffer memory reserved for one `Event`, owned by this
    // program until it is submitted; every field is written before that (the sample up to
    // `sample_len`, which is all the reader looks at).
    unsafe {
        (*event).kind = event_kind;
        (*event).hook = hook;
        (*event).reason = reason;
        (*event).ifindex = ifindex(ctx);
        (*event).len = ctx.len();
        (*event).sample_len = sample(ctx, &mut (*event).sample);
    }
    entry.submit(0);
}

/// Copies the packet's first bytes into `to`; returns how many. (aya's `load_bytes` may ask
/// the helper for zero bytes, which the verifier refuses.)
#[inline(always)]
fn sample(ctx: &TcContext, to: &mut [u8; SAMPLE_BYTES]) -> u32 {
    const CAP: u32 = SAMPLE_BYTES as u32;
    let len = ctx.len();
    if len == 0 {
        return 0;
    }
    let capped = if len < CAP { len } else { CAP };
    // The helper needs a size the verifier can prove to be in 1..=CAP. Older verifiers (5.10,
    // 6.1) learn nothing from `len != 0`, so the bounds are made by arithmetic: a mask for the
    // top and +1 for the bottom, which is `capped` itself for every capped in 1..=CAP. The
    // value goes through a volatile slot so that LLVM, which knows that range, cannot fold
    // the arithmetic away.
    let mut slot = 0u32;
    // SAFETY: a local, written and read back.
    let opaque = unsafe {
        core::ptr::write_volatile(&mut slot, capped);
        core::ptr::read_volatile(&slot)
    };
    let n = (opaque.wrapping_sub(1) & (CAP - 1)) + 1;
    // SAFETY: `to` holds CAP >= n bytes; n >= 1 as the helper requires.
    let copied = unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), 0, to.as_mut_ptr().cast(), n) };
    if copied == 0 { n } else { 0 }
}

/// A drop, if drops are armed.
#[inline(always)]
pub fn drop(ctx: &TcContext, hook: u8, reason: DropReason) {
    if armed(Wanted::Drops) {
        emit(ctx, kind::DROP, hook, reason.index() as u16);
    }
}

/// A forwarded packet, if traces are armed.
#[inline(always)]
pub fn trace(ctx: &TcContext, hook: u8) {
    if armed(Wanted::Traces) {
        emit(ctx, kind::TRACE, hook, 0);
    }
}

// The mask in `sample` needs a power of two.
const _: () = assert!(SAMPLE_BYTES.is_power_of_two());
