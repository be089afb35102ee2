//! The fuzz targets: one function per parser that sees untrusted bytes, each taking the bytes as
//! they arrive and returning a short label of what the parser made of them (`"ok"`, or the
//! kind of refusal). A target must return for every input, never panic: a refusal is a typed
//! error, and the services turn it into a status code.
//!
//! `tests/fuzz.rs` drives them (corpus replay in `cargo test`; `tests/run.sh fuzz` for the long
//! runs); the label is its guidance: an input that makes a target answer with a label not seen
//! before joins the corpus, so mutation reaches past the first check of each parser. Nothing in
//! the services calls this module.

use std::path::Path;

use der::Decode;
use x509_cert::Certificate;

/// A target: untrusted bytes in, the label of the outcome out.
pub type Target = fn(&[u8]) -> String;

/// Every target, by the name the corpus directories and the `FUZZ` lines use.
pub const TARGETS: &[(&str, Target)] = &[
    ("x509", x509),
    ("csr", csr),
    ("public-key", public_key),
    ("jws", jws),
    ("jwk", jwk),
    ("claims", claims),
    ("identity-config", identity_config),
    ("rekor-v1-entry", rekor_v1_entry),
    ("rekor-v1-verifier", rekor_v1_verifier),
    ("rekor-entry-id", rekor_entry_id),
    ("rekor-v2-request", rekor_v2_request),
    ("ct-add-chain", ct_add_chain),
    ("ct-structs", ct_structs),
    ("tsa-der", tsa_der),
    ("tsa-json", tsa_json),
    ("tile-path", tile_path),
    ("tile-data", tile_data),
    ("note", note),
    ("config", config),
    ("tuf-metadata", tuf_metadata),
];

/// The outcome's label: `ok`, or the first words of the error (its kind, not its details, so
/// that the same refusal of different bytes counts once).
fn label<T, E: std::fmt::Display>(r: &Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => {
            let text = e.to_string();
            // What an error quotes is the input's, not the kind of refusal: drop quoted text,
            // then keep the first four words made of letters only (no positions, sizes, keys).
            let mut unquoted = String::new();
            let mut inside = false;
            for c in text.chars() {
                match c {
                    '"' | '\'' | '`' => inside = !inside,
                    _ if !inside => unquoted.push(c),
                    _ => {}
                }
            }
            let words: Vec<&str> = unquoted
                .split_whitespace()
                .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
                .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphabetic() || c == '-'))
                .take(4)
                .collect();
            let kind = words.join(" ");
            format!("err:{kind}")
        }
    }
}

fn text(data: &[u8]) -> Result<&str, std::str::Utf8Error> {
    std::str::from_utf8(data)
}

/// A DER certificate, and what sigvault reads from one: the CT poison, the chain check against
/// itself as a root, the key match.
fn x509(data: &[u8]) -> String {
    let cert = match Certificate::from_der(data) {
        Ok(c) => c,
        Err(e) => return label::<(), _>(&Err(format!("der {}", e.kind()))),
    };
    let pre = label(&crate::pki::ct::is_precert(&cert));
    let chain = label(&crate::pki::ct::verify_chain(
        std::slice::from_ref(&cert),
        std::slice::from_ref(&cert),
    ));
    let spki = der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info);
    if let Ok(spki) = spki {
        crate::pki::cert_matches_key(&cert, &spki);
    }
    format!("{pre}/{chain}")
}

/// A certificate signing request as Fulcio receives it (PEM or DER), its proof of possession.
fn csr(data: &[u8]) -> String {
    label(&crate::pki::pop::verify_csr(data))
}

/// A public key as Fulcio's `publicKey.content` carries it, then a proof over it.
fn public_key(data: &[u8]) -> String {
    let r = crate::pki::pop::parse_public_key(data);
    if let Ok(key) = &r {
        let split = data.len() / 2;
        let _ = crate::pki::pop::verify_pop(key, &data[..split], &data[split..]);
    }
    label(&r)
}

