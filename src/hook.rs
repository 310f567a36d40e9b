//! Running hooks: argv without a shell, env vars, a timeout that kills the whole process group,
//! captured output capped in size.
//!
//! INTERFACE PINNED FOR PARALLEL WORK — bodies filled by issue 4 (config/deploy work).
#![allow(unused_variables)]

use crate::config::Hook;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hook {argv0:?} could not start: {source}")]
    Spawn {
        argv0: String,
        source: std::io::Error,
    },
    #[error("hook {argv0:?} timed out after {secs}s and was killed")]
    Timeout { argv0: String, secs: u64 },
    #[error("hook {argv0:?} exited with {status}: {output_tail}")]
    Failed {
        argv0: String,
        status: String,
        output_tail: String,
    },
}

/// What a successful hook printed (stdout and stderr interleaved, capped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutput {
    pub output: String,
    pub truncated: bool,
}

/// Runs `hook` with `env` added to the daemon's environment.
pub async fn run(hook: &Hook, env: &[(String, String)]) -> Result<HookOutput, HookError> {
    todo!("issue 4")
}
