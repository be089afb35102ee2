//! Rekor v1 entry kinds: validate a proposed entry and produce the canonical body that is logged,
//! hashed into the entry UUID and returned to clients, plus the search-index keys.
//!
//! Kinds (sigstore/rekor `pkg/types/`, and the bodies sigstore-python and sigstore-js rebuild):
//! * `hashedrekord` 0.0.1 — a signature over an artifact digest, with a PEM key or certificate;
//! * `dsse` 0.0.1 — a DSSE envelope (as a JSON string) and its verifiers;
//! * `intoto` 0.0.2 — a DSSE envelope with double-base64 payload and signatures;
//! * `rekord` 0.0.1 — a signature over the artifact itself (sent whole, logged by its SHA-256),
//!   format `x509` only (a PEM key or certificate).
//!
//! The canonical body is compact JSON with keys in lexical order at every level (what RFC 8785
//! gives for these documents: only strings and small integers). Keys and certificates are
//! re-encoded as canonical PEM (64-column base64, `\n` line ends, trailing newline) from the DER
//! they carry, as upstream does, so clients that rebuild the body field by field agree with it.

use base64::Engine;
use base64::engine::general_purpose::{
    STANDARD as B64, STANDARD_NO_PAD as B64_NO_PAD, URL_SAFE as B64_URL,
    URL_SAFE_NO_PAD as B64_URL_NO_PAD,
};
use der::Decode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::pki::pop::{PopError, PublicKey};
use crate::pki::signature::{self, HashAlg, SignatureError, ecdsa_as_der, verify_digest};

/// Why a proposed entry was refused: always the client's fault (HTTP 400, through
/// [`super::RekorError::Entry`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    /// Malformed, or naming what this log does not take.
    #[error("{0}")]
    Invalid(String),
    /// The entry's signature was refused.
    #[error("verifying signature: {0}")]
    Signature(#[from] SignatureError),
    /// A DSSE envelope signature (its index) that none of the verifiers verifies.
    #[error(
        "envelope signature {0}: no verifier verifies it (all signatures must have a key that verifies them)"
    )]
    EnvelopeSignature(usize),
}

fn err(m: impl Into<String>) -> EntryError {
    EntryError::Invalid(m.into())
}

/// The in-toto statement payload type.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A validated entry, ready to append.
#[derive(Debug, Clone)]
pub struct Canonical {
    pub kind: &'static str,
    pub api_version: &'static str,
    /// The canonical body (what the leaf hash covers).
    pub body: Vec<u8>,
    /// Search-index keys (already lower-cased), without duplicates.
    pub index_keys: Vec<String>,
}

/// The kinds and versions this log takes, for error messages.
const SUPPORTED: &str = "hashedrekord 0.0.1, dsse 0.0.1, intoto 0.0.2, rekord 0.0.1";

/// Validate a proposed entry (`{"kind","apiVersion","spec"}`) and canonicalize it.
pub fn canonicalize(proposed: &Value) -> Result<Canonical, EntryError> {
    let obj = proposed
        .as_object()
        .ok_or_else(|| err("the proposed entry must be a JSON object"))?;
    let kind = str_field(obj, "kind", "")?;
    let version = str_field(obj, "apiVersion", "")?;
    let spec = obj
        .get("spec")
        .and_then(Value::as_object)
        .ok_or_else(|| err("spec: missing or not an object"))?;
    let mut c = match (kind, version) {
        ("hashedrekord", "0.0.1") => hashedrekord(spec)?,
        ("dsse", "0.0.1") => dsse(spec)?,
        ("intoto", "0.0.2") => intoto(spec)?,
        ("rekord", "0.0.1") => rekord(spec)?,
        ("hashedrekord" | "dsse" | "intoto" | "rekord", v) => {
            return Err(err(format!(
                "{kind} apiVersion {v:?} is not supported (supported: {SUPPORTED})"
            )));
        }
        (k, _) => {
            return Err(err(format!(
                "kind {k:?} is not supported (supported: {SUPPORTED})"
            )));
        }
    };
    let mut seen = std::collections::HashSet::new();
    c.index_keys.retain(|k| seen.insert(k.clone()));
    Ok(c)
}

/// The kind and version named by a stored canonical body, if it is one.
pub fn body_kind(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some((
        v.get("kind")?.as_str()?.to_owned(),
        v.get("apiVersion")?.as_str()?.to_owned(),
    ))
}

