//! The Merkle log service: trees of entries in MariaDB, sequenced in batches by one active
//! instance per tree (a database lease), stored as C2SP tlog-tiles, with checkpoints signed
//! through the [`Signer`] seam (PKCS#11 in production). ctlog and rekor reach it only through
//! [`api`], over its internal HTTP API.

pub mod api;
pub mod audit;
#[cfg(test)]
mod fault_tests;
pub mod guard;
pub mod instance;
#[cfg(test)]
pub mod memory_storage;
pub mod reader;
#[cfg(test)]
mod reload_tests;
pub mod sequencer;
pub mod server;
pub mod storage;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::merkle::{self, Hash};
use crate::signer::Signer;
use crate::store::Store;
pub use sequencer::{Appended, SequencerOptions};
pub use storage::LogStorage;
use storage::{NewEntry, NewHead, StoreError, TileWrite};

/// Largest extra data stored with an entry (a CT chain), bytes.
pub const MAX_EXTRA_SIZE: usize = 1 << 20;

/// A signed tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
    /// The signed note text.
    pub checkpoint: String,
}

/// Errors of the log service, each mapping to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum TlogError {
    #[error("unknown tree '{0}'")]
    UnknownTree(String),
    #[error("tree '{0}' is not created yet; create it once with POST /v1/trees/{0}")]
    NotCreated(String),
    #[error("tree '{0}' already exists")]
    TreeExists(String),
    #[error("this instance is not the active sequencer of tree '{0}'; retry on the active one")]
    NotActive(String),
    /// The rollback guard refuses the tree: the database is behind or beside what this instance
    /// signed.
    #[error("{0}")]
    Refused(String),
    #[error(
        "tree '{0}' is frozen: it takes no new entries (its entries, proofs and tiles are still served)"
    )]
    Frozen(String),
    #[error("too many appends waiting for tree '{0}'; retry later")]
    Overloaded(String),
    #[error("entry of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("{0}")]
    BadRequest(String),
    #[error("shutting down")]
    ShuttingDown,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("signing the checkpoint failed: {0}")]
    Signing(String),
    #[error("integrity check failed: {0}")]
    Corrupt(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl TlogError {
    /// Whether a retry (perhaps elsewhere) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NotActive(_) | Self::Overloaded(_) | Self::ShuttingDown | Self::Refused(_) => {
                true
            }
            Self::Store(e) => e.is_transient(),
            _ => false,
        }
    }

    /// A copy for each waiter of a failed batch (the error types inside are not Clone).
    pub(crate) fn clone_for_reply(&self) -> Self {
        match self {
            Self::Store(StoreError::Unavailable(m)) => {
                Self::Store(StoreError::Unavailable(m.clone()))
            }
            Self::Store(StoreError::LeaseLost(_) | StoreError::SizeMismatch { .. }) => {
                Self::NotActive(String::from("(lease lost during the batch)"))
            }
            other => Self::Internal(format!("batch not committed: {other}")),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownTree(_) | Self::NotCreated(_) => 404,
            Self::TreeExists(_) => 409,
            Self::Frozen(_) => 403,
            Self::TooLarge { .. } => 413,
            Self::BadRequest(_) => 400,
            Self::NotActive(_) | Self::Overloaded(_) | Self::ShuttingDown | Self::Refused(_) => 503,
            Self::Store(e) if e.is_transient() => 503,
            _ => 500,
        }
    }
}

impl From<reader::ReadError> for TlogError {
    fn from(e: reader::ReadError) -> Self {
        match e {
            reader::ReadError::Store(s) => Self::Store(s),
            reader::ReadError::Invalid(m) => Self::BadRequest(m),
            reader::ReadError::MissingTile(m) => Self::Corrupt(m),
        }
    }
}

/// One configured tree.
pub struct TreeSpec {
    /// Short name used in URLs (`[a-z0-9-]`).
    pub name: String,
    /// Checkpoint origin line (Rekor: `<hostname> - <tree id>`).
    pub origin: String,
    /// Name on the checkpoint's signature line (Rekor: the hostname of its base URL).
    pub note_name: String,
    /// The tree's checkpoint key.
    pub signer: Arc<dyn Signer>,
    /// Frozen: no sequencer, no new entries; reads (checkpoint, tiles, proofs, entries) only.
    pub frozen: bool,
}

