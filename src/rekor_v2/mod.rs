//! Rekor v2 (the rekor-tiles API) on the tlog: `POST /api/v2/log/entries` and the C2SP
//! tlog-tiles read path, for any number of logs (yearly shards), each a tlog tree of its own.
//!
//! * An entry is validated and its signature verified ([`entry`]), appended to the log's tree
//!   (which dedups identical bodies and signs the checkpoint with the log's key, in the HSM,
//!   through the tlog) and answered once a checkpoint covering it is signed: a protobuf-JSON
//!   `TransparencyLogEntry` with no SET and `integratedTime` 0, as upstream. Clients get their
//!   signing time from an RFC 3161 timestamp instead.
//! * The service holds no key and no database: what makes a tree this log is its checkpoint
//!   key (the log ID) and its origin (the log's URL without scheme), both checked at start.
//! * Index 0 of every tree is the tlog's sentinel, never a client entry (sigstore-js drops a
//!   zero `logIndex` from the bundles it writes, and sigstore-python then refuses them).

pub mod entry;
pub mod server;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use sha2::Digest;

use crate::tlog::api::{TlogClient, TlogClientError};

/// Errors, each one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum RekorV2Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("an equivalent entry already exists in the transparency log at index {0}")]
    Conflict(u64),
    #[error(
        "this log is read-only (its tree is frozen): it takes no new entries; its checkpoint and tiles are still served"
    )]
    Frozen,
    #[error("not found")]
    NotFound,
    #[error("transparency log unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// A proposed entry refused.
    #[error(transparent)]
    Entry(#[from] entry::EntryError),
}

impl RekorV2Error {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::Entry(_) => 400,
            Self::Conflict(_) => 409,
            Self::Frozen => 403,
            Self::NotFound => 404,
            Self::Unavailable(_) => 503,
            Self::Internal(_) => 500,
        }
    }

    /// The gRPC status code grpc-gateway puts in upstream's error bodies.
    pub fn grpc_code(&self) -> u8 {
        match self {
            Self::BadRequest(_) | Self::Entry(_) => 3, // INVALID_ARGUMENT
            Self::Conflict(_) => 6,                    // ALREADY_EXISTS
            Self::Frozen => 9,                         // FAILED_PRECONDITION
            Self::NotFound => 5,                       // NOT_FOUND
            Self::Unavailable(_) => 14,                // UNAVAILABLE
            Self::Internal(_) => 13,                   // INTERNAL
        }
    }
}

impl From<TlogClientError> for RekorV2Error {
    fn from(e: TlogClientError) -> Self {
        match &e {
            TlogClientError::Api { status: 404, .. } => Self::NotFound,
            TlogClientError::Api { status: 403, .. } => Self::Frozen,
            TlogClientError::Api {
                status: 400 | 413,
                message,
            } => Self::BadRequest(message.clone()),
            _ if e.is_transient() => Self::Unavailable(e.to_string()),
            _ => Self::Internal(format!("unexpected result from transparency log: {e}")),
        }
    }
}

/// `TransparencyLogEntry` (protobuf-specs `dev.sigstore.rekor.v1`) as protobuf-JSON: 64-bit
/// integers as strings, bytes as base64, nothing more (sigstore-python parses it strictly).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransparencyLogEntry {
    pub log_index: String,
    pub log_id: LogId,
    pub kind_version: KindVersion,
    pub integrated_time: String,
    pub inclusion_proof: InclusionProof,
    pub canonicalized_body: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogId {
    pub key_id: String,
}

#[derive(Debug, Serialize)]
pub struct KindVersion {
    pub kind: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    pub log_index: String,
    pub root_hash: String,
    pub tree_size: String,
    pub hashes: Vec<String>,
    pub checkpoint: CheckpointEnvelope,
}

#[derive(Debug, Serialize)]
pub struct CheckpointEnvelope {
    pub envelope: String,
}

/// One Rekor v2 log.
pub struct Log {
    url: String,
    origin: String,
    tree: String,
    tlog: TlogClient,
    spki: Vec<u8>,
    key_id: [u8; 32],
}

fn hex_to_b64(h: &str) -> Result<String, RekorV2Error> {
    hex::decode(h)
        .map(|b| B64.encode(b))
        .map_err(|_| RekorV2Error::Internal("the tlog returned a hash that is not hex".into()))
}

