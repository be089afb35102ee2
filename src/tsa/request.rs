//! What a client asks the timestamp authority for, read from either form the clients send at the
//! same URL: an RFC 3161 DER `TimeStampReq` (sigstore-python, `openssl ts -query`) or the JSON
//! request of Sigstore's timestamp-authority (sigstore-js:
//! `{"artifactHash","hashAlgorithm","nonce","certificates","tsaPolicyOID"}`).
//!
//! Two kinds of failure, kept apart because they are answered differently:
//! * [`NotARequest`]: the bytes are not a request at all (not DER, not JSON of that shape): a
//!   plain 400 that says why;
//! * [`Refusal`]: a well-formed request the TSA will not grant (RFC 3161 §2.4.2): answered with
//!   a `TimeStampResp` of status `rejection` and the matching `PKIFailureInfo` bit.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use const_oid::ObjectIdentifier;
use der::Decode;
use der::asn1::Int;
use serde::Deserialize;
use x509_tsp::{MessageImprint, TimeStampReq, TspVersion};

/// The `PKIFailureInfo` bits (RFC 3161 §2.4.2) this TSA answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// badAlg (0): an unrecognised or unsupported hash algorithm.
    BadAlg,
    /// badRequest (2): a transaction not permitted or supported (e.g. another version).
    BadRequest,
    /// badDataFormat (5): the data submitted has the wrong format (e.g. a digest of the wrong
    /// length).
    BadDataFormat,
    /// timeNotAvailable (14): the TSA's time source is not available.
    TimeNotAvailable,
    /// unacceptedPolicy (15): the requested policy is not one this TSA serves.
    UnacceptedPolicy,
    /// unacceptedExtension (16): the request carries an extension this TSA does not support.
    UnacceptedExtension,
    /// systemFailure (25): the request cannot be handled because of a system failure (the HSM).
    SystemFailure,
}

impl Failure {
    /// The bit number in `PKIFailureInfo`.
    pub fn bit(self) -> u8 {
        match self {
            Self::BadAlg => 0,
            Self::BadRequest => 2,
            Self::BadDataFormat => 5,
            Self::TimeNotAvailable => 14,
            Self::UnacceptedPolicy => 15,
            Self::UnacceptedExtension => 16,
            Self::SystemFailure => 25,
        }
    }

    /// RFC 3161's name for the bit (metrics labels, audit lines).
    pub fn name(self) -> &'static str {
        match self {
            Self::BadAlg => "badAlg",
            Self::BadRequest => "badRequest",
            Self::BadDataFormat => "badDataFormat",
            Self::TimeNotAvailable => "timeNotAvailable",
            Self::UnacceptedPolicy => "unacceptedPolicy",
            Self::UnacceptedExtension => "unacceptedExtension",
            Self::SystemFailure => "systemFailure",
        }
    }

    /// Every failure this TSA answers with, for metrics.
    pub const ALL: [Self; 7] = [
        Self::BadAlg,
        Self::BadRequest,
        Self::BadDataFormat,
        Self::TimeNotAvailable,
        Self::UnacceptedPolicy,
        Self::UnacceptedExtension,
        Self::SystemFailure,
    ];
}

/// A request the TSA will not grant, with the reason in words (sent as the `statusString`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({})", failure.name())]
pub struct Refusal {
    pub failure: Failure,
    pub reason: String,
}

impl Refusal {
    pub fn new(failure: Failure, reason: impl Into<String>) -> Self {
        Self {
            failure,
            reason: reason.into(),
        }
    }
}

/// Bytes that are not a timestamp request in either form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotARequest(pub String);

/// The hash algorithms a message imprint may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImprintHash {
    Sha256,
    Sha384,
    Sha512,
}

impl ImprintHash {
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha256 => const_oid::db::rfc5912::ID_SHA_256,
            Self::Sha384 => const_oid::db::rfc5912::ID_SHA_384,
            Self::Sha512 => const_oid::db::rfc5912::ID_SHA_512,
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|h| h.oid() == *oid)
    }

    /// The JSON form's names: upstream's `sha256`, also `SHA-256`/`SHA256` in any case.
    fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace('-', "").as_str() {
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

/// A request as the TSA acts on it, whichever form it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub hash: ImprintHash,
    /// The message imprint's digest, of `hash.digest_len()` bytes.
    pub digest: Vec<u8>,
    /// The message imprint as the token must carry it: as sent (RFC 3161 §2.4.2).
    pub imprint: MessageImprint,
    /// The policy asked for, if any (the TSA's default otherwise).
    pub policy: Option<ObjectIdentifier>,
    /// The nonce, to be echoed in the token exactly as sent.
    pub nonce: Option<Int>,
    /// Whether the token must carry the TSA's signing certificate.
    pub cert_req: bool,
}

fn imprint(hash: ImprintHash, digest: Vec<u8>) -> Result<(ImprintHash, Vec<u8>), Refusal> {
    if digest.len() != hash.digest_len() {
        return Err(Refusal::new(
            Failure::BadDataFormat,
            format!(
                "the message imprint is {} bytes, but a {} digest is {}",
                digest.len(),
                hash.name(),
                hash.digest_len()
            ),
        ));
    }
    Ok((hash, digest))
}

