//! `sigvault tuf serve`: the repository as static files, with the caching TUF wants, and the
//! operator's view of it.
//!
//! * Versioned files (`N.root.json`, `N.targets.json`, `N.snapshot.json`,
//!   `targets/<sha256>.<name>`) never change once written: `Cache-Control: public,
//!   max-age=31536000, immutable`, so any cache or CDN may keep them.
//! * `timestamp.json` changes at every refresh: `max-age` of `timestamp_max_age_secs` (default
//!   60 s; 0 = `no-cache`), with an `ETag` so caches revalidate cheaply. How stale a cache may
//!   serve it is how long a client may see an older (still valid) state.
//! * A missing file is a 404 that caches must not keep: clients probe `N+1.root.json` to learn
//!   of a new root, and that file appears one day. Only names of the TUF layout are served; the
//!   state directory's other files (transcript, refresh record, lock) never are.
//! * `/healthz` (the process serves), `/readyz` (503 with the reasons while anything needs a
//!   person, [`super::status`]), `/metrics` (time left per role, versions, the refresh).
//!
//! Point load balancers at `/healthz`: the files stay valid while `/readyz` warns, and an
//! operator is what readiness is for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::repository::{Lock, valid_target_name};
use super::status::{self, Report};
use crate::config::tuf::TufSection;

/// Counters of files served.
#[derive(Default)]
pub struct Metrics {
    pub served: AtomicU64,
    pub not_modified: AtomicU64,
    pub not_found: AtomicU64,
}

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<TufSection>,
    pub metrics: Arc<Metrics>,
    /// The last report made while no writer held the lock: what is answered while one does.
    pub last: Arc<std::sync::Mutex<Option<Report>>>,
}

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/targets/{file}", get(target))
        .route("/{file}", get(metadata))
        .fallback(|| async { not_found() })
        .with_state(state)
}

/// What a URL may name.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// `timestamp.json`.
    Timestamp,
    /// A versioned metadata or target file.
    Immutable,
}

/// Which repository file `name` (one path segment) is, if it is one.
fn metadata_kind(name: &str) -> Option<Kind> {
    if name == "timestamp.json" {
        return Some(Kind::Timestamp);
    }
    let (version, rest) = name.split_once('.')?;
    let numeric = !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit())
        && !version.starts_with('0');
    (numeric && matches!(rest, "root.json" | "targets.json" | "snapshot.json"))
        .then_some(Kind::Immutable)
}

/// Is `name` a consistent-snapshot target file name, `<64 hex>.<target name>`?
fn is_target_file(name: &str) -> bool {
    name.split_once('.').is_some_and(|(hash, rest)| {
        hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && valid_target_name(rest)
    })
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        "not found\n",
    )
        .into_response()
}

async fn serve_file(st: &AppState, rel: &str, kind: Kind, headers: &HeaderMap) -> Response {
    let path = st.cfg.repository_dir().join(rel);
    let Ok(bytes) = tokio::fs::read(&path).await else {
        st.metrics.not_found.fetch_add(1, Ordering::Relaxed);
        return not_found();
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..32]);
    let cache = match kind {
        Kind::Immutable => "public, max-age=31536000, immutable".to_owned(),
        Kind::Timestamp if st.cfg.timestamp_max_age_secs == 0 => "no-cache".to_owned(),
        Kind::Timestamp => format!("public, max-age={}", st.cfg.timestamp_max_age_secs),
    };
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        st.metrics.not_modified.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    let ctype = if rel.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    st.metrics.served.fetch_add(1, Ordering::Relaxed);
    (StatusCode::OK, h, bytes).into_response()
}

async fn metadata(
    State(st): State<AppState>,
    UrlPath(file): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    match metadata_kind(&file) {
        Some(kind) => serve_file(&st, &file, kind, &headers).await,
        None => {
            st.metrics.not_found.fetch_add(1, Ordering::Relaxed);
            not_found()
        }
    }
}

async fn target(
    State(st): State<AppState>,
    UrlPath(file): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !is_target_file(&file) {
        st.metrics.not_found.fetch_add(1, Ordering::Relaxed);
        return not_found();
    }
    serve_file(&st, &format!("targets/{file}"), Kind::Immutable, &headers).await
}

/// A report, made off the async threads (it verifies signatures) and, while a writer holds
/// the lock, the last settled one instead of a half-written state.
async fn current_report(st: &AppState) -> Report {
    let st2 = st.clone();
    let made = tokio::task::spawn_blocking(move || {
        let _shared = Lock::try_shared(&st2.cfg.dir)?;
        Some(status::report(&st2.cfg))
    })
    .await
    .ok()
    .flatten();
    let mut last = st.last.lock().unwrap_or_else(|p| p.into_inner());
    match made {
        Some(r) => {
            *last = Some(r.clone());
            r
        }
        None => match last.as_ref() {
            Some(r) => r.clone(),
            // No settled report yet (or no lock file: nothing has written here): look anyway.
            None => status::report(&st.cfg),
        },
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    let r = current_report(&st).await;
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        r.text(),
    )
        .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    use std::fmt::Write as _;
    let r = current_report(&st).await;
    let mut s = r.metrics();
    let m = &st.metrics;
    let _ = writeln!(
        s,
        "# HELP sigvault_tuf_files_served_total Repository files answered 200.\n# TYPE sigvault_tuf_files_served_total counter\nsigvault_tuf_files_served_total {}",
        m.served.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP sigvault_tuf_files_not_modified_total Repository files answered 304 (If-None-Match).\n# TYPE sigvault_tuf_files_not_modified_total counter\nsigvault_tuf_files_not_modified_total {}",
        m.not_modified.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP sigvault_tuf_files_not_found_total Requests for files that are not there (404), e.g. clients probing for the next root.\n# TYPE sigvault_tuf_files_not_found_total counter\nsigvault_tuf_files_not_found_total {}",
        m.not_found.load(Ordering::Relaxed)
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tuf_layout_is_served() {
        assert_eq!(metadata_kind("timestamp.json"), Some(Kind::Timestamp));
        for ok in ["1.root.json", "12.targets.json", "3.snapshot.json"] {
            assert_eq!(metadata_kind(ok), Some(Kind::Immutable), "{ok}");
        }
        for bad in [
            "root.json",
            "0.root.json",
            "01.root.json",
            "1.timestamp.json",
            "transcript.jsonl",
            "refresh.json",
            "lock",
            "1.root.json.tmp",
            ".1.root.json.7.tmp",
            "x.root.json",
        ] {
            assert_eq!(metadata_kind(bad), None, "{bad}");
        }
        let h = "a".repeat(64);
        assert!(is_target_file(&format!("{h}.trusted_root.json")));
        for bad in [
            format!("{}.trusted_root.json", "A".repeat(64)),
            format!("{}.x", "a".repeat(63)),
            format!("{h}..x"),
            format!("{h}.a/b"),
            h.clone(),
        ] {
            assert!(!is_target_file(&bad), "{bad}");
        }
    }
}
