//! The API's requests and answers: what the daemon serializes, what the CLI prints with
//! `--json`, and what tests read back. Field names are the JSON users see; changing one breaks
//! their scripts.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;
pub use netd_store::ifname::IfName;
use netd_store::schema::{Mac, SubnetRecord};
use serde::{Deserialize, Serialize};

/// One subnet as given on the command line (or by Docker's IPAM): text, checked by the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetSpec {
    pub subnet: String,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    /// Addresses never handed out: (name, IPv4 address).
    pub aux: Vec<(String, String)>,
}

/// `POST /v1/networks`: `netd network create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateNetwork {
    pub name: String,
    /// `overlay` or `macvlan`.
    pub driver: String,
    pub subnets: Vec<SubnetSpec>,
    pub mtu: Option<u16>,
    /// `None`: the lowest free from 256.
    pub vni: Option<u32>,
    /// Driver options, `-o KEY=VALUE` (macvlan's `parent`, ...).
    pub options: Vec<(String, String)>,
}

/// One subnet of a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub subnet: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<String, Ipv4Addr>,
}

impl From<&SubnetRecord> for Subnet {
    fn from(s: &SubnetRecord) -> Self {
        Self {
            subnet: s.subnet,
            gateway: s.gateway,
            ip_range: s.ip_range,
            aux: s.aux.clone(),
        }
    }
}

/// A network: the answer of `network create`, each row of `network ls`, and (with its
/// endpoints and warnings) `network inspect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub driver: String,
    pub vni: u32,
    pub subnets: Vec<Subnet>,
    /// Inner MTU; `None`: each host's uplink MTU less VXLAN's 50 B.
    pub mtu: Option<u16>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// How many endpoints it has, on every host.
    pub endpoints: usize,
    /// Its endpoints (`network inspect` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_list: Option<Vec<Endpoint>>,
    /// What will not work as asked, such as hosts whose uplink cannot carry the MTU
    /// (`network inspect` only; absent when there is nothing to say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `POST /v1/endpoints`: `netd endpoint add`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddEndpoint {
    /// The endpoint's name, unique in its network.
    pub name: String,
    pub network: String,
    /// Namespace name (`ip netns`) or path (`/proc/PID/ns/net`).
    pub netns: String,
    /// `None`: the next free address.
    pub ip: Option<Ipv4Addr>,
    /// `None`: derived from the address.
    pub mac: Option<String>,
    /// The interface's name inside the namespace (checked as the kernel would when the request
    /// is read).
    pub ifname: IfName,
}

/// An endpoint: each row of `endpoint ls` and of `network inspect`'s list, and the answer of
/// `endpoint add`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub network: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    /// The host it lives on.
    pub host: String,
    /// That host's VTEP address.
    pub vtep: Ipv4Addr,
    /// The host-side interface (`endpoint add` only: the host that answers made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// The answer of `network rm` and `endpoint rm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// The name of what was removed.
    pub removed: String,
    /// The endpoint's network (`endpoint rm` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// The answer of `host rm`: what a host that is gone left, now removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedHost {
    /// The host's name.
    pub removed: String,
    /// Its endpoint records.
    pub endpoints: usize,
    /// Address claims released: its endpoints' and those it handed to Docker.
    pub claims: usize,
}

/// The state of one of the daemon's links (the store watch, the host lease, Docker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Not established yet.
    Connecting,
    /// Listing, or applying what was listed.
    Syncing,
    /// Up: the watch is open, or the lease is registered and renewed.
    Connected,
    /// The store does not answer; retrying.
    Unreachable,
    /// The store answers, but the link cannot work (a refused request, a host name taken).
    Failing,
}

impl LinkState {
    /// Every state, in the order metrics list them (a state set has one series per state).
    pub const ALL: [Self; 5] = [
        Self::Connecting,
        Self::Syncing,
        Self::Connected,
        Self::Unreachable,
        Self::Failing,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Syncing => "syncing",
            Self::Connected => "connected",
            Self::Unreachable => "unreachable",
            Self::Failing => "failing",
        }
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the daemon chose its uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UplinkSource {
    /// `--uplink` named it.
    Flag,
    /// It holds the `--advertise` address.
    Advertise,
}

impl std::fmt::Display for UplinkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Flag => "given by --uplink",
            Self::Advertise => "holds --advertise",
        })
    }
}

