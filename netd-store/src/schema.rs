//! The JSON records stored under [`crate::keys`], and their validation.
//!
//! Everything read from the store is untrusted: another host, an older netd or an operator with
//! `etcdctl` may have written it. [`decode`] caps the size and checks the shape; the `validate`
//! methods check the meaning (VNI range, addresses inside subnets, unicast MACs, a VTEP that
//! belongs to the host publishing it). The daemon skips, logs and counts what fails.

use std::{collections::BTreeMap, fmt, net::Ipv4Addr, str::FromStr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Version of the record layout; a record with another version is refused, not misread.
pub const SCHEMA_VERSION: u32 = 1;
/// Largest value netd accepts from the store.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = (1 << 24) - 1;
/// Where automatic VNI allocation starts (as Docker's overlay driver).
pub const VNI_FIRST_AUTO: u32 = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("value of {size} bytes exceeds the {MAX_VALUE_BYTES}-byte cap")]
    TooLarge { size: usize },
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("schema version {0} (this netd reads {SCHEMA_VERSION})")]
    Version(u32),
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> SchemaError {
    SchemaError::Invalid(msg.into())
}

/// Parses a stored value, with the size cap and shape check.
pub fn decode<T: DeserializeOwned + Versioned>(value: &[u8]) -> Result<T, SchemaError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(SchemaError::TooLarge { size: value.len() });
    }
    let record: T = serde_json::from_slice(value).map_err(|e| SchemaError::Json(e.to_string()))?;
    if record.version() != SCHEMA_VERSION {
        return Err(SchemaError::Version(record.version()));
    }
    Ok(record)
}

/// Serializes a record for the store.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

pub trait Versioned {
    fn version(&self) -> u32;
}

/// A MAC address, `aa:bb:cc:dd:ee:ff` in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Neither multicast/broadcast nor all-zero.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }

    /// A locally administered unicast MAC derived from an IPv4 address (as Docker does:
    /// 02:42 + the four address bytes), so that the same address always gets the same MAC.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        let o = ip.octets();
        Self([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!(
                "invalid MAC address {s:?} (expected aa:bb:cc:dd:ee:ff)"
            ));
        }
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(format!(
                    "invalid MAC address {s:?} (expected aa:bb:cc:dd:ee:ff)"
                ));
            }
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| format!("invalid MAC address {s:?} (expected aa:bb:cc:dd:ee:ff)"))?;
        }
        Ok(Self(mac))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One subnet of a network, as `docker network create --subnet/--gateway/--ip-range/--aux-address`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRecord {
    pub subnet: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<String, Ipv4Addr>,
}

impl SubnetRecord {
    /// Addresses never handed out: network, broadcast, gateway, aux.
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        (self.subnet.prefix_len() < 31
            && (ip == self.subnet.network() || ip == self.subnet.broadcast()))
            || self.gateway == Some(ip)
            || self.aux.values().any(|a| *a == ip)
    }

    /// Where automatic allocation draws from.
    pub fn pool(&self) -> Ipv4Net {
        self.ip_range.unwrap_or(self.subnet)
    }

    fn validate(&self) -> Result<(), SchemaError> {
        let net = self.subnet;
        if net != net.trunc() {
            return Err(invalid(format!(
                "subnet {net} has host bits set (did you mean {}?)",
                net.trunc()
            )));
        }
        if net.prefix_len() > 30 {
            return Err(invalid(format!("subnet {net} is too small (at most /30)")));
        }
        if let Some(gw) = self.gateway {
            if !net.contains(&gw) {
                return Err(invalid(format!("gateway {gw} is outside subnet {net}")));
            }
            // Every endpoint's default route points at the gateway: the subnet's own network or
            // broadcast address would make that route fail silently.
            if gw == net.network() || gw == net.broadcast() {
                return Err(invalid(format!(
                    "gateway {gw} is the {} address of subnet {net}, not a usable host address",
                    if gw == net.network() {
                        "network"
                    } else {
                        "broadcast"
                    }
                )));
            }
        }
        if let Some(range) = self.ip_range
            && (range != range.trunc() || !net.contains(&range))
        {
            return Err(invalid(format!(
                "ip-range {range} is not a subnet of {net}"
            )));
        }
        for (name, ip) in &self.aux {
            if !net.contains(ip) {
                return Err(invalid(format!(
                    "aux address {name}={ip} is outside subnet {net}"
                )));
            }
        }
        Ok(())
    }
}

