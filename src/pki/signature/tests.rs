//! Each algorithm: a good signature is accepted, a bad one refused, a mismatched hash or curve
//! refused. Signatures are made here with the curve, RSA and Ed25519 crates.

use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::elliptic_curve::rand_core::OsRng;

use super::x509::{CertSignatureAlgorithm, verify_certificate_signature};
use super::*;

const MSG: &[u8] = b"the artifact";

fn tampered(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v[0] ^= 1;
    v
}

const SHA2: [HashAlg; 3] = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512];

/// A P-256, P-384 and P-521 key, and a signer over a digest returning (DER, P1363); `None` where
/// the curve crate does not sign a digest that short (RustCrypto's P-521 wants at least half its
/// field, so not SHA-256).
type EcSigner = Box<dyn Fn(&[u8]) -> Option<(Vec<u8>, Vec<u8>)>>;

fn ec_keys() -> Vec<(PublicKey, EcSigner)> {
    let k256 = p256::ecdsa::SigningKey::random(&mut OsRng);
    let k384 = p384::ecdsa::SigningKey::random(&mut OsRng);
    let k521 = p521::ecdsa::SigningKey::random(&mut OsRng);
    let v521 = p521::ecdsa::VerifyingKey::from(&k521);
    vec![
        (
            PublicKey::P256(*k256.verifying_key()),
            Box::new(move |d: &[u8]| {
                let s: p256::ecdsa::Signature = k256.sign_prehash(d).ok()?;
                Some((s.to_der().as_bytes().to_vec(), s.to_bytes().to_vec()))
            }),
        ),
        (
            PublicKey::P384(*k384.verifying_key()),
            Box::new(move |d: &[u8]| {
                let s: p384::ecdsa::Signature = k384.sign_prehash(d).ok()?;
                Some((s.to_der().as_bytes().to_vec(), s.to_bytes().to_vec()))
            }),
        ),
        (
            PublicKey::P521(v521),
            Box::new(move |d: &[u8]| {
                let s: p521::ecdsa::Signature = k521.sign_prehash(d).ok()?;
                Some((s.to_der().as_bytes().to_vec(), s.to_bytes().to_vec()))
            }),
        ),
    ]
}

#[test]
fn ecdsa_over_messages_and_digests() {
    for (key, sign) in ec_keys() {
        for hash in SHA2 {
            let digest = hash.digest(MSG);
            let Some((der, p1363)) = sign(&digest) else {
                continue;
            };
            assert_eq!(
                verify_message(&key, hash, MSG, &der),
                Ok(()),
                "{key} {hash:?}"
            );
            assert_eq!(verify_digest(&key, hash, &digest, &der), Ok(()));
            assert_eq!(
                verify_message(&key, hash, b"other", &der),
                Err(SignatureError::Invalid)
            );
            assert_eq!(
                verify_digest(&key, hash, &tampered(&digest), &der),
                Err(SignatureError::Invalid)
            );
            // The signature was made over this hash: another one does not verify it.
            for other in SHA2.into_iter().filter(|h| *h != hash) {
                assert_eq!(
                    verify_message(&key, other, MSG, &der),
                    Err(SignatureError::Invalid),
                    "{key} signed {hash:?}, checked {other:?}"
                );
            }
            // A digest of the wrong length for the named hash.
            assert!(matches!(
                verify_digest(&key, hash, &digest[..20], &der),
                Err(SignatureError::DigestLength { .. })
            ));
            // P1363 is refused as such, and accepted once converted.
            assert!(matches!(
                verify_message(&key, hash, MSG, &p1363),
                Err(SignatureError::NotDer(_))
            ));
            let converted = ecdsa_as_der(&key, &p1363).expect("P1363");
            assert_eq!(converted.as_ref(), der.as_slice());
            assert!(matches!(
                ecdsa_as_der(&key, &der),
                Ok(std::borrow::Cow::Borrowed(_))
            ));
            assert!(matches!(
                ecdsa_as_der(&key, &der[..der.len() - 1]),
                Err(SignatureError::NotEcdsa { .. })
            ));
            assert_eq!(
                verify_message(&key, HashAlg::Sha1, MSG, &der),
                Err(SignatureError::Sha1NotPermitted)
            );
        }
    }
}

