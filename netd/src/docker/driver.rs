//! Docker's remote `NetworkDriver` and `IpamDriver` protocols, both served as `netd` on the
//! plugin socket: a route per call, its message read ([`protocol`]) and handed to the
//! [`Calls`] that need netd's state, and the answer or the error as Docker reads them.
//!
//! Docker keeps networks per host and never tells a driver a network's name, so:
//! - IPAM pools are handed out before the network exists and bound to it when `CreateNetwork`
//!   arrives with the same subnet ([`super::ipam`], [`super::pools`]);
//! - the name is looked up through the Engine API right after `CreateNetwork` returns, and the
//!   network is then created in (or, when another host made it, bound to) the cluster store
//!   ([`super::network`], [`super::bindings`]);
//! - networks netd creates on a host's Docker itself (to mirror the store) carry the option
//!   `netd.network=<name>`, which binds them at once and never creates anything again: no loops.

use std::{future::Future, sync::Arc};

use anyhow::anyhow;
use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{Uri, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, post},
};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    protocol::{
        self, CreateEndpointRequest, CreateEndpointResponse, CreateNetworkRequest, Empty,
        EndpointRequest, JoinRequest, JoinResponse, NetworkRequest, ReleaseAddressRequest,
        ReleasePoolRequest, RequestAddressRequest, RequestAddressResponse, RequestPoolRequest,
        RequestPoolResponse,
    },
    state::DockerState,
};

/// What dockerd's plugin client expects of an answer (it sends `v1.2+json` and reads any).
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";
/// Largest request body read (plugin requests are a few KB).
const MAX_BODY: usize = 4 << 20;

/// The calls whose answer depends on netd's state; the router answers the others itself.
pub trait Calls: Send + Sync + 'static {
    fn create_network(
        self: Arc<Self>,
        request: CreateNetworkRequest,
    ) -> impl Future<Output = anyhow::Result<Empty>> + Send;
    fn delete_network(
        self: Arc<Self>,
        request: NetworkRequest,
    ) -> impl Future<Output = anyhow::Result<Empty>> + Send;
    fn create_endpoint(
        self: Arc<Self>,
        request: CreateEndpointRequest,
    ) -> impl Future<Output = anyhow::Result<CreateEndpointResponse>> + Send;
    fn delete_endpoint(
        self: Arc<Self>,
        request: EndpointRequest,
    ) -> impl Future<Output = anyhow::Result<Empty>> + Send;
    fn join(
        self: Arc<Self>,
        request: JoinRequest,
    ) -> impl Future<Output = anyhow::Result<JoinResponse>> + Send;
    fn request_pool(
        self: Arc<Self>,
        request: RequestPoolRequest,
    ) -> impl Future<Output = anyhow::Result<RequestPoolResponse>> + Send;
    fn release_pool(
        self: Arc<Self>,
        request: ReleasePoolRequest,
    ) -> impl Future<Output = anyhow::Result<Empty>> + Send;
    fn request_address(
        self: Arc<Self>,
        request: RequestAddressRequest,
    ) -> impl Future<Output = anyhow::Result<RequestAddressResponse>> + Send;
    fn release_address(
        self: Arc<Self>,
        request: ReleaseAddressRequest,
    ) -> impl Future<Output = anyhow::Result<Empty>> + Send;
}

/// Each call goes to its handler, the method of the same name in `network.rs`, `endpoint.rs`
/// or `ipam.rs` (called as `DockerState::name`, which is the inherent method, not this one).
impl Calls for DockerState {
    async fn create_network(
        self: Arc<Self>,
        request: CreateNetworkRequest,
    ) -> anyhow::Result<Empty> {
        DockerState::create_network(&self, request).await
    }

    async fn delete_network(self: Arc<Self>, request: NetworkRequest) -> anyhow::Result<Empty> {
        DockerState::delete_network(&self, request).await
    }

    async fn create_endpoint(
        self: Arc<Self>,
        request: CreateEndpointRequest,
    ) -> anyhow::Result<CreateEndpointResponse> {
        DockerState::create_endpoint(&self, request).await
    }

    async fn delete_endpoint(self: Arc<Self>, request: EndpointRequest) -> anyhow::Result<Empty> {
        DockerState::delete_endpoint(&self, request).await
    }