/// `/netd/v1/networks/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub version: u32,
    pub name: String,
    pub driver: String,
    pub vni: u32,
    pub subnets: Vec<SubnetRecord>,
    /// Inner MTU; `None`: underlay MTU - 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl Versioned for NetworkRecord {
    fn version(&self) -> u32 {
        self.version
    }
}

pub const DRIVER_OVERLAY: &str = "overlay";
/// macvlan-style networks: endpoints on the LAN through a parent interface.
pub const DRIVER_MACVLAN: &str = "macvlan";

/// How a macvlan network's endpoints on one parent treat each other (the kernel's modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacvlanMode {
    Bridge,
    Private,
    Vepa,
    Passthru,
}

/// A macvlan network's options, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacvlanSpec {
    /// Parent interface name as given (`eth0`); a host may use another (`--macvlan-parent`).
    pub parent: String,
    /// VLAN id (`eth0.10` means VLAN 10 on eth0); 0 for none.
    pub vlan: u16,
    pub mode: MacvlanMode,
    pub host_access: bool,
}

impl MacvlanSpec {
    fn parse(options: &BTreeMap<String, String>) -> Result<Self, SchemaError> {
        let parent = options
            .get(crate::options::PARENT)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                invalid("a macvlan network needs a parent (--parent eth0 or -o parent=eth0.10)")
            })?;
        let (name, vlan) = match parent.split_once('.') {
            Some((name, vid)) => {
                let vlan: u16 = vid
                    .parse()
                    .ok()
                    .filter(|v| (1..=4094).contains(v))
                    .ok_or_else(|| {
                        invalid(format!("invalid VLAN in parent {parent:?} (1..4094)"))
                    })?;
                (name, vlan)
            }
            None => (parent.as_str(), 0),
        };
        if let Err(e) = crate::ifname::IfName::new(name) {
            return Err(invalid(format!("invalid parent {parent:?}: {}", e.rule())));
        }
        let mode = match options
            .get(crate::options::MACVLAN_MODE)
            .map(String::as_str)
        {
            None | Some("bridge") => MacvlanMode::Bridge,
            Some("private") => MacvlanMode::Private,
            Some("vepa") => MacvlanMode::Vepa,
            Some("passthru") => MacvlanMode::Passthru,
            Some(other) => {
                return Err(invalid(format!(
                    "invalid macvlan_mode {other:?} (bridge, private, vepa or passthru)"
                )));
            }
        };
        let host_access = match options.get(crate::options::HOST_ACCESS).map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "invalid host_access {other:?} (true or false)"
                )));
            }
        };
        Ok(Self {
            parent: name.to_string(),
            vlan,
            mode,
            host_access,
        })
    }
}

impl NetworkRecord {
    /// Checks the record found under `/netd/v1/networks/<key_name>`.
    pub fn validate(&self, key_name: &str) -> Result<(), SchemaError> {
        if self.name != key_name {
            return Err(invalid(format!(
                "name {:?} does not match its key {key_name:?}",
                self.name
            )));
        }
        if !crate::keys::valid_name(&self.name) {
            return Err(invalid(format!("invalid network name {:?}", self.name)));
        }
        match self.driver.as_str() {
            DRIVER_OVERLAY => {}
            DRIVER_MACVLAN => {
                MacvlanSpec::parse(&self.options)?;
            }
            other => {
                return Err(invalid(format!(
                    "unsupported driver {other:?} (overlay or macvlan)"
                )));
            }
        }
        if self.vni == 0 || self.vni > VNI_MAX {
            return Err(invalid(format!(
                "VNI {} is outside 1..={VNI_MAX}",
                self.vni
            )));
        }
        if self.subnets.is_empty() {
            return Err(invalid("no subnet"));
        }
        if let Some(mtu) = self.mtu
            && !(68..=9000).contains(&mtu)
        {
            return Err(invalid(format!("MTU {mtu} is outside 68..=9000")));
        }
        for (i, s) in self.subnets.iter().enumerate() {
            s.validate()?;
            for other in &self.subnets[..i] {
                if s.subnet.contains(&other.subnet) || other.subnet.contains(&s.subnet) {
                    return Err(invalid(format!(
                        "subnets {} and {} overlap",
                        other.subnet, s.subnet
                    )));
                }
            }
        }
        Ok(())
    }

