//! Every map of the datapath, made from the one table in `netd_common::maps::for_each_map!`:
//! each line becomes a static of aya's type for its kind, named as the line names it (`FDB` for
//! the map `NETD_FDB`), with the table's key and value types and its capacity at the daemon
//! flags' defaults (the loader sets the flags' values before loading).

use aya_ebpf::maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf};
use netd_common::{
    maps::{DatapathConfig, MapDef, def},
    stats::{Counter, DropReason},
};

/// One static per line of the table.
macro_rules! statics {
    ($(
        $(#[doc = $doc:literal])*
        $def:ident $name:ident: $kind:ident<$key:ty, $value:ty>,
            entries: $cap_kind:ident $cap:tt, pin: $reuse:ident;
    )*) => {
        $(statics!(@map $kind $name def::$def, $(#[doc = $doc])*);)*
    };
    // What aya's `#[map]` makes of a static: it goes into the `maps` section under the map's
    // name. (`#[map(name = ...)]` takes a string literal only, and the name is made here.)
    (@static $name:ident, $ty:ty, $init:expr, $(#[doc = $doc:literal])*) => {
        $(#[doc = $doc])*
        #[unsafe(link_section = "maps")]
        #[unsafe(export_name = concat!("NETD_", stringify!($name)))]
        pub static $name: $ty = $init;
    };
    (@map Array $name:ident $def:ty, $($doc:tt)*) => {
        statics!(@static $name, Array<<$def as MapDef>::Value>,
            Array::with_max_entries(<$def as MapDef>::LAYOUT.default_entries(), 0), $($doc)*);
    };
    (@map PerCpuArray $name:ident $def:ty, $($doc:tt)*) => {
        statics!(@static $name, PerCpuArray<<$def as MapDef>::Value>,
            PerCpuArray::with_max_entries(<$def as MapDef>::LAYOUT.default_entries(), 0), $($doc)*);
    };
    (@map Hash $name:ident $def:ty, $($doc:tt)*) => {
        statics!(@static $name, HashMap<<$def as MapDef>::Key, <$def as MapDef>::Value>,
            HashMap::with_max_entries(<$def as MapDef>::LAYOUT.default_entries(), 0), $($doc)*);
    };
    (@map LruHash $name:ident $def:ty, $($doc:tt)*) => {
        statics!(@static $name, LruHashMap<<$def as MapDef>::Key, <$def as MapDef>::Value>,
            LruHashMap::with_max_entries(<$def as MapDef>::LAYOUT.default_entries(), 0), $($doc)*);
    };
    (@map LruPerCpuHash $name:ident $def:ty, $($doc:tt)*) => {
        statics!(@static $name, LruPerCpuHashMap<<$def as MapDef>::Key, <$def as MapDef>::Value>,
            LruPerCpuHashMap::with_max_entries(<$def as MapDef>::LAYOUT.default_entries(), 0),
            $($doc)*);
    };
    (@map RingBuf $name:ident $def:ty, $($doc:tt)*) => {
        statics!(@static $name, RingBuf,
            RingBuf::with_byte_size(<$def as MapDef>::LAYOUT.default_entries(), 0), $($doc)*);
    };
}

netd_common::for_each_map!(statics);

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
