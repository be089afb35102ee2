//! Fulcio's HTTP API at the origin root (sigstore-python drops any path in the Fulcio URL).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use super::{Ca, FulcioError, KeyProof};

#[derive(Default)]
pub struct Metrics {
    pub issued: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
}

/// The service's state. The CA is swapped whole by a reload (`systemctl reload`, SIGHUP): each
/// request takes the CA current when it starts and uses that one throughout, so a certificate is
/// always answered with the chain of the CA that signed it, and nothing is refused meanwhile.
#[derive(Clone)]
pub struct AppState {
    ca: Arc<RwLock<Arc<Ca>>>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(ca: Ca) -> Self {
        Self {
            ca: Arc::new(RwLock::new(Arc::new(ca))),
            metrics: Arc::default(),
        }
    }

    /// The CA requests use from now on.
    pub fn ca(&self) -> Arc<Ca> {
        Arc::clone(&self.ca.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Serve with `ca` from the next request on; requests under way finish with the old one.
    pub fn replace_ca(&self, ca: Ca) {
        *self.ca.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ca);
    }
}

/// Errors in Fulcio's JSON shape: `{"code": <gRPC code>, "message": "...", "details": []}`.
pub struct ApiError(pub FulcioError);

impl From<FulcioError> for ApiError {
    fn from(e: FulcioError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "certificate request failed");
        }
        (
            status,
            Json(serde_json::json!({
                "code": self.0.grpc_code(),
                "message": self.0.to_string(),
                "details": [],
            })),
        )
            .into_response()
    }
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError(FulcioError::InvalidArgument(m.into()))
}

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/api/v2/signingCert", post(signing_cert_v2))
        .route("/api/v2/trustBundle", get(trust_bundle))
        .route("/api/v2/configuration", get(configuration))
        .route("/api/v1/signingCert", post(signing_cert_v1))
        .route("/api/v1/rootCert", get(root_cert))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(tower_http::cors::CorsLayer::permissive())
        .with_state(state)
}

