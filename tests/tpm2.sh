#!/usr/bin/env bash
# The whole stack on a second, different PKCS#11 implementation (tests/run.sh runs this after
# tests/e2e.sh): tpm2-pkcs11 (Debian libtpm2-pkcs11-1) over a private swtpm TPM 2.0 simulator.
#
#   tests/tpm2.sh [STATE_DIR]
#   tests/tpm2.sh --bench     only the private TPM, then the hsm_sign benchmark on a TPM token
#                             beside a SoftHSM2 one (tests/run.sh bench runs this)
#
# 1. Starts a private TPM: swtpm on free loopback ports, a private D-Bus bus and tpm2-abrmd on
#    it (the resource manager: tpm2_ptool straight on the swtpm TCTI runs out of the TPM's three
#    transient object slots creating a token), and a private tpm2-pkcs11 store.
# 2. Runs the stack with packaging/dev-stack.sh on that module: the ceremony generates every key
#    in tpm2-pkcs11 tokens made with tpm2_ptool, then tlog, Rekor v1, the CT log, Fulcio, the
#    TSA, Rekor v2 and the TUF repository sign through them; its demo signs with sigstore-python
#    and verifies with sigstore-js, and the reverse.
# 3. Checks with pkcs11-tool that each private key is sensitive, never extractable and sign-only,
#    that nothing went to SoftHSM, the clients end to end, and the HSM watchdog: the resource
#    manager killed, a signature fails, Fulcio says it is not ready and exits; brought back, the
#    restarted services sign again.
#
# Why tpm2-pkcs11 rather than opencryptoki's soft token (README.md, "Running on a real HSM"):
# everything it needs runs unprivileged-style in a private directory (the TPM state, the token
# store, the bus), so the test touches nothing of the system and can make one token per role;
# opencryptoki keeps its tokens and config under /var/lib/opencryptoki and /etc/opencryptoki and
# needs the system pkcsslotd daemon, one soft token per configured slot.
#
# SIGVAULT_BIN selects the sigvault binary (tests/run.sh passes its debug build).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
MODE=check
if [ "${1:-}" = --bench ]; then MODE=bench; shift; fi
KEEP=${1:+yes}
STATE=${1:-$(mktemp -d "${TMPDIR:-/tmp}/sigvault-tpm2.XXXXXX")}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
TPM=$STATE/tpm
MODULE=/usr/lib/x86_64-linux-gnu/libtpm2_pkcs11.so.1
started=$(date +%s)

# ok, bad, expect_ok, expect_fail, expect_fail_saying; $pass and $fail.
# shellcheck source=tests/expect.sh
. "$repo/tests/expect.sh"
die() { printf 'tests/tpm2.sh: %s\n' "$*" >&2; exit 1; }

for tool in swtpm tpm2-abrmd tpm2_ptool tpm2_getcap dbus-daemon pkcs11-tool; do
  command -v "$tool" >/dev/null || die "$tool not found: apt-get install swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0 tpm2-tools libtpm2-pkcs11-1 libtpm2-pkcs11-tools dbus-daemon opensc"
done
[ -e "$MODULE" ] || die "$MODULE not found: apt-get install libtpm2-pkcs11-1"