    async fn join(self: Arc<Self>, request: JoinRequest) -> anyhow::Result<JoinResponse> {
        let (nid, eid) = (request.network_id.clone(), request.endpoint_id.clone());
        let answer = DockerState::join(&self, request).await?;
        // The container is only known once Docker has it joined: look it up later.
        self.follow_container(nid, eid);
        Ok(answer)
    }

    async fn request_pool(
        self: Arc<Self>,
        request: RequestPoolRequest,
    ) -> anyhow::Result<RequestPoolResponse> {
        DockerState::request_pool(&self, request).await
    }

    async fn release_pool(self: Arc<Self>, request: ReleasePoolRequest) -> anyhow::Result<Empty> {
        Ok(DockerState::release_pool(&self, request))
    }

    async fn request_address(
        self: Arc<Self>,
        request: RequestAddressRequest,
    ) -> anyhow::Result<RequestAddressResponse> {
        DockerState::request_address(&self, request).await
    }

    async fn release_address(
        self: Arc<Self>,
        request: ReleaseAddressRequest,
    ) -> anyhow::Result<Empty> {
        DockerState::release_address(&self, request).await
    }
}

/// The plugin's routes: every call dockerd makes of a `NetworkDriver` and `IpamDriver`.
pub fn router<D: Calls>(calls: Arc<D>) -> Router {
    Router::new()
        .route(
            "/Plugin.Activate",
            fixed(protocol::ActivateResponse {
                implements: vec!["NetworkDriver", "IpamDriver"],
            }),
        )
        // "global" needs swarm or a cluster store in Docker; netd mirrors networks itself.
        .route(
            "/NetworkDriver.GetCapabilities",
            fixed(protocol::CapabilitiesResponse {
                scope: "local",
                connectivity_scope: "local",
            }),
        )
        .route("/NetworkDriver.CreateNetwork", call(D::create_network))
        .route("/NetworkDriver.DeleteNetwork", call(D::delete_network))
        .route("/NetworkDriver.CreateEndpoint", call(D::create_endpoint))
        .route("/NetworkDriver.DeleteEndpoint", call(D::delete_endpoint))
        .route(
            "/NetworkDriver.EndpointOperInfo",
            call(|_: Arc<D>, _: EndpointRequest| async {
                Ok(protocol::EndpointInfoResponse {
                    value: serde_json::Map::new(),
                })
            }),
        )
        .route("/NetworkDriver.Join", call(D::join))
        // Nothing to undo: Docker moves the interface back out of the container itself.
        .route(
            "/NetworkDriver.Leave",
            call(acknowledge::<D, EndpointRequest>),
        )
        // Node discovery is the store's job; external connectivity is docker_gwbridge's
        // (overlay) or the LAN's (macvlan).
        .route(
            "/NetworkDriver.DiscoverNew",
            call(acknowledge::<D, protocol::DiscoveryNotification>),
        )
        .route(
            "/NetworkDriver.DiscoverDelete",
            call(acknowledge::<D, protocol::DiscoveryNotification>),
        )
        .route(
            "/NetworkDriver.ProgramExternalConnectivity",
            call(acknowledge::<D, protocol::ProgramExternalConnectivityRequest>),
        )
        .route(
            "/NetworkDriver.RevokeExternalConnectivity",
            call(acknowledge::<D, EndpointRequest>),
        )
        .route(
            "/IpamDriver.GetCapabilities",
            fixed(protocol::IpamCapabilitiesResponse {
                requires_mac_address: false,
                requires_request_replay: false,
            }),
        )
        .route(
            "/IpamDriver.GetDefaultAddressSpaces",
            fixed(protocol::AddressSpacesResponse {
                local_default_address_space: "netd",
                global_default_address_space: "netd",
            }),
        )
        .route("/IpamDriver.RequestPool", call(D::request_pool))
        .route("/IpamDriver.ReleasePool", call(D::release_pool))
        .route("/IpamDriver.RequestAddress", call(D::request_address))
        .route("/IpamDriver.ReleaseAddress", call(D::release_address))
        .fallback(unknown)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(calls)
}

