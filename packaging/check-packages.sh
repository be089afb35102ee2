#!/usr/bin/env bash
# sigvault's packaging check: build the .deb and .rpm, inspect them, lint the .deb, then install,
# exercise and remove the .deb in a clean Debian 12 root.
#
#   packaging/check-packages.sh
#
# Steps (each assertion prints "ok" or "FAIL"; the last line is "N passed, M failed"; the exit
# status is non-zero on any failure):
#   1. packaging/build-packages.sh (release build, cargo deb, cargo generate-rpm);
#   2. the .deb with dpkg-deb -c/-I/-e: paths, modes, conffiles, Depends/Recommends, scripts;
#   3. the .rpm with rpm -qlp/-qip/--configfiles/--scripts: the same;
#   4. lintian on the .deb: any E: fails (W: and I: are printed, allowed);
#   5. a clean `debootstrap --variant=minbase bookworm` root (plus systemd, softhsm2 and adduser,
#      which a real VM has) from the mirror this machine's apt sources use. The root is cached as
#      target/packaging-cache/<key>.tar.gz, so only the first run downloads anything;
#   6. inside it (chroot): apt-get install the .deb; sigvault --version; users, groups and
#      directories; nothing enabled or started; check-config on the shipped example configs as
#      shipped (they must parse, and the only problems allowed are missing secrets and ceremony
#      outputs), then a real SoftHSM2 ceremony with /etc/sigvault/ceremony.toml and credentials
#      for the examples, after which check-config must say OK for every shipped config;
#      systemd-analyze verify (no output) and systemd-analyze security --offline=yes (each service
#      <= 1.5) on the installed units;
#   7. apt-get remove, then purge: binary and units gone, conffiles kept on remove and gone on
#      purge, users and groups gone on purge, keys and the ceremony record never touched.
#
# Needs root (debootstrap, chroot, mounts) on Debian 12; installs rpm, lintian and debootstrap
# from Debian if missing. Everything it mounts or creates is under one temporary directory,
# unmounted and removed on exit, whatever happens. Bounded: SIGVAULT_PACKAGING_TIMEOUT seconds
# (default 1500) for the whole check. Measured on a 2-CPU VM: about 1 minute when everything is
# cached; 2.5 minutes with a cold root cache (debootstrap); add the release build (3-4 minutes) and,
# once per machine, installing cargo-deb and cargo-generate-rpm (up to 10 minutes).
set -uo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

if [ -z "${SIGVAULT_PACKAGING_INNER:-}" ]; then
  export SIGVAULT_PACKAGING_INNER=1
  exec timeout --signal=TERM --kill-after=60 "${SIGVAULT_PACKAGING_TIMEOUT:-1500}" "$0" "$@"
fi

PASSED=0
FAILED=0
# Results go to fd 3, a copy of the original stdout, so that a signal handled while a function's
# output is redirected to a log (e.g. `in_root apt-get ... >log`) still reports where it should.
exec 3>&1
ok() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$*" >&3; }
bad() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$*" >&3; }
# check DESCRIPTION COMMAND...: pass when COMMAND succeeds; show its output when it does not.
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$desc"; else bad "$desc"; [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/     | /' | head -n 30; fi
}
say() { printf '==> %s\n' "$*"; }
indent() { sed 's/^/     | /'; }
summary() { printf '%d passed, %d failed\n' "$PASSED" "$FAILED" >&3; }

