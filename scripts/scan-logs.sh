#!/usr/bin/env bash
# Scans every log the test suite kept for key material or a test secret, as written or hidden
# in byte lists, hex or base64 (scripts/scan-logs.py says what counts and checks itself first);
# any hit fails, with the hits listed. scripts/test.sh wipes the directory before the tests.
#
# Usage: scripts/scan-logs.sh [DIR] [--needles FILE]
#        (DIR default: <target-dir>/test-logs, see scripts/target-dir.sh)
# Python: $CAS_CERTD_PYTHON when set, else python3 (the standard library is enough).
set -euo pipefail
dir=
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  dir=$(realpath -m -- "$1")
  shift
fi
cd "$(dirname "$0")/.."
[ -n "$dir" ] || dir="$(scripts/target-dir.sh)/test-logs"
exec "${CAS_CERTD_PYTHON:-python3}" scripts/scan-logs.py "$dir" "$@"
