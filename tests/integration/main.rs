//! Integration tests: one binary (so the crate is linked once), one module per area. They run
//! the real `cas-certd` binary and the simulator as separate processes on loopback.
mod support;

mod api_options;
mod cache;
mod cli_verbs;
mod client_cli;
mod client_interop;
mod config_errors;
mod config_safety;
mod crash;
mod daemon_e2e;
mod deadline;
mod demo;
mod deploy_files;
mod deploy_race;
mod docs_links;
mod ecs_metadata;
mod faults;
mod fleet;
mod fleet_daemon;
mod fleet_fanout;
mod fleet_records;
mod fleet_scale;
mod fleet_status;
mod fuzz;
mod hooks;
mod hostile;
mod listeners;
mod logs;
mod notify;
mod quota;
mod selfcheck;
mod service;
mod sim_fidelity;
mod sim_sdk;
mod validation_safety;
