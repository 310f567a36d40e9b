#!/usr/bin/env bash
# The whole test suite, as README documents and .ci/run calls: formatting, lints, one build,
# every test binary, and the systemd unit checks (verify clean, security exposure <= 2.0).
# Needs the Rust toolchain, Python 3 (for the SDK interop tests) and systemd-analyze.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Alibaba's official Python SDKs for the interop tests. CAS_CERTD_PYTHON may point at an
# interpreter that already has them (the tests honour it); otherwise make .venv.
if [ -n "${CAS_CERTD_PYTHON:-}" ] && [ -x "${CAS_CERTD_PYTHON}" ]; then
  step "python: using CAS_CERTD_PYTHON=${CAS_CERTD_PYTHON}"
else
  step "python: scripts/setup-python.sh"
  scripts/setup-python.sh
  export CAS_CERTD_PYTHON="$PWD/.venv/bin/python"
fi

# Where cargo builds (CARGO_TARGET_DIR honoured): resolved once, every step below uses it.
target=$(scripts/target-dir.sh)
bin="$target/debug/cas-certd"

# Logs kept by the tests for the secret scan below: start empty, so stale logs never count.
logs="$target/test-logs"
rm -rf "$logs" && mkdir -p "$logs"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# The packaged build: the daemon without the simulator (checked, not built, so the debug binary
# the tests below run keeps its default features).
cargo clippy -p cas-certd --no-default-features --all-targets -- -D warnings

step "cargo build"
cargo build --workspace --all-targets

step "scripts: honour CARGO_TARGET_DIR (scripts/check-target-dir.sh)"
scripts/check-target-dir.sh

# --workspace: the cas-api and cas-sim crates' tests too, from the same build as the daemon's.
step "cargo test"
cargo test --workspace --all-targets 2>&1 | tee "$logs/cargo-test.log"   # what children print goes to the scan too

step "cargo test -p cas-api -p cas-sim --doc (the crate-level examples compile)"
cargo test -p cas-api -p cas-sim --doc

step "cargo test --features failpoints (crash right after each persisted step)"
cargo test --features failpoints --test integration -- crash_ 2>&1 | tee "$logs/cargo-test-failpoints.log"

# Fleet mode (feature `fleet`: the etcd client needs protoc to build): lints, then its unit
# tests and the integration tests that start real etcd clusters (etcd, etcdctl) and, in
# fleet_daemon::, fleet_records::, fleet_scale::, fleet_status::, several real daemons. The
# filter is the substring `fleet`, so a new fleet_* module is never left out (a few default
# tests with "fleet" in their path run again: seconds).
step "cargo clippy + test --features fleet (etcd store, fencing, sealed keys, daemons; real etcd)"
cargo clippy -p cas-certd --all-targets --features fleet -- -D warnings
cargo test -p cas-certd --features fleet --lib --bin cas-certd --test integration -- fleet 2>&1 | tee "$logs/cargo-test-fleet.log"
# The fleet benchmark's smoke (docs/BENCHMARKS.md, Fleet): 3 daemons (the binary the fleet
# tests just built, with the feature), a 3-member etcd, the simulator load-balancing FILE
# fetches over 3 webroots; 6 certificates, a failover and 3 SIGKILLs of owners in flight. Fails
# on a second order, a host missing a set, a mismatched pair, a key in a log; never on timing.
step "fleet bench smoke: scripts/bench_fleet.py --smoke (about 2 min)"
"$CAS_CERTD_PYTHON" scripts/bench_fleet.py --bin "$bin" --smoke

# Every log the tests above kept (daemon, simulator, CLI output): no test secret, no PRIVATE KEY.
step "logs: scripts/scan-logs.sh"
scripts/scan-logs.sh

# Benchmark smoke (docs/BENCHMARKS.md): 100 certificates through the debug daemon and
# simulator; fails only on gross regressions (not all deployed, > 5 calls per certificate,
# any throttling, > 200 MB RSS, calls in steady state), never on timing.
step "bench smoke: scripts/bench.py --smoke (N=100)"
"$CAS_CERTD_PYTHON" scripts/bench.py --bin "$bin" --sizes 100 --naive 0 --steady 10 --smoke

step "systemd: verify and security"
scripts/check-systemd.sh "$bin"

step "package: scripts/check-package.sh (as root: build, install, upgrade, remove the .deb)"
scripts/check-package.sh

step "all tests passed"