/// Ready when the CT log answers with a tree head that verifies with the configured log key:
/// without its SCT no certificate can be issued.
async fn readyz(State(st): State<AppState>) -> Response {
    let ca = st.ca();
    if let Some(why) = ca.hsm_failing() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    }
    match ca.ct_log_ready().await {
        Ok(size) => (StatusCode::OK, format!("ready\nct log tree size {size}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    #[serde(alias = "oidc_identity_token")]
    oidc_identity_token: Option<String>,
}

#[derive(Deserialize)]
struct PublicKeyV2 {
    #[serde(default)]
    #[allow(dead_code)]
    algorithm: Option<String>,
    content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyRequest {
    #[serde(alias = "public_key")]
    public_key: PublicKeyV2,
    #[serde(alias = "proof_of_possession")]
    proof_of_possession: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SigningCertV2 {
    #[serde(default)]
    credentials: Option<Credentials>,
    #[serde(default, alias = "public_key_request")]
    public_key_request: Option<PublicKeyRequest>,
    #[serde(default, alias = "certificate_signing_request")]
    certificate_signing_request: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
}

/// How much of a refusal's reason the audit line keeps.
const AUDIT_REASON_CHARS: usize = 160;

fn count<T>(st: &AppState, r: &Result<T, ApiError>) {
    let m = &st.metrics;
    match r {
        Ok(_) => m.issued.fetch_add(1, Ordering::Relaxed),
        // A refusal is what the one mapping, FulcioError::status, calls the client's fault.
        Err(ApiError(e)) if e.status() == 400 => {
            let why = e.to_string();
            // The audit trail of refusals (bad tokens, proofs, keys). The reason may quote the
            // request (an issuer URL, an email; serde quotes a string in the wrong place, which
            // could be a token): Debug form, so it cannot forge a log line, and cut short, so a
            // quoted token never reaches the log whole (its signature is at its end).
            let reason: String = why.chars().take(AUDIT_REASON_CHARS).collect();
            tracing::info!(target: "sigvault::audit", reason = ?reason, "refused a certificate request");
            m.rejected.fetch_add(1, Ordering::Relaxed)
        }
        Err(_) => m.failed.fetch_add(1, Ordering::Relaxed),
    };
}

async fn signing_cert_v2(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = v2(&st, &headers, &body).await;
    count(&st, &r);
    match r {
        Ok(chain) => (
            StatusCode::OK,
            Json(serde_json::json!({
                "signedCertificateEmbeddedSct": { "chain": { "certificates": chain } }
            })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn v2(st: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, ApiError> {
    let req: SigningCertV2 = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "malformed request: {}",
            crate::http::json_error_text(&e)
        ))
    })?;
    let token = req
        .credentials
        .and_then(|c| c.oidc_identity_token)
        .filter(|t| !t.is_empty())
        .or_else(|| bearer(headers))
        .ok_or_else(|| invalid("no identity token: send credentials.oidcIdentityToken or an Authorization: Bearer header"))?;
    match (req.public_key_request, req.certificate_signing_request) {
        (Some(pk), None) => {
            let sig = base64_field(&pk.proof_of_possession, "proofOfPossession")?;
            let proof = KeyProof::Signature {
                public_key: pk.public_key.content.as_bytes(),
                signature: &sig,
            };
            issue_chain(st, &token, proof).await
        }
        (None, Some(csr)) => {
            let csr = base64_field(&csr, "certificateSigningRequest")?;
            issue_chain(st, &token, KeyProof::Csr(&csr)).await
        }
        _ => Err(invalid(
            "send exactly one of publicKeyRequest or certificateSigningRequest",
        )),
    }
}

/// Issue a certificate and answer with the chain: the leaf, then the CA chain.
async fn issue_chain(
    st: &AppState,
    token: &str,
    proof: KeyProof<'_>,
) -> Result<Vec<String>, ApiError> {
    let ca = st.ca();
    let leaf = ca.issue(token, proof).await?;
    let mut chain = vec![leaf];
    chain.extend(ca.chain_pem().iter().cloned());
    Ok(chain)
}

/// A base64 request field, decoded; a 400 naming the field otherwise.
fn base64_field(value: &str, name: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(value.trim())
        .map_err(|_| invalid(format!("{name} is not base64")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyV1 {
    #[serde(default)]
    #[allow(dead_code)]
    algorithm: Option<String>,
    content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SigningCertV1 {
    #[serde(default, alias = "public_key")]
    public_key: Option<PublicKeyV1>,
    #[serde(default, alias = "signed_email_address")]
    signed_email_address: Option<String>,
    #[serde(default, alias = "certificate_signing_request")]
    certificate_signing_request: Option<String>,
}

async fn signing_cert_v1(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = v1(&st, &headers, &body).await;
    count(&st, &r);
    match r {
        Ok(chain) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
            chain.join(""),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn v1(st: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, ApiError> {
    let token = bearer(headers).ok_or_else(|| {
        invalid("the v1 API takes the identity token in an Authorization: Bearer header")
    })?;
    let req: SigningCertV1 = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "malformed request: {}",
            crate::http::json_error_text(&e)
        ))
    })?;
    match (req.public_key, req.certificate_signing_request) {
        (Some(pk), None) => {
            // v1: content is base64 of PEM or DER.
            let key = base64_field(&pk.content, "publicKey.content")?;
            let sig = base64_field(
                req.signed_email_address.as_deref().unwrap_or_default(),
                "signedEmailAddress",
            )?;
            let proof = KeyProof::Signature {
                public_key: &key,
                signature: &sig,
            };
            issue_chain(st, &token, proof).await
        }
        (None, Some(csr)) => {
            let csr = base64_field(&csr, "certificateSigningRequest")?;
            issue_chain(st, &token, KeyProof::Csr(&csr)).await
        }
        _ => Err(invalid(
            "send exactly one of publicKey or certificateSigningRequest",
        )),
    }
}

async fn trust_bundle(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "chains": [ { "certificates": st.ca().chain_pem() } ] }))
}

async fn root_cert(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        st.ca().chain_pem().join(""),
    )
        .into_response()
}

/// The issuers this CA accepts, in Fulcio's `/api/v2/configuration` shape (empty fields
/// emitted, as upstream does).
async fn configuration(State(st): State<AppState>) -> Json<serde_json::Value> {
    let ca = st.ca();
    let cfg = ca.verifier().config();
    let mut issuers = Vec::new();
    let entry = |url_key: &str, url: &str, i: &crate::oidc::config::OidcIssuer| {
        serde_json::json!({
            url_key: url,
            "audience": i.client_id,
            "challengeClaim": if i.challenge_claim.is_empty() { i.issuer_type.default_challenge_claim().to_owned() } else { i.challenge_claim.clone() },
            "spiffeTrustDomain": i.spiffe_trust_domain,
            "issuerType": i.issuer_type.as_str(),
            "subjectDomain": i.subject_domain,
            "skipEmailVerification": i.skip_email_verification,
        })
    };
    for (url, i) in &cfg.oidc_issuers {
        issuers.push(entry("issuerUrl", url, i));
    }
    for (pattern, i) in &cfg.meta_issuers {
        issuers.push(entry("wildcardIssuerUrl", pattern, i));
    }
    Json(serde_json::json!({ "issuers": issuers }))
}

async fn metrics(State(st): State<AppState>) -> Response {
    let m = &st.metrics;
    let mut s = String::new();
    for (name, help, v) in [
        (
            "sigvault_fulcio_certificates_issued_total",
            "Certificates issued.",
            &m.issued,
        ),
        (
            "sigvault_fulcio_requests_rejected_total",
            "Requests refused (400).",
            &m.rejected,
        ),
        (
            "sigvault_fulcio_requests_failed_total",
            "Requests that failed (5xx).",
            &m.failed,
        ),
    ] {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    s.push_str(&crate::hsm::metrics_text());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}
