//! An in-memory [`LogStorage`] with fault hooks, for the engine's fault tests. Test builds only
//! (`#[cfg(test)]`): no production path can reach it.
//!
//! Its tables keep MariaDB's constraints (one entry per index, one per identity) and its two
//! writes are all or nothing, with `commit_batch` checking the lease and the tree size at the
//! moment it writes, as the store's single `UPDATE` does. The faults, armed by the test:
//!
//! - a lease renewal answers late (it took effect when it was made);
//! - a commit fails before anything is written, or after what it wrote persisted (the
//!   acknowledgement is lost), or is slow (it waits, then checks the lease, then writes);
//! - any call fails transiently;
//! - the lease is lost: another holder takes it for a while;
//! - a crash: after a given number of further calls, the handles of this generation are dead
//!   (every call fails, as a dead process makes none), and the test starts a fresh engine on a
//!   new handle over the same tables.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::storage::{
    AuditEntry, LogStorage, NewEntry, NewHead, StoreError, StoredEntry, TileWrite, TreeRow,
};
use crate::merkle::Hash;

/// A stored entry's bytes and leaf hash ([`MemoryStorage::snapshot`]).
pub type StoredLeaf = (Vec<u8>, Hash);

/// What the next `commit_batch` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFault {
    /// Fail with nothing written.
    FailBefore,
    /// Write everything, then report a lost connection.
    FailAfter,
    /// Wait this long, then commit (checking the lease at the end).
    Slow(Duration),
}

struct MemTree {
    row: TreeRow,
    entries: BTreeMap<u64, NewEntry>,
    identities: HashMap<Hash, u64>,
    tiles: HashMap<(u8, u64), Vec<u8>>,
    holder: String,
    expires: Instant,
}

#[derive(Default)]
struct Shared {
    trees: Vec<MemTree>,
    commit_faults: VecDeque<CommitFault>,
    /// Calls that fail transiently, next first: how many calls to let through before each.
    fail_calls: VecDeque<u64>,
    /// Crash after this many more calls.
    crash_in: Option<u64>,
    /// Handles of an older generation are dead.
    generation: u64,
    calls: u64,
    commits: u64,
    /// The next lease call's (of this holder, if one is named) answer arrives this late (it takes
    /// effect at once).
    slow_lease: Option<(Option<String>, Duration)>,
}

/// A handle on the in-memory tables (one per engine instance; see [`MemoryStorage::restart`]).
#[derive(Clone)]
pub struct MemoryStorage {
    shared: Arc<Mutex<Shared>>,
    generation: u64,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

fn crashed() -> StoreError {
    StoreError::Unavailable("the process crashed (fault injected)".into())
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self {
            shared: Arc::default(),
            generation: 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count a call and apply the call-level faults: `Err` if this handle is dead or the call is
    /// to fail.
    fn enter(&self) -> Result<std::sync::MutexGuard<'_, Shared>, StoreError> {
        let mut s = self.lock();
        if s.generation != self.generation {
            return Err(crashed());
        }
        s.calls += 1;
        if let Some(n) = s.crash_in.as_mut() {
            if *n == 0 {
                s.crash_in = None;
                s.generation += 1;
                return Err(crashed());
            }
            *n -= 1;
        }
        if let Some(n) = s.fail_calls.front_mut() {
            if *n == 0 {
                s.fail_calls.pop_front();
                return Err(StoreError::Unavailable("injected transient failure".into()));
            }
            *n -= 1;
        }
        Ok(s)
    }

    /// A handle for a fresh engine after a crash (the tables are kept).
    pub fn restart(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            generation: self.lock().generation,
        }
    }

    /// Whether this handle's generation has crashed.
    pub fn is_dead(&self) -> bool {
        self.lock().generation != self.generation
    }

    /// Queue a fault for a coming `commit_batch` (in order).
    pub fn arm_commit(&self, f: CommitFault) {
        self.lock().commit_faults.push_back(f);
    }

    /// Make a call fail transiently after `after` more calls succeed.
    pub fn fail_call(&self, after: u64) {
        self.lock().fail_calls.push_back(after);
    }

    /// Crash after `after` more calls: the call after those fails, and so does every later one
    /// on a handle of this generation.
    pub fn crash_after(&self, after: u64) {
        self.lock().crash_in = Some(after);
    }

    /// Crash now.
    pub fn crash(&self) {
        let mut s = self.lock();
        s.crash_in = None;
        s.generation += 1;
    }

