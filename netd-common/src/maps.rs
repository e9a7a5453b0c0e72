//! The datapath's maps: [`for_each_map!`] declares each one once (name, kind, key and value
//! types, capacity, what a restart does with its pin), and everything else is made from that
//! table: the eBPF programs' map statics (netd-ebpf/src/maps.rs), and here [`LAYOUTS`],
//! [`MapId`], the typed handles of [`def`] and [`names`], which the loader, the layout check,
//! `netd maps` and the metrics read.
//!
//! Every key and value struct is `#[repr(C)]` with explicit padding and a size assertion, so the
//! BPF object and the loader cannot silently disagree; the loader also compares these sizes with
//! any pinned map it is about to reuse.

use bytemuck::{Pod, Zeroable};

use crate::{
    assert_size,
    monitor::{EventBudget, MonitorControl, RING_BYTES},
    stats,
};

/// Every map of the datapath, one line each, handed to the macro `$then` (the x-macro pattern:
/// netd-common and netd-ebpf each expand the one list their way).
///
/// A line: the map's type name in [`def`] (and its [`MapId`]), its constant in [`names`] (the
/// map is `NETD_` and that), its kind (a [`MapKind`]) with key and value types, its capacity
/// (a [`Capacity`]: fixed, or sized by a daemon flag) and what a restarted daemon does with its
/// pin (a [`Reuse`]). Adding a map is a line here; the compiler then asks for its decoder in
/// `netd maps dump` (netd/src/datapath/inspect.rs), and the loader, the layout check, `netd maps
/// ls` and the capacities follow the table.
#[macro_export]
macro_rules! for_each_map {
    ($then:ident) => {
        $then! {
            /// The per-host settings the loader writes; the programs read the one entry on
            /// every packet.
            Config CONFIG: Array<u32, DatapathConfig>,
                entries: Fixed(1), pin: Keep;
            /// Local endpoints by their host-side veth's ifindex.
            Endpoints ENDPOINTS: Hash<EndpointKey, EndpointInfo>,
                entries: Flag(LocalEndpoints), pin: Keep;
            /// Where each MAC of a network lives: this host, another host's VTEP, the gateway.
            Fdb FDB: Hash<FdbKey, FdbEntry>,
                entries: Flag(Endpoints), pin: Keep;
            /// The ARP table the programs answer from.
            Neigh NEIGH: Hash<NeighKey, NeighEntry>,
                entries: Flag(Endpoints), pin: Keep;
            /// Decapsulation allow-list: (VTEP, VNI) pairs that may send to this host.
            Vteps VTEPS: Hash<VtepKey, VtepEntry>,
                entries: Flag(Vteps), pin: Keep;
            /// macvlan parent/VLAN pairs of this host and their local endpoints.
            Parents PARENTS: Hash<ParentKey, ParentInfo>,
                entries: Fixed(256), pin: Keep;
            /// The counters, per CPU, by `stats` index.
            Stats STATS: PerCpuArray<u32, u64>,
                entries: Fixed(stats::COUNT as u32), pin: RenewOnResize;
            /// Written by from-endpoint itself: a cache of `bpf_fib_lookup` answers, one per VTEP
            /// this host sends to (least recently used ones go first).
            Nexthops NEXTHOPS: LruHash<[u8; 4], NextHop>,
                entries: Fixed(4096), pin: Keep;
            /// `netd monitor`'s events.
            Events EVENTS: RingBuf<[u8; 0], [u8; 0]>,
                entries: Fixed(RING_BYTES), pin: Keep;
            /// `netd monitor`'s switches.
            Monitor MONITOR: Array<u32, MonitorControl>,
                entries: Fixed(1), pin: Keep;
            /// `netd monitor`'s events-per-second budget, per CPU.
            EventBudget EVENT_BUDGET: PerCpuArray<u32, EventBudget>,
                entries: Fixed(1), pin: Keep;
            /// What each local endpoint sent and received, per CPU, by host-side ifindex; sized
            /// like ENDPOINTS.
            Traffic TRAFFIC: LruPerCpuHash<u32, Traffic>,
                entries: Flag(LocalEndpoints), pin: Keep;
        }
    };
}

/// How the kernel keeps a map (the `bpf_map_type` numbers).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    Hash = 1,
    Array = 2,
    PerCpuArray = 6,
    LruHash = 9,
    LruPerCpuHash = 10,
    RingBuf = 27,
}

impl MapKind {
    /// The name `netd maps ls` shows (bpftool's).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hash => "hash",
            Self::Array => "array",
            Self::PerCpuArray => "percpu_array",
            Self::LruHash => "lru_hash",
            Self::LruPerCpuHash => "lru_percpu_hash",
            Self::RingBuf => "ringbuf",
        }
    }
}

