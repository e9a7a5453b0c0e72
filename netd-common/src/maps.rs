//! Map layouts. Every struct is `#[repr(C)]` with explicit padding and a size assertion, so the
//! BPF object and the loader cannot silently disagree; the loader also compares these sizes with
//! any pinned map it is about to reuse.

use bytemuck::{Pod, Zeroable};

use crate::assert_size;

/// Map names as they appear in the object file and under the pin directory.
pub mod names {
    pub const CONFIG: &str = "NETD_CONFIG";
    pub const ENDPOINTS: &str = "NETD_ENDPOINTS";
    pub const FDB: &str = "NETD_FDB";
    pub const NEIGH: &str = "NETD_NEIGH";
    pub const VTEPS: &str = "NETD_VTEPS";
    pub const PARENTS: &str = "NETD_PARENTS";
    pub const STATS: &str = "NETD_STATS";
    pub const NEXTHOPS: &str = "NETD_NEXTHOPS";
    /// `netd monitor`'s ring buffer, its switches and the per-CPU event budget.
    pub const EVENTS: &str = "NETD_EVENTS";
    pub const MONITOR: &str = "NETD_MONITOR";
    pub const EVENT_BUDGET: &str = "NETD_EVENT_BUDGET";
    pub const TRAFFIC: &str = "NETD_TRAFFIC";
}

/// Program names (the function names in netd-ebpf).
pub mod programs {
    pub const FROM_ENDPOINT: &str = "netd_from_endpoint";
    pub const FROM_UPLINK: &str = "netd_from_uplink";
    pub const FROM_PARENT: &str = "netd_from_parent";
    pub const TO_PARENT: &str = "netd_to_parent";
    pub const FROM_TUNNEL: &str = "netd_from_tunnel";
}

/// Maximum entries per map. Changing one changes the pinned layout: the loader refuses to
/// reuse a pin whose capacity differs.
pub mod capacity {
    /// Local endpoints on one host.
    pub const ENDPOINTS: u32 = 4096;
    /// Endpoints of all networks, cluster-wide, as seen by one host.
    pub const FDB: u32 = 65536;
    pub const NEIGH: u32 = 65536;
    /// (VTEP, VNI) pairs allowed to send to this host.
    pub const VTEPS: u32 = 16384;
    /// macvlan parent/VLAN pairs on one host.
    pub const PARENTS: u32 = 256;
    /// Cached next hops, one per VTEP this host sends to (least recently used ones go first).
    pub const NEXTHOPS: u32 = 4096;
}

/// The one entry of the `NETD_CONFIG` array: per-host datapath settings the loader fills.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DatapathConfig {
    /// This host's VTEP address (the outer source; decap only for packets sent to it).
    pub local_vtep: [u8; 4],
    /// Interface encapsulated packets leave by (the underlay uplink).
    pub uplink_ifindex: u32,
    /// UDP destination port of VXLAN (host order).
    pub vxlan_port: u16,
    /// MTU of the underlay route; an encapsulated packet longer than this is dropped and counted.
    pub underlay_mtu: u16,
    /// `config_flags::*`.
    pub flags: u32,
}
assert_size!(DatapathConfig, 16);

pub mod config_flags {
    /// Deliver to local endpoints with `bpf_redirect_peer` (kernel ≥ 5.10) instead of
    /// `bpf_redirect` to the host-side veth.
    pub const REDIRECT_PEER: u32 = 1 << 0;
    /// The kernel takes `BPF_F_ADJ_ROOM_ENCAP_L2_ETH` (Linux 5.13): encap marks the inner
    /// header as Ethernet. Found by a test run at load, never from the version.
    pub const ENCAP_L2_ETH: u32 = 1 << 1;
    /// The kernel takes `BPF_F_ADJ_ROOM_DECAP_L3_IPV4` (Linux 6.3) when decapsulating.
    pub const DECAP_L3_IPV4: u32 = 1 << 2;
    /// Count packets and bytes per endpoint in `NETD_TRAFFIC` (the daemon sets it with
    /// `--metrics-address`: the count costs two map lookups per packet, paid only when asked).
    pub const ENDPOINT_TRAFFIC: u32 = 1 << 3;
    /// A flow-based vxlan device holds the VXLAN port, for its socket's UDP-tunnel GRO: the
    /// uplink leaves GRO aggregates to it (after every check) and from-tunnel delivers them.
    pub const GRO_DEVICE: u32 = 1 << 4;
}

/// `NETD_ENDPOINTS` key: ifindex of a local endpoint's host-side veth.
pub type EndpointKey = u32;

/// A local endpoint: what its host-side veth may send (anti-spoofing), in which network, and
/// for macvlan-style networks where its frames leave.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct EndpointInfo {
    /// Network number (the VNI of an overlay network; a macvlan network's unique id).
    pub vni: u32,
    pub mac: [u8; 6],
    /// macvlan: VLAN of the parent (0: untagged).
    pub vlan: u16,
    pub ipv4: [u8; 4],
    /// `endpoint_flags::*`.
    pub flags: u32,
    /// macvlan: the interface the endpoint's frames leave by; 0 for overlay endpoints.
    pub parent_ifindex: u32,
}
assert_size!(EndpointInfo, 24);

