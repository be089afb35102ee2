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
//! * Shards ([`shard`]): after a key rotation the log is several trees, served as one; the
//!   global log index is the earlier shards' sizes plus the index in the shard. Index 0 of each
//!   tree is its sentinel and never a client entry.

pub mod index;
pub mod kinds;
pub mod server;
pub mod shard;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::signer::Signer;
use crate::tlog::api::{TlogClient, TlogClientError};
use shard::Shard;

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
    /// A proposed entry refused, with what was being done with it ("error processing entry").
    #[error("{context}: {source}")]
    Entry {
        context: &'static str,
        source: kinds::EntryError,
    },
}

impl RekorError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::Entry { .. } => 400,
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

/// The Rekor log: its shards, oldest first; the last one is active.
pub struct Rekor {
    tlog: TlogClient,
    shards: Vec<Shard>,
}

/// A log entry as the API returns it (the inner object of `{"<entryID>": ...}`).
pub struct LogEntry {
    pub entry_id: String,
    pub value: Value,
}

impl Rekor {
    /// A log of one shard (no rotation yet).
    pub fn new(
        signer: Arc<dyn Signer>,
        tlog: TlogClient,
        tree: String,
        tree_id: u64,
        indexer: Option<index::IndexerHandle>,
    ) -> Result<Self, RekorError> {
        let shard = Shard::new(signer, tree, tree_id, 0, None, indexer)?;
        Self::sharded(tlog, vec![shard])
    }

    /// A log of `shards`, oldest first: every one but the last frozen, each one's offset the
    /// sum of the sizes of those before it.
    pub fn sharded(tlog: TlogClient, shards: Vec<Shard>) -> Result<Self, RekorError> {
        let Some((active, earlier)) = shards.split_last() else {
            return Err(RekorError::Internal("a Rekor log needs a shard".into()));
        };
        let mut offset = 0;
        for s in earlier {
            let Some(size) = s.frozen_size.filter(|_| s.offset == offset) else {
                return Err(RekorError::Internal(format!(
                    "shard '{}' is not frozen at offset {offset}",
                    s.tree
                )));
            };
            offset += size;
        }
        if active.frozen_size.is_some() || active.offset != offset {
            return Err(RekorError::Internal(format!(
                "the active shard '{}' must grow from offset {offset}",
                active.tree
            )));
        }
        Ok(Self { tlog, shards })
    }

    /// Refuse to replace `before` with this log unless it extends it: the same shards in the
    /// same order (tree, tree ID, key and offset), then new ones. Anything else would move
    /// global log indices that clients already hold in their SETs.
    pub fn extends(&self, before: &Rekor) -> Result<(), RekorError> {
        for (i, old) in before.shards.iter().enumerate() {
            let same = self.shards.get(i).is_some_and(|new| {
                new.tree == old.tree
                    && new.tree_id == old.tree_id
                    && new.log_id_hex == old.log_id_hex
                    && new.offset == old.offset
            });
            if !same {
                return Err(RekorError::Internal(format!(
                    "shard {} (tree '{}', tree ID {}) must stay where it is: a reload may only add \
                     shards after the running ones (move the active shard to \
                     [[rekor.inactive_shards]] and name the new tree as the active one)",
                    i + 1,
                    old.tree,
                    old.tree_id
                )));
            }
        }
        Ok(())
    }

    fn active(&self) -> &Shard {
        // `sharded` refuses an empty list.
        &self.shards[self.shards.len() - 1]
    }

    /// Why the active key's HSM keeps failing, while it does (readiness says so).
    pub fn hsm_failing(&self) -> Option<String> {
        self.active().signer.failing()
    }

