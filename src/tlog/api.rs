//! The tlog internal API: wire types (JSON) and the typed client that ctlog and rekor use.
//!
//! Paths (all under the internal listener, a Unix socket by default):
//! * `POST /v1/trees/{tree}` — create the tree once (201; 409 if it exists).
//! * `GET  /v1/trees/{tree}/checkpoint` — [`HeadResponse`].
//! * `GET  /v1/trees/{tree}/sequencer` — [`SequencerResponse`] when this instance sequences the
//!   tree (takes appends); 503 from a standby, so a client with several endpoints finds the
//!   active one.
//! * `POST /v1/trees/{tree}/entries` — [`AppendRequest`] → [`AppendResponse`] once durable.
//! * `POST /v1/trees/{tree}/entries/batch` — [`BatchAppendRequest`] → [`BatchAppendResponse`]:
//!   up to [`MAX_APPENDS_PER_BATCH`] appends that join the same batch, one result each.
//! * `GET  /v1/trees/{tree}/entries?start=&end=` — [`EntriesResponse`] (at most 1000).
//! * `GET  /v1/trees/{tree}/proof/inclusion?index=&size=` or `?leaf_hash=<hex>&size=` —
//!   [`InclusionResponse`].
//! * `GET  /v1/trees/{tree}/proof/consistency?first=&second=` — [`ConsistencyResponse`].
//! * `GET  /v1/trees/{tree}/tile/<L>/<N>[.p/<W>]`, `.../tile/entries/<N>[.p/<W>]` — a C2SP
//!   tlog-tiles tile or entry bundle, raw bytes (404 when the tree does not have it yet).
//!
//! Errors are `{"code": <http status>, "message": "..."}`. Byte strings are standard base64,
//! hashes lowercase hex.

use serde::{Deserialize, Serialize};

/// Most entries returned by one entries request.
pub const MAX_ENTRIES_PER_REQUEST: u64 = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// The entry, base64.
    pub data: String,
    /// Optional identity hash (hex, 32 bytes) that deduplicates; default: the leaf hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Also return the inclusion proof at the covering checkpoint.
    #[serde(default)]
    pub proof: bool,
    /// Extra data (base64) stored with the entry but not hashed (a CT chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
}

