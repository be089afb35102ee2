#!/usr/bin/env bash
# End-to-end: stock Sigstore clients against the whole sigvault stack (tests/run.sh runs this).
#
#   tests/e2e.sh [STATE_DIR]
#
# Starts the stack with README's first command (packaging/dev-stack.sh up: ceremony, MariaDB,
# tlog, rekor, ctlog, fulcio, the oauth2-mock-server OpenID provider; its demo signs with
# sigstore-python and verifies with sigstore-js and the reverse), then checks with the real
# clients — sigstore-python from PyPI, sigstore-js and @sigstore/cli from npm (versions pinned in
# tests/clients/) — everything README and the issue promise, and stops the stack.
# SIGVAULT_BIN selects the sigvault binary (tests/run.sh passes its debug build).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
KEEP=${1:+yes}
STATE=${1:-$(mktemp -d "${TMPDIR:-/tmp}/sigvault-e2e.XXXXXX")}
export SIGVAULT_STATE_DIR=$STATE

# ok, bad, expect_ok, expect_fail, expect_fail_saying; $pass and $fail.
# shellcheck source=tests/expect.sh
. "$repo/tests/expect.sh"

cleanup() {
  local rc=$?
  "$repo/packaging/dev-stack.sh" down >/dev/null 2>&1 || true
  if [ $rc -ne 0 ] || [ $fail -ne 0 ]; then
    for l in "$STATE"/logs/*.log; do
      [ -f "$l" ] || continue
      echo "--- last lines of $l ---"; tail -n 15 "$l"
    done
  fi
  [ -n "$KEEP" ] || [ $rc -ne 0 ] || [ $fail -ne 0 ] || rm -rf "$STATE"
  exit $rc
}
trap cleanup EXIT

# sigstore-rs (the `sigstore` crate, version pinned by tests/clients/rs/Cargo.lock), built before
# the stack comes up: a few minutes on two cores the first time.
echo "==> building the sigstore-rs client (tests/clients/rs)"
RS=$repo/tests/clients/rs/target/debug/sigstore-rs-client
CARGO_TARGET_DIR=$repo/tests/clients/rs/target cargo build --locked --quiet \
  --manifest-path "$repo/tests/clients/rs/Cargo.toml"

echo "==> packaging/dev-stack.sh up (state dir $STATE)"
packaging/dev-stack.sh up
ok "dev-stack up: sigstore-python signed, sigstore-js verified, and the reverse"

# shellcheck disable=SC1091
. "$STATE/endpoints.env"
PY=$SIGSTORE_PYTHON
# The node dev-stack chose (the system's, or a Node 22 it installed from npm).
JS=("$NODE" "$repo/tests/clients/js/client.mjs")
CLI=("$NODE" "$repo/tests/clients/js/node_modules/@sigstore/cli/bin/run")
TC=$TRUST_CONFIG
TR=$TRUSTED_ROOT
W=$STATE/e2e
mkdir -p "$W"
cd "$W"

echo "==> versions"
echo "sigstore-python: $("$PY" --version)"
echo "sigstore-js:     $("$NODE" -p "require('$repo/tests/clients/js/node_modules/sigstore/package.json').version")"
echo "@sigstore/cli:   $("$NODE" -p "require('$repo/tests/clients/js/node_modules/@sigstore/cli/package.json').version")"
echo "node:            $("$NODE" --version)"
echo "sigstore-rs:     $(sed -n '/^name = "sigstore"$/{n;s/^version = //p}' "$repo/tests/clients/rs/Cargo.lock")"

for f in trust-config.json trusted_root.json signing_config.json root.json endpoints.env; do
  expect_ok "state dir has $f" test -s "$STATE/$f"
done
for v in FULCIO_URL REKOR_URL REKOR_V2_URL TRUST_CONFIG_V1 CTLOG_URL TSA_URL TLOG_URL REKOR_TILES_URL CTLOG_TILES_URL OIDC_ISSUER_URL ID_TOKEN_CMD CERT_IDENTITY CERT_ISSUER CEREMONY_DIR; do
  expect_ok "endpoints.env sets $v" test -n "${!v:-}"
done
expect_ok "tiles: the Rekor tree's checkpoint is served" curl -fsS "$REKOR_TILES_URL/checkpoint"
expect_ok "tiles: the CT tree's checkpoint is served" curl -fsS "$CTLOG_TILES_URL/checkpoint"

$ID_TOKEN_CMD >token
$GITHUB_ID_TOKEN_CMD >gh-token
echo "artifact $(date +%s%N)" >artifact.txt
cp artifact.txt tampered.txt
echo "one more line" >>tampered.txt
ID=$CERT_IDENTITY
ISS=$CERT_ISSUER

echo "==> blobs: each client signs, both verify"
# The trust config advertises Rekor v2 beside v1, so sigstore-python logs through v2 (and the
# TSA); with the v1-only signing config it logs through v1. sigstore-js signs with v1.
expect_ok "python sign (Rekor v2)" "$PY" --trust-config "$TC" sign --identity-token "$(cat token)" \
  --oidc-disable-ambient-providers --bundle py.sigstore.json artifact.txt
expect_ok "python sign (Rekor v1, the v1-only signing config)" "$PY" --trust-config "$TRUST_CONFIG_V1" sign \
  --identity-token "$(cat token)" --oidc-disable-ambient-providers --bundle py1.sigstore.json artifact.txt
expect_ok "js sign" "${JS[@]}" sign --fulcio "$FULCIO_URL" --rekor "$REKOR_URL" --tsa "$TSA_URL" \
  --token-file token --bundle js.sigstore.json artifact.txt
expect_ok "the py bundle is a Rekor v2 entry (hashedrekord 0.0.2, no SET), py1 and js Rekor v1 ones" \
  python3 - py.sigstore.json py1.sigstore.json js.sigstore.json <<'EOF'
import json, sys
def entry(p):
    return json.load(open(p))["verificationMaterial"]["tlogEntries"][0]
v2, v1a, v1b = (entry(p) for p in sys.argv[1:])
assert v2["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.2"}, v2["kindVersion"]
assert "inclusionPromise" not in v2 and v2.get("integratedTime", "0") == "0", v2
for e in (v1a, v1b):
    assert e["kindVersion"]["version"] == "0.0.1" and "inclusionPromise" in e, e["kindVersion"]
EOF
for b in py py1 js; do
  expect_ok "python verifies the $b bundle" "$PY" --trust-config "$TC" verify identity \
    --bundle $b.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" artifact.txt
  expect_ok "js verifies the $b bundle" "${JS[@]}" verify --trusted-root "$TR" --bundle $b.sigstore.json \
    --identity-email "$ID" --issuer "$ISS" artifact.txt
  expect_fail "python rejects the $b bundle for a tampered artifact" "$PY" --trust-config "$TC" verify identity \
    --bundle $b.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" tampered.txt
  expect_fail "js rejects the $b bundle for a tampered artifact" "${JS[@]}" verify --trusted-root "$TR" \
    --bundle $b.sigstore.json --identity-email "$ID" --issuer "$ISS" tampered.txt
  expect_fail "python rejects the $b bundle for a wrong identity" "$PY" --trust-config "$TC" verify identity \
    --bundle $b.sigstore.json --cert-identity "mallory@sigvault.test" --cert-oidc-issuer "$ISS" artifact.txt
  expect_fail "js rejects the $b bundle for a wrong identity" "${JS[@]}" verify --trusted-root "$TR" \
    --bundle $b.sigstore.json --identity-email "mallory@sigvault.test" --issuer "$ISS" artifact.txt
  expect_fail "python rejects the $b bundle for a wrong issuer" "$PY" --trust-config "$TC" verify identity \
    --bundle $b.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "https://accounts.example.com" artifact.txt
done

echo "==> timestamps: every bundle carries one from sigvault's TSA, and it is checked"
# sigstore-python asks the TSA of the signing config (tsaUrls; a DER TimeStampReq),
# sigstore-js the one it is given (--tsa; the JSON request). With the Rekor SET taken out of a
# bundle, the RFC 3161 timestamp is its only signing time: both clients verify it on that alone,
# and refuse it once the token is altered (one digit of genTime changed, its signature kept).
curl -fsS "$TSA_URL/certchain" >tsa-chain.pem
python3 - tsa-chain.pem <<'EOF'
import sys
pems = open(sys.argv[1]).read().split("-----END CERTIFICATE-----\n")
open("tsa-cert.pem", "w").write(pems[0] + "-----END CERTIFICATE-----\n")
open("tsa-root.pem", "w").write(pems[1] + "-----END CERTIFICATE-----\n")
EOF
expect_ok "the TSA's served chain is the ceremony's (tsa.pem, root.pem)" bash -c \
  'cat "$0/tsa.pem" "$0/root.pem" | cmp - tsa-chain.pem' "$CEREMONY_DIR"
for b in py js; do
  expect_ok "the $b bundle carries one RFC 3161 timestamp; only-timestamp and altered copies made" \
    python3 - $b.sigstore.json $b <<'EOF'
import base64, json, re, sys
b = json.load(open(sys.argv[1]))
name = sys.argv[2]
ts = b["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
assert len(ts) == 1, ts
token = base64.b64decode(ts[0]["signedTimestamp"])
open(f"{name}.tsr", "wb").write(token)
sig = b.get("messageSignature", {}).get("signature") or b["dsseEnvelope"]["signatures"][0]["sig"]
open(f"{name}.sig", "wb").write(base64.b64decode(sig))
for e in b["verificationMaterial"]["tlogEntries"]:
    e.pop("inclusionPromise", None)
json.dump(b, open(f"{name}-tsonly.sigstore.json", "w"))
m = re.search(rb"\x18\x0f(\d{13})(\d)Z", token)
assert m, "no genTime in the token"
d = m.group(2)[0]
altered = token[: m.start(2)] + bytes([b"0"[0] + (d - b"0"[0] + 1) % 10]) + token[m.end(2):]
ts[0]["signedTimestamp"] = base64.b64encode(altered).decode()
json.dump(b, open(f"{name}-tsaltered.sigstore.json", "w"))
EOF
  expect_ok "openssl ts -verify accepts the $b bundle's token (imprint: the signature) with the served chain" \
    openssl ts -verify -in $b.tsr -data $b.sig -CAfile tsa-root.pem -untrusted tsa-cert.pem
  expect_ok "python verifies the $b bundle on its timestamp alone (no SET)" "$PY" --trust-config "$TC" verify identity \
    --bundle $b-tsonly.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" artifact.txt
  expect_ok "js verifies the $b bundle on its timestamp alone (no SET)" "${JS[@]}" verify --trusted-root "$TR" \
    --bundle $b-tsonly.sigstore.json --identity-email "$ID" --issuer "$ISS" artifact.txt
  expect_fail_saying "python rejects the $b bundle with an altered timestamp" "not enough sources of verified time" \
    "$PY" --trust-config "$TC" verify identity \
    --bundle $b-tsaltered.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" artifact.txt
  expect_fail_saying "js rejects the $b bundle with an altered timestamp" "timestamp" "${JS[@]}" verify --trusted-root "$TR" \
    --bundle $b-tsaltered.sigstore.json --identity-email "$ID" --issuer "$ISS" artifact.txt
done

echo "==> attestations (DSSE): each client attests, both verify"
# sigstore-python attests an SLSA provenance predicate about the artifact.
expect_ok "python attest (dsse)" "$PY" --trust-config "$TC" attest --identity-token "$(cat token)" \
  --oidc-disable-ambient-providers --predicate "$repo/tests/clients/py/min_predicate.slsa_v1.json" \
  --predicate-type https://slsa.dev/provenance/v1 --bundle py-att.sigstore.json artifact.txt
# sigstore-js attests an in-toto statement whose subject is the artifact.
python3 - "$W/artifact.txt" >statement.json <<'EOF'
import hashlib, json, sys
d = hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()
print(json.dumps({"_type": "https://in-toto.io/Statement/v1",
  "subject": [{"name": "artifact.txt", "digest": {"sha256": d}}],
  "predicateType": "https://slsa.dev/provenance/v1",
  "predicate": {"buildDefinition": {"buildType": "https://sigvault.test/bt/v1", "externalParameters": {}},
                "runDetails": {"builder": {"id": "https://sigvault.test/builder"}}}}))
EOF
expect_ok "js attest (dsse)" "${JS[@]}" attest --fulcio "$FULCIO_URL" --rekor "$REKOR_URL" --tsa "$TSA_URL" --token-file token \
  --payload-type application/vnd.in-toto+json --bundle js-att.sigstore.json statement.json
for b in py-att js-att; do
  expect_ok "python verifies the $b bundle" "$PY" --trust-config "$TC" verify identity \
    --bundle $b.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" artifact.txt
  expect_ok "js verifies the $b bundle" "${JS[@]}" verify --trusted-root "$TR" --bundle $b.sigstore.json \
    --identity-email "$ID" --issuer "$ISS" artifact.txt
  expect_fail "python rejects the $b bundle for a tampered artifact" "$PY" --trust-config "$TC" verify identity \
    --bundle $b.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" tampered.txt
  expect_fail "js rejects the $b bundle for a tampered artifact" "${JS[@]}" verify --trusted-root "$TR" \
    --bundle $b.sigstore.json --identity-email "$ID" --issuer "$ISS" tampered.txt
  expect_fail "js rejects the $b bundle for a wrong identity" "${JS[@]}" verify --trusted-root "$TR" \
    --bundle $b.sigstore.json --identity-email "mallory@sigvault.test" --issuer "$ISS" artifact.txt
done
# @sigstore/cli logs attestations as intoto 0.0.2 entries (sigstore-python cannot verify those).
expect_ok "@sigstore/cli attest (intoto 0.0.2)" env CI=true SIGSTORE_ID_TOKEN="$(cat token)" "${CLI[@]}" attest \
  statement.json --fulcio-url "$FULCIO_URL" --rekor-url "$REKOR_URL" --timeout 30 -o cli-att.sigstore.json
expect_ok "cli bundle is an intoto 0.0.2 entry" grep -q '"kind": *"intoto"' cli-att.sigstore.json
expect_ok "js verifies the @sigstore/cli bundle" "${JS[@]}" verify --trusted-root "$TR" --bundle cli-att.sigstore.json \
  --identity-email "$ID" --issuer "$ISS" artifact.txt

echo "==> GitHub Actions: a workflow token, sigstore verify github"
GH_ISS=https://token.actions.githubusercontent.com
GH_SAN=https://github.com/octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main
expect_ok "python sign with a GitHub Actions token" "$PY" --trust-config "$TC" sign --identity-token "$(cat gh-token)" \
  --oidc-disable-ambient-providers --bundle gh.sigstore.json artifact.txt
expect_ok "python verify github (repository, workflow name, ref, trigger)" "$PY" --trust-config "$TC" verify github \
  --bundle gh.sigstore.json --repository octo-org/octo-repo --name Release --ref refs/heads/main --trigger push \
  --cert-identity "$GH_SAN" artifact.txt
expect_fail "python verify github rejects another repository" "$PY" --trust-config "$TC" verify github \
  --bundle gh.sigstore.json --repository octo-org/other-repo artifact.txt
expect_fail "python verify github rejects another workflow name" "$PY" --trust-config "$TC" verify github \
  --bundle gh.sigstore.json --repository octo-org/octo-repo --name Deploy artifact.txt
expect_ok "js verifies the GitHub bundle (URI SAN, GitHub issuer)" "${JS[@]}" verify --trusted-root "$TR" \
  --bundle gh.sigstore.json --identity-uri "$GH_SAN" --issuer "$GH_ISS" artifact.txt
expect_fail "python verify github rejects the developer's (non-GitHub) bundle" "$PY" --trust-config "$TC" verify github \
  --bundle py.sigstore.json --repository octo-org/octo-repo artifact.txt

echo "==> sigstore-rs: signs through sigvault's Fulcio and Rekor, verifies against its trusted root"
# sigstore-rs 0.14 signs with its own Fulcio and Rekor clients (its one-call signer is fixed to
# the public-good instance: tests/clients/rs/src/main.rs says why) and verifies with its bundle
# verifier: chain to the trusted root's CA, the SCT against its CT log key, SAN and issuer, the
# signature, the log entry's body and time (not the SET or inclusion proof: sigstore-rs 0.14
# does not check them; python and js do, below).
$ID_TOKEN_CMD >rs-token
expect_ok "rs sign" "$RS" sign --fulcio "$FULCIO_URL" --rekor "$REKOR_URL" --token-file rs-token \
  --bundle rs.sigstore.json artifact.txt
expect_ok "rs verifies the rs bundle" "$RS" verify --trusted-root "$TR" --bundle rs.sigstore.json \
  --identity "$ID" --issuer "$ISS" artifact.txt
expect_ok "python verifies the rs bundle" "$PY" --trust-config "$TC" verify identity \
  --bundle rs.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" artifact.txt
expect_ok "js verifies the rs bundle" "${JS[@]}" verify --trusted-root "$TR" --bundle rs.sigstore.json \
  --identity-email "$ID" --issuer "$ISS" artifact.txt
# sigstore-rs 0.14 knows Rekor v1 entries only ("signature transparency materials are
# inconsistent" for a hashedrekord 0.0.2 one): it verifies the v1 bundles of python and js.
for b in py1 js; do
  expect_ok "rs verifies the $b bundle" "$RS" verify --trusted-root "$TR" --bundle $b.sigstore.json \
    --identity "$ID" --issuer "$ISS" artifact.txt
done
expect_fail "rs rejects the rs bundle for a tampered artifact" "$RS" verify --trusted-root "$TR" \
  --bundle rs.sigstore.json --identity "$ID" --issuer "$ISS" tampered.txt
expect_fail "rs rejects the rs bundle for another identity" "$RS" verify --trusted-root "$TR" \
  --bundle rs.sigstore.json --identity "mallory@sigvault.test" --issuer "$ISS" artifact.txt
expect_fail "rs rejects the rs bundle for another issuer" "$RS" verify --trusted-root "$TR" \
  --bundle rs.sigstore.json --identity "$ID" --issuer "https://accounts.example.com" artifact.txt
expect_fail "rs rejects the py1 bundle for a tampered artifact" "$RS" verify --trusted-root "$TR" \
  --bundle py1.sigstore.json --identity "$ID" --issuer "$ISS" tampered.txt

echo "==> sigstore-rs: a rekord entry (the legacy kind: the artifact sent whole, format x509)"
# sigstore-rs decodes the 201's body, re-encodes it canonically as the leaf, and checks the
# inclusion proof and the checkpoint's signature with the key it is given.
expect_ok "rs logs a rekord entry; its inclusion proof and checkpoint verify with the Rekor key" \
  "$RS" rekord --rekor "$REKOR_URL" --rekor-key "$CEREMONY_DIR/rekor.pub.pem" artifact.txt
expect_fail "rs rejects a rekord entry's checkpoint under another key (the CT log's)" \
  "$RS" rekord --rekor "$REKOR_URL" --rekor-key "$CEREMONY_DIR/ctlog.pub.pem" tampered.txt

echo "==> the logs agree with what the clients hold"
expect_ok "every Rekor v1 bundle's entry is found by its UUID" python3 - "$REKOR_URL" py1.sigstore.json js.sigstore.json \
  js-att.sigstore.json rs.sigstore.json <<'EOF'
import base64, hashlib, json, sys, urllib.request
rekor = sys.argv[1]
for path in sys.argv[2:]:
    b = json.load(open(path))
    e = (b.get("verificationMaterial") or {})["tlogEntries"][0]
    body = base64.b64decode(e["canonicalizedBody"])
    uuid = hashlib.sha256(b"\x00" + body).hexdigest()
    with urllib.request.urlopen(f"{rekor}/api/v1/log/entries/{uuid}") as r:
        got = json.load(r)
    (entry,) = got.values()
    assert base64.b64decode(entry["body"]) == body, path
    assert int(entry["logIndex"]) == int(e["logIndex"]) > 0, path
EOF

echo "==> Rekor v2's read path, checked independently: openssl, the served tiles, each bundle's proof"
# The checkpoint verifies with the ceremony's rekor-v2.pub.pem (openssl); the tree rebuilt from
# the served entry bundles has the checkpoint's root; each v2 bundle's body is the entry at its
# index, and its inclusion proof leads to the root the served entries give at its tree size.
curl -fsS "$REKOR_V2_URL/checkpoint" >v2-checkpoint.txt
python3 - v2-checkpoint.txt <<'EOF'
import base64, sys
text = open(sys.argv[1]).read()
body, sig = text.split("\n\n")
open("v2-cp.body", "w").write(body + "\n")
name, b64 = sig.strip().split(" ")[1:]
open("v2-cp.sig", "wb").write(base64.b64decode(b64)[4:])
EOF
expect_ok "openssl verifies the Rekor v2 checkpoint with rekor-v2.pub.pem" \
  openssl dgst -sha256 -verify "$CEREMONY_DIR/rekor-v2.pub.pem" -signature v2-cp.sig v2-cp.body
expect_ok "the tree rebuilt from the served tiles has the checkpoint's root; every v2 bundle's entry and proof agree" \
  python3 - "$REKOR_V2_URL" v2-checkpoint.txt py.sigstore.json py-att.sigstore.json gh.sigstore.json <<'EOF'
import base64, hashlib, json, sys, urllib.request
url, cp = sys.argv[1], open(sys.argv[2]).read().split("\n")
size, root = int(cp[1]), base64.b64decode(cp[2])
H = lambda b: hashlib.sha256(b).digest()
def fetch(path):
    with urllib.request.urlopen(f"{url}/{path}") as r:
        return r.read()
def index_path(n):
    s = f"{n:03d}"
    while len(s) % 3: s = "0" + s
    parts = [s[i:i+3] for i in range(0, len(s), 3)]
    return "/".join(["x" + p for p in parts[:-1]] + [parts[-1]])
entries = []
for t in range((size + 255) // 256):
    w = min(256, size - t * 256)
    data = fetch(f"tile/entries/{index_path(t)}" + ("" if w == 256 else f".p/{w}"))
    while data:
        n = int.from_bytes(data[:2], "big"); entries.append(data[2:2 + n]); data = data[2 + n:]
assert len(entries) == size, (len(entries), size)
leaves = [H(b"\0" + e) for e in entries]
def mth(xs):
    if len(xs) == 1: return xs[0]
    k = 1
    while k * 2 < len(xs): k *= 2
    return H(b"\1" + mth(xs[:k]) + mth(xs[k:]))
assert mth(leaves) == root, "root from the served entries differs from the checkpoint's"
level0 = fetch(f"tile/0/{index_path(0)}" + ("" if size >= 256 else f".p/{size}"))
assert level0 == b"".join(leaves[:256]), "level-0 tile differs from the entries' leaf hashes"
def proof_root(i, n, leaf, hashes):
    fn, sn, r = i, n - 1, leaf
    for p in hashes:
        if fn & 1 or fn == sn:
            r = H(b"\1" + p + r)
            while not fn & 1 and fn:
                fn >>= 1; sn >>= 1
        else:
            r = H(b"\1" + r + p)
        fn >>= 1; sn >>= 1
    assert sn == 0
    return r
for path in sys.argv[3:]:
    e = json.load(open(path))["verificationMaterial"]["tlogEntries"][0]
    body, i = base64.b64decode(e["canonicalizedBody"]), int(e["logIndex"])
    assert entries[i] == body, f"{path}: the entry at {i} is not the bundle's body"
    p = e["inclusionProof"]
    n = int(p["treeSize"])
    got = proof_root(i, n, H(b"\0" + body), [base64.b64decode(h) for h in p["hashes"]])
    assert got == base64.b64decode(p["rootHash"]) == mth(leaves[:n]), f"{path}: proof"
EOF

echo "==> the log database extends every checkpoint the clients hold (sigvault tlog verify)"
# Each bundle's inclusion proof carries the signed checkpoint Rekor (v1 or v2) answered with: the
# audit reads the whole tlog database (every tree: Rekor v1's, Rekor v2's and the CT log's) and
# checks that the tree of each checkpoint's origin has its root at its size.
SV=${SIGVAULT_BIN:-$repo/target/release/sigvault}
expect_ok "every python and js bundle carries a checkpoint" python3 - py.sigstore.json py1.sigstore.json js.sigstore.json \
  py-att.sigstore.json js-att.sigstore.json gh.sigstore.json rs.sigstore.json <<'EOF'
import json, sys
for n, path in enumerate(sys.argv[1:]):
    e = json.load(open(path))["verificationMaterial"]["tlogEntries"][0]
    cp = ((e.get("inclusionProof") or {}).get("checkpoint") or {}).get("envelope")
    if cp is None:
        assert path.startswith("rs."), f"{path} has no checkpoint"
        continue
    open(f"checkpoint-{n}.txt", "w").write(cp)
    if n == 0:
        lines = cp.split("\n")
        lines[2] = "A" * len(lines[2])  # another root, the signature kept
        open("checkpoint-altered.txt", "w").write("\n".join(lines))
EOF
cps=()
for f in checkpoint-[0-9]*.txt; do cps+=(--checkpoint "$f"); done
expect_ok "tlog verify: every tree whole, and every bundle's checkpoint extended ($(( ${#cps[@]} / 2 )) given)" \
  "$SV" tlog verify --config "$STATE/config/tlog.toml" "${cps[@]}"
expect_ok "tlog verify refuses a bundle's checkpoint with another root, and says why" bash -c \
  '! out=$("$0" tlog verify --config "$1" --checkpoint checkpoint-altered.txt 2>&1) &&
   grep -q "checkpoint-altered.txt: does not verify with the tree" <<<"$out"' \
  "$SV" "$STATE/config/tlog.toml"

echo "==> TUF: clients bootstrap from the instance's own repository (sigvault tuf serve)"
# dev-stack.sh published the trust files as TUF targets, ran a refresh, serves the repository
# and left its first root in the state dir: the clients start from that root.json alone.
expect_ok "endpoints.env sets TUF_URL and TUF_ROOT, and root.json is in the state dir" \
  test -n "${TUF_URL:-}" -a "${TUF_ROOT:-}" = "$STATE/root.json" -a -s "$STATE/root.json"
expect_ok "the TUF repository is ready (/readyz)" curl -fsS "$TUF_URL/readyz"
# sigstore-python keeps the metadata trust-instance verified under XDG_DATA_HOME: a private one.
TUFPY=(env XDG_DATA_HOME="$W/tuf-py/data" XDG_CACHE_HOME="$W/tuf-py/cache" "$PY" --instance "$TUF_URL")
expect_ok "python: sigstore --instance URL trust-instance root.json" "${TUFPY[@]}" trust-instance "$TUF_ROOT"
expect_ok "python signs with --instance (signing config fetched through TUF)" "${TUFPY[@]}" sign \
  --identity-token "$(cat token)" --oidc-disable-ambient-providers --bundle tuf-py.sigstore.json artifact.txt
expect_ok "python verifies with --instance (trusted root fetched through TUF)" "${TUFPY[@]}" verify identity \
  --bundle tuf-py.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" artifact.txt
expect_fail "python with --instance rejects the bundle for a tampered artifact" "${TUFPY[@]}" verify identity \
  --bundle tuf-py.sigstore.json --cert-identity "$ID" --cert-oidc-issuer "$ISS" tampered.txt
expect_ok "python's TUF targets are sigvault trust's files, byte for byte" bash -c \
  'cmp "$(find "$0" -name trusted_root.json | head -n 1)" "$1/trusted_root.json" &&
   cmp "$(find "$0" -name signing_config.v0.2.json | head -n 1)" "$1/signing_config.json"' "$W/tuf-py" "$STATE"
TUFJS=("${CLI[@]}" verify --tuf-mirror-url "$TUF_URL" --tuf-root-path "$TUF_ROOT" --tuf-cache-path "$W/tuf-js"
  --certificate-identity-email "$ID" --certificate-issuer "$ISS")
expect_ok "js (@sigstore/cli verify) verifies through tufMirrorURL and tufRootPath" "${TUFJS[@]}" \
  --blob-file artifact.txt tuf-py.sigstore.json
expect_fail "js through TUF rejects the bundle for a tampered artifact" "${TUFJS[@]}" \
  --blob-file tampered.txt tuf-py.sigstore.json
expect_ok "tuf refresh (the timer's job) succeeds again, signing only what is due" \
  env SOFTHSM2_CONF="$STATE/softhsm2.conf" "$SV" tuf refresh --config "$STATE/config/tuf.toml"
expect_ok "tuf status: every role current" "$SV" tuf status --config "$STATE/config/tuf.toml"

echo "==> rotations on the running stack (tests/lifecycle.sh): the issuing CA under load, the TSA, Rekor v2, the CT log, a Rekor v1 shard under load"
# The bundles made above are what clients hold from before: after each rotation they must still
# verify with the trust published through TUF.
if W_ARTIFACT="$W/artifact.txt" "$repo/tests/lifecycle.sh" "$STATE" "$W/py.sigstore.json" "$W/py1.sigstore.json" \
  "$W/js.sigstore.json" "$W/tuf-py.sigstore.json"; then
  ok "lifecycle: every rotation, every bundle before and after verified"
else
  bad "lifecycle (its FAIL lines are above)"
fi

echo "==> packaging/dev-stack.sh down stops everything up started"
cd "$repo"
expect_ok "dev-stack down" packaging/dev-stack.sh down
expect_ok "dev-stack status: every part stopped" bash -c "! packaging/dev-stack.sh status | grep -q ': running'"
# (Each pattern is a regex that does not match its own text, so pgrep never finds this check.)
expect_ok "no process of the stack is left" bash -c "! pgrep -f 'sigvault (tlog|rekor|ctlog|fulcio|tsa|rekor-v2|tuf) serve --config $STATE/' &&
  ! pgrep -f 'mariadb[d] .*$STATE/' && ! pgrep -f 'idp[.]mjs ${OIDC_ISSUER_URL##*:}\$'"

echo
echo "e2e: $pass passed, $fail failed"
[ $fail -eq 0 ]
