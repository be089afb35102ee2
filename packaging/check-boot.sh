#!/usr/bin/env bash
# sigvault's booted install check: the .deb installed on a Debian 12 system that systemd really
# boots (systemd-nspawn), README.md "Install on a VM" followed step by step inside it, then the
# running units checked.
#
#   packaging/check-boot.sh
#
# packaging/check-packages.sh installs the .deb in a chroot, where no unit is ever started by
# systemd; this check is the one that shows Type=notify, LoadCredential=, the sandbox
# (ProtectSystem=, IPAddressDeny=, SystemCallFilter=, MemoryDenyWriteExecute=) and the token
# permissions working together under a real PID 1. Steps (each assertion prints "ok" or "FAIL";
# the last line is "N passed, M failed"; the exit status is non-zero on any failure):
#   1. packaging/build-packages.sh (incremental; the .deb is what is installed);
#   2. a Debian 12 root: debootstrap (systemd, systemd-sysv, dbus, python3...), then in a chroot,
#      with this machine's network, the Debian packages the install will need downloaded
#      (mariadb-server, softhsm2, opensc; `apt-get install --download-only`) and sigstore-python
#      (the version tests/clients/py/requirements.txt pins) in a venv. Cached as
#      target/packaging-cache/boot-<key>.tar.gz, so only the first run downloads anything;
#   3. the root booted with systemd-nspawn --boot --private-network (its own loopback, so the
#      services' fixed ports collide with nothing on this machine; no network, so everything
#      below is installed from what step 2 downloaded);
#   4. inside, README's "Install on a VM" steps 1-7 as written: apt-get install ./sigvault*.deb
#      (with its recommends mariadb-server, softhsm2, opensc), tokens in the system token dir,
#      the ceremony, credentials, databases and `sigvault migrate`, then configs (step 6; see
#      CONFIG below) and `systemctl enable/start sigvault.target`;
#   5. the running appliance: every unit Type=notify and active (a unit that never notifies stays
#      activating: the control), `systemctl --failed` empty; sigstore-python signs (Rekor v2 with
#      the TSA's timestamp, and Rekor v1) and verifies over the services' HTTPS; the sandbox from
#      inside each running unit (its cgroup and mount namespace): /etc, /usr and the ceremony
#      record read-only even for root, an address outside IPAddressAllow= unreachable, seccomp
#      filters, no capabilities, no_new_privs, the unit's user; each with a control that succeeds;
#   6. `systemctl kill -s SIGKILL` of every service: systemd restarts each, the tlog takes its
#      trees back, signing works again; the journal has the audit lines and no PIN, SO PIN,
#      database password or ID token;
#   7. `systemctl poweroff`, the same root booted again: every unit active unattended, the bundles
#      made before verify, signing works;
#   8. README "Backups and recovery": four clients upload to Rekor v1 (each 201 recorded with its
#      UUID, index and checkpoint) while `sigvault-backup` runs, then a second backup with the
#      services stopped; then `apt-get purge sigvault`:
#      tokens, the ceremony record, credentials and the databases untouched;
#   9. the first guest powered off, a second fresh root from the same cache booted, the .deb
#      installed (step 1 only) and `sigvault-restore` run with the checkpoints the clients held
#      when the backup began: every unit active, the custody of the tokens kept, every entry
#      acknowledged before the backup found at its index with a verifying inclusion proof and
#      checkpoint, `sigvault tlog verify` passing with those checkpoints, the entries acknowledged
#      after the dump's snapshot counted (the loss window); no fork: when some are lost, the
#      newest checkpoint a client holds is shown ahead of the restored tree, the rollback guard
#      (its records came in the archive) refuses to sequence that tree and a new upload is
#      refused; the other trees go on (sigstore-python signs with Rekor v2), and the bundles made
#      on the first appliance verify;
#  10. a move: the first appliance backed up again with its services stopped (before the purge),
#      restored into a third fresh root: exit 0, every tree sequenced, every acknowledged entry
#      there, the newest client checkpoint extended by a new upload, sigstore-python signs (v1, v2).
#
# Measured on a 2-CPU VM: about 2.5 minutes with a warm cache (most of it the two boots, about
# 30 s each, apt installing MariaDB, and the SIGKILL/lease round) before steps 8-10, which add
# two more fresh roots, each booted with MariaDB installed again (466 s for the whole check on a
# machine busy with other builds); the first run adds about 1.5 minutes for debootstrap, the
# downloads and the sigstore-python venv.
#
# Test-only choices, each because the container is not a VM on a network:
#   - the *.example.org names the shipped configs use resolve to 127.0.0.1 (guest /etc/hosts);
#   - fulcio, rekor, rekor-v2 and the tsa serve HTTPS with their own `tls` (README step 7) from a
#     private CA made here with openssl; the client is given that CA (REQUESTS_CA_BUNDLE);
#   - the tsa's require_synchronised_clock = false: the container's clock is the host's, whose
#     synchronisation this check cannot promise;
#   - the OpenID provider is a small one on 127.0.0.1 inside the guest (tests/idp needs a Node.js
#     that Debian 12 does not ship), listed in fulcio-identity.yaml (README step 5).
#
# cgroup v2 for the guest (SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1) and the bpf() system call allowed
# to it (--system-call-filter=bpf): systemd enforces IPAddressDeny= with a BPF program on the
# unit's cgroup, which needs both; without them the directive is silently not enforced. The
# sandbox checks below each have a negative control, so a sandbox that is not applied fails.
#
# Needs root on Debian 12; installs systemd-container and debootstrap from Debian if missing.
# Everything is under one temporary directory, removed on exit with the container stopped.
# Bounded: SIGVAULT_BOOT_TIMEOUT seconds (default 1500) for the whole check.
set -uo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

if [ -z "${SIGVAULT_BOOT_INNER:-}" ]; then
  export SIGVAULT_BOOT_INNER=1
  exec timeout --signal=TERM --kill-after=60 "${SIGVAULT_BOOT_TIMEOUT:-1500}" "$0" "$@"
fi

