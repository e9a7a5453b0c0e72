//! The messages of Docker's remote plugin protocols that netd handles, as libnetwork defines
//! them: `NetworkDriver.*` (`drivers/remote/api`) and `IpamDriver.*` (`ipams/remote/api`).
//!
//! Requests are strict about their shape and lenient about their content:
//! - a body that is not the call's message is an error ([`Malformed`]), which Docker shows the
//!   user, instead of a call run on made-up defaults;
//! - optional fields may be missing or `null` (Go encodes a nil map or slice as `null`);
//! - fields this code does not know are ignored: newer engines add some.
//!
//! Addresses stay text here, as on the wire: what they must be (IPv4, CIDR or plain) depends on
//! the call, and its handler says what was wrong with one.
//!
//! Responses leave out empty optional fields: Go reads a missing field as its zero value, and
//! `DisableGatewayService` or `Gateway` present at all changes what Docker attaches.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
};

use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

/// A request body that is not the message its call expects.
#[derive(Debug, thiserror::Error)]
#[error("malformed {call} request: {reason}")]
pub struct Malformed {
    pub call: String,
    pub reason: String,
}

/// Reads the body of `call` (e.g. `NetworkDriver.Join`) as its request message.
pub fn parse<T: DeserializeOwned>(call: &str, body: &[u8]) -> Result<T, Malformed> {
    serde_json::from_slice(body).map_err(|e| Malformed {
        call: call.to_string(),
        reason: e.to_string(),
    })
}

/// The IPv4 address in Docker's address text: CIDR (`172.31.0.5/16`) or plain.
pub fn ipv4_of(text: &str) -> anyhow::Result<Ipv4Addr> {
    let ip = text.split('/').next().unwrap_or_default();
    ip.parse()
        .map_err(|_| anyhow::anyhow!("invalid IPv4 address {text:?}"))
}

/// A missing or `null` field (Go's nil map or slice) as its empty value.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Docker's `Options` in `CreateNetwork`: the user's `-o key=value` pairs.
pub const GENERIC_OPTIONS: &str = "com.docker.network.generic";
/// `RequestAddress` option marking the network's gateway address.
pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
pub const GATEWAY_ADDRESS_TYPE: &str = "com.docker.network.gateway";
/// `StaticRoute.RouteType`: through `NextHop` (libnetwork's `types.NEXTHOP`).
pub const ROUTE_NEXT_HOP: i32 = 0;

// ---- Plugin ----

/// `Plugin.Activate`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActivateResponse {
    pub implements: Vec<&'static str>,
}

/// The answer of calls that return nothing but success.
#[derive(Debug, Default, Serialize)]
pub struct Empty {}

/// `NetworkDriver.*`'s failure (its field is `Err`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkError {
    pub err: String,
}

/// `IpamDriver.*`'s failure (its field is `Error`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamError {
    pub error: String,
}

// ---- NetworkDriver ----

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapabilitiesResponse {
    pub scope: &'static str,
    pub connectivity_scope: &'static str,
}

/// One subnet of a network, as Docker's IPAM (here, netd's) gave it (libnetwork's
/// `driverapi.IPAMData`, CIDR text).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamData {
    #[serde(default)]
    pub address_space: String,
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default, deserialize_with = "nullable")]
    pub aux_addresses: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetworkRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Free-form: Docker's own keys, and the user's `-o` under [`GENERIC_OPTIONS`].
    #[serde(default, deserialize_with = "nullable")]
    pub options: Map<String, Value>,
    #[serde(rename = "IPv4Data", default, deserialize_with = "nullable")]
    pub ipv4_data: Vec<IpamData>,
    #[serde(rename = "IPv6Data", default, deserialize_with = "nullable")]
    pub ipv6_data: Vec<IpamData>,
}

/// The request of `DeleteNetwork` (libnetwork's `DeleteNetworkRequest`).
#[derive(Debug, Deserialize)]
pub struct NetworkRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// The request of `DeleteEndpoint`, `EndpointOperInfo`, `Leave` and
/// `RevokeExternalConnectivity`: they name an endpoint and nothing else.
#[derive(Debug, Deserialize)]
pub struct EndpointRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// An endpoint's addresses: what Docker's IPAM gave (request), what the driver chose (answer).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInterface {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(
        rename = "AddressIPv6",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub address_ipv6: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpointRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(default)]
    pub interface: Option<EndpointInterface>,
    #[serde(default, deserialize_with = "nullable")]
    pub options: Map<String, Value>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpointResponse {
    /// Only what the driver chose (the MAC when Docker gave none); Docker refuses an answer
    /// that changes what it gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<EndpointInterface>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInfoResponse {
    pub value: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The container's network namespace (a path).
    #[serde(default)]
    pub sandbox_key: String,
    #[serde(default, deserialize_with = "nullable")]
    pub options: Map<String, Value>,
}

