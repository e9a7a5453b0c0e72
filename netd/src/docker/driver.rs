//! Docker's remote `NetworkDriver` and `IpamDriver` protocols, both served as `netd`: the
//! driver's state, dispatch by call, and how errors reach Docker.
//!
//! Docker keeps networks per host and never tells a driver a network's name, so:
//! - IPAM pools are handed out before the network exists and bound to it when `CreateNetwork`
//!   arrives with the same subnet ([`super::ipam`]);
//! - the name is looked up through the Engine API right after `CreateNetwork` returns, and the
//!   network is then created in (or, when another host made it, bound to) the cluster store
//!   ([`super::network`], [`super::bindings`]);
//! - networks netd creates on a host's Docker itself (to mirror the store) carry the option
//!   `netd.network=<name>`, which binds them at once and never creates anything again: no loops.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::anyhow;
use serde::Serialize;
use serde_json::Value;

use super::{
    bindings::Bindings,
    engine::Engine,
    ipam::Pools,
    protocol::{self, Empty},
};
use crate::{health::Health, service::Service};

/// Locks, recovering from a poisoned mutex (a panicking call must not wedge the plugin).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct Driver {
    pub service: Service,
    pub health: Arc<Health>,
    pub engine: Engine,
    pub(super) pools: Pools,
    pub(super) bindings: Bindings,
    /// Docker endpoint ID -> when this daemon created it (the reconciler leaves young ones alone).
    pub created: Mutex<HashMap<String, Instant>>,
    /// Endpoints whose container is being looked up (names, DNS).
    pub(super) following: Mutex<std::collections::HashSet<String>>,
}

/// Which protocol a call belongs to: they name their error field differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Network,
    Ipam,
}

fn protocol_of(path: &str) -> Protocol {
    if path.starts_with("/IpamDriver.") {
        Protocol::Ipam
    } else {
        Protocol::Network
    }
}

/// A handler's answer as the JSON Docker gets.
fn reply<T: Serialize>(answer: T) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(answer)?)
}

/// An error as the protocol's answer, which Docker shows the user.
fn refusal(protocol: Protocol, error: &anyhow::Error) -> Value {
    let message = format!("netd: {error:#}");
    let answer = match protocol {
        Protocol::Network => serde_json::to_value(protocol::NetworkError { err: message }),
        Protocol::Ipam => serde_json::to_value(protocol::IpamError { error: message }),
    };
    // Cannot fail (one string field); were it to, `null` still fails the call in Docker.
    answer.unwrap_or(Value::Null)
}

impl Driver {
    pub fn new(service: Service, health: Arc<Health>, engine: Engine) -> Self {
        Self {
            service,
            health,
            engine,
            pools: Pools::default(),
            bindings: Bindings::default(),
            created: Mutex::new(HashMap::new()),
            following: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Answers one plugin call. Errors become the protocol's error field (`{"Err": "..."}` or
    /// `{"Error": "..."}`).
    pub async fn handle(self: &Arc<Self>, path: &str, body: &[u8]) -> Value {
        match self.dispatch(path, body).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(call = path, error = %format!("{error:#}"), "docker plugin call refused");
                refusal(protocol_of(path), &error)
            }
        }
    }

    async fn dispatch(self: &Arc<Self>, path: &str, body: &[u8]) -> anyhow::Result<Value> {
        let call = path.trim_start_matches('/');
        // Calls without a request message get an empty body: it is not read.
        match path {
            "/Plugin.Activate" => reply(protocol::ActivateResponse {
                implements: vec!["NetworkDriver", "IpamDriver"],
            }),
            // "global" needs swarm or a cluster store in Docker; netd mirrors networks itself.
            "/NetworkDriver.GetCapabilities" => reply(protocol::CapabilitiesResponse {
                scope: "local",
                connectivity_scope: "local",
            }),
            "/NetworkDriver.CreateNetwork" => {
                reply(self.create_network(protocol::parse(call, body)?).await?)
            }
            "/NetworkDriver.DeleteNetwork" => {
                reply(self.delete_network(protocol::parse(call, body)?).await?)
            }
            "/NetworkDriver.CreateEndpoint" => {
                reply(self.create_endpoint(protocol::parse(call, body)?).await?)
            }
            "/NetworkDriver.DeleteEndpoint" => {
                reply(self.delete_endpoint(protocol::parse(call, body)?).await?)
            }
            "/NetworkDriver.EndpointOperInfo" => {
                let _: protocol::EndpointRequest = protocol::parse(call, body)?;
                reply(protocol::EndpointInfoResponse {
                    value: serde_json::Map::new(),
                })
            }
            "/NetworkDriver.Join" => {
                let request: protocol::JoinRequest = protocol::parse(call, body)?;
                let (nid, eid) = (request.network_id.clone(), request.endpoint_id.clone());
                let answer = self.join(request).await?;
                // The container is only known once Docker has it joined: look it up later.
                self.follow_container(nid, eid);
                reply(answer)
            }
            "/NetworkDriver.Leave" => reply(self.leave(protocol::parse(call, body)?)),
            // Node discovery is the store's job; external connectivity is docker_gwbridge's
            // (overlay) or the LAN's (macvlan).
            "/NetworkDriver.DiscoverNew" | "/NetworkDriver.DiscoverDelete" => {
                let _: protocol::DiscoveryNotification = protocol::parse(call, body)?;
                reply(Empty {})
            }
            "/NetworkDriver.ProgramExternalConnectivity" => {
                let _: protocol::ProgramExternalConnectivityRequest = protocol::parse(call, body)?;
                reply(Empty {})
            }
            "/NetworkDriver.RevokeExternalConnectivity" => {
                let _: protocol::EndpointRequest = protocol::parse(call, body)?;
                reply(Empty {})
            }
            "/IpamDriver.GetCapabilities" => reply(protocol::IpamCapabilitiesResponse {
                requires_mac_address: false,
                requires_request_replay: false,
            }),
            "/IpamDriver.GetDefaultAddressSpaces" => reply(protocol::AddressSpacesResponse {
                local_default_address_space: "netd",
                global_default_address_space: "netd",
            }),
            "/IpamDriver.RequestPool" => {
                reply(self.request_pool(protocol::parse(call, body)?).await?)
            }
            "/IpamDriver.ReleasePool" => reply(self.release_pool(protocol::parse(call, body)?)),
            "/IpamDriver.RequestAddress" => {
                reply(self.request_address(protocol::parse(call, body)?).await?)
            }
            "/IpamDriver.ReleaseAddress" => {
                reply(self.release_address(protocol::parse(call, body)?).await?)
            }
            other => Err(anyhow!("netd does not implement {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_use_each_protocols_field() {
        let e = anyhow!("subnet 10.0.0.0/24 overlaps netd network \"a\"");
        assert_eq!(
            refusal(protocol_of("/IpamDriver.RequestPool"), &e),
            serde_json::json!({ "Error": "netd: subnet 10.0.0.0/24 overlaps netd network \"a\"" })
        );
        assert_eq!(
            refusal(protocol_of("/NetworkDriver.Join"), &e)["Err"],
            "netd: subnet 10.0.0.0/24 overlaps netd network \"a\""
        );
    }
}
