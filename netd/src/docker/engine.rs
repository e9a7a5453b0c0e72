//! A small client of the Docker Engine API (v1.41, what Docker 20.10 speaks and newer engines
//! still accept), found the way the docker CLI finds it: `DOCKER_HOST=unix://...`, else
//! `/var/run/docker.sock`. HTTP/1.1 is hyper's, one connection per call over the unix socket;
//! `/events` is read frame by frame as the Engine streams it.

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::Duration,
};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    client::conn::http1,
    header,
};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// API version used when the engine does not say (Docker 20.10's).
const FALLBACK_API: &str = "1.41";
/// Largest answer read, and longest event line (the Engine's are a few KB).
const MAX_BODY: usize = 4 << 20;
/// How long one call (connect, request, whole answer) may take. The Engine answers in
/// milliseconds; one that does not answer at all is stuck, possibly waiting on netd's own
/// plugin answer: netd must not wait on it for ever.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Docker engine at {path} unreachable: {source}")]
    Unreachable {
        path: String,
        source: std::io::Error,
    },
    #[error("Docker engine: {0}")]
    Http(#[from] hyper::Error),
    #[error("Docker engine: cannot ask for {path:?}: {source}")]
    Request {
        path: String,
        source: hyper::http::Error,
    },
    #[error("Docker engine sent more than {MAX_BODY} bytes at once")]
    TooLarge,
    #[error("Docker engine answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("Docker engine sent invalid JSON: {0}")]
    Json(String),
    #[error("Docker engine closed the event stream")]
    Closed,
    #[error("Docker engine did not answer {what} within {} s", CALL_TIMEOUT.as_secs())]
    Timeout { what: String },
}

/// `work` (a call to the Engine about `what`), given up after [`CALL_TIMEOUT`].
async fn within<T>(
    what: &str,
    work: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    tokio::time::timeout(CALL_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(EngineError::Timeout {
                what: what.to_string(),
            })
        })
}

#[derive(Clone, Debug)]
pub struct Engine {
    socket: PathBuf,
    /// `/v<ApiVersion>` as the engine reported it: some engines refuse versions they consider
    /// too old, every engine accepts its own.
    api: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// A Docker network as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSummary {
    pub id: String,
    pub name: String,
}