impl Log {
    /// A log at `url` (its origin is the URL without scheme) on the tlog tree `tree`, whose
    /// checkpoints are signed with the key `spki` (DER SubjectPublicKeyInfo).
    pub fn new(url: &str, origin: &str, tree: &str, tlog: TlogClient, spki: Vec<u8>) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            origin: origin.to_owned(),
            tree: tree.to_owned(),
            tlog,
            key_id: sha2::Sha256::digest(&spki).into(),
            spki,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
    pub fn origin(&self) -> &str {
        &self.origin
    }
    pub fn tree(&self) -> &str {
        &self.tree
    }
    pub fn tlog(&self) -> &TlogClient {
        &self.tlog
    }
    /// The log ID: SHA-256 of the key's DER SubjectPublicKeyInfo, which for an ECDSA key is
    /// also the key ID of its checkpoint signatures (C2SP signed-note, as sigstore computes it).
    pub fn key_id(&self) -> &[u8; 32] {
        &self.key_id
    }
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    /// Check that the tlog tree is this log: its checkpoint is signed by the log's key under
    /// the name `origin`, and its origin line is `origin`.
    pub async fn check_tree(&self) -> Result<u64, String> {
        let head = self
            .tlog
            .head(&self.tree)
            .await
            .map_err(|e| format!("cannot read the tree '{}' from the tlog: {e}", self.tree))?;
        let (_, sigs) = crate::note::parse_note(&head.checkpoint).map_err(|e| {
            format!(
                "the tlog's checkpoint of '{}' is unreadable: {e}",
                self.tree
            )
        })?;
        let hint = crate::note::ecdsa_key_hint(&self.spki);
        let sig = sigs.iter().find(|s| s.key_hint == hint).ok_or_else(|| {
            format!(
                "the tlog tree '{}' is not signed with the key of {}: give its [[tlog.trees]] entry this log's key",
                self.tree, self.url
            )
        })?;
        if sig.name != self.origin {
            return Err(format!(
                "the tlog tree '{}' signs its checkpoints as {:?}; the log at {} needs note_name = {:?} (its URL without scheme, which sigstore-js looks for in the log's URL)",
                self.tree, sig.name, self.url, self.origin
            ));
        }
        let body = crate::note::verify_note(&head.checkpoint, &sig.name, &self.spki)
            .map_err(|e| format!("the tlog tree '{}': {e}", self.tree))?;
        let origin = body.lines().next().unwrap_or_default();
        if origin != self.origin {
            return Err(format!(
                "the tlog tree '{}' has origin {origin:?}; the log at {} needs origin = {:?}",
                self.tree, self.url, self.origin
            ));
        }
        Ok(head.tree_size)
    }

    /// `POST /api/v2/log/entries`: the entry, once a checkpoint covering it is signed.
    pub async fn create_entry(&self, body: &[u8]) -> Result<TransparencyLogEntry, RekorV2Error> {
        let c = entry::canonicalize(body)?;
        let r = self.tlog.append(&self.tree, &c.body, None, true).await?;
        if r.duplicate {
            return Err(RekorV2Error::Conflict(r.index));
        }
        let hashes = r
            .inclusion_proof
            .ok_or_else(|| RekorV2Error::Internal("the tlog returned no inclusion proof".into()))?
            .iter()
            .map(|h| hex_to_b64(h))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TransparencyLogEntry {
            log_index: r.index.to_string(),
            log_id: LogId {
                key_id: B64.encode(self.key_id),
            },
            kind_version: KindVersion {
                kind: "hashedrekord",
                version: "0.0.2",
            },
            integrated_time: "0".into(),
            inclusion_proof: InclusionProof {
                log_index: r.index.to_string(),
                root_hash: hex_to_b64(&r.root_hash)?,
                tree_size: r.tree_size.to_string(),
                hashes,
                checkpoint: CheckpointEnvelope {
                    envelope: r.checkpoint,
                },
            },
            canonicalized_body: B64.encode(&c.body),
        })
    }

    /// The newest signed checkpoint (C2SP signed note).
    pub async fn checkpoint(&self) -> Result<String, RekorV2Error> {
        Ok(self.tlog.head(&self.tree).await?.checkpoint)
    }

    /// A tile or entry bundle; `path` is what follows `tile/`.
    pub async fn tile(&self, path: &str) -> Result<Vec<u8>, RekorV2Error> {
        self.tlog
            .tile(&self.tree, path)
            .await?
            .ok_or(RekorV2Error::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_refusal_is_invalid_argument() {
        use crate::pki::signature::SignatureError;
        let e = RekorV2Error::from(entry::EntryError::Signature(SignatureError::Invalid));
        assert_eq!((e.status(), e.grpc_code()), (400, 3));
        assert_eq!(
            e.to_string(),
            "verifying signature: signature does not verify"
        );
    }
}
