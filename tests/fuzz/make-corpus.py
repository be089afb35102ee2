#!/usr/bin/env python3
"""Write the fuzz targets' seed corpus (tests/fuzz/corpus/<target>/), valid inputs of each kind.

    tests/fuzz/make-corpus.py STATE_DIR

STATE_DIR is a development stack's state dir (packaging/dev-stack.sh up) on which
tests/lifecycle.sh has run: its ceremony outputs, bundles, TUF repository and a Rekor v2 request
are the seeds, with certificates, CSRs, keys, timestamp queries and tokens made here (openssl,
pyca/cryptography). Nothing secret is written: keys made here are thrown away, tokens carry
fake signatures. Seeds are the starting points only; the driver (tests/fuzz.rs) mutates them.
"""
import base64
import glob
import hashlib
import json
import os
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
state = sys.argv[1]
out = os.path.join(repo, "tests/fuzz/corpus")


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pem_der(path):
    return [x509.load_pem_x509_certificate(b"-----BEGIN" + c.encode()) for c in open(path).read().split("-----BEGIN")[1:]]


def b64(b):
    return base64.b64encode(b).decode()


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


cer = os.path.join(state, "ceremony")
certs = {}
for f in ["root.pem", "issuing-ca.pem", "issuing-ca-2.pem", "tsa.pem", "tsa-2.pem"]:
    if os.path.exists(os.path.join(cer, f)):
        certs[f] = pem_der(os.path.join(cer, f))[0]
bundles = sorted(glob.glob(os.path.join(state, "lifecycle/held-*.sigstore.json")))
leaves = []
bodies = []
for b in bundles:
    j = json.load(open(b))
    vm = j["verificationMaterial"]
    raw = (vm.get("certificate") or vm.get("x509CertificateChain", {}).get("certificates", [{}])[0]).get("rawBytes")
    if raw:
        leaves.append(base64.b64decode(raw))
    for e in vm.get("tlogEntries", []):
        bodies.append(base64.b64decode(e["canonicalizedBody"]))
leaves = leaves[:3]

# x509: the ceremony's certificates, Fulcio leaves (with SCTs), the CT test vectors' precert.
for name, c in certs.items():
    put("x509", name.replace(".pem", ".der"), c.public_bytes(serialization.Encoding.DER))
for i, l in enumerate(leaves):
    put("x509", f"leaf-{i}.der", l)
vec = json.load(open(os.path.join(repo, "tests/vectors/ct-go_testdata.json")))
for k in ["ca_cert_pem", "test_cert_pem", "test_precert_pem"]:
    put("x509", f"ct-go-{k}.der", x509.load_pem_x509_certificate(vec[k].encode()).public_bytes(serialization.Encoding.DER))

# csr and public-key: as Fulcio's clients send them.
for curve, h in [(ec.SECP256R1(), hashes.SHA256()), (ec.SECP384R1(), hashes.SHA384())]:
    k = ec.generate_private_key(curve)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(k, h)
    put("csr", f"{curve.name}.pem", csr.public_bytes(serialization.Encoding.PEM))
    put("csr", f"{curve.name}.der", csr.public_bytes(serialization.Encoding.DER))
    pub = k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    put("public-key", f"{curve.name}.pem", pub)
    put("rekor-v1-verifier", f"{curve.name}.pem", pub)
