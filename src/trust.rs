//! Trust material for Sigstore clients (sigstore/protobuf-specs `TrustedRoot`, `SigningConfig`, `ClientTrustConfig`): the TrustedRoot
//! (`trusted_root.json`), the SigningConfig v0.2 (`signing_config.json`) and the ClientTrustConfig
//! that sigstore-python takes with `--trust-config` (`trust-config.json`), built from the
//! ceremony's public outputs and the services' public URLs.
//!
//! sigstore-python parses these strictly (unknown fields are errors, numbers must be numbers,
//! timestamps need a zone), so only the fields the protobuf-specs define are written.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use der::{Decode, Encode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::ceremony::generations::{Generation, Role, format_time};

/// What the trust files describe.
#[derive(Debug, Clone)]
pub struct TrustInputs {
    /// The ceremony's output dir: `root.pem`, `issuing-ca.pem`, `ctlog.pub.pem`, `rekor.pub.pem`.
    pub ceremony_dir: PathBuf,
    /// Fulcio at the origin root, e.g. `https://fulcio.example.org`.
    pub fulcio_url: String,
    /// Rekor's base URL, e.g. `https://rekor.example.org`. Its host[:port] must contain the
    /// Rekor checkpoint's signer name (sigstore-js checks it).
    pub rekor_url: String,
    /// The CT log's base URL, `http(s)://host:port/<prefix>`.
    pub ctlog_url: String,
    /// The OIDC issuer people sign in with (e.g. Dex), if any.
    pub oidc_url: Option<String>,
    /// The timestamp authority's full endpoint URL, if the installation has one (its
    /// certificate is the ceremony's `tsa.pem`).
    pub tsa_url: Option<String>,
    /// The Rekor v2 log's base URL, if the installation has one (its key is the ceremony's
    /// `rekor-v2.pub.pem`). Its host[:port][/path] is the log's checkpoint origin and name.
    pub rekor_v2_url: Option<String>,
    /// List the Rekor v2 log in the trusted root (bundles made with it verify) but advertise
    /// only Rekor v1 in the signing config (sigstore-python signs with v2 whenever it is listed).
    pub rekor_v2_verify_only: bool,
    /// Operator name in the signing config.
    pub operator: String,
}

/// The three documents.
#[derive(Debug, Clone)]
pub struct TrustFiles {
    pub trusted_root: Value,
    pub signing_config: Value,
    pub client_trust_config: Value,
}

fn read_certs(path: &Path) -> Result<Vec<Certificate>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = Certificate::load_pem_chain(&text)
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

fn read_spki(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (label, der) = der::pem::decode_vec(text.trim().as_bytes())
        .map_err(|e| format!("{}: not PEM: {e}", path.display()))?;
    if label != "PUBLIC KEY" {
        return Err(format!(
            "{}: expected a PUBLIC KEY, got {label}",
            path.display()
        ));
    }
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&der)
        .map_err(|e| format!("{}: not a public key: {e}", path.display()))?;
    if spki.algorithm.oid != const_oid::db::rfc5912::ID_EC_PUBLIC_KEY
        || spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<const_oid::ObjectIdentifier>().ok())
            != Some(const_oid::db::rfc5912::SECP_256_R_1)
    {
        return Err(format!(
            "{}: Sigstore clients need an ECDSA P-256 log key",
            path.display()
        ));
    }
    Ok(der)
}

/// RFC 3339 UTC with a zone, seconds precision.
fn rfc3339(t: &x509_cert::time::Time) -> String {
    let secs = t.to_unix_duration().as_secs() as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

fn name_attr(cert: &Certificate, oid: const_oid::ObjectIdentifier) -> String {
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == oid {
                if let Ok(s) = atv.value.decode_as::<der::asn1::Utf8StringRef<'_>>() {
                    return s.as_str().to_owned();
                }
                if let Ok(s) = atv.value.decode_as::<der::asn1::PrintableStringRef<'_>>() {
                    return s.as_str().to_owned();
                }
            }
        }
    }
    String::new()
}