fn str_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    ctx: &str,
) -> Result<&'a str, EntryError> {
    match obj.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(err(format!("{ctx}{name}: missing")))
        }
        Some(_) => Err(err(format!("{ctx}{name}: must be a string"))),
    }
}

fn obj_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    ctx: &str,
) -> Result<&'a Map<String, Value>, EntryError> {
    match obj.get(name) {
        Some(Value::Object(o)) => Ok(o),
        None | Some(Value::Null) => Err(err(format!("{ctx}{name}: missing"))),
        Some(_) => Err(err(format!("{ctx}{name}: must be an object"))),
    }
}

fn b64_field(obj: &Map<String, Value>, name: &str, ctx: &str) -> Result<Vec<u8>, EntryError> {
    let s = str_field(obj, name, ctx)?;
    B64.decode(s)
        .map_err(|_| err(format!("{ctx}{name}: not standard base64")))
}

/// DSSE implementations accept standard or URL-safe base64, padded or not.
fn dsse_b64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s)
        .or_else(|_| B64_NO_PAD.decode(s))
        .or_else(|_| B64_URL.decode(s))
        .or_else(|_| B64_URL_NO_PAD.decode(s))
        .ok()
}

// --- keys and certificates ------------------------------------------------------------------

/// Decode one PEM block leniently, as Go's `encoding/pem` does: any line length, CRLF or LF,
/// surrounding whitespace. DER, several blocks and trailing data are refused.
fn decode_pem(content: &[u8], what: &str) -> Result<(String, Vec<u8>), EntryError> {
    let not_pem = || {
        err(format!(
            "{what}: invalid public key: failure decoding PEM (DER is not accepted)"
        ))
    };
    let text = std::str::from_utf8(content).map_err(|_| not_pem())?.trim();
    let rest = text.strip_prefix("-----BEGIN ").ok_or_else(not_pem)?;
    let (label, rest) = rest.split_once("-----").ok_or_else(not_pem)?;
    let end = format!("-----END {label}-----");
    let (b64, after) = rest
        .split_once(&end)
        .ok_or_else(|| err(format!("{what}: invalid PEM: no \"{end}\" line")))?;
    if after.contains("-----BEGIN ") {
        return Err(err(format!(
            "{what}: certificate chains are not accepted; send the signing certificate alone"
        )));
    }
    if !after.trim().is_empty() {
        return Err(err(format!("{what}: invalid PEM: data after the END line")));
    }
    if b64.contains(':') {
        return Err(err(format!(
            "{what}: invalid PEM: encrypted or headered blocks are not accepted"
        )));
    }
    let compact: String = b64.split_ascii_whitespace().collect();
    let der = B64
        .decode(compact)
        .map_err(|_| err(format!("{what}: invalid PEM: the body is not base64")))?;
    Ok((label.to_owned(), der))
}

/// A verifier given as PEM: a public key or one certificate.
pub struct Verifier {
    pub key: PublicKey,
    /// The canonical PEM (what goes into bodies and is hashed for the index).
    pub canonical_pem: String,
    /// The certificate, if the verifier was one.
    pub cert: Option<Certificate>,
}

