#!/usr/bin/env python3
"""The kill soak's driver (tests/kill-soak.sh runs it on a development stack it brought up).

    kill_soak.py STATE_DIR KILLS SEED

Under a load of uploads through the real HTTP APIs (Rekor v1 and Rekor v2 hashedrekord entries,
Fulcio certificate requests that go through the CT log), it SIGKILLs a random process of the
stack (the tlog, rekor, rekor-v2, ctlog, fulcio, or MariaDB) at a random moment, KILLS times,
and starts it again as systemd would (packaging/dev-stack.sh up starts what is not running).
After each round it checks, for every upload acknowledged so far:

* lost or moved: each acknowledged entry's inclusion proof leads to the root of the checkpoint
  it was given, and the log database has that root at that size (`sigvault tlog verify` with
  the checkpoints: so the entry is at its index in the database); Rekor v1 also answers a GET
  by UUID with the same body at the same index;
* forks: no two checkpoints handed out for one tree and size differ, and the database extends
  every one (`sigvault tlog verify`).

Prints `SOAK kills=<n> acknowledged=<n> lost=<n> moved=<n> forks=<n>` and exits non-zero if
any is not 0. Fulcio's certificates are counted (their SCTs are promises the CT tree's own
audit covers), not looked up one by one.
"""
import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from rfc9162 import root_from_proof  # noqa: E402  (tests/lib, after the path is set)

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

state, kills, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
env = {}
for line in open(os.path.join(state, "endpoints.env")):
    line = line.strip()
    if line.startswith("export "):
        line = line[len("export "):]
    if "=" in line and not line.startswith("#"):
        k, v = line.split("=", 1)
        env[k] = v.strip("'\"")
REKOR, REKOR_V2, FULCIO = env["REKOR_URL"], env["REKOR_V2_URL"], env["FULCIO_URL"]
SV = os.environ.get("SIGVAULT_BIN", os.path.join(repo, "target/release/sigvault"))
rng = random.Random(seed)
# A pause between one worker's uploads: the load is steady rather than as fast as the stack
# goes, so the checks of a long soak keep up with it (SIGVAULT_SOAK_PAUSE seconds, default 0.03).
PAUSE = float(os.environ.get("SIGVAULT_SOAK_PAUSE", "0.03"))
work = os.path.join(state, "soak")
os.makedirs(os.path.join(work, "checkpoints"), exist_ok=True)

lock = threading.Lock()
stop = threading.Event()
statuses = {}
acked = []  # (kind, response-derived record)
certs = 0


def count(kind, status):
    with lock:
        statuses[f"{kind} {status}"] = statuses.get(f"{kind} {status}", 0) + 1


def post(url, body, timeout=30):
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None
    except Exception as e:  # a refused or reset connection: the service is being restarted
        return type(e).__name__, None


def rekor_v1(n):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    i = 0
    while not stop.is_set():
        i += 1
        digest = hashlib.sha256(f"soak v1 {seed} {n} {i} {os.urandom(8).hex()}".encode()).digest()
        sig = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        body = json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
            "signature": {"content": base64.b64encode(sig).decode(),
                          "publicKey": {"content": base64.b64encode(pem).decode()}}}}).encode()
        status, entry = post(f"{REKOR}/api/v1/log/entries", body)
        count("rekor-v1", status)
        if status == 201:
            (eid, v), = entry.items()
            p = v["verification"]["inclusionProof"]
            with lock:
                acked.append({"kind": "v1", "uuid": eid[-64:], "index": v["logIndex"], "body": v["body"],
                              "leaf_index": p["logIndex"], "size": p["treeSize"], "root": p["rootHash"],
                              "hashes": p["hashes"], "checkpoint": p["checkpoint"]})
        else:
            time.sleep(0.05)
        time.sleep(PAUSE)


