//! The API server: HTTP/1.1 on the run directory's unix socket, for root only.
//!
//! Each connection is served by hyper with the axum router of `handlers`; who is calling is
//! checked once per connection (SO_PEERCRED), and a caller who may not use the API gets
//! `permission_denied` to every request. Every failure, whether a handler's, a malformed
//! request's or an unknown route's, is answered as an [`ApiError`] body.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, time::Duration};

use anyhow::Context as _;
use axum::{
    Json, Router,
    extract::{FromRequest, FromRequestParts, Query, Request},
    http::{Method, StatusCode, Uri, header::CONTENT_TYPE, request::Parts},
    response::{IntoResponse, Response},
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use serde::de::DeserializeOwned;
use tokio::net::{UnixListener, UnixStream};

use crate::api::{self, ApiError, ErrorKind, NetworkFilter};

/// How long a client may take to send its request: its head, and then its body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub fn bind(run_dir: &Path) -> anyhow::Result<UnixListener> {
    fs::create_dir_all(run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    fs::set_permissions(run_dir, fs::Permissions::from_mode(0o700))?;
    let path = run_dir.join(api::SOCKET_NAME);
    // A socket left by a killed daemon: binding needs the path free.
    let _ = fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves `router` to callers whose uid is `allowed_uid` (the daemon: root's, 0).
pub async fn serve(listener: UnixListener, router: Router, allowed_uid: u32) -> anyhow::Result<()> {
    let router = router
        .fallback(no_route)
        .method_not_allowed_fallback(no_method);
    // An accept that fails (no descriptor left: a flood elsewhere in the daemon) waits and
    // goes on: the API must outlive it, and ending here would end the daemon.
    let mut backoff = crate::accept::Backoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.accepted();
                stream
            }
            Err(error) => {
                backoff.failed("API server", &error).await;
                continue;
            }
        };
        let app = match stream.peer_cred() {
            Ok(cred) if cred.uid() == allowed_uid => router.clone(),
            Ok(_) => refuse(ApiError::new(
                ErrorKind::PermissionDenied,
                "permission denied: the netd API is root-only",
            )),
            Err(error) => refuse(ApiError::new(
                ErrorKind::Internal,
                format!("cannot check the caller's credentials: {error}"),
            )),
        };
        tokio::spawn(connection(stream, app));
    }
}

async fn connection(stream: UnixStream, app: Router) {
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "API connection");
    }
}

/// A router that answers every request with `error`.
fn refuse(error: ApiError) -> Router {
    Router::new().fallback(move || {
        let error = error.clone();
        async move { error }
    })
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!(
            "no API route {method} {} (this netd serves /v1)",
            uri.path()
        ),
    )
}

async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError::invalid(format!("{} does not take {method}", uri.path()))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

/// A JSON request body: `Content-Type: application/json`, at most [`api::MAX_BODY`], read
/// within [`READ_TIMEOUT`]; anything else is an `invalid` request, said in one line.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::invalid(
                "the request body must be JSON (Content-Type: application/json)",
            ));
        }
        let read = axum::body::to_bytes(request.into_body(), api::MAX_BODY);
        let bytes = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Err(_) => return Err(ApiError::invalid("no request body received in time")),
            Ok(Err(error)) => return Err(body_error(&error)),
            Ok(Ok(bytes)) => bytes,
        };
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
    }
}

fn body_error(error: &axum::Error) -> ApiError {
    let too_large = std::error::Error::source(error)
        .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
    if too_large {
        ApiError::invalid(format!(
            "the request body exceeds {} KiB",
            api::MAX_BODY / 1024
        ))
    } else {
        ApiError::invalid(format!("cannot read the request body: {error}"))
    }
}

/// The `{name}` of a route.
pub struct Name(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Name {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

/// `?network=...`.
pub struct Filter(pub NetworkFilter);

impl<S: Send + Sync> FromRequestParts<S> for Filter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<NetworkFilter>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}
