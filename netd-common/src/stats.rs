//! Indexes into the per-CPU `NETD_STATS` array: what happened to each packet a program saw.
//!
//! Outcome counters come first, drop reasons after [`FIRST_DROP`]. Every drop the programs make is
//! counted under exactly one reason, so `netd maps dump NETD_STATS` explains every lost packet.

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $id:ident = $idx:literal, $name:literal; )*) => {
        $( $(#[doc = $doc])* pub const $id: u32 = $idx; )*

        /// Number of counters (the array's size).
        pub const COUNT: usize = [$($idx),*].len();

        /// Name of a counter, for dumps and metrics; `None` for an index out of range.
        pub const fn name(index: u32) -> Option<&'static str> {
            match index {
                $( $idx => Some($name), )*
                _ => None,
            }
        }

        const _: () = {
            // Indexes must be dense and in order: a gap would be an unnamed counter.
            let idx = [$($idx),*];
            let mut i = 0;
            while i < idx.len() {
                assert!(idx[i] == i as u32);
                i += 1;
            }
        };
    };
}

counters! {
    /// Packets a netd program looked at (both hooks).
    RX = 0, "rx";
    /// Packets a netd program sent on (redirected) after handling them.
    TX = 1, "tx";
    /// Packets encapsulated towards a remote VTEP.
    ENCAP = 2, "encap";
    /// VXLAN packets decapsulated and delivered to a local endpoint.
    DECAP = 3, "decap";
    /// Packets delivered between two endpoints of this host.
    LOCAL = 4, "local";
    /// ARP requests answered from the neighbour map.
    ARP_REPLY = 5, "arp-reply";
    /// Uplink packets that are not VXLAN for this host, passed to the stack untouched.
    PASS = 6, "pass";
    /// Encapsulated packets handed to `bpf_redirect_neigh` (next hop not resolved yet, or
    /// forwarding off on the uplink so that `bpf_fib_lookup` cannot answer).
    ENCAP_VIA_NEIGH = 7, "encap-via-neigh";

    /// Packet on an interface that carries no registered endpoint.
    DROP_UNKNOWN_ENDPOINT = 8, "drop-unknown-endpoint";
    /// Shorter than the headers it claims.
    DROP_TRUNCATED = 9, "drop-truncated";
    /// Source MAC is not the endpoint's own.
    DROP_SPOOFED_MAC = 10, "drop-spoofed-mac";
    /// Source IPv4 is not the endpoint's own.
    DROP_SPOOFED_IP = 11, "drop-spoofed-ip";
    /// EtherType netd does not forward (IPv6, VLAN-tagged, ...).
    DROP_UNSUPPORTED_ETHERTYPE = 12, "drop-unsupported-ethertype";
    /// Malformed IPv4 header (version, header length, total length).
    DROP_BAD_IPV4 = 13, "drop-bad-ipv4";
    /// ARP that is not Ethernet/IPv4 or is inconsistent.
    DROP_ARP_MALFORMED = 14, "drop-arp-malformed";
    /// ARP whose sender addresses are not the endpoint's own.
    DROP_ARP_SPOOFED = 15, "drop-arp-spoofed";
    /// ARP request for an address with no endpoint in the network.
    DROP_ARP_UNKNOWN_TARGET = 16, "drop-arp-unknown-target";
    /// ARP replies and gratuitous ARP: nothing to answer, never flooded.
    DROP_ARP_NOT_REQUEST = 17, "drop-arp-not-request";
    /// Broadcast or multicast destination MAC (no flooding in overlay networks).
    DROP_BROADCAST = 18, "drop-broadcast";
    /// Destination MAC is no endpoint of the network.
    DROP_UNKNOWN_DESTINATION = 19, "drop-unknown-destination";
    /// A container sent VXLAN (UDP to the VXLAN port): never carried, to keep tunnels unforgeable.
    DROP_VXLAN_FROM_ENDPOINT = 20, "drop-vxlan-from-endpoint";
    /// Encapsulated packet would exceed the underlay MTU (and is not GSO).
    DROP_OVERSIZE = 21, "drop-oversize";
    /// No underlay route to the remote VTEP.
    DROP_NO_ROUTE = 22, "drop-no-route";
    /// The kernel refused to grow the packet for encapsulation.
    DROP_ENCAP_FAILED = 23, "drop-encap-failed";
    /// VXLAN to us whose UDP length disagrees with the IPv4 length or is too short.
    DROP_BAD_UDP_LENGTH = 24, "drop-bad-udp-length";
    /// First fragment of VXLAN to us: netd does not reassemble (outer DF is always set on send).
    DROP_FRAGMENT = 25, "drop-fragment";
    /// VXLAN header without the I flag.
    DROP_NO_I_FLAG = 26, "drop-no-i-flag";
    /// VXLAN flags or reserved fields not zero (as the kernel's vxlan driver, unknown extensions are
    /// refused rather than misread).
    DROP_RESERVED_BITS = 27, "drop-reserved-bits";
    /// VNI 0.
    DROP_BAD_VNI = 28, "drop-bad-vni";
    /// Outer source is not a VTEP registered for the VNI.
    DROP_UNKNOWN_VTEP = 29, "drop-unknown-vtep";
    /// Inner destination MAC is broadcast, multicast or zero.
    DROP_INNER_BROADCAST = 30, "drop-inner-broadcast";
    /// Inner frame is not IPv4.
    DROP_INNER_NOT_IPV4 = 31, "drop-inner-not-ipv4";
    /// Inner destination is not an endpoint of this host in that VNI.
    DROP_NOT_LOCAL = 32, "drop-not-local";
    /// The kernel refused to shrink the packet for decapsulation.
    DROP_DECAP_FAILED = 33, "drop-decap-failed";
    /// Datapath configuration missing (loader bug).
    DROP_NO_CONFIG = 34, "drop-no-config";
    /// Inner IPv4 header malformed (version, header length) or longer than the frame carries.
    DROP_INNER_BAD_IPV4 = 35, "drop-inner-bad-ipv4";
    /// macvlan private mode: endpoints on one parent may not talk to each other.
    DROP_MACVLAN_PRIVATE = 36, "drop-macvlan-private";
    /// macvlan endpoint whose parent is not configured (loader bug or parent gone).
    DROP_NO_PARENT = 37, "drop-no-parent";
    /// The kernel refused to add or remove a VLAN tag.
    DROP_VLAN_FAILED = 38, "drop-vlan-failed";

    /// macvlan: frames sent out of a parent.
    MACVLAN_TX = 39, "macvlan-tx";
    /// macvlan: frames from a parent delivered to a local endpoint.
    MACVLAN_RX = 40, "macvlan-rx";
    /// macvlan: broadcast/multicast frames replicated to local endpoints.
    MACVLAN_FLOOD = 41, "macvlan-flood";
    /// macvlan host access: frames between the host and a local endpoint.
    MACVLAN_HOST = 42, "macvlan-host";
    /// Encapsulations that asked the kernel's FIB for the next hop (a `NETD_NEXTHOPS` miss or
    /// an expired entry); the others reused the cached outer Ethernet header.
    ENCAP_FIB_LOOKUP = 43, "encap-fib-lookup";
    /// ICMP echo requests to a network's gateway address, answered by the program (as the
    /// gateway of Docker's overlay answers them).
    GATEWAY_REPLY = 44, "gateway-reply";
    /// Packets routed through the gateway to an endpoint of another subnet of the network.
    ROUTED = 45, "routed";
    /// Sent through the gateway to an address no endpoint of the network has (the way out of a
    /// network is Docker's gateway bridge, not netd's gateway).
    DROP_GATEWAY_NO_ROUTE = 46, "drop-gateway-no-route";
    /// To be routed through the gateway with a TTL of 1 or 0.
    DROP_TTL_EXCEEDED = 47, "drop-ttl-exceeded";
    /// To the gateway address itself, but not an ICMP echo request (nothing else listens there).
    DROP_TO_GATEWAY = 48, "drop-to-gateway";
    /// `netd monitor` events not written: the CPU's events-per-second budget was spent.
    MONITOR_RATE_LIMITED = 49, "monitor-rate-limited";
    /// `netd monitor` events not written: the ring buffer was full (the monitor fell behind).
    MONITOR_RING_FULL = 50, "monitor-ring-full";
    /// GRO aggregates (one skb of many VXLAN packets) checked like any other and then left to
    /// the kernel's flow-based vxlan device to decapsulate; from-tunnel delivers them.
    GRO_TO_KERNEL = 51, "gro-to-kernel";
    /// Decapsulated by the kernel's vxlan device, but without tunnel metadata to check.
    DROP_NO_TUNNEL_KEY = 52, "drop-no-tunnel-key";
}

/// Drop reasons: the first block of them, and those added later (appended, so that existing
/// indexes never move).
pub const FIRST_DROP: u32 = DROP_UNKNOWN_ENDPOINT;
pub const LAST_DROP: u32 = DROP_VLAN_FAILED;
const LATER_DROPS: [u32; 4] = [
    DROP_GATEWAY_NO_ROUTE,
    DROP_TTL_EXCEEDED,
    DROP_TO_GATEWAY,
    DROP_NO_TUNNEL_KEY,
];

/// Whether a counter index is a drop reason.
pub const fn is_drop(index: u32) -> bool {
    if index >= FIRST_DROP && index <= LAST_DROP {
        return true;
    }
    let mut i = 0;
    while i < LATER_DROPS.len() {
        if LATER_DROPS[i] == index {
            return true;
        }
        i += 1;
    }
    false
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
}