WORK=
ROOT=
cleanup_mounts() {
  [ -n "$ROOT" ] || return 0
  local m
  # Innermost first; lazy unmount as a last resort.
  for m in $(awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Services started inside the root (section 6d) must not outlive it.
  if [ -n "$WORK" ]; then
    for p in "$WORK"/*.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null || true; done
  fi
  cleanup_mounts
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ -n "$ROOT" ] && awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {f=1} END {exit !f}' /proc/self/mounts; then
      bad "cleanup: something is still mounted under $ROOT; left $WORK in place"
    else
      rm -rf --one-file-system "$WORK"
    fi
  fi
  return $rc
}
on_signal() {
  bad "interrupted or timed out (SIGVAULT_PACKAGING_TIMEOUT=${SIGVAULT_PACKAGING_TIMEOUT:-1500}s)"
  cleanup
  summary
  exit 1
}
trap cleanup EXIT
trap on_signal INT TERM

finish() {
  cleanup
  summary
  [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
  exit $?
}

# --- 0. prerequisites ------------------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
  bad "must run as root (debootstrap, chroot and mounts)"
  finish
fi
# shellcheck source=tests/deps.sh
. "$repo/tests/deps.sh"
if ! ensure_debian_packages rpm lintian debootstrap binutils; then
  bad "install rpm, lintian, debootstrap and binutils"
  finish
fi
VERSION=$(awk -F'"' '/^version *=/ {print $2; exit}' Cargo.toml)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sigvault-pkgcheck.XXXXXX")
chmod 755 "$WORK"

# --- 1. build ----------------------------------------------------------------------------------------
say "building the packages (packaging/build-packages.sh)"
if packaging/build-packages.sh >"$WORK/build.out" 2>"$WORK/build.err"; then
  DEB=$(sed -n '1p' "$WORK/build.out")
  RPM=$(sed -n '2p' "$WORK/build.out")
  if [ -f "$DEB" ] && [ -f "$RPM" ]; then
    ok "build: $DEB and $RPM"
  else
    bad "build: outputs not found"; cat "$WORK/build.out" "$WORK/build.err" | indent; finish
  fi
else
  bad "build: packaging/build-packages.sh failed"; tail -n 40 "$WORK/build.err" | indent; finish
fi

# --- 2. the .deb -------------------------------------------------------------------------------------
say "inspecting $DEB"
dpkg-deb -c "$DEB" >"$WORK/deb.list"
dpkg-deb -I "$DEB" >"$WORK/deb.info"
dpkg-deb -e "$DEB" "$WORK/deb.control"
deb_has() { # deb_has MODE PATH
  awk -v m="$1" -v p="./$2" '$1 == m && ($2 == "root/root" || $2 == "0/0") && $NF == p {f=1} END {exit !f}' "$WORK/deb.list" \
    || { echo "no $1 root-owned ./$2 in the .deb:"; grep -F "$2" "$WORK/deb.list"; return 1; }
}
check "deb: /usr/bin/sigvault 0755 root" deb_has -rwxr-xr-x usr/bin/sigvault
for u in sigvault-tlog.service sigvault-ctlog.service sigvault-ctlog@.service sigvault-fulcio.service sigvault-rekor.service sigvault-tsa.service sigvault-rekor-v2.service sigvault-tuf.service sigvault-tuf-refresh.service sigvault-tuf-refresh.timer sigvault.target; do
  check "deb: /lib/systemd/system/$u" deb_has -rw-r--r-- "lib/systemd/system/$u"
done
for c in ceremony tlog ctlog fulcio rekor tsa rekor-v2 tuf; do
  check "deb: /etc/sigvault/$c.toml" deb_has -rw-r--r-- "etc/sigvault/$c.toml"
  check "deb: /etc/sigvault/$c.toml is a conffile" grep -qx "/etc/sigvault/$c.toml" "$WORK/deb.control/conffiles"
done
check "deb: /usr/share/sigvault/softhsm/ceremony.sh 0755" deb_has -rwxr-xr-x usr/share/sigvault/softhsm/ceremony.sh
check "deb: /usr/share/sigvault/mariadb.cnf 0644" deb_has -rw-r--r-- usr/share/sigvault/mariadb.cnf
for c in sigvault-backup sigvault-restore; do
  check "deb: /usr/sbin/$c 0755 (README Backups and recovery)" deb_has -rwxr-xr-x usr/sbin/$c
done
for d in README.md copyright changelog.Debian.gz; do
  check "deb: /usr/share/doc/sigvault/$d" deb_has -rw-r--r-- "usr/share/doc/sigvault/$d"
done
check "deb: every file is owned by root" bash -c "! awk '\$2 != \"root/root\" && \$2 != \"0/0\"' '$WORK/deb.list' | grep ."
field() { sed -n "s/^ $1: //p" "$WORK/deb.info"; }
check "deb: Version $VERSION-*" bash -c "[[ '$(field Version)' == $VERSION-* ]]"
check "deb: Depends has libc6 (automatic) and adduser: $(field Depends)" \
  bash -c "grep -q 'libc6' <<<'$(field Depends)' && grep -qw adduser <<<'$(field Depends)'"
check "deb: softhsm2, mariadb-server, opensc are not required" \
  bash -c "! grep -Eq 'softhsm2|mariadb|opensc' <<<'$(field Depends)'"
check "deb: Recommends: $(field Recommends)" \
  bash -c "r='$(field Recommends)'; for p in softhsm2 mariadb-server opensc; do grep -qw \"\$p\" <<<\"\$r\" || exit 1; done"
for s in postinst prerm postrm; do
  check "deb: maintainer script $s, executable, valid sh" bash -c "[ -x '$WORK/deb.control/$s' ] && sh -n '$WORK/deb.control/$s'"
done
check "deb: postinst creates users with adduser --system and /etc/sigvault/credentials 0700" \
  bash -c "grep -q 'adduser --quiet --system' '$WORK/deb.control/postinst' && grep -q 'install -d -m 0700 -o root -g root /etc/sigvault/credentials' '$WORK/deb.control/postinst'"
check "deb: no maintainer script enables or starts a service" \
  bash -c "! cat '$WORK/deb.control/'{postinst,prerm,postrm} | grep -Ev '^[[:space:]]*#' | grep -E 'systemctl[^|;]*(enable|start|restart)|deb-systemd-invoke[^|;]*[[:space:]](start|restart)[[:space:]]|deb-systemd-helper[^|;]*enable'"
check "deb: postrm removes users on purge" grep -q 'deluser --quiet --system' "$WORK/deb.control/postrm"

# --- 3. the .rpm -------------------------------------------------------------------------------------
say "inspecting $RPM"
rpm -qip "$RPM" >"$WORK/rpm.info" 2>&1
rpm -qlvp "$RPM" >"$WORK/rpm.list" 2>&1
rpm_has() { # rpm_has MODE PATH
  awk -v m="$1" -v p="$2" '$1 == m && $3 == "root" && $4 == "root" && $NF == p {f=1} END {exit !f}' "$WORK/rpm.list" \
    || { echo "no $1 root root $2 in the .rpm:"; grep -F "$2" "$WORK/rpm.list"; return 1; }
}
check "rpm: Name sigvault, Version $VERSION" \
  bash -c "grep -Eq '^Name *: sigvault$' '$WORK/rpm.info' && grep -Eq '^Version *: $VERSION$' '$WORK/rpm.info'"
check "rpm: /usr/bin/sigvault 0755 root" rpm_has -rwxr-xr-x /usr/bin/sigvault
for u in sigvault-tlog.service sigvault-ctlog.service sigvault-ctlog@.service sigvault-fulcio.service sigvault-rekor.service sigvault-tsa.service sigvault-rekor-v2.service sigvault-tuf.service sigvault-tuf-refresh.service sigvault-tuf-refresh.timer sigvault.target; do
  check "rpm: /usr/lib/systemd/system/$u" rpm_has -rw-r--r-- "/usr/lib/systemd/system/$u"
done
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" >"$WORK/rpm.flags" 2>&1
for c in ceremony tlog ctlog fulcio rekor tsa rekor-v2 tuf; do
  check "rpm: /etc/sigvault/$c.toml is %config(noreplace)" \
    bash -c "rpm -qp --configfiles '$RPM' | grep -qx /etc/sigvault/$c.toml && grep -Eq '^[a-z]*c[a-z]*n[a-z]* /etc/sigvault/$c.toml$' '$WORK/rpm.flags'"
done
check "rpm: /usr/share/sigvault/softhsm/ceremony.sh 0755" rpm_has -rwxr-xr-x /usr/share/sigvault/softhsm/ceremony.sh
check "rpm: /usr/share/sigvault/mariadb.cnf 0644" rpm_has -rw-r--r-- /usr/share/sigvault/mariadb.cnf
for c in sigvault-backup sigvault-restore; do
  check "rpm: /usr/sbin/$c 0755 (README Backups and recovery)" rpm_has -rwxr-xr-x /usr/sbin/$c
done
check "rpm: /usr/share/doc/sigvault/README.md" rpm_has -rw-r--r-- /usr/share/doc/sigvault/README.md
check "rpm: requires libc (automatic)" bash -c "rpm -qp --requires '$RPM' | grep -q '^libc.so.6'"
check "rpm: softhsm, mariadb-server, opensc recommended, not required" \
  bash -c "r=\$(rpm -qp --recommends '$RPM'); q=\$(rpm -qp --requires '$RPM'); for p in softhsm mariadb-server opensc; do grep -qx \"\$p\" <<<\"\$r\" || exit 1; ! grep -q \"\$p\" <<<\"\$q\" || exit 1; done"
rpm -qp --scripts "$RPM" >"$WORK/rpm.scripts" 2>&1
check "rpm: %post creates users (useradd -r) and /etc/sigvault/credentials 0700" \
  bash -c "grep -q 'useradd -r' '$WORK/rpm.scripts' && grep -q 'install -d -m 0700 -o root -g root /etc/sigvault/credentials' '$WORK/rpm.scripts'"
check "rpm: %preun stops the services on erase" grep -q 'systemctl stop sigvault.target' "$WORK/rpm.scripts"
check "rpm: no scriptlet enables or starts a service" \
  bash -c "! grep -Ev '^[[:space:]]*#' '$WORK/rpm.scripts' | grep -E 'systemctl[^|;]*[[:space:]](enable|start|restart)[[:space:]]'"

# --- 4. lintian ----------------------------------------------------------------------------------------
say "lintian $DEB"
lintian --tag-display-limit 0 "$DEB" >"$WORK/lintian.out" 2>&1
lint_rc=$?
if [ -s "$WORK/lintian.out" ]; then indent <"$WORK/lintian.out"; fi
if grep -q '^E:' "$WORK/lintian.out"; then
  bad "lintian: $(grep -c '^E:' "$WORK/lintian.out") error(s)"
elif [ "$lint_rc" -ge 2 ]; then
  bad "lintian did not run (exit $lint_rc)"
else
  ok "lintian: no errors ($(grep -c '^W:' "$WORK/lintian.out") warning(s), printed above)"
fi

# --- 5. a clean Debian 12 root ---------------------------------------------------------------------
# The mirror this machine's apt uses for bookworm's main archive (deb822 or one-line sources).
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN{RS=""}
         /(^|\n)Types:[^\n]*deb([ \t]|\n|$)/ && /(^|\n)Suites:[^\n]*bookworm([ \t]|\n|$)/ && !/(^|\n)Enabled: *no/ {
           n = split($0, l, "\n");
           for (i = 1; i <= n; i++) if (l[i] ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", l[i]); split(l[i], u, /[ \t]+/); print u[1]; exit }
         }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } if ($(i+1) == "bookworm") print $i }' "$f"
  done
}
MIRROR=$(apt_mirror | grep -v -- '-security' | head -n 1)
INCLUDE=systemd,softhsm2,adduser
CACHE_DIR=$repo/target/packaging-cache
KEY=$(printf 'bookworm minbase %s %s v1' "$MIRROR" "$INCLUDE" | sha256sum | cut -c1-12)
TARBALL=$CACHE_DIR/debian12-minbase-$KEY.tar.gz
ROOT=$WORK/root
mkdir -p "$ROOT"
if [ -z "$MIRROR" ]; then
  bad "debootstrap: no bookworm mirror found in /etc/apt/sources.list(.d)"
  finish
fi
if [ -f "$TARBALL" ]; then
  say "unpacking the cached Debian 12 root $TARBALL"
  check "root: unpacked from the cache" tar -xzf "$TARBALL" -C "$ROOT" --numeric-owner
else
  say "debootstrap --variant=minbase --include=$INCLUDE bookworm (mirror $MIRROR); cached afterwards"
  if timeout 900 debootstrap --variant=minbase --include="$INCLUDE" bookworm "$ROOT" "$MIRROR" \
       >"$WORK/debootstrap.log" 2>&1; then
    # Trim what a cached root does not need, then cache it (written aside, renamed when complete).
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb
    mkdir -p "$CACHE_DIR"
    tar -czf "$TARBALL.part" -C "$ROOT" --numeric-owner . && mv "$TARBALL.part" "$TARBALL"
    ok "root: debootstrap bookworm minbase from $MIRROR"
  else
    bad "root: debootstrap failed"; tail -n 30 "$WORK/debootstrap.log" | indent; finish
  fi
fi
# Machine-local bits a VM has: DNS (unused unless apt needs the network), /proc, /sys, /dev, and a
# policy that stops any maintainer script from starting a service inside the root.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
mount -t proc proc "$ROOT/proc"
mount -t sysfs -o ro sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount -o remount,bind,ro "$ROOT/dev" 2>/dev/null || true
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive "$@"; }

# --- 6. install and exercise -------------------------------------------------------------------------
cp "$DEB" "$ROOT/tmp/sigvault.deb"
say "apt-get install /tmp/sigvault.deb inside the root"
if in_root timeout 300 apt-get install -y --no-install-recommends /tmp/sigvault.deb >"$WORK/install.log" 2>&1; then
  ok "root: apt-get install -y /tmp/sigvault.deb"
else
  bad "root: apt-get install failed"; tail -n 30 "$WORK/install.log" | indent; finish
fi
check "root: sigvault --version prints sigvault $VERSION" bash -c "[ \"\$(chroot '$ROOT' /usr/bin/sigvault --version)\" = 'sigvault $VERSION' ]"
for u in sigvault-tlog sigvault-ctlog sigvault-fulcio sigvault-rekor sigvault-tsa sigvault-rekor-v2 sigvault-tuf sigvault-tuf-refresh; do
  check "root: system user $u (nologin, no home)" \
    bash -c "e=\$(chroot '$ROOT' getent passwd $u) && [ \"\$(cut -d: -f3 <<<\"\$e\")\" -lt 1000 ] && [ \"\$(cut -d: -f7 <<<\"\$e\")\" = /usr/sbin/nologin ] && [ ! -e '$ROOT/nonexistent' ]"
done
for g in sigvault-tlog-clients softhsm; do
  check "root: group $g" in_root getent group "$g"
done
check "root: /etc/sigvault/credentials root 0700" bash -c "[ \"\$(stat -c '%U:%G %a' '$ROOT/etc/sigvault/credentials')\" = 'root:root 700' ]"
check "root: /var/lib/sigvault root 0755" bash -c "[ \"\$(stat -c '%U:%G %a' '$ROOT/var/lib/sigvault')\" = 'root:root 755' ]"
check "root: no sigvault unit enabled by the package" bash -c "! find '$ROOT/etc/systemd/system' -name 'sigvault*' | grep ."
check "root: /etc/sigvault/*.toml are registered conffiles" \
  bash -c "for c in ceremony tlog ctlog fulcio rekor tsa rekor-v2 tuf; do chroot '$ROOT' dpkg-query -W -f='\${Conffiles}\n' sigvault | grep -q \" /etc/sigvault/\$c.toml \" || exit 1; done"

# 6a. The shipped examples as shipped: no secrets and no ceremony yet. They must parse and
# validate; the only problems allowed are the missing secrets (PIN files, credentials) and the
# missing ceremony outputs. Printed as they are.
say "sigvault check-config on the shipped examples, as shipped (no secrets, no ceremony yet)"
for cfg in "$ROOT"/etc/sigvault/*.toml; do
  name=/etc/sigvault/${cfg##*/}
  out=$(in_root sigvault check-config "$name" 2>&1)
  rc=$?
  printf '%s\n' "$out" | indent
  if [ $rc -eq 0 ]; then
    ok "check-config $name (as shipped): OK"
  elif ! grep -q 'NOT OK' <<<"$out"; then
    bad "check-config $name (as shipped): did not parse or validate"
  elif unexpected=$(grep '^error: ' <<<"$out" | grep -Ev \
      "pin: |database_url: |CREDENTIALS_DIRECTORY is not set|cannot read secret file|/var/lib/sigvault/ceremony/[a-z0-9.-]+ does not exist"); then
    bad "check-config $name (as shipped): problems other than missing secrets/ceremony outputs:"
    printf '%s\n' "$unexpected" | indent
  else
    ok "check-config $name (as shipped): parses; $(grep -c '^error: ' <<<"$out") problem(s), all missing secrets or ceremony outputs"
  fi
done

# 6b. The same files after the production steps README.md describes: PIN files, a SoftHSM2
# ceremony in the system token directory with the shipped ceremony.toml, credentials under
# /etc/sigvault/credentials. Now every shipped config must be OK.
say "production steps inside the root: PINs, SoftHSM2 tokens, sigvault ceremony, credentials"
setup_script='set -eu
umask 077
mkdir -p /etc/sigvault/secrets
newpin() { od -An -tx1 -N16 /dev/urandom | tr -d " \n"; }
for role in root issuing-ca ctlog rekor tlog tsa tuf-root-1 tuf-root-2 tuf-targets tuf-online; do
  newpin >/etc/sigvault/secrets/$role.pin
  softhsm2-util --init-token --free --label sigvault-$role --pin "$(cat /etc/sigvault/secrets/$role.pin)" --so-pin "$(newpin)" >/dev/null
done
umask 022
sigvault ceremony --config /etc/sigvault/ceremony.toml
umask 077
cp /etc/sigvault/secrets/tlog.pin /etc/sigvault/credentials/tlog-pin
cp /etc/sigvault/secrets/rekor.pin /etc/sigvault/credentials/rekor-pin
cp /etc/sigvault/secrets/ctlog.pin /etc/sigvault/credentials/ctlog-pin
cp /etc/sigvault/secrets/issuing-ca.pin /etc/sigvault/credentials/fulcio-pin
cp /etc/sigvault/secrets/tsa.pin /etc/sigvault/credentials/tsa-pin
cp /etc/sigvault/secrets/tuf-online.pin /etc/sigvault/credentials/tuf-online-pin
echo "mysql://sigvault_tlog:not-a-real-password@127.0.0.1:3306/sigvault_tlog" >/etc/sigvault/credentials/tlog-db-url
echo "mysql://sigvault_rekor:not-a-real-password@127.0.0.1:3306/sigvault_rekor" >/etc/sigvault/credentials/rekor-db-url
chgrp -R softhsm /var/lib/softhsm/tokens && chmod -R g+rwX /var/lib/softhsm/tokens'
if in_root sh -c "$setup_script" >"$WORK/ceremony.log" 2>&1; then
  ok "root: SoftHSM2 tokens and sigvault ceremony with /etc/sigvault/ceremony.toml"
else
  bad "root: ceremony set-up failed"; tail -n 30 "$WORK/ceremony.log" | indent
fi
check "root: ceremony outputs in /var/lib/sigvault/ceremony" \
  bash -c "for f in root.pem issuing-ca.pem ctlog.pub.pem rekor.pub.pem tlog.pub.pem tsa.pem rekor-v2.pub.pem transcript.json; do [ -s '$ROOT/var/lib/sigvault/ceremony/'\$f ] || exit 1; done"
say "sigvault check-config on the shipped examples with secrets, keys and credentials in place"
for cfg in "$ROOT"/etc/sigvault/*.toml; do
  name=/etc/sigvault/${cfg##*/}
  out=$(in_root CREDENTIALS_DIRECTORY=/etc/sigvault/credentials sigvault check-config "$name" 2>&1)
  rc=$?
  printf '%s\n' "$out" | indent
  if [ $rc -eq 0 ]; then ok "check-config $name (configured): OK"; else bad "check-config $name (configured)"; fi