/// The maps whose size the daemon's flags set: they grow with the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapacityFlag {
    /// `--max-local-endpoints`: endpoints on this host.
    LocalEndpoints,
    /// `--max-endpoints`: endpoints, local and remote, of the networks this host has endpoints
    /// in.
    Endpoints,
    /// `--max-vteps`: (host, network) pairs that may send to this host.
    Vteps,
}

impl CapacityFlag {
    /// The flag's default, which is also the capacity in the object file.
    pub const fn default_entries(self) -> u32 {
        match self {
            Self::LocalEndpoints => 4096,
            Self::Endpoints => 65536,
            Self::Vteps => 16384,
        }
    }

    /// The daemon flag that sets it.
    pub const fn daemon_flag(self) -> &'static str {
        match self {
            Self::LocalEndpoints => "--max-local-endpoints",
            Self::Endpoints => "--max-endpoints",
            Self::Vteps => "--max-vteps",
        }
    }
}

/// How many entries a map holds (bytes, for a ring buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capacity {
    /// The same in every netd of this build.
    Fixed(u32),
    /// What the daemon flag says.
    Flag(CapacityFlag),
}

impl Capacity {
    /// The capacity with the flags at their defaults (the object file's).
    pub const fn default_entries(self) -> u32 {
        match self {
            Self::Fixed(entries) => entries,
            Self::Flag(flag) => flag.default_entries(),
        }
    }
}

/// What a restarted daemon does with a map it finds pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reuse {
    /// Takes it over, entries and all, if its layout is this build's; refuses to start
    /// otherwise (a different capacity included).
    Keep,
    /// As `Keep`, but a different capacity (a release that added counters) is expected: the
    /// pin is replaced by a map of the new size and counting starts again.
    RenewOnResize,
}

/// What a map looks like, which a pinned map must match to be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    pub id: MapId,
    /// Its name in the object file and under the pin directory (`NETD_FDB`).
    pub name: &'static str,
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    pub capacity: Capacity,
    pub reuse: Reuse,
}

impl MapLayout {
    /// The capacity with the daemon's flags at their defaults.
    pub const fn default_entries(&self) -> u32 {
        self.capacity.default_entries()
    }
}

/// A map, typed: its [`MapId`] and key and value types (the types in [`def`] implement it).
/// Userspace reads and writes maps through these, so a map is never opened with another map's
/// types.
pub trait MapDef {
    const ID: MapId;
    const LAYOUT: MapLayout = Self::ID.layout();
    type Key: Plain;
    type Value: Plain;
}

/// What a key or value type must be: plain bytes (in userspace, `aya::Pod`).
#[cfg(feature = "user")]
pub trait Plain: aya::Pod {}
#[cfg(feature = "user")]
impl<T: aya::Pod> Plain for T {}
#[cfg(not(feature = "user"))]
pub trait Plain: Copy + 'static {}
#[cfg(not(feature = "user"))]
impl<T: Copy + 'static> Plain for T {}

/// Something to do with any one map, generically over its types ([`MapId::visit`]).
pub trait MapVisitor {
    type Output;
    fn visit<D: MapDef>(self) -> Self::Output;
}

/// Expands the table for netd-common: [`MapId`], [`LAYOUTS`], [`def`] and [`names`].
macro_rules! declare_maps {
    (@capacity Fixed($($entries:tt)*)) => { Capacity::Fixed($($entries)*) };
    (@capacity Flag($flag:ident)) => { Capacity::Flag(CapacityFlag::$flag) };
    ($(
        $(#[doc = $doc:literal])*
        $def:ident $name:ident: $kind:ident<$key:ty, $value:ty>,
            entries: $cap_kind:ident($($cap:tt)*), pin: $reuse:ident;
    )*) => {
        /// Names a map at run time.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MapId {
            $($(#[doc = $doc])* $def,)*
        }

        /// Every map, in [`MapId`] order.
        pub const LAYOUTS: [MapLayout; [$(MapId::$def),*].len()] = [$(
            MapLayout {
                id: MapId::$def,
                name: concat!("NETD_", stringify!($name)),
                kind: MapKind::$kind,
                key_size: size_of::<$key>() as u32,
                value_size: size_of::<$value>() as u32,
                capacity: declare_maps!(@capacity $cap_kind($($cap)*)),
                reuse: Reuse::$reuse,
            },
        )*];

        impl MapId {
            pub const ALL: [Self; LAYOUTS.len()] = [$(Self::$def),*];

            pub const fn layout(self) -> MapLayout {
                LAYOUTS[self as usize]
            }

            /// `NETD_FDB`.
            pub const fn name(self) -> &'static str {
                self.layout().name
            }

            /// Calls the visitor with this map's types.
            pub fn visit<V: MapVisitor>(self, visitor: V) -> V::Output {
                match self {
                    $(Self::$def => visitor.visit::<def::$def>(),)*
                }
            }
        }

        /// The maps as types, for typed access ([`MapDef`]).
        pub mod def {
            $(
                $(#[doc = $doc])*
                pub enum $def {}
            )*
        }

        // Here rather than in `def`, where the markers would shadow value types of their name.
        $(
            impl MapDef for def::$def {
                const ID: MapId = MapId::$def;
                type Key = $key;
                type Value = $value;
            }
        )*

        /// Map names as they appear in the object file and under the pin directory.
        pub mod names {
            $(pub const $name: &str = concat!("NETD_", stringify!($name));)*
        }
    };
}

for_each_map!(declare_maps);

impl MapId {
    /// A map by its full name (`NETD_FDB`) or short one (`fdb`), case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|id| {
            let full = id.name();
            full.eq_ignore_ascii_case(name)
                || full
                    .strip_prefix("NETD_")
                    .is_some_and(|short| short.eq_ignore_ascii_case(name))
        })
    }
}

