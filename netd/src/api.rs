//! The daemon's local API: one JSON request line, one JSON response line, over a unix socket in
//! the run directory that only root may use (mode 0600, and the peer's uid checked with
//! SO_PEERCRED, so a socket made world-writable by mistake still refuses others).

use std::{net::Ipv4Addr, path::Path};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
};

/// Default socket path (`--socket`, `NETD_SOCKET`).
pub const DEFAULT_SOCKET: &str = "/run/netd/netd.sock";
/// Socket file name inside the daemon's run directory.
pub const SOCKET_NAME: &str = "netd.sock";

/// One subnet as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetSpec {
    pub subnet: String,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub aux: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    NetworkCreate {
        name: String,
        driver: String,
        subnets: Vec<SubnetSpec>,
        mtu: Option<u16>,
        vni: Option<u32>,
        options: Vec<(String, String)>,
    },
    NetworkLs,
    NetworkInspect {
        name: String,
    },
    NetworkRm {
        name: String,
    },
    EndpointAdd {
        network: String,
        netns: String,
        ip: Option<Ipv4Addr>,
        mac: Option<String>,
        ifname: String,
        name: String,
    },
    EndpointRm {
        name: String,
        network: Option<String>,
    },
    EndpointLs {
        network: Option<String>,
    },
    Status,
}

/// Either `{"ok": ...}` or `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(serde_json::Value),
    Error(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the netd daemon at {path}: {source} (is `netd daemon` running? see --socket)"
    )]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("permission denied: the netd API at {0} is root-only (run as root)")]
    PermissionDenied(String),
    #[error("talking to the netd daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("the netd daemon sent an invalid response: {0}")]
    Protocol(String),
    #[error("{0}")]
    Daemon(String),
}

/// Sends one request and waits for its answer.
pub async fn call(socket: &Path, request: &Request) -> Result<serde_json::Value, ClientError> {
    let path = socket.display().to_string();
    let stream = UnixStream::connect(socket).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ClientError::PermissionDenied(path.clone())
        } else {
            ClientError::Connect {
                path: path.clone(),
                source,
            }
        }
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push(b'\n');
    // A daemon that refuses the caller answers and closes: a write that fails then is not the
    // story, the answer is.
    let sent = async {
        write.write_all(&line).await?;
        write.shutdown().await
    }
    .await;
    let mut answer = String::new();
    let read = BufReader::new(read).read_line(&mut answer).await;
    if answer.is_empty() {
        sent?;
        read?;
        return Err(ClientError::Protocol(
            "the daemon closed the connection".into(),
        ));
    }
    match serde_json::from_str(&answer).map_err(|e| ClientError::Protocol(e.to_string()))? {
        Response::Ok(value) => Ok(value),
        Response::Error(message) if message.starts_with("permission denied") => {
            Err(ClientError::PermissionDenied(path))
        }
        Response::Error(message) => Err(ClientError::Daemon(message)),
    }
}

/// Reads one request from a connection (at most 1 MiB).
pub async fn read_request(stream: &mut UnixStream) -> Result<Request, String> {
    let mut line = String::new();
    let mut reader = BufReader::new(stream).take(1 << 20);
    use tokio::io::AsyncReadExt as _;
    reader
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading request: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("invalid request: {e}"))
}

/// Writes the response line.
pub async fn write_response(stream: &mut UnixStream, response: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).unwrap_or_default();
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.shutdown().await
}