/// An identity token: the JOSE header, the payload's claims.
fn jws(data: &[u8]) -> String {
    match text(data) {
        Ok(t) => label(&crate::oidc::parse_jws_for_fuzzing(t)),
        Err(_) => "not-utf8".into(),
    }
}

/// A JWKS document as an issuer serves it: each key.
fn jwk(data: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return "not-json".into();
    };
    let keys = v.get("keys").and_then(|k| k.as_array()).cloned();
    let mut out = String::new();
    for k in keys.unwrap_or_else(|| vec![v.clone()]) {
        out = label(&crate::oidc::parse_jwk_for_fuzzing(&k));
    }
    out
}

/// A token's claims (JSON), bound to an issuer of the shipped identity config (Dex's email
/// issuer, GitHub Actions as a CI provider) and mapped to the certificate's identity and
/// extensions, as Fulcio does after the signature checks out.
fn claims(data: &[u8]) -> String {
    static CONFIG: std::sync::OnceLock<crate::oidc::IdentityConfig> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        crate::oidc::config::parse_identity_config(include_str!("../config/fulcio-identity.yaml"))
            .expect("the shipped identity config parses")
    });
    let Ok(serde_json::Value::Object(claims)) = serde_json::from_slice(data) else {
        return "not-an-object".into();
    };
    match crate::oidc::token_for_fuzzing(config, claims) {
        Ok(token) => label(&crate::oidc::principal(&token)),
        Err(e) => format!("token:{}", label::<(), _>(&Err(e))),
    }
}

/// Fulcio's identity configuration (YAML).
fn identity_config(data: &[u8]) -> String {
    match text(data) {
        Ok(t) => label(&crate::oidc::config::parse_identity_config(t)),
        Err(_) => "not-utf8".into(),
    }
}

/// A Rekor v1 proposed entry (`POST /api/v1/log/entries`): every kind.
fn rekor_v1_entry(data: &[u8]) -> String {
    crate::rekor::kinds::body_kind(data);
    crate::rekor::kinds::is_canonical(data);
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(v) => label(&crate::rekor::kinds::canonicalize(&v)),
        Err(_) => "not-json".into(),
    }
}

/// The PEM verifier content of a Rekor v1 entry (a key or a certificate).
fn rekor_v1_verifier(data: &[u8]) -> String {
    let r = crate::rekor::kinds::Verifier::parse(data, "fuzz");
    if let Ok(v) = &r {
        v.subjects();
        v.fingerprint();
    }
    label(&r)
}

/// An entry UUID or entry ID in a Rekor v1 path.
fn rekor_entry_id(data: &[u8]) -> String {
    match text(data) {
        Ok(t) => label(&crate::rekor::parse_entry_id(t)),
        Err(_) => "not-utf8".into(),
    }
}

/// A Rekor v2 `POST /api/v2/log/entries` body (hashedrekord and dsse).
fn rekor_v2_request(data: &[u8]) -> String {
    label(&crate::rekor_v2::entry::canonicalize(data))
}

/// A CT `add-chain`/`add-pre-chain` body, then each certificate and the chain check with its
/// last certificate as the root.
fn ct_add_chain(data: &[u8]) -> String {
    let chain = match crate::ctlog::server::parse_chain_for_fuzzing(data) {
        Ok(c) => c,
        Err(e) => return label::<(), _>(&Err(e)),
    };
    let certs: Result<Vec<Certificate>, _> =
        chain.iter().map(|d| Certificate::from_der(d)).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => {
            let root = &certs[certs.len() - 1..];
            label(&crate::pki::ct::verify_chain(&certs, root))
        }
        Ok(_) => "empty".into(),
        Err(e) => label::<(), _>(&Err(format!("der {}", e.kind()))),
    }
}

