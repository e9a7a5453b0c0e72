#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! The malformed-packet corpus: hundreds of broken or foreign packets through both programs.
//! Every one must be dropped with exactly one reason counted, or passed unmodified; none may be
//! redirected. Cases with a known right answer also check which.

use std::net::Ipv4Addr;

use netd::datapath::Hook;
use netd_tests::{
    pkt,
    testrun::{
        EP_A, EP_B, LOCAL_VTEP, NEXT_HOP_MAC, OTHER_VNI, PacketLab, REMOTE, REMOTE_VTEP,
        TC_ACT_PASS, TC_ACT_SHOT, VNI, VXLAN_PORT,
    },
};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Pass,
    Drop(&'static str),
    /// Either is acceptable (e.g. a truncation that may or may not still look like VXLAN).
    DropOrPass,
}

struct Case {
    name: String,
    hook: Hook,
    frame: Vec<u8>,
    expect: Expect,
}

fn good_vxlan(lab: &PacketLab) -> pkt::Vxlan {
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

fn good_inner() -> Vec<u8> {
    pkt::icmp_echo(REMOTE.1, EP_B.1, REMOTE.0, EP_B.0, 16)
}

/// Rewrites the outer IPv4 checksum after a field changed (bytes 14..34).
fn fix_ip_checksum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let mut hdr = [0u8; 20];
    hdr.copy_from_slice(&f[14..34]);
    let c = netd_common::packet::ipv4_checksum(&hdr);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

fn uplink_cases(lab: &PacketLab) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: String, frame: Vec<u8>, expect: Expect| {
        cases.push(Case {
            name,
            hook: Hook::Uplink,
            frame,
            expect,
        })
    };
    let good = good_vxlan(lab).wrap(&good_inner());

    // Truncation at every offset: lengths disagree with the headers.
    for len in 14..good.len() {
        add(
            format!("truncated to {len}"),
            good[..len].to_vec(),
            Expect::DropOrPass,
        );
    }
    // Truncation with the IPv4 and UDP lengths rewritten to match: a short, self-consistent lie.
    for len in 42..good.len() {
        let mut f = good[..len].to_vec();
        f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        f[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
        fix_ip_checksum(&mut f);
        add(
            format!("consistent truncation to {len}"),
            f,
            Expect::DropOrPass,
        );
    }
    // IPv4 options (header lengths 24..60): never VXLAN from a VTEP; the stack gets them.
    for ihl in 6u8..=15 {
        let extra = usize::from(ihl - 5) * 4;
        let mut f = good[..34].to_vec();
        f.extend(std::iter::repeat_n(1u8, extra)); // NOP options
        f.extend_from_slice(&good[34..]);
        f[14] = 0x40 | ihl;
        let ip_len = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        add(format!("ipv4 ihl {ihl}"), f, Expect::Pass);
    }
    // VLAN and QinQ tags in front of the outer IPv4.
    for (tpid, vid) in [
        (0x8100u16, 1u16),
        (0x8100, 10),
        (0x8100, 4094),
        (0x88a8, 100),
    ] {
        add(
            format!("vlan {tpid:#x}/{vid}"),
            pkt::vlan_tagged(&good, tpid, vid),
            Expect::Pass,
        );
        let inner = pkt::vlan_tagged(&good, 0x8100, vid + 1);
        add(
            format!("qinq {vid}"),
            pkt::vlan_tagged(&inner, 0x88a8, vid),
            Expect::Pass,
        );
    }
    // Fragments: a first fragment is identifiable (dropped), later ones are not (passed).
    for (flags_offset, expect) in [
        (0x2000u16, Expect::Drop("drop-fragment")),
        (0x6000, Expect::Drop("drop-fragment")),
        (0x0001, Expect::Pass),
        (0x2001, Expect::Pass),
        (0x00b9, Expect::Pass),
        (0x3fff, Expect::Pass),
        (0x1fff, Expect::Pass),
    ] {
        let mut f = good.clone();
        f[20..22].copy_from_slice(&flags_offset.to_be_bytes());
        fix_ip_checksum(&mut f);
        add(format!("fragment {flags_offset:#06x}"), f, expect);
    }
    // Bad UDP lengths.
    let real = (good.len() - 34) as u16;
    for udp_len in [0u16, 1, 7, 8, 15, 16, 29, real - 1, real + 1, 0xffff] {
        let mut f = good.clone();
        f[38..40].copy_from_slice(&udp_len.to_be_bytes());
        add(
            format!("udp length {udp_len}"),
            f,
            Expect::Drop("drop-bad-udp-length"),
        );
    }
    // Every flags byte but the valid one.
    for flags in 0u8..=255 {
        if flags == 0x08 {
            continue;
        }
        let mut v = good_vxlan(lab);
        v.flags = flags;
        let reason = if flags & 0x08 == 0 {
            "drop-no-i-flag"
        } else {
            "drop-reserved-bits"
        };
        add(
            format!("flags {flags:#04x}"),
            v.wrap(&good_inner()),
            Expect::Drop(reason),
        );
    }
    // Each reserved bit after the flags byte.
    for byte in [43usize, 44, 45, 49] {
        for bit in 0..8 {
            let mut f = good.clone();
            f[byte] |= 1 << bit;
            add(
                format!("reserved byte {byte} bit {bit}"),
                f,
                Expect::Drop("drop-reserved-bits"),
            );
        }
    }
    // VNIs: zero, and ones this VTEP is not registered for.
    for vni in [
        0u32,
        1,
        2,
        VNI - 1,
        VNI + 1,
        OTHER_VNI,
        0xff_ffff,
        VNI | 0x80_0000,
    ] {
        let mut v = good_vxlan(lab);
        v.vni = vni;
        let reason = if vni == 0 {
            "drop-bad-vni"
        } else {
            "drop-unknown-vtep"
        };
        add(
            format!("vni {vni}"),
            v.wrap(&good_inner()),
            Expect::Drop(reason),
        );
    }
    // Unregistered VTEPs (the lab registers .2, .3 and 192.0.2.1, one per remote host).
    for src in [
        "10.200.0.4",
        "10.200.0.99",
        "0.0.0.0",
        "255.255.255.255",
        "172.31.0.20",
    ] {
        let mut v = good_vxlan(lab);
        v.src = src.parse().unwrap();
        add(
            format!("vtep {src}"),
            v.wrap(&good_inner()),
            Expect::Drop("drop-unknown-vtep"),
        );
    }
    // Inner destinations that must never be delivered.
    for (mac, reason) in [
        ([0xff; 6], "drop-inner-broadcast"),
        ([0x01, 0x00, 0x5e, 0, 0, 1], "drop-inner-broadcast"),
        ([0x33, 0x33, 0, 0, 0, 1], "drop-inner-broadcast"),
        ([0; 6], "drop-inner-broadcast"),
        (REMOTE.1, "drop-not-local"),
        ([0x02, 0x12, 0x34, 0x56, 0x78, 0x9a], "drop-not-local"),
        (EP_A.1, "ok"),
    ] {
        if reason == "ok" {
            continue;
        }
        let mut inner = good_inner();
        inner[0..6].copy_from_slice(&mac);
        add(
            format!("inner dst {}", pkt::fmt_mac(&mac)),
            good_vxlan(lab).wrap(&inner),
            Expect::Drop(reason),
        );
    }
    // Inner frames that are not IPv4.
    for ethertype in [0x0806u16, 0x86dd, 0x8100, 0x88a8, 0x0000, 0xffff] {
        let mut inner = good_inner();
        inner[12..14].copy_from_slice(&ethertype.to_be_bytes());
        add(
            format!("inner ethertype {ethertype:#06x}"),
            good_vxlan(lab).wrap(&inner),
            Expect::Drop("drop-inner-not-ipv4"),
        );
    }
    // Not VXLAN for us: other ports, other destinations, other protocols, IPv6.
    for port in [4790u16, 8472, 0, 53] {
        let mut v = good_vxlan(lab);
        v.dport = port;
        add(
            format!("udp port {port}"),
            v.wrap(&good_inner()),
            Expect::Pass,
        );
    }
    for dst in ["10.200.0.2", "10.200.0.255", "224.0.0.1"] {
        let mut v = good_vxlan(lab);
        v.dst = dst.parse().unwrap();
        add(
            format!("outer dst {dst}"),
            v.wrap(&good_inner()),
            Expect::Pass,
        );
    }
    for proto in [6u8, 1, 47, 132] {
        let mut f = good.clone();
        f[23] = proto;
        fix_ip_checksum(&mut f);
        add(format!("ip proto {proto}"), f, Expect::Pass);
    }
    let mut v6 = good[..12].to_vec();
    v6.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    v6.extend_from_slice(&((good.len() - 34) as u16).to_be_bytes());
    v6.extend_from_slice(&[17, 64]);
    v6.extend_from_slice(&[0xfd; 32]);
    v6.extend_from_slice(&good[34..]);
    add("ipv6 outer".into(), v6, Expect::Pass);
    add(
        "arp".into(),
        pkt::arp_request(NEXT_HOP_MAC, REMOTE_VTEP, LOCAL_VTEP),
        Expect::Pass,
    );
    cases
}

fn endpoint_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: String, frame: Vec<u8>, expect: Expect| {
        cases.push(Case {
            name,
            hook: Hook::Endpoint,
            frame,
            expect,
        })
    };
    let icmp = pkt::icmp_echo(EP_A.1, REMOTE.1, EP_A.0, REMOTE.0, 16);
    for len in 34..icmp.len() {
        add(
            format!("endpoint ipv4 truncated to {len}"),
            icmp[..len].to_vec(),
            Expect::Drop("drop-truncated"),
        );
    }
    let arp = pkt::arp_request(EP_A.1, EP_A.0, REMOTE.0);
    for len in 14..arp.len() {
        add(
            format!("endpoint arp truncated to {len}"),
            arp[..len].to_vec(),
            Expect::Drop("drop-truncated"),
        );
    }
    for tpid in [0x8100u16, 0x88a8] {
        add(
            format!("endpoint vlan {tpid:#x}"),
            pkt::vlan_tagged(&icmp, tpid, 10),
            Expect::Drop("drop-vlan-tagged"),
        );
    }
    let spoofed: Ipv4Addr = "172.31.0.99".parse().unwrap();
    add(
        "endpoint spoofed ip".into(),
        pkt::icmp_echo(EP_A.1, REMOTE.1, spoofed, REMOTE.0, 16),
        Expect::Drop("drop-spoofed-ip"),
    );
    add(
        "endpoint spoofed mac".into(),
        pkt::icmp_echo(EP_B.1, REMOTE.1, EP_A.0, REMOTE.0, 16),
        Expect::Drop("drop-spoofed-mac"),
    );
    for mac in [
        [0xffu8; 6],
        [0x01, 0, 0x5e, 0, 0, 1],
        [0x33, 0x33, 0, 0, 0, 1],
        [0; 6],
    ] {
        add(
            format!("endpoint to {}", pkt::fmt_mac(&mac)),
            pkt::icmp_echo(EP_A.1, mac, EP_A.0, REMOTE.0, 16),
            Expect::Drop("drop-broadcast"),
        );
    }
    cases
}

