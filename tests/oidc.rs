//! OIDC verification against a real local IdP: an axum server on 127.0.0.1 serving discovery and
//! a JWKS for keys generated here, with tokens minted by `jsonwebtoken::encode`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::rand_core::OsRng;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sigvault::oidc::{
    IdentityConfig, IssuerType, OidcError, San, SigstoreExtension, Verifier, VerifierOptions,
    parse_identity_config, principal,
};

// ---- keys ------------------------------------------------------------------------------------

struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    /// SPKI PEM of the public key (for the HS256 confusion attack).
    public_pem: String,
}

fn rsa_key(kid: &'static str) -> TestKey {
    let sk = rsa::RsaPrivateKey::new(&mut OsRng, 2048).expect("rsa keygen");
    let pk = sk.to_public_key();
    let der = sk.to_pkcs1_der().expect("pkcs1");
    TestKey {
        kid,
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(pk.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(pk.e().to_bytes_be()),
        }),
        public_pem: pk.to_public_key_pem(LineEnding::LF).expect("pem"),
    }
}

fn ec_key(kid: &'static str) -> TestKey {
    let sk = p256::SecretKey::random(&mut OsRng);
    let point = sk.public_key().to_encoded_point(false);
    let der = sk.to_pkcs8_der().expect("pkcs8");
    TestKey {
        kid,
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
        }),
        public_pem: String::new(),
    }
}

struct Keys {
    rsa1: TestKey,
    rsa2: TestKey,
    ec1: TestKey,
}

/// RSA key generation is slow; every test shares one set.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa1: rsa_key("rsa-1"),
        rsa2: rsa_key("rsa-2"),
        ec1: ec_key("ec-1"),
    })
}

fn mint(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("encode")
}

