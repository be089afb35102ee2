//! Token verification with go-oidc's semantics (as sigstore/fulcio uses go-oidc's `IDTokenVerifier`).
//!
//! Order: parse the JWS (rejecting `none` and HMAC algorithms outright), read the unverified
//! `iss` only to pick the issuer config, load that issuer's discovery document and JWKS (cached),
//! check the algorithm against the issuer's advertised list and our allow-list, verify the
//! signature, and only then judge the claims (`aud`, `exp`, `nbf`). Claims of an unverified token
//! never reach an error message beyond `iss`.
//!
//! Fetch policy: discovery and keys are cached per issuer and refreshed when older than
//! `max_jwks_age`. A token whose `kid` is unknown triggers one JWKS refetch, at most once per
//! `jwks_refetch_interval` per issuer, so a flood of made-up `kid`s cannot make us hammer the
//! IdP; a failed discovery is remembered for the same interval. Requests for one issuer are
//! serialised by a per-issuer lock, so concurrent misses cause one fetch, not many.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::OidcError;
use super::config::{
    IdentityConfig, IssuerMetadata, IssuerType, OidcIssuer, UrlParts, check_issuer_url,
    github_workflow_metadata, is_loopback_host, parse_url,
};
use crate::http::client::{Client, Endpoint};

/// Algorithms accepted unless [`VerifierOptions::allowed_algs`] says otherwise.
pub const DEFAULT_ALLOWED_ALGS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Largest token accepted (GitHub's are ~1.5 KiB; Fulcio's body cap is far larger).
const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Largest discovery document or JWKS accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Same-host redirects followed when fetching discovery or keys.
const MAX_REDIRECTS: usize = 5;
/// Issuers whose state is kept (meta issuers let clients pick many URLs).
const MAX_CACHED_ISSUERS: usize = 256;
/// go-oidc's allowance for `nbf` in the future.
const NBF_LEEWAY_SECS: f64 = 300.0;
/// Smallest RSA modulus accepted in a JWKS, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Tuning of a [`Verifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierOptions {
    /// Limit for each discovery or JWKS request (Fulcio: 10 s).
    pub http_timeout: Duration,
    /// Refresh an issuer's discovery document and keys once they are this old.
    pub max_jwks_age: Duration,
    /// Signature algorithms accepted (also limited per issuer by its discovery document).
    /// HMAC algorithms are removed whatever is listed here: a JWKS key is public.
    pub allowed_algs: Vec<Algorithm>,
    /// Minimum time between two JWKS refetches caused by unknown `kid`s, and how long a failed
    /// discovery is remembered, per issuer.
    pub jwks_refetch_interval: Duration,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            http_timeout: Duration::from_secs(10),
            max_jwks_age: Duration::from_secs(3600),
            allowed_algs: DEFAULT_ALLOWED_ALGS.to_vec(),
            jwks_refetch_interval: Duration::from_secs(10),
        }
    }
}

/// A token whose signature, issuer, audience and validity period were checked by
/// [`Verifier::verify`], the only constructor.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    issuer: String,
    claims: Map<String, Value>,
    issuer_config: OidcIssuer,
    ci_metadata: Option<IssuerMetadata>,
}

impl VerifiedToken {
    /// The token's `iss` (verified to be a configured issuer).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// All claims of the token's payload.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The configuration that accepted it (for a meta issuer: instantiated with `iss`).
    pub fn issuer_config(&self) -> &OidcIssuer {
        &self.issuer_config
    }

    /// Templates for `ci-provider` and `github-workflow` issuers.
    pub(crate) fn ci_metadata(&self) -> Option<&IssuerMetadata> {
        self.ci_metadata.as_ref()
    }
}

/// Verifies identity tokens against an [`IdentityConfig`]. Share one per process (it caches
/// discovery documents and keys).
pub struct Verifier {
    config: IdentityConfig,
    options: VerifierOptions,
    issuers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<IssuerState>>>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct IssuerState {
    provider: Option<Provider>,
    /// When discovery or keys last failed to load, and why.
    failure: Option<(Instant, OidcError)>,
    /// Last JWKS refetch caused by an unknown `kid`.
    last_kid_refetch: Option<Instant>,
}

struct Provider {
    jwks_uri: String,
    /// `id_token_signing_alg_values_supported`, RS256 if absent.
    algs: Vec<String>,
    keys: Vec<Jwk>,
    fetched_at: Instant,
}

#[derive(Clone)]
struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    kind: KeyKind,
    key: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }
}

