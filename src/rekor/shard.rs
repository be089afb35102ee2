//! The shards of the Rekor v1 log: tlog trees, each signed with its own key, that the API
//! serves as one log (upstream Rekor's sharding).
//!
//! * The newest shard is active: uploads go to it. The earlier ones are frozen trees (the tlog
//!   refuses appends to them with 403), so their sizes are fixed, and so are the offsets.
//! * A global log index is the sum of the earlier shards' sizes plus the index inside the shard;
//!   each shard's index 0 is its tree's sentinel, never a client entry.
//! * An entry's SET and `logID` are its shard's key's; its inclusion proof (`logIndex`,
//!   `treeSize`, `rootHash`, checkpoint) is the shard's own tree's, which is what clients verify
//!   it against. Only the outer `logIndex` (what the SET signs) is global.

use std::sync::Arc;

use super::RekorError;
use super::index::IndexerHandle;
use crate::signer::Signer;
use crate::tlog::api::TlogClient;

/// One shard.
pub struct Shard {
    pub(super) signer: Arc<dyn Signer>,
    pub(super) tree: String,
    pub(super) tree_id: u64,
    pub(super) log_id_hex: String,
    pub(super) public_pem: String,
    /// The global index of the shard's index 0.
    pub(super) offset: u64,
    /// A frozen shard's size; `None` for the active shard, which grows.
    pub(super) frozen_size: Option<u64>,
    pub(super) indexer: Option<IndexerHandle>,
}

impl Shard {
    /// A shard signed by `signer` on `tree`. `offset` is the sum of the earlier shards' sizes;
    /// `frozen_size` is `Some` for a frozen shard (see [`frozen_size`]).
    pub fn new(
        signer: Arc<dyn Signer>,
        tree: String,
        tree_id: u64,
        offset: u64,
        frozen_size: Option<u64>,
        indexer: Option<IndexerHandle>,
    ) -> Result<Self, RekorError> {
        let spki = signer.public_key_der().to_vec();
        let public_pem = crate::pki::spki_pem(&spki)
            .map_err(|e| RekorError::Internal(format!("cannot encode the Rekor key: {e}")))?;
        Ok(Self {
            log_id_hex: crate::pki::sha256_hex(&spki),
            signer,
            tree,
            tree_id,
            public_pem,
            offset,
            frozen_size,
            indexer,
        })
    }

    pub fn tree(&self) -> &str {
        &self.tree
    }
    pub fn tree_id(&self) -> u64 {
        self.tree_id
    }
    pub fn offset(&self) -> u64 {
        self.offset
    }
    pub fn log_id_hex(&self) -> &str {
        &self.log_id_hex
    }
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }
    pub fn indexer(&self) -> Option<&IndexerHandle> {
        self.indexer.as_ref()
    }
    pub fn is_frozen(&self) -> bool {
        self.frozen_size.is_some()
    }
}

/// Why an earlier shard cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("cannot read the shard tree '{tree}' from the tlog: {message}")]
    Tlog { tree: String, message: String },
    #[error(
        "the shard tree '{0}' is not frozen in the tlog: mark it `frozen = true` in tlog.toml and reload (or restart) the tlog first (an earlier shard that still grew would shift every later global log index)"
    )]
    NotFrozen(String),
}

/// The size of a frozen tree, which an earlier shard must be: only then is the offset of every
/// later shard fixed.
pub async fn frozen_size(tlog: &TlogClient, tree: &str) -> Result<u64, ShardError> {
    let err = |e: crate::tlog::api::TlogClientError| ShardError::Tlog {
        tree: tree.to_owned(),
        message: e.to_string(),
    };
    let s = tlog.sequencer(tree).await.map_err(err)?;
    if !s.frozen {
        return Err(ShardError::NotFrozen(tree.to_owned()));
    }
    Ok(tlog.head(tree).await.map_err(err)?.tree_size)
}
