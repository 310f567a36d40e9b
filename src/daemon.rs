//! The event loop: schedule, signals (SIGHUP reload, SIGTERM drain), sd_notify, shutdown.