/// The RFC 6962 structures sigvault decodes: SCT lists (from certificates), SCTs, digitally
/// signed structs, Merkle tree leaves and both kinds of extra data.
fn ct_structs(data: &[u8]) -> String {
    use crate::pki::ct;
    let Some((&which, rest)) = data.split_first() else {
        return "empty".into();
    };
    match which % 6 {
        0 => label(&ct::sct_list_decode(rest)),
        1 => label(&ct::Sct::decode(rest)),
        2 => label(&ct::DigitallySigned::decode(rest)),
        3 => label(&ct::MerkleTreeLeaf::decode(rest)),
        4 => label(&ct::decode_x509_extra_data(rest)),
        _ => label(&ct::decode_precert_extra_data(rest)),
    }
}

/// An RFC 3161 timestamp query (DER).
fn tsa_der(data: &[u8]) -> String {
    match crate::tsa::request::parse_der(data) {
        Ok(Ok(_)) => "ok".into(),
        Ok(Err(refusal)) => format!("refused:{}", refusal.failure.name()),
        Err(e) => label::<(), _>(&Err(e)),
    }
}

/// A timestamp request in sigstore's JSON form.
fn tsa_json(data: &[u8]) -> String {
    match crate::tsa::request::parse_json(data) {
        Ok(Ok(_)) => "ok".into(),
        Ok(Err(refusal)) => format!("refused:{}", refusal.failure.name()),
        Err(e) => label::<(), _>(&Err(e)),
    }
}

/// A tile path (`tile/<L>/<N>[.p/<W>]`, `tile/entries/...`) as the tile endpoints receive it.
fn tile_path(data: &[u8]) -> String {
    match text(data) {
        Ok(t) => label(&crate::merkle::tiles::TileId::parse(t)),
        Err(_) => "not-utf8".into(),
    }
}

/// Tile contents as a reader fetches them, for each width.
fn tile_data(data: &[u8]) -> String {
    let Some((&w, rest)) = data.split_first() else {
        return "empty".into();
    };
    label(&crate::merkle::tiles::decode_tile(rest, u16::from(w) + 1))
}

/// A signed note and the checkpoint in it.
fn note(data: &[u8]) -> String {
    let Ok(t) = text(data) else {
        return "not-utf8".into();
    };
    match crate::note::parse_note(t) {
        Ok((body, _sigs)) => label(&crate::note::Checkpoint::parse_body(body)),
        Err(e) => format!("note:{}", label::<(), _>(&Err(e))),
    }
}

/// A config file, under each of the names that select its kind.
fn config(data: &[u8]) -> String {
    const NAMES: [&str; 9] = [
        "tlog.toml",
        "ctlog.toml",
        "fulcio.toml",
        "rekor.toml",
        "rekor-v2.toml",
        "tsa.toml",
        "tuf.toml",
        "ceremony.toml",
        "other.toml",
    ];
    let Some((&which, rest)) = data.split_first() else {
        return "empty".into();
    };
    let Ok(t) = text(rest) else {
        return "not-utf8".into();
    };
    let name = NAMES[usize::from(which) % NAMES.len()];
    label(&crate::config::parse(Path::new(name), t))
}

/// A TUF metadata file of each role, as a client or `tuf publish` reads one.
fn tuf_metadata(data: &[u8]) -> String {
    use crate::tuf::metadata::{Metadata, Root, Snapshot, Targets, Timestamp};
    let Some((&which, rest)) = data.split_first() else {
        return "empty".into();
    };
    let bytes = rest.to_vec();
    match which % 4 {
        0 => {
            let r = Metadata::<Root>::parse(bytes);
            if let Ok(m) = &r {
                let _ = m.signed.check();
            }
            label(&r)
        }
        1 => label(&Metadata::<Targets>::parse(bytes)),
        2 => label(&Metadata::<Snapshot>::parse(bytes)),
        _ => label(&Metadata::<Timestamp>::parse(bytes)),
    }
}