/// Where a tree is on its way to read-only. A tree frozen by a reload passes through `Freezing`
/// while its sequencer commits what it holds; only once that is done is its size final, and only
/// then does the tree say it is frozen (a Rekor shard's offset is taken from that size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeState {
    Open,
    Freezing,
    Frozen,
}

/// Why a tree's sequencer is asked to stop: what the appends still queued are answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The service shuts down: retry (elsewhere, or once it is back).
    Shutdown,
    /// The tree is being frozen: it will not take them (a personality moves to its next tree).
    Freeze,
}

/// What a reload did: one line per tree it added or froze, and the freezes it began but could
/// not finish (the tree takes no entries, but its final size could not be read; a reload with
/// the same config finishes them).
#[derive(Debug, Default)]
pub struct Reloaded {
    pub changes: Vec<String>,
    pub unfinished: Vec<TlogError>,
}

/// Service-wide options.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub sequencer: SequencerOptions,
    /// Largest entry accepted, in bytes (tlog-tiles entry bundles cap it at 65535).
    pub max_entry_size: usize,
    /// Identifies this instance in leases (host, pid and a random suffix by default).
    pub instance: String,
    /// Where the rollback guard keeps its record of the heads this instance committed
    /// ([`guard`]); `None` turns the guard off.
    pub state_dir: Option<std::path::PathBuf>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            sequencer: SequencerOptions::default(),
            max_entry_size: 65_535,
            instance: default_instance_id(),
            state_dir: None,
        }
    }
}

/// `hostname:pid:random`, unique per process.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let mut r = [0u8; 4];
    let _ = getrandom::getrandom(&mut r);
    format!("{host}:{}:{}", std::process::id(), hex::encode(r))
}

/// A tree as the service holds it.
pub struct Tree {
    spec: TreeSpec,
    state: watch::Sender<TreeState>,
    /// Tells the tree's sequencer to stop, and why.
    stop: watch::Sender<Option<Stop>>,
    /// True while a sequencer task runs for the tree.
    sequencing: watch::Sender<bool>,
    /// Database id once the tree exists.
    id: watch::Sender<Option<u64>>,
    tx: mpsc::Sender<sequencer::AppendReq>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<sequencer::AppendReq>>>,
    active: watch::Sender<bool>,
    /// Until when the sequencer's lease is sure to be its own (published by the sequencer).
    lease_until: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    head: watch::Sender<Option<Arc<Head>>>,
    cache: Arc<reader::TileCache>,
    metrics: Arc<sequencer::SeqMetrics>,
    /// Why the rollback guard refuses this tree, if it does.
    refused: watch::Sender<Option<String>>,
}

impl Tree {
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    /// Is the tree frozen (read-only, its size final)?
    pub fn is_frozen(&self) -> bool {
        *self.state.borrow() == TreeState::Frozen
    }
    /// Open, being frozen, or frozen.
    pub fn state(&self) -> TreeState {
        *self.state.borrow()
    }
    /// Is this instance the tree's active sequencer right now? Not once its lease has run out,
    /// even while the sequencer has not noticed yet (it is waiting on a slow commit): another
    /// instance may have taken over, and this one's head may be behind.
    pub fn is_active(&self) -> bool {
        *self.active.borrow()
            && self
                .lease_until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| std::time::Instant::now() < t)
    }
    /// The tree's database id, if created.
    pub fn db_id(&self) -> Option<u64> {
        *self.id.borrow()
    }
    /// The public key that verifies this tree's checkpoints (DER SPKI).
    pub fn public_key(&self) -> &[u8] {
        self.spec.signer.public_key_der()
    }
    pub fn note_name(&self) -> &str {
        &self.spec.note_name
    }
    pub fn origin(&self) -> &str {
        &self.spec.origin
    }
    /// Appends waiting in this tree's queue.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
    /// Sequencer metrics.
    pub fn metrics(&self) -> &sequencer::SeqMetrics {
        &self.metrics
    }
    /// Why the tree's checkpoint key's HSM keeps failing, while it does.
    pub fn hsm_failing(&self) -> Option<String> {
        self.spec.signer.failing()
    }
    /// Why this instance refuses to sequence the tree (the rollback guard), if it does.
    pub fn refusal(&self) -> Option<String> {
        self.refused.borrow().clone()
    }
    /// The latest head this instance knows without asking the database.
    pub fn cached_head(&self) -> Option<Arc<Head>> {
        self.head.borrow().clone()
    }
}