PASSED=0
FAILED=0
exec 3>&1
T0=$(date +%s)
ok() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$*" >&3; }
bad() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$*" >&3; }
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$desc"; else bad "$desc"; [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/     | /' | head -n 30; fi
}
# check_fails DESCRIPTION COMMAND...: pass when COMMAND fails (a negative check).
check_fails() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then bad "$desc (it succeeded)"; [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/     | /' | head -n 10; else ok "$desc"; fi
}
say() { printf '==> [%3ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
indent() { sed 's/^/     | /'; }
summary() { printf '%d passed, %d failed (%d s)\n' "$PASSED" "$FAILED" "$(($(date +%s) - T0))" >&3; }

WORK=
ROOT=
NSPAWN_PID=
MACHINE=sigvault-boot-$$
stop_container() {
  [ -n "$NSPAWN_PID" ] || return 0
  if kill -0 "$NSPAWN_PID" 2>/dev/null; then
    # SIGTERM makes systemd-nspawn ask the guest's PID 1 to power off.
    kill -TERM "$NSPAWN_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NSPAWN_PID" 2>/dev/null || true
  fi
  wait "$NSPAWN_PID" 2>/dev/null || true
  NSPAWN_PID=
}
cleanup_mounts() {
  [ -n "$ROOT" ] || return 0
  local m
  for m in $(awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_container
  cleanup_mounts
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ -n "${SIGVAULT_BOOT_KEEP:-}" ]; then
      echo "kept $WORK (SIGVAULT_BOOT_KEEP)" >&3
    elif [ -n "$ROOT" ] && awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {f=1} END {exit !f}' /proc/self/mounts; then
      bad "cleanup: something is still mounted under $ROOT; left $WORK in place"
    else
      rm -rf --one-file-system "$WORK"
    fi
  fi
  return $rc
}
on_signal() {
  bad "interrupted or timed out (SIGVAULT_BOOT_TIMEOUT=${SIGVAULT_BOOT_TIMEOUT:-1500}s)"
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

# --- 0. prerequisites --------------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
  bad "must run as root (debootstrap, chroot, systemd-nspawn)"
  finish
fi
# shellcheck source=tests/deps.sh
. "$repo/tests/deps.sh"
if ! ensure_debian_packages systemd-container debootstrap binutils openssl; then
  bad "install systemd-container, debootstrap, binutils and openssl"
  finish
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sigvault-bootcheck.XXXXXX")
chmod 755 "$WORK"

# --- 1. build ----------------------------------------------------------------------------------
say "building the packages (packaging/build-packages.sh)"
if packaging/build-packages.sh >"$WORK/build.out" 2>"$WORK/build.err"; then
  DEB=$(sed -n '1p' "$WORK/build.out")
  [ -f "$DEB" ] && ok "build: $DEB" || { bad "build: no .deb reported"; finish; }
else
  bad "build: packaging/build-packages.sh failed"; tail -n 40 "$WORK/build.err" | indent; finish
fi

# --- 2. the Debian 12 root, prepared while it still has this machine's network -------------------
apt_mirror() { # the bookworm mirror this machine's apt uses (as packaging/check-packages.sh)
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
# What a booted Debian 12 VM has (systemd as PID 1, dbus), what the check drives it with
# (iproute2, curl, openssl, python3 for sigstore-python), and what README's step 1 then installs
# from Debian (downloaded only; installed inside the booted system).
INCLUDE=systemd,systemd-sysv,dbus,libpam-systemd,iproute2,curl,ca-certificates,openssl,procps,python3,python3-venv,adduser
DOWNLOAD="mariadb-server softhsm2 opensc"
CACHE_DIR=$repo/target/packaging-cache
KEY=$(printf 'bookworm minbase %s %s %s %s boot-v1' "$MIRROR" "$INCLUDE" "$DOWNLOAD" \
  "$(cat tests/clients/py/requirements.txt)" | sha256sum | cut -c1-12)
TARBALL=$CACHE_DIR/debian12-boot-$KEY.tar.gz
ROOT=$WORK/root
mkdir -p "$ROOT"
[ -n "$MIRROR" ] || { bad "debootstrap: no bookworm mirror found in /etc/apt/sources.list(.d)"; finish; }
in_chroot() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive "$@"; }
if [ -f "$TARBALL" ]; then
  say "unpacking the cached root $TARBALL"
  check "root: unpacked from the cache" tar -xzf "$TARBALL" -C "$ROOT" --numeric-owner
else
  say "debootstrap --variant=minbase bookworm (mirror $MIRROR), downloads, sigstore-python; cached afterwards"
  if ! timeout 900 debootstrap --variant=minbase --include="$INCLUDE" bookworm "$ROOT" "$MIRROR" \
       >"$WORK/debootstrap.log" 2>&1; then
    bad "root: debootstrap failed"; tail -n 30 "$WORK/debootstrap.log" | indent; finish
  fi
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  mount -t proc proc "$ROOT/proc"
  mount --bind /dev "$ROOT/dev"
  cp tests/clients/py/requirements.txt "$ROOT/tmp/sigstore-requirements.txt"
  # pip inside the chroot trusts what this machine trusts (e.g. a proxy's CA), once.
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/tmp/host-ca.crt"
  prep='set -e
apt-get update -qq
apt-get install -y -qq --download-only '"$DOWNLOAD"'
python3 -m venv /opt/sigstore-python
/opt/sigstore-python/bin/pip install --quiet --disable-pip-version-check --cert /tmp/host-ca.crt \
  -r /tmp/sigstore-requirements.txt
rm -f /tmp/sigstore-requirements.txt /tmp/host-ca.crt /etc/resolv.conf'
  if in_chroot timeout 900 sh -c "$prep" >"$WORK/prep.log" 2>&1; then
    ok "root: debootstrap bookworm from $MIRROR; $DOWNLOAD downloaded; sigstore-python in /opt/sigstore-python"
  else
    bad "root: preparing the root failed"; tail -n 30 "$WORK/prep.log" | indent; finish
  fi
  cleanup_mounts
  mkdir -p "$CACHE_DIR"
  tar -czf "$TARBALL.part" -C "$ROOT" --numeric-owner . && mv "$TARBALL.part" "$TARBALL"
fi

# Per run: the package, the names the configs use, and the check's own helpers.
cp "$DEB" "$ROOT/root/sigvault_amd64.deb"
cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1 localhost fulcio.example.org rekor.example.org log2026.rekor.example.org tsa.example.org ctlog.example.org oidc.example.org
::1 localhost ip6-localhost ip6-loopback
EOF
echo sigvault-appliance >"$ROOT/etc/hostname"
# The guest's "machine" is new: no machine-id yet (systemd makes one at first boot, as on a VM).
rm -f "$ROOT/etc/machine-id"
: >"$ROOT/etc/machine-id"

# --- 3. boot ------------------------------------------------------------------------------------
GPID=
boot() {
  local i
  : >>"$WORK/console.log"
  echo "=== boot $(date -u +%T)" >>"$WORK/console.log"
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet --boot --directory="$ROOT" \
    --machine="$MACHINE" --register=no --keep-unit --private-network --system-call-filter=bpf \
    --console=pipe </dev/null >>"$WORK/console.log" 2>&1 &
  NSPAWN_PID=$!
  GPID=
  for i in $(seq 1 300); do
    # The guest's PID 1 is the child of systemd-nspawn that runs systemd (other children come
    # and go while it sets up).
    for GPID in $(pgrep -P "$NSPAWN_PID"); do
      [ "$(cat "/proc/$GPID/comm" 2>/dev/null)" = systemd ] && break 2
    done
    GPID=
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$GPID" ]
}
# Run a command in the booted guest (all its namespaces), with a clean environment.
guest() { nsenter -t "$GPID" -a /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
wait_booted() { # systemd's own verdict: "running" (or "degraded", which the checks then explain)
  local state i
  # Until PID 1 has its private bus socket, systemctl cannot even ask.
  for i in $(seq 1 300); do
    [ -S "$ROOT/run/systemd/private" ] && break
    sleep 0.1
  done
  state=$(guest timeout 180 systemctl is-system-running --wait 2>&1)
  echo "$state"
  [ "$state" = running ]
}

say "booting the root with systemd-nspawn --boot --private-network"
if boot; then
  ok "boot: systemd-nspawn started, guest PID 1 is $(cat "/proc/$GPID/comm") (host pid $GPID)"
else
  bad "boot: the container did not start"; tail -n 30 "$WORK/console.log" | indent; finish
fi
state=$(wait_booted)
if [ "$state" = running ]; then
  ok "boot: systemctl is-system-running says running"
else
  bad "boot: systemctl is-system-running says '$state'"; guest systemctl --failed --no-pager | indent
fi
check "boot: the guest has cgroup v2 (IPAddressDeny= needs it)" bash -c "[ \"\$(nsenter -t $GPID -m stat -fc %T /sys/fs/cgroup)\" = cgroup2fs ]"
check "boot: the guest has no network but its loopback" bash -c "[ \"\$(nsenter -t $GPID -n ip -o link | grep -vc ': lo:')\" = 0 ]"

# The check's helpers inside the guest: a private CA for the services' TLS, a small OpenID
# provider (discovery, JWKS, tokens signed with a key kept under /root/boot-check), the client.
mkdir -p "$ROOT/root/boot-check"
cat >"$ROOT/root/boot-check/idp.py" <<'EOF'
# A minimal OpenID provider for the booted check: `serve` answers discovery and JWKS on
# 127.0.0.1:8080, `mint EMAIL` prints an ID token for EMAIL (aud sigstore) signed with its key.
import http.server, json, os, sys, time
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISS = "http://127.0.0.1:8080"
KEY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "idp-key.pem")

def key():
    if not os.path.exists(KEY):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with open(KEY, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    with open(KEY, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)

if sys.argv[1] == "mint":
    now = int(time.time())
    claims = {"iss": ISS, "aud": "sigstore", "sub": "boot-check", "email": sys.argv[2],
              "email_verified": True, "iat": now, "nbf": now, "exp": now + 600}
    print(jwt.encode(claims, key(), algorithm="RS256", headers={"kid": "boot-check"}))
else:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key().public_key()))
    jwk.update(kid="boot-check", use="sig", alg="RS256")
    docs = {
        "/.well-known/openid-configuration": {
            "issuer": ISS, "jwks_uri": ISS + "/jwks", "authorization_endpoint": ISS + "/authorize",
            "token_endpoint": ISS + "/token", "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]},
        "/jwks": {"keys": [jwk]},
    }
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            doc = docs.get(self.path)
            body = json.dumps(doc).encode() if doc else b"not found"
            self.send_response(200 if doc else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    http.server.HTTPServer(("127.0.0.1", 8080), H).serve_forever()
EOF
ISSUER=http://127.0.0.1:8080
EMAIL=boot-check@sigvault.test
PY=/opt/sigstore-python/bin/python
SIGSTORE=/opt/sigstore-python/bin/sigstore
BC=/root/boot-check
start_idp() {
  guest systemd-run --quiet --collect --unit=boot-check-idp $PY $BC/idp.py serve >/dev/null 2>&1
  local i
  for i in $(seq 1 100); do
    guest curl -fsS "$ISSUER/.well-known/openid-configuration" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
# gsh DESCRIPTION SCRIPT: run SCRIPT with bash -eu in the guest, as root; pass when it succeeds.
gsh() {
  local desc=$1 log
  log=$WORK/step-$((PASSED + FAILED)).log
  if guest bash -euc "$2" >"$log" 2>&1; then ok "$desc"; else bad "$desc"; tail -n 30 "$log" | indent; fi
}

# --- 4. README "Install on a VM", as written, inside the booted guest -----------------------------
say "README step 1: apt-get install ./sigvault_0.1.0-1_amd64.deb (with its recommends, from the downloads)"
step1_failed=$FAILED
gsh "step 1: apt-get install ./sigvault.deb pulls softhsm2, mariadb-server, opensc (its recommends)" '
cd /root && apt-get install -y ./sigvault_amd64.deb   # no network: everything comes from the downloads
for p in sigvault softhsm2 mariadb-server opensc; do dpkg-query -W -f="\${Status}\n" $p | grep -qx "install ok installed"; done'
[ "$step1_failed" = "$FAILED" ] || finish
check "step 1: mariadb.service started by its package, under systemd" guest systemctl is-active mariadb.service
check "step 1: the package enabled and started no sigvault unit" \
  bash -c "! nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl list-units --all --no-legend 'sigvault*' | grep -E ' (active|activating) '"

say "README step 2: tokens in the system token dir, the ceremony"
gsh "step 2: PINs on a tmpfs, one token per role, check-config, sigvault ceremony, token grants, the root token exported" '
mkdir -p /etc/sigvault/secrets && mount -t tmpfs -o mode=0700 tmpfs /etc/sigvault/secrets
newpin() { od -An -tx1 -N16 /dev/urandom | tr -d " \n"; }
(umask 077; for role in root issuing-ca ctlog rekor tlog tsa; do newpin >/etc/sigvault/secrets/$role.pin; done)
for role in root issuing-ca ctlog rekor tlog tsa; do
  so=$(newpin); echo "$so" >>/root/boot-check/so-pins
  softhsm2-util --init-token --free --label sigvault-$role \
    --pin "$(cat /etc/sigvault/secrets/$role.pin)" --so-pin "$so" >/dev/null
done
# (The check keeps a copy of every PIN, only to look for them in the journal later.)
for f in /etc/sigvault/secrets/*.pin; do cat $f; echo; done >/root/boot-check/secrets; chmod 600 /root/boot-check/secrets
sigvault check-config /etc/sigvault/ceremony.toml
sigvault ceremony --config /etc/sigvault/ceremony.toml
c=/usr/share/sigvault/softhsm/token-custody.sh
$c grant sigvault-issuing-ca sigvault-fulcio
$c grant sigvault-ctlog      sigvault-ctlog
$c grant sigvault-rekor      sigvault-rekor
$c grant sigvault-tlog       sigvault-tlog
$c grant sigvault-tsa        sigvault-tsa
# "Offline custody" is a directory of the guest here.
mkdir -p /root/offline && $c export sigvault-root /root/offline/sigvault-root-token.tar'
check "step 2: ceremony outputs in /var/lib/sigvault/ceremony" \
  bash -c "for f in root.pem issuing-ca.pem ctlog.pub.pem rekor.pub.pem tlog.pub.pem tsa.pem rekor-v2.pub.pem transcript.json; do [ -s '$ROOT/var/lib/sigvault/ceremony/'\$f ] || exit 1; done"

say "README step 3: credentials"
gsh "step 3: credentials installed 0600, the secrets tmpfs unmounted" '
cd /etc/sigvault/credentials
install -m 0600 /etc/sigvault/secrets/tlog.pin       tlog-pin
install -m 0600 /etc/sigvault/secrets/rekor.pin      rekor-pin
install -m 0600 /etc/sigvault/secrets/ctlog.pin      ctlog-pin
install -m 0600 /etc/sigvault/secrets/issuing-ca.pin fulcio-pin
install -m 0600 /etc/sigvault/secrets/tsa.pin        tsa-pin
umount /etc/sigvault/secrets
! ls /etc/sigvault/secrets/*.pin 2>/dev/null'

say "README step 4: MariaDB settings, databases, sigvault migrate"
gsh "step 4: mariadb.cnf installed, mariadb restarted, tlog and rekor databases, migrate" '
install -m 0644 /usr/share/sigvault/mariadb.cnf /etc/mysql/mariadb.conf.d/60-sigvault.cnf
systemctl restart mariadb
for svc in tlog rekor; do
  pw=$(od -An -tx1 -N12 /dev/urandom | tr -d " \n")
  mariadb -e "CREATE DATABASE sigvault_$svc;
    CREATE USER '"'"'sigvault_$svc'"'"'@'"'"'localhost'"'"' IDENTIFIED BY '"'"'$pw'"'"';
    GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX ON sigvault_$svc.* TO '"'"'sigvault_$svc'"'"'@'"'"'localhost'"'"';"
  echo "$pw" >>/root/boot-check/secrets
  (umask 077; echo "mysql://sigvault_$svc:$pw@127.0.0.1:3306/sigvault_$svc" \
    > /etc/sigvault/credentials/$svc-db-url)
  CREDENTIALS_DIRECTORY=/etc/sigvault/credentials sigvault migrate --config /etc/sigvault/$svc.toml
done'

say "README steps 5-6: the OpenID provider listed, TLS and the URLs in the configs, check-config"
gsh "step 5: the test OpenID provider ($ISSUER) is the issuer fulcio-identity.yaml lists" "
cat >/etc/sigvault/fulcio-identity.yaml <<EOF
oidc-issuers:
  $ISSUER:
    issuer-url: $ISSUER
    client-id: sigstore
    type: email
EOF"
if start_idp; then ok "the test OpenID provider answers discovery at $ISSUER"; else bad "the test OpenID provider did not start"; guest journalctl -u boot-check-idp --no-pager | tail -n 20 | indent; fi
gsh "step 6: a private CA and a certificate for the services' names; each key readable by its service only" '
d=/root/boot-check; t=/etc/sigvault/tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=boot-check CA" \
  -keyout $d/ca.key -out $d/ca.pem 2>/dev/null
install -d -m 0755 $t
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=sigvault appliance" \
  -keyout $d/tls.key -out $d/tls.csr 2>/dev/null
printf "subjectAltName=DNS:fulcio.example.org,DNS:rekor.example.org,DNS:log2026.rekor.example.org,DNS:tsa.example.org,DNS:ctlog.example.org\nextendedKeyUsage=serverAuth\n" >$d/ext
openssl x509 -req -in $d/tls.csr -CA $d/ca.pem -CAkey $d/ca.key -CAcreateserial -days 2 -extfile $d/ext -out $t/appliance.pem 2>/dev/null
chmod 0644 $t/appliance.pem
for svc in fulcio rekor rekor-v2 tsa; do install -m 0640 -o root -g sigvault-$svc $d/tls.key $t/$svc.key; done'
gsh "step 6: configs: tls for fulcio, rekor, rekor-v2, tsa; the Rekor v2 URL with its port; tsa clock check off (test only)" '
cd /etc/sigvault
for pair in fulcio:fulcio rekor:rekor rekor-v2:rekor_v2 tsa:tsa; do
  f=${pair%%:*}; t=${pair#*:}
  printf "\n[%s.tls]\ncert = \"/etc/sigvault/tls/appliance.pem\"\nkey = \"/etc/sigvault/tls/%s.key\"\n" "$t" "$f" >>$f.toml
done
# The v2 log is served on :3004 here, so its URL, origin and note name carry the port (README
# step 6: the origin and note name are the URL without its scheme).
sed -i "s|^url = \"https://log2026.rekor.example.org\"|url = \"https://log2026.rekor.example.org:3004\"|" rekor-v2.toml
sed -i "s|^origin = \"log2026.rekor.example.org\"|origin = \"log2026.rekor.example.org:3004\"|; s|^note_name = \"log2026.rekor.example.org\"|note_name = \"log2026.rekor.example.org:3004\"|" tlog.toml
grep -q "log2026.rekor.example.org:3004" rekor-v2.toml && [ "$(grep -c "log2026.rekor.example.org:3004" tlog.toml)" = 2 ]
sed -i "s/^require_synchronised_clock = true/require_synchronised_clock = false/" tsa.toml
grep -qx "require_synchronised_clock = false" tsa.toml'
for svc in tlog ctlog fulcio rekor tsa rekor-v2; do
  check "step 6: check-config /etc/sigvault/$svc.toml: OK" \
    guest env CREDENTIALS_DIRECTORY=/etc/sigvault/credentials sigvault check-config "/etc/sigvault/$svc.toml"
done

SERVICES="tlog ctlog rekor rekor-v2 fulcio tsa"
say "README step 7: systemctl enable sigvault.target ...; systemctl start sigvault.target"
t_start=$(date +%s)
gsh "step 7: systemctl enable sigvault.target sigvault-{tlog,ctlog,fulcio,rekor,tsa,rekor-v2}.service; systemctl start sigvault.target" '
systemctl enable sigvault.target sigvault-{tlog,ctlog,fulcio,rekor,tsa,rekor-v2}.service
timeout 180 systemctl start sigvault.target'
say "sigvault.target started in $(($(date +%s) - t_start)) s"

# --- 5. the running appliance ----------------------------------------------------------------------
# Readiness: each unit is Type=notify, so "active (running)" is only reached on the service's
# READY=1. Negative control: a Type=notify unit that never notifies stays "activating".
unit_prop() { guest systemctl show -P "$2" "$1"; }
units_active() {
  local svc line rc=0
  for svc in $SERVICES; do
    line="$(unit_prop sigvault-$svc.service Type) $(unit_prop sigvault-$svc.service ActiveState) $(unit_prop sigvault-$svc.service SubState)"
    [ "$line" = "notify active running" ] || { echo "sigvault-$svc: $line"; rc=1; }
  done
  return $rc
}
check "units: every sigvault service is Type=notify and active (running)" units_active
for svc in $SERVICES; do
  check "units: sigvault-$svc.service active, its readiness notified ($(unit_prop sigvault-$svc.service ActiveEnterTimestamp | awk '{print $3}'))" \
    bash -c "[ \"\$(nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl show -P Type,ActiveState sigvault-$svc.service | tr '\n' ' ')\" = 'notify active ' ]"
done
guest systemd-run --quiet --no-block --collect --unit=boot-check-silent -p Type=notify -p TimeoutStartSec=60 sleep 300 >/dev/null 2>&1
sleep 3
check "units (negative control): a Type=notify unit that never notifies is still 'activating' after 3 s" \
  bash -c "[ \"\$(nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl show -P ActiveState boot-check-silent.service)\" = activating ]"
guest systemctl stop boot-check-silent.service >/dev/null 2>&1
check "units: systemctl --failed lists nothing" bash -c "[ -z \"\$(nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl --failed --no-legend --plain)\" ] || { nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl --failed --no-pager; exit 1; }"

# Signing and verifying with sigstore-python over HTTPS: the trust files name the services by
# their https://*.example.org URLs; the client trusts the private CA through REQUESTS_CA_BUNDLE.
say "sigstore-python signs and verifies against the units (HTTPS, private CA)"
gsh "trust: sigvault trust writes the client trust files (https URLs; one set advertising Rekor v2, one v1 only)" "
common='--ceremony-dir /var/lib/sigvault/ceremony --fulcio-url https://fulcio.example.org:5555
  --rekor-url https://rekor.example.org:3000 --ctlog-url https://ctlog.example.org:6962/sigvault
  --tsa-url https://tsa.example.org:3003/api/v1/timestamp --rekor-v2-url https://log2026.rekor.example.org:3004
  --oidc-url $ISSUER --operator example.org'
sigvault trust \$common --out $BC/trust >/dev/null
sigvault trust \$common --rekor-v2-verify-only --out $BC/trust-v1 >/dev/null
test -s $BC/trust/trust-config.json && test -s $BC/trust-v1/trust-config.json"
check "tls: fulcio answers https://fulcio.example.org:5555 with the private CA" \
  guest curl -fsS --cacert $BC/ca.pem https://fulcio.example.org:5555/api/v2/configuration
check_fails "tls (negative control): a client without the private CA refuses fulcio's certificate" \
  guest curl -fsS https://fulcio.example.org:5555/api/v2/configuration
check_fails "tls (negative control): plain HTTP is not served on fulcio's port" \
  guest curl -fsS http://fulcio.example.org:5555/api/v2/configuration
# sign_verify NAME TRUST_DIR: sign a fresh artifact NAME.txt, verify its bundle, and refuse it for
# a changed artifact.
sign_verify() {
  local name=$1 trust=$2
  gsh "sigstore-python signs $name.txt ($trust) and verifies the bundle; a changed artifact is refused" "
cd $BC
echo \"$name \$(date +%s%N)\" >$name.txt
export REQUESTS_CA_BUNDLE=$BC/ca.pem
tok=\$($PY idp.py mint $EMAIL); echo \"\$tok\" >>tokens
$SIGSTORE --trust-config $trust/trust-config.json sign --identity-token \"\$tok\" \
  --oidc-disable-ambient-providers --bundle $name.sigstore.json $name.txt
$SIGSTORE --trust-config $trust/trust-config.json verify identity --bundle $name.sigstore.json \
  --cert-identity $EMAIL --cert-oidc-issuer $ISSUER $name.txt
cp $name.txt $name.changed.txt; echo changed >>$name.changed.txt
! $SIGSTORE --trust-config $trust/trust-config.json verify identity --bundle $name.sigstore.json \
  --cert-identity $EMAIL --cert-oidc-issuer $ISSUER $name.changed.txt 2>/dev/null"
}
sign_verify first-v2 trust
sign_verify first-v1 trust-v1
check "bundles: the v2 one is a Rekor v2 entry with one RFC 3161 timestamp from the tsa; the v1 one a Rekor v1 entry with its SET" \
  guest $PY - <<EOF
import json
v2 = json.load(open("$BC/first-v2.sigstore.json"))["verificationMaterial"]
v1 = json.load(open("$BC/first-v1.sigstore.json"))["verificationMaterial"]
assert v2["tlogEntries"][0]["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.2"}, v2["tlogEntries"][0]["kindVersion"]
assert len(v2["timestampVerificationData"]["rfc3161Timestamps"]) == 1, v2.get("timestampVerificationData")
assert v1["tlogEntries"][0]["kindVersion"]["version"] == "0.0.1" and "inclusionPromise" in v1["tlogEntries"][0]
EOF

# --- the sandbox, checked from inside the running units ---------------------------------------------
# in_unit SVC CMD...: CMD as root, moved into the unit's cgroup (where systemd's BPF firewall for
# IPAddressDeny= is attached) and in the unit's mount namespace (where ProtectSystem= and
# ReadWritePaths= are). in_cgroup SVC CMD...: only the cgroup. Root on purpose: what root cannot
# do there, the sandbox forbids, not file permissions.
in_unit() {
  local svc=$1; shift
  local pid cg
  pid=$(unit_prop "sigvault-$svc.service" MainPID); cg=$(unit_prop "sigvault-$svc.service" ControlGroup)
  guest sh -c 'p=$1; shift; echo $$ >"/sys/fs/cgroup$0/cgroup.procs" && exec nsenter -t "$p" -m -- "$@"' "$cg" "$pid" "$@"
}
in_cgroup() {
  local svc=$1; shift
  local cg
  cg=$(unit_prop "sigvault-$svc.service" ControlGroup)
  guest sh -c 'echo $$ >"/sys/fs/cgroup$0/cgroup.procs" && exec "$@"' "$cg" "$@"
}
say "the sandbox, from inside the running units"
# ProtectSystem=strict: /etc and /usr read-only in the unit even for root; control: the same
# write from the guest's own mount namespace succeeds.
check "sandbox (control): root outside the units can write /etc/sigvault and /var/lib/sigvault/ceremony" \
  guest sh -c 'touch /etc/sigvault/.probe /var/lib/sigvault/ceremony/.probe && rm /etc/sigvault/.probe /var/lib/sigvault/ceremony/.probe'
for svc in $SERVICES; do
  check "sandbox: in sigvault-$svc, even root cannot write /etc, /usr or the ceremony record (read-only file system)" \
    bash -c "for f in /etc/sigvault/.probe /usr/bin/.probe /var/lib/sigvault/ceremony/.probe; do
      out=\$(nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c 'echo \$\$ >\"/sys/fs/cgroup\$0/cgroup.procs\" && exec nsenter -t \"\$1\" -m -- touch \"\$2\"' \
        '$(unit_prop "sigvault-$svc.service" ControlGroup)' '$(unit_prop "sigvault-$svc.service" MainPID)' \$f 2>&1) && { echo \"wrote \$f\"; exit 1; }
      grep -q 'Read-only file system' <<<\"\$out\" || { echo \"\$f: \$out\"; exit 1; }
    done"
done
check "sandbox (control): inside sigvault-tlog the token dir (ReadWritePaths=) is writable" \
  in_unit tlog sh -c 'touch /var/lib/softhsm/tokens/.probe && rm /var/lib/softhsm/tokens/.probe'
# IPAddressDeny=any + IPAddressAllow=localhost: an address outside 127.0.0.0/8 and ::1, on this
# guest's own loopback device (there is no other network), served by a listener outside the units.
guest ip addr add 10.99.0.1/32 dev lo >/dev/null 2>&1
guest systemd-run --quiet --collect --unit=boot-check-outside $PY -m http.server --bind 10.99.0.1 8099 >/dev/null 2>&1
for _ in $(seq 1 50); do guest curl -fsS -o /dev/null http://10.99.0.1:8099/ 2>/dev/null && break; sleep 0.1; done
check "sandbox (control): the guest reaches http://10.99.0.1:8099 outside any unit" \
  guest curl -fsS -o /dev/null --max-time 5 http://10.99.0.1:8099/
check "sandbox (control): from inside sigvault-fulcio (no IPAddressDeny=: it must reach the OIDC issuers) 10.99.0.1 is reachable" \
  in_cgroup fulcio curl -fsS -o /dev/null --max-time 5 http://10.99.0.1:8099/
for svc in tlog ctlog rekor rekor-v2 tsa; do
  check_fails "sandbox: from inside sigvault-$svc (IPAddressDeny=any) 10.99.0.1 is unreachable" \
    in_cgroup "$svc" curl -fsS -o /dev/null --max-time 3 http://10.99.0.1:8099/
done
check "sandbox (control): from inside sigvault-ctlog loopback (IPAddressAllow=localhost) is reachable" \
  in_cgroup ctlog curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:8090/healthz
guest systemctl stop boot-check-outside.service >/dev/null 2>&1
# SystemCallFilter=, MemoryDenyWriteExecute= (seccomp, per process) and NoNewPrivileges=: their
# filters are on the running service's main process, beyond the one systemd-nspawn puts on the
# whole guest (the guest's PID 1 carries only that one); no capabilities; its unit's user.
base_filters=$(guest awk '/^Seccomp_filters:/ {print $2}' /proc/1/status)
for svc in $SERVICES; do
  pid=$(unit_prop "sigvault-$svc.service" MainPID)
  check "sandbox: sigvault-$svc (pid $pid) runs as sigvault-$svc, no capabilities, no_new_privs, seccomp filters beyond the guest's $base_filters" \
    guest bash -c "s=/proc/$pid/status; u=\$(id -u sigvault-$svc)
      awk -v u=\$u '/^Uid:/ {exit !(\$2 == u && \$3 == u)}' \$s || { grep ^Uid: \$s; exit 1; }
      grep -Eq '^CapEff:[[:space:]]+0+\$' \$s && grep -Eq '^CapBnd:[[:space:]]+0+\$' \$s && grep -Eq '^NoNewPrivs:[[:space:]]+1\$' \$s &&
      grep -Eq '^Seccomp:[[:space:]]+2\$' \$s && awk -v b=$base_filters '/^Seccomp_filters:/ {exit !(\$2 > b)}' \$s || { grep -E '^(Cap|NoNew|Seccomp)' \$s; exit 1; }"
done

# --- token custody (README step 2): each service opens its own tokens only -------------------------
say "token custody: the root token is off the appliance, each service sees only its own tokens"
labels_as() { # labels_as SVC: the token labels the unit's user, with its unit's groups, sees
  local svc=$1 groups
  groups=$(unit_prop "sigvault-$svc.service" SupplementaryGroups | tr ' ' ',')
  in_unit "$svc" setpriv --reuid="sigvault-$svc" --regid="$(unit_prop "sigvault-$svc.service" Group)" \
    --groups="$groups" --inh-caps=-all env SOFTHSM2_CONF=/etc/softhsm/softhsm2.conf softhsm2-util --show-slots 2>/dev/null |
    sed -n 's/^[[:space:]]*Label:[[:space:]]*\(sigvault-[a-z0-9-]*\).*/\1/p' | sort | tr '\n' ' '
}
check "custody: root sees the five online tokens, not sigvault-root (exported to offline custody)" \
  bash -c "[ \"\$(nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin softhsm2-util --show-slots | sed -n 's/^[[:space:]]*Label:[[:space:]]*\(sigvault-[a-z0-9-]*\).*/\1/p' | sort | tr '\n' ' ')\" = 'sigvault-ctlog sigvault-issuing-ca sigvault-rekor sigvault-tlog sigvault-tsa ' ] && test -s '$ROOT/root/offline/sigvault-root-token.tar'"
for pair in "fulcio:sigvault-issuing-ca " "ctlog:sigvault-ctlog " "rekor:sigvault-rekor " "tsa:sigvault-tsa " \
    "tlog:sigvault-rekor sigvault-tlog " "rekor-v2:"; do
  svc=${pair%%:*}; want=${pair#*:}
  got=$(labels_as "$svc")
  check "custody: inside sigvault-$svc, its user sees exactly [${want% }]" test "$got" = "$want"
done
tlog_pin=$(cat "$ROOT/etc/sigvault/credentials/tlog-pin")
p11_as() { # p11_as SVC: log in to the tlog's token with its PIN as SVC's unit user and groups
  in_unit "$1" setpriv --reuid="sigvault-$1" --regid="$(unit_prop "sigvault-$1.service" Group)" \
    --groups="$(unit_prop "sigvault-$1.service" SupplementaryGroups | tr ' ' ',')" --inh-caps=-all \
    env SOFTHSM2_CONF=/etc/softhsm/softhsm2.conf TLOG_PIN="$tlog_pin" pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so \
    --token-label sigvault-tlog --login --pin env:TLOG_PIN --list-objects --type privkey
}
check "custody (control): the tlog logs in to its token with its PIN and finds its keys" p11_as tlog
check_fails "custody: fulcio, given the tlog's PIN, cannot open the tlog's token" p11_as fulcio
check_fails "custody: rekor, given the tlog's PIN, cannot open the tlog's token" p11_as rekor

# --- reload: ExecReload= inside the sandbox; the same process reads its config again ----------------
say "systemctl reload of the units that reload: the same main process, its config read again"
reloaded() { # reloaded SVC REGEX: systemctl reload; then the same MainPID, active, and REGEX in its journal
  local pid i
  pid=$(unit_prop "sigvault-$1.service" MainPID)
  guest systemctl reload "sigvault-$1.service" || return 1
  for i in $(seq 1 50); do
    guest journalctl -u "sigvault-$1.service" -o cat --no-pager | grep -Eq "$2" && break
    sleep 0.2
  done
  guest journalctl -u "sigvault-$1.service" -o cat --no-pager | grep -E "$2" || return 1
  [ "$(unit_prop "sigvault-$1.service" MainPID)" = "$pid" ] || { echo "a new main process: not a reload"; return 1; }
  [ "$(unit_prop "sigvault-$1.service" ActiveState)" = active ]
}
check "reload: sigvault-tlog reads tlog.toml again (nothing changed), the same process" reloaded tlog "reloaded .*tlog.toml: nothing changed"
check "reload: sigvault-rekor reads rekor.toml again, the same process" reloaded rekor "reloaded .*rekor.toml: uploads go to its active shard"
check "reload: sigvault-fulcio reads fulcio.toml again, the same process" reloaded fulcio "reloaded .*fulcio.toml: new requests use this CA"
check "reload: sigvault-tsa reads tsa.toml again, the same process" reloaded tsa "reloaded .*tsa.toml: new requests use its key"
sign_verify after-reload-v1 trust-v1
gsh "a second CT log from the template unit: sigvault-ctlog@2 serves /etc/sigvault/ctlog-2.toml (here the same tree, on :6963), as its own user" '
cd /etc/sigvault
sed -e "s|^listen = .*|listen = \"127.0.0.1:6963\"|" ctlog.toml >ctlog-2.toml
systemctl start sigvault-ctlog@2.service
for i in $(seq 1 50); do curl -fsS http://127.0.0.1:6963/sigvault/ct/v1/get-sth >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS http://127.0.0.1:6963/sigvault/ct/v1/get-sth | grep -q "\"tree_size\""
[ "$(systemctl show -P User sigvault-ctlog@2.service)" = sigvault-ctlog ]
systemctl show -P ExecStart sigvault-ctlog@2.service | grep -q "ctlog-2.toml"
systemctl stop sigvault-ctlog@2.service
rm ctlog-2.toml'

# --- SIGKILL: systemd restarts each service, and signing works again ---------------------------------
say "systemctl kill -s SIGKILL each service: systemd restarts it"
declare -A OLD_PID OLD_N
for svc in $SERVICES; do
  OLD_PID[$svc]=$(unit_prop "sigvault-$svc.service" MainPID); OLD_N[$svc]=$(unit_prop "sigvault-$svc.service" NRestarts)
done
for svc in $SERVICES; do guest systemctl kill -s SIGKILL "sigvault-$svc.service"; done
restarted() { # every service has a new main process, one more restart, and is active again
  local svc rc=0 i
  for i in $(seq 1 60); do
    rc=0
    for svc in $SERVICES; do
      [ "$(unit_prop "sigvault-$svc.service" ActiveState)" = active ] \
        && [ "$(unit_prop "sigvault-$svc.service" MainPID)" != "${OLD_PID[$svc]}" ] \
        && [ "$(unit_prop "sigvault-$svc.service" NRestarts)" -gt "${OLD_N[$svc]}" ] || rc=1
    done
    [ $rc = 0 ] && return 0
    sleep 1
  done
  for svc in $SERVICES; do echo "sigvault-$svc: $(guest systemctl show -p ActiveState,SubState,MainPID,NRestarts,Result "sigvault-$svc.service" | tr '\n' ' ')"; done
  return 1
}
t_kill=$(date +%s)
check "restart: after SIGKILL all six are active again, each with a new main process and NRestarts+1 (Restart=on-failure)" restarted
say "restarted in $(($(date +%s) - t_kill)) s"
# The killed tlog could not hand its sequencer leases over, but the new process holds them under
# the same name (kept in its StateDirectory, claimed by a lock there), so it renews them at once
# rather than standing by until they expire (lease_ttl_ms, 10 s in tlog.toml). Signing waits for
# the tlog's /readyz to report every tree active, and the time that takes is printed (the kill
# to systemd's restart is RestartSec=5s of it).
trees_active() {
  local i r
  for i in $(seq 1 60); do
    r=$(guest curl -sS http://127.0.0.1:8090/readyz 2>&1)
    [ "$(grep -c ': active$' <<<"$r")" = 3 ] && return 0
    sleep 0.5
  done
  echo "$r"; return 1
}
check "restart: the new tlog takes over the three trees' sequencer leases (its /readyz: every tree active)" trees_active
say "the tlog sequences again $(($(date +%s) - t_kill)) s after the kill"
check "restart: the new tlog holds its leases under its lasting name (StateDirectory's instance-id)" bash -c \
  "nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin journalctl -u sigvault-tlog -o cat --no-pager | grep 'sequencer leases are held under this name' | tail -n 1 | grep -q 'lasting=true'"
sign_verify after-kill-v2 trust
sign_verify after-kill-v1 trust-v1

# --- the journal ---------------------------------------------------------------------------------
say "the journal: audit lines, and no PIN, password or token"
check "journal: fulcio's audit line for each certificate (sigvault::audit, issued a certificate, the identity)" \
  bash -c "[ \"\$(nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin journalctl -u sigvault-fulcio -o cat --no-pager | grep 'sigvault::audit' | grep 'issued a certificate' | grep -c '$EMAIL')\" -ge 4 ]"
check "journal: the tsa's audit line for each timestamp (sigvault::audit, issued a timestamp)" \
  bash -c "[ \"\$(nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin journalctl -u sigvault-tsa -o cat --no-pager | grep 'sigvault::audit' | grep -c 'issued a timestamp')\" -ge 2 ]"
guest journalctl --flush >/dev/null 2>&1
guest sh -c 'journalctl -o export --no-pager >/root/boot-check/journal.export'
check "journal (control): a marker logged now is found by the same search" \
  guest sh -c 'm=boot-check-marker-$(od -An -tx1 -N8 /dev/urandom | tr -d " \n"); echo "$m" | systemd-cat -t boot-check;
    journalctl --flush; sleep 1; journalctl -o export --no-pager | grep -qF "$m"'
check "journal: none of the PINs, SO PINs, database passwords or ID tokens appears anywhere in it" \
  guest bash -c 'cd /root/boot-check; n=$(cat secrets so-pins tokens | grep -c .); [ "$n" -ge 16 ] || { echo "only $n secrets recorded"; exit 1; }
    ! grep -aFf <(cat secrets so-pins tokens) journal.export' 
rm -f "$ROOT/root/boot-check/journal.export"

# --- power off, boot again: the stack comes back unattended ---------------------------------------
say "systemctl poweroff, then boot the same root again"
guest systemctl poweroff >/dev/null 2>&1
for _ in $(seq 1 900); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$NSPAWN_PID" 2>/dev/null; then
  bad "reboot: the guest did not power off within 90 s"; finish
fi
wait "$NSPAWN_PID"; rc=$?
NSPAWN_PID=
check "reboot: the guest powered off cleanly (systemd-nspawn exit status $rc)" test "$rc" = 0
t_boot=$(date +%s)
if boot; then ok "reboot: booted again"; else bad "reboot: the container did not start"; finish; fi
state=$(wait_booted)
check "reboot: systemctl is-system-running says running ($state)" test "$state" = running
say "booted and settled in $(($(date +%s) - t_boot)) s"
check "reboot: every sigvault service is active again, unattended (enabled, started at boot)" units_active
check "reboot: systemctl --failed lists nothing" bash -c "[ -z \"\$(nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl --failed --no-legend --plain)\" ] || { nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl --failed --no-pager; exit 1; }"
for b in first-v2 first-v1 after-kill-v2 after-kill-v1; do
  trust=trust; [ "${b%-v1}" != "$b" ] && trust=trust-v1
  check "reboot: the bundle made before ($b) still verifies" \
    guest $SIGSTORE --trust-config $BC/$trust/trust-config.json verify identity --bundle $BC/$b.sigstore.json \
      --cert-identity $EMAIL --cert-oidc-issuer $ISSUER $BC/$b.txt
done
if start_idp; then ok "reboot: the test OpenID provider is back"; else bad "reboot: the test OpenID provider did not start"; fi
sign_verify after-reboot-v2 trust
sign_verify after-reboot-v1 trust-v1

# --- backup while uploads run (README "Backups and recovery": sigvault-backup) ---------------------
# Four clients upload hashedrekord entries to Rekor v1 (HTTPS) the whole time; each 201 is
# recorded with the moment it was received, its UUID, log index and the signed checkpoint its
# inclusion proof came with (what a client holds). The mark is taken just before sigvault-backup
# starts: every entry acknowledged before it must be in the restored log.
say "sigvault-backup on the running appliance while uploads to Rekor v1 run"
cat >"$ROOT/root/boot-check/uploads.py" <<'EOF'
# uploads.py OUT STOP CA: hashedrekord uploads to Rekor v1 from 4 threads until STOP exists; one
# JSON line per 201 in OUT: {"t": ns when acknowledged, "uuid", "index", "checkpoint"}.
import base64, hashlib, http.client, json, os, ssl, sys, threading, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
out, stop, ca = sys.argv[1:4]
key = ec.generate_private_key(ec.SECP256R1())
pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
lock, f = threading.Lock(), open(out, "a")
def run(n):
    ctx = ssl.create_default_context(cafile=ca)
    c, i = None, 0
    while not os.path.exists(stop):
        i += 1
        art = f"upload {n} {i} {time.time_ns()}".encode()
        sig = key.sign(art, ec.ECDSA(hashes.SHA256()))
        body = json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(art).hexdigest()}},
            "signature": {"content": base64.b64encode(sig).decode(),
                          "publicKey": {"content": base64.b64encode(pem).decode()}}}})
        try:
            c = c or http.client.HTTPSConnection("rekor.example.org", 3000, context=ctx, timeout=10)
            c.request("POST", "/api/v1/log/entries", body, {"Content-Type": "application/json"})
            r = c.getresponse(); data = r.read()
        except Exception:
            c = None; time.sleep(0.1); continue
        if r.status != 201:
            time.sleep(0.05); continue
        t = time.time_ns()
        (uuid, e), = json.loads(data).items()
        line = json.dumps({"t": t, "uuid": uuid, "index": e["logIndex"],
                           "checkpoint": e["verification"]["inclusionProof"]["checkpoint"]})
        with lock:
            f.write(line + "\n"); f.flush()
threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
EOF
guest rm -f $BC/uploads.jsonl $BC/uploads.stop
guest systemd-run --quiet --collect --unit=boot-check-uploads $PY $BC/uploads.py $BC/uploads.jsonl $BC/uploads.stop $BC/ca.pem >/dev/null 2>&1
acks() { guest sh -c "cat $BC/uploads.jsonl 2>/dev/null | wc -l"; }
for _ in $(seq 1 100); do [ "$(acks)" -ge 50 ] && break; sleep 0.2; done
check "backup: the upload loop has its first 50 acknowledgments ($(acks))" test "$(acks)" -ge 50
# The mark, then the checkpoints of the three trees as clients hold them at that moment.
MARK=$(guest date +%s%N)
for tree in rekor ctlog rekor-v2-2026; do
  guest sh -c "curl -fsS http://127.0.0.1:8090/$tree/checkpoint >$BC/held-$tree.cp"
done
t_backup=$(date +%s%N)
gsh "backup: sigvault-backup /root/sigvault-backup.tar.gz while the uploads run" \
  'sigvault-backup /root/sigvault-backup.tar.gz'
MARK_END=$(guest date +%s%N)
say "sigvault-backup took $((($(date +%s%N) - t_backup) / 1000000)) ms"
acks_during=$(acks)
sleep 2
guest touch $BC/uploads.stop
for _ in $(seq 1 100); do [ "$(unit_prop boot-check-uploads.service ActiveState)" = active ] || break; sleep 0.1; done
check "backup: the upload loop went on during the backup and stopped afterwards ($(acks) acknowledgments, $acks_during when the backup ended)" \
  bash -c "[ '$(unit_prop boot-check-uploads.service ActiveState)' != active ] && [ $(acks) -gt $acks_during ]"
