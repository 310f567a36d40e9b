//! Logging set-up, the one home for every logging rule:
//! - **where lines go**: under systemd, when `JOURNAL_STREAM` names our stderr, straight to
//!   journald with each field as a journal field (`journalctl EVENT=cert.renew_failed`); if the
//!   journal's socket cannot be reached, and everywhere else, to stderr as text or JSON
//!   (`log_format`);
//! - **colour**: only when stderr is a terminal and `NO_COLOR` is unset or empty;
//! - **what `RUST_LOG` may widen**: the daemon's own targets only. Dependencies stay at `info`
//!   (a few at `warn`) whatever it says, because their debug and trace lines print payloads:
//!   sled prints every record, private keys included, as a list of bytes.
//!
//! Events carry a stable `event` field (`cert.ordered`, …) for machines.
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::LogFormat;

/// The daemon's own targets (library and binary crates share the name): `RUST_LOG` may take
/// these down to `trace`.
const OWN_TARGET: &str = "cas_certd";
/// What everything logs at when `RUST_LOG` is unset (or does not parse).
const DEFAULT_LEVEL: LevelFilter = LevelFilter::INFO;
/// The most any other target may log: its `debug`/`trace` lines carry request and record
/// payloads.
const DEPENDENCY_CAP: LevelFilter = LevelFilter::INFO;
/// Dependencies held at `warn`: their `info` lines are routine chatter (one per scheduler tick).
const NOISY_DEPENDENCIES: &[&str] = &["tokio_cron_scheduler"];
/// `SYSLOG_IDENTIFIER=` of journal entries (what `journalctl -t` selects on).
const SYSLOG_IDENTIFIER: &str = "cas-certd";

/// Where log lines go and how they look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// journald's native protocol: every field a journal field.
    Journald,
    /// Lines on stderr.
    Stderr { format: LogFormat, ansi: bool },
}

/// What the process knows about its stderr and environment when it picks a [`Sink`].
#[derive(Debug, Clone, Default)]
pub struct Surroundings {
    /// `JOURNAL_STREAM`: `<device>:<inode>` of the stream systemd connected to the journal.
    pub journal_stream: Option<String>,
    /// Device and inode of our stderr, when it could be read.
    pub stderr_id: Option<(u64, u64)>,
    pub stderr_is_terminal: bool,
    /// `NO_COLOR` set to a non-empty value (<https://no-color.org>).
    pub no_color: bool,
}

