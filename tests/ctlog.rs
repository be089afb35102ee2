//! `sigvault ctlog serve` against a real tlog, MariaDB and SoftHSM2: (pre)certificates issued by
//! the ceremony's issuing CA in the HSM are logged, and SCTs and STHs are checked with openssl
//! over signed data this test builds byte by byte from the RFC (not with the log's own encoder).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use der::asn1::OctetString;
use der::{Decode, DecodePem, Encode};
use p256::pkcs8::EncodePublicKey;
use secrecy::SecretString;
use sha2::Digest;
use sigvault::http::client::Client;
use sigvault::merkle;
use sigvault::signer::Signer;
use x509_cert::Certificate;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::Extension;

use common::procs::{Service, Tlog, free_port};

/// Each test gets its own set (suffix a, b or c): the ceremony must run once per set of tokens.
const TOKENS: &[&str] = &[
    "ct-root-a",
    "ct-issuing-a",
    "ct-ctlog-a",
    "ct-rekor-a",
    "ct-tlogc-a",
    "ct-tlog-a",
    "ct-root-b",
    "ct-issuing-b",
    "ct-ctlog-b",
    "ct-rekor-b",
    "ct-tlogc-b",
    "ct-tlog-b",
    "ct-root-c",
    "ct-issuing-c",
    "ct-ctlog-c",
    "ct-rekor-c",
    "ct-tlogc-c",
    "ct-tlog-c",
];

struct Setup {
    tlog: Tlog,
    ctlog: Service,
    url: String,
    ceremony: PathBuf,
    issuing: Certificate,
    issuing_der: Vec<u8>,
    root_der: Vec<u8>,
    ca: Arc<dyn Signer>,
    client: Client,
}

fn ceremony(dir: &Path, set: &str) -> PathBuf {
    let t = |tag: &str| common::token(TOKENS, &format!("{tag}-{set}"));
    let out = dir.join("ceremony");
    let cfg = dir.join("ceremony.toml");
    let key = |tag, obj: &str| {
        format!(
            "key = \"pkcs11:token={};object={obj}\"\npin = {{ file = \"{}\" }}",
            t(tag).label,
            t(tag).pin_file.display()
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "[hsm]\nmodule = \"{}\"\n[ceremony]\noutput_dir = \"{}\"\n[ceremony.root]\n{}\ncurve = \"P-384\"\nsubject = \"CN=ct test root,O=sigvault\"\nvalidity_days = 3650\n[ceremony.issuing_ca]\n{}\ncurve = \"P-256\"\nsubject = \"CN=ct test issuing,O=sigvault\"\nvalidity_days = 365\n[ceremony.ctlog]\n{}\n[ceremony.rekor]\n{}\n[ceremony.tlog]\n{}\n",
            common::module().display(),
            out.display(),
            key("ct-root", "root-ca"),
            key("ct-issuing", "issuing-ca"),
            key("ct-ctlog", "ctlog"),
            key("ct-rekor", "rekor"),
            key("ct-tlogc", "tlog"),
        ),
    )
    .expect("write");
    let (ok, o, e) = common::run(
        Command::new(common::sigvault_bin())
            .args(["ceremony", "--config"])
            .arg(&cfg),
    );
    assert!(ok, "ceremony: {o}{e}");
    out
}

