#!/usr/bin/env python3
"""Independent checks of sigvault's Fulcio output with pyca/cryptography (code we did not write).

  fulcio_check.py sct LEAF.pem ISSUER.pem CTLOG_PUB.pem   verify the one embedded SCT (RFC 6962 s3.2)
  fulcio_check.py ext LEAF.pem                            print the extensions and SAN as JSON
  fulcio_check.py hs256 TOKEN JWKS_JSON                   re-sign TOKEN with HS256, the RSA public key (PEM) as the secret
"""
import base64, datetime, hashlib, hmac, json, struct, sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def load(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def sct(leaf_path, issuer_path, pub_path):
    leaf, issuer = load(leaf_path), load(issuer_path)
    with open(pub_path, "rb") as f:
        pub = serialization.load_pem_public_key(f.read())
    scts = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    scts = list(scts)
    assert len(scts) == 1, f"expected exactly one SCT, got {len(scts)}"
    s = scts[0]
    log_id = hashlib.sha256(pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    assert s.log_id == log_id, "SCT log ID is not SHA-256 of the CT key"
    epoch = datetime.datetime(1970, 1, 1)
    ts = (s.timestamp.replace(tzinfo=None) - epoch) // datetime.timedelta(milliseconds=1)
    ikh = hashlib.sha256(issuer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    tbs = leaf.tbs_precertificate_bytes
    data = bytes([0, 0]) + struct.pack(">Q", ts) + struct.pack(">H", 1) + ikh + len(tbs).to_bytes(3, "big") + tbs
    data += struct.pack(">H", len(s.extension_bytes)) + s.extension_bytes
    pub.verify(s.signature, data, ec.ECDSA(hashes.SHA256()))
    print("SCT OK")


def ext(leaf_path):
    leaf = load(leaf_path)
    out = {"subject": leaf.subject.rfc4514_string(), "extensions": {}}
    for e in leaf.extensions:
        out["extensions"][e.oid.dotted_string] = {"critical": e.critical, "der": e.value.public_bytes().hex() if hasattr(e.value, "public_bytes") else None}
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    out["san_email"] = san.get_values_for_type(x509.RFC822Name)
    out["san_uri"] = san.get_values_for_type(x509.UniformResourceIdentifier)
    out["key_usage_digital_signature"] = leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    out["eku"] = [o.dotted_string for o in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value]
    print(json.dumps(out))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hs256(token, jwks_json):
    jwks = json.loads(jwks_json)
    k = next(k for k in jwks["keys"] if k["kty"] == "RSA")
    n = int.from_bytes(base64.urlsafe_b64decode(k["n"] + "=="), "big")
    e = int.from_bytes(base64.urlsafe_b64decode(k["e"] + "=="), "big")
    pem = rsa.RSAPublicNumbers(e, n).public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _, payload, _ = token.split(".")
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": k.get("kid")}).encode())
    signing_input = f"{header}.{payload}".encode()
    print(f"{header}.{payload}.{b64url(hmac.new(pem, signing_input, hashlib.sha256).digest())}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    {"sct": lambda: sct(*sys.argv[2:5]), "ext": lambda: ext(sys.argv[2]), "hs256": lambda: hs256(sys.argv[2], sys.argv[3])}[cmd]()
