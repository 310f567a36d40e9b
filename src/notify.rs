//! sd_notify for `Type=notify`: READY, RELOADING (with MONOTONIC_USEC), STOPPING, STATUS and
//! the watchdog. A no-op when `NOTIFY_SOCKET` is not set.
//!
//! INTERFACE PINNED FOR PARALLEL WORK — bodies filled by issue 5.
#![allow(unused_variables)]

use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Notifier {}

impl Notifier {
    pub fn from_env() -> Self {
        Notifier {}
    }
    pub fn ready(&self) {}
    pub fn reloading(&self) {}
    pub fn stopping(&self) {}
    pub fn status(&self, line: &str) {}
    /// Half of `WATCHDOG_USEC`, when systemd asks for pings.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        None
    }
    pub fn watchdog(&self) {}
}
