//! Pure header logic on fixed-size byte arrays.
//!
//! The programs call these on packet memory they have bounds-checked (the array types carry the
//! length, so the verifier sees constant offsets); host tests call them on plain arrays. Nothing
//! here allocates, loops over data of unknown length or can panic on the given types.

use crate::stats::DropReason;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
/// VLAN tag protocol identifiers: 802.1Q, and 802.1ad (the outer tag of QinQ).
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPV4_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
pub const VXLAN_HLEN: usize = 8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_ECHO_REPLY: u8 = 0;
/// Outer IPv4 + UDP + VXLAN: what encapsulation inserts between the outer and inner Ethernet
/// headers (the outer Ethernet header reuses the frame's own 14 bytes).
pub const ENCAP_HLEN: usize = IPV4_HLEN + UDP_HLEN + VXLAN_HLEN;
/// Total bytes added in front of the inner frame.
pub const ENCAP_ROOM: usize = ENCAP_HLEN + ETH_HLEN;
/// Outer TTL (docs/architecture.md#vxlan-on-the-wire).
pub const OUTER_TTL: u8 = 64;
/// VXLAN I flag: the VNI is valid (RFC 7348 §5).
pub const VXLAN_FLAG_I: u8 = 0x08;
/// Outer UDP source ports come from the dynamic range (RFC 7348 §5: 49152-65535).
pub const SRC_PORT_MIN: u16 = 49152;
/// `skb->mark` of a GRO aggregate from-uplink checked and left to the GRO device: from-tunnel
/// delivers only packets that carry it (and clears it), since the device's socket also takes
/// VXLAN that arrived on other interfaces. One whole value, compared whole, so that no other
/// user's mark bits pass for it; a mark cannot cross into the host from a container (a veth
/// clears it between namespaces), so only the host's own rules could set it. Nothing else
/// carries across the stack between the two hooks: the control block is the IP layer's.
pub const MARK_UPLINK_CHECKED: u32 = 0x6e64_7678;

/// Whether a MAC may be an endpoint's: not multicast/broadcast (group bit) and not all-zero.
pub const fn is_unicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0
        && !(mac[0] == 0 && mac[1] == 0 && mac[2] == 0 && mac[3] == 0 && mac[4] == 0 && mac[5] == 0)
}

/// EtherType of an Ethernet header (bytes 12-13).
#[inline(always)]
pub fn ethertype(eth: &[u8; ETH_HLEN]) -> u16 {
    u16::from_be_bytes([eth[12], eth[13]])
}

