#!/usr/bin/env bash
# Creates .venv with Alibaba Cloud's official Python SDKs, used by the interop tests and the
# benchmark's naive client. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/python-requirements.txt
echo "python SDKs ready in $venv"
