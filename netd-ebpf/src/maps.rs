//! Every map of the datapath, in one place. Names, layouts and capacities come from
//! `netd_common::maps`, which the loader checks pinned maps against.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use netd_common::{
    maps::{
        DatapathConfig, EndpointInfo, EndpointKey, FdbEntry, FdbKey, NeighEntry, NeighKey, NextHop,
        ParentInfo, ParentKey, Traffic, VtepEntry, VtepKey, capacity,
    },
    monitor::{EventBudget, MonitorControl, RING_BYTES},
    stats::{self, Counter, DropReason},
};

#[map(name = "NETD_CONFIG")]
pub static CONFIG: Array<DatapathConfig> = Array::with_max_entries(1, 0);

#[map(name = "NETD_ENDPOINTS")]
pub static ENDPOINTS: HashMap<EndpointKey, EndpointInfo> =
    HashMap::with_max_entries(capacity::ENDPOINTS, 0);

#[map(name = "NETD_FDB")]
pub static FDB: HashMap<FdbKey, FdbEntry> = HashMap::with_max_entries(capacity::FDB, 0);

#[map(name = "NETD_NEIGH")]
pub static NEIGH: HashMap<NeighKey, NeighEntry> = HashMap::with_max_entries(capacity::NEIGH, 0);

#[map(name = "NETD_VTEPS")]
pub static VTEPS: HashMap<VtepKey, VtepEntry> = HashMap::with_max_entries(capacity::VTEPS, 0);

#[map(name = "NETD_PARENTS")]
pub static PARENTS: HashMap<ParentKey, ParentInfo> =
    HashMap::with_max_entries(capacity::PARENTS, 0);

/// Written by from-endpoint itself (a cache of `bpf_fib_lookup` answers), read by nobody else.
#[map(name = "NETD_NEXTHOPS")]
pub static NEXTHOPS: LruHashMap<[u8; 4], NextHop> =
    LruHashMap::with_max_entries(capacity::NEXTHOPS, 0);

#[map(name = "NETD_STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::COUNT as u32, 0);

/// Per endpoint: what it sent and received (see `traffic.rs`).
#[map(name = "NETD_TRAFFIC")]
pub static TRAFFIC: LruPerCpuHashMap<u32, Traffic> =
    LruPerCpuHashMap::with_max_entries(capacity::ENDPOINTS, 0);

/// `netd monitor`'s events (see `events.rs`).
#[map(name = "NETD_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

#[map(name = "NETD_MONITOR")]
pub static MONITOR: Array<MonitorControl> = Array::with_max_entries(1, 0);

#[map(name = "NETD_EVENT_BUDGET")]
pub static EVENT_BUDGET: PerCpuArray<EventBudget> = PerCpuArray::with_max_entries(1, 0);

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(counter: Counter) {
    add_one(counter.index());
}

/// Counts a drop under its reason.
#[inline(always)]
pub fn count_drop(reason: DropReason) {
    add_one(reason.index());
}

#[inline(always)]
fn add_one(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *counter += 1 };
    }
}

/// The datapath configuration, if the loader has written it (an array entry always exists; an
/// all-zero one, with no uplink, means "not configured").
#[inline(always)]
pub fn config() -> Option<&'static DatapathConfig> {
    CONFIG.get(0).filter(|c| c.uplink_ifindex != 0)
}
