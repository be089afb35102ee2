//! The Fulcio leaf-certificate profile (sigstore/fulcio `docs/certificate-specification.md` and `docs/oid-info.md`).
//!
//! Pure code: no clock reads except through the `now` argument of [`validity_for`], no I/O, no
//! signing. The caller signs the TBS built here with [`crate::pki::sign_tbs`].
//!
//! Flow (RFC 6962 §3.1 precertificates, as sigstore/fulcio issues them):
//! 1. [`leaf_tbs`] builds the TBS: v3, empty subject, issuer = the issuing CA's subject, and the
//!    extensions in upstream Fulcio's order — KeyUsage (critical), ExtendedKeyUsage, SKI, AKI,
//!    SubjectAltName (critical, because the subject is empty), then the Sigstore
//!    `1.3.6.1.4.1.57264.1.N` extensions in the order given.
//! 2. [`precert`] appends the critical CT poison last; the caller signs it and submits it to the
//!    CT log.
//! 3. [`with_scts`] appends the SCT list last instead; the caller signs the final certificate.
//!
//! Because both only *append* one extension to the same list, a verifier that deletes the poison
//! from the precertificate and the SCT list from the final certificate
//! ([`ct::precert_tbs`], [`ct::final_cert_tbs_for_sct`]) gets the same bytes, which is what the
//! SCT signs.

use std::time::{Duration, SystemTime};

use const_oid::ObjectIdentifier;
use der::asn1::{Ia5String, OctetString, Utf8StringRef};
use der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::{GeneralName, OtherName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

use super::ct::{self, CtError, Sct};
use super::{PkiError, ext_with, key_identifier};

/// `1.3.6.1.4.1.57264.1`: the arc under which Sigstore's certificate extensions live.
pub const SIGSTORE_OID_BASE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1");
/// `1.3.6.1.4.1.57264.1.7`: the otherName type-id of `username` identities (never an extension).
pub const OID_OTHERNAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.7");
/// `1.3.6.1.4.1.57264.1.1`: OIDC issuer, deprecated raw encoding.
pub const OID_ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// `1.3.6.1.4.1.57264.1.8`: OIDC issuer, DER UTF8String.
pub const OID_ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");

/// Arc of the otherName type-id; it never appears as an extension.
const ARC_OTHERNAME: u32 = 7;
/// Arcs 1–6 carry the raw UTF-8 bytes as extnValue (no DER tag), as upstream still emits them.
const LAST_RAW_ARC: u32 = 6;

/// Lifetime of a leaf certificate: NotAfter = NotBefore + 10 minutes.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(10 * 60);

/// Errors while building a leaf certificate.
#[derive(Debug, thiserror::Error)]
pub enum FulcioError {
    #[error("DER encoding failed: {0}")]
    Der(#[from] der::Error),
    #[error("invalid subject public key: {0}")]
    SubjectKey(String),
    #[error("invalid subject alternative name: {0}")]
    San(String),
    #[error("invalid Sigstore extension 1.3.6.1.4.1.57264.1.{arc}: {reason}")]
    Extension { arc: u32, reason: String },
    #[error(
        "the OIDC issuer extensions (1.3.6.1.4.1.57264.1.1 and .8) are required in every leaf certificate"
    )]
    MissingIssuer,
    #[error("a final certificate needs at least one SCT")]
    NoScts,
    #[error(transparent)]
    Ct(#[from] CtError),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// One Sigstore certificate extension `1.3.6.1.4.1.57264.1.<oid_arc>` with its string value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SigstoreExtension {
    pub oid_arc: u32,
    pub value: String,
}

impl SigstoreExtension {
    pub fn new(oid_arc: u32, value: impl Into<String>) -> Self {
        Self {
            oid_arc,
            value: value.into(),
        }
    }

    /// The full OID `1.3.6.1.4.1.57264.1.<oid_arc>`.
    pub fn oid(&self) -> Result<ObjectIdentifier, FulcioError> {
        sigstore_oid(self.oid_arc)
    }
}

/// `1.3.6.1.4.1.57264.1.<arc>`.
pub fn sigstore_oid(arc: u32) -> Result<ObjectIdentifier, FulcioError> {
    SIGSTORE_OID_BASE
        .push_arc(arc)
        .map_err(|e| FulcioError::Extension {
            arc,
            reason: e.to_string(),
        })
}

/// The single subject alternative name of a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum San {
    /// rfc822Name (email issuers).
    Email(String),
    /// uniformResourceIdentifier (CI providers, SPIFFE, Kubernetes, URI issuers).
    Uri(String),
    /// otherName `{ type-id, [0] EXPLICIT UTF8String }` (username issuers, type-id
    /// [`OID_OTHERNAME`]).
    OtherName {
        type_id: ObjectIdentifier,
        value: String,
    },
}

