#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]

//! Golden packet tests: each datapath path run through BPF_PROG_TEST_RUN on a packet built with
//! etherparse, with exact output bytes, the verdict and the counters checked; and one test per
//! drop reason.

use etherparse::{NetSlice, SlicedPacket, TransportSlice, UdpHeader};
use netd::datapath::Hook;
use netd_common::packet::{ETH_P_8021AD, ETH_P_8021Q, MARK_UPLINK_CHECKED, SRC_PORT_MIN};
use netd_tests::{
    pkt,
    testrun::{
        EP_A, EP_B, LOCAL_VTEP, NEXT_HOP_MAC, PacketLab, REMOTE, REMOTE_UNRESOLVED,
        REMOTE_UNROUTABLE, REMOTE_VTEP, Skb, TC_ACT_PASS, TC_ACT_REDIRECT, TC_ACT_SHOT, VNI,
        VXLAN_PORT,
    },
};

fn lab() -> PacketLab {
    PacketLab::new().expect("packet lab (needs root and a BPF-capable kernel)")
}

fn counted(run: &netd_tests::testrun::Run, names: &[&str]) {
    let mut got: Vec<_> = run.counted.keys().copied().collect();
    got.sort_unstable();
    let mut want = names.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "counters incremented by this packet");
}

#[test]
fn arp_request_is_answered_with_the_targets_mac() {
    let lab = lab();
    let request = pkt::arp_request(EP_A.1, EP_A.0, REMOTE.0);
    let run = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &request).unwrap();
    assert_eq!(run.verdict, TC_ACT_REDIRECT);
    let mut reply = Vec::new();
    reply.extend_from_slice(&EP_A.1); // to the asker
    reply.extend_from_slice(&REMOTE.1); // from the target
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&REMOTE.1);
    reply.extend_from_slice(&REMOTE.0.octets());
    reply.extend_from_slice(&EP_A.1);
    reply.extend_from_slice(&EP_A.0.octets());
    assert_eq!(run.out, reply);
    counted(&run, &["rx", "arp-reply", "tx"]);
}

#[test]
fn local_delivery_leaves_the_frame_untouched() {
    let lab = lab();
    let frame = pkt::icmp_echo(EP_A.1, EP_B.1, EP_A.0, EP_B.0, 56);
    let run = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &frame).unwrap();
    assert_eq!(run.verdict, TC_ACT_REDIRECT);
    assert_eq!(run.out, frame);
    counted(&run, &["rx", "local", "tx"]);
}

#[test]
fn encap_builds_rfc7348_outer_headers() {
    let lab = lab();
    let inner = pkt::udp(EP_A.1, REMOTE.1, EP_A.0, REMOTE.0, 40000, 53, 0xb8);
    let run = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &inner).unwrap();
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "{:?}", run.counted);
    counted(&run, &["rx", "encap", "encap-fib-lookup", "tx"]);
    let out = &run.out;
    assert_eq!(out.len(), inner.len() + 50);

    // Outer Ethernet: next hop from the neighbour table, source = the uplink's MAC.
    assert_eq!(&out[0..6], &NEXT_HOP_MAC);
    assert_eq!(&out[6..12], &lab.uplink_mac);
    assert_eq!(&out[12..14], &[0x08, 0x00]);

    let parsed = SlicedPacket::from_ethernet(out).expect("outer parses");
    let Some(NetSlice::Ipv4(ipv4)) = parsed.net else {
        panic!("outer is not IPv4");
    };
    let ip = ipv4.header();
    assert_eq!(ip.source_addr(), LOCAL_VTEP);
    assert_eq!(ip.destination_addr(), REMOTE_VTEP);
    assert_eq!(ip.ttl(), 64);
    assert!(ip.dont_fragment(), "DF policy: always set");
    assert_eq!(ip.identification(), 0);
    assert_eq!(ip.dcp().value(), 0xb8 >> 2, "inner DSCP copied");
    assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
    assert_eq!(usize::from(ip.total_len()), inner.len() + 36);
    let Some(TransportSlice::Udp(udp)) = parsed.transport else {
        panic!("outer is not UDP");
    };
    assert_eq!(udp.destination_port(), VXLAN_PORT);
    assert!(udp.source_port() >= SRC_PORT_MIN);
    assert_eq!(udp.checksum(), 0, "IPv4 VXLAN UDP checksum is 0");
    assert_eq!(usize::from(udp.length()), inner.len() + 16);
    // VXLAN: I flag, reserved zero, VNI.
    let vni = VNI.to_be_bytes();
    assert_eq!(&out[42..50], &[0x08, 0, 0, 0, vni[1], vni[2], vni[3], 0]);
    // The inner frame, byte for byte.
    assert_eq!(&out[50..], &inner[..]);

    // The next packet to that VTEP takes the cached next hop: same bytes, no FIB lookup.
    let again = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &inner).unwrap();
    counted(&again, &["rx", "encap", "tx"]);
    assert_eq!(again.out, run.out);
    // The source port is a stable function of the flow.
    assert_eq!(&again.out[34..36], &out[34..36]);
    let ports: std::collections::HashSet<[u8; 2]> = (0..16u16)
        .map(|i| {
            let f = pkt::udp(EP_A.1, REMOTE.1, EP_A.0, REMOTE.0, 40000 + i, 53, 0);
            let r = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &f).unwrap();
            [r.out[34], r.out[35]]
        })
        .collect();
    assert!(ports.len() > 8, "flows spread over source ports: {ports:?}");
}

