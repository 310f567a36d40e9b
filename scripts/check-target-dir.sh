#!/usr/bin/env bash
# The suite honours CARGO_TARGET_DIR (issue 16 item 1): a test run with the build elsewhere once
# failed after 12 minutes on a literal `target/debug/cas-certd`. Two checks, after a build:
#  1. no script, test or CI file spells a path under `target/` or guesses `${CARGO_TARGET_DIR:-target}`:
#     scripts ask scripts/target-dir.sh, Rust tests use env!("CARGO_BIN_EXE_cas-certd") and
#     CARGO_TARGET_TMPDIR;
#  2. with CARGO_TARGET_DIR pointing at another directory, the steps that find the binary or the
#     kept logs by themselves (check-systemd.sh, scan-logs.sh) use that directory: the binary
#     there is a wrapper that leaves a mark when it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
self=scripts/check-target-dir.sh

hits=$(grep -rnIE '(^|[^A-Za-z0-9_.$}-])target/(debug|release|test-logs)|:-target[}/]' scripts tests .ci |
  grep -v "^$self:" || true)
if [ -n "$hits" ]; then
  printf '%s\n' "$hits" >&2
  echo "check-target-dir: FAILED: the lines above assume the build is in ./target; use scripts/target-dir.sh" >&2
  exit 1
fi

real="$(scripts/target-dir.sh)/debug/cas-certd"
[ -x "$real" ] || { echo "check-target-dir: $real missing: run cargo build first" >&2; exit 1; }
other=$(mktemp -d)
trap 'rm -rf "$other"' EXIT
mkdir -p "$other/debug" "$other/test-logs/probe"
printf '#!/bin/sh\ntouch "%s/used"\nexec "%s" "$@"\n' "$other" "$real" >"$other/debug/cas-certd"
chmod +x "$other/debug/cas-certd"
echo 'a clean log line' >"$other/test-logs/probe/daemon.log"

got=$(CARGO_TARGET_DIR="$other" scripts/target-dir.sh)
[ "$got" = "$other" ] || { echo "check-target-dir: FAILED: target-dir.sh printed $got, not $other" >&2; exit 1; }

CARGO_TARGET_DIR="$other" scripts/check-systemd.sh >/dev/null
[ -e "$other/used" ] || { echo "check-target-dir: FAILED: check-systemd.sh did not run $other/debug/cas-certd" >&2; exit 1; }

out=$(CARGO_TARGET_DIR="$other" scripts/scan-logs.sh)
case "$out" in
  *"OK: 1 files"*) ;;
  *) echo "$out" >&2; echo "check-target-dir: FAILED: scan-logs.sh did not scan $other/test-logs" >&2; exit 1 ;;
esac
echo "check-target-dir: OK: no literal target/ paths; check-systemd.sh and scan-logs.sh follow CARGO_TARGET_DIR"
