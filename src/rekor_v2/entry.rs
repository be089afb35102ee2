//! A Rekor v2 `CreateEntryRequest` (protobuf-JSON, rekor-tiles `api/proto/rekor/v2/`): parsed,
//! its signature verified over the digest per `keyDetails`, and turned into the canonical body
//! that is logged, hashed into the leaf and returned as `canonicalizedBody`.
//!
//! Only `hashedRekordRequestV002` is taken. `dsseRequestV002` is refused: upstream dropped DSSE
//! from v2 (rekor-tiles PR #744) and clients log an envelope as a hashedrekord of the digest of
//! its PAE with the envelope's signature, which this log takes like any other.

use base64::Engine;
use base64::engine::general_purpose::{
    STANDARD as B64, STANDARD_NO_PAD as B64_NO_PAD, URL_SAFE as B64_URL,
    URL_SAFE_NO_PAD as B64_URL_NO_PAD,
};
use der::Decode;
use serde::Deserialize;
use serde_json::json;

use crate::pki::pop::PublicKey;
use crate::pki::signature::{
    HashAlg, SignatureError, ecdsa_as_der, verify_digest, verify_digest_pss,
};

/// Why a request was refused: always the client's fault (HTTP 400 and INVALID_ARGUMENT, through
/// [`super::RekorV2Error::Entry`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    /// Malformed, or naming what this log does not take.
    #[error("{0}")]
    Invalid(String),
    /// The entry's signature was refused.
    #[error("verifying signature: {0}")]
    Signature(#[from] SignatureError),
}

fn err(m: impl Into<String>) -> EntryError {
    EntryError::Invalid(m.into())
}

/// The signature algorithms this log verifies (protobuf-specs `PublicKeyDetails`): upstream's
/// default registry less Ed25519ph, plus RSASSA-PSS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyDetails {
    EcdsaP256Sha256,
    EcdsaP384Sha384,
    EcdsaP521Sha512,
    RsaPkcs1v15Sha256(usize),
    RsaPssSha256(usize),
}

/// `(name, details)` of every supported `keyDetails`.
const SUPPORTED: &[(&str, KeyDetails)] = &[
    ("PKIX_ECDSA_P256_SHA_256", KeyDetails::EcdsaP256Sha256),
    ("PKIX_ECDSA_P384_SHA_384", KeyDetails::EcdsaP384Sha384),
    ("PKIX_ECDSA_P521_SHA_512", KeyDetails::EcdsaP521Sha512),
    (
        "PKIX_RSA_PKCS1V15_2048_SHA256",
        KeyDetails::RsaPkcs1v15Sha256(2048),
    ),
    (
        "PKIX_RSA_PKCS1V15_3072_SHA256",
        KeyDetails::RsaPkcs1v15Sha256(3072),
    ),
    (
        "PKIX_RSA_PKCS1V15_4096_SHA256",
        KeyDetails::RsaPkcs1v15Sha256(4096),
    ),
    ("PKIX_RSA_PSS_2048_SHA256", KeyDetails::RsaPssSha256(2048)),
    ("PKIX_RSA_PSS_3072_SHA256", KeyDetails::RsaPssSha256(3072)),
    ("PKIX_RSA_PSS_4096_SHA256", KeyDetails::RsaPssSha256(4096)),
];

/// `PublicKeyDetails` names that exist but that this log does not take, with the reason.
const REFUSED: &[(&str, &str)] = &[
    ("PUBLIC_KEY_DETAILS_UNSPECIFIED", "keyDetails is required"),
    (
        "PKIX_ED25519",
        "pure Ed25519 signs the message, not a digest: a hashedrekord cannot carry it",
    ),
    ("PKIX_ED25519_PH", "Ed25519ph is not supported by this log"),
    (
        "PKCS1_RSA_PKCS1V5",
        "deprecated key details; name the key size",
    ),
    ("PKCS1_RSA_PSS", "deprecated key details; name the key size"),
    (
        "PKIX_RSA_PKCS1V5",
        "deprecated key details; name the key size",
    ),
    ("PKIX_RSA_PSS", "deprecated key details; name the key size"),
    (
        "PKIX_ECDSA_P256_HMAC_SHA_256",
        "not a signature algorithm this log verifies",
    ),
    (
        "PKIX_ECDSA_P384_SHA_256",
        "not in the algorithm registry (P-384 pairs with SHA-384)",
    ),
    (
        "PKIX_ECDSA_P521_SHA_256",
        "not in the algorithm registry (P-521 pairs with SHA-512)",
    ),
    (
        "LMS_SHA256",
        "stateful hash-based signatures are not supported",
    ),
    (
        "LMOTS_SHA256",
        "stateful hash-based signatures are not supported",
    ),
    ("ML_DSA_65", "ML-DSA is not supported by this log yet"),
    ("ML_DSA_87", "ML-DSA is not supported by this log yet"),
];

