//! Decoding pinned maps, with nothing loaded and no daemon running (`netd maps ls|dump`).
//!
//! Which maps there are, their layouts and their key and value types come from the table
//! (`netd_common::maps::for_each_map!`); what is here is how each is shown: [`decode`] has one
//! arm per map, which the compiler asks for when a map is added.

use std::{net::Ipv4Addr, ops::Add, path::Path};

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap};
use netd_common::{
    maps::{
        DatapathConfig, EndpointInfo, LAYOUTS, MapDef, MapId, MapKind, MapLayout, MapVisitor,
        Traffic, config_flags, def, endpoint_flags, fdb_kind, macvlan_mode,
    },
    stats,
};
use serde_json::{Value, json};

use super::{DatapathError, layout, map_error};
use crate::api::ErrorKind;

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
pub fn resolve_name(name: &str) -> Result<MapId, DatapathError> {
    MapId::from_name(name).ok_or_else(|| DatapathError::UnknownMap(name.into()))
}

/// Whether `path` is there. A path this user may not look at is refused, not absent: netd's
/// pin directory is root's (0700).
pub(super) fn is_pinned(path: &Path) -> Result<bool, DatapathError> {
    match path.try_exists() {
        Ok(there) => Ok(there),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(DatapathError::PermissionDenied(path.to_path_buf()))
        }
        // Anything else (a --pin-dir that is a file): nothing pinned there.
        Err(_) => Ok(false),
    }
}

/// Opens a pin after checking it has `layout`; returns it with its capacity. A pin the
/// kernel does not hand to this user is said to be refused, as an unreadable directory is.
pub(super) fn open_pin(path: &Path, layout: &MapLayout) -> Result<(Map, u32), DatapathError> {
    let open = || {
        // Decoding a map with another layout would print garbage: check first.
        let max_entries = layout::check_pin(path, layout, None)?;
        let map_error = |source| DatapathError::Map {
            name: layout.name,
            source,
        };
        let data = MapData::from_pin(path).map_err(map_error)?;
        let map = Map::from_map_data(data).map_err(map_error)?;
        Ok((map, max_entries))
    };
    open().map_err(|e: DatapathError| match e.kind() {
        ErrorKind::PermissionDenied => DatapathError::PermissionDenied(path.to_path_buf()),
        _ => e,
    })
}

/// Opens the pin of a map in `dir` after checking its layout; returns it with its capacity.
fn open(dir: &Path, layout: &MapLayout) -> Result<(Map, u32), DatapathError> {
    let path = dir.join(layout.name);
    if !is_pinned(&path)? {
        let any_pinned = is_pinned(dir)?
            && LAYOUTS.iter().try_fold(false, |any, l| {
                Ok::<_, DatapathError>(any || is_pinned(&dir.join(l.name))?)
            })?;
        return Err(if any_pinned {
            DatapathError::MissingPin {
                name: layout.name,
                dir: dir.to_path_buf(),
            }
        } else {
            DatapathError::NoPins(dir.to_path_buf())
        });
    }
    open_pin(&path, layout)
}

/// The pin of map `D` as aya's type `T` for it.
fn open_as<D: MapDef, T>(dir: &Path) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let (map, _) = open(dir, &D::LAYOUT)?;
    T::try_from(map).map_err(map_error::<D>)
}

/// The entries of map `D`, as its key and value types.
type Entries<D> = Vec<(<D as MapDef>::Key, <D as MapDef>::Value)>;

fn hash_entries<D: MapDef>(map: Map) -> Result<Entries<D>, DatapathError> {
    let map: HashMap<MapData, D::Key, D::Value> = HashMap::try_from(map).map_err(map_error::<D>)?;
    map.iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_error::<D>)
}

/// The entries of a per-CPU hash map, each summed over the CPUs.
fn per_cpu_sums<D: MapDef>(map: Map) -> Result<Entries<D>, DatapathError>
where
    D::Value: Add<Output = D::Value> + Default,
{
    let map: PerCpuHashMap<MapData, D::Key, D::Value> =
        PerCpuHashMap::try_from(map).map_err(map_error::<D>)?;
    map.iter()
        .map(|item| {
            let (key, per_cpu) = item.map_err(map_error::<D>)?;
            let sum = per_cpu.iter().fold(D::Value::default(), |a, b| a + *b);
            Ok((key, sum))
        })
        .collect()
}

/// Counts the entries of a pinned map of any kind; its keys are walked, its values not read,
/// so that it stays cheap with a hundred thousand entries.
struct CountEntries {
    map: Map,
    max_entries: u32,
}

impl MapVisitor for CountEntries {
    type Output = Result<usize, DatapathError>;

