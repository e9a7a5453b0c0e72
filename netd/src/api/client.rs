//! The API's client: one HTTP/1.1 connection per request to the daemon's socket.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt as _, Full};
use hyper::{
    Method, Request, StatusCode,
    body::Bytes,
    header::{CONTENT_TYPE, HOST},
};
use hyper_util::rt::TokioIo;
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::UnixStream;

use super::{
    AddEndpoint, ApiError, CreateNetwork, Endpoint, ErrorKind, Network, Removed, RemovedHost,
    Status, routes,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// (The I/O error is in the message, and not a `source`: the CLI prints a chain whole.)
    #[error(
        "cannot reach the netd daemon at {path}: {error} (is `netd daemon` running? see --socket)"
    )]
    Connect { path: String, error: std::io::Error },
    #[error("permission denied: the netd API at {0} is root-only (run as root)")]
    PermissionDenied(String),
    #[error("talking to the netd daemon: {0}")]
    Http(#[from] hyper::Error),
    #[error("the netd daemon sent an invalid response: {0}")]
    Protocol(String),
    /// The daemon's answer to a request that failed.
    #[error(transparent)]
    Daemon(ApiError),
}

impl ClientError {
    /// What kind of failure this is, whether the daemon said so or the client found it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect { .. } => ErrorKind::Unavailable,
            Self::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Self::Http(_) | Self::Protocol(_) => ErrorKind::Internal,
            Self::Daemon(e) => e.kind,
        }
    }
}

/// The daemon at a socket.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn create_network(&self, request: &CreateNetwork) -> Result<Network, ClientError> {
        self.call(Method::POST, routes::NETWORKS, Some(request))
            .await
    }

    pub async fn networks(&self) -> Result<Vec<Network>, ClientError> {
        self.get(routes::NETWORKS).await
    }

    /// One network with its endpoints and warnings.
    pub async fn network(&self, name: &str) -> Result<Network, ClientError> {
        self.get(&format!("{}/{}", routes::NETWORKS, encode(name)))
            .await
    }

    pub async fn remove_network(&self, name: &str) -> Result<Removed, ClientError> {
        let path = format!("{}/{}", routes::NETWORKS, encode(name));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    pub async fn remove_host(&self, name: &str) -> Result<RemovedHost, ClientError> {
        let path = routes::HOST.replace("{name}", &encode(name));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    pub async fn add_endpoint(&self, request: &AddEndpoint) -> Result<Endpoint, ClientError> {
        self.call(Method::POST, routes::ENDPOINTS, Some(request))
            .await
    }

    /// Endpoints of every host (in one network).
    pub async fn endpoints(&self, network: Option<&str>) -> Result<Vec<Endpoint>, ClientError> {
        self.get(&format!("{}{}", routes::ENDPOINTS, network_query(network)))
            .await
    }

    /// Removes an endpoint of the daemon's host (`network`: where several have this name).
    pub async fn remove_endpoint(
        &self,
        name: &str,
        network: Option<&str>,
    ) -> Result<Removed, ClientError> {
        let path = format!(
            "{}/{}{}",
            routes::ENDPOINTS,
            encode(name),
            network_query(network)
        );
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        self.get(routes::STATUS).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// Sends one request on a new connection and reads its answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let socket = self.socket.display().to_string();
        let stream = UnixStream::connect(&self.socket).await.map_err(|error| {
            if error.kind() == std::io::ErrorKind::PermissionDenied {
                ClientError::PermissionDenied(socket.clone())
            } else {
                ClientError::Connect {
                    path: socket.clone(),
                    error,
                }
            }
        })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection does the I/O; it ends when the answer is read and `sender` dropped.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "API connection");
            }
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "netd");
        let request = match body {
            Some(body) => {
                let json =
                    serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
                request
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(json)))
            }
            None => request.body(Full::new(Bytes::new())),
        }
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let answer = sender.send_request(request).await?;
        let status = answer.status();
        let bytes = answer.into_body().collect().await?.to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Protocol(format!("{e} in the answer to {path} ({status})"))
            });
        }
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(e) if e.kind == ErrorKind::PermissionDenied => {
                Err(ClientError::PermissionDenied(socket))
            }
            Ok(e) => Err(ClientError::Daemon(e)),
            Err(_) => Err(ClientError::Protocol(unexplained(status, &bytes))),
        }
    }
}

/// A failed answer without the API's error body (not netd's daemon at the socket?).
fn unexplained(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let first = text.lines().next().unwrap_or_default();
    format!("{status} without an error body: {first:?}")
}

/// `?network=...`, or nothing.
fn network_query(network: Option<&str>) -> String {
    network
        .map(|n| format!("?network={}", encode(n)))
        .unwrap_or_default()
}

/// Percent-encodes all but RFC 3986's unreserved characters: a name is one path segment or
/// one query value, whatever it holds.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_segment_whatever_they_hold() {
        assert_eq!(encode("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(encode("a/b c?d=é"), "a%2Fb%20c%3Fd%3D%C3%A9");
        assert_eq!(network_query(Some("n 1")), "?network=n%201");
        assert_eq!(network_query(None), "");
    }
}