done

# The token files are reachable through the softhsm group only (the chgrp/chmod step above, from
# README.md): a service user with the group sees all six tokens, without it none.
tokens_as() { in_root setpriv --reuid="$1" --regid="$1" --groups="$2" --inh-caps=-all \
  env SOFTHSM2_CONF=/etc/softhsm/softhsm2.conf softhsm2-util --show-slots 2>/dev/null | grep -c 'Label: *sigvault-'; }
check "root: sigvault-ctlog with group softhsm sees the 10 tokens (6 of the ceremony, 4 of the TUF repository)" \
  test "$(tokens_as sigvault-ctlog softhsm,sigvault-tlog-clients)" = 10
check "root: sigvault-ctlog without group softhsm sees no token" \
  test "$(tokens_as sigvault-ctlog sigvault-tlog-clients)" = 0
check "root: sigvault-ctlog can read the ceremony outputs its config names" \
  in_root setpriv --reuid=sigvault-ctlog --regid=sigvault-ctlog --clear-groups --inh-caps=-all \
  cat /var/lib/sigvault/ceremony/root.pem /var/lib/sigvault/ceremony/ctlog.pub.pem
# Conffiles: a local change survives reinstalling the package.
echo '# local change' >>"$ROOT/etc/sigvault/tlog.toml"
in_root dpkg -i /tmp/sigvault.deb >"$WORK/reinstall.log" 2>&1
check "root: reinstall keeps a locally modified /etc/sigvault/tlog.toml" \
  bash -c "tail -n 1 '$ROOT/etc/sigvault/tlog.toml' | grep -qx '# local change'"