/// One's-complement sum of an IPv4 header with its checksum field taken as zero, folded and
/// inverted: the value to store in bytes 10-11.
#[inline(always)]
pub fn ipv4_checksum(hdr: &[u8; IPV4_HLEN]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IPV4_HLEN {
        if i != 10 {
            sum += u32::from(u16::from_be_bytes([hdr[i], hdr[i + 1]]));
        }
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// A one's-complement checksum after one 16-bit word it covers changed from `old` to `new`
/// (RFC 1624: HC' = ~(~HC + ~m + m')), so that a rewrite need not sum the packet again.
#[inline(always)]
pub const fn checksum_replace(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!check) as u32 + (!old) as u32 + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Decrements an IPv4 header's TTL for a routed hop and mends its checksum; `false` (header
/// untouched) when the TTL would reach 0: the packet must not be forwarded.
#[inline(always)]
pub fn decrement_ttl(hdr: &mut [u8; IPV4_HLEN]) -> bool {
    let ttl = hdr[8];
    if ttl <= 1 {
        return false;
    }
    let old = u16::from_be_bytes([ttl, hdr[9]]);
    let new = u16::from_be_bytes([ttl - 1, hdr[9]]);
    let check = checksum_replace(u16::from_be_bytes([hdr[10], hdr[11]]), old, new);
    hdr[8] = ttl - 1;
    hdr[10..12].copy_from_slice(&check.to_be_bytes());
    true
}

/// Turns the first word and checksum of an ICMP echo request (`type, code, checksum`) into
/// those of the echo reply; the rest of the message is echoed as it is.
#[inline(always)]
pub fn echo_request_to_reply(icmp: &mut [u8; 4]) {
    let old = u16::from_be_bytes([icmp[0], icmp[1]]);
    let new = u16::from_be_bytes([ICMP_ECHO_REPLY, icmp[1]]);
    let check = checksum_replace(u16::from_be_bytes([icmp[2], icmp[3]]), old, new);
    icmp[0] = ICMP_ECHO_REPLY;
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
}

/// Maps a flow hash into the dynamic port range, so that ECMP and RSS on the underlay spread
/// flows and one flow always uses the same port (never reordered).
#[inline(always)]
pub const fn udp_src_port(flow_hash: u32) -> u16 {
    let folded = (flow_hash ^ (flow_hash >> 16)) as u16;
    SRC_PORT_MIN | (folded & 0x3fff)
}

/// A per-flow hash of an inner IPv4 packet (addresses, protocol, and the L4 ports or 0), for
/// packets the kernel has not hashed: cheaper than asking the kernel's flow dissector for one,
/// and as stable. Any good mix will do (murmur3's finalizer here); it only has to keep a flow on
/// one outer source port and spread different flows.
#[inline(always)]
pub const fn flow_hash(src: [u8; 4], dst: [u8; 4], proto: u8, ports: u32) -> u32 {
    let mut h = u32::from_ne_bytes(src)
        ^ u32::from_ne_bytes(dst).rotate_left(16)
        ^ ports.wrapping_mul(0x9e37_79b1)
        ^ proto as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// What the outer headers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterParams {
    pub src_vtep: [u8; 4],
    pub dst_vtep: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub vni: u32,
    /// Inner IPv4 TOS byte: DSCP and ECN are copied to the outer header (RFC 6040 normal mode).
    pub tos: u8,
    /// Length of the inner Ethernet frame (inner Ethernet header included).
    pub inner_len: u16,
}

/// Writes the outer IPv4, UDP and VXLAN headers.
///
/// DF policy: the outer DF bit is always set. netd sizes container MTUs to fit the underlay
/// (underlay MTU - 50), refuses (and counts) what would not fit, and so never relies on underlay
/// fragmentation, which a TC decap hook could not reassemble anyway. The IPv4 ID is 0, as
/// RFC 6864 allows for atomic datagrams. The UDP checksum is 0 (RFC 7348 §5, IPv4).
#[inline(always)]
pub fn write_outer_headers(out: &mut [u8; ENCAP_HLEN], p: &OuterParams) {
    let ip_len = (ENCAP_HLEN as u16).wrapping_add(p.inner_len);
    let udp_len = ((UDP_HLEN + VXLAN_HLEN) as u16).wrapping_add(p.inner_len);
    let mut ip = [0u8; IPV4_HLEN];
    ip[0] = 0x45;
    ip[1] = p.tos;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    // ID 0, flags DF, fragment offset 0.
    ip[6] = 0x40;
    ip[8] = OUTER_TTL;
    ip[9] = IPPROTO_UDP;
    ip[12..16].copy_from_slice(&p.src_vtep);
    ip[16..20].copy_from_slice(&p.dst_vtep);
    let csum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    out[..IPV4_HLEN].copy_from_slice(&ip);

    let udp = &mut out[IPV4_HLEN..IPV4_HLEN + UDP_HLEN];
    udp[0..2].copy_from_slice(&p.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&p.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);

    let vx = &mut out[IPV4_HLEN + UDP_HLEN..];
    vx.copy_from_slice(&vxlan_header(p.vni));
}

/// A VXLAN header: I flag, reserved fields zero.
#[inline(always)]
pub const fn vxlan_header(vni: u32) -> [u8; VXLAN_HLEN] {
    [
        VXLAN_FLAG_I,
        0,
        0,
        0,
        (vni >> 16) as u8,
        (vni >> 8) as u8,
        vni as u8,
        0,
    ]
}

/// Validates a received VXLAN header and returns its VNI, or the drop reason.
#[inline(always)]
pub fn parse_vxlan_header(vx: &[u8; VXLAN_HLEN]) -> Result<u32, DropReason> {
    if vx[0] & VXLAN_FLAG_I == 0 {
        return Err(DropReason::NoIFlag);
    }
    if vx[0] != VXLAN_FLAG_I || vx[1] != 0 || vx[2] != 0 || vx[3] != 0 || vx[7] != 0 {
        return Err(DropReason::ReservedBits);
    }
    let vni = (u32::from(vx[4]) << 16) | (u32::from(vx[5]) << 8) | u32::from(vx[6]);
    if vni == 0 {
        return Err(DropReason::BadVni);
    }
    Ok(vni)
}

/// Byte offsets inside an Ethernet/IPv4 ARP packet (after the Ethernet header).
pub mod arp {
    pub const LEN: usize = 28;
    pub const OP_REQUEST: u16 = 1;
    pub const OP_REPLY: u16 = 2;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

/// An ARP request, checked against the endpoint that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRequest {
    pub target_ip: [u8; 4],
}

/// Full Ethernet + ARP frame.
pub const ARP_FRAME_LEN: usize = ETH_HLEN + arp::LEN;

/// Checks an ARP frame sent by an endpoint (`own_mac`, `own_ip`): it must be an Ethernet/IPv4
/// request whose sender is the endpoint itself (0.0.0.0 allowed: an RFC 5227 probe).
#[inline(always)]
pub fn parse_arp_request(
    frame: &[u8; ARP_FRAME_LEN],
    own_mac: &[u8; 6],
    own_ip: &[u8; 4],
) -> Result<ArpRequest, DropReason> {
    check_arp_sender(frame, own_mac, own_ip)?;
    let a = ETH_HLEN;
    let op = u16::from_be_bytes([frame[a + 6], frame[a + 7]]);
    if op != arp::OP_REQUEST {
        return Err(DropReason::ArpNotRequest);
    }
    let target_ip = [
        frame[a + arp::TPA],
        frame[a + arp::TPA + 1],
        frame[a + arp::TPA + 2],
        frame[a + arp::TPA + 3],
    ];
    // A request for one's own address (gratuitous ARP, duplicate detection) must get no answer.
    if target_ip == *own_ip {
        return Err(DropReason::ArpNotRequest);
    }
    Ok(ArpRequest { target_ip })
}

/// Checks that an ARP frame is Ethernet/IPv4 and that its sender is the endpoint (`own_mac`,
/// `own_ip`; 0.0.0.0 allowed for probes): the anti-spoofing rule for ARP of any operation.
#[inline(always)]
pub fn check_arp_sender(
    frame: &[u8; ARP_FRAME_LEN],
    own_mac: &[u8; 6],
    own_ip: &[u8; 4],
) -> Result<(), DropReason> {
    let a = ETH_HLEN;
    // htype 1 (Ethernet), ptype 0x0800, hlen 6, plen 4.
    if frame[a] != 0 || frame[a + 1] != 1 || frame[a + 2] != 0x08 || frame[a + 3] != 0 {
        return Err(DropReason::ArpMalformed);
    }
    if frame[a + 4] != 6 || frame[a + 5] != 4 {
        return Err(DropReason::ArpMalformed);
    }
    let sha = [
        frame[a + arp::SHA],
        frame[a + arp::SHA + 1],
        frame[a + arp::SHA + 2],
        frame[a + arp::SHA + 3],
        frame[a + arp::SHA + 4],
        frame[a + arp::SHA + 5],
    ];
    let spa = [
        frame[a + arp::SPA],
        frame[a + arp::SPA + 1],
        frame[a + arp::SPA + 2],
        frame[a + arp::SPA + 3],
    ];
    if sha != *own_mac || (spa != *own_ip && spa != [0; 4]) {
        return Err(DropReason::ArpSpoofed);
    }
    Ok(())
}

/// Turns a request (already checked by [`parse_arp_request`]) into the reply `target_mac` would
/// send, in place: Ethernet addresses swapped, operation 2, sender/target swapped.
#[inline(always)]
pub fn write_arp_reply(frame: &mut [u8; ARP_FRAME_LEN], target_mac: &[u8; 6]) {
    let a = ETH_HLEN;
    let mut requester_mac = [0u8; 6];
    requester_mac.copy_from_slice(&frame[a + arp::SHA..a + arp::SHA + 6]);
    let mut requester_ip = [0u8; 4];
    requester_ip.copy_from_slice(&frame[a + arp::SPA..a + arp::SPA + 4]);
    let mut target_ip = [0u8; 4];
    target_ip.copy_from_slice(&frame[a + arp::TPA..a + arp::TPA + 4]);

    frame[0..6].copy_from_slice(&requester_mac);
    frame[6..12].copy_from_slice(target_mac);
    frame[a + 6..a + 8].copy_from_slice(&arp::OP_REPLY.to_be_bytes());
    frame[a + arp::SHA..a + arp::SHA + 6].copy_from_slice(target_mac);
    frame[a + arp::SPA..a + arp::SPA + 4].copy_from_slice(&target_ip);
    frame[a + arp::THA..a + arp::THA + 6].copy_from_slice(&requester_mac);
    frame[a + arp::TPA..a + arp::TPA + 4].copy_from_slice(&requester_ip);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum of a whole buffer, as a receiver checks it (0 when valid... here: the sum).
    fn ones_sum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn a_routed_hop_keeps_the_ipv4_checksum_valid() {
        let mut hdr = [0u8; IPV4_HLEN];
        hdr[0] = 0x45;
        hdr[3] = 84;
        hdr[8] = 64;
        hdr[9] = IPPROTO_ICMP;
        hdr[12..16].copy_from_slice(&[10, 0, 0, 1]);
        hdr[16..20].copy_from_slice(&[10, 1, 0, 2]);
        let check = ipv4_checksum(&hdr);
        hdr[10..12].copy_from_slice(&check.to_be_bytes());
        assert!(decrement_ttl(&mut hdr));
        assert_eq!(hdr[8], 63);
        assert_eq!(ones_sum(&hdr), 0xffff, "checksum no longer valid");
        assert_eq!(u16::from_be_bytes([hdr[10], hdr[11]]), ipv4_checksum(&hdr));
        hdr[8] = 1;
        assert!(!decrement_ttl(&mut hdr), "TTL 1 is not forwarded");
    }

    #[test]
    fn an_echo_reply_has_a_valid_icmp_checksum() {
        // type 8, code 0, checksum, id 0x1234, seq 1, 4 bytes of data.
        let mut msg = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g'];
        let check = !ones_sum(&msg);
        msg[2..4].copy_from_slice(&check.to_be_bytes());
        let mut head = [msg[0], msg[1], msg[2], msg[3]];
        echo_request_to_reply(&mut head);
        msg[..4].copy_from_slice(&head);
        assert_eq!(msg[0], ICMP_ECHO_REPLY);
        assert_eq!(ones_sum(&msg), 0xffff);
    }

    #[test]
    fn flow_hash_is_stable_per_flow_and_spreads_flows_over_source_ports() {
        let (a, b) = ([172, 31, 0, 11], [172, 31, 0, 12]);
        assert_eq!(
            flow_hash(a, b, 17, 0x1234_5678),
            flow_hash(a, b, 17, 0x1234_5678)
        );
        let mut ports = [0u16; 64];
        for (i, port) in ports.iter_mut().enumerate() {
            *port = udp_src_port(flow_hash(a, b, 17, 40000 + i as u32));
        }
        assert!(ports.iter().all(|&p| p >= SRC_PORT_MIN));
        ports.sort_unstable();
        let distinct = 1 + ports.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(distinct > 56, "64 flows on {distinct} ports");
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // A well-known header (Wikipedia's IPv4 checksum example): checksum 0xb861.
        let hdr: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&hdr), 0xb861);
    }

    #[test]
    fn checksum_ignores_the_checksum_field() {
        let mut hdr = [0x45u8; 20];
        let a = ipv4_checksum(&hdr);
        hdr[10] = 0xde;
        hdr[11] = 0xad;
        assert_eq!(ipv4_checksum(&hdr), a);
    }

    #[test]
    fn src_port_stays_in_dynamic_range_and_is_stable() {
        for h in [0u32, 1, 0xffff, 0x1_0000, 0xdead_beef, u32::MAX] {
            let p = udp_src_port(h);
            assert!(p >= SRC_PORT_MIN, "{p}");
            assert_eq!(p, udp_src_port(h));
        }
        assert_ne!(udp_src_port(1), udp_src_port(2));
    }

    #[test]
    fn outer_headers_are_rfc7348() {
        let mut out = [0xaa; ENCAP_HLEN];
        let p = OuterParams {
            src_vtep: [10, 0, 0, 1],
            dst_vtep: [10, 0, 0, 2],
            src_port: 50000,
            dst_port: 4789,
            vni: 0x12_3456,
            tos: 0xb8,
            inner_len: 98,
        };
        write_outer_headers(&mut out, &p);
        assert_eq!(out[0], 0x45);
        assert_eq!(out[1], 0xb8);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 36 + 98);
        assert_eq!(&out[4..8], &[0, 0, 0x40, 0]);
        assert_eq!(out[8], 64);
        assert_eq!(out[9], 17);
        let mut ip = [0u8; 20];
        ip.copy_from_slice(&out[..20]);
        assert_eq!(u16::from_be_bytes([out[10], out[11]]), ipv4_checksum(&ip));
        assert_eq!(&out[12..20], &[10, 0, 0, 1, 10, 0, 0, 2]);
        assert_eq!(u16::from_be_bytes([out[20], out[21]]), 50000);
        assert_eq!(u16::from_be_bytes([out[22], out[23]]), 4789);
        assert_eq!(u16::from_be_bytes([out[24], out[25]]), 16 + 98);
        assert_eq!(&out[26..28], &[0, 0]);
        assert_eq!(&out[28..36], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        assert_eq!(parse_vxlan_header(&vxlan_header(0x12_3456)), Ok(0x12_3456));
    }

    #[test]
    fn vxlan_header_validation() {
        assert_eq!(
            parse_vxlan_header(&[0, 0, 0, 0, 0, 0, 1, 0]),
            Err(DropReason::NoIFlag)
        );
        assert_eq!(
            parse_vxlan_header(&[0x08, 0, 0, 0, 0, 0, 0, 0]),
            Err(DropReason::BadVni)
        );
        for (i, b) in [(0usize, 0x88u8), (1, 1), (2, 1), (3, 1), (7, 1)] {
            let mut h = vxlan_header(7);
            h[i] |= b;
            assert_eq!(
                parse_vxlan_header(&h),
                Err(DropReason::ReservedBits),
                "byte {i}"
            );
        }
        assert_eq!(
            parse_vxlan_header(&vxlan_header(crate::VNI_MAX)),
            Ok(crate::VNI_MAX)
        );
    }

    fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4], op: u16) -> [u8; ARP_FRAME_LEN] {
        let mut f = [0u8; ARP_FRAME_LEN];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&sha);
        f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 0]);
        f[20..22].copy_from_slice(&op.to_be_bytes());
        f[22..28].copy_from_slice(&sha);
        f[28..32].copy_from_slice(&spa);
        f[38..42].copy_from_slice(&tpa);
        f
    }

    #[test]
    fn arp_request_becomes_the_targets_reply() {
        let me = [2, 0, 0, 0, 0, 1];
        let other = [2, 0, 0, 0, 0, 2];
        let mut f = arp_request(me, [10, 1, 0, 1], [10, 1, 0, 2], arp::OP_REQUEST);
        let req = parse_arp_request(&f, &me, &[10, 1, 0, 1]);
        assert_eq!(
            req,
            Ok(ArpRequest {
                target_ip: [10, 1, 0, 2]
            })
        );
        write_arp_reply(&mut f, &other);
        assert_eq!(&f[0..6], &me);
        assert_eq!(&f[6..12], &other);
        assert_eq!(&f[20..22], &[0, 2]);
        assert_eq!(&f[22..28], &other);
        assert_eq!(&f[28..32], &[10, 1, 0, 2]);
        assert_eq!(&f[32..38], &me);
        assert_eq!(&f[38..42], &[10, 1, 0, 1]);
    }

    #[test]
    fn arp_refusals() {
        let me = [2, 0, 0, 0, 0, 1];
        let ip = [10, 1, 0, 1];
        let f = arp_request([2, 0, 0, 0, 0, 9], ip, [10, 1, 0, 2], 1);
        assert_eq!(parse_arp_request(&f, &me, &ip), Err(DropReason::ArpSpoofed));
        let f = arp_request(me, [10, 1, 0, 9], [10, 1, 0, 2], 1);
        assert_eq!(parse_arp_request(&f, &me, &ip), Err(DropReason::ArpSpoofed));
        let f = arp_request(me, ip, [10, 1, 0, 2], 2);
        assert_eq!(
            parse_arp_request(&f, &me, &ip),
            Err(DropReason::ArpNotRequest)
        );
        let f = arp_request(me, ip, ip, 1);
        assert_eq!(
            parse_arp_request(&f, &me, &ip),
            Err(DropReason::ArpNotRequest)
        );
        let mut f = arp_request(me, ip, [10, 1, 0, 2], 1);
        f[18] = 16;
        assert_eq!(
            parse_arp_request(&f, &me, &ip),
            Err(DropReason::ArpMalformed)
        );
        // Probe (sender 0.0.0.0) is answered.
        let f = arp_request(me, [0; 4], [10, 1, 0, 2], 1);
        assert!(parse_arp_request(&f, &me, &ip).is_ok());
    }

    #[test]
    fn unicast_mac() {
        assert!(is_unicast_mac(&[2, 0, 0, 0, 0, 1]));
        assert!(!is_unicast_mac(&[0; 6]));
        assert!(!is_unicast_mac(&[0xff; 6]));
        assert!(!is_unicast_mac(&[0x01, 0, 0x5e, 0, 0, 1]));
    }
}