fn check_url(what: &str, url: &str, path_allowed: bool) -> Result<String, String> {
    let u = url.trim_end_matches('/');
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| format!("{what} must be an http:// or https:// URL, got {url:?}"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{what} has no host: {url:?}"));
    }
    if !path_allowed && rest.contains('/') {
        return Err(format!(
            "{what} must be an origin without a path (sigstore-python drops paths): {url:?}"
        ));
    }
    Ok(u.to_owned())
}

/// A `validFor` window: RFC 3339 start, and end once the generation is retired.
fn window(start: &str, end: Option<&str>) -> Value {
    match end {
        Some(end) => json!({"start": start, "end": end}),
        None => json!({"start": start}),
    }
}

fn log_entry(base_url: &str, spki: &[u8], valid_for: Value) -> Value {
    json!({
        "baseUrl": base_url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": B64.encode(spki),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": valid_for,
        },
        "logId": {"keyId": B64.encode(Sha256::digest(spki))},
    })
}

fn generations(dir: &Path, role: Role) -> Result<Vec<Generation>, String> {
    crate::ceremony::generations::generations(dir, role).map_err(|e| e.to_string())
}

/// One generation as trust lists it: its window and, for a log, its URL.
struct Listed<T> {
    material: T,
    url: String,
    start: String,
    end: Option<String>,
}

/// Each generation of `role`, its material read by `read`; generation 1's window starts at
/// `first_start`, its URL (a log's) is `first_url`; later ones carry theirs in their records.
fn listed<T>(
    dir: &Path,
    role: Role,
    first_url: &str,
    first_start: &dyn Fn(&T) -> String,
    read: &dyn Fn(&Path) -> Result<T, String>,
) -> Result<Vec<Listed<T>>, String> {
    let mut out = Vec::new();
    for g in generations(dir, role)? {
        let material = read(&g.file)?;
        let start = match g.start {
            Some(t) => format_time(t),
            None => first_start(&material),
        };
        let url = match (g.number, &g.url) {
            (1, _) => first_url.to_owned(),
            (_, Some(u)) => u.clone(),
            (n, None) if role.is_log() => {
                return Err(format!(
                    "{}: generation {n} of the {} records no URL",
                    role.rotation_record(n),
                    role.as_str()
                ));
            }
            _ => first_url.to_owned(),
        };
        out.push(Listed {
            material,
            url,
            start,
            end: g.end.map(format_time),
        });
    }
    Ok(out)
}

fn first_cert(path: &Path) -> Result<Certificate, String> {
    Ok(read_certs(path)?.remove(0))
}

fn ca_entry(
    cert: &Certificate,
    root: &Certificate,
    uri: &str,
    valid_for: Value,
) -> Result<Value, String> {
    let der = |c: &Certificate| c.to_der().map_err(|e| format!("cannot encode: {e}"));
    Ok(json!({
        "subject": {
            "organization": name_attr(cert, const_oid::db::rfc4519::O),
            "commonName": name_attr(cert, const_oid::db::rfc4519::CN),
        },
        "uri": uri,
        "certChain": {"certificates": [
            {"rawBytes": B64.encode(der(cert)?)},
            {"rawBytes": B64.encode(der(root)?)},
        ]},
        "validFor": valid_for,
    }))
}

/// Log IDs name logs: sigstore-go keys the logs of a trusted root by them, so two logs (or two
/// generations) sharing a key would collapse into one entry.
fn refuse_shared_keys(what: &str, keys: &[&[u8]]) -> Result<(), String> {
    for (i, a) in keys.iter().enumerate() {
        if keys[..i].contains(a) {
            return Err(format!(
                "two {what} share one key (their log IDs would collapse into one): each log needs its own key"
            ));
        }
    }
    Ok(())
}

