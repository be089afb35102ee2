//! RFC 6962 certificate-transparency structures, precertificate handling and chain checks.
//!
//! Pure code: no I/O, no clocks, no signing (callers sign through [`crate::signer::Signer`]).
//! Everything here follows RFC 6962 §3 as implemented by
//! google/certificate-transparency-go (`types.go`, `serialization.go`, `x509.BuildPrecertTBS`,
//! the CTFE's chain validation).
//!
//! * TLS presentation-language encoding: [`TlsReader`] and the `put_*` helpers.
//! * [`MerkleTreeLeaf`], [`SignedEntry`], [`sct_signed_data`], [`sth_signed_data`],
//!   [`DigitallySigned`], [`Sct`] (binary, list and JSON forms), [`log_id`].
//! * Precertificates: [`is_precert`], [`precert_tbs`], [`final_cert_tbs_for_sct`],
//!   [`issuer_key_hash`], [`embedded_scts`]. TBS editing works on the DER bytes, so every byte
//!   other than the removed extension (and the re-encoded lengths around it) is kept.
//! * `extra_data` of get-entries: [`encode_x509_extra_data`], [`encode_precert_extra_data`] and
//!   their decoders.
//! * Chain checks: [`verify_issued_by`], [`verify_chain`] (ECDSA P-256/P-384 with SHA-256/384/512,
//!   RSA PKCS#1 v1.5 with SHA-1/256/384/512). Validity periods are not checked here.
//!
//! Encoders are infallible: a length that does not fit its TLS prefix (2^16 or 2^24 bytes) is a
//! caller bug — submissions are capped far below that — and panics with a message saying which.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

use super::signature::PublicKey;
use super::signature::oid::{OID_EC_PUBLIC_KEY, OID_P256, OID_P384, OID_RSA_ENCRYPTION};
use super::signature::x509::{CertSignatureAlgorithm, verify_certificate_signature};
use super::tlv::tlv;

/// The CT precertificate poison extension (RFC 6962 §3.1); critical, value ASN.1 NULL.
pub const POISON: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.3");
/// The embedded SCT list extension (RFC 6962 §3.3).
pub const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
/// DER encoding of ASN.1 NULL: the poison extension's required value.
pub const POISON_VALUE: [u8; 2] = [0x05, 0x00];

/// `HashAlgorithm.sha256` (RFC 5246 §7.4.1.4.1).
pub const HASH_SHA256: u8 = 4;
/// `SignatureAlgorithm.rsa`.
pub const SIG_RSA: u8 = 1;
/// `SignatureAlgorithm.ecdsa`.
pub const SIG_ECDSA: u8 = 3;

const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");

/// Errors of CT encoding, precertificate handling and chain verification.
///
/// Messages are meant to be shown to CT clients (prefixed by the endpoint name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtError {
    #[error("{what} is truncated: {needed} more byte(s) needed, only {available} left")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("{what} has {count} unexpected trailing byte(s)")]
    TrailingBytes { what: &'static str, count: usize },
    #[error("{what}: unsupported value {value} (expected {expected})")]
    UnsupportedValue {
        what: &'static str,
        value: u64,
        expected: &'static str,
    },
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("malformed certificate: {0}")]
    Der(String),
    #[error("the certificate has {count} {name} extensions; at most one is allowed")]
    DuplicateExtension { name: &'static str, count: usize },
    #[error("the CT poison extension must be marked critical")]
    PoisonNotCritical,
    #[error("the CT poison extension's value must be ASN.1 NULL (05 00)")]
    BadPoisonValue,
    #[error("the certificate is not a precertificate: it has no CT poison extension")]
    NotPrecert,
    #[error("the certificate is a precertificate (it has the CT poison extension)")]
    UnexpectedPoison,
    #[error("the certificate has no embedded SCT list extension")]
    NoSctList,
    #[error("unsupported signature algorithm {0}")]
    UnsupportedSignatureAlgorithm(String),
    #[error("unsupported issuer public key: {0}")]
    UnsupportedPublicKey(String),
    #[error(
        "the certificate's signature algorithm ({outer}) differs from the one inside its TBSCertificate ({inner})"
    )]
    SignatureAlgorithmMismatch { outer: String, inner: String },
    #[error("the signature of '{subject}' does not verify with the public key of '{issuer}'")]
    BadSignature { subject: String, issuer: String },
    #[error("'{subject}' names '{expected}' as its issuer, but the next certificate is '{actual}'")]
    IssuerMismatch {
        subject: String,
        expected: String,
        actual: String,
    },
    #[error(
        "'{0}' is not a CA certificate (no BasicConstraints with CA:TRUE) and cannot issue certificates"
    )]
    NotCa(String),
    #[error(
        "'{issuer}' allows at most {max} intermediate CA(s) below it, but the chain has {actual}"
    )]
    PathLenExceeded {
        issuer: String,
        max: u8,
        actual: usize,
    },
    #[error("the chain is empty")]
    EmptyChain,
    #[error("chain[{index}] is not correctly issued by chain[{next}]: {source}")]
    ChainLink {
        index: usize,
        next: usize,
        source: Box<CtError>,
    },
    #[error(
        "the chain does not lead to a root this log accepts: the last certificate '{subject}' was issued by '{issuer}'{detail}"
    )]
    UnknownRoot {
        subject: String,
        issuer: String,
        detail: String,
    },
}

fn der_err(e: der::Error) -> CtError {
    CtError::Der(e.to_string())
}

// ---------------------------------------------------------------------------------------------
// TLS encoding
// ---------------------------------------------------------------------------------------------

/// Largest body of a `<..2^16-1>` vector.
pub const MAX_U16: usize = 0xffff;
/// Largest body of a `<..2^24-1>` vector.
pub const MAX_U24: usize = 0xff_ffff;

pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// # Panics
/// If `v` ≥ 2^24.
pub fn put_u24(out: &mut Vec<u8>, v: usize) {
    assert!(v <= MAX_U24, "TLS u24 value {v} exceeds 2^24-1");
    out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// `opaque data<0..2^8-1>`.
///
/// # Panics
/// If `data` is longer than 255 bytes.
pub fn put_vec_u8(out: &mut Vec<u8>, data: &[u8]) {
    assert!(
        data.len() <= 0xff,
        "TLS vector of {} bytes exceeds 2^8-1",
        data.len()
    );
    out.push(data.len() as u8);
    out.extend_from_slice(data);
}

/// `opaque data<0..2^16-1>`.
///
/// # Panics
/// If `data` is longer than 65535 bytes.
pub fn put_vec_u16(out: &mut Vec<u8>, data: &[u8]) {
    assert!(
        data.len() <= MAX_U16,
        "TLS vector of {} bytes exceeds 2^16-1",
        data.len()
    );
    put_u16(out, data.len() as u16);
    out.extend_from_slice(data);
}

/// `opaque data<0..2^24-1>`.
///
/// # Panics
/// If `data` is longer than 2^24-1 bytes.
pub fn put_vec_u24(out: &mut Vec<u8>, data: &[u8]) {
    put_u24(out, data.len());
    out.extend_from_slice(data);
}

/// A cursor over TLS-encoded bytes. Every read names what it reads so errors are readable.
#[derive(Debug, Clone)]
pub struct TlsReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> TlsReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CtError> {
        let available = self.remaining();
        if n > available {
            return Err(CtError::Truncated {
                what,
                needed: n,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CtError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, what)?);
        Ok(a)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, CtError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, CtError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u24(&mut self, what: &'static str) -> Result<usize, CtError> {
        let [a, b, c] = self.array(what)?;
        Ok(u32::from_be_bytes([0, a, b, c]) as usize)
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, CtError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// `opaque<0..2^8-1>`.
    pub fn vec_u8(&mut self, what: &'static str) -> Result<&'a [u8], CtError> {
        let n = self.u8(what)? as usize;
        self.bytes(n, what)
    }

    /// `opaque<0..2^16-1>`.
    pub fn vec_u16(&mut self, what: &'static str) -> Result<&'a [u8], CtError> {
        let n = self.u16(what)? as usize;
        self.bytes(n, what)
    }

    /// `opaque<0..2^24-1>`.
    pub fn vec_u24(&mut self, what: &'static str) -> Result<&'a [u8], CtError> {
        let n = self.u24(what)?;
        self.bytes(n, what)
    }

    /// `opaque<1..2^24-1>`: as [`Self::vec_u24`] but an empty body is an error.
    pub fn nonempty_vec_u24(&mut self, what: &'static str) -> Result<&'a [u8], CtError> {
        let v = self.vec_u24(what)?;
        if v.is_empty() {
            return Err(CtError::Empty(what));
        }
        Ok(v)
    }

    /// Ends decoding: anything left over is an error.
    pub fn finish(self, what: &'static str) -> Result<(), CtError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(CtError::TrailingBytes { what, count }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Log entries
// ---------------------------------------------------------------------------------------------

/// `LogEntryType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum LogEntryType {
    X509 = 0,
    Precert = 1,
}

impl TryFrom<u16> for LogEntryType {
    type Error = CtError;
    fn try_from(v: u16) -> Result<Self, CtError> {
        match v {
            0 => Ok(Self::X509),
            1 => Ok(Self::Precert),
            _ => Err(CtError::UnsupportedValue {
                what: "log entry type",
                value: v.into(),
                expected: "0 (x509_entry) or 1 (precert_entry)",
            }),
        }
    }
}

/// The `signed_entry` of a `TimestampedEntry` / SCT input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignedEntry {
    /// The DER of a final certificate.
    X509(Vec<u8>),
    /// A precertificate: SHA-256 of the issuer's SPKI and the TBS without the poison.
    Precert {
        issuer_key_hash: [u8; 32],
        tbs: Vec<u8>,
    },
}

impl SignedEntry {
    pub fn entry_type(&self) -> LogEntryType {
        match self {
            Self::X509(_) => LogEntryType::X509,
            Self::Precert { .. } => LogEntryType::Precert,
        }
    }

    /// `u16 entry_type ‖ signed_entry`.
    ///
    /// # Panics
    /// If the certificate or TBS is 2^24 bytes or longer.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_u16(out, self.entry_type() as u16);
        match self {
            Self::X509(der) => put_vec_u24(out, der),
            Self::Precert {
                issuer_key_hash,
                tbs,
            } => {
                out.extend_from_slice(issuer_key_hash);
                put_vec_u24(out, tbs);
            }
        }
    }

    /// Reads `u16 entry_type ‖ signed_entry`.
    pub fn decode_from(r: &mut TlsReader<'_>) -> Result<Self, CtError> {
        match LogEntryType::try_from(r.u16("entry type")?)? {
            LogEntryType::X509 => Ok(Self::X509(r.nonempty_vec_u24("x509 certificate")?.to_vec())),
            LogEntryType::Precert => {
                let issuer_key_hash = r.array("precert issuer_key_hash")?;
                let tbs = r.nonempty_vec_u24("precert TBSCertificate")?.to_vec();
                Ok(Self::Precert {
                    issuer_key_hash,
                    tbs,
                })
            }
        }
    }
}

/// `MerkleTreeLeaf` (v1, `timestamped_entry`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MerkleTreeLeaf {
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    pub entry: SignedEntry,
    /// `CtExtensions` (opaque, usually empty).
    pub extensions: Vec<u8>,
}

impl MerkleTreeLeaf {
    /// TLS encoding: `u8 0 ‖ u8 0 ‖ u64 timestamp ‖ u16 entry_type ‖ signed_entry ‖ extensions<u16>`.
    ///
    /// # Panics
    /// If a field exceeds its TLS length limit (entry ≥ 2^24, extensions ≥ 2^16 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        put_u8(&mut out, 0); // version v1
        put_u8(&mut out, 0); // leaf_type timestamped_entry
        put_u64(&mut out, self.timestamp);
        self.entry.encode_into(&mut out);
        put_vec_u16(&mut out, &self.extensions);
        out
    }

    fn encoded_len_hint(&self) -> usize {
        let body = match &self.entry {
            SignedEntry::X509(d) => d.len() + 3,
            SignedEntry::Precert { tbs, .. } => tbs.len() + 35,
        };
        12 + body + 2 + self.extensions.len()
    }

    /// Strict decoding: wrong version or leaf type, truncation and trailing bytes are errors.
    pub fn decode(data: &[u8]) -> Result<Self, CtError> {
        let mut r = TlsReader::new(data);
        let version = r.u8("MerkleTreeLeaf version")?;
        if version != 0 {
            return Err(CtError::UnsupportedValue {
                what: "MerkleTreeLeaf version",
                value: version.into(),
                expected: "0 (v1)",
            });
        }
        let leaf_type = r.u8("MerkleTreeLeaf leaf type")?;
        if leaf_type != 0 {
            return Err(CtError::UnsupportedValue {
                what: "MerkleTreeLeaf leaf type",
                value: leaf_type.into(),
                expected: "0 (timestamped_entry)",
            });
        }
        let timestamp = r.u64("MerkleTreeLeaf timestamp")?;
        let entry = SignedEntry::decode_from(&mut r)?;
        let extensions = r.vec_u16("MerkleTreeLeaf extensions")?.to_vec();
        r.finish("MerkleTreeLeaf")?;
        Ok(Self {
            timestamp,
            entry,
            extensions,
        })
    }

    /// RFC 6962 leaf hash: SHA-256(0x00 ‖ encoding).
    pub fn leaf_hash(&self) -> [u8; 32] {
        crate::merkle::leaf_hash(&self.encode())
    }
}

/// The data an SCT signs (RFC 6962 §3.2):
/// `u8 0 ‖ u8 0 (certificate_timestamp) ‖ u64 timestamp ‖ u16 entry_type ‖ signed_entry ‖ extensions<u16>`.
///
/// # Panics
/// If the entry is 2^24 bytes or longer or the extensions 2^16 bytes or longer.
pub fn sct_signed_data(timestamp: u64, entry: &SignedEntry, extensions: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u8(&mut out, 0); // sct_version v1
    put_u8(&mut out, 0); // signature_type certificate_timestamp
    put_u64(&mut out, timestamp);
    entry.encode_into(&mut out);
    put_vec_u16(&mut out, extensions);
    out
}

/// The data an STH signs (RFC 6962 §3.5):
/// `u8 0 ‖ u8 1 (tree_hash) ‖ u64 timestamp ‖ u64 tree_size ‖ root[32]`.
pub fn sth_signed_data(timestamp: u64, tree_size: u64, root: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(50);
    put_u8(&mut out, 0); // version v1
    put_u8(&mut out, 1); // signature_type tree_hash
    put_u64(&mut out, timestamp);
    put_u64(&mut out, tree_size);
    out.extend_from_slice(root);
    out
}

/// The log ID: SHA-256 of the log's DER SubjectPublicKeyInfo.
pub fn log_id(spki_der: &[u8]) -> [u8; 32] {
    Sha256::digest(spki_der).into()
}

// ---------------------------------------------------------------------------------------------
// Signatures and SCTs
// ---------------------------------------------------------------------------------------------

/// TLS `DigitallySigned`: `u8 hash ‖ u8 signature ‖ signature<u16>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DigitallySigned {
    /// 4 = SHA-256.
    pub hash_alg: u8,
    /// 3 = ECDSA, 1 = RSA.
    pub sig_alg: u8,
    /// For ECDSA, the DER `Ecdsa-Sig-Value`.
    pub signature: Vec<u8>,
}

impl DigitallySigned {
    /// SHA-256 with ECDSA: what our logs produce.
    pub fn ecdsa_sha256(signature: Vec<u8>) -> Self {
        Self {
            hash_alg: HASH_SHA256,
            sig_alg: SIG_ECDSA,
            signature,
        }
    }

    /// # Panics
    /// If the signature is 2^16 bytes or longer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.signature.len());
        self.encode_into(&mut out);
        out
    }

    /// # Panics
    /// If the signature is 2^16 bytes or longer.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_u8(out, self.hash_alg);
        put_u8(out, self.sig_alg);
        put_vec_u16(out, &self.signature);
    }

    pub fn decode_from(r: &mut TlsReader<'_>) -> Result<Self, CtError> {
        let hash_alg = r.u8("DigitallySigned hash algorithm")?;
        let sig_alg = r.u8("DigitallySigned signature algorithm")?;
        let signature = r.vec_u16("DigitallySigned signature")?.to_vec();
        Ok(Self {
            hash_alg,
            sig_alg,
            signature,
        })
    }

    /// Strict decoding (no trailing bytes).
    pub fn decode(data: &[u8]) -> Result<Self, CtError> {
        let mut r = TlsReader::new(data);
        let d = Self::decode_from(&mut r)?;
        r.finish("DigitallySigned")?;
        Ok(d)
    }
}

/// A v1 `SignedCertificateTimestamp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sct {
    /// Always 0 (v1).
    pub version: u8,
    pub log_id: [u8; 32],
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    pub extensions: Vec<u8>,
    pub signature: DigitallySigned,
}

