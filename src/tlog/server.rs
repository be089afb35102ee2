//! HTTP front of the log service: the internal API (for personalities) and the public read API
//! (C2SP tlog-tiles, health, metrics).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use super::api::*;
use super::{LogService, TlogError};
use crate::merkle::Hash;
use crate::merkle::tiles::{TileId, TileKind};

/// Counters exported on `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub appends_ok: AtomicU64,
    pub appends_duplicate: AtomicU64,
    pub appends_failed: AtomicU64,
    pub proofs_served: AtomicU64,
    pub tiles_served: AtomicU64,
    pub bad_requests: AtomicU64,
    /// Batch append requests (each carrying one or more appends).
    pub batch_requests: AtomicU64,
}

#[derive(Clone)]
pub struct AppState {
    pub svc: Arc<LogService>,
    pub metrics: Arc<Metrics>,
}

/// An error answered as `{"code","message"}` with the matching status.
pub struct ApiError(pub TlogError);

impl From<TlogError> for ApiError {
    fn from(e: TlogError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self.0, "request failed");
        }
        let mut resp = (
            status,
            Json(ErrorBody {
                code: status.as_u16(),
                message: self.0.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(TlogError::BadRequest(msg.into()))
}

fn parse_hash(s: &str, what: &str) -> Result<Hash, ApiError> {
    let v = hex::decode(s).map_err(|_| bad(format!("{what} is not hex")))?;
    Hash::try_from(v.as_slice()).map_err(|_| bad(format!("{what} must be 32 bytes")))
}

fn hexes(h: &[Hash]) -> Vec<String> {
    h.iter().map(hex::encode).collect()
}

/// The internal API router.
pub fn internal_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/v1/trees/{tree}", post(create_tree))
        .route("/v1/trees/{tree}/checkpoint", get(head))
        .route("/v1/trees/{tree}/sequencer", get(sequencer))
        .route("/v1/trees/{tree}/entries", post(append).get(entries))
        .route("/v1/trees/{tree}/entries/batch", post(append_batch))
        .route("/v1/trees/{tree}/proof/inclusion", get(inclusion))
        .route("/v1/trees/{tree}/proof/consistency", get(consistency))
        // The tiles as the public listener serves them, for a personality that serves a tree's
        // read path at its own URL (Rekor v2).
        .route("/v1/trees/{tree}/tile/{*path}", get(public_tile))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// The public read router: tlog-tiles under `/{tree}/`, health and metrics.
pub fn public_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/{tree}/checkpoint", get(public_checkpoint))
        .route("/{tree}/tile/{*path}", get(public_tile))
        .with_state(state)
}

async fn create_tree(
    State(st): State<AppState>,
    Path(tree): Path<String>,
) -> Result<Response, ApiError> {
    let head = st.svc.create_tree(&tree).await?;
    Ok((
        StatusCode::CREATED,
        Json(HeadResponse {
            tree_size: head.size,
            root_hash: hex::encode(head.root),
            checkpoint: head.checkpoint.clone(),
        }),
    )
        .into_response())
}

async fn head(
    State(st): State<AppState>,
    Path(tree): Path<String>,
) -> Result<Json<HeadResponse>, ApiError> {
    let h = st.svc.head(&tree).await?;
    Ok(Json(HeadResponse {
        tree_size: h.size,
        root_hash: hex::encode(h.root),
        checkpoint: h.checkpoint.clone(),
    }))
}

/// 200 when this instance sequences `tree`; a standby answers 503 (as it does to appends).
async fn sequencer(
    State(st): State<AppState>,
    Path(tree): Path<String>,
) -> Result<Json<SequencerResponse>, ApiError> {
    let t = st.svc.tree(&tree)?;
    if t.is_frozen() {
        // No instance sequences a frozen tree, and none needs to: it serves reads only.
        let h = st.svc.head(&tree).await?;
        return Ok(Json(SequencerResponse {
            active: false,
            frozen: true,
            tree_size: h.size,
        }));
    }
    if let Some(why) = t.refusal() {
        return Err(ApiError(TlogError::Refused(why)));
    }
    // A failing token first: after a failed batch the sequencer briefly stands down to reload
    // its state, and "not active" would hide why.
    if let Some(why) = t.hsm_failing() {
        return Err(ApiError(TlogError::Signing(why)));
    }
    if !t.is_active() {
        return Err(ApiError(TlogError::NotActive(tree)));
    }
    let h = st.svc.head(&tree).await?;
    Ok(Json(SequencerResponse {
        active: true,
        frozen: false,
        tree_size: h.size,
    }))
}

async fn append(
    State(st): State<AppState>,
    Path(tree): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AppendResponse>, ApiError> {
    let req: AppendRequest = serde_json::from_slice(&body).map_err(|e| {
        st.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
        bad(format!("malformed append request: {e}"))
    })?;
    append_one(&st, &tree, req).await.map(Json)
}

/// Several appends in one request: each is queued at once, so they join the same batch; each
/// gets its own result (an error for one does not fail the others).
async fn append_batch(
    State(st): State<AppState>,
    Path(tree): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: BatchAppendRequest = serde_json::from_slice(&body).map_err(|e| {
        st.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
        bad(format!("malformed batch append request: {e}"))
    })?;
    if req.entries.is_empty() || req.entries.len() > MAX_APPENDS_PER_BATCH {
        st.metrics.bad_requests.fetch_add(1, Ordering::Relaxed);
        return Err(bad(format!(
            "a batch holds 1 to {MAX_APPENDS_PER_BATCH} appends, not {}",
            req.entries.len()
        )));
    }
    st.metrics.batch_requests.fetch_add(1, Ordering::Relaxed);
    // A standby answers the whole batch with 503, so the caller moves on to the next endpoint.
    let t = st.svc.tree(&tree)?;
    if t.state() != crate::tlog::TreeState::Open {
        return Err(ApiError(TlogError::Frozen(tree)));
    }
    if let Some(why) = t.refusal() {
        return Err(ApiError(TlogError::Refused(why)));
    }
    if !t.is_active() {
        return Err(ApiError(TlogError::NotActive(tree)));
    }
    let results: Vec<BatchAppendResult> =
        futures_util::future::join_all(req.entries.into_iter().map(|r| append_one(&st, &tree, r)))
            .await
            .into_iter()
            .map(|r| match r {
                Ok(ok) => BatchAppendResult::Ok(ok),
                Err(ApiError(e)) => BatchAppendResult::Error(ErrorBody {
                    code: e.status(),
                    message: e.to_string(),
                }),
            })
            .collect();
    // Likewise when every append was refused as retryable (the lease was lost meanwhile, the
    // queue was full): the whole batch gets that 503 with its own reason.
    if let Some(BatchAppendResult::Error(first)) = results.first() {
        if first.code == 503
            && results
                .iter()
                .all(|r| matches!(r, BatchAppendResult::Error(e) if e.code == 503))
        {
            let mut resp = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(ErrorBody {
                    code: 503,
                    message: first.message.clone(),
                }),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(resp);
        }
    }
    Ok(Json(BatchAppendResponse { results }).into_response())
}

async fn append_one(
    st: &AppState,
    tree: &str,
    req: AppendRequest,
) -> Result<AppendResponse, ApiError> {
    let data = B64
        .decode(req.data.as_bytes())
        .map_err(|_| bad("data is not standard base64"))?;
    let identity = req
        .identity
        .as_deref()
        .map(|s| parse_hash(s, "identity"))
        .transpose()?;
    let extra = req
        .extra
        .as_deref()
        .map(|x| {
            B64.decode(x.as_bytes())
                .map_err(|_| bad("extra is not standard base64"))
        })
        .transpose()?;
    let res = match st.svc.append_with_extra(tree, data, identity, extra).await {
        Ok(r) => r,
        Err(e) => {
            st.metrics.appends_failed.fetch_add(1, Ordering::Relaxed);
            return Err(e.into());
        }
    };
    if res.duplicate {
        st.metrics.appends_duplicate.fetch_add(1, Ordering::Relaxed);
    } else {
        st.metrics.appends_ok.fetch_add(1, Ordering::Relaxed);
    }
    let proof = if req.proof {
        Some(hexes(
            &st.svc
                .inclusion_proof(tree, res.index, res.head.size)
                .await?,
        ))
    } else {
        None
    };
    Ok(AppendResponse {
        index: res.index,
        leaf_hash: hex::encode(res.leaf_hash),
        duplicate: res.duplicate,
        tree_size: res.head.size,
        root_hash: hex::encode(res.head.root),
        checkpoint: res.head.checkpoint.clone(),
        inclusion_proof: proof,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    start: u64,
    end: u64,
}

async fn entries(
    State(st): State<AppState>,
    Path(tree): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<EntriesResponse>, ApiError> {
    let rows = st
        .svc
        .entries(&tree, q.start, q.end, MAX_ENTRIES_PER_REQUEST)
        .await?;
    Ok(Json(EntriesResponse {
        entries: rows
            .into_iter()
            .map(|e| Entry {
                index: e.index,
                data: B64.encode(e.data),
                extra: e.extra.map(|x| B64.encode(x)),
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    index: Option<u64>,
    leaf_hash: Option<String>,
    size: u64,
}

async fn inclusion(
    State(st): State<AppState>,
    Path(tree): Path<String>,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<InclusionResponse>, ApiError> {
    let index = match (q.index, q.leaf_hash) {
        (Some(i), None) => i,
        (None, Some(h)) => {
            let h = parse_hash(&h, "leaf_hash")?;
            match st.svc.index_of_leaf(&tree, &h).await? {
                Some(i) if i < q.size => i,
                _ => {
                    return Err(ApiError(TlogError::BadRequest(format!(
                        "no entry with that leaf hash in the first {} entries",
                        q.size
                    ))));
                }
            }
        }
        _ => return Err(bad("give exactly one of index or leaf_hash")),
    };
    let hashes = st.svc.inclusion_proof(&tree, index, q.size).await?;
    st.metrics.proofs_served.fetch_add(1, Ordering::Relaxed);
    Ok(Json(InclusionResponse {
        index,
        tree_size: q.size,
        hashes: hexes(&hashes),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    first: u64,
    second: u64,
}

async fn consistency(
    State(st): State<AppState>,
    Path(tree): Path<String>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyResponse>, ApiError> {
    let hashes = st.svc.consistency_proof(&tree, q.first, q.second).await?;
    let root = st.svc.root_at(&tree, q.second).await?;
    st.metrics.proofs_served.fetch_add(1, Ordering::Relaxed);
    Ok(Json(ConsistencyResponse {
        first: q.first,
        second: q.second,
        hashes: hexes(&hashes),
        root_hash: Some(hex::encode(root)),
    }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database answers, the rollback guard refuses no tree and no tree's key is
/// failing in its HSM; reports which trees
/// this instance sequences.
async fn readyz(State(st): State<AppState>) -> Response {
    match st.svc.store().ping().await {
        Ok(()) => {
            let mut trees = String::new();
            let mut refused = false;
            for n in st.svc.tree_names() {
                if let Ok(t) = st.svc.tree(&n) {
                    if let Some(why) = t.hsm_failing() {
                        refused = true;
                        trees.push_str(&format!("tree {n}: {why}\n"));
                    }
                    let role = match (t.refusal(), t.db_id(), t.is_active()) {
                        _ if t.is_frozen() => "frozen (reads only)".into(),
                        _ if t.state() == crate::tlog::TreeState::Freezing => {
                            "being frozen (committing its last batch)".into()
                        }
                        (Some(why), _, _) => {
                            refused = true;
                            format!("refused: {why}")
                        }
                        (None, None, _) => "not created".into(),
                        (None, Some(_), true) => "active".into(),
                        (None, Some(_), false) => "standby".into(),
                    };
                    trees.push_str(&format!("tree {n}: {role}\n"));
                }
            }
            if refused {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready\n{trees}"),
                )
                    .into_response()
            } else {
                (StatusCode::OK, format!("ready\n{trees}")).into_response()
            }
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n")).into_response(),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    let m = &st.metrics;
    let mut s = String::new();
    let counter = |s: &mut String, name: &str, help: &str, v: u64| {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    };
    counter(
        &mut s,
        "sigvault_tlog_appends_total",
        "Entries appended.",
        m.appends_ok.load(Ordering::Relaxed),
    );
    counter(
        &mut s,
        "sigvault_tlog_appends_duplicate_total",
        "Appends answered with an existing entry.",
        m.appends_duplicate.load(Ordering::Relaxed),
    );
    counter(
        &mut s,
        "sigvault_tlog_appends_failed_total",
        "Appends that failed.",
        m.appends_failed.load(Ordering::Relaxed),
    );
    counter(
        &mut s,
        "sigvault_tlog_batch_requests_total",
        "Batch append requests (the personalities coalesce concurrent appends into them).",
        m.batch_requests.load(Ordering::Relaxed),
    );
    counter(
        &mut s,
        "sigvault_tlog_proofs_total",
        "Proofs served.",
        m.proofs_served.load(Ordering::Relaxed),
    );
    counter(
        &mut s,
        "sigvault_tlog_tiles_total",
        "Tiles served.",
        m.tiles_served.load(Ordering::Relaxed),
    );
    counter(
        &mut s,
        "sigvault_tlog_bad_requests_total",
        "Malformed requests.",
        m.bad_requests.load(Ordering::Relaxed),
    );
    let trees: Vec<_> = st
        .svc
        .tree_names()
        .into_iter()
        .filter_map(|n| st.svc.tree(&n).ok().map(|t| (n, t)))
        .collect();
    let mut gauge =
        |name: &str, help: &str, kind: &str, f: &dyn Fn(&super::Tree) -> Option<u64>| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (n, t) in &trees {
                if let Some(v) = f(t) {
                    s.push_str(&format!("{name}{{tree=\"{n}\"}} {v}\n"));
                }
            }
        };
    gauge(
        "sigvault_tlog_tree_active",
        "1 if this instance sequences the tree.",
        "gauge",
        &|t| Some(u64::from(t.is_active())),
    );
    gauge(
        "sigvault_tlog_tree_size",
        "Integrated tree size.",
        "gauge",
        &|t| t.cached_head().map(|h| h.size),
    );
    gauge(
        "sigvault_tlog_queue_depth",
        "Appends waiting to be sequenced.",
        "gauge",
        &|t| Some(t.queue_depth() as u64),
    );
    gauge(
        "sigvault_tlog_batches_total",
        "Batches committed.",
        "counter",
        &|t| Some(t.metrics().batches.load(Ordering::Relaxed)),
    );
    gauge(
        "sigvault_tlog_batch_failures_total",
        "Batches not committed.",
        "counter",
        &|t| Some(t.metrics().failed_batches.load(Ordering::Relaxed)),
    );
    gauge(
        "sigvault_tlog_last_batch_size",
        "Entries in the last batch.",
        "gauge",
        &|t| Some(t.metrics().last_batch_size.load(Ordering::Relaxed)),
    );
    gauge(
        "sigvault_tlog_batch_entries_total",
        "Entries in committed batches.",
        "counter",
        &|t| Some(t.metrics().batch_entries.load(Ordering::Relaxed)),
    );
    type Pick = fn(&super::sequencer::SeqMetrics) -> &crate::metrics::Histogram;
    let histograms: [(&str, &str, Pick); 3] = [
        (
            "sigvault_tlog_integration_seconds",
            "Append-to-integrated latency.",
            |m| &m.latency,
        ),
        (
            "sigvault_tlog_prepare_seconds",
            "Time to integrate and sign a batch (dedup lookup, hashing, checkpoint signature).",
            |m| &m.prepare,
        ),
        (
            "sigvault_tlog_commit_seconds",
            "Time of a batch's database transaction.",
            |m| &m.commit,
        ),
    ];
    for (name, help, pick) in histograms {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        for (n, t) in &trees {
            pick(t.metrics()).render(name, &format!("tree=\"{n}\""), &mut s);
        }
    }
    s.push_str(&crate::hsm::metrics_text());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}

async fn public_checkpoint(
    State(st): State<AppState>,
    Path(tree): Path<String>,
) -> Result<Response, ApiError> {
    let h = st.svc.head(&tree).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        h.checkpoint.clone(),
    )
        .into_response())
}

async fn public_tile(
    State(st): State<AppState>,
    Path((tree, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id =
        TileId::parse(&format!("tile/{path}")).map_err(|e| bad(format!("bad tile path: {e}")))?;
    let body = match id.kind() {
        TileKind::Hashes { level } => st.svc.tile(&tree, level, id.index(), id.width()).await?,
        TileKind::Entries => entry_bundle(&st, &tree, id.index(), id.width()).await?,
    };
    let Some(body) = body else {
        return Ok((
            StatusCode::NOT_FOUND,
            Json(ErrorBody {
                code: 404,
                message: "no such tile in this tree".into(),
            }),
        )
            .into_response());
    };
    st.metrics.tiles_served.fetch_add(1, Ordering::Relaxed);
    let cache = if id.is_full() {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=60"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response())
}

/// An entry bundle: each entry as a big-endian u16 length and its bytes.
async fn entry_bundle(
    st: &AppState,
    tree: &str,
    index: u64,
    width: u16,
) -> Result<Option<Vec<u8>>, ApiError> {
    let head = st.svc.head(tree).await?;
    let start = index.saturating_mul(256);
    let end = start.saturating_add(u64::from(width));
    if end > head.size {
        return Ok(None);
    }
    let rows = st.svc.entries(tree, start, end, 256).await?;
    if rows.len() != usize::from(width) {
        return Ok(None);
    }
    let mut out = Vec::new();
    for e in rows {
        let d = e.data;
        let len = u16::try_from(d.len())
            .map_err(|_| ApiError(TlogError::Internal("entry too large for a bundle".into())))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&d);
    }
    Ok(Some(out))
}
