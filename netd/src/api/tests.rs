//! The API end to end in one process: the daemon's server (its routing, error bodies, caller
//! check and body parsing) on a socket in a temporary directory, and the client the CLI uses.
//! No root: the server is told to accept this test's own uid.

use std::path::{Path, PathBuf};

use axum::{
    Json, Router,
    http::StatusCode,
    routing::{get, post},
};
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;

use super::*;
use crate::daemon::server::{self, JsonBody, Name};

/// A directory for one test's socket, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("netd-api-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn my_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Serves `router` on a socket in `dir` for callers of `uid`; the client for it.
fn start(dir: &TempDir, router: Router, uid: u32) -> Client {
    let listener = server::bind(&dir.0).unwrap();
    tokio::spawn(server::serve(listener, router, uid));
    Client::new(dir.0.join(SOCKET_NAME))
}

fn network(name: &str) -> Network {
    Network {
        name: name.into(),
        driver: "overlay".into(),
        vni: 256,
        subnets: vec![Subnet {
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: None,
            ip_range: None,
            aux: Default::default(),
        }],
        mtu: None,
        options: Default::default(),
        endpoints: 0,
        endpoint_list: None,
        warnings: Vec::new(),
    }
}

/// `GET /v1/networks/{kind}` fails with that kind; `POST /v1/networks` echoes the request's
/// name; any other network is found.
fn router() -> Router {
    async fn inspect(Name(name): Name) -> Result<Json<Network>, ApiError> {
        match serde_json::from_value::<ErrorKind>(serde_json::Value::String(name.clone())) {
            Ok(kind) if kind.name() == name => {
                Err(ApiError::new(kind, format!("failing as {kind} was asked")))
            }
            _ => Ok(Json(network(&name))),
        }
    }
    async fn create(JsonBody(request): JsonBody<CreateNetwork>) -> (StatusCode, Json<Network>) {
        (StatusCode::CREATED, Json(network(&request.name)))
    }
    Router::new()
        .route(routes::NETWORK, get(inspect))
        .route(routes::NETWORKS, post(create))
}

#[tokio::test]
async fn every_kind_the_server_answers_reaches_the_client_as_that_kind() {
    let dir = TempDir::new("kinds");
    let client = start(&dir, router(), my_uid());
    for kind in ErrorKind::ALL {
        let error = client.network(kind.name()).await.unwrap_err();
        assert_eq!(error.kind(), kind, "{error}");
        match error {
            // The client names the socket, as it does when it cannot connect.
            ClientError::PermissionDenied(socket) => {
                assert_eq!(Path::new(&socket), client.socket());
            }
            ClientError::Daemon(e) => {
                assert_eq!(
                    e,
                    ApiError::new(kind, format!("failing as {kind} was asked"))
                );
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
    // The positive control: the same route answers a network.
    let found = client.network("web net/1").await.unwrap();
    assert_eq!(found, network("web net/1"));
}

#[tokio::test]
async fn a_request_body_reaches_the_server_typed() {
    let dir = TempDir::new("body");
    let client = start(&dir, router(), my_uid());
    let request = CreateNetwork {
        name: "n1".into(),
        driver: "overlay".into(),
        subnets: vec![SubnetSpec {
            subnet: "10.1.0.0/24".into(),
            ..SubnetSpec::default()
        }],
        mtu: Some(1400),
        vni: None,
        options: vec![("parent".into(), "eth0".into())],
    };
    assert_eq!(
        client.create_network(&request).await.unwrap(),
        network("n1")
    );
}

#[tokio::test]
async fn another_users_requests_are_refused() {
    let dir = TempDir::new("uid");
    let client = start(&dir, router(), my_uid().wrapping_add(1));
    let error = client.network("n").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(
        error.to_string().starts_with("permission denied"),
        "{error}"
    );
    // Also before the body is read.
    let request = CreateNetwork {
        name: "n".into(),
        driver: "overlay".into(),
        subnets: Vec::new(),
        mtu: None,
        vni: None,
        options: Vec::new(),
    };
    let error = client.create_network(&request).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
}

#[tokio::test]
async fn no_daemon_is_unavailable() {
    let dir = TempDir::new("none");
    let client = Client::new(dir.0.join(SOCKET_NAME));
    let error = client.status().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(
        error
            .to_string()
            .starts_with("cannot reach the netd daemon at "),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .ends_with("(is `netd daemon` running? see --socket)"),
        "{error}"
    );
}

/// Sends `POST path` with `body` and `content_type` as any HTTP client might: the status and
/// the error body.
async fn post_raw(
    socket: &Path,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, ApiError) {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::post(path).header("host", "netd");
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let answer = sender.send_request(request).await.unwrap();
    let status = answer.status().as_u16();
    let bytes = answer.into_body().collect().await.unwrap().to_bytes();
    let error = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (status, error)
}

#[tokio::test]
async fn malformed_requests_are_one_line_invalid_errors() {
    let dir = TempDir::new("malformed");
    let client = start(&dir, router(), my_uid());
    let socket = client.socket();
    let json = Some("application/json");
    let cases = [
        (
            routes::NETWORKS,
            None,
            "{}",
            "Content-Type: application/json",
        ),
        (
            routes::NETWORKS,
            Some("text/plain"),
            "{}",
            "Content-Type: application/json",
        ),
        (
            routes::NETWORKS,
            json,
            "{\"name\": 1",
            "invalid request body: ",
        ),
        (
            routes::NETWORKS,
            json,
            "{\"name\": \"n\"}",
            "missing field `driver`",
        ),
        (routes::STATUS, json, "{}", "no API route POST /v1/status"),
        (
            "/v1/networks/x",
            json,
            "{}",
            "/v1/networks/x does not take POST",
        ),
    ];
    for (path, content_type, body, expected) in cases {
        let (status, error) = post_raw(socket, path, content_type, body).await;
        let kind = if expected.starts_with("no API route") {
            ErrorKind::NotFound
        } else {
            ErrorKind::Invalid
        };
        assert_eq!(
            (status, error.kind),
            (kind.http_status(), kind),
            "{error:?}"
        );
        assert!(error.message.contains(expected), "{path} {body}: {error:?}");
        assert_eq!(error.message.lines().count(), 1, "{error:?}");
    }
    let huge = format!("{{\"name\": \"{}\"}}", "n".repeat(MAX_BODY));
    let (status, error) = post_raw(socket, routes::NETWORKS, json, &huge).await;
    assert_eq!(status, 400, "{error:?}");
    assert!(error.message.contains("exceeds 1024 KiB"), "{error:?}");
    // The positive control: a well-formed body is taken.
    let ok = r#"{"name": "n", "driver": "overlay", "subnets": [], "mtu": null, "vni": null, "options": []}"#;
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::post(routes::NETWORKS)
        .header("host", "netd")
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(ok)))
        .unwrap();
    let answer = sender.send_request(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);
}