    /// The MACs of an overlay network's gateways (derived from their addresses, as endpoints'
    /// are); a macvlan network's gateway is a router on the LAN with a MAC of its own.
    pub fn gateway_macs(&self) -> impl Iterator<Item = Mac> + '_ {
        let overlay = self.driver == DRIVER_OVERLAY;
        self.subnets
            .iter()
            .filter(move |_| overlay)
            .filter_map(|s| s.gateway)
            .map(Mac::from_ipv4)
    }

    /// The macvlan options of a macvlan network (`None` for overlay networks).
    pub fn macvlan(&self) -> Option<MacvlanSpec> {
        if self.driver != DRIVER_MACVLAN {
            return None;
        }
        MacvlanSpec::parse(&self.options).ok()
    }

    /// The subnet an address belongs to.
    pub fn subnet_of(&self, ip: Ipv4Addr) -> Option<&SubnetRecord> {
        self.subnets.iter().find(|s| s.subnet.contains(&ip))
    }

    /// Whether any subnet of `self` overlaps any of `other`'s.
    pub fn overlaps(&self, other: &NetworkRecord) -> Option<(Ipv4Net, Ipv4Net)> {
        self.subnets.iter().find_map(|a| {
            other.subnets.iter().find_map(|b| {
                (a.subnet.contains(&b.subnet) || b.subnet.contains(&a.subnet))
                    .then_some((a.subnet, b.subnet))
            })
        })
    }
}

/// `/netd/v1/hosts/<host>`, written under the host's lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub version: u32,
    pub vtep_ip: Ipv4Addr,
    pub uplink_mtu: u16,
    /// The netd release running there.
    pub netd: String,
    /// Whether it reads endpoints and claims in the per-host layout
    /// ([`crate::keys::Layout::PerHost`]). `false` when absent: a netd from before that layout,
    /// which reads only the shared one; while such a host is alive, every host keeps writing
    /// the shared layout so that it still sees them.
    #[serde(default)]
    pub per_host_keys: bool,
}

impl Versioned for HostRecord {
    fn version(&self) -> u32 {
        self.version
    }
}

impl HostRecord {
    pub fn validate(&self, key_name: &str) -> Result<(), SchemaError> {
        if !crate::keys::valid_name(key_name) {
            return Err(invalid(format!("invalid host name {key_name:?}")));
        }
        let ip = self.vtep_ip;
        if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
            return Err(invalid(format!("VTEP {ip} is not a unicast address")));
        }
        if self.uplink_mtu < 68 + 50 {
            return Err(invalid(format!(
                "uplink MTU {} is too small",
                self.uplink_mtu
            )));
        }
        Ok(())
    }
}

/// `/netd/v1/endpoints/<network>/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub version: u32,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    /// Host the endpoint lives on (its key under `/netd/v1/hosts/`).
    pub host: String,
    pub vtep_ip: Ipv4Addr,
    pub name: String,
    /// The DNS names it answers to in its network (a container's name, aliases and hostname;
    /// a namespace endpoint's name). Older records have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// Most names one endpoint may carry.
pub const MAX_NAMES: usize = 32;

/// Whether `name` can be a DNS name: dot-separated labels of letters, digits, `-` and `_`, each
/// 1 to 63 bytes, 253 in all.
pub fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Versioned for EndpointRecord {
    fn version(&self) -> u32 {
        self.version
    }
}

