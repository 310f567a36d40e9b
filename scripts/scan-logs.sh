#!/usr/bin/env bash
# Scans every log the test suite kept for a test secret or a PEM private key; any hit fails,
# with the hits listed. The integration tests copy each daemon/simulator log and each captured
# CLI output into <target>/test-logs/<test>-<pid>-<n>/ (tests/integration/support/world.rs:
# keep_logs, keep_output), pass or fail; scripts/test.sh wipes that directory first.
#
# Usage: scripts/scan-logs.sh [DIR]      (default: <target-dir>/test-logs, see scripts/target-dir.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-$(scripts/target-dir.sh)/test-logs}"

# The secrets: every test constant named like one (KEY_SECRET, SECRET, SK, ...) and every literal
# handed to a child as ALIBABA_CLOUD_ACCESS_KEY_SECRET. A new test secret is picked up as long as
# it follows one of these two forms.
mapfile -t secrets < <(
  {
    grep -rhoE 'const [A-Z0-9_]*(SECRET|SK)[A-Z0-9_]*: &str = "[^"]+"' tests/ |
      sed -E 's/.*= "([^"]+)"$/\1/'
    grep -rhoE '"ALIBABA_CLOUD_ACCESS_KEY_SECRET", "[^"]+"' tests/ |
      sed -E 's/.*, "([^"]+)"$/\1/'
  } | sort -u
)
if [ "${#secrets[@]}" -lt 3 ]; then
  echo "scan-logs: found only ${#secrets[@]} test secrets in tests/; the patterns above are stale" >&2
  exit 1
fi
patterns=("PRIVATE KEY" "${secrets[@]}")

# Prints the hits under $1 (file:line, cut to 200 characters); true when there are none.
scan() {
  local args=()
  for p in "${patterns[@]}"; do args+=(-e "$p"); done
  ! grep -rnaF "${args[@]}" "$1" | cut -c1-200 | head -50 | grep .
}

# The scanner itself must catch a planted key and a planted secret, or its silence means nothing.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'x\n-----BEGIN PRIVATE KEY-----\n' >"$probe/a.log"
printf '{"error":"%s"}\n' "${secrets[0]}" >"$probe/b.log"
if scan "$probe" >/dev/null || [ "$(grep -rlaF -e 'PRIVATE KEY' -e "${secrets[0]}" "$probe" | wc -l)" -ne 2 ]; then
  echo "scan-logs: self-test failed: a planted key or secret was not found" >&2
  exit 1
fi

if [ ! -d "$dir" ] || [ -z "$(find "$dir" -type f -print -quit)" ]; then
  echo "scan-logs: no kept logs in $dir: run the tests first" >&2
  exit 1
fi
files=$(find "$dir" -type f | wc -l)
bytes=$(du -sb "$dir" | cut -f1)
if ! scan "$dir"; then
  echo "scan-logs: FAILED: a secret or a private key in the test logs above (${#secrets[@]} secrets + PRIVATE KEY, $files files)" >&2
  exit 1
fi
echo "scan-logs: OK: $files files, $bytes bytes, ${#secrets[@]} secrets + 'PRIVATE KEY': no hit"
