//! `sigvault fulcio serve` end to end on real parts: the ceremony's issuing CA in SoftHSM2, the
//! CT log and tlog as processes on MariaDB, and a third-party OIDC provider from npm
//! (oauth2-mock-server, tests/idp) minting tokens shaped like Dex's and GitHub Actions'.
//! Certificates are checked with openssl and pyca/cryptography, not with our own parsers.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use sha2::Digest as _;
use sigvault::http::client::Client;

use common::procs::{Service, Tlog, free_port};

const TOKENS: &[&str] = &[
    "fu-root",
    "fu-issuing",
    "fu-ctlog",
    "fu-rekor",
    "fu-tlogc",
    "fu-tlog",
];

/// The npm OIDC provider as a child process.
struct Idp {
    child: Child,
    issuer: String,
    port: u16,
}

impl Idp {
    fn start(port: u16) -> Idp {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/idp.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node tests/idp/idp.mjs (run tests/run.sh, which installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("idp output");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("idp said {line:?}: {e}"));
        Idp {
            child,
            issuer: v["issuer"].as_str().expect("issuer").to_owned(),
            port: v["port"].as_u64().expect("port") as u16,
        }
    }

    /// Mint a token with these claims (null removes a default claim).
    async fn token(&self, claims: serde_json::Value) -> String {
        let c = Client::new(
            format!("http://127.0.0.1:{}", self.port)
                .parse()
                .expect("ep"),
            None,
        )
        .expect("client");
        let body = format!(
            "grant_type=client_credentials&claims={}",
            urlencode(&claims.to_string())
        );
        let r = c
            .request(
                Method::POST,
                "/token",
                Some((body.into_bytes(), "application/x-www-form-urlencoded")),
            )
            .await
            .expect("token request");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("token json");
        v["access_token"].as_str().expect("access_token").to_owned()
    }

