#!/usr/bin/env bash
# The .rpm installed, not only inspected (#22 part 2): `rpm --root` into a clean root, with its
# scriptlets run, then erased.
#
#   packaging/check-rpm.sh
#
# The root is packaging/check-packages.sh's cached Debian 12 minbase root
# (target/packaging-cache/debian12-minbase-*.tar.gz; run that check first, as tests/run.sh does):
# no network is needed. rpm installs with --nodeps, because that root's libc and shadow tools are
# Debian packages its rpm database does not know. What this does NOT cover of an RPM-based VM:
# dependency resolution (dnf, the Requires/Recommends against real RHEL/Fedora packages), the
# RHEL/Fedora useradd/groupadd defaults and SELinux labels, and booting the units under that
# distribution's systemd (packaging/check-boot.sh does that for the .deb only).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

PASSED=0
FAILED=0
ok() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$*"; }
bad() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$*"; }
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$desc"; else bad "$desc"; [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/     | /' | head -n 30; fi
}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sigvault-rpmcheck.XXXXXX")
ROOT=$WORK/root
cleanup() {
  local m
  for m in $(awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {f=1} END {exit !f}' /proc/self/mounts || rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
finish() { printf '%d passed, %d failed\n' "$PASSED" "$FAILED"; [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]; exit $?; }

# shellcheck source=tests/deps.sh
. "$repo/tests/deps.sh"
ensure_debian_packages rpm || { bad "install rpm"; finish; }
RPM=$(ls -t target/generate-rpm/sigvault-*.rpm 2>/dev/null | head -n 1)
TARBALL=$(ls -t target/packaging-cache/debian12-minbase-*.tar.gz 2>/dev/null | head -n 1)
[ -n "$RPM" ] || { bad "no .rpm under target/generate-rpm (packaging/build-packages.sh)"; finish; }
[ -n "$TARBALL" ] || { bad "no cached root (run packaging/check-packages.sh first)"; finish; }
mkdir -p "$ROOT"
check "root: unpacked $TARBALL" tar -xzf "$TARBALL" -C "$ROOT" --numeric-owner
mount -t proc proc "$ROOT/proc"
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }

check "rpm --root: an empty rpm database" rpm --root "$ROOT" --initdb
check "rpm --root -i --nodeps $RPM (scriptlets run in the root)" rpm --root "$ROOT" -i --nodeps "$RPM"
check "rpm -q sigvault" rpm --root "$ROOT" -q sigvault
check "rpm -V sigvault: every file, mode and owner as packaged" bash -c "out=\$(rpm --root '$ROOT' -V --nodeps sigvault); [ -z \"\$out\" ] || { echo \"\$out\"; exit 1; }"
check "/usr/bin/sigvault runs (--version)" in_root /usr/bin/sigvault --version
for svc in tlog ctlog fulcio rekor tsa rekor-v2 tuf tuf-refresh; do
  check "%post: system user sigvault-$svc (uid < 1000, nologin, own group)" \
    bash -c "e=\$(chroot '$ROOT' getent passwd sigvault-$svc) && [ \"\$(cut -d: -f3 <<<\"\$e\")\" -lt 1000 ] &&
      [ \"\$(cut -d: -f7 <<<\"\$e\")\" = /sbin/nologin ] && chroot '$ROOT' getent group sigvault-$svc >/dev/null"
done
for g in softhsm sigvault-tlog-clients; do check "%post: group $g" in_root getent group "$g"; done
check "%post: /etc/sigvault/credentials root 0700" bash -c "[ \"\$(stat -c '%U:%G %a' '$ROOT/etc/sigvault/credentials')\" = 'root:root 700' ]"
check "%post: /var/lib/sigvault root 0755" bash -c "[ \"\$(stat -c '%U:%G %a' '$ROOT/var/lib/sigvault')\" = 'root:root 755' ]"
# The same modes as the .deb, file by file, where both ship the file (units: /lib vs /usr/lib).
DEB=$(ls -t target/debian/sigvault_*.deb 2>/dev/null | head -n 1)
if [ -n "$DEB" ]; then
  check "files: each file (20 or more) both packages ship has the .deb's mode in the rpm-installed root" bash -c "
    dpkg-deb -c '$DEB' | awk '\$1 ~ /^-/ {p=\$NF; sub(/^\\./, \"\", p); sub(/^\\/lib\\/systemd/, \"/usr/lib/systemd\", p); print \$1, p}' |
    { n=0; while read -r m p; do
      [ -e '$ROOT'\"\$p\" ] || continue
      n=\$((n + 1)); have=\$(stat -c %A '$ROOT'\"\$p\"); [ \"\$have\" = \"\$m\" ] || { echo \"\$p: \$have, the .deb has \$m\"; exit 1; }
    done; [ \$n -ge 20 ] || { echo \"only \$n files compared\"; exit 1; }; }"
fi
echo '# local' >>"$ROOT/etc/sigvault/tlog.toml"
echo secret >"$ROOT/etc/sigvault/credentials/tlog-pin"
check "rpm --root -e sigvault" rpm --root "$ROOT" -e sigvault
check "erase: /usr/bin/sigvault and the units gone" bash -c "[ ! -e '$ROOT/usr/bin/sigvault' ] && ! ls '$ROOT'/usr/lib/systemd/system/sigvault* 2>/dev/null | grep ."
check "erase: a changed config is kept (.rpmsave), the credentials untouched" \
  bash -c "[ -f '$ROOT/etc/sigvault/tlog.toml.rpmsave' ] && [ \"\$(cat '$ROOT/etc/sigvault/credentials/tlog-pin')\" = secret ]"
check "erase: the rpm database no longer lists sigvault" bash -c "! rpm --root '$ROOT' -q sigvault"
finish