async fn setup(test: &str, set: &str) -> Option<Setup> {
    if !common::have_softhsm() {
        return None;
    }
    common::init_logs();
    let db = common::database(test)?;
    for t in TOKENS {
        common::token(TOKENS, t);
    }
    let dir = common::scratch(test);
    let ceremony = ceremony(&dir, set);
    let tlog = Tlog::new(
        &format!("{test}-tlog"),
        common::token(TOKENS, &format!("ct-tlog-{set}")),
        &db,
    );
    let port = free_port();
    let cfg = dir.join("ctlog.toml");
    let ct = common::token(TOKENS, &format!("ct-ctlog-{set}"));
    std::fs::write(
        &cfg,
        format!(
            r#"[hsm]
module = "{module}"
[ctlog]
listen = "127.0.0.1:{port}"
prefix = "test"
key = "pkcs11:token={label};object=ctlog"
pin = {{ file = "{pin}" }}
public_key_file = "{c}/ctlog.pub.pem"
roots = ["{c}/root.pem"]
tlog = ["unix:{sock}"]
tree = "t"
max_chain_length = 5
max_body_bytes = 100000
"#,
            module = common::module().display(),
            label = ct.label,
            pin = ct.pin_file.display(),
            c = ceremony.display(),
            sock = tlog.socket.display(),
        ),
    )
    .expect("write");
    let (ok, o, e) = common::run(
        Command::new(common::sigvault_bin())
            .arg("check-config")
            .arg(&cfg),
    );
    assert!(ok, "{o}{e}");
    let ctlog = Service::start(&["ctlog", "serve"], &cfg, &dir, "ctlog.log");
    tlog.wait_active().await;

    // The issuing CA key, in its token, signs this test's certificates.
    let it = common::token(TOKENS, &format!("ct-issuing-{set}"));
    let m = sigvault::hsm::Module::load(&common::module()).expect("module");
    let uri: sigvault::hsm::Pkcs11Uri = format!("pkcs11:token={};object=issuing-ca", it.label)
        .parse()
        .expect("uri");
    let token = m
        .login(&uri, &SecretString::from(it.pin.clone()))
        .expect("login");
    let ca: Arc<dyn Signer> = Arc::new(token.signer(&uri).expect("signer"));
    let issuing =
        Certificate::from_pem(std::fs::read(ceremony.join("issuing-ca.pem")).expect("pem"))
            .expect("cert");
    let root = Certificate::from_pem(std::fs::read(ceremony.join("root.pem")).expect("pem"))
        .expect("cert");
    let url = format!("http://127.0.0.1:{port}");
    Some(Setup {
        tlog,
        ctlog,
        client: Client::new(url.parse().expect("endpoint"), None).expect("client"),
        url,
        ceremony,
        issuing_der: issuing.to_der().expect("der"),
        root_der: root.to_der().expect("der"),
        issuing,
        ca,
    })
}

/// A TBS for a code-signing leaf issued by `issuer`, valid from `from` for `secs`.
fn leaf_tbs(issuer: &Certificate, cn: &str, from: SystemTime, secs: u64) -> TbsCertificate {
    let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let spki = key.verifying_key().to_public_key_der().expect("spki");
    let mut serial = [0u8; 16];
    getrandom::getrandom(&mut serial).expect("rand");
    serial[0] = 0x42;
    TbsCertificate {
        version: Version::V3,
        serial_number: x509_cert::serial_number::SerialNumber::new(&serial).expect("serial"),
        signature: spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        },
        issuer: issuer.tbs_certificate.subject.clone(),
        validity: x509_cert::time::Validity {
            not_before: x509_cert::time::Time::try_from(from).expect("t"),
            not_after: x509_cert::time::Time::try_from(from + Duration::from_secs(secs))
                .expect("t"),
        },
        subject: format!("CN={cn}").parse().expect("name"),
        subject_public_key_info: spki::SubjectPublicKeyInfoOwned::from_der(spki.as_bytes())
            .expect("spki"),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            sigvault::pki::ext_with(
                &x509_cert::ext::pkix::ExtendedKeyUsage(vec![
                    const_oid::db::rfc5280::ID_KP_CODE_SIGNING,
                ]),
                false,
            )
            .expect("eku"),
        ]),
    }
}

const POISON: &str = "1.3.6.1.4.1.11129.2.4.3";

fn with_poison(mut tbs: TbsCertificate) -> TbsCertificate {
    let ext = Extension {
        extn_id: POISON.parse().expect("oid"),
        critical: true,
        extn_value: OctetString::new(vec![0x05, 0x00]).expect("octets"),
    };
    tbs.extensions.get_or_insert_with(Vec::new).push(ext);
    tbs
}

