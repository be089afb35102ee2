//! The search index follower: reads the log from the index's mark onward and files each entry
//! under the keys stored with it (tlog extra data), moving the mark in the same transaction.
//!
//! Because the keys travel with the entry, the index can always be rebuilt from the log: a crash
//! after an append and before its index rows leaves the mark behind that entry, and the next
//! pass (at start or on the next upload) indexes it. Searches first wait until the index has
//! caught up with the log head they observed, so a client finds what it has just uploaded.
//!
//! Each shard has its own follower (its mark is kept per tree ID, in the shard's own indexes);
//! the rows carry global log indexes (the shard's offset added), so one lookup covers every
//! shard and each row's shard is told by its index.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::sync::{Notify, watch};

use super::{EntryExtra, RekorError};
use crate::store::rekor::{IndexStore, IndexedEntry};
use crate::tlog::api::TlogClient;

/// Most results of one search.
pub const MAX_RESULTS: u32 = 10_000;

/// A running indexer.
#[derive(Clone)]
pub struct IndexerHandle {
    notify: Arc<Notify>,
    indexed: watch::Receiver<u64>,
    store: IndexStore,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl IndexerHandle {
    /// Start following `tree` of `tlog` (the shard with tree ID `tree_id`, whose index 0 is
    /// global index `offset`) into `store`.
    pub fn spawn(
        store: IndexStore,
        tlog: TlogClient,
        tree: String,
        tree_id: u64,
        offset: u64,
    ) -> Self {
        let notify = Arc::new(Notify::new());
        let (tx, rx) = watch::channel(0u64);
        let n = notify.clone();
        let s = store.clone();
        let task = tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match pass(&s, &tlog, &tree, tree_id, offset, &tx).await {
                    Ok(()) => {
                        if failures > 0 {
                            tracing::info!("search index is following the log again");
                        }
                        failures = 0;
                        tokio::select! {
                            _ = n.notified() => {}
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures % 30 == 0 {
                            tracing::warn!(error = %e, "search index cannot follow the log; retrying");
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Self {
            notify,
            indexed: rx,
            store,
            task: Arc::new(task),
        }
    }

    /// Ask for a pass now (after an upload).
    pub fn poke(&self) {
        self.notify.notify_one();
    }

    /// Entries below this index are known to be indexed.
    pub fn indexed(&self) -> u64 {
        *self.indexed.borrow()
    }

    /// Wait until every entry below `size` is indexed (at most `timeout`).
    pub async fn wait_for(&self, size: u64, timeout: Duration) -> Result<(), RekorError> {
        self.poke();
        let mut rx = self.indexed.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|v| *v >= size)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(RekorError::Unavailable(format!(
                "the search index is behind the log (indexed {} of {size} entries); retry shortly",
                self.indexed()
            ))),
        }
    }

    pub fn store(&self) -> &IndexStore {
        &self.store
    }

    /// Stop the follower (tests, shutdown).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// One pass: index everything between the mark and the current head.
async fn pass(
    store: &IndexStore,
    tlog: &TlogClient,
    tree: &str,
    tree_id: u64,
    offset: u64,
    progress: &watch::Sender<u64>,
) -> Result<(), String> {
    let mut next = store.next_index(tree_id).await.map_err(|e| e.to_string())?;
    progress.send_if_modified(|v| {
        let changed = next > *v;
        *v = (*v).max(next);
        changed
    });
    let head = tlog.head(tree).await.map_err(|e| e.to_string())?;
    while next < head.tree_size {
        let resp = tlog
            .entries(tree, next, head.tree_size)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = resp.entries.last().map(|e| e.index) else {
            return Err(format!("the tlog returned no entries from {next}"));
        };
        let mut batch = Vec::with_capacity(resp.entries.len());
        for e in &resp.entries {
            let extra: Option<EntryExtra> = e
                .extra
                .as_deref()
                .and_then(|x| B64.decode(x).ok())
                .and_then(|x| serde_json::from_slice(&x).ok());
            let Some(extra) = extra else { continue }; // the sentinel
            let Ok(data) = B64.decode(&e.data) else {
                return Err(format!("entry {} is not base64", e.index));
            };
            batch.push(IndexedEntry {
                log_index: offset + e.index,
                uuid: crate::merkle::leaf_hash(&data),
                keys: extra.index_keys,
            });
        }
        store
            .apply(tree_id, last + 1, &batch)
            .await
            .map_err(|e| e.to_string())?;
        next = last + 1;
        progress.send_if_modified(|v| {
            let changed = next > *v;
            *v = (*v).max(next);
            changed
        });
    }
    Ok(())
}

/// A search (`POST /api/v1/index/retrieve`), already parsed.
#[derive(Debug, Default)]
pub struct Query {
    /// Each criterion: the keys any of which may match.
    pub criteria: Vec<Vec<String>>,
    /// `and` (every criterion) or `or` (any).
    pub and: bool,
}

/// Run a query over every shard, once each follower has indexed its shard up to the size given
/// with it; returns (global log index, UUID) pairs, oldest first.
pub async fn search(
    followers: &[(&IndexerHandle, u64)],
    q: &Query,
) -> Result<Vec<(u64, [u8; 32])>, RekorError> {
    let Some((first, _)) = followers.first() else {
        return Ok(Vec::new());
    };
    for (ix, size) in followers {
        ix.wait_for(*size, Duration::from_secs(5)).await?;
    }
    let mut result: Option<BTreeSet<(u64, [u8; 32])>> = None;
    for keys in &q.criteria {
        let mut set = BTreeSet::new();
        for k in keys {
            let rows = first
                .store()
                .lookup(k, MAX_RESULTS)
                .await
                .map_err(|e| RekorError::Unavailable(format!("index storage error: {e}")))?;
            set.extend(rows);
        }
        result = Some(match result {
            None => set,
            Some(r) if q.and => r.intersection(&set).copied().collect(),
            Some(r) => r.union(&set).copied().collect(),
        });
    }
    Ok(result
        .unwrap_or_default()
        .into_iter()
        .take(MAX_RESULTS as usize)
        .collect())
}
