//! The control socket: a 0600 unix socket through which `status` and `renew` talk to the running
//! daemon (sled locks its database, so they cannot open it). One JSON request per line, one
//! JSON answer per line: `{"cmd":"status"}`, `{"cmd":"renew","name":"www","force":true}`.
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::store::StatusRow;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket: bad message: {0}")]
    Protocol(String),
    #[error("{0}")]
    Refused(String),
}

/// A request on the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Renew {
        name: String,
        /// Confirmed (`renew --yes`): renew even if not due, spending a unit early.
        #[serde(default)]
        force: bool,
    },
}

/// An answer on the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status {
        certificates: Vec<StatusRow>,
    },
    Ok {
        message: String,
    },
    Error {
        message: String,
    },
    /// Nothing done: the request needs confirming (`message` says what it would cost).
    Confirm {
        message: String,
    },
}

/// A request handed to the daemon loop, with where to send the answer.
pub struct Incoming {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
    /// The client's connection (a duplicate descriptor), to see whether it is still there.
    pub client: Option<OwnedFd>,
}

impl Incoming {
    /// True when the client has closed its connection: it stopped waiting (timed out, was
    /// killed), so the request must not be acted on — a `renew` would otherwise run later and
    /// pay for a certificate nobody is waiting for. poll(2), not a read (that would consume a
    /// next request): POLLHUP means the client closed both directions, whereas a client that
    /// only shut down its writing still waits for the answer.
    pub fn client_gone(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        if self.reply.is_closed() {
            return true;
        }
        let Some(fd) = &self.client else {
            return false;
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&now)) {
            Ok(_) => fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR),
            Err(_) => false,
        }
    }
}

/// Binds the socket (replacing a stale one) with mode 0600 and serves until the task is
/// dropped. The socket lives in the 0700 state directory by default, so the short moment
/// before the chmod exposes nothing.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        // Only a socket nobody answers on is removed (a live one means a daemon is running).
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ControlError::Refused(format!(
                "another cas-certd answers on {}",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let l = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(l)
}

/// Accepts connections and forwards each request to `tx`.
pub async fn serve(listener: UnixListener, tx: mpsc::Sender<Incoming>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = handle(stream, tx).await;
        });
    }
}

async fn handle(stream: UnixStream, tx: mpsc::Sender<Incoming>) -> std::io::Result<()> {
    let client = stream.as_fd().try_clone_to_owned()?;
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let resp = match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
            Ok(request) => {
                let (reply, rx) = oneshot::channel();
                let client = client.try_clone().ok();
                let incoming = Incoming {
                    request,
                    reply,
                    client,
                };
                if tx.send(incoming).await.is_err() {
                    Response::Error {
                        message: "the daemon is stopping".into(),
                    }
                } else {
                    rx.await.unwrap_or(Response::Error {
                        message: "the daemon is stopping".into(),
                    })
                }
            }
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        w.write_all(&out).await?;
    }
    Ok(())
}

/// Sends one request to a running daemon. `Err(Io)` with NotFound/ConnectionRefused means no
/// daemon is listening.
pub async fn request(path: &Path, req: &Request) -> Result<Response, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).await.map_err(io)?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push(b'\n');
    w.write_all(&line).await.map_err(io)?;
    let mut lines = BufReader::new(r).lines();
    let answer = lines
        .next_line()
        .await
        .map_err(io)?
        .ok_or_else(|| ControlError::Protocol("no answer".into()))?;
    serde_json::from_str(&answer).map_err(|e| ControlError::Protocol(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_stable() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"renew","name":"www","force":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Renew {
                name: "www".into(),
                force: true
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
    }

    #[tokio::test]
    async fn socket_is_0600_and_round_trips_a_request() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("control.sock");
        let l = bind(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (tx, mut rx) = mpsc::channel::<Incoming>(4);
        tokio::spawn(serve(l, tx));
        tokio::spawn(async move {
            while let Some(inc) = rx.recv().await {
                let msg = format!("{:?}", inc.request);
                let _ = inc.reply.send(Response::Ok { message: msg });
            }
        });
        let resp = request(
            &p,
            &Request::Renew {
                name: "www".into(),
                force: false,
            },
        )
        .await
        .unwrap();
        match resp {
            Response::Ok { message } => assert!(message.contains("www"), "{message}"),
            other => panic!("{other:?}"),
        }
        // A live socket is not stolen by a second daemon.
        assert!(matches!(bind(&p), Err(ControlError::Refused(_))));
    }
}
