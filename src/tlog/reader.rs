//! Proofs and tree reads from the stored tiles, for any tree size up to the integrated one.
//!
//! Full tiles never change, so they are cached in memory. The active sequencer also publishes
//! the partial tiles of the right edge after each commit, so proofs at (or below) the newest size
//! need no database read at all; other partial tiles are read from the database (the stored
//! version may be wider than the size asked about, and a narrower version is always a prefix of
//! it, since the nodes a tile holds are complete subtrees that never change).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::merkle::tiles::{
    TILE_WIDTH, TileId, TileKind, hash_in_tile, node_location, tile_for_size,
};
use crate::merkle::{self, Hash, NodeId, NodeSource, ProofNodes};
use crate::store::{Store, StoreError};

/// Cap on cached full tiles (8 KiB each): 128 MiB, every tile of a tree of 4 million entries.
const MAX_CACHED_TILES: usize = 16_384;

/// Errors reading the tree.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("tile {0} is missing or too short in the database")]
    MissingTile(String),
}

/// Tiles by (tile level, tile index).
pub type TileMap = HashMap<(u8, u64), Arc<Vec<Hash>>>;

/// Cache of full (immutable) hash tiles of one tree, and of its right edge's partial tiles.
#[derive(Default)]
pub struct TileCache {
    full: Mutex<TileMap>,
    /// Partial tiles of the newest committed tree (published by the active sequencer).
    edge: Mutex<Option<Arc<TileMap>>>,
}

impl TileCache {
    fn get(&self, key: (u8, u64)) -> Option<Arc<Vec<Hash>>> {
        self.full
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
    }

    /// Remember a full tile (ignores partial ones).
    pub fn put(&self, key: (u8, u64), hashes: Arc<Vec<Hash>>) {
        if hashes.len() != usize::from(TILE_WIDTH) {
            return;
        }
        let mut m = self.full.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_CACHED_TILES {
            // Bounded: drop an arbitrary eighth of the level-0 tiles (one per 256 entries, the
            // bulk of the cache and the cheapest to refill; higher levels are few and hot).
            let drop: Vec<(u8, u64)> = m
                .keys()
                .filter(|k| k.0 == 0)
                .take(MAX_CACHED_TILES / 8)
                .copied()
                .collect();
            if drop.is_empty() {
                m.clear();
            }
            for k in drop {
                m.remove(&k);
            }
        }
        m.insert(key, hashes);
    }

    /// Publish the partial tiles of a committed tree's right edge (replacing the previous ones).
    pub fn publish_edge(&self, partial: TileMap) {
        *self.edge.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(partial));
    }

    /// A published edge tile holding at least `width` hashes. Wider is fine: its first `width`
    /// hashes are the tile as of the smaller size.
    fn edge_tile(&self, key: (u8, u64), width: u16) -> Option<Arc<Vec<Hash>>> {
        let edge = self
            .edge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        edge.get(&key)
            .filter(|t| t.len() >= usize::from(width))
            .cloned()
    }
}

/// A [`NodeSource`] over tiles already fetched for a tree of `size`.
pub struct FetchedTiles {
    size: u64,
    tiles: TileMap,
}

/// A node could not be found in the fetched tiles.
#[derive(Debug, thiserror::Error)]
#[error("node {0} is not available in the fetched tiles")]
pub struct NodeUnavailable(pub NodeId);

impl NodeSource for FetchedTiles {
    type Error = NodeUnavailable;
    fn node(&self, level: u8, index: u64) -> Result<Hash, NodeUnavailable> {
        let id = NodeId::new(level, index);
        let loc = node_location(id);
        tile_for_size(loc.tile_level, loc.tile_index, self.size)
            .filter(|t| t.width() >= loc.min_width())
            .and_then(|_| self.tiles.get(&(loc.tile_level, loc.tile_index)))
            .and_then(|t| hash_in_tile(t, &loc))
            .ok_or(NodeUnavailable(id))
    }
}