    fn visit<D: MapDef>(self) -> Self::Output {
        fn walk<D: MapDef, K>(
            keys: impl Iterator<Item = Result<K, MapError>>,
        ) -> Result<usize, DatapathError> {
            let mut n = 0;
            for key in keys {
                key.map_err(map_error::<D>)?;
                n += 1;
            }
            Ok(n)
        }
        match D::LAYOUT.kind {
            MapKind::Hash | MapKind::LruHash => {
                let map: HashMap<MapData, D::Key, D::Value> =
                    HashMap::try_from(self.map).map_err(map_error::<D>)?;
                walk::<D, _>(map.keys())
            }
            MapKind::LruPerCpuHash => {
                let map: PerCpuHashMap<MapData, D::Key, D::Value> =
                    PerCpuHashMap::try_from(self.map).map_err(map_error::<D>)?;
                walk::<D, _>(map.keys())
            }
            // Arrays always hold every slot; a ring buffer is shown by its size.
            MapKind::Array | MapKind::PerCpuArray | MapKind::RingBuf => {
                Ok(self.max_entries as usize)
            }
        }
    }
}

/// Lists the pinned maps in `dir` with their capacity and fill.
pub fn list(dir: &Path) -> Result<Vec<MapSummary>, DatapathError> {
    LAYOUTS
        .iter()
        .map(|layout| {
            // `open` explains a missing pin (no pins at all, or only this one missing).
            let (map, max_entries) = open(dir, layout)?;
            let entries = layout.id.visit(CountEntries { map, max_entries })?;
            Ok(MapSummary {
                name: layout.name,
                kind: layout.kind.name(),
                key_size: layout.key_size,
                value_size: layout.value_size,
                max_entries,
                entries,
            })
        })
        .collect()
}

/// Decodes one pinned map.
pub fn dump(dir: &Path, name: &str) -> Result<Table, DatapathError> {
    let id = resolve_name(name)?;
    let (map, _) = open(dir, &id.layout())?;
    decode(id, map)
}

/// How `netd maps dump` shows each map.
fn decode(id: MapId, map: Map) -> Result<Table, DatapathError> {
    match id {
        MapId::Config => {
            let array: Array<MapData, <def::Config as MapDef>::Value> =
                Array::try_from(map).map_err(map_error::<def::Config>)?;
            let config = array.get(&0, 0).map_err(map_error::<def::Config>)?;
            Ok(config_table(&config))
        }
        MapId::Endpoints => hash_table::<def::Endpoints, 5>(
            map,
            ["ifindex", "vni", "mac", "ipv4", "kind"],
            |ifindex, ep| {
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
                [
                    json!(ifindex),
                    json!(ep.vni),
                    json!(fmt_mac(&ep.mac)),
                    json!(ip(ep.ipv4)),
                    json!(kind),
                ]
            },
        ),
        MapId::Fdb => hash_table::<def::Fdb, 4>(map, ["vni", "mac", "kind", "target"], |k, v| {
            let (kind, target) = match v.kind {
                fdb_kind::LOCAL => ("local", format!("ifindex {}", v.ifindex)),
                fdb_kind::REMOTE => ("remote", format!("vtep {}", ip(v.vtep))),
                fdb_kind::GATEWAY => ("gateway", String::new()),
                other => ("invalid", format!("kind {other}")),
            };
            [
                json!(k.vni),
                json!(fmt_mac(&k.mac)),
                json!(kind),
                json!(target),
            ]
        }),
        MapId::Neigh => hash_table::<def::Neigh, 3>(map, ["vni", "ipv4", "mac"], |k, v| {
            [json!(k.vni), json!(ip(k.ipv4)), json!(fmt_mac(&v.mac))]
        }),
        MapId::Vteps => hash_table::<def::Vteps, 2>(map, ["vtep", "vni"], |k, _| {
            [json!(ip(k.vtep)), json!(k.vni)]
        }),
        MapId::Parents => hash_table::<def::Parents, 7>(
            map,
            [
                "ifindex",
                "vlan",
                "vni",
                "mode",
                "host_access",
                "mac",
                "endpoints",
            ],
            |k, v| {
                let ports: Vec<u32> = v.ports.iter().take(v.count as usize).copied().collect();
                [
                    json!(k.ifindex),
                    json!(k.vlan),
                    json!(v.vni),
                    json!(mode_name(v.flags)),
                    json!(v.flags & endpoint_flags::HOST_ACCESS != 0),
                    json!(fmt_mac(&v.mac)),
                    json!(ports),
                ]
            },
        ),
        MapId::Stats => stats_table(map),
        MapId::Nexthops => {
            let now = super::events::monotonic_ns();
            hash_table::<def::Nexthops, 5>(
                map,
                ["vtep", "ifindex", "dst_mac", "src_mac", "expires_in_ms"],
                |vtep, hop| {
                    // Same clock as the program's bpf_ktime_get_ns; negative once expired.
                    let expires_in_ms = (i128::from(hop.expires_ns) - i128::from(now)) / 1_000_000;
                    [
                        json!(ip(vtep)),
                        json!(hop.ifindex),
                        json!(fmt_mac(&hop.dst_mac)),
                        json!(fmt_mac(&hop.src_mac)),
                        json!(expires_in_ms as i64),
                    ]
                },
            )
        }
        MapId::Traffic => {
            let columns = [
                "ifindex",
                "sent_packets",
                "sent_bytes",
                "received_packets",
                "received_bytes",
            ];
            let rows = per_cpu_sums::<def::Traffic>(map)?
                .into_iter()
                .map(|(ifindex, t)| {
                    row(
                        columns,
                        [
                            json!(ifindex),
                            json!(t.sent_packets),
                            json!(t.sent_bytes),
                            json!(t.received_packets),
                            json!(t.received_bytes),
                        ],
                    )
                })
                .collect();
            Ok(sorted(columns.to_vec(), rows))
        }
        MapId::Events => Err(DatapathError::NotDumpable {
            name: id.name(),
            why: "a ring buffer, which `netd monitor` reads",
        }),
        MapId::Monitor | MapId::EventBudget => Err(DatapathError::NotDumpable {
            name: id.name(),
            why: "netd monitor's switches, which `netd monitor` sets",
        }),
    }
}

