//! Proof of possession for the Fulcio-compatible CA (sigstore/fulcio's `POST /api/v2/signingCert` and `/api/v1/signingCert`).
//!
//! Two forms, as upstream Fulcio accepts them:
//! * a public key (PEM `PUBLIC KEY` or DER SubjectPublicKeyInfo, [`parse_public_key`]) plus a
//!   signature over the UTF-8 bytes of the principal name ([`verify_pop`]);
//! * a PKCS#10 CSR (PEM or DER) whose self-signature is the proof ([`verify_csr`]).
//!
//! Keys: ECDSA P-256/P-384/P-521, RSA 2048–4096 bits (multiple of 8, e = 65537), Ed25519.
//! Signing algorithms allowed (upstream's default algorithm registry): P-256+SHA-256,
//! P-384+SHA-384, P-521+SHA-512, RSA-{2048,3072,4096} PKCS#1 v1.5 + SHA-256, Ed25519.
//!
//! Pure code: no I/O. Every error message is meant for the client (HTTP 400).

use const_oid::ObjectIdentifier;
use der::asn1::Null;
use der::{Decode, Reader, SliceReader};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::request::CertReq;

pub use crate::pki::signature::PublicKey;
use crate::pki::signature::key::rsa_bits;
use crate::pki::signature::oid::{
    OID_EC_PUBLIC_KEY, OID_ECDSA_SHA256, OID_ECDSA_SHA384, OID_ECDSA_SHA512, OID_ED25519, OID_P256,
    OID_P384, OID_P521, OID_RSA_ENCRYPTION, OID_RSA_SHA256,
};
use crate::pki::signature::{HashAlg, SignatureError};

/// RSA public exponent accepted (as upstream's goodkey).
const RSA_EXPONENT: u32 = 65537;
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;
/// RSA modulus sizes with an allowed signing algorithm (RSA-PKCS#1 v1.5 with SHA-256).
const RSA_ALLOWED_BITS: [usize; 3] = [2048, 3072, 4096];

const SUPPORTED: &str = "supported: ECDSA P-256/P-384/P-521, RSA 2048-4096 bits, Ed25519";

/// Why a key, signature or CSR was refused. Messages are safe to return to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PopError {
    #[error("public key not provided")]
    MissingKey,
    #[error("malformed public key: {0}")]
    MalformedKey(String),
    #[error("unsupported key type {0} ({SUPPORTED})")]
    UnsupportedKey(String),
    #[error("insecure public key: {0}")]
    WeakKey(String),
    #[error("signing algorithm not permitted: {0}")]
    AlgorithmNotPermitted(String),
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    #[error("signature could not be verified with the {0} public key")]
    BadSignature(String),
    #[error("certificate signing request not provided")]
    MissingCsr,
    #[error("malformed certificate signing request: {0}")]
    MalformedCsr(String),
    #[error("invalid certificate signing request signature: {0}")]
    BadCsrSignature(String),
}

impl PublicKey {
    /// Parse a decoded SubjectPublicKeyInfo, applying the key policy.
    pub fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, PopError> {
        let alg = &spki.algorithm;
        let bits = spki.subject_public_key.as_bytes().ok_or_else(|| {
            PopError::MalformedKey("the subjectPublicKey BIT STRING has unused bits".into())
        })?;
        match alg.oid {
            OID_EC_PUBLIC_KEY => {
                let curve = alg
                    .parameters
                    .as_ref()
                    .ok_or_else(|| {
                        PopError::MalformedKey("EC key without named-curve parameters".into())
                    })?
                    .decode_as::<ObjectIdentifier>()
                    .map_err(|_| {
                        PopError::UnsupportedKey("ECDSA with explicit curve parameters".to_string())
                    })?;
                if bits.first() != Some(&0x04) {
                    return Err(PopError::MalformedKey(
                        "EC point is not in uncompressed form".into(),
                    ));
                }
                let bad = |e: p256::ecdsa::Error| {
                    PopError::MalformedKey(format!("invalid EC point: {e}"))
                };
                match curve {
                    OID_P256 => Ok(Self::P256(
                        p256::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(bad)?,
                    )),
                    OID_P384 => Ok(Self::P384(
                        p384::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(bad)?,
                    )),
                    OID_P521 => Ok(Self::P521(
                        p521::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(bad)?,
                    )),
                    other => Err(PopError::UnsupportedKey(format!(
                        "ECDSA on curve {} ({other})",
                        curve_name(&other)
                    ))),
                }
            }
            OID_RSA_ENCRYPTION => {
                match &alg.parameters {
                    None => {}
                    Some(p) if p.decode_as::<Null>().is_ok() => {}
                    Some(_) => {
                        return Err(PopError::MalformedKey(
                            "RSA key parameters must be NULL".into(),
                        ));
                    }
                }
                Ok(Self::Rsa(parse_rsa(bits)?))
            }
            OID_ED25519 => {
                if alg.parameters.is_some() {
                    return Err(PopError::MalformedKey(
                        "Ed25519 key must not have algorithm parameters".into(),
                    ));
                }
                let raw: &[u8; 32] = bits.try_into().map_err(|_| {
                    PopError::MalformedKey(format!(
                        "Ed25519 key is {} bytes, expected 32",
                        bits.len()
                    ))
                })?;
                ed25519_dalek::VerifyingKey::from_bytes(raw)
                    .map(Self::Ed25519)
                    .map_err(|e| PopError::MalformedKey(format!("invalid Ed25519 key: {e}")))
            }
            other => Err(PopError::UnsupportedKey(format!(
                "{} ({other})",
                key_algorithm_name(&other)
            ))),
        }
    }

