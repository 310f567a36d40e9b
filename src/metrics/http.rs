//! The HTTP side of the metrics endpoint: one `GET /metrics` per connection, with the limits
//! that keep clients from holding the daemon's descriptors (issue 18: 1 100 idle connections
//! exhausted them). A connection must send its request head within [`HEADER_TIMEOUT`] and
//! in at most [`MAX_REQUEST_BYTES`]; at most [`MAX_CONNECTIONS`] are open at once, and the rest
//! wait in the kernel's accept queue, where they cost the daemon nothing.
//!
//! Hand-written rather than `axum::serve` (which sets no header deadline and no connection cap):
//! the endpoint answers one path, one request per connection, and owning the few lines of HTTP
//! keeps every limit in this file.
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

use super::{Metrics, MetricsError};
use crate::listen::AcceptErrors;

/// Connections served at once; the descriptor reserve is computed from it ([`crate::listen`]).
pub const MAX_CONNECTIONS: usize = 64;
/// Time from accept to the end of the request head. A scraper sends it at once.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The request head's size limit; larger ones get 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time to write the answer to a client that does not read it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After answering, what is still read (and dropped) from the client before closing, so a
/// client that sent more than its request head (a 431) reads the answer rather than a reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The limits of one endpoint; [`Limits::default`] is what the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_timeout: HEADER_TIMEOUT,
            max_request_bytes: MAX_REQUEST_BYTES,
        }
    }
}

/// Serves `/metrics` until `shutdown` resolves.
pub async fn serve(
    listen: std::net::SocketAddr,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| MetricsError::Bind {
            addr: listen,
            source,
        })?;
    serve_listener(listener, metrics, Limits::default(), shutdown).await;
    Ok(())
}

/// [`serve`] on a listener the caller bound (tests bind port 0 and read the address).
pub async fn serve_listener(
    listener: TcpListener,
    metrics: Metrics,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut errors = AcceptErrors::new("metrics");
    tokio::pin!(shutdown);
    loop {
        // A permit before accepting: over the cap, connections stay in the accept queue.
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                // Never closed; if it were, there is nothing left to serve with.
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    errors.ok();
                    s
                }
                Err(e) => {
                    errors.failed(&e).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(stream, &metrics, limits).await;
        });
    }
}

/// Why a request head was not read.
enum HeadError {
    TooLarge,
    Closed,
    Io(std::io::Error),
}

async fn connection(mut stream: TcpStream, metrics: &Metrics, limits: Limits) {
    let head = tokio::time::timeout(
        limits.header_timeout,
        read_head(&mut stream, limits.max_request_bytes),
    )
    .await;
    let answer = match head {
        Err(_) => {
            debug!(
                event = "metrics.header_timeout",
                "no request head in time; closing"
            );
            return;
        }
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::Io(e))) => {
            debug!(event = "metrics.read_failed", error = %e, "closing");
            return;
        }
        Ok(Err(HeadError::TooLarge)) => response(
            "431 Request Header Fields Too Large",
            "text/plain",
            format!("request head over {} bytes\n", limits.max_request_bytes),
        ),
        Ok(Ok(head)) => route(&head, metrics),
    };
    let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut buf = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Reads up to the blank line that ends the request head (CRLF or bare LF line ends).
async fn read_head(stream: &mut TcpStream, max: usize) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        let tail = &head[from..];
        let end = find(tail, b"\r\n\r\n")
            .map(|i| from + i + 4)
            .or_else(|| find(tail, b"\n\n").map(|i| from + i + 2));
        if let Some(end) = end {
            if end > max {
                return Err(HeadError::TooLarge);
            }
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > max {
            return Err(HeadError::TooLarge);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The answer to one request head.
fn route(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let valid = version.is_some_and(|v| v.starts_with("HTTP/1.")) && parts.next().is_none();
    let (Some(method), Some(target), true) = (method, target, valid) else {
        return response("400 Bad Request", "text/plain", "bad request\n".into());
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response("405 Method Not Allowed", "text/plain", "only GET\n".into());
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return response("404 Not Found", "text/plain", "not found\n".into());
    }
    let mut r = response("200 OK", CONTENT_TYPE, metrics.render());
    if head_only {
        if let Some(i) = find(&r, b"\r\n\r\n") {
            r.truncate(i + 4);
        }
    }
    r
}

fn response(status: &str, content_type: &str, body: String) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" },
    )
    .into_bytes();
    r.extend_from_slice(body.as_bytes());
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn start(limits: Limits) -> (std::net::SocketAddr, Metrics) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let m = Metrics::new();
        tokio::spawn(serve_listener(l, m.clone(), limits, std::future::pending()));
        (addr, m)
    }

    async fn answer(s: &mut TcpStream) -> String {
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
        out
    }

    #[tokio::test]
    async fn routes_methods_and_bad_requests() {
        let (addr, m) = start(Limits::default()).await;
        m.order_created("www");
        for (req, want) in [
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                "HTTP/1.1 200 OK",
            ),
            ("GET /metrics?x=1 HTTP/1.0\n\n", "HTTP/1.1 200 OK"),
            ("GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404"),
            ("POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405"),
            ("GARBAGE\r\n\r\n", "HTTP/1.1 400"),
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let a = answer(&mut s).await;
            assert!(a.starts_with(want), "{req:?} → {a:?}");
        }
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"HEAD /metrics HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let a = answer(&mut s).await;
        assert!(
            a.starts_with("HTTP/1.1 200") && a.ends_with("\r\n\r\n"),
            "{a:?}"
        );
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_header_timeout() {
        let (addr, _) = start(Limits {
            header_timeout: Duration::from_millis(200),
            ..Limits::default()
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let t0 = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the idle connection was kept open")
            .unwrap();
        assert_eq!(n, 0);
        assert!(t0.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn an_oversized_head_gets_431() {
        let (addr, _) = start(Limits {
            max_request_bytes: 1024,
            ..Limits::default()
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        s.write_all(&[b'a'; 2048]).await.unwrap();
        let a = answer(&mut s).await;
        assert!(a.starts_with("HTTP/1.1 431"), "{a:?}");
    }

    #[tokio::test]
    async fn connections_over_the_cap_wait_for_a_free_slot() {
        let (addr, _) = start(Limits {
            max_connections: 2,
            header_timeout: Duration::from_secs(30),
            ..Limits::default()
        })
        .await;
        let idle1 = TcpStream::connect(addr).await.unwrap();
        let _idle2 = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(early.is_err(), "served beyond the cap: {early:?}");
        drop(idle1);
        let a = answer(&mut s).await;
        assert!(a.starts_with("HTTP/1.1 200"), "{a:?}");
    }
}
