//! The daemon's local API: HTTP/1.1 with JSON bodies over a unix socket in the run directory
//! that only root may use (mode 0600 in a 0700 directory, and the peer's uid checked with
//! SO_PEERCRED, so a socket made world-writable by mistake still refuses others).
//!
//! Routes are versioned as Docker's Engine API is:
//!
//! | method | path                               | body              | answer                    |
//! | ------ | ---------------------------------- | ----------------- | ------------------------- |
//! | GET    | `/v1/networks`                     |                   | `[Network]`               |
//! | POST   | `/v1/networks`                     | [`CreateNetwork`] | [`Network`], 201          |
//! | GET    | `/v1/networks/{name}`              |                   | [`Network`] (+ endpoints) |
//! | DELETE | `/v1/networks/{name}`              |                   | [`Removed`]               |
//! | GET    | `/v1/endpoints[?network=N]`        |                   | `[Endpoint]`              |
//! | POST   | `/v1/endpoints`                    | [`AddEndpoint`]   | [`Endpoint`], 201         |
//! | DELETE | `/v1/endpoints/{name}[?network=N]` |                   | [`Removed`]               |
//! | GET    | `/v1/status`                       |                   | [`Status`]                |
//!
//! A request with a body sends `Content-Type: application/json`. A failed request is answered
//! with `{"kind": ..., "message": ...}` ([`ApiError`]) and the status its [`ErrorKind`] maps to
//! (the table in [`error`]); the CLI exits with the code the same kind maps to. The daemon is
//! served by `daemon::server`; [`Client`] is the CLI's (and anyone's) way in.

mod client;
pub mod error;
#[cfg(test)]
mod tests;
mod types;

pub use client::{Client, ClientError};
pub use error::{ApiError, ErrorKind};
pub use types::*;

/// Default socket path (`--socket`, `NETD_SOCKET`).
pub const DEFAULT_SOCKET: &str = "/run/netd/netd.sock";
/// Socket file name inside the daemon's run directory.
pub const SOCKET_NAME: &str = "netd.sock";

/// The largest request body the daemon reads.
pub const MAX_BODY: usize = 1 << 20;

/// The API's paths.
pub mod routes {
    pub const NETWORKS: &str = "/v1/networks";
    pub const NETWORK: &str = "/v1/networks/{name}";
    pub const ENDPOINTS: &str = "/v1/endpoints";
    pub const ENDPOINT: &str = "/v1/endpoints/{name}";
    pub const HOST: &str = "/v1/hosts/{name}";
    pub const STATUS: &str = "/v1/status";
}

/// The query of `GET /v1/endpoints` and `DELETE /v1/endpoints/{name}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkFilter {
    pub network: Option<String>,
}