/// Read a DER `TimeStampReq`.
pub fn parse_der(body: &[u8]) -> Result<Result<Request, Refusal>, NotARequest> {
    if body.is_empty() {
        return Err(NotARequest(
            "empty body: expected a DER TimeStampReq".into(),
        ));
    }
    // The version is read apart from the rest, so that a well-formed request of another
    // version is refused as RFC 3161 says (badRequest), not called garbage.
    let req = match TimeStampReq::from_der(body) {
        Ok(r) => r,
        Err(e) => {
            if has_other_version(body) {
                return Ok(Err(Refusal::new(
                    Failure::BadRequest,
                    "only TimeStampReq version 1 is supported",
                )));
            }
            return Err(NotARequest(format!(
                "not an RFC 3161 TimeStampReq (DER): {e}"
            )));
        }
    };
    Ok(der_request(req))
}

/// Whether `body` is a SEQUENCE whose first element is an INTEGER other than 1.
fn has_other_version(body: &[u8]) -> bool {
    use der::{Reader, SliceReader};
    let Ok(seq) = der::Any::from_der(body) else {
        return false;
    };
    if der::Tagged::tag(&seq) != der::Tag::Sequence {
        return false;
    }
    let Ok(mut inner) = SliceReader::new(seq.value()) else {
        return false;
    };
    inner.decode::<Int>().is_ok_and(|v| v.as_bytes() != [1])
}

fn der_request(req: TimeStampReq) -> Result<Request, Refusal> {
    debug_assert_eq!(req.version, TspVersion::V1);
    if req.extensions.as_ref().is_some_and(|e| !e.is_empty()) {
        let oids: Vec<String> = req
            .extensions
            .iter()
            .flatten()
            .map(|e| e.extn_id.to_string())
            .collect();
        return Err(Refusal::new(
            Failure::UnacceptedExtension,
            format!(
                "this TSA supports no request extensions (got {})",
                oids.join(", ")
            ),
        ));
    }
    let alg = &req.message_imprint.hash_algorithm;
    let hash = ImprintHash::from_oid(&alg.oid).ok_or_else(|| {
        Refusal::new(
            Failure::BadAlg,
            format!(
                "unsupported hash algorithm {} (supported: SHA-256, SHA-384, SHA-512)",
                alg.oid
            ),
        )
    })?;
    // The parameters of a SHA-2 AlgorithmIdentifier are absent or NULL (RFC 5754 §2).
    if alg
        .parameters
        .as_ref()
        .is_some_and(|p| der::Tagged::tag(p) != der::Tag::Null || !p.value().is_empty())
    {
        return Err(Refusal::new(
            Failure::BadAlg,
            format!("{} takes no parameters (absent or NULL)", hash.name()),
        ));
    }
    let (hash, digest) = imprint(hash, req.message_imprint.hashed_message.as_bytes().to_vec())?;
    Ok(Request {
        hash,
        digest,
        imprint: req.message_imprint,
        policy: req.req_policy,
        nonce: req.nonce,
        cert_req: req.cert_req,
    })
}

/// The JSON request of Sigstore's timestamp-authority. Unknown fields are ignored, as upstream's
/// server ignores them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonRequest {
    artifact_hash: String,
    #[serde(default)]
    hash_algorithm: Option<String>,
    #[serde(default)]
    nonce: Option<serde_json::Number>,
    #[serde(default)]
    certificates: Option<bool>,
    #[serde(default, rename = "tsaPolicyOID")]
    tsa_policy_oid: Option<String>,
}

/// Read a JSON request.
pub fn parse_json(body: &[u8]) -> Result<Result<Request, Refusal>, NotARequest> {
    let req: JsonRequest = serde_json::from_slice(body).map_err(|e| {
        NotARequest(format!(
            "not a timestamp request (JSON {{\"artifactHash\",\"hashAlgorithm\",...}}): {}",
            crate::http::json_error_text(&e)
        ))
    })?;
    Ok(json_request(req))
}

fn json_request(req: JsonRequest) -> Result<Request, Refusal> {
    let name = req.hash_algorithm.as_deref().unwrap_or("sha256");
    let hash = ImprintHash::from_name(name).ok_or_else(|| {
        Refusal::new(
            Failure::BadAlg,
            format!("unsupported hashAlgorithm {name:?} (supported: sha256, sha384, sha512)"),
        )
    })?;
    let digest = B64.decode(req.artifact_hash.trim()).map_err(|_| {
        Refusal::new(
            Failure::BadDataFormat,
            "artifactHash is not standard base64",
        )
    })?;
    let (hash, digest) = imprint(hash, digest)?;
    let policy = req
        .tsa_policy_oid
        .filter(|p| !p.is_empty())
        .map(|p| {
            crate::pki::dotted_oid::parse(&p).ok_or_else(|| {
                Refusal::new(
                    Failure::BadDataFormat,
                    format!("tsaPolicyOID {p:?} is not a dotted OID"),
                )
            })
        })
        .transpose()?;
    let nonce = req.nonce.map(|n| json_nonce(&n)).transpose()?;
    let imprint = MessageImprint {
        hash_algorithm: spki::AlgorithmIdentifier {
            oid: hash.oid(),
            parameters: None,
        },
        hashed_message: der::asn1::OctetString::new(digest.clone())
            .map_err(|_| Refusal::new(Failure::BadDataFormat, "artifactHash cannot be encoded"))?,
    };
    Ok(Request {
        hash,
        digest,
        imprint,
        policy,
        nonce,
        cert_req: req.certificates.unwrap_or(false),
    })
}