impl Engine {
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            api: std::sync::Arc::default(),
        }
    }

    /// `DOCKER_HOST` (unix:// only), else the default socket.
    pub fn from_env() -> Self {
        let socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        Self::new(socket)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request on a connection of its own; the connection lives as long as the
    /// answer's body is read (the event stream's, as long as the stream).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, EngineError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| EngineError::Unreachable {
                    path: self.socket.display().to_string(),
                    source,
                })?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "Docker engine connection ended");
            }
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "docker")
            .header(header::USER_AGENT, "netd");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|source| EngineError::Request {
                path: path.to_string(),
                source,
            })?;
        Ok(sender.send_request(request).await?)
    }

    /// The versioned path prefix, asked once per connection to the engine (`GET /version`).
    async fn api(&self) -> Result<String, EngineError> {
        if let Some(api) = self.api.lock().ok().and_then(|a| a.clone()) {
            return Ok(api);
        }
        let answer = self.send(Method::GET, "/version", None).await?;
        let body = read_body(answer.into_body()).await?;
        let version: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let api = api_prefix(&version);
        if let Ok(mut slot) = self.api.lock() {
            *slot = Some(api.clone());
        }
        Ok(api)
    }

    /// One request under the API's version prefix; returns the parsed JSON body (`Null` for
    /// an empty one).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EngineError> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let (status, raw) = within(&format!("{method} {path}"), async {
            let api = self.api().await?;
            let answer = self
                .send(method.clone(), &format!("{api}{path}"), body)
                .await?;
            let status = answer.status();
            Ok((status, read_body(answer.into_body()).await?))
        })
        .await?;
        let value = if raw.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&raw).map_err(|e| EngineError::Json(e.to_string()))?
        };
        if !status.is_success() {
            return Err(status_error(status, &value));
        }
        Ok(value)
    }

    /// Checks the engine answers; forgets the API version (the engine may have been upgraded).
    pub async fn ping(&self) -> Result<(), EngineError> {
        if let Ok(mut slot) = self.api.lock() {
            *slot = None;
        }
        let answer = within("GET /_ping", async {
            let answer = self.send(Method::GET, "/_ping", None).await?;
            // The body too: an Engine that sends the head and then hangs is no better.
            let status = answer.status();
            read_body(answer.into_body()).await?;
            Ok::<_, EngineError>(status)
        })
        .await?;
        if answer != StatusCode::OK {
            return Err(EngineError::Status {
                status: answer.as_u16(),
                message: "ping failed".into(),
            });
        }
        Ok(())
    }

    /// Networks using `driver`.
    pub async fn networks(&self, driver: &str) -> Result<Vec<NetworkSummary>, EngineError> {
        let filter = format!("%7B%22driver%22%3A%5B%22{driver}%22%5D%7D"); // {"driver":["<driver>"]}
        let list = self
            .call(Method::GET, &format!("/networks?filters={filter}"), None)
            .await?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| {
                Some(NetworkSummary {
                    id: n["Id"].as_str()?.to_string(),
                    name: n["Name"].as_str()?.to_string(),
                })
            })
            .collect())
    }

    /// `GET /networks/{id}` (with its containers); `None` when it does not exist.
    pub async fn network(&self, id: &str) -> Result<Option<Value>, EngineError> {
        match self
            .call(Method::GET, &format!("/networks/{id}"), None)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(EngineError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /containers/{id}/json`; `None` when it does not exist.
    pub async fn container(&self, id: &str) -> Result<Option<Value>, EngineError> {
        match self
            .call(Method::GET, &format!("/containers/{id}/json"), None)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(EngineError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create_network(&self, body: &Value) -> Result<(), EngineError> {
        self.call(Method::POST, "/networks/create", Some(body))
            .await
            .map(|_| ())
    }

    pub async fn remove_network(&self, id: &str) -> Result<(), EngineError> {
        match self
            .call(Method::DELETE, &format!("/networks/{id}"), None)
            .await
        {
            Ok(_) | Err(EngineError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Container and network events from now on.
    pub async fn events(&self) -> Result<EventStream, EngineError> {
        // {"type":["container","network"]}
        let filter = "%7B%22type%22%3A%5B%22container%22%2C%22network%22%5D%7D";
        // The answer's head within the deadline; its body streams for as long as it lasts.
        let answer = within("GET /events", async {
            let api = self.api().await?;
            self.send(Method::GET, &format!("{api}/events?filters={filter}"), None)
                .await
        })
        .await?;
        let status = answer.status();
        if status != StatusCode::OK {
            let raw = read_body(answer.into_body()).await?;
            let value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            return Err(status_error(status, &value));
        }
        Ok(EventStream {
            body: answer.into_body(),
            lines: Lines::default(),
        })
    }
}

/// `/v<ApiVersion>` from `GET /version`'s answer, or the fallback's when it does not say.
fn api_prefix(version: &Value) -> String {
    format!(
        "/v{}",
        version["ApiVersion"].as_str().unwrap_or(FALLBACK_API)
    )
}

/// A refusal, with the Engine's own message (`{"message": "..."}`) when it gave one.
fn status_error(status: StatusCode, body: &Value) -> EngineError {
    let message = body["message"]
        .as_str()
        .map_or_else(|| body.to_string(), str::to_string);
    EngineError::Status {
        status: status.as_u16(),
        message,
    }
}

/// A whole answer's body, up to [`MAX_BODY`].
async fn read_body(body: Incoming) -> Result<Bytes, EngineError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => match error.downcast::<hyper::Error>() {
            Ok(error) => Err(EngineError::Http(*error)),
            Err(_) => Err(EngineError::TooLarge),
        },
    }
}

/// The Engine's event stream: one JSON object per line, lines cut anywhere by the frames.
pub struct EventStream {
    body: Incoming,
    lines: Lines,
}

impl EventStream {
    /// The next event. Cancel-safe (`sync` selects on it): a frame is taken into the pending
    /// lines in the same poll that receives it.
    pub async fn next(&mut self) -> Result<Value, EngineError> {
        loop {
            if let Some(line) = self.lines.next_line() {
                return serde_json::from_slice(&line).map_err(|e| EngineError::Json(e.to_string()));
            }
            let Some(frame) = self.body.frame().await else {
                return Err(EngineError::Closed);
            };
            // Trailers (none from the Engine) carry no events.
            if let Ok(data) = frame?.into_data() {
                self.lines.push(&data)?;
            }
        }
    }
}

/// Bytes received, cut into lines.
#[derive(Debug, Default)]
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    fn push(&mut self, data: &[u8]) -> Result<(), EngineError> {
        self.pending.extend_from_slice(data);
        if self.pending.len() > MAX_BODY && !self.pending.contains(&b'\n') {
            return Err(EngineError::TooLarge);
        }
        Ok(())
    }

    /// The next complete line that is not blank, without its end.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            if !line.iter().all(u8::is_ascii_whitespace) {
                line.pop();
                return Some(line);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::{
        Router,
        body::Body,
        extract::Path as UrlPath,
        http::StatusCode,
        response::IntoResponse,
        routing::{get, post},
    };
    use tokio::net::UnixListener;

    use super::*;
    use crate::docker::temp_dir::TempDir;

    fn json(status: StatusCode, body: &'static str) -> impl IntoResponse {
        (status, [(header::CONTENT_TYPE, "application/json")], body)
    }

    /// The Engine's side of the calls, as far as this client's HTTP goes (the `docker` tier
    /// runs it against dockerd 20.10 and 26.1): the API version it reports, a refusal, a
    /// missing network and the event stream, chunked with lines cut across chunks.
    fn stand_in() -> Router {
        let events = || async {
            let chunks = [
                "{\"Type\":\"network\",",
                "\"Action\":\"create\"}\n{\"Type\":\"container\",\"Action\":\"die\"}\n",
                "\n",
            ];
            Body::from_stream(futures::stream::iter(
                chunks.map(|c| Ok::<_, Infallible>(Bytes::from_static(c.as_bytes()))),
            ))
        };
        Router::new()
            .route(
                "/version",
                get(|| async { json(StatusCode::OK, r#"{"ApiVersion":"1.45"}"#) }),
            )
            .route(
                "/v1.45/networks/{id}",
                get(|UrlPath(id): UrlPath<String>| async move {
                    match id.as_str() {
                        "d0cce7" => json(StatusCode::OK, r#"{"Id":"d0cce7","Name":"n"}"#),
                        _ => json(StatusCode::NOT_FOUND, r#"{"message":"network not found"}"#),
                    }
                }),
            )
            .route(
                "/v1.45/networks/create",
                post(|| async {
                    let message = r#"{"message":"network with name n already exists"}"#;
                    json(StatusCode::CONFLICT, message)
                }),
            )
            .route("/v1.45/events", get(events))
    }

    #[tokio::test]
    async fn calls_go_to_the_engines_api_version_and_events_come_line_by_line() {
        let dir = TempDir::new("engine-client");
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, stand_in()).await });
        let engine = Engine::new(socket);

        let network = engine.network("d0cce7").await.unwrap().unwrap();
        assert_eq!(network["Name"], "n");
        assert_eq!(engine.network("gone").await.unwrap(), None);
        let refused = engine
            .create_network(&serde_json::json!({ "Name": "n" }))
            .await
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Docker engine answered 409: network with name n already exists"
        );

        let mut events = engine.events().await.unwrap();
        let first = events.next().await.unwrap();
        assert_eq!(
            (&first["Type"], &first["Action"]),
            (&"network".into(), &"create".into())
        );
        let second = events.next().await.unwrap();
        assert_eq!(second["Action"], "die");
        assert!(matches!(events.next().await, Err(EngineError::Closed)));
        server.abort();
    }

    #[tokio::test]
    async fn an_absent_engine_is_unreachable() {
        let dir = TempDir::new("engine-absent");
        let engine = Engine::new(dir.path().join("docker.sock"));
        let error = engine.ping().await.unwrap_err();
        assert!(matches!(error, EngineError::Unreachable { .. }), "{error}");
    }

    #[test]
    fn events_are_split_into_lines_whatever_the_frames() {
        let mut lines = Lines::default();
        lines.push(b"{\"Type\":\"container\"").unwrap();
        assert_eq!(lines.next_line(), None, "no line before its end");
        lines
            .push(b",\"Action\":\"die\"}\n\r\n\n{\"Type\":")
            .unwrap();
        assert_eq!(
            lines.next_line().as_deref(),
            Some(&b"{\"Type\":\"container\",\"Action\":\"die\"}"[..])
        );
        // Blank lines (keep-alives) are skipped; the rest waits for its end.
        assert_eq!(lines.next_line(), None);
        lines.push(b"\"network\"}\n{\"Type\":\"x\"}\n").unwrap();
        assert_eq!(
            lines.next_line().as_deref(),
            Some(&b"{\"Type\":\"network\"}"[..])
        );
        assert_eq!(lines.next_line().as_deref(), Some(&b"{\"Type\":\"x\"}"[..]));
        assert_eq!(lines.next_line(), None);
    }

    #[test]
    fn a_line_without_end_is_refused_past_the_limit() {
        let mut lines = Lines::default();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..4 {
            lines.push(&chunk).unwrap();
        }
        assert!(matches!(lines.push(b"x"), Err(EngineError::TooLarge)));
    }

    #[test]
    fn the_api_prefix_is_the_engines_own_version() {
        let v = serde_json::json!({ "Version": "26.1.4", "ApiVersion": "1.45" });
        assert_eq!(api_prefix(&v), "/v1.45");
        assert_eq!(api_prefix(&Value::Null), "/v1.41");
    }
}
