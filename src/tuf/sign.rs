//! Signing metadata through the [`Signer`] seam: the canonical bytes of `signed` go to each
//! role key (in production a PKCS#11 key that never leaves its token), every signature is
//! checked against the key root will list before it is kept, and the file is written as plain
//! JSON (see [`super::canonical`] for why the signed bytes are never the file).

use serde::Serialize;

use super::canonical;
use super::key::{Key, KeyError};
use super::metadata::{Metadata, MetadataError, Payload, Signature};
use crate::signer::{SignError, SignatureAlgorithm, Signer};

/// Why a role's metadata could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum TufSignError {
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(
        "the key {uri} is {alg:?}; TUF keys here are ECDSA P-256 ({})",
        super::key::SCHEME
    )]
    WrongAlgorithm {
        uri: String,
        alg: SignatureAlgorithm,
    },
    #[error("the key {uri}: {source}")]
    Key { uri: String, source: KeyError },
    #[error(
        "the signature of {uri} does not verify with its own public key (key ID {keyid}); nothing was written"
    )]
    SelfCheck { uri: String, keyid: String },
    #[error("cannot encode the metadata: {0}")]
    Encode(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// A role key ready to sign: the signer, the TUF key of its public half, its key ID and its URI
/// (for the transcript and messages).
pub struct KeySigner<'a> {
    pub signer: &'a dyn Signer,
    pub key: Key,
    pub keyid: String,
    pub uri: String,
}

impl<'a> KeySigner<'a> {
    pub fn new(signer: &'a dyn Signer, uri: &str) -> Result<Self, TufSignError> {
        if signer.algorithm() != SignatureAlgorithm::EcdsaP256Sha256 {
            return Err(TufSignError::WrongAlgorithm {
                uri: uri.into(),
                alg: signer.algorithm(),
            });
        }
        let key =
            Key::from_spki_der(signer.public_key_der()).map_err(|source| TufSignError::Key {
                uri: uri.into(),
                source,
            })?;
        Ok(Self {
            keyid: key.keyid(),
            key,
            signer,
            uri: uri.into(),
        })
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    signatures: &'a [Signature],
    signed: &'a serde_json::Value,
}

/// Sign `payload` with every key in `signers` and return the file, parsed back exactly as a
/// reader will parse it (so the bytes signed are the bytes a client re-derives).
pub fn sign<T: Payload>(
    payload: &T,
    signers: &[&KeySigner<'_>],
) -> Result<Metadata<T>, TufSignError> {
    let value = serde_json::to_value(payload).map_err(|e| TufSignError::Encode(e.to_string()))?;
    let canonical = canonical::encode(&value).map_err(|e| TufSignError::Encode(e.to_string()))?;
    let mut signatures = Vec::with_capacity(signers.len());
    for s in signers {
        let der = s.signer.sign(&canonical)?;
        let sig = hex::encode(der);
        if !s.key.verify(&canonical, &sig).unwrap_or(false) {
            return Err(TufSignError::SelfCheck {
                uri: s.uri.clone(),
                keyid: s.keyid.clone(),
            });
        }
        signatures.push(Signature {
            keyid: s.keyid.clone(),
            sig,
        });
    }
    let mut bytes = serde_json::to_vec_pretty(&EnvelopeOut {
        signatures: &signatures,
        signed: &value,
    })
    .map_err(|e| TufSignError::Encode(e.to_string()))?;
    bytes.push(b'\n');
    let parsed = Metadata::<T>::parse(bytes)?;
    if parsed.canonical != canonical {
        return Err(TufSignError::Encode(
            "the file does not parse back to the bytes signed".into(),
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::test_support::SoftP256;
    use crate::tuf::metadata::{Expires, MetaFile, Role, RoleKeys, Root, Timestamp};

    fn root_with(keys: &[&KeySigner<'_>], threshold: u64) -> Root {
        let mut root = Root::new(1, Expires::from_unix(4_000_000_000));
        for k in keys {
            root.keys.insert(k.keyid.clone(), k.key.clone());
        }
        for role in Role::ALL {
            root.roles.insert(
                role.name().into(),
                RoleKeys {
                    keyids: keys.iter().map(|k| k.keyid.clone()).collect(),
                    threshold,
                },
            );
        }
        root
    }

    #[test]
    fn signed_metadata_verifies_against_the_threshold() {
        let (a, b) = (SoftP256::random(), SoftP256::random());
        let ka = KeySigner::new(&a, "pkcs11:token=a;object=k").expect("a");
        let kb = KeySigner::new(&b, "pkcs11:token=b;object=k").expect("b");
        let root = root_with(&[&ka, &kb], 2);
        root.check().expect("root is well formed");
        let ts = Timestamp::new(
            1,
            Expires::from_unix(4_000_000_000),
            MetaFile {
                version: 1,
                length: None,
                hashes: None,
            },
        );
        let both = sign(&ts, &[&ka, &kb]).expect("sign");
        assert_eq!(
            both.verify_with(&root, Role::Timestamp)
                .expect("2 of 2")
                .len(),
            2
        );
        let one = sign(&ts, &[&ka]).expect("sign");
        let e = one.verify_with(&root, Role::Timestamp).expect_err("1 of 2");
        assert!(
            matches!(
                e,
                MetadataError::Threshold {
                    got: 1,
                    need: 2,
                    ..
                }
            ),
            "{e}"
        );
        // The same key twice counts once.
        let mut twice = one.clone();
        twice.signatures.push(twice.signatures[0].clone());
        assert!(twice.verify_with(&root, Role::Timestamp).is_err());
        // A changed payload no longer verifies.
        let mut changed = both.clone();
        changed.signed.version = 2;
        changed.canonical =
            crate::tuf::canonical::encode(&serde_json::to_value(&changed.signed).expect("value"))
                .expect("canonical");
        assert!(changed.verify_with(&root, Role::Timestamp).is_err());
        // A key that root does not list is not counted.
        let c = SoftP256::random();
        let kc = KeySigner::new(&c, "pkcs11:token=c;object=k").expect("c");
        let by_c = sign(&ts, &[&kc]).expect("sign");
        let single = root_with(&[&ka], 1);
        assert!(by_c.verify_with(&single, Role::Timestamp).is_err());
        // The file is plain JSON; its `signed` is the payload.
        let v: serde_json::Value = serde_json::from_slice(&both.bytes).expect("json");
        assert_eq!(v["signed"]["_type"], "timestamp");
        assert_eq!(v["signatures"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn root_check_refuses_what_clients_would() {
        let a = SoftP256::random();
        let ka = KeySigner::new(&a, "k").expect("a");
        let mut root = root_with(&[&ka], 1);
        root.check().expect("good");
        let mut r = root.clone();
        r.roles.remove("snapshot");
        assert!(r.check().is_err());
        let mut r = root.clone();
        r.roles.get_mut("targets").expect("t").threshold = 2;
        assert!(r.check().is_err());
        let mut r = root.clone();
        r.keys.clear();
        assert!(r.check().is_err());
        root.consistent_snapshot = false;
        assert!(root.check().is_err());
    }
}