/// Most appends in one batch request.
pub const MAX_APPENDS_PER_BATCH: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BatchAppendRequest {
    pub entries: Vec<AppendRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchAppendResponse {
    /// One per request entry, in order.
    pub results: Vec<BatchAppendResult>,
}

/// `{"ok": AppendResponse}` or `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BatchAppendResult {
    Ok(AppendResponse),
    Error(ErrorBody),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppendResponse {
    pub index: u64,
    pub leaf_hash: String,
    pub duplicate: bool,
    pub tree_size: u64,
    pub root_hash: String,
    /// The signed checkpoint (note text) for `tree_size`.
    pub checkpoint: String,
    /// Inclusion proof of `index` in `tree_size` (hex hashes), if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion_proof: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeadResponse {
    pub tree_size: u64,
    pub root_hash: String,
    pub checkpoint: String,
}

/// The answer of the instance that sequences a tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SequencerResponse {
    /// True on the instance that sequences the tree (a standby answers 503); false for a frozen
    /// tree, which no instance sequences.
    pub active: bool,
    /// The tree is frozen: reads only, appends are refused (403).
    #[serde(default)]
    pub frozen: bool,
    pub tree_size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntriesResponse {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InclusionResponse {
    pub index: u64,
    pub tree_size: u64,
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConsistencyResponse {
    pub first: u64,
    pub second: u64,
    pub hashes: Vec<String>,
    /// Root hash (hex) of the tree at `second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: u16,
    pub message: String,
}

/// Errors calling the tlog.
#[derive(Debug, thiserror::Error)]
pub enum TlogClientError {
    #[error("tlog unreachable: {0}")]
    Transport(#[from] crate::http::client::ClientError),
    #[error("tlog answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("tlog sent an unreadable answer: {0}")]
    Decode(String),
}

impl TlogClientError {
    /// Retrying (later, or on another instance) may help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Api { status, .. } => *status == 503,
            Self::Decode(_) => false,
        }
    }
}

/// Typed client of the tlog internal API, for ctlog and rekor. Given several endpoints (an
/// active sequencer and its standbys) it tries them in order when one is unreachable or answers
/// 503, so a takeover is invisible to callers beyond a short delay.
///
/// Appends from concurrent callers are coalesced: they wait in a queue, and whatever has queued
/// while earlier batch requests were in flight goes out as one batch request (at most
/// [`MAX_BATCHES_IN_FLIGHT`] at a time), so the tlog parses one HTTP request per batch rather
/// than per entry. A lone append on an idle client goes out at once.
#[derive(Clone)]
pub struct TlogClient {
    endpoints: Vec<crate::http::client::Client>,
    /// The queue of the coalescing task, started on the first append.
    batcher: std::sync::Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Pending>>>,
}

/// Batch requests in flight at once from one client. With 4 the ctlog's p99 at half its
/// closed-loop rate doubled (appends waited for a permit behind whole batches); 16 kept both
/// the throughput gain and the tail.
pub const MAX_BATCHES_IN_FLIGHT: usize = 16;
/// Largest body of a batch request the client builds (below the smallest body limit any tlog
/// config gives a single append, which has room for 1 MiB of extra data in base64). One append
/// bigger than this is sent alone.
const MAX_BATCH_BODY: usize = 1 << 20;

/// One append waiting to be sent.
struct Pending {
    tree: String,
    req: AppendRequest,
    /// Its size in a batch body (JSON, roughly).
    size: usize,
    reply: tokio::sync::oneshot::Sender<Result<AppendResponse, TlogClientError>>,
}

impl TlogClient {
    pub fn new(endpoints: Vec<crate::http::client::Client>) -> Self {
        Self {
            endpoints,
            batcher: Default::default(),
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: axum::http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, TlogClientError> {
        call(&self.endpoints, method, path, body).await
    }
}

/// One request to the first endpoint that answers (not 503 and reachable).
async fn call<T: serde::de::DeserializeOwned>(
    endpoints: &[crate::http::client::Client],
    method: axum::http::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<T, TlogClientError> {
    let mut last = TlogClientError::Decode("no tlog endpoint configured".into());
    for c in endpoints {
        let res = c
            .request(
                method.clone(),
                path,
                body.clone().map(|b| (b, "application/json")),
            )
            .await;
        let resp = match res {
            Ok(r) => r,
            Err(e) => {
                last = e.into();
                continue;
            }
        };
        if resp.status.is_success() {
            return serde_json::from_slice(&resp.body)
                .map_err(|e| TlogClientError::Decode(e.to_string()));
        }
        let message = serde_json::from_slice::<ErrorBody>(&resp.body)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&resp.body).into_owned());
        last = TlogClientError::Api {
            status: resp.status.as_u16(),
            message,
        };
        if resp.status.as_u16() != 503 {
            return Err(last);
        }
    }
    Err(last)
}

/// The coalescing task: sends what has queued as batch requests, at most
/// [`MAX_BATCHES_IN_FLIGHT`] at a time. Ends when every client clone is gone.
async fn coalesce(
    endpoints: Vec<crate::http::client::Client>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Pending>,
) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    let mut next: Option<Pending> = None;
    loop {
        let first = match next.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // While every permit is taken, appends keep queueing; they all go in the next batch.
        let Ok(permit) = std::sync::Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let tree = first.tree.clone();
        let mut size = first.size;
        let mut batch = vec![first];
        while batch.len() < MAX_APPENDS_PER_BATCH {
            let Ok(p) = rx.try_recv() else { break };
            if p.tree != tree || size + p.size > MAX_BATCH_BODY {
                next = Some(p);
                break;
            }
            size += p.size;
            batch.push(p);
        }
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            send_batch(&endpoints, &tree, batch).await;
            drop(permit);
        });
    }
}

