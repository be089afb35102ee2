//! ECDSA: the signature encodings, and verification through the fast backends of [`super::fast`]
//! where they can decide, the pure-Rust curve crates otherwise (the two agree; the fast ones are
//! three to four times faster, which the CT log's chain check and Rekor's ingestion feel).

use std::borrow::Cow;

use p256::ecdsa::signature::hazmat::PrehashVerifier;

use super::fast::{self, EcCurve, EcHash, PrehashCurve};
use super::{HashAlg, PublicKey, SignatureError};

/// An ECDSA signature as DER: DER as sent, or IEEE P1363 (r‖s at the curve's width, what
/// WebCrypto and many HSM tools produce) converted, as upstream Rekor's verifier accepts both.
/// Signatures for other keys pass through. Only Rekor takes P1363; everything else
/// (certificates, CSRs, proofs of possession, checkpoints, TUF) is DER only.
pub fn ecdsa_as_der<'s>(key: &PublicKey, sig: &'s [u8]) -> Result<Cow<'s, [u8]>, SignatureError> {
    let neither = |width: usize| SignatureError::NotEcdsa {
        width,
        len: sig.len(),
    };
    macro_rules! normalise {
        ($curve:ident, $width:expr) => {
            if $curve::ecdsa::Signature::from_der(sig).is_ok() {
                Ok(Cow::Borrowed(sig))
            } else {
                $curve::ecdsa::Signature::from_slice(sig)
                    .map(|s| Cow::Owned(s.to_der().as_bytes().to_vec()))
                    .map_err(|_| neither($width))
            }
        };
    }
    match key {
        PublicKey::P256(_) => normalise!(p256, 64),
        PublicKey::P384(_) => normalise!(p384, 96),
        PublicKey::P521(_) => normalise!(p521, 132),
        _ => Ok(Cow::Borrowed(sig)),
    }
}

fn not_der(e: p256::ecdsa::Error) -> SignatureError {
    SignatureError::NotDer(e.to_string())
}

fn decided(ok: Option<bool>) -> Option<Result<(), SignatureError>> {
    ok.map(|ok| {
        if ok {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    })
}

/// A DER signature over a precomputed digest: aws-lc when it can decide, else the curve crate.
/// The signature is parsed first so a malformed one is told apart from one that does not verify.
pub(super) fn verify_prehash(
    key: &PublicKey,
    digest: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    macro_rules! prehash {
        ($curve:ident, $k:expr, $which:expr) => {{
            let s = $curve::ecdsa::Signature::from_der(sig).map_err(not_der)?;
            let point = $k.to_encoded_point(false);
            decided(fast::verify_prehashed(
                $which,
                point.as_bytes(),
                digest,
                sig,
            ))
            .unwrap_or_else(|| {
                $k.verify_prehash(digest, &s)
                    .map_err(|_| SignatureError::Invalid)
            })
        }};
    }
    match key {
        PublicKey::P256(k) => prehash!(p256, k, PrehashCurve::P256),
        PublicKey::P384(k) => prehash!(p384, k, PrehashCurve::P384),
        PublicKey::P521(k) => prehash!(p521, k, PrehashCurve::P521),
        _ => Err(SignatureError::KeyMismatch {
            algorithm: "ECDSA",
            key: key.to_string(),
        }),
    }
}

/// A DER signature over `message` with `hash`: ring for P-256 and P-384 with SHA-256 or SHA-384,
/// [`verify_prehash`] over the digest otherwise.
pub(super) fn verify_message(
    key: &PublicKey,
    hash: HashAlg,
    message: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    let ring_hash = match hash {
        HashAlg::Sha256 => Some(EcHash::Sha256),
        HashAlg::Sha384 => Some(EcHash::Sha384),
        HashAlg::Sha1 | HashAlg::Sha512 => None,
    };
    macro_rules! ring {
        ($curve:ident, $k:expr, $which:expr, $h:expr) => {{
            $curve::ecdsa::Signature::from_der(sig).map_err(not_der)?;
            let point = $k.to_encoded_point(false);
            decided(fast::verify($which, $h, point.as_bytes(), message, sig))
        }};
    }
    let ring = match (key, ring_hash) {
        (PublicKey::P256(k), Some(h)) => ring!(p256, k, EcCurve::P256, h),
        (PublicKey::P384(k), Some(h)) => ring!(p384, k, EcCurve::P384, h),
        _ => None,
    };
    ring.unwrap_or_else(|| verify_prehash(key, &hash.digest(message), sig))
}