# 6c. The installed units.
for unit in "$ROOT"/lib/systemd/system/sigvault*; do
  u=${unit##*/}
  out=$(in_root systemd-analyze verify "/lib/systemd/system/$u" 2>&1)
  rc=$?
  if [ $rc -eq 0 ] && [ -z "$out" ]; then
    ok "systemd-analyze verify $u: clean"
  else
    bad "systemd-analyze verify $u (exit $rc)"; printf '%s\n' "$out" | indent
  fi
done
for unit in "$ROOT"/lib/systemd/system/sigvault-*.service; do
  u=${unit##*/}
  out=$(in_root systemd-analyze security --offline=yes "/lib/systemd/system/$u" 2>&1)
  score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
  if [ -n "$score" ] && awk -v s="$score" 'BEGIN {exit !(s <= 1.5)}'; then
    ok "systemd-analyze security --offline=yes $u: $score (<= 1.5)"
  else
    bad "systemd-analyze security --offline=yes $u: ${score:-no score} (must be <= 1.5)"
    grep '✗' <<<"$out" | indent
  fi
done

# 6d. The services as their units run them, outside systemd: each as its unit's user and groups,
# with no capabilities and no new privileges, its credentials copied (as LoadCredential= does)
# into a directory only it can read, the tlog's runtime directory made as RuntimeDirectory= makes
# it, and the shipped configs unchanged under /etc/sigvault. The two databases live on the test
# run's private MariaDB (tests/run.sh), reached over loopback as a remote MariaDB would be.
if [ -z "${SIGVAULT_TEST_MYSQL_URL:-}" ]; then
  say "services as their units run them: skipped (no SIGVAULT_TEST_MYSQL_URL; run through tests/run.sh)"
else
  say "the services inside the root, each as its unit's user with its unit's credentials"
  u=${SIGVAULT_TEST_MYSQL_URL#mysql://}
  dbcred=${u%%@*}; dbaddr=${u#*@}; dbaddr=${dbaddr%%/*}
  dbsql() { mariadb --no-defaults -h"${dbaddr%%:*}" -P"${dbaddr##*:}" -u"${dbcred%%:*}" -p"${dbcred#*:}" -e "$1"; }
  for svc in tlog rekor; do
    pass=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
    dbsql "DROP DATABASE IF EXISTS pkg_$svc; CREATE DATABASE pkg_$svc;
      DROP USER IF EXISTS 'pkg_$svc'@'127.0.0.1'; CREATE USER 'pkg_$svc'@'127.0.0.1' IDENTIFIED BY '$pass';
      GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX ON pkg_$svc.* TO 'pkg_$svc'@'127.0.0.1';" \
      >"$WORK/db-$svc.log" 2>&1 || { bad "create the $svc database"; indent <"$WORK/db-$svc.log"; }
    (umask 077; echo "mysql://pkg_$svc:$pass@127.0.0.1:${dbaddr##*:}/pkg_$svc" >"$ROOT/etc/sigvault/credentials/$svc-db-url")
    check "root: sigvault migrate --config /etc/sigvault/$svc.toml (README step 4)" \
      in_root env CREDENTIALS_DIRECTORY=/etc/sigvault/credentials sigvault migrate --config "/etc/sigvault/$svc.toml"
  done
  unit_field() { sed -n "s/^$2=//p" "$ROOT/lib/systemd/system/sigvault-$1.service"; }
  start_as_unit() {
    local svc=$1 user group groups cdir rd sd name src
    user=$(unit_field "$svc" User); group=$(unit_field "$svc" Group)
    groups=$(unit_field "$svc" SupplementaryGroups | tr ' ' ',')
    cdir=/run/credentials/sigvault-$svc.service
    rm -rf "$ROOT$cdir"; mkdir -p "$ROOT$cdir"
    while IFS=: read -r name src; do
      cp "$ROOT$src" "$ROOT$cdir/$name"
    done < <(unit_field "$svc" LoadCredential)
    in_root chown -R "$user:$group" "$cdir"
    chmod 0500 "$ROOT$cdir"; chmod 0400 "$ROOT$cdir"/*
    rd=$(unit_field "$svc" RuntimeDirectory)
    if [ -n "$rd" ]; then
      mkdir -p "$ROOT/run/$rd"; in_root chown "$user:$group" "/run/$rd"
      chmod "$(unit_field "$svc" RuntimeDirectoryMode)" "$ROOT/run/$rd"
    fi
    local state_env=()
    sd=$(unit_field "$svc" StateDirectory)
    if [ -n "$sd" ]; then # as StateDirectory= makes it, handed over as $STATE_DIRECTORY
      mkdir -p "$ROOT/var/lib/$sd"; in_root chown "$user:$group" "/var/lib/$sd"
      chmod "$(unit_field "$svc" StateDirectoryMode)" "$ROOT/var/lib/$sd"
      state_env=(STATE_DIRECTORY="/var/lib/$sd")
    fi
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
      CREDENTIALS_DIRECTORY="$cdir" SOFTHSM2_CONF=/etc/softhsm/softhsm2.conf "${state_env[@]}" \
      setpriv --reuid="$user" --regid="$group" --groups="$groups" --inh-caps=-all --bounding-set=-all \
      --no-new-privs /usr/bin/sigvault "$svc" serve --config "/etc/sigvault/$svc.toml" \
      >"$WORK/$svc.run.log" 2>&1 &
    echo $! >"$WORK/$svc.pid"
  }
  wait_ready() { # wait_ready SVC URL
    local i
    for i in $(seq 1 150); do
      curl -fsS "$2" >/dev/null 2>&1 && { ok "root: $1 runs as its unit's user and answers $2"; return 0; }
      kill -0 "$(cat "$WORK/$1.pid")" 2>/dev/null || break
      sleep 0.2
    done
    bad "root: $1 did not start as its unit's user"; tail -n 20 "$WORK/$1.run.log" | indent; return 1
  }
  start_as_unit tlog; wait_ready tlog http://127.0.0.1:8090/healthz
  start_as_unit rekor; wait_ready rekor http://127.0.0.1:3000/readyz
  start_as_unit ctlog; wait_ready ctlog http://127.0.0.1:6962/readyz
  start_as_unit fulcio; wait_ready fulcio http://127.0.0.1:5555/readyz
  # The TSA as shipped checks the clock (require_synchronised_clock = true): it serves, and is
  # ready only if this host's kernel reports its clock synchronised.
  start_as_unit tsa; wait_ready tsa http://127.0.0.1:3003/healthz
  # Rekor v2 holds no key: its unit gives it neither the softhsm group nor a credential. It
  # creates its log's tree in the tlog and checks it is the log its config names.
  start_as_unit rekor-v2; wait_ready rekor-v2 http://127.0.0.1:3004/readyz
  for svc in tlog rekor ctlog fulcio tsa rekor-v2; do
    pid=$(cat "$WORK/$svc.pid")
    check "root: $svc runs as sigvault-$svc's uid with no capabilities and no_new_privs" \
      bash -c "s=/proc/$pid/status; uid=\$(chroot '$ROOT' id -u sigvault-$svc) &&
        awk -v u=\"\$uid\" '/^Uid:/ {exit !(\$2 == u && \$3 == u)}' \$s &&
        grep -Eq '^CapEff:[[:space:]]+0+$' \$s && grep -Eq '^CapBnd:[[:space:]]+0+$' \$s && grep -Eq '^NoNewPrivs:[[:space:]]+1$' \$s"
  done
  check "root: rekor serves the shipped tree (treeID 1)" \
    bash -c "curl -fsS http://127.0.0.1:3000/api/v1/log | grep -q '\"treeID\":\"1\"'"
  check "root: ctlog serves a signed tree head" curl -fsS http://127.0.0.1:6962/sigvault/ct/v1/get-sth
  check "root: fulcio serves its configuration" curl -fsS http://127.0.0.1:5555/api/v2/configuration
  check "root: rekor-v2 serves the shipped log's checkpoint (origin log2026.rekor.example.org)" \
    bash -c "curl -fsS http://127.0.0.1:3004/checkpoint | head -n 1 | grep -qx log2026.rekor.example.org"
  check "root: sigvault-rekor-v2, with its unit's groups, sees no token" \
    test "$(tokens_as sigvault-rekor-v2 "$(unit_field rekor-v2 SupplementaryGroups | tr ' ' ',')")" = 0
  check "root: the tsa serves its chain, the ceremony's tsa.pem then root.pem" \
    bash -c "curl -fsS http://127.0.0.1:3003/api/v1/timestamp/certchain | cmp - <(cat '$ROOT/var/lib/sigvault/ceremony/tsa.pem' '$ROOT/var/lib/sigvault/ceremony/root.pem')"
  check "root: the tsa's readiness follows the kernel clock (503 naming it while unsynchronised)" \
    bash -c "r=\$(curl -sS -w ' %{http_code}' http://127.0.0.1:3003/readyz); case \$r in *' 200') exit 0;; *unsynchronised*' 503') exit 0;; *) echo \"\$r\"; exit 1;; esac"
  check "root: sigvault-ctlog cannot read fulcio's credentials" \
    bash -c "! chroot '$ROOT' setpriv --reuid=sigvault-ctlog --regid=sigvault-ctlog --clear-groups --inh-caps=-all \
      cat /run/credentials/sigvault-fulcio.service/fulcio-pin 2>/dev/null"
  check "root: the tlog socket is reachable only through sigvault-tlog-clients" \
    bash -c "[ \"\$(chroot '$ROOT' stat -c '%G %a' /run/sigvault-tlog)\" = 'sigvault-tlog-clients 750' ]"
  for svc in rekor-v2 tsa fulcio ctlog rekor tlog; do
    pid=$(cat "$WORK/$svc.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true; bad "root: $svc did not stop on SIGTERM within 15 s"
    else
      ok "root: $svc stopped on SIGTERM"
    fi
    rm -f "$WORK/$svc.pid"
  done
  check "root: the tlog's rollback guard is on, in its StateDirectory" \
    grep -q 'rollback guard on.*/var/lib/sigvault-tlog' "$WORK/tlog.run.log"
  check "root: the tlog recorded each tree's last head at shutdown, in a directory only it can read" \
    bash -c "[ \"\$(chroot '$ROOT' stat -c '%U %a' /var/lib/sigvault-tlog)\" = 'sigvault-tlog 700' ] &&
      grep -q '^size [1-9]' '$ROOT/var/lib/sigvault-tlog/rekor.head' && grep -q '^size [1-9]' '$ROOT/var/lib/sigvault-tlog/ctlog.head'"
  check "root: sigvault tlog verify --config /etc/sigvault/tlog.toml finds both shipped trees whole (README, Backups and recovery)" \
    in_root env CREDENTIALS_DIRECTORY=/etc/sigvault/credentials sigvault tlog verify --config /etc/sigvault/tlog.toml
fi

# 6e. The TUF repository as its units run it: created by an operator (root, with the offline
# tokens' PIN files, README.md "The TUF repository"), re-signed by the refresh as
# sigvault-tuf-refresh with its credential, served by sigvault-tuf, which holds no key and
# cannot write what it serves.
say "the TUF repository inside the root: init as the operator, refresh and serve as their units' users"
tuf_setup='set -eu
install -d -m 0755 -o sigvault-tuf-refresh -g sigvault-tuf-refresh /var/lib/sigvault-tuf
sigvault trust --ceremony-dir /var/lib/sigvault/ceremony --fulcio-url https://fulcio.example.org \
  --rekor-url https://rekor.example.org --ctlog-url https://ctlog.example.org/sigvault \
  --oidc-url https://oauth2.example.org --tsa-url https://tsa.example.org/api/v1/timestamp \
  --operator example.org --out /tmp/tuf-trust >/dev/null
CREDENTIALS_DIRECTORY=/etc/sigvault/credentials sigvault tuf init --config /etc/sigvault/tuf.toml --trust-dir /tmp/tuf-trust
chgrp -R softhsm /var/lib/softhsm/tokens && chmod -R g+rwX /var/lib/softhsm/tokens'
if in_root env SOFTHSM2_CONF=/etc/softhsm/softhsm2.conf sh -c "$tuf_setup" >"$WORK/tuf-init.log" 2>&1; then
  ok "root: sigvault tuf init --config /etc/sigvault/tuf.toml (the shipped config, 2-of-2 root)"
else
  bad "root: sigvault tuf init failed"; tail -n 30 "$WORK/tuf-init.log" | indent
fi
check "root: the repository belongs to the refresh's user, world-readable" \
  bash -c "[ \"\$(chroot '$ROOT' stat -c '%U %a' /var/lib/sigvault-tuf/repository/timestamp.json)\" = 'sigvault-tuf-refresh 644' ]"
tcdir=/run/credentials/sigvault-tuf-refresh.service
mkdir -p "$ROOT$tcdir"
cp "$ROOT/etc/sigvault/credentials/tuf-online-pin" "$ROOT$tcdir/"
in_root chown -R sigvault-tuf-refresh:sigvault-tuf-refresh "$tcdir"
chmod 0500 "$ROOT$tcdir"; chmod 0400 "$ROOT$tcdir"/*
check "root: sigvault tuf refresh as sigvault-tuf-refresh (group softhsm) with its credential" \
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    CREDENTIALS_DIRECTORY="$tcdir" SOFTHSM2_CONF=/etc/softhsm/softhsm2.conf \
    setpriv --reuid=sigvault-tuf-refresh --regid=sigvault-tuf-refresh --groups=softhsm --inh-caps=-all \
    --bounding-set=-all --no-new-privs /usr/bin/sigvault tuf refresh --config /etc/sigvault/tuf.toml
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
  setpriv --reuid=sigvault-tuf --regid=sigvault-tuf --clear-groups --inh-caps=-all --bounding-set=-all \
  --no-new-privs /usr/bin/sigvault tuf serve --config /etc/sigvault/tuf.toml >"$WORK/tuf.run.log" 2>&1 &
tuf_pid=$!
for _ in $(seq 1 150); do
  curl -fsS http://127.0.0.1:8088/readyz >/dev/null 2>&1 && break
  kill -0 "$tuf_pid" 2>/dev/null || break
  sleep 0.2
done
check "root: sigvault tuf serve as sigvault-tuf (no token group) is ready and serves timestamp.json" \
  bash -c "curl -fsS http://127.0.0.1:8088/readyz && curl -fsS http://127.0.0.1:8088/timestamp.json | cmp - '$ROOT/var/lib/sigvault-tuf/repository/timestamp.json'"
check "root: sigvault-tuf cannot change what it serves" \
  bash -c "! chroot '$ROOT' setpriv --reuid=sigvault-tuf --regid=sigvault-tuf --clear-groups --inh-caps=-all \
    touch /var/lib/sigvault-tuf/repository/timestamp.json 2>/dev/null"
kill "$tuf_pid" 2>/dev/null || true
for _ in $(seq 1 150); do kill -0 "$tuf_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$tuf_pid" 2>/dev/null; then
  kill -9 "$tuf_pid" 2>/dev/null || true; bad "root: tuf serve did not stop on SIGTERM within 15 s"
else
  ok "root: tuf serve stopped on SIGTERM"
fi

# --- 7. remove, then purge ---------------------------------------------------------------------------
say "apt-get remove, then apt-get purge, inside the root"
keys_before=$(find "$ROOT/var/lib/softhsm/tokens" -type f | sort | xargs sha256sum 2>/dev/null | sha256sum)
if in_root apt-get remove -y sigvault >"$WORK/remove.log" 2>&1; then ok "root: apt-get remove"; else bad "root: apt-get remove"; tail -n 20 "$WORK/remove.log" | indent; fi
check "after remove: /usr/bin/sigvault gone" test ! -e "$ROOT/usr/bin/sigvault"
check "after remove: units gone" bash -c "! ls '$ROOT'/lib/systemd/system/sigvault* 2>/dev/null | grep ."
check "after remove: conffiles kept" test -f "$ROOT/etc/sigvault/tlog.toml"
check "after remove: users kept (files may still be theirs)" in_root getent passwd sigvault-tlog
if in_root apt-get purge -y sigvault >"$WORK/purge.log" 2>&1; then ok "root: apt-get purge"; else bad "root: apt-get purge"; tail -n 20 "$WORK/purge.log" | indent; fi
check "after purge: package unknown to dpkg" bash -c "! chroot '$ROOT' dpkg-query -W -f='\${Status}' sigvault 2>/dev/null | grep -q installed"
check "after purge: example configs gone" bash -c "! ls '$ROOT'/etc/sigvault/*.toml 2>/dev/null | grep ."
for u in sigvault-tlog sigvault-ctlog sigvault-fulcio sigvault-rekor sigvault-tsa sigvault-rekor-v2 sigvault-tuf sigvault-tuf-refresh; do
  check "after purge: user $u gone" bash -c "! chroot '$ROOT' getent passwd $u"
done
for g in sigvault-tlog sigvault-ctlog sigvault-fulcio sigvault-rekor sigvault-tsa sigvault-rekor-v2 sigvault-tuf sigvault-tuf-refresh sigvault-tlog-clients; do
  check "after purge: group $g gone" bash -c "! chroot '$ROOT' getent group $g"
done
if [ -n "${SIGVAULT_TEST_MYSQL_URL:-}" ]; then
  check "after purge: the rollback guard's records kept (like the ceremony record)" \
    test -s "$ROOT/var/lib/sigvault-tlog/rekor.head"
fi
keys_after=$(find "$ROOT/var/lib/softhsm/tokens" -type f | sort | xargs sha256sum 2>/dev/null | sha256sum)
check "after purge: HSM tokens untouched" test "$keys_before" = "$keys_after"
check "after purge: ceremony record kept in /var/lib/sigvault/ceremony" test -s "$ROOT/var/lib/sigvault/ceremony/transcript.json"
check "after purge: credentials (PINs) kept in /etc/sigvault/credentials" test -s "$ROOT/etc/sigvault/credentials/ctlog-pin"
check "after purge: dpkg database consistent (dpkg --audit)" bash -c "[ -z \"\$(chroot '$ROOT' dpkg --audit 2>&1)\" ]"

finish