impl EndpointRecord {
    /// Checks an endpoint against its network and the host that publishes it (`host`, as read
    /// from the store: `None` when that host is not registered).
    pub fn validate(
        &self,
        key_id: &str,
        network: &NetworkRecord,
        host: Option<&HostRecord>,
    ) -> Result<(), SchemaError> {
        self.validate_own(key_id)?;
        validate_placement(self.ip, self.mac, self.vtep_ip, &self.host, network, host)
    }

    /// What the record alone must satisfy: its name matches its key, its MAC is unicast.
    pub fn validate_own(&self, key_id: &str) -> Result<(), SchemaError> {
        if self.name != key_id || !crate::keys::valid_name(key_id) {
            return Err(invalid(format!(
                "endpoint name {:?} does not match its key {key_id:?}",
                self.name
            )));
        }
        if !self.mac.is_unicast() {
            return Err(invalid(format!("MAC {} is not unicast", self.mac)));
        }
        if self.names.len() > MAX_NAMES {
            return Err(invalid(format!(
                "{} names (at most {MAX_NAMES})",
                self.names.len()
            )));
        }
        if let Some(bad) = self.names.iter().find(|n| !valid_dns_name(n)) {
            return Err(invalid(format!("{bad:?} is not a DNS name")));
        }
        Ok(())
    }
}