/// `GET /v1/status`: `netd status`. The first fields answer "is this host all right?".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// No problem below.
    pub healthy: bool,
    /// Why the host is not healthy, in the order an operator should look (empty: healthy).
    pub problems: Vec<String>,
    /// The same two, as scripts written before the fields above read them.
    pub health: HealthStatus,
    /// This host's name in the store.
    pub host: String,
    pub vtep: Ipv4Addr,
    pub uplink: String,
    /// How the uplink was chosen (absent from daemons older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_source: Option<UplinkSource>,
    pub uplink_mtu: u16,
    pub kernel: KernelStatus,
    pub store_url: String,
    pub store: StoreStatus,
    /// The hosts registered in the store, by name.
    pub hosts: BTreeMap<String, PeerHost>,
    /// Networks in the store.
    pub networks: usize,
    /// Networks this host has endpoints in (whose peers it programs).
    pub networks_active: usize,
    /// This host's endpoints in the store.
    pub endpoints_local: usize,
    /// Endpoints known, valid or not.
    pub endpoints_known: usize,
    pub endpoints_programmed: Programmed,
    /// Store values skipped because they do not decode or validate.
    pub invalid_values: u64,
    /// Store events the reconciler applied.
    pub events_applied: u64,
    /// Map entries found different from what the daemon believed they held, and repaired.
    pub drift_repaired: u64,
    pub last_batch: LastBatch,
    /// The Docker engine as `status` says it ("connected to /run/docker.sock"), or `disabled`.
    pub docker: String,
    pub maps: Vec<MapStatus>,
    pub programs: Vec<ProgramStatus>,
    pub uptime_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStatus {
    pub healthy: bool,
    pub problems: Vec<String>,
}

/// What the kernel took when the daemon started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelStatus {
    /// How programs are hooked to TC: `tcx` or `netlink`.
    pub tc_attach: String,
    /// `BPF_F_ADJ_ROOM_ENCAP_L2_ETH` taken (Linux 5.13).
    pub adjust_room_encap_l2_eth: bool,
    /// `BPF_F_ADJ_ROOM_DECAP_L3_IPV4` taken (Linux 6.3).
    pub adjust_room_decap_l3_ipv4: bool,
    /// The vxlan device that aggregates received packets (GRO), `None` when off.
    pub gro_device: Option<String>,
}

/// The store: its overall state (the worse of watch and lease), then each link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub state: LinkState,
    pub watch: LinkStatus,
    pub lease: LeaseStatus,
    pub url: String,
    /// The store revision the maps reflect.
    pub revision: i64,
    /// The member that answers requests, where the backend can tell.
    pub member: Option<String>,
    /// Where this host writes its endpoints and claims: `per-host` (under its own prefix, which
    /// the store's access control can confine it to), or `shared` while the hosts named in
    /// `shared_layout_hosts` run a netd that reads only that layout. Absent from older daemons.
    #[serde(default)]
    pub keys: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_layout_hosts: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub state: LinkState,
    /// How long it has been in this state.
    pub for_seconds: u64,
    /// Why it is not connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The host's registration and its renewals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    #[serde(flatten)]
    pub link: LinkStatus,
    /// The lease's id in the store, while registered.
    pub lease: Option<String>,
    pub ttl_seconds: u64,
    pub registrations: u64,
    pub renewals: u64,
    /// Keep-alives that failed, or succeeded later than two thirds of the TTL after the
    /// previous one.
    pub missed_renewals: u64,
    pub last_renewal_ms_ago: Option<u64>,
}

/// A host registered in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHost {
    pub vtep: Ipv4Addr,
    /// The netd release it runs.
    pub netd: String,
}

/// Endpoints in the maps: this host's, and other hosts' in the networks this host is on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Programmed {
    pub local: usize,
    pub remote: usize,
}

/// The reconciler's last batch, from its first event to its last map write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastBatch {
    pub events: usize,
    pub ms: f64,
}

/// One datapath map's fill level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapStatus {
    pub name: String,
    pub entries: usize,
    pub max_entries: u32,
    /// Writes and deletes that failed since the daemon started.
    pub failed_writes: u64,
    /// The last failure, while the map is failing.
    pub error: Option<String>,
}