/// Which interface Docker moves into the container, and how it names it there.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    pub src_name: String,
    pub dst_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StaticRoute {
    pub destination: String,
    /// [`ROUTE_NEXT_HOP`], or 1 for a directly connected destination.
    pub route_type: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_hop: String,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinResponse {
    pub interface_name: InterfaceName,
    /// Present: this endpoint is the container's gateway endpoint, Docker attaches no
    /// `docker_gwbridge` and NAT is the driver's job.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "String::is_empty")]
    pub gateway_ipv6: String,
    pub static_routes: Vec<StaticRoute>,
    /// True: no `docker_gwbridge` even without a gateway.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable_gateway_service: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProgramExternalConnectivityRequest {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub options: Map<String, Value>,
}

/// `DiscoverNew` / `DiscoverDelete` (swarm-era node discovery; netd has its own store).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiscoveryNotification {
    pub discovery_type: i64,
    #[serde(default)]
    pub discovery_data: Value,
}

// ---- IpamDriver ----

#[derive(Debug, Serialize)]
pub struct IpamCapabilitiesResponse {
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
    #[serde(rename = "RequiresRequestReplay")]
    pub requires_request_replay: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressSpacesResponse {
    pub local_default_address_space: &'static str,
    pub global_default_address_space: &'static str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPoolRequest {
    #[serde(default)]
    pub address_space: String,
    /// `--subnet`, empty when the user gave none.
    #[serde(default)]
    pub pool: String,
    /// `--ip-range`.
    #[serde(default)]
    pub sub_pool: String,
    /// `--ipam-opt`.
    #[serde(default, deserialize_with = "nullable")]
    pub options: HashMap<String, String>,
    #[serde(rename = "V6", default)]
    pub v6: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPoolResponse {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub pool: String,
    pub data: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct ReleasePoolRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddressRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address asked for (`--ip`, `--gateway`, `--aux-address`), empty for any.
    #[serde(default)]
    pub address: String,
    #[serde(default, deserialize_with = "nullable")]
    pub options: HashMap<String, String>,
}

impl RequestAddressRequest {
    /// Whether Docker asks for the network's gateway (not for a container's address).
    pub fn is_gateway(&self) -> bool {
        self.options.get(REQUEST_ADDRESS_TYPE).map(String::as_str) == Some(GATEWAY_ADDRESS_TYPE)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddressResponse {
    /// CIDR: the address with its subnet's prefix length.
    pub address: String,
    pub data: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseAddressRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub address: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_network_with_ipv4_data_and_generic_options() {
        // What Docker 20.10 sends for `docker network create -d netd --ipam-driver netd
        // --subnet 172.31.0.0/16 --gateway 172.31.0.2 --aux-address r=172.31.0.3 -o mtu=1200`.
        let body = br#"{
            "NetworkID": "5f3c0d2a",
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.generic": {"mtu": "1200"}
            },
            "IPv4Data": [{
                "AddressSpace": "netd",
                "Gateway": "172.31.0.2/16",
                "Pool": "172.31.0.0/16",
                "AuxAddresses": {"r": "172.31.0.3/16"}
            }],
            "IPv6Data": null
        }"#;
        let r: CreateNetworkRequest = parse("NetworkDriver.CreateNetwork", body).unwrap();
        assert_eq!(r.network_id, "5f3c0d2a");
        assert_eq!(r.options[GENERIC_OPTIONS]["mtu"], "1200");
        assert_eq!(r.ipv4_data.len(), 1);
        let d = &r.ipv4_data[0];
        assert_eq!(
            (
                d.address_space.as_str(),
                d.pool.as_str(),
                d.gateway.as_str()
            ),
            ("netd", "172.31.0.0/16", "172.31.0.2/16")
        );
        assert_eq!(d.aux_addresses["r"], "172.31.0.3/16");
        assert!(r.ipv6_data.is_empty());
    }

    #[test]
    fn optional_fields_may_be_missing_or_null_and_unknown_ones_are_ignored() {
        let body = br#"{"NetworkID": "n1", "Options": null, "IPv4Data": [{"Pool": "10.0.0.0/24",
            "AuxAddresses": null}], "SomethingNewer": {"x": 1}}"#;
        let r: CreateNetworkRequest = parse("NetworkDriver.CreateNetwork", body).unwrap();
        assert!(r.options.is_empty());
        assert!(r.ipv4_data[0].gateway.is_empty());
        assert!(r.ipv4_data[0].aux_addresses.is_empty());
        let r: RequestPoolRequest = parse(
            "IpamDriver.RequestPool",
            br#"{"Pool": "", "Options": null}"#,
        )
        .unwrap();
        assert!(r.pool.is_empty() && r.options.is_empty() && !r.v6);
    }

    #[test]
    fn create_endpoint_with_interface() {
        let body = br#"{
            "NetworkID": "n1",
            "EndpointID": "e1",
            "Interface": {"Address": "172.31.0.5/16", "AddressIPv6": "", "MacAddress": ""},
            "Options": {"com.docker.network.endpoint.exposedports": [],
                        "com.docker.network.portmap": []}
        }"#;
        let r: CreateEndpointRequest = parse("NetworkDriver.CreateEndpoint", body).unwrap();
        assert_eq!(
            (r.network_id.as_str(), r.endpoint_id.as_str()),
            ("n1", "e1")
        );
        let iface = r.interface.unwrap();
        assert_eq!(iface.address, "172.31.0.5/16");
        assert!(iface.mac_address.is_empty());
        assert_eq!(r.options.len(), 2);
        // Without an interface (Docker sends `null` when its IPAM gave nothing).
        let r: CreateEndpointRequest = parse(
            "NetworkDriver.CreateEndpoint",
            br#"{"NetworkID": "n1", "EndpointID": "e1", "Interface": null}"#,
        )
        .unwrap();
        assert!(r.interface.is_none());
    }

    #[test]
    fn join_with_sandbox_key() {
        let body = br#"{"NetworkID": "n1", "EndpointID": "e1",
            "SandboxKey": "/var/run/docker/netns/1f2e3d", "Options": {}}"#;
        let r: JoinRequest = parse("NetworkDriver.Join", body).unwrap();
        assert_eq!(r.sandbox_key, "/var/run/docker/netns/1f2e3d");
        assert_eq!(r.endpoint_id, "e1");
    }

    #[test]
    fn addresses_come_with_or_without_a_prefix() {
        assert_eq!(
            ipv4_of("172.31.0.5/16").unwrap(),
            Ipv4Addr::new(172, 31, 0, 5)
        );
        assert_eq!(ipv4_of("172.31.0.5").unwrap(), Ipv4Addr::new(172, 31, 0, 5));
        assert!(ipv4_of("").is_err());
        assert!(ipv4_of("fd00::1/64").is_err());
    }

    #[test]
    fn ipam_requests() {
        let r: RequestAddressRequest = parse(
            "IpamDriver.RequestAddress",
            br#"{"PoolID": "p", "Address": "172.31.0.2",
                 "Options": {"RequestAddressType": "com.docker.network.gateway"}}"#,
        )
        .unwrap();
        assert!(r.is_gateway());
        assert_eq!(r.address, "172.31.0.2");
        let r: RequestAddressRequest =
            parse("IpamDriver.RequestAddress", br#"{"PoolID": "p"}"#).unwrap();
        assert!(!r.is_gateway() && r.address.is_empty());
        let r: RequestPoolRequest = parse(
            "IpamDriver.RequestPool",
            br#"{"AddressSpace": "netd", "Pool": "10.1.0.0/16", "SubPool": "10.1.2.0/24",
                 "Options": {"netd.network": "n"}, "V6": false}"#,
        )
        .unwrap();
        assert_eq!(r.sub_pool, "10.1.2.0/24");
        assert_eq!(r.options["netd.network"], "n");
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            &b""[..],
            b"not json",
            b"[]",
            b"{}",
            br#"{"NetworkID": 7}"#,
            br#"{"NetworkID": "n", "IPv4Data": {"Pool": "10.0.0.0/24"}}"#,
            br#"{"NetworkID": "n", "Options": "mtu=1200"}"#,
        ] {
            let e = parse::<CreateNetworkRequest>("NetworkDriver.CreateNetwork", body)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("malformed NetworkDriver.CreateNetwork request: "),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        let e = parse::<ReleaseAddressRequest>("IpamDriver.ReleaseAddress", br#"{"PoolID": "p"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("missing field `Address`"), "{e}");
    }

    #[test]
    fn responses_keep_docker_field_names_and_leave_out_empty_ones() {
        let join = JoinResponse {
            interface_name: InterfaceName {
                src_name: "nd1p".into(),
                dst_prefix: "eth".into(),
            },
            gateway: String::new(),
            gateway_ipv6: String::new(),
            static_routes: vec![StaticRoute {
                destination: "10.2.0.0/24".into(),
                route_type: ROUTE_NEXT_HOP,
                next_hop: "10.1.0.1".into(),
            }],
            disable_gateway_service: false,
        };
        assert_eq!(
            serde_json::to_value(&join).unwrap(),
            serde_json::json!({
                "InterfaceName": {"SrcName": "nd1p", "DstPrefix": "eth"},
                "StaticRoutes": [
                    {"Destination": "10.2.0.0/24", "RouteType": 0, "NextHop": "10.1.0.1"}
                ],
            })
        );
        let created = CreateEndpointResponse {
            interface: Some(EndpointInterface {
                mac_address: "02:42:ac:1f:00:05".into(),
                ..EndpointInterface::default()
            }),
        };
        assert_eq!(
            serde_json::to_string(&created).unwrap(),
            r#"{"Interface":{"MacAddress":"02:42:ac:1f:00:05"}}"#
        );
        assert_eq!(
            serde_json::to_string(&CreateEndpointResponse::default()).unwrap(),
            "{}"
        );
        assert_eq!(
            serde_json::to_string(&NetworkError { err: "x".into() }).unwrap(),
            r#"{"Err":"x"}"#
        );
        assert_eq!(
            serde_json::to_string(&IpamError { error: "x".into() }).unwrap(),
            r#"{"Error":"x"}"#
        );
        assert_eq!(
            serde_json::to_string(&IpamCapabilitiesResponse {
                requires_mac_address: false,
                requires_request_replay: false
            })
            .unwrap(),
            r#"{"RequiresMACAddress":false,"RequiresRequestReplay":false}"#
        );
    }
}
