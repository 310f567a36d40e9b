//! The control socket: a 0600 unix socket through which `status` and `renew` talk to the running
//! daemon (sled locks its database, so they cannot open it). One JSON request per line, one
//! JSON answer per line: `{"cmd":"status"}`, `{"cmd":"renew","name":"www","force":true}`.
//!
//! Only root and the daemon's own user are served, and the CLI believes only an answer from
//! root, its own user or the owner of the state directory (`SO_PEERCRED` on both sides): a
//! program squatting the path while the daemon is stopped is not taken for the daemon.
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{debug, warn};

use crate::config::Config;
use crate::listen::AcceptErrors;
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
    #[error(
        "control socket {path} is {kind}, not a socket; cas-certd does not remove it: \
         move it away or set control_socket to another path"
    )]
    NotASocket { path: PathBuf, kind: &'static str },
    #[error(
        "control socket {path} is answered by uid {uid}, which is neither root nor the \
         daemon's user (trusted: {trusted:?}); not believing it (is another program using \
         that path?)"
    )]
    Untrusted {
        path: PathBuf,
        uid: u32,
        trusted: Vec<u32>,
    },
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

/// Request lines longer than this are refused (a status or renew request is under 200 bytes).
pub const MAX_LINE: usize = 4096;
/// Connections served at once; beyond it they wait in the accept queue (see [`crate::listen`]).
pub const MAX_CONNECTIONS: usize = 8;
/// A connection that sends no request line for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The socket file this daemon bound, by identity: at stop it is removed only if the path
/// still holds this very socket (not a file someone put there since, nor another daemon's).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket if the path still holds it. The type is checked too: a file made
    /// after ours was unlinked may get its inode number.
    pub fn remove(&self) {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if md.file_type().is_socket() && md.dev() == self.dev && md.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds the socket with mode 0600, replacing a stale socket (one nobody answers on). Anything
/// else at the path (a regular file, a directory, a symlink) is refused and left alone. The
/// socket lives in the 0700 state directory by default, so the short moment before the chmod
/// exposes nothing.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), ControlError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            // A live socket means a daemon is running.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::Refused(format!(
                    "another cas-certd answers on {}",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(md) => {
            return Err(ControlError::NotASocket {
                path: path.to_path_buf(),
                kind: file_kind(&md.file_type()),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    // bind(2) never replaces a file: if one appeared since the check, this fails.
    let l = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    let md = std::fs::symlink_metadata(path).map_err(io)?;
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: md.dev(),
        ino: md.ino(),
    };
    Ok((l, file))
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else {
        "a device or other special file"
    }
}

/// Whether the daemon serves a peer: root, and the user the daemon runs as.
fn serves(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == own_uid
}

/// Accepts connections and forwards each request to `tx`: at most [`MAX_CONNECTIONS`] at once,
/// from root and the daemon's own user only (`SO_PEERCRED`).
pub async fn serve(listener: UnixListener, tx: mpsc::Sender<Incoming>) {
    let own_uid = rustix::process::geteuid().as_raw();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut errors = AcceptErrors::new("control");
    loop {
        // A permit before accepting: over the cap, connections stay in the accept queue.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => {
                errors.ok();
                s
            }
            Err(e) => {
                errors.failed(&e).await;
                continue;
            }
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match stream.peer_cred() {
                Ok(c) if serves(c.uid(), own_uid) => {
                    let _ = handle(stream, tx).await;
                }
                Ok(c) => {
                    warn!(event = "control.refused", uid = c.uid(), pid = ?c.pid(),
                        "control socket: refused a client that is neither root nor the daemon's user");
                    let _ = answer_and_close(
                        stream,
                        &Response::Error {
                            message: format!(
                                "refused: uid {} is neither root nor the daemon's user (uid {own_uid})",
                                c.uid()
                            ),
                        },
                    )
                    .await;
                }
                Err(e) => debug!(error = %e, "control socket: no peer credentials; closing"),
            }
        });
    }
}

async fn answer_and_close(stream: UnixStream, resp: &Response) -> std::io::Result<()> {
    let (_, mut w) = stream.into_split();
    write_answer(&mut w, resp).await?;
    w.shutdown().await
}

async fn write_answer(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    resp: &Response,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(resp).unwrap_or_default();
    out.push(b'\n');
    w.write_all(&out).await
}

/// One line read with a length limit.
#[derive(Debug, PartialEq)]
enum Line {
    Text(Vec<u8>),
    TooLong,
    End,
}

/// Reads one line (without its newline) of at most `max` bytes. Longer lines are not
/// buffered: the read stops at `max + 1` bytes.
async fn read_line(r: &mut (impl AsyncBufRead + Unpin), max: usize) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    r.take(limit).read_until(b'\n', &mut buf).await?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Text(buf));
    }
    if buf.len() > max {
        return Ok(Line::TooLong);
    }
    // The client closed mid-line: what it sent is still one request.
    Ok(if buf.is_empty() {
        Line::End
    } else {
        Line::Text(buf)
    })
}