impl San {
    /// The SAN as a GeneralName.
    pub fn general_name(&self) -> Result<GeneralName, FulcioError> {
        let non_empty = |kind: &str, v: &str| {
            if v.is_empty() {
                Err(FulcioError::San(format!("empty {kind}")))
            } else {
                Ok(())
            }
        };
        let ia5 = |kind: &str, v: &str| {
            Ia5String::new(v).map_err(|_| {
                FulcioError::San(format!(
                    "{kind} {v:?} cannot be encoded as an IA5String (ASCII only)"
                ))
            })
        };
        Ok(match self {
            San::Email(v) => {
                non_empty("email address", v)?;
                GeneralName::Rfc822Name(ia5("email address", v)?)
            }
            San::Uri(v) => {
                non_empty("URI", v)?;
                GeneralName::UniformResourceIdentifier(ia5("URI", v)?)
            }
            San::OtherName { type_id, value } => {
                non_empty("otherName value", value)?;
                let utf8 = Utf8StringRef::new(value)?;
                GeneralName::OtherName(OtherName {
                    type_id: *type_id,
                    value: Any::encode_from(&utf8)?,
                })
            }
        })
    }
}

/// The extension for one Sigstore value: arcs 1–6 hold the raw UTF-8 bytes as extnValue, arcs 8
/// and above a DER UTF8String; never critical. Arc 7 (the otherName type-id) and arc 0 are
/// refused.
pub fn sigstore_extension(e: &SigstoreExtension) -> Result<Extension, FulcioError> {
    let bad = |reason: &str| FulcioError::Extension {
        arc: e.oid_arc,
        reason: reason.to_string(),
    };
    let value = match e.oid_arc {
        0 => return Err(bad("arc 0 is not a Sigstore extension")),
        ARC_OTHERNAME => {
            return Err(bad(
                "arc 7 is the otherName SAN type-id and never appears as an extension",
            ));
        }
        1..=LAST_RAW_ARC => e.value.as_bytes().to_vec(),
        _ => Utf8StringRef::new(&e.value)?.to_der()?,
    };
    Ok(Extension {
        extn_id: e.oid()?,
        critical: false,
        extn_value: OctetString::new(value)?,
    })
}

/// The key identifier of `issuer`: its SubjectKeyIdentifier extension if it has one, else the
/// SHA-1 of its public key (as [`key_identifier`]).
pub fn issuer_key_identifier(issuer: &Certificate) -> Result<Vec<u8>, FulcioError> {
    match issuer.tbs_certificate.get::<SubjectKeyIdentifier>()? {
        Some((_, ski)) => Ok(ski.0.as_bytes().to_vec()),
        None => Ok(key_identifier(
            &issuer.tbs_certificate.subject_public_key_info,
        )),
    }
}

