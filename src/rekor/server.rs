//! Rekor v1 HTTP API at the origin root, plus `/healthz`, `/readyz`, `/metrics`.
//!
//! Errors are `{"code": <status>, "message": "..."}` (as upstream), except a missing entry,
//! which is a 404 with an empty body.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::kinds::Verifier;
use super::shard::Shard;
use super::{LogEntry, Rekor, RekorError, index};

/// Most lookups in one `entries/retrieve` request (upstream's limit).
pub const MAX_SEARCH_QUERIES: usize = 10;

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub created: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
}

/// How long an upload refused because the active shard's tree was frozen waits for this service
/// to move to the next shard (`systemctl reload sigvault-rekor` after the tlog's reload) before
/// the refusal is answered.
const NEXT_SHARD_WAIT: Duration = Duration::from_secs(10);

/// The log being served, which a reload replaces ([`AppState::replace`]), and the counters.
#[derive(Clone)]
pub struct AppState {
    log: Arc<watch::Sender<Arc<Rekor>>>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(rekor: Arc<Rekor>) -> Self {
        Self {
            log: Arc::new(watch::Sender::new(rekor)),
            metrics: Arc::default(),
        }
    }

    /// The log as it is now; a request holds on to one for all it does.
    pub fn rekor(&self) -> Arc<Rekor> {
        Arc::clone(&self.log.borrow())
    }

    /// Move to `rekor` (its shards extending the current ones): requests from now on use it,
    /// those under way finish on the one they began with.
    pub fn replace(&self, rekor: Arc<Rekor>) {
        let _ = self.log.send_replace(rekor);
    }

    /// The log that replaced `old`, once one has (within `within`).
    async fn newer_than(&self, old: &Arc<Rekor>, within: Duration) -> Option<Arc<Rekor>> {
        let mut rx = self.log.subscribe();
        let moved = rx.wait_for(|now| !Arc::ptr_eq(now, old));
        match tokio::time::timeout(within, moved).await {
            Ok(Ok(now)) => Some(Arc::clone(&now)),
            _ => None,
        }
    }
}

pub struct ApiError(pub RekorError);

impl From<RekorError> for ApiError {
    fn from(e: RekorError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.status();
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "rekor request failed");
        }
        if status == StatusCode::NOT_FOUND {
            return status.into_response();
        }
        let body = serde_json::json!({"code": code, "message": self.0.to_string()});
        let mut resp = (status, Json(body)).into_response();
        match &self.0 {
            RekorError::Conflict(id) => {
                if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/log/entries/{id}")) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
            }
            RekorError::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

/// A JSON response body ending in a newline, byte for byte as upstream's Go server writes it
/// (`json.Encoder`). Clients may depend on that: sigstore-rs 0.14 cuts the entry out of the
/// `POST /api/v1/log/entries` response by fixed offsets from the end and fails without the
/// newline.
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(mut body) => {
                body.push(b'\n');
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    body,
                )
                    .into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a response");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError(RekorError::BadRequest(m.into()))
}

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/log/entries", post(create).get(by_index))
        .route("/api/v1/log/entries/retrieve", post(retrieve))
        .route("/api/v1/log/entries/retrieve/", post(retrieve))
        .route("/api/v1/log/entries/{id}", get(by_id))
        .route("/api/v1/index/retrieve", post(search_index))
        .route("/api/v1/log", get(log_info))
        .route("/api/v1/log/proof", get(proof))
        .route("/api/v1/log/publicKey", get(public_key))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn json_value(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "malformed JSON request body: {}",
            crate::http::json_error_text(&e)
        ))
    })
}

fn entry_map(entries: impl IntoIterator<Item = LogEntry>) -> Value {
    let mut m = Map::new();
    for e in entries {
        m.insert(e.entry_id, e.value);
    }
    Value::Object(m)
}

async fn create(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let result = match json_value(&body) {
        Ok(v) => upload(&st, &v).await.map_err(ApiError),
        Err(e) => Err(e),
    };
    match result {
        Ok(entry) => {
            st.metrics.created.fetch_add(1, Ordering::Relaxed);
            let id = entry.entry_id.clone();
            let mut resp = (StatusCode::CREATED, Json(entry_map([entry]))).into_response();
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&id) {
                h.insert(header::ETAG, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/log/entries/{id}")) {
                h.insert(header::LOCATION, v);
            }
            resp
        }
        Err(e) => {
            let m = &st.metrics;
            match e.0.status() {
                409 => m.duplicates.fetch_add(1, Ordering::Relaxed),
                400 | 422 => m.rejected.fetch_add(1, Ordering::Relaxed),
                _ => m.failed.fetch_add(1, Ordering::Relaxed),
            };
            e.into_response()
        }
    }
}

/// Upload into the active shard. Refused because its tree was just frozen (the tlog was reloaded
/// for a shard rotation, this service not yet), the entry is not in any tree: it waits for the
/// reload that moves this service to the next shard, and goes there.
async fn upload(st: &AppState, v: &Value) -> Result<LogEntry, RekorError> {
    let rekor = st.rekor();
    match rekor.upload(v).await {
        Err(RekorError::Frozen) => match st.newer_than(&rekor, NEXT_SHARD_WAIT).await {
            Some(next) => next.upload(v).await,
            None => Err(RekorError::Frozen),
        },
        r => r,
    }
}