fn mint_with_kid(key: &TestKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("encode")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

// ---- the IdP ---------------------------------------------------------------------------------

#[derive(Default)]
struct IdpState {
    published: Mutex<Vec<Value>>,
    discovery_issuer: Mutex<Option<String>>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

struct Idp {
    issuer: String,
    state: Arc<IdpState>,
}

impl Idp {
    /// An IdP at `http://127.0.0.1:PORT/auth` publishing `jwks`.
    async fn start(jwks: Vec<Value>) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let issuer = format!("http://{addr}/auth");
        let state = Arc::new(IdpState::default());
        *state.published.lock().expect("lock") = jwks;
        let app = idp_router(state.clone(), issuer.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Idp { issuer, state }
    }

    /// The same IdP over TLS at `https://localhost:PORT/auth`, with a certificate from a private
    /// CA; returns the CA's PEM.
    async fn start_tls(jwks: Vec<Value>, dir: &std::path::Path) -> (Idp, String) {
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test IdP CA");
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("leaf");
        std::fs::write(dir.join("idp.pem"), leaf.pem()).expect("write");
        std::fs::write(dir.join("idp.key"), key.serialize_pem()).expect("write");
        let files = sigvault::http::TlsFiles {
            cert: dir.join("idp.pem"),
            key: dir.join("idp.key"),
            client_ca: None,
        };
        let listener = sigvault::http::bind(&"127.0.0.1:0".parse().expect("addr"), Some(&files))
            .await
            .expect("bind tls");
        let sigvault::http::ListenAddr::Tcp(sa) = listener.listen_addr().clone() else {
            panic!("tcp listener");
        };
        let issuer = format!("https://localhost:{}/auth", sa.port());
        let state = Arc::new(IdpState::default());
        *state.published.lock().expect("lock") = jwks;
        let app = idp_router(state.clone(), issuer.clone());
        tokio::spawn(async move {
            let _ = listener.serve(app, std::future::pending()).await;
        });
        (Idp { issuer, state }, ca_cert.pem())
    }

    fn publish(&self, jwks: Vec<Value>) {
        *self.state.published.lock().expect("lock") = jwks;
    }

    fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}

fn idp_router(state: Arc<IdpState>, iss: String) -> Router {
    Router::new()
        .route(
            "/auth/.well-known/openid-configuration",
            get(
                |State((s, iss)): State<(Arc<IdpState>, String)>| async move {
                    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
                    let claimed = s.discovery_issuer.lock().expect("lock").clone();
                    // GitHub-Actions-like: no authorization_endpoint.
                    Json(json!({
                        "issuer": claimed.unwrap_or_else(|| iss.clone()),
                        "jwks_uri": format!("{iss}/keys"),
                        "subject_types_supported": ["public"],
                        "response_types_supported": ["id_token"],
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    }))
                },
            ),
        )
        .route(
            "/auth/keys",
            get(|State((s, _)): State<(Arc<IdpState>, String)>| async move {
                s.jwks_hits.fetch_add(1, Ordering::SeqCst);
                let keys = s.published.lock().expect("lock").clone();
                Json(json!({ "keys": keys }))
            }),
        )
        .with_state((state, iss))
}

fn email_config(issuer: &str, issuer_claim: bool) -> IdentityConfig {
    let claim = if issuer_claim {
        ", issuer-claim: $.federated_claims.connector_id"
    } else {
        ""
    };
    parse_identity_config(&format!(
        "oidc-issuers:\n  {issuer}: {{issuer-url: {issuer}, client-id: sigstore, type: email{claim}}}\n"
    ))
    .expect("config")
}

fn github_config(issuer: &str, ty: &str) -> IdentityConfig {
    let provider = if ty == "ci-provider" {
        ", ci-provider: github-workflow"
    } else {
        ""
    };
    parse_identity_config(&format!(
        "oidc-issuers:\n  {issuer}: {{issuer-url: {issuer}, client-id: sigstore, type: {ty}{provider}}}\n"
    ))
    .expect("config")
}

fn verifier(config: IdentityConfig) -> Verifier {
    Verifier::new(config, VerifierOptions::default())
}

fn dex_claims(iss: &str) -> Value {
    json!({
        "iss": iss,
        "sub": "CgUxMjM0NRIGZ2l0aHVi",
        "aud": "sigstore",
        "exp": now() + 600,
        "iat": now(),
        "nonce": "n-0S6_WzA2Mj",
        "email": "dev@example.com",
        "email_verified": true,
        "federated_claims": {"connector_id": "github", "user_id": "12345"},
    })
}

fn github_claims(iss: &str) -> Value {
    json!({
        "jti": "example-id",
        "iss": iss,
        "sub": "repo:octo-org/octo-repo:environment:prod",
        "aud": "sigstore",
        "exp": now() + 300,
        "iat": now(),
        "nbf": now(),
        "environment": "prod",
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "sha": "abc123",
        "repository": "octo-org/octo-repo",
        "repository_id": "74",
        "repository_owner": "octo-org",
        "repository_owner_id": "65",
        "repository_visibility": "private",
        "run_id": 12345678901_u64,
        "run_number": "10",
        "run_attempt": "2",
        "runner_environment": "github-hosted",
        "actor": "octocat",
        "workflow": "example-workflow",
        "event_name": "workflow_dispatch",
        "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        "job_workflow_sha": "def456",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main",
        "workflow_sha": "789abc",
    })
}

fn ext(pairs: &[(u32, &str)]) -> Vec<SigstoreExtension> {
    pairs
        .iter()
        .map(|(oid_arc, v)| SigstoreExtension {
            oid_arc: *oid_arc,
            value: (*v).to_owned(),
        })
        .collect()
}

// ---- happy paths -----------------------------------------------------------------------------

#[tokio::test]
async fn dex_email_token_with_issuer_claim() {
    let k = keys();
    let idp = Idp::start(vec![k.rsa1.jwk.clone(), k.ec1.jwk.clone()]).await;
    let v = verifier(email_config(&idp.issuer, true));
    let token = mint(&k.rsa1, &dex_claims(&idp.issuer));
    let verified = v.verify(&token).await.expect("verify");
    assert_eq!(verified.issuer(), idp.issuer);
    assert_eq!(verified.issuer_config().issuer_type, IssuerType::Email);
    assert_eq!(verified.claims()["email"], "dev@example.com");
    let p = principal(&verified).expect("principal");
    assert_eq!(p.san, San::Email("dev@example.com".into()));
    assert_eq!(p.cert_issuer, "github");
    assert_eq!(p.pop_subject, "dev@example.com");
    assert_eq!(
        p.extensions,
        ext(&[(1, "github"), (8, "github"), (24, "CgUxMjM0NRIGZ2l0aHVi")])
    );

    // ES256 key of the same IdP; no IssuerClaim → cert issuer is the Dex URL.
    let v = verifier(email_config(&idp.issuer, false));
    let mut claims = dex_claims(&idp.issuer);
    claims["email_verified"] = json!("True");
    claims["aud"] = json!(["other", "sigstore"]);
    let p = principal(
        &v.verify(&mint(&k.ec1, &claims))
            .await
            .expect("verify ES256"),
    )
    .expect("principal");
    assert_eq!(p.cert_issuer, idp.issuer);
    assert_eq!(p.extensions[0].value, idp.issuer);
    // Discovery and keys were fetched once for both tokens of this verifier.
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn github_actions_token_maps_to_uri_san_and_extensions() {
    let k = keys();
    let idp = Idp::start(vec![k.rsa1.jwk.clone()]).await;
    let token = mint(&k.rsa1, &github_claims(&idp.issuer));
    let iss = idp.issuer.as_str();
    let expected = ext(&[
        (1, iss),
        (2, "workflow_dispatch"),
        (3, "abc123"),
        (4, "example-workflow"),
        (5, "octo-org/octo-repo"),
        (6, "refs/heads/main"),
        (8, iss),
        (
            9,
            "https://github.com/octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        ),
        (10, "def456"),
        (11, "github-hosted"),
        (12, "https://github.com/octo-org/octo-repo"),
        (13, "abc123"),
        (14, "refs/heads/main"),
        (15, "74"),
        (16, "https://github.com/octo-org"),
        (17, "65"),
        (
            18,
            "https://github.com/octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main",
        ),
        (19, "789abc"),
        (20, "workflow_dispatch"),
        (
            21,
            "https://github.com/octo-org/octo-repo/actions/runs/12345678901/attempts/2",
        ),
        (22, "private"),
        (23, "prod"),
        (24, "repo:octo-org/octo-repo:environment:prod"),
    ]);
    for ty in ["ci-provider", "github-workflow"] {
        let v = verifier(github_config(&idp.issuer, ty));
        let p = principal(&v.verify(&token).await.expect(ty)).expect(ty);
        assert_eq!(
            p.san,
            San::Uri(
                "https://github.com/octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main"
                    .into()
            ),
            "{ty}"
        );
        assert_eq!(p.cert_issuer, idp.issuer);
        assert_eq!(p.pop_subject, "repo:octo-org/octo-repo:environment:prod");
        assert_eq!(p.extensions, expected, "{ty}");
    }

    // No environment claim: extension 23 is omitted, not an error.
    let mut claims = github_claims(&idp.issuer);
    claims.as_object_mut().expect("obj").remove("environment");
    let v = verifier(github_config(&idp.issuer, "ci-provider"));
    let p = principal(&v.verify(&mint(&k.rsa1, &claims)).await.expect("verify")).expect("p");
    assert!(p.extensions.iter().all(|e| e.oid_arc != 23));
}

#[tokio::test]
async fn other_issuer_types() {
    let k = keys();
    let idp = Idp::start(vec![k.rsa1.jwk.clone()]).await;
    let iss = &idp.issuer;
    let base = |sub: &str| json!({"iss": iss, "sub": sub, "aud": "sigstore", "exp": now() + 60});

    let cfg = |ty: &str, extra: &str| {
        parse_identity_config(&format!(
            "oidc-issuers:\n  {iss}: {{issuer-url: {iss}, client-id: sigstore, type: {ty}{extra}}}\n"
        ))
        .expect(ty)
    };
    let run = |cfg: IdentityConfig, claims: Value| async move {
        let v = verifier(cfg);
        principal(&v.verify(&mint(&k.rsa1, &claims)).await?)
    };

    let mut c = base("system:serviceaccount:default:builder");
    c["kubernetes.io"] =
        json!({"namespace": "default", "serviceaccount": {"name": "builder", "uid": "x"}});
    let p = run(cfg("kubernetes", ""), c).await.expect("kubernetes");
    assert_eq!(
        p.san,
        San::Uri("https://kubernetes.io/namespaces/default/serviceaccounts/builder".into())
    );

    let p = run(
        cfg("spiffe", ", spiffe-trust-domain: example.org"),
        base("spiffe://example.org/ns/prod/sa/app"),
    )
    .await
    .expect("spiffe");
    assert_eq!(
        p.san,
        San::Uri("spiffe://example.org/ns/prod/sa/app".into())
    );
    let e = run(
        cfg("spiffe", ", spiffe-trust-domain: example.org"),
        base("spiffe://evil.org/ns/prod"),
    )
    .await
    .expect_err("other trust domain");
    assert!(e.to_string().contains("trust domain"), "{e}");

    let p = run(
        cfg("uri", ", subject-domain: \"http://127.0.0.1\""),
        base("http://127.0.0.1/users/alice"),
    )
    .await
    .expect("uri");
    assert_eq!(p.san, San::Uri("http://127.0.0.1/users/alice".into()));

    let p = run(
        cfg("username", ", subject-domain: 127.0.0.1"),
        base("alice"),
    )
    .await
    .expect("username");
    assert_eq!(
        p.san,
        San::OtherName {
            type_id: "1.3.6.1.4.1.57264.1.7",
            value: "alice!127.0.0.1".into()
        }
    );
    assert_eq!(p.pop_subject, "alice");
    let e = run(cfg("username", ", subject-domain: 127.0.0.1"), base("a!b"))
        .await
        .expect_err("bang");
    assert!(e.to_string().contains('!'), "{e}");

    let e = run(cfg("gitlab-pipeline", ""), base("project_path:g/p"))
        .await
        .expect_err("gitlab");
    assert!(matches!(e, OidcError::UnsupportedIssuerType(_)), "{e}");
    assert!(e.to_string().contains("not supported"), "{e}");
}

// ---- refusals --------------------------------------------------------------------------------

async fn refused(v: &Verifier, token: &str) -> OidcError {
    let e = v.verify(token).await.expect_err("token must be refused");
    let msg = e.to_string();
    assert!(!msg.contains(token), "message leaks the token: {msg}");
    assert!(e.is_client_error());
    e
}

#[tokio::test]
async fn refusals() {
    let k = keys();
    let idp = Idp::start(vec![k.rsa1.jwk.clone()]).await;
    let iss = idp.issuer.clone();
    let v = verifier(email_config(&iss, true));
    let good = dex_claims(&iss);
    let with = |key: &str, val: Value| {
        let mut c = good.clone();
        c[key] = val;
        c
    };

    let e = refused(&v, &mint(&k.rsa1, &with("exp", json!(now() - 1)))).await;
    assert_eq!(e, OidcError::Expired);
    assert!(e.to_string().contains("expired"));

    let e = refused(&v, &mint(&k.rsa1, &with("nbf", json!(now() + 600)))).await;
    assert_eq!(e, OidcError::NotYetValid);
    // Within go-oidc's 5 minutes it is fine.
    v.verify(&mint(&k.rsa1, &with("nbf", json!(now() + 200))))
        .await
        .expect("nbf within leeway");

    let e = refused(&v, &mint(&k.rsa1, &with("aud", json!("not-sigstore")))).await;
    assert!(matches!(e, OidcError::WrongAudience { .. }), "{e}");
    assert!(e.to_string().contains("sigstore"));

    let e = refused(
        &v,
        &mint(&k.rsa1, &with("iss", json!("https://unknown.example/auth"))),
    )
    .await;
    assert_eq!(
        e,
        OidcError::UnknownIssuer("https://unknown.example/auth".into())
    );

    // Tampered payload: the signature no longer matches.
    let token = mint(&k.rsa1, &good);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&with("email", json!("admin@example.com"))).expect("json"));
    let e = refused(&v, &parts.join(".")).await;
    assert_eq!(e, OidcError::BadSignature);
    // Signed by another key under a published kid.
    let e = refused(&v, &mint_with_kid(&k.rsa2, "rsa-1", &good)).await;
    assert_eq!(e, OidcError::BadSignature);

    let e = refused(&v, &mint_with_kid(&k.rsa1, "no-such-kid", &good)).await;
    assert!(matches!(e, OidcError::UnknownKid { .. }), "{e}");

    // alg none: header + payload, empty signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good).expect("json"))
    );
    let e = refused(&v, &none).await;
    assert!(matches!(e, OidcError::AlgNotAllowed { .. }), "{e}");
    assert!(e.to_string().contains("unsigned"), "{e}");

    // HS256 keyed with the RSA public key (the classic key-confusion attack).
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let hs = jsonwebtoken::encode(
        &header,
        &good,
        &EncodingKey::from_secret(k.rsa1.public_pem.as_bytes()),
    )
    .expect("hs256");
    let e = refused(&v, &hs).await;
    assert!(matches!(e, OidcError::AlgNotAllowed { .. }), "{e}");
    assert!(e.to_string().contains("HMAC"), "{e}");

    // email_verified false → verify passes, principal refuses.
    let t = mint(&k.rsa1, &with("email_verified", json!(false)));
    let e = principal(&v.verify(&t).await.expect("signature fine")).expect_err("unverified");
    assert!(matches!(e, OidcError::EmailNotVerified(_)), "{e}");
    // ... unless the issuer skips the check.
    let skip = parse_identity_config(&format!(
        "oidc-issuers:\n  {iss}: {{issuer-url: {iss}, client-id: sigstore, type: email, skip-email-verification: true}}\n"
    ))
    .expect("config");
    principal(&verifier(skip).verify(&t).await.expect("verify")).expect("skip verification");

    // Dex without scope federated:id: IssuerClaim missing → a 400 naming the claim.
    let mut c = good.clone();
    c.as_object_mut().expect("obj").remove("federated_claims");
    let e = principal(&v.verify(&mint(&k.rsa1, &c)).await.expect("verify")).expect_err("claim");
    assert_eq!(
        e,
        OidcError::MissingClaim("federated_claims.connector_id".into())
    );

    let e = refused(&v, "not-a-jwt").await;
    assert!(matches!(e, OidcError::Malformed(_)), "{e}");
}

#[tokio::test]
async fn missing_github_claim_is_named() {
    let k = keys();
    let idp = Idp::start(vec![k.rsa1.jwk.clone()]).await;
    for ty in ["ci-provider", "github-workflow"] {
        let v = verifier(github_config(&idp.issuer, ty));
        let mut claims = github_claims(&idp.issuer);
        claims
            .as_object_mut()
            .expect("obj")
            .remove("job_workflow_ref");
        let verified = v.verify(&mint(&k.rsa1, &claims)).await.expect("verify");
        let e = principal(&verified).expect_err("missing claim");
        assert_eq!(
            e,
            OidcError::MissingClaim("job_workflow_ref".into()),
            "{ty}"
        );
        assert!(e.to_string().contains("job_workflow_ref"));
    }
    // The legacy type requires repository_visibility even though no template needs it... it is
    // used by extension 22, so both agree; run_attempt likewise.
    let v = verifier(github_config(&idp.issuer, "github-workflow"));
    let mut claims = github_claims(&idp.issuer);
    claims.as_object_mut().expect("obj").remove("run_attempt");
    let e = principal(&v.verify(&mint(&k.rsa1, &claims)).await.expect("v")).expect_err("missing");
    assert_eq!(e, OidcError::MissingClaim("run_attempt".into()));
}

#[tokio::test]
async fn discovery_issuer_mismatch() {
    let k = keys();
    let idp = Idp::start(vec![k.rsa1.jwk.clone()]).await;
    *idp.state.discovery_issuer.lock().expect("lock") = Some(format!("{}/", idp.issuer));
    let v = verifier(email_config(&idp.issuer, false));
    let e = refused(&v, &mint(&k.rsa1, &dex_claims(&idp.issuer))).await;
    assert!(matches!(e, OidcError::IssuerMismatch { .. }), "{e}");
    assert_eq!(
        idp.jwks_hits(),
        0,
        "keys are not fetched for a mismatching issuer"
    );
}

#[tokio::test]
async fn discovery_failure_is_reported_and_remembered() {
    let k = keys();
    // Nothing listens on this issuer's port once the listener is dropped.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let iss = format!("http://{}/auth", listener.local_addr().expect("addr"));
    drop(listener);
    let v = verifier(email_config(&iss, false));
    let token = mint(&k.rsa1, &dex_claims(&iss));
    let e = refused(&v, &token).await;
    assert!(matches!(e, OidcError::Discovery { .. }), "{e}");
    assert_eq!(refused(&v, &token).await, e);
}

#[tokio::test]
async fn https_issuer_with_per_issuer_ca_cert() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    let (idp, ca_pem) = Idp::start_tls(vec![k.rsa1.jwk.clone()], dir.path()).await;
    let config = |ca: Option<&str>| {
        let mut issuer = json!({"IssuerURL": idp.issuer, "ClientID": "sigstore", "Type": "email"});
        if let Some(ca) = ca {
            issuer["CACert"] = json!(ca);
        }
        parse_identity_config(&json!({"OIDCIssuers": {idp.issuer.clone(): issuer}}).to_string())
            .expect("config")
    };
    let token = mint(&k.rsa1, &dex_claims(&idp.issuer));
    let v = verifier(config(Some(&ca_pem)));
    let p = principal(&v.verify(&token).await.expect("https with CACert")).expect("principal");
    assert_eq!(p.san, San::Email("dev@example.com".into()));

    // Without CACert only the system roots count, and they do not know the private CA.
    let e = refused(&verifier(config(None)), &token).await;
    assert!(matches!(e, OidcError::Discovery { .. }), "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
}

// ---- keys over time --------------------------------------------------------------------------

#[tokio::test]
async fn key_rotation_is_picked_up_without_restart() {
    let k = keys();
    let idp = Idp::start(vec![k.rsa1.jwk.clone()]).await;
    let v = verifier(email_config(&idp.issuer, true));
    let claims = dex_claims(&idp.issuer);
    v.verify(&mint(&k.rsa1, &claims)).await.expect("old key");
    assert_eq!(idp.jwks_hits(), 1);

    idp.publish(vec![k.rsa2.jwk.clone()]);
    v.verify(&mint(&k.rsa2, &claims))
        .await
        .expect("new key after rotation");
    assert_eq!(idp.jwks_hits(), 2);
    // Known kid: no further fetch.
    v.verify(&mint(&k.rsa2, &claims))
        .await
        .expect("new key again");
    assert_eq!(idp.jwks_hits(), 2);
    // The retired key is gone from the cache too.
    let e = refused(&v, &mint(&k.rsa1, &claims)).await;
    assert!(matches!(e, OidcError::UnknownKid { .. }), "{e}");
}

#[tokio::test]
async fn unknown_kid_flood_refetches_at_most_once_per_interval() {
    let k = keys();
    let idp = Idp::start(vec![k.rsa1.jwk.clone()]).await;
    let interval = Duration::from_millis(400);
    let v = Arc::new(Verifier::new(
        email_config(&idp.issuer, false),
        VerifierOptions {
            jwks_refetch_interval: interval,
            ..VerifierOptions::default()
        },
    ));
    let claims = dex_claims(&idp.issuer);
    v.verify(&mint(&k.rsa1, &claims)).await.expect("warm up");
    assert_eq!(idp.jwks_hits(), 1);

    let mut tasks = Vec::new();
    for i in 0..64 {
        let v = v.clone();
        let t = mint_with_kid(&k.rsa1, &format!("bogus-{i}"), &claims);
        tasks.push(tokio::spawn(async move { v.verify(&t).await }));
    }
    for t in tasks {
        let r = t.await.expect("join");
        assert!(matches!(r, Err(OidcError::UnknownKid { .. })));
    }
    assert_eq!(idp.jwks_hits(), 2, "64 unknown kids → one refetch");

    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    for i in 0..8 {
        let t = mint_with_kid(&k.rsa1, &format!("again-{i}"), &claims);
        assert!(v.verify(&t).await.is_err());
    }
    assert_eq!(idp.jwks_hits(), 3, "one more refetch in the next interval");
    assert_eq!(idp.state.discovery_hits.load(Ordering::SeqCst), 1);
}

// ---- config ----------------------------------------------------------------------------------

const GITHUB_METADATA_YAML: &str = r#"
    default-template-values:
      url: "https://github.com"
      environment: ""
    extension-templates:
      github-workflow-trigger: "event_name"
      github-workflow-sha: "sha"
      github-workflow-name: "workflow"
      github-workflow-repository: "repository"
      github-workflow-ref: "ref"
      build-signer-uri: "{{ .url }}/{{ .job_workflow_ref }}"
      build-signer-digest: "job_workflow_sha"
      runner-environment: "runner_environment"
      source-repository-uri: "{{ .url }}/{{ .repository }}"
      source-repository-digest: "sha"
      source-repository-ref: "ref"
      source-repository-identifier: "repository_id"
      source-repository-owner-uri: "{{ .url }}/{{ .repository_owner }}"
      source-repository-owner-identifier: "repository_owner_id"
      build-config-uri: "{{ .url }}/{{ .workflow_ref }}"
      build-config-digest: "workflow_sha"
      build-trigger: "event_name"
      run-invocation-uri: "{{ .url }}/{{ .repository }}/actions/runs/{{ .run_id }}/attempts/{{ .run_attempt }}"
      source-repository-visibility-at-signing: "repository_visibility"
      deployment-environment: "environment"
    subject-alternative-name-template: "{{ .url }}/{{ .job_workflow_ref }}"
"#;

fn contract_yaml() -> String {
    format!(
        r#"oidc-issuers:
  https://dex.example/auth: {{issuer-url: https://dex.example/auth, client-id: sigstore, type: email, issuer-claim: $.federated_claims.connector_id}}
  https://token.actions.githubusercontent.com: {{issuer-url: https://token.actions.githubusercontent.com, client-id: sigstore, type: ci-provider, ci-provider: github-workflow}}
meta-issuers:   # GitHub Enterprise per-slug issuers
  https://token.actions.githubusercontent.com/*: {{client-id: sigstore, type: ci-provider, ci-provider: github-workflow}}
ci-issuer-metadata:
  github-workflow:{GITHUB_METADATA_YAML}"#
    )
}

const CONTRACT_JSON: &str = r#"{
  "OIDCIssuers": {
    "https://dex.example/auth": {"IssuerURL": "https://dex.example/auth", "ClientID": "sigstore", "Type": "email", "IssuerClaim": "$.federated_claims.connector_id"},
    "https://token.actions.githubusercontent.com": {"IssuerURL": "https://token.actions.githubusercontent.com", "ClientID": "sigstore", "Type": "ci-provider", "CIProvider": "github-workflow"}
  },
  "MetaIssuers": {
    "https://token.actions.githubusercontent.com/*": {"ClientID": "sigstore", "Type": "ci-provider", "CIProvider": "github-workflow"}
  },
  "CIIssuerMetadata": {
    "github-workflow": {
      "DefaultTemplateValues": {"url": "https://github.com", "environment": ""},
      "ExtensionTemplates": {
        "GithubWorkflowTrigger": "event_name", "GithubWorkflowSHA": "sha", "GithubWorkflowName": "workflow",
        "GithubWorkflowRepository": "repository", "GithubWorkflowRef": "ref",
        "BuildSignerURI": "{{ .url }}/{{ .job_workflow_ref }}", "BuildSignerDigest": "job_workflow_sha",
        "RunnerEnvironment": "runner_environment", "SourceRepositoryURI": "{{ .url }}/{{ .repository }}",
        "SourceRepositoryDigest": "sha", "SourceRepositoryRef": "ref", "SourceRepositoryIdentifier": "repository_id",
        "SourceRepositoryOwnerURI": "{{ .url }}/{{ .repository_owner }}", "SourceRepositoryOwnerIdentifier": "repository_owner_id",
        "BuildConfigURI": "{{ .url }}/{{ .workflow_ref }}", "BuildConfigDigest": "workflow_sha", "BuildTrigger": "event_name",
        "RunInvocationURI": "{{ .url }}/{{ .repository }}/actions/runs/{{ .run_id }}/attempts/{{ .run_attempt }}",
        "SourceRepositoryVisibilityAtSigning": "repository_visibility", "DeploymentEnvironment": "environment"
      },
      "SubjectAlternativeNameTemplate": "{{ .url }}/{{ .job_workflow_ref }}"
    }
  }
}"#;

