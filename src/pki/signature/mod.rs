//! Signature verification, the one place for it: every signature sigvault checks (what clients
//! send Rekor v1 and v2, Fulcio's proofs of possession and CSRs, the certificate chains the CT
//! log takes, checkpoints, SCTs and tree heads, TUF metadata) goes through one of
//! [`verify_message`], [`verify_digest`], [`verify_digest_pss`] or
//! [`x509::verify_certificate_signature`]. Depends on nothing service-specific: which keys and
//! algorithms a service accepts is its own policy (src/pki/pop.rs for Fulcio and Rekor,
//! src/pki/ct.rs for chains), and each maps [`SignatureError`] to its own refusal.
//!
//! Algorithms: ECDSA P-256/P-384/P-521 (DER; [`ecdsa_as_der`] for Rekor, which also takes
//! IEEE P1363), RSA PKCS#1 v1.5 and RSASSA-PSS, Ed25519 (pure, RFC 8032 §5.1). ECDSA goes
//! through ring or aws-lc where they can decide ([`fast`]).
//!
//! Not here: identity tokens (JWS, RFC 7515) are checked in src/oidc/verify.rs through
//! jsonwebtoken, whose keys come from the issuer's JWKS (RFC 7517) and whose algorithm is
//! negotiated by the JOSE header; that is JOSE's own key and algorithm model, not this one's.
//!
//! Pure code: no I/O.

mod ecdsa;
mod error;
mod fast;
mod hash;
pub mod key;
pub mod oid;
pub mod x509;

#[cfg(test)]
mod tests;

pub use ecdsa::ecdsa_as_der;
pub use error::SignatureError;
pub use hash::HashAlg;
pub use key::PublicKey;

fn refuse_sha1(hash: HashAlg) -> Result<(), SignatureError> {
    match hash {
        HashAlg::Sha1 => Err(SignatureError::Sha1NotPermitted),
        _ => Ok(()),
    }
}

/// Verify `sig` over `message`: ECDSA (DER) and RSA PKCS#1 v1.5 over the `hash` of the message,
/// Ed25519 over the message itself (pure Ed25519 hashes internally, so `hash` is not used: Rekor
/// names SHA-256 for rekord and DSSE whatever the key).
pub fn verify_message(
    key: &PublicKey,
    hash: HashAlg,
    message: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    refuse_sha1(hash)?;
    message_any_hash(key, hash, message, sig)
}

/// [`verify_message`] without the SHA-1 refusal, for [`x509`].
fn message_any_hash(
    key: &PublicKey,
    hash: HashAlg,
    message: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    match key {
        PublicKey::Ed25519(k) => {
            use ed25519_dalek::Verifier as _;
            let s = ed25519_dalek::Signature::from_slice(sig)
                .map_err(|_| SignatureError::Ed25519Length(sig.len()))?;
            k.verify(message, &s).map_err(|_| SignatureError::Invalid)
        }
        PublicKey::P256(_) | PublicKey::P384(_) | PublicKey::P521(_) => {
            ecdsa::verify_message(key, hash, message, sig)
        }
        PublicKey::Rsa(k) => k
            .verify(hash.pkcs1v15(), &hash.digest(message), sig)
            .map_err(|_| SignatureError::Invalid),
    }
}

fn check_digest(hash: HashAlg, digest: &[u8]) -> Result<(), SignatureError> {
    refuse_sha1(hash)?;
    if digest.len() != hash.digest_len() {
        return Err(SignatureError::DigestLength {
            alg: hash,
            want: hash.digest_len(),
            got: digest.len(),
        });
    }
    Ok(())
}

/// Verify `sig` over a precomputed `hash` digest (hashedrekord v1 and v2 carry only the
/// artifact's digest): ECDSA (DER) or RSA PKCS#1 v1.5. Ed25519 is refused, as it signs messages,
/// not digests.
pub fn verify_digest(
    key: &PublicKey,
    hash: HashAlg,
    digest: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    check_digest(hash, digest)?;
    match key {
        PublicKey::Ed25519(_) => Err(SignatureError::Ed25519Prehashed),
        PublicKey::P256(_) | PublicKey::P384(_) | PublicKey::P521(_) => {
            ecdsa::verify_prehash(key, digest, sig)
        }
        PublicKey::Rsa(k) => k
            .verify(hash.pkcs1v15(), digest, sig)
            .map_err(|_| SignatureError::Invalid),
    }
}

/// Verify an RSASSA-PSS signature (MGF1 with the same hash, salt as long as the digest) over a
/// precomputed digest.
pub fn verify_digest_pss(
    key: &PublicKey,
    hash: HashAlg,
    digest: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    let PublicKey::Rsa(k) = key else {
        return Err(SignatureError::PssNeedsRsa(key.to_string()));
    };
    check_digest(hash, digest)?;
    k.verify(hash.pss(), digest, sig)
        .map_err(|_| SignatureError::Invalid)
}

/// ECDSA P-256 with SHA-256 (DER) by a key given as DER SubjectPublicKeyInfo: how sigvault's own
/// checkpoints, SCTs and tree heads are signed.
pub fn verify_p256_sha256(spki: &[u8], message: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
    verify_message(
        &PublicKey::p256_from_spki_der(spki)?,
        HashAlg::Sha256,
        message,
        sig,
    )
}
