//! `netd monitor`'s view of a datapath event: the raw event from the ring buffer decoded into
//! what an operator asks about (which endpoint or interface, network, VNI, MACs, the IPv4
//! 5-tuple, the reason), and the filters the command line sets.
//!
//! The programs send the first bytes of the packet, not parsed fields: decoding happens here,
//! where it costs nothing on the packet path. A VXLAN packet (UDP to the configured port) is
//! shown by its inner frame, with the VTEPs and the VNI beside it.

use std::{collections::HashMap, net::Ipv4Addr};

use netd_common::{
    maps::EndpointInfo,
    monitor::{Event, hook, kind},
    packet::{ETH_HLEN, ETH_P_ARP, ETH_P_IP, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, VXLAN_HLEN},
    stats::DropReason,
};
use serde::{Serialize, Serializer};

use crate::{datapath::inspect::fmt_mac, netlink::Interface};

/// An endpoint of this host, as the monitor names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointName {
    pub network: String,
    pub name: String,
    pub vni: u32,
    pub ip: Ipv4Addr,
}

/// What the monitor knows about this host: its endpoints by ifindex, interface names, the VXLAN
/// port.
#[derive(Clone, Debug, Default)]
pub struct HostView {
    pub endpoints: HashMap<u32, EndpointName>,
    pub interfaces: HashMap<u32, String>,
    pub vxlan_port: u16,
}

impl HostView {
    /// Joins the pinned endpoints (ifindex -> record) with the interfaces' names and
    /// `netd:<network>/<endpoint>` aliases.
    pub fn new(
        pinned: &[(u32, EndpointInfo)],
        interfaces: &HashMap<u32, Interface>,
        vxlan_port: u16,
    ) -> Self {
        let endpoints = pinned
            .iter()
            .filter_map(|(ifindex, info)| {
                let (network, name) = interfaces.get(ifindex)?.endpoint.clone()?;
                Some((
                    *ifindex,
                    EndpointName {
                        network,
                        name,
                        vni: info.vni,
                        ip: Ipv4Addr::from(info.ipv4),
                    },
                ))
            })
            .collect();
        Self {
            endpoints,
            interfaces: interfaces
                .iter()
                .map(|(ifindex, i)| (*ifindex, i.name.clone()))
                .collect(),
            vxlan_port,
        }
    }

    fn network_of_vni(&self, vni: u32) -> Option<&str> {
        self.endpoints
            .values()
            .find(|e| e.vni == vni)
            .map(|e| e.network.as_str())
    }

    fn endpoint_at(&self, ip: Ipv4Addr, vni: Option<u32>) -> Option<&EndpointName> {
        self.endpoints
            .values()
            .find(|e| e.ip == ip && vni.is_none_or(|v| v == e.vni))
    }
}

/// One decoded event (also its `--json` line).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Described {
    /// `drop` or `trace`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The drop reason (by its name, `drop-spoofed-mac`); absent for traces.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "reason_name"
    )]
    pub reason: Option<DropReason>,
    pub hook: &'static str,
    pub ifindex: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The local endpoint the packet came from or goes to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// The VTEPs of a VXLAN packet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outer_src: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outer_dst: Option<Ipv4Addr>,
    pub src_mac: String,
    pub dst_mac: String,
    /// `ipv4`, `arp` or the EtherType in hex.
    pub ethertype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<Ipv4Addr>,
    /// `tcp`, `udp`, `icmp` or the protocol number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// The packet's length in bytes.
    pub len: u32,
}