impl Sct {
    /// `u8 version ‖ log_id[32] ‖ u64 timestamp ‖ extensions<u16> ‖ DigitallySigned`.
    ///
    /// # Panics
    /// If the extensions or signature are 2^16 bytes or longer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(47 + self.extensions.len() + self.signature.signature.len());
        put_u8(&mut out, self.version);
        out.extend_from_slice(&self.log_id);
        put_u64(&mut out, self.timestamp);
        put_vec_u16(&mut out, &self.extensions);
        self.signature.encode_into(&mut out);
        out
    }

    /// Strict decoding of one SCT; only version 0 (v1) is accepted.
    pub fn decode(data: &[u8]) -> Result<Self, CtError> {
        let mut r = TlsReader::new(data);
        let version = r.u8("SCT version")?;
        if version != 0 {
            return Err(CtError::UnsupportedValue {
                what: "SCT version",
                value: version.into(),
                expected: "0 (v1)",
            });
        }
        let log_id = r.array("SCT log ID")?;
        let timestamp = r.u64("SCT timestamp")?;
        let extensions = r.vec_u16("SCT extensions")?.to_vec();
        let signature = DigitallySigned::decode_from(&mut r)?;
        r.finish("SCT")?;
        Ok(Self {
            version,
            log_id,
            timestamp,
            extensions,
            signature,
        })
    }

    /// What this SCT's signature covers, for `entry`.
    pub fn signed_data(&self, entry: &SignedEntry) -> Vec<u8> {
        sct_signed_data(self.timestamp, entry, &self.extensions)
    }
}

