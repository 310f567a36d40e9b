//! sd_notify for `Type=notify`: READY, RELOADING (with MONOTONIC_USEC), STOPPING, STATUS and
//! the watchdog. A no-op when `NOTIFY_SOCKET` is not set.
//!
//! The protocol is one unix datagram per message to `$NOTIFY_SOCKET` (a leading `@` means the
//! abstract namespace). We send it ourselves rather than through `sd_notify::notify` so a test
//! can point a [`Notifier`] at its own socket without touching the process-global environment.
//! Failures are logged, never fatal: a daemon must not stop because systemd is not listening.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("sd_notify: cannot send to {socket}: {source}")]
    Send { socket: String, source: io::Error },
    #[error("sd_notify: cannot read CLOCK_MONOTONIC: {0}")]
    Clock(io::Error),
}

#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// `$NOTIFY_SOCKET` as given: a path, or `@name` for the abstract namespace.
    socket: Option<String>,
    /// Half the watchdog timeout, when systemd asked for pings (and they are meant for us).
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        let watchdog = watchdog_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Notifier { socket, watchdog }
    }

    /// A notifier for an explicit socket (tests, or callers that parsed the environment).
    pub fn with_socket(socket: impl Into<String>, watchdog_usec: Option<u64>) -> Self {
        Notifier {
            socket: Some(socket.into()),
            watchdog: watchdog_usec
                .filter(|&u| u > 0)
                .map(|u| Duration::from_micros(u / 2)),
        }
    }

    /// Whether messages go anywhere.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    pub fn ready(&self) {
        self.send_logged("READY=1");
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC=` that `Type=notify-reload` requires; plain
    /// `Type=notify` accepts it too.
    pub fn reloading(&self) {
        if !self.enabled() {
            return;
        }
        match monotonic_usec() {
            Ok(usec) => self.send_logged(&format!("RELOADING=1\nMONOTONIC_USEC={usec}")),
            Err(e) => {
                tracing::warn!(event = "notify.failed", error = %e, "sd_notify RELOADING");
                self.send_logged("RELOADING=1");
            }
        }
    }

    pub fn stopping(&self) {
        self.send_logged("STOPPING=1");
    }

    /// One line shown by `systemctl status`; newlines are flattened so the line stays one line.
    pub fn status(&self, line: &str) {
        let line = line.replace(['\n', '\r'], " ");
        self.send_logged(&format!("STATUS={line}"));
    }

    /// Half of `WATCHDOG_USEC`, when systemd asks for pings.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1");
    }

    /// Sends one message; `Ok` without a socket.
    pub fn send(&self, msg: &str) -> Result<(), NotifyError> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        send_to(socket, msg.as_bytes()).map_err(|source| NotifyError::Send {
            socket: socket.clone(),
            source,
        })
    }

    /// Pings `WATCHDOG=1` every [`Self::watchdog_interval`] from a task on the current tokio
    /// runtime, so a wedged runtime stops the pings and systemd restarts us. `None` when
    /// systemd did not ask for a watchdog. Abort the handle to stop.
    pub fn spawn_watchdog(&self) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.watchdog_interval()?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.watchdog();
            }
        }))
    }

    fn send_logged(&self, msg: &str) {
        if let Err(e) = self.send(msg) {
            tracing::warn!(event = "notify.failed", error = %e, "sd_notify failed");
        }
    }
}

/// The one-line `STATUS=` summary, e.g. "12 certificates, 0 due, next check 10:40".
pub fn status_summary(
    certificates: usize,
    due: usize,
    next_check: Option<chrono::DateTime<chrono::Local>>,
) -> String {
    let noun = if certificates == 1 {
        "certificate"
    } else {
        "certificates"
    };
    match next_check {
        Some(t) => format!(
            "{certificates} {noun}, {due} due, next check {}",
            t.format("%H:%M")
        ),
        None => format!("{certificates} {noun}, {due} due"),
    }
}

fn send_to(socket: &str, msg: &[u8]) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(msg, &addr)?;
    } else {
        sock.send_to(msg, socket)?;
    }
    Ok(())
}

/// Pings at half the timeout; pings only when `WATCHDOG_PID` (if present) is our pid, as
/// sd_watchdog_enabled does, so a child that inherited the variables stays quiet.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

fn monotonic_usec() -> Result<i128, NotifyError> {
    match sd_notify::NotifyState::monotonic_usec_now().map_err(NotifyError::Clock)? {
        sd_notify::NotifyState::MonotonicUsec(u) => Ok(u),
        // monotonic_usec_now only builds MonotonicUsec; anything else would be a crate change.
        _ => Err(NotifyError::Clock(io::Error::other(
            "unexpected state from sd_notify",
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_each_message_as_one_datagram_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::with_socket(path.to_str().unwrap(), None);
        n.ready();
        assert_eq!(recv(&server), "READY=1");
        n.status("3 certificates,\n0 due");
        assert_eq!(recv(&server), "STATUS=3 certificates, 0 due");
        n.reloading();
        let msg = recv(&server);
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: i128 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC line")
            .parse()
            .unwrap();
        assert!(usec > 0);
        n.watchdog();
        assert_eq!(recv(&server), "WATCHDOG=1");
        n.stopping();
        assert_eq!(recv(&server), "STOPPING=1");
    }

    #[test]
    fn abstract_socket_names_start_with_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("cas-certd-test-{}", uuid::Uuid::new_v4());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Notifier::with_socket(format!("@{name}"), None).ready();
        assert_eq!(recv(&server), "READY=1");
    }

    #[test]
    fn missing_socket_is_an_error_but_no_socket_is_a_no_op() {
        let n = Notifier::with_socket("/nonexistent/cas-certd/notify.sock", None);
        assert!(matches!(n.send("READY=1"), Err(NotifyError::Send { .. })));
        let off = Notifier::default();
        assert!(!off.enabled());
        assert!(off.send("READY=1").is_ok());
        assert_eq!(off.watchdog_interval(), None);
    }

    #[test]
    fn status_summary_reads_like_the_issue() {
        use chrono::TimeZone;
        let t = chrono::Local
            .with_ymd_and_hms(2026, 1, 2, 10, 40, 0)
            .unwrap();
        assert_eq!(
            status_summary(12, 0, Some(t)),
            "12 certificates, 0 due, next check 10:40"
        );
        assert_eq!(status_summary(1, 1, None), "1 certificate, 1 due");
    }

    #[tokio::test]
    async fn spawned_watchdog_pings_at_half_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // 200 ms timeout → a ping every 100 ms.
        let n = Notifier::with_socket(path.to_str().unwrap(), Some(200_000));
        let start = std::time::Instant::now();
        let handle = n.spawn_watchdog().expect("watchdog requested");
        let got =
            tokio::task::spawn_blocking(move || (0..3).map(|_| recv(&server)).collect::<Vec<_>>())
                .await
                .unwrap();
        handle.abort();
        assert_eq!(got, vec!["WATCHDOG=1"; 3]);
        // First tick is immediate, then two 100 ms periods.
        assert!(
            start.elapsed() >= Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
        assert!(Notifier::with_socket("/x", None).spawn_watchdog().is_none());
    }

    #[test]
    fn watchdog_interval_is_half_and_only_for_our_pid() {
        assert_eq!(
            watchdog_from(Some("20000000"), None, 42),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            watchdog_from(Some("20000000"), Some("42"), 42),
            Some(Duration::from_secs(10))
        );
        assert_eq!(watchdog_from(Some("20000000"), Some("43"), 42), None);
        assert_eq!(watchdog_from(Some("0"), None, 42), None);
        assert_eq!(watchdog_from(Some("junk"), None, 42), None);
        assert_eq!(watchdog_from(None, Some("42"), 42), None);
        assert_eq!(
            Notifier::with_socket("/x", Some(4_000_000)).watchdog_interval(),
            Some(Duration::from_secs(2))
        );
    }
}
