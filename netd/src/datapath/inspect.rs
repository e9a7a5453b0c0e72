//! Decoding pinned maps, with nothing loaded and no daemon running (`netd maps ls|dump`).

use std::{net::Ipv4Addr, path::Path};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuHashMap};
use netd_common::{
    maps::{
        DatapathConfig, EndpointInfo, EndpointKey, FdbEntry, FdbKey, LAYOUTS, MapLayout,
        NeighEntry, NeighKey, NextHop, ParentInfo, ParentKey, Traffic, VtepEntry, VtepKey,
        config_flags, endpoint_flags, fdb_kind, macvlan_mode, map_type, names,
    },
    stats,
};
use serde_json::{Value, json};

use super::{DatapathError, layout};

/// A decoded map: column names and one JSON object per entry (keys in column order).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<serde_json::Map<String, Value>>,
}

/// Summary of one pinned map, for `netd maps ls`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MapSummary {
    pub name: &'static str,
    pub kind: &'static str,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub entries: usize,
}

pub fn fmt_mac(mac: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

fn ip(octets: [u8; 4]) -> String {
    Ipv4Addr::from(octets).to_string()
}

/// Finds a map by its full name (`NETD_FDB`) or short one (`fdb`), case-insensitively.
pub fn resolve_name(name: &str) -> Result<&'static MapLayout, DatapathError> {
    LAYOUTS
        .iter()
        .find(|l| {
            l.name.eq_ignore_ascii_case(name)
                || l.name
                    .strip_prefix("NETD_")
                    .is_some_and(|short| short.eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| DatapathError::UnknownMap(name.into()))
}

fn open(dir: &Path, layout: &MapLayout) -> Result<Map, DatapathError> {
    let path = dir.join(layout.name);
    if !path.exists() {
        if !dir.exists() || LAYOUTS.iter().all(|l| !dir.join(l.name).exists()) {
            return Err(DatapathError::NoPins(dir.to_path_buf()));
        }
        return Err(DatapathError::UnknownMap(layout.name.into()));
    }
    // Decoding a map with another layout would print garbage: check first.
    layout::check_pin(&path, layout, None)?;
    let data = MapData::from_pin(&path).map_err(|source| DatapathError::Map {
        name: layout.name,
        source,
    })?;
    Map::from_map_data(data).map_err(|source| DatapathError::Map {
        name: layout.name,
        source,
    })
}

fn hash_entries<K: aya::Pod, V: aya::Pod>(
    map: Map,
    name: &'static str,
) -> Result<Vec<(K, V)>, DatapathError> {
    let map: HashMap<MapData, K, V> =
        HashMap::try_from(map).map_err(|source| DatapathError::Map { name, source })?;
    map.iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| DatapathError::Map { name, source })
}

fn row(pairs: Vec<(&'static str, Value)>) -> serde_json::Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Lists the pinned maps in `dir` with their capacity and fill. Counting walks the keys only,
/// so it stays cheap with a hundred thousand entries.
pub fn list(dir: &Path) -> Result<Vec<MapSummary>, DatapathError> {
    let mut out = Vec::new();
    for layout in &LAYOUTS {
        let path = dir.join(layout.name);
        // `open` explains a missing pin (no pins at all, or an unknown map).
        let map = open(dir, layout)?;
        let max_entries = layout::check_pin(&path, layout, None)?;
        let entries = match layout.name {
            names::ENDPOINTS => count::<EndpointKey, EndpointInfo>(map, layout.name)?,
            names::FDB => count::<FdbKey, FdbEntry>(map, layout.name)?,
            names::NEIGH => count::<NeighKey, NeighEntry>(map, layout.name)?,
            names::VTEPS => count::<VtepKey, VtepEntry>(map, layout.name)?,
            names::PARENTS => count::<ParentKey, ParentInfo>(map, layout.name)?,
            names::NEXTHOPS => count::<[u8; 4], NextHop>(map, layout.name)?,
            names::TRAFFIC => traffic_of(map)?.len(),
            // Arrays always hold every slot.
            _ => max_entries as usize,
        };
        out.push(MapSummary {
            name: layout.name,
            kind: match layout.map_type {
                map_type::HASH => "hash",
                map_type::ARRAY => "array",
                map_type::PERCPU_ARRAY => "percpu_array",
                map_type::LRU_HASH => "lru_hash",
                map_type::LRU_PERCPU_HASH => "lru_percpu_hash",
                map_type::RINGBUF => "ringbuf",
                _ => "other",
            },
            key_size: layout.key_size,
            value_size: layout.value_size,
            max_entries,
            entries,
        });
    }
    Ok(out)
}

/// Entries of a pinned hash map (its keys walked, values not read).
fn count<K: aya::Pod, V: aya::Pod>(map: Map, name: &'static str) -> Result<usize, DatapathError> {
    let map: HashMap<MapData, K, V> =
        HashMap::try_from(map).map_err(|source| DatapathError::Map { name, source })?;
    let mut n = 0;
    for key in map.keys() {
        key.map_err(|source| DatapathError::Map { name, source })?;
        n += 1;
    }
    Ok(n)
}

/// Decodes one pinned map.
pub fn dump(dir: &Path, name: &str) -> Result<Table, DatapathError> {
    let layout = resolve_name(name)?;
    let map = open(dir, layout)?;
    match layout.name {
        names::CONFIG => Ok(config_table(&config(dir)?)),
        names::ENDPOINTS => {
            let mut rows = Vec::new();
            for (ifindex, ep) in hash_entries::<EndpointKey, EndpointInfo>(map, names::ENDPOINTS)? {
                let kind = if ep.flags & endpoint_flags::MACVLAN != 0 {
                    format!(
                        "macvlan {} via {}.{}",
                        mode_name(ep.flags),
                        ep.parent_ifindex,
                        ep.vlan
                    )
                } else {
                    "overlay".to_string()
                };
                rows.push(row(vec![
                    ("ifindex", json!(ifindex)),
                    ("vni", json!(ep.vni)),
                    ("mac", json!(fmt_mac(&ep.mac))),
                    ("ipv4", json!(ip(ep.ipv4))),
                    ("kind", json!(kind)),
                ]));
            }
            Ok(sorted(vec!["ifindex", "vni", "mac", "ipv4", "kind"], rows))
        }
        names::FDB => {
            let mut rows = Vec::new();
            for (k, v) in hash_entries::<FdbKey, FdbEntry>(map, names::FDB)? {
                let (kind, target) = match v.kind {
                    fdb_kind::LOCAL => ("local", format!("ifindex {}", v.ifindex)),
                    fdb_kind::REMOTE => ("remote", format!("vtep {}", ip(v.vtep))),
                    fdb_kind::GATEWAY => ("gateway", String::new()),
                    other => ("invalid", format!("kind {other}")),
                };
                rows.push(row(vec![
                    ("vni", json!(k.vni)),
                    ("mac", json!(fmt_mac(&k.mac))),
                    ("kind", json!(kind)),
                    ("target", json!(target)),
                ]));
            }
            Ok(sorted(vec!["vni", "mac", "kind", "target"], rows))
        }
        names::NEIGH => {
            let mut rows = Vec::new();
            for (k, v) in hash_entries::<NeighKey, NeighEntry>(map, names::NEIGH)? {
                rows.push(row(vec![
                    ("vni", json!(k.vni)),
                    ("ipv4", json!(ip(k.ipv4))),
                    ("mac", json!(fmt_mac(&v.mac))),
                ]));
            }
            Ok(sorted(vec!["vni", "ipv4", "mac"], rows))
        }
        names::VTEPS => {
            let mut rows = Vec::new();
            for (k, _) in hash_entries::<VtepKey, VtepEntry>(map, names::VTEPS)? {
                rows.push(row(vec![
                    ("vtep", json!(ip(k.vtep))),
                    ("vni", json!(k.vni)),
                ]));
            }
            Ok(sorted(vec!["vtep", "vni"], rows))
        }
        names::PARENTS => {
            let mut rows = Vec::new();
            for (k, v) in hash_entries::<ParentKey, ParentInfo>(map, names::PARENTS)? {
                let ports: Vec<u32> = v.ports.iter().take(v.count as usize).copied().collect();
                rows.push(row(vec![
                    ("ifindex", json!(k.ifindex)),
                    ("vlan", json!(k.vlan)),
                    ("vni", json!(v.vni)),
                    ("mode", json!(mode_name(v.flags))),
                    (
                        "host_access",
                        json!(v.flags & endpoint_flags::HOST_ACCESS != 0),
                    ),
                    ("mac", json!(fmt_mac(&v.mac))),
                    ("endpoints", json!(ports)),
                ]));
            }
            Ok(sorted(
                vec![
                    "ifindex",
                    "vlan",
                    "vni",
                    "mode",
                    "host_access",
                    "mac",
                    "endpoints",
                ],
                rows,
            ))
        }
        names::STATS => dump_stats(map),
        names::NEXTHOPS => {
            let now = super::events::monotonic_ns();
            let mut rows = Vec::new();
            for (vtep, hop) in hash_entries::<[u8; 4], NextHop>(map, names::NEXTHOPS)? {
                // Same clock as the program's bpf_ktime_get_ns; negative once expired.
                let expires_in_ms = (hop.expires_ns as i128 - now as i128) / 1_000_000;
                rows.push(row(vec![
                    ("vtep", json!(ip(vtep))),
                    ("ifindex", json!(hop.ifindex)),
                    ("dst_mac", json!(fmt_mac(&hop.dst_mac))),
                    ("src_mac", json!(fmt_mac(&hop.src_mac))),
                    ("expires_in_ms", json!(expires_in_ms as i64)),
                ]));
            }
            Ok(sorted(
                vec!["vtep", "ifindex", "dst_mac", "src_mac", "expires_in_ms"],
                rows,
            ))
        }
        names::TRAFFIC => {
            let rows = traffic_of(map)?
                .into_iter()
                .map(|(ifindex, t)| {
                    row(vec![
                        ("ifindex", json!(ifindex)),
                        ("sent_packets", json!(t.sent_packets)),
                        ("sent_bytes", json!(t.sent_bytes)),
                        ("received_packets", json!(t.received_packets)),
                        ("received_bytes", json!(t.received_bytes)),
                    ])
                })
                .collect();
            Ok(sorted(
                vec![
                    "ifindex",
                    "sent_packets",
                    "sent_bytes",
                    "received_packets",
                    "received_bytes",
                ],
                rows,
            ))
        }
        names::EVENTS => Err(DatapathError::NotDumpable(
            "NETD_EVENTS is a ring buffer: `netd monitor` reads it",
        )),
        names::MONITOR | names::EVENT_BUDGET => Err(DatapathError::NotDumpable(
            "netd monitor's switches: `netd monitor` sets them",
        )),
        other => Err(DatapathError::UnknownMap(other.into())),
    }
}

fn mode_name(flags: u32) -> &'static str {
    match (flags >> endpoint_flags::MODE_SHIFT) & 0xff {
        macvlan_mode::BRIDGE => "bridge",
        macvlan_mode::PRIVATE => "private",
        macvlan_mode::VEPA => "vepa",
        macvlan_mode::PASSTHRU => "passthru",
        _ => "?",
    }
}

/// Rows in a stable order (hash maps iterate in no useful order).
fn sorted(columns: Vec<&'static str>, mut rows: Vec<serde_json::Map<String, Value>>) -> Table {
    rows.sort_by_key(|r| {
        columns
            .iter()
            .map(|c| match r.get(*c) {
                Some(Value::Number(n)) => format!("{:>12}", n),
                Some(v) => v.to_string(),
                None => String::new(),
            })
            .collect::<Vec<_>>()
    });
    Table { columns, rows }
}

fn config_table(c: &DatapathConfig) -> Table {
    let mut flags = Vec::new();
    for (flag, name) in [
        (config_flags::REDIRECT_PEER, "redirect-peer"),
        (config_flags::ENCAP_L2_ETH, "encap-l2-eth"),
        (config_flags::DECAP_L3_IPV4, "decap-l3-ipv4"),
        (config_flags::ENDPOINT_TRAFFIC, "endpoint-traffic"),
        (config_flags::GRO_DEVICE, "gro-device"),
    ] {
        if c.flags & flag != 0 {
            flags.push(name);
        }
    }
    Table {
        columns: vec![
            "local_vtep",
            "uplink_ifindex",
            "vxlan_port",
            "underlay_mtu",
            "flags",
        ],
        rows: vec![row(vec![
            ("local_vtep", json!(ip(c.local_vtep))),
            ("uplink_ifindex", json!(c.uplink_ifindex)),
            ("vxlan_port", json!(c.vxlan_port)),
            ("underlay_mtu", json!(c.underlay_mtu)),
            ("flags", json!(flags.join(","))),
        ])],
    }
}

fn dump_stats(map: Map) -> Result<Table, DatapathError> {
    let name = names::STATS;
    let array: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(map).map_err(|source| DatapathError::Map { name, source })?;
    let mut rows = Vec::new();
    for index in 0..stats::COUNT as u32 {
        let per_cpu = array
            .get(&index, 0)
            .map_err(|source| DatapathError::Map { name, source })?;
        let total: u64 = per_cpu.iter().sum();
        rows.push(row(vec![
            ("counter", json!(stats::name(index).unwrap_or("?"))),
            ("packets", json!(total)),
            ("per_cpu", json!(per_cpu.to_vec())),
        ]));
    }
    // Stats keep the counters' own order (outcomes, then drops).
    Ok(Table {
        columns: vec!["counter", "packets"],
        rows,
    })
}

/// The endpoints of this host by ifindex, from a pinned `NETD_ENDPOINTS` (`netd monitor`).
pub fn endpoints(dir: &Path) -> Result<Vec<(u32, EndpointInfo)>, DatapathError> {
    let layout = resolve_name(names::ENDPOINTS)?;
    hash_entries::<EndpointKey, EndpointInfo>(open(dir, layout)?, names::ENDPOINTS)
}

/// What each endpoint of this host sent and received (by host-side ifindex), summed over CPUs,
/// from a pinned `NETD_TRAFFIC`.
pub fn traffic(dir: &Path) -> Result<Vec<(u32, Traffic)>, DatapathError> {
    traffic_of(open(dir, resolve_name(names::TRAFFIC)?)?)
}

fn traffic_of(map: Map) -> Result<Vec<(u32, Traffic)>, DatapathError> {
    let name = names::TRAFFIC;
    let map: PerCpuHashMap<MapData, u32, Traffic> =
        PerCpuHashMap::try_from(map).map_err(|source| DatapathError::Map { name, source })?;
    map.iter()
        .map(|item| {
            let (ifindex, per_cpu) = item.map_err(|source| DatapathError::Map { name, source })?;
            let sum = per_cpu.iter().fold(Traffic::default(), |a, b| a + *b);
            Ok((ifindex, sum))
        })
        .collect()
}

/// The configuration the daemon wrote, from a pinned `NETD_CONFIG`.
pub fn config(dir: &Path) -> Result<DatapathConfig, DatapathError> {
    let name = names::CONFIG;
    let array: Array<MapData, DatapathConfig> = Array::try_from(open(dir, resolve_name(name)?)?)
        .map_err(|source| DatapathError::Map { name, source })?;
    array
        .get(&0, 0)
        .map_err(|source| DatapathError::Map { name, source })
}

/// Summed per-CPU counters by name, from a pinned `NETD_STATS` (tests and `netd status`).
pub fn counters(dir: &Path) -> Result<Vec<(&'static str, u64)>, DatapathError> {
    let table = dump(dir, names::STATS)?;
    Ok(table
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                stats::name(i as u32).unwrap_or("?"),
                r.get("packets").and_then(Value::as_u64).unwrap_or(0),
            )
        })
        .collect())
}