#[test]
fn ecdsa_refuses_another_curves_key() {
    let keys = ec_keys();
    for (i, (_, sign)) in keys.iter().enumerate() {
        let digest = HashAlg::Sha384.digest(MSG);
        let (der, _) = sign(&digest).expect("sign");
        for (j, (other, _)) in keys.iter().enumerate() {
            if i != j {
                assert!(verify_digest(other, HashAlg::Sha384, &digest, &der).is_err());
                assert!(verify_message(other, HashAlg::Sha384, MSG, &der).is_err());
            }
        }
    }
}

fn rsa_key() -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::new(&mut OsRng, 2048).expect("RSA key")
}

/// A PKCS#1 v1.5 signature over `digest`, the DigestInfo (RFC 8017 §9.2) written here with the
/// der crate rather than taken from [`HashAlg`].
fn rsa_pkcs1_sign(k: &rsa::RsaPrivateKey, hash: HashAlg, digest: &[u8]) -> Vec<u8> {
    use der::Encode;
    let oid = match hash {
        HashAlg::Sha1 => "1.3.14.3.2.26",
        HashAlg::Sha256 => "2.16.840.1.101.3.4.2.1",
        HashAlg::Sha384 => "2.16.840.1.101.3.4.2.2",
        HashAlg::Sha512 => "2.16.840.1.101.3.4.2.3",
    };
    let alg = spki::AlgorithmIdentifierOwned {
        oid: const_oid::ObjectIdentifier::new_unwrap(oid),
        parameters: Some(der::Any::from(der::asn1::Null)),
    };
    let mut info = alg.to_der().expect("alg");
    info.extend(
        der::asn1::OctetString::new(digest)
            .expect("octets")
            .to_der()
            .expect("digest"),
    );
    let info = [vec![0x30, u8::try_from(info.len()).expect("short")], info].concat();
    k.sign(rsa::Pkcs1v15Sign::new_unprefixed(), &info)
        .expect("sign")
}