    /// The only signature algorithm this key may be used with, per the allowed pairs; an error
    /// for keys whose type is accepted but that have no permitted algorithm (e.g. RSA-2560).
    fn permitted_signature_algorithm(&self) -> Result<ObjectIdentifier, PopError> {
        match self {
            Self::P256(_) => Ok(OID_ECDSA_SHA256),
            Self::P384(_) => Ok(OID_ECDSA_SHA384),
            Self::P521(_) => Ok(OID_ECDSA_SHA512),
            Self::Rsa(k) if RSA_ALLOWED_BITS.contains(&rsa_bits(k)) => Ok(OID_RSA_SHA256),
            Self::Rsa(k) => Err(PopError::AlgorithmNotPermitted(format!(
                "RSA-{} keys are not permitted (allowed RSA sizes: 2048, 3072, 4096 bits)",
                rsa_bits(k)
            ))),
            Self::Ed25519(_) => Ok(OID_ED25519),
        }
    }
}

fn parse_rsa(pkcs1: &[u8]) -> Result<rsa::RsaPublicKey, PopError> {
    let key = rsa::pkcs1::RsaPublicKey::from_der(pkcs1)
        .map_err(|e| PopError::MalformedKey(format!("invalid RSA public key: {e}")))?;
    let n = key.modulus.as_bytes();
    let e = key.public_exponent.as_bytes();
    let bits = match n.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
    };
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(PopError::WeakKey(format!(
            "RSA key of {bits} bits; {RSA_MIN_BITS}-{RSA_MAX_BITS} bits required"
        )));
    }
    if bits % 8 != 0 {
        return Err(PopError::WeakKey(format!(
            "RSA key of {bits} bits; the size must be a multiple of 8"
        )));
    }
    let exp = rsa::BigUint::from_bytes_be(e);
    if exp != rsa::BigUint::from(RSA_EXPONENT) {
        return Err(PopError::WeakKey(format!(
            "RSA public exponent {exp}; only {RSA_EXPONENT} is accepted"
        )));
    }
    rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(n), exp)
        .map_err(|e| PopError::MalformedKey(format!("invalid RSA public key: {e}")))
}

fn curve_name(oid: &ObjectIdentifier) -> String {
    const_oid::db::DB
        .by_oid(oid)
        .map_or_else(|| "an unknown curve".to_string(), str::to_string)
}

fn key_algorithm_name(oid: &ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.10040.4.1" => "DSA".to_string(),
        "1.2.840.10046.2.1" => "Diffie-Hellman".to_string(),
        "1.3.101.110" => "X25519".to_string(),
        "1.3.101.111" => "X448".to_string(),
        "1.3.101.113" => "Ed448".to_string(),
        "1.2.840.113549.1.1.10" => "RSASSA-PSS".to_string(),
        _ => const_oid::db::DB
            .by_oid(oid)
            .map_or_else(|| "unknown".to_string(), str::to_string),
    }
}

fn signature_algorithm_name(oid: &ObjectIdentifier) -> String {
    match *oid {
        OID_ECDSA_SHA256 => "ecdsa-with-SHA256".to_string(),
        OID_ECDSA_SHA384 => "ecdsa-with-SHA384".to_string(),
        OID_ECDSA_SHA512 => "ecdsa-with-SHA512".to_string(),
        OID_RSA_SHA256 => "sha256WithRSAEncryption".to_string(),
        OID_ED25519 => "Ed25519".to_string(),
        _ => match const_oid::db::DB.by_oid(oid) {
            Some(name) => format!("{name} ({oid})"),
            None => oid.to_string(),
        },
    }
}

