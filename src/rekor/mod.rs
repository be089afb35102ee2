//! The Rekor-compatible transparency log (API v1), a personality over the tlog.
//!
//! * An upload is validated and canonicalized ([`kinds`]), appended to the tlog tree (which dedups
//!   identical bodies and signs the checkpoint with the Rekor key), and answered once integrated,
//!   with the inclusion proof, the checkpoint for exactly that tree size, and a signed entry
//!   timestamp (SET) made here with the Rekor key through PKCS#11.
//! * `integratedTime` is this machine's clock at submission (the clock Fulcio uses), stored with
//!   the entry as tlog extra data together with the entry's search-index keys, so both survive
//!   any crash together with the entry.
//! * The search index ([`index`]) follows the log from that extra data, so a crash between the
//!   append and the index write only delays indexing; it never loses an entry.
//! * One shard: the global log index is the tree index. Index 0 is the tree's sentinel and never
//!   a client entry.

pub mod index;
pub mod kinds;
pub mod server;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::signer::Signer;
use crate::tlog::api::{TlogClient, TlogClientError};

/// Errors, each one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum RekorError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("not found")]
    NotFound,
    #[error("an equivalent entry already exists in the transparency log with UUID {0}")]
    Conflict(String),
    #[error("transparency log unavailable: {0}")]
    Unavailable(String),
    #[error(
        "this log is read-only (its tree is frozen): it takes no new entries; its entries and proofs are still served"
    )]
    Frozen,
    #[error("{0}")]
    Internal(String),
}

impl RekorError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unprocessable(_) => 422,
            Self::NotFound => 404,
            Self::Conflict(_) => 409,
            Self::Unavailable(_) => 503,
            Self::Frozen => 403,
            Self::Internal(_) => 500,
        }
    }
}

impl From<TlogClientError> for RekorError {
    fn from(e: TlogClientError) -> Self {
        match &e {
            TlogClientError::Api { status: 404, .. } => Self::NotFound,
            TlogClientError::Api { status: 403, .. } => Self::Frozen,
            TlogClientError::Api {
                status: 400,
                message,
            } => Self::BadRequest(message.clone()),
            _ if e.is_transient() => Self::Unavailable(e.to_string()),
            _ => Self::Internal(format!("unexpected result from transparency log: {e}")),
        }
    }
}

/// What rekor stores beside each entry in the tlog (extra data, JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryExtra {
    pub integrated_time: i64,
    #[serde(default)]
    pub index_keys: Vec<String>,
}

/// Seconds since the Unix epoch: the one clock for `integratedTime`.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An entry ID: 16 hex digits of tree ID followed by the 64-hex UUID.
pub fn entry_id(tree_id: u64, uuid: &[u8; 32]) -> String {
    format!("{tree_id:016x}{}", hex::encode(uuid))
}

/// The Rekor log.
pub struct Rekor {
    signer: Arc<dyn Signer>,
    tlog: TlogClient,
    tree: String,
    tree_id: u64,
    log_id_hex: String,
    public_pem: String,
    indexer: Option<index::IndexerHandle>,
}

/// A log entry as the API returns it (the inner object of `{"<entryID>": ...}`).
pub struct LogEntry {
    pub entry_id: String,
    pub value: Value,
}

impl Rekor {
    /// Why the signing key's HSM keeps failing, while it does (readiness says so).
    pub fn hsm_failing(&self) -> Option<String> {
        self.signer.failing()
    }
    pub fn new(
        signer: Arc<dyn Signer>,
        tlog: TlogClient,
        tree: String,
        tree_id: u64,
        indexer: Option<index::IndexerHandle>,
    ) -> Result<Self, RekorError> {
        let spki = signer.public_key_der().to_vec();
        let public_pem = crate::pki::spki_pem(&spki)
            .map_err(|e| RekorError::Internal(format!("cannot encode the Rekor key: {e}")))?;
        Ok(Self {
            log_id_hex: crate::pki::sha256_hex(&spki),
            signer,
            tlog,
            tree,
            tree_id,
            public_pem,
            indexer,
        })
    }