/// The log service: its trees, its store, its sequencers; on MariaDB ([`Store`]) unless the
/// tests give it another [`LogStorage`].
pub struct LogService<S: LogStorage = Store> {
    store: S,
    /// The configured trees; a reload ([`LogService::reload`]) adds trees and freezes them, never
    /// removes one or changes its key or origin.
    trees: std::sync::RwLock<HashMap<String, Arc<Tree>>>,
    /// Serialises reloads (two SIGHUPs in a row apply one after the other).
    reloading: tokio::sync::Mutex<()>,
    opts: ServiceOptions,
    shutdown: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The rollback guard's records (`None`: guard off).
    witness: Option<Arc<guard::Witness>>,
    /// The tasks that keep those records, stopped after the sequencers.
    witness_tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Tree names: short, URL-safe, stable.
pub fn valid_tree_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl<S: LogStorage> LogService<S> {
    /// Set up the service for `trees`; checks existing trees against their configured keys and
    /// origins (refusing to start on a mismatch) and starts one sequencer per tree.
    pub async fn start(
        store: S,
        trees: Vec<TreeSpec>,
        opts: ServiceOptions,
    ) -> Result<Arc<Self>, TlogError> {
        let witness = match &opts.state_dir {
            Some(dir) => Some(Arc::new(
                guard::Witness::open(dir).map_err(TlogError::Internal)?,
            )),
            None => None,
        };
        let mut map = HashMap::new();
        for spec in trees {
            let tree = Self::new_tree(&store, &opts, spec).await?;
            if map.insert(tree.spec.name.clone(), Arc::new(tree)).is_some() {
                return Err(TlogError::BadRequest(
                    "a tree name is configured twice".into(),
                ));
            }
        }
        let svc = Arc::new(Self {
            store,
            trees: std::sync::RwLock::new(map),
            reloading: tokio::sync::Mutex::new(()),
            opts,
            shutdown: watch::Sender::new(false),
            tasks: std::sync::Mutex::new(Vec::new()),
            witness,
            witness_tasks: std::sync::Mutex::new(Vec::new()),
        });
        for tree in svc.all_trees() {
            if tree.db_id().is_some() {
                svc.spawn_sequencer(&tree);
            }
            if tree.is_frozen() {
                tracing::info!(tree = %tree.spec.name, "tree is frozen: reads only");
            }
        }
        Ok(svc)
    }

    /// A tree for `spec`, checked against the database's row of that name if there is one.
    async fn new_tree(store: &S, opts: &ServiceOptions, spec: TreeSpec) -> Result<Tree, TlogError> {
        if !valid_tree_name(&spec.name) {
            return Err(TlogError::BadRequest(format!(
                "tree name '{}' must be 1-64 characters of a-z, 0-9 and '-'",
                spec.name
            )));
        }
        let row = store.tree(&spec.name).await?;
        if let Some(row) = &row {
            check_row(&spec, row)?;
        } else if spec.frozen {
            return Err(TlogError::BadRequest(format!(
                "tree '{}' is configured frozen but the database has no such tree",
                spec.name
            )));
        }
        let (tx, rx) = mpsc::channel(opts.sequencer.queue_limit);
        Ok(Tree {
            id: watch::Sender::new(row.as_ref().map(|r| r.id)),
            head: watch::Sender::new(row.map(|r| {
                Arc::new(Head {
                    size: r.size,
                    root: r.root,
                    checkpoint: r.checkpoint,
                })
            })),
            state: watch::Sender::new(if spec.frozen {
                TreeState::Frozen
            } else {
                TreeState::Open
            }),
            stop: watch::Sender::new(None),
            sequencing: watch::Sender::new(false),
            spec,
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            active: watch::Sender::new(false),
            lease_until: Arc::default(),
            cache: Arc::new(reader::TileCache::default()),
            metrics: Arc::default(),
            refused: watch::Sender::new(None),
        })
    }

    /// Move to the trees of a config read again (`systemctl reload`): add the trees it lists
    /// that are new, and freeze those it marks `frozen = true` that are open. Nothing else may
    /// change: a tree that is gone, or whose key, origin or name on its checkpoints differs, or
    /// a frozen tree no longer frozen, refuses the whole reload and leaves every tree as it was
    /// (restart for those; a tree's key and origin never change). A tree being frozen first
    /// stops taking appends (403), then commits the batches it holds (their appends are
    /// answered as usual), and only then reports itself frozen, at its final size. An `Err` is
    /// a refusal, and nothing changed; every check comes before the first change.
    pub async fn reload(&self, specs: Vec<TreeSpec>) -> Result<Reloaded, TlogError> {
        let _one_at_a_time = self.reloading.lock().await;
        if *self.shutdown.borrow() {
            return Err(TlogError::ShuttingDown);
        }
        let current = self.all_trees();
        let mut seen = std::collections::HashSet::new();
        let mut added = Vec::new();
        let mut to_freeze = Vec::new();
        for spec in specs {
            if !seen.insert(spec.name.clone()) {
                return Err(TlogError::BadRequest(format!(
                    "tree '{}' is configured twice",
                    spec.name
                )));
            }
            match current.iter().find(|t| t.spec.name == spec.name) {
                Some(t) => {
                    let same = t.spec.origin == spec.origin
                        && t.spec.note_name == spec.note_name
                        && t.spec.signer.public_key_der() == spec.signer.public_key_der();
                    if !same {
                        return Err(TlogError::BadRequest(format!(
                            "tree '{}': its key, origin or note name differs from the running one; \
                             a tree's identity never changes (a new key is a new tree)",
                            spec.name
                        )));
                    }
                    match (t.state(), spec.frozen) {
                        (TreeState::Open | TreeState::Freezing, true) => {
                            if t.db_id().is_none() {
                                return Err(TlogError::BadRequest(format!(
                                    "tree '{}' is configured frozen but was never created",
                                    spec.name
                                )));
                            }
                            to_freeze.push(Arc::clone(t));
                        }
                        (TreeState::Freezing | TreeState::Frozen, false) => {
                            return Err(TlogError::BadRequest(format!(
                                "tree '{}' is frozen and stays frozen (a frozen tree's size is \
                                 final: a Rekor shard's offset depends on it)",
                                spec.name
                            )));
                        }
                        _ => {}
                    }
                }
                None => added.push(Self::new_tree(&self.store, &self.opts, spec).await?),
            }
        }
        if let Some(gone) = current.iter().find(|t| !seen.contains(&t.spec.name)) {
            return Err(TlogError::BadRequest(format!(
                "tree '{}' is no longer configured: a tree is never dropped by a reload (mark it \
                 `frozen = true`, or restart to stop serving it)",
                gone.spec.name
            )));
        }
        let mut changes = Vec::new();
        for tree in added {
            let tree = Arc::new(tree);
            self.trees
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(tree.spec.name.clone(), Arc::clone(&tree));
            if tree.db_id().is_some() {
                self.spawn_sequencer(&tree);
            }
            changes.push(format!(
                "tree '{}' added{}",
                tree.spec.name,
                if tree.is_frozen() { " (frozen)" } else { "" }
            ));
        }
        let mut unfinished = Vec::new();
        for tree in to_freeze {
            match self.freeze(&tree).await {
                Ok(size) => {
                    changes.push(format!("tree '{}' frozen at size {size}", tree.spec.name))
                }
                Err(e) => unfinished.push(e),
            }
        }
        Ok(Reloaded {
            changes,
            unfinished,
        })
    }

    /// Freeze an open tree: refuse appends from now on, let its sequencer commit what it holds
    /// and stop, then mark it frozen. Returns the final size, read from the database.
    async fn freeze(&self, tree: &Arc<Tree>) -> Result<u64, TlogError> {
        let _ = tree.state.send_replace(TreeState::Freezing);
        let _ = tree.stop.send_replace(Some(Stop::Freeze));
        let mut sequencing = tree.sequencing.subscribe();
        let _ = sequencing.wait_for(|running| !running).await;
        let _ = tree.active.send_replace(false);
        // The final size is the database's. A storage error here leaves the tree refusing
        // entries but not yet reporting itself frozen (a Rekor reload keeps waiting); a later
        // reload with the same config finishes the freeze.
        let mut tries = 0;
        let row = loop {
            match self.store.tree(&tree.spec.name).await {
                Ok(Some(row)) => break row,
                Ok(None) => return Err(TlogError::NotCreated(tree.spec.name.clone())),
                Err(e) if e.is_transient() && tries < 30 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return Err(TlogError::Internal(format!(
                        "tree '{}' takes no more entries, but its final size cannot be read ({e}); \
                         reload again to finish freezing it",
                        tree.spec.name
                    )));
                }
            }
        };
        let _ = tree.head.send_replace(Some(Arc::new(Head {
            size: row.size,
            root: row.root,
            checkpoint: row.checkpoint,
        })));
        let _ = tree.state.send_replace(TreeState::Frozen);
        tracing::info!(tree = %tree.spec.name, size = row.size, "tree frozen: reads only from now on");
        Ok(row.size)
    }