/// Does `content` look like PEM (after leading whitespace)?
fn is_pem(content: &[u8]) -> bool {
    content.trim_ascii_start().starts_with(b"-----BEGIN ")
}

/// Parse a public key given as PEM `PUBLIC KEY` or DER SubjectPublicKeyInfo, and apply the key
/// policy (curves, RSA size and exponent).
pub fn parse_public_key(content: &[u8]) -> Result<PublicKey, PopError> {
    if content.trim_ascii().is_empty() {
        return Err(PopError::MissingKey);
    }
    // Only PEM is trimmed: DER may well end in a byte that looks like whitespace.
    let der = if is_pem(content) {
        let (label, der) = der::pem::decode_vec(content.trim_ascii())
            .map_err(|e| PopError::MalformedKey(format!("invalid PEM: {e}")))?;
        if label != "PUBLIC KEY" {
            return Err(PopError::MalformedKey(format!(
                "expected a PEM \"PUBLIC KEY\" block, got \"{label}\""
            )));
        }
        der
    } else {
        content.to_vec()
    };
    let spki = SubjectPublicKeyInfoOwned::from_der(&der).map_err(|e| {
        PopError::MalformedKey(format!("neither PEM nor a DER SubjectPublicKeyInfo ({e})"))
    })?;
    PublicKey::from_spki(&spki)
}

/// Verify a proof-of-possession signature over `message` (the principal name's UTF-8 bytes):
/// P-256 with SHA-256, P-384 with SHA-384, P-521 with SHA-512 (DER ECDSA signatures), RSA
/// PKCS#1 v1.5 with SHA-256, Ed25519 pure.
pub fn verify_pop(key: &PublicKey, message: &[u8], signature: &[u8]) -> Result<(), PopError> {
    key.permitted_signature_algorithm()?;
    let hash = match key {
        PublicKey::P384(_) => HashAlg::Sha384,
        PublicKey::P521(_) => HashAlg::Sha512,
        PublicKey::P256(_) | PublicKey::Rsa(_) | PublicKey::Ed25519(_) => HashAlg::Sha256,
    };
    crate::pki::signature::verify_message(key, hash, message, signature).map_err(|e| match e {
        SignatureError::NotDer(why) => {
            PopError::MalformedSignature(format!("not a DER ECDSA signature ({why})"))
        }
        SignatureError::Ed25519Length(got) => {
            PopError::MalformedSignature(format!("an Ed25519 signature is 64 bytes, got {got}"))
        }
        _ => PopError::BadSignature(key.to_string()),
    })
}

/// The DER bytes of the CSR's CertificationRequestInfo exactly as sent (what the signature
/// covers), without re-encoding.
fn csr_info_bytes(der: &[u8]) -> Result<&[u8], der::Error> {
    let mut outer = SliceReader::new(der)?;
    let header = der::Header::decode(&mut outer)?;
    header.tag.assert_eq(der::Tag::Sequence)?;
    let body = outer.read_slice(header.length)?;
    let mut inner = SliceReader::new(body)?;
    inner.tlv_bytes()
}

