//! The benchmark's baseline: a TC program that does nothing. `cargo xtask bench` runs it next to
//! netd's programs, so "ns above null" subtracts what running any program costs (and, on live
//! traffic, what `bpf_stats` timing itself adds). netd's loader never loads it.

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};

#[classifier]
pub fn netd_null(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}