check "backup: the archive is mode 0600, root's, and holds the manifest, the users, the dump and the files" \
  guest bash -c 'a=/root/sigvault-backup.tar.gz; [ "$(stat -c %a:%U $a)" = 600:root ] && [ "$(tar -tzf $a | sort | tr "\n" " ")" = "MANIFEST databases.sql.gz files.tar users.sql " ]'
check "backup: the files hold the token dir, the ceremony record, configs, credentials and the guard's records" \
  guest bash -c 'd=$(mktemp -d); tar -C $d -xzf /root/sigvault-backup.tar.gz files.tar; l=$(tar -tf $d/files.tar); rm -rf $d
    for p in etc/sigvault/tlog.toml etc/sigvault/credentials/tlog-pin etc/sigvault/credentials/tlog-db-url etc/sigvault/tls/appliance.pem \
        var/lib/sigvault/ceremony/transcript.json var/lib/softhsm/tokens/ var/lib/sigvault-tlog/rekor.head etc/mysql/mariadb.conf.d/60-sigvault.cnf; do
      grep -q "^$p" <<<"$l" || { echo "missing $p"; exit 1; }; done'
# The acknowledgments, split at the mark; the newest checkpoint any client was given.
# "During": acknowledged after the mark and before sigvault-backup returned; "late": after it
# returned (the loop runs 2 s more, as an appliance goes on after its backup).
guest $PY - "$MARK" "$MARK_END" <<EOF
import json, sys
mark, end = int(sys.argv[1]), int(sys.argv[2])
acks = [json.loads(l) for l in open("$BC/uploads.jsonl")]
json.dump([a for a in acks if a["t"] < mark], open("$BC/acks-before.json", "w"))
json.dump([a for a in acks if mark <= a["t"] < end], open("$BC/acks-during.json", "w"))
json.dump([a for a in acks if a["t"] >= end], open("$BC/acks-late.json", "w"))
json.dump(acks, open("$BC/acks-all.json", "w"))
newest = max(acks, key=lambda a: int(a["checkpoint"].split("\n")[1]))
open("$BC/held-rekor-newest.cp", "w").write(newest["checkpoint"])
EOF
N_BEFORE=$(guest $PY -c "import json; print(len(json.load(open('$BC/acks-before.json'))))")
N_DURING=$(guest $PY -c "import json; print(len(json.load(open('$BC/acks-during.json'))))")
N_LATE=$(guest $PY -c "import json; print(len(json.load(open('$BC/acks-late.json'))))")
say "uploads: $N_BEFORE acknowledged before the backup began, $N_DURING while it ran, $N_LATE after it ended"
# A move without loss: the same appliance backed up again with its services stopped (the
# rollback guard writes its records at shutdown); restored into a third root below.
gsh "backup: with the services stopped (a move): systemctl stop sigvault.target; sigvault-backup /root/sigvault-stopped.tar.gz" '
systemctl stop sigvault.target
sigvault-backup /root/sigvault-stopped.tar.gz'

