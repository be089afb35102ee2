//! The digest algorithms signatures are made over, and what the RSA schemes need of them.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// DigestInfo prefix of SHA-1 for PKCS#1 v1.5 (RFC 8017 §9.2 note 1): built by hand because
/// `rsa::Pkcs1v15Sign::new::<sha1::Sha1>` needs the sha1 crate's `oid` feature.
const SHA1_DIGEST_INFO_PREFIX: [u8; 15] = [
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];

/// A digest algorithm.
///
/// SHA-1 is here only because an X.509 chain a CT log takes may still carry
/// sha1WithRSAEncryption signatures (old roots and intermediates, as ct-go's CTFE accepts them).
/// Every verification function of [`super`] refuses it with
/// [`super::SignatureError::Sha1NotPermitted`] but one:
/// [`super::x509::verify_certificate_signature`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The digest of `msg`.
    pub fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => sha1::Sha1::digest(msg).to_vec(),
            Self::Sha256 => Sha256::digest(msg).to_vec(),
            Self::Sha384 => Sha384::digest(msg).to_vec(),
            Self::Sha512 => Sha512::digest(msg).to_vec(),
        }
    }

    /// RSASSA-PKCS1-v1_5 with this digest.
    pub(super) fn pkcs1v15(self) -> rsa::Pkcs1v15Sign {
        match self {
            Self::Sha1 => rsa::Pkcs1v15Sign {
                hash_len: Some(20),
                prefix: Box::new(SHA1_DIGEST_INFO_PREFIX),
            },
            Self::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
            Self::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
            Self::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
        }
    }

    /// RSASSA-PSS with this digest, MGF1 with the same digest and a salt as long as the digest
    /// (Go's `rsa.PSSSaltLengthEqualsHash`, sigstore's PSS key details).
    pub(super) fn pss(self) -> rsa::Pss {
        match self {
            Self::Sha1 => rsa::Pss::new::<sha1::Sha1>(),
            Self::Sha256 => rsa::Pss::new::<Sha256>(),
            Self::Sha384 => rsa::Pss::new::<Sha384>(),
            Self::Sha512 => rsa::Pss::new::<Sha512>(),
        }
    }
}