#[test]
fn encap_to_an_unresolved_next_hop_is_handed_to_redirect_neigh() {
    let lab = lab();
    let inner = pkt::icmp_echo(EP_A.1, REMOTE_UNRESOLVED.1, EP_A.0, REMOTE_UNRESOLVED.0, 8);
    let run = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &inner).unwrap();
    assert_eq!(run.verdict, TC_ACT_REDIRECT);
    counted(
        &run,
        &["rx", "encap", "encap-fib-lookup", "encap-via-neigh", "tx"],
    );
    assert_eq!(&run.out[50..], &inner[..]);
}

#[test]
fn encap_without_forwarding_is_handed_to_redirect_neigh() {
    let lab = lab();
    lab.ns
        .exec("sysctl", &["-qw", "net.ipv4.conf.up0.forwarding=0"])
        .unwrap();
    let inner = pkt::icmp_echo(EP_A.1, REMOTE.1, EP_A.0, REMOTE.0, 8);
    let run = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &inner).unwrap();
    assert_eq!(run.verdict, TC_ACT_REDIRECT);
    counted(
        &run,
        &["rx", "encap", "encap-fib-lookup", "encap-via-neigh", "tx"],
    );
    assert_eq!(&run.out[50..], &inner[..]);
}

#[test]
fn decap_delivers_the_inner_frame() {
    let lab = lab();
    let inner = pkt::icmp_echo(REMOTE.1, EP_B.1, REMOTE.0, EP_B.0, 56);
    let outer = pkt::Vxlan {
        src_mac: NEXT_HOP_MAC,
        dst_mac: lab.uplink_mac,
        src: REMOTE_VTEP,
        dst: LOCAL_VTEP,
        sport: 50123,
        dport: VXLAN_PORT,
        flags: 0x08,
        vni: VNI,
    }
    .wrap(&inner);
    let run = lab.run(Hook::Uplink, lab.uplink_ifindex, &outer).unwrap();
    assert_eq!(run.verdict, TC_ACT_REDIRECT);
    assert_eq!(run.out, inner);
    counted(&run, &["rx", "decap", "tx"]);
}

#[test]
fn uplink_passes_what_is_not_vxlan_for_us() {
    let lab = lab();
    let frame = pkt::udp(
        NEXT_HOP_MAC,
        lab.uplink_mac,
        REMOTE_VTEP,
        LOCAL_VTEP,
        1000,
        53,
        0,
    );
    let run = lab.run(Hook::Uplink, lab.uplink_ifindex, &frame).unwrap();
    assert_eq!(run.verdict, TC_ACT_PASS);
    assert_eq!(run.out, frame);
    counted(&run, &["rx", "pass"]);
}

/// Issue 24, "Some UDP sizes are always dropped": only a datagram's first fragment carries its
/// UDP header, so only a first fragment is checked for the VXLAN port. A later fragment's first
/// bytes are payload: of 1-7 bytes they are shorter than a UDP header, and where a header's
/// destination port would be they may hold anything, also the VXLAN port's number.
#[test]
fn no_udp_size_is_always_dropped() {
    let lab = lab();
    let fragment = |offset, more, payload: &[u8]| {
        pkt::udp_fragment(EP_A.1, EP_B.1, EP_A.0, EP_B.0, offset, more, payload)
    };
    // The last fragment of a datagram of 1481-1487 bytes sent over a 1500-byte MTU: 185 units
    // of 8 bytes in.
    for len in 1..=7 {
        let run = lab
            .run(
                Hook::Endpoint,
                lab.ep_a_ifindex,
                &fragment(185, false, &[0x5a; 7][..len]),
            )
            .unwrap();
        assert_eq!(
            (run.verdict, run.drops()),
            (TC_ACT_REDIRECT, vec![]),
            "a last fragment of {len} bytes"
        );
        counted(&run, &["rx", "local", "tx"]);
    }
    let mut looks_like_vxlan = [0u8; 16];
    looks_like_vxlan[2..4].copy_from_slice(&VXLAN_PORT.to_be_bytes());
    for more in [true, false] {
        let run = lab
            .run(
                Hook::Endpoint,
                lab.ep_a_ifindex,
                &fragment(185, more, &looks_like_vxlan),
            )
            .unwrap();
        assert_eq!(
            (run.verdict, run.drops()),
            (TC_ACT_REDIRECT, vec![]),
            "a later fragment with the VXLAN port at byte 2 (more fragments: {more})"
        );
    }
    // A first fragment still is checked: its UDP header says VXLAN (a 1480-byte datagram).
    let mut vxlan = UdpHeader::without_ipv4_checksum(40000, VXLAN_PORT, 1472)
        .unwrap()
        .to_bytes()
        .to_vec();
    vxlan.extend_from_slice(&[0; 16]);
    assert_dropped(
        &lab,
        Hook::Endpoint,
        lab.ep_a_ifindex,
        &fragment(0, true, &vxlan),
        "drop-vxlan-from-endpoint",
    );
}

/// Drop reasons with no packet test: the kernel refusing to resize or (un)tag a well-formed
/// packet cannot be provoked from BPF_PROG_TEST_RUN.
const UNTESTABLE_DROPS: [&str; 3] = ["drop-encap-failed", "drop-decap-failed", "drop-vlan-failed"];

