//! The sequencer of one tree: batches appends, integrates them and commits each batch atomically.
//!
//! Only the instance holding the tree's lease sequences. Its in-memory state is the right edge of
//! the tree: the compact range (roots of the perfect subtrees along the right edge, enough to
//! extend the tree and compute its root) and the last, growing tile of each tile level. The state
//! is (re)loaded from the database whenever this instance takes the lease or a commit fails, and
//! checked against the stored root before any new entry is integrated.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::merkle::tiles::{TILE_HEIGHT, TILE_WIDTH, layout};
use crate::merkle::{self, CompactRange, Hash};
use crate::metrics::Histogram;
use crate::note::{self, Checkpoint};
use crate::signer::Signer;

use super::Stop;
use super::guard::Witness;
use super::reader::{self, TileCache};
use super::storage::{LogStorage, NewEntry, NewHead, TileWrite, TreeRow};
use super::{Head, TlogError};

/// Tuning of one tree's sequencer.
#[derive(Debug, Clone)]
pub struct SequencerOptions {
    /// Most entries integrated in one batch.
    pub max_batch: usize,
    /// Longest a first append waits for others to join its batch.
    pub max_wait: Duration,
    /// Lease length; renewed every third of it.
    pub lease_ttl: Duration,
    /// Appends queued beyond this are refused with 503 (backpressure).
    pub queue_limit: usize,
}

impl Default for SequencerOptions {
    fn default() -> Self {
        Self {
            max_batch: 512,
            max_wait: Duration::from_millis(8),
            lease_ttl: Duration::from_secs(10),
            queue_limit: 65_536,
        }
    }
}

/// One queued append.
pub(super) struct AppendReq {
    pub data: Vec<u8>,
    pub identity: Option<Hash>,
    pub extra: Option<Vec<u8>>,
    pub reply: oneshot::Sender<Result<Appended, TlogError>>,
    /// When the append was queued, for the integration-latency metric.
    pub queued: Instant,
}

/// Sequencer metrics of one tree, exported on `/metrics`.
#[derive(Default)]
pub struct SeqMetrics {
    pub batches: AtomicU64,
    pub batch_entries: AtomicU64,
    pub last_batch_size: AtomicU64,
    pub failed_batches: AtomicU64,
    /// Append-to-integrated latency.
    pub latency: Histogram,
    /// Time to integrate and sign a batch (dedup lookup, hashing, checkpoint signature).
    pub prepare: Histogram,
    /// Time of a batch's database transaction, from BEGIN to COMMIT.
    pub commit: Histogram,
}

/// What an append gets back once its entry is durable and integrated.
#[derive(Debug, Clone)]
pub struct Appended {
    pub index: u64,
    pub leaf_hash: Hash,
    /// True when an entry with the same identity existed: `index` is the existing entry's.
    pub duplicate: bool,
    /// The head that covers the entry.
    pub head: Arc<Head>,
}

/// The right edge of the tree.
#[derive(Clone)]
struct Edge {
    compact: CompactRange,
    /// Per tile level: (tile index, its hashes so far).
    tiles: Vec<(u64, Vec<Hash>)>,
}

impl Edge {
    fn size(&self) -> u64 {
        self.compact.size()
    }