/// The three parts of a compact JWS, decoded where needed.
struct Jws<'a> {
    signing_input: &'a str,
    signature: &'a str,
    alg: Algorithm,
    alg_name: String,
    kid: Option<String>,
    claims: Map<String, Value>,
}

impl Verifier {
    /// A verifier for `config`. HMAC algorithms in `options.allowed_algs` are dropped.
    pub fn new(config: IdentityConfig, mut options: VerifierOptions) -> Self {
        options
            .allowed_algs
            .retain(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
        Self {
            config,
            options,
            issuers: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration this verifier enforces.
    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// Verify `token` (a compact JWS) and return its claims as evidence.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, OidcError> {
        let jws = parse_jws(token)?;
        if !self.options.allowed_algs.contains(&jws.alg) {
            return Err(OidcError::AlgNotAllowed {
                alg: jws.alg_name,
                reason: "not in this CA's allow-list".into(),
            });
        }
        let (iss, issuer_config, ci_metadata) = bind_issuer(&self.config, &jws.claims)?;

        let keys = self.keys_for(&iss, &issuer_config, &jws).await?;
        let verified = keys.iter().any(|k| {
            jsonwebtoken::crypto::verify(
                jws.signature,
                jws.signing_input.as_bytes(),
                &k.key,
                jws.alg,
            )
            .unwrap_or(false)
        });
        if !verified {
            tracing::debug!(issuer = %iss, alg = %jws.alg_name, "identity token signature invalid");
            return Err(OidcError::BadSignature);
        }
        check_claims(&jws.claims, &issuer_config.client_id)?;
        Ok(VerifiedToken {
            issuer: iss,
            claims: jws.claims,
            issuer_config,
            ci_metadata,
        })
    }

    fn state(&self, iss: &str) -> Arc<tokio::sync::Mutex<IssuerState>> {
        let mut map = self.issuers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = map.get(iss) {
            return s.clone();
        }
        if map.len() >= MAX_CACHED_ISSUERS {
            // Meta issuers only: drop one unused entry (fixed issuers are re-fetched if needed).
            let victim = map
                .iter()
                .find(|(_, s)| Arc::strong_count(s) == 1)
                .map(|(k, _)| k.clone());
            if let Some(k) = victim {
                map.remove(&k);
            }
        }
        let s = Arc::new(tokio::sync::Mutex::new(IssuerState::default()));
        map.insert(iss.to_owned(), s.clone());
        s
    }

    /// The issuer's keys that may have signed `jws` (matching `kid` and algorithm).
    async fn keys_for(
        &self,
        iss: &str,
        cfg: &OidcIssuer,
        jws: &Jws<'_>,
    ) -> Result<Vec<Jwk>, OidcError> {
        let state = self.state(iss);
        let mut st = state.lock().await;
        let interval = self.options.jwks_refetch_interval;
        let stale = st
            .provider
            .as_ref()
            .is_none_or(|p| p.fetched_at.elapsed() >= self.options.max_jwks_age);
        if stale {
            if let Some((at, err)) = &st.failure
                && at.elapsed() < interval
            {
                return Err(err.clone());
            }
            match self.load_provider(iss, cfg).await {
                Ok(p) => {
                    st.provider = Some(p);
                    st.failure = None;
                }
                Err(e) => {
                    tracing::warn!(issuer = %iss, error = %e, "cannot load OIDC provider");
                    st.provider = None;
                    st.failure = Some((Instant::now(), e.clone()));
                    return Err(e);
                }
            }
        }
        let Some(provider) = st.provider.as_ref() else {
            return Err(OidcError::Discovery {
                issuer: iss.to_owned(),
                reason: "no provider loaded".into(),
            });
        };
        if !provider.algs.contains(&jws.alg_name) {
            return Err(OidcError::AlgNotAllowed {
                alg: jws.alg_name.clone(),
                reason: format!(
                    "issuer {iss:?} advertises only {} (id_token_signing_alg_values_supported)",
                    provider.algs.join(", ")
                ),
            });
        }
        let mut found = candidates(&provider.keys, jws);
        if found.is_empty() {
            let may_refetch = st
                .last_kid_refetch
                .is_none_or(|at| at.elapsed() >= interval);
            if may_refetch {
                let uri = provider.jwks_uri.clone();
                st.last_kid_refetch = Some(Instant::now());
                match self.fetch_keys(iss, cfg, &uri).await {
                    Ok(keys) => {
                        if let Some(p) = st.provider.as_mut() {
                            p.keys = keys;
                            found = candidates(&p.keys, jws);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(issuer = %iss, error = %e, "JWKS refetch failed");
                        return Err(e);
                    }
                }
            }
        }
        if found.is_empty() {
            return Err(OidcError::UnknownKid {
                issuer: iss.to_owned(),
                kid: jws.kid.clone().unwrap_or_default(),
            });
        }
        let fitting: Vec<Jwk> = found
            .into_iter()
            .filter(|k| k.kind.fits(jws.alg) && k.alg.as_ref().is_none_or(|a| *a == jws.alg_name))
            .collect();
        if fitting.is_empty() {
            return Err(OidcError::AlgNotAllowed {
                alg: jws.alg_name.clone(),
                reason: format!(
                    "the issuer's key {:?} is not a key for this algorithm",
                    jws.kid.clone().unwrap_or_default()
                ),
            });
        }
        Ok(fitting)
    }

    async fn load_provider(&self, iss: &str, cfg: &OidcIssuer) -> Result<Provider, OidcError> {
        if !cfg.jwks_url.is_empty() {
            // A configured key mirror: no discovery, the usual asymmetric algorithms.
            let keys = self.fetch_keys(iss, cfg, &cfg.jwks_url).await?;
            return Ok(Provider {
                jwks_uri: cfg.jwks_url.clone(),
                algs: [
                    "RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS384", "PS512", "EdDSA",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
                keys,
                fetched_at: Instant::now(),
            });
        }
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            iss.trim_end_matches('/')
        );
        let disc_err = |reason: String| OidcError::Discovery {
            issuer: iss.to_owned(),
            reason,
        };
        let doc = self
            .fetch_json(&discovery_url, &cfg.ca_cert)
            .await
            .map_err(disc_err)?;
        let doc = doc
            .as_object()
            .ok_or_else(|| disc_err("the discovery document is not a JSON object".into()))?;
        let got = doc
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or_else(|| disc_err("the discovery document has no issuer".into()))?;
        if got != iss {
            return Err(OidcError::IssuerMismatch {
                expected: iss.to_owned(),
                got: got.to_owned(),
            });
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| disc_err("the discovery document has no jwks_uri".into()))?
            .to_owned();
        let algs = match doc.get("id_token_signing_alg_values_supported") {
            None | Some(Value::Null) => vec!["RS256".to_owned()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(_) => {
                return Err(disc_err(
                    "id_token_signing_alg_values_supported is not an array".into(),
                ));
            }
        };
        let keys = self.fetch_keys(iss, cfg, &jwks_uri).await?;
        Ok(Provider {
            jwks_uri,
            algs,
            keys,
            fetched_at: Instant::now(),
        })
    }

    async fn fetch_keys(
        &self,
        iss: &str,
        cfg: &OidcIssuer,
        jwks_uri: &str,
    ) -> Result<Vec<Jwk>, OidcError> {
        let jwks_err = |reason: String| OidcError::Jwks {
            issuer: iss.to_owned(),
            reason,
        };
        let doc = self
            .fetch_json(jwks_uri, &cfg.ca_cert)
            .await
            .map_err(jwks_err)?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| jwks_err("the JWKS has no keys array".into()))?;
        let parsed: Vec<Jwk> = keys
            .iter()
            .filter_map(|k| match parse_jwk(k) {
                Ok(k) => k,
                Err(reason) => {
                    tracing::debug!(issuer = %iss, %reason, "JWKS entry skipped");
                    None
                }
            })
            .collect();
        if parsed.is_empty() {
            return Err(jwks_err("the JWKS holds no usable signing key".into()));
        }
        Ok(parsed)
    }

    /// GET a JSON document from an `https://` (or loopback `http://`) URL, following same-host
    /// redirects only.
    async fn fetch_json(&self, url: &str, ca_cert: &str) -> Result<Value, String> {
        let mut parts = fetch_target(url)?;
        let mut current = url.to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let endpoint = endpoint_of(&parts)?;
            let extra =
                (endpoint_is_https(&endpoint) && !ca_cert.is_empty()).then_some(ca_cert.as_bytes());
            let client = Client::new_public(endpoint, extra)
                .map_err(|e| e.to_string())?
                .with_timeout(self.options.http_timeout)
                .with_max_response_bytes(MAX_DOCUMENT_BYTES);
            let res = client
                .request(Method::GET, &parts.path_and_query, None)
                .await
                .map_err(|e| e.to_string())?;
            if res.status.is_redirection() {
                let location = res
                    .headers
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{current}: redirect without Location"))?;
                let next = if location.starts_with('/') && !location.starts_with("//") {
                    UrlParts {
                        path_and_query: location.to_owned(),
                        ..parts.clone()
                    }
                } else {
                    parse_url(location)?
                };
                if (&next.scheme, &next.host, next.port) != (&parts.scheme, &parts.host, parts.port)
                {
                    return Err(format!(
                        "{current}: redirect to another host ({}://{}) refused",
                        next.scheme, next.host
                    ));
                }
                current = format!("{}://{}{}", next.scheme, next.host, next.path_and_query);
                parts = next;
                continue;
            }
            if res.status != StatusCode::OK {
                return Err(format!("{current}: HTTP status {}", res.status));
            }
            return serde_json::from_slice(&res.body)
                .map_err(|e| format!("{current}: not valid JSON: {e}"));
        }
        Err(format!("{url}: too many redirects"))
    }
}

fn candidates(keys: &[Jwk], jws: &Jws<'_>) -> Vec<Jwk> {
    keys.iter()
        .filter(|k| match &jws.kid {
            Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
            None => true,
        })
        .cloned()
        .collect()
}

fn fetch_target(url: &str) -> Result<UrlParts, String> {
    let parts = parse_url(url)?;
    match parts.scheme.as_str() {
        "https" => Ok(parts),
        "http" if is_loopback_host(&parts.host) => Ok(parts),
        "http" => Err(format!(
            "{url}: plain http is only allowed for loopback hosts (local test IdPs); use https://"
        )),
        other => Err(format!("{url}: unsupported scheme {other:?}")),
    }
}

fn endpoint_of(p: &UrlParts) -> Result<Endpoint, String> {
    match p.scheme.as_str() {
        "https" => Ok(Endpoint::Https {
            host: p.host.clone(),
            port: p.port.unwrap_or(443),
        }),
        "http" if is_loopback_host(&p.host) => {
            let ip = if p.host == "localhost" {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                p.host
                    .parse()
                    .map_err(|_| format!("bad host {:?}", p.host))?
            };
            Ok(Endpoint::Http(SocketAddr::new(ip, p.port.unwrap_or(80))))
        }
        _ => Err(format!(
            "{}://{}: only https:// (or http:// on loopback) is allowed",
            p.scheme, p.host
        )),
    }
}

fn endpoint_is_https(e: &Endpoint) -> bool {
    matches!(e, Endpoint::Https { .. })
}

fn malformed(reason: &str) -> OidcError {
    OidcError::Malformed(reason.to_owned())
}

fn decode_json_part(part: &str, what: &str) -> Result<Map<String, Value>, OidcError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| OidcError::Malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(OidcError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
    }
}

/// The configured issuer a token's `iss` names, with its CI metadata: what [`Verifier::verify`]
/// checks before it fetches keys (an unknown issuer, an unsupported issuer type, an issuer URL
/// against the URL policy).
fn bind_issuer(
    config: &IdentityConfig,
    claims: &Map<String, Value>,
) -> Result<(String, OidcIssuer, Option<IssuerMetadata>), OidcError> {
    let iss = match claims.get("iss") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(malformed("claim iss must be a non-empty string")),
        None => return Err(OidcError::MissingClaim("iss".into())),
    };
    let issuer_config = config
        .issuer_for(&iss)
        .ok_or_else(|| OidcError::UnknownIssuer(iss.clone()))?;
    let ci_metadata = match issuer_config.issuer_type {
        IssuerType::CiProvider => Some(
            config
                .ci_issuer_metadata
                .get(&issuer_config.ci_provider)
                .cloned()
                .ok_or_else(|| {
                    OidcError::Config(format!(
                        "ci-provider {:?} has no metadata",
                        issuer_config.ci_provider
                    ))
                })?,
        ),
        IssuerType::GithubWorkflow => Some(github_workflow_metadata()),
        IssuerType::GitlabPipeline
        | IssuerType::BuildkiteJob
        | IssuerType::CodefreshWorkflow
        | IssuerType::ChainguardIdentity => {
            return Err(OidcError::UnsupportedIssuerType(issuer_config.issuer_type));
        }
        _ => None,
    };
    // Meta issuers admit URLs the operator never wrote down: apply the URL policy to `iss`.
    check_issuer_url(&iss).map_err(|reason| OidcError::InsecureIssuer {
        issuer: iss.clone(),
        reason,
    })?;
    Ok((iss, issuer_config, ci_metadata))
}