/// Keeps this file honest: a new drop reason needs a test here (or a reason above).
#[test]
fn every_drop_reason_has_a_test() {
    let source = include_str!("packets.rs");
    for index in 0..netd_common::stats::COUNT as u32 {
        if !netd_common::stats::is_drop(index) {
            continue;
        }
        let name = netd_common::stats::name(index).unwrap();
        let quoted = format!("\"{name}\"");
        let uses = source.matches(&quoted).count();
        assert!(
            UNTESTABLE_DROPS.contains(&name) || uses >= 1,
            "no test mentions {name}"
        );
    }
}

/// Expects `frame` on `hook` to be dropped and counted under exactly `reason`.
fn assert_dropped(lab: &PacketLab, hook: Hook, ifindex: u32, frame: &[u8], reason: &str) {
    let run = lab.run(hook, ifindex, frame).unwrap();
    assert_eq!(run.verdict, TC_ACT_SHOT, "{reason}: verdict");
    assert_eq!(run.drops(), vec![reason]);
    assert_eq!(run.counted.get(reason), Some(&1));
    assert_eq!(run.counted.get("tx"), None);
}

mod from_endpoint_drops {
    use super::*;

    #[test]
    fn unknown_endpoint() {
        let lab = lab();
        let f = pkt::icmp_echo(EP_A.1, EP_B.1, EP_A.0, EP_B.0, 8);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.uplink_ifindex,
            &f,
            "drop-unknown-endpoint",
        );
    }

    #[test]
    fn truncated() {
        let lab = lab();
        // (The kernel's test harness refuses IPv4 frames shorter than an IPv4 header, so the
        // truncated frame here is ARP; the corpus covers every offset it accepts.)
        let f = pkt::arp_request(EP_A.1, EP_A.0, EP_B.0);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_a_ifindex,
            &f[..30],
            "drop-truncated",
        );
    }

    #[test]
    fn spoofed_mac() {
        let lab = lab();
        let f = pkt::icmp_echo([2, 9, 9, 9, 9, 9], EP_B.1, EP_A.0, EP_B.0, 8);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_a_ifindex,
            &f,
            "drop-spoofed-mac",
        );
    }

    #[test]
    fn spoofed_ip() {
        let lab = lab();
        let f = pkt::icmp_echo(EP_A.1, EP_B.1, EP_B.0, EP_B.0, 8);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_a_ifindex,
            &f,
            "drop-spoofed-ip",
        );
    }

    #[test]
    fn unsupported_ethertype() {
        let lab = lab();
        let mut f = pkt::icmp_echo(EP_A.1, EP_B.1, EP_A.0, EP_B.0, 64);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_a_ifindex,
            &f,
            "drop-unsupported-ethertype",
        );
    }

    #[test]
    fn bad_ipv4() {
        let lab = lab();
        let mut f = pkt::icmp_echo(EP_A.1, EP_B.1, EP_A.0, EP_B.0, 8);
        f[14] = 0x44; // header length 16 bytes
        assert_dropped(&lab, Hook::Endpoint, lab.ep_a_ifindex, &f, "drop-bad-ipv4");
    }

    #[test]
    fn arp_malformed() {
        let lab = lab();
        let mut f = pkt::arp_request(EP_A.1, EP_A.0, EP_B.0);
        f[18] = 8; // hardware address length 8
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_a_ifindex,
            &f,
            "drop-arp-malformed",
        );
    }

    #[test]
    fn arp_spoofed() {
        let lab = lab();
        let f = pkt::arp_request(EP_A.1, EP_B.0, REMOTE.0);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_a_ifindex,
            &f,
            "drop-arp-spoofed",
        );
    }

    #[test]
    fn arp_unknown_target() {
        let lab = lab();
        let f = pkt::arp_request(EP_A.1, EP_A.0, "172.31.9.9".parse().unwrap());
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_a_ifindex,
            &f,
            "drop-arp-unknown-target",
        );
    }

    #[test]
    fn arp_not_request() {
        let lab = lab();
        let mut f = pkt::arp_request(EP_A.1, EP_A.0, REMOTE.0);
        f[21] = 2; // a reply
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_a_ifindex,
            &f,
            "drop-arp-not-request",
        );
    }

    #[test]
    fn broadcast() {
        let lab = lab();
        let f = pkt::icmp_echo(EP_A.1, [0xff; 6], EP_A.0, EP_B.0, 8);
        assert_dropped(&lab, Hook::Endpoint, lab.ep_a_ifindex, &f, "drop-broadcast");
    }

    #[test]
    fn unknown_destination() {
        let lab = lab();
        let f = pkt::icmp_echo(EP_A.1, [2, 1, 2, 3, 4, 5], EP_A.0, EP_B.0, 8);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_a_ifindex,
            &f,
            "drop-unknown-destination",
        );
    }

    #[test]
    fn vxlan_from_endpoint() {
        let lab = lab();
        let f = pkt::udp(EP_A.1, REMOTE.1, EP_A.0, REMOTE.0, 1234, VXLAN_PORT, 0);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_a_ifindex,
            &f,
            "drop-vxlan-from-endpoint",
        );
    }

    /// A frame whose tag is still in its bytes (BPF_PROG_TEST_RUN cannot set the skb's VLAN
    /// metadata, where the kernel moves a received frame's first tag: overlay_netns.rs's
    /// `vlan_tagged_frames_from_a_container_do_not_pass` sends such frames for real).
    #[test]
    fn vlan_tagged() {
        let lab = lab();
        let f = pkt::icmp_echo(EP_A.1, EP_B.1, EP_A.0, EP_B.0, 8);
        for tpid in [ETH_P_8021Q, ETH_P_8021AD] {
            assert_dropped(
                &lab,
                Hook::Endpoint,
                lab.ep_a_ifindex,
                &pkt::vlan_tagged(&f, tpid, 10),
                "drop-vlan-tagged",
            );
        }
    }

    #[test]
    fn oversize() {
        let lab = lab();
        // 1500-byte underlay: an inner frame of 1465 bytes makes a 1501-byte outer packet.
        let f = pkt::icmp_echo(EP_A.1, REMOTE.1, EP_A.0, REMOTE.0, 1465 - 14 - 20 - 8);
        assert_eq!(f.len(), 1465);
        assert_dropped(&lab, Hook::Endpoint, lab.ep_a_ifindex, &f, "drop-oversize");
        // One byte less fits.
        let f = pkt::icmp_echo(EP_A.1, REMOTE.1, EP_A.0, REMOTE.0, 1464 - 14 - 20 - 8);
        let run = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &f).unwrap();
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
    }

    #[test]
    fn no_config() {
        let mut lab = lab();
        lab.datapath.set_config(&Default::default()).unwrap();
        let f = pkt::icmp_echo(EP_A.1, EP_B.1, EP_A.0, EP_B.0, 8);
        assert_dropped(&lab, Hook::Endpoint, lab.ep_a_ifindex, &f, "drop-no-config");
    }

    #[test]
    fn no_route() {
        let lab = lab();
        let f = pkt::icmp_echo(EP_A.1, REMOTE_UNROUTABLE.1, EP_A.0, REMOTE_UNROUTABLE.0, 8);
        assert_dropped(&lab, Hook::Endpoint, lab.ep_a_ifindex, &f, "drop-no-route");
    }
}

