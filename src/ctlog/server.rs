//! RFC 6962 HTTP API under `/<prefix>/ct/v1/`, plus `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::{CtLog, CtLogError};
use crate::metrics::Histogram;
use crate::pki::ct::AddChainResponse;
use crate::tlog::api::decode_hashes;

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub add_chain: AtomicU64,
    pub add_pre_chain: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    /// Time to answer an accepted submission (parse, checks, durable log entry, SCT).
    pub submission: Histogram,
}

#[derive(Clone)]
pub struct AppState {
    pub log: Arc<CtLog>,
    pub metrics: Arc<Metrics>,
}

/// Errors as RFC 6962 servers send them: `text/plain`, status text, newline, reason.
pub struct ApiError(pub CtLogError);

impl From<CtLogError> for ApiError {
    fn from(e: CtLogError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "ct request failed");
        }
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "{}\n{}\n",
                status.canonical_reason().unwrap_or("Error"),
                self.0
            ),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError(CtLogError::BadRequest(m.into()))
}

/// The router; `prefix` is the log's URL prefix without slashes ("" for none).
pub fn router(state: AppState, prefix: &str) -> axum::Router {
    let base = if prefix.is_empty() {
        "/ct/v1".to_owned()
    } else {
        format!("/{prefix}/ct/v1")
    };
    axum::Router::new()
        .route(&format!("{base}/add-chain"), post(add_chain))
        .route(&format!("{base}/add-pre-chain"), post(add_pre_chain))
        .route(&format!("{base}/get-sth"), get(get_sth))
        .route(
            &format!("{base}/get-sth-consistency"),
            get(get_sth_consistency),
        )
        .route(&format!("{base}/get-proof-by-hash"), get(get_proof_by_hash))
        .route(&format!("{base}/get-entries"), get(get_entries))
        .route(&format!("{base}/get-roots"), get(get_roots))
        .route(
            &format!("{base}/get-entry-and-proof"),
            get(get_entry_and_proof),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Deserialize)]
struct ChainRequest {
    chain: Vec<String>,
}

/// [`parse_chain`] for the fuzz targets (`crate::fuzz`), its refusal as text.
pub(crate) fn parse_chain_for_fuzzing(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    parse_chain(body).map_err(|e| e.0.to_string())
}

fn parse_chain(body: &[u8]) -> Result<Vec<Vec<u8>>, ApiError> {
    let req: ChainRequest = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "malformed request: {}",
            crate::http::json_error_text(&e)
        ))
    })?;
    req.chain
        .iter()
        .enumerate()
        .map(|(i, c)| {
            B64.decode(c)
                .map_err(|_| bad(format!("chain[{i}] is not standard base64")))
        })
        .collect()
}

