#!/usr/bin/env bash
# Checks the cas-certd units: `systemd-analyze verify` prints nothing, and the offline
# `systemd-analyze security` exposure of cas-certd.service is at most 2.0.
#   scripts/check-systemd.sh [BINARY]        the units in systemd/; BINARY (default: the debug
#                                            build under scripts/target-dir.sh) stands in for
#                                            /usr/local/bin/cas-certd
#   scripts/check-systemd.sh --installed DIR the units as a package installed them in DIR (for
#                                            example /usr/lib/systemd/system), as they are
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found (apt-get install systemd)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "${1:-}" = --installed ]; then
  dir=${2:?usage: check-systemd.sh --installed DIR}
  unit="$dir/cas-certd.service"
  reload_units=("$dir/cas-certd-reload-nginx.path" "$dir/cas-certd-reload-nginx.service")
  verify_env=()   # the man page is installed where man(1) looks
else
  bin=$(realpath "${1:-$(scripts/target-dir.sh)/debug/cas-certd}")
  # verify checks that ExecStart exists and that Documentation=man:cas-certd(1) resolves: point
  # it at the binary just built and at the man page it generates.
  mkdir -p "$tmp/man/man1"
  "$bin" man > "$tmp/man/man1/cas-certd.1"
  verify_env=(MANPATH="$tmp/man")
  unit="$tmp/cas-certd.service"
  sed "s#^ExecStart=/usr/local/bin/cas-certd #ExecStart=$bin #" systemd/cas-certd.service > "$unit"
  grep -q "^ExecStart=$bin " "$unit"
  reload_units=(systemd/cas-certd-reload-nginx.path systemd/cas-certd-reload-nginx.service)
fi
verify_args=()
command -v man >/dev/null || verify_args+=(--man=no)  # no man(1) here: nothing to check against
verify_out=$(env "${verify_env[@]}" systemd-analyze verify "${verify_args[@]}" "$unit" 2>&1) || {
  echo "$verify_out" >&2; echo "systemd-analyze verify failed" >&2; exit 1; }
if [ -n "$verify_out" ]; then
  echo "$verify_out" >&2; echo "systemd-analyze verify is not clean" >&2; exit 1
fi
# The path-unit alternative for reloading nginx (see README) must verify too.
verify_out=$(systemd-analyze verify "${verify_args[@]}" "${reload_units[@]}" 2>&1) || {
  echo "$verify_out" >&2; echo "systemd-analyze verify failed (reload-nginx units)" >&2; exit 1; }
if [ -n "$verify_out" ]; then
  echo "$verify_out" >&2; echo "systemd-analyze verify is not clean (reload-nginx units)" >&2; exit 1
fi
echo "verify: clean"

security_out=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1) || {
  echo "$security_out" >&2; echo "systemd-analyze security: exposure above 2.0" >&2; exit 1; }
score=$(printf '%s\n' "$security_out" | sed -n 's/.*Overall exposure level for cas-certd.service: \([0-9.]*\).*/\1/p')
if [ -z "$score" ]; then
  echo "$security_out" >&2; echo "cannot read the exposure level" >&2; exit 1
fi
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || { echo "exposure $score > 2.0" >&2; exit 1; }
echo "security: exposure $score (limit 2.0)"

