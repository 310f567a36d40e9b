#!/usr/bin/env bash
# The Debian package, end to end on this machine (issue 15). As root only: it installs, upgrades,
# removes and purges the real package with dpkg; without root it says so and skips.
#  1. scripts/package.sh builds version N, then N+1 from the same build (--deb-revision);
#  2. lintian: no error (warnings are printed);
#  3. dpkg -i N: the files and their modes, the user, the directories with the owners and modes
#     README names, the unit as installed (scripts/check-systemd.sh --installed: verify clean,
#     exposure <= 2.0), `cas-certd check --offline` as the daemon's user on the shipped config,
#     the postinst's next steps, and nothing enabled or started;
#  4. a state database, deployed certificates and AccessKey files stand in for a running
#     install, and the config is edited; dpkg -i N+1: the edit survives, the rest is untouched,
#     and postinst asks for `try-restart` of the units (restarts a running daemon only);
#  5. dpkg -r keeps config, state and certificates, and stops the units; dpkg -P removes config,
#     credentials and state, never the deployed certificates, and keeps the user (it owns them);
#  6. a fresh install of N+1 starts nothing.
# systemd is not PID 1 on CI: steps 4-6 run dpkg in a private mount namespace whose /run has
# /run/systemd/system (what the maintainer scripts test for), with `systemctl` and
# `deb-systemd-invoke` replaced by recorders, so the unit actions are observed, not performed.
# Whatever it did is undone on exit (package purged, user and directories removed); it refuses
# to start on a machine that already has cas-certd.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "check-package: SKIPPED: needs root (dpkg -i, a system user); run as root to check the package"
  exit 0
fi
for tool in cargo-deb lintian dpkg-shlibdeps unshare; do
  command -v "$tool" >/dev/null || {
    echo "check-package: $tool not found (.ci/run installs it: cargo-deb with cargo install, the rest with apt-get)" >&2
    exit 1
  }
done
# The cleanup below removes these wholesale: only ever what this script made.
for path in /etc/cas-certd /var/lib/cas-certd; do
  [ ! -e "$path" ] || { echo "check-package: $path exists: run this on a machine without cas-certd" >&2; exit 1; }
done
! getent passwd cas-certd >/dev/null || { echo "check-package: user cas-certd exists: run this on a machine without cas-certd" >&2; exit 1; }
! dpkg-query -W cas-certd >/dev/null 2>&1 || { echo "check-package: package cas-certd is known to dpkg: run this on a machine without cas-certd" >&2; exit 1; }

fail() { echo "check-package: FAILED: $*" >&2; exit 1; }
ok() { echo "check-package: ok: $*"; }

# The webroot directories the tmpfiles.d file makes: remove those this run made, and give a
# challenge directory that was there before its owner and mode back.
challenge=/var/www/html/.well-known/pki-validation
made_dirs=()
for d in /var/www /var/www/html /var/www/html/.well-known "$challenge"; do
  [ -e "$d" ] || made_dirs=("$d" "${made_dirs[@]}")   # deepest first