/// Build the TBSCertificate of a Fulcio leaf (sigstore/fulcio's certificate profile).
///
/// Extensions, in this order: KeyUsage digitalSignature (critical), ExtendedKeyUsage codeSigning,
/// SubjectKeyIdentifier, AuthorityKeyIdentifier (= issuer's SKI), SubjectAltName (critical), then
/// `extensions` in the order given (empty values skipped). No BasicConstraints. `extensions` must
/// carry the OIDC issuer as arcs 1 and 8.
pub fn leaf_tbs(
    issuer: &Certificate,
    subject_spki_der: &[u8],
    san: &San,
    extensions: &[SigstoreExtension],
    validity: Validity,
    serial: SerialNumber,
    sig_alg: AlgorithmIdentifierOwned,
) -> Result<TbsCertificate, FulcioError> {
    let spki = SubjectPublicKeyInfoOwned::from_der(subject_spki_der)
        .map_err(|e| FulcioError::SubjectKey(e.to_string()))?;
    let present: Vec<&SigstoreExtension> =
        extensions.iter().filter(|e| !e.value.is_empty()).collect();
    for arc in [1, 8] {
        if !present.iter().any(|e| e.oid_arc == arc) {
            return Err(FulcioError::MissingIssuer);
        }
    }
    for (i, e) in present.iter().enumerate() {
        if present[..i].iter().any(|p| p.oid_arc == e.oid_arc) {
            return Err(FulcioError::Extension {
                arc: e.oid_arc,
                reason: "given more than once".into(),
            });
        }
    }

    let mut exts: Vec<Extension> = Vec::with_capacity(5 + present.len());
    exts.push(ext_with(
        &KeyUsage(KeyUsages::DigitalSignature.into()),
        true,
    )?);
    exts.push(ext_with(
        &ExtendedKeyUsage(vec![const_oid::db::rfc5280::ID_KP_CODE_SIGNING]),
        false,
    )?);
    exts.push(ext_with(
        &SubjectKeyIdentifier(OctetString::new(key_identifier(&spki))?),
        false,
    )?);
    exts.push(ext_with(
        &AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(issuer_key_identifier(issuer)?)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        },
        false,
    )?);
    // The subject is empty, so the SAN must be critical (RFC 5280 §4.2.1.6; pyca enforces it).
    exts.push(ext_with(&SubjectAltName(vec![san.general_name()?]), true)?);
    for e in present {
        exts.push(sigstore_extension(e)?);
    }

    Ok(TbsCertificate {
        version: Version::V3,
        serial_number: serial,
        signature: sig_alg,
        issuer: issuer.tbs_certificate.subject.clone(),
        validity,
        subject: Name::default(),
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(exts),
    })
}

/// `tbs` without any poison or SCT-list extension, so appending one is idempotent.
fn without_ct_extensions(tbs: &TbsCertificate) -> TbsCertificate {
    let mut out = tbs.clone();
    if let Some(exts) = out.extensions.as_mut() {
        exts.retain(|e| e.extn_id != ct::POISON && e.extn_id != ct::SCT_LIST);
    }
    out
}

/// The precertificate TBS: `tbs` with the critical CT poison (value `05 00`) appended last. Any
/// poison or SCT list already in `tbs` is removed first.
pub fn precert(tbs: &TbsCertificate) -> TbsCertificate {
    let mut out = without_ct_extensions(tbs);
    let Ok(value) = OctetString::new(ct::POISON_VALUE) else {
        unreachable!("a two-byte OCTET STRING is always encodable");
    };
    out.extensions.get_or_insert_with(Vec::new).push(Extension {
        extn_id: ct::POISON,
        critical: true,
        extn_value: value,
    });
    out
}

/// The final-certificate TBS: `tbs` (the leaf TBS or the precert TBS) with the non-critical SCT
/// list appended last; its extnValue is a DER OCTET STRING around the TLS list (double-wrapped).
/// Any poison or SCT list already in `tbs` is removed first.
pub fn with_scts(tbs: &TbsCertificate, scts: &[Sct]) -> Result<TbsCertificate, FulcioError> {
    if scts.is_empty() {
        return Err(FulcioError::NoScts);
    }
    let mut out = without_ct_extensions(tbs);
    let value = ct::sct_list_extension_value(scts)?;
    out.extensions.get_or_insert_with(Vec::new).push(Extension {
        extn_id: ct::SCT_LIST,
        critical: false,
        extn_value: OctetString::new(value)?,
    });
    Ok(out)
}

