//! Packets and bytes per endpoint of this host, for `netd daemon --metrics-address`: counted
//! where a packet leaves the endpoint (from-endpoint, once the sender is known) and where one
//! is handed to it (`deliver.rs`). One per-CPU entry per endpoint, created by the first packet.
//!
//! Only while the configuration asks for it (`config_flags::ENDPOINT_TRAFFIC`): the LRU hash
//! lookup costs more than the rest of a local delivery's bookkeeping (measured with
//! `cargo xtask bench --kernel-cost-only`, docs/observability.md).

use aya_ebpf::bindings::BPF_NOEXIST;
use netd_common::maps::{DatapathConfig, Traffic, config_flags};

use crate::maps::TRAFFIC;

#[inline(always)]
fn counting(config: &DatapathConfig) -> bool {
    config.flags & config_flags::ENDPOINT_TRAFFIC != 0
}

/// The endpoint behind `ifindex` sent a packet of `bytes`.
#[inline(always)]
pub fn sent(config: &DatapathConfig, ifindex: u32, bytes: u32) {
    if !counting(config) {
        return;
    }
    add(ifindex, |t| {
        t.sent_packets += 1;
        t.sent_bytes += u64::from(bytes);
    });
}

/// A packet of `bytes` was handed to the endpoint behind `ifindex`.
#[inline(always)]
pub fn received(config: &DatapathConfig, ifindex: u32, bytes: u32) {
    if !counting(config) {
        return;
    }
    add(ifindex, |t| {
        t.received_packets += 1;
        t.received_bytes += u64::from(bytes);
    });
}

#[inline(always)]
fn add(ifindex: u32, update: impl Fn(&mut Traffic)) {
    if let Some(counts) = TRAFFIC.get_ptr_mut(ifindex) {
        // SAFETY: this CPU's copy of the entry; only this CPU writes it while the program runs.
        update(unsafe { &mut *counts });
        return;
    }
    let mut first = Traffic::default();
    update(&mut first);
    // Another CPU may have made the entry meanwhile: then this one packet goes uncounted.
    let _ = TRAFFIC.insert(ifindex, first, u64::from(BPF_NOEXIST));
}