pub mod endpoint_flags {
    /// A macvlan-style endpoint: frames go to the parent, not into VXLAN.
    pub const MACVLAN: u32 = 1 << 0;
    /// The host may talk to the endpoint through the parent (what kernel macvlan cannot do).
    pub const HOST_ACCESS: u32 = 1 << 1;
    /// The macvlan mode is `(flags >> MODE_SHIFT) & 0xff`, one of `macvlan_mode::*`.
    pub const MODE_SHIFT: u32 = 8;
}

/// Modes as the kernel's macvlan defines them.
pub mod macvlan_mode {
    /// Endpoints on one parent reach each other directly.
    pub const BRIDGE: u32 = 0;
    /// Endpoints on one parent never reach each other.
    pub const PRIVATE: u32 = 1;
    /// Traffic between endpoints on one parent goes out and back through the external switch.
    pub const VEPA: u32 = 2;
    /// One endpoint owns the parent.
    pub const PASSTHRU: u32 = 3;
}

/// Local endpoints one parent/VLAN can flood to (broadcast and multicast replication).
pub const MAX_PARENT_PORTS: usize = 16;

/// `NETD_PARENTS` key: a macvlan parent and VLAN on this host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ParentKey {
    pub ifindex: u32,
    pub vlan: u16,
    pub _pad: u16,
}
assert_size!(ParentKey, 8);

/// The macvlan network on a parent/VLAN, and its local endpoints (for flooding).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ParentInfo {
    pub vni: u32,
    /// `endpoint_flags::HOST_ACCESS` and the mode, as in [`EndpointInfo::flags`].
    pub flags: u32,
    /// The parent's own MAC (host access: frames to it go up the host's stack).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    pub count: u32,
    pub ports: [u32; MAX_PARENT_PORTS],
}
assert_size!(ParentInfo, 84);

impl Default for ParentInfo {
    fn default() -> Self {
        Self::zeroed()
    }
}

/// `NETD_FDB` key: where does a MAC of a network live.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FdbKey {
    pub vni: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
assert_size!(FdbKey, 12);

impl FdbKey {
    pub const fn new(vni: u32, mac: [u8; 6]) -> Self {
        Self {
            vni,
            mac,
            _pad: [0; 2],
        }
    }
}

pub mod fdb_kind {
    /// On this host: deliver to `ifindex` (the host-side veth).
    pub const LOCAL: u32 = 1;
    /// On another host: encapsulate to `vtep`.
    pub const REMOTE: u32 = 2;
    /// The network's gateway: answers ping at its address, routes between the network's
    /// subnets.
    pub const GATEWAY: u32 = 3;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FdbEntry {
    /// `fdb_kind::*`.
    pub kind: u32,
    /// Host-side veth of a local endpoint (0 for remote ones).
    pub ifindex: u32,
    /// VTEP of a remote endpoint (zero for local ones).
    pub vtep: [u8; 4],
}
assert_size!(FdbEntry, 12);

impl FdbEntry {
    pub const fn local(ifindex: u32) -> Self {
        Self {
            kind: fdb_kind::LOCAL,
            ifindex,
            vtep: [0; 4],
        }
    }

    pub const fn remote(vtep: [u8; 4]) -> Self {
        Self {
            kind: fdb_kind::REMOTE,
            ifindex: 0,
            vtep,
        }
    }

    pub const fn gateway() -> Self {
        Self {
            kind: fdb_kind::GATEWAY,
            ifindex: 0,
            vtep: [0; 4],
        }
    }
}

/// `NETD_NEIGH` key: the ARP table the programs answer from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct NeighKey {
    pub vni: u32,
    pub ipv4: [u8; 4],
}
assert_size!(NeighKey, 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NeighEntry {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
assert_size!(NeighEntry, 8);

impl NeighEntry {
    pub const fn new(mac: [u8; 6]) -> Self {
        Self { mac, _pad: [0; 2] }
    }
}

/// `NETD_VTEPS` key: decapsulation allow-list. A VXLAN packet is accepted only if its outer
/// source is a VTEP registered for the packet's VNI.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct VtepKey {
    pub vtep: [u8; 4],
    pub vni: u32,
}
assert_size!(VtepKey, 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VtepEntry {
    pub flags: u32,
}
assert_size!(VtepEntry, 4);

/// `NETD_NEXTHOPS` value: the outer Ethernet header and device toward one VTEP (the key, its
/// IPv4 address), as `bpf_fib_lookup` last answered.
///
/// from-endpoint fills it and reuses it until `expires_ns` (`bpf_ktime_get_ns` clock), so the
/// FIB and neighbour tables are asked once per VTEP per [`NEXTHOP_TTL_NS`] instead of once per
/// packet (the lookup was a fifth of the encapsulation's cost). A changed route or neighbour
/// is therefore followed within that time, as a kernel route cache would.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NextHop {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub ifindex: u32,
    pub expires_ns: u64,
}
assert_size!(NextHop, 24);

/// `NETD_TRAFFIC` value, per CPU: what one endpoint of this host (the key: its host-side
/// ifindex) sent and was delivered. The programs keep it themselves: the entry appears with the
/// endpoint's first packet, and the map is an LRU one so that entries of endpoints gone age out
/// (an ifindex the kernel hands out again continues the old counts).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Traffic {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub received_packets: u64,
    pub received_bytes: u64,
}
assert_size!(Traffic, 32);