// `MapId::layout` indexes `LAYOUTS` by the id.
const _: () = {
    let mut i = 0;
    while i < LAYOUTS.len() {
        assert!(LAYOUTS[i].id as usize == i);
        i += 1;
    }
};

/// Program names (the function names in netd-ebpf).
pub mod programs {
    pub const FROM_ENDPOINT: &str = "netd_from_endpoint";
    pub const FROM_UPLINK: &str = "netd_from_uplink";
    pub const FROM_PARENT: &str = "netd_from_parent";
    pub const TO_PARENT: &str = "netd_to_parent";
    pub const FROM_TUNNEL: &str = "netd_from_tunnel";
    pub const TO_UPLINK: &str = "netd_to_uplink";
}

/// The daemon flags' defaults (`netd daemon --max-*`).
pub mod capacity {
    use super::CapacityFlag;

    /// `--max-local-endpoints`.
    pub const ENDPOINTS: u32 = CapacityFlag::LocalEndpoints.default_entries();
    /// `--max-endpoints`.
    pub const FDB: u32 = CapacityFlag::Endpoints.default_entries();
    /// `--max-vteps`.
    pub const VTEPS: u32 = CapacityFlag::Vteps.default_entries();
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
    unsafe impl aya::Pod for crate::monitor::EventBudget {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layouts pinned by the releases before the table: a daemon of this build takes
    /// their pins over only while these hold (changing one is a deliberate migration).
    #[test]
    fn layouts_are_the_pinned_ones() {
        use MapKind::*;
        let released: [(&str, MapKind, u32, u32, u32); 12] = [
            ("NETD_CONFIG", Array, 4, 16, 1),
            ("NETD_ENDPOINTS", Hash, 4, 24, 4096),
            ("NETD_FDB", Hash, 12, 12, 65536),
            ("NETD_NEIGH", Hash, 8, 8, 65536),
            ("NETD_VTEPS", Hash, 8, 4, 16384),
            ("NETD_PARENTS", Hash, 8, 84, 256),
            // One slot a counter: grows when one is appended (`RenewOnResize` replaces the pin).
            ("NETD_STATS", PerCpuArray, 4, 8, 57),
            ("NETD_NEXTHOPS", LruHash, 4, 24, 4096),
            ("NETD_EVENTS", RingBuf, 0, 0, 256 * 1024),
            ("NETD_MONITOR", Array, 4, 16, 1),
            ("NETD_EVENT_BUDGET", PerCpuArray, 4, 16, 1),
            ("NETD_TRAFFIC", LruPerCpuHash, 4, 32, 4096),
        ];
        let found: Vec<_> = LAYOUTS
            .iter()
            .map(|l| {
                (
                    l.name,
                    l.kind,
                    l.key_size,
                    l.value_size,
                    l.default_entries(),
                )
            })
            .collect();
        assert_eq!(found, released);
    }

    #[test]
    fn ids_names_and_types_agree() {
        for id in MapId::ALL {
            assert_eq!(id.layout().id, id);
            assert_eq!(MapId::from_name(id.name()), Some(id));
            let short = id.name().trim_start_matches("NETD_").to_ascii_lowercase();
            assert_eq!(MapId::from_name(&short), Some(id));
        }
        assert_eq!(MapId::from_name("nosuchmap"), None);
        assert_eq!(names::EVENT_BUDGET, MapId::EventBudget.name());
        assert_eq!(<def::Traffic as MapDef>::LAYOUT.value_size, 32);

        struct KeySize;
        impl MapVisitor for KeySize {
            type Output = usize;
            fn visit<D: MapDef>(self) -> usize {
                size_of::<D::Key>()
            }
        }
        for layout in LAYOUTS {
            assert_eq!(layout.id.visit(KeySize), layout.key_size as usize);
        }
    }
}