#[test]
fn contract_json_and_yaml_parse_to_the_same_config() {
    let yaml = parse_identity_config(&contract_yaml()).expect("yaml");
    let json = parse_identity_config(CONTRACT_JSON).expect("json");
    assert_eq!(yaml, json);
    // The file's github-workflow entry equals the built-in one, so omitting it changes nothing.
    let without = contract_yaml();
    let without = &without[..without.find("ci-issuer-metadata").expect("section")];
    assert_eq!(parse_identity_config(without).expect("no metadata"), yaml);

    let gh = yaml
        .issuer_for("https://token.actions.githubusercontent.com/acme")
        .expect("meta issuer");
    assert_eq!(
        gh.issuer_url,
        "https://token.actions.githubusercontent.com/acme"
    );
    assert_eq!(gh.issuer_type, IssuerType::CiProvider);
    assert!(
        yaml.issuer_for("https://token.actions.githubusercontent.com/a/b")
            .is_none()
    );
    let dex = &yaml.oidc_issuers["https://dex.example/auth"];
    assert_eq!(dex.issuer_claim, "$.federated_claims.connector_id");
    assert_eq!(dex.client_id, "sigstore");
}

#[test]
fn upstream_style_yaml_with_anchors_and_other_providers_parses() {
    let text = r#"
define:
  - &github-type "github-workflow"
  - &gitlab-type "gitlab-pipeline"
oidc-issuers:
  https://accounts.google.com:
    issuer-url: https://accounts.google.com
    client-id: sigstore
    type: email
    contact: tac@sigstore.dev
    description: "Google OIDC auth"
  https://gitlab.com:
    issuer-url: https://gitlab.com
    client-id: sigstore
    type: ci-provider
    ci-provider: *gitlab-type
meta-issuers:
  https://oidc.eks.*.amazonaws.com/id/*:
    client-id: sigstore
    type: kubernetes
ci-issuer-metadata:
  *gitlab-type:
    default-template-values:
      url: "https://gitlab.com"
    extension-templates:
      build-signer-uri: "https://{{ .ci_config_ref_uri }}"
      source-repository-ref: refs/{{if eq .ref_type "branch"}}heads/{{ else }}tags/{{end}}{{ .ref }}
    subject-alternative-name-template: "https://{{ .ci_config_ref_uri }}"
  circleci-job:
    default-template-values:
      api_url: "https://circleci.com/api/v2"
    extension-templates:
      build-config-uri: '{{.api_url}}/pipeline/{{(index . "oidc.circleci.com/pipeline-id")}}/config'
    subject-alternative-name-template: '{{.api_url}}/projects/{{(index . "oidc.circleci.com/project-id")}}'
"#;
    let cfg = parse_identity_config(text).expect("upstream-style yaml");
    assert_eq!(
        cfg.oidc_issuers["https://accounts.google.com"].contact,
        "tac@sigstore.dev"
    );
    assert!(cfg.ci_issuer_metadata.contains_key("gitlab-pipeline"));
    assert!(
        cfg.ci_issuer_metadata.contains_key("github-workflow"),
        "built-in kept"
    );
    assert!(
        cfg.issuer_for("https://oidc.eks.us-west-2.amazonaws.com/id/B02C93B6A2D3")
            .is_some()
    );
}

