#!/usr/bin/env bash
# Key and log rotation on a running stack, checked with the stock clients (tests/e2e.sh runs it
# on its stack, after everything else; README, "Rotating keys and logs", is the runbook it
# follows).
#
#   tests/lifecycle.sh STATE_DIR [BUNDLE...]
#
# STATE_DIR is a stack packaging/dev-stack.sh brought up; the BUNDLEs are bundles clients made
# before (sigstore-python through Rekor v1 and v2, sigstore-js), signed by dev@sigvault.test.
# Each rotation is done as an operator does it: the `sigvault ceremony --rotate` command, the
# service configs edited, the service reloaded (fulcio, the TSA, the tlog and rekor: no request
# refused) or restarted (rekor-v2),
# `sigvault trust` and `sigvault tuf publish`; the clients take their trust through the TUF
# repository only. After each: every bundle held so far verifies with sigstore-python and
# sigstore-js, a bundle made after it verifies, and what the rotation changed is checked in it
# (the issuer, the TSA chain, the log). Rotated: the issuing CA (under a load of certificate
# requests, none refused and each certificate verifying), the TSA certificate (renewed) and the
# TSA key (under a load of timestamp requests, likewise), the Rekor v2 log (a new log at its own
# URL, the old one frozen), the CT log, the Rekor v1 log's shard (a new tree with a new key, the
# old tree frozen, both served as one log; under a load of uploads, every 201 found and verified
# afterwards). A certificate the retired CA issues after its window ends is refused.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
STATE=$(cd "$1" && pwd)
shift
HELD=("$@")

# ok, bad, expect_ok, expect_fail, expect_fail_saying; $pass and $fail.
# shellcheck source=tests/expect.sh
. "$repo/tests/expect.sh"

# shellcheck disable=SC1091
. "$STATE/endpoints.env"
# shellcheck disable=SC1091
. "$STATE/ports.env"
SV=${SIGVAULT_BIN:-$repo/target/release/sigvault}
CFG=$STATE/config
RUN=$STATE/run
LOGS=$STATE/logs
C=$CEREMONY_DIR
export SOFTHSM2_CONF=$STATE/softhsm2.conf
PY=$SIGSTORE_PYTHON
JS=("$NODE" "$repo/tests/clients/js/client.mjs")
CLI=("$NODE" "$repo/tests/clients/js/node_modules/@sigstore/cli/bin/run")
ID=$CERT_IDENTITY
ISS=$CERT_ISSUER
L=$STATE/lifecycle
rm -rf "$L"
mkdir -p "$L"
n=0
for b in "${HELD[@]}"; do n=$((n + 1)); cp "$b" "$L/held-0-$n.sigstore.json"; done
cd "$L"
echo "artifact for the lifecycle $(date +%s%N)" >artifact.txt

# The processes this script starts beside the stack's own (pid files in $RUN), stopped on exit.
EXTRAS="fulcio-retired ctlog-2"
cleanup() {
  local rc=$? x
  touch "$L/stop-load" "$L/stop-rk-load" 2>/dev/null || true
  for x in $EXTRAS; do
    [ -f "$RUN/$x.pid" ] && kill "$(cat "$RUN/$x.pid")" 2>/dev/null || true
    rm -f "$RUN/$x.pid"
  done
  exit $rc
}
trap cleanup EXIT

