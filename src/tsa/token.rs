//! The RFC 3161 response encodings: a granted `TimeStampResp` carrying the timestamp token, and
//! a rejection.
//!
//! The token (RFC 3161 §2.4.2, RFC 5652, RFC 5816) is a CMS `ContentInfo` holding `SignedData`:
//! * `encapContentInfo` = id-ct-TSTInfo with the DER `TSTInfo` (v1: policy, the request's
//!   message imprint as sent, a unique serial, `genTime` in whole seconds UTC — both Sigstore
//!   verifiers accept no fraction or exactly three digits, and DER forbids trailing zeros — the
//!   accuracy, the nonce echoed);
//! * one `SignerInfo` with `sid` = issuerAndSerialNumber of the TSA certificate (sigstore-js
//!   finds the trusted-root TSA chain by it), signed attributes contentType, messageDigest and
//!   signingCertificateV2 (RFC 5035: SHA-256 of the TSA certificate, with its issuer and
//!   serial), signed by the TSA key in the HSM;
//! * the TSA certificate in `certificates` only when the request asked (`certReq`).
//!
//! Everything that does not depend on the request (the certificate's hash, the sid, the
//! algorithm identifiers, the ESS attribute) is built once in [`TokenMaker::new`].

use std::sync::Arc;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, GeneralizedTime, Int, OctetString, SetOfVec, Utf8StringRef};
use der::{Any, Encode, Sequence};
use sha2::Digest;
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::attr::{Attribute, AttributeValue};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;
use x509_tsp::{Accuracy, TspVersion, TstInfo};

use super::request::{Failure, Request};
use crate::signer::{SignError, SignatureAlgorithm, Signer};

/// id-ct-TSTInfo (RFC 3161 §2.4.2).
pub const ID_CT_TST_INFO: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("DER encoding failed: {0}")]
    Der(#[from] der::Error),
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// `ESSCertIDv2` (RFC 5035 §3) with the default hash algorithm (SHA-256), which DER omits.
#[derive(Clone, Debug, Sequence)]
struct EssCertIdV2 {
    cert_hash: OctetString,
    issuer_serial: IssuerSerial,
}

/// `IssuerSerial` (RFC 5035 §4).
#[derive(Clone, Debug, Sequence)]
struct IssuerSerial {
    issuer: Vec<GeneralName>,
    serial_number: SerialNumber,
}

/// `SigningCertificateV2` (RFC 5035 §3).
#[derive(Clone, Debug, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
}

/// `PKIStatusInfo` (RFC 3161 §2.4.2), written here rather than taken from the `cmpv2` crate,
/// whose `PKIFailureInfo` flags are bit positions used as bit masks (badAlg encodes as no bit).
#[derive(Clone, Debug, Sequence)]
pub struct StatusInfo<'a> {
    /// 0 granted, 2 rejection.
    pub status: u8,
    #[asn1(optional = "true")]
    pub status_string: Option<Vec<Utf8StringRef<'a>>>,
    #[asn1(optional = "true")]
    pub fail_info: Option<BitString>,
}

/// `TimeStampResp` (RFC 3161 §2.4.2).
#[derive(Clone, Debug, Sequence)]
pub struct TimeStampResp<'a> {
    pub status: StatusInfo<'a>,
    #[asn1(optional = "true")]
    pub time_stamp_token: Option<ContentInfo>,
}

/// PKIStatus values.
pub const GRANTED: u8 = 0;
pub const REJECTION: u8 = 2;

/// The DER named-bit-list BIT STRING with only bit `n` set (bit 0 first, trailing zeros
/// dropped as X.690 §11.2.2 requires).
pub fn failure_bits(n: u8) -> BitString {
    let n = usize::from(n);
    let mut bytes = vec![0u8; n / 8 + 1];
    bytes[n / 8] = 0x80 >> (n % 8);
    // `new` takes the count of unused bits in the last byte.
    BitString::new((7 - n % 8) as u8, bytes)
        .unwrap_or_else(|_| BitString::from_bytes(&[]).expect("empty bit string"))
}

/// Makes the signed tokens of one TSA key and certificate.
pub struct TokenMaker {
    signer: Arc<dyn Signer>,
    cert: Certificate,
    sid: IssuerAndSerialNumber,
    digest_alg: AlgorithmIdentifierOwned,
    sig_alg: AlgorithmIdentifierOwned,
    ess_attribute: Attribute,
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, der::Error> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![AttributeValue::from(value)])?,
    })
}

fn digest_oid(alg: SignatureAlgorithm) -> ObjectIdentifier {
    match alg {
        SignatureAlgorithm::EcdsaP256Sha256 => const_oid::db::rfc5912::ID_SHA_256,
        SignatureAlgorithm::EcdsaP384Sha384 => const_oid::db::rfc5912::ID_SHA_384,
    }
}

