//! ECDSA verification through `ring` (assembly-optimised, about three times faster here than the
//! pure-Rust curve crates) for the common cases where the whole message is at hand: P-256 and
//! P-384 with SHA-256 or SHA-384, DER signatures, uncompressed points; and through `aws-lc-rs`
//! for signatures over precomputed digests, which ring cannot verify. Callers fall back to the
//! curve crates for anything else (other hashes, compressed points).

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

/// The curves ring verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcCurve {
    P256,
    P384,
}

/// The message digests ring pairs with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcHash {
    Sha256,
    Sha384,
}

fn algorithm(curve: EcCurve, hash: EcHash) -> &'static dyn VerificationAlgorithm {
    match (curve, hash) {
        (EcCurve::P256, EcHash::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
        (EcCurve::P256, EcHash::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
        (EcCurve::P384, EcHash::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
        (EcCurve::P384, EcHash::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
    }
}

/// The curves of [`verify_prehashed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrehashCurve {
    P256,
    P384,
    P521,
}

/// Verify a DER ECDSA signature over a precomputed SHA-256, SHA-384 or SHA-512 digest (told
/// apart by length) through aws-lc, which, unlike ring, verifies prehashed digests (a
/// hashedrekord entry carries only the artifact's digest); about four times faster here than the
/// pure-Rust curve crates. `None` when aws-lc cannot decide (a compressed point, another digest
/// length), so the caller uses its fallback.
pub fn verify_prehashed(
    curve: PrehashCurve,
    point: &[u8],
    digest: &[u8],
    sig: &[u8],
) -> Option<bool> {
    use aws_lc_rs::{digest as d, signature as s};
    if point.first() != Some(&0x04) {
        return None;
    }
    let (hash, alg): (
        &'static d::Algorithm,
        &'static s::EcdsaVerificationAlgorithm,
    ) = match (curve, digest.len()) {
        (PrehashCurve::P256, 32) => (&d::SHA256, &s::ECDSA_P256_SHA256_ASN1),
        (PrehashCurve::P256, 48) => (&d::SHA384, &s::ECDSA_P256_SHA384_ASN1),
        (PrehashCurve::P256, 64) => (&d::SHA512, &s::ECDSA_P256_SHA512_ASN1),
        (PrehashCurve::P384, 32) => (&d::SHA256, &s::ECDSA_P384_SHA256_ASN1),
        (PrehashCurve::P384, 48) => (&d::SHA384, &s::ECDSA_P384_SHA384_ASN1),
        (PrehashCurve::P384, 64) => (&d::SHA512, &s::ECDSA_P384_SHA512_ASN1),
        (PrehashCurve::P521, 32) => (&d::SHA256, &s::ECDSA_P521_SHA256_ASN1),
        (PrehashCurve::P521, 48) => (&d::SHA384, &s::ECDSA_P521_SHA384_ASN1),
        (PrehashCurve::P521, 64) => (&d::SHA512, &s::ECDSA_P521_SHA512_ASN1),
        _ => return None,
    };
    let digest = d::Digest::import_less_safe(digest, hash).ok()?;
    Some(
        s::UnparsedPublicKey::new(alg, point)
            .verify_digest(&digest, sig)
            .is_ok(),
    )
}

/// Verify a DER ECDSA signature over `msg`. `point` is the SEC1 public point; `None` when ring
/// cannot decide (a compressed point), so the caller uses its fallback; `Some(ok)` otherwise.
pub fn verify(curve: EcCurve, hash: EcHash, point: &[u8], msg: &[u8], sig: &[u8]) -> Option<bool> {
    if point.first() != Some(&0x04) {
        return None;
    }
    Some(
        UnparsedPublicKey::new(algorithm(curve, hash), point)
            .verify(msg, sig)
            .is_ok(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;

    #[test]
    fn prehashed_agrees_with_the_curve_crates() {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        use sha2::Digest as _;
        let rng = &mut p256::elliptic_curve::rand_core::OsRng;
        let d256 = sha2::Sha256::digest(b"artifact");
        let d384 = sha2::Sha384::digest(b"artifact");
        let d512 = sha2::Sha512::digest(b"artifact");
        for digest in [&d256[..], &d384[..], &d512[..]] {
            let k = p256::ecdsa::SigningKey::random(rng);
            let s: p256::ecdsa::Signature = k.sign_prehash(digest).expect("sign");
            let point = k.verifying_key().to_encoded_point(false);
            let der = s.to_der();
            let v = |dg: &[u8]| {
                verify_prehashed(PrehashCurve::P256, point.as_bytes(), dg, der.as_bytes())
            };
            assert_eq!(v(digest), Some(true), "{} bytes", digest.len());
            let mut other = digest.to_vec();
            other[0] ^= 1;
            assert_eq!(v(&other), Some(false));
            assert_eq!(v(&digest[..20]), None, "unknown digest length");

            let k = p384::ecdsa::SigningKey::random(rng);
            let s: p384::ecdsa::Signature = k.sign_prehash(digest).expect("sign");
            let point = k.verifying_key().to_encoded_point(false);
            assert_eq!(
                verify_prehashed(
                    PrehashCurve::P384,
                    point.as_bytes(),
                    digest,
                    s.to_der().as_bytes()
                ),
                Some(true)
            );
            let compressed = k.verifying_key().to_encoded_point(true);
            assert_eq!(
                verify_prehashed(
                    PrehashCurve::P384,
                    compressed.as_bytes(),
                    digest,
                    s.to_der().as_bytes()
                ),
                None
            );
        }
    }

    #[test]
    fn agrees_with_the_curve_crates() {
        let k = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let point = k.verifying_key().to_encoded_point(false);
        let s: p256::ecdsa::Signature = k.sign(b"message");
        let der = s.to_der();
        let ok = verify(
            EcCurve::P256,
            EcHash::Sha256,
            point.as_bytes(),
            b"message",
            der.as_bytes(),
        );
        assert_eq!(ok, Some(true));
        let bad = verify(
            EcCurve::P256,
            EcHash::Sha256,
            point.as_bytes(),
            b"other",
            der.as_bytes(),
        );
        assert_eq!(bad, Some(false));
        let compressed = k.verifying_key().to_encoded_point(true);
        assert_eq!(
            verify(
                EcCurve::P256,
                EcHash::Sha256,
                compressed.as_bytes(),
                b"message",
                der.as_bytes()
            ),
            None
        );
        let k384 = p384::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let s: p384::ecdsa::Signature = k384.sign(b"m");
        let p = k384.verifying_key().to_encoded_point(false);
        assert_eq!(
            verify(
                EcCurve::P384,
                EcHash::Sha384,
                p.as_bytes(),
                b"m",
                s.to_der().as_bytes()
            ),
            Some(true)
        );
    }
}