/// The tiles (as of a tree of `size`) that hold the given complete nodes.
pub fn tiles_for_nodes(ids: &[NodeId], size: u64) -> Vec<TileId> {
    let mut out: Vec<TileId> = Vec::new();
    for id in ids {
        let loc = node_location(*id);
        if let Some(t) = tile_for_size(loc.tile_level, loc.tile_index, size) {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// Fetch `tiles` (each at the width it has in a tree of `size`), from cache or database.
pub async fn fetch_tiles(
    store: &Store,
    cache: &TileCache,
    tree: u64,
    size: u64,
    tiles: &[TileId],
) -> Result<FetchedTiles, ReadError> {
    let mut got = HashMap::new();
    let mut want = Vec::new();
    for t in tiles {
        let TileKind::Hashes { level } = t.kind() else {
            continue;
        };
        let key = (level, t.index());
        let cached = if t.width() == TILE_WIDTH {
            cache.get(key)
        } else {
            // A full tile holds every partial version of itself as a prefix.
            cache.edge_tile(key, t.width()).or_else(|| cache.get(key))
        };
        match cached {
            Some(h) => {
                got.insert(key, h);
            }
            None => want.push((key, t.width())),
        }
    }
    if !want.is_empty() {
        let keys: Vec<(u8, u64)> = want.iter().map(|(k, _)| *k).collect();
        let rows = store.tiles(tree, &keys).await?;
        for (key, width) in want {
            let data = rows
                .get(&key)
                .ok_or_else(|| ReadError::MissingTile(format!("{}/{}", key.0, key.1)))?;
            let need = usize::from(width) * 32;
            if data.len() < need {
                return Err(ReadError::MissingTile(format!("{}/{}", key.0, key.1)));
            }
            let hashes = Arc::new(
                merkle::tiles::decode_tile(&data[..need], width)
                    .map_err(|e| ReadError::MissingTile(e.to_string()))?,
            );
            cache.put(key, Arc::clone(&hashes));
            got.insert(key, hashes);
        }
    }
    Ok(FetchedTiles { size, tiles: got })
}

async fn prove(
    store: &Store,
    cache: &TileCache,
    tree: u64,
    size: u64,
    nodes: ProofNodes,
) -> Result<Vec<Hash>, ReadError> {
    // Served from memory, a proof never waits on anything: count it against the task's budget
    // so that callers proving in a loop still let the runtime's other tasks (timers) run.
    tokio::task::coop::consume_budget().await;
    let tiles = tiles_for_nodes(nodes.ids(), size);
    let src = fetch_tiles(store, cache, tree, size, &tiles).await?;
    let hashes = src
        .nodes(nodes.ids())
        .map_err(|e| ReadError::MissingTile(e.to_string()))?;
    nodes
        .rehash(hashes)
        .map_err(|e| ReadError::Invalid(e.to_string()))
}

/// Inclusion proof of leaf `index` in the tree of `size` (which must be integrated).
pub async fn inclusion_proof(
    store: &Store,
    cache: &TileCache,
    tree: u64,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ReadError> {
    let nodes =
        merkle::inclusion_nodes(index, size).map_err(|e| ReadError::Invalid(e.to_string()))?;
    prove(store, cache, tree, size, nodes).await
}

/// Consistency proof between tree sizes `first` and `second` (both integrated).
pub async fn consistency_proof(
    store: &Store,
    cache: &TileCache,
    tree: u64,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ReadError> {
    let nodes =
        merkle::consistency_nodes(first, second).map_err(|e| ReadError::Invalid(e.to_string()))?;
    prove(store, cache, tree, second, nodes).await
}

/// Root hash of the tree at `size`, computed from the stored tiles.
pub async fn root_at(
    store: &Store,
    cache: &TileCache,
    tree: u64,
    size: u64,
) -> Result<Hash, ReadError> {
    if size == 0 {
        return Ok(merkle::empty_root());
    }
    let ids = merkle::CompactRange::node_ids(size);
    let tiles = tiles_for_nodes(&ids, size);
    let src = fetch_tiles(store, cache, tree, size, &tiles).await?;
    let compact = merkle::CompactRange::from_source(&src, size)
        .map_err(|e| ReadError::MissingTile(e.to_string()))?;
    Ok(compact.root())
}