/// An X.509 time for `secs` after the epoch: UTCTime through 2049, GeneralizedTime from 2050 on
/// (RFC 5280 §4.1.2.5, as Go encodes it). Saturates at 9999-12-31T23:59:59Z.
/// Leaf validity: NotBefore = `now` truncated to whole seconds, NotAfter = NotBefore + 10 min.
/// A clock before 1970 is treated as the epoch.
pub fn validity_for(now: SystemTime) -> Validity {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Validity {
        not_before: super::x509_time(secs),
        not_after: super::x509_time(secs.saturating_add(LEAF_VALIDITY.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::ct::{DigitallySigned, final_cert_tbs_for_sct, precert_tbs};
    use crate::pki::{CaKind, build_ca_certificate, parse_name, random_serial, sign_tbs};
    use crate::signer::Signer;
    use crate::signer::test_support::SoftP256;

    fn ca() -> (SoftP256, Certificate) {
        let s = SoftP256::random();
        let name = parse_name("CN=test issuing,O=sigvault").expect("name");
        let v = super::super::validity_from_now(Duration::from_secs(3600)).expect("validity");
        let cert =
            build_ca_certificate(CaKind::Root, name, s.public_key_der(), v, None, &s).expect("ca");
        (s, cert)
    }

    fn alg(s: &SoftP256) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: s.algorithm().x509_oid(),
            parameters: None,
        }
    }

    fn issuer_exts() -> Vec<SigstoreExtension> {
        vec![
            SigstoreExtension::new(1, "https://issuer.example"),
            SigstoreExtension::new(8, "https://issuer.example"),
        ]
    }

    fn tbs_for(s: &SoftP256, ca: &Certificate, san: &San) -> TbsCertificate {
        let leaf = SoftP256::random();
        leaf_tbs(
            ca,
            leaf.public_key_der(),
            san,
            &issuer_exts(),
            validity_for(SystemTime::now()),
            random_serial().expect("serial"),
            alg(s),
        )
        .expect("tbs")
    }

    fn sct() -> Sct {
        Sct {
            version: 0,
            log_id: [7; 32],
            timestamp: 1_700_000_000_000,
            extensions: vec![],
            signature: DigitallySigned::ecdsa_sha256(vec![0x30, 0x06, 2, 1, 1, 2, 1, 1]),
        }
    }

    #[test]
    fn extension_order_and_encodings() {
        let (s, ca) = ca();
        let tbs = tbs_for(&s, &ca, &San::Email("a@b.example".into()));
        let exts = tbs.extensions.as_ref().expect("exts");
        let ids: Vec<String> = exts.iter().map(|e| e.extn_id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "2.5.29.15",
                "2.5.29.37",
                "2.5.29.14",
                "2.5.29.35",
                "2.5.29.17",
                "1.3.6.1.4.1.57264.1.1",
                "1.3.6.1.4.1.57264.1.8"
            ]
        );
        let crit: Vec<bool> = exts.iter().map(|e| e.critical).collect();
        assert_eq!(crit, [true, false, false, false, true, false, false]);
        assert_eq!(exts[5].extn_value.as_bytes(), b"https://issuer.example");
        assert_eq!(exts[6].extn_value.as_bytes()[0], 0x0c);
        assert_eq!(exts[0].extn_value.as_bytes(), [0x03, 0x02, 0x07, 0x80]);
        assert!(tbs.subject.0.is_empty());
        assert_eq!(tbs.issuer, ca.tbs_certificate.subject);
        // AKI = issuer SKI.
        let (_, aki) = tbs
            .get::<AuthorityKeyIdentifier>()
            .expect("get")
            .expect("aki");
        let (_, ski) = ca
            .tbs_certificate
            .get::<SubjectKeyIdentifier>()
            .expect("get")
            .expect("ski");
        assert_eq!(aki.key_identifier.expect("kid"), ski.0);
    }

    #[test]
    fn othername_san_encoding() {
        let (s, ca) = ca();
        let san = San::OtherName {
            type_id: OID_OTHERNAME,
            value: "alice!example.com".into(),
        };
        let tbs = tbs_for(&s, &ca, &san);
        let e = &tbs.extensions.as_ref().expect("exts")[4];
        let mut expected = vec![0x30, 0x23, 0xa0, 0x21, 0x06, 0x0a];
        expected.extend_from_slice(OID_OTHERNAME.as_bytes());
        expected.extend_from_slice(&[0xa0, 0x13, 0x0c, 0x11]);
        expected.extend_from_slice(b"alice!example.com");
        assert_eq!(e.extn_value.as_bytes(), expected);
    }

    #[test]
    fn refused_inputs() {
        let (s, ca) = ca();
        let leaf = SoftP256::random();
        let go = |san: &San, exts: &[SigstoreExtension]| {
            leaf_tbs(
                &ca,
                leaf.public_key_der(),
                san,
                exts,
                validity_for(SystemTime::now()),
                random_serial().expect("serial"),
                alg(&s),
            )
        };
        let email = San::Email("a@b.example".into());
        assert!(matches!(go(&email, &[]), Err(FulcioError::MissingIssuer)));
        let mut seven = issuer_exts();
        seven.push(SigstoreExtension::new(7, "x"));
        assert!(matches!(
            go(&email, &seven),
            Err(FulcioError::Extension { arc: 7, .. })
        ));
        let mut dup = issuer_exts();
        dup.push(SigstoreExtension::new(8, "again"));
        assert!(go(&email, &dup).is_err());
        assert!(matches!(
            go(&San::Email("é@b.example".into()), &issuer_exts()),
            Err(FulcioError::San(_))
        ));
        assert!(go(&San::Uri(String::new()), &issuer_exts()).is_err());
        // Empty values are omitted, not encoded.
        let mut empty = issuer_exts();
        empty.push(SigstoreExtension::new(24, ""));
        let tbs = go(&email, &empty).expect("tbs");
        assert_eq!(tbs.extensions.expect("exts").len(), 7);
    }

    #[test]
    fn precert_and_final_cover_the_same_tbs() {
        let (s, ca) = ca();
        let tbs = tbs_for(&s, &ca, &San::Uri("https://github.com/o/r".into()));
        let pre = sign_tbs(precert(&tbs), alg(&s), &s).expect("pre");
        let fin_from_base =
            sign_tbs(with_scts(&tbs, &[sct()]).expect("fin"), alg(&s), &s).expect("sign");
        let fin_from_pre = sign_tbs(
            with_scts(&pre.tbs_certificate, &[sct()]).expect("fin"),
            alg(&s),
            &s,
        )
        .expect("sign");
        let a = precert_tbs(&pre).expect("precert tbs");
        assert_eq!(a, final_cert_tbs_for_sct(&fin_from_base).expect("final"));
        assert_eq!(a, final_cert_tbs_for_sct(&fin_from_pre).expect("final"));
        assert_eq!(a, tbs.to_der().expect("der"));
        assert_eq!(ct::embedded_scts(&fin_from_pre).expect("scts"), [sct()]);
        // Idempotent.
        assert_eq!(precert(&precert(&tbs)), precert(&tbs));
        assert!(matches!(with_scts(&tbs, &[]), Err(FulcioError::NoScts)));
    }

    #[test]
    fn validity_is_ten_minutes_from_truncated_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        let v = validity_for(now);
        assert!(matches!(v.not_before, x509_cert::time::Time::UtcTime(_)));
        assert_eq!(
            v.not_before.to_unix_duration(),
            Duration::from_secs(1_700_000_000)
        );
        assert_eq!(
            v.not_after.to_unix_duration(),
            Duration::from_secs(1_700_000_600)
        );
        let late = validity_for(SystemTime::UNIX_EPOCH + Duration::from_secs(2_600_000_000));
        assert!(matches!(
            late.not_before,
            x509_cert::time::Time::GeneralTime(_)
        ));
        let before_epoch = validity_for(SystemTime::UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(before_epoch.not_before.to_unix_duration(), Duration::ZERO);
    }
}
