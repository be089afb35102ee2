//! The TSA's HTTP API, as Sigstore's timestamp-authority serves it:
//!
//! * `POST /api/v1/timestamp`: a DER `TimeStampReq` (`application/timestamp-query`) or the JSON
//!   request (`application/json`) at the same URL; answered with a DER `TimeStampResp`
//!   (`application/timestamp-reply`): 200 (or upstream's 201, `created_status`) with a token;
//!   400 with a rejection for a request it does not grant; 503 with a rejection while the clock
//!   or the HSM cannot be vouched for; a plain-text 400 for bytes that are not a request at all;
//!   413 (from the limits layer) for an oversize body.
//! * `GET /api/v1/timestamp/certchain`: the chain, PEM, TSA certificate first.
//! * `/healthz`, `/readyz` (503 with the reason while no token could be issued), `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::request::{self, Failure, NotARequest, Request};
use super::{Tsa, TsaError, token};
use crate::metrics::Histogram;

/// The media types of RFC 3161 over HTTP (RFC 3161 §3.4).
pub const QUERY_TYPE: &str = "application/timestamp-query";
pub const REPLY_TYPE: &str = "application/timestamp-reply";

/// How much of a refusal's reason the audit line keeps.
const AUDIT_REASON_CHARS: usize = 160;

#[derive(Default)]
pub struct Metrics {
    pub issued: AtomicU64,
    /// Refusals, by [`Failure::ALL`] position.
    pub refused: [AtomicU64; Failure::ALL.len()],
    /// Bodies that were not a request at all.
    pub malformed: AtomicU64,
    pub latency: Histogram,
}

#[derive(Clone)]
pub struct AppState {
    /// Swapped whole by a reload (a renewed certificate, a rotated key): each request takes one
    /// snapshot, so the token it answers is signed by the key whose chain the same TSA serves.
    tsa: Arc<RwLock<Arc<Tsa>>>,
    pub metrics: Arc<Metrics>,
    /// Answer a granted token with 201 Created (upstream's habit) instead of 200.
    pub created_status: bool,
}

impl AppState {
    pub fn new(tsa: Tsa, created_status: bool) -> Self {
        Self {
            tsa: Arc::new(RwLock::new(Arc::new(tsa))),
            metrics: Arc::default(),
            created_status,
        }
    }

    /// The TSA requests use from now on.
    pub fn tsa(&self) -> Arc<Tsa> {
        Arc::clone(&self.tsa.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Serve with `tsa` from the next request on; requests under way finish with the old one.
    pub fn replace_tsa(&self, tsa: Tsa) {
        *self.tsa.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tsa);
    }
}

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/timestamp", post(timestamp))
        .route("/api/v1/timestamp/certchain", get(certchain))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Which form a body is in, from its Content-Type (sniffed from the first byte when there is
/// none): `Err` is the 415 for a type that is neither.
enum Form {
    Der,
    Json,
}

fn form(headers: &HeaderMap, body: &[u8]) -> Result<Form, String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match ct.as_deref() {
        Some(QUERY_TYPE) => Ok(Form::Der),
        Some("application/json") => Ok(Form::Json),
        None | Some("") | Some("application/octet-stream") => match body.first() {
            Some(b'{') => Ok(Form::Json),
            _ => Ok(Form::Der),
        },
        Some(other) => Err(format!(
            "unsupported Content-Type {other:?}: send a DER TimeStampReq as {QUERY_TYPE} or a JSON request as application/json"
        )),
    }
}

fn reply(status: StatusCode, der: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, REPLY_TYPE)], der).into_response()
}