async fn submit(
    st: AppState,
    body: axum::body::Bytes,
    precert: bool,
) -> Result<Json<AddChainResponse>, ApiError> {
    let started = std::time::Instant::now();
    let chain = match parse_chain(&body) {
        Ok(c) => c,
        Err(e) => {
            st.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    match st.log.add_chain(chain, precert).await {
        Ok(sct) => {
            let m = if precert {
                &st.metrics.add_pre_chain
            } else {
                &st.metrics.add_chain
            };
            m.fetch_add(1, Ordering::Relaxed);
            st.metrics.submission.observe(started.elapsed());
            Ok(Json(AddChainResponse::from(&sct)))
        }
        Err(e) => {
            let m = if e.status() == 400 {
                &st.metrics.rejected
            } else {
                &st.metrics.failed
            };
            m.fetch_add(1, Ordering::Relaxed);
            Err(e.into())
        }
    }
}

async fn add_chain(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<AddChainResponse>, ApiError> {
    submit(st, body, false).await
}

async fn add_pre_chain(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<AddChainResponse>, ApiError> {
    submit(st, body, true).await
}

#[derive(Serialize)]
struct SthResponse {
    tree_size: u64,
    timestamp: u64,
    sha256_root_hash: String,
    tree_head_signature: String,
}

async fn get_sth(State(st): State<AppState>) -> Result<Json<SthResponse>, ApiError> {
    let s = st.log.sth().await?;
    Ok(Json(SthResponse {
        tree_size: s.tree_size,
        timestamp: s.timestamp,
        sha256_root_hash: B64.encode(s.root),
        tree_head_signature: B64.encode(&s.signature),
    }))
}

/// Query strings: numbers must be numbers, unknown parameters are refused.
fn num(q: &std::collections::HashMap<String, String>, k: &str) -> Result<u64, ApiError> {
    q.get(k)
        .ok_or_else(|| bad(format!("missing parameter {k}")))?
        .parse()
        .map_err(|_| bad(format!("parameter {k} is not a non-negative integer")))
}

type Q = Query<std::collections::HashMap<String, String>>;

#[derive(Serialize)]
struct ConsistencyResponse {
    consistency: Vec<String>,
}

async fn get_sth_consistency(
    State(st): State<AppState>,
    Query(q): Q,
) -> Result<Json<ConsistencyResponse>, ApiError> {
    let (first, second) = (num(&q, "first")?, num(&q, "second")?);
    if first > second {
        return Err(bad("first must not be larger than second"));
    }
    let p = st
        .log
        .tlog()
        .consistency(st.log.tree(), first, second)
        .await
        .map_err(CtLogError::from)?;
    Ok(Json(ConsistencyResponse {
        consistency: hashes_b64(&p.hashes)?,
    }))
}

fn hashes_b64(h: &[String]) -> Result<Vec<String>, ApiError> {
    Ok(decode_hashes(h)
        .map_err(|e| ApiError(CtLogError::Internal(e.to_string())))?
        .iter()
        .map(|h| B64.encode(h))
        .collect())
}

#[derive(Serialize)]
struct ProofResponse {
    leaf_index: u64,
    audit_path: Vec<String>,
}

async fn get_proof_by_hash(
    State(st): State<AppState>,
    Query(q): Q,
) -> Result<Json<ProofResponse>, ApiError> {
    let size = num(&q, "tree_size")?;
    let hash = q.get("hash").ok_or_else(|| bad("missing parameter hash"))?;
    let hash: [u8; 32] = B64
        .decode(hash)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| bad("hash must be base64 of 32 bytes"))?;
    let p = st
        .log
        .tlog()
        .inclusion_by_hash(st.log.tree(), &hash, size)
        .await
        .map_err(|e| match CtLogError::from(e) {
            CtLogError::BadRequest(m) if m.contains("no entry") => CtLogError::NotFound(m),
            other => other,
        })?;
    Ok(Json(ProofResponse {
        leaf_index: p.index,
        audit_path: hashes_b64(&p.hashes)?,
    }))
}

#[derive(Serialize)]
struct LogEntry {
    leaf_input: String,
    extra_data: String,
}

#[derive(Serialize)]
struct EntriesResponse {
    entries: Vec<LogEntry>,
}

async fn get_entries(
    State(st): State<AppState>,
    Query(q): Q,
) -> Result<Json<EntriesResponse>, ApiError> {
    let (start, end) = (num(&q, "start")?, num(&q, "end")?);
    if start > end {
        return Err(bad("start must not be larger than end"));
    }
    let end = end.min(start.saturating_add(999));
    let r = st
        .log
        .tlog()
        .entries(st.log.tree(), start, end.saturating_add(1))
        .await
        .map_err(CtLogError::from)?;
    Ok(Json(EntriesResponse {
        entries: r
            .entries
            .into_iter()
            .map(|e| LogEntry {
                leaf_input: e.data,
                extra_data: e.extra.unwrap_or_default(),
            })
            .collect(),
    }))
}

#[derive(Serialize)]
struct RootsResponse {
    certificates: Vec<String>,
}

async fn get_roots(State(st): State<AppState>) -> Json<RootsResponse> {
    Json(RootsResponse {
        certificates: st.log.roots_der().iter().map(|d| B64.encode(d)).collect(),
    })
}

#[derive(Serialize)]
struct EntryAndProof {
    leaf_input: String,
    extra_data: String,
    audit_path: Vec<String>,
}

async fn get_entry_and_proof(
    State(st): State<AppState>,
    Query(q): Q,
) -> Result<Json<EntryAndProof>, ApiError> {
    let (index, size) = (num(&q, "leaf_index")?, num(&q, "tree_size")?);
    if index >= size {
        return Err(bad("leaf_index must be below tree_size"));
    }
    let tl = st.log.tlog();
    let p = tl
        .inclusion(st.log.tree(), index, size)
        .await
        .map_err(CtLogError::from)?;
    let e = tl
        .entries(st.log.tree(), index, index + 1)
        .await
        .map_err(CtLogError::from)?;
    let e = e
        .entries
        .into_iter()
        .next()
        .ok_or_else(|| ApiError(CtLogError::NotFound(format!("no entry {index}"))))?;
    Ok(Json(EntryAndProof {
        leaf_input: e.data,
        extra_data: e.extra.unwrap_or_default(),
        audit_path: hashes_b64(&p.hashes)?,
    }))
}

/// Ready when its key signs and a tlog instance sequences the tree (takes appends), not merely
/// answers reads.
async fn readyz(State(st): State<AppState>) -> Response {
    let log = &st.log;
    log.tlog()
        .personality_readyz(log.tree(), log.hsm_failing(), String::new)
        .await
        .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let m = &st.metrics;
    let mut s = String::new();
    for (name, help, v) in [
        (
            "sigvault_ctlog_add_chain_total",
            "Certificates logged.",
            &m.add_chain,
        ),
        (
            "sigvault_ctlog_add_pre_chain_total",
            "Precertificates logged.",
            &m.add_pre_chain,
        ),
        (
            "sigvault_ctlog_rejected_total",
            "Submissions refused (400).",
            &m.rejected,
        ),
        (
            "sigvault_ctlog_failed_total",
            "Submissions that failed (5xx).",
            &m.failed,
        ),
    ] {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    m.submission.render_with_help(
        "sigvault_ctlog_submission_seconds",
        "Time to answer an accepted add-chain or add-pre-chain, SCT included.",
        &mut s,
    );
    st.log.tlog_append_latency().render_with_help(
        "sigvault_ctlog_tlog_append_seconds",
        "Of that, the wait for the Merkle log service to make the entry durable.",
        &mut s,
    );
    s.push_str(&crate::hsm::metrics_text());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}