impl Verifier {
    /// Parse PEM content (`PUBLIC KEY` or `CERTIFICATE`); DER, other labels and chains are refused.
    pub fn parse(content: &[u8], what: &str) -> Result<Self, EntryError> {
        let (label, der) = decode_pem(content, what)?;
        let label = label.as_str();
        match label {
            "PUBLIC KEY" => {
                let spki = spki::SubjectPublicKeyInfoOwned::from_der(&der)
                    .map_err(|e| err(format!("{what}: not a SubjectPublicKeyInfo: {e}")))?;
                let key = PublicKey::from_spki(&spki).map_err(|e| pop_err(what, e))?;
                let canonical_pem = crate::pki::spki_pem(&der)
                    .map_err(|e| err(format!("{what}: cannot re-encode: {e}")))?;
                Ok(Self {
                    key,
                    canonical_pem,
                    cert: None,
                })
            }
            "CERTIFICATE" => {
                let cert = Certificate::from_der(&der)
                    .map_err(|e| err(format!("{what}: not an X.509 certificate: {e}")))?;
                let key = PublicKey::from_spki(&cert.tbs_certificate.subject_public_key_info)
                    .map_err(|e| pop_err(what, e))?;
                // The DER exactly as sent, re-wrapped: never re-encoded.
                let canonical_pem =
                    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der)
                        .map_err(|e| err(format!("{what}: cannot re-encode: {e}")))?;
                Ok(Self {
                    key,
                    canonical_pem,
                    cert: Some(cert),
                })
            }
            other => Err(err(format!(
                "{what}: invalid public key: cannot handle PEM type {other:?}"
            ))),
        }
    }

    /// The canonical PEM, base64 (how bodies carry it).
    pub fn canonical_b64(&self) -> String {
        B64.encode(self.canonical_pem.as_bytes())
    }

    /// Lower-case hex SHA-256 of the canonical PEM (the public-key index key).
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_pem.as_bytes()))
    }

    /// Subject alternative names of the certificate (emails, URIs, DNS names, IPs, otherName
    /// UTF-8 values), lower-cased for the index.
    pub fn subjects(&self) -> Vec<String> {
        let Some(cert) = &self.cert else {
            return Vec::new();
        };
        let Ok(Some((_, san))) = cert.tbs_certificate.get::<SubjectAltName>() else {
            return Vec::new();
        };
        san.0
            .iter()
            .filter_map(|n| match n {
                GeneralName::Rfc822Name(s) => Some(s.to_string()),
                GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
                GeneralName::DnsName(s) => Some(s.to_string()),
                GeneralName::IpAddress(o) => ip_string(o.as_bytes()),
                GeneralName::OtherName(o) => o
                    .value
                    .decode_as::<der::asn1::Utf8StringRef<'_>>()
                    .ok()
                    .map(|s| s.as_str().to_owned()),
                _ => None,
            })
            .map(|s| s.to_lowercase())
            .collect()
    }
}

fn ip_string(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => Some(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()),
        16 => {
            let a: [u8; 16] = b.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(a).to_string())
        }
        _ => None,
    }
}

fn pop_err(what: &str, e: PopError) -> EntryError {
    err(format!("{what}: {e}"))
}

/// A rekord or DSSE signature over a whole message, as upstream Rekor checks them: SHA-256
/// whatever the key (pure Ed25519 aside), ECDSA as DER or IEEE P1363.
fn verify_message(key: &PublicKey, message: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
    signature::verify_message(key, HashAlg::Sha256, message, &ecdsa_as_der(key, sig)?)
}

// --- hashedrekord 0.0.1 -----------------------------------------------------------------------

fn hashedrekord(spec: &Map<String, Value>) -> Result<Canonical, EntryError> {
    let sig_obj = obj_field(spec, "signature", "spec.")?;
    let sig = b64_field(sig_obj, "content", "spec.signature.")?;
    let pk = obj_field(sig_obj, "publicKey", "spec.signature.")?;
    let pk_content = b64_field(pk, "content", "spec.signature.publicKey.")?;
    let data = obj_field(spec, "data", "spec.")?;
    let hash = obj_field(data, "hash", "spec.data.")?;
    let alg_name = match hash.get("algorithm") {
        None | Some(Value::Null) => "sha256",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(err("spec.data.hash.algorithm: must be a string")),
    };
    let alg = match alg_name {
        "sha256" => HashAlg::Sha256,
        "sha384" => HashAlg::Sha384,
        "sha512" => HashAlg::Sha512,
        other => {
            return Err(err(format!(
                "spec.data.hash.algorithm: {other:?} is not one of sha256, sha384, sha512"
            )));
        }
    };
    let value = str_field(hash, "value", "spec.data.hash.")?;
    if value.len() != alg.digest_len() * 2 {
        return Err(err(format!(
            "spec.data.hash.value: a {alg_name} digest is {} hex digits, got {}",
            alg.digest_len() * 2,
            value.len()
        )));
    }
    let digest = hex::decode(value).map_err(|_| err("spec.data.hash.value: not hexadecimal"))?;
    if sig.is_empty() {
        return Err(err("spec.signature.content: missing"));
    }
    let verifier = Verifier::parse(&pk_content, "spec.signature.publicKey.content")?;
    ecdsa_as_der(&verifier.key, &sig)
        .and_then(|sig| verify_digest(&verifier.key, alg, &digest, &sig))?;

    let body = json!({
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": alg_name, "value": value}},
            "signature": {
                "content": B64.encode(&sig),
                "publicKey": {"content": verifier.canonical_b64()},
            },
        },
    });
    let mut keys = vec![verifier.fingerprint()];
    keys.extend(verifier.subjects());
    keys.push(format!("{alg_name}:{value}").to_lowercase());
    Ok(Canonical {
        kind: "hashedrekord",
        api_version: "0.0.1",
        body: to_canonical(&body),
        index_keys: keys,
    })
}

