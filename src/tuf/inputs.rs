//! What `sigvault tuf publish` publishes: the trusted root and the signing config that
//! `sigvault trust` writes, checked before anything is signed.
//!
//! Clients fetch them as the targets `trusted_root.json` and `signing_config.v0.2.json`
//! (sigstore-python needs both, sigstore-js the first). A target that a client cannot parse is
//! an outage as real as an expired timestamp, and once it is signed and published it cannot be
//! taken back (clients refuse rollbacks), so the checks follow what the strictest client
//! accepts: sigstore-python parses both with pydantic models that forbid unknown fields, need
//! JSON numbers where the protobuf-specs say integer, zone-qualified times, and accept exactly
//! one media type each (`...trustedroot+json;version=0.1`, `...signingconfig.v0.2+json`). On top,
//! every certificate must be DER X.509 and every log key a DER SubjectPublicKeyInfo, every URL
//! http(s), and there must be a CA, a Rekor log and a CT log to sign and verify with.
//!
//! The files are published byte for byte as given: what the operator reviewed is what clients
//! get.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use der::Decode;
use serde_json::{Map, Value};

/// The target names clients look up: sigstore-python 4.x asks its TUF updater for both
/// (`sigstore/_internal/tuf.py`), sigstore-js for the first (`@sigstore/tuf`'s
/// `TRUSTED_ROOT_TARGET`).
pub const TRUSTED_ROOT_TARGET: &str = "trusted_root.json";
pub const SIGNING_CONFIG_TARGET: &str = "signing_config.v0.2.json";

/// The media types sigstore-python accepts.
pub const TRUSTED_ROOT_MEDIA_TYPE: &str =
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1";
pub const SIGNING_CONFIG_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.signingconfig.v0.2+json";

/// An input refused, naming the file and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct InputError {
    pub file: String,
    pub message: String,
}

/// The two targets, checked: name → bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustTargets {
    pub trusted_root: Vec<u8>,
    pub signing_config: Vec<u8>,
}

impl TrustTargets {
    /// (target name, bytes) pairs, in publication order.
    pub fn named(&self) -> [(&'static str, &[u8]); 2] {
        [
            (TRUSTED_ROOT_TARGET, &self.trusted_root),
            (SIGNING_CONFIG_TARGET, &self.signing_config),
        ]
    }
}

/// Read and check `sigvault trust`'s output in `dir`: `trusted_root.json` and the signing config
/// (`signing_config.json` as `sigvault trust` names it, or `signing_config.v0.2.json`).
pub fn read_trust_dir(dir: &Path) -> Result<TrustTargets, InputError> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| InputError {
            file: p.display().to_string(),
            message: format!(
                "cannot read it ({e}); give the directory `sigvault trust --out` wrote"
            ),
        })
    };
    let trusted_root = read(TRUSTED_ROOT_TARGET)?;
    let (plain, v02) = (
        dir.join("signing_config.json"),
        dir.join(SIGNING_CONFIG_TARGET),
    );
    let sc_name = match (plain.exists(), v02.exists()) {
        (true, true) => {
            return Err(InputError {
                file: dir.display().to_string(),
                message: "holds both signing_config.json and signing_config.v0.2.json: keep the one to publish".into(),
            });
        }
        (false, true) => SIGNING_CONFIG_TARGET,
        _ => "signing_config.json",
    };
    let signing_config = read(sc_name)?;
    let file = |n: &str| dir.join(n).display().to_string();
    check_trusted_root(&trusted_root).map_err(|message| InputError {
        file: file(TRUSTED_ROOT_TARGET),
        message,
    })?;
    check_signing_config(&signing_config).map_err(|message| InputError {
        file: file(sc_name),
        message,
    })?;
    Ok(TrustTargets {
        trusted_root,
        signing_config,
    })
}

/// A field's checker: the value and its path (for messages).
type Check = fn(&Value, &str) -> Result<(), String>;