    async fn jwks(&self) -> String {
        let c = Client::new(
            format!("http://127.0.0.1:{}", self.port)
                .parse()
                .expect("ep"),
            None,
        )
        .expect("client");
        let r = c.request(Method::GET, "/jwks", None).await.expect("jwks");
        String::from_utf8(r.body.to_vec()).expect("utf8")
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Setup {
    tlog: Tlog,
    ctlog: Service,
    fulcio: Service,
    dex: Idp,
    gha: Idp,
    rogue: Idp,
    client: Client,
    ceremony: PathBuf,
    dir: PathBuf,
}

fn ceremony(dir: &Path) -> PathBuf {
    let t = |tag: &str| common::token(TOKENS, tag);
    let out = dir.join("ceremony");
    let cfg = dir.join("ceremony.toml");
    let key = |tag: &str, obj: &str| {
        format!(
            "key = \"pkcs11:token={};object={obj}\"\npin = {{ file = \"{}\" }}",
            t(tag).label,
            t(tag).pin_file.display()
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "[hsm]\nmodule = \"{}\"\n[ceremony]\noutput_dir = \"{}\"\n[ceremony.root]\n{}\ncurve = \"P-384\"\nsubject = \"CN=fulcio test root,O=sigvault\"\nvalidity_days = 3650\n[ceremony.issuing_ca]\n{}\ncurve = \"P-256\"\nsubject = \"CN=fulcio test issuing,O=sigvault\"\nvalidity_days = 365\n[ceremony.ctlog]\n{}\n[ceremony.rekor]\n{}\n[ceremony.tlog]\n{}\n",
            common::module().display(),
            out.display(),
            key("fu-root", "root-ca"),
            key("fu-issuing", "issuing-ca"),
            key("fu-ctlog", "ctlog"),
            key("fu-rekor", "rekor"),
            key("fu-tlogc", "tlog"),
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

async fn setup() -> Option<Setup> {
    if !common::have_softhsm() {
        return None;
    }
    common::init_logs();
    let db = common::database("fulcio")?;
    for t in TOKENS {
        common::token(TOKENS, t);
    }
    let dir = common::scratch("fulcio");
    let cer = ceremony(&dir);
    let tlog = Tlog::new("fulcio-tlog", common::token(TOKENS, "fu-tlog"), &db);
    let ct_port = free_port();
    let ct = common::token(TOKENS, "fu-ctlog");
    std::fs::write(
        dir.join("ctlog.toml"),
        format!(
            "[hsm]\nmodule = \"{}\"\n[ctlog]\nlisten = \"127.0.0.1:{ct_port}\"\nprefix = \"ct\"\nkey = \"pkcs11:token={};object=ctlog\"\npin = {{ file = \"{}\" }}\npublic_key_file = \"{c}/ctlog.pub.pem\"\nroots = [\"{c}/root.pem\"]\ntlog = [\"unix:{}\"]\ntree = \"t\"\n",
            common::module().display(),
            ct.label,
            ct.pin_file.display(),
            tlog.socket.display(),
            c = cer.display(),
        ),
    )
    .expect("write");
    let ctlog = Service::start(
        &["ctlog", "serve"],
        &dir.join("ctlog.toml"),
        &dir,
        "ctlog.log",
    );
    tlog.wait_active().await;

    let dex = Idp::start(0);
    let gha = Idp::start(0);
    let rogue = Idp::start(0);
    std::fs::write(
        dir.join("identity.yaml"),
        format!(
            "oidc-issuers:\n  {d}:\n    issuer-url: {d}\n    client-id: sigstore\n    type: email\n    issuer-claim: $.federated_claims.connector_id\n  {g}:\n    issuer-url: {g}\n    client-id: sigstore\n    type: ci-provider\n    ci-provider: github-workflow\n",
            d = dex.issuer,
            g = gha.issuer
        ),
    )
    .expect("write");
    let mut chain = std::fs::read_to_string(cer.join("issuing-ca.pem")).expect("pem");
    chain.push_str(&std::fs::read_to_string(cer.join("root.pem")).expect("pem"));
    std::fs::write(dir.join("chain.pem"), chain).expect("write");
    let port = free_port();
    let it = common::token(TOKENS, "fu-issuing");
    std::fs::write(
        dir.join("fulcio.toml"),
        format!(
            "[hsm]\nmodule = \"{}\"\n[fulcio]\nlisten = \"127.0.0.1:{port}\"\nkey = \"pkcs11:token={};object=issuing-ca\"\npin = {{ file = \"{}\" }}\nca_chain = [\"{c}/issuing-ca.pem\", \"{c}/root.pem\"]\nidentity_config = \"{d}/identity.yaml\"\nct_log_url = \"http://127.0.0.1:{ct_port}/ct\"\nct_log_public_key = \"{c}/ctlog.pub.pem\"\nmax_body_bytes = 65536\n",
            common::module().display(),
            it.label,
            it.pin_file.display(),
            d = dir.display(),
            c = cer.display(),
        ),
    )
    .expect("write");
    let (ok, o, e) = common::run(
        Command::new(common::sigvault_bin())
            .arg("check-config")
            .arg(dir.join("fulcio.toml")),
    );
    assert!(ok, "{o}{e}");
    let fulcio = Service::start(
        &["fulcio", "serve"],
        &dir.join("fulcio.toml"),
        &dir,
        "fulcio.log",
    );
    Some(Setup {
        tlog,
        ctlog,
        fulcio,
        dex,
        gha,
        rogue,
        client: Client::new(
            format!("http://127.0.0.1:{port}").parse().expect("ep"),
            None,
        )
        .expect("client"),
        ceremony: cer,
        dir,
    })
}

fn dex_claims(email: &str) -> serde_json::Value {
    serde_json::json!({
        "aud": "sigstore",
        "sub": "CgYxMjM0NTYSBmdpdGh1Yg",
        "email": email,
        "email_verified": true,
        "federated_claims": {"connector_id": "github", "user_id": "123456"},
        "name": "Octo Cat",
    })
}

fn gha_claims() -> serde_json::Value {
    serde_json::json!({
        "aud": "sigstore",
        "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
        "ref": "refs/heads/main",
        "sha": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        "repository": "octo-org/octo-repo",
        "repository_owner": "octo-org",
        "repository_owner_id": "1001",
        "repository_id": "2002",
        "repository_visibility": "public",
        "run_id": "3003",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "actor": "octocat",
        "actor_id": "4004",
        "workflow": "Release",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main",
        "workflow_sha": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        "job_workflow_ref": "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main",
        "job_workflow_sha": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        "event_name": "push",
        "ref_type": "branch",
    })
}

/// A fresh client key; returns (signing key, PEM public key).
fn client_key() -> (p256::ecdsa::SigningKey, String) {
    let k = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let pem = k
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    (k, pem)
}

fn pop(k: &p256::ecdsa::SigningKey, subject: &str) -> String {
    use p256::ecdsa::signature::Signer;
    let s: p256::ecdsa::Signature = k.sign(subject.as_bytes());
    B64.encode(s.to_der().as_bytes())
}

/// Fulcio's `/readyz`: status and text.
async fn readyz(s: &Setup) -> (u16, String) {
    let r = s
        .client
        .request(Method::GET, "/readyz", None)
        .await
        .expect("readyz");
    (
        r.status.as_u16(),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

async fn sign_v2(
    s: &Setup,
    body: serde_json::Value,
    bearer: Option<&str>,
) -> (u16, serde_json::Value) {
    let _ = bearer;
    let r = s
        .client
        .request(
            Method::POST,
            "/api/v2/signingCert",
            Some((body.to_string().into_bytes(), "application/json")),
        )
        .await
        .expect("request");
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::String(
        String::from_utf8_lossy(&r.body).into(),
    ));
    (r.status.as_u16(), v)
}

fn key_request(token: &str, pem: &str, proof: &str) -> serde_json::Value {
    serde_json::json!({
        "credentials": {"oidcIdentityToken": token},
        "publicKeyRequest": {"publicKey": {"algorithm": "ECDSA", "content": pem}, "proofOfPossession": proof}
    })
}

/// Write the leaf and check it with openssl (chain) and pyca/cryptography (SCT, extensions).
fn check_leaf(s: &Setup, v: &serde_json::Value, name: &str) -> serde_json::Value {
    let certs = v["signedCertificateEmbeddedSct"]["chain"]["certificates"]
        .as_array()
        .expect("chain");
    assert_eq!(certs.len(), 3, "leaf, issuing CA, root");
    let leaf = s.dir.join(format!("{name}.pem"));
    std::fs::write(&leaf, certs[0].as_str().expect("pem")).expect("write");
    let c = &s.ceremony;
    let (ok, o, e) = common::run(
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(c.join("root.pem"))
            .arg("-untrusted")
            .arg(c.join("issuing-ca.pem"))
            .arg(&leaf),
    );
    assert!(ok && o.contains(": OK"), "openssl verify: {o}{e}");
    let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fulcio_check.py");
    let (ok, o, e) = common::run(
        Command::new("python3")
            .arg(&check)
            .arg("sct")
            .arg(&leaf)
            .arg(c.join("issuing-ca.pem"))
            .arg(c.join("ctlog.pub.pem")),
    );
    assert!(ok && o.contains("SCT OK"), "SCT check: {o}{e}");
    let (ok, o, e) = common::run(Command::new("python3").arg(&check).arg("ext").arg(&leaf));
    assert!(ok, "{e}");
    let ext: serde_json::Value = serde_json::from_str(&o).expect("json");
    assert_eq!(ext["subject"], "", "empty subject");
    assert_eq!(
        ext["extensions"]["2.5.29.17"]["critical"], true,
        "SAN critical"
    );
    assert_eq!(
        ext["extensions"]["2.5.29.15"]["critical"], true,
        "KU critical"
    );
    assert_eq!(ext["key_usage_digital_signature"], true);
    assert_eq!(ext["eku"], serde_json::json!(["1.3.6.1.5.5.7.3.3"]));
    assert!(ext["extensions"]["2.5.29.35"].is_object(), "AKI");
    assert!(ext["extensions"]["2.5.29.14"].is_object(), "SKI");
    assert!(
        ext["extensions"]["2.5.29.19"].is_null(),
        "no BasicConstraints"
    );
    ext
}

/// Raw extension values as openssl prints them (hex dump of unknown OIDs).
fn openssl_text(path: &Path) -> String {
    common::run(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(path),
    )
    .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fulcio_issues_for_dex_and_github_actions_and_refuses_bad_requests() {
    let Some(s) = setup().await else { return };

    // --- Readiness: the CT log answers with a tree head signed by the configured log key.
    let (status, text) = readyz(&s).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("ct log tree size "), "{text}");
    // Not ready with another key configured for the log, or with the log unreachable.
    let config = std::fs::read_to_string(s.dir.join("fulcio.toml")).expect("config");
    let wrong_key = config.replace("ctlog.pub.pem", "rekor.pub.pem");
    let unreachable = config
        .lines()
        .map(|l| {
            if l.starts_with("ct_log_url") {
                format!("ct_log_url = \"http://127.0.0.1:{}/ct\"", free_port())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    for (name, config, why) in [
        (
            "wrong-key",
            wrong_key,
            "does not verify with the configured CT log key",
        ),
        ("no-ct", unreachable, "the CT log is unreachable"),
    ] {
        let port = free_port();
        let config = config
            .lines()
            .map(|l| {
                if l.starts_with("listen") {
                    format!("listen = \"127.0.0.1:{port}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = s.dir.join(format!("fulcio-{name}.toml"));
        std::fs::write(&path, config).expect("write");
        let f = Service::start(&["fulcio", "serve"], &path, &s.dir, &format!("{name}.log"));
        let c = Client::new(
            format!("http://127.0.0.1:{port}").parse().expect("ep"),
            None,
        )
        .expect("client");
        let r = c
            .request(Method::GET, "/readyz", None)
            .await
            .expect("readyz");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 503, "{name}: {text}\n{}", f.log());
        assert!(text.contains(why), "{name}: {text}");
    }

    // --- Dex after a GitHub login: public key + proof of possession over the email.
    let token = s.dex.token(dex_claims("octocat@example.com")).await;
    let (k, pem) = client_key();
    let (status, v) = sign_v2(
        &s,
        key_request(&token, &pem, &pop(&k, "octocat@example.com")),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}\n{}", s.fulcio.log());
    let ext = check_leaf(&s, &v, "dex");
    assert_eq!(ext["san_email"], serde_json::json!(["octocat@example.com"]));
    let text = openssl_text(&s.dir.join("dex.pem"));
    // 1.3.6.1.4.1.57264.1.1: the raw bytes of the issuer (the IssuerClaim result, "github").
    assert!(
        text.contains("1.3.6.1.4.1.57264.1.1:") && text.contains("github"),
        "{text}"
    );
    assert!(text.contains("1.3.6.1.4.1.57264.1.8:"), "{text}");
    assert!(text.contains("CT Precertificate SCTs"), "{text}");
    // The audit trail: a line for the certificate with its serial (as openssl reads it), the
    // identity and the key's SHA-256; never the token.
    let (ok, serial, e) = common::run(
        Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(s.dir.join("dex.pem")),
    );
    assert!(ok, "{e}");
    let serial = serial.trim().trim_start_matches("serial=").to_lowercase();
    let log = s.fulcio.log();
    let line = log
        .lines()
        .find(|l| l.contains("issued a certificate") && l.contains(&serial))
        .unwrap_or_else(|| panic!("no audit line for serial {serial}:\n{log}"));
    let key_der = k.verifying_key().to_public_key_der().expect("der");
    let key_sha = hex::encode(sha2::Sha256::digest(key_der.as_bytes()));
    assert!(
        line.contains("email:octocat@example.com") && line.contains(&key_sha),
        "{line}"
    );
    assert!(
        !log.contains("\x1b["),
        "no terminal escape codes in a log that is not a terminal"
    );
    assert!(!log.contains(&token), "the token must never be logged");

    // --- sigstore-python's form: CSR, token in the Authorization header.
    let d = common::scratch("csr");
    let (ok, _, e) = common::run(
        Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "k.pem",
            ])
            .current_dir(&d),
    );
    assert!(ok, "{e}");
    let (ok, _, e) = common::run(
        Command::new("openssl")
            .args([
                "req", "-new", "-key", "k.pem", "-subj", "/", "-out", "csr.pem",
            ])
            .current_dir(&d),
    );
    assert!(ok, "{e}");
    let csr = std::fs::read(d.join("csr.pem")).expect("csr");
    let token = s.dex.token(dex_claims("csr@example.com")).await;
    let body = serde_json::json!({"certificateSigningRequest": B64.encode(&csr)});
    let r = s
        .client
        .request(
            Method::POST,
            "/api/v2/signingCert",
            Some((body.to_string().into_bytes(), "application/json")),
        )
        .await
        .expect("request");
    assert_eq!(r.status, 400, "no token anywhere");
    let r = bearer_post(&s, "/api/v2/signingCert", &token, &body).await;
    assert_eq!(r.0, 200, "{}", r.1);
    check_leaf(&s, &r.1, "csr");

    // --- GitHub Actions: URI SAN and the workflow extensions.
    let token = s.gha.token(gha_claims()).await;
    let sub = "repo:octo-org/octo-repo:ref:refs/heads/main";
    let (k, pem) = client_key();
    let (status, v) = sign_v2(&s, key_request(&token, &pem, &pop(&k, sub)), None).await;
    assert_eq!(status, 200, "{v}\n{}", s.fulcio.log());
    let ext = check_leaf(&s, &v, "gha");
    assert_eq!(
        ext["san_uri"],
        serde_json::json!([
            "https://github.com/octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main"
        ])
    );
    for arc in [
        1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
    ] {
        let oid = format!("1.3.6.1.4.1.57264.1.{arc}");
        assert!(ext["extensions"][&oid].is_object(), "missing {oid}: {ext}");
        assert_eq!(ext["extensions"][&oid]["critical"], false);
    }
    let text = openssl_text(&s.dir.join("gha.pem"));
    assert!(text.contains("octo-org/octo-repo"), "{text}");

    // --- The other endpoints.
    let r = s
        .client
        .request(Method::GET, "/api/v2/trustBundle", None)
        .await
        .expect("tb");
    let tb: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        tb["chains"][0]["certificates"].as_array().map(Vec::len),
        Some(2)
    );
    let r = s
        .client
        .request(Method::GET, "/api/v2/configuration", None)
        .await
        .expect("cfg");
    let cfgv: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert!(
        cfgv["issuers"].as_array().is_some_and(|a| a.len() == 2),
        "{cfgv}"
    );
    let r = s
        .client
        .request(Method::GET, "/api/v1/rootCert", None)
        .await
        .expect("root");
    assert!(
        String::from_utf8_lossy(&r.body)
            .matches("BEGIN CERTIFICATE")
            .count()
            == 2
    );
    // Legacy v1: public key as base64 of PEM, signed email, token in the header: 201 + PEM chain.
    let token = s.dex.token(dex_claims("v1@example.com")).await;
    let (k, pem) = client_key();
    let body = serde_json::json!({"publicKey": {"algorithm": "ecdsa", "content": B64.encode(pem.as_bytes())}, "signedEmailAddress": pop(&k, "v1@example.com")});
    let r = s
        .client
        .request(
            Method::POST,
            "/api/v1/signingCert",
            Some((body.to_string().into_bytes(), "application/json")),
        )
        .await;
    let _ = r;
    let (status, text) = bearer_post_raw(&s, "/api/v1/signingCert", &token, &body).await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 3);

    // --- Refusals: each a 400 with a clear message, nothing issued.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("t")
        .as_secs() as i64;
    let (k, pem) = client_key();
    let email = "bad@example.com";
    let proof = pop(&k, email);
    let claims = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = dex_claims(email);
        f(&mut c);
        c
    };
    let expired = s
        .dex
        .token(claims(&|c| {
            c["exp"] = serde_json::json!(now - 60);
            c["iat"] = serde_json::json!(now - 600);
            c["nbf"] = serde_json::json!(now - 600);
        }))
        .await;
    let future = s
        .dex
        .token(claims(&|c| {
            c["nbf"] = serde_json::json!(now + 3600);
        }))
        .await;
    let wrong_aud = s
        .dex
        .token(claims(&|c| {
            c["aud"] = serde_json::json!("not-sigstore");
        }))
        .await;
    let unverified = s
        .dex
        .token(claims(&|c| {
            c["email_verified"] = serde_json::json!(false);
        }))
        .await;
    let unknown_issuer = s.rogue.token(dex_claims(email)).await;
    let good = s.dex.token(dex_claims(email)).await;
    let parts: Vec<&str> = good.split('.').collect();
    let mut sig = B64URL.decode(parts[2]).expect("sig");
    sig[10] ^= 1;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], B64URL.encode(&sig));
    let mut header: serde_json::Value =
        serde_json::from_slice(&B64URL.decode(parts[0]).expect("h")).expect("json");
    header["kid"] = serde_json::json!("no-such-key");
    let unknown_kid = format!(
        "{}.{}.{}",
        B64URL.encode(header.to_string()),
        parts[1],
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        B64URL.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let jwks = s.dex.jwks().await;
    let (ok, hs, e) = common::run(
        Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fulcio_check.py"))
            .args(["hs256", &good, &jwks]),
    );
    assert!(ok, "{e}");
    let hs256 = hs.trim().to_owned();
    let mut gha_missing = gha_claims();
    gha_missing["job_workflow_ref"] = serde_json::Value::Null;
    let gha_missing = s.gha.token(gha_missing).await;
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("expired", key_request(&expired, &pem, &proof), "expired"),
        (
            "not valid yet",
            key_request(&future, &pem, &proof),
            "not valid yet",
        ),
        (
            "wrong audience",
            key_request(&wrong_aud, &pem, &proof),
            "audience",
        ),
        (
            "unverified email",
            key_request(&unverified, &pem, &proof),
            "verified",
        ),
        (
            "unknown issuer",
            key_request(&unknown_issuer, &pem, &proof),
            "issuer",
        ),
        (
            "bad signature",
            key_request(&bad_sig, &pem, &proof),
            "signature",
        ),
        (
            "unknown kid",
            key_request(&unknown_kid, &pem, &proof),
            "key",
        ),
        ("alg none", key_request(&none, &pem, &proof), "alg"),
        ("hs256", key_request(&hs256, &pem, &proof), "alg"),
        (
            "missing GitHub claim",
            key_request(
                &gha_missing,
                &pem,
                &pop(&k, "repo:octo-org/octo-repo:ref:refs/heads/main"),
            ),
            "job_workflow_ref",
        ),
        (
            "PoP over the wrong subject",
            key_request(&good, &pem, &pop(&k, "someone-else@example.com")),
            "proof of possession",
        ),
        (
            "garbage key",
            key_request(
                &good,
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                &proof,
            ),
            "key",
        ),
        (
            "garbage JSON",
            serde_json::json!("not an object"),
            "malformed",
        ),
        (
            "neither key nor CSR",
            serde_json::json!({"credentials": {"oidcIdentityToken": good}}),
            "exactly one",
        ),
        (
            "proof not base64",
            key_request(&good, &pem, "not base64!"),
            "proofOfPossession is not base64",
        ),
        (
            "CSR not base64",
            serde_json::json!({
                "credentials": {"oidcIdentityToken": good},
                "certificateSigningRequest": "not base64!",
            }),
            "certificateSigningRequest is not base64",
        ),
    ];
    let cases_len = cases.len();
    for (what, body, words) in cases {
        let (status, v) = sign_v2(&s, body, None).await;
        assert_eq!(status, 400, "{what}: {v}");
        assert_eq!(v["code"], 3, "{what}: {v}");
        let msg = v["message"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            msg.contains(&words.to_lowercase()),
            "{what}: expected {words:?} in {msg:?}"
        );
        assert!(!msg.contains(&good), "the token must not be echoed");
    }
    // A token where the key request belongs, or where the credentials object belongs: refused,
    // and the reason names the field and the position but never quotes the value (serde would),
    // neither back to the client nor into the audit trail (checked below).
    for body in [
        serde_json::json!({"credentials": {"oidcIdentityToken": good}, "publicKeyRequest": good}),
        serde_json::json!({"credentials": good}),
    ] {
        let (status, v) = sign_v2(&s, body, None).await;
        assert_eq!(status, 400, "{v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("malformed request") && msg.contains("line 1 column"),
            "{msg}"
        );
        assert!(
            !msg.contains(&good[..20]),
            "the token must not be echoed: {msg}"
        );
    }
    let log = s.fulcio.log();
    assert!(
        log.matches("refused a certificate request").count() >= cases_len,
        "every refusal is in the audit trail:\n{log}"
    );
    assert!(!log.contains(&good), "the token must never be logged");
    assert!(!log.contains(&good[..20]), "no part of a token is logged");
    // A CSR whose self-signature is broken, and an unsupported key (RSA-1024).
    let mut broken = std::fs::read_to_string(d.join("csr.pem")).expect("csr");
    let der_b64: String = broken.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = B64.decode(der_b64).expect("b64");
    let n = der.len();
    der[n - 3] ^= 0x01;
    broken = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        B64.encode(&der)
    );
    let (status, v) = bearer_post(
        &s,
        "/api/v2/signingCert",
        &good,
        &serde_json::json!({"certificateSigningRequest": B64.encode(broken.as_bytes())}),
    )
    .await;
    assert_eq!(status, 400, "broken CSR: {v}");
    let (ok, _, e) = common::run(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
                "-out",
                "rsa.pem",
            ])
            .current_dir(&d),
    );
    assert!(ok, "{e}");
    let (ok, _, e) = common::run(
        Command::new("openssl")
            .args([
                "req", "-new", "-key", "rsa.pem", "-subj", "/", "-out", "rsa.csr",
            ])
            .current_dir(&d),
    );
    assert!(ok, "{e}");
    let (status, v) = bearer_post(&s, "/api/v2/signingCert", &good, &serde_json::json!({"certificateSigningRequest": B64.encode(std::fs::read(d.join("rsa.csr")).expect("csr"))})).await;
    assert_eq!(status, 400, "RSA-1024: {v}");
    // Oversize body.
    let big = serde_json::json!({"certificateSigningRequest": "A".repeat(100_000)});
    match s
        .client
        .request(
            Method::POST,
            "/api/v2/signingCert",
            Some((big.to_string().into_bytes(), "application/json")),
        )
        .await
    {
        Ok(r) => assert_eq!(r.status, 413),
        Err(e) => assert!(
            !e.to_string().contains("timed out"),
            "the server should refuse at once (413 or closing the connection under the write): {e}"
        ),
    }
    let r = s
        .client
        .request(Method::GET, "/metrics", None)
        .await
        .expect("metrics");
    let m = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        m.contains("sigvault_fulcio_certificates_issued_total 4"),
        "exactly the four good requests issued:\n{m}"
    );

    // --- Key rotation at the IdP: a new process on the same port with a new key and kid.
    let port = s.dex.port;
    let mut s = s;
    drop(std::mem::replace(
        &mut s.dex,
        Idp {
            child: Command::new("true").spawn().expect("true"),
            issuer: String::new(),
            port: 0,
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.dex = Idp::start(port);
    let token = s.dex.token(dex_claims("rotated@example.com")).await;
    let (k, pem) = client_key();
    // The JWKS is refetched on an unknown kid at most once per 10 s per issuer (so a flood of
    // bogus kids cannot hammer the IdP); the bogus-kid request above used this interval's
    // refetch, so the new key is picked up within that interval, without any restart.
    let started = std::time::Instant::now();
    loop {
        let (status, v) = sign_v2(
            &s,
            key_request(&token, &pem, &pop(&k, "rotated@example.com")),
            None,
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15)
                && v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("unknown"),
            "new kid not picked up without a restart: {v}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The CT log goes away: nothing is issued (503, gRPC Unavailable, naming the CT log), and
    // /readyz says why. Once it is back, fulcio issues again without a restart (its idle
    // connections to the old process are not reused).
    let ct_cfg = s.dir.join("ctlog.toml");
    s.ctlog.stop();
    let token = s.dex.token(dex_claims("ct-outage@example.com")).await;
    let (k, pem) = client_key();
    let request = key_request(&token, &pem, &pop(&k, "ct-outage@example.com"));
    let (status, v) = sign_v2(&s, request.clone(), None).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["code"], 14, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the CT log is unreachable"),
        "{v}"
    );
    let (status, why) = readyz(&s).await;
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("the CT log is unreachable"), "{why}");
    s.ctlog = Service::start(&["ctlog", "serve"], &ct_cfg, &s.dir, "ctlog-again.log");
    let started = std::time::Instant::now();
    loop {
        let (status, why) = readyz(&s).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "fulcio never saw the CT log again: {why}\n{}",
            s.ctlog.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, v) = sign_v2(&s, request, None).await;
    assert_eq!(status, 200, "issued again once the CT log is back: {v}");

    // The HSM goes away (the issuing CA token's files vanish): nothing is issued (a 5xx with the
    // reason), nothing reaches the CT log, and fulcio exits non-zero naming the token once it
    // has failed every signature for a while, for systemd to restart it. Restarted with the
    // token back, it issues again.
    let label = &common::token(TOKENS, "fu-issuing").label;
    let logged_before = s.tlog.client().head("t").await.expect("head").tree_size;
    let away = common::TokenAway::take(label);
    let token = s.dex.token(dex_claims("hsm@example.com")).await;
    let (k, pem) = client_key();
    let (status, v) = sign_v2(
        &s,
        key_request(&token, &pem, &pop(&k, "hsm@example.com")),
        None,
    )
    .await;
    assert!(status >= 500, "{status} {v}");
    let (status, why) = readyz(&s).await;
    assert_eq!(status, 503, "{why}");
    assert!(why.contains(&common::hsm_failing_phrase(label)), "{why}");
    assert_eq!(
        s.tlog.client().head("t").await.expect("head").tree_size,
        logged_before,
        "no precertificate reached the CT log"
    );
    let exit = s
        .fulcio
        .wait_exit(Duration::from_secs(30))
        .expect("fulcio exits when its HSM stays unusable");
    away.restore();
    assert!(!exit.success(), "{exit}");
    common::assert_hsm_exit_logged(&s.fulcio.log(), label);
    s.fulcio = Service::start(
        &["fulcio", "serve"],
        &s.dir.join("fulcio.toml"),
        &s.dir,
        "fulcio-again.log",
    );
    let (status, v) = sign_v2(
        &s,
        key_request(&token, &pem, &pop(&k, "hsm@example.com")),
        None,
    )
    .await;
    assert_eq!(status, 200, "issued again after the restart: {v}");
    assert_eq!(
        s.tlog.client().head("t").await.expect("head").tree_size,
        logged_before + 1,
        "one precertificate logged: the one issued after the restart"
    );
}

async fn bearer_post(
    s: &Setup,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, text) = bearer_post_raw(s, path, token, body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// POST with an Authorization header (the client helper has no header argument: use curl, a
/// client we did not write).
async fn bearer_post_raw(
    s: &Setup,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> (u16, String) {
    let port = s.client.endpoint().to_string();
    let url = format!("{}{path}", port.trim_end_matches('/'));
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body.to_string(),
            &url,
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_owned())
}