/// Send one batch request and hand each caller its result.
async fn send_batch(endpoints: &[crate::http::client::Client], tree: &str, batch: Vec<Pending>) {
    let (reqs, replies): (Vec<AppendRequest>, Vec<_>) =
        batch.into_iter().map(|p| (p.req, p.reply)).unzip();
    let n = reqs.len();
    let body = match serde_json::to_vec(&BatchAppendRequest { entries: reqs }) {
        Ok(b) => b,
        Err(e) => {
            for r in replies {
                let _ = r.send(Err(TlogClientError::Decode(e.to_string())));
            }
            return;
        }
    };
    let res: Result<BatchAppendResponse, TlogClientError> = call(
        endpoints,
        axum::http::Method::POST,
        &format!("/v1/trees/{tree}/entries/batch"),
        Some(body),
    )
    .await;
    match res {
        Ok(r) if r.results.len() == n => {
            for (reply, result) in replies.into_iter().zip(r.results) {
                let _ = reply.send(match result {
                    BatchAppendResult::Ok(ok) => Ok(ok),
                    BatchAppendResult::Error(e) => Err(TlogClientError::Api {
                        status: e.code,
                        message: e.message,
                    }),
                });
            }
        }
        Ok(r) => {
            let msg = format!("tlog answered {} results for {n} appends", r.results.len());
            for reply in replies {
                let _ = reply.send(Err(TlogClientError::Decode(msg.clone())));
            }
        }
        Err(e) => {
            // The whole request failed: every append in it gets the same answer (transport
            // errors stay retryable: 503).
            let (status, message) = match &e {
                TlogClientError::Api { status, message } => (*status, message.clone()),
                TlogClientError::Transport(_) => (503, e.to_string()),
                TlogClientError::Decode(m) => {
                    for reply in replies {
                        let _ = reply.send(Err(TlogClientError::Decode(m.clone())));
                    }
                    return;
                }
            };
            for reply in replies {
                let _ = reply.send(Err(TlogClientError::Api {
                    status,
                    message: message.clone(),
                }));
            }
        }
    }
}

