//! The compact range (frontier) of a tree: its right-edge complete subtrees.

use thiserror::Error;

use super::{Hash, NodeId, NodeSource, empty_root, node_hash};

/// Errors from building or extending a [`CompactRange`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CompactRangeError {
    /// A tree of size `size` has exactly one frontier hash per set bit of
    /// `size`; the caller supplied a different number.
    #[error("a tree of size {size} has {want} frontier hashes, got {got}")]
    WrongHashCount {
        /// Tree size the hashes were claimed to describe.
        size: u64,
        /// Number of hashes supplied.
        got: usize,
        /// Number of hashes a tree of that size has.
        want: usize,
    },
    /// The tree already holds `u64::MAX` leaves.
    #[error("tree is full: cannot append beyond u64::MAX leaves")]
    Full,
}

/// The hashes of the maximal complete subtrees covering leaves `[0, size)`.
///
/// Writing `size` in binary, each set bit `b` contributes one complete subtree
/// of `2^b` leaves, ordered left to right from the highest bit down. For
/// example size 6 = 0b110 decomposes into node (2, 0) covering `[0, 4)` and
/// node (1, 2) covering `[4, 6)`. These at most 64 hashes are all a sequencer
/// needs to keep: they determine the root ([`root`](Self::root)), and every
/// later leaf only ever combines with them ([`append`](Self::append)). That is
/// how a batch is integrated without rereading the tree: load the frontier
/// ([`from_source`](Self::from_source) or [`from_hashes`](Self::from_hashes)),
/// append the batch, store the nodes reported by
/// [`append_with`](Self::append_with), publish the new root.
///
/// This is the `[0, size)` special case of the compact ranges described by
/// transparency-dev/merkle; ranges not starting at 0 are not needed here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// Frontier hashes, largest (leftmost) subtree first.
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the frontier of a tree of `size` leaves from its hashes, in the
    /// order of [`node_ids(size)`](Self::node_ids).
    pub fn from_hashes(size: u64, hashes: Vec<Hash>) -> Result<Self, CompactRangeError> {
        let want = size.count_ones() as usize;
        if hashes.len() != want {
            return Err(CompactRangeError::WrongHashCount {
                size,
                got: hashes.len(),
                want,
            });
        }
        Ok(Self { size, hashes })
    }

    /// Loads the frontier of a tree of `size` leaves from stored nodes.
    pub fn from_source<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Self, S::Error> {
        let hashes = src.nodes(&Self::node_ids(size))?;
        Ok(Self { size, hashes })
    }

    /// IDs of the frontier nodes of a tree of `size` leaves, leftmost first.
    ///
    /// Every returned node is complete, so it can be read from storage.
    pub fn node_ids(size: u64) -> Vec<NodeId> {
        (0..64u8)
            .rev()
            .filter(|&level| (size >> level) & 1 == 1)
            // Bit `level` is set, so `size >> level` is odd and the subtree
            // for this bit is the last whole node at that level.
            .map(|level| NodeId::new(level, (size >> level) - 1))
            .collect()
    }

    /// Number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Frontier hashes, in the order of [`node_ids`](Self::node_ids).
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf hash.
    pub fn append(&mut self, leaf: Hash) -> Result<(), CompactRangeError> {
        self.append_with(leaf, |_, _| {})
    }

    /// Appends one leaf hash, calling `visit` for every complete node that
    /// the append creates: the leaf itself, then each parent that became
    /// complete, bottom-up. These are exactly the new nodes a store must
    /// persist to keep serving proofs for the larger tree.
    pub fn append_with(
        &mut self,
        leaf: Hash,
        mut visit: impl FnMut(NodeId, &Hash),
    ) -> Result<(), CompactRangeError> {
        let new_size = self.size.checked_add(1).ok_or(CompactRangeError::Full)?;
        let mut hash = leaf;
        let mut id = NodeId::new(0, self.size);
        visit(id, &hash);
        // Each trailing one bit of the old size is a subtree of the same
        // height as the one we are carrying, sitting just to its left: merge.
        while id.index & 1 == 1 {
            let Some(left) = self.hashes.pop() else {
                // Unreachable: one hash is kept per set bit of `size`.
                break;
            };
            hash = node_hash(&left, &hash);
            id = NodeId::new(id.level + 1, id.index >> 1);
            visit(id, &hash);
        }
        self.hashes.push(hash);
        self.size = new_size;
        Ok(())
    }

    /// Appends leaf hashes in order.
    pub fn extend<I: IntoIterator<Item = Hash>>(
        &mut self,
        leaves: I,
    ) -> Result<(), CompactRangeError> {
        leaves.into_iter().try_for_each(|leaf| self.append(leaf))
    }

    /// The Merkle Tree Hash of the covered leaves.
    ///
    /// Folds the frontier right to left: the smaller subtrees on the right
    /// form the right child of each split, exactly as RFC 9162 splits at the
    /// largest power of two.
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}