#[test]
fn rsa_pkcs1v15_pss_and_sha1_only_in_certificates() {
    let sk = rsa_key();
    let key = PublicKey::Rsa(sk.to_public_key());
    for hash in SHA2 {
        let digest = hash.digest(MSG);
        let sig = rsa_pkcs1_sign(&sk, hash, &digest);
        assert_eq!(verify_message(&key, hash, MSG, &sig), Ok(()));
        assert_eq!(verify_digest(&key, hash, &digest, &sig), Ok(()));
        assert_eq!(
            verify_message(&key, hash, b"other", &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_digest(&key, hash, &digest, &tampered(&sig)),
            Err(SignatureError::Invalid)
        );
        for other in SHA2.into_iter().filter(|h| *h != hash) {
            assert_eq!(
                verify_message(&key, other, MSG, &sig),
                Err(SignatureError::Invalid)
            );
        }
        let cert = CertSignatureAlgorithm::RsaPkcs1v15(hash);
        assert_eq!(verify_certificate_signature(&key, cert, MSG, &sig), Ok(()));

        let pss = sk
            .sign_with_rng(&mut OsRng, hash.pss(), &digest)
            .expect("PSS");
        assert_eq!(verify_digest_pss(&key, hash, &digest, &pss), Ok(()));
        assert_eq!(
            verify_digest_pss(&key, hash, &tampered(&digest), &pss),
            Err(SignatureError::Invalid)
        );
        // PKCS#1 v1.5 and PSS are not each other.
        assert_eq!(
            verify_digest(&key, hash, &digest, &pss),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_digest_pss(&key, hash, &digest, &sig),
            Err(SignatureError::Invalid)
        );
    }
    let sha1 = rsa_pkcs1_sign(&sk, HashAlg::Sha1, &HashAlg::Sha1.digest(MSG));
    let cert = CertSignatureAlgorithm::from_oid(&oid::OID_RSA_SHA1).expect("sha1WithRSA");
    assert_eq!(cert, CertSignatureAlgorithm::RsaPkcs1v15(HashAlg::Sha1));
    assert_eq!(verify_certificate_signature(&key, cert, MSG, &sha1), Ok(()));
    assert_eq!(
        verify_certificate_signature(&key, cert, b"other", &sha1),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verify_message(&key, HashAlg::Sha1, MSG, &sha1),
        Err(SignatureError::Sha1NotPermitted)
    );
    assert_eq!(
        verify_digest(&key, HashAlg::Sha1, &HashAlg::Sha1.digest(MSG), &sha1),
        Err(SignatureError::Sha1NotPermitted)
    );
    // An RSA certificate signature with an EC issuer key, and the other way round.
    let (ec, _) = ec_keys().remove(0);
    assert!(matches!(
        verify_certificate_signature(&ec, cert, MSG, &sha1),
        Err(SignatureError::KeyMismatch { .. })
    ));
    assert!(matches!(
        verify_certificate_signature(
            &key,
            CertSignatureAlgorithm::Ecdsa(HashAlg::Sha256),
            MSG,
            &sha1
        ),
        Err(SignatureError::KeyMismatch { .. })
    ));
    assert!(matches!(
        verify_digest_pss(&ec, HashAlg::Sha256, &HashAlg::Sha256.digest(MSG), &sha1),
        Err(SignatureError::PssNeedsRsa(_))
    ));
}

fn ed25519_key() -> ed25519_dalek::SigningKey {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).expect("random");
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

#[test]
fn ed25519_is_pure() {
    use ed25519_dalek::Signer as _;
    let sk = ed25519_key();
    let key = PublicKey::Ed25519(sk.verifying_key());
    let sig = sk.sign(MSG).to_bytes();
    assert_eq!(verify_message(&key, HashAlg::Sha256, MSG, &sig), Ok(()));
    assert_eq!(
        verify_message(&key, HashAlg::Sha256, b"other", &sig),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verify_message(&key, HashAlg::Sha256, MSG, &sig[..63]),
        Err(SignatureError::Ed25519Length(63))
    );
    let other = PublicKey::Ed25519(ed25519_key().verifying_key());
    assert_eq!(
        verify_message(&other, HashAlg::Sha256, MSG, &sig),
        Err(SignatureError::Invalid)
    );
    let digest = HashAlg::Sha256.digest(MSG);
    assert_eq!(
        verify_digest(&key, HashAlg::Sha256, &digest, &sig),
        Err(SignatureError::Ed25519Prehashed)
    );
}

#[test]
fn p256_sha256_by_spki() {
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey;
    let sk = p256::ecdsa::SigningKey::random(&mut OsRng);
    let spki = sk.verifying_key().to_public_key_der().expect("spki");
    let sig: p256::ecdsa::Signature = sk.sign(MSG);
    let der = sig.to_der();
    assert_eq!(
        verify_p256_sha256(spki.as_bytes(), MSG, der.as_bytes()),
        Ok(())
    );
    assert_eq!(
        verify_p256_sha256(spki.as_bytes(), b"other", der.as_bytes()),
        Err(SignatureError::Invalid)
    );
    assert!(matches!(
        verify_p256_sha256(b"\x30\x00", MSG, der.as_bytes()),
        Err(SignatureError::Key(_))
    ));
    // A P-384 key is not a P-256 one.
    let k384 = p384::ecdsa::SigningKey::random(&mut OsRng);
    let spki384 = k384.verifying_key().to_public_key_der().expect("spki");
    assert!(matches!(
        verify_p256_sha256(spki384.as_bytes(), MSG, der.as_bytes()),
        Err(SignatureError::Key(_))
    ));
}

/// P-521 with SHA-256, which the curve crate does not sign (see [`EcSigner`]) but Rekor checks
/// rekord and DSSE signatures by P-521 keys with: signed here by aws-lc.
#[test]
fn p521_with_sha256() {
    use aws_lc_rs::signature::{ECDSA_P521_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let kp = EcdsaKeyPair::generate(&ECDSA_P521_SHA256_ASN1_SIGNING).expect("P-521 key");
    let key = PublicKey::P521(
        p521::ecdsa::VerifyingKey::from_sec1_bytes(kp.public_key().as_ref()).expect("point"),
    );
    let sig = kp
        .sign(&aws_lc_rs::rand::SystemRandom::new(), MSG)
        .expect("sign");
    let sig = sig.as_ref();
    let digest = HashAlg::Sha256.digest(MSG);
    assert_eq!(verify_message(&key, HashAlg::Sha256, MSG, sig), Ok(()));
    assert_eq!(verify_digest(&key, HashAlg::Sha256, &digest, sig), Ok(()));
    assert_eq!(
        verify_message(&key, HashAlg::Sha512, MSG, sig),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verify_digest(&key, HashAlg::Sha256, &tampered(&digest), sig),
        Err(SignatureError::Invalid)
    );
}
