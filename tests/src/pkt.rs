//! Frames built with etherparse (an independent encoder: the programs' own header code is not
//! used to make the packets that test it), and a packet socket that sends them as they are.

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, PacketBuilder, UdpHeader,
};

use crate::netns::Netns;

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

/// `frame` with a VLAN tag (`tpid` 0x8100 or 0x88a8, then the TCI) inserted after its MACs, as
/// a sender puts it on the wire.
pub fn vlan_tagged(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
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

/// A packet socket bound to one interface of a namespace: it sends frames byte for byte, as a
/// container with CAP_NET_RAW can, past its own stack. Opened for protocol 0, it receives
/// nothing; the kernel reads each frame's protocol from its EtherType.
pub struct RawSocket(OwnedFd);

impl RawSocket {
    /// Opens the socket inside `ns` (where it stays) on `ifname`.
    pub fn open(ns: &Netns, ifname: &str) -> anyhow::Result<Self> {
        let ifindex = ns.ifindex(ifname)?;
        let socket = {
            let _inside = netd::netns::enter(&ns.path())?;
            // SAFETY: a plain syscall; the result is checked before use.
            let fd =
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            anyhow::ensure!(
                fd >= 0,
                "cannot open a packet socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            unsafe { OwnedFd::from_raw_fd(fd) }
        };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = i32::try_from(ifindex)?;
        // SAFETY: `addr` is a valid sockaddr_ll and the length says so.
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        anyhow::ensure!(
            rc == 0,
            "cannot bind the packet socket to {ifname}: {}",
            std::io::Error::last_os_error()
        );
        Ok(Self(socket))
    }

    /// Sends one frame (ENOBUFS when the interface's queue is full: the caller decides).
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: the buffer and its length come from the same slice.
        let rc = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

pub fn fmt_mac(mac: &[u8; 6]) -> String {
    netd::datapath::inspect::fmt_mac(mac)
}
