#!/usr/bin/env bash
# Builds the Debian package and prints the path of the .deb it made
# (<target dir>/debian/cas-certd_<version>_<arch>.deb). What goes in it is listed in
# [package.metadata.deb] of Cargo.toml; this script makes what that list takes from the build:
#  1. the production binary: a release build without the simulator (`--no-default-features`:
#     no `simulate`, no `demo`). This is the one place that chooses the package's features;
#  2. from that binary, the man page and the bash/zsh/fish completions;
#  3. the unit with the package's prefix: systemd/cas-certd.service names /usr/local, where the
#     manual install in README puts things; the package installs under /usr;
#  4. `cargo deb --no-build` on those. Extra arguments go to cargo-deb (scripts/check-package.sh
#     passes --deb-revision to make a newer version of the same build).
# Needs cargo-deb (`cargo install cargo-deb --locked --version 3.8.0`; .ci/run installs it) and
# dpkg-dev (dpkg-shlibdeps works out the library dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || {
  echo "package: cargo-deb not found: cargo install cargo-deb --locked --version 3.8.0" >&2
  exit 1
}

target=$(scripts/target-dir.sh)
# cargo's progress goes to stderr, so stdout carries only the path of the .deb.
cargo build --release --locked -p cas-certd --no-default-features --bin cas-certd >&2
bin="$target/release/cas-certd"

# Generated files go to <target dir>/release/package, where the assets of [package.metadata.deb]
# name them: cargo-deb resolves their target-dir prefix to the real one (CARGO_TARGET_DIR honoured).
gen="$target/release/package"
rm -rf "$gen"
mkdir -p "$gen"
"$bin" man | gzip -9n >"$gen/cas-certd.1.gz"
"$bin" completions bash >"$gen/cas-certd.bash"
"$bin" completions zsh >"$gen/_cas-certd"
"$bin" completions fish >"$gen/cas-certd.fish"

# One unit file: the package swaps the manual install's prefix for its own, in ExecStart= and
# in Documentation= (README.md goes to /usr/share/doc/cas-certd with the package).
sed 's#/usr/local/#/usr/#g' systemd/cas-certd.service >"$gen/cas-certd.service"
grep -q '^ExecStart=/usr/bin/cas-certd ' "$gen/cas-certd.service" || {
  echo "package: $gen/cas-certd.service has no ExecStart=/usr/bin/cas-certd" >&2
  exit 1
}

out="$target/debian"
# cargo-deb prints the path of each archive it wrote on stdout, everything else on stderr.
deb=$(cargo deb --no-build --locked -p cas-certd --output "$out" "$@" | grep '\.deb$' | tail -n 1)
[ -f "$deb" ] || { echo "package: cargo deb made no .deb in $out" >&2; exit 1; }
printf '%s\n' "$deb"