# --- 1. a private TPM ---------------------------------------------------------------------------
pids=()
stop_tpm() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  pids=()
}
cleanup() {
  local rc=$?
  SIGVAULT_STATE_DIR=$STATE "$repo/packaging/dev-stack.sh" down >/dev/null 2>&1 || true
  [ -z "${SWTPM_PID:-}" ] || pids+=("$SWTPM_PID")
  stop_tpm
  if [ $rc -ne 0 ] || [ $fail -ne 0 ]; then
    for l in "$STATE"/logs/*.log "$TPM"/*.log; do
      [ -f "$l" ] || continue
      echo "--- last lines of $l ---"; tail -n 15 "$l"
    done
  fi
  [ -n "$KEEP" ] || [ $rc -ne 0 ] || [ $fail -ne 0 ] || rm -rf "$STATE"
  exit $rc
}
trap cleanup EXIT

mkdir -p "$TPM/state" "$STATE/tpm2-store"
chmod 700 "$STATE" "$TPM"
# swtpm takes a port for commands and the next one for control: find a free pair.
port_pair() {
  python3 - <<'EOF'
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
EOF
}
SWTPM_PORT=$(port_pair)
swtpm socket --tpm2 --tpmstate dir="$TPM/state" \
  --server type=tcp,port="$SWTPM_PORT",bindaddr=127.0.0.1 \
  --ctrl type=tcp,port=$((SWTPM_PORT + 1)),bindaddr=127.0.0.1 \
  --flags not-need-init,startup-clear --log file="$TPM/swtpm.log" >/dev/null 2>&1 &
SWTPM_PID=$!

# A bus of our own for tpm2-abrmd (it registers on D-Bus; the system bus may not run here).
cat >"$TPM/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$TPM/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
dbus-daemon --config-file="$TPM/bus.conf" --nofork >"$TPM/dbus.log" 2>&1 &
pids+=($!)
export DBUS_SESSION_BUS_ADDRESS=unix:path=$TPM/bus
for i in $(seq 1 100); do [ -S "$TPM/bus" ] && break; [ "$i" = 100 ] && die "the private D-Bus did not start"; sleep 0.1; done

ABRMD_PID=
start_abrmd() {
  local as_root=()
  [ "$(id -u)" != 0 ] || as_root=(--allow-root)
  # tpm2-pkcs11 opens a connection per token of its store in every process that loads it (nine
  # tokens, seven processes here): the default cap of 27 connections (the most it takes is 100) refuses Fulcio's with
  # "MAX_COMMANDS exceeded" and C_Initialize fails (README.md, "Running on a real HSM").
  tpm2-abrmd --session "${as_root[@]}" --flush-all --max-connections=100 --tcti="swtpm:host=127.0.0.1,port=$SWTPM_PORT" \
    >>"$TPM/abrmd.log" 2>&1 &
  ABRMD_PID=$!
  pids+=("$ABRMD_PID")
  for i in $(seq 1 100); do
    tpm2_getcap properties-fixed >/dev/null 2>&1 && return 0
    kill -0 "$ABRMD_PID" 2>/dev/null || die "tpm2-abrmd exited during start-up"
    [ "$i" = 100 ] && die "the TPM did not answer through tpm2-abrmd within 10 s"
    sleep 0.1
  done
}
export TPM2TOOLS_TCTI=tabrmd:bus_type=session
export TPM2_PKCS11_TCTI=tabrmd:bus_type=session
export TPM2_PKCS11_STORE=$STATE/tpm2-store
start_abrmd
ok "private TPM up: swtpm on 127.0.0.1:$SWTPM_PORT, tpm2-abrmd on a private bus"
# (Output read whole before grep: grep -q stopping early fails the pipe under pipefail.)
primaries=$(tpm2_ptool listprimaries)
grep -q 'id: 1' <<<"$primaries" || tpm2_ptool init >/dev/null
expect_ok "tpm2_ptool made the store's primary key" bash -c 'p=$(tpm2_ptool listprimaries) && grep -q "id: 1" <<<"$p"'

if [ "$MODE" = bench ]; then
  # The signature rates README's "Running on a real HSM" quotes: sigvault's signer and the raw
  # C_Sign loop on a TPM token, beside the same on a SoftHSM2 token, in one run.
  printf '%s' "$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')" >"$STATE/bench.pin"
  tests/tpm2/init-token.sh sigvault-bench "$STATE/bench.pin" >/dev/null
  SIGVAULT_BENCH_SECOND_MODULE=$MODULE SIGVAULT_BENCH_SECOND_TOKEN=sigvault-bench \
    SIGVAULT_BENCH_SECOND_PIN_FILE=$STATE/bench.pin SIGVAULT_BENCH_SECOND_NAME=tpm2 \
    cargo bench --quiet --bench hsm_sign
  exit
fi

# --- 2. the stack on the TPM --------------------------------------------------------------------
export SIGVAULT_STATE_DIR=$STATE
export SIGVAULT_PKCS11_MODULE=$MODULE
export SIGVAULT_INIT_TOKEN=$repo/tests/tpm2/init-token.sh
# tpm2-pkcs11 refuses the public key's usage in the key-generation template (README.md).
export SIGVAULT_HSM_OPTIONS='public_key_usage_attributes = false'
echo "==> packaging/dev-stack.sh up on tpm2-pkcs11 (state dir $STATE)"
packaging/dev-stack.sh up
ok "dev-stack up on the TPM: ceremony, seven services, TUF; sigstore-python signed, sigstore-js verified, and the reverse"

# shellcheck disable=SC1091
. "$STATE/endpoints.env"
PY=$SIGSTORE_PYTHON
JS=("$NODE" "$repo/tests/clients/js/client.mjs")
TC=$TRUST_CONFIG
W=$STATE/tpm2-check
mkdir -p "$W"
cd "$W"

echo "==> the keys are in the TPM tokens, and only there"
expect_ok "the ceremony transcript names the tpm2-pkcs11 module" \
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); assert t["hsm_module"] == sys.argv[2], t["hsm_module"]' \
  "$CEREMONY_DIR/transcript.json" "$MODULE"
expect_ok "SoftHSM holds nothing (no token directory was made)" \
  bash -c '[ ! -d "$0/tokens" ] || [ -z "$(ls -A "$0/tokens")" ]' "$STATE"
expect_ok "the root key is P-384, the issuing CA's P-256 (openssl)" bash -c \
  'openssl x509 -in "$0/root.pem" -noout -text | grep -q "ASN1 OID: secp384r1" &&
   openssl x509 -in "$0/issuing-ca.pem" -noout -text | grep -q "ASN1 OID: prime256v1"' "$CEREMONY_DIR"
# Each role's token, the PIN file that opens it, and the key labels it must hold.
for spec in root:root-ca issuing-ca:issuing-ca ctlog:ctlog rekor:rekor tlog:tlog,rekor-v2 tsa:tsa \
    tuf-root:tuf-root tuf-targets:tuf-targets tuf-online:tuf-snapshot,tuf-timestamp; do
  role=${spec%%:*}
  labels=${spec#*:}
  token=sigvault-$role
  pkcs11-tool --module "$MODULE" --token-label "$token" --login --pin "$(cat "$STATE/secrets/$role.pin")" \
    --list-objects >"$W/$role.objects" 2>"$W/$role.objects.err" || true
  expect_ok "pkcs11-tool: token $token holds private keys {$labels}, each sensitive, never extractable, sign-only; public halves verify-only" \
    python3 - "$W/$role.objects" "$labels" <<'EOF'
import sys
text, want = open(sys.argv[1]).read(), set(sys.argv[2].split(","))
objs, cur = [], None
for line in text.splitlines():
    if not line.startswith(" "):
        cur = {"kind": line.split(";")[0].strip()}
        objs.append(cur)
    elif cur is not None and ":" in line:
        k, v = line.strip().split(":", 1)
        cur[k.strip()] = v.strip()
privs = [o for o in objs if o["kind"] == "Private Key Object"]
pubs = [o for o in objs if o["kind"] == "Public Key Object"]
assert {o.get("label") for o in privs} == want, (want, privs)
assert {o.get("label") for o in pubs} == want, (want, pubs)
for o in privs:
    access = {a.strip() for a in o.get("Access", "").split(",")}
    assert {"sensitive", "always sensitive", "never extractable"} <= access, o
    assert o.get("Usage") == "sign", o
for o in pubs:
    assert o.get("Usage") == "verify", o
assert not [o for o in objs if o["kind"] not in ("Private Key Object", "Public Key Object")], objs
EOF
done

echo "==> the clients sign through the TPM-backed services and verify"
for svc in "$FULCIO_URL" "$REKOR_URL" "${CTLOG_URL%/sigvault}" "${TSA_URL%/api/v1/timestamp}" "$REKOR_V2_URL" "$TUF_URL"; do
  expect_ok "ready: $svc/readyz" curl -fsS "$svc/readyz"
done
$ID_TOKEN_CMD >token
echo "artifact on a TPM $(date +%s%N)" >artifact.txt
cp artifact.txt tampered.txt
echo "one more line" >>tampered.txt
ID=$CERT_IDENTITY
ISS=$CERT_ISSUER
expect_ok "python sign (Fulcio, SCT from the CT log, Rekor v2, TSA)" "$PY" --trust-config "$TC" sign \
  --identity-token "$(cat token)" --oidc-disable-ambient-providers --bundle py.sigstore.json artifact.txt
expect_ok "python sign (Rekor v1)" "$PY" --trust-config "$TRUST_CONFIG_V1" sign \
  --identity-token "$(cat token)" --oidc-disable-ambient-providers --bundle py1.sigstore.json artifact.txt
expect_ok "js sign (Rekor v1, TSA)" "${JS[@]}" sign --fulcio "$FULCIO_URL" --rekor "$REKOR_URL" --tsa "$TSA_URL" \
  --token-file token --bundle js.sigstore.json artifact.txt
for b in py py1 js; do
  expect_ok "python verifies the $b bundle" "$PY" --trust-config "$TC" verify identity \
    --bundle $b.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" artifact.txt
  expect_ok "js verifies the $b bundle" "${JS[@]}" verify --trusted-root "$TRUSTED_ROOT" --bundle $b.sigstore.json \
    --identity-email "$ID" --issuer "$ISS" artifact.txt
  expect_fail "python rejects the $b bundle for a tampered artifact" "$PY" --trust-config "$TC" verify identity \
    --bundle $b.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" tampered.txt
done
expect_ok "openssl: the leaf certificate chains to the ceremony's root" python3 - py.sigstore.json "$CEREMONY_DIR" <<'EOF'
import base64, json, subprocess, sys
b = json.load(open(sys.argv[1]))
vm = b["verificationMaterial"]
der = base64.b64decode((vm.get("certificate") or vm["x509CertificateChain"]["certificates"][0])["rawBytes"])
pem = "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE-----\n"
open("leaf.pem", "w").write(pem)
d = sys.argv[2]
subprocess.run(["openssl", "verify", "-CAfile", f"{d}/root.pem", "-untrusted", f"{d}/issuing-ca.pem",
                "-purpose", "any", "leaf.pem"], check=True)
EOF
curl -fsS "$REKOR_V2_URL/checkpoint" >v2-checkpoint.txt
python3 - v2-checkpoint.txt <<'EOF'
import base64, sys
body, sig = open(sys.argv[1]).read().split("\n\n")
open("v2-cp.body", "w").write(body + "\n")
open("v2-cp.sig", "wb").write(base64.b64decode(sig.strip().split(" ")[2])[4:])
EOF
expect_ok "openssl verifies the Rekor v2 checkpoint (signed by the tlog's TPM key)" \
  openssl dgst -sha256 -verify "$CEREMONY_DIR/rekor-v2.pub.pem" -signature v2-cp.sig v2-cp.body
openssl ts -query -data artifact.txt -sha256 -cert -out ts.tsq 2>/dev/null
curl -fsS -H 'Content-Type: application/timestamp-query' --data-binary @ts.tsq "$TSA_URL" -o ts.tsr || true
expect_ok "openssl ts -verify accepts a timestamp the TSA signed in the TPM" \
  openssl ts -verify -in ts.tsr -data artifact.txt -CAfile "$CEREMONY_DIR/root.pem" -untrusted "$CEREMONY_DIR/tsa.pem"
expect_ok "tuf refresh signs the timestamp role in the TPM; tuf status: every role current" bash -c \
  '"$0" tuf refresh --config "$1" && "$0" tuf status --config "$1"' "${SIGVAULT_BIN:-$repo/target/release/sigvault}" \
  "$STATE/config/tuf.toml"

echo "==> the HSM goes away: readiness, the watchdog, and the way back"
kill -9 "$ABRMD_PID"
expect_fail "with the resource manager gone, python cannot get a certificate" "$PY" --trust-config "$TC" sign \
  --identity-token "$(cat token)" --oidc-disable-ambient-providers --overwrite --bundle gone.sigstore.json artifact.txt
code=$(curl -s -o /dev/null -w '%{http_code}' "$FULCIO_URL/readyz" || true)
if [ "$code" = 503 ] || ! kill -0 "$(cat "$STATE/run/fulcio.pid")" 2>/dev/null; then
  ok "Fulcio is not ready once its token fails (/readyz $code)"
else
  bad "Fulcio still says it is ready (/readyz $code) with its token gone"
fi
gone=
for _ in $(seq 1 300); do
  kill -0 "$(cat "$STATE/run/fulcio.pid")" 2>/dev/null || { gone=yes; break; }
  sleep 0.1
done
expect_ok "Fulcio exited within 30 s (the watchdog, [hsm] exit_after_failing_secs 10)" test -n "$gone"
expect_ok "its log names the token and why it exits" bash -c \
  'grep -q "the HSM token '\''sigvault-issuing-ca'\'' has failed every signature" "$0" &&
   grep -q "exiting so that the service is restarted" "$0"' "$STATE/logs/fulcio.log"
start_abrmd
# What systemd's Restart=on-failure does, for a minute and a half: every service that has exited
# is started again (dev-stack.sh up starts only the stopped ones). Services do not all fail at
# once: one whose session went stale without a signature in the outage fails at its next one
# once the TPM is back, and its watchdog exits it 10 s later; so the restarts are a loop, as
# under systemd, and the test ends when a signature goes through end to end.
echo "==> the services that exit are started again (what systemd's Restart= does) until signing works"
back= restarts=0
deadline=$(( $(date +%s) + 90 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  dead=
  for svc in tlog rekor ctlog fulcio tsa rekor-v2 tuf; do
    kill -0 "$(cat "$STATE/run/$svc.pid" 2>/dev/null)" 2>/dev/null || dead="$dead $svc"
  done
  if [ -n "$dead" ]; then
    restarts=$((restarts + 1))
    echo "     restarting:$dead"
    SIGVAULT_SKIP_DEMO=1 "$repo/packaging/dev-stack.sh" up >>restarts.log 2>&1 || true
    continue
  fi
  if "$PY" --trust-config "$TC" sign --identity-token "$($ID_TOKEN_CMD)" --oidc-disable-ambient-providers \
      --overwrite --bundle back.sigstore.json artifact.txt >back.log 2>&1; then
    back=yes; break
  fi
  sleep 2
done
expect_ok "python signs again after the TPM came back (after $restarts restart rounds)" test -n "$back"
[ -n "$back" ] || { tail -n 20 back.log restarts.log | sed 's/^/     | /'; }
expect_ok "js verifies that bundle" "${JS[@]}" verify --trusted-root "$TRUSTED_ROOT" --bundle back.sigstore.json \
  --identity-email "$ID" --issuer "$ISS" artifact.txt

cd "$repo"
expect_ok "dev-stack down" packaging/dev-stack.sh down
echo
echo "tpm2: $pass passed, $fail failed ($(( $(date +%s) - started )) s)"
[ $fail -eq 0 ]