    /// The active shard's tree ID.
    pub fn tree_id(&self) -> u64 {
        self.active().tree_id
    }
    pub fn log_id_hex(&self) -> &str {
        self.active().log_id_hex()
    }
    pub fn tlog(&self) -> &TlogClient {
        &self.tlog
    }
    /// The active shard's tree.
    pub fn tree(&self) -> &str {
        &self.active().tree
    }
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }
    /// The active shard's index follower.
    pub fn indexer(&self) -> Option<&index::IndexerHandle> {
        self.active().indexer.as_ref()
    }

    /// The shard with tree ID `tree_id`, or the active one when none is asked for.
    pub fn shard(&self, tree_id: Option<u64>) -> Option<&Shard> {
        match tree_id {
            None => Some(self.active()),
            Some(t) => self.shards.iter().find(|s| s.tree_id == t),
        }
    }

    /// The shard holding global index `global`: the newest one starting at or below it.
    fn shard_of_index(&self, global: u64) -> &Shard {
        self.shards
            .iter()
            .rev()
            .find(|s| s.offset <= global)
            .unwrap_or(&self.shards[0])
    }

    /// Check that every shard's tlog tree is its log: its checkpoint verifies with the shard's
    /// key and its origin is `<host> - <tree_id>`. Returns the active checkpoint's signer name.
    pub async fn check_tree(&self) -> Result<String, String> {
        let mut name = String::new();
        for s in &self.shards {
            name = self.check_shard_tree(s).await?;
        }
        Ok(name)
    }

    async fn check_shard_tree(&self, s: &Shard) -> Result<String, String> {
        let head = self
            .tlog
            .head(&s.tree)
            .await
            .map_err(|e| format!("cannot read the tree '{}' from the tlog: {e}", s.tree))?;
        let (_, sigs) = crate::note::parse_note(&head.checkpoint)
            .map_err(|e| format!("the tlog's checkpoint is unreadable: {e}"))?;
        let hint = crate::note::ecdsa_key_hint(s.signer.public_key_der());
        let name = sigs
            .iter()
            .find(|sig| sig.key_hint == hint)
            .map(|sig| sig.name.clone())
            .ok_or_else(|| {
                format!(
                    "the tlog tree '{}' is not signed with its Rekor key: configure its [[tlog.trees]] key as that shard's Rekor key",
                    s.tree
                )
            })?;
        let body = crate::note::verify_note(&head.checkpoint, &name, s.signer.public_key_der())
            .map_err(|e| format!("the tlog tree's checkpoint: {e}"))?;
        let origin = body.lines().next().unwrap_or_default();
        let want = format!(" - {}", s.tree_id);
        if !origin.ends_with(&want) {
            return Err(format!(
                "the tlog tree '{}' has origin {origin:?}; Rekor clients expect \"<host> - {}\" (tree_id)",
                s.tree, s.tree_id
            ));
        }
        Ok(name)
    }

    /// The SET: the shard's key over the entry with its global index.
    fn sign_set(
        shard: &Shard,
        body_b64: &str,
        integrated_time: i64,
        log_index: u64,
    ) -> Result<String, RekorError> {
        // RFC 8785: keys in lexical order, no whitespace; all values are strings or integers.
        let payload = kinds::to_canonical(&json!({
            "body": body_b64,
            "integratedTime": integrated_time,
            "logID": shard.log_id_hex,
            "logIndex": log_index,
        }));
        let sig = shard
            .signer
            .sign(&payload)
            .map_err(|e| RekorError::Unavailable(format!("error signing: {e}")))?;
        Ok(B64.encode(sig))
    }

    /// The entry at `local` in `shard`: the outer `logIndex` global, the proof the shard's.
    #[allow(clippy::too_many_arguments)]
    fn log_entry(
        shard: &Shard,
        body: &[u8],
        integrated_time: i64,
        local: u64,
        tree_size: u64,
        root_hash: &str,
        hashes: Vec<String>,
        checkpoint: String,
    ) -> Result<LogEntry, RekorError> {
        let body_b64 = B64.encode(body);
        let log_index = shard.offset + local;
        let set = Self::sign_set(shard, &body_b64, integrated_time, log_index)?;
        let uuid: [u8; 32] = crate::merkle::leaf_hash(body);
        Ok(LogEntry {
            entry_id: entry_id(shard.tree_id, &uuid),
            value: json!({
                "body": body_b64,
                "integratedTime": integrated_time,
                "logID": shard.log_id_hex,
                "logIndex": log_index,
                "verification": {
                    "inclusionProof": {
                        "checkpoint": checkpoint,
                        "hashes": hashes,
                        "logIndex": local,
                        "rootHash": root_hash,
                        "treeSize": tree_size,
                    },
                    "signedEntryTimestamp": set,
                },
            }),
        })
    }

    /// `POST /api/v1/log/entries`: into the active shard. Its tree being frozen (the tlog moved
    /// on before this service did) is a 403 and nothing is logged, so a client never holds a
    /// 201 for an entry the log does not serve.
    pub async fn upload(&self, proposed: &Value) -> Result<LogEntry, RekorError> {
        let c = kinds::canonicalize(proposed).map_err(|source| RekorError::Entry {
            context: "error processing entry",
            source,
        })?;
        let extra = EntryExtra {
            integrated_time: now_secs(),
            index_keys: c.index_keys,
        };
        let extra_json =
            serde_json::to_vec(&extra).map_err(|e| RekorError::Internal(e.to_string()))?;
        let shard = self.active();
        let r = self
            .tlog
            .append_with_extra(&shard.tree, &c.body, None, Some(&extra_json), true)
            .await?;
        if r.duplicate {
            let uuid: [u8; 32] = crate::merkle::leaf_hash(&c.body);
            return Err(RekorError::Conflict(entry_id(shard.tree_id, &uuid)));
        }
        let hashes = r
            .inclusion_proof
            .ok_or_else(|| RekorError::Internal("the tlog returned no inclusion proof".into()))?;
        let entry = Self::log_entry(
            shard,
            &c.body,
            extra.integrated_time,
            r.index,
            r.tree_size,
            &r.root_hash,
            hashes,
            r.checkpoint,
        )?;
        if let Some(ix) = &shard.indexer {
            ix.poke();
        }
        Ok(entry)
    }

    /// The entry at global index `index` with its proof at its shard's current head.
    pub async fn entry_by_index(&self, index: u64) -> Result<LogEntry, RekorError> {
        let shard = self.shard_of_index(index);
        let local = index - shard.offset;
        if local == 0 {
            return Err(RekorError::NotFound); // a shard's sentinel
        }
        let head = self.tlog.head(&shard.tree).await?;
        if local >= head.tree_size {
            return Err(RekorError::NotFound);
        }
        let proof = self
            .tlog
            .inclusion(&shard.tree, local, head.tree_size)
            .await?;
        self.finish_entry(shard, local, head, proof.hashes).await
    }

    /// The entry whose UUID (leaf hash) is `uuid`, in the shard `tree_id` names or, without one,
    /// in any shard (the newest first).
    pub async fn entry_by_uuid(
        &self,
        tree_id: Option<u64>,
        uuid: &[u8; 32],
    ) -> Result<LogEntry, RekorError> {
        for shard in self.shards.iter().rev() {
            if tree_id.is_some_and(|t| t != shard.tree_id) {
                continue;
            }
            match self.entry_in_shard(shard, uuid).await {
                Err(RekorError::NotFound) => continue,
                other => return other,
            }
        }
        Err(RekorError::NotFound)
    }

    async fn entry_in_shard(&self, shard: &Shard, uuid: &[u8; 32]) -> Result<LogEntry, RekorError> {
        let head = self.tlog.head(&shard.tree).await?;
        let proof = match self
            .tlog
            .inclusion_by_hash(&shard.tree, uuid, head.tree_size)
            .await
        {
            Ok(p) => p,
            Err(TlogClientError::Api {
                status: 400 | 404, ..
            }) => return Err(RekorError::NotFound),
            Err(e) => return Err(e.into()),
        };
        self.finish_entry(shard, proof.index, head, proof.hashes)
            .await
    }

    async fn finish_entry(
        &self,
        shard: &Shard,
        local: u64,
        head: crate::tlog::api::HeadResponse,
        hashes: Vec<String>,
    ) -> Result<LogEntry, RekorError> {
        let e = self.tlog.entries(&shard.tree, local, local + 1).await?;
        let e = e
            .entries
            .into_iter()
            .find(|e| e.index == local)
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
        Self::log_entry(
            shard,
            &body,
            extra.integrated_time,
            local,
            head.tree_size,
            &head.root_hash,
            hashes,
            head.checkpoint,
        )
    }

    /// `GET /api/v1/log`: the active shard's head, and the earlier shards' as
    /// `inactiveShards` (upstream's shape; omitted while there is one shard).
    pub async fn log_info(&self) -> Result<Value, RekorError> {
        let info = |head: crate::tlog::api::HeadResponse, tree_id: u64| {
            json!({
                "rootHash": head.root_hash,
                "treeSize": head.tree_size,
                "signedTreeHead": head.checkpoint,
                "treeID": tree_id.to_string(),
            })
        };
        let active = self.active();
        let mut v = info(self.tlog.head(&active.tree).await?, active.tree_id);
        let mut inactive = Vec::new();
        for s in &self.shards[..self.shards.len() - 1] {
            inactive.push(info(self.tlog.head(&s.tree).await?, s.tree_id));
        }
        if !inactive.is_empty() {
            v["inactiveShards"] = Value::Array(inactive);
        }
        Ok(v)
    }

    /// `GET /api/v1/log/proof`: consistency proof and the root at `last`, in `shard`.
    pub async fn consistency(
        &self,
        shard: &Shard,
        first: u64,
        last: u64,
    ) -> Result<Value, RekorError> {
        if first > last {
            return Err(RekorError::BadRequest(format!(
                "firstSize({first}) must be less than lastSize({last})"
            )));
        }
        let head = self.tlog.head(&shard.tree).await?;
        if last > head.tree_size {
            return Err(RekorError::BadRequest(format!(
                "the tree size requested({last}) was greater than what is currently observable({})",
                head.tree_size
            )));
        }
        let p = self.tlog.consistency(&shard.tree, first, last).await?;
        let root = p
            .root_hash
            .ok_or_else(|| RekorError::Internal("the tlog returned no root hash".into()))?;
        Ok(json!({"rootHash": root, "hashes": p.hashes}))
    }

    /// `POST /api/v1/index/retrieve` over every shard: entry IDs, oldest first.
    pub async fn search(&self, q: &index::Query) -> Result<Vec<String>, RekorError> {
        let mut followers = Vec::new();
        for s in &self.shards {
            let Some(ix) = &s.indexer else {
                return Err(RekorError::Internal(
                    "Search Index API not enabled in this Rekor instance".into(),
                ));
            };
            let size = match s.frozen_size {
                Some(n) => n,
                None => self.tlog.head(&s.tree).await?.tree_size,
            };
            followers.push((ix, size));
        }
        let found = index::search(&followers, q).await?;
        Ok(found
            .into_iter()
            .map(|(global, uuid)| entry_id(self.shard_of_index(global).tree_id, &uuid))
            .collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::test_support::SoftP256;
    use p256::ecdsa::signature::Verifier as _;
    use p256::pkcs8::DecodePublicKey;

    #[test]
    fn an_entry_refusal_is_a_400_saying_what_was_being_done() {
        use crate::pki::signature::SignatureError;
        let e = RekorError::Entry {
            context: "error processing entry",
            source: kinds::EntryError::Signature(SignatureError::Invalid),
        };
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.to_string(),
            "error processing entry: verifying signature: signature does not verify"
        );
    }

    fn shard(tree_id: u64, offset: u64, frozen: Option<u64>) -> Shard {
        shard_with(
            &(Arc::new(SoftP256::random()) as Arc<dyn Signer>),
            tree_id,
            offset,
            frozen,
        )
    }

    fn shard_with(k: &Arc<dyn Signer>, tree_id: u64, offset: u64, frozen: Option<u64>) -> Shard {
        Shard::new(
            Arc::clone(k),
            format!("t{tree_id}"),
            tree_id,
            offset,
            frozen,
            None,
        )
        .expect("shard")
    }

    fn log(shards: Vec<Shard>) -> Result<Rekor, RekorError> {
        Rekor::sharded(TlogClient::new(Vec::new()), shards)
    }

    #[test]
    fn offsets_must_be_the_earlier_shards_sizes() {
        assert!(log(vec![shard(1, 0, Some(10)), shard(2, 10, None)]).is_ok());
        // An earlier shard that still grows, a wrong offset, a frozen active shard, no shard.
        assert!(log(vec![shard(1, 0, None), shard(2, 10, None)]).is_err());
        assert!(log(vec![shard(1, 0, Some(10)), shard(2, 9, None)]).is_err());
        assert!(log(vec![shard(1, 0, Some(10)), shard(2, 10, Some(3))]).is_err());
        assert!(log(vec![]).is_err());
    }

    /// A reload may only add shards after the running ones: each running shard stays, with its
    /// tree, key and offset.
    #[test]
    fn a_reloaded_log_must_extend_the_running_one() {
        let k1: Arc<dyn Signer> = Arc::new(SoftP256::random());
        let k2: Arc<dyn Signer> = Arc::new(SoftP256::random());
        let running = log(vec![shard_with(&k1, 1, 0, None)]).expect("log");
        let rotated = log(vec![
            shard_with(&k1, 1, 0, Some(10)),
            shard_with(&k2, 2, 10, None),
        ])
        .expect("log");
        assert!(
            rotated.extends(&running).is_ok(),
            "a new shard after the old one"
        );
        assert!(running.extends(&running).is_ok(), "nothing changed");
        // The old shard dropped, its key changed, or its tree ID changed.
        let dropped = log(vec![shard_with(&k2, 2, 0, None)]).expect("log");
        assert!(dropped.extends(&running).is_err());
        let rekeyed = log(vec![
            shard_with(&k2, 1, 0, Some(10)),
            shard_with(&k2, 2, 10, None),
        ])
        .expect("log");
        assert!(rekeyed.extends(&running).is_err());
        // And a running two-shard log cannot lose its first shard.
        assert!(dropped.extends(&rotated).is_err());
        assert!(
            running.extends(&rotated).is_err(),
            "a shard removed from the end"
        );
    }

    #[test]
    fn a_global_index_finds_its_shard() {
        let r = log(vec![
            shard(1, 0, Some(10)),
            shard(7, 10, Some(5)),
            shard(9, 15, None),
        ])
        .expect("log");
        for (global, tree) in [(0, 1), (9, 1), (10, 7), (14, 7), (15, 9), (1000, 9)] {
            assert_eq!(r.shard_of_index(global).tree_id, tree, "{global}");
        }
        assert_eq!(r.tree_id(), 9);
        assert_eq!(r.shard(None).map(Shard::tree_id), Some(9));
        assert_eq!(r.shard(Some(7)).map(Shard::tree_id), Some(7));
        assert!(r.shard(Some(8)).is_none());
    }

    /// An entry of an earlier shard: its outer index is global and signed so by the shard's key
    /// (its logID), its proof's index is the shard's own, its entry ID the shard's tree ID.
    #[test]
    fn an_entry_carries_the_global_index_and_its_shards_proof_and_key() {
        let r = log(vec![shard(1, 0, Some(10)), shard(0x2a, 10, None)]).expect("log");
        let s = &r.shards()[1];
        let body = br#"{"kind":"test"}"#;
        let e = Rekor::log_entry(s, body, 1_767_225_600, 3, 5, "00", vec![], "cp".into())
            .expect("entry");
        let v = &e.value;
        assert_eq!(v["logIndex"], 13);
        assert_eq!(v["verification"]["inclusionProof"]["logIndex"], 3);
        assert_eq!(v["logID"], s.log_id_hex());
        assert!(e.entry_id.starts_with("000000000000002a"), "{}", e.entry_id);
        let payload = format!(
            r#"{{"body":"{}","integratedTime":1767225600,"logID":"{}","logIndex":13}}"#,
            v["body"].as_str().expect("body"),
            s.log_id_hex()
        );
        let sig = B64
            .decode(
                v["verification"]["signedEntryTimestamp"]
                    .as_str()
                    .expect("set"),
            )
            .expect("b64");
        let key =
            p256::ecdsa::VerifyingKey::from_public_key_der(s.signer.public_key_der()).expect("key");
        let sig = p256::ecdsa::Signature::from_der(&sig).expect("der");
        key.verify(payload.as_bytes(), &sig)
            .expect("the SET verifies");
        assert_ne!(r.shards()[0].log_id_hex(), s.log_id_hex());
    }
}