/// Build the documents: every generation of each rotating role the ceremony's records hold
/// (see [`crate::ceremony::generations`]), each with its window.
pub fn build(inp: &TrustInputs) -> Result<TrustFiles, String> {
    let fulcio = check_url("the Fulcio URL", &inp.fulcio_url, false)?;
    let rekor = check_url("the Rekor URL", &inp.rekor_url, true)?;
    let ctlog = check_url("the CT log URL", &inp.ctlog_url, true)?;
    let oidc = inp
        .oidc_url
        .as_deref()
        .map(|u| check_url("the OIDC URL", u, true))
        .transpose()?;
    let d = &inp.ceremony_dir;
    let not_before = |c: &Certificate| rfc3339(&c.tbs_certificate.validity.not_before);
    let issuing = listed(d, Role::IssuingCa, &fulcio, &not_before, &first_cert)?;
    if issuing.is_empty() {
        // Named the way an operator looks for it.
        read_certs(&d.join("issuing-ca.pem"))?;
    }
    let root = first_cert(&d.join("root.pem"))?;
    // Generation 1 of every role starts when the first issuing CA does, as it always has.
    let start = issuing[0].start.clone();
    let from_start = |_: &Vec<u8>| start.clone();
    let ctlogs = listed(d, Role::Ctlog, &ctlog, &from_start, &read_spki)?;
    if ctlogs.is_empty() {
        read_spki(&d.join("ctlog.pub.pem"))?;
    }
    // Every Rekor v1 shard's key, each with its window: bundles made on a frozen shard verify
    // with its key (the SETs and checkpoints of its entries stay signed by it).
    let rekors = listed(d, Role::Rekor, &rekor, &from_start, &read_spki)?;
    if rekors.is_empty() {
        read_spki(&d.join("rekor.pub.pem"))?;
    }
    let tsas = match &inp.tsa_url {
        None => vec![],
        Some(url) => {
            let url = check_url("the TSA URL", url, true)?;
            if !url.contains("://") || url.splitn(4, '/').nth(3).is_none_or(str::is_empty) {
                return Err(format!(
                    "the TSA URL must be the full endpoint URL, e.g. https://tsa.example.org/api/v1/timestamp (sigstore-python posts to it as given): {url:?}"
                ));
            }
            let tsas = listed(d, Role::Tsa, &url, &not_before, &first_cert)?;
            if tsas.is_empty() {
                return Err(format!(
                    "cannot read {}: no such file (the TSA certificate: run `sigvault ceremony --add tsa` first)",
                    d.join("tsa.pem").display()
                ));
            }
            tsas
        }
    };
    let rekor_v2 = match &inp.rekor_v2_url {
        None => vec![],
        Some(url) => {
            let url = check_url("the Rekor v2 URL", url, true)?;
            let logs = listed(d, Role::RekorV2, &url, &from_start, &read_spki)?;
            if logs.is_empty() {
                return Err(format!(
                    "cannot read {}: no such file (the Rekor v2 log key: run `sigvault ceremony --add rekor-v2` first)",
                    d.join("rekor-v2.pub.pem").display()
                ));
            }
            logs
        }
    };
    if inp.rekor_v2_url.is_none() && generations(d, Role::RekorV2)?.len() > 1 {
        return Err(
            "the ceremony records several Rekor v2 logs: give --rekor-v2-url (the first log's URL)"
                .into(),
        );
    }
    if rekor_v2
        .iter()
        .any(|l| rekors.iter().any(|r| r.material == l.material))
    {
        return Err("the Rekor v2 log needs its own key, not Rekor v1's".into());
    }
    let mut tlog_keys: Vec<&[u8]> = rekors.iter().map(|l| l.material.as_slice()).collect();
    tlog_keys.extend(rekor_v2.iter().map(|l| l.material.as_slice()));
    refuse_shared_keys("transparency logs", &tlog_keys)?;
    let ct_keys: Vec<&[u8]> = ctlogs.iter().map(|l| l.material.as_slice()).collect();
    refuse_shared_keys("CT logs", &ct_keys)?;
    if !rekor_v2.is_empty() && !inp.rekor_v2_verify_only && tsas.is_empty() {
        return Err(
            "a Rekor v2 entry carries no signed time, so clients signing with it need a timestamp authority: give --tsa-url too (or --rekor-v2-verify-only)"
                .into(),
        );
    }

    // A shard's window stays open until `--retire rekor` records its end (after the tlog froze
    // its tree): uploads still in flight into the old shard after the ceremony carry
    // integratedTimes past the new shard's start and must still verify.
    let mut tlogs: Vec<Value> = rekors
        .iter()
        .map(|l| log_entry(&l.url, &l.material, window(&l.start, l.end.as_deref())))
        .collect();
    for l in &rekor_v2 {
        tlogs.push(log_entry(
            &l.url,
            &l.material,
            window(&l.start, l.end.as_deref()),
        ));
    }
    let certificate_authorities = issuing
        .iter()
        .map(|c| {
            ca_entry(
                &c.material,
                &root,
                &fulcio,
                window(&c.start, c.end.as_deref()),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ctlog_entries: Vec<_> = ctlogs
        .iter()
        .map(|l| log_entry(&l.url, &l.material, window(&l.start, l.end.as_deref())))
        .collect();
    let tsa_authorities = tsas
        .iter()
        .map(|t| {
            ca_entry(
                &t.material,
                &root,
                &t.url,
                window(&t.start, t.end.as_deref()),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;

    let trusted_root = json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": tlogs,
        "certificateAuthorities": certificate_authorities,
        "ctlogs": ctlog_entries,
        "timestampAuthorities": tsa_authorities,
    });
    let service_v = |url: &str, version: u32, valid_for: Value| {
        json!({
            "url": url,
            "majorApiVersion": version,
            "validFor": valid_for,
            "operator": inp.operator,
        })
    };
    let service = |url: &str| service_v(url, 1, window(&start, None));
    // Newest first: a client that knows Rekor v2 keeps it (the highest version per operator);
    // one that does not drops it and signs with v1. Each v2 log is advertised from its start
    // until the next one's, so that a client signs with exactly one of them at any time.
    let mut rekor_urls = Vec::new();
    if !inp.rekor_v2_verify_only {
        for (i, l) in rekor_v2.iter().enumerate().rev() {
            let until = rekor_v2.get(i + 1).map(|next| next.start.as_str());
            rekor_urls.push(service_v(&l.url, 2, window(&l.start, until)));
        }
    }
    rekor_urls.push(service(&rekor));
    let tsa_urls: Vec<_> = tsas
        .first()
        .map(|t| service_v(&t.url, 1, window(&t.start, None)))
        .into_iter()
        .collect();
    let signing_config = json!({
        "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
        "caUrls": [service(&fulcio)],
        "oidcUrls": oidc.iter().map(|u| service(u)).collect::<Vec<_>>(),
        "rekorTlogUrls": rekor_urls,
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaUrls": tsa_urls,
        "tsaConfig": {"selector": "ANY"},
    });
    let client_trust_config = json!({
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": trusted_root,
        "signingConfig": signing_config,
    });
    Ok(TrustFiles {
        trusted_root,
        signing_config,
        client_trust_config,
    })
}

/// Write `trusted_root.json`, `signing_config.json` and `trust-config.json` into `out`; returns
/// their paths.
pub fn write(files: &TrustFiles, out: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut written = Vec::new();
    for (name, v) in [
        ("trusted_root.json", &files.trusted_root),
        ("signing_config.json", &files.signing_config),
        ("trust-config.json", &files.client_trust_config),
    ] {
        let p = out.join(name);
        let mut text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
        text.push('\n');
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            check_url("x", "https://fulcio.example.org/", false).as_deref(),
            Ok("https://fulcio.example.org")
        );
        assert!(check_url("x", "http://127.0.0.1:3000", false).is_ok());
        assert!(check_url("x", "https://ct.example.org/sigvault", true).is_ok());
        let e = check_url("the Fulcio URL", "https://fulcio.example.org/api", false)
            .expect_err("must be refused");
        assert!(e.contains("without a path"), "{e}");
        for bad in ["ftp://x", "fulcio.example.org", "https://", "https:///path"] {
            assert!(check_url("x", bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_ceremony_output_is_named() {
        let dir = std::env::temp_dir().join(format!("sigvault-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let inp = TrustInputs {
            ceremony_dir: dir.clone(),
            fulcio_url: "https://fulcio.example.org".into(),
            rekor_url: "https://rekor.example.org".into(),
            ctlog_url: "https://ct.example.org/sigvault".into(),
            oidc_url: None,
            tsa_url: None,
            rekor_v2_url: None,
            rekor_v2_verify_only: false,
            operator: "example.org".into(),
        };
        let e = build(&inp).expect_err("must be refused");
        assert!(e.contains("issuing-ca.pem"), "{e}");
        std::fs::write(dir.join("issuing-ca.pem"), "not a certificate").expect("write");
        let e = build(&inp).expect_err("must be refused");
        assert!(e.contains("not a PEM certificate file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