/// For the fuzz targets (`crate::fuzz`): `claims` bound to their issuer under `config` and
/// checked as [`Verifier::verify`] checks a token's claims, as the token it would verify to
/// (no signature is involved: the claims are the untrusted part under test).
pub(crate) fn token_for_fuzzing(
    config: &IdentityConfig,
    claims: Map<String, Value>,
) -> Result<VerifiedToken, OidcError> {
    let (issuer, issuer_config, ci_metadata) = bind_issuer(config, &claims)?;
    check_claims(&claims, &issuer_config.client_id)?;
    Ok(VerifiedToken {
        issuer,
        claims,
        issuer_config,
        ci_metadata,
    })
}

/// [`parse_jws`] for the fuzz targets (`crate::fuzz`): the header and claims of `token`.
pub(crate) fn parse_jws_for_fuzzing(token: &str) -> Result<(), OidcError> {
    parse_jws(token).map(|_| ())
}

/// [`parse_jwk`] for the fuzz targets: one key of a JWKS.
pub(crate) fn parse_jwk_for_fuzzing(v: &Value) -> Result<(), String> {
    parse_jwk(v).map(|_| ())
}

fn parse_jws(token: &str) -> Result<Jws<'_>, OidcError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(malformed("the token is empty"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("the token is too large"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "a JWT has three dot-separated parts (encrypted tokens are not supported)",
        ));
    };
    let header = decode_json_part(h, "JOSE header")?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the JOSE header has no alg"))?
        .to_owned();
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(OidcError::AlgNotAllowed {
            alg: alg_name,
            reason: "unsigned tokens are never accepted".into(),
        });
    }
    if alg_name.starts_with("HS") {
        return Err(OidcError::AlgNotAllowed {
            alg: alg_name,
            reason: "symmetric (HMAC) algorithms are never accepted for identity tokens".into(),
        });
    }
    if header.contains_key("crit") {
        return Err(malformed(
            "critical JOSE header parameters are not supported",
        ));
    }
    let alg = Algorithm::from_str(&alg_name).map_err(|_| OidcError::AlgNotAllowed {
        alg: alg_name.clone(),
        reason: "unknown algorithm".into(),
    })?;
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(malformed("the JOSE header kid is not a string")),
    };
    if s.is_empty() {
        return Err(malformed("the token has no signature"));
    }
    let claims = decode_json_part(p, "payload")?;
    Ok(Jws {
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: s,
        alg,
        alg_name,
        kid,
        claims,
    })
}