/// `SignedCertificateTimestampList`: `u16 total ‖ (u16 len ‖ SCT)*`.
///
/// # Panics
/// If the encoded list exceeds 65535 bytes.
pub fn sct_list_encode(scts: &[Sct]) -> Vec<u8> {
    let mut body = Vec::new();
    for s in scts {
        put_vec_u16(&mut body, &s.encode());
    }
    let mut out = Vec::with_capacity(2 + body.len());
    put_vec_u16(&mut out, &body);
    out
}

/// Strict decoding of a `SignedCertificateTimestampList` (at least one SCT, none empty).
pub fn sct_list_decode(data: &[u8]) -> Result<Vec<Sct>, CtError> {
    let mut outer = TlsReader::new(data);
    let body = outer.vec_u16("SCT list")?;
    outer.finish("SCT list")?;
    if body.is_empty() {
        return Err(CtError::Empty("SCT list"));
    }
    let mut r = TlsReader::new(body);
    let mut out = Vec::new();
    while !r.is_empty() {
        let one = r.vec_u16("serialized SCT")?;
        if one.is_empty() {
            return Err(CtError::Empty("serialized SCT"));
        }
        out.push(Sct::decode(one)?);
    }
    Ok(out)
}

/// The JSON answer of add-chain / add-pre-chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddChainResponse {
    pub sct_version: u8,
    /// Base64 log ID.
    pub id: String,
    pub timestamp: u64,
    /// Base64 `CtExtensions` ("" when empty; a missing field reads as "").
    #[serde(default)]
    pub extensions: String,
    /// Base64 TLS `DigitallySigned`.
    pub signature: String,
}

impl From<&Sct> for AddChainResponse {
    fn from(s: &Sct) -> Self {
        Self {
            sct_version: s.version,
            id: B64.encode(s.log_id),
            timestamp: s.timestamp,
            extensions: B64.encode(&s.extensions),
            signature: B64.encode(s.signature.encode()),
        }
    }
}

impl From<Sct> for AddChainResponse {
    fn from(s: Sct) -> Self {
        Self::from(&s)
    }
}

impl TryFrom<&AddChainResponse> for Sct {
    type Error = CtError;
    fn try_from(a: &AddChainResponse) -> Result<Self, CtError> {
        if a.sct_version != 0 {
            return Err(CtError::UnsupportedValue {
                what: "sct_version",
                value: a.sct_version.into(),
                expected: "0 (v1)",
            });
        }
        let b64 = |what: &'static str, s: &str| {
            B64.decode(s).map_err(|e| CtError::Invalid {
                what,
                reason: format!("not base64: {e}"),
            })
        };
        let id = b64("SCT id", &a.id)?;
        let log_id: [u8; 32] = id.as_slice().try_into().map_err(|_| CtError::Invalid {
            what: "SCT id",
            reason: format!("{} bytes, a log ID has 32", id.len()),
        })?;
        let extensions = b64("SCT extensions", &a.extensions)?;
        if extensions.len() > MAX_U16 {
            return Err(CtError::Invalid {
                what: "SCT extensions",
                reason: format!("{} bytes, at most {MAX_U16} fit", extensions.len()),
            });
        }
        let signature = DigitallySigned::decode(&b64("SCT signature", &a.signature)?)?;
        Ok(Self {
            version: 0,
            log_id,
            timestamp: a.timestamp,
            extensions,
            signature,
        })
    }
}

impl TryFrom<AddChainResponse> for Sct {
    type Error = CtError;
    fn try_from(a: AddChainResponse) -> Result<Self, CtError> {
        Self::try_from(&a)
    }
}

// ---------------------------------------------------------------------------------------------
// extra_data
// ---------------------------------------------------------------------------------------------

fn encode_chain(out: &mut Vec<u8>, chain: &[impl AsRef<[u8]>]) {
    let mut body = Vec::new();
    for c in chain {
        put_vec_u24(&mut body, c.as_ref());
    }
    put_vec_u24(out, &body);
}

fn decode_chain(r: &mut TlsReader<'_>) -> Result<Vec<Vec<u8>>, CtError> {
    let body = r.vec_u24("certificate chain")?;
    let mut cr = TlsReader::new(body);
    let mut out = Vec::new();
    while !cr.is_empty() {
        out.push(cr.nonempty_vec_u24("chain certificate")?.to_vec());
    }
    Ok(out)
}

/// `extra_data` of an x509 entry: `chain<u24>` of `u24 ‖ DER`, the chain without the leaf.
///
/// # Panics
/// If a certificate or the whole chain is 2^24 bytes or longer.
pub fn encode_x509_extra_data(chain: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_chain(&mut out, chain);
    out
}

/// Strict inverse of [`encode_x509_extra_data`].
pub fn decode_x509_extra_data(data: &[u8]) -> Result<Vec<Vec<u8>>, CtError> {
    let mut r = TlsReader::new(data);
    let chain = decode_chain(&mut r)?;
    r.finish("x509 extra_data")?;
    Ok(chain)
}

/// The decoded `extra_data` of a precert entry (`PrecertChainEntry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrecertExtraData {
    /// DER of the submitted precertificate (with its poison).
    pub pre_certificate: Vec<u8>,
    /// The chain after the precertificate.
    pub chain: Vec<Vec<u8>>,
}

/// `extra_data` of a precert entry: `u24 ‖ precert DER ‖ chain<u24>`.
///
/// # Panics
/// If a certificate or the whole chain is 2^24 bytes or longer.
pub fn encode_precert_extra_data(precert: &[u8], chain: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut out = Vec::new();
    put_vec_u24(&mut out, precert);
    encode_chain(&mut out, chain);
    out
}

/// Strict inverse of [`encode_precert_extra_data`].
pub fn decode_precert_extra_data(data: &[u8]) -> Result<PrecertExtraData, CtError> {
    let mut r = TlsReader::new(data);
    let pre_certificate = r.nonempty_vec_u24("pre_certificate")?.to_vec();
    let chain = decode_chain(&mut r)?;
    r.finish("precert extra_data")?;
    Ok(PrecertExtraData {
        pre_certificate,
        chain,
    })
}

// ---------------------------------------------------------------------------------------------
// Precertificates
// ---------------------------------------------------------------------------------------------

fn extensions(cert: &Certificate) -> &[x509_cert::ext::Extension] {
    cert.tbs_certificate.extensions.as_deref().unwrap_or(&[])
}