fn sign(tbs: TbsCertificate, ca: &dyn Signer) -> Certificate {
    sigvault::pki::sign_tbs(tbs.clone(), tbs.signature.clone(), ca).expect("sign")
}

fn u24(n: usize) -> [u8; 3] {
    [(n >> 16) as u8, (n >> 8) as u8, n as u8]
}

/// RFC 6962 §3.2 signed data for an SCT, built here from the RFC, not from the log's code.
fn sct_input(ts: u64, entry_type: u16, signed_entry: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8, 0u8];
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&entry_type.to_be_bytes());
    v.extend_from_slice(signed_entry);
    v.extend_from_slice(&[0, 0]); // no extensions
    v
}

fn precert_entry(issuer_spki: &[u8], tbs: &[u8]) -> Vec<u8> {
    let mut v = sha2::Sha256::digest(issuer_spki).to_vec();
    v.extend_from_slice(&u24(tbs.len()));
    v.extend_from_slice(tbs);
    v
}

fn x509_entry(cert: &[u8]) -> Vec<u8> {
    let mut v = u24(cert.len()).to_vec();
    v.extend_from_slice(cert);
    v
}

/// Verify an ECDSA signature with openssl against the ceremony's exported CT key.
fn openssl_verify(ceremony: &Path, data: &[u8], sig: &[u8]) {
    let d = common::scratch("ctverify");
    std::fs::write(d.join("data"), data).expect("w");
    std::fs::write(d.join("sig"), sig).expect("w");
    let (ok, o, e) = common::run(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(ceremony.join("ctlog.pub.pem"))
            .args(["-signature", "sig", "data"])
            .current_dir(&d),
    );
    assert!(ok && o.contains("Verified OK"), "openssl: {o}{e}");
}

/// Split a TLS DigitallySigned: hash 4 (SHA-256), signature 3 (ECDSA), u16 length.
fn digitally_signed(b: &[u8]) -> Vec<u8> {
    assert_eq!(&b[..2], &[4, 3], "SHA-256 / ECDSA");
    let n = u16::from_be_bytes([b[2], b[3]]) as usize;
    assert_eq!(b.len(), 4 + n);
    b[4..].to_vec()
}