    /// Every configured tree, at this moment.
    fn all_trees(&self) -> Vec<Arc<Tree>> {
        self.trees
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn spawn_sequencer(&self, tree: &Arc<Tree>) {
        if tree.state() != TreeState::Open || *self.shutdown.borrow() {
            return;
        }
        let Some(tree_id) = tree.db_id() else { return };
        let Some(rx) = tree.rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let ident = Arc::new(sequencer::TreeIdentity {
            tree_id,
            name: tree.spec.name.clone(),
            origin: tree.spec.origin.clone(),
            note_name: tree.spec.note_name.clone(),
            signer: Arc::clone(&tree.spec.signer),
        });
        let runner = sequencer::Runner {
            store: self.store.clone(),
            cache: Arc::clone(&tree.cache),
            id: ident,
            holder: self.opts.instance.clone(),
            opts: self.opts.sequencer.clone(),
            active: tree.active.clone(),
            lease_until: Arc::clone(&tree.lease_until),
            head_tx: tree.head.clone(),
            metrics: Arc::clone(&tree.metrics),
            witness: self.witness.clone(),
            refused: tree.refused.clone(),
        };
        if let Some(w) = &self.witness {
            let task = tokio::spawn(guard::follow(
                Arc::clone(w),
                tree.spec.name.clone(),
                tree.head.subscribe(),
            ));
            self.witness_tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(task);
        }
        let _ = tree.sequencing.send_replace(true);
        let stop = tree.stop.subscribe();
        let sequencing = tree.sequencing.clone();
        let handle = tokio::spawn(async move {
            sequencer::run(runner, rx, stop).await;
            let _ = sequencing.send_replace(false);
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    fn stop_witness_tasks(&self) {
        for t in std::mem::take(&mut *self.witness_tasks.lock().unwrap_or_else(|p| p.into_inner()))
        {
            t.abort();
        }
    }

    /// Stop sequencing: refuse new appends, finish nothing more, release leases.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send_replace(true);
        for t in self.all_trees() {
            t.stop.send_if_modified(|s| {
                let first = s.is_none();
                if first {
                    *s = Some(Stop::Shutdown);
                }
                first
            });
        }
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        self.stop_witness_tasks();
    }

    /// Stop every sequencer at once, without releasing leases: what a crash looks like to the
    /// other instances (used on fatal errors, and by the takeover tests).
    pub fn abort(&self) {
        for t in std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner())) {
            t.abort();
        }
        self.stop_witness_tasks();
        for t in self.all_trees() {
            let _ = t.active.send_replace(false);
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn options(&self) -> &ServiceOptions {
        &self.opts
    }

    /// Names of the configured trees.
    pub fn tree_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .trees
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// A configured tree.
    pub fn tree(&self, name: &str) -> Result<Arc<Tree>, TlogError> {
        self.trees
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| TlogError::UnknownTree(name.into()))
    }

    fn created(&self, name: &str) -> Result<(Arc<Tree>, u64), TlogError> {
        let t = self.tree(name)?;
        let id = t
            .db_id()
            .ok_or_else(|| TlogError::NotCreated(name.into()))?;
        Ok((t, id))
    }

    /// Create the tree once: its sentinel entry at index 0, first tile and checkpoint.
    pub async fn create_tree(&self, name: &str) -> Result<Arc<Head>, TlogError> {
        let tree = self.tree(name)?;
        if tree.state() != TreeState::Open {
            // A frozen tree exists (the service would not start otherwise): answer as for any
            // existing tree, so a personality that creates its tree at start goes on.
            return Err(TlogError::TreeExists(name.into()));
        }
        if let Some(row) = self.store.tree(name).await? {
            check_row(&tree.spec, &row)?;
            let _ = tree.id.send_replace(Some(row.id));
            self.spawn_sequencer(&tree);
            return Err(TlogError::TreeExists(name.into()));
        }
        // A tree this instance has committed to before is missing from the database: creating it
        // again would sign a second, different tree under the same origin.
        if let Some(w) = &self.witness {
            if let Some(seen) = w.read(name).map_err(TlogError::Refused)? {
                return Err(TlogError::Refused(format!(
                    "refusing to create tree '{name}': this instance signed checkpoints of it up to size {}, \
                     but the database has no such tree. Was the database restored from an older backup, \
                     or is this the wrong database? See README, \"Backups and recovery\"",
                    seen.size
                )));
            }
        }
        let data = format!("sigvault tree sentinel: {}", tree.spec.origin).into_bytes();
        let leaf = merkle::leaf_hash(&data);
        let ident = sequencer::TreeIdentity {
            tree_id: 0,
            name: tree.spec.name.clone(),
            origin: tree.spec.origin.clone(),
            note_name: tree.spec.note_name.clone(),
            signer: Arc::clone(&tree.spec.signer),
        };
        let head = sequencer::sign_head(&ident, 1, leaf)?;
        let res = self
            .store
            .create_tree(
                name,
                &tree.spec.origin,
                tree.spec.signer.public_key_der(),
                &NewEntry {
                    index: 0,
                    leaf_hash: leaf,
                    identity_hash: leaf,
                    data,
                    extra: None,
                },
                &TileWrite {
                    level: 0,
                    index: 0,
                    hashes: leaf.to_vec(),
                },
                &NewHead {
                    size: 1,
                    root: leaf,
                    checkpoint: &head.checkpoint,
                },
            )
            .await;
        let row = match res {
            Ok(row) => row,
            Err(StoreError::TreeExists(n)) => {
                // Another instance created it first: adopt theirs.
                if let Some(row) = self.store.tree(name).await? {
                    let _ = tree.id.send_replace(Some(row.id));
                    self.spawn_sequencer(&tree);
                }
                return Err(TlogError::TreeExists(n));
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(tree = name, id = row.id, "created tree");
        let head = Arc::new(head);
        let _ = tree.head.send_replace(Some(Arc::clone(&head)));
        let _ = tree.id.send_replace(Some(row.id));
        self.spawn_sequencer(&tree);
        Ok(head)
    }

    /// Append an entry; resolves once it is durable and integrated.
    pub async fn append(
        &self,
        name: &str,
        data: Vec<u8>,
        identity: Option<Hash>,
    ) -> Result<Appended, TlogError> {
        self.append_with_extra(name, data, identity, None).await
    }

    /// Append an entry with extra data stored beside it (not hashed into the tree).
    pub async fn append_with_extra(
        &self,
        name: &str,
        data: Vec<u8>,
        identity: Option<Hash>,
        extra: Option<Vec<u8>>,
    ) -> Result<Appended, TlogError> {
        let (tree, _) = self.created(name)?;
        if data.len() > self.opts.max_entry_size {
            return Err(TlogError::TooLarge {
                size: data.len(),
                max: self.opts.max_entry_size,
            });
        }
        if data.is_empty() {
            return Err(TlogError::BadRequest("an entry must not be empty".into()));
        }
        if let Some(x) = &extra {
            if x.len() > MAX_EXTRA_SIZE {
                return Err(TlogError::TooLarge {
                    size: x.len(),
                    max: MAX_EXTRA_SIZE,
                });
            }
        }
        if tree.state() != TreeState::Open {
            return Err(TlogError::Frozen(name.into()));
        }
        if !tree.is_active() {
            return Err(TlogError::NotActive(name.into()));
        }
        let (reply, rx) = oneshot::channel();
        tree.tx
            .try_send(sequencer::AppendReq {
                data,
                identity,
                extra,
                reply,
                queued: std::time::Instant::now(),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => TlogError::Overloaded(name.into()),
                // Closed by a freeze that began after the check above: not taken, not logged.
                mpsc::error::TrySendError::Closed(_) if tree.state() != TreeState::Open => {
                    TlogError::Frozen(name.into())
                }
                mpsc::error::TrySendError::Closed(_) => TlogError::ShuttingDown,
            })?;
        rx.await.map_err(|_| TlogError::ShuttingDown)?
    }

    /// The latest head: from the sequencer if active, else from the database.
    pub async fn head(&self, name: &str) -> Result<Arc<Head>, TlogError> {
        let (tree, _) = self.created(name)?;
        if tree.is_active() {
            if let Some(h) = tree.head.borrow().clone() {
                return Ok(h);
            }
        }
        let row = self
            .store
            .tree(name)
            .await?
            .ok_or_else(|| TlogError::NotCreated(name.into()))?;
        Ok(Arc::new(Head {
            size: row.size,
            root: row.root,
            checkpoint: row.checkpoint,
        }))
    }

    fn check_size(head: &Head, size: u64) -> Result<(), TlogError> {
        if size > head.size {
            return Err(TlogError::BadRequest(format!(
                "tree size {size} is beyond the current size {}",
                head.size
            )));
        }
        Ok(())
    }

    /// Inclusion proof of `index` at tree `size`.
    pub async fn inclusion_proof(
        &self,
        name: &str,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, TlogError> {
        let (tree, id) = self.created(name)?;
        Self::check_size(&*self.head(name).await?, size)?;
        if index >= size {
            return Err(TlogError::BadRequest(format!(
                "index {index} is not below tree size {size}"
            )));
        }
        Ok(reader::inclusion_proof(&self.store, &tree.cache, id, index, size).await?)
    }

    /// Index of the first entry with `leaf_hash` (it must be below `size`).
    pub async fn index_of_leaf(&self, name: &str, leaf: &Hash) -> Result<Option<u64>, TlogError> {
        let (_, id) = self.created(name)?;
        Ok(self.store.index_of_leaf(id, leaf).await?)
    }

    /// Consistency proof between `first` and `second`.
    pub async fn consistency_proof(
        &self,
        name: &str,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, TlogError> {
        let (tree, id) = self.created(name)?;
        Self::check_size(&*self.head(name).await?, second)?;
        if first > second {
            return Err(TlogError::BadRequest(format!(
                "first size {first} is larger than second size {second}"
            )));
        }
        Ok(reader::consistency_proof(&self.store, &tree.cache, id, first, second).await?)
    }

    /// Root hash of the tree at `size` (at most the current size).
    pub async fn root_at(&self, name: &str, size: u64) -> Result<Hash, TlogError> {
        let (tree, id) = self.created(name)?;
        let head = self.head(name).await?;
        Self::check_size(&head, size)?;
        if size == head.size {
            return Ok(head.root);
        }
        Ok(reader::root_at(&self.store, &tree.cache, id, size).await?)
    }

    /// Entries `[start, end)` (at most `limit`), only from the integrated tree.
    pub async fn entries(
        &self,
        name: &str,
        start: u64,
        end: u64,
        limit: u64,
    ) -> Result<Vec<storage::StoredEntry>, TlogError> {
        let (_, id) = self.created(name)?;
        let head = self.head(name).await?;
        if start >= end {
            return Err(TlogError::BadRequest(format!(
                "start {start} must be below end {end}"
            )));
        }
        if start >= head.size {
            return Err(TlogError::BadRequest(format!(
                "start {start} is beyond the tree size {}",
                head.size
            )));
        }
        let end = end.min(head.size).min(start.saturating_add(limit));
        Ok(self.store.entries(id, start, end).await?)
    }

    /// Hash tile content for the public tiles API, at the width the path names.
    pub async fn tile(
        &self,
        name: &str,
        level: u8,
        index: u64,
        width: u16,
    ) -> Result<Option<Vec<u8>>, TlogError> {
        let (_, id) = self.created(name)?;
        let head = self.head(name).await?;
        let Some(expect) = crate::merkle::tiles::tile_for_size(level, index, head.size) else {
            return Ok(None);
        };
        // Any width up to today's is servable: a narrower tile is a prefix of the stored one,
        // which is what a client holding an older checkpoint asks for.
        if width == 0 || width > expect.width() {
            return Ok(None);
        }
        let rows = self.store.tiles(id, &[(level, index)]).await?;
        Ok(rows.get(&(level, index)).and_then(|d| {
            let n = usize::from(width) * 32;
            (d.len() >= n).then(|| d[..n].to_vec())
        }))
    }
}

fn check_row(spec: &TreeSpec, row: &storage::TreeRow) -> Result<(), TlogError> {
    if row.key_spki != spec.signer.public_key_der() {
        return Err(TlogError::Corrupt(format!(
            "tree '{}' was created with a different checkpoint key than the configured one; refusing to sign for it",
            spec.name
        )));
    }
    if row.origin != spec.origin {
        return Err(TlogError::Corrupt(format!(
            "tree '{}' has origin '{}' in the database but '{}' in the config",
            spec.name, row.origin, spec.origin
        )));
    }
    Ok(())
}
