//! Proofs and tree reads from the stored tiles, for any tree size up to the integrated one.
//!
//! Full tiles never change, so they are cached in memory. The active sequencer also publishes
//! the partial tiles of the right edge after each commit, so proofs at (or below) the newest size
//! need no database read at all; other partial tiles are read from the database (the stored
//! version may be wider than the size asked about, and a narrower version is always a prefix of
//! it, since the nodes a tile holds are complete subtrees that never change).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::storage::{LogStorage, StoreError};
use crate::merkle::tiles::{
    NodeLocation, TILE_HEIGHT, TILE_WIDTH, TileId, TileKind, node_location, tile_for_size,
};
use crate::merkle::{self, Hash, NodeId, NodeSource, ProofNodes};

/// Cap on cached full tiles: every tile of a tree of 4 million entries. Each holds its 8 KiB row
/// and, once a proof has used it, its inner nodes (under 8 KiB more): at most 256 MiB in all.
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
pub type TileMap = HashMap<(u8, u64), Arc<TileHashes>>;

/// A hash tile held in memory: its stored row of hashes and, built on first use, the complete
/// subtrees above them inside the tile. A proof needs nodes at every height, and a node `k`
/// levels above a tile's row covers `2^k` of its hashes: recomputing those for each proof cost
/// about 500 hashes per proof (most of the tlog's CPU when every append asks for its proof).
pub struct TileHashes {
    row: Vec<Hash>,
    /// `above[k - 1]`: the complete nodes `k` levels above `row` (`row.len() >> k` of them).
    above: OnceLock<Vec<Vec<Hash>>>,
}

impl TileHashes {
    pub fn new(row: Vec<Hash>) -> Self {
        Self {
            row,
            above: OnceLock::new(),
        }
    }

    /// Number of hashes in the stored row (the tile's width).
    pub fn width(&self) -> usize {
        self.row.len()
    }

    /// The node at `loc` (a complete subtree of this tile), if the row is wide enough.
    fn node(&self, loc: &NodeLocation) -> Option<Hash> {
        let start = usize::from(loc.offset);
        let span = usize::from(loc.span);
        if start + span > self.row.len() {
            return None;
        }
        if span == 1 {
            return Some(self.row[start]);
        }
        let k = span.trailing_zeros() as usize;
        let above = self.above.get_or_init(|| {
            let mut levels: Vec<Vec<Hash>> = Vec::with_capacity(usize::from(TILE_HEIGHT));
            let mut below: &[Hash] = &self.row;
            for _ in 0..TILE_HEIGHT {
                let next: Vec<Hash> = below
                    .chunks_exact(2)
                    .map(|p| merkle::node_hash(&p[0], &p[1]))
                    .collect();
                levels.push(next);
                below = levels.last().map_or(&[], Vec::as_slice);
            }
            levels
        });
        above.get(k - 1)?.get(start >> k).copied()
    }
}

/// Cache of full (immutable) hash tiles of one tree, and of its right edge's partial tiles.
#[derive(Default)]
pub struct TileCache {
    full: Mutex<TileMap>,
    /// Partial tiles of the newest committed tree (published by the active sequencer).
    edge: Mutex<Option<Arc<TileMap>>>,
}

impl TileCache {
    fn get(&self, key: (u8, u64)) -> Option<Arc<TileHashes>> {
        self.full
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
    }

    /// Remember a full tile (ignores partial ones).
    pub fn put(&self, key: (u8, u64), hashes: Arc<TileHashes>) {
        if hashes.width() != usize::from(TILE_WIDTH) {
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
    fn edge_tile(&self, key: (u8, u64), width: u16) -> Option<Arc<TileHashes>> {
        let edge = self
            .edge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        edge.get(&key)
            .filter(|t| t.width() >= usize::from(width))
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
            .and_then(|t| t.node(&loc))
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
pub async fn fetch_tiles<S: LogStorage>(
    store: &S,
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
            let hashes = Arc::new(TileHashes::new(
                merkle::tiles::decode_tile(&data[..need], width)
                    .map_err(|e| ReadError::MissingTile(e.to_string()))?,
            ));
            cache.put(key, Arc::clone(&hashes));
            got.insert(key, hashes);
        }
    }
    Ok(FetchedTiles { size, tiles: got })
}

async fn prove<S: LogStorage>(
    store: &S,
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
pub async fn inclusion_proof<S: LogStorage>(
    store: &S,
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
pub async fn consistency_proof<S: LogStorage>(
    store: &S,
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
pub async fn root_at<S: LogStorage>(
    store: &S,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::tiles::hash_in_tile;

    /// Every node a tile holds, from the cached pyramid, equals the node recomputed from the
    /// tile's row; a node the row is too short for is absent.
    #[test]
    fn tile_nodes_match_recomputation_for_full_and_partial_tiles() {
        for width in [1usize, 2, 3, 7, 8, 100, 255, 256] {
            let row: Vec<Hash> = (0..width)
                .map(|i| merkle::leaf_hash(&(i as u64).to_be_bytes()))
                .collect();
            let tile = TileHashes::new(row.clone());
            for sub in 0..u32::from(TILE_HEIGHT) {
                let span = 1u16 << sub;
                for offset in (0..256u16).step_by(usize::from(span)) {
                    let loc = NodeLocation {
                        tile_level: 0,
                        tile_index: 0,
                        offset: offset as u8,
                        span,
                    };
                    assert_eq!(
                        tile.node(&loc),
                        hash_in_tile(&row, &loc),
                        "width {width}, offset {offset}, span {span}"
                    );
                }
            }
        }
    }
}