fn supported_names() -> String {
    SUPPORTED
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl KeyDetails {
    /// Look up a `keyDetails` name.
    pub fn parse(name: &str) -> Result<Self, EntryError> {
        if let Some((_, d)) = SUPPORTED.iter().find(|(n, _)| *n == name) {
            return Ok(*d);
        }
        if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
            return Err(err(format!(
                "keyDetails {name}: {why}; supported: {}",
                supported_names()
            )));
        }
        Err(err(format!(
            "unknown keyDetails {:?}; supported: {}",
            name.chars().take(64).collect::<String>(),
            supported_names()
        )))
    }

    pub fn name(self) -> &'static str {
        SUPPORTED
            .iter()
            .find(|(_, d)| *d == self)
            .map(|(n, _)| *n)
            .expect("every KeyDetails is in SUPPORTED")
    }

    pub fn hash(self) -> HashAlg {
        match self {
            Self::EcdsaP384Sha384 => HashAlg::Sha384,
            Self::EcdsaP521Sha512 => HashAlg::Sha512,
            _ => HashAlg::Sha256,
        }
    }

    /// The hash's name in the body (`HashOutput.algorithm`, protobuf-specs `HashAlgorithm`).
    fn hash_name(self) -> &'static str {
        match self {
            Self::EcdsaP384Sha384 => "SHA2_384",
            Self::EcdsaP521Sha512 => "SHA2_512",
            _ => "SHA2_256",
        }
    }

    /// Refuse a key that is not the one these details name.
    fn check_key(self, key: &PublicKey, what: &str) -> Result<(), EntryError> {
        use rsa::traits::PublicKeyParts;
        let ok = match (self, key) {
            (Self::EcdsaP256Sha256, PublicKey::P256(_)) => true,
            (Self::EcdsaP384Sha384, PublicKey::P384(_)) => true,
            (Self::EcdsaP521Sha512, PublicKey::P521(_)) => true,
            (Self::RsaPkcs1v15Sha256(bits) | Self::RsaPssSha256(bits), PublicKey::Rsa(k)) => {
                k.n().bits() == bits
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(err(format!(
                "the {what} holds an {key} key, which keyDetails {} does not name",
                self.name()
            )))
        }
    }

    /// ECDSA as DER or IEEE P1363, as upstream's verifier takes either.
    fn verify(self, key: &PublicKey, digest: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
        match self {
            Self::RsaPssSha256(_) => verify_digest_pss(key, self.hash(), digest, sig),
            _ => verify_digest(key, self.hash(), digest, &ecdsa_as_der(key, sig)?),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEntryRequest {
    #[serde(
        default,
        rename = "hashedRekordRequestV002",
        alias = "hashed_rekord_request_v002"
    )]
    hashed_rekord: Option<HashedRekordRequest>,
    #[serde(default, rename = "dsseRequestV002", alias = "dsse_request_v002")]
    dsse: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HashedRekordRequest {
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    signature: Option<Signature>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signature {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    verifier: Option<Verifier>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Verifier {
    #[serde(default, rename = "publicKey", alias = "public_key")]
    public_key: Option<RawBytes>,
    #[serde(default, rename = "x509Certificate", alias = "x509_certificate")]
    x509_certificate: Option<RawBytes>,
    #[serde(default, rename = "keyDetails", alias = "key_details")]
    key_details: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBytes {
    #[serde(default, rename = "rawBytes", alias = "raw_bytes")]
    raw_bytes: Option<String>,
}

/// protobuf-JSON `bytes`: standard or URL-safe base64, padded or not.
fn bytes_field(v: Option<&str>, name: &str) -> Result<Vec<u8>, EntryError> {
    let s = v
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err(format!("{name}: missing")))?;
    [&B64, &B64_NO_PAD, &B64_URL, &B64_URL_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
        .ok_or_else(|| err(format!("{name}: not base64")))
}

/// Which verifier the request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifierKind {
    PublicKey,
    Certificate,
}

/// A validated entry, ready to append.
#[derive(Debug, Clone)]
pub struct Canonical {
    /// The canonical body (RFC 8785 JSON): what the leaf hash covers.
    pub body: Vec<u8>,
    pub key_details: KeyDetails,
    pub verifier: VerifierKind,
}

/// Parse, check and verify a `CreateEntryRequest` body.
pub fn canonicalize(body: &[u8]) -> Result<Canonical, EntryError> {
    let req: CreateEntryRequest = serde_json::from_slice(body).map_err(|e| {
        err(format!(
            "invalid request: {}",
            crate::http::json_error_text(&e)
        ))
    })?;
    let hr = match (req.hashed_rekord, req.dsse) {
        (Some(h), None) => h,
        (None, Some(_)) => {
            return Err(err(
                "dsseRequestV002 is not supported: Rekor v2 logs a DSSE envelope as a hashedRekordRequestV002 whose digest is the hash of the envelope's PAE encoding and whose signature is the envelope's signature",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(err(
                "a request carries one of hashedRekordRequestV002 and dsseRequestV002, not both",
            ));
        }
        (None, None) => {
            return Err(err(
                "the request needs a hashedRekordRequestV002 (the only kind this log takes)",
            ));
        }
    };
    let digest = bytes_field(hr.digest.as_deref(), "digest")?;
    let sig = hr.signature.ok_or_else(|| err("signature: missing"))?;
    let content = bytes_field(sig.content.as_deref(), "signature.content")?;
    let v = sig
        .verifier
        .ok_or_else(|| err("signature.verifier: missing"))?;
    let details = KeyDetails::parse(
        v.key_details
            .as_deref()
            .ok_or_else(|| err("signature.verifier.keyDetails: missing"))?,
    )?;
    let (kind, der, key) = match (&v.public_key, &v.x509_certificate) {
        (Some(pk), None) => {
            let der = bytes_field(
                pk.raw_bytes.as_deref(),
                "signature.verifier.publicKey.rawBytes",
            )?;
            let spki = spki::SubjectPublicKeyInfoOwned::from_der(&der).map_err(|e| {
                err(format!(
                    "signature.verifier.publicKey.rawBytes: not a DER SubjectPublicKeyInfo: {e}"
                ))
            })?;
            let key = PublicKey::from_spki(&spki)
                .map_err(|e| err(format!("signature.verifier.publicKey: {e}")))?;
            (VerifierKind::PublicKey, der, key)
        }
        (None, Some(c)) => {
            let der = bytes_field(
                c.raw_bytes.as_deref(),
                "signature.verifier.x509Certificate.rawBytes",
            )?;
            let cert = x509_cert::Certificate::from_der(&der).map_err(|e| {
                err(format!(
                    "signature.verifier.x509Certificate.rawBytes: not a DER X.509 certificate: {e}"
                ))
            })?;
            let key = PublicKey::from_spki(&cert.tbs_certificate.subject_public_key_info)
                .map_err(|e| err(format!("signature.verifier.x509Certificate: {e}")))?;
            (VerifierKind::Certificate, der, key)
        }
        _ => {
            return Err(err(
                "signature.verifier: exactly one of publicKey and x509Certificate",
            ));
        }
    };
    details.check_key(
        &key,
        match kind {
            VerifierKind::PublicKey => "public key",
            VerifierKind::Certificate => "certificate",
        },
    )?;
    let want = details.hash().digest_len();
    if digest.len() != want {
        return Err(err(format!(
            "digest: {} bytes, but keyDetails {} signs a {}-byte digest",
            digest.len(),
            details.name(),
            want
        )));
    }
    details.verify(&key, &digest, &content)?;

    let verifier_field = match kind {
        VerifierKind::PublicKey => "publicKey",
        VerifierKind::Certificate => "x509Certificate",
    };
    let mut verifier = serde_json::Map::new();
    verifier.insert("keyDetails".into(), json!(details.name()));
    verifier.insert(verifier_field.into(), json!({"rawBytes": B64.encode(&der)}));
    let body = json!({
        "apiVersion": "0.0.2",
        "kind": "hashedrekord",
        "spec": {"hashedRekordV002": {
            "data": {"algorithm": details.hash_name(), "digest": B64.encode(&digest)},
            "signature": {"content": B64.encode(&content), "verifier": verifier},
        }},
    });
    Ok(Canonical {
        // serde_json's map keeps keys in lexical order and the values are strings: this is the
        // RFC 8785 form.
        body: serde_json::to_vec(&body).expect("a JSON value always serializes"),
        key_details: details,
        verifier: kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use sha2::Digest;

    fn signed_request(digest: &[u8], key_details: &str) -> (Vec<u8>, String) {
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("test value");
        let sig: p256::ecdsa::Signature = sk
            .sign_prehash(&sha2::Sha256::digest(b"x"))
            .expect("test value");
        let spki = {
            use p256::pkcs8::EncodePublicKey;
            sk.verifying_key()
                .to_public_key_der()
                .expect("test value")
                .into_vec()
        };
        let req = json!({"hashedRekordRequestV002": {
            "digest": B64.encode(digest),
            "signature": {"content": B64.encode(sig.to_der().as_bytes()),
                          "verifier": {"publicKey": {"rawBytes": B64.encode(&spki)},
                                       "keyDetails": key_details}}}});
        (
            serde_json::to_vec(&req).expect("test value"),
            B64.encode(&spki),
        )
    }

    #[test]
    fn a_signed_digest_becomes_the_canonical_body() {
        let d = sha2::Sha256::digest(b"x");
        let (req, spki) = signed_request(&d, "PKIX_ECDSA_P256_SHA_256");
        let c = canonicalize(&req).expect("test value");
        let body = String::from_utf8(c.body).expect("test value");
        assert!(body.starts_with(r#"{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{"hashedRekordV002":{"data":{"algorithm":"SHA2_256","digest":""#));
        assert!(body.contains(&format!(
            r#""verifier":{{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{{"rawBytes":"{spki}"}}}}"#
        )));
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let d = sha2::Sha256::digest(b"x");
        let (req, _) = signed_request(&d, "PKIX_ECDSA_P384_SHA_384");
        assert!(
            canonicalize(&req)
                .expect_err("must be refused")
                .to_string()
                .contains("does not name")
        );
        let (req, _) = signed_request(&d, "PKIX_ED25519");
        assert!(
            canonicalize(&req)
                .expect_err("must be refused")
                .to_string()
                .contains("pure Ed25519")
        );
        let (req, _) = signed_request(&d, "NOPE");
        assert!(
            canonicalize(&req)
                .expect_err("must be refused")
                .to_string()
                .starts_with("unknown keyDetails")
        );
        let (req, _) = signed_request(&d[..31], "PKIX_ECDSA_P256_SHA_256");
        assert!(
            canonicalize(&req)
                .expect_err("must be refused")
                .to_string()
                .contains("31 bytes")
        );
        let (req, _) = signed_request(&sha2::Sha256::digest(b"y"), "PKIX_ECDSA_P256_SHA_256");
        let e = canonicalize(&req).expect_err("must be refused");
        assert_eq!(e, EntryError::Signature(SignatureError::Invalid));
        assert_eq!(
            e.to_string(),
            "verifying signature: signature does not verify"
        );
        let e =
            canonicalize(br#"{"dsseRequestV002":{"envelope":{}}}"#).expect_err("must be refused");
        assert!(e.to_string().contains("PAE"), "{e}");
        let e = canonicalize(br#"{"hashedRekordRequestV002":{"digest":"eyJhbGciOi","x":1}}"#)
            .expect_err("must be refused");
        assert!(
            e.to_string().starts_with("invalid request: unknown field"),
            "{e}"
        );
        assert!(!e.to_string().contains("eyJ"), "{e}");
    }
}