fn row<const N: usize>(
    columns: [&'static str; N],
    values: [Value; N],
) -> serde_json::Map<String, Value> {
    columns
        .into_iter()
        .map(str::to_string)
        .zip(values)
        .collect()
}

/// A hash map of the table's types for `D` as rows of `columns`, in a stable order.
fn hash_table<D: MapDef, const N: usize>(
    map: Map,
    columns: [&'static str; N],
    values: impl Fn(D::Key, D::Value) -> [Value; N],
) -> Result<Table, DatapathError> {
    let rows = hash_entries::<D>(map)?
        .into_iter()
        .map(|(k, v)| row(columns, values(k, v)))
        .collect();
    Ok(sorted(columns.to_vec(), rows))
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
        rows: vec![row(
            [
                "local_vtep",
                "uplink_ifindex",
                "vxlan_port",
                "underlay_mtu",
                "flags",
            ],
            [
                json!(ip(c.local_vtep)),
                json!(c.uplink_ifindex),
                json!(c.vxlan_port),
                json!(c.underlay_mtu),
                json!(flags.join(",")),
            ],
        )],
    }
}

fn stats_table(map: Map) -> Result<Table, DatapathError> {
    let array: PerCpuArray<MapData, <def::Stats as MapDef>::Value> =
        PerCpuArray::try_from(map).map_err(map_error::<def::Stats>)?;
    let mut rows = Vec::new();
    for index in 0..stats::COUNT as u32 {
        let per_cpu = array.get(&index, 0).map_err(map_error::<def::Stats>)?;
        let total: u64 = per_cpu.iter().sum();
        rows.push(
            [
                ("counter", json!(stats::name(index).unwrap_or("?"))),
                ("packets", json!(total)),
                ("per_cpu", json!(per_cpu.to_vec())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        );
    }
    // Stats keep the counters' own order (outcomes, then drops).
    Ok(Table {
        columns: vec!["counter", "packets"],
        rows,
    })
}

/// The endpoints of this host by ifindex, from a pinned `NETD_ENDPOINTS` (`netd monitor`).
pub fn endpoints(dir: &Path) -> Result<Vec<(u32, EndpointInfo)>, DatapathError> {
    let (map, _) = open(dir, &<def::Endpoints as MapDef>::LAYOUT)?;
    hash_entries::<def::Endpoints>(map)
}

/// What each endpoint of this host sent and received (by host-side ifindex), summed over CPUs,
/// from a pinned `NETD_TRAFFIC`.
pub fn traffic(dir: &Path) -> Result<Vec<(u32, Traffic)>, DatapathError> {
    let (map, _) = open(dir, &<def::Traffic as MapDef>::LAYOUT)?;
    per_cpu_sums::<def::Traffic>(map)
}

/// The configuration the daemon wrote, from a pinned `NETD_CONFIG`.
pub fn config(dir: &Path) -> Result<DatapathConfig, DatapathError> {
    let array: Array<MapData, <def::Config as MapDef>::Value> = open_as::<def::Config, _>(dir)?;
    array.get(&0, 0).map_err(map_error::<def::Config>)
}

/// Summed per-CPU counters by name, in counter order, from a pinned `NETD_STATS` (`netd
/// monitor`, the metrics, tests).
pub fn counters(dir: &Path) -> Result<Vec<(&'static str, u64)>, DatapathError> {
    sum_counters(&open_as::<def::Stats, _>(dir)?)
}

/// Summed per-CPU counters by name, in counter order, from `NETD_STATS` (pinned, or the one
/// the daemon loaded).
pub(super) fn sum_counters<T: std::borrow::Borrow<MapData>>(
    array: &PerCpuArray<T, <def::Stats as MapDef>::Value>,
) -> Result<Vec<(&'static str, u64)>, DatapathError> {
    (0..stats::COUNT as u32)
        .map(|index| {
            let per_cpu = array.get(&index, 0).map_err(map_error::<def::Stats>)?;
            Ok((stats::name(index).unwrap_or("?"), per_cpu.iter().sum()))
        })
        .collect()
}