// --- rekord 0.0.1 -----------------------------------------------------------------------------

/// The legacy kind: the artifact travels whole (`data.content`) and the signature is over it,
/// with SHA-256 (ECDSA on any curve, RSA PKCS#1 v1.5) or pure Ed25519. What is logged is its
/// SHA-256 (`data.hash`), never the content. A hash alone cannot be verified and is refused, as
/// upstream refuses it; a hash sent beside the content must be the content's.
fn rekord(spec: &Map<String, Value>) -> Result<Canonical, EntryError> {
    let sig_obj = obj_field(spec, "signature", "spec.")?;
    match str_field(sig_obj, "format", "spec.signature.")? {
        "x509" => {}
        f @ ("pgp" | "minisign" | "ssh") => {
            return Err(err(format!(
                "spec.signature.format: {f:?} is not supported by this log (supported: x509)"
            )));
        }
        other => {
            return Err(err(format!(
                "spec.signature.format: {other:?} is not one of pgp, minisign, x509, ssh"
            )));
        }
    }
    let sig = b64_field(sig_obj, "content", "spec.signature.")?;
    let pk = obj_field(sig_obj, "publicKey", "spec.signature.")?;
    let pk_content = b64_field(pk, "content", "spec.signature.publicKey.")?;
    let data = obj_field(spec, "data", "spec.")?;
    let given = match data.get("hash") {
        None | Some(Value::Null) => None,
        Some(Value::Object(h)) => {
            match str_field(h, "algorithm", "spec.data.hash.")? {
                "sha256" => {}
                other => {
                    return Err(err(format!(
                        "spec.data.hash.algorithm: {other:?} is not supported (rekord: sha256)"
                    )));
                }
            }
            let v = str_field(h, "value", "spec.data.hash.")?;
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(
                    "spec.data.hash.value: a sha256 digest is 64 hex digits",
                ));
            }
            Some(v)
        }
        Some(_) => return Err(err("spec.data.hash: must be an object")),
    };
    let content = match data.get("content") {
        None | Some(Value::Null) => {
            return Err(err(
                "spec.data.content: missing (a rekord entry is verified over the artifact itself; to log a signature over a digest, use hashedrekord)",
            ));
        }
        Some(_) => b64_field(data, "content", "spec.data.")?,
    };
    let computed = hex::encode(Sha256::digest(&content));
    if let Some(g) = given {
        if g != computed {
            return Err(err(format!(
                "spec.data.hash.value: SHA mismatch: the content's is {computed}, not {g}"
            )));
        }
    }
    if sig.is_empty() {
        return Err(err("spec.signature.content: missing"));
    }
    let verifier = Verifier::parse(&pk_content, "spec.signature.publicKey.content")?;
    verify_message(&verifier.key, &content, &sig)?;

    let body = json!({
        "apiVersion": "0.0.1",
        "kind": "rekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": computed}},
            "signature": {
                "content": B64.encode(&sig),
                "format": "x509",
                "publicKey": {"content": verifier.canonical_b64()},
            },
        },
    });
    let mut keys = vec![verifier.fingerprint()];
    keys.extend(verifier.subjects());
    keys.push(format!("sha256:{computed}"));
    Ok(Canonical {
        kind: "rekord",
        api_version: "0.0.1",
        body: to_canonical(&body),
        index_keys: keys,
    })
}

// --- dsse 0.0.1 -------------------------------------------------------------------------------

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

struct EnvSig {
    sig_b64: String,
    keyid: String,
}

/// Verify every signature of a DSSE envelope with some verifier; returns, per distinct signature
/// string, the verifier that accepted it.
fn verify_envelope<'v>(
    payload_type: &str,
    payload: &[u8],
    sigs: &[EnvSig],
    verifiers: &'v [Verifier],
) -> Result<Vec<(String, &'v Verifier)>, EntryError> {
    let message = pae(payload_type, payload);
    let mut out: Vec<(String, &Verifier)> = Vec::new();
    for (i, s) in sigs.iter().enumerate() {
        if out.iter().any(|(k, _)| *k == s.sig_b64) {
            continue;
        }
        let raw = dsse_b64(&s.sig_b64)
            .ok_or_else(|| err(format!("envelope signature {i}: not base64")))?;
        let v = verifiers
            .iter()
            .find(|v| verify_message(&v.key, &message, &raw).is_ok())
            .ok_or(EntryError::EnvelopeSignature(i))?;
        out.push((s.sig_b64.clone(), v));
    }
    Ok(out)
}