impl TokenMaker {
    /// `cert` is the TSA certificate whose key `signer` holds (checked by the caller).
    pub fn new(signer: Arc<dyn Signer>, cert: Certificate) -> Result<Self, TokenError> {
        let tbs = &cert.tbs_certificate;
        let sid = IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        };
        let ess = SigningCertificateV2 {
            certs: vec![EssCertIdV2 {
                cert_hash: OctetString::new(sha2::Sha256::digest(cert.to_der()?).to_vec())?,
                issuer_serial: IssuerSerial {
                    issuer: vec![GeneralName::DirectoryName(tbs.issuer.clone())],
                    serial_number: tbs.serial_number.clone(),
                },
            }],
        };
        let ess_attribute = attribute(
            const_oid::db::rfc5911::ID_AA_SIGNING_CERTIFICATE_V_2,
            Any::encode_from(&ess)?,
        )?;
        let alg = signer.algorithm();
        Ok(Self {
            digest_alg: AlgorithmIdentifierOwned {
                oid: digest_oid(alg),
                parameters: None,
            },
            sig_alg: AlgorithmIdentifierOwned {
                oid: alg.x509_oid(),
                parameters: None,
            },
            signer,
            cert,
            sid,
            ess_attribute,
        })
    }

    /// The signer (for readiness: whether its HSM is failing).
    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.signer
    }

    /// A granted `TimeStampResp` for `req`, DER.
    pub fn grant(
        &self,
        req: &Request,
        policy: ObjectIdentifier,
        serial: &[u8],
        gen_time: GeneralizedTime,
        accuracy_ms: u32,
    ) -> Result<Vec<u8>, TokenError> {
        let tst = TstInfo {
            version: TspVersion::V1,
            policy,
            message_imprint: req.imprint.clone(),
            serial_number: Int::new(serial)?,
            gen_time,
            accuracy: Some(accuracy(accuracy_ms)),
            ordering: false,
            nonce: req.nonce.clone(),
            tsa: None,
            extensions: None,
        };
        let tst_der = tst.to_der()?;
        let content_digest = self.signer.algorithm().digest(&tst_der);
        let signed_attrs = SetOfVec::try_from(vec![
            attribute(
                const_oid::db::rfc5911::ID_CONTENT_TYPE,
                Any::encode_from(&ID_CT_TST_INFO)?,
            )?,
            attribute(
                const_oid::db::rfc5911::ID_MESSAGE_DIGEST,
                Any::encode_from(&OctetString::new(content_digest)?)?,
            )?,
            self.ess_attribute.clone(),
        ])?;
        // RFC 5652 §5.4: the signature covers the DER of the attributes as a SET OF (tag 0x31),
        // though they are sent [0] IMPLICIT.
        let signature = self.signer.sign(&signed_attrs.to_der()?)?;
        let signer_info = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(self.sid.clone()),
            digest_alg: self.digest_alg.clone(),
            signed_attrs: Some(signed_attrs),
            signature_algorithm: self.sig_alg.clone(),
            signature: OctetString::new(signature)?,
            unsigned_attrs: None,
        };
        let certificates = if req.cert_req {
            Some(CertificateSet(SetOfVec::try_from(vec![
                CertificateChoices::Certificate(self.cert.clone()),
            ])?))
        } else {
            None
        };
        let signed_data = SignedData {
            // v3: the encapsulated content is not id-data (RFC 5652 §5.1).
            version: CmsVersion::V3,
            digest_algorithms: SetOfVec::try_from(vec![self.digest_alg.clone()])?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_CT_TST_INFO,
                econtent: Some(Any::new(der::Tag::OctetString, tst_der)?),
            },
            certificates,
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info])?),
        };
        let token = ContentInfo {
            content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
            content: Any::encode_from(&signed_data)?,
        };
        let resp = TimeStampResp {
            status: StatusInfo {
                status: GRANTED,
                status_string: None,
                fail_info: None,
            },
            time_stamp_token: Some(token),
        };
        Ok(resp.to_der()?)
    }
}

/// `Accuracy` for a number of milliseconds: whole seconds and the remaining milliseconds, each
/// left out when zero (RFC 3161 allows 1-999 for millis).
fn accuracy(ms: u32) -> Accuracy {
    let (s, m) = (ms / 1000, ms % 1000);
    Accuracy {
        seconds: (s > 0).then_some(u64::from(s)),
        millis: (m > 0).then_some(m as i16),
        micros: None,
    }
}

/// A `TimeStampResp` of status `rejection` with `failure` and `reason` as its status string.
pub fn rejection(failure: Failure, reason: &str) -> Vec<u8> {
    // A reason that cannot be encoded still leaves the failure bit, which is what clients read.
    let text = Utf8StringRef::new(reason).ok();
    let resp = TimeStampResp {
        status: StatusInfo {
            status: REJECTION,
            status_string: text.map(|t| vec![t]),
            fail_info: Some(failure_bits(failure.bit())),
        },
        time_stamp_token: None,
    };
    resp.to_der().unwrap_or_else(|_| {
        // Status alone: SEQUENCE { SEQUENCE { INTEGER 2 } } always encodes.
        vec![0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_splits_seconds_and_millis() {
        let a = accuracy(1100);
        assert_eq!((a.seconds, a.millis), (Some(1), Some(100)));
        let a = accuracy(1000);
        assert_eq!((a.seconds, a.millis), (Some(1), None));
        let a = accuracy(250);
        assert_eq!((a.seconds, a.millis), (None, Some(250)));
    }

    #[test]
    fn a_rejection_carries_its_failure_bit() {
        use der::Decode;
        // X.690 named bit lists: badAlg (0) is `03 02 07 80`, badDataFormat (5) `03 02 02 04`,
        // systemFailure (25) `03 05 06 00 00 00 40`.
        assert_eq!(failure_bits(0).to_der().expect("der"), [3, 2, 7, 0x80]);
        assert_eq!(failure_bits(5).to_der().expect("der"), [3, 2, 2, 0x04]);
        assert_eq!(
            failure_bits(25).to_der().expect("der"),
            [3, 5, 6, 0, 0, 0, 0x40]
        );
        for f in Failure::ALL {
            let der = rejection(f, "why");
            let resp = TimeStampResp::from_der(&der).expect("decodes");
            assert_eq!(resp.status.status, REJECTION);
            assert_eq!(resp.status.fail_info, Some(failure_bits(f.bit())), "{f:?}");
            assert_eq!(resp.status.status_string.expect("text")[0].as_str(), "why");
            assert!(resp.time_stamp_token.is_none());
        }
    }
}
