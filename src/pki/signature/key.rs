//! The public keys signatures are verified with: ECDSA P-256/P-384/P-521, RSA, Ed25519, and
//! their canonical SubjectPublicKeyInfo. Which keys a service accepts is its policy, not this
//! file's: Fulcio's and Rekor's (curves, RSA sizes and exponent) is [`crate::pki::pop`]'s
//! `PublicKey::from_spki`; the CT log's chain check builds keys from issuer certificates in
//! src/pki/ct.rs.

use std::fmt;

use const_oid::ObjectIdentifier;

use super::SignatureError;
use super::oid::{
    OID_EC_PUBLIC_KEY, OID_ED25519, OID_P256, OID_P384, OID_P521, OID_RSA_ENCRYPTION,
};
use crate::pki::tlv::tlv;

/// A public key to verify signatures with.
#[derive(Clone)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::P256(_) => f.write_str("ECDSA P-256"),
            Self::P384(_) => f.write_str("ECDSA P-384"),
            Self::P521(_) => f.write_str("ECDSA P-521"),
            Self::Rsa(k) => write!(f, "RSA-{}", rsa_bits(k)),
            Self::Ed25519(_) => f.write_str("Ed25519"),
        }
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki_der() == other.spki_der()
    }
}

impl Eq for PublicKey {}

pub(crate) fn rsa_bits(k: &rsa::RsaPublicKey) -> usize {
    use rsa::traits::PublicKeyParts;
    k.n().bits()
}

/// DER INTEGER of a big-endian unsigned value.
fn der_uint(be: &[u8]) -> Vec<u8> {
    let first = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    let v = &be[first..];
    let mut content = Vec::with_capacity(v.len() + 1);
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(v);
    tlv(0x02, &content)
}

fn oid_tlv(oid: &ObjectIdentifier) -> Vec<u8> {
    tlv(0x06, oid.as_bytes())
}

/// `SEQUENCE { SEQUENCE { algorithm, parameters }, BIT STRING key }` (no unused bits).
fn spki_bytes(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0);
    bits.extend_from_slice(key);
    let mut body = tlv(0x30, algorithm);
    body.extend_from_slice(&tlv(0x03, &bits));
    tlv(0x30, &body)
}

fn ec_spki(curve: &ObjectIdentifier, uncompressed_point: &[u8]) -> Vec<u8> {
    let mut alg = oid_tlv(&OID_EC_PUBLIC_KEY);
    alg.extend_from_slice(&oid_tlv(curve));
    spki_bytes(&alg, uncompressed_point)
}

impl PublicKey {
    /// The key as canonical DER SubjectPublicKeyInfo, as Go's `x509.MarshalPKIXPublicKey` writes
    /// it (EC points uncompressed with a named curve, RSA with NULL parameters, Ed25519 without
    /// parameters): what goes into the certificate.
    pub fn spki_der(&self) -> Vec<u8> {
        match self {
            Self::P256(k) => ec_spki(&OID_P256, k.to_encoded_point(false).as_bytes()),
            Self::P384(k) => ec_spki(&OID_P384, k.to_encoded_point(false).as_bytes()),
            Self::P521(k) => ec_spki(&OID_P521, k.to_encoded_point(false).as_bytes()),
            Self::Rsa(k) => {
                use rsa::traits::PublicKeyParts;
                let mut alg = oid_tlv(&OID_RSA_ENCRYPTION);
                alg.extend_from_slice(&[0x05, 0x00]);
                let mut body = der_uint(&k.n().to_bytes_be());
                body.extend_from_slice(&der_uint(&k.e().to_bytes_be()));
                spki_bytes(&alg, &tlv(0x30, &body))
            }
            Self::Ed25519(k) => spki_bytes(&oid_tlv(&OID_ED25519), k.as_bytes()),
        }
    }

    /// An ECDSA P-256 key given as DER SubjectPublicKeyInfo, with no policy beyond the curve:
    /// the form sigvault's own keys (checkpoints, SCTs, TUF) are published in.
    pub fn p256_from_spki_der(spki: &[u8]) -> Result<Self, SignatureError> {
        use p256::pkcs8::DecodePublicKey;
        p256::ecdsa::VerifyingKey::from_public_key_der(spki)
            .map(Self::P256)
            .map_err(|e| SignatureError::Key(e.to_string()))
    }
}