/// A JWK usable for signature verification, `Ok(None)` for one that is not (encryption keys,
/// unsupported types), `Err` for a broken one. Either way the JWKS's other keys still count.
fn parse_jwk(v: &Value) -> Result<Option<Jwk>, String> {
    let o = v.as_object().ok_or("JWK is not an object")?;
    let s = |k: &str| o.get(k).and_then(Value::as_str);
    if s("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let kid = s("kid").map(str::to_owned);
    let alg = s("alg").map(str::to_owned);
    let need = |k: &str| s(k).ok_or_else(|| format!("JWK {kid:?} lacks {k}"));
    let b64 = |k: &str| -> Result<Vec<u8>, String> {
        URL_SAFE_NO_PAD
            .decode(need(k)?)
            .map_err(|_| format!("JWK {kid:?}: {k} is not base64url"))
    };
    let (kind, key) = match s("kty") {
        Some("RSA") => {
            let n = b64("n")?;
            let e = b64("e")?;
            let n = n.strip_prefix(&[0]).unwrap_or(&n);
            if n.len() < MIN_RSA_MODULUS_BYTES {
                return Err(format!("JWK {kid:?}: RSA key shorter than 2048 bits"));
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(n, &e))
        }
        Some("EC") => {
            let (kind, len) = match s("crv") {
                Some("P-256") => (KeyKind::P256, 32),
                Some("P-384") => (KeyKind::P384, 48),
                _ => return Ok(None),
            };
            if b64("x")?.len() != len || b64("y")?.len() != len {
                return Err(format!("JWK {kid:?}: EC coordinates have the wrong length"));
            }
            let key = DecodingKey::from_ec_components(need("x")?, need("y")?)
                .map_err(|e| format!("JWK {kid:?}: {e}"))?;
            (kind, key)
        }
        Some("OKP") if s("crv") == Some("Ed25519") => {
            if b64("x")?.len() != 32 {
                return Err(format!("JWK {kid:?}: Ed25519 key has the wrong length"));
            }
            let key = DecodingKey::from_ed_components(need("x")?)
                .map_err(|e| format!("JWK {kid:?}: {e}"))?;
            (KeyKind::Ed25519, key)
        }
        _ => return Ok(None),
    };
    Ok(Some(Jwk {
        kid,
        alg,
        kind,
        key,
    }))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn numeric_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, OidcError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| OidcError::Malformed(format!("claim {name} is not a number"))),
        Some(_) => Err(OidcError::Malformed(format!(
            "claim {name} must be a number (NumericDate)"
        ))),
    }
}