/// One loaded BPF program's size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStatus {
    pub name: String,
    /// BPF instructions after the kernel's rewrites.
    pub instructions: Option<u32>,
    pub jited_bytes: u32,
    /// Instructions the verifier processed to prove the program safe.
    pub verified_instructions: Option<u32>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `netd status --json` as scripts (and the README) read it: these names are the interface.
    #[test]
    fn status_keeps_the_field_names_scripts_read() {
        let link = LinkStatus {
            state: LinkState::Connected,
            for_seconds: 12,
            error: None,
        };
        let status = Status {
            healthy: false,
            problems: vec!["docker unreachable".into()],
            health: HealthStatus {
                healthy: false,
                problems: vec!["docker unreachable".into()],
            },
            host: "h1".into(),
            vtep: Ipv4Addr::new(10, 0, 0, 1),
            uplink: "eth0".into(),
            uplink_source: Some(UplinkSource::Advertise),
            uplink_mtu: 1500,
            kernel: KernelStatus {
                tc_attach: "tcx".into(),
                adjust_room_encap_l2_eth: true,
                adjust_room_decap_l3_ipv4: false,
                gro_device: None,
            },
            store_url: "etcd://127.0.0.1:2379".into(),
            store: StoreStatus {
                state: LinkState::Unreachable,
                watch: LinkStatus {
                    state: LinkState::Unreachable,
                    for_seconds: 3,
                    error: Some("connection refused".into()),
                },
                lease: LeaseStatus {
                    link,
                    lease: Some("7587".into()),
                    ttl_seconds: 15,
                    registrations: 1,
                    renewals: 4,
                    missed_renewals: 0,
                    last_renewal_ms_ago: Some(900),
                },
                url: "etcd://127.0.0.1:2379".into(),
                revision: 42,
                member: None,
                keys: "per-host".into(),
                shared_layout_hosts: Vec::new(),
            },
            hosts: [(
                "h1".to_string(),
                PeerHost {
                    vtep: Ipv4Addr::new(10, 0, 0, 1),
                    netd: "0.1.0".into(),
                },
            )]
            .into(),
            networks: 2,
            networks_active: 1,
            endpoints_local: 1,
            endpoints_known: 3,
            endpoints_programmed: Programmed {
                local: 1,
                remote: 2,
            },
            invalid_values: 0,
            events_applied: 7,
            drift_repaired: 0,
            last_batch: LastBatch { events: 2, ms: 0.5 },
            docker: "disabled".into(),
            maps: vec![MapStatus {
                name: "NETD_FDB".into(),
                entries: 3,
                max_entries: 65536,
                failed_writes: 0,
                error: None,
            }],
            programs: vec![ProgramStatus {
                name: "netd_egress".into(),
                instructions: Some(900),
                jited_bytes: 5000,
                verified_instructions: None,
            }],
            uptime_seconds: 60,
        };
        let value = serde_json::to_value(&status).unwrap();
        assert_eq!(
            value,
            json!({
                "healthy": false,
                "problems": ["docker unreachable"],
                "health": { "healthy": false, "problems": ["docker unreachable"] },
                "host": "h1",
                "vtep": "10.0.0.1",
                "uplink": "eth0",
                "uplink_source": "advertise",
                "uplink_mtu": 1500,
                "kernel": {
                    "tc_attach": "tcx",
                    "adjust_room_encap_l2_eth": true,
                    "adjust_room_decap_l3_ipv4": false,
                    "gro_device": null,
                },
                "store_url": "etcd://127.0.0.1:2379",
                "store": {
                    "state": "unreachable",
                    "watch": {
                        "state": "unreachable",
                        "for_seconds": 3,
                        "error": "connection refused",
                    },
                    "lease": {
                        "state": "connected",
                        "for_seconds": 12,
                        "lease": "7587",
                        "ttl_seconds": 15,
                        "registrations": 1,
                        "renewals": 4,
                        "missed_renewals": 0,
                        "last_renewal_ms_ago": 900,
                    },
                    "url": "etcd://127.0.0.1:2379",
                    "revision": 42,
                    "member": null,
                    "keys": "per-host",
                },
                "hosts": { "h1": { "vtep": "10.0.0.1", "netd": "0.1.0" } },
                "networks": 2,
                "networks_active": 1,
                "endpoints_local": 1,
                "endpoints_known": 3,
                "endpoints_programmed": { "local": 1, "remote": 2 },
                "invalid_values": 0,
                "events_applied": 7,
                "drift_repaired": 0,
                "last_batch": { "events": 2, "ms": 0.5 },
                "docker": "disabled",
                "maps": [{
                    "name": "NETD_FDB",
                    "entries": 3,
                    "max_entries": 65536,
                    "failed_writes": 0,
                    "error": null,
                }],
                "programs": [{
                    "name": "netd_egress",
                    "instructions": 900,
                    "jited_bytes": 5000,
                    "verified_instructions": null,
                }],
                "uptime_seconds": 60,
            })
        );
        assert_eq!(serde_json::from_value::<Status>(value).unwrap(), status);
    }

    /// `network inspect --json`: endpoints listed, warnings only when there are some.
    #[test]
    fn a_network_says_its_endpoints_and_only_real_warnings() {
        let endpoint = Endpoint {
            name: "web".into(),
            network: "n".into(),
            ip: Ipv4Addr::new(10, 1, 0, 5),
            mac: "02:42:0a:01:00:05".parse().unwrap(),
            host: "h1".into(),
            vtep: Ipv4Addr::new(10, 0, 0, 1),
            interface: None,
        };
        let network = Network {
            name: "n".into(),
            driver: "overlay".into(),
            vni: 256,
            subnets: vec![Subnet {
                subnet: "10.1.0.0/24".parse().unwrap(),
                gateway: Some(Ipv4Addr::new(10, 1, 0, 1)),
                ip_range: None,
                aux: BTreeMap::new(),
            }],
            mtu: None,
            options: BTreeMap::new(),
            endpoints: 1,
            endpoint_list: Some(vec![endpoint]),
            warnings: Vec::new(),
        };
        let value = serde_json::to_value(&network).unwrap();
        assert_eq!(
            value,
            json!({
                "name": "n",
                "driver": "overlay",
                "vni": 256,
                "subnets": [{ "subnet": "10.1.0.0/24", "gateway": "10.1.0.1" }],
                "mtu": null,
                "options": {},
                "endpoints": 1,
                "endpoint_list": [{
                    "name": "web",
                    "network": "n",
                    "ip": "10.1.0.5",
                    "mac": "02:42:0a:01:00:05",
                    "host": "h1",
                    "vtep": "10.0.0.1",
                }],
            })
        );
        assert_eq!(serde_json::from_value::<Network>(value).unwrap(), network);
    }
}