async fn handle(stream: UnixStream, tx: mpsc::Sender<Incoming>) -> std::io::Result<()> {
    let client = stream.as_fd().try_clone_to_owned()?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        // An idle client is dropped: it holds one of the few connection slots.
        let Ok(line) = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut r, MAX_LINE)).await else {
            return Ok(());
        };
        let resp = match line? {
            Line::End => return Ok(()),
            Line::TooLong => {
                let resp = Response::Error {
                    message: format!("request longer than {MAX_LINE} bytes; refused"),
                };
                write_answer(&mut w, &resp).await?;
                return w.shutdown().await;
            }
            Line::Text(line) => match serde_json::from_slice::<Request>(&line) {
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
            },
        };
        write_answer(&mut w, &resp).await?;
    }
}

/// The users whose answer on the control socket the CLI believes: those the daemon trusts
/// (`fs_trust::daemon_uids`) and the owner of `state_dir` (the daemon's user: it owns the store).
pub fn trusted_uids(state_dir: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let mut uids = cas_api::fs_trust::daemon_uids();
    if let Ok(md) = std::fs::metadata(state_dir) {
        uids.push(md.uid());
    }
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// Sends one request to the daemon of `cfg`. `Err(Io)` with NotFound/ConnectionRefused means
/// no daemon is listening; `Err(Untrusted)` that something else answers on the path.
pub async fn request(cfg: &Config, req: &Request) -> Result<Response, ControlError> {
    request_at(&cfg.control_socket, &trusted_uids(&cfg.state_dir), req).await
}

/// Sends one request on `path`, believing only a peer whose uid is in `trusted`.
pub async fn request_at(
    path: &Path,
    trusted: &[u32],
    req: &Request,
) -> Result<Response, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).await.map_err(io)?;
    // Checked before anything is sent: an untrusted listener learns nothing of the request.
    let uid = stream.peer_cred().map_err(io)?.uid();
    if !trusted.contains(&uid) {
        return Err(ControlError::Untrusted {
            path: path.to_path_buf(),
            uid,
            trusted: trusted.to_vec(),
        });
    }
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
        let (l, file) = bind(&p).unwrap();
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
        let resp = request_at(
            &p,
            &trusted_uids(d.path()),
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
        // A client that trusts nobody it finds there refuses the answer before asking.
        let err = request_at(&p, &[u32::MAX], &Request::Status)
            .await
            .unwrap_err();
        assert!(matches!(err, ControlError::Untrusted { .. }), "{err:?}");
        assert!(err.to_string().contains("not believing it"), "{err}");
        file.remove();
        assert!(!p.exists());
    }

    #[test]
    fn only_root_and_the_own_user_are_served() {
        assert!(serves(0, 1000));
        assert!(serves(1000, 1000));
        assert!(!serves(65534, 1000));
        assert!(serves(0, 0));
        assert!(!serves(1000, 0));
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut r: &[u8] = b"short\nexactly-8\n123456789\ntail";
        assert_eq!(
            read_line(&mut r, 9).await.unwrap(),
            Line::Text(b"short".to_vec())
        );
        assert_eq!(
            read_line(&mut r, 9).await.unwrap(),
            Line::Text(b"exactly-8".to_vec())
        );
        assert_eq!(read_line(&mut r, 8).await.unwrap(), Line::TooLong);
        let mut r: &[u8] = b"tail";
        assert_eq!(
            read_line(&mut r, 9).await.unwrap(),
            Line::Text(b"tail".to_vec())
        );
        assert_eq!(read_line(&mut r, 9).await.unwrap(), Line::End);
        // An endless line is cut at max + 1 bytes, not read to its end.
        let endless = vec![b'x'; 1 << 20];
        let mut r: &[u8] = &endless;
        assert_eq!(read_line(&mut r, MAX_LINE).await.unwrap(), Line::TooLong);
        assert_eq!(r.len(), (1 << 20) - MAX_LINE - 1);
    }

    #[test]
    fn a_non_socket_at_the_path_is_refused_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("control.sock");
        std::fs::write(&p, "keep me").unwrap();
        let err = bind(&p).unwrap_err();
        assert!(matches!(
            err,
            ControlError::NotASocket {
                kind: "a regular file",
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("not a socket"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "keep me");
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &p).unwrap();
        assert!(matches!(
            bind(&p),
            Err(ControlError::NotASocket {
                kind: "a symbolic link",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_stop_removes_only_our_own() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("control.sock");
        // Stale: bound, then its listener gone.
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        let (l, file) = bind(&p).unwrap();
        drop(l);
        // Someone replaced the socket with a file after we bound it: stop leaves it.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "not ours").unwrap();
        file.remove();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "not ours");
    }
}