/// A call with a request message: `handler` gets it parsed, or Docker gets why it is not.
fn call<D, Req, Resp, F, Fut>(handler: F) -> MethodRouter<Arc<D>>
where
    D: Calls,
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize,
    F: Fn(Arc<D>, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Resp>> + Send,
{
    post(move |State(calls): State<Arc<D>>, uri: Uri, body: Bytes| {
        let handler = handler.clone();
        async move {
            let path = uri.path();
            tracing::debug!(call = path, "plugin call");
            let result = match protocol::parse::<Req>(path.trim_start_matches('/'), &body) {
                Ok(request) => handler(calls, request).await,
                Err(malformed) => Err(malformed.into()),
            };
            answer(path, result)
        }
    })
}

/// A call without a request message (dockerd sends an empty body, which is not read) and
/// with an answer that never changes.
fn fixed<S: Clone + Send + Sync + 'static>(response: impl Serialize) -> MethodRouter<S> {
    let answer = answer("", Ok(response));
    post(move |uri: Uri| {
        let answer = answer.clone();
        async move {
            tracing::debug!(call = uri.path(), "plugin call");
            answer
        }
    })
}

/// A call netd only acknowledges, once its message is read.
async fn acknowledge<D, Req>(_: Arc<D>, _: Req) -> anyhow::Result<Empty> {
    Ok(Empty {})
}

async fn unknown(uri: Uri) -> Answer {
    answer::<Empty>(
        uri.path(),
        Err(anyhow!("netd does not implement {}", uri.path())),
    )
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

/// A call's answer, as JSON. Always HTTP 200: libnetwork's remote driver and IPAM read their
/// error from the body's `Err` or `Error` field of a 200 answer (pkg/plugins only looks for
/// `Err` in other statuses, which IPAM errors do not have).
#[derive(Clone, Debug)]
struct Answer(Vec<u8>);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], self.0).into_response()
    }
}

/// The answer of the call at `path`: its response, or the error in the protocol's field,
/// which Docker shows the user.
fn answer<T: Serialize>(path: &str, result: anyhow::Result<T>) -> Answer {
    let encoded = result.and_then(|response| Ok(serde_json::to_vec(&response)?));
    match encoded {
        Ok(body) => Answer(body),
        Err(error) => {
            tracing::warn!(call = path, error = %format!("{error:#}"), "docker plugin call refused");
            Answer(refusal(protocol_of(path), &error))
        }
    }
}

/// An error as the protocol's answer: one line, `netd: ` and what went wrong.
fn refusal(protocol: Protocol, error: &anyhow::Error) -> Vec<u8> {
    let message = format!("netd: {error:#}");
    let answer = match protocol {
        Protocol::Network => serde_json::to_vec(&protocol::NetworkError { err: message }),
        Protocol::Ipam => serde_json::to_vec(&protocol::IpamError { error: message }),
    };
    // Cannot fail (one string field); were it to, `null` still fails the call in Docker.
    answer.unwrap_or_else(|_| b"null".to_vec())
}

#[cfg(test)]
mod tests {
    use anyhow::bail;
    use http_body_util::{BodyExt as _, Full};
    use hyper::{Request, StatusCode, client::conn::http1};
    use hyper_util::rt::TokioIo;
    use serde_json::{Value, json};
    use tokio::net::{UnixListener, UnixStream};

    use super::*;
    use crate::docker::temp_dir::TempDir;

    #[test]
    fn errors_use_each_protocols_field() {
        let e = anyhow!("subnet 10.0.0.0/24 overlaps netd network \"a\"");
        let json = |b: Vec<u8>| serde_json::from_slice::<Value>(&b).unwrap();
        assert_eq!(
            json(refusal(protocol_of("/IpamDriver.RequestPool"), &e)),
            json!({ "Error": "netd: subnet 10.0.0.0/24 overlaps netd network \"a\"" })
        );
        assert_eq!(
            json(refusal(protocol_of("/NetworkDriver.Join"), &e))["Err"],
            "netd: subnet 10.0.0.0/24 overlaps netd network \"a\""
        );
    }

    /// Stands in for netd's state: the router's own work is under test, not the handlers'.
    struct Refuses;