impl Surroundings {
    /// This process's.
    pub fn current() -> Surroundings {
        Surroundings {
            journal_stream: std::env::var("JOURNAL_STREAM").ok(),
            stderr_id: stderr_id(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }
}

/// The journal when systemd connected our own stderr to it (not merely an ancestor's: a child
/// inherits `JOURNAL_STREAM` even when its stderr was redirected to a file); otherwise stderr,
/// coloured only for a terminal.
pub fn choose_sink(format: LogFormat, s: &Surroundings) -> Sink {
    let ours = match (
        s.journal_stream.as_deref().and_then(parse_journal_stream),
        s.stderr_id,
    ) {
        (Some(journal), Some(stderr)) => journal == stderr,
        _ => false,
    };
    if ours {
        return Sink::Journald;
    }
    Sink::Stderr {
        format,
        ansi: s.stderr_is_terminal && !s.no_color,
    }
}

/// `JOURNAL_STREAM` is `<st_dev>:<st_ino>` in decimal (systemd.exec(5)).
fn parse_journal_stream(v: &str) -> Option<(u64, u64)> {
    let (dev, ino) = v.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Device and inode of fd 2, through a duplicate so that nothing closes stderr itself.
fn stderr_id() -> Option<(u64, u64)> {
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The cap on every target: the daemon's own as `RUST_LOG` says, dependencies at most
/// [`DEPENDENCY_CAP`] (or `warn`). Combined with `RUST_LOG` by "and", so the variable can
/// narrow a dependency but never widen it.
pub fn dependency_cap() -> Targets {
    NOISY_DEPENDENCIES.iter().fold(
        Targets::new()
            .with_default(DEPENDENCY_CAP)
            .with_target(OWN_TARGET, LevelFilter::TRACE),
        |t, dep| t.with_target(*dep, LevelFilter::WARN),
    )
}

/// `RUST_LOG` when set and valid, otherwise [`DEFAULT_LEVEL`].
fn env_filter() -> EnvFilter {
    EnvFilter::builder()
        .with_default_directive(DEFAULT_LEVEL.into())
        .from_env()
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LEVEL.to_string()))
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn stderr_layer(format: LogFormat, ansi: bool) -> BoxedLayer {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    }
}

/// Field names go to the journal upper-cased and without tracing-journald's default `F_`
/// prefix, so `event` is `EVENT=` and `cert` is `CERT=`; none of our field names is one of
/// journald's own (`MESSAGE`, `PRIORITY`, `CODE_*`, `SYSLOG_*`, `ERRNO`, …).
fn journald_layer() -> std::io::Result<BoxedLayer> {
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier(SYSLOG_IDENTIFIER.to_string())
        .boxed())
}

/// Installs the global subscriber. Calling it twice is harmless (the second is ignored).
pub fn init(format: LogFormat) {
    let surroundings = Surroundings::current();
    let mut fallback = None;
    let layer = match choose_sink(format, &surroundings) {
        Sink::Journald => journald_layer().unwrap_or_else(|e| {
            fallback = Some(e);
            // Still the journal's stream: not a terminal, so no colour.
            stderr_layer(format, false)
        }),
        Sink::Stderr { format, ansi } => stderr_layer(format, ansi),
    };
    let filter = env_filter().and(dependency_cap());
    let installed = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .is_ok();
    if let (true, Some(e)) = (installed, fallback) {
        tracing::warn!(error = %e, "JOURNAL_STREAM is set but journald's socket cannot be used; logging to stderr");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn around(
        journal: Option<&str>,
        stderr: Option<(u64, u64)>,
        tty: bool,
        no_color: bool,
    ) -> Surroundings {
        Surroundings {
            journal_stream: journal.map(str::to_string),
            stderr_id: stderr,
            stderr_is_terminal: tty,
            no_color,
        }
    }

    #[test]
    fn journald_only_when_journal_stream_names_our_stderr() {
        let s = around(Some("64768:123456"), Some((64768, 123456)), false, false);
        assert_eq!(choose_sink(LogFormat::Text, &s), Sink::Journald);
        assert_eq!(choose_sink(LogFormat::Json, &s), Sink::Journald);
        // Inherited from the unit but our stderr went elsewhere (a file, a pipe).
        let s = around(Some("64768:123456"), Some((64768, 999)), false, false);
        assert_eq!(
            choose_sink(LogFormat::Json, &s),
            Sink::Stderr {
                format: LogFormat::Json,
                ansi: false
            }
        );
        for bad in ["", "64768", "x:1", "1:y", "1:2:3"] {
            let s = around(Some(bad), Some((1, 2)), false, false);
            assert!(
                matches!(choose_sink(LogFormat::Text, &s), Sink::Stderr { .. }),
                "{bad:?}"
            );
        }
        let s = around(Some(" 1:2\n"), Some((1, 2)), false, false);
        assert_eq!(choose_sink(LogFormat::Text, &s), Sink::Journald);
        let s = around(Some("1:2"), None, false, false);
        assert!(matches!(
            choose_sink(LogFormat::Text, &s),
            Sink::Stderr { .. }
        ));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let text = |tty, no_color| {
            choose_sink(LogFormat::Text, &around(None, Some((1, 2)), tty, no_color))
        };
        assert_eq!(
            text(true, false),
            Sink::Stderr {
                format: LogFormat::Text,
                ansi: true
            }
        );
        assert_eq!(
            text(false, false),
            Sink::Stderr {
                format: LogFormat::Text,
                ansi: false
            }
        );
        assert_eq!(
            text(true, true),
            Sink::Stderr {
                format: LogFormat::Text,
                ansi: false
            }
        );
    }

    #[test]
    fn rust_log_widens_only_our_own_targets() {
        let cap = dependency_cap();
        for own in [
            "cas_certd",
            "cas_certd::lifecycle::exec",
            "cas_certd::store",
        ] {
            assert!(cap.would_enable(own, &Level::TRACE), "{own}");
        }
        for dep in [
            "sled",
            "sled::pagecache::iobuf",
            "hyper",
            "hyper_util::client",
            "reqwest::connect",
            "h2::codec",
            "rustls::client",
            "axum::serve",
            "tower::buffer",
            "tokio_util",
        ] {
            assert!(cap.would_enable(dep, &Level::INFO), "{dep} at info");
            assert!(!cap.would_enable(dep, &Level::DEBUG), "{dep} at debug");
            assert!(!cap.would_enable(dep, &Level::TRACE), "{dep} at trace");
        }
        assert!(cap.would_enable("tokio_cron_scheduler::job", &Level::WARN));
        assert!(!cap.would_enable("tokio_cron_scheduler::job", &Level::INFO));
    }
}