mod macvlan {
    use netd_tests::testrun::{EP_C, EP_D, LAN_HOST};

    use super::*;

    fn lab_with(mode: &str) -> PacketLab {
        let mut lab = lab();
        lab.add_macvlan(mode, true).unwrap();
        lab
    }

    #[test]
    fn frames_for_the_lan_leave_by_the_parent_untouched() {
        let lab = lab_with("bridge");
        let f = pkt::icmp_echo(EP_C.1, LAN_HOST.1, EP_C.0, LAN_HOST.0, 32);
        let run = lab.run(Hook::Endpoint, lab.ep_c_ifindex, &f).unwrap();
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        assert_eq!(run.out, f);
        counted(&run, &["rx", "macvlan-tx", "tx"]);
        // ARP of any kind goes to the LAN, with the endpoint's own addresses only.
        let arp = pkt::arp_request(EP_C.1, EP_C.0, LAN_HOST.0);
        let run = lab.run(Hook::Endpoint, lab.ep_c_ifindex, &arp).unwrap();
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        assert_eq!(run.out, arp);
    }

    #[test]
    fn bridge_mode_delivers_between_endpoints_of_one_parent() {
        let lab = lab_with("bridge");
        let f = pkt::icmp_echo(EP_C.1, EP_D.1, EP_C.0, EP_D.0, 32);
        let run = lab.run(Hook::Endpoint, lab.ep_c_ifindex, &f).unwrap();
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        counted(&run, &["rx", "local", "tx"]);
    }

    #[test]
    fn private_mode_keeps_endpoints_of_one_parent_apart() {
        let lab = lab_with("private");
        let f = pkt::icmp_echo(EP_C.1, EP_D.1, EP_C.0, EP_D.0, 32);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_c_ifindex,
            &f,
            "drop-macvlan-private",
        );
    }

    #[test]
    fn vepa_mode_sends_even_local_traffic_to_the_switch() {
        let lab = lab_with("vepa");
        let f = pkt::icmp_echo(EP_C.1, EP_D.1, EP_C.0, EP_D.0, 32);
        let run = lab.run(Hook::Endpoint, lab.ep_c_ifindex, &f).unwrap();
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        counted(&run, &["rx", "macvlan-tx", "tx"]);
    }

    #[test]
    fn no_parent() {
        let mut lab = lab();
        lab.add_macvlan("bridge", false).unwrap();
        // A broadcast needs the parent's record (its local ports); unicast only its ifindex.
        let f = pkt::arp_request(EP_C.1, EP_C.0, LAN_HOST.0);
        assert_dropped(&lab, Hook::Endpoint, lab.ep_c_ifindex, &f, "drop-no-parent");
    }

    #[test]
    fn spoofing_is_refused_as_in_overlay_networks() {
        let lab = lab_with("bridge");
        let f = pkt::icmp_echo(EP_C.1, LAN_HOST.1, EP_D.0, LAN_HOST.0, 32);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_c_ifindex,
            &f,
            "drop-spoofed-ip",
        );
        let arp = pkt::arp_request(EP_C.1, EP_D.0, LAN_HOST.0);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_c_ifindex,
            &arp,
            "drop-arp-spoofed",
        );
    }

    /// A macvlan endpoint's tagged frame would leave its parent with two tags (the network's
    /// VLAN pushed over the container's own).
    #[test]
    fn tagged_frames_are_refused() {
        let lab = lab_with("bridge");
        let f = pkt::icmp_echo(EP_C.1, LAN_HOST.1, EP_C.0, LAN_HOST.0, 32);
        assert_dropped(
            &lab,
            Hook::Endpoint,
            lab.ep_c_ifindex,
            &pkt::vlan_tagged(&f, ETH_P_8021Q, 10),
            "drop-vlan-tagged",
        );
    }

    #[test]
    fn the_parent_demuxes_by_destination_mac() {
        let lab = lab_with("bridge");
        let to_c = pkt::icmp_echo(LAN_HOST.1, EP_C.1, LAN_HOST.0, EP_C.0, 32);
        let run = lab.run(Hook::Parent, lab.parent_ifindex, &to_c).unwrap();
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        assert_eq!(run.out, to_c);
        counted(&run, &["rx", "macvlan-rx", "local", "tx"]);
        // Not ours: the host (or the next program) gets it untouched.
        let other = pkt::icmp_echo(LAN_HOST.1, [2, 9, 9, 9, 9, 9], LAN_HOST.0, EP_C.0, 32);
        let run = lab.run(Hook::Parent, lab.parent_ifindex, &other).unwrap();
        assert_eq!(run.verdict, TC_ACT_PASS);
        assert_eq!(run.out, other);
        // Broadcast: a copy to each endpoint, and the host still gets it.
        let arp = pkt::arp_request(LAN_HOST.1, LAN_HOST.0, EP_C.0);
        let run = lab.run(Hook::Parent, lab.parent_ifindex, &arp).unwrap();
        assert_eq!(run.verdict, TC_ACT_PASS);
        assert_eq!(run.counted.get("macvlan-flood"), Some(&2));
    }
}

