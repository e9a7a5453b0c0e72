//! A small client of the Docker Engine API (v1.41, what Docker 20.10 speaks and newer engines
//! still accept), found the way the docker CLI finds it: `DOCKER_HOST=unix://...`, else
//! `/var/run/docker.sock`.

use std::path::PathBuf;

use serde_json::Value;
use tokio::{io::BufReader, net::UnixStream};

use super::http::{self, HttpError};

/// API version used when the engine does not say (Docker 20.10's).
const FALLBACK_API: &str = "1.41";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Docker engine at {path} unreachable: {source}")]
    Unreachable {
        path: String,
        source: std::io::Error,
    },
    #[error("Docker engine: {0}")]
    Http(#[from] HttpError),
    #[error("Docker engine answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("Docker engine sent invalid JSON: {0}")]
    Json(String),
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

    /// The versioned path prefix, asked once per connection to the engine (`GET /version`).
    async fn api(&self) -> Result<String, EngineError> {
        if let Some(api) = self.api.lock().ok().and_then(|a| a.clone()) {
            return Ok(api);
        }
        let mut stream = self.connect().await?;
        http::send_request(stream.get_mut(), "GET", "/version", None).await?;
        let head = http::read_response_head(&mut stream).await?;
        let body = head.read_body(&mut stream).await?;
        let version: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let api = format!(
            "/v{}",
            version["ApiVersion"].as_str().unwrap_or(FALLBACK_API)
        );
        if let Ok(mut slot) = self.api.lock() {
            *slot = Some(api.clone());
        }
        Ok(api)
    }

    /// `DOCKER_HOST` (unix:// only), else the default socket.
    pub fn from_env() -> Self {
        let socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        Self::new(socket)
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    async fn connect(&self) -> Result<BufReader<UnixStream>, EngineError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| EngineError::Unreachable {
                    path: self.socket.display().to_string(),
                    source,
                })?;
        Ok(BufReader::new(stream))
    }

    /// One request; returns the parsed JSON body (`Null` for an empty one).
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EngineError> {
        let mut stream = self.connect().await?;
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let api = self.api().await?;
        http::send_request(
            stream.get_mut(),
            method,
            &format!("{api}{path}"),
            body.as_deref(),
        )
        .await?;
        let head = http::read_response_head(&mut stream).await?;
        let raw = head.read_body(&mut stream).await?;
        let value = if raw.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&raw).map_err(|e| EngineError::Json(e.to_string()))?
        };
        if !(200..300).contains(&head.status) {
            let message = value["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            return Err(EngineError::Status {
                status: head.status,
                message,
            });
        }
        Ok(value)
    }

    /// Checks the engine answers; forgets the API version (the engine may have been upgraded).
    pub async fn ping(&self) -> Result<(), EngineError> {
        if let Ok(mut slot) = self.api.lock() {
            *slot = None;
        }
        let mut stream = self.connect().await?;
        http::send_request(stream.get_mut(), "GET", "/_ping", None).await?;
        let head = http::read_response_head(&mut stream).await?;
        if head.status != 200 {
            return Err(EngineError::Status {
                status: head.status,
                message: "ping failed".into(),
            });
        }
        Ok(())
    }

    /// Networks using `driver`.
    pub async fn networks(&self, driver: &str) -> Result<Vec<NetworkSummary>, EngineError> {
        let filter = format!("%7B%22driver%22%3A%5B%22{driver}%22%5D%7D"); // {"driver":["<driver>"]}
        let list = self
            .call("GET", &format!("/networks?filters={filter}"), None)
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
        match self.call("GET", &format!("/networks/{id}"), None).await {
            Ok(v) => Ok(Some(v)),
            Err(EngineError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /containers/{id}/json`; `None` when it does not exist.
    pub async fn container(&self, id: &str) -> Result<Option<Value>, EngineError> {
        match self
            .call("GET", &format!("/containers/{id}/json"), None)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(EngineError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create_network(&self, body: &Value) -> Result<(), EngineError> {
        self.call("POST", "/networks/create", Some(body))
            .await
            .map(|_| ())
    }

    pub async fn remove_network(&self, id: &str) -> Result<(), EngineError> {
        match self.call("DELETE", &format!("/networks/{id}"), None).await {
            Ok(_) | Err(EngineError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Container and network events from now on.
    pub async fn events(&self) -> Result<EventStream, EngineError> {
        let api = self.api().await?;
        let mut stream = self.connect().await?;
        // {"type":["container","network"]}
        let filter = "%7B%22type%22%3A%5B%22container%22%2C%22network%22%5D%7D";
        http::send_request(
            stream.get_mut(),
            "GET",
            &format!("{api}/events?filters={filter}"),
            None,
        )
        .await?;
        let head = http::read_response_head(&mut stream).await?;
        if head.status != 200 {
            return Err(EngineError::Status {
                status: head.status,
                message: "events".into(),
            });
        }
        Ok(EventStream {
            stream,
            chunked: head.is_chunked(),
            pending: Vec::new(),
        })
    }
}

/// The Engine's event stream: one JSON object per line.
pub struct EventStream {
    stream: BufReader<UnixStream>,
    chunked: bool,
    pending: Vec<u8>,
}

impl EventStream {
    pub async fn next(&mut self) -> Result<Value, EngineError> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line).map_err(|e| EngineError::Json(e.to_string()));
            }
            if self.chunked {
                match http::read_chunk(&mut self.stream).await? {
                    Some(chunk) => self.pending.extend_from_slice(&chunk),
                    None => return Err(HttpError::Closed.into()),
                }
            } else {
                use tokio::io::AsyncBufReadExt as _;
                let mut line = Vec::new();
                if self
                    .stream
                    .read_until(b'\n', &mut line)
                    .await
                    .map_err(HttpError::from)?
                    == 0
                {
                    return Err(HttpError::Closed.into());
                }
                self.pending.extend_from_slice(&line);
            }
        }
    }
}
