//! `--metrics-address`: `GET /metrics` for Prometheus, over a deliberately tiny HTTP/1.1
//! responder (one request per connection, then close) rather than an HTTP stack: a scraper
//! needs nothing more, and the daemon carries no web framework for one path.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use crate::metrics::{self, Metrics};

/// How long a client may take to send its request line and headers.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to read the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request head longer than this is refused (a scrape's is a few hundred bytes).
const MAX_HEAD: usize = 8192;
/// Connections served at once; more wait to be accepted (a scrape is quick, and a flood of
/// them must not take the daemon's memory).
const MAX_CONNECTIONS: usize = 16;

/// Binds at start, so that a port in use stops the daemon with a clear error.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

/// Serves until the daemon stops; only a broken listener ends it (an error, for `supervise`).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = slots.clone().acquire_owned().await?;
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    handle(stream, metrics).await;
                    drop(slot);
                });
            }
            // Per-connection failures (reset before accept, out of file descriptors) pass:
            // the next scrape may work. Paused a little so that a lasting one does not spin.
            Err(error) => {
                tracing::warn!(%error, "metrics: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Routes on the request line alone (`GET /metrics HTTP/1.1`); a query string is ignored.
fn route(head: &str) -> Route {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    if method != "GET" {
        return Route::MethodNotAllowed;
    }
    match target.split('?').next() {
        Some("/metrics") => Route::Metrics,
        _ => Route::NotFound,
    }
}

async fn handle(mut stream: TcpStream, metrics: Arc<Metrics>) {
    let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => respond(route(&head), metrics).await,
        Ok(Err(error)) => {
            tracing::debug!(%error, "metrics: bad request");
            plain("400 Bad Request", "bad request\n")
        }
        Err(_) => plain("408 Request Timeout", "no request received in time\n"),
    };
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!("metrics: the client went away before the answer");
    }
}

/// Reads up to the blank line that ends the request's headers (a GET has no body).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too long"));
        }
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8(head).map_err(std::io::Error::other)
}

async fn respond(route: Route, metrics: Arc<Metrics>) -> Vec<u8> {
    match route {
        Route::Metrics => {
            // The collector reads pinned maps (syscalls): not on the async runtime's threads.
            match tokio::task::spawn_blocking(move || metrics.encode()).await {
                Ok(Ok(body)) => response("200 OK", metrics::CONTENT_TYPE, &[], &body),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "metrics: cannot encode");
                    plain("500 Internal Server Error", "cannot encode the metrics\n")
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics: the encoder panicked");
                    plain("500 Internal Server Error", "cannot encode the metrics\n")
                }
            }
        }
        Route::NotFound => plain("404 Not Found", "only /metrics is served here\n"),
        Route::MethodNotAllowed => response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            &[("Allow", "GET")],
            "only GET is served here\n",
        ),
        Route::BadRequest => plain("400 Bad Request", "bad request\n"),
    }
}

fn plain(status: &str, body: &str) -> Vec<u8> {
    response(status, "text/plain; charset=utf-8", &[], body)
}

fn response(status: &str, content_type: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_of_metrics_is_served() {
        let get = |target: &str| route(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(get("/metrics"), Route::Metrics);
        assert_eq!(get("/metrics?name[]=x"), Route::Metrics);
        assert_eq!(get("/"), Route::NotFound);
        assert_eq!(get("/metrics/x"), Route::NotFound);
        assert_eq!(
            route("POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            route("HEAD /metrics HTTP/1.0\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route("GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route("GET /metrics SPDY/3\r\n\r\n"), Route::BadRequest);
    }

    #[test]
    fn answers_carry_their_length_and_close() {
        let text = String::from_utf8(response("200 OK", "text/plain", &[], "abc")).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        );
    }

    #[tokio::test]
    async fn a_port_in_use_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        let error = bind(address).await.unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.starts_with(&format!("cannot listen on {address}: ")),
            "{message}"
        );
    }
}