mod from_uplink_drops {
    use super::*;

    fn vxlan(lab: &PacketLab) -> pkt::Vxlan {
        pkt::Vxlan {
            src_mac: NEXT_HOP_MAC,
            dst_mac: lab.uplink_mac,
            src: REMOTE_VTEP,
            dst: LOCAL_VTEP,
            sport: 50123,
            dport: VXLAN_PORT,
            flags: 0x08,
            vni: VNI,
        }
    }

    fn inner() -> Vec<u8> {
        pkt::icmp_echo(REMOTE.1, EP_B.1, REMOTE.0, EP_B.0, 8)
    }

    fn check(lab: &PacketLab, frame: &[u8], reason: &str) {
        assert_dropped(lab, Hook::Uplink, lab.uplink_ifindex, frame, reason);
    }

    #[test]
    fn truncated() {
        let lab = lab();
        let f = vxlan(&lab).wrap(&inner());
        check(&lab, &f[..f.len() - 1], "drop-truncated");
    }

    #[test]
    fn bad_udp_length() {
        let lab = lab();
        let mut f = vxlan(&lab).wrap(&inner());
        f[38..40].copy_from_slice(&20u16.to_be_bytes());
        check(&lab, &f, "drop-bad-udp-length");
    }

    #[test]
    fn fragment() {
        let lab = lab();
        let mut f = vxlan(&lab).wrap(&inner());
        f[20] |= 0x20; // more fragments
        check(&lab, &f, "drop-fragment");
    }

    #[test]
    fn no_i_flag() {
        let lab = lab();
        let mut v = vxlan(&lab);
        v.flags = 0;
        check(&lab, &v.wrap(&inner()), "drop-no-i-flag");
    }

    #[test]
    fn reserved_bits() {
        let lab = lab();
        let mut v = vxlan(&lab);
        v.flags = 0x0c;
        check(&lab, &v.wrap(&inner()), "drop-reserved-bits");
    }

    #[test]
    fn bad_vni() {
        let lab = lab();
        let mut v = vxlan(&lab);
        v.vni = 0;
        check(&lab, &v.wrap(&inner()), "drop-bad-vni");
    }

    #[test]
    fn unknown_vtep() {
        let lab = lab();
        let mut v = vxlan(&lab);
        v.src = "10.200.0.77".parse().unwrap();
        check(&lab, &v.wrap(&inner()), "drop-unknown-vtep");
        // A registered VTEP, but not for this VNI.
        let mut v = vxlan(&lab);
        v.vni = netd_tests::testrun::OTHER_VNI;
        check(&lab, &v.wrap(&inner()), "drop-unknown-vtep");
    }

    #[test]
    fn inner_broadcast() {
        let lab = lab();
        let f = pkt::icmp_echo(REMOTE.1, [0xff; 6], REMOTE.0, EP_B.0, 8);
        check(&lab, &vxlan(&lab).wrap(&f), "drop-inner-broadcast");
    }

    #[test]
    fn inner_not_ipv4() {
        let lab = lab();
        let f = pkt::arp_request(REMOTE.1, REMOTE.0, EP_B.0);
        let mut f = f;
        f[0..6].copy_from_slice(&EP_B.1);
        check(&lab, &vxlan(&lab).wrap(&f), "drop-inner-not-ipv4");
    }

    #[test]
    fn inner_bad_ipv4() {
        let lab = lab();
        let mut f = inner();
        f[16..18].copy_from_slice(&200u16.to_be_bytes()); // inner tot_len beyond the frame
        check(&lab, &vxlan(&lab).wrap(&f), "drop-inner-bad-ipv4");
        let mut f = inner();
        f[14] = 0x65; // version 6 in an IPv4 EtherType
        check(&lab, &vxlan(&lab).wrap(&f), "drop-inner-bad-ipv4");
    }