# --- apt-get purge: keys and the ceremony record stay -----------------------------------------------
say "apt-get purge sigvault on the running appliance"
tokens_sum() { guest sh -c 'find /var/lib/softhsm/tokens -type f ! -name "*.lock" | sort | xargs sha256sum | sha256sum'; }
keys_before=$(tokens_sum)
ceremony_before=$(guest sh -c 'cd /var/lib/sigvault/ceremony && sha256sum * | sha256sum')
gsh "purge: apt-get purge -y sigvault" 'apt-get purge -y sigvault'
check "purge: no sigvault unit is loaded or running any more" \
  bash -c "! nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl list-units --all --no-legend --plain 'sigvault*' | grep -Ev ' not-found (inactive|failed) ' | grep ."
check "purge: no sigvault process is left" bash -c "! nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin pgrep -x sigvault"
check "purge: the HSM tokens are untouched (same files, same contents)" test "$keys_before" = "$(tokens_sum)"
check "purge: the ceremony record is untouched" \
  test "$ceremony_before" = "$(guest sh -c 'cd /var/lib/sigvault/ceremony && sha256sum * | sha256sum')"
check "purge: the credentials are kept" guest test -s /etc/sigvault/credentials/fulcio-pin
check "purge: the logs' database is kept" guest mariadb -e 'SELECT 1 FROM sigvault_tlog.entries LIMIT 1'

