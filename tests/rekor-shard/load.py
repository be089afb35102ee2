"""Rekor v1 uploads back to back, from several threads, until the stop file appears.

    python3 load.py REKOR_URL OUT_DIR STOP_FILE

Each upload is a hashedrekord of a fresh digest signed with the thread's P-256 key. Every answer
is counted by status (and the longest time without a 201 is measured: how long the rotation
kept uploads from being logged); every 201 is written to OUT_DIR/created.jsonl (its entry ID, body, logIndex
and the whole response) for tests/rekor-shard/check.py. Prints the counts as JSON at the end.
"""
import base64, hashlib, json, os, sys, threading, time, urllib.error, urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

url, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
THREADS = 4
os.makedirs(out, exist_ok=True)
lock = threading.Lock()
statuses = {}
created_at = []
created = open(f"{out}/created.jsonl", "w")


def worker(n):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with open(f"{out}/key-{n}.pem", "wb") as f:
        f.write(pem)
    i = 0
    while not os.path.exists(stop):
        i += 1
        digest = hashlib.sha256(f"shard load {n} {i} {os.urandom(8).hex()}".encode()).digest()
        sig = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        body = json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
            "signature": {"content": base64.b64encode(sig).decode(),
                          "publicKey": {"content": base64.b64encode(pem).decode()}}}}).encode()
        req = urllib.request.Request(f"{url}/api/v1/log/entries", body, {"Content-Type": "application/json"})
        entry = None
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, entry = r.status, json.load(r)
        except urllib.error.HTTPError as e:
            status = e.code
        except Exception as e:  # a refused connection (a restart) is an answer too
            status = type(e).__name__
        with lock:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 201:
                created_at.append(time.monotonic())
                (eid, v), = entry.items()
                created.write(json.dumps({"entry_id": eid, "digest": digest.hex(), "key": n, "entry": v}) + "\n")
                created.flush()


threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
gap = max((b - a for a, b in zip(created_at, created_at[1:])), default=0)
print(json.dumps({"statuses": statuses, "created": sum(1 for _ in open(f"{out}/created.jsonl")),
                  "longest_without_201_s": round(gap, 2)}))