/// An endpoint's address must lie in its network, its MAC must not be one of the network's
/// gateways, and its VTEP must be that of the host that publishes it (`host`: that host's
/// record, `None` when it is not registered).
pub fn validate_placement(
    ip: Ipv4Addr,
    mac: Mac,
    vtep: Ipv4Addr,
    host_name: &str,
    network: &NetworkRecord,
    host: Option<&HostRecord>,
) -> Result<(), SchemaError> {
    match network.subnet_of(ip) {
        None => {
            return Err(invalid(format!(
                "address {ip} is outside network {}",
                network.name
            )));
        }
        // IPAM never hands these out: a record with one would shadow the gateway (or claim
        // the subnet's own addresses).
        Some(subnet) if subnet.is_reserved(ip) => {
            return Err(invalid(format!(
                "address {ip} is reserved in network {} (network, broadcast, gateway or aux address)",
                network.name
            )));
        }
        Some(_) => {}
    }
    // The gateway's MAC would draw the network's cross-subnet traffic to the endpoint, and
    // its removal would take the gateway's entry with it.
    if network.gateway_macs().any(|g| g == mac) {
        return Err(invalid(format!(
            "MAC {mac} is the gateway's of network {}",
            network.name
        )));
    }
    match host {
        None => Err(invalid(format!("host {host_name:?} is not registered"))),
        Some(h) if h.vtep_ip != vtep => Err(invalid(format!(
            "VTEP {vtep} is not host {host_name:?}'s ({})",
            h.vtep_ip
        ))),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(subnets: &[&str]) -> NetworkRecord {
        NetworkRecord {
            version: SCHEMA_VERSION,
            name: "n".into(),
            driver: DRIVER_OVERLAY.into(),
            vni: 256,
            subnets: subnets
                .iter()
                .map(|s| SubnetRecord {
                    subnet: s.parse().unwrap(),
                    gateway: None,
                    ip_range: None,
                    aux: BTreeMap::new(),
                })
                .collect(),
            mtu: None,
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn network_validation() {
        assert_eq!(net(&["10.0.0.0/24"]).validate("n"), Ok(()));
        assert!(net(&["10.0.0.0/24"]).validate("m").is_err());
        assert!(net(&["10.0.0.0/16", "10.0.1.0/24"]).validate("n").is_err());
        assert!(net(&["10.0.0.1/24"]).validate("n").is_err());
        assert!(net(&[]).validate("n").is_err());
        let mut n = net(&["10.0.0.0/24"]);
        n.vni = 0;
        assert!(n.validate("n").is_err());
        n.vni = VNI_MAX + 1;
        assert!(n.validate("n").is_err());
        let mut n = net(&["10.0.0.0/24"]);
        n.subnets[0].gateway = Some("10.0.1.1".parse().unwrap());
        assert!(n.validate("n").is_err());
    }

    #[test]
    fn a_gateway_must_be_a_usable_host_address() {
        let with_gateway = |gw: &str| {
            let mut n = net(&["10.0.0.0/24"]);
            n.subnets[0].gateway = Some(gw.parse().unwrap());
            n.validate("n")
        };
        assert_eq!(with_gateway("10.0.0.1"), Ok(()));
        assert_eq!(with_gateway("10.0.0.254"), Ok(()));
        let network = with_gateway("10.0.0.0").unwrap_err().to_string();
        assert!(network.contains("network address"), "{network}");
        let broadcast = with_gateway("10.0.0.255").unwrap_err().to_string();
        assert!(broadcast.contains("broadcast address"), "{broadcast}");
    }

    #[test]
    fn macvlan_options() {
        let mut n = net(&["10.0.0.0/24"]);
        n.driver = DRIVER_MACVLAN.into();
        assert!(n.validate("n").is_err(), "parent required");
        n.options.insert("parent".into(), "eth0.10".into());
        assert_eq!(n.validate("n"), Ok(()));
        let spec = n.macvlan().unwrap();
        assert_eq!(
            (spec.parent.as_str(), spec.vlan, spec.mode, spec.host_access),
            ("eth0", 10, MacvlanMode::Bridge, false)
        );
        n.options.insert("macvlan_mode".into(), "vepa".into());
        n.options.insert("host_access".into(), "true".into());
        assert_eq!(n.macvlan().unwrap().mode, MacvlanMode::Vepa);
        n.options.insert("parent".into(), "eth0.5000".into());
        assert!(n.validate("n").is_err());
        n.options.insert("parent".into(), "eth0".into());
        n.options.insert("macvlan_mode".into(), "weird".into());
        assert!(n.validate("n").is_err());
    }

    #[test]
    fn decode_caps_and_versions() {
        let big = vec![b' '; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            decode::<HostRecord>(&big),
            Err(SchemaError::TooLarge { .. })
        ));
        assert!(matches!(
            decode::<HostRecord>(b"{"),
            Err(SchemaError::Json(_))
        ));
        let v2 = br#"{"version":2,"vtep_ip":"10.0.0.1","uplink_mtu":1500,"netd":"x"}"#;
        assert_eq!(decode::<HostRecord>(v2), Err(SchemaError::Version(2)));
        let ok = br#"{"version":1,"vtep_ip":"10.0.0.1","uplink_mtu":1500,"netd":"x"}"#;
        assert!(decode::<HostRecord>(ok).is_ok());
    }

    #[test]
    fn endpoint_validation() {
        let n = net(&["10.0.0.0/24"]);
        let host = HostRecord {
            version: 1,
            vtep_ip: "192.168.0.1".parse().unwrap(),
            uplink_mtu: 1500,
            netd: "t".into(),
            per_host_keys: true,
        };
        let ep = EndpointRecord {
            version: 1,
            ip: "10.0.0.5".parse().unwrap(),
            mac: "02:42:0a:00:00:05".parse().unwrap(),
            host: "h1".into(),
            vtep_ip: host.vtep_ip,
            name: "e".into(),
            names: Vec::new(),
        };
        assert_eq!(ep.validate("e", &n, Some(&host)), Ok(()));
        assert!(ep.validate("e", &n, None).is_err());
        let mut bad = ep.clone();
        bad.ip = "10.0.1.5".parse().unwrap();
        assert!(bad.validate("e", &n, Some(&host)).is_err());
        let mut bad = ep.clone();
        bad.mac = "01:00:5e:00:00:01".parse().unwrap();
        assert!(bad.validate("e", &n, Some(&host)).is_err());
        let mut bad = ep.clone();
        bad.vtep_ip = "192.168.0.9".parse().unwrap();
        assert!(bad.validate("e", &n, Some(&host)).is_err());
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            "02:42:AC:1f:00:0b".parse::<Mac>().unwrap().to_string(),
            "02:42:ac:1f:00:0b"
        );
        assert!("02:42:ac:1f:00".parse::<Mac>().is_err());
        assert!("zz:42:ac:1f:00:0b".parse::<Mac>().is_err());
        assert!(!"ff:ff:ff:ff:ff:ff".parse::<Mac>().unwrap().is_unicast());
    }
}