rk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
put("public-key", "rsa.pem", rk.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
for name, c in list(certs.items())[:2]:
    put("rekor-v1-verifier", name, c.public_bytes(serialization.Encoding.PEM))

# jws and jwk: a token's shape (the signature is not checked by the parser), a JWKS.
claims = {"iss": "https://issuer.example", "sub": "user", "aud": "sigstore", "email": "a@example.org",
          "email_verified": True, "exp": 2000000000, "iat": 1700000000, "nbf": 1700000000}
for alg in ["RS256", "ES256", "ES384", "none", "HS256"]:
    h = {"alg": alg, "kid": "k1", "typ": "JWT"}
    put("jws", f"{alg}.jwt", f"{b64url(json.dumps(h).encode())}.{b64url(json.dumps(claims).encode())}.{b64url(b'sig' * 20)}")
gh = dict(claims, iss="https://token.actions.githubusercontent.com", repository="o/r",
          job_workflow_ref="o/r/.github/workflows/w.yml@refs/heads/main", ref="refs/heads/main", sha="0" * 40)
put("jws", "github.jwt", f"{b64url(json.dumps({'alg': 'RS256'}).encode())}.{b64url(json.dumps(gh).encode())}.{b64url(b's')}")
put("claims", "dex-email.json", json.dumps(dict(claims, iss="https://dex.example.org")))
put("claims", "github.json", json.dumps(dict(gh, aud="sigstore", workflow_ref="o/r/.github/workflows/w.yml@refs/heads/main",
    workflow="w", workflow_sha="0" * 40, event_name="push", repository_owner="o", repository_id="1", repository_owner_id="2",
    run_id="3", run_attempt="1", runner_environment="github-hosted", repository_visibility="public",
    job_workflow_sha="0" * 40)))
ek = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
rn = rk.public_key().public_numbers()
jwks = {"keys": [
    {"kty": "RSA", "kid": "r", "use": "sig", "alg": "RS256", "n": b64url(rn.n.to_bytes(256, "big")), "e": b64url(rn.e.to_bytes(3, "big"))},
    {"kty": "EC", "kid": "e", "crv": "P-256", "x": b64url(ek.x.to_bytes(32, "big")), "y": b64url(ek.y.to_bytes(32, "big"))},
    {"kty": "oct", "k": "AAAA"},
]}
put("jwk", "jwks.json", json.dumps(jwks))
put("identity-config", "fulcio-identity.yaml", open(os.path.join(repo, "config/fulcio-identity.yaml")).read())

# Rekor v1: the canonical bodies of the bundles' entries (hashedrekord), and the other kinds.
for i, b in enumerate(bodies[:3]):
    put("rekor-v1-entry", f"bundle-{i}.json", b)
if leaves:
    pem = x509.load_der_x509_certificate(leaves[0]).public_bytes(serialization.Encoding.PEM)
    env = {"payload": b64(b'{"_type":"https://in-toto.io/Statement/v1"}'), "payloadType": "application/vnd.in-toto+json",
           "signatures": [{"sig": b64(b"\x30\x06\x02\x01\x01\x02\x01\x01"), "keyid": ""}]}
    put("rekor-v1-entry", "dsse.json", json.dumps({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
        "proposedContent": {"envelope": json.dumps(env), "verifiers": [b64(pem)]}}}))
    put("rekor-v1-entry", "intoto.json", json.dumps({"apiVersion": "0.0.2", "kind": "intoto", "spec": {
        "content": {"envelope": {"payload": b64(env["payload"].encode()), "payloadType": env["payloadType"],
                                 "signatures": [{"sig": b64(b"sig"), "publicKey": b64(pem)}]}}}}))
    put("rekor-v1-entry", "rekord.json", json.dumps({"apiVersion": "0.0.1", "kind": "rekord", "spec": {
        "data": {"content": b64(b"hello")}, "signature": {"format": "x509", "content": b64(b"sig"), "publicKey": {"content": b64(pem)}}}}))
for s in ["a" * 64, "0123456789abcdef" + "b" * 64, "A" * 64, "24296fb24b8ad77a" + "0" * 64]:
    put("rekor-entry-id", hashlib.sha256(s.encode()).hexdigest()[:12], s)

# Rekor v2: the request sigstore-python sent, and a DSSE one.
v2 = os.path.join(state, "lifecycle/v2-request.json")
if os.path.exists(v2):
    put("rekor-v2-request", "hashedrekord.json", open(v2, "rb").read())
    req = json.load(open(v2))["hashedRekordRequestV002"]
    put("rekor-v2-request", "dsse.json", json.dumps({"dsseRequestV002": {
        "envelope": {"payload": b64(b"{}"), "payloadType": "application/vnd.in-toto+json",
                     "signatures": [{"sig": req["signature"]["content"], "keyid": ""}]},
        "verifiers": [req["signature"]["verifier"]]}}))

# CT: add-chain bodies, and the TLS structures (first byte: which decoder).
chain = [c.public_bytes(serialization.Encoding.DER) for c in [certs.get("issuing-ca.pem"), certs.get("root.pem")] if c]
for i, l in enumerate(leaves[:2]):
    put("ct-add-chain", f"chain-{i}.json", json.dumps({"chain": [b64(x) for x in [l] + chain]}))