    impl Calls for Refuses {
        async fn create_network(self: Arc<Self>, _: CreateNetworkRequest) -> anyhow::Result<Empty> {
            bail!("this test never gets a well-formed CreateNetwork")
        }
        async fn delete_network(self: Arc<Self>, _: NetworkRequest) -> anyhow::Result<Empty> {
            Ok(Empty {})
        }
        async fn create_endpoint(
            self: Arc<Self>,
            _: CreateEndpointRequest,
        ) -> anyhow::Result<CreateEndpointResponse> {
            bail!("no endpoints here")
        }
        async fn delete_endpoint(self: Arc<Self>, _: EndpointRequest) -> anyhow::Result<Empty> {
            Ok(Empty {})
        }
        async fn join(self: Arc<Self>, _: JoinRequest) -> anyhow::Result<JoinResponse> {
            bail!("no endpoints here")
        }
        async fn request_pool(
            self: Arc<Self>,
            request: RequestPoolRequest,
        ) -> anyhow::Result<RequestPoolResponse> {
            bail!("subnet {} overlaps netd network \"a\"", request.pool)
        }
        async fn release_pool(self: Arc<Self>, _: ReleasePoolRequest) -> anyhow::Result<Empty> {
            Ok(Empty {})
        }
        async fn request_address(
            self: Arc<Self>,
            _: RequestAddressRequest,
        ) -> anyhow::Result<RequestAddressResponse> {
            bail!("no addresses here")
        }
        async fn release_address(
            self: Arc<Self>,
            _: ReleaseAddressRequest,
        ) -> anyhow::Result<Empty> {
            Ok(Empty {})
        }
    }

    /// dockerd's side of one keep-alive connection: POSTs with the plugin content type.
    struct Dockerd(http1::SendRequest<Full<Bytes>>);

    impl Dockerd {
        async fn connect(socket: &std::path::Path) -> Self {
            let stream = UnixStream::connect(socket).await.unwrap();
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            Self(sender)
        }

        async fn call(&mut self, call: &str, body: &str) -> (StatusCode, String, Value) {
            let request = Request::post(format!("/{call}"))
                .header(header::HOST, "plugin")
                .header(
                    header::CONTENT_TYPE,
                    "application/vnd.docker.plugins.v1.2+json",
                )
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap();
            self.0.ready().await.unwrap();
            let answer = self.0.send_request(request).await.unwrap();
            let status = answer.status();
            let content_type = answer.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_string();
            let body = answer.into_body().collect().await.unwrap().to_bytes();
            (status, content_type, serde_json::from_slice(&body).unwrap())
        }
    }

    #[tokio::test]
    async fn the_plugin_socket_answers_as_dockerd_expects() {
        let dir = TempDir::new("plugin-router");
        let socket = dir.path().join("netd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server =
            tokio::spawn(async move { axum::serve(listener, router(Arc::new(Refuses))).await });

        // One connection for every call, as dockerd keeps it alive.
        let mut dockerd = Dockerd::connect(&socket).await;
        let (status, content_type, body) = dockerd.call("Plugin.Activate", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, CONTENT_TYPE);
        assert_eq!(
            body,
            json!({ "Implements": ["NetworkDriver", "IpamDriver"] })
        );

        // A malformed request: HTTP 200 and the reason, on one line, in `Err`.
        for malformed in ["", "{\"NetworkID\": 7}", "not json"] {
            let (status, _, body) = dockerd.call("NetworkDriver.CreateNetwork", malformed).await;
            assert_eq!(status, StatusCode::OK);
            let err = body["Err"].as_str().unwrap_or_default();
            assert!(
                err.starts_with("netd: malformed NetworkDriver.CreateNetwork request: ")
                    && !err.contains('\n'),
                "{malformed:?}: {body}"
            );
        }

        // A well-formed call reaches its handler; IPAM's refusals are in `Error`.
        let (_, _, body) = dockerd
            .call(
                "IpamDriver.RequestPool",
                r#"{"AddressSpace":"netd","Pool":"10.0.0.0/24","SubPool":"","Options":null,"V6":false}"#,
            )
            .await;
        assert_eq!(
            body,
            json!({ "Error": "netd: subnet 10.0.0.0/24 overlaps netd network \"a\"" })
        );
        let (_, _, body) = dockerd
            .call("NetworkDriver.DeleteNetwork", r#"{"NetworkID":"d0cce7"}"#)
            .await;
        assert_eq!(body, json!({}));
        let (status, _, body) = dockerd.call("NetworkDriver.Nonesuch", "{}").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({ "Err": "netd: netd does not implement /NetworkDriver.Nonesuch" })
        );
        server.abort();
    }
}
