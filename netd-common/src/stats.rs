//! What the programs count in the per-CPU `NETD_STATS` array: what happened to each packet a
//! program saw ([`Counter`]) and why one was dropped ([`DropReason`]).
//!
//! Both are one list, [`counters!`] below: one index space, dense from 0, in which every drop
//! the programs make is counted under exactly one reason, so `netd maps dump NETD_STATS` explains
//! every lost packet. An index never moves once released (the array is pinned, and `netd
//! monitor`'s events carry the index of their reason): a new counter is appended.

/// The counter list: `count` lines are [`Counter`]s, `drop` lines [`DropReason`]s, each with its
/// index and name (a drop's name is `drop-` and its label, the label being what the metrics'
/// `reason` shows). A tt-muncher sorts the lines into the two enums.
macro_rules! counters {
    // Every line sorted: emit.
    (@sort [$($count:tt)*] [$($drop:tt)*]) => {
        counters!(@emit [$($count)*] [$($drop)*]);
    };
    (@sort [$($count:tt)*] [$($drop:tt)*]
        $(#[doc = $doc:literal])* count $id:ident = $idx:literal, $name:literal; $($rest:tt)*) => {
        counters!(@sort [$($count)* $(#[doc = $doc])* $id = $idx, $name;] [$($drop)*] $($rest)*);
    };
    (@sort [$($count:tt)*] [$($drop:tt)*]
        $(#[doc = $doc:literal])* drop $id:ident = $idx:literal, $label:literal; $($rest:tt)*) => {
        counters!(@sort [$($count)*] [$($drop)* $(#[doc = $doc])* $id = $idx, $label;] $($rest)*);
    };
    (@emit
        [$($(#[doc = $cdoc:literal])* $cid:ident = $cidx:literal, $cname:literal;)*]
        [$($(#[doc = $ddoc:literal])* $did:ident = $didx:literal, $dlabel:literal;)*]
    ) => {
        /// What happened to a packet, other than a drop: an index into `NETD_STATS`.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Counter {
            $($(#[doc = $cdoc])* $cid = $cidx,)*
        }

        /// Why a packet was dropped: an index into `NETD_STATS`, where the drop is counted.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum DropReason {
            $($(#[doc = $ddoc])* $did = $didx,)*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: [Self; [$($cidx),*].len()] = [$(Self::$cid),*];

            /// Its index in `NETD_STATS`.
            #[inline(always)]
            pub const fn index(self) -> u32 {
                self as u32
            }

            pub const fn from_index(index: u32) -> Option<Self> {
                match index {
                    $($cidx => Some(Self::$cid),)*
                    _ => None,
                }
            }

            /// Its name in dumps and metrics (`rx`, `encap`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$cid => $cname,)*
                }
            }
        }

        impl DropReason {
            /// Every reason, in index order.
            pub const ALL: [Self; [$($didx),*].len()] = [$(Self::$did),*];

            /// Its index in `NETD_STATS`.
            #[inline(always)]
            pub const fn index(self) -> u32 {
                self as u32
            }

            pub const fn from_index(index: u32) -> Option<Self> {
                match index {
                    $($didx => Some(Self::$did),)*
                    _ => None,
                }
            }

            /// Its name in dumps and `netd monitor` (`drop-spoofed-mac`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$did => concat!("drop-", $dlabel),)*
                }
            }

            /// Its name without the `drop-` prefix: the metrics' `reason` label (`spoofed-mac`).
            pub const fn label(self) -> &'static str {
                match self {
                    $(Self::$did => $dlabel,)*
                }
            }
        }

        /// Number of counters, drops included (the array's size).
        pub const COUNT: usize = Counter::ALL.len() + DropReason::ALL.len();

        // Indexes must be dense and used once: a gap would be an unnamed counter, a repeat two
        // counters in one slot.
        const _: () = {
            let mut seen = [false; COUNT];
            let indexes = [$($cidx,)* $($didx,)*];
            let mut i = 0;
            while i < indexes.len() {
                assert!((indexes[i] as usize) < COUNT, "counter index out of range");
                assert!(!seen[indexes[i] as usize], "counter index used twice");
                seen[indexes[i] as usize] = true;
                i += 1;
            }
        };
    };
    ($($lines:tt)*) => {
        counters!(@sort [] [] $($lines)*);
    };
}

counters! {
    /// Packets a netd program looked at (both hooks).
    count Rx = 0, "rx";
    /// Packets a netd program sent on (redirected) after handling them.
    count Tx = 1, "tx";
    /// Packets encapsulated towards a remote VTEP.
    count Encap = 2, "encap";
    /// VXLAN packets decapsulated and delivered to a local endpoint.
    count Decap = 3, "decap";
    /// Packets delivered between two endpoints of this host.
    count Local = 4, "local";
    /// ARP requests answered from the neighbour map.
    count ArpReply = 5, "arp-reply";
    /// Uplink packets that are not VXLAN for this host, passed to the stack untouched.
    count Pass = 6, "pass";
    /// Encapsulated packets handed to `bpf_redirect_neigh` (next hop not resolved yet, or
    /// forwarding off on the uplink so that `bpf_fib_lookup` cannot answer).
    count EncapViaNeigh = 7, "encap-via-neigh";

    /// Packet on an interface that carries no registered endpoint.
    drop UnknownEndpoint = 8, "unknown-endpoint";
    /// Shorter than the headers it claims.
    drop Truncated = 9, "truncated";
    /// Source MAC is not the endpoint's own.
    drop SpoofedMac = 10, "spoofed-mac";
    /// Source IPv4 is not the endpoint's own.
    drop SpoofedIp = 11, "spoofed-ip";
    /// EtherType netd does not forward (IPv6, ...; VLAN tags have `vlan-tagged`).
    drop UnsupportedEthertype = 12, "unsupported-ethertype";
    /// Malformed IPv4 header (version, header length, total length).
    drop BadIpv4 = 13, "bad-ipv4";
    /// ARP that is not Ethernet/IPv4 or is inconsistent.
    drop ArpMalformed = 14, "arp-malformed";
    /// ARP whose sender addresses are not the endpoint's own.
    drop ArpSpoofed = 15, "arp-spoofed";
    /// ARP request for an address with no endpoint in the network.
    drop ArpUnknownTarget = 16, "arp-unknown-target";
    /// ARP replies and gratuitous ARP: nothing to answer, never flooded.
    drop ArpNotRequest = 17, "arp-not-request";
    /// Broadcast or multicast destination MAC (no flooding in overlay networks).
    drop Broadcast = 18, "broadcast";
    /// Destination MAC is no endpoint of the network.
    drop UnknownDestination = 19, "unknown-destination";
    /// A container sent VXLAN (UDP to the VXLAN port): never carried, to keep tunnels unforgeable.
    drop VxlanFromEndpoint = 20, "vxlan-from-endpoint";
    /// Encapsulated packet would exceed the underlay MTU (and is not GSO).
    drop Oversize = 21, "oversize";
    /// No underlay route to the remote VTEP.
    drop NoRoute = 22, "no-route";
    /// The kernel refused to grow the packet for encapsulation.
    drop EncapFailed = 23, "encap-failed";
    /// VXLAN to us whose UDP length disagrees with the IPv4 length or is too short.
    drop BadUdpLength = 24, "bad-udp-length";
    /// First fragment of VXLAN to us: netd does not reassemble (outer DF is always set on send).
    drop Fragment = 25, "fragment";
    /// VXLAN header without the I flag.
    drop NoIFlag = 26, "no-i-flag";
    /// VXLAN flags or reserved fields not zero (as the kernel's vxlan driver, unknown extensions are
    /// refused rather than misread).
    drop ReservedBits = 27, "reserved-bits";
    /// VNI 0.
    drop BadVni = 28, "bad-vni";
    /// Outer source is not a VTEP registered for the VNI.
    drop UnknownVtep = 29, "unknown-vtep";
    /// Inner destination MAC is broadcast, multicast or zero.
    drop InnerBroadcast = 30, "inner-broadcast";
    /// Inner frame is not IPv4.
    drop InnerNotIpv4 = 31, "inner-not-ipv4";
    /// Inner destination is not an endpoint of this host in that VNI.
    drop NotLocal = 32, "not-local";
    /// The kernel refused to shrink the packet for decapsulation.
    drop DecapFailed = 33, "decap-failed";
    /// Datapath configuration missing (loader bug).
    drop NoConfig = 34, "no-config";
    /// Inner IPv4 header malformed (version, header length) or longer than the frame carries.
    drop InnerBadIpv4 = 35, "inner-bad-ipv4";
    /// macvlan private mode: endpoints on one parent may not talk to each other.
    drop MacvlanPrivate = 36, "macvlan-private";
    /// macvlan endpoint whose parent is not configured (loader bug or parent gone).
    drop NoParent = 37, "no-parent";
    /// The kernel refused to add or remove a VLAN tag.
    drop VlanFailed = 38, "vlan-failed";

    /// macvlan: frames sent out of a parent.
    count MacvlanTx = 39, "macvlan-tx";
    /// macvlan: frames from a parent delivered to a local endpoint.
    count MacvlanRx = 40, "macvlan-rx";
    /// macvlan: broadcast/multicast frames replicated to local endpoints.
    count MacvlanFlood = 41, "macvlan-flood";
    /// macvlan host access: frames between the host and a local endpoint.
    count MacvlanHost = 42, "macvlan-host";
    /// Encapsulations that asked the kernel's FIB for the next hop (a `NETD_NEXTHOPS` miss or
    /// an expired entry); the others reused the cached outer Ethernet header.
    count EncapFibLookup = 43, "encap-fib-lookup";
    /// ICMP echo requests to a network's gateway address, answered by the program (as the
    /// gateway of Docker's overlay answers them).
    count GatewayReply = 44, "gateway-reply";
    /// Packets routed through the gateway to an endpoint of another subnet of the network.
    count Routed = 45, "routed";
    /// Sent through the gateway to an address no endpoint of the network has (the way out of a
    /// network is Docker's gateway bridge, not netd's gateway).
    drop GatewayNoRoute = 46, "gateway-no-route";
    /// To be routed through the gateway with a TTL of 1 or 0.
    drop TtlExceeded = 47, "ttl-exceeded";
    /// To the gateway address itself, but not an ICMP echo request (nothing else listens there).
    drop ToGateway = 48, "to-gateway";
    /// `netd monitor` events not written: the CPU's events-per-second budget was spent.
    count MonitorRateLimited = 49, "monitor-rate-limited";
    /// `netd monitor` events not written: the ring buffer was full (the monitor fell behind).
    count MonitorRingFull = 50, "monitor-ring-full";
    /// GRO aggregates (one skb of many VXLAN packets) checked like any other and then left to
    /// the kernel's flow-based vxlan device to decapsulate; from-tunnel delivers them.
    count GroToKernel = 51, "gro-to-kernel";
    /// Decapsulated by the kernel's vxlan device, but without tunnel metadata to check.
    drop NoTunnelKey = 52, "no-tunnel-key";
    /// A frame from an endpoint with a VLAN tag (802.1Q or 802.1ad), in the skb's metadata or
    /// in the frame: an endpoint's frames are untagged, and a tag would travel on with the frame
    /// (to the underlay, or under the network's own tag on a macvlan parent).
    drop VlanTagged = 53, "vlan-tagged";
    /// UDP to the VXLAN port from this host's VTEP address, leaving by the uplink, that netd did
    /// not encapsulate (a container's datagram masqueraded to the host's address, a host
    /// process's): only netd's own VXLAN leaves from the VTEP, so no one else's can pass for it.
    drop ForeignVxlan = 54, "foreign-vxlan";
    /// Decapsulated, but the inner source is no endpoint of the sending VTEP in that VNI (its
    /// MAC, or its IPv4 address, registered with another host or none): a VTEP speaks only for
    /// its own endpoints.
    drop InnerSource = 55, "inner-source";
    /// Decapsulated by the GRO device, but not a packet from-uplink checked and handed to it:
    /// the device's socket takes VXLAN from every interface (docker0, `lo`), not only the uplink.
    drop NotFromUplink = 56, "not-from-uplink";
}

/// The name of the counter at `index` (a [`Counter`]'s or a [`DropReason`]'s), for dumps and
/// metrics; `None` for an index out of range.
pub const fn name(index: u32) -> Option<&'static str> {
    if let Some(counter) = Counter::from_index(index) {
        return Some(counter.name());
    }
    match DropReason::from_index(index) {
        Some(reason) => Some(reason.name()),
        None => None,
    }
}

/// Whether the counter at `index` counts a drop reason.
pub const fn is_drop(index: u32) -> bool {
    DropReason::from_index(index).is_some()
}

impl DropReason {
    /// A reason by its name, with or without the `drop-` prefix (`spoofed-mac`,
    /// `drop-spoofed-mac`).
    pub fn from_name(name: &str) -> Option<Self> {
        let label = name.strip_prefix("drop-").unwrap_or(name);
        Self::ALL.into_iter().find(|r| r.label() == label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_a_unique_name() {
        for a in 0..COUNT as u32 {
            let na = name(a).unwrap_or_else(|| panic!("counter {a} has no name"));
            for b in (a + 1)..COUNT as u32 {
                assert_ne!(Some(na), name(b), "{a} and {b} share a name");
            }
        }
        assert_eq!(name(COUNT as u32), None);
    }

    #[test]
    fn drops_are_named_drop() {
        for i in 0..COUNT as u32 {
            let n = name(i).unwrap_or_default();
            assert_eq!(is_drop(i), n.starts_with("drop-"), "{n}");
        }
    }

    #[test]
    fn indexes_and_names_go_both_ways() {
        for reason in DropReason::ALL {
            assert_eq!(DropReason::from_index(reason.index()), Some(reason));
            assert_eq!(DropReason::from_name(reason.name()), Some(reason));
            assert_eq!(DropReason::from_name(reason.label()), Some(reason));
            assert_eq!(Counter::from_index(reason.index()), None);
        }
        for counter in Counter::ALL {
            assert_eq!(Counter::from_index(counter.index()), Some(counter));
            assert_eq!(DropReason::from_name(counter.name()), None);
        }
    }

    /// Indexes are pinned (the array) and on the wire (`netd monitor`'s events): a release
    /// must not move one. These are the first and last of each kind when this list was made.
    #[test]
    fn released_indexes_stay_where_they_are() {
        assert_eq!(Counter::Rx.index(), 0);
        assert_eq!(DropReason::UnknownEndpoint.index(), 8);
        assert_eq!(DropReason::VlanFailed.index(), 38);
        assert_eq!(Counter::GroToKernel.index(), 51);
        assert_eq!(DropReason::NoTunnelKey.index(), 52);
        assert_eq!(DropReason::VlanTagged.index(), 53);
        assert_eq!(DropReason::NotFromUplink.index(), 56);
    }
}