done
challenge_was=$(stat -c '%u:%g %a' "$challenge" 2>/dev/null || true)
tmp=$(mktemp -d)
cleanup() {
  if dpkg-query -W cas-certd >/dev/null 2>&1; then dpkg -P cas-certd >/dev/null 2>&1 || true; fi
  rm -rf /etc/cas-certd /var/lib/cas-certd
  for d in "${made_dirs[@]}"; do rm -rf "$d"; done
  if [ -n "$challenge_was" ]; then
    chown "${challenge_was% *}" "$challenge" && chmod "${challenge_was#* }" "$challenge" || true
  fi
  if getent passwd cas-certd >/dev/null; then userdel cas-certd || true; fi
  if getent group cas-certd >/dev/null; then groupdel cas-certd || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- 1. build N and N+1 ---------------------------------------------------------------------
# cargo-deb empties its output directory before writing: keep each .deb in $tmp.
build_deb() {
  local deb
  deb=$(scripts/package.sh "$@")
  [ -f "$deb" ] || fail "scripts/package.sh printed no .deb ($deb)"
  cp "$deb" "$tmp/" && echo "$tmp/$(basename "$deb")"
}
deb_n=$(build_deb --deb-revision 1)
deb_n1=$(build_deb --deb-revision 2)
ver_n=$(dpkg-deb -f "$deb_n" Version)
ver_n1=$(dpkg-deb -f "$deb_n1" Version)
dpkg --compare-versions "$ver_n1" gt "$ver_n" || fail "N+1 ($ver_n1) is not newer than N ($ver_n)"
ok "built $deb_n and $deb_n1"

# --- 2. lintian -------------------------------------------------------------------------------
lintian_out=$(lintian --fail-on error "$deb_n" 2>&1) || { echo "$lintian_out" >&2; fail "lintian reports an error"; }
[ -z "$lintian_out" ] || printf 'lintian (not errors):\n%s\n' "$lintian_out"
ok "lintian: no error"

# The recorders of step 4 on: dpkg in a private mount namespace with a systemd-looking /run.
mkdir -p "$tmp/bin"
for cmd in systemctl deb-systemd-invoke; do
  printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n' "$cmd" "$tmp" >"$tmp/bin/$cmd"
  chmod 755 "$tmp/bin/$cmd"
done
dpkg_under_systemd() {
  : >"$tmp/calls"
  PATH="$tmp/bin:$PATH" unshare --mount --propagation private \
    sh -c 'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec dpkg "$@"' dpkg "$@"
}

# --- 3. install N -----------------------------------------------------------------------------
install_out=$(dpkg -i "$deb_n" 2>&1) || { echo "$install_out" >&2; fail "dpkg -i $deb_n"; }
grep -q 'systemctl enable --now cas-certd' <<<"$install_out" || { echo "$install_out" >&2; fail "postinst did not print the next commands"; }

# mode owner:group of a path, as `stat` prints them.
expect_stat() {
  local path=$1 want=$2 got
  got=$(stat -c '%a %U:%G' "$path" 2>/dev/null) || fail "$path missing"
  [ "$got" = "$want" ] || fail "$path is $got, want $want"
}
expect_stat /usr/bin/cas-certd "755 root:root"
for f in /usr/lib/systemd/system/cas-certd.service /usr/lib/systemd/system/cas-certd-reload-nginx.path \
  /usr/lib/systemd/system/cas-certd-reload-nginx.service \
  /usr/share/polkit-1/rules.d/50-cas-certd-reload-nginx.rules \
  /usr/lib/sysusers.d/cas-certd.conf /usr/lib/tmpfiles.d/cas-certd.conf \
  /etc/cas-certd/config.toml /usr/share/man/man1/cas-certd.1.gz \
  /usr/share/bash-completion/completions/cas-certd /usr/share/zsh/vendor-completions/_cas-certd \
  /usr/share/fish/vendor_completions.d/cas-certd.fish /usr/share/doc/cas-certd/README.md \
  /usr/share/doc/cas-certd/docs/operations.md /usr/share/doc/cas-certd/examples/example.toml; do
  expect_stat "$f" "644 root:root"
done
cmp -s config/minimal.toml /etc/cas-certd/config.toml || fail "/etc/cas-certd/config.toml is not config/minimal.toml"
dpkg-query -W -f='${Conffiles}\n' cas-certd | grep -q '^ /etc/cas-certd/config.toml ' || fail "config.toml is not a conffile"
grep -q '^\.TH' <(zcat /usr/share/man/man1/cas-certd.1.gz) || fail "the man page is not a man page"
grep -q 'complete' /usr/share/bash-completion/completions/cas-certd || fail "no bash completion"
# The production build: no simulator.
help=$(cas-certd --help)
if grep -qw simulate <<<"$help"; then fail "the packaged binary carries the simulator"; fi
grep -qx 'ExecStart=/usr/bin/cas-certd --config /etc/cas-certd/config.toml run' /usr/lib/systemd/system/cas-certd.service ||
  fail "the installed unit does not start /usr/bin/cas-certd"
! grep -n /usr/local /usr/lib/systemd/system/cas-certd.service || fail "the installed unit names /usr/local"
ok "files and modes"

IFS=: read -r _ _ uid _ _ home shell < <(getent passwd cas-certd) || fail "no user cas-certd"
[ "$uid" -lt 1000 ] || fail "cas-certd is not a system user (uid $uid)"
[ "$home:$shell" = "/var/lib/cas-certd:/usr/sbin/nologin" ] || fail "cas-certd has home $home, shell $shell"
id -nG cas-certd | tr ' ' '\n' | grep -qx www-data || fail "cas-certd is not in group www-data"
ok "user cas-certd (uid $uid, in www-data)"

expect_stat /etc/cas-certd "755 root:root"
expect_stat /etc/cas-certd/live "750 cas-certd:www-data"
expect_stat /var/lib/cas-certd "700 cas-certd:cas-certd"
expect_stat /var/www/html/.well-known/pki-validation "755 cas-certd:cas-certd"
ok "directories"

scripts/check-systemd.sh --installed /usr/lib/systemd/system

check_out=$(runuser -u cas-certd -- cas-certd check --offline 2>&1) || { echo "$check_out" >&2; fail "cas-certd check --offline on the installed config"; }
grep -q '^OK' <<<"$check_out" || { echo "$check_out" >&2; fail "check --offline did not say OK"; }
ok "cas-certd check --offline (as cas-certd) on /etc/cas-certd/config.toml"

[ ! -e /etc/systemd/system/multi-user.target.wants/cas-certd.service ] || fail "the package enabled cas-certd.service"
ok "cas-certd.service installed, not enabled"

# --- 4. upgrade to N+1 over a configured install ----------------------------------------------
install -d -m 0750 -o cas-certd -g www-data /etc/cas-certd/live/www
head -c 2048 /dev/urandom | base64 >"$tmp/chain" && install -m 0644 -o cas-certd -g cas-certd "$tmp/chain" /etc/cas-certd/live/www/fullchain.pem
head -c 1024 /dev/urandom | base64 >"$tmp/key" && install -m 0600 -o cas-certd -g cas-certd "$tmp/key" /etc/cas-certd/live/www/privkey.pem
head -c 65536 /dev/urandom >"$tmp/db" && install -m 0600 -o cas-certd -g cas-certd "$tmp/db" /var/lib/cas-certd/db
(umask 077 && printf '%s' 'LTAI-check-package' >/etc/cas-certd/access_key_id && printf '%s' 'not-a-secret' >/etc/cas-certd/access_key_secret)
sed -i 's/^contact = .*/contact = { name = "Edited", phone = "13900000001", email = "edited@example.com" }/' /etc/cas-certd/config.toml
grep -q '"Edited"' /etc/cas-certd/config.toml || fail "could not edit the config"
cp /etc/cas-certd/config.toml "$tmp/config.edited"
# Content, mode, owner and mtime of every file the package must leave alone.
snapshot() {
  find "$@" -type f -printf '%p %m %u:%g %s %T@ ' -exec sha256sum {} \; | awk '{print $1, $2, $3, $4, $5, $6}' | sort
}
snapshot /etc/cas-certd/live /var/lib/cas-certd >"$tmp/deployed-and-state.before"
snapshot /etc/cas-certd/live >"$tmp/deployed.before"

upgrade_out=$(dpkg_under_systemd -i "$deb_n1" 2>&1) || { echo "$upgrade_out" >&2; fail "dpkg -i $deb_n1 over $ver_n"; }
[ "$(dpkg-query -W -f='${Version}' cas-certd)" = "$ver_n1" ] || fail "$ver_n1 is not installed"
cmp -s "$tmp/config.edited" /etc/cas-certd/config.toml || fail "the edited config did not survive the upgrade"
snapshot /etc/cas-certd/live /var/lib/cas-certd | diff "$tmp/deployed-and-state.before" - || fail "the upgrade touched deployed files or state"
grep -q '^deb-systemd-invoke try-restart .*cas-certd\.service' "$tmp/calls" || { cat "$tmp/calls" >&2; fail "the upgrade did not try-restart cas-certd.service"; }
if grep -E '^deb-systemd-invoke (start|restart) ' "$tmp/calls"; then fail "the upgrade starts a stopped daemon"; fi
runuser -u cas-certd -- cas-certd check --offline >/dev/null 2>&1 || fail "check --offline on the edited config after the upgrade"
ok "upgrade $ver_n -> $ver_n1: edit kept, state and deployed files untouched, try-restart requested"

# --- 5. remove, then purge --------------------------------------------------------------------
remove_out=$(dpkg_under_systemd -r cas-certd 2>&1) || { echo "$remove_out" >&2; fail "dpkg -r"; }
[ ! -e /usr/bin/cas-certd ] || fail "dpkg -r left /usr/bin/cas-certd"
grep -q '^deb-systemd-invoke stop .*cas-certd\.service' "$tmp/calls" || { cat "$tmp/calls" >&2; fail "dpkg -r did not stop cas-certd.service"; }
cmp -s "$tmp/config.edited" /etc/cas-certd/config.toml || fail "dpkg -r removed or changed the config"
[ -f /etc/cas-certd/access_key_id ] && [ -f /etc/cas-certd/access_key_secret ] || fail "dpkg -r removed the credentials"
snapshot /etc/cas-certd/live /var/lib/cas-certd | diff "$tmp/deployed-and-state.before" - || fail "dpkg -r touched deployed files or state"
ok "dpkg -r: config, credentials, state and deployed certificates kept; units stopped"

purge_out=$(dpkg_under_systemd -P cas-certd 2>&1) || { echo "$purge_out" >&2; fail "dpkg -P"; }
for gone in /etc/cas-certd/config.toml /etc/cas-certd/access_key_id /etc/cas-certd/access_key_secret /var/lib/cas-certd; do
  [ ! -e "$gone" ] || fail "dpkg -P left $gone"
done
snapshot /etc/cas-certd/live | diff "$tmp/deployed.before" - || fail "dpkg -P touched the deployed certificates"
[ -d /var/www/html/.well-known/pki-validation ] || fail "dpkg -P removed the webroot's challenge directory"
getent passwd cas-certd >/dev/null || fail "dpkg -P removed the user that owns the deployed certificates"
! dpkg-query -W cas-certd >/dev/null 2>&1 || fail "dpkg still knows cas-certd after -P"
ok "dpkg -P: config, credentials and state removed; deployed certificates, challenge directory and user kept"

# --- 6. a fresh install starts nothing --------------------------------------------------------
fresh_out=$(dpkg_under_systemd -i "$deb_n1" 2>&1) || { echo "$fresh_out" >&2; fail "dpkg -i $deb_n1 after purge"; }
if grep -E '^deb-systemd-invoke ' "$tmp/calls"; then fail "a fresh install started or restarted a unit"; fi
grep -q '^systemctl --system daemon-reload' "$tmp/calls" || { cat "$tmp/calls" >&2; fail "the recorders saw no systemctl call: was systemd simulated?"; }
ok "fresh install under systemd: daemon-reload only, nothing started"

echo "check-package: OK"
