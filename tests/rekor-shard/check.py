"""Every 201 the load (load.py) got is in the log, from every way of asking, and verifies.

    python3 check.py REKOR_URL OUT_DIR OLD_KEY_PEM NEW_KEY_PEM OLD_TREE_ID NEW_TREE_ID

For each created entry: GET by the 80-hex entry ID, by the 64-hex UUID and by its (global) log
index, each the same entry; its inclusion proof recomputed (RFC 6962) to the proof's root, which
is the root of the checkpoint served with it; the checkpoint's and the SET's signatures verified
with the key its logID names (one of the two shards' keys); the global index = the shard's offset
+ the proof's index. Then: GET /api/v1/log lists the old shard as inactive; a search by digest
finds an entry of each shard; both shards took entries; the old shard's consistency proof and
key are reached by its treeID, an unknown treeID is a 400. Prints the counts.
"""
import base64, hashlib, json, sys, urllib.error, urllib.request
import os as _os

sys.path.insert(0, _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "..", "lib"))
from rfc9162 import root_from_proof  # noqa: E402  (tests/lib, after the path is set)

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

url, out = sys.argv[1], sys.argv[2]
keys = {}
for pem_file, tree_id in ((sys.argv[3], int(sys.argv[5])), (sys.argv[4], int(sys.argv[6]))):
    pub = serialization.load_pem_public_key(open(pem_file, "rb").read())
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    keys[hashlib.sha256(der).hexdigest()] = (pub, tree_id)


def get(path, body=None):
    req = urllib.request.Request(url + path, body, {"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def check(v, want_uuid):
    body = base64.b64decode(v["body"])
    uuid = hashlib.sha256(b"\x00" + body).digest()
    assert uuid.hex() == want_uuid, "another entry"
    pub, tree_id = keys[v["logID"]]
    p = v["verification"]["inclusionProof"]
    root = root_from_proof(p["logIndex"], p["treeSize"], uuid, [bytes.fromhex(h) for h in p["hashes"]])
    assert root is not None and root.hex() == p["rootHash"], "inclusion proof"
    text = p["checkpoint"]
    signed, sigs = text.split("\n\n")
    lines = signed.split("\n")
    assert lines[0].endswith(f" - {tree_id}"), lines[0]
    assert int(lines[1]) == p["treeSize"] and base64.b64decode(lines[2]) == root, "checkpoint"
    sig = base64.b64decode(sigs.strip().split(" ")[-1])
    assert sig[:4].hex() == v["logID"][:8], "key hint"
    pub.verify(sig[4:], (signed + "\n").encode(), ec.ECDSA(hashes.SHA256()))
    payload = json.dumps({"body": v["body"], "integratedTime": v["integratedTime"], "logID": v["logID"],
                          "logIndex": v["logIndex"]}, sort_keys=True, separators=(",", ":")).encode()
    pub.verify(base64.b64decode(v["verification"]["signedEntryTimestamp"]), payload, ec.ECDSA(hashes.SHA256()))
    return tree_id, p["logIndex"]


info = get("/api/v1/log")
inactive = info.get("inactiveShards", [])
assert len(inactive) == 1, info
offsets = {int(inactive[0]["treeID"]): 0, int(info["treeID"]): inactive[0]["treeSize"]}
created = [json.loads(l) for l in open(f"{out}/created.jsonl")]
per_tree, seen = {}, set()
first_of = {}
for c in created:
    eid, gi = c["entry_id"], c["entry"]["logIndex"]
    uuid = eid[16:]
    assert gi not in seen, f"global index {gi} given twice"
    seen.add(gi)
    tree_id, local = check(c["entry"], uuid)
    assert int(eid[:16], 16) == tree_id, (eid, tree_id)
    assert gi == offsets[tree_id] + local, (gi, offsets, local)
    for how, got in (("entry ID", get(f"/api/v1/log/entries/{eid}")),
                     ("UUID", get(f"/api/v1/log/entries/{uuid}")),
                     ("log index", get(f"/api/v1/log/entries?logIndex={gi}"))):
        (k, v), = got.items()
        assert k == eid and v["logIndex"] == gi and v["body"] == c["entry"]["body"], (how, eid)
        check(v, uuid)
    per_tree[tree_id] = per_tree.get(tree_id, 0) + 1
    first_of.setdefault(tree_id, c)
assert len(per_tree) == 2, f"both shards took entries: {per_tree}"
for tree_id, c in first_of.items():
    ids = get("/api/v1/index/retrieve", json.dumps({"hash": "sha256:" + c["digest"]}).encode())
    assert ids == [c["entry_id"]], (ids, c["entry_id"])
    got = get("/api/v1/log/entries/retrieve", json.dumps({"entryUUIDs": [c["entry_id"][16:]]}).encode())
    assert list(got[0]) == [c["entry_id"]], got
old = inactive[0]
proof = get(f"/api/v1/log/proof?firstSize=1&lastSize={old['treeSize']}&treeID={old['treeID']}")
assert proof["rootHash"] == old["rootHash"], (proof, old)
try:
    get("/api/v1/log/publicKey?treeID=12345")
    raise AssertionError("an unknown treeID was answered")
except urllib.error.HTTPError as e:
    assert e.code == 400, e.code
print(json.dumps({"verified": len(created), "per_tree": per_tree, "offsets": offsets}))