/// Check a PKCS#10 certification request (PEM `CERTIFICATE REQUEST` or DER): its self-signature
/// must verify with its own key, using the algorithm the CSR names, which must be the allowed
/// one for the key type. Subject and attributes are ignored. Returns the key.
pub fn verify_csr(csr: &[u8]) -> Result<PublicKey, PopError> {
    if csr.trim_ascii().is_empty() {
        return Err(PopError::MissingCsr);
    }
    let der = if is_pem(csr) {
        let (label, der) = der::pem::decode_vec(csr.trim_ascii())
            .map_err(|e| PopError::MalformedCsr(format!("invalid PEM: {e}")))?;
        if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
            return Err(PopError::MalformedCsr(format!(
                "expected a PEM \"CERTIFICATE REQUEST\" block, got \"{label}\""
            )));
        }
        der
    } else {
        csr.to_vec()
    };
    let req = CertReq::from_der(&der).map_err(|e| PopError::MalformedCsr(e.to_string()))?;
    let info = csr_info_bytes(&der).map_err(|e| PopError::MalformedCsr(e.to_string()))?;
    let key = PublicKey::from_spki(&req.info.public_key)?;

    let named = &req.algorithm;
    let allowed = key.permitted_signature_algorithm()?;
    if named.oid != allowed {
        return Err(PopError::AlgorithmNotPermitted(format!(
            "the CSR is signed with {} but a {key} key must use {}",
            signature_algorithm_name(&named.oid),
            signature_algorithm_name(&allowed)
        )));
    }
    let params_ok = match (&named.parameters, named.oid) {
        (None, _) => true,
        // RFC 4055 allows NULL or absent for sha256WithRSAEncryption; ECDSA and Ed25519 have none.
        (Some(p), OID_RSA_SHA256) => p.decode_as::<Null>().is_ok(),
        (Some(_), _) => false,
    };
    if !params_ok {
        return Err(PopError::MalformedCsr(format!(
            "unexpected parameters for signature algorithm {}",
            signature_algorithm_name(&named.oid)
        )));
    }
    let sig = req
        .signature
        .as_bytes()
        .ok_or_else(|| PopError::MalformedCsr("the signature BIT STRING has unused bits".into()))?;
    verify_pop(&key, info, sig).map_err(|e| PopError::BadCsrSignature(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::BitString;
    use der::{Any, Encode};
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;
    use spki::AlgorithmIdentifierOwned;

    fn p256_key() -> (p256::ecdsa::SigningKey, Vec<u8>) {
        let sk = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let spki = sk
            .verifying_key()
            .to_public_key_der()
            .expect("spki")
            .into_vec();
        (sk, spki)
    }

    #[test]
    fn p256_pem_and_der_roundtrip() {
        let (sk, spki) = p256_key();
        let pem = crate::pki::spki_pem(&spki).expect("pem");
        let from_pem = parse_public_key(format!("\n{pem}\n").as_bytes()).expect("pem key");
        let from_der = parse_public_key(&spki).expect("der key");
        assert_eq!(from_pem, from_der);
        assert_eq!(from_der.spki_der(), spki);
        assert_eq!(from_der.to_string(), "ECDSA P-256");
        let sig: p256::ecdsa::Signature = sk.sign(b"alice@example.com");
        verify_pop(&from_der, b"alice@example.com", sig.to_der().as_bytes()).expect("verify");
        let err = verify_pop(&from_der, b"mallory@example.com", sig.to_der().as_bytes())
            .expect_err("wrong subject");
        assert!(matches!(err, PopError::BadSignature(_)), "{err}");
        let err = verify_pop(&from_der, b"alice@example.com", &sig.to_bytes()).expect_err("raw");
        assert!(matches!(err, PopError::MalformedSignature(_)), "{err}");
    }

    #[test]
    fn ed25519_roundtrip() {
        use ed25519_dalek::Signer as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let key = PublicKey::Ed25519(sk.verifying_key());
        let der = key.spki_der();
        let parsed = parse_public_key(&der).expect("parse");
        assert_eq!(parsed, key);
        let sig = sk.sign(b"sub");
        verify_pop(&parsed, b"sub", &sig.to_bytes()).expect("verify");
        assert!(verify_pop(&parsed, b"other", &sig.to_bytes()).is_err());
    }

    #[test]
    fn der_ending_in_a_whitespace_byte_is_not_trimmed() {
        let key = (0u16..=u16::MAX)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..2].copy_from_slice(&i.to_be_bytes());
                ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key()
            })
            .find(|k| k.as_bytes()[31] == b'\n')
            .expect("a key ending in a newline byte");
        let der = PublicKey::Ed25519(key).spki_der();
        assert_eq!(der.last(), Some(&b'\n'));
        assert_eq!(
            parse_public_key(&der).expect("parse"),
            PublicKey::Ed25519(key)
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse_public_key(b"  "), Err(PopError::MissingKey));
        assert!(matches!(
            parse_public_key(b"\x30\x03\x02\x01\x01"),
            Err(PopError::MalformedKey(_))
        ));
        let (_, spki) = p256_key();
        let pem =
            der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &spki).expect("pem");
        let err = parse_public_key(pem.as_bytes()).expect_err("label");
        assert!(err.to_string().contains("PUBLIC KEY"), "{err}");
        // Compressed P-256 point.
        let (sk, _) = p256_key();
        let compressed = sk.verifying_key().to_encoded_point(true);
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: OID_EC_PUBLIC_KEY,
                parameters: Some(Any::encode_from(&OID_P256).expect("any")),
            },
            subject_public_key: BitString::from_bytes(compressed.as_bytes()).expect("bits"),
        };
        let err = parse_public_key(&spki.to_der().expect("der")).expect_err("compressed");
        assert!(err.to_string().contains("uncompressed"), "{err}");
        assert_eq!(verify_csr(b""), Err(PopError::MissingCsr));
        assert!(matches!(
            verify_csr(
                b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            ),
            Err(PopError::MalformedCsr(_))
        ));
    }
}