/// A JSON nonce (upstream takes an arbitrary-precision integer) as a DER INTEGER.
fn json_nonce(n: &serde_json::Number) -> Result<Int, Refusal> {
    let bad = || {
        Refusal::new(
            Failure::BadDataFormat,
            format!("nonce {n} is not a non-negative integer"),
        )
    };
    let v = n.as_u64().ok_or_else(bad)?;
    // Minimal two's-complement big-endian: strip leading zero bytes, keep one if the top bit
    // would make it negative.
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    let mut out = Vec::with_capacity(9);
    if bytes[first] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[first..]);
    Int::new(&out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Encode;
    use der::asn1::OctetString;
    use spki::AlgorithmIdentifier;

    fn req(oid: ObjectIdentifier, digest: &[u8]) -> TimeStampReq {
        TimeStampReq {
            version: TspVersion::V1,
            message_imprint: MessageImprint {
                hash_algorithm: AlgorithmIdentifier {
                    oid,
                    parameters: None,
                },
                hashed_message: OctetString::new(digest).expect("octets"),
            },
            req_policy: None,
            nonce: Some(Int::new(&[0x01, 0x02]).expect("int")),
            cert_req: true,
            extensions: None,
        }
    }

    #[test]
    fn a_der_request_is_read_with_its_nonce_and_cert_req() {
        let der = req(const_oid::db::rfc5912::ID_SHA_384, &[7; 48])
            .to_der()
            .expect("der");
        let r = parse_der(&der).expect("request").expect("granted");
        assert_eq!(r.hash, ImprintHash::Sha384);
        assert_eq!(r.digest, [7; 48]);
        assert!(r.cert_req);
        assert_eq!(r.nonce.expect("nonce").as_bytes(), [1, 2]);
    }

    #[test]
    fn refusals_name_their_failure() {
        let sha1 = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
        let der = req(sha1, &[0; 20]).to_der().expect("der");
        assert_eq!(
            parse_der(&der).expect("req").expect_err("sha1").failure,
            Failure::BadAlg
        );
        let der = req(const_oid::db::rfc5912::ID_SHA_256, &[0; 31])
            .to_der()
            .expect("der");
        assert_eq!(
            parse_der(&der).expect("req").expect_err("short").failure,
            Failure::BadDataFormat
        );
        // Version 2: refused as badRequest, not called garbage.
        let mut der = req(const_oid::db::rfc5912::ID_SHA_256, &[0; 32])
            .to_der()
            .expect("der");
        assert_eq!(der[2..5], [0x02, 0x01, 0x01]);
        der[4] = 2;
        assert_eq!(
            parse_der(&der).expect("req").expect_err("v2").failure,
            Failure::BadRequest
        );
        assert!(parse_der(b"hello").is_err());
        assert!(parse_der(&[]).is_err());
        assert!(parse_der(&[0x30, 0x03, 0x02, 0x01]).is_err());
    }

    #[test]
    fn a_json_request_is_read_as_sigstore_js_sends_it() {
        let body = format!(
            r#"{{"artifactHash":"{}","hashAlgorithm":"sha256"}}"#,
            B64.encode([9u8; 32])
        );
        let r = parse_json(body.as_bytes()).expect("req").expect("granted");
        assert_eq!(
            (r.hash, r.cert_req, r.nonce.is_none()),
            (ImprintHash::Sha256, false, true)
        );
        let body = format!(
            r#"{{"artifactHash":"{}","hashAlgorithm":"sha512","nonce":128,"certificates":true,"tsaPolicyOID":"1.2.3"}}"#,
            B64.encode([9u8; 64])
        );
        let r = parse_json(body.as_bytes()).expect("req").expect("granted");
        assert_eq!(r.nonce.expect("nonce").as_bytes(), [0x00, 0x80]);
        assert_eq!(r.policy, Some(ObjectIdentifier::new_unwrap("1.2.3")));
        assert!(r.cert_req);
        for (body, failure) in [
            (
                r#"{"artifactHash":"AAAA","hashAlgorithm":"md5"}"#,
                Failure::BadAlg,
            ),
            (r#"{"artifactHash":"AAAA"}"#, Failure::BadDataFormat),
            (r#"{"artifactHash":"!!!"}"#, Failure::BadDataFormat),
        ] {
            let e = parse_json(body.as_bytes()).expect("req").expect_err(body);
            assert_eq!(e.failure, failure, "{body}");
        }
        assert!(parse_json(b"{}").is_err());
        assert!(parse_json(b"[1,2]").is_err());
    }
}