/// A frame's headers, as far as the sample holds them.
#[derive(Default)]
struct Headers {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    ethertype: u16,
    src_ip: Option<Ipv4Addr>,
    dst_ip: Option<Ipv4Addr>,
    protocol: Option<u8>,
    ports: Option<(u16, u16)>,
    /// Where the L4 payload starts.
    payload: Option<usize>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ipv4(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

fn headers(frame: &[u8]) -> Headers {
    let mut h = Headers::default();
    let (Some(dst), Some(src), Some(ethertype)) =
        (frame.get(0..6), frame.get(6..12), be16(frame, 12))
    else {
        return h;
    };
    h.dst_mac.copy_from_slice(dst);
    h.src_mac.copy_from_slice(src);
    h.ethertype = ethertype;
    match ethertype {
        ETH_P_IP => {
            let ip = ETH_HLEN;
            let ihl = frame.get(ip).map_or(0, |b| usize::from(b & 0x0f) * 4);
            h.protocol = frame.get(ip + 9).copied();
            h.src_ip = ipv4(frame, ip + 12);
            h.dst_ip = ipv4(frame, ip + 16);
            let l4 = ip + ihl;
            if matches!(h.protocol, Some(IPPROTO_TCP | IPPROTO_UDP)) && ihl >= 20 {
                h.ports = be16(frame, l4).zip(be16(frame, l4 + 2));
                h.payload = Some(l4 + 8);
            }
        }
        // ARP: sender and target protocol addresses.
        ETH_P_ARP => {
            h.src_ip = ipv4(frame, ETH_HLEN + 14);
            h.dst_ip = ipv4(frame, ETH_HLEN + 24);
        }
        _ => {}
    }
    h
}

/// Decodes an event against what is known about this host.
pub fn describe(event: &Event, host: &HostView) -> Described {
    let sample = &event.sample[..event.sample_len as usize];
    let mut outer = headers(sample);
    let mut vni = None;
    let mut vteps = (None, None);
    // VXLAN: show the inner frame.
    if outer.protocol == Some(IPPROTO_UDP)
        && outer.ports.is_some_and(|(_, dst)| dst == host.vxlan_port)
        && let Some(vx) = outer.payload
        && let Some(header) = sample.get(vx..vx + VXLAN_HLEN)
    {
        vni = Some(u32::from_be_bytes([0, header[4], header[5], header[6]]));
        vteps = (outer.src_ip, outer.dst_ip);
        outer = headers(&sample[vx + VXLAN_HLEN..]);
    }
    let local = host.endpoints.get(&event.ifindex);
    let endpoint = local
        .or_else(|| outer.dst_ip.and_then(|ip| host.endpoint_at(ip, vni)))
        .or_else(|| outer.src_ip.and_then(|ip| host.endpoint_at(ip, vni)));
    // A decapsulated frame no longer carries its VNI: its endpoint's network has it.
    let vni = vni.or(endpoint.map(|e| e.vni));
    Described {
        kind: if event.kind == kind::DROP {
            "drop"
        } else {
            "trace"
        },
        reason: (event.kind == kind::DROP)
            .then(|| DropReason::from_index(u32::from(event.reason)))
            .flatten(),
        hook: hook::name(event.hook),
        ifindex: event.ifindex,
        interface: host.interfaces.get(&event.ifindex).cloned(),
        endpoint: endpoint.map(|e| e.name.clone()),
        network: endpoint
            .map(|e| e.network.clone())
            .or_else(|| vni.and_then(|v| host.network_of_vni(v)).map(str::to_string)),
        vni,
        outer_src: vteps.0,
        outer_dst: vteps.1,
        src_mac: fmt_mac(&outer.src_mac),
        dst_mac: fmt_mac(&outer.dst_mac),
        ethertype: match outer.ethertype {
            ETH_P_IP => "ipv4".into(),
            ETH_P_ARP => "arp".into(),
            other => format!("{other:#06x}"),
        },
        src_ip: outer.src_ip,
        dst_ip: outer.dst_ip,
        protocol: outer.protocol.map(|p| match p {
            IPPROTO_TCP => "tcp".into(),
            IPPROTO_UDP => "udp".into(),
            IPPROTO_ICMP => "icmp".into(),
            other => other.to_string(),
        }),
        src_port: outer.ports.map(|p| p.0),
        dst_port: outer.ports.map(|p| p.1),
        len: event.len,
    }
}

impl std::fmt::Display for Described {
    /// One line: `drop drop-spoofed-mac from-endpoint web (net1) vni 256 02:..-> 02:.. 10.0.0.2
    /// -> 10.0.0.3 icmp len 98`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(reason) = self.reason {
            write!(f, " {}", reason.name())?;
        }
        write!(f, " {}", self.hook)?;
        match (&self.endpoint, &self.interface) {
            (Some(ep), _) => write!(f, " {ep}")?,
            (None, Some(ifname)) => write!(f, " {ifname}")?,
            (None, None) => write!(f, " ifindex {}", self.ifindex)?,
        }
        if let Some(network) = &self.network {
            write!(f, " ({network})")?;
        }
        if let Some(vni) = self.vni {
            write!(f, " vni {vni}")?;
        }
        if let (Some(src), Some(dst)) = (self.outer_src, self.outer_dst) {
            write!(f, " vtep {src} -> {dst}")?;
        }
        write!(
            f,
            " {} -> {} {}",
            self.src_mac, self.dst_mac, self.ethertype
        )?;
        let endpoint = |ip: Option<Ipv4Addr>, port: Option<u16>| match (ip, port) {
            (Some(ip), Some(port)) => format!("{ip}:{port}"),
            (Some(ip), None) => ip.to_string(),
            _ => "?".into(),
        };
        if self.src_ip.is_some() || self.dst_ip.is_some() {
            write!(
                f,
                " {} -> {}",
                endpoint(self.src_ip, self.src_port),
                endpoint(self.dst_ip, self.dst_port)
            )?;
        }
        if let Some(protocol) = &self.protocol {
            write!(f, " {protocol}")?;
        }
        write!(f, " len {}", self.len)
    }
}

/// What `netd monitor` shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub endpoint: Option<String>,
    pub network: Option<String>,
    /// Only drops for these reasons; empty for any.
    pub reasons: Vec<DropReason>,
}