impl core::ops::Add for Traffic {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            sent_packets: self.sent_packets + other.sent_packets,
            sent_bytes: self.sent_bytes + other.sent_bytes,
            received_packets: self.received_packets + other.received_packets,
            received_bytes: self.received_bytes + other.received_bytes,
        }
    }
}

/// How long a cached next hop is trusted.
pub const NEXTHOP_TTL_NS: u64 = 1_000_000_000;

/// Kernel map types, as `bpf_map_type` numbers, for the loader's layout check.
pub mod map_type {
    pub const HASH: u32 = 1;
    pub const ARRAY: u32 = 2;
    pub const PERCPU_ARRAY: u32 = 6;
    pub const LRU_HASH: u32 = 9;
    pub const LRU_PERCPU_HASH: u32 = 10;
    pub const RINGBUF: u32 = 27;
}

/// What a pinned map must look like to be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    pub name: &'static str,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

/// Every map netd pins, with its expected layout.
pub const LAYOUTS: [MapLayout; 12] = [
    MapLayout {
        name: names::CONFIG,
        map_type: map_type::ARRAY,
        key_size: 4,
        value_size: size_of::<DatapathConfig>() as u32,
        max_entries: 1,
    },
    MapLayout {
        name: names::ENDPOINTS,
        map_type: map_type::HASH,
        key_size: size_of::<EndpointKey>() as u32,
        value_size: size_of::<EndpointInfo>() as u32,
        max_entries: capacity::ENDPOINTS,
    },
    MapLayout {
        name: names::FDB,
        map_type: map_type::HASH,
        key_size: size_of::<FdbKey>() as u32,
        value_size: size_of::<FdbEntry>() as u32,
        max_entries: capacity::FDB,
    },
    MapLayout {
        name: names::NEIGH,
        map_type: map_type::HASH,
        key_size: size_of::<NeighKey>() as u32,
        value_size: size_of::<NeighEntry>() as u32,
        max_entries: capacity::NEIGH,
    },
    MapLayout {
        name: names::VTEPS,
        map_type: map_type::HASH,
        key_size: size_of::<VtepKey>() as u32,
        value_size: size_of::<VtepEntry>() as u32,
        max_entries: capacity::VTEPS,
    },
    MapLayout {
        name: names::PARENTS,
        map_type: map_type::HASH,
        key_size: size_of::<ParentKey>() as u32,
        value_size: size_of::<ParentInfo>() as u32,
        max_entries: capacity::PARENTS,
    },
    MapLayout {
        name: names::STATS,
        map_type: map_type::PERCPU_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: crate::stats::COUNT as u32,
    },
    MapLayout {
        name: names::NEXTHOPS,
        map_type: map_type::LRU_HASH,
        key_size: 4,
        value_size: size_of::<NextHop>() as u32,
        max_entries: capacity::NEXTHOPS,
    },
    MapLayout {
        name: names::EVENTS,
        map_type: map_type::RINGBUF,
        key_size: 0,
        value_size: 0,
        max_entries: crate::monitor::RING_BYTES,
    },
    MapLayout {
        name: names::MONITOR,
        map_type: map_type::ARRAY,
        key_size: 4,
        value_size: size_of::<crate::monitor::MonitorControl>() as u32,
        max_entries: 1,
    },
    MapLayout {
        name: names::EVENT_BUDGET,
        map_type: map_type::PERCPU_ARRAY,
        key_size: 4,
        value_size: size_of::<crate::monitor::EventBudget>() as u32,
        max_entries: 1,
    },
    MapLayout {
        name: names::TRAFFIC,
        map_type: map_type::LRU_PERCPU_HASH,
        key_size: 4,
        value_size: size_of::<Traffic>() as u32,
        // One per local endpoint, as NETD_ENDPOINTS (the loader sizes both alike).
        max_entries: capacity::ENDPOINTS,
    },
];

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: every type is repr(C), Pod (no padding, any bit pattern valid).
    unsafe impl aya::Pod for DatapathConfig {}
    unsafe impl aya::Pod for EndpointInfo {}
    unsafe impl aya::Pod for FdbKey {}
    unsafe impl aya::Pod for FdbEntry {}
    unsafe impl aya::Pod for NeighKey {}
    unsafe impl aya::Pod for NeighEntry {}
    unsafe impl aya::Pod for VtepKey {}
    unsafe impl aya::Pod for VtepEntry {}
    unsafe impl aya::Pod for ParentKey {}
    unsafe impl aya::Pod for ParentInfo {}
    unsafe impl aya::Pod for NextHop {}
    unsafe impl aya::Pod for Traffic {}
    unsafe impl aya::Pod for crate::monitor::MonitorControl {}
}
