#!/usr/bin/env bash
# The benchmark (docs/BENCHMARKS.md): builds the release binary, makes .venv with Alibaba's
# official SDK (for the naive client), then runs scripts/bench.py, which prints one table.
#   scripts/bench.sh                          # N = 100, 1000, 10000 (about 25 minutes)
#   scripts/bench.sh --sizes 100,1000         # any bench.py flag passes through
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
if [ -n "${CAS_CERTD_PYTHON:-}" ] && [ -x "${CAS_CERTD_PYTHON}" ]; then
  python=$CAS_CERTD_PYTHON
else
  scripts/setup-python.sh >&2
  python=$PWD/.venv/bin/python
fi
CAS_CERTD_PYTHON=$python exec "$python" scripts/bench.py --bin "$(scripts/target-dir.sh)/release/cas-certd" "$@"
