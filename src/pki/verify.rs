//! Signature verification for what clients send to be logged: a signature over a precomputed
//! digest (hashedrekord v1 and v2) or over a whole message (DSSE, rekord), by any key the key
//! policy of [`crate::pki::pop`] accepts. ECDSA goes through aws-lc or ring where they can decide
//! ([`crate::pki::fastverify`]), the pure-Rust curve crates otherwise.

use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::pki::fastverify::{EcCurve, EcHash};
use crate::pki::pop::PublicKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

/// An ECDSA signature as DER: DER as sent, or IEEE P1363 (r‖s at the curve's width, what
/// WebCrypto and many HSM tools produce) converted, as upstream's verifier accepts both. The
/// stored body keeps the bytes as sent. Signatures for other keys pass through.
fn ecdsa_as_der<'s>(key: &PublicKey, sig: &'s [u8]) -> Result<std::borrow::Cow<'s, [u8]>, String> {
    use std::borrow::Cow;
    let neither = |width: usize| {
        format!(
            "not an ECDSA signature: neither DER nor IEEE P1363 ({width} bytes for this curve), {} bytes",
            sig.len()
        )
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

/// Verify `sig` over a precomputed digest. ECDSA goes through aws-lc when it can decide
/// (`pki::fastverify::verify_prehashed`), else through the curve crates; an ECDSA signature is
/// DER or IEEE P1363 ([`ecdsa_as_der`]).
pub fn verify_digest(
    key: &PublicKey,
    alg: HashAlg,
    digest: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    let sig = &*ecdsa_as_der(key, sig)?;
    use crate::pki::fastverify::{PrehashCurve, verify_prehashed};
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let bad = || "signature does not verify".to_string();
    let not_der = |e: p256::ecdsa::Error| format!("not a DER ECDSA signature ({e})");
    let decided = |point: &[u8], curve| match verify_prehashed(curve, point, digest, sig) {
        Some(true) => Some(Ok(())),
        Some(false) => Some(Err(bad())),
        None => None,
    };
    match key {
        PublicKey::P256(k) => {
            let s = p256::ecdsa::Signature::from_der(sig).map_err(not_der)?;
            let point = k.to_encoded_point(false);
            decided(point.as_bytes(), PrehashCurve::P256)
                .unwrap_or_else(|| k.verify_prehash(digest, &s).map_err(|_| bad()))
        }
        PublicKey::P384(k) => {
            let s = p384::ecdsa::Signature::from_der(sig).map_err(not_der)?;
            let point = k.to_encoded_point(false);
            decided(point.as_bytes(), PrehashCurve::P384)
                .unwrap_or_else(|| k.verify_prehash(digest, &s).map_err(|_| bad()))
        }
        PublicKey::P521(k) => {
            let s = p521::ecdsa::Signature::from_der(sig).map_err(not_der)?;
            let point = k.to_encoded_point(false);
            decided(point.as_bytes(), PrehashCurve::P521)
                .unwrap_or_else(|| k.verify_prehash(digest, &s).map_err(|_| bad()))
        }
        PublicKey::Rsa(k) => {
            let scheme = match alg {
                HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
            };
            k.verify(scheme, digest, sig).map_err(|_| bad())
        }
        PublicKey::Ed25519(_) => {
            Err("Ed25519 keys are not supported for pre-hashed signatures".into())
        }
    }
}

/// Verify `sig` over `message` with SHA-256 (ECDSA, RSA PKCS#1 v1.5) or pure Ed25519: how DSSE
/// and rekord signatures are checked.
pub fn verify_message(key: &PublicKey, message: &[u8], sig: &[u8]) -> Result<(), String> {
    let sig = &*ecdsa_as_der(key, sig)?;
    match key {
        PublicKey::Ed25519(k) => {
            use ed25519_dalek::Verifier as _;
            let s = ed25519_dalek::Signature::from_slice(sig)
                .map_err(|_| "an Ed25519 signature is 64 bytes".to_string())?;
            k.verify(message, &s)
                .map_err(|_| "signature does not verify".to_string())
        }
        PublicKey::P256(k) => fast_or(
            k.to_encoded_point(false).as_bytes(),
            EcCurve::P256,
            key,
            message,
            sig,
        ),
        PublicKey::P384(k) => fast_or(
            k.to_encoded_point(false).as_bytes(),
            EcCurve::P384,
            key,
            message,
            sig,
        ),
        _ => verify_digest(key, HashAlg::Sha256, &Sha256::digest(message), sig),
    }
}

/// ring for ECDSA with SHA-256 over the whole message, the curve crates when ring cannot decide.
fn fast_or(
    point: &[u8],
    curve: EcCurve,
    key: &PublicKey,
    message: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    match crate::pki::fastverify::verify(curve, EcHash::Sha256, point, message, sig) {
        Some(true) => Ok(()),
        Some(false) => Err("signature does not verify".into()),
        None => verify_digest(key, HashAlg::Sha256, &Sha256::digest(message), sig),
    }
}

/// Verify an RSASSA-PSS signature (MGF1 with the same hash, salt as long as the digest, as Go's
/// `rsa.PSSSaltLengthEqualsHash` and sigstore's PSS key details) over a precomputed digest.
pub fn verify_digest_pss(
    key: &PublicKey,
    alg: HashAlg,
    digest: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    let PublicKey::Rsa(k) = key else {
        return Err(format!(
            "an RSASSA-PSS signature needs an RSA key, not {key}"
        ));
    };
    let scheme = match alg {
        HashAlg::Sha256 => rsa::Pss::new::<Sha256>(),
        HashAlg::Sha384 => rsa::Pss::new::<Sha384>(),
        HashAlg::Sha512 => rsa::Pss::new::<Sha512>(),
    };
    k.verify(scheme, digest, sig)
        .map_err(|_| "signature does not verify".to_string())
}
