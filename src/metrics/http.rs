//! The HTTP side of the metrics endpoint: `GET /metrics`, one request per connection, with the
//! limits that keep clients from holding the daemon's descriptors (issue 18: 1 100 idle
//! connections exhausted them). A connection must send its request head within
//! [`HEADER_TIMEOUT`] and in at most [`MAX_REQUEST_BYTES`] (hyper answers 431 beyond it); at
//! most [`MAX_CONNECTIONS`] are open at once, and the rest wait in the kernel's accept queue,
//! where they cost the daemon nothing.
//!
//! `axum::serve` sets no header deadline and no connection cap, so the accept loop is ours and
//! each connection is hyper's HTTP/1 with those limits, serving an axum router.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{HeaderName, CONTENT_TYPE};
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncReadExt;
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
/// Time to write the answer to a client that does not read it (after the head's deadline).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After refusing a request, what is still read (and dropped) from the client before closing,
/// so a client that sent more than its request head (a 431) reads the answer rather than a reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    let app = Router::new()
        .route("/metrics", get(exposition))
        .with_state(metrics);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_request_bytes)
        .keep_alive(false);
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
        let (app, http) = (app.clone(), http.clone());
        tokio::spawn(async move {
            let _permit = permit;
            connection(stream, app, http, limits.header_timeout).await;
        });
    }
}

async fn exposition(State(metrics): State<Metrics>) -> ([(HeaderName, &'static str); 1], String) {
    ([(CONTENT_TYPE, EXPOSITION)], metrics.render())
}

async fn connection(mut stream: TcpStream, app: Router, http: http1::Builder, head: Duration) {
    let conn = http.serve_connection(TokioIo::new(&mut stream), TowerToHyperService::new(app));
    let e = match tokio::time::timeout(head + WRITE_TIMEOUT, conn).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(_) => {
            debug!(
                event = "metrics.write_timeout",
                "the client did not read the answer; closing"
            );
            return;
        }
    };
    if e.is_timeout() {
        debug!(
            event = "metrics.header_timeout",
            "no request head in time; closing"
        );
        return;
    }
    debug!(event = "metrics.bad_request", error = %e, "closing");
    if !e.is_parse() {
        return;
    }
    // hyper has answered (400, 431) and drops the rest of the request.
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
            // hyper answers an HTTP/1.0 request in HTTP/1.0.
            ("GET /metrics?x=1 HTTP/1.0\n\n", "HTTP/1.0 200 OK"),
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