#[derive(Deserialize)]
struct IndexQuery {
    #[serde(rename = "logIndex")]
    log_index: Option<String>,
}

async fn by_index(
    State(st): State<AppState>,
    Query(q): Query<IndexQuery>,
) -> Result<Json<Value>, ApiError> {
    let s = q.log_index.ok_or_else(|| bad("logIndex is required"))?;
    let i: u64 = s
        .parse()
        .map_err(|_| bad("logIndex must be a non-negative integer"))?;
    let e = st.rekor().entry_by_index(i).await?;
    Ok(Json(entry_map([e])))
}

async fn by_id(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (tree, uuid) = super::parse_entry_id(&id)?;
    let e = st.rekor().entry_by_uuid(tree, &uuid).await?;
    Ok(Json(entry_map([e])))
}

async fn retrieve(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let v = json_value(&body)?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("the request must be a JSON object"))?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "entryUUIDs" | "logIndexes" | "entries") {
            return Err(bad(format!("unknown field {k:?}")));
        }
    }
    let list = |name: &str| -> Result<Vec<Value>, ApiError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(bad(format!("{name} must be an array"))),
        }
    };
    let (uuids, indexes, entries) = (list("entryUUIDs")?, list("logIndexes")?, list("entries")?);
    let total = uuids.len() + indexes.len() + entries.len();
    if total > MAX_SEARCH_QUERIES {
        return Err(ApiError(RekorError::Unprocessable(format!(
            "more than max allowed {MAX_SEARCH_QUERIES} entries in request"
        ))));
    }
    let mut found = Vec::new();
    let mut hashes = Vec::new();
    for u in &uuids {
        let s = u
            .as_str()
            .ok_or_else(|| bad("entryUUIDs must be strings"))?;
        hashes.push(super::parse_entry_id(s)?);
    }
    for e in &entries {
        let c = super::kinds::canonicalize(e).map_err(|source| {
            ApiError(RekorError::Entry {
                context: "canonicalizing entry",
                source,
            })
        })?;
        hashes.push((None, crate::merkle::leaf_hash(&c.body)));
    }
    for (tree, h) in &hashes {
        match st.rekor().entry_by_uuid(*tree, h).await {
            Ok(e) => found.push(e),
            Err(RekorError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for i in &indexes {
        let i = i
            .as_u64()
            .ok_or_else(|| bad("logIndexes must be non-negative integers"))?;
        match st.rekor().entry_by_index(i).await {
            Ok(e) => found.push(e),
            Err(RekorError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(Value::Array(
        found.into_iter().map(|e| entry_map([e])).collect(),
    )))
}

/// `<alg>:<hex>` form of a hash query, `[alg:]<hex digest>` as upstream's API takes it (the
/// algorithm told by the length when absent); a 400 for anything that is not such a digest, as
/// upstream answers, rather than a search that can only come back empty.
fn prefixed_hash(h: &str) -> Result<String, ApiError> {
    let h = h.trim().to_lowercase();
    let (alg, hex) = match h.split_once(':') {
        Some((alg, hex)) => (Some(alg), hex),
        None => (None, h.as_str()),
    };
    let by_len = match hex.len() {
        40 => "sha1",
        64 => "sha256",
        96 => "sha384",
        128 => "sha512",
        _ => "",
    };
    if by_len.is_empty()
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        || alg.is_some_and(|a| a != by_len)
    {
        return Err(bad(
            "hash must be a hex digest: [sha256:]<64 hex digits> (or sha1, sha384, sha512 with their lengths)",
        ));
    }
    Ok(format!("{by_len}:{hex}"))
}

async fn search_index(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    if st.rekor().indexer().is_none() {
        return Err(ApiError(RekorError::Internal(
            "Search Index API not enabled in this Rekor instance".into(),
        )));
    }
    let v = json_value(&body)?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("the request must be a JSON object"))?;
    let mut q = index::Query::default();
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("{name} must be a string"))),
        }
    };
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "hash" | "publicKey" | "email" | "subject" | "operator"
        ) {
            return Err(bad(format!("unknown field {k:?}")));
        }
    }
    q.and = match text("operator")?.as_deref() {
        None | Some("or") => false,
        Some("and") => true,
        Some(o) => {
            return Err(bad(format!(
                "operator must be \"and\" or \"or\", not {o:?}"
            )));
        }
    };
    if let Some(h) = text("hash")? {
        q.criteria.push(vec![prefixed_hash(&h)?]);
    }
    match obj.get("publicKey") {
        None | Some(Value::Null) => {}
        Some(Value::Object(pk)) => {
            let format = pk.get("format").and_then(Value::as_str).unwrap_or("");
            if format != "x509" {
                return Err(bad(format!(
                    "the PKI format requested ({format:?}) is not supported by this server (only \"x509\")"
                )));
            }
            let content = pk
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("publicKey.content is required (base64 PEM)"))?;
            let pem = B64
                .decode(content)
                .map_err(|_| bad("publicKey.content is not standard base64"))?;
            let key = Verifier::parse(&pem, "publicKey.content")
                .map_err(|e| bad(format!("public key provided could not be parsed: {e}")))?;
            let fp = key.fingerprint();
            // hashedrekord files keys under the bare hex, dsse and intoto under "sha256:<hex>".
            q.criteria.push(vec![fp.clone(), format!("sha256:{fp}")]);
        }
        Some(_) => return Err(bad("publicKey must be an object")),
    }
    if let Some(e) = text("email")? {
        crate::pki::check_email_address(&e).map_err(|why| bad(format!("email: {why}")))?;
        q.criteria.push(vec![e.to_lowercase()]);
    }
    if let Some(s) = text("subject")? {
        q.criteria.push(vec![s.to_lowercase()]);
    }
    if q.criteria.is_empty() {
        return Err(bad(
            "give at least one of hash, publicKey, email or subject to search for",
        ));
    }
    let ids = st.rekor().search(&q).await?;
    Ok(Json(Value::Array(
        ids.into_iter().map(Value::String).collect(),
    )))
}