fn find_single<'c>(
    cert: &'c Certificate,
    oid: &ObjectIdentifier,
    name: &'static str,
) -> Result<Option<&'c x509_cert::ext::Extension>, CtError> {
    let mut found = extensions(cert).iter().filter(|e| &e.extn_id == oid);
    let first = found.next();
    let more = found.count();
    if more > 0 {
        return Err(CtError::DuplicateExtension {
            name,
            count: more + 1,
        });
    }
    Ok(first)
}

/// True if the certificate carries the poison extension, whatever its form.
pub fn has_poison_extension(cert: &Certificate) -> bool {
    extensions(cert).iter().any(|e| e.extn_id == POISON)
}

/// Whether `cert` is a precertificate. A poison extension that is not critical, whose value is
/// not ASN.1 NULL, or that appears twice is an error.
pub fn is_precert(cert: &Certificate) -> Result<bool, CtError> {
    match find_single(cert, &POISON, "CT poison")? {
        None => Ok(false),
        Some(e) if !e.critical => Err(CtError::PoisonNotCritical),
        Some(e) if e.extn_value.as_bytes() != POISON_VALUE => Err(CtError::BadPoisonValue),
        Some(_) => Ok(true),
    }
}

/// The TBSCertificate a precertificate's SCT covers: the precert's TBS with the poison extension
/// removed (RFC 6962 §3.2). All other bytes are kept; enclosing lengths are re-encoded; when no
/// extension is left the `[3]` field is dropped.
pub fn precert_tbs(precert: &Certificate) -> Result<Vec<u8>, CtError> {
    if !is_precert(precert)? {
        return Err(CtError::NotPrecert);
    }
    let tbs = precert.tbs_certificate.to_der().map_err(der_err)?;
    tbs_remove_extension(&tbs, &POISON)?.ok_or(CtError::NotPrecert)
}

/// The TBSCertificate that embedded SCTs of a final certificate cover: its TBS with the SCT-list
/// extension removed (what a verifier rebuilds, RFC 6962 §3.2).
pub fn final_cert_tbs_for_sct(cert: &Certificate) -> Result<Vec<u8>, CtError> {
    if has_poison_extension(cert) {
        return Err(CtError::UnexpectedPoison);
    }
    find_single(cert, &SCT_LIST, "embedded SCT list")?.ok_or(CtError::NoSctList)?;
    let tbs = cert.tbs_certificate.to_der().map_err(der_err)?;
    tbs_remove_extension(&tbs, &SCT_LIST)?.ok_or(CtError::NoSctList)
}

/// SHA-256 of the issuer's DER SubjectPublicKeyInfo (`issuer_key_hash` of precert entries).
pub fn issuer_key_hash(issuer: &Certificate) -> [u8; 32] {
    spki_sha256(&issuer.tbs_certificate.subject_public_key_info)
}

fn spki_sha256(spki: &SubjectPublicKeyInfoOwned) -> [u8; 32] {
    // Re-encoding a decoded SPKI cannot fail (its length already fit in a certificate).
    Sha256::digest(spki.to_der().unwrap_or_default()).into()
}

/// The SCTs embedded in a certificate's SCT-list extension; empty if it has none. The
/// extension's value is a DER OCTET STRING wrapping the TLS list (double-wrapped).
pub fn embedded_scts(cert: &Certificate) -> Result<Vec<Sct>, CtError> {
    let Some(ext) = find_single(cert, &SCT_LIST, "embedded SCT list")? else {
        return Ok(Vec::new());
    };
    let inner = OctetString::from_der(ext.extn_value.as_bytes()).map_err(|e| CtError::Invalid {
        what: "embedded SCT list extension",
        reason: format!("its value is not a DER OCTET STRING: {e}"),
    })?;
    sct_list_decode(inner.as_bytes())
}

/// Builds the SCT-list extension value (DER OCTET STRING around the TLS list) for `scts`.
pub fn sct_list_extension_value(scts: &[Sct]) -> Result<Vec<u8>, CtError> {
    OctetString::new(sct_list_encode(scts))
        .and_then(|o| o.to_der())
        .map_err(der_err)
}

/// One DER element inside a buffer: its tag and the byte ranges of header and content.
struct Tlv {
    tag: u8,
    start: usize,
    content: usize,
    end: usize,
}

fn read_tlv(buf: &[u8], start: usize, what: &'static str) -> Result<Tlv, CtError> {
    let bad = |reason: &str| CtError::Invalid {
        what,
        reason: reason.to_string(),
    };
    let tag = *buf.get(start).ok_or_else(|| bad("missing element"))?;
    if tag & 0x1f == 0x1f {
        return Err(bad("high-tag-number form is not used in a TBSCertificate"));
    }
    let first = *buf.get(start + 1).ok_or_else(|| bad("missing length"))?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(bad("unsupported length encoding"));
        }
        let bytes = buf
            .get(start + 2..start + 2 + n)
            .ok_or_else(|| bad("truncated length"))?;
        let len = bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        if len < 0x80 || bytes[0] == 0 {
            return Err(bad("non-minimal length (not DER)"));
        }
        (len, 2 + n)
    };
    let content = start + hdr;
    let end = content
        .checked_add(len)
        .filter(|e| *e <= buf.len())
        .ok_or_else(|| bad("element runs past the end of its container"))?;
    Ok(Tlv {
        tag,
        start,
        content,
        end,
    })
}

fn children(buf: &[u8], range: (usize, usize), what: &'static str) -> Result<Vec<Tlv>, CtError> {
    let mut out = Vec::new();
    let mut pos = range.0;
    while pos < range.1 {
        let t = read_tlv(&buf[..range.1], pos, what)?;
        pos = t.end;
        out.push(t);
    }
    Ok(out)
}