/// Check an object: every field listed (name, required, checker), nothing else.
fn object(v: &Value, path: &str, fields: &[(&str, bool, Check)]) -> Result<(), String> {
    let Some(map) = v.as_object() else {
        return Err(format!("{path} must be an object"));
    };
    for key in map.keys() {
        if !fields.iter().any(|(n, _, _)| n == key) {
            return Err(format!(
                "{path} has the field {key:?}, which sigstore-python refuses (allowed: {})",
                fields.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for (name, required, check) in fields {
        let sub = format!("{path}.{name}");
        match map.get(*name) {
            None if *required => return Err(format!("{sub} is missing")),
            None => {}
            Some(v) => check(v, &sub)?,
        }
    }
    Ok(())
}

fn array(v: &Value, path: &str, min: usize, each: Check) -> Result<(), String> {
    let Some(items) = v.as_array() else {
        return Err(format!("{path} must be a list"));
    };
    if items.len() < min {
        return Err(format!("{path} must list at least {min}"));
    }
    for (i, item) in items.iter().enumerate() {
        each(item, &format!("{path}[{i}]"))?;
    }
    Ok(())
}

fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    match v.as_str() {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("{path} is empty")),
        None => Err(format!("{path} must be a string")),
    }
}

fn text(v: &Value, path: &str) -> Result<(), String> {
    string(v, path).map(drop)
}

fn url(v: &Value, path: &str) -> Result<(), String> {
    let s = string(v, path)?;
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("{path} {s:?} is not an http(s) URL"))?;
    if rest.is_empty() || rest.starts_with('/') || s.contains(char::is_whitespace) {
        return Err(format!("{path} {s:?} has no host"));
    }
    Ok(())
}

fn bytes(v: &Value, path: &str) -> Result<Vec<u8>, String> {
    let s = string(v, path)?;
    B64.decode(s)
        .map_err(|e| format!("{path} is not standard base64 ({e})"))
}

fn base64(v: &Value, path: &str) -> Result<(), String> {
    bytes(v, path).map(drop)
}

fn certificate(v: &Value, path: &str) -> Result<(), String> {
    let der = bytes(v, path)?;
    x509_cert::Certificate::from_der(&der)
        .map(drop)
        .map_err(|e| format!("{path} is not a DER X.509 certificate ({e})"))
}

fn spki(v: &Value, path: &str) -> Result<(), String> {
    let der = bytes(v, path)?;
    spki::SubjectPublicKeyInfoOwned::from_der(&der)
        .map(drop)
        .map_err(|e| format!("{path} is not a DER SubjectPublicKeyInfo ({e})"))
}

fn time(v: &Value, path: &str) -> Result<(), String> {
    let s = string(v, path)?;
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(drop)
        .map_err(|_| {
            format!("{path} {s:?} is not an RFC 3339 time with a zone (e.g. 2026-01-01T00:00:00Z)")
        })
}

fn one_of(v: &Value, path: &str, allowed: &[&str]) -> Result<(), String> {
    let s = string(v, path)?;
    if allowed.contains(&s) {
        Ok(())
    } else {
        Err(format!("{path} {s:?} is not one of {}", allowed.join(", ")))
    }
}

fn positive_integer(v: &Value, path: &str) -> Result<(), String> {
    match v.as_u64() {
        Some(n) if n >= 1 => Ok(()),
        _ => Err(format!(
            "{path} must be a JSON integer of at least 1 (not a string)"
        )),
    }
}

fn time_range(v: &Value, path: &str) -> Result<(), String> {
    object(v, path, &[("start", true, time), ("end", false, time)])
}

fn hash_algorithm(v: &Value, path: &str) -> Result<(), String> {
    one_of(
        v,
        path,
        &["SHA2_256", "SHA2_384", "SHA2_512", "SHA3_256", "SHA3_384"],
    )
}

fn key_details(v: &Value, path: &str) -> Result<(), String> {
    // The protobuf-specs' PublicKeyDetails that sigstore-python knows.
    one_of(
        v,
        path,
        &[
            "PKIX_ECDSA_P256_SHA_256",
            "PKIX_ECDSA_P384_SHA_384",
            "PKIX_ECDSA_P521_SHA_512",
            "PKIX_ED25519",
            "PKIX_ED25519_PH",
            "PKIX_RSA_PKCS1V15_2048_SHA256",
            "PKIX_RSA_PKCS1V15_3072_SHA256",
            "PKIX_RSA_PKCS1V15_4096_SHA256",
            "PKIX_RSA_PSS_2048_SHA256",
            "PKIX_RSA_PSS_3072_SHA256",
            "PKIX_RSA_PSS_4096_SHA256",
        ],
    )
}

fn public_key(v: &Value, path: &str) -> Result<(), String> {
    object(
        v,
        path,
        &[
            ("rawBytes", true, spki),
            ("keyDetails", true, key_details),
            ("validFor", false, time_range),
        ],
    )
}

fn log_id(v: &Value, path: &str) -> Result<(), String> {
    object(v, path, &[("keyId", true, base64)])
}

fn log(v: &Value, path: &str) -> Result<(), String> {
    object(
        v,
        path,
        &[
            ("baseUrl", true, url),
            ("hashAlgorithm", true, hash_algorithm),
            ("publicKey", true, public_key),
            ("logId", true, log_id),
            ("checkpointKeyId", false, log_id),
            ("operator", false, text),
        ],
    )
}

fn certificate_entry(v: &Value, path: &str) -> Result<(), String> {
    object(v, path, &[("rawBytes", true, certificate)])
}

fn certificates(v: &Value, path: &str) -> Result<(), String> {
    array(v, path, 1, certificate_entry)
}

fn chain(v: &Value, path: &str) -> Result<(), String> {
    object(v, path, &[("certificates", true, certificates)])
}

fn subject(v: &Value, path: &str) -> Result<(), String> {
    object(
        v,
        path,
        &[("organization", true, text), ("commonName", true, text)],
    )
}

fn authority(v: &Value, path: &str) -> Result<(), String> {
    object(
        v,
        path,
        &[
            ("subject", true, subject),
            ("uri", false, url),
            ("certChain", true, chain),
            ("validFor", true, time_range),
            ("operator", false, text),
        ],
    )
}

fn media_type(v: &Value, path: &str, want: &str) -> Result<(), String> {
    let s = string(v, path)?;
    if s == want {
        Ok(())
    } else {
        Err(format!(
            "{path} is {s:?}; sigstore-python accepts only {want:?}"
        ))
    }
}

fn parse(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))
}

