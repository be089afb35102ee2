//! The Rekor v2 HTTP API: each log at its URL's path (`<path>/api/v2/log/entries`,
//! `<path>/checkpoint`, `<path>/tile/...`), plus `/healthz`, `/readyz` and `/metrics` for the
//! whole service.
//!
//! Errors are grpc-gateway's shape, as upstream's: `{"code": <gRPC code>, "message": "..."}`;
//! a duplicate entry answers 409 with the existing entry's index in `x-log-index`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{Log, RekorV2Error};
use crate::merkle::tiles::TileId;

/// Counters of one log, for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub created: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub tiles_served: AtomicU64,
}

#[derive(Clone)]
pub struct LogState {
    pub log: Arc<Log>,
    pub metrics: Arc<Metrics>,
}

#[derive(Clone)]
pub struct AppState {
    pub logs: Vec<LogState>,
}

pub struct ApiError(pub RekorV2Error);

impl From<RekorV2Error> for ApiError {
    fn from(e: RekorV2Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "rekor-v2 request failed");
        }
        let body = serde_json::json!({"code": self.0.grpc_code(), "message": self.0.to_string()});
        let mut resp = (status, axum::Json(body)).into_response();
        match &self.0 {
            RekorV2Error::Conflict(index) => {
                if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
                    resp.headers_mut().insert("x-log-index", v);
                }
            }
            RekorV2Error::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

/// The routes of one log, relative to its path.
fn log_router(st: LogState) -> axum::Router {
    axum::Router::new()
        .route("/api/v2/log/entries", post(create))
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        // Where the proto's HTTP bindings put the read path (upstream leaves them
        // unimplemented and serves the read path from storage at the log's URL).
        .route("/api/v2/checkpoint", get(checkpoint))
        .route("/api/v2/tile/{*path}", get(tile))
        .with_state(st)
}

pub fn router(state: AppState) -> axum::Router {
    let mut r = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    for st in state.logs {
        let prefix = path_prefix(st.log.origin()).to_owned();
        let lr = log_router(st);
        r = if prefix.is_empty() {
            r.merge(lr)
        } else {
            r.nest(&prefix, lr)
        };
    }
    r
}

/// The path part of an origin (`host[:port][/path]`): "" or "/path".
fn path_prefix(origin: &str) -> &str {
    origin.find('/').map_or("", |i| &origin[i..])
}

async fn create(State(st): State<LogState>, body: axum::body::Bytes) -> Response {
    let m = &st.metrics;
    match st.log.create_entry(&body).await {
        Ok(entry) => {
            m.created.fetch_add(1, Ordering::Relaxed);
            (StatusCode::CREATED, axum::Json(entry)).into_response()
        }
        Err(e) => {
            match e.status() {
                409 => m.duplicates.fetch_add(1, Ordering::Relaxed),
                400 | 403 => m.rejected.fetch_add(1, Ordering::Relaxed),
                _ => m.failed.fetch_add(1, Ordering::Relaxed),
            };
            ApiError(e).into_response()
        }
    }
}

async fn checkpoint(State(st): State<LogState>) -> Result<Response, ApiError> {
    let cp = st.log.checkpoint().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        cp,
    )
        .into_response())
}

async fn tile(State(st): State<LogState>, Path(path): Path<String>) -> Result<Response, ApiError> {
    // Checked here, so a path that is no tile is the client's error, not the tlog's.
    let id = TileId::parse(&format!("tile/{path}"))
        .map_err(|e| ApiError(RekorV2Error::BadRequest(format!("bad tile path: {e}"))))?;
    let body = st.log.tile(&path).await?;
    st.metrics.tiles_served.fetch_add(1, Ordering::Relaxed);
    // A full tile never changes; a partial one is replaced by wider ones as the log grows.
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

/// Ready when every log's tree answers; a frozen log is ready read-only.
async fn readyz(State(st): State<AppState>) -> Response {
    let mut text = String::new();
    let mut ok = true;
    for l in &st.logs {
        let log = &l.log;
        match log.tlog().sequencer(log.tree()).await {
            Ok(s) if s.frozen => text.push_str(&format!(
                "{}: ready (read-only: the tree is frozen), tree size {}\n",
                log.url(),
                s.tree_size
            )),
            Ok(s) => text.push_str(&format!(
                "{}: ready, tree size {}\n",
                log.url(),
                s.tree_size
            )),
            Err(e) => {
                ok = false;
                text.push_str(&format!("{}: tlog: {e}\n", log.url()));
            }
        }
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, text).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let mut s = String::new();
    type Pick = fn(&Metrics) -> &AtomicU64;
    let counters: [(&str, &str, Pick); 5] = [
        (
            "sigvault_rekor_v2_entries_created_total",
            "Entries logged (201).",
            |m| &m.created,
        ),
        (
            "sigvault_rekor_v2_duplicates_total",
            "Submissions of an entry already in the log (409).",
            |m| &m.duplicates,
        ),
        (
            "sigvault_rekor_v2_rejected_total",
            "Submissions refused (400, or 403 by a frozen log).",
            |m| &m.rejected,
        ),
        (
            "sigvault_rekor_v2_failed_total",
            "Submissions that failed (5xx).",
            |m| &m.failed,
        ),
        (
            "sigvault_rekor_v2_tiles_served_total",
            "Tiles and entry bundles served.",
            |m| &m.tiles_served,
        ),
    ];
    for (name, help, pick) in counters {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        for l in &st.logs {
            s.push_str(&format!(
                "{name}{{log=\"{}\"}} {}\n",
                l.log.origin(),
                pick(&l.metrics).load(Ordering::Relaxed)
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}
