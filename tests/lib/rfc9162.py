"""RFC 9162 Merkle tree hashing for the test scripts: one copy, imported by
tests/rekor-shard/check.py and tests/soak/kill_soak.py (each puts tests/lib on sys.path)."""
import hashlib


def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def root_from_proof(index, size, leaf, proof):
    """RFC 9162 2.1.3.2: the root an inclusion proof of `leaf` at `index` in a tree of `size`
    leads to, or None if the proof is malformed (too long, too short, index beyond the tree)."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None
