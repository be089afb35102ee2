//! Why a signature was refused. The messages are the ones Rekor's clients have always been sent
//! ("verifying signature: …" in src/rekor/kinds.rs and src/rekor_v2/entry.rs); callers with
//! their own wording (Fulcio's proof of possession, the CT log's chain check) match on the
//! variant.

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Neither encoding [`super::ecdsa_as_der`] accepts.
    #[error(
        "not an ECDSA signature: neither DER nor IEEE P1363 ({width} bytes for this curve), {len} bytes"
    )]
    NotEcdsa { width: usize, len: usize },
    /// An ECDSA signature that is not DER `ECDSA-Sig-Value`; the curve crate's reason.
    #[error("not a DER ECDSA signature ({0})")]
    NotDer(String),
    /// An Ed25519 signature of the wrong length (the length it had).
    #[error("an Ed25519 signature is 64 bytes")]
    Ed25519Length(usize),
    /// A well-formed signature that does not verify.
    #[error("signature does not verify")]
    Invalid,
    /// Ed25519 is pure (RFC 8032 §5.1): there is no signature over a digest to check.
    #[error("Ed25519 keys are not supported for pre-hashed signatures")]
    Ed25519Prehashed,
    /// RSASSA-PSS asked of a key that is not RSA (the key's description).
    #[error("an RSASSA-PSS signature needs an RSA key, not {0}")]
    PssNeedsRsa(String),
    /// The algorithm names one kind of key and the key is another.
    #[error("an {algorithm} signature needs an {algorithm} key, not {key}")]
    KeyMismatch {
        algorithm: &'static str,
        key: String,
    },
    /// SHA-1 outside an X.509 certificate signature.
    #[error("SHA-1 is accepted only in X.509 certificate signatures")]
    Sha1NotPermitted,
    /// A digest whose length is not the named algorithm's.
    #[error("a {alg:?} digest is {want} bytes, got {got}")]
    DigestLength {
        alg: super::HashAlg,
        want: usize,
        got: usize,
    },
    /// A public key that cannot be read.
    #[error("invalid public key: {0}")]
    Key(String),
}