    #[test]
    fn not_local() {
        let lab = lab();
        // To a remote endpoint: a VTEP must never relay.
        let f = pkt::icmp_echo(
            REMOTE.1,
            REMOTE_UNRESOLVED.1,
            REMOTE.0,
            REMOTE_UNRESOLVED.0,
            8,
        );
        check(&lab, &vxlan(&lab).wrap(&f), "drop-not-local");
    }
}

/// The network's gateway for the tests below: an address EP_A's subnet has, no endpoint's.
const GATEWAY: std::net::Ipv4Addr = std::net::Ipv4Addr::new(172, 31, 0, 1);

/// An IPv4 frame's TTL set to `ttl`, its checksum mended.
fn with_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    frame[22] = ttl;
    let mut hdr = [0u8; 20];
    hdr.copy_from_slice(&frame[14..34]);
    let check = netd_common::packet::ipv4_checksum(&hdr);
    frame[24..26].copy_from_slice(&check.to_be_bytes());
    frame
}

#[test]
fn the_gateway_answers_ping() {
    let mut lab = lab();
    let gw_mac = lab.add_gateway(GATEWAY).unwrap();
    // Its address resolves to its MAC.
    let request = pkt::arp_request(EP_A.1, EP_A.0, GATEWAY);
    let arp = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &request).unwrap();
    assert_eq!(&arp.out[6..12], &gw_mac);
    // An echo request comes back as the reply, straight to the sender.
    let ping = pkt::icmp_echo(EP_A.1, gw_mac, EP_A.0, GATEWAY, 56);
    let run = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &ping).unwrap();
    assert_eq!(run.verdict, TC_ACT_REDIRECT);
    counted(&run, &["rx", "gateway-reply", "tx"]);
    let parsed = SlicedPacket::from_ethernet(&run.out).expect("reply parses");
    let Some(NetSlice::Ipv4(ipv4)) = parsed.net else {
        panic!("reply is not IPv4");
    };
    let ip = ipv4.header();
    assert_eq!((ip.source_addr(), ip.destination_addr()), (GATEWAY, EP_A.0));
    assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
    assert_eq!(
        (&run.out[0..6], &run.out[6..12]),
        (&EP_A.1[..], &gw_mac[..])
    );
    let Some(TransportSlice::Icmpv4(icmp)) = parsed.transport else {
        panic!("reply is not ICMP");
    };
    assert_eq!(icmp.type_u8(), 0, "echo reply");
    let expected = pkt::icmp_echo_reply(gw_mac, EP_A.1, GATEWAY, EP_A.0, 56);
    assert_eq!(
        run.out, expected,
        "the reply, byte for byte (checksums included)"
    );
}

#[test]
fn the_gateway_routes_to_the_networks_other_endpoints() {
    let mut lab = lab();
    let gw_mac = lab.add_gateway(GATEWAY).unwrap();
    // To a local endpoint: MACs rewritten, TTL down by one, delivered.
    let frame = pkt::icmp_echo(EP_A.1, gw_mac, EP_A.0, EP_B.0, 56);
    let run = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &frame).unwrap();
    assert_eq!(run.verdict, TC_ACT_REDIRECT);
    counted(&run, &["rx", "routed", "local", "tx"]);
    let mut routed = with_ttl(frame.clone(), 63);
    routed[0..6].copy_from_slice(&EP_B.1);
    routed[6..12].copy_from_slice(&gw_mac);
    assert_eq!(run.out, routed);
    // To a remote one: routed, then encapsulated.
    let frame = pkt::icmp_echo(EP_A.1, gw_mac, EP_A.0, REMOTE.0, 56);
    let run = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &frame).unwrap();
    assert_eq!(run.verdict, TC_ACT_REDIRECT);
    counted(&run, &["rx", "routed", "encap", "encap-fib-lookup", "tx"]);
    assert_eq!(
        &run.out[50..56],
        &REMOTE.1,
        "inner destination: the endpoint's MAC"
    );
    assert_eq!(run.out[50 + 22], 63, "inner TTL");
}

#[test]
fn the_gateway_forwards_nothing_else() {
    let mut lab = lab();
    let gw_mac = lab.add_gateway(GATEWAY).unwrap();
    let outside = std::net::Ipv4Addr::new(198, 51, 100, 1);
    let frame = pkt::icmp_echo(EP_A.1, gw_mac, EP_A.0, outside, 8);
    assert_dropped(
        &lab,
        Hook::Endpoint,
        lab.ep_a_ifindex,
        &frame,
        "drop-gateway-no-route",
    );
    let frame = with_ttl(pkt::icmp_echo(EP_A.1, gw_mac, EP_A.0, EP_B.0, 8), 1);
    assert_dropped(
        &lab,
        Hook::Endpoint,
        lab.ep_a_ifindex,
        &frame,
        "drop-ttl-exceeded",
    );
    let frame = pkt::udp(EP_A.1, gw_mac, EP_A.0, GATEWAY, 40000, 53, 0);
    assert_dropped(
        &lab,
        Hook::Endpoint,
        lab.ep_a_ifindex,
        &frame,
        "drop-to-gateway",
    );
}

