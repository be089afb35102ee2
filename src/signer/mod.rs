//! The one narrow seam through which sigvault signs anything.
//!
//! Every certificate, SCT, tree head, checkpoint and SET is signed through [`Signer`]. The only
//! production implementation is the PKCS#11 signer in [`crate::hsm`]; keys never leave the token,
//! so nothing here ever sees private key material. A software signer exists only under
//! `cfg(test)` (see [`test_support`]).

use sha2::Digest;

/// The signature algorithms sigvault produces. Deliberately closed: each one is a key type the
/// appliance supports end to end (README.md, "The key ceremony").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// ECDSA over P-256 with SHA-256 (issuing CA by default, CT log, Rekor and tlog keys).
    EcdsaP256Sha256,
    /// ECDSA over P-384 with SHA-384 (the root CA; optionally the issuing CA).
    EcdsaP384Sha384,
}

impl SignatureAlgorithm {
    /// Size in bytes of one scalar (r or s) of a signature on this curve.
    pub fn scalar_len(self) -> usize {
        match self {
            Self::EcdsaP256Sha256 => 32,
            Self::EcdsaP384Sha384 => 48,
        }
    }

    /// Hash `message` with this algorithm's digest.
    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::EcdsaP256Sha256 => sha2::Sha256::digest(message).to_vec(),
            Self::EcdsaP384Sha384 => sha2::Sha384::digest(message).to_vec(),
        }
    }

    /// The X.509 signature algorithm OID (`ecdsa-with-SHA256` / `ecdsa-with-SHA384`).
    pub fn x509_oid(self) -> const_oid::ObjectIdentifier {
        match self {
            Self::EcdsaP256Sha256 => const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
            Self::EcdsaP384Sha384 => const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
        }
    }

    /// The named-curve OID of the key.
    pub fn curve_oid(self) -> const_oid::ObjectIdentifier {
        match self {
            Self::EcdsaP256Sha256 => const_oid::db::rfc5912::SECP_256_R_1,
            Self::EcdsaP384Sha384 => const_oid::db::rfc5912::SECP_384_R_1,
        }
    }

    /// The curve name as written in configs and transcripts.
    pub fn curve_name(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "P-256",
            Self::EcdsaP384Sha384 => "P-384",
        }
    }

    /// The algorithm whose key lives on the curve with this OID, if we support it.
    pub fn from_curve_oid(oid: &const_oid::ObjectIdentifier) -> Option<Self> {
        [Self::EcdsaP256Sha256, Self::EcdsaP384Sha384]
            .into_iter()
            .find(|a| a.curve_oid() == *oid)
    }
}

/// Errors from a signing operation. The message never carries key material or PINs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The signing device refused or failed; the string says what the device reported.
    #[error("signing failed on token '{token}' key '{key}': {reason}")]
    Device {
        token: String,
        key: String,
        reason: String,
    },
    /// The device returned something that is not a signature of the expected shape.
    #[error("signing device returned a malformed signature: {0}")]
    Malformed(String),
}

/// Something that can sign with one private key it never reveals.
///
/// `sign` takes the whole message and returns an X.509/RFC 6962-style DER `ECDSA-Sig-Value`;
/// hashing happens in software with the algorithm's digest (SoftHSM has no `CKM_ECDSA_SHA256`).
pub trait Signer: Send + Sync {
    /// Which algorithm this signer produces.
    fn algorithm(&self) -> SignatureAlgorithm;
    /// The public key as DER `SubjectPublicKeyInfo`.
    fn public_key_der(&self) -> &[u8];
    /// Sign `message`; returns a DER `ECDSA-Sig-Value`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
    /// Why this signer's device keeps failing, while it does (for readiness probes). Default:
    /// never.
    fn failing(&self) -> Option<String> {
        None
    }
}

/// Convert a raw PKCS#11 `CKM_ECDSA` signature (r‖s, each `scalar_len` bytes) into a DER
/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
pub fn raw_ecdsa_to_der(raw: &[u8], scalar_len: usize) -> Result<Vec<u8>, SignError> {
    if raw.len() != 2 * scalar_len {
        return Err(SignError::Malformed(format!(
            "expected {} bytes of r||s, got {}",
            2 * scalar_len,
            raw.len()
        )));
    }
    let (r, s) = raw.split_at(scalar_len);
    let r = der_unsigned_integer(r);
    let s = der_unsigned_integer(s);
    if r.len() <= 3 || s.len() <= 3 {
        // An r or s of zero is never a valid ECDSA signature.
        if r == [0x02, 0x01, 0x00] || s == [0x02, 0x01, 0x00] {
            return Err(SignError::Malformed("r or s is zero".into()));
        }
    }
    let body_len = r.len() + s.len();
    let mut out = Vec::with_capacity(body_len + 3);
    out.push(0x30);
    push_der_len(&mut out, body_len);
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Ok(out)
}

/// DER INTEGER of a big-endian unsigned value: minimal length, a 0x00 pad when the top bit is set.
fn der_unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let mut v = &bytes[first..];
    if v.is_empty() {
        v = &[0];
    }
    let pad = v[0] & 0x80 != 0;
    let len = v.len() + usize::from(pad);
    let mut out = Vec::with_capacity(len + 3);
    out.push(0x02);
    push_der_len(&mut out, len);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(v);
    out
}

fn push_der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

#[cfg(test)]
pub mod test_support {
    //! A software signer for unit tests of pure code only. Never compiled into the binary.
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey;

    pub struct SoftP256 {
        key: p256::ecdsa::SigningKey,
        spki: Vec<u8>,
    }

    impl SoftP256 {
        pub fn random() -> Self {
            let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
            let spki = key
                .verifying_key()
                .to_public_key_der()
                .expect("encode spki")
                .into_vec();
            Self { key, spki }
        }
    }

    impl Signer for SoftP256 {
        fn algorithm(&self) -> SignatureAlgorithm {
            SignatureAlgorithm::EcdsaP256Sha256
        }
        fn public_key_der(&self) -> &[u8] {
            &self.spki
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
            let sig: p256::ecdsa::Signature = self.key.sign(message);
            Ok(sig.to_der().as_bytes().to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_conversion_matches_p256_crate() {
        for seed in 0u8..=255 {
            let mut raw = [0u8; 64];
            for (i, b) in raw.iter_mut().enumerate() {
                *b = seed.wrapping_mul(31).wrapping_add(i as u8);
            }
            // Exercise leading zeros and high bits.
            raw[0] = seed & 0x81;
            raw[32] = if seed % 3 == 0 { 0 } else { 0xff };
            raw[33] = seed % 2;
            let ours = raw_ecdsa_to_der(&raw, 32).expect("convert");
            let theirs = p256::ecdsa::Signature::from_slice(&raw).map(|s| s.to_der());
            if let Ok(theirs) = theirs {
                assert_eq!(ours, theirs.as_bytes(), "seed {seed}");
            }
        }
    }

    #[test]
    fn der_conversion_p384_matches_p384_crate() {
        let raw: Vec<u8> = (0..96u8).map(|i| i.wrapping_mul(7) | 0x80).collect();
        let ours = raw_ecdsa_to_der(&raw, 48).expect("convert");
        let theirs = p384::ecdsa::Signature::from_slice(&raw)
            .expect("sig")
            .to_der();
        assert_eq!(ours, theirs.as_bytes());
    }

    #[test]
    fn wrong_length_is_rejected() {
        assert!(raw_ecdsa_to_der(&[1u8; 63], 32).is_err());
        assert!(raw_ecdsa_to_der(&[0u8; 64], 32).is_err());
    }
}
