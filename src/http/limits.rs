//! Request limits as tower layers: body size, handler time, requests in flight; and a handler
//! that panics answers 500 instead of dropping the connection.
//!
//! Overload is answered immediately (load shedding) instead of queueing: a queue only adds
//! latency in front of an HSM that is already the bottleneck, and a `503` with `Retry-After`
//! lets the caller back off.

use std::time::Duration;

use axum::Router;
use axum::body::HttpBody as _;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// Seconds a shed client is asked to wait before retrying.
const RETRY_AFTER_SECS: &str = "1";

/// Status for a request whose handler ran out of time. `503` rather than `408`: the request
/// arrived in full, the server was too slow, and clients treat 503 as retryable.
const TIMEOUT_STATUS: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// Wrap every route of `router` in the standard limits:
///
/// * request bodies over `max_body_bytes` get `413` (also lifts axum's own 2 MiB default so the
///   configured value is the one in force);
/// * a request not answered within `timeout` gets `503` and its handler future is dropped;
/// * more than `max_in_flight` concurrent requests (across all routes) get `503` with
///   `Retry-After` at once.
///
/// * a handler that panics (a bug: input must only ever meet typed errors; `tests/fuzz.rs`
///   looks for such inputs) gets `500`, and the other requests go on.
///
/// These errors carry a JSON body `{"code": <status>, "message": "..."}`.
pub fn with_limits(
    router: Router,
    max_body_bytes: usize,
    timeout: Duration,
    max_in_flight: usize,
) -> Router {
    router.layer(CatchPanicLayer::custom(panicked)).layer(
        ServiceBuilder::new()
            .layer(axum::middleware::map_response(json_errors))
            .layer(HandleErrorLayer::new(overloaded))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(max_in_flight.max(1)))
            .layer(RequestBodyLimitLayer::new(max_body_bytes))
            .layer(TimeoutLayer::with_status_code(TIMEOUT_STATUS, timeout))
            .layer(DefaultBodyLimit::max(max_body_bytes)),
    )
}

/// The JSON error body used for the limit responses.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "code": status.as_u16(), "message": message });
    (status, axum::Json(body)).into_response()
}

/// The 500 for a handler that panicked. The panic's message is not repeated here: it may quote
/// the request (the binary's panic hook has written where it happened).
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked (a bug); answered 500");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// Only load shedding can fail below the error handler; anything else would be a bug in the stack.
async fn overloaded(err: BoxError) -> Response {
    if err.is::<tower::load_shed::error::Overloaded>() {
        let mut res = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is at its concurrent request limit; retry later",
        );
        res.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
        res
    } else {
        tracing::error!(error = %err, "unexpected middleware error");
        json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

/// Give the tower-http and axum limit responses (empty or plain-text bodies) the JSON shape.
/// Responses that are already JSON — the handlers' own errors — pass through untouched.
async fn json_errors(res: Response) -> Response {
    let message = match res.status() {
        StatusCode::PAYLOAD_TOO_LARGE => "request body is larger than the server accepts",
        // The timeout layer answers with an empty body; a handler's own 503 carries its reason
        // (plain text for the CT log and the readiness probes) and passes through untouched.
        s if s == TIMEOUT_STATUS && res.body().size_hint().exact() == Some(0) => {
            "request took too long to process"
        }
        _ => return res,
    };
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    // Keep any other headers (e.g. a handler's Retry-After); only the body and its type change.
    let (mut parts, _) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut out = json_error(parts.status, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}