    /// Drop the faults not yet triggered.
    pub fn disarm(&self) {
        let mut s = self.lock();
        s.commit_faults.clear();
        s.slow_lease = None;
        s.fail_calls.clear();
        s.crash_in = None;
    }

    /// The next `acquire_lease` (by `holder`, if given) takes effect at once but answers `d`
    /// later (a slow network or a busy server).
    pub fn slow_lease_reply(&self, holder: Option<&str>, d: Duration) {
        self.lock().slow_lease = Some((holder.map(str::to_owned), d));
    }

    /// Another holder takes the lease of `tree` for `ttl`.
    pub fn steal_lease(&self, tree: u64, holder: &str, ttl: Duration) {
        let mut s = self.lock();
        if let Some(t) = s.trees.get_mut(tree as usize - 1) {
            t.holder = holder.into();
            t.expires = Instant::now() + ttl;
        }
    }

    /// (calls, commits) so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.lock();
        (s.calls, s.commits)
    }

    /// The committed state of `tree`, read past every fault: its row and its entries' data and
    /// leaf hashes in index order.
    pub fn snapshot(&self, tree: u64) -> Option<(TreeRow, Vec<StoredLeaf>)> {
        let s = self.lock();
        let t = s.trees.get(tree as usize - 1)?;
        Some((
            t.row.clone(),
            t.entries
                .values()
                .map(|e| (e.data.clone(), e.leaf_hash))
                .collect(),
        ))
    }
}

fn tree_mut(s: &mut Shared, tree: u64) -> Result<&mut MemTree, StoreError> {
    s.trees
        .get_mut((tree as usize).wrapping_sub(1))
        .ok_or_else(|| StoreError::Db(format!("no tree {tree}")))
}

fn tree_ref(s: &Shared, tree: u64) -> Result<&MemTree, StoreError> {
    s.trees
        .get((tree as usize).wrapping_sub(1))
        .ok_or_else(|| StoreError::Db(format!("no tree {tree}")))
}

/// Insert entries and tiles into `t` and move its head, or change nothing (the constraints of
/// the entries table, checked first).
fn apply(
    t: &mut MemTree,
    entries: &[NewEntry],
    tiles: &[TileWrite],
    head: &NewHead<'_>,
) -> Result<(), StoreError> {
    let mut seen = HashMap::new();
    for e in entries {
        if t.entries.contains_key(&e.index) || t.identities.contains_key(&e.identity_hash) {
            return Err(StoreError::Db(format!(
                "duplicate entry at index {}",
                e.index
            )));
        }
        if seen.insert(e.identity_hash, e.index).is_some() {
            return Err(StoreError::Db("duplicate identity in one batch".into()));
        }
    }
    for e in entries {
        t.identities.insert(e.identity_hash, e.index);
        t.entries.insert(e.index, e.clone());
    }
    for w in tiles {
        t.tiles.insert((w.level, w.index), w.hashes.clone());
    }
    t.row.size = head.size;
    t.row.root = head.root;
    t.row.checkpoint = head.checkpoint.to_owned();
    Ok(())
}

impl LogStorage for MemoryStorage {
    async fn ping(&self) -> Result<(), StoreError> {
        self.enter().map(drop)
    }

    async fn tree(&self, name: &str) -> Result<Option<TreeRow>, StoreError> {
        let s = self.enter()?;
        Ok(s.trees
            .iter()
            .find(|t| t.row.name == name)
            .map(|t| t.row.clone()))
    }

    async fn create_tree(
        &self,
        name: &str,
        origin: &str,
        key_spki: &[u8],
        sentinel: &NewEntry,
        tile: &TileWrite,
        head: &NewHead<'_>,
    ) -> Result<TreeRow, StoreError> {
        let mut s = self.enter()?;
        if s.trees.iter().any(|t| t.row.name == name) {
            return Err(StoreError::TreeExists(name.into()));
        }
        let mut t = MemTree {
            row: TreeRow {
                id: s.trees.len() as u64 + 1,
                name: name.into(),
                origin: origin.into(),
                key_spki: key_spki.to_vec(),
                size: 0,
                root: [0; 32],
                checkpoint: String::new(),
            },
            entries: BTreeMap::new(),
            identities: HashMap::new(),
            tiles: HashMap::new(),
            holder: String::new(),
            expires: Instant::now(),
        };
        apply(
            &mut t,
            std::slice::from_ref(sentinel),
            std::slice::from_ref(tile),
            head,
        )?;
        let row = t.row.clone();
        s.trees.push(t);
        Ok(row)
    }