/// Removes the extension `oid` from a DER TBSCertificate, keeping every other byte as it is
/// (lengths around it are re-encoded; an extension list left empty drops the `[3]` field).
/// `Ok(None)` if the extension is absent; an error if it is present more than once.
pub fn tbs_remove_extension(
    tbs_der: &[u8],
    oid: &ObjectIdentifier,
) -> Result<Option<Vec<u8>>, CtError> {
    const WHAT: &str = "TBSCertificate";
    let outer = read_tlv(tbs_der, 0, WHAT)?;
    if outer.tag != 0x30 {
        return Err(CtError::Invalid {
            what: WHAT,
            reason: "not a SEQUENCE".into(),
        });
    }
    if outer.end != tbs_der.len() {
        return Err(CtError::TrailingBytes {
            what: WHAT,
            count: tbs_der.len() - outer.end,
        });
    }
    let fields = children(tbs_der, (outer.content, outer.end), WHAT)?;
    let Some(ext_field) = fields.iter().find(|f| f.tag == 0xa3) else {
        return Ok(None);
    };
    let exts_seq = read_tlv(tbs_der, ext_field.content, "extensions")?;
    if exts_seq.tag != 0x30 || exts_seq.end != ext_field.end {
        return Err(CtError::Invalid {
            what: "extensions",
            reason: "[3] does not hold exactly one SEQUENCE".into(),
        });
    }
    let exts = children(tbs_der, (exts_seq.content, exts_seq.end), "extension")?;
    let mut kept = Vec::with_capacity(exts_seq.end - exts_seq.content);
    let mut removed = 0usize;
    for e in &exts {
        if e.tag != 0x30 {
            return Err(CtError::Invalid {
                what: "extension",
                reason: "not a SEQUENCE".into(),
            });
        }
        let id = read_tlv(tbs_der, e.content, "extension")?;
        if id.tag != 0x06 || id.end > e.end {
            return Err(CtError::Invalid {
                what: "extension",
                reason: "does not start with an OBJECT IDENTIFIER".into(),
            });
        }
        if &tbs_der[id.content..id.end] == oid.as_bytes() {
            removed += 1;
        } else {
            kept.extend_from_slice(&tbs_der[e.start..e.end]);
        }
    }
    match removed {
        0 => return Ok(None),
        1 => {}
        count => {
            return Err(CtError::DuplicateExtension {
                name: "removed",
                count,
            });
        }
    }
    let mut body = Vec::with_capacity(outer.end - outer.content);
    body.extend_from_slice(&tbs_der[outer.content..ext_field.start]);
    if !kept.is_empty() {
        body.extend_from_slice(&tlv(0xa3, &tlv(0x30, &kept)));
    }
    body.extend_from_slice(&tbs_der[ext_field.end..outer.end]);
    Ok(Some(tlv(0x30, &body)))
}

// ---------------------------------------------------------------------------------------------
// Chain verification
// ---------------------------------------------------------------------------------------------

fn subject_of(c: &Certificate) -> String {
    name_str(&c.tbs_certificate.subject)
}

fn name_str(n: &x509_cert::name::Name) -> String {
    let s = n.to_string();
    if s.is_empty() {
        "<empty name>".into()
    } else {
        s
    }
}

fn oid_name(oid: &ObjectIdentifier) -> String {
    match const_oid::db::DB.by_oid(oid) {
        Some(name) => format!("{name} ({oid})"),
        None => oid.to_string(),
    }
}

/// What the issuer of a link is trusted as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IssuerRole {
    /// A submitted intermediate: must be a CA (BasicConstraints CA:TRUE).
    Intermediate,
    /// A configured root: a v1/v2 root without extensions is accepted.
    Anchor,
}

fn basic_constraints(c: &Certificate) -> Result<Option<BasicConstraints>, CtError> {
    find_single(c, &OID_BASIC_CONSTRAINTS, "BasicConstraints")?
        .map(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).map_err(der_err))
        .transpose()
}

/// Checks that `issuer` may issue `child` given `below` intermediate CAs between them and the
/// leaf, and that `child`'s signature verifies with `issuer`'s key.
fn check_link(
    child: &Certificate,
    issuer: &Certificate,
    role: IssuerRole,
    below: usize,
) -> Result<(), CtError> {
    let child_issuer = child.tbs_certificate.issuer.to_der().map_err(der_err)?;
    let issuer_subject = issuer.tbs_certificate.subject.to_der().map_err(der_err)?;
    if child_issuer != issuer_subject {
        return Err(CtError::IssuerMismatch {
            subject: subject_of(child),
            expected: name_str(&child.tbs_certificate.issuer),
            actual: subject_of(issuer),
        });
    }
    match basic_constraints(issuer)? {
        Some(bc) if bc.ca => {
            if let Some(max) = bc.path_len_constraint {
                if below > max as usize {
                    return Err(CtError::PathLenExceeded {
                        issuer: subject_of(issuer),
                        max,
                        actual: below,
                    });
                }
            }
        }
        None if role == IssuerRole::Anchor && issuer.tbs_certificate.extensions.is_none() => {}
        _ => return Err(CtError::NotCa(subject_of(issuer))),
    }
    verify_signature_memo(child, issuer)
}

/// [`verify_signature`], remembering links that verified. Every submission to a CT log carries
/// the same intermediate → root link, and checking its P-384 signature in software dominated the
/// cost of a submission. A signature check is a pure function of the child's bytes and the
/// issuer's key, so a positive result can be reused; failures are never cached.
fn verify_signature_memo(child: &Certificate, issuer: &Certificate) -> Result<(), CtError> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static VERIFIED: OnceLock<Mutex<HashSet<[u8; 32]>>> = OnceLock::new();
    const MAX_REMEMBERED: usize = 4096;
    let mut h = Sha256::new();
    h.update(child.to_der().map_err(der_err)?);
    h.update(
        issuer
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(der_err)?,
    );
    let key: [u8; 32] = h.finalize().into();
    let set = VERIFIED.get_or_init(|| Mutex::new(HashSet::new()));
    if set.lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
        return Ok(());
    }
    verify_signature(child, issuer)?;
    let mut s = set.lock().unwrap_or_else(|p| p.into_inner());
    if s.len() >= MAX_REMEMBERED {
        s.clear();
    }
    s.insert(key);
    Ok(())
}

/// Checks that `issuer` issued `child`: `child`'s issuer name equals `issuer`'s subject, `issuer`
/// is a CA (BasicConstraints CA:TRUE) and `child`'s signature verifies with `issuer`'s public key.
/// Validity periods and the CT poison extension are not looked at.
pub fn verify_issued_by(child: &Certificate, issuer: &Certificate) -> Result<(), CtError> {
    check_link(child, issuer, IssuerRole::Intermediate, 0)
}