/// The loader's probes (test runs of `bpf_skb_adjust_room` with the younger flags) find what
/// this kernel takes: ENCAP_L2_ETH from Linux 5.13, DECAP_L3_IPV4 from 6.3 (docs/kernels.md; both
/// are upstream additions no stable series backports). A probe that failed for another reason
/// (a bad frame, a refused program) would report a flag missing on a kernel that has it.
#[test]
fn the_probes_find_the_adjust_room_flags_this_kernel_takes() {
    let lab = lab();
    let kernel = aya::util::KernelVersion::current().unwrap();
    let features = lab.datapath.features();
    assert_eq!(
        features.encap_l2_eth,
        kernel >= aya::util::KernelVersion::new(5, 13, 0),
        "ENCAP_L2_ETH on {kernel:?}"
    );
    assert_eq!(
        features.decap_l3_ipv4,
        kernel >= aya::util::KernelVersion::new(6, 3, 0),
        "DECAP_L3_IPV4 on {kernel:?}"
    );
}

mod from_tunnel_drops {
    use super::*;

    /// What the GRO device hands from-tunnel always carries the tunnel's metadata; a frame
    /// without (here: BPF_PROG_TEST_RUN's, which has none) cannot be checked against the VTEPs
    /// and is refused. (Marked as from-uplink marks what it leaves to the device: else it is
    /// refused before, as `not-from-uplink`.)
    #[test]
    fn no_tunnel_key() {
        let lab = lab();
        let inner = pkt::icmp_echo(REMOTE.1, EP_B.1, REMOTE.0, EP_B.0, 8);
        let run = lab
            .run_skb(
                Hook::Tunnel,
                Skb {
                    ifindex: lab.uplink_ifindex,
                    mark: MARK_UPLINK_CHECKED,
                    ..Skb::default()
                },
                &inner,
            )
            .unwrap();
        assert_eq!(run.verdict, TC_ACT_SHOT);
        counted(&run, &["rx", "drop-no-tunnel-key"]);
    }
}

/// Issue 24, "Containers inject VXLAN into other networks": a container's UDP datagram to a
/// peer's VTEP:4789 left through Docker's gateway bridge, masqueraded to its host's VTEP, and
/// the peer decapsulated it into the VNI it named with any inner source; with CAP_NET_RAW, one
/// sent to its own host's address (through docker0) reached the GRO device's socket, claiming
/// any VTEP. Now VXLAN from the VTEP leaves only if netd encapsulated it (to-uplink), a VTEP
/// speaks only for its own endpoints (from-uplink and from-tunnel), and the GRO device delivers
/// only what from-uplink checked.
mod containers_inject_vxlan_into_other_networks {
    use super::*;

    fn egress(lab: &PacketLab, received_on: u32, frame: &[u8]) -> netd_tests::testrun::Run {
        lab.run_skb(
            Hook::UplinkEgress,
            Skb {
                ifindex: lab.uplink_ifindex,
                ingress_ifindex: received_on,
                ..Skb::default()
            },
            frame,
        )
        .unwrap()
    }

    /// `frame`'s IPv4 header given 4 bytes of options (three NOPs and an end), which any socket
    /// may ask for (IP_OPTIONS): the UDP header moves back by 4.
    fn with_ip_options(frame: &[u8]) -> Vec<u8> {
        let mut out = frame[..34].to_vec();
        out.extend_from_slice(&[1, 1, 1, 0]);
        out.extend_from_slice(&frame[34..]);
        out[14] = 0x46;
        let total = u16::from_be_bytes([out[16], out[17]]) + 4;
        out[16..18].copy_from_slice(&total.to_be_bytes());
        out[24..26].copy_from_slice(&[0, 0]);
        let sum = out[14..38]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let folded = (sum & 0xffff) + (sum >> 16);
        let check = !(((folded & 0xffff) + (folded >> 16)) as u16);
        out[24..26].copy_from_slice(&check.to_be_bytes());
        out
    }

    #[test]
    fn vxlan_from_the_vtep_leaves_only_if_netd_encapsulated_it() {
        let lab = lab();
        // netd's own: what from-endpoint made of a container's datagram, redirected to the
        // uplink from the endpoint's veth.
        let inner = pkt::udp(EP_A.1, REMOTE.1, EP_A.0, REMOTE.0, 40000, 53, 0);
        let encap = lab.run(Hook::Endpoint, lab.ep_a_ifindex, &inner).unwrap();
        assert_eq!(encap.verdict, TC_ACT_REDIRECT);
        let own = egress(&lab, lab.ep_a_ifindex, &encap.out);
        assert_eq!(own.verdict, TC_ACT_PASS);
        assert_eq!(own.out, encap.out);
        counted(&own, &[]);

        // The same bytes from a container behind a bridge (forwarded and masqueraded: received
        // on the bridge, here par0), from a host socket (received nowhere: 0), and with IP
        // options that move the UDP header.
        for (what, received_on, frame) in [
            ("forwarded", lab.parent_ifindex, encap.out.clone()),
            ("from a host socket", 0, encap.out.clone()),
            ("with IP options", 0, with_ip_options(&encap.out)),
        ] {
            let run = egress(&lab, received_on, &frame);
            assert_eq!(run.verdict, TC_ACT_SHOT, "{what}");
            counted(&run, &["drop-foreign-vxlan"]);
        }

        // Not from the VTEP, not to the VXLAN port, or a later fragment: not netd's business.
        let other_source = pkt::Vxlan {
            src_mac: lab.uplink_mac,
            dst_mac: NEXT_HOP_MAC,
            // Another address of the host, not its VTEP.
            src: std::net::Ipv4Addr::new(10, 200, 0, 9),
            dst: REMOTE_VTEP,
            sport: 50000,
            dport: VXLAN_PORT,
            flags: 0x08,
            vni: VNI,
        };
        let other_port = pkt::udp(
            lab.uplink_mac,
            NEXT_HOP_MAC,
            LOCAL_VTEP,
            REMOTE_VTEP,
            50000,
            53,
            0,
        );
        let later_fragment = pkt::udp_fragment(
            lab.uplink_mac,
            NEXT_HOP_MAC,
            LOCAL_VTEP,
            REMOTE_VTEP,
            185,
            false,
            &[0x12, 0xb5, 0x12, 0xb5, 0, 0, 0, 0],
        );
        for frame in [other_source.wrap(&inner), other_port, later_fragment] {
            let run = egress(&lab, 0, &frame);
            assert_eq!(run.verdict, TC_ACT_PASS);
            assert_eq!(run.out, frame);
            counted(&run, &[]);
        }
    }