    async fn acquire_lease(
        &self,
        tree: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (got, delay) = {
            let mut s = self.enter()?;
            let delay = match &s.slow_lease {
                Some((who, d)) if who.as_deref().is_none_or(|w| w == holder) => {
                    let d = *d;
                    s.slow_lease = None;
                    Some(d)
                }
                _ => None,
            };
            let t = tree_mut(&mut s, tree)?;
            let now = Instant::now();
            let got = t.holder == holder || t.expires < now;
            if got {
                t.holder = holder.into();
                t.expires = now + ttl;
            }
            (got, delay)
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        Ok(got)
    }

    async fn release_lease(&self, tree: u64, holder: &str) -> Result<(), StoreError> {
        let mut s = self.enter()?;
        let t = tree_mut(&mut s, tree)?;
        if t.holder == holder {
            t.expires = Instant::now() - Duration::from_secs(1);
        }
        Ok(())
    }

    async fn existing_identities(
        &self,
        tree: u64,
        ids: &[Hash],
    ) -> Result<HashMap<Hash, u64>, StoreError> {
        let s = self.enter()?;
        let t = tree_ref(&s, tree)?;
        Ok(ids
            .iter()
            .filter_map(|id| t.identities.get(id).map(|i| (*id, *i)))
            .collect())
    }

    async fn commit_batch(
        &self,
        tree: u64,
        holder: &str,
        old_size: u64,
        entries: &[NewEntry],
        tiles: &[TileWrite],
        head: &NewHead<'_>,
    ) -> Result<(), StoreError> {
        let fault = {
            let mut s = self.enter()?;
            s.commit_faults.pop_front()
        };
        match fault {
            Some(CommitFault::FailBefore) => {
                return Err(StoreError::Unavailable(
                    "injected: commit failed, nothing written".into(),
                ));
            }
            Some(CommitFault::Slow(d)) => tokio::time::sleep(d).await,
            _ => {}
        }
        let mut s = self.lock();
        if s.generation != self.generation {
            return Err(crashed());
        }
        let t = tree_mut(&mut s, tree)?;
        if t.holder != holder || t.expires <= Instant::now() {
            return Err(StoreError::LeaseLost(tree));
        }
        if t.row.size != old_size {
            return Err(StoreError::SizeMismatch {
                tree,
                expected: old_size,
                actual: t.row.size,
            });
        }
        apply(t, entries, tiles, head)?;
        s.commits += 1;
        if fault == Some(CommitFault::FailAfter) {
            return Err(StoreError::Unavailable(
                "injected: the commit persisted but its acknowledgement was lost".into(),
            ));
        }
        Ok(())
    }

    async fn tiles(
        &self,
        tree: u64,
        keys: &[(u8, u64)],
    ) -> Result<HashMap<(u8, u64), Vec<u8>>, StoreError> {
        let s = self.enter()?;
        let t = tree_ref(&s, tree)?;
        Ok(keys
            .iter()
            .filter_map(|k| t.tiles.get(k).map(|h| (*k, h.clone())))
            .collect())
    }

    async fn entries(
        &self,
        tree: u64,
        start: u64,
        end: u64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let s = self.enter()?;
        let t = tree_ref(&s, tree)?;
        Ok(t.entries
            .range(start..end.max(start))
            .map(|(i, e)| StoredEntry {
                index: *i,
                data: e.data.clone(),
                extra: e.extra.clone(),
            })
            .collect())
    }

    async fn audit_entries(
        &self,
        tree: u64,
        start: u64,
        end: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let s = self.enter()?;
        let t = tree_ref(&s, tree)?;
        Ok(t.entries
            .range(start..end.max(start))
            .map(|(i, e)| AuditEntry {
                index: *i,
                leaf_hash: e.leaf_hash.to_vec(),
                identity_hash: e.identity_hash.to_vec(),
                data: e.data.clone(),
            })
            .collect())
    }

    async fn unindexed_leaves(
        &self,
        tree: u64,
        _size: u64,
        _limit: u32,
    ) -> Result<Vec<u64>, StoreError> {
        // Every entry is found by its leaf hash here (index_of_leaf scans them all).
        let s = self.enter()?;
        tree_ref(&s, tree)?;
        Ok(Vec::new())
    }

    async fn index_of_leaf(&self, tree: u64, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        let s = self.enter()?;
        let t = tree_ref(&s, tree)?;
        Ok(t.entries
            .values()
            .find(|e| e.leaf_hash == *leaf)
            .map(|e| e.index))
    }
}