/// Index keys from an in-toto statement: subject digests and SLSA materials digests.
fn in_toto_keys(payload: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    let mut digests = |list: Option<&Value>| {
        for item in list.and_then(Value::as_array).into_iter().flatten() {
            if let Some(d) = item.get("digest").and_then(Value::as_object) {
                for (alg, val) in d {
                    if let Some(val) = val.as_str() {
                        keys.push(format!("{alg}:{val}").to_lowercase());
                    }
                }
            }
        }
    };
    digests(v.get("subject"));
    digests(v.get("predicate").and_then(|p| p.get("materials")));
    keys
}

fn is_absent(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn dsse(spec: &Map<String, Value>) -> Result<Canonical, EntryError> {
    // sigstore-python sends the output-only fields as explicit nulls: accept those.
    for f in ["signatures", "envelopeHash", "payloadHash"] {
        if !is_absent(spec.get(f)) {
            return Err(err(format!(
                "spec.{f} is computed by the log; send only spec.proposedContent"
            )));
        }
    }
    let pc = obj_field(spec, "proposedContent", "spec.")?;
    let envelope_text = str_field(pc, "envelope", "spec.proposedContent.")?;
    let verifiers_json = match pc.get("verifiers") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            return Err(err(
                "spec.proposedContent.verifiers: at least one is needed",
            ));
        }
        Some(_) => return Err(err("spec.proposedContent.verifiers: must be an array")),
    };
    let mut verifiers = Vec::new();
    for (i, v) in verifiers_json.iter().enumerate() {
        let what = format!("spec.proposedContent.verifiers[{i}]");
        let s = v
            .as_str()
            .ok_or_else(|| err(format!("{what}: must be a base64 string")))?;
        let pem = B64
            .decode(s)
            .map_err(|_| err(format!("{what}: not standard base64")))?;
        verifiers.push(Verifier::parse(&pem, &what)?);
    }
    let env: Value = serde_json::from_str(envelope_text).map_err(|e| {
        err(format!(
            "spec.proposedContent.envelope: not a JSON envelope: {e}"
        ))
    })?;
    let env = env
        .as_object()
        .ok_or_else(|| err("spec.proposedContent.envelope: must be a JSON object"))?;
    let ctx = "envelope.";
    let payload_type = match env.get("payloadType") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(err("envelope.payloadType: missing")),
    };
    let payload_b64 = match env.get("payload") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(err("envelope.payload: missing")),
    };
    let payload = dsse_b64(payload_b64).ok_or_else(|| err(format!("{ctx}payload: not base64")))?;
    let sigs = envelope_signatures(env.get("signatures"))?;
    let accepted = verify_envelope(payload_type, &payload, &sigs, &verifiers)?;

    let mut signatures: Vec<(String, String)> = accepted
        .iter()
        .map(|(s, v)| (s.clone(), v.canonical_b64()))
        .collect();
    signatures.sort();
    let payload_hash = hex::encode(Sha256::digest(&payload));
    let envelope_hash = hex::encode(Sha256::digest(envelope_text.as_bytes()));
    let body = json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": envelope_hash},
            "payloadHash": {"algorithm": "sha256", "value": payload_hash},
            "signatures": signatures
                .iter()
                .map(|(s, v)| json!({"signature": s, "verifier": v}))
                .collect::<Vec<_>>(),
        },
    });
    let mut keys = Vec::new();
    for (_, v) in &accepted {
        keys.push(format!("sha256:{}", v.fingerprint()));
        keys.extend(v.subjects());
    }
    keys.push(format!("sha256:{payload_hash}"));
    keys.push(format!("sha256:{envelope_hash}"));
    if payload_type == IN_TOTO_PAYLOAD_TYPE {
        keys.extend(in_toto_keys(&payload));
    }
    Ok(Canonical {
        kind: "dsse",
        api_version: "0.0.1",
        body: to_canonical(&body),
        index_keys: keys,
    })
}

fn envelope_signatures(v: Option<&Value>) -> Result<Vec<EnvSig>, EntryError> {
    let list = match v {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => {
            return Err(err(
                "envelope.signatures: a DSSE envelope needs 1 or more signatures",
            ));
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let sig = s
                .get("sig")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| err(format!("envelope.signatures[{i}].sig: missing")))?;
            let keyid = s
                .get("keyid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Ok(EnvSig {
                sig_b64: sig.to_owned(),
                keyid,
            })
        })
        .collect()
}