def rekor_v2(n):
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    i = 0
    while not stop.is_set():
        i += 1
        digest = hashlib.sha256(f"soak v2 {seed} {n} {i} {os.urandom(8).hex()}".encode()).digest()
        sig = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        body = json.dumps({"hashedRekordRequestV002": {
            "digest": base64.b64encode(digest).decode(),
            "signature": {"content": base64.b64encode(sig).decode(),
                          "verifier": {"publicKey": {"rawBytes": base64.b64encode(der).decode()},
                                       "keyDetails": "PKIX_ECDSA_P256_SHA_256"}}}}).encode()
        status, e = post(f"{REKOR_V2}/api/v2/log/entries", body)
        count("rekor-v2", status)
        if status in (200, 201) and e:
            p = e["inclusionProof"]
            with lock:
                acked.append({"kind": "v2", "index": int(e["logIndex"]), "body": e["canonicalizedBody"],
                              "leaf_index": int(p["logIndex"]), "size": int(p["treeSize"]),
                              "root": base64.b64decode(p["rootHash"]).hex(),
                              "hashes": [base64.b64decode(h).hex() for h in p["hashes"]],
                              "checkpoint": p["checkpoint"]["envelope"]})
        else:
            time.sleep(0.05)
        time.sleep(PAUSE)


def fulcio():
    global certs
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    pem = base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()
    token, token_at = None, 0
    while not stop.is_set():
        if token is None or time.monotonic() - token_at > 60:
            token = subprocess.run(env["ID_TOKEN_CMD"], shell=True, capture_output=True, text=True).stdout.strip()
            token_at = time.monotonic()
        body = json.dumps({"credentials": {"oidcIdentityToken": token}, "certificateSigningRequest": pem}).encode()
        status, r = post(f"{FULCIO}/api/v2/signingCert", body)
        count("fulcio", status)
        if status in (200, 201) and r:
            with lock:
                certs += 1
        else:
            time.sleep(0.05)


PIDS = {"tlog": "tlog", "rekor": "rekor", "rekor-v2": "rekor-v2", "ctlog": "ctlog", "fulcio": "fulcio",
        "mariadb": "mariadb"}


def pid_of(name):
    try:
        return int(open(os.path.join(state, "run", f"{PIDS[name]}.pid")).read().strip())
    except (OSError, ValueError):
        return None


def bring_up():
    """Start what is not running (what systemd's Restart= does), until it is all up."""
    for attempt in range(10):
        r = subprocess.run([os.path.join(repo, "packaging/dev-stack.sh"), "up"], capture_output=True, text=True,
                           env=dict(os.environ, SIGVAULT_STATE_DIR=state, SIGVAULT_SKIP_DEMO="1", SIGVAULT_BIN=SV))
        if r.returncode == 0:
            return attempt
        time.sleep(1)
    sys.exit("dev-stack.sh up kept failing:\n" + r.stdout[-2000:] + r.stderr[-2000:])


checked = 0
seen_checkpoints = {}  # (origin, size) -> root
forks = lost = moved = 0
verified_files = []


def origin_of(cp):
    return cp.split("\n", 1)[0]