#[test]
fn invalid_configs_are_refused_with_reasons() {
    let cases: &[(&str, &str)] = &[
        (
            "oidc-issuers:\n  https://s.example.com: {issuer-url: https://s.example.com, client-id: sigstore, type: spiffe}\n",
            "spiffe-trust-domain",
        ),
        (
            "meta-issuers:\n  https://*.example.com: {client-id: sigstore, type: spiffe, spiffe-trust-domain: example.com}\n",
            "SPIFFE meta issuers",
        ),
        (
            "oidc-issuers:\n  https://accounts.example.com: {issuer-url: https://accounts.example.com, client-id: sigstore, type: uri, subject-domain: https://example.org}\n",
            "second-level",
        ),
        (
            "oidc-issuers:\n  https://accounts.example.com: {issuer-url: https://accounts.example.com, client-id: sigstore, type: uri, subject-domain: example.com}\n",
            "scheme",
        ),
        (
            "oidc-issuers:\n  https://accounts.example.com: {issuer-url: https://accounts.example.com, client-id: sigstore, type: username, subject-domain: https://example.com}\n",
            "without scheme",
        ),
        (
            "oidc-issuers:\n  https://k.example.com: {issuer-url: https://k.example.com, client-id: sigstore, type: kubernetes, issuer-claim: $.a}\n",
            "only email issuers",
        ),
        (
            "oidc-issuers:\n  https://ci.example.com: {issuer-url: https://ci.example.com, client-id: sigstore, type: ci-provider, ci-provider: nope}\n",
            "no ci-issuer-metadata entry",
        ),
        (
            "oidc-issuers:\n  http://dex.example.com: {issuer-url: http://dex.example.com, client-id: sigstore, type: email}\n",
            "loopback",
        ),
        (
            "oidc-issuers:\n  https://x.example.com: {issuer-url: https://x.example.com, client-id: sigstore, type: magic}\n",
            "unknown type",
        ),
        (
            "oidc-issuers:\n  https://x.example.com: {issuer-url: https://x.example.com, client-id: sigstore, type: email, isuer-claim: $.a}\n",
            "isuer-claim",
        ),
        (
            "oidc-issuers:\n  https://x.example.com: {issuer-url: https://y.example.com, client-id: sigstore, type: email}\n",
            "must equal",
        ),
        (
            "oidc-issuers:\n  https://x.example.com: {issuer-url: https://x.example.com, type: email}\n",
            "client-id",
        ),
        (
            "oidc-issuers:\n  https://x.example.com: {issuer-url: https://x.example.com, client-id: sigstore, type: email, ca-cert: nonsense}\n",
            "ca-cert",
        ),
        (
            "ci-issuer-metadata:\n  mine: {subject-alternative-name-template: \"{{ printf .x }}\"}\n",
            "printf",
        ),
        (
            "{\"OIDCIssuers\": {\"https://x.example.com\": }",
            "not valid JSON",
        ),
    ];
    for (text, needle) in cases {
        let e = parse_identity_config(text).expect_err(text);
        let msg = e.to_string();
        assert!(!e.is_client_error());
        assert!(
            msg.contains(needle),
            "{text}\n→ {msg}\n(expected {needle:?})"
        );
    }
}