async fn log_info(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(st.rekor().log_info().await?))
}

#[derive(Deserialize)]
struct ProofQuery {
    #[serde(rename = "firstSize")]
    first_size: Option<String>,
    #[serde(rename = "lastSize")]
    last_size: Option<String>,
    #[serde(rename = "treeID")]
    tree_id: Option<String>,
}

/// The shard a `treeID` parameter names (decimal, as `GET /api/v1/log` gives it); the active
/// one without it.
fn shard_param<'a>(rekor: &'a Rekor, t: Option<&str>) -> Result<&'a Shard, ApiError> {
    let id = match t {
        None | Some("") => None,
        Some(t) => Some(
            t.parse::<u64>()
                .map_err(|_| bad(format!("unknown treeID {t:?}")))?,
        ),
    };
    rekor
        .shard(id)
        .ok_or_else(|| bad(format!("unknown treeID {:?}", t.unwrap_or_default())))
}

async fn proof(
    State(st): State<AppState>,
    Query(q): Query<ProofQuery>,
) -> Result<Json<Value>, ApiError> {
    let rekor = st.rekor();
    let shard = shard_param(&rekor, q.tree_id.as_deref())?;
    let num = |v: Option<String>, name: &str, default: Option<u64>| -> Result<u64, ApiError> {
        match v {
            None => default.ok_or_else(|| bad(format!("{name} is required"))),
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| bad(format!("{name} must be a non-negative integer"))),
        }
    };
    let first = num(q.first_size, "firstSize", Some(1))?;
    let last = num(q.last_size, "lastSize", None)?;
    if first == 0 || last == 0 {
        return Err(bad("firstSize and lastSize must be at least 1"));
    }
    Ok(Json(rekor.consistency(shard, first, last).await?))
}

#[derive(Deserialize)]
struct KeyQuery {
    #[serde(rename = "treeID")]
    tree_id: Option<String>,
}

async fn public_key(
    State(st): State<AppState>,
    Query(q): Query<KeyQuery>,
) -> Result<Response, ApiError> {
    let rekor = st.rekor();
    let shard = shard_param(&rekor, q.tree_id.as_deref())?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        shard.public_pem().to_owned(),
    )
        .into_response())
}

/// Ready when its key signs and a tlog instance sequences the tree (takes appends), not merely
/// answers reads; says how far the search index is.
async fn readyz(State(st): State<AppState>) -> Response {
    let rekor = st.rekor();
    let indexed = || {
        rekor
            .indexer()
            .map(|i| format!("indexed {}\n", i.indexed()))
            .unwrap_or_default()
    };
    rekor
        .tlog()
        .personality_readyz(rekor.tree(), rekor.hsm_failing(), indexed)
        .await
        .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let m = &st.metrics;
    let mut s = String::new();
    for (name, help, v) in [
        (
            "sigvault_rekor_entries_created_total",
            "Entries logged (201).",
            m.created.load(Ordering::Relaxed),
        ),
        (
            "sigvault_rekor_duplicates_total",
            "Uploads of an entry already in the log (409).",
            m.duplicates.load(Ordering::Relaxed),
        ),
        (
            "sigvault_rekor_rejected_total",
            "Uploads refused (400/422).",
            m.rejected.load(Ordering::Relaxed),
        ),
        (
            "sigvault_rekor_failed_total",
            "Uploads that failed (5xx).",
            m.failed.load(Ordering::Relaxed),
        ),
    ] {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    }
    if let Some(ix) = st.rekor().indexer() {
        s.push_str(&format!(
            "# HELP sigvault_rekor_indexed_entries Entries below this index are searchable.\n# TYPE sigvault_rekor_indexed_entries gauge\nsigvault_rekor_indexed_entries {}\n",
            ix.indexed()
        ));
    }
    s.push_str(&crate::hsm::metrics_text());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}