# --- the operator's steps ------------------------------------------------------------------
ceremony() { "$SV" ceremony --config "$STATE/ceremony.toml" "$@"; }
# `sigvault trust` with the arguments dev-stack.sh used, then the result published through TUF.
publish() {
  local common=(--ceremony-dir "$C" --fulcio-url "$FULCIO_URL" --rekor-url "$REKOR_URL"
    --ctlog-url "$CTLOG_URL" --oidc-url "$OIDC_ISSUER_URL" --tsa-url "$TSA_URL"
    --rekor-v2-url "$REKOR_V2_URL" --operator "sigvault development stack")
  "$SV" trust "${common[@]}" --out "$STATE" >/dev/null &&
    "$SV" trust "${common[@]}" --rekor-v2-verify-only --out "$STATE/v1only" >/dev/null &&
    "$SV" tuf publish --config "$CFG/tuf.toml" --trust-dir "$STATE" >>"$LOGS/tuf.log" 2>&1
}
wait_ready() {
  local url=$1 i
  for i in $(seq 1 150); do
    if [ "${url#unix:}" != "$url" ]; then [ -S "${url#unix:}" ] && return 0
    else curl -fsS "$url" >/dev/null 2>&1 && return 0; fi
    sleep 0.2
  done
  return 1
}
# Stop a service of the stack and start it again with its (edited) config, as systemctl
# restart would.
restart() {
  local svc=$1 ready=$2 pid
  pid=$(cat "$RUN/$svc.pid")
  kill "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  [ "$svc" = tlog ] && rm -f "$RUN/tlog.sock"
  SIGVAULT_LOG=info,sqlx=warn "$SV" "$svc" serve --config "$CFG/$svc.toml" >>"$LOGS/$svc.log" 2>&1 &
  echo $! >"$RUN/$svc.pid"
  wait_ready "$ready"
}
# Wait (up to 20 s) for a line matching the extended regex $2 in the log $1.
wait_log() {
  for _ in $(seq 1 100); do grep -Eq "$2" "$1" && return 0; sleep 0.2; done
  return 1
}
# add_tree NAME ORIGIN NOTE_NAME KEY_URI PIN: a [[tlog.trees]] table appended to tlog.toml, its
# PIN from $STATE/secrets/PIN.pin.
add_tree() {
  printf '[[tlog.trees]]\nname = "%s"\norigin = "%s"\nnote_name = "%s"\nkey = "%s"\npin = { file = "%s" }\n' \
    "$1" "$2" "$3" "$4" "$STATE/secrets/$5.pin" >>"$CFG/tlog.toml"
}
# Reload the tlog (SIGHUP, as `systemctl reload` sends) and wait for the journal line $1.
reload_tlog() {
  kill -HUP "$(cat "$RUN/tlog.pid")"
  wait_log "$LOGS/tlog.log" "reloaded .*tlog.toml: $1"
}
# An extra process (a second log, an old CA), stopped at the end.
start_extra() {
  local name=$1 svc=$2 cfg=$3 ready=$4
  SIGVAULT_LOG=info,sqlx=warn "$SV" "$svc" serve --config "$cfg" >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  wait_ready "$ready"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
spki_id() { openssl pkey -pubin -in "$1" -outform DER | openssl dgst -sha256 -binary | base64; }

# --- the clients, with trust from the TUF repository only ------------------------------------
TUFPY=(env XDG_DATA_HOME="$L/tuf-py/data" XDG_CACHE_HOME="$L/tuf-py/cache" "$PY" --instance "$TUF_URL")
TUFJS=("${CLI[@]}" verify --tuf-mirror-url "$TUF_URL" --tuf-root-path "$TUF_ROOT" --tuf-cache-path "$L/tuf-js"
  --certificate-identity-email "$ID" --certificate-issuer "$ISS")
expect_ok "python: trust-instance from the repository's first root" "${TUFPY[@]}" trust-instance "$TUF_ROOT"
phase=0
# Every bundle held so far (each phase adds the ones made in it) verifies with both clients.
verify_held() {
  local why=$1 b art
  for b in held-*.sigstore.json; do
    art=artifact.txt
    case $b in held-0-*) art=$W_ARTIFACT ;; esac
    expect_ok "$why: python verifies $b (trust through TUF)" "${TUFPY[@]}" verify identity --bundle "$b" \
      --cert-identity "$ID" --cert-oidc-issuer "$ISS" "$art"
    expect_ok "$why: js verifies $b (trust through TUF)" "${TUFJS[@]}" --blob-file "$art" "$b"
  done
}
# A bundle made now by each client, kept for every later check.
sign_new() {
  local tag=$1
  phase=$((phase + 1))
  $ID_TOKEN_CMD >token
  expect_ok "$tag: python signs (signing config through TUF)" "${TUFPY[@]}" sign --identity-token "$(cat token)" \
    --oidc-disable-ambient-providers --bundle "held-$phase-py.sigstore.json" artifact.txt
  expect_ok "$tag: js signs" "${JS[@]}" sign --fulcio "$FULCIO_URL" --rekor "$REKOR_URL" --tsa "$TSA_URL" \
    --token-file token --bundle "held-$phase-js.sigstore.json" artifact.txt
}
# FIELD of the newest python bundle: the leaf's issuer CN, its SCTs' log IDs, the tlog entry's log ID.
inspect() {
  python3 - "held-$phase-py.sigstore.json" "$1" <<'EOF'
import base64, json, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
b = json.load(open(sys.argv[1]))
vm = b["verificationMaterial"]
raw = (vm.get("certificate") or vm["x509CertificateChain"]["certificates"][0])["rawBytes"]
cert = x509.load_der_x509_certificate(base64.b64decode(raw))
what = sys.argv[2]
if what == "issuer":
    print(cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
elif what == "sct":
    scts = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    print(" ".join(base64.b64encode(s.log_id).decode() for s in scts))
elif what == "tlog":
    print(vm["tlogEntries"][0]["logId"]["keyId"])
EOF
}

W_ARTIFACT=${W_ARTIFACT:?set W_ARTIFACT to the artifact the held bundles sign}
cp "$W_ARTIFACT" "$L/held-artifact.txt"
W_ARTIFACT=$L/held-artifact.txt
verify_held "before any rotation"

echo "==> the issuing CA, rotated under a load of certificate requests"
: >load.log
rm -f stop-load
$ID_TOKEN_CMD >load-token
python3 - "$FULCIO_URL" load-token "$L/load" stop-load >load.json 2>load.log <<'EOF' &
# Certificate requests (CSRs) back to back until the stop file appears; every answer recorded.
import base64, json, os, sys, time, urllib.error, urllib.request
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
url, token, out, stop = sys.argv[1], open(sys.argv[2]).read().strip(), sys.argv[3], sys.argv[4]
os.makedirs(out, exist_ok=True)
statuses, issued = {}, 0
while not os.path.exists(stop):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    pem = csr.public_bytes(serialization.Encoding.PEM)
    body = json.dumps({"credentials": {"oidcIdentityToken": token},
                       "certificateSigningRequest": base64.b64encode(pem).decode()}).encode()
    req = urllib.request.Request(f"{url}/api/v2/signingCert", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            chain = json.load(r)["signedCertificateEmbeddedSct"]["chain"]["certificates"]
            status = r.status
    except urllib.error.HTTPError as e:
        status, chain = e.code, None
    except Exception as e:  # a refused connection is a refused request too
        status, chain = type(e).__name__, None
    statuses[str(status)] = statuses.get(str(status), 0) + 1
    if chain:
        issued += 1
        open(f"{out}/{issued}.pem", "w").write("".join(chain))
print(json.dumps({"statuses": statuses, "issued": issued}))
EOF
LOAD=$!
sth_before=$(curl -fsS "$CTLOG_URL/ct/v1/get-sth" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tree_size"])')
sleep 2
files_before=$(ls "$C" | wc -l)
expect_fail "a rotation that reuses a key label is refused" ceremony --rotate issuing-ca --label issuing-ca
expect_ok "and writes nothing" test "$(ls "$C" | wc -l)" = "$files_before"
expect_ok "ceremony --rotate issuing-ca (a new key, its certificate signed by the root token)" ceremony --rotate issuing-ca
expect_ok "the new CA's certificate chains to the root, the old one is untouched" bash -c \
  'openssl verify -CAfile "$0/root.pem" "$0/issuing-ca-2.pem" && openssl verify -CAfile "$0/root.pem" "$0/issuing-ca.pem"' "$C"
expect_ok "trust lists both CAs (the old one's window open), published through TUF" publish
expect_ok "trusted_root.json: two CAs, both open" python3 -c '
import json, sys
cas = json.load(open(sys.argv[1]))["certificateAuthorities"]
assert len(cas) == 2 and all("end" not in c["validFor"] for c in cas), cas' "$STATE/trusted_root.json"
# A reload into a config that does not load (the key and the chain disagree) is refused, and the
# running CA kept: the load below sees no error from it.
cp "$CFG/fulcio.toml" "$L/fulcio.toml.good"
sed -i -e 's|object=issuing-ca"|object=issuing-ca-2"|' "$CFG/fulcio.toml"
kill -HUP "$(cat "$RUN/fulcio.pid")"
expect_ok "a reload into a key that is not the chain's is refused, saying why" \
  wait_log "$LOGS/fulcio.log" "reload of .* refused, still serving with the CA loaded before"
expect_ok "and fulcio still serves the old chain" bash -c \
  'curl -fsS "$0/api/v1/rootCert" | openssl x509 -noout -subject | grep -v "issuing CA 2" | grep -q "issuing CA"' "$FULCIO_URL"
cp "$L/fulcio.toml.good" "$CFG/fulcio.toml"
sed -i -e 's|object=issuing-ca"|object=issuing-ca-2"|' -e "s|\"$C/issuing-ca.pem\"|\"$C/issuing-ca-2.pem\"|" "$CFG/fulcio.toml"
kill -HUP "$(cat "$RUN/fulcio.pid")"
expect_ok "after SIGHUP (systemctl reload) fulcio serves the new chain" bash -c '
for i in $(seq 1 50); do
  curl -fsS "$0/api/v1/rootCert" | openssl x509 -noout -subject | grep -q "issuing CA 2" && exit 0; sleep 0.2
done; exit 1' "$FULCIO_URL"
sleep 2
touch stop-load
wait "$LOAD" || true
echo "     load: $(cat load.json)"
expect_ok "the load: every request answered 200, through the reload (none refused)" python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); print(r)
assert set(r["statuses"]) == {"200"} and r["issued"] > 5, r' load.json
expect_ok "the load: every certificate verifies to the root, from both CAs" python3 - "$L/load" "$C" <<'EOF'
import glob, subprocess, sys, collections
seen = collections.Counter()
for f in glob.glob(f"{sys.argv[1]}/*.pem"):
    pems = open(f).read().split("-----END CERTIFICATE-----\n")[:-1]
    leaf, ca = (p + "-----END CERTIFICATE-----\n" for p in pems[:2])
    open(f + ".leaf", "w").write(leaf); open(f + ".ca", "w").write(ca)
    subprocess.run(["openssl", "verify", "-purpose", "any", "-CAfile", f"{sys.argv[2]}/root.pem",
                    "-untrusted", f + ".ca", f + ".leaf"], check=True, capture_output=True)
    seen[subprocess.run(["openssl", "x509", "-noout", "-issuer", "-in", f + ".leaf"],
                        capture_output=True, text=True, check=True).stdout.strip()] += 1
print(dict(seen))
assert len(seen) == 2, seen
EOF
expect_ok "the load: the CT log holds an entry for every certificate (chains to both CAs accepted)" python3 -c '
import glob, json, sys, urllib.request
size = json.load(urllib.request.urlopen(sys.argv[1] + "/ct/v1/get-sth"))["tree_size"]
n = len(glob.glob(sys.argv[3] + "/*.pem"))
assert size - int(sys.argv[2]) >= n, (size, sys.argv[2], n)' "$CTLOG_URL" "$sth_before" "$L/load"
sign_new "after the CA rotation"
expect_ok "the new bundle's certificate is the new CA's" bash -c '[[ "$(cat)" == *"issuing CA 2" ]]' <<<"$(inspect issuer)"
expect_ok "ceremony --retire issuing-ca (the old CA's window ends now)" ceremony --retire issuing-ca
expect_fail "a second --retire has nothing left to retire" ceremony --retire issuing-ca
expect_ok "trust with the old CA's end, published" publish
expect_ok "trusted_root.json: the old CA's window has an end, the new one's is open" python3 -c '
import json, sys
cas = json.load(open(sys.argv[1]))["certificateAuthorities"]
assert "end" in cas[0]["validFor"] and "end" not in cas[1]["validFor"], cas' "$STATE/trusted_root.json"
verify_held "after the CA rotation"

echo "==> a certificate from the retired CA, dated after its window, is refused"
OLD_PORT=$(free_port)
sed -e "s|^listen = .*|listen = \"127.0.0.1:$OLD_PORT\"|" -e 's|object=issuing-ca-2"|object=issuing-ca"|' \
  -e "s|\"$C/issuing-ca-2.pem\"|\"$C/issuing-ca.pem\"|" "$CFG/fulcio.toml" >"$CFG/fulcio-retired.toml"
sleep 1
expect_ok "a fulcio on the retired CA's key starts (the key is still in its token)" \
  start_extra fulcio-retired fulcio "$CFG/fulcio-retired.toml" "http://127.0.0.1:$OLD_PORT/readyz"
$ID_TOKEN_CMD >token
expect_ok "js signs with it" "${JS[@]}" sign --fulcio "http://127.0.0.1:$OLD_PORT" --rekor "$REKOR_URL" \
  --tsa "$TSA_URL" --token-file token --bundle retired.sigstore.json artifact.txt
expect_fail "js (trust through TUF) refuses it: issued after the CA's window ended" "${TUFJS[@]}" \
  --blob-file artifact.txt retired.sigstore.json
python3 - "$STATE/trusted_root.json" <<'EOF' >open-root.json
import json, sys
t = json.load(open(sys.argv[1]))
for ca in t["certificateAuthorities"]:
    ca["validFor"].pop("end", None)
print(json.dumps(t))
EOF
expect_ok "the control: with the old CA's window left open, js accepts the same bundle" "${JS[@]}" verify \
  --trusted-root open-root.json --bundle retired.sigstore.json --identity-email "$ID" --issuer "$ISS" artifact.txt

echo "==> the TSA: its certificate renewed, then its key rotated, each by a reload under a timestamp load"
# Timestamp requests back to back through both reloads: every one must be granted, and every
# token verify to the root (the token carries its signer's certificate: -cert).
openssl ts -query -data "$W_ARTIFACT" -sha256 -cert -out "$L/ts.tsq" 2>/dev/null
mkdir -p "$L/ts"
rm -f "$L/ts.stop"
(
  i=0
  while [ ! -e "$L/ts.stop" ]; do
    i=$((i + 1))
    code=$(curl -s -o "$L/ts/$i.tsr" -w '%{http_code}' -H 'Content-Type: application/timestamp-query' \
      --data-binary @"$L/ts.tsq" "$TSA_URL") || code="conn-$code"
    echo "$i $code" >>"$L/ts/codes"
  done
) &
TS_LOAD=$!
# A reload that has taken: the served chain is the one wanted.
tsa_serves() {
  for _ in $(seq 1 50); do
    curl -fsS "$TSA_URL/certchain" | cmp -s - <(cat "$@") && return 0
    sleep 0.2
  done
  return 1
}
sleep 1
expect_fail "--renew is for the TSA only" ceremony --rotate issuing-ca --renew
expect_ok "ceremony --rotate tsa --renew (a new certificate, the same key)" ceremony --rotate tsa --renew
cp "$CFG/tsa.toml" "$L/tsa.toml.good"
sed -i -e 's|object=tsa"|object=no-such-key"|' "$CFG/tsa.toml"
kill -HUP "$(cat "$RUN/tsa.pid")"
expect_ok "a TSA reload into a key that does not exist is refused, saying why" \
  wait_log "$LOGS/tsa.log" "reload of .* refused, still serving with the TSA loaded before"
expect_ok "and the TSA still serves its first chain" tsa_serves "$C/tsa.pem" "$C/root.pem"
cp "$L/tsa.toml.good" "$CFG/tsa.toml"
sed -i "s|\"$C/tsa.pem\"|\"$C/tsa-2.pem\"|" "$CFG/tsa.toml"
kill -HUP "$(cat "$RUN/tsa.pid")"
expect_ok "after SIGHUP (systemctl reload) the TSA serves the renewed chain" tsa_serves "$C/tsa-2.pem" "$C/root.pem"
expect_ok "publish (two TSA certificates)" publish
sign_new "after the TSA renewal"
expect_ok "ceremony --rotate tsa (a new key and certificate)" ceremony --rotate tsa
sed -i -e 's|object=tsa"|object=tsa-3"|' -e "s|\"$C/tsa-2.pem\"|\"$C/tsa-3.pem\"|" "$CFG/tsa.toml"
kill -HUP "$(cat "$RUN/tsa.pid")"
expect_ok "after SIGHUP the TSA serves the new key's chain" tsa_serves "$C/tsa-3.pem" "$C/root.pem"
expect_ok "publish (three TSA certificates)" publish
sleep 1
touch "$L/ts.stop"
wait "$TS_LOAD" || true
ts_total=$(wc -l <"$L/ts/codes")
ts_granted=$(grep -c ' 200$' "$L/ts/codes" || true)
echo "     timestamp load: $ts_total requests through two reloads, $ts_granted granted"
expect_ok "the timestamp load: every request granted through both reloads (none refused)" \
  test "$ts_total" -gt 0 -a "$ts_total" = "$ts_granted"
expect_ok "every token verifies to the root (openssl ts -verify), from all three certificates" bash -c '
L=$0 C=$1; declare -A seen
for r in "$L"/ts/*.tsr; do
  openssl ts -verify -in "$r" -queryfile "$L/ts.tsq" -CAfile "$C/root.pem" >/dev/null 2>&1 || { echo "bad: $r"; exit 1; }
  s=$(openssl ts -reply -in "$r" -token_out 2>/dev/null | openssl pkcs7 -inform DER -print_certs 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null)
  seen[$s]=1
done
echo "signer certificates seen: ${#seen[@]}"; [ "${#seen[@]}" = 3 ]' "$L" "$C"
sign_new "after the TSA key rotation"
expect_ok "ceremony --retire tsa (generations 1 and 2 end now)" ceremony --retire tsa
expect_ok "publish" publish
expect_ok "trusted_root.json: three TSAs, the first two ended" python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["timestampAuthorities"]
assert [("end" in a["validFor"]) for a in t] == [True, True, False], t' "$STATE/trusted_root.json"
verify_held "after the TSA rotations"

echo "==> Rekor v2: a new log at its own URL, the old one frozen and still served"
V2_NEW=$REKOR_V2_URL/log2
V2_START=$(date -u -d '+6 seconds' +%FT%TZ)
expect_ok "ceremony --rotate rekor-v2 --url $V2_NEW --start $V2_START" \
  ceremony --rotate rekor-v2 --url "$V2_NEW" --start "$V2_START"
add_tree rekor-v2-2 "${V2_NEW#http://}" "${V2_NEW#http://}" "pkcs11:token=sigvault-tlog;object=rekor-v2-2" tlog
expect_ok "the tlog reloaded with the new tree (SIGHUP, no restart)" reload_tlog "tree 'rekor-v2-2' added"
cat >>"$CFG/rekor-v2.toml" <<EOF
[[rekor_v2.logs]]
url = "$V2_NEW"
tree = "rekor-v2-2"
public_key_file = "$C/rekor-v2-2.pub.pem"
EOF
expect_ok "rekor-v2 restarted serving both logs" restart rekor-v2 "http://127.0.0.1:$REKOR_V2_PORT/readyz"
expect_ok "publish (the signing config names the new log from $V2_START)" publish
expect_ok "signing_config.json: the old v2 log until the new one's start, the new one from it" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["rekorTlogUrls"]
v2 = [u for u in s if u["majorApiVersion"] == 2]
assert v2[0]["url"] == sys.argv[2] and v2[0]["validFor"] == {"start": sys.argv[3]}, v2
assert v2[1]["validFor"]["end"] == sys.argv[3], v2' "$STATE/signing_config.json" "$V2_NEW" "$V2_START"
while [ "$(date -u +%s)" -le "$(date -u -d "$V2_START" +%s)" ]; do sleep 0.5; done
sign_new "after the Rekor v2 rotation"
expect_ok "the new python bundle is an entry of the new v2 log" test "$(inspect tlog)" = "$(spki_id "$C/rekor-v2-2.pub.pem")"
sed -i '/^name = "rekor-v2"$/a frozen = true' "$CFG/tlog.toml"
expect_ok "the tlog reloaded with the old v2 tree frozen" reload_tlog "tree 'rekor-v2' frozen at size [0-9]"
expect_ok "the old v2 log still serves its checkpoint" curl -fsS "$REKOR_V2_URL/checkpoint"
# A well-formed request (the first python bundle's signature, sent again) gets the frozen log's 403.
python3 - held-0-1.sigstore.json >v2-request.json <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))
vm, ms = b["verificationMaterial"], b["messageSignature"]
cert = (vm.get("certificate") or vm["x509CertificateChain"]["certificates"][0])["rawBytes"]
print(json.dumps({"hashedRekordRequestV002": {"digest": ms["messageDigest"]["digest"], "signature": {
    "content": ms["signature"], "verifier": {"x509Certificate": {"rawBytes": cert},
                                             "keyDetails": "PKIX_ECDSA_P256_SHA_256"}}}}))
EOF
expect_ok "and refuses new entries (403)" bash -c \
  'test "$(curl -s -o /dev/null -w "%{http_code}" -X POST -H "Content-Type: application/json" -d @v2-request.json "$0/api/v2/log/entries")" = 403' \
  "$REKOR_V2_URL"
expect_ok "ceremony --retire rekor-v2" ceremony --retire rekor-v2
expect_ok "publish" publish
verify_held "after the Rekor v2 rotation"

echo "==> the CT log: a new log with a new key, fulcio moved to it by a reload"
CT2_PORT=$(free_port)
CT2_URL=http://127.0.0.1:$CT2_PORT/sigvault2
expect_ok "ceremony --rotate ctlog --url $CT2_URL" ceremony --rotate ctlog --url "$CT2_URL"
add_tree ctlog-2 "127.0.0.1:$CT2_PORT/sigvault2" "127.0.0.1:$CT2_PORT" "pkcs11:token=sigvault-tlog;object=tlog" tlog
expect_ok "the tlog reloaded with the new CT tree" reload_tlog "tree 'ctlog-2' added"
sed -e "s|^listen = .*|listen = \"127.0.0.1:$CT2_PORT\"|" -e 's|^prefix = .*|prefix = "sigvault2"|' \
  -e 's|object=ctlog"|object=ctlog-2"|' -e "s|$C/ctlog.pub.pem|$C/ctlog-2.pub.pem|" \
  -e 's|^tree = .*|tree = "ctlog-2"|' "$CFG/ctlog.toml" >"$CFG/ctlog-2.toml"
expect_ok "the new CT log serves" start_extra ctlog-2 ctlog "$CFG/ctlog-2.toml" "http://127.0.0.1:$CT2_PORT/readyz"
expect_ok "publish (both CT logs)" publish
sed -i -e "s|^ct_log_url = .*|ct_log_url = \"$CT2_URL\"|" -e "s|$C/ctlog.pub.pem|$C/ctlog-2.pub.pem|" "$CFG/fulcio.toml"
kill -HUP "$(cat "$RUN/fulcio.pid")"
sleep 1
sign_new "after the CT log rotation"
expect_ok "the new certificate's SCT is the new CT log's" test "$(inspect sct)" = "$(spki_id "$C/ctlog-2.pub.pem")"
expect_ok "ceremony --retire ctlog" ceremony --retire ctlog
expect_ok "publish" publish
echo "==> Rekor v1: a new shard (a new tree, a new key), uploads running through the rotation"
RK_TREE_ID=4713958286125066221
rm -f stop-rk-load
python3 "$repo/tests/rekor-shard/load.py" "$REKOR_URL" "$L/rk-load" stop-rk-load >rk-load.json 2>rk-load.log &
RKLOAD=$!
sleep 2
files_before=$(ls "$C" | wc -l)
expect_fail "a shard rotation that reuses the Rekor key's label is refused" ceremony --rotate rekor --label rekor
expect_fail "a shard takes no --url (it is served at the log's)" ceremony --rotate rekor --url "$REKOR_URL/2"
expect_ok "and neither writes anything" test "$(ls "$C" | wc -l)" = "$files_before"
expect_ok "ceremony --rotate rekor (a new key in the Rekor token)" ceremony --rotate rekor
files_before=$(ls "$C" | wc -l)
expect_fail "the new key's label, asked for again, is refused" ceremony --rotate rekor --label rekor-2
expect_ok "and writes nothing" test "$(ls "$C" | wc -l)" = "$files_before"
expect_ok "publish (both Rekor v1 keys, the old one's window open)" publish
expect_ok "trusted_root.json: two Rekor v1 keys at the one URL, their own log IDs" python3 -c '
import json, sys
t = [l for l in json.load(open(sys.argv[1]))["tlogs"] if l["baseUrl"] == sys.argv[2]]
assert len(t) == 2 and len({l["logId"]["keyId"] for l in t}) == 2, t
assert "end" not in t[0]["publicKey"]["validFor"], t' "$STATE/trusted_root.json" "$REKOR_URL"
# The tlog: the old tree frozen (an upload in flight is either committed before, and answered
# 201, or refused), the new tree signed with the new key. Rekor: the new tree active, the old one
# an inactive shard (it refuses to start while that tree is not frozen, so the tlog goes first).
# Both are reloaded (SIGHUP, what `systemctl reload` sends), not restarted: an upload the frozen
# tree refuses waits in rekor for its reload and goes to the new shard, so none is refused.
cp "$CFG/tlog.toml" "$L/tlog.toml.good"
sed -i '/^name = "rekor"$/a frozen = true' "$CFG/tlog.toml"
add_tree rekor-2 "127.0.0.1:$REKOR_PORT - $RK_TREE_ID" "127.0.0.1:$REKOR_PORT" "pkcs11:token=sigvault-rekor;object=rekor-2" rekor
cp "$CFG/tlog.toml" "$L/tlog.toml.next"
cp "$CFG/rekor.toml" "$L/rekor.toml.before"
sed -i -e 's|^key = "pkcs11:token=sigvault-rekor;object=rekor"$|key = "pkcs11:token=sigvault-rekor;object=rekor-2"|' \
  -e "s|^public_key_file = .*|public_key_file = \"$C/rekor-2.pub.pem\"|" -e "s|^tree_id = 1$|tree_id = $RK_TREE_ID|" \
  -e 's|^tree = "rekor"$|tree = "rekor-2"|' "$CFG/rekor.toml"
cp "$CFG/rekor.toml" "$L/rekor.toml.dropped"
cat >>"$CFG/rekor.toml" <<EOF
[[rekor.inactive_shards]]
tree = "rekor"
tree_id = 1
key = "pkcs11:token=sigvault-rekor;object=rekor"
public_key_file = "$C/rekor.pub.pem"
EOF
cp "$CFG/rekor.toml" "$L/rekor.toml.next"
expect_ok "check-config: rekor.toml with the shard" "$SV" check-config "$CFG/rekor.toml"
sed -e "s|^listen = .*|listen = \"127.0.0.1:$(free_port)\"|" "$CFG/rekor.toml" >"$L/rekor-early.toml"
expect_ok "rekor on the new shard refuses to start while the old tree is not frozen (the tlog goes first)" bash -c '
! out=$(timeout 30 "$0" rekor serve --config "$1" 2>&1) && grep -q "is not frozen in the tlog" <<<"$out"' "$SV" "$L/rekor-early.toml"
# Reloads that must be refused, leaving everything as it was: the tlog's with the old tree's key
# changed; and one of rekor's that changes nothing, taken.
sed 's|object=rekor"$|object=rekor-2"|' "$L/tlog.toml.good" >"$CFG/tlog.toml"
kill -HUP "$(cat "$RUN/tlog.pid")"
expect_ok "a tlog reload that changes a tree's key is refused, saying why" wait_log "$LOGS/tlog.log" \
  "reload of .* refused, the trees are as they were: .*tree 'rekor': its key, origin or note name differs"
cp "$L/rekor.toml.before" "$CFG/rekor.toml"
kill -HUP "$(cat "$RUN/rekor.pid")"
expect_ok "a rekor reload that changes nothing is taken" wait_log "$LOGS/rekor.log" "reloaded .*rekor.toml: uploads go to its active shard"
expect_ok "and rekor still logs into the old tree" bash -c \
  'curl -fsS "$0/api/v1/log" | python3 -c "import json,sys; assert json.load(sys.stdin)[\"treeID\"] == \"1\""' "$REKOR_URL"
cp "$L/tlog.toml.next" "$CFG/tlog.toml"
expect_ok "the tlog reloaded (SIGHUP): the old Rekor tree frozen at its final size, the new one added" \
  reload_tlog "tree 'rekor' frozen at size [0-9]"
# Meanwhile uploads wait in rekor for its reload. One that drops the old shard is refused (the
# global indices depend on it); the right one is taken.
cp "$L/rekor.toml.dropped" "$CFG/rekor.toml"
kill -HUP "$(cat "$RUN/rekor.pid")"
expect_ok "a rekor reload that drops the old shard is refused, saying why" wait_log "$LOGS/rekor.log" \
  "reload of .* refused, still serving the log loaded before: .*must stay where it is"
cp "$L/rekor.toml.next" "$CFG/rekor.toml"
kill -HUP "$(cat "$RUN/rekor.pid")"
expect_ok "rekor reloaded (SIGHUP) onto the new shard, the old one inactive" bash -c '
for i in $(seq 1 100); do
  curl -fsS "$0/api/v1/log" | python3 -c "import json,sys; assert json.load(sys.stdin)[\"treeID\"] == sys.argv[1]" "$1" 2>/dev/null && exit 0
  sleep 0.2
done; exit 1' "$REKOR_URL" "$RK_TREE_ID"
sleep 3
touch stop-rk-load
wait "$RKLOAD" || true
echo "     load: $(cat rk-load.json)"
expect_ok "the load: uploads logged through the rotation, every 201 recorded" python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); print(r)
assert r["created"] > 10 and r["statuses"].get("201") == r["created"], r' rk-load.json
expect_ok "the load: no upload refused through the reloads (every answer a 201)" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert set(r["statuses"]) == {"201"}, r' rk-load.json
expect_ok "the load: every 201 is found by entry ID, UUID, log index and search, and verifies" \
  python3 "$repo/tests/rekor-shard/check.py" "$REKOR_URL" "$L/rk-load" "$C/rekor.pub.pem" "$C/rekor-2.pub.pem" 1 "$RK_TREE_ID"
expect_ok "GET /api/v1/log/publicKey?treeID=1 is the old shard's key" bash -c \
  'curl -fsS "$0/api/v1/log/publicKey?treeID=1" | cmp - "$1/rekor.pub.pem"' "$REKOR_URL" "$C"
expect_ok "GET /api/v1/log/publicKey is the new shard's key" bash -c \
  'curl -fsS "$0/api/v1/log/publicKey" | cmp - "$1/rekor-2.pub.pem"' "$REKOR_URL" "$C"
expect_ok "ceremony --retire rekor (the old shard's window ends now)" ceremony --retire rekor
expect_ok "publish" publish
sign_new "after the Rekor v1 shard rotation"
$ID_TOKEN_CMD >token
expect_ok "after the Rekor v1 shard rotation: python signs with Rekor v1" \
  env XDG_DATA_HOME="$L/tuf-py/data" XDG_CACHE_HOME="$L/tuf-py/cache" "$PY" --trust-config "$STATE/v1only/trust-config.json" \
  sign --identity-token "$(cat token)" --oidc-disable-ambient-providers --bundle "held-$phase-py1.sigstore.json" artifact.txt
for b in "held-$phase-js.sigstore.json" "held-$phase-py1.sigstore.json"; do
  expect_ok "$b is an entry of the new shard" test "$(python3 -c '
import json, sys
print(json.load(open(sys.argv[1]))["verificationMaterial"]["tlogEntries"][0]["logId"]["keyId"])' "$b")" = \
    "$(spki_id "$C/rekor-2.pub.pem")"
done
verify_held "after the Rekor v1 shard rotation"

expect_ok "trusted_root.json: two CT logs (the old ended), two Rekor v1 shards and two v2 logs (the old ones ended)" python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
assert [("end" in c["publicKey"]["validFor"]) for c in t["ctlogs"]] == [True, False], t["ctlogs"]
assert [("end" in c["publicKey"]["validFor"]) for c in t["tlogs"]] == [True, False, True, False], t["tlogs"]
assert len({c["logId"]["keyId"] for c in t["tlogs"] + t["ctlogs"]}) == 6' "$STATE/trusted_root.json"
verify_held "after every rotation"
expect_ok "tlog verify: every tree (the new and the frozen ones) whole" "$SV" tlog verify --config "$CFG/tlog.toml"

echo
echo "lifecycle: $pass passed, $fail failed"
[ $fail -eq 0 ]