put("ct-add-chain", "ct-go.json", json.dumps({"chain": [b64(x509.load_pem_x509_certificate(vec[k].encode()).public_bytes(serialization.Encoding.DER)) for k in ["test_cert_pem", "ca_cert_pem"]]}))
for i, l in enumerate(leaves[:2]):
    c = x509.load_der_x509_certificate(l)
    for e in c.extensions:
        if e.oid.dotted_string == "1.3.6.1.4.1.11129.2.4.2":
            raw = e.value.public_bytes()
            inner = raw[2:] if raw[1] < 0x80 else raw[2 + (raw[1] & 0x7F):]
            put("ct-structs", f"sct-list-{i}", b"\x00" + inner)
            first_len = int.from_bytes(inner[2:4], "big")
            sct = inner[4:4 + first_len]
            put("ct-structs", f"sct-{i}", b"\x01" + sct)
            put("ct-structs", f"digitally-signed-{i}", b"\x02" + sct[43 + int.from_bytes(sct[41:43], 'big'):])
for k in ["test_cert_sct_tls_hex", "test_precert_sct_tls_hex"]:
    put("ct-structs", k, b"\x01" + bytes.fromhex(vec[k]))
if leaves:
    cert = leaves[0]
    leaf = b"\x00\x00" + (1700000000000).to_bytes(8, "big") + b"\x00\x00" + len(cert).to_bytes(3, "big") + cert + b"\x00\x00"
    put("ct-structs", "merkle-tree-leaf", b"\x03" + leaf)
    chain3 = b"".join(len(x).to_bytes(3, "big") + x for x in chain)
    put("ct-structs", "x509-extra-data", b"\x04" + len(chain3).to_bytes(3, "big") + chain3)
    put("ct-structs", "precert-extra-data", b"\x05" + len(cert).to_bytes(3, "big") + cert + len(chain3).to_bytes(3, "big") + chain3)

# TSA: openssl ts queries and the JSON form.
art = os.path.join(state, "lifecycle/artifact.txt")
for name, args in [("sha256-cert", ["-sha256", "-cert"]), ("sha384", ["-sha384", "-no_nonce"]),
                   ("sha512-policy", ["-sha512", "-tspolicy", "1.2.3.4"]), ("sha1", ["-sha1"])]:
    q = subprocess.run(["openssl", "ts", "-query", "-data", art, *args], check=True, capture_output=True).stdout
    put("tsa-der", name + ".tsq", q)
digest = hashlib.sha256(b"artifact").digest()
put("tsa-json", "sha256.json", json.dumps({"artifactHash": b64(digest), "hashAlgorithm": "sha256", "certificates": True, "nonce": 1234567890123}))
put("tsa-json", "policy.json", json.dumps({"artifactHash": b64(hashlib.sha384(b"a").digest()), "hashAlgorithm": "sha384", "tsaPolicyOID": "1.3.6.1.4.1.57264.2"}))

# Tiles: paths the tile endpoints see, and tile data (first byte: width - 1).
for p in ["tile/0/000", "tile/1/x001/234", "tile/0/x001/x234/067.p/8", "tile/entries/000", "tile/entries/x002/001.p/255", "tile/3/000.p/1"]:
    put("tile-path", p.replace("/", "_"), p)
for w in [1, 8, 256]:
    put("tile-data", f"width-{w}", bytes([w - 1]) + os.urandom(32 * w))

# Notes: checkpoints as the logs serve them.
put("note", "checkpoint", f"example.org/log\n12\n{b64(digest)}\n\n\u2014 example.org/log {b64(b'hint' + bytes(64))}\n")
put("note", "two-signatures", f"o\n1\n{b64(digest)}\nextra\n\n\u2014 o {b64(b'abcd' + bytes(70))}\n\u2014 w {b64(b'efgh' + bytes(64))}\n")

# Configs: every shipped example (first byte picks the file name that selects the kind).
names = ["tlog.toml", "ctlog.toml", "fulcio.toml", "rekor.toml", "rekor-v2.toml", "tsa.toml", "tuf.toml", "ceremony.toml"]
for i, n in enumerate(names):
    p = os.path.join(repo, "config", n)
    if os.path.exists(p):
        put("config", n, bytes([i]) + open(p, "rb").read())

# TUF metadata (first byte: root, targets, snapshot, timestamp).
repo_dir = os.path.join(state, "tuf/repository")
for i, role in enumerate(["root", "targets", "snapshot", "timestamp"]):
    files = sorted(glob.glob(os.path.join(repo_dir, f"*{role}.json")))
    if files:
        put("tuf-metadata", f"{role}.json", bytes([i]) + open(files[-1], "rb").read())
print("seeds written to", out)
