//! X.509 building blocks: CA certificate templates and signing a TBS through a [`Signer`].
//!
//! Certificates are assembled field by field (not through a builder) so the exact DER is ours to
//! control: Fulcio's precertificate and final certificate must match byte for byte but for two
//! extensions, and the CA profile must match README.md, "The key ceremony".

pub mod ct;
pub mod dotted_oid;
pub mod fulcio;
pub mod pop;
pub mod signature;
pub mod tlv;
pub mod tsa;

use std::time::{Duration, SystemTime};

use const_oid::AssociatedOid;
use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::signer::{SignError, Signer};

/// Errors while building or signing a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("DER encoding failed: {0}")]
    Der(#[from] der::Error),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("invalid name {0:?}: {1}")]
    Name(String, String),
    #[error("invalid validity: {0}")]
    Validity(String),
}

/// SHA-1 of the subjectPublicKey BIT STRING contents: RFC 5280 §4.2.1.2 method 1, which is what
/// Go's x509 (and so Fulcio) puts in SKI/AKI.
pub fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    sha1::Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec()
}

/// A random positive serial of 16 bytes (RFC 5280 allows up to 20), from the OS CSPRNG.
pub fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| PkiError::Validity(format!("no randomness: {e}")))?;
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // and never shortened by a leading zero
    Ok(SerialNumber::new(&b)?)
}

/// A validity period starting now (truncated to whole seconds) and lasting `dur`. Uses UTCTime
/// before 2050 and GeneralizedTime after, as RFC 5280 §4.1.2.5 requires.
pub fn validity_from_now(dur: Duration) -> Result<Validity, PkiError> {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|e| PkiError::Validity(e.to_string()))?
        .as_secs();
    Ok(Validity {
        not_before: x509_time(secs),
        not_after: x509_time(secs.saturating_add(dur.as_secs())),
    })
}

/// An X.509 time for `secs` since the epoch: UTCTime through 2049, GeneralizedTime from 2050, as
/// RFC 5280 §4.1.2.5 requires (pyca/cryptography, which sigstore-python verifies with, refuses a
/// GeneralizedTime before 2050).
pub fn x509_time(secs: u64) -> Time {
    use der::DateTime;
    use der::asn1::{GeneralizedTime, UtcTime};
    let Ok(dt) = DateTime::from_unix_duration(Duration::from_secs(secs)) else {
        return Time::INFINITY;
    };
    if dt.year() <= UtcTime::MAX_YEAR {
        if let Ok(t) = UtcTime::from_date_time(dt) {
            return Time::UtcTime(t);
        }
    }
    Time::GeneralTime(GeneralizedTime::from_date_time(dt))
}

/// Parse an RFC 4514 name such as `CN=sigvault root CA,O=sigvault`.
pub fn parse_name(s: &str) -> Result<Name, PkiError> {
    s.parse::<Name>()
        .map_err(|e| PkiError::Name(s.into(), e.to_string()))
}

fn ext<T: AsExtension>(subject: &Name, v: &T, exts: &[Extension]) -> Result<Extension, PkiError> {
    Ok(v.to_extension(subject, exts)?)
}

/// An extension with criticality chosen here rather than by the library's default.
pub fn ext_with<T: AssociatedOid + Encode>(v: &T, critical: bool) -> Result<Extension, PkiError> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(v.to_der()?)?,
    })
}

/// What kind of CA certificate to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKind {
    /// Self-signed root: CA:TRUE, pathlen 1, keyCertSign|cRLSign, SKI; no EKU.
    Root,
    /// Issuing intermediate: CA:TRUE, pathlen 0, keyCertSign|cRLSign, EKU codeSigning, SKI, AKI.
    Issuing,
}