/// Verifies a submitted chain (leaf first) as RFC 6962 §3.1 / ct-go's CTFE does: each certificate
/// is issued by the next; the last one either is one of `roots` (same DER) or is issued by one
/// of them (the root may be left out). Returns the index in `roots` of the root used.
/// Validity periods are not checked; the poison extension is ignored.
pub fn verify_chain(chain: &[Certificate], roots: &[Certificate]) -> Result<usize, CtError> {
    let last = chain.last().ok_or(CtError::EmptyChain)?;
    let last_der = last.to_der().map_err(der_err)?;
    let included_root = roots
        .iter()
        .position(|r| r.to_der().is_ok_and(|d| d == last_der));
    let n = chain.len();
    for i in 0..n.saturating_sub(1) {
        let role = if included_root.is_some() && i + 1 == n - 1 {
            IssuerRole::Anchor
        } else {
            IssuerRole::Intermediate
        };
        // Intermediate CAs strictly between chain[i + 1] and the leaf.
        check_link(&chain[i], &chain[i + 1], role, i).map_err(|e| CtError::ChainLink {
            index: i,
            next: i + 1,
            source: Box::new(e),
        })?;
    }
    if let Some(idx) = included_root {
        return Ok(idx);
    }
    let mut near_miss: Option<CtError> = None;
    for (idx, root) in roots.iter().enumerate() {
        match check_link(last, root, IssuerRole::Anchor, n - 1) {
            Ok(()) => return Ok(idx),
            Err(CtError::IssuerMismatch { .. }) => {}
            Err(e) => {
                near_miss.get_or_insert(e);
            }
        }
    }
    Err(CtError::UnknownRoot {
        subject: subject_of(last),
        issuer: name_str(&last.tbs_certificate.issuer),
        detail: match near_miss {
            Some(e) => format!("; a root with that name exists but: {e}"),
            None => format!(", which is not one of this log's {} root(s)", roots.len()),
        },
    })
}

/// Checks `child`'s signature with `issuer`'s key. The issuer key is read without Fulcio's key
/// policy (any RSA size the rsa crate takes, compressed EC points) but only on the curves a
/// chain here may use, P-256 and P-384.
fn verify_signature(child: &Certificate, issuer: &Certificate) -> Result<(), CtError> {
    let outer = &child.signature_algorithm;
    let inner = &child.tbs_certificate.signature;
    if outer.to_der().map_err(der_err)? != inner.to_der().map_err(der_err)? {
        return Err(CtError::SignatureAlgorithmMismatch {
            outer: oid_name(&outer.oid),
            inner: oid_name(&inner.oid),
        });
    }
    let alg = CertSignatureAlgorithm::from_oid(&outer.oid).ok_or_else(|| {
        CtError::UnsupportedSignatureAlgorithm(format!(
            "{} (supported: {})",
            oid_name(&outer.oid),
            CertSignatureAlgorithm::SUPPORTED
        ))
    })?;
    let sig = child.signature.as_bytes().ok_or_else(|| CtError::Invalid {
        what: "certificate signature",
        reason: "BIT STRING has unused bits".into(),
    })?;
    let tbs = child.tbs_certificate.to_der().map_err(der_err)?;
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let key_bytes = spki.subject_public_key.raw_bytes();
    let key = match alg {
        CertSignatureAlgorithm::Ecdsa(_) => {
            if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
                return Err(key_mismatch(alg, spki));
            }
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .ok_or_else(|| {
                    CtError::UnsupportedPublicKey("EC key without a named curve".into())
                })?;
            match curve {
                OID_P256 => PublicKey::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map_err(|_| CtError::UnsupportedPublicKey("invalid P-256 point".into()))?,
                ),
                OID_P384 => PublicKey::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map_err(|_| CtError::UnsupportedPublicKey("invalid P-384 point".into()))?,
                ),
                other => {
                    return Err(CtError::UnsupportedPublicKey(format!(
                        "EC curve {} (supported: P-256, P-384)",
                        oid_name(&other)
                    )));
                }
            }
        }
        CertSignatureAlgorithm::RsaPkcs1v15(_) => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            if spki.algorithm.oid != OID_RSA_ENCRYPTION {
                return Err(key_mismatch(alg, spki));
            }
            PublicKey::Rsa(
                rsa::RsaPublicKey::from_pkcs1_der(key_bytes)
                    .map_err(|e| CtError::UnsupportedPublicKey(format!("RSA key: {e}")))?,
            )
        }
    };
    // Every refusal is the same to a submitter: this issuer did not sign this certificate.
    verify_certificate_signature(&key, alg, &tbs, sig).map_err(|_| CtError::BadSignature {
        subject: subject_of(child),
        issuer: subject_of(issuer),
    })
}

