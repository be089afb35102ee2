//! X.509 certificate signatures: which signature-algorithm OIDs a chain may use, and checking one
//! over the certificate's TBS bytes. This is the one place SHA-1 is accepted
//! (sha1WithRSAEncryption, still found in roots and intermediates a CT log must take, as ct-go's
//! CTFE takes them); ecdsa-with-SHA1 is not.

use const_oid::ObjectIdentifier;

use super::oid::{
    OID_ECDSA_SHA256, OID_ECDSA_SHA384, OID_ECDSA_SHA512, OID_RSA_SHA1, OID_RSA_SHA256,
    OID_RSA_SHA384, OID_RSA_SHA512,
};
use super::{HashAlg, PublicKey, SignatureError};

/// A certificate signature algorithm a chain may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertSignatureAlgorithm {
    Ecdsa(HashAlg),
    RsaPkcs1v15(HashAlg),
}

impl CertSignatureAlgorithm {
    /// What [`Self::from_oid`] takes, for messages.
    pub const SUPPORTED: &'static str =
        "ECDSA with SHA-256/384/512, RSA PKCS#1 v1.5 with SHA-1/256/384/512";

    /// The algorithm an `AlgorithmIdentifier` names, or `None` for one not supported.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Some(match *oid {
            OID_ECDSA_SHA256 => Self::Ecdsa(HashAlg::Sha256),
            OID_ECDSA_SHA384 => Self::Ecdsa(HashAlg::Sha384),
            OID_ECDSA_SHA512 => Self::Ecdsa(HashAlg::Sha512),
            OID_RSA_SHA1 => Self::RsaPkcs1v15(HashAlg::Sha1),
            OID_RSA_SHA256 => Self::RsaPkcs1v15(HashAlg::Sha256),
            OID_RSA_SHA384 => Self::RsaPkcs1v15(HashAlg::Sha384),
            OID_RSA_SHA512 => Self::RsaPkcs1v15(HashAlg::Sha512),
            _ => return None,
        })
    }

    /// The family of key the algorithm needs: "ECDSA" or "RSA".
    pub fn key_family(self) -> &'static str {
        match self {
            Self::Ecdsa(_) => "ECDSA",
            Self::RsaPkcs1v15(_) => "RSA",
        }
    }
}

/// Verify a certificate's signature (DER ECDSA or PKCS#1 v1.5) over its DER TBSCertificate with
/// its issuer's key.
pub fn verify_certificate_signature(
    key: &PublicKey,
    alg: CertSignatureAlgorithm,
    tbs: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    let (fits, hash) = match (alg, key) {
        (
            CertSignatureAlgorithm::Ecdsa(h),
            PublicKey::P256(_) | PublicKey::P384(_) | PublicKey::P521(_),
        ) => (true, h),
        (CertSignatureAlgorithm::RsaPkcs1v15(h), PublicKey::Rsa(_)) => (true, h),
        (CertSignatureAlgorithm::Ecdsa(h) | CertSignatureAlgorithm::RsaPkcs1v15(h), _) => {
            (false, h)
        }
    };
    if !fits {
        return Err(SignatureError::KeyMismatch {
            algorithm: alg.key_family(),
            key: key.to_string(),
        });
    }
    super::message_any_hash(key, hash, tbs, sig)
}