/// Build and sign a CA certificate.
///
/// `issuer` is `None` for a self-signed root (then `signer` must hold the subject's key), or the
/// issuer's certificate for an intermediate (then `signer` holds the issuer's key).
pub fn build_ca_certificate(
    kind: CaKind,
    subject: Name,
    subject_spki_der: &[u8],
    validity: Validity,
    issuer: Option<&Certificate>,
    signer: &dyn Signer,
) -> Result<Certificate, PkiError> {
    let spki = SubjectPublicKeyInfoOwned::from_der(subject_spki_der)?;
    let ski = key_identifier(&spki);
    let (issuer_name, aki) = match issuer {
        None => (subject.clone(), None),
        Some(c) => {
            let ispki = &c.tbs_certificate.subject_public_key_info;
            (
                c.tbs_certificate.subject.clone(),
                Some(key_identifier(ispki)),
            )
        }
    };
    if issuer.is_none() && signer.public_key_der() != subject_spki_der {
        return Err(PkiError::Validity(
            "self-signed certificate requested but the signer's key is not the subject key".into(),
        ));
    }
    let sig_alg = AlgorithmIdentifierOwned {
        oid: signer.algorithm().x509_oid(),
        parameters: None,
    };
    let mut exts: Vec<Extension> = Vec::new();
    let bc = BasicConstraints {
        ca: true,
        path_len_constraint: Some(match kind {
            CaKind::Root => 1,
            CaKind::Issuing => 0,
        }),
    };
    let ku = KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign);
    let e = ext(&subject, &ku, &exts)?;
    exts.push(e);
    let e = ext(&subject, &bc, &exts)?;
    exts.push(e);
    if kind == CaKind::Issuing {
        // Non-critical, as upstream Fulcio's intermediates carry it.
        let eku = ExtendedKeyUsage(vec![const_oid::db::rfc5280::ID_KP_CODE_SIGNING]);
        exts.push(ext_with(&eku, false)?);
    }
    let e = ext(
        &subject,
        &SubjectKeyIdentifier(OctetString::new(ski)?),
        &exts,
    )?;
    exts.push(e);
    if let Some(aki) = aki {
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(aki)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        let e = ext(&subject, &aki, &exts)?;
        exts.push(e);
    }
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial()?,
        signature: sig_alg.clone(),
        issuer: issuer_name,
        validity,
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(exts),
    };
    sign_tbs(tbs, sig_alg, signer)
}

/// Sign a TBS certificate and assemble the certificate.
pub fn sign_tbs(
    tbs: TbsCertificate,
    sig_alg: AlgorithmIdentifierOwned,
    signer: &dyn Signer,
) -> Result<Certificate, PkiError> {
    let tbs_der = tbs.to_der()?;
    let sig = signer.sign(&tbs_der)?;
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: sig_alg,
        signature: BitString::from_bytes(&sig)?,
    })
}

/// PEM of a certificate (`CERTIFICATE`, LF line endings).
pub fn cert_pem(cert: &Certificate) -> Result<String, PkiError> {
    use der::EncodePem;
    Ok(cert.to_pem(der::pem::LineEnding::LF)?)
}

/// PEM of a DER SubjectPublicKeyInfo (`PUBLIC KEY`).
pub fn spki_pem(spki_der: &[u8]) -> Result<String, PkiError> {
    Ok(
        der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, spki_der)
            .map_err(der::Error::from)?,
    )
}

/// Lowercase hex SHA-256 of some bytes: the fingerprint used in transcripts and log IDs.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A conservative email address shape: `local@domain`, one `@`, a dotted domain, no spaces or
/// control characters (it goes into an rfc822Name as is, and is searched for as is). `Err` says
/// what is wrong.
pub fn check_email_address(email: &str) -> Result<(), &'static str> {
    if email.len() > 254 {
        return Err("longer than 254 characters");
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c))
    {
        return Err("not an email address (forbidden characters)");
    }
    let (local, domain) = email
        .split_once('@')
        .ok_or("not an email address (no '@')")?;
    if local.is_empty() || domain.contains('@') {
        return Err("not an email address");
    }
    let labels: Vec<_> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return Err("not an email address (bad domain)");
    }
    Ok(())
}

/// Does the certificate's public key equal `spki_der`? Used at start-up to refuse a key that
/// does not match its certificate.
pub fn cert_matches_key(cert: &Certificate, spki_der: &[u8]) -> bool {
    cert.tbs_certificate
        .subject_public_key_info
        .to_der()
        .is_ok_and(|d| d == spki_der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::test_support::SoftP256;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn self_signed_root_verifies_and_has_profile() {
        let s = SoftP256::random();
        let name = parse_name("CN=test root,O=sigvault").expect("name");
        let v = validity_from_now(Duration::from_secs(3600)).expect("validity");
        let cert = build_ca_certificate(CaKind::Root, name, s.public_key_der(), v, None, &s)
            .expect("cert");
        let tbs = cert.tbs_certificate.to_der().expect("der");
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(
            cert.tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes(),
        )
        .expect("vk");
        let sig = p256::ecdsa::Signature::from_der(cert.signature.raw_bytes()).expect("sig");
        vk.verify(&tbs, &sig).expect("verify");
        let (crit, bc) = cert
            .tbs_certificate
            .get::<BasicConstraints>()
            .expect("get")
            .expect("bc");
        assert!(crit && bc.ca && bc.path_len_constraint == Some(1));
        assert!(cert_matches_key(&cert, s.public_key_der()));
    }
}