    pub fn tree_id(&self) -> u64 {
        self.tree_id
    }
    pub fn log_id_hex(&self) -> &str {
        &self.log_id_hex
    }
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }
    pub fn tlog(&self) -> &TlogClient {
        &self.tlog
    }
    pub fn tree(&self) -> &str {
        &self.tree
    }
    pub fn indexer(&self) -> Option<&index::IndexerHandle> {
        self.indexer.as_ref()
    }

    /// Check that the tlog tree is this log: its checkpoint verifies with the Rekor key and its
    /// origin is `<host> - <tree_id>`. Returns the checkpoint signer name (the host).
    pub async fn check_tree(&self) -> Result<String, String> {
        let head = self
            .tlog
            .head(&self.tree)
            .await
            .map_err(|e| format!("cannot read the tree '{}' from the tlog: {e}", self.tree))?;
        let (_, sigs) = crate::note::parse_note(&head.checkpoint)
            .map_err(|e| format!("the tlog's checkpoint is unreadable: {e}"))?;
        let hint = crate::note::ecdsa_key_hint(self.signer.public_key_der());
        let name = sigs
            .iter()
            .find(|s| s.key_hint == hint)
            .map(|s| s.name.clone())
            .ok_or_else(|| {
                format!(
                    "the tlog tree '{}' is not signed with the Rekor key: configure its [[tlog.trees]] key as the Rekor key",
                    self.tree
                )
            })?;
        let body = crate::note::verify_note(&head.checkpoint, &name, self.signer.public_key_der())
            .map_err(|e| format!("the tlog tree's checkpoint: {e}"))?;
        let origin = body.lines().next().unwrap_or_default();
        let want = format!(" - {}", self.tree_id);
        if !origin.ends_with(&want) {
            return Err(format!(
                "the tlog tree '{}' has origin {origin:?}; Rekor clients expect \"<host> - {}\" (tree_id)",
                self.tree, self.tree_id
            ));
        }
        Ok(name)
    }

    fn sign_set(
        &self,
        body_b64: &str,
        integrated_time: i64,
        log_index: u64,
    ) -> Result<String, RekorError> {
        // RFC 8785: keys in lexical order, no whitespace; all values are strings or integers.
        let payload = kinds::to_canonical(&json!({
            "body": body_b64,
            "integratedTime": integrated_time,
            "logID": self.log_id_hex,
            "logIndex": log_index,
        }));
        let sig = self
            .signer
            .sign(&payload)
            .map_err(|e| RekorError::Unavailable(format!("error signing: {e}")))?;
        Ok(B64.encode(sig))
    }

    #[allow(clippy::too_many_arguments)]
    fn log_entry(
        &self,
        body: &[u8],
        integrated_time: i64,
        log_index: u64,
        tree_size: u64,
        root_hash: &str,
        hashes: Vec<String>,
        checkpoint: String,
    ) -> Result<LogEntry, RekorError> {
        let body_b64 = B64.encode(body);
        let set = self.sign_set(&body_b64, integrated_time, log_index)?;
        let uuid: [u8; 32] = crate::merkle::leaf_hash(body);
        Ok(LogEntry {
            entry_id: entry_id(self.tree_id, &uuid),
            value: json!({
                "body": body_b64,
                "integratedTime": integrated_time,
                "logID": self.log_id_hex,
                "logIndex": log_index,
                "verification": {
                    "inclusionProof": {
                        "checkpoint": checkpoint,
                        "hashes": hashes,
                        "logIndex": log_index,
                        "rootHash": root_hash,
                        "treeSize": tree_size,
                    },
                    "signedEntryTimestamp": set,
                },
            }),
        })
    }

    /// `POST /api/v1/log/entries`.
    pub async fn upload(&self, proposed: &Value) -> Result<LogEntry, RekorError> {
        let c = kinds::canonicalize(proposed)
            .map_err(|e| RekorError::BadRequest(format!("error processing entry: {}", e.0)))?;
        let extra = EntryExtra {
            integrated_time: now_secs(),
            index_keys: c.index_keys,
        };
        let extra_json =
            serde_json::to_vec(&extra).map_err(|e| RekorError::Internal(e.to_string()))?;
        let r = self
            .tlog
            .append_with_extra(&self.tree, &c.body, None, Some(&extra_json), true)
            .await?;
        if r.duplicate {
            let uuid: [u8; 32] = crate::merkle::leaf_hash(&c.body);
            return Err(RekorError::Conflict(entry_id(self.tree_id, &uuid)));
        }
        let hashes = r
            .inclusion_proof
            .ok_or_else(|| RekorError::Internal("the tlog returned no inclusion proof".into()))?;
        let entry = self.log_entry(
            &c.body,
            extra.integrated_time,
            r.index,
            r.tree_size,
            &r.root_hash,
            hashes,
            r.checkpoint,
        )?;
        if let Some(ix) = &self.indexer {
            ix.poke();
        }
        Ok(entry)
    }

    /// The entry at `index` with its proof at the current head.
    pub async fn entry_by_index(&self, index: u64) -> Result<LogEntry, RekorError> {
        if index == 0 {
            return Err(RekorError::NotFound);
        }
        let head = self.tlog.head(&self.tree).await?;
        if index >= head.tree_size {
            return Err(RekorError::NotFound);
        }
        let proof = self
            .tlog
            .inclusion(&self.tree, index, head.tree_size)
            .await?;
        self.finish_entry(index, head, proof.hashes).await
    }

    /// The entry whose UUID (leaf hash) is `uuid`.
    pub async fn entry_by_uuid(&self, uuid: &[u8; 32]) -> Result<LogEntry, RekorError> {
        let head = self.tlog.head(&self.tree).await?;
        let proof = match self
            .tlog
            .inclusion_by_hash(&self.tree, uuid, head.tree_size)
            .await
        {
            Ok(p) => p,
            Err(TlogClientError::Api {
                status: 400 | 404, ..
            }) => return Err(RekorError::NotFound),
            Err(e) => return Err(e.into()),
        };
        self.finish_entry(proof.index, head, proof.hashes).await
    }

    async fn finish_entry(
        &self,
        index: u64,
        head: crate::tlog::api::HeadResponse,
        hashes: Vec<String>,
    ) -> Result<LogEntry, RekorError> {
        let e = self.tlog.entries(&self.tree, index, index + 1).await?;
        let e = e
            .entries
            .into_iter()
            .find(|e| e.index == index)
            .ok_or(RekorError::NotFound)?;
        let body = B64
            .decode(&e.data)
            .map_err(|_| RekorError::Internal("tlog entry is not base64".into()))?;
        let extra: EntryExtra = e
            .extra
            .as_deref()
            .and_then(|x| B64.decode(x).ok())
            .and_then(|x| serde_json::from_slice(&x).ok())
            .ok_or(RekorError::NotFound)?; // not a Rekor entry (the sentinel)
        self.log_entry(
            &body,
            extra.integrated_time,
            index,
            head.tree_size,
            &head.root_hash,
            hashes,
            head.checkpoint,
        )
    }

    /// `GET /api/v1/log`.
    pub async fn log_info(&self) -> Result<Value, RekorError> {
        let head = self.tlog.head(&self.tree).await?;
        Ok(json!({
            "rootHash": head.root_hash,
            "treeSize": head.tree_size,
            "signedTreeHead": head.checkpoint,
            "treeID": self.tree_id.to_string(),
        }))
    }

    /// `GET /api/v1/log/proof`: consistency proof and the root at `last`.
    pub async fn consistency(&self, first: u64, last: u64) -> Result<Value, RekorError> {
        if first > last {
            return Err(RekorError::BadRequest(format!(
                "firstSize({first}) must be less than lastSize({last})"
            )));
        }
        let head = self.tlog.head(&self.tree).await?;
        if last > head.tree_size {
            return Err(RekorError::BadRequest(format!(
                "the tree size requested({last}) was greater than what is currently observable({})",
                head.tree_size
            )));
        }
        let p = self.tlog.consistency(&self.tree, first, last).await?;
        let root = p
            .root_hash
            .ok_or_else(|| RekorError::Internal("the tlog returned no root hash".into()))?;
        Ok(json!({"rootHash": root, "hashes": p.hashes}))
    }
}

/// Parse a 64-hex UUID or an 80-hex entry ID; returns the tree ID (if given) and the UUID.
pub fn parse_entry_id(s: &str) -> Result<(Option<u64>, [u8; 32]), RekorError> {
    let bad = || {
        RekorError::BadRequest(
            "an entry UUID is 64 hexadecimal digits, an entry ID 80 (16 of tree ID, then the UUID)"
                .into(),
        )
    };
    // Hex digits only, checked first: the split below is by bytes, and a non-ASCII path would
    // put it inside a character (a panic the fuzz target found); from_str_radix would also take
    // a leading '+'.
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let (tree, uuid) = match s.len() {
        64 => (None, s),
        80 => (
            Some(u64::from_str_radix(&s[..16], 16).map_err(|_| bad())?),
            &s[16..],
        ),
        _ => return Err(bad()),
    };
    let v = hex::decode(uuid).map_err(|_| bad())?;
    let uuid: [u8; 32] = v.try_into().map_err(|_| bad())?;
    Ok((tree, uuid))
}