impl Filter {
    pub fn matches(&self, event: &Described) -> bool {
        self.endpoint
            .as_ref()
            .is_none_or(|e| event.endpoint.as_ref() == Some(e))
            && self
                .network
                .as_ref()
                .is_none_or(|n| event.network.as_ref() == Some(n))
            && (self.reasons.is_empty() || event.reason.is_some_and(|r| self.reasons.contains(&r)))
    }
}

/// A drop reason by its name, with or without the `drop-` prefix.
pub fn drop_reason(name: &str) -> Option<DropReason> {
    DropReason::from_name(name)
}

fn reason_name<S: Serializer>(reason: &Option<DropReason>, s: S) -> Result<S::Ok, S::Error> {
    match reason {
        Some(reason) => s.serialize_str(reason.name()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use netd_common::monitor::SAMPLE_BYTES;

    use super::*;

    fn event(kind: u8, hook: u8, reason: DropReason, ifindex: u32, frame: &[u8]) -> Event {
        let mut sample = [0u8; SAMPLE_BYTES];
        let n = frame.len().min(SAMPLE_BYTES);
        sample[..n].copy_from_slice(&frame[..n]);
        Event {
            kind,
            hook,
            reason: reason.index() as u16,
            ifindex,
            len: frame.len() as u32,
            sample_len: n as u32,
            sample,
        }
    }

    /// Ethernet + IPv4 (no options) + UDP, ports given.
    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, IPPROTO_UDP, 0, 0]);
        f.extend(src);
        f.extend(dst);
        f.extend(sport.to_be_bytes());
        f.extend(dport.to_be_bytes());
        f.extend([0, 0, 0, 0]);
        f.extend(payload);
        f
    }

    fn host() -> HostView {
        let info = EndpointInfo {
            vni: 256,
            mac: [2, 0, 0, 0, 0, 1],
            vlan: 0,
            ipv4: [10, 0, 0, 2],
            flags: 0,
            parent_ifindex: 0,
        };
        let interfaces = [
            (
                7,
                Interface {
                    name: "nd-web".into(),
                    endpoint: Some(("net1".into(), "web".into())),
                },
            ),
            (
                2,
                Interface {
                    name: "eth0".into(),
                    endpoint: None,
                },
            ),
        ]
        .into();
        HostView::new(&[(7, info)], &interfaces, 4789)
    }

    #[test]
    fn a_drop_from_an_endpoint_names_it_and_its_network() {
        let frame = udp([10, 0, 0, 2], [10, 0, 0, 3], 1234, 53, &[]);
        let e = describe(
            &event(
                kind::DROP,
                hook::ENDPOINT,
                DropReason::SpoofedMac,
                7,
                &frame,
            ),
            &host(),
        );
        assert_eq!(e.reason, Some(DropReason::SpoofedMac));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["reason"], "drop-spoofed-mac");
        assert_eq!(e.endpoint.as_deref(), Some("web"));
        assert_eq!(e.network.as_deref(), Some("net1"));
        assert_eq!(e.vni, Some(256));
        assert_eq!((e.src_port, e.dst_port), (Some(1234), Some(53)));
        assert_eq!(
            e.to_string(),
            "drop drop-spoofed-mac from-endpoint web (net1) vni 256 02:00:00:00:00:01 -> \
             02:00:00:00:00:02 ipv4 10.0.0.2:1234 -> 10.0.0.3:53 udp len 42"
        );
        let only_web = Filter {
            endpoint: Some("web".into()),
            reasons: vec![DropReason::SpoofedMac],
            ..Filter::default()
        };
        assert!(only_web.matches(&e));
        let other = Filter {
            network: Some("net2".into()),
            ..Filter::default()
        };
        assert!(!other.matches(&e));
    }

    #[test]
    fn vxlan_is_shown_by_its_inner_frame() {
        let inner = udp([10, 0, 0, 9], [10, 0, 0, 2], 5000, 6000, &[]);
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 1, 0, 0];
        vxlan.extend(&inner);
        let outer = udp([192, 168, 0, 2], [192, 168, 0, 1], 49200, 4789, &vxlan);
        let e = describe(
            &event(kind::DROP, hook::UPLINK, DropReason::UnknownVtep, 2, &outer),
            &host(),
        );
        assert_eq!(e.vni, Some(256));
        assert_eq!(e.outer_src, Some(Ipv4Addr::new(192, 168, 0, 2)));
        assert_eq!(e.src_ip, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(e.endpoint.as_deref(), Some("web"));
        assert_eq!(e.interface.as_deref(), Some("eth0"));
    }

    #[test]
    fn reasons_are_found_with_or_without_their_prefix() {
        assert_eq!(drop_reason("spoofed-mac"), Some(DropReason::SpoofedMac));
        assert_eq!(
            drop_reason("drop-unknown-vtep"),
            Some(DropReason::UnknownVtep)
        );
        assert_eq!(drop_reason("rx"), None);
        assert_eq!(drop_reason("nonsense"), None);
    }
}