#[test]
fn malformed_packets_are_dropped_with_a_reason_or_passed_unmodified() {
    let lab = PacketLab::new().expect("packet lab");
    let mut cases = uplink_cases(&lab);
    cases.extend(endpoint_cases());
    let mut runnable = 0;
    let mut refused_by_harness = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        let ifindex = match case.hook {
            Hook::Endpoint => lab.ep_a_ifindex,
            _ => lab.uplink_ifindex,
        };
        let run = match lab.run(case.hook, ifindex, &case.frame) {
            Ok(run) => run,
            // BPF_PROG_TEST_RUN refuses IPv4/IPv6 frames shorter than their fixed header.
            Err(_) => {
                refused_by_harness.push(case.name.clone());
                continue;
            }
        };
        runnable += 1;
        let drops = run.drops();
        let outcome = match run.verdict {
            TC_ACT_PASS
                if run.out == case.frame && drops.is_empty() && !run.counted.contains_key("tx") =>
            {
                Expect::Pass
            }
            TC_ACT_SHOT
                if drops.len() == 1
                    && run.counted.get(drops[0]) == Some(&1)
                    && !run.counted.contains_key("tx") =>
            {
                Expect::Drop(drops[0])
            }
            other => {
                failures.push(format!(
                    "{}: verdict {other}, counted {:?}",
                    case.name, run.counted
                ));
                continue;
            }
        };
        let fine = match case.expect {
            Expect::DropOrPass => true,
            Expect::Pass => outcome == Expect::Pass,
            Expect::Drop(reason) => outcome == Expect::Drop(reason),
        };
        if !fine {
            failures.push(format!(
                "{}: expected {:?}, got {outcome:?}",
                case.name, case.expect
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runnable} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(runnable >= 200, "only {runnable} runnable cases");
    // Only frames too short for their EtherType's fixed header may be refused by the harness.
    assert!(
        refused_by_harness.len() <= 20,
        "harness refused: {refused_by_harness:?}"
    );
    eprintln!(
        "{runnable} malformed packets checked ({} refused by BPF_PROG_TEST_RUN)",
        refused_by_harness.len()
    );
}
