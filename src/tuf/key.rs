//! TUF public keys: the one kind sigvault signs with, ECDSA P-256 keys from PKCS#11 tokens, as
//! the TUF clients of the Sigstore ecosystem verify them (python-tuf through securesystemslib,
//! tuf-js, go-tuf): `keytype` "ecdsa", `scheme` "ecdsa-sha2-nistp256", `keyval.public` the
//! SubjectPublicKeyInfo as PEM, signatures DER `ECDSA-Sig-Value` over SHA-256 of the canonical
//! bytes, hex-encoded.
//!
//! A key's ID is the hex SHA-256 of the canonical JSON of the key object
//! (`{"keytype","keyval","scheme"}`): securesystemslib's default key ID, so the IDs in our root
//! are the ones a client would compute itself.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::canonical;

/// The key type and scheme of every key sigvault publishes.
pub const KEYTYPE: &str = "ecdsa";
pub const SCHEME: &str = "ecdsa-sha2-nistp256";

/// Why a key or signature cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "unsupported key: keytype {keytype:?}, scheme {scheme:?} (sigvault uses {KEYTYPE}/{SCHEME})"
    )]
    Unsupported { keytype: String, scheme: String },
    #[error("the key's public value is not a P-256 SubjectPublicKeyInfo PEM: {0}")]
    BadPublic(String),
}

/// `keyval`: the public half as PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyVal {
    pub public: String,
}

/// A TUF key object as it appears in root's `keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
}

impl Key {
    /// The TUF key of a P-256 public key given as DER SubjectPublicKeyInfo.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, KeyError> {
        use p256::pkcs8::DecodePublicKey;
        p256::ecdsa::VerifyingKey::from_public_key_der(spki)
            .map_err(|e| KeyError::BadPublic(e.to_string()))?;
        let public = der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, spki)
            .map_err(|e| KeyError::BadPublic(e.to_string()))?;
        Ok(Self {
            keytype: KEYTYPE.into(),
            scheme: SCHEME.into(),
            keyval: KeyVal { public },
        })
    }

    /// The key ID: hex SHA-256 of the key object's canonical JSON.
    pub fn keyid(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        // A key object holds only strings, so canonical encoding cannot fail.
        let bytes = canonical::encode(&value).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// The DER SubjectPublicKeyInfo of a key of the supported kind.
    pub fn spki_der(&self) -> Result<Vec<u8>, KeyError> {
        Ok(self.verifying_key()?.1)
    }

    fn verifying_key(&self) -> Result<(p256::ecdsa::VerifyingKey, Vec<u8>), KeyError> {
        use p256::pkcs8::DecodePublicKey;
        if self.keytype != KEYTYPE || self.scheme != SCHEME {
            return Err(KeyError::Unsupported {
                keytype: self.keytype.clone(),
                scheme: self.scheme.clone(),
            });
        }
        let (label, der) = der::pem::decode_vec(self.keyval.public.trim().as_bytes())
            .map_err(|e| KeyError::BadPublic(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::BadPublic(format!("PEM label {label:?}")));
        }
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&der)
            .map_err(|e| KeyError::BadPublic(e.to_string()))?;
        Ok((vk, der))
    }

    /// Does `sig_hex` (hex of a DER ECDSA signature) verify over `message` with this key?
    /// `Err` only for a key of another kind; a malformed signature is `Ok(false)`.
    pub fn verify(&self, message: &[u8], sig_hex: &str) -> Result<bool, KeyError> {
        let (vk, _) = self.verifying_key()?;
        let Ok(sig) = hex::decode(sig_hex) else {
            return Ok(false);
        };
        use crate::pki::signature::{HashAlg, PublicKey, verify_message};
        Ok(verify_message(&PublicKey::P256(vk), HashAlg::Sha256, message, &sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::Signer;
    use crate::signer::test_support::SoftP256;

    #[test]
    fn keyid_is_the_sha256_of_the_canonical_key_object() {
        let s = SoftP256::random();
        let k = Key::from_spki_der(s.public_key_der()).expect("key");
        assert!(k.keyval.public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(k.keyval.public.ends_with("-----END PUBLIC KEY-----\n"));
        let mut canon = br#"{"keytype":"ecdsa","keyval":{"public":""#.to_vec();
        canon.extend_from_slice(k.keyval.public.as_bytes());
        canon.extend_from_slice(br#""},"scheme":"ecdsa-sha2-nistp256"}"#);
        assert_eq!(k.keyid(), hex::encode(Sha256::digest(&canon)));
        assert_eq!(k.spki_der().expect("der"), s.public_key_der());
    }

    #[test]
    fn signatures_verify_and_others_do_not() {
        let s = SoftP256::random();
        let k = Key::from_spki_der(s.public_key_der()).expect("key");
        let sig = hex::encode(s.sign(b"signed bytes").expect("sign"));
        assert_eq!(k.verify(b"signed bytes", &sig), Ok(true));
        assert_eq!(k.verify(b"other bytes", &sig), Ok(false));
        assert_eq!(k.verify(b"signed bytes", "zz"), Ok(false));
        assert_eq!(k.verify(b"signed bytes", "3000"), Ok(false));
        let other = Key::from_spki_der(SoftP256::random().public_key_der()).expect("key");
        assert_eq!(other.verify(b"signed bytes", &sig), Ok(false));
        let ed = Key {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: "00".into(),
            },
        };
        assert!(matches!(
            ed.verify(b"x", &sig),
            Err(KeyError::Unsupported { .. })
        ));
    }
}
