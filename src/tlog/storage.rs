//! The storage seam of the Merkle log service: [`LogStorage`] is exactly the set of calls the
//! engine (sequencer, reader, audit, service) makes on its database, with the value types they
//! exchange. [`crate::store::Store`] implements it on MariaDB; the tests implement it in memory,
//! with faults injected between and inside calls (`memory_storage`, test builds only).
//!
//! The dependency points from the store to the log: `store` implements this trait and re-exports
//! these types, `tlog` names no database.
//!
//! The methods return `impl Future + Send` (async functions in the trait, with the `Send` bound
//! the sequencer needs to `tokio::spawn` its commits) and the engine is generic over the backend
//! (`LogService<S = Store>`), not `dyn`: a service has one backend for its whole life, so nothing
//! is gained by boxing a future per database call, and the default type keeps `LogService`
//! meaning the MariaDB one everywhere outside the tests.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use crate::merkle::Hash;

/// Storage failures, with what the operator or caller should know.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL is not valid: {0}")]
    Url(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(String),
    #[error("tree '{0}' already exists")]
    TreeExists(String),
    #[error("this instance no longer holds the sequencer lease of tree {0}")]
    LeaseLost(u64),
    #[error("tree {tree} is at size {actual}, not {expected}: another writer integrated entries")]
    SizeMismatch {
        tree: u64,
        expected: u64,
        actual: u64,
    },
    #[error("corrupt data in the database: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether retrying later may succeed (the database went away, a lock timed out).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A tree as stored.
#[derive(Debug, Clone)]
pub struct TreeRow {
    pub id: u64,
    pub name: String,
    pub origin: String,
    pub key_spki: Vec<u8>,
    pub size: u64,
    pub root: Hash,
    pub checkpoint: String,
}

/// An entry to insert.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub index: u64,
    pub leaf_hash: Hash,
    pub identity_hash: Hash,
    pub data: Vec<u8>,
    /// Stored with the entry, not hashed (e.g. a CT entry's chain).
    pub extra: Option<Vec<u8>>,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub index: u64,
    pub data: Vec<u8>,
    pub extra: Option<Vec<u8>>,
}

/// An entry as stored, with its stored hashes (raw column values, checked by the audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub index: u64,
    pub leaf_hash: Vec<u8>,
    pub identity_hash: Vec<u8>,
    pub data: Vec<u8>,
}

/// A hash tile's latest content (concatenated 32-byte hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileWrite {
    pub level: u8,
    pub index: u64,
    pub hashes: Vec<u8>,
}

/// The state a batch commit moves the tree to.
#[derive(Debug, Clone)]
pub struct NewHead<'a> {
    pub size: u64,
    pub root: Hash,
    pub checkpoint: &'a str,
}

/// The calls the log engine makes on its storage. Every backend must give them the semantics
/// documented here, which are MariaDB's ([`crate::store::Store`]):
///
/// - [`create_tree`](Self::create_tree) and [`commit_batch`](Self::commit_batch) are the only
///   writes besides the lease, and each is all or nothing;
/// - `commit_batch` checks, atomically with its writes, that `holder` holds an unexpired lease
///   and that the tree is still at `old_size`; it fails with [`StoreError::LeaseLost`] or
///   [`StoreError::SizeMismatch`] when it does not, and then writes nothing;
/// - an error from `commit_batch` does not mean nothing was written: the commit may have
///   persisted and its acknowledgement been lost (the engine reloads the tree after any failed
///   commit, and never acknowledges entries whose commit failed);
/// - reads see only committed state.
pub trait LogStorage: Clone + Send + Sync + 'static {
    /// Liveness of the storage.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Look a tree up by name.
    fn tree(&self, name: &str) -> impl Future<Output = Result<Option<TreeRow>, StoreError>> + Send;

    /// Create a tree with its first entry (the sentinel), tile and checkpoint, once
    /// ([`StoreError::TreeExists`] after that).
    fn create_tree(
        &self,
        name: &str,
        origin: &str,
        key_spki: &[u8],
        sentinel: &NewEntry,
        tile: &TileWrite,
        head: &NewHead<'_>,
    ) -> impl Future<Output = Result<TreeRow, StoreError>> + Send;

    /// Take or renew the sequencer lease of `tree` for `ttl`, if it is free, expired or ours.
    fn acquire_lease(
        &self,
        tree: u64,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Give the lease up, if `holder` has it, so a standby can take over at once.
    fn release_lease(
        &self,
        tree: u64,
        holder: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Existing entries' indices for these identity hashes.
    fn existing_identities(
        &self,
        tree: u64,
        ids: &[Hash],
    ) -> impl Future<Output = Result<HashMap<Hash, u64>, StoreError>> + Send;

    /// Commit a batch: entries, tiles and the new head, atomically, if `holder` still holds the
    /// lease and the tree is still at `old_size` (see the trait's documentation).
    fn commit_batch(
        &self,
        tree: u64,
        holder: &str,
        old_size: u64,
        entries: &[NewEntry],
        tiles: &[TileWrite],
        head: &NewHead<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Hash tiles by (level, index), as stored (latest width); absent ones are left out.
    fn tiles(
        &self,
        tree: u64,
        keys: &[(u8, u64)],
    ) -> impl Future<Output = Result<HashMap<(u8, u64), Vec<u8>>, StoreError>> + Send;

    /// Entries with indices in `[start, end)`, in order.
    fn entries(
        &self,
        tree: u64,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<StoredEntry>, StoreError>> + Send;

    /// Entries with indices in `[start, end)` in order, with their stored hashes (the audit).
    fn audit_entries(
        &self,
        tree: u64,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// The lowest indices (at most `limit`) of entries below `size` whose leaf hash differs from
    /// their identity and that a lookup by leaf hash would miss (the audit).
    fn unindexed_leaves(
        &self,
        tree: u64,
        size: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send;

    /// The lowest index of an entry with this leaf hash, if any.
    fn index_of_leaf(
        &self,
        tree: u64,
        leaf: &Hash,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}