fn key_mismatch(alg: CertSignatureAlgorithm, spki: &SubjectPublicKeyInfoOwned) -> CtError {
    let family = alg.key_family();
    CtError::UnsupportedPublicKey(format!(
        "an {family} signature needs an {family} issuer key, but the issuer's key is {}",
        oid_name(&spki.algorithm.oid)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_leaf() -> MerkleTreeLeaf {
        MerkleTreeLeaf {
            timestamp: 0x0102_0304_0506_0708,
            entry: SignedEntry::Precert {
                issuer_key_hash: [7; 32],
                tbs: vec![0x30, 0x03, 1, 2, 3],
            },
            extensions: vec![9, 9],
        }
    }

    #[test]
    fn u24_and_vectors() {
        let mut out = Vec::new();
        put_u24(&mut out, 0x01_0203);
        put_vec_u16(&mut out, b"ab");
        put_vec_u8(&mut out, b"c");
        put_vec_u24(&mut out, b"");
        assert_eq!(out, [1, 2, 3, 0, 2, b'a', b'b', 1, b'c', 0, 0, 0]);
        let mut r = TlsReader::new(&out);
        assert_eq!(r.u24("x").ok(), Some(0x01_0203));
        assert_eq!(r.vec_u16("x").ok(), Some(&b"ab"[..]));
        assert_eq!(r.vec_u8("x").ok(), Some(&b"c"[..]));
        assert_eq!(r.vec_u24("x").ok(), Some(&b""[..]));
        assert!(r.finish("x").is_ok());
        let mut r = TlsReader::new(&[0, 5, 1]);
        assert_eq!(
            r.vec_u16("thing"),
            Err(CtError::Truncated {
                what: "thing",
                needed: 5,
                available: 1
            })
        );
    }

    #[test]
    fn leaf_layout_and_round_trip() {
        let leaf = sample_leaf();
        let enc = leaf.encode();
        assert_eq!(&enc[..2], &[0, 0]);
        assert_eq!(&enc[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&enc[10..12], &[0, 1]);
        assert_eq!(&enc[12..44], &[7; 32]);
        assert_eq!(&enc[44..47], &[0, 0, 5]);
        assert_eq!(&enc[enc.len() - 4..], &[0, 2, 9, 9]);
        assert_eq!(MerkleTreeLeaf::decode(&enc), Ok(leaf.clone()));
        let mut long = enc.clone();
        long.push(0);
        assert!(matches!(
            MerkleTreeLeaf::decode(&long),
            Err(CtError::TrailingBytes { count: 1, .. })
        ));
        for cut in 0..enc.len() {
            assert!(MerkleTreeLeaf::decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = enc.clone();
        bad[11] = 2;
        assert!(matches!(
            MerkleTreeLeaf::decode(&bad),
            Err(CtError::UnsupportedValue { value: 2, .. })
        ));
        // The SCT input has the same layout (signature_type certificate_timestamp = 0 where the
        // leaf has leaf_type timestamped_entry = 0), so the bytes coincide.
        assert_eq!(
            sct_signed_data(leaf.timestamp, &leaf.entry, &leaf.extensions),
            enc
        );
        assert_eq!(leaf.leaf_hash(), crate::merkle::leaf_hash(&enc));
    }

    #[test]
    fn sth_input_layout() {
        let d = sth_signed_data(1, 2, &[3; 32]);
        assert_eq!(d.len(), 50);
        assert_eq!(&d[..2], &[0, 1]);
        assert_eq!(&d[2..10], &1u64.to_be_bytes());
        assert_eq!(&d[10..18], &2u64.to_be_bytes());
    }

    #[test]
    fn sct_and_list_round_trip() {
        let sct = Sct {
            version: 0,
            log_id: [1; 32],
            timestamp: 42,
            extensions: vec![],
            signature: DigitallySigned::ecdsa_sha256(vec![0x30, 0x00]),
        };
        let enc = sct.encode();
        assert_eq!(Sct::decode(&enc), Ok(sct.clone()));
        let list = sct_list_encode(&[sct.clone(), sct.clone()]);
        assert_eq!(&list[..2], &((2 * (enc.len() + 2)) as u16).to_be_bytes());
        assert_eq!(sct_list_decode(&list), Ok(vec![sct.clone(), sct.clone()]));
        assert_eq!(sct_list_decode(&[0, 0]), Err(CtError::Empty("SCT list")));
        let mut v1 = enc.clone();
        v1[0] = 1;
        assert!(Sct::decode(&v1).is_err());
        let json = AddChainResponse::from(&sct);
        assert_eq!(json.extensions, "");
        let s = serde_json::to_string(&json).expect("serialize");
        assert!(s.starts_with("{\"sct_version\":0,\"id\":"), "{s}");
        let back: AddChainResponse = serde_json::from_str(&s).expect("deserialize");
        assert_eq!(Sct::try_from(&back), Ok(sct));
    }

    #[test]
    fn extra_data_round_trip() {
        let chain = vec![vec![1u8, 2], vec![3u8]];
        let x = encode_x509_extra_data(&chain);
        assert_eq!(x, [0, 0, 9, 0, 0, 2, 1, 2, 0, 0, 1, 3]);
        assert_eq!(decode_x509_extra_data(&x), Ok(chain.clone()));
        let p = encode_precert_extra_data(&[0xaa], &chain);
        assert_eq!(
            decode_precert_extra_data(&p),
            Ok(PrecertExtraData {
                pre_certificate: vec![0xaa],
                chain: chain.clone()
            })
        );
        assert!(decode_x509_extra_data(&x[..x.len() - 1]).is_err());
        let empty: [Vec<u8>; 0] = [];
        assert_eq!(encode_x509_extra_data(&empty), [0, 0, 0]);
    }

    #[test]
    fn tbs_surgery_keeps_bytes() {
        // SEQUENCE { INTEGER 1, [3] { SEQUENCE { ext(2.5.29.19), ext(POISON) } }, INTEGER 2 }
        let bc = [0x30, 0x05, 0x06, 0x03, 0x55, 0x1d, 0x13];
        let mut poison = tlv(0x06, POISON.as_bytes());
        poison.extend_from_slice(&[0x01, 0x01, 0xff, 0x04, 0x02, 0x05, 0x00]);
        let poison = tlv(0x30, &poison);
        let mut exts = bc.to_vec();
        exts.extend_from_slice(&poison);
        let mut body = vec![0x02, 0x01, 0x01];
        body.extend(tlv(0xa3, &tlv(0x30, &exts)));
        body.extend([0x02, 0x01, 0x02]);
        let tbs = tlv(0x30, &body);
        let out = tbs_remove_extension(&tbs, &POISON).expect("well-formed");
        let mut want = vec![0x02, 0x01, 0x01];
        want.extend(tlv(0xa3, &tlv(0x30, &bc)));
        want.extend([0x02, 0x01, 0x02]);
        assert_eq!(out, Some(tlv(0x30, &want)));
        // Removing the last extension drops [3].
        let none =
            tbs_remove_extension(&tlv(0x30, &want), &OID_BASIC_CONSTRAINTS).expect("well-formed");
        assert_eq!(none, Some(tlv(0x30, &[0x02, 0x01, 0x01, 0x02, 0x01, 0x02])));
        assert_eq!(tbs_remove_extension(&tbs, &SCT_LIST), Ok(None));
        // A duplicated extension is refused rather than half-removed.
        let mut twice = vec![0x02, 0x01, 0x01];
        twice.extend(tlv(0xa3, &tlv(0x30, &[poison.clone(), poison].concat())));
        assert!(matches!(
            tbs_remove_extension(&tlv(0x30, &twice), &POISON),
            Err(CtError::DuplicateExtension { count: 2, .. })
        ));
        // Trailing bytes after the TBS are refused.
        let mut long = tbs.clone();
        long.push(0);
        assert!(tbs_remove_extension(&long, &POISON).is_err());
        // Long-form lengths survive.
        let big = tlv(0x30, &[0u8; 300]);
        assert_eq!(&big[..4], &[0x30, 0x82, 0x01, 0x2c]);
        assert!(read_tlv(&big, 0, "x").is_ok());
    }
}