async fn post(s: &Setup, path: &str, body: serde_json::Value) -> (u16, String) {
    let r = s
        .client
        .request(
            Method::POST,
            &format!("/test/ct/v1/{path}"),
            Some((body.to_string().into_bytes(), "application/json")),
        )
        .await
        .expect("request");
    (
        r.status.as_u16(),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

async fn get(s: &Setup, path: &str) -> (u16, serde_json::Value) {
    let r = s
        .client
        .request(Method::GET, &format!("/test/ct/v1/{path}"), None)
        .await
        .expect("request");
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::String(
        String::from_utf8_lossy(&r.body).into(),
    ));
    (r.status.as_u16(), v)
}

fn b64(d: &[u8]) -> String {
    B64.encode(d)
}

fn sth_of(v: &serde_json::Value) -> (u64, u64, [u8; 32], Vec<u8>) {
    let root: [u8; 32] = B64
        .decode(v["sha256_root_hash"].as_str().expect("root"))
        .expect("b64")
        .try_into()
        .expect("32");
    (
        v["tree_size"].as_u64().expect("size"),
        v["timestamp"].as_u64().expect("ts"),
        root,
        B64.decode(v["tree_head_signature"].as_str().expect("sig"))
            .expect("b64"),
    )
}

fn verify_sth(s: &Setup, v: &serde_json::Value) -> (u64, [u8; 32]) {
    let (size, ts, root, sig) = sth_of(v);
    let mut data = vec![0u8, 1u8];
    data.extend_from_slice(&ts.to_be_bytes());
    data.extend_from_slice(&size.to_be_bytes());
    data.extend_from_slice(&root);
    openssl_verify(&s.ceremony, &data, &digitally_signed(&sig));
    (size, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precerts_and_certs_get_verifiable_scts_sths_and_proofs() {
    let Some(s) = setup("ctlog_main", "a").await else {
        return;
    };
    let now = SystemTime::now() - Duration::from_secs(5);
    let ikh_spki = s
        .issuing
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .expect("spki");

    // --- add-pre-chain: the SCT signs the TBS without the poison, with the issuer key hash.
    let plain = leaf_tbs(&s.issuing, "precert leaf", now, 600);
    let plain_der = plain.to_der().expect("der");
    let pre = sign(with_poison(plain.clone()), s.ca.as_ref());
    let pre_der = pre.to_der().expect("der");
    let (status, body) = post(
        &s,
        "add-pre-chain",
        serde_json::json!({"chain": [b64(&pre_der), b64(&s.issuing_der)]}),
    )
    .await;
    assert_eq!(status, 200, "{body}\n{}", s.ctlog.log());
    let sct: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(sct["sct_version"], 0);
    let log_id = B64.decode(sct["id"].as_str().expect("id")).expect("b64");
    let ct_spki = {
        let pem = std::fs::read_to_string(s.ceremony.join("ctlog.pub.pem")).expect("pem");
        spki::SubjectPublicKeyInfoOwned::from_pem(pem.as_bytes())
            .expect("spki")
            .to_der()
            .expect("der")
    };
    assert_eq!(
        log_id,
        sha2::Sha256::digest(&ct_spki).to_vec(),
        "log ID = SHA-256 of the key's SPKI"
    );
    let ts = sct["timestamp"].as_u64().expect("ts");
    let entry = precert_entry(&ikh_spki, &plain_der);
    let sig = digitally_signed(
        &B64.decode(sct["signature"].as_str().expect("sig"))
            .expect("b64"),
    );
    openssl_verify(&s.ceremony, &sct_input(ts, 1, &entry), &sig);

    // Resubmitting returns the original SCT (same timestamp), not a second entry.
    let (_, sth1) = get(&s, "get-sth").await;
    let (size1, root1) = verify_sth(&s, &sth1);
    let (status, again) = post(
        &s,
        "add-pre-chain",
        serde_json::json!({"chain": [b64(&pre_der), b64(&s.issuing_der), b64(&s.root_der)]}),
    )
    .await;
    assert_eq!(status, 200);
    let again: serde_json::Value = serde_json::from_str(&again).expect("json");
    assert_eq!(again["timestamp"], sct["timestamp"]);
    let (_, sth_same) = get(&s, "get-sth").await;
    assert_eq!(sth_of(&sth_same).0, size1, "no second entry");

    // The entry's leaf hash, built from the RFC, has a proof against the STH.
    let mut leaf = vec![0u8, 0u8];
    leaf.extend_from_slice(&ts.to_be_bytes());
    leaf.extend_from_slice(&1u16.to_be_bytes());
    leaf.extend_from_slice(&entry);
    leaf.extend_from_slice(&[0, 0]);
    let leaf_hash = merkle::leaf_hash(&leaf);
    let (status, p) = get(
        &s,
        &format!(
            "get-proof-by-hash?hash={}&tree_size={size1}",
            urlenc(&b64(&leaf_hash))
        ),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    let index = p["leaf_index"].as_u64().expect("index");
    assert!(index >= 1, "index 0 is the sentinel");
    let path: Vec<[u8; 32]> = p["audit_path"]
        .as_array()
        .expect("path")
        .iter()
        .map(|h| {
            B64.decode(h.as_str().expect("s"))
                .expect("b64")
                .try_into()
                .expect("32")
        })
        .collect();
    merkle::verify_inclusion(&leaf_hash, index, size1, &path, &root1)
        .expect("inclusion against the STH");

    // get-entries gives the same leaf and the chain as extra data.
    let (status, e) = get(&s, &format!("get-entries?start={index}&end={index}")).await;
    assert_eq!(status, 200);
    let got = B64
        .decode(e["entries"][0]["leaf_input"].as_str().expect("leaf"))
        .expect("b64");
    assert_eq!(got, leaf);
    let extra = B64
        .decode(e["entries"][0]["extra_data"].as_str().expect("extra"))
        .expect("b64");
    assert_eq!(
        &extra[3..3 + pre_der.len()],
        &pre_der[..],
        "extra data starts with the precertificate"
    );
    let (status, ep) = get(
        &s,
        &format!("get-entry-and-proof?leaf_index={index}&tree_size={size1}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ep["leaf_input"], e["entries"][0]["leaf_input"]);

    // --- add-chain with the final certificate (root included, as a client may send it).
    let fin = sign(leaf_tbs(&s.issuing, "final leaf", now, 600), s.ca.as_ref());
    let fin_der = fin.to_der().expect("der");
    let (status, body) = post(
        &s,
        "add-chain",
        serde_json::json!({"chain": [b64(&fin_der), b64(&s.issuing_der), b64(&s.root_der)]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sct2: serde_json::Value = serde_json::from_str(&body).expect("json");
    let sig2 = digitally_signed(
        &B64.decode(sct2["signature"].as_str().expect("sig"))
            .expect("b64"),
    );
    openssl_verify(
        &s.ceremony,
        &sct_input(
            sct2["timestamp"].as_u64().expect("ts"),
            0,
            &x509_entry(&fin_der),
        ),
        &sig2,
    );

    // Consistency between the two STHs, and get-roots.
    let (_, sth2) = get(&s, "get-sth").await;
    let (size2, root2) = verify_sth(&s, &sth2);
    assert!(size2 > size1);
    let (status, c) = get(
        &s,
        &format!("get-sth-consistency?first={size1}&second={size2}"),
    )
    .await;
    assert_eq!(status, 200);
    let proof: Vec<[u8; 32]> = c["consistency"]
        .as_array()
        .expect("c")
        .iter()
        .map(|h| {
            B64.decode(h.as_str().expect("s"))
                .expect("b64")
                .try_into()
                .expect("32")
        })
        .collect();
    merkle::verify_consistency(size1, size2, &proof, &root1, &root2).expect("consistent STHs");
    let (_, roots) = get(&s, "get-roots").await;
    assert_eq!(roots["certificates"][0], b64(&s.root_der));

    // /metrics counts the accepted submissions, and times each of them.
    let r = s
        .client
        .request(Method::GET, "/metrics", None)
        .await
        .expect("metrics");
    let m = String::from_utf8_lossy(&r.body).into_owned();
    let value = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{m}"))
    };
    let accepted =
        value("sigvault_ctlog_add_pre_chain_total") + value("sigvault_ctlog_add_chain_total");
    assert!(accepted >= 3, "{m}");
    assert_eq!(value("sigvault_ctlog_submission_seconds_count"), accepted);
    assert_eq!(
        value("sigvault_ctlog_submission_seconds_bucket{le=\"+Inf\"}"),
        accepted
    );
    assert_eq!(value("sigvault_ctlog_tlog_append_seconds_count"), accepted);
    let _ = &s.url;
}

/// Wait (up to 30 s) for the CT log's /readyz to answer 200; its body.
async fn wait_ready(s: &Setup) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s
            .client
            .request(Method::GET, "/readyz", None)
            .await
            .expect("readyz");
        if r.status.as_u16() == 200 {
            return String::from_utf8_lossy(&r.body).into_owned();
        }
        assert!(std::time::Instant::now() < deadline, "ctlog never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn urlenc(s: &str) -> String {
    s.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_get_400_and_append_nothing() {
    let Some(mut s) = setup("ctlog_bad", "b").await else {
        return;
    };
    let now = SystemTime::now() - Duration::from_secs(5);
    let (_, sth) = get(&s, "get-sth").await;
    let size = sth_of(&sth).0;
    let pre = sign(
        with_poison(leaf_tbs(&s.issuing, "p", now, 600)),
        s.ca.as_ref(),
    )
    .to_der()
    .expect("der");
    let fin = sign(leaf_tbs(&s.issuing, "f", now, 600), s.ca.as_ref())
        .to_der()
        .expect("der");
    let expired = sign(
        leaf_tbs(&s.issuing, "old", now - Duration::from_secs(7200), 600),
        s.ca.as_ref(),
    )
    .to_der()
    .expect("der");
    // A certificate signed by a CA the log does not know (a throwaway software key).
    let other: Arc<dyn Signer> = Arc::new(SoftKey::random());
    let foreign = sign(leaf_tbs(&s.issuing, "foreign", now, 600), other.as_ref())
        .to_der()
        .expect("der");
    let mut broken = fin.clone();
    let n = broken.len();
    broken[n - 5] ^= 0x55; // inside the signature
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "add-chain",
            serde_json::json!({"chain": ["not base64!"]}),
            "base64",
        ),
        (
            "add-chain",
            serde_json::json!({"chain": [b64(b"hello")]}),
            "not a DER X.509",
        ),
        ("add-chain", serde_json::json!({"chian": []}), "malformed"),
        ("add-chain", serde_json::json!({"chain": []}), "empty"),
        (
            "add-chain",
            serde_json::json!({"chain": [b64(&foreign), b64(&s.issuing_der)]}),
            "",
        ),
        (
            "add-chain",
            serde_json::json!({"chain": [b64(&broken), b64(&s.issuing_der)]}),
            "",
        ),
        ("add-chain", serde_json::json!({"chain": [b64(&fin)]}), ""),
        (
            "add-chain",
            serde_json::json!({"chain": [b64(&pre), b64(&s.issuing_der)]}),
            "add-pre-chain",
        ),
        (
            "add-pre-chain",
            serde_json::json!({"chain": [b64(&fin), b64(&s.issuing_der)]}),
            "poison",
        ),
        (
            "add-chain",
            serde_json::json!({"chain": [b64(&expired), b64(&s.issuing_der)]}),
            "expired",
        ),
        (
            "add-chain",
            serde_json::json!({"chain": vec![b64(&s.issuing_der); 6]}),
            "at most 5",
        ),
    ];
    for (path, body, words) in cases {
        let (status, text) = post(&s, path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {text}");
        assert!(text.starts_with("Bad Request\n"), "{text}");
        assert!(text.contains(words), "expected {words:?} in {text}");
    }
    // Oversize body.
    let big = serde_json::json!({"chain": [b64(&vec![0u8; 200_000])]});
    let r = s
        .client
        .request(
            Method::POST,
            "/test/ct/v1/add-chain",
            Some((big.to_string().into_bytes(), "application/json")),
        )
        .await;
    match r {
        Ok(r) => assert_eq!(r.status.as_u16(), 413),
        Err(e) => assert!(
            !e.to_string().contains("timed out"),
            "the server should refuse at once (413 or closing the connection under the write): {e}"
        ),
    }
    // Bad query parameters.
    for q in [
        "get-sth-consistency?first=5&second=2",
        "get-entries?start=x&end=1",
        "get-proof-by-hash?hash=abc&tree_size=1",
        "get-entry-and-proof?leaf_index=9&tree_size=2",
    ] {
        let (status, v) = get(&s, q).await;
        assert_eq!(status, 400, "{q}: {v}");
    }
    let (_, sth) = get(&s, "get-sth").await;
    assert_eq!(sth_of(&sth).0, size, "nothing was appended");

    // The tlog goes away: a submission gets 503 with Retry-After and its reason in the log's
    // plain-text error shape, and the log is not ready; once the tlog is back (and has taken
    // over the dead instance's lease) the same precertificate is logged.
    let chain = serde_json::json!({"chain": [b64(&pre), b64(&s.issuing_der)]});
    s.tlog.kill9();
    let r = s
        .client
        .request(
            Method::POST,
            "/test/ct/v1/add-pre-chain",
            Some((chain.to_string().into_bytes(), "application/json")),
        )
        .await
        .expect("request");
    let text = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status.as_u16(), 503, "{text}");
    assert_eq!(r.headers["retry-after"], "1");
    assert!(
        text.starts_with("Service Unavailable\n") && text.contains("tlog unreachable"),
        "{text}"
    );
    let r = s
        .client
        .request(Method::GET, "/readyz", None)
        .await
        .expect("readyz");
    assert_eq!(r.status.as_u16(), 503);
    assert!(String::from_utf8_lossy(&r.body).contains("tlog"));
    s.tlog.start();
    wait_ready(&s).await;
    let (status, text) = post(&s, "add-pre-chain", chain).await;
    assert_eq!(status, 200, "ready means a submission goes through: {text}");
    let (_, sth) = get(&s, "get-sth").await;
    assert_eq!(sth_of(&sth).0, size + 1, "exactly the one precertificate");

    // The tree is frozen (`frozen = true` in tlog.toml, the tlog restarted): the log stays
    // ready and serves reads; a new submission gets 403 and its reason; nothing is appended.
    s.tlog.restart_frozen();
    let ready = wait_ready(&s).await;
    assert!(ready.contains("read-only"), "{ready}");
    let fresh = sign(
        with_poison(leaf_tbs(&s.issuing, "after the freeze", now, 600)),
        s.ca.as_ref(),
    )
    .to_der()
    .expect("der");
    let (status, text) = post(
        &s,
        "add-pre-chain",
        serde_json::json!({"chain": [b64(&fresh), b64(&s.issuing_der)]}),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("read-only"), "{text}");
    let (status, sth) = get(&s, "get-sth").await;
    assert_eq!(status, 200);
    assert_eq!(
        sth_of(&sth).0,
        size + 1,
        "nothing appended to the frozen tree"
    );
    verify_sth(&s, &sth);
}

/// A software key standing in for a CA the log does not trust (test-only; never a log key).
struct SoftKey {
    key: p256::ecdsa::SigningKey,
    spki: Vec<u8>,
}

impl SoftKey {
    fn random() -> Self {
        let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .expect("spki")
            .into_vec();
        Self { key, spki }
    }
}

impl Signer for SoftKey {
    fn algorithm(&self) -> sigvault::signer::SignatureAlgorithm {
        sigvault::signer::SignatureAlgorithm::EcdsaP256Sha256
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, m: &[u8]) -> Result<Vec<u8>, sigvault::signer::SignError> {
        use p256::ecdsa::signature::Signer as _;
        let s: p256::ecdsa::Signature = self.key.sign(m);
        Ok(s.to_der().as_bytes().to_vec())
    }
}

/// The CT log's own token goes away: a precertificate is logged but its SCT cannot be signed
/// (503; the entry stays, and no SCT is ever given before its entry is durable), `/readyz` names
/// the token, and after `[hsm] exit_after_failing_secs` (3 here, not the default 10) the CT log
/// exits non-zero. Restarted with the token back, the resubmission gets an SCT for that same
/// entry (its original timestamp, no second entry), and the SCT verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_ct_logs_token_goes_away_nothing_is_lost_and_a_restart_recovers() {
    let Some(mut s) = setup("ctlog_hsm", "c").await else {
        return;
    };
    let cfg = s.ctlog.dir.join("ctlog.toml");
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cfg,
        text.replacen("[hsm]\n", "[hsm]\nexit_after_failing_secs = 3\n", 1),
    )
    .expect("write");
    let dir = s.ctlog.dir.clone();
    s.ctlog.stop();
    s.ctlog = Service::start(&["ctlog", "serve"], &cfg, &dir, "ctlog.log");
    wait_ready(&s).await;

    let now = SystemTime::now() - Duration::from_secs(5);
    let precert = |cn: &str| {
        let plain = leaf_tbs(&s.issuing, cn, now, 600);
        let der = sign(with_poison(plain.clone()), s.ca.as_ref())
            .to_der()
            .expect("der");
        (plain.to_der().expect("der"), der)
    };
    let chain = |pre: &[u8]| serde_json::json!({"chain": [b64(pre), b64(&s.issuing_der)]});
    let (_, first) = precert("before the outage");
    let (status, body) = post(&s, "add-pre-chain", chain(&first)).await;
    assert_eq!(status, 200, "{body}");
    let size = s.tlog.client().head("t").await.expect("head").tree_size;

    let label = &common::token(TOKENS, "ct-ctlog-c").label;
    // /metrics counts the token's signatures and says whether it is failing.
    let hsm_metric = |name: &'static str| {
        let (s, label) = (&s, label.clone());
        async move {
            let r = s
                .client
                .request(Method::GET, "/metrics", None)
                .await
                .expect("metrics");
            let m = String::from_utf8_lossy(&r.body).into_owned();
            let line = format!("{name}{{token=\"{label}\"}} ");
            m.lines()
                .find_map(|l| l.strip_prefix(line.as_str()))
                .unwrap_or_else(|| panic!("no {line} in\n{m}"))
                .parse::<u64>()
                .expect("number")
        }
    };
    assert!(hsm_metric("sigvault_hsm_signatures_total").await >= 1);
    assert_eq!(hsm_metric("sigvault_hsm_signature_failures_total").await, 0);
    assert_eq!(hsm_metric("sigvault_hsm_failing").await, 0);
    let away = common::TokenAway::take(label);
    let gone = std::time::Instant::now();
    let (plain, second) = precert("during the outage");
    let (status, body) = post(&s, "add-pre-chain", chain(&second)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("signing failed"), "{body}");
    assert_eq!(
        s.tlog.client().head("t").await.expect("head").tree_size,
        size + 1,
        "the entry is durable before its SCT is signed"
    );
    let r = s
        .client
        .request(Method::GET, "/readyz", None)
        .await
        .expect("readyz");
    let why = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 503, "{why}");
    assert!(why.contains(&common::hsm_failing_phrase(label)), "{why}");
    assert_eq!(hsm_metric("sigvault_hsm_failing").await, 1);
    assert!(hsm_metric("sigvault_hsm_signature_failures_total").await >= 1);

    let status = s
        .ctlog
        .wait_exit(Duration::from_secs(30))
        .expect("the CT log exits when its HSM stays unusable");
    let waited = gone.elapsed();
    assert!(!status.success(), "{status}");
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(10),
        "exited after {waited:?}: the configured 3 s, not the default 10"
    );
    common::assert_hsm_exit_logged(&s.ctlog.log(), label);

    away.restore();
    let restarted = SystemTime::now();
    s.ctlog = Service::start(&["ctlog", "serve"], &cfg, &dir, "ctlog.log");
    wait_ready(&s).await;
    let (status, body) = post(&s, "add-pre-chain", chain(&second)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        s.tlog.client().head("t").await.expect("head").tree_size,
        size + 1,
        "the resubmission found the logged entry"
    );
    let sct: serde_json::Value = serde_json::from_str(&body).expect("json");
    let ts = sct["timestamp"].as_u64().expect("ts");
    let restarted_ms = restarted
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    assert!(ts < restarted_ms, "the original timestamp, not a new one");
    let ikh_spki = s
        .issuing
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .expect("spki");
    let sig = digitally_signed(
        &B64.decode(sct["signature"].as_str().expect("sig"))
            .expect("b64"),
    );
    openssl_verify(
        &s.ceremony,
        &sct_input(ts, 1, &precert_entry(&ikh_spki, &plain)),
        &sig,
    );
}
