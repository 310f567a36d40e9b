#!/usr/bin/env bash
# Prints cargo's target directory, absolute: the one place the scripts learn where the build
# lands. cargo itself resolves it (CARGO_TARGET_DIR, a `build.target-dir` in .cargo/config, or
# <repo>/target), so a script never spells `target/` and never guesses.
#   bin="$(scripts/target-dir.sh)/debug/cas-certd"
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
if [ -z "$dir" ]; then
  echo "target-dir: cannot read target_directory from 'cargo metadata' (is cargo on PATH?)" >&2
  exit 1
fi
printf '%s\n' "$dir"