# --- restore into a second fresh root (README "Backups and recovery": sigvault-restore) -------------
# The first guest powers off; a new root from the same cached tarball gets the package (README
# step 1, nothing else) and the archive, and sigvault-restore puts the appliance back there. The
# check's own client side comes along: its private CA, its OpenID provider's key, the trust
# files, the acknowledgments and the checkpoints the clients hold.
# fresh_root DIR HOSTNAME WHAT: the running guest powered off and its root removed, a fresh one
# from the cache at $WORK/DIR with the .deb and what $CARRY holds, booted, the .deb installed.
fresh_root() {
  local dir=$1 host=$2 what=$3 old=$ROOT
  guest systemctl poweroff >/dev/null 2>&1
  for _ in $(seq 1 900); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
  stop_container
  ROOT=$WORK/$dir
  mkdir -p "$ROOT"
  check "$what: a fresh root unpacked from the cache" tar -xzf "$TARBALL" -C "$ROOT" --numeric-owner
  cp "$DEB" "$ROOT/root/sigvault_amd64.deb"
  cp "$CARRY/hosts" "$ROOT/etc/hosts"
  echo "$host" >"$ROOT/etc/hostname"
  rm -f "$ROOT/etc/machine-id"; : >"$ROOT/etc/machine-id"
  cp -a "$CARRY"/*.tar.gz "$CARRY/boot-check" "$ROOT/root/"
  rm -rf --one-file-system "$old"   # done with (nothing is mounted under it any more)
  if boot; then ok "$what: the fresh root booted"; else bad "$what: the fresh root did not start"; finish; fi
  state=$(wait_booted)
  check "$what: systemctl is-system-running says running ($state)" test "$state" = running
  gsh "$what: apt-get install ./sigvault.deb on the fresh root (README step 1, nothing else)" '
cd /root && apt-get install -y ./sigvault_amd64.deb
systemctl is-active mariadb.service'
}
say "restore: power off the first guest; a second fresh root from the cache"
CARRY=$WORK/carry
mkdir -p "$CARRY"
cp -a "$ROOT"/root/sigvault-*.tar.gz "$ROOT/root/boot-check" "$ROOT/etc/hosts" "$CARRY/"
fresh_root root2 sigvault-restored restore
t_restore=$(date +%s)
# The checkpoints given: the three trees' as the clients held them at the mark, and the newest
# one any client was given (what a monitor would have fetched last).
guest bash -c 'cd /root; sigvault-restore /root/sigvault-backup.tar.gz --checkpoint boot-check/held-rekor-newest.cp \
  --checkpoint boot-check/held-rekor.cp --checkpoint boot-check/held-ctlog.cp --checkpoint boot-check/held-rekor-v2-2026.cp' \
  >"$WORK/restore.log" 2>&1
restore_rc=$?
say "sigvault-restore exited $restore_rc after $(($(date +%s) - t_restore)) s:"
indent <"$WORK/restore.log"
check "restore: sigvault-restore restored and started the appliance (exit 0, or 3: a tree held back)" \
  bash -c "[ $restore_rc = 0 ] || [ $restore_rc = 3 ]"
check "restore: every sigvault service is Type=notify and active (running)" units_active
check "restore: systemctl --failed lists nothing" bash -c "[ -z \"\$(nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl --failed --no-legend --plain)\" ] || { nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl --failed --no-pager; exit 1; }"
check "restore: the tokens came back with their custody (each service sees only its own)" \
  bash -c "[ '$(labels_as tlog)' = 'sigvault-rekor sigvault-tlog ' ] && [ '$(labels_as fulcio)' = 'sigvault-issuing-ca ' ] && [ '$(labels_as rekor-v2)' = '' ]"

# Every entry acknowledged before the backup began: found by its UUID and at its index, its
# body's leaf hash in the restored tree by its inclusion proof, under a checkpoint that verifies
# with the ceremony's rekor.pub.pem. The ones acknowledged after: counted, found or lost.
cat >"$CARRY/boot-check/check-acks.py" <<'EOF'
import base64, hashlib, json, ssl, sys, urllib.error, urllib.request
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
acks, mode = json.load(open(sys.argv[1])), sys.argv[2]
ctx = ssl.create_default_context(cafile="/root/boot-check/ca.pem")
pub = serialization.load_pem_public_key(open("/var/lib/sigvault/ceremony/rekor.pub.pem", "rb").read())
R = "https://rekor.example.org:3000/api/v1/log/entries"
H = lambda b: hashlib.sha256(b).digest()
def get(url):
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
def root_from(index, size, leaf, path):  # RFC 9162 2.1.3.2
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise AssertionError("proof too long")
        if fn & 1 or fn == sn:
            r = H(b"\x01" + p + r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1; sn >>= 1
        else:
            r = H(b"\x01" + r + p)
        fn >>= 1; sn >>= 1
    assert sn == 0, "proof too short"
    return r
def checkpoint_ok(cp):
    body, sig = cp.split("\n\n", 1)
    raw = base64.b64decode(sig.strip().split(" ")[-1])
    pub.verify(raw[4:], (body + "\n").encode(), ec.ECDSA(hashes.SHA256()))
    lines = body.split("\n")
    return int(lines[1]), base64.b64decode(lines[2])
found = lost = 0
for a in acks:
    got = get(f"{R}/{a['uuid']}")
    if got is None:
        assert mode == "after", f"entry {a['uuid']} (index {a['index']}) acknowledged before the backup is missing"
        lost += 1
        continue
    (uuid, e), = got.items()
    assert uuid == a["uuid"] and e["logIndex"] == a["index"], (uuid, e["logIndex"], a)
    (uuid2, _), = get(f"{R}?logIndex={a['index']}").items()
    assert uuid2 == a["uuid"], f"index {a['index']} holds {uuid2}, not {a['uuid']}"
    p = e["verification"]["inclusionProof"]
    leaf = H(b"\x00" + base64.b64decode(e["body"]))
    root = root_from(p["logIndex"], p["treeSize"], leaf, [bytes.fromhex(h) for h in p["hashes"]])
    assert root.hex() == p["rootHash"], "inclusion proof does not lead to its root"
    size, cproot = checkpoint_ok(p["checkpoint"])
    assert size == p["treeSize"] and cproot == root, "checkpoint does not match the proof"
    found += 1
print(f"{found} {lost}")
EOF
cp "$CARRY/boot-check/check-acks.py" "$ROOT/root/boot-check/"
if out=$(guest $PY $BC/check-acks.py $BC/acks-before.json before 2>&1); then
  ok "restore: all $N_BEFORE entries acknowledged before the backup began are in the restored log: found by UUID and at their index, inclusion proofs and checkpoints verify with rekor.pub.pem"
else
  bad "restore: an entry acknowledged before the backup began is missing or does not verify"; indent <<<"$out" | tail -n 20
fi
during=$(guest $PY $BC/check-acks.py $BC/acks-during.json after 2>&1)
late=$(guest $PY $BC/check-acks.py $BC/acks-late.json after 2>&1)
LOST=${during#* }; LOST_LATE=${late#* }
if [[ "$during" =~ ^[0-9]+\ [0-9]+$ ]] && [[ "$late" =~ ^[0-9]+\ [0-9]+$ ]]; then
  ok "restore: of the $N_DURING acknowledged while the backup ran, ${during% *} are in the archive's snapshot and $LOST are the loss window (acknowledged after the snapshot); of the $N_LATE after it ended, ${late% *} are in it"
else
  bad "restore: the entries acknowledged after the mark could not be looked up"; indent <<<"$during$late" | tail -n 20; LOST=unknown
fi

check "restore: sigvault tlog verify passes with the checkpoints the clients held when the backup began" \
  guest env CREDENTIALS_DIRECTORY=/etc/sigvault/credentials sigvault tlog verify --config /etc/sigvault/tlog.toml \
    --checkpoint $BC/held-rekor.cp --checkpoint $BC/held-ctlog.cp --checkpoint $BC/held-rekor-v2-2026.cp

# No fork: the restored rekor tree must never be signed at a size a client holds a checkpoint
# for, with another root. When the dump lacks acknowledged entries (LOST > 0), the newest
# checkpoint a client was given is ahead of it: the audit says so, the rollback guard (its
# records came in the archive, copied after the dump) refuses to sequence the tree, and a new
# upload is refused rather than given an index that a client's checkpoint already covers.
rekor_size() { guest sh -c 'curl -fsS http://127.0.0.1:8090/rekor/checkpoint | sed -n 2p'; }
size_restored=$(rekor_size)
newest_held=$(guest sed -n 2p $BC/held-rekor-newest.cp)
guard_archived=$(guest sh -c 'tar -xzOf /root/sigvault-backup.tar.gz MANIFEST | sed -n "s/^guard rekor size \([0-9]*\) .*/\1/p"')
say "restored rekor tree: size $size_restored; the newest checkpoint a client holds: size $newest_held; lost: $LOST"
upload_one() { guest $PY - <<EOF
import base64, hashlib, json, ssl, urllib.request, urllib.error
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
k = ec.generate_private_key(ec.SECP256R1()); art = b"after the restore"
pem = k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
body = json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
    "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(art).hexdigest()}},
    "signature": {"content": base64.b64encode(k.sign(art, ec.ECDSA(hashes.SHA256()))).decode(),
                  "publicKey": {"content": base64.b64encode(pem).decode()}}}}).encode()
