//! Proofs and tree reads from the stored tiles, for any tree size up to the integrated one.
//!
//! Full tiles never change, so they are cached in memory; a partial tile is read from the
//! database each time (its stored version may be wider than the size asked about, and a narrower
//! version is always a prefix of it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::merkle::tiles::{
    TILE_WIDTH, TileId, TileKind, hash_in_tile, node_location, tile_for_size,
};
use crate::merkle::{self, Hash, NodeId, NodeSource, ProofNodes};
use crate::store::{Store, StoreError};

/// Cap on cached full tiles (8 KiB each): 32 MiB.
const MAX_CACHED_TILES: usize = 4096;

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
type TileMap = HashMap<(u8, u64), Arc<Vec<Hash>>>;

/// Cache of full (immutable) hash tiles of one tree.
#[derive(Default)]
pub struct TileCache {
    full: Mutex<TileMap>,
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
            // Crude but bounded: proofs touch the newest tiles most, and those refill quickly.
            m.clear();
        }
        m.insert(key, hashes);
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
        match cache.get(key) {
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