    fn from_remote_vtep(lab: &PacketLab, inner: &[u8]) -> Vec<u8> {
        pkt::Vxlan {
            src_mac: NEXT_HOP_MAC,
            dst_mac: lab.uplink_mac,
            src: REMOTE_VTEP,
            dst: LOCAL_VTEP,
            sport: 50123,
            dport: VXLAN_PORT,
            flags: 0x08,
            vni: VNI,
        }
        .wrap(inner)
    }

    #[test]
    fn a_vtep_speaks_only_for_its_own_endpoints() {
        let lab = lab();
        // The control: REMOTE lives behind REMOTE_VTEP.
        let genuine = pkt::icmp_echo(REMOTE.1, EP_B.1, REMOTE.0, EP_B.0, 8);
        let run = lab
            .run(
                Hook::Uplink,
                lab.uplink_ifindex,
                &from_remote_vtep(&lab, &genuine),
            )
            .unwrap();
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        assert_eq!(run.out, genuine);

        let stranger = [0x02, 0x66, 0, 0, 0, 0x66];
        for (what, src_mac, src) in [
            (
                "an endpoint of another VTEP",
                REMOTE_UNRESOLVED.1,
                REMOTE_UNRESOLVED.0,
            ),
            ("an endpoint of this host", EP_A.1, EP_A.0),
            ("a MAC no endpoint has", stranger, REMOTE.0),
            ("another endpoint's address", REMOTE.1, REMOTE_UNRESOLVED.0),
            (
                "an address outside the network",
                REMOTE.1,
                "10.9.9.9".parse().unwrap(),
            ),
        ] {
            let forged = pkt::icmp_echo(src_mac, EP_B.1, src, EP_B.0, 8);
            let run = lab
                .run(
                    Hook::Uplink,
                    lab.uplink_ifindex,
                    &from_remote_vtep(&lab, &forged),
                )
                .unwrap();
            assert_eq!(run.verdict, TC_ACT_SHOT, "{what}");
            counted(&run, &["rx", "drop-inner-source"]);
        }
    }

    /// A frame the gateway on the sending host routed carries the gateway's MAC as its source
    /// (gateway.rs): its address names the sender, who must live behind the sending VTEP.
    #[test]
    fn frames_routed_by_the_senders_gateway_are_decapsulated() {
        let mut lab = lab();
        let gw_mac = lab.add_gateway(GATEWAY).unwrap();
        let routed = pkt::icmp_echo(gw_mac, EP_B.1, REMOTE.0, EP_B.0, 8);
        let run = lab
            .run(
                Hook::Uplink,
                lab.uplink_ifindex,
                &from_remote_vtep(&lab, &routed),
            )
            .unwrap();
        assert_eq!(run.verdict, TC_ACT_REDIRECT);
        counted(&run, &["rx", "decap", "tx"]);
        for (what, src) in [
            (
                "routed for an endpoint of another VTEP",
                REMOTE_UNRESOLVED.0,
            ),
            ("from the gateway's own address", GATEWAY),
            ("routed for an address of this host", EP_A.0),
        ] {
            let forged = pkt::icmp_echo(gw_mac, EP_B.1, src, EP_B.0, 8);
            let run = lab
                .run(
                    Hook::Uplink,
                    lab.uplink_ifindex,
                    &from_remote_vtep(&lab, &forged),
                )
                .unwrap();
            assert_eq!(run.verdict, TC_ACT_SHOT, "{what}");
            counted(&run, &["rx", "drop-inner-source"]);
        }
    }

    /// The GRO device's socket takes VXLAN from every interface: from-tunnel delivers only what
    /// from-uplink marked. With the mark, the next check (the tunnel's metadata, which a test
    /// run has none of) decides.
    #[test]
    fn the_gro_device_delivers_only_what_from_uplink_checked() {
        let lab = lab();
        let inner = pkt::icmp_echo(REMOTE.1, EP_B.1, REMOTE.0, EP_B.0, 8);
        for (mark, reason) in [
            (0, "drop-not-from-uplink"),
            (MARK_UPLINK_CHECKED ^ 1, "drop-not-from-uplink"),
            (MARK_UPLINK_CHECKED, "drop-no-tunnel-key"),
        ] {
            let run = lab
                .run_skb(
                    Hook::Tunnel,
                    Skb {
                        ifindex: lab.uplink_ifindex,
                        mark,
                        ..Skb::default()
                    },
                    &inner,
                )
                .unwrap();
            assert_eq!(run.verdict, TC_ACT_SHOT, "mark {mark:#x}");
            counted(&run, &["rx", reason]);
        }
    }
}