/// `aud` contains `client_id`; `exp` is in the future (no leeway); `nbf`, if present, at most
/// five minutes ahead. `iat` is not checked (go-oidc does not either).
fn check_claims(claims: &Map<String, Value>, client_id: &str) -> Result<(), OidcError> {
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(list)) => {
            if list.iter().any(|a| !a.is_string()) {
                return Err(malformed(
                    "claim aud must be a string or an array of strings",
                ));
            }
            list.iter().any(|a| a.as_str() == Some(client_id))
        }
        None => false,
        Some(_) => {
            return Err(malformed(
                "claim aud must be a string or an array of strings",
            ));
        }
    };
    if !aud_ok {
        return Err(OidcError::WrongAudience {
            expected: client_id.to_owned(),
        });
    }
    let now = now_secs();
    let exp = numeric_claim(claims, "exp")?.ok_or_else(|| OidcError::MissingClaim("exp".into()))?;
    if exp <= now {
        return Err(OidcError::Expired);
    }
    if let Some(nbf) = numeric_claim(claims, "nbf")?
        && nbf > now + NBF_LEEWAY_SECS
    {
        return Err(OidcError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
    }

    #[test]
    fn refuses_none_and_hmac_before_anything_else() {
        let payload = b64(&serde_json::json!({"iss": "https://x.example"}));
        for alg in ["none", "NONE", "HS256", "HS512"] {
            let t = format!("{}.{payload}.c2ln", b64(&serde_json::json!({"alg": alg})));
            match parse_jws(&t) {
                Err(OidcError::AlgNotAllowed { .. }) => {}
                Err(e) => panic!("{alg}: {e}"),
                Ok(_) => panic!("{alg}: accepted"),
            }
        }
        assert!(matches!(parse_jws("a.b"), Err(OidcError::Malformed(_))));
    }

    #[test]
    fn claim_checks() {
        let now = now_secs();
        let c = |v: Value| v.as_object().cloned().expect("object");
        assert!(
            check_claims(
                &c(serde_json::json!({"aud": "sigstore", "exp": now + 60.0})),
                "sigstore"
            )
            .is_ok()
        );
        assert!(check_claims(&c(serde_json::json!({"aud": ["x", "sigstore"], "exp": now + 60.0, "nbf": now + 200.0})), "sigstore").is_ok());
        assert_eq!(
            check_claims(
                &c(serde_json::json!({"aud": "sigstore", "exp": now - 1.0})),
                "sigstore"
            ),
            Err(OidcError::Expired)
        );
        assert_eq!(
            check_claims(
                &c(serde_json::json!({"aud": "sigstore", "exp": now + 60.0, "nbf": now + 400.0})),
                "sigstore"
            ),
            Err(OidcError::NotYetValid)
        );
        assert!(matches!(
            check_claims(
                &c(serde_json::json!({"aud": "other", "exp": now + 60.0})),
                "sigstore"
            ),
            Err(OidcError::WrongAudience { .. })
        ));
        assert!(matches!(
            check_claims(
                &c(serde_json::json!({"aud": "sigstore", "exp": "never"})),
                "sigstore"
            ),
            Err(OidcError::Malformed(_))
        ));
        assert!(matches!(
            check_claims(
                &c(serde_json::json!({"aud": "sigstore", "exp": now + 60.0, "nbf": "later"})),
                "sigstore"
            ),
            Err(OidcError::Malformed(_))
        ));
    }
}
