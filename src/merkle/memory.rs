//! An in-memory tree that stores every complete node.

use thiserror::Error;

use super::{CompactRange, Hash, NodeId, NodeSource, node_hash};

/// The requested node is not a complete subtree of the tree held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("node {0} is not a complete subtree of this tree")]
pub struct MissingNode(pub NodeId);

/// A tree held in memory, with every complete node stored.
///
/// Intended for tests, for building tiles of a batch, and for small logs.
/// It needs about twice the memory of its leaf hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` is the hash of node `(l, i)`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree holding the given leaf hashes.
    pub fn from_leaves<I: IntoIterator<Item = Hash>>(leaves: I) -> Self {
        let mut tree = Self::new();
        leaves.into_iter().for_each(|leaf| tree.push(leaf));
        tree
    }

    /// Appends a leaf hash, storing every node it completes.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            if row.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |row| row.len() as u64)
    }

    /// The leaf hashes.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The frontier of the whole tree.
    pub fn compact_range(&self) -> CompactRange {
        let size = self.size();
        let hashes = CompactRange::node_ids(size)
            .iter()
            .filter_map(|id| self.get(*id))
            .collect();
        // Every frontier node of the held size is stored, so the count fits.
        CompactRange::from_hashes(size, hashes).unwrap_or_default()
    }

    /// The root hash of the whole tree.
    pub fn root(&self) -> Hash {
        self.compact_range().root()
    }

    fn get(&self, id: NodeId) -> Option<Hash> {
        let row = self.levels.get(usize::from(id.level))?;
        row.get(usize::try_from(id.index).ok()?).copied()
    }
}

impl NodeSource for MemoryTree {
    type Error = MissingNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        let id = NodeId::new(level, index);
        self.get(id).ok_or(MissingNode(id))
    }
}