impl TlogClient {
    /// A tile or entry bundle (`path` as after `tile/`, e.g. `0/x001/234.p/5` or
    /// `entries/000`), raw; `None` when the tree does not have it (yet).
    pub async fn tile(&self, tree: &str, path: &str) -> Result<Option<Vec<u8>>, TlogClientError> {
        let mut last = TlogClientError::Decode("no tlog endpoint configured".into());
        for c in &self.endpoints {
            let resp = match c
                .request(
                    axum::http::Method::GET,
                    &format!("/v1/trees/{tree}/tile/{path}"),
                    None,
                )
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    last = e.into();
                    continue;
                }
            };
            match resp.status.as_u16() {
                200 => return Ok(Some(resp.body.to_vec())),
                404 => return Ok(None),
                status => {
                    let message = serde_json::from_slice::<ErrorBody>(&resp.body)
                        .map(|e| e.message)
                        .unwrap_or_else(|_| String::from_utf8_lossy(&resp.body).into_owned());
                    last = TlogClientError::Api { status, message };
                    if status != 503 {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    /// Create `tree` (once; a 409 error if it exists).
    pub async fn create_tree(&self, tree: &str) -> Result<HeadResponse, TlogClientError> {
        self.call(axum::http::Method::POST, &format!("/v1/trees/{tree}"), None)
            .await
    }

    /// The latest signed head.
    pub async fn head(&self, tree: &str) -> Result<HeadResponse, TlogClientError> {
        self.call(
            axum::http::Method::GET,
            &format!("/v1/trees/{tree}/checkpoint"),
            None,
        )
        .await
    }

    /// Whether some endpoint sequences `tree`, i.e. takes appends now: what the personalities'
    /// readiness means. A standby's 503 moves on to the next endpoint; if none is active the
    /// error is the last one's (503 "not the active sequencer", or unreachable).
    pub async fn sequencer(&self, tree: &str) -> Result<SequencerResponse, TlogClientError> {
        self.call(
            axum::http::Method::GET,
            &format!("/v1/trees/{tree}/sequencer"),
            None,
        )
        .await
    }

    /// The `/readyz` answer of a personality (rekor, the CT log) writing to `tree`: 503 with the
    /// reason while its own signing key fails (`hsm_failing`) or no tlog instance sequences the
    /// tree (a restarted tlog stands by until the old lease expires), else 200 with the tree
    /// size, `detail` appended (what the personality adds, e.g. how far its index is); a frozen
    /// tree is ready read-only.
    pub async fn personality_readyz(
        &self,
        tree: &str,
        hsm_failing: Option<String>,
        detail: impl FnOnce() -> String,
    ) -> (axum::http::StatusCode, String) {
        use axum::http::StatusCode;
        if let Some(why) = hsm_failing {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
        }
        match self.sequencer(tree).await {
            Ok(h) if h.frozen => (
                StatusCode::OK,
                format!(
                    "ready (read-only: the tree is frozen)\ntree size {}\n",
                    h.tree_size
                ),
            ),
            Ok(h) => (
                StatusCode::OK,
                format!("ready\ntree size {}\n{}", h.tree_size, detail()),
            ),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("tlog: {e}\n")),
        }
    }

    /// Append `data`; returns once durable (with the inclusion proof if `proof`).
    pub async fn append(
        &self,
        tree: &str,
        data: &[u8],
        identity: Option<&[u8; 32]>,
        proof: bool,
    ) -> Result<AppendResponse, TlogClientError> {
        self.append_with_extra(tree, data, identity, None, proof)
            .await
    }

    /// Append `data` with `extra` stored beside it (not hashed).
    pub async fn append_with_extra(
        &self,
        tree: &str,
        data: &[u8],
        identity: Option<&[u8; 32]>,
        extra: Option<&[u8]>,
        proof: bool,
    ) -> Result<AppendResponse, TlogClientError> {
        use base64::Engine;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let req = AppendRequest {
            data: b64.encode(data),
            identity: identity.map(hex::encode),
            proof,
            extra: extra.map(|x| b64.encode(x)),
        };
        let size = req.data.len() + req.extra.as_ref().map_or(0, String::len) + 128;
        let queue = self.batcher.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(coalesce(self.endpoints.clone(), rx));
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        queue
            .send(Pending {
                tree: tree.to_owned(),
                req,
                size,
                reply,
            })
            .map_err(|_| TlogClientError::Decode("the append queue is closed".into()))?;
        answer
            .await
            .map_err(|_| TlogClientError::Decode("the append was dropped unanswered".into()))?
    }

    /// Entries `[start, end)` (the server returns at most [`MAX_ENTRIES_PER_REQUEST`]).
    pub async fn entries(
        &self,
        tree: &str,
        start: u64,
        end: u64,
    ) -> Result<EntriesResponse, TlogClientError> {
        self.call(
            axum::http::Method::GET,
            &format!("/v1/trees/{tree}/entries?start={start}&end={end}"),
            None,
        )
        .await
    }

    /// Inclusion proof by index.
    pub async fn inclusion(
        &self,
        tree: &str,
        index: u64,
        size: u64,
    ) -> Result<InclusionResponse, TlogClientError> {
        self.call(
            axum::http::Method::GET,
            &format!("/v1/trees/{tree}/proof/inclusion?index={index}&size={size}"),
            None,
        )
        .await
    }

    /// Inclusion proof by leaf hash.
    pub async fn inclusion_by_hash(
        &self,
        tree: &str,
        leaf_hash: &[u8; 32],
        size: u64,
    ) -> Result<InclusionResponse, TlogClientError> {
        self.call(
            axum::http::Method::GET,
            &format!(
                "/v1/trees/{tree}/proof/inclusion?leaf_hash={}&size={size}",
                hex::encode(leaf_hash)
            ),
            None,
        )
        .await
    }

    /// Consistency proof between two sizes.
    pub async fn consistency(
        &self,
        tree: &str,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyResponse, TlogClientError> {
        self.call(
            axum::http::Method::GET,
            &format!("/v1/trees/{tree}/proof/consistency?first={first}&second={second}"),
            None,
        )
        .await
    }
}

/// Decode a list of hex hashes from a response.
pub fn decode_hashes(h: &[String]) -> Result<Vec<crate::merkle::Hash>, TlogClientError> {
    h.iter()
        .map(|s| {
            hex::decode(s)
                .ok()
                .and_then(|v| crate::merkle::Hash::try_from(v.as_slice()).ok())
                .ok_or_else(|| TlogClientError::Decode(format!("bad hash {s:?}")))
        })
        .collect()
}