def check_round(final=False):
    """Check what was acknowledged since the last round, and the database against it."""
    global checked, forks, lost, moved
    with lock:
        new = acked[checked:]
        checked = len(acked)
    new_files = []
    for e in new:
        leaf = hashlib.sha256(b"\x00" + base64.b64decode(e["body"])).digest()
        root = root_from_proof(e["leaf_index"], e["size"], leaf, [bytes.fromhex(h) for h in e["hashes"]])
        cp_lines = e["checkpoint"].split("\n")
        if root is None or root.hex() != e["root"] or base64.b64decode(cp_lines[2]).hex() != e["root"] \
                or int(cp_lines[1]) != e["size"]:
            moved += 1
            print(f"     an acknowledged {e['kind']} entry's proof does not lead to its checkpoint: {e['index']}")
            continue
        k = (origin_of(e["checkpoint"]), e["size"])
        if k in seen_checkpoints:
            if seen_checkpoints[k] != e["root"]:
                forks += 1
                print(f"     FORK: two roots handed out for {k}")
            continue
        seen_checkpoints[k] = e["root"]
        f = os.path.join(work, "checkpoints", f"{len(seen_checkpoints)}.txt")
        open(f, "w").write(e["checkpoint"])
        new_files.append(f)
    # The newest checkpoint of each tree too, so a database that lost its tail fails each round.
    newest = {}
    for (origin, size), _ in seen_checkpoints.items():
        newest[origin] = max(newest.get(origin, 0), size)
    for f in verified_files:
        cp = open(f).read()
        if newest.get(origin_of(cp)) == int(cp.split("\n")[1]) and f not in new_files:
            new_files.append(f)
    verified_files.extend(f for f in new_files if f not in verified_files)
    # One audit a round: every checkpoint handed out since the last round, and the newest ones.
    if new_files:
        args = [SV, "tlog", "verify", "--config", os.path.join(state, "config/tlog.toml")]
        for f in new_files:
            args += ["--checkpoint", f]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            out = (r.stdout + r.stderr)[-1500:]
            if "behind" in out or "holds only" in out:
                lost += 1
            else:
                forks += 1
            print("     tlog verify failed:\n" + out)
    # Rekor v1's own view: the new entries (and a sample of the old) at their index, same body.
    sample = [e for e in new if e["kind"] == "v1"]
    with lock:
        old = [e for e in acked[:checked - len(new)] if e["kind"] == "v1"]
    sample += rng.sample(old, min(len(old), 20 if not final else len(old)))
    for e in sample:
        try:
            with urllib.request.urlopen(f"{REKOR}/api/v1/log/entries/{e['uuid']}", timeout=30) as r:
                (_, v), = json.load(r).items()
            if v["logIndex"] != e["index"] or v["body"] != e["body"]:
                moved += 1
                print(f"     rekor v1 entry {e['uuid']} moved: index {e['index']} -> {v['logIndex']}")
        except urllib.error.HTTPError as err:
            if err.code == 404:
                lost += 1
                print(f"     rekor v1 entry {e['uuid']} (index {e['index']}) is gone")
            else:
                raise
    return len(new)


workers = [threading.Thread(target=rekor_v1, args=(n,), daemon=True) for n in range(2)]
workers += [threading.Thread(target=rekor_v2, args=(n,), daemon=True) for n in range(2)]
workers.append(threading.Thread(target=fulcio, daemon=True))
for w in workers:
    w.start()
victims = ["tlog", "rekor", "rekor-v2", "ctlog", "fulcio", "mariadb"]
by_victim = {v: 0 for v in victims}
started = time.monotonic()
for k in range(1, kills + 1):
    time.sleep(rng.uniform(0.3, 2.5))
    victim = rng.choice(victims)
    pid = pid_of(victim)
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # Let the kill take effect before asking for a restart.
        for _ in range(50):
            try:
                os.kill(pid, 0)
                time.sleep(0.05)
            except ProcessLookupError:
                break
    by_victim[victim] += 1
    retries = bring_up()
    n = check_round()
    print(f"round {k}/{kills}: killed {victim}, back up ({retries} retries), {n} new acknowledgments checked, "
          f"{len(acked)} in all; lost={lost} moved={moved} forks={forks}", flush=True)
time.sleep(2)
stop.set()
for w in workers:
    w.join(timeout=40)
check_round(final=True)
print("kills by victim:", json.dumps(by_victim))
print("answers:", json.dumps(dict(sorted(statuses.items()))))
print(f"fulcio certificates issued: {certs}; checkpoints handed out and audited: {len(seen_checkpoints)}; "
      f"{time.monotonic() - started:.0f} s")
print(f"SOAK kills={kills} acknowledged={len(acked)} lost={lost} moved={moved} forks={forks}")
sys.exit(0 if lost == moved == forks == 0 and len(acked) > 0 else 1)