req = urllib.request.Request("https://rekor.example.org:3000/api/v1/log/entries", body, {"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile="$BC/ca.pem"), timeout=30) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode()[:200])
EOF
}
if [ "$size_restored" -lt "$newest_held" ]; then
  check_fails "restore: sigvault tlog verify with the newest checkpoint a client holds (size $newest_held) fails: the restored tree is behind it" \
    guest env CREDENTIALS_DIRECTORY=/etc/sigvault/credentials sigvault tlog verify --config /etc/sigvault/tlog.toml \
      --checkpoint $BC/held-rekor-newest.cp
  check "restore: the rollback guard refuses to sequence the restored rekor tree, up to the newest checkpoint given to sigvault-restore (size $newest_held; tlog /readyz)" \
    bash -c "nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin curl -sS http://127.0.0.1:8090/readyz | grep -E '^tree rekor: refused: .*signed checkpoints up to size $newest_held, but the database holds only $size_restored entries'"
  check "restore: the guard's record in the archive alone (size $guard_archived, copied after the dump) is ahead of the restored tree (size $size_restored)" \
    bash -c "[ -n '$guard_archived' ] && [ '$guard_archived' -gt '$size_restored' ]"
  check "restore: sigvault-restore said so (exit 3, the held-back tree named)" \
    bash -c "[ $restore_rc = 3 ] && grep -q 'tree rekor: refused' '$WORK/restore.log'"
  r=$(upload_one)
  check "restore: a new Rekor v1 upload is refused, not logged at an index a client's checkpoint covers ($r)" \
    bash -c "[ '${r%% *}' != 201 ]"
  check "restore: the restored rekor tree has not grown (size $size_restored), so no client's checkpoint is contradicted" \
    test "$(rekor_size)" = "$size_restored"
else
  check "restore: nothing acknowledged was lost (size $size_restored >= $newest_held): the newest client checkpoint verifies too" \
    guest env CREDENTIALS_DIRECTORY=/etc/sigvault/credentials sigvault tlog verify --config /etc/sigvault/tlog.toml \
      --checkpoint $BC/held-rekor-newest.cp
  r=$(upload_one)
  check "restore: a new Rekor v1 upload is logged ($r)" test "${r%% *}" = 201
fi
# The trees nothing was appended to during the backup (the CT log's, Rekor v2's) go on: a new
# signature on the restored appliance (Fulcio, the CT log, the TSA, Rekor v2).
check "restore: the tlog sequences the ctlog and rekor-v2-2026 trees" \
  bash -c "r=\$(nsenter -t $GPID -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin curl -sS http://127.0.0.1:8090/readyz); grep -qx 'tree ctlog: active' <<<\"\$r\" && grep -qx 'tree rekor-v2-2026: active' <<<\"\$r\" || { echo \"\$r\"; exit 1; }"
if start_idp; then ok "restore: the test OpenID provider runs on the restored root"; else bad "restore: the test OpenID provider did not start"; fi
sign_verify after-restore-v2 trust
for b in first-v2 first-v1 after-reboot-v2 after-reboot-v1; do
  trust=trust; [ "${b%-v1}" != "$b" ] && trust=trust-v1
  check "restore: the bundle made on the first appliance ($b) verifies" \
    guest $SIGSTORE --trust-config $BC/$trust/trust-config.json verify identity --bundle $BC/$b.sigstore.json \
      --cert-identity $EMAIL --cert-oidc-issuer $ISSUER $BC/$b.txt
done
say "backup and restore: $N_BEFORE acknowledged before the backup began (all restored); $N_DURING while it ran ($LOST lost: the loss window); $N_LATE after it ended ($LOST_LATE lost)"

# --- a move: the backup taken with the services stopped, restored into a third fresh root ----------
say "move: the backup taken with the services stopped, restored into a third fresh root"
fresh_root root3 sigvault-moved move
t_restore=$(date +%s)
guest bash -c 'cd /root; sigvault-restore /root/sigvault-stopped.tar.gz --checkpoint boot-check/held-rekor-newest.cp' \
  >"$WORK/restore-move.log" 2>&1
move_rc=$?
say "sigvault-restore exited $move_rc after $(($(date +%s) - t_restore)) s:"
indent <"$WORK/restore-move.log"
check "move: sigvault-restore exits 0 (every tree in service)" test "$move_rc" = 0
check "move: every sigvault service is Type=notify and active (running)" units_active
check "move: the tlog sequences all three trees" trees_active
N_ALL=$(guest $PY -c "import json; print(len(json.load(open('$BC/acks-all.json'))))")
if out=$(guest $PY $BC/check-acks.py $BC/acks-all.json before 2>&1); then
  ok "move: all $N_ALL acknowledged entries are in the restored log, at their index, with verifying proofs and checkpoints (nothing lost)"
else
  bad "move: an acknowledged entry is missing or does not verify"; indent <<<"$out" | tail -n 20
fi
check "move: sigvault tlog verify passes with the newest checkpoint a client holds (size $newest_held)" \
  guest env CREDENTIALS_DIRECTORY=/etc/sigvault/credentials sigvault tlog verify --config /etc/sigvault/tlog.toml \
    --checkpoint $BC/held-rekor-newest.cp
r=$(upload_one)
check "move: a new Rekor v1 upload is logged ($r)" test "${r%% *}" = 201
check "move: the rekor tree grew past the newest checkpoint a client holds (size $(rekor_size) > $newest_held)" \
  test "$(rekor_size)" -gt "$newest_held"
if start_idp; then ok "move: the test OpenID provider runs on the third root"; else bad "move: the test OpenID provider did not start"; fi
sign_verify after-move-v2 trust
sign_verify after-move-v1 trust-v1


finish
