//! RFC 6962 / RFC 9162 Merkle trees for an append-only transparency log.
//!
//! Everything here is pure computation over 32-byte SHA-256 hashes: no I/O,
//! no async, no logging. Storage is abstracted behind [`NodeSource`], so the
//! same proof logic serves an in-memory tree in tests, a database-backed
//! sequencer, and a client that reconstructs proofs from C2SP tiles.
//!
//! # Tree shape and node addressing
//!
//! RFC 9162 §2.1.1 defines the Merkle Tree Hash (MTH) of `n` leaves by
//! splitting at the largest power of two smaller than `n`. The result is a
//! left-leaning tree in which every node except those on the right edge is
//! the root of a *complete* (perfect) binary subtree. We address complete
//! subtrees by [`NodeId`] `(level, index)`: level 0 holds leaf hashes, and node
//! `(level, index)` covers leaves `[index << level, (index + 1) << level)`.
//! Such a node's hash never changes once the log has grown past its last leaf,
//! which is what makes it safe to store and cache.
//!
//! Nodes on the right edge of a tree whose size is not a power of two cover
//! only part of their aligned range. Their hashes depend on the tree size, so
//! they are never stored; instead they are recomputed ("ephemeral" nodes) by
//! folding the complete subtrees that make them up. See [`ProofNodes`].
//!
//! # Module map
//!
//! * hashing primitives: [`leaf_hash`], [`node_hash`], [`empty_root`], [`root_of`];
//! * [`CompactRange`]: the O(log n) right-edge state a sequencer keeps to
//!   extend a tree without rereading it;
//! * [`inclusion_proof`], [`consistency_proof`] and the lower-level
//!   [`inclusion_nodes`], [`consistency_nodes`] for callers that fetch nodes
//!   themselves (for example asynchronously, or in batches);
//! * [`verify_inclusion`], [`verify_consistency`], [`root_from_inclusion_proof`];
//! * [`MemoryTree`]: an in-memory [`NodeSource`];
//! * [`tiles`]: C2SP `tlog-tiles` paths and layout.

mod compact;
mod memory;
mod proof;
pub mod tiles;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;

use sha2::{Digest, Sha256};

pub use compact::{CompactRange, CompactRangeError};
pub use memory::{MemoryTree, MissingNode};
pub use proof::{
    GenerateError, NodeSource, ProofNodes, consistency_nodes, consistency_proof, inclusion_nodes,
    inclusion_proof,
};
pub use verify::{ProofError, root_from_inclusion_proof, verify_consistency, verify_inclusion};

/// A SHA-256 digest: a leaf hash, an interior node hash, or a tree root.
pub type Hash = [u8; 32];

/// Size in bytes of a [`Hash`](type@Hash).
pub const HASH_SIZE: usize = 32;

/// Domain-separation prefix for leaves (RFC 9162 §2.1.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix for interior nodes (RFC 9162 §2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// Hashes a log entry into a leaf: `SHA-256(0x00 || data)`.
///
/// The prefix byte keeps leaf hashes and interior hashes in disjoint domains,
/// so nobody can present an interior node as if it were an entry (a second
/// preimage attack on the tree).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    h.finalize().into()
}

/// Hashes two children into their parent: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
///
/// Note that this differs from the root of a tree holding one empty entry,
/// which is `leaf_hash(b"")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Computes the Merkle Tree Hash (RFC 9162 §2.1.1) of a list of leaf hashes.
///
/// Works level by level: adjacent pairs are hashed together and an unpaired
/// last node is carried up unchanged. Carrying the odd node up is exactly
/// what RFC 9162's "split at the largest power of two" recursion does to the
/// right edge, so both give the same root; this form needs no recursion and
/// one scratch buffer. Use [`CompactRange`] when leaves arrive incrementally.
pub fn root_of(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return empty_root();
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [l, r] => next.push(node_hash(l, r)),
                [odd] => next.push(*odd),
                _ => {}
            }
        }
        level = next;
    }
    level[0]
}

/// Address of a complete subtree: `level` 0 is the leaves, and the node covers
/// leaves `[index << level, (index + 1) << level)`.
///
/// Levels range over `0..=63`, enough for any tree whose size fits in `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// Height above the leaves.
    pub level: u8,
    /// Position within the level, counting from the left.
    pub index: u64,
}

impl NodeId {
    /// Creates a node ID.
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.level, self.index)
    }
}

/// `x >> n`, yielding 0 instead of panicking when `n >= 64`.
///
/// Tree arithmetic shifts by levels up to 64; a plain `>>` would panic there
/// in debug builds and wrap in release builds.
fn shr(x: u64, n: u32) -> u64 {
    x.checked_shr(n).unwrap_or(0)
}
