//! Everything netd's eBPF programs and its userspace must agree on.
//!
//! - [`maps`]: the key/value layout, name and capacity of every map;
//! - [`stats`]: the per-CPU counter indexes (one per outcome and per drop reason);
//! - [`monitor`]: the events `netd monitor` reads and the switches that arm them;
//! - [`packet`]: pure header logic (parsing, building, checksums) that the programs call on
//!   bounds-checked packet memory and that host unit tests exercise directly.
//!
//! Multi-byte addresses are network-order byte arrays; VNIs, ifindexes, ports and MTUs are
//! numbers in host order (the programs convert at the packet boundary).
#![cfg_attr(not(test), no_std)]

pub mod maps;
pub mod monitor;
pub mod packet;
pub mod stats;

/// IANA-assigned VXLAN UDP port (RFC 7348 §5).
pub const VXLAN_PORT_DEFAULT: u16 = 4789;
/// Bytes VXLAN adds in front of an inner Ethernet frame on an IPv4 underlay: outer Ethernet (14),
/// IPv4 without options (20), UDP (8) and VXLAN (8).
pub const VXLAN_OVERHEAD: u16 = 50;
/// Largest VNI: the field is 24 bits wide. VNI 0 is reserved by netd (never a network).
pub const VNI_MAX: u32 = (1 << 24) - 1;

/// Checks at compile time that a map type has exactly the size the other side expects
/// (no implicit padding can creep in without this failing).
#[macro_export]
macro_rules! assert_size {
    ($t:ty, $n:expr) => {
        const _: () = assert!(::core::mem::size_of::<$t>() == $n);
    };
}