/// Check a TrustedRoot (see the module docs for what and why).
pub fn check_trusted_root(bytes: &[u8]) -> Result<(), String> {
    let v = parse(bytes)?;
    fn mt(v: &Value, p: &str) -> Result<(), String> {
        media_type(v, p, TRUSTED_ROOT_MEDIA_TYPE)
    }
    fn logs(v: &Value, p: &str) -> Result<(), String> {
        array(v, p, 1, log)
    }
    fn cas(v: &Value, p: &str) -> Result<(), String> {
        array(v, p, 1, authority)
    }
    fn tsas(v: &Value, p: &str) -> Result<(), String> {
        array(v, p, 0, authority)
    }
    object(
        &v,
        "trusted root",
        &[
            ("mediaType", true, mt),
            ("tlogs", true, logs),
            ("certificateAuthorities", true, cas),
            ("ctlogs", true, logs),
            ("timestampAuthorities", false, tsas),
        ],
    )
}

fn service(v: &Value, path: &str) -> Result<(), String> {
    object(
        v,
        path,
        &[
            ("url", true, url),
            ("majorApiVersion", true, positive_integer),
            ("validFor", false, time_range),
            ("operator", true, text),
        ],
    )
}

fn service_config(v: &Value, path: &str) -> Result<(), String> {
    fn selector(v: &Value, p: &str) -> Result<(), String> {
        one_of(v, p, &["ANY", "ALL", "EXACT"])
    }
    object(
        v,
        path,
        &[
            ("selector", true, selector),
            ("count", false, positive_integer),
        ],
    )?;
    let map: &Map<String, Value> = v.as_object().ok_or("not an object")?;
    if map.get("selector").and_then(Value::as_str) == Some("EXACT") && !map.contains_key("count") {
        return Err(format!("{path}: selector EXACT needs a count"));
    }
    Ok(())
}