fn text(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

async fn timestamp(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let started = Instant::now();
    let parsed = match form(&headers, &body) {
        Ok(Form::Der) => request::parse_der(&body),
        Ok(Form::Json) => request::parse_json(&body),
        Err(msg) => {
            st.metrics.malformed.fetch_add(1, Ordering::Relaxed);
            return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, &msg);
        }
    };
    let req = match parsed {
        Err(NotARequest(msg)) => {
            st.metrics.malformed.fetch_add(1, Ordering::Relaxed);
            return text(StatusCode::BAD_REQUEST, &msg);
        }
        Ok(Err(refusal)) => return refused(&st, None, &TsaError::Refused(refusal)),
        Ok(Ok(req)) => req,
    };
    match st.tsa().timestamp(&req) {
        Ok(issued) => {
            st.metrics.issued.fetch_add(1, Ordering::Relaxed);
            st.metrics.latency.observe(started.elapsed());
            tracing::info!(
                target: "sigvault::audit",
                serial = %issued.serial_hex,
                imprint = %format_args!("{}:{}", req.hash.name(), hex::encode(&req.digest)),
                gen_time = %issued.gen_time,
                policy = %issued.policy,
                "issued a timestamp"
            );
            let status = if st.created_status {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            reply(status, issued.der)
        }
        Err(e) => refused(&st, Some(&req), &e),
    }
}

/// Answer a request that gets no token: the rejection `TimeStampResp`, an audit line, a count.
fn refused(st: &AppState, req: Option<&Request>, e: &TsaError) -> Response {
    let failure = e.failure();
    if let Some(i) = Failure::ALL.iter().position(|f| *f == failure) {
        st.metrics.refused[i].fetch_add(1, Ordering::Relaxed);
    }
    let reason = match e {
        TsaError::Refused(r) => r.reason.clone(),
        other => other.to_string(),
    };
    let short: String = reason.chars().take(AUDIT_REASON_CHARS).collect();
    let imprint = req
        .map(|r| format!("{}:{}", r.hash.name(), hex::encode(&r.digest)))
        .unwrap_or_default();
    tracing::info!(
        target: "sigvault::audit",
        failure = failure.name(),
        imprint = %imprint,
        reason = ?short,
        "refused a timestamp request"
    );
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = reply(status, token::rejection(failure, &reason));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    resp
}

async fn certchain(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        st.tsa().chain_pem().to_owned(),
    )
        .into_response()
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.tsa().readiness() {
        Ok(()) => text(StatusCode::OK, "ready"),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &why),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    use std::fmt::Write as _;
    let m = &st.metrics;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# HELP sigvault_tsa_timestamps_issued_total Timestamp tokens issued.\n# TYPE sigvault_tsa_timestamps_issued_total counter\nsigvault_tsa_timestamps_issued_total {}",
        m.issued.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP sigvault_tsa_requests_refused_total Requests answered with a rejection, by PKIFailureInfo.\n# TYPE sigvault_tsa_requests_refused_total counter"
    );
    for (f, n) in Failure::ALL.iter().zip(&m.refused) {
        let _ = writeln!(
            s,
            "sigvault_tsa_requests_refused_total{{failure=\"{}\"}} {}",
            f.name(),
            n.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        s,
        "# HELP sigvault_tsa_requests_malformed_total Bodies that were not a timestamp request (400/415).\n# TYPE sigvault_tsa_requests_malformed_total counter\nsigvault_tsa_requests_malformed_total {}",
        m.malformed.load(Ordering::Relaxed)
    );
    m.latency.render_with_help(
        "sigvault_tsa_timestamp_seconds",
        "Time to answer a granted timestamp request.",
        &mut s,
    );
    let reading = st.tsa().clock_reading();
    let _ = writeln!(
        s,
        "# HELP sigvault_tsa_clock_synchronised 1 while the kernel reports the clock synchronised (adjtimex).\n# TYPE sigvault_tsa_clock_synchronised gauge\nsigvault_tsa_clock_synchronised {}",
        u8::from(reading.is_some_and(|r| r.synchronised()))
    );
    if let Some(r) = reading {
        let _ = writeln!(
            s,
            "# HELP sigvault_tsa_clock_estimated_error_seconds The kernel's estimated clock error.\n# TYPE sigvault_tsa_clock_estimated_error_seconds gauge\nsigvault_tsa_clock_estimated_error_seconds {}",
            r.estimated_error.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "# HELP sigvault_tsa_clock_maximum_error_seconds The kernel's maximum clock error.\n# TYPE sigvault_tsa_clock_maximum_error_seconds gauge\nsigvault_tsa_clock_maximum_error_seconds {}",
            r.maximum_error.as_secs_f64()
        );
    }
    let _ = writeln!(
        s,
        "# HELP sigvault_tsa_ready 1 while the TSA issues tokens (clock, certificate and HSM usable).\n# TYPE sigvault_tsa_ready gauge\nsigvault_tsa_ready {}",
        u8::from(st.tsa().readiness().is_ok())
    );
    s.push_str(&crate::hsm::metrics_text());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}