    /// Append one leaf hash, recording which tiles changed and which completed.
    fn append(
        &mut self,
        leaf: Hash,
        dirty: &mut BTreeSet<(u8, u64)>,
        completed: &mut Vec<TileWrite>,
    ) -> Result<(), TlogError> {
        let tiles = &mut self.tiles;
        let mut err = None;
        self.compact
            .append_with(leaf, |id, hash| {
                if id.level % TILE_HEIGHT != 0 || err.is_some() {
                    return;
                }
                let level = usize::from(id.level / TILE_HEIGHT);
                let index = id.index / u64::from(TILE_WIDTH);
                while tiles.len() <= level {
                    tiles.push((0, Vec::new()));
                }
                let slot = &mut tiles[level];
                if slot.0 != index {
                    // The previous tile of this level is full; a new one starts.
                    slot.0 = index;
                    slot.1.clear();
                }
                if (id.index % u64::from(TILE_WIDTH)) as usize != slot.1.len() {
                    err = Some(TlogError::Corrupt(format!(
                        "tile {level}/{index} out of step at node {id}"
                    )));
                    return;
                }
                slot.1.push(*hash);
                dirty.insert((level as u8, index));
                if slot.1.len() == usize::from(TILE_WIDTH) {
                    completed.push(TileWrite {
                        level: level as u8,
                        index,
                        hashes: slot.1.concat(),
                    });
                    dirty.remove(&(level as u8, index));
                }
            })
            .map_err(|e| TlogError::Corrupt(e.to_string()))?;
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The partial (growing) tiles of the edge, to publish to readers after a commit.
    fn partial_tiles(&self) -> reader::TileMap {
        self.tiles
            .iter()
            .enumerate()
            .filter(|(_, (_, h))| !h.is_empty() && h.len() < usize::from(TILE_WIDTH))
            .map(|(level, (index, h))| {
                (
                    (level as u8, *index),
                    Arc::new(reader::TileHashes::new(h.clone())),
                )
            })
            .collect()
    }

    fn tile_writes(
        &self,
        dirty: &BTreeSet<(u8, u64)>,
        completed: Vec<TileWrite>,
    ) -> Vec<TileWrite> {
        let mut out = completed;
        for (level, index) in dirty {
            if let Some((i, h)) = self.tiles.get(usize::from(*level)) {
                if i == index && !h.is_empty() {
                    out.push(TileWrite {
                        level: *level,
                        index: *index,
                        hashes: h.concat(),
                    });
                }
            }
        }
        out
    }

    /// Rebuild the edge of a tree of `size` from its stored tiles, and check it against `root`.
    async fn load<S: LogStorage>(
        store: &S,
        cache: &TileCache,
        tree: u64,
        size: u64,
        root: &Hash,
    ) -> Result<Self, TlogError> {
        let ids = CompactRange::node_ids(size);
        let mut want = reader::tiles_for_nodes(&ids, size);
        let mut tiles = Vec::new();
        for lvl in layout(size) {
            match lvl.partial {
                Some(w) => {
                    if let Ok(t) = crate::merkle::tiles::TileId::hashes(lvl.level, lvl.full, w) {
                        if !want.contains(&t) {
                            want.push(t);
                        }
                    }
                    tiles.push((lvl.full, Vec::new()));
                }
                None => tiles.push((lvl.full, Vec::new())),
            }
        }
        let fetched = reader::fetch_tiles(store, cache, tree, size, &want)
            .await
            .map_err(|e| TlogError::Corrupt(format!("cannot load the tree's right edge: {e}")))?;
        let compact = CompactRange::from_source(&fetched, size).map_err(|e| {
            TlogError::Corrupt(format!("cannot rebuild the tree's right edge: {e}"))
        })?;
        if compact.root() != *root {
            return Err(TlogError::Corrupt(format!(
                "tree {tree}: the stored tiles give root {} at size {size}, but the stored head says {}",
                hex::encode(compact.root()),
                hex::encode(root)
            )));
        }
        // Fill the partial tiles' hashes.
        for lvl in layout(size) {
            if let Some(w) = lvl.partial {
                use crate::merkle::NodeSource;
                let base = lvl.full * u64::from(TILE_WIDTH);
                let node_level = lvl.level * TILE_HEIGHT;
                let mut hs = Vec::with_capacity(usize::from(w));
                for i in 0..u64::from(w) {
                    hs.push(
                        fetched
                            .node(node_level, base + i)
                            .map_err(|e| TlogError::Corrupt(e.to_string()))?,
                    );
                }
                tiles[usize::from(lvl.level)].1 = hs;
            }
        }
        Ok(Self { compact, tiles })
    }
}

/// Static facts about the tree that the sequencer signs for.
pub(super) struct TreeIdentity {
    pub tree_id: u64,
    pub name: String,
    pub origin: String,
    pub note_name: String,
    pub signer: Arc<dyn Signer>,
}

/// Sign the checkpoint for `size`/`root`.
pub(super) fn sign_head(id: &TreeIdentity, size: u64, root: Hash) -> Result<Head, TlogError> {
    let cp = Checkpoint {
        origin: id.origin.clone(),
        size,
        root,
        extensions: Vec::new(),
    };
    let body = cp.body().map_err(|e| TlogError::Internal(e.to_string()))?;
    let checkpoint = note::sign_note(&body, &id.note_name, id.signer.as_ref())
        .map_err(|e| TlogError::Signing(e.to_string()))?;
    Ok(Head {
        size,
        root,
        checkpoint,
    })
}

/// Everything one tree's sequencer task works with.
pub(super) struct Runner<S: LogStorage> {
    pub store: S,
    pub cache: Arc<TileCache>,
    pub id: Arc<TreeIdentity>,
    /// This instance's lease holder name.
    pub holder: String,
    pub opts: SequencerOptions,
    /// Published: whether this instance is the tree's active sequencer.
    pub active: watch::Sender<bool>,
    /// Published: until when its lease is sure to be its own.
    pub lease_until: Arc<std::sync::Mutex<Option<Instant>>>,
    /// Published: the latest head this sequencer committed.
    pub head_tx: watch::Sender<Option<Arc<Head>>>,
    pub metrics: Arc<SeqMetrics>,
    /// The rollback guard's record of what this instance committed (`None`: guard off).
    pub witness: Option<Arc<Witness>>,
    /// Published: why this instance refuses to sequence the tree, if it does.
    pub refused: watch::Sender<Option<String>>,
}

/// A commit in flight: the task that commits one prepared batch and answers its appends.
type InFlight = tokio::task::JoinHandle<Result<(), TlogError>>;

/// The outcome of a commit task.
fn outcome(joined: Result<Result<(), TlogError>, tokio::task::JoinError>) -> Result<(), TlogError> {
    joined.map_err(|e| TlogError::Internal(format!("commit task failed: {e}")))?
}

/// Wait for the batch in flight (if any) to finish; its error, if it failed. `finished` holds
/// the outcome of one that was seen finishing while a batch was collected.
async fn settle(
    inflight: &mut Option<InFlight>,
    finished: &mut Option<Result<(), TlogError>>,
) -> Result<(), TlogError> {
    if let Some(r) = finished.take() {
        return r;
    }
    match inflight.take() {
        None => Ok(()),
        Some(h) => outcome(h.await),
    }
}

/// What happened while a batch was open.
enum Collected {
    Append(Option<AppendReq>),
    Committed(Result<(), TlogError>),
    Deadline,
}

/// Run the sequencer of one tree until `stop` says why it is to stop: the service shutting down,
/// or the tree being frozen (then the batch in flight commits, and what is still queued is
/// refused as frozen, so that a personality may send it to its next tree: none of it is logged).
///
/// Batches are pipelined one deep: while batch N commits (in its own task, which answers its
/// appends), batch N+1 is collected, deduplicated (against the database and against N's
/// identities, which the database may not show yet), integrated into the in-memory edge and
/// signed; it is committed only once N has committed. If N fails, the edge is reloaded from the
/// database and N+1's appends (integrated on top of N) are integrated again.
pub(super) async fn run<S: LogStorage>(
    r: Runner<S>,
    mut rx: mpsc::Receiver<AppendReq>,
    mut shutdown: watch::Receiver<Option<Stop>>,
) {
    let Runner {
        store,
        cache,
        id,
        holder,
        opts,
        active,
        lease_until: lease_published,
        head_tx,
        metrics,
        witness,
        refused,
    } = r;
    let renew_every = opts.lease_ttl / 3;
    let mut edge: Option<Edge> = None;
    let mut lease_until = Instant::now();
    let mut inflight: Option<InFlight> = None;
    let mut finished: Option<Result<(), TlogError>> = None;
    // Identities of the batch in flight, with their indices.
    let mut inflight_ids: HashMap<Hash, u64> = HashMap::new();
    // Appends collected but not integrated because the batch before failed: they go first into
    // the next batch once the edge is reloaded.
    let mut carried: Vec<AppendReq> = Vec::new();
    loop {
        if shutdown.borrow().is_some() {
            break;
        }
        // --- Hold the lease, or wait for it. ---------------------------------------------------
        // A standby that refuses the tree (the rollback guard) does not take the lease only to
        // hand it back: that would stand in the way of a healthy standby every second. It
        // watches the database instead (below) and tries again once the guard is satisfied.
        let refusing = edge.is_none() && witness.is_some() && refused.borrow().is_some();
        if !refusing && (edge.is_none() || Instant::now() + renew_every * 2 >= lease_until) {
            if edge.is_none() {
                // Load the state only once nothing is being committed.
                let _ = settle(&mut inflight, &mut finished).await;
                inflight_ids.clear();
            }
            // The database starts the lease when it runs the statement, at some moment after
            // `asked`: counting it from the answer instead would stretch it by the round trip
            // (by most of the TTL when the answer is slow), past the moment another instance
            // may take it over.
            let asked = Instant::now();
            match store
                .acquire_lease(id.tree_id, &holder, opts.lease_ttl)
                .await
            {
                Ok(true) if Instant::now() >= asked + opts.lease_ttl => {
                    // Answered after the whole TTL: the lease may already be another's.
                    if edge.take().is_some() {
                        tracing::warn!(tree = %id.name, "the lease renewal answered too late; standing down");
                    }
                    let _ = active.send_replace(false);
                }
                Ok(true) => {
                    lease_until = asked + opts.lease_ttl;
                    *lease_published.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease_until);
                    if edge.is_none() {
                        match load_state(&store, &cache, &id, witness.as_deref()).await {
                            Ok((e, head)) => {
                                cache.publish_edge(e.partial_tiles());
                                tracing::info!(tree = %id.name, size = e.size(), "took the sequencer lease");
                                let _ = refused.send_replace(None);
                                let _ = head_tx.send_replace(Some(Arc::new(head)));
                                edge = Some(e);
                                let _ = active.send_replace(true);
                            }
                            Err(TlogError::Refused(why)) => {
                                refuse(&refused, &id.name, why);
                                let _ = store.release_lease(id.tree_id, &holder).await;
                            }
                            Err(e) => {
                                tracing::error!(tree = %id.name, error = %e, "cannot load tree state");
                                let _ = store.release_lease(id.tree_id, &holder).await;
                            }
                        }
                    }
                }
                Ok(false) => {
                    if edge.take().is_some() {
                        tracing::warn!(tree = %id.name, "lost the sequencer lease");
                    }
                    let _ = active.send_replace(false);
                }
                Err(e) => {
                    if edge.take().is_some() {
                        tracing::error!(tree = %id.name, error = %e, "cannot renew the sequencer lease; standing down");
                    }
                    let _ = active.send_replace(false);
                }
            }
        }
        let Some(cur) = edge.as_mut() else {
            // Standby: refuse what is queued, then wait a little and try for the lease again.
            for req in carried.drain(..) {
                let _ = req.reply.send(Err(TlogError::NotActive(id.name.clone())));
            }
            while let Ok(req) = rx.try_recv() {
                let _ = req.reply.send(Err(TlogError::NotActive(id.name.clone())));
            }
            if let Some(w) = &witness {
                observe(&store, &cache, &id, w, &refused).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(renew_every.min(Duration::from_secs(1))) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };

        // --- Collect a batch. ------------------------------------------------------------------
        let mut batch = std::mem::take(&mut carried);
        if batch.is_empty() {
            // Idle: wake when the lease is due for renewal (at once if it already is), not a
            // fixed while later, or the lease could run out while this instance waits.
            let renew_at = tokio::time::Instant::from_std(
                lease_until
                    .checked_sub(renew_every * 2)
                    .unwrap_or_else(Instant::now),
            );
            // Also wake when the batch in flight finishes: if it failed, the edge and the head
            // this instance serves are not the database's (a commit may fail after persisting),
            // so it stands down and reloads now, not at the next append.
            let committed = async {
                match inflight.as_mut() {
                    Some(task) => outcome(task.await),
                    None => std::future::pending().await,
                }
            };
            let first = tokio::select! {
                r = rx.recv() => r,
                r = committed => {
                    inflight = None;
                    if r.is_err() {
                        edge = None;
                        let _ = active.send_replace(false);
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(renew_at) => continue,
                _ = shutdown.changed() => continue,
            };
            let Some(first) = first else { break };
            batch.push(first);
        }
        // Group commit: the batch stays open while the batch before it is committing (up to
        // max_wait, or max_batch appends), and closes as soon as the database is free. A lone
        // append on an idle log is committed at once; under load batches grow with the commit
        // time.
        let deadline = tokio::time::Instant::now() + opts.max_wait;
        while batch.len() < opts.max_batch {
            let Some(task) = inflight.as_mut() else { break };
            let event = tokio::select! {
                biased;
                r = task => Collected::Committed(outcome(r)),
                r = rx.recv() => Collected::Append(r),
                _ = tokio::time::sleep_until(deadline) => Collected::Deadline,
            };
            match event {
                Collected::Append(Some(r)) => batch.push(r),
                Collected::Committed(r) => {
                    inflight = None;
                    finished = Some(r);
                    break;
                }
                Collected::Append(None) | Collected::Deadline => break,
            }
        }
        // Take whatever else is already queued, up to the cap, without waiting.
        while batch.len() < opts.max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }

        // If the batch in flight has failed meanwhile, the edge is ahead of the database:
        // reload it first, then integrate this batch.
        if (finished.is_some() || inflight.as_ref().is_some_and(|h| h.is_finished()))
            && settle(&mut inflight, &mut finished).await.is_err()
        {
            carried = batch;
            edge = None;
            let _ = active.send_replace(false);
            continue;
        }

        // --- Integrate into the edge and sign, while the previous batch commits. ---------------
        let preparing = Instant::now();
        let prepared = match prepare(&store, &id, cur, batch, &inflight_ids).await {
            Ok(p) => {
                metrics.prepare.observe(preparing.elapsed());
                p
            }
            Err((e, batch)) => {
                tracing::error!(tree = %id.name, error = %e, entries = batch.len(), "batch not integrated");
                metrics.failed_batches.fetch_add(1, Ordering::Relaxed);
                // The in-memory edge may be half-extended: reload it before anything else.
                edge = None;
                let _ = active.send_replace(false);
                for req in batch {
                    let _ = req.reply.send(Err(e.clone_for_reply()));
                }
                continue;
            }
        };
        if settle(&mut inflight, &mut finished).await.is_err() {
            // The batch before failed, and this one was built on top of it: integrate it again
            // once the edge is reloaded.
            carried = prepared.batch;
            edge = None;
            let _ = active.send_replace(false);
            continue;
        }
        inflight_ids = prepared.new_identities();
        inflight = Some(tokio::spawn(commit(
            store.clone(),
            Arc::clone(&cache),
            Arc::clone(&id),
            holder.clone(),
            prepared,
            head_tx.clone(),
            Arc::clone(&metrics),
        )));
    }
    // Stopping: let the batch in flight finish, refuse what is queued, hand the lease over.
    let _ = settle(&mut inflight, &mut finished).await;
    let _ = active.send_replace(false);
    rx.close();
    let why = *shutdown.borrow();
    let refusal = || match why {
        Some(Stop::Freeze) => TlogError::Frozen(id.name.clone()),
        _ => TlogError::ShuttingDown,
    };
    for req in carried {
        let _ = req.reply.send(Err(refusal()));
    }
    while let Ok(req) = rx.try_recv() {
        let _ = req.reply.send(Err(refusal()));
    }
    if edge.is_some() {
        // The record is written a moment after each commit: bring it up to date before the
        // lease is handed over.
        let last = head_tx.borrow().clone();
        if let (Some(w), Some(h)) = (&witness, last) {
            w.record_logged(&id.name, h.size, h.root).await;
        }
        let _ = store.release_lease(id.tree_id, &holder).await;
    }
}

/// Refuse the tree for `why`: published for /readyz and the sequencer probe, logged once (not at
/// every retry).
fn refuse(refused: &watch::Sender<Option<String>>, tree: &str, why: String) {
    if refused.borrow().as_deref() != Some(why.as_str()) {
        tracing::error!(tree, "{why}");
    }
    let _ = refused.send_replace(Some(why));
}

/// The rollback guard's verdict on the tree as the database holds it (`row`): the size of this
/// instance's record if the database extends it, `None` if there is no record, `Err` with the
/// reason to refuse the tree otherwise.
async fn guard_verdict<S: LogStorage>(
    store: &S,
    cache: &TileCache,
    id: &TreeIdentity,
    witness: &Witness,
    row: &TreeRow,
) -> Result<Option<u64>, String> {
    let Some(seen) = witness.read(&id.name)? else {
        return Ok(None);
    };
    super::guard::check(&id.name, &seen, row.size, &row.root, |size| async move {
        reader::root_at(store, cache, row.id, size)
            .await
            .map_err(|e| TlogError::from(e).to_string())
    })
    .await?;
    Ok(Some(seen.size))
}

/// On standby, the rollback guard follows the active instance: the tree in the database must
/// extend what this instance has recorded, and its newer heads are recorded as they appear. So
/// a standby that takes over after the database was put back from an older backup refuses,
/// even if it never sequenced before, and says so (on /readyz) while still standing by.
async fn observe<S: LogStorage>(
    store: &S,
    cache: &TileCache,
    id: &TreeIdentity,
    witness: &Arc<Witness>,
    refused: &watch::Sender<Option<String>>,
) {
    // A database that cannot be read now (down, or being restored) is judged next time.
    let Ok(Some(row)) = store.tree(&id.name).await else {
        return;
    };
    match guard_verdict(store, cache, id, witness, &row).await {
        Err(why) => refuse(refused, &id.name, why),
        Ok(recorded) => {
            let _ = refused.send_replace(None);
            if recorded.is_none_or(|size| row.size > size) {
                witness.record_logged(&id.name, row.size, row.root).await;
            }
        }
    }
}

/// Load the tree's right edge from the database, after checking the database against what this
/// instance has committed before (the rollback guard).
async fn load_state<S: LogStorage>(
    store: &S,
    cache: &TileCache,
    id: &TreeIdentity,
    witness: Option<&Witness>,
) -> Result<(Edge, Head), TlogError> {
    let row = store
        .tree(&id.name)
        .await?
        .ok_or_else(|| TlogError::UnknownTree(id.name.clone()))?;
    if let Some(w) = witness {
        guard_verdict(store, cache, id, w, &row)
            .await
            .map_err(TlogError::Refused)?;
    }
    let edge = Edge::load(store, cache, row.id, row.size, &row.root).await?;
    Ok((
        edge,
        Head {
            size: row.size,
            root: row.root,
            checkpoint: row.checkpoint,
        },
    ))
}

/// A batch integrated into the in-memory edge and signed, ready to commit.
struct Prepared {
    batch: Vec<AppendReq>,
    old_size: u64,
    /// Per request: its index and whether it is a duplicate.
    assigned: Vec<(u64, bool)>,
    leaf_hashes: Vec<Hash>,
    new_entries: Vec<NewEntry>,
    tiles: Vec<TileWrite>,
    /// The signed head after this batch; `None` when the batch holds only duplicates.
    head: Option<Head>,
    /// The edge's partial tiles after this batch, for readers once committed.
    partial: reader::TileMap,
}

impl Prepared {
    fn new_identities(&self) -> HashMap<Hash, u64> {
        self.new_entries
            .iter()
            .map(|e| (e.identity_hash, e.index))
            .collect()
    }
}

/// Integrate one batch into the edge: dedup (against the database, the batch in flight and the
/// batch itself), extend the edge, sign the new head. On error the batch is handed back and the
/// edge may be half-extended.
async fn prepare<S: LogStorage>(
    store: &S,
    id: &TreeIdentity,
    edge: &mut Edge,
    batch: Vec<AppendReq>,
    inflight_ids: &HashMap<Hash, u64>,
) -> Result<Prepared, (TlogError, Vec<AppendReq>)> {
    let old_size = edge.size();
    let leaf_hashes: Vec<Hash> = batch.iter().map(|r| merkle::leaf_hash(&r.data)).collect();
    let identities: Vec<Hash> = batch
        .iter()
        .zip(&leaf_hashes)
        .map(|(r, l)| r.identity.unwrap_or(*l))
        .collect();
    let existing = match store.existing_identities(id.tree_id, &identities).await {
        Ok(x) => x,
        Err(e) => return Err((e.into(), batch)),
    };

    // Which request gets which index: existing entries keep theirs, the first of several equal
    // identities in this batch gets a new one and the rest share it.
    let mut in_batch: HashMap<Hash, u64> = HashMap::new();
    let mut assigned = Vec::with_capacity(batch.len());
    let mut new_entries = Vec::new();
    let mut dirty = BTreeSet::new();
    let mut completed = Vec::new();
    for (i, req) in batch.iter().enumerate() {
        let ident = identities[i];
        if let Some(&idx) = existing
            .get(&ident)
            .or_else(|| inflight_ids.get(&ident))
            .or_else(|| in_batch.get(&ident))
        {
            assigned.push((idx, true));
        } else {
            let idx = edge.size();
            if let Err(e) = edge.append(leaf_hashes[i], &mut dirty, &mut completed) {
                return Err((e, batch));
            }
            in_batch.insert(ident, idx);
            new_entries.push(NewEntry {
                index: idx,
                leaf_hash: leaf_hashes[i],
                identity_hash: ident,
                data: req.data.clone(),
                extra: req.extra.clone(),
            });
            assigned.push((idx, false));
        }
    }
    let head = if new_entries.is_empty() {
        None
    } else {
        match sign_head(id, edge.size(), edge.compact.root()) {
            Ok(h) => Some(h),
            Err(e) => return Err((e, batch)),
        }
    };
    let tiles = edge.tile_writes(&dirty, completed);
    Ok(Prepared {
        batch,
        old_size,
        assigned,
        leaf_hashes,
        new_entries,
        tiles,
        head,
        partial: edge.partial_tiles(),
    })
}

/// Commit a prepared batch (the one before it has committed), publish the new state to readers
/// and answer its appends.
async fn commit<S: LogStorage>(
    store: S,
    cache: Arc<TileCache>,
    id: Arc<TreeIdentity>,
    holder: String,
    p: Prepared,
    head_tx: watch::Sender<Option<Arc<Head>>>,
    metrics: Arc<SeqMetrics>,
) -> Result<(), TlogError> {
    let Prepared {
        batch,
        old_size,
        assigned,
        leaf_hashes,
        new_entries,
        tiles,
        head,
        partial,
    } = p;
    let committed: Result<Arc<Head>, TlogError> = match head {
        // Only duplicates: nothing to write; the head that covers them is the latest committed
        // one (the batch they duplicate has committed before this one).
        None => match head_tx.borrow().clone() {
            Some(h) => Ok(h),
            None => Err(TlogError::Internal("no committed head yet".into())),
        },
        Some(head) => {
            let committing = Instant::now();
            let r = store
                .commit_batch(
                    id.tree_id,
                    &holder,
                    old_size,
                    &new_entries,
                    &tiles,
                    &NewHead {
                        size: head.size,
                        root: head.root,
                        checkpoint: &head.checkpoint,
                    },
                )
                .await
                .map(|()| Arc::new(head))
                .map_err(TlogError::from);
            metrics.commit.observe(committing.elapsed());
            r
        }
    };
    let head = match committed {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(tree = %id.name, error = %e, entries = batch.len(), "batch not committed");
            metrics.failed_batches.fetch_add(1, Ordering::Relaxed);
            for req in batch {
                let _ = req.reply.send(Err(e.clone_for_reply()));
            }
            return Err(e);
        }
    };
    if !new_entries.is_empty() {
        // Readers get the new tiles from memory.
        for t in &tiles {
            if t.hashes.len() == usize::from(TILE_WIDTH) * 32 {
                if let Ok(h) = merkle::tiles::decode_tile(&t.hashes, TILE_WIDTH) {
                    cache.put((t.level, t.index), Arc::new(reader::TileHashes::new(h)));
                }
            }
        }
        cache.publish_edge(partial);
        let _ = head_tx.send_replace(Some(Arc::clone(&head)));
    }
    metrics.batches.fetch_add(1, Ordering::Relaxed);
    metrics
        .batch_entries
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    metrics
        .last_batch_size
        .store(batch.len() as u64, Ordering::Relaxed);
    for ((req, (index, duplicate)), leaf_hash) in batch.into_iter().zip(assigned).zip(leaf_hashes) {
        metrics.latency.observe(req.queued.elapsed());
        let _ = req.reply.send(Ok(Appended {
            index,
            // For a duplicate, the stored entry's leaf hash may differ (same identity, other
            // bytes); callers that care read the entry back.
            leaf_hash,
            duplicate,
            head: Arc::clone(&head),
        }));
    }
    Ok(())
}