/// Check a SigningConfig v0.2 (see the module docs).
pub fn check_signing_config(bytes: &[u8]) -> Result<(), String> {
    let v = parse(bytes)?;
    fn mt(v: &Value, p: &str) -> Result<(), String> {
        media_type(v, p, SIGNING_CONFIG_MEDIA_TYPE)
    }
    fn some(v: &Value, p: &str) -> Result<(), String> {
        array(v, p, 1, service)
    }
    fn any(v: &Value, p: &str) -> Result<(), String> {
        array(v, p, 0, service)
    }
    object(
        &v,
        "signing config",
        &[
            ("mediaType", true, mt),
            ("caUrls", true, some),
            ("oidcUrls", false, any),
            ("rekorTlogUrls", true, some),
            ("rekorTlogConfig", false, service_config),
            ("tsaUrls", false, any),
            ("tsaConfig", false, service_config),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A trusted root and signing config as `sigvault trust` writes them, with real DER.
    fn good() -> (Value, Value) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let der = B64.encode(cert.der());
        let spki = B64.encode(key.public_key_der());
        let log = json!({"baseUrl": "https://rekor.example.org", "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": spki, "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                          "validFor": {"start": "2026-01-01T00:00:00Z"}},
            "logId": {"keyId": "AAAA"}});
        let ca = json!({"subject": {"organization": "o", "commonName": "c"},
            "uri": "https://fulcio.example.org",
            "certChain": {"certificates": [{"rawBytes": der}]},
            "validFor": {"start": "2026-01-01T00:00:00Z"}});
        let root = json!({"mediaType": TRUSTED_ROOT_MEDIA_TYPE, "tlogs": [log.clone()],
            "certificateAuthorities": [ca.clone()], "ctlogs": [log], "timestampAuthorities": [ca]});
        let svc = json!({"url": "https://fulcio.example.org", "majorApiVersion": 1,
            "validFor": {"start": "2026-01-01T00:00:00Z"}, "operator": "example.org"});
        let sc = json!({"mediaType": SIGNING_CONFIG_MEDIA_TYPE, "caUrls": [svc.clone()],
            "oidcUrls": [], "rekorTlogUrls": [svc.clone()], "rekorTlogConfig": {"selector": "ANY"},
            "tsaUrls": [svc], "tsaConfig": {"selector": "ANY"}});
        (root, sc)
    }

    fn root_err(v: &Value) -> String {
        check_trusted_root(&serde_json::to_vec(v).expect("json")).expect_err("refused")
    }

    fn sc_err(v: &Value) -> String {
        check_signing_config(&serde_json::to_vec(v).expect("json")).expect_err("refused")
    }

    #[test]
    fn what_sigvault_trust_writes_passes() {
        let (root, sc) = good();
        check_trusted_root(&serde_json::to_vec(&root).expect("j")).expect("root");
        check_signing_config(&serde_json::to_vec(&sc).expect("j")).expect("sc");
    }

    #[test]
    fn what_sigstore_python_would_refuse_is_refused() {
        let (root, sc) = good();
        let mut r = root.clone();
        r["mediaType"] = json!("application/vnd.dev.sigstore.trustedroot.v0.2+json");
        assert!(root_err(&r).contains("accepts only"));
        let mut r = root.clone();
        r["$comment"] = json!("hello");
        assert!(root_err(&r).contains("\"$comment\""));
        let mut r = root.clone();
        r["ctlogs"] = json!([]);
        assert!(root_err(&r).contains("trusted root.ctlogs must list at least 1"));
        let mut r = root.clone();
        r["tlogs"][0]["publicKey"]["rawBytes"] = json!("bm90IGEga2V5");
        assert!(root_err(&r).contains("tlogs[0].publicKey.rawBytes is not a DER"));
        let mut r = root.clone();
        r["certificateAuthorities"][0]["certChain"]["certificates"][0]["rawBytes"] = json!("!!");
        assert!(root_err(&r).contains("not standard base64"));
        let mut r = root.clone();
        r["certificateAuthorities"][0]["validFor"]["start"] = json!("2026-01-01T00:00:00");
        assert!(root_err(&r).contains("with a zone"));
        let mut r = root.clone();
        r["tlogs"][0]["baseUrl"] = json!("rekor.example.org");
        assert!(root_err(&r).contains("not an http(s) URL"));
        assert!(
            check_trusted_root(b"{not json")
                .expect_err("json")
                .contains("not JSON")
        );

        let mut s = sc.clone();
        s["mediaType"] = json!("application/vnd.dev.sigstore.signingconfig.v0.1+json");
        assert!(sc_err(&s).contains("accepts only"));
        let mut s = sc.clone();
        s["caUrls"][0]["majorApiVersion"] = json!("1");
        assert!(sc_err(&s).contains("not a string"));
        let mut s = sc.clone();
        s["rekorTlogUrls"] = json!([]);
        assert!(sc_err(&s).contains("rekorTlogUrls must list at least 1"));
        let mut s = sc.clone();
        s["tsaUrls"][0]
            .as_object_mut()
            .expect("o")
            .remove("operator");
        assert!(sc_err(&s).contains("tsaUrls[0].operator is missing"));
        let mut s = sc;
        s["tsaConfig"] = json!({"selector": "EXACT"});
        assert!(sc_err(&s).contains("needs a count"));
        // A trusted root is not a signing config, and the reverse.
        assert!(check_signing_config(&serde_json::to_vec(&root).expect("j")).is_err());
    }
}
