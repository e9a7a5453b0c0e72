//! Just enough HTTP/1.1 over unix sockets for Docker: the plugin side (dockerd POSTs JSON to us)
//! and the client side (we call the Engine API, including the streaming `/events`).
//!
//! Bodies are JSON with a Content-Length, or chunked (the Engine streams events that way).

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _,
};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connection closed")]
    Closed,
    #[error("malformed HTTP: {0}")]
    Malformed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A request line plus the body.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Largest body accepted (plugin requests are small).
const MAX_BODY: usize = 4 << 20;

/// Headers we care about.
struct Head {
    first_line: String,
    content_length: Option<usize>,
    chunked: bool,
}

async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Head, HttpError> {
    let mut first_line = String::new();
    if reader.read_line(&mut first_line).await? == 0 {
        return Err(HttpError::Closed);
    }
    let mut head = Head {
        first_line: first_line.trim_end().to_string(),
        content_length: None,
        chunked: false,
    };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Err(HttpError::Closed);
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(head);
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(
                value
                    .parse()
                    .map_err(|_| HttpError::Malformed(line.into()))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            head.chunked = true;
        }
    }
}

/// One chunk of a chunked body; `None` at the last (empty) chunk.
pub async fn read_chunk<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, HttpError> {
    let mut size_line = String::new();
    if reader.read_line(&mut size_line).await? == 0 {
        return Err(HttpError::Closed);
    }
    let size_text = size_line.trim().split(';').next().unwrap_or_default();
    let size = usize::from_str_radix(size_text, 16)
        .map_err(|_| HttpError::Malformed(size_line.clone()))?;
    if size > MAX_BODY {
        return Err(HttpError::Malformed(format!("chunk of {size} bytes")));
    }
    let mut chunk = vec![0u8; size];
    reader.read_exact(&mut chunk).await?;
    let mut crlf = String::new();
    reader.read_line(&mut crlf).await?;
    Ok((size > 0).then_some(chunk))
}

async fn read_body<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    head: &Head,
) -> Result<Vec<u8>, HttpError> {
    if head.chunked {
        let mut body = Vec::new();
        while let Some(chunk) = read_chunk(reader).await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(HttpError::Malformed("body too large".into()));
            }
        }
        return Ok(body);
    }
    let len = head.content_length.unwrap_or(0);
    if len > MAX_BODY {
        return Err(HttpError::Malformed(format!("body of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads one request (server side).
pub async fn read_request<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Request, HttpError> {
    let head = read_head(reader).await?;
    let mut parts = head.first_line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(HttpError::Malformed(head.first_line.clone()));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let body = read_body(reader, &head).await?;
    Ok(Request { method, path, body })
}

/// Writes a JSON response (server side), keeping the connection open for the next request.
pub async fn write_json_response<W: AsyncWrite + Unpin>(
    writer: &mut W,
    status: u16,
    body: &[u8],
) -> Result<(), HttpError> {
    let reason = if status == 200 { "OK" } else { "Error" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.docker.plugins.v1+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes()).await?;
    writer.write_all(body).await?;
    writer.flush().await?;
    Ok(())
}

/// Sends a request (client side) and reads the status and the response head.
pub async fn send_request<S>(
    stream: &mut S,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(), HttpError>
where
    S: AsyncWrite + Unpin,
{
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: netd\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    Ok(())
}

/// A response's status code and whether its body is chunked.
pub struct ResponseHead {
    pub status: u16,
    head: Head,
}

pub async fn read_response_head<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Result<ResponseHead, HttpError> {
    let head = read_head(reader).await?;
    let status = head
        .first_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed(head.first_line.clone()))?;
    Ok(ResponseHead { status, head })
}

impl ResponseHead {
    pub fn is_chunked(&self) -> bool {
        self.head.chunked
    }

    /// Reads the whole body; for a `Connection: close` response without a length, until EOF.
    pub async fn read_body<R: AsyncBufRead + Unpin>(
        &self,
        reader: &mut R,
    ) -> Result<Vec<u8>, HttpError> {
        if self.head.chunked || self.head.content_length.is_some() {
            return read_body(reader, &self.head).await;
        }
        let mut body = Vec::new();
        reader.take(MAX_BODY as u64).read_to_end(&mut body).await?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_a_request_with_a_body() {
        let raw =
            b"POST /NetworkDriver.Join HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        let mut reader = &raw[..];
        let r = read_request(&mut reader).await.unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/NetworkDriver.Join");
        assert_eq!(r.body, b"{\"a\":1}");
    }

    #[tokio::test]
    async fn parses_a_chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n";
        let mut reader = &raw[..];
        let head = read_response_head(&mut reader).await.unwrap();
        assert_eq!(head.status, 200);
        assert!(head.is_chunked());
        assert_eq!(head.read_body(&mut reader).await.unwrap(), b"abcdef");
    }
}