// --- intoto 0.0.2 -----------------------------------------------------------------------------

fn intoto(spec: &Map<String, Value>) -> Result<Canonical, EntryError> {
    let content = obj_field(spec, "content", "spec.")?;
    let env = obj_field(content, "envelope", "spec.content.")?;
    let ctx = "spec.content.envelope.";
    let payload_type = str_field(env, "payloadType", ctx)?;
    // payload and sig are base64 of the DSSE envelope's (base64) strings.
    let payload_inner = b64_field(env, "payload", ctx)?;
    let payload_inner = String::from_utf8(payload_inner)
        .map_err(|_| err("spec.content.envelope.payload: not base64 of a base64 string"))?;
    let payload = dsse_b64(&payload_inner)
        .ok_or_else(|| err("spec.content.envelope.payload: not base64 of a base64 string"))?;
    let sig_list = match env.get("signatures") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => return Err(err("spec.content.envelope.signatures: missing signatures")),
    };
    let mut sigs = Vec::new();
    let mut verifiers = Vec::new();
    for (i, s) in sig_list.iter().enumerate() {
        let sctx = format!("{ctx}signatures[{i}].");
        let s = s
            .as_object()
            .ok_or_else(|| err(format!("{sctx}: must be an object")))?;
        let sig_inner = String::from_utf8(b64_field(s, "sig", &sctx)?)
            .map_err(|_| err(format!("{sctx}sig: not base64 of a base64 string")))?;
        let pem = b64_field(s, "publicKey", &sctx)?;
        verifiers.push(Verifier::parse(&pem, &format!("{sctx}publicKey"))?);
        let keyid = match s.get("keyid") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(k)) => k.clone(),
            Some(_) => return Err(err(format!("{sctx}keyid: must be a string"))),
        };
        sigs.push(EnvSig {
            sig_b64: sig_inner,
            keyid,
        });
    }
    verify_envelope(payload_type, &payload, &sigs, &verifiers)?;
    let hash = obj_field(content, "hash", "spec.content.")?;
    let h_alg = str_field(hash, "algorithm", "spec.content.hash.")?;
    let h_val = str_field(hash, "value", "spec.content.hash.")?;
    if h_alg != "sha256" || h_val.len() != 64 || hex::decode(h_val).is_err() {
        return Err(err(
            "spec.content.hash: must be {\"algorithm\":\"sha256\",\"value\":<64 hex digits>}",
        ));
    }
    let payload_hash = hex::encode(Sha256::digest(&payload));

    // Stored as sent (signatures in order, keys not re-encoded), minus the payload.
    let stored_sigs: Vec<Value> = sigs
        .iter()
        .zip(sig_list)
        .map(|(s, raw)| {
            let mut m = Map::new();
            if !s.keyid.is_empty() {
                m.insert("keyid".into(), Value::String(s.keyid.clone()));
            }
            m.insert(
                "publicKey".into(),
                raw.get("publicKey").cloned().unwrap_or(Value::Null),
            );
            m.insert("sig".into(), Value::String(B64.encode(&s.sig_b64)));
            Value::Object(m)
        })
        .collect();
    let body = json!({
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {
            "content": {
                "envelope": {"payloadType": payload_type, "signatures": stored_sigs},
                "hash": {"algorithm": "sha256", "value": h_val.to_lowercase()},
                "payloadHash": {"algorithm": "sha256", "value": payload_hash},
            },
        },
    });
    let mut keys = Vec::new();
    for v in &verifiers {
        keys.push(format!("sha256:{}", v.fingerprint()));
        keys.extend(v.subjects());
    }
    keys.push(format!("sha256:{payload_hash}"));
    if payload_type == IN_TOTO_PAYLOAD_TYPE {
        keys.extend(in_toto_keys(&payload));
    }
    Ok(Canonical {
        kind: "intoto",
        api_version: "0.0.2",
        body: to_canonical(&body),
        index_keys: keys,
    })
}

/// Compact JSON with object keys in lexical order (serde_json's map is ordered by key): the
/// RFC 8785 form for documents of strings, arrays, objects and integers.
pub fn to_canonical(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value always serializes")
}

/// Check that a stored body is canonical (parsing and re-serializing gives the same bytes).
pub fn is_canonical(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| to_canonical(&v) == body)
}
