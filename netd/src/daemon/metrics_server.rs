//! `--metrics-address`: `GET /metrics` for Prometheus, routed by axum and served by hyper, one
//! request per connection (a scraper needs no more), a few connections at a time, each with
//! deadlines: a flood of scrapes, or a slow one, must not take the daemon's memory.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::metrics::{self, Metrics, MetricsError};

/// How long a client may take to send its request line and headers.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may last, the answer read included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a request head may take (a scrape's is a few hundred bytes; hyper's least).
const MAX_HEAD: usize = 8192;
/// Connections served at once; more wait to be accepted (a scrape is quick).
const MAX_CONNECTIONS: usize = 16;

/// Binds at start, so that a port in use stops the daemon with a clear error.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    // /metrics has no authentication: off loopback it is the network's to read, which an
    // operator may want (a Prometheus elsewhere) but should not get without a word.
    if !address.ip().is_loopback() {
        tracing::warn!(
            %address,
            "serving /metrics beyond this host, without authentication: whoever reaches it reads \
             this host's networks, map fill and traffic counters (a loopback --metrics-address \
             keeps it local)"
        );
    }
    Ok(listener)
}

/// Serves until the daemon stops; only a broken listener ends it (an error, for `supervise`).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    serve_routes(listener, router(move || metrics.encode())).await
}

async fn serve_routes(listener: TcpListener, routes: Router) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = slots.clone().acquire_owned().await?;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Per-connection failures (reset before accept, out of file descriptors) pass:
            // the next scrape may work. Paused a little so that a lasting one does not spin.
            Err(error) => {
                tracing::warn!(%error, "metrics: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(routes.clone());
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "metrics: connection failed"),
                Err(_) => tracing::debug!("metrics: connection closed at its deadline"),
            }
            drop(slot);
        });
    }
}

/// `GET /metrics` answers what `encode` gives; other paths are 404, other methods 405 (axum's,
/// with `Allow`). A query string is ignored.
fn router<E>(encode: E) -> Router
where
    E: Fn() -> Result<String, MetricsError> + Send + Sync + 'static,
{
    Router::new()
        .route("/metrics", get(scrape::<E>))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is served here\n") })
        .with_state(Arc::new(encode))
}

async fn scrape<E>(State(encode): State<Arc<E>>) -> Response
where
    E: Fn() -> Result<String, MetricsError> + Send + Sync + 'static,
{
    // The collector reads pinned maps (syscalls): not on the async runtime's threads.
    match tokio::task::spawn_blocking(move || encode()).await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: cannot encode");
            cannot_encode()
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: the encoder panicked");
            cannot_encode()
        }
    }
}

fn cannot_encode() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "cannot encode the metrics\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    /// Serves what `encode` gives as [`serve`] does, on a loopback port; returns its address.
    async fn serving(encode: fn() -> Result<String, MetricsError>) -> SocketAddr {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve_routes(listener, router(encode)));
        address
    }

    /// One request as a scraper sends it; the whole answer, read to the close.
    async fn request(address: SocketAddr, method: &str, path: &str) -> String {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
        .await
        .unwrap()
    }

    fn sample() -> Result<String, MetricsError> {
        Ok("# TYPE netd_up gauge\nnetd_up 1\n# EOF\n".to_string())
    }

    #[tokio::test]
    async fn only_get_of_metrics_is_served() {
        let address = serving(sample).await;
        let answer = request(address, "GET", "/metrics?name[]=x").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        let head = answer.to_ascii_lowercase();
        assert!(
            head.contains(&format!("\r\ncontent-type: {}\r\n", metrics::CONTENT_TYPE)),
            "{answer}"
        );
        // One request per connection: the answer says so, and the server closed (read_to_end).
        assert!(head.contains("\r\nconnection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n# TYPE netd_up gauge\nnetd_up 1\n# EOF\n"));

        for path in ["/", "/metrics/x"] {
            let answer = request(address, "GET", path).await;
            assert!(answer.starts_with("HTTP/1.1 404 "), "{path}: {answer}");
        }
        let answer = request(address, "POST", "/metrics").await;
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("\r\nallow: get,head\r\n"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn an_encoding_failure_is_a_server_error() {
        let address = serving(|| Err(MetricsError::Encode(std::fmt::Error))).await;
        let answer = request(address, "GET", "/metrics").await;
        assert!(answer.starts_with("HTTP/1.1 500 "), "{answer}");
        assert!(answer.ends_with("cannot encode the metrics\n"), "{answer}");
    }

    #[tokio::test]
    async fn a_port_in_use_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        let error = bind(address).await.unwrap_err();
        let message = format!("{error:#}");
        // What `netd daemon` prints after `netd: ` (the README quotes it).
        assert!(
            message.starts_with(&format!(
                "cannot listen on {address}: Address already in use"
            )),
            "{message}"
        );
    }
}
