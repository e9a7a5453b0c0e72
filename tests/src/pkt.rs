//! Frames built with etherparse (an independent encoder: the programs' own header code is not
//! used to make the packets that test it).

use std::net::Ipv4Addr;

use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, PacketBuilder, UdpHeader,
};

/// An ICMP echo request frame.
pub fn icmp_echo(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload_len: usize,
) -> Vec<u8> {
    icmp(src_mac, dst_mac, src, dst, payload_len, false)
}

/// The ICMP echo reply [`icmp_echo`] with the same arguments asks for.
pub fn icmp_echo_reply(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload_len: usize,
) -> Vec<u8> {
    icmp(src_mac, dst_mac, src, dst, payload_len, true)
}

fn icmp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload_len: usize,
    reply: bool,
) -> Vec<u8> {
    let ip = PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(src.octets(), dst.octets(), 64);
    let builder = if reply {
        ip.icmpv4_echo_reply(7, 1)
    } else {
        ip.icmpv4_echo_request(7, 1)
    };
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut out, &payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// A UDP frame with the given TOS byte.
pub fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    tos: u8,
) -> Vec<u8> {
    let mut ip =
        Ipv4Header::new(0, 64, IpNumber::UDP, src.octets(), dst.octets()).expect("valid header");
    ip.dscp = etherparse::Ipv4Dscp::try_new(tos >> 2).expect("6 bits");
    ip.ecn = etherparse::Ipv4Ecn::try_new(tos & 3).expect("2 bits");
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .udp(sport, dport);
    let payload = b"netd test payload";
    let mut out = Vec::new();
    builder
        .write(&mut out, payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// One IPv4 fragment of a UDP datagram: `payload` at `offset` (in 8-byte units) of the
/// datagram, with "more fragments" set when `more`. Only a first fragment (offset 0) starts with
/// the UDP header, and only when `payload` does.
pub fn udp_fragment(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    offset: u16,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("a fragment fits a frame");
    let mut ip =
        Ipv4Header::new(len, 64, IpNumber::UDP, src.octets(), dst.octets()).expect("valid header");
    ip.identification = 0x2424;
    ip.more_fragments = more;
    ip.fragment_offset = IpFragOffset::try_new(offset).expect("13 bits");
    ip.header_checksum = ip.calc_header_checksum();
    ipv4_frame(src_mac, dst_mac, &ip, &[payload])
}

/// An Ethernet frame of `ip` (written as it is, checksum included) and then `rest`, in order.
fn ipv4_frame(src_mac: [u8; 6], dst_mac: [u8; 6], ip: &Ipv4Header, rest: &[&[u8]]) -> Vec<u8> {
    let eth = Ethernet2Header {
        source: src_mac,
        destination: dst_mac,
        ether_type: EtherType::IPV4,
    };
    let mut out = Vec::new();
    eth.write(&mut out).expect("Vec");
    ip.write(&mut out).expect("Vec");
    for part in rest {
        out.extend_from_slice(part);
    }
    out
}

/// An ARP request (who-has `target` tell `sender`).
pub fn arp_request(sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// Outer Ethernet/IPv4/UDP/VXLAN around `inner`, as a remote VTEP sends it.
pub struct Vxlan {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub vni: u32,
}

impl Vxlan {
    pub fn wrap(&self, inner: &[u8]) -> Vec<u8> {
        let mut vx = vec![self.flags, 0, 0, 0];
        vx.extend_from_slice(&self.vni.to_be_bytes()[1..]);
        vx.push(0);
        vx.extend_from_slice(inner);
        let mut ip = Ipv4Header::new(
            (UdpHeader::LEN + vx.len()) as u16,
            64,
            IpNumber::UDP,
            self.src.octets(),
            self.dst.octets(),
        )
        .expect("valid header");
        ip.dont_fragment = true;
        ip.header_checksum = ip.calc_header_checksum();
        let udp = UdpHeader {
            source_port: self.sport,
            destination_port: self.dport,
            length: (UdpHeader::LEN + vx.len()) as u16,
            checksum: 0,
        };
        ipv4_frame(self.src_mac, self.dst_mac, &ip, &[&udp.to_bytes(), &vx])
    }
}

pub fn fmt_mac(mac: &[u8; 6]) -> String {
    netd::datapath::inspect::fmt_mac(mac)
}
