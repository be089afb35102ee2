//! Proof generation from stored complete-subtree hashes.

use thiserror::Error;

use super::{Hash, NodeId, ProofError, node_hash, shr};

/// Read access to the hashes of complete subtrees.
///
/// Only complete nodes are ever requested (see [`NodeId`]); a store therefore
/// never has to hold anything whose value changes as the log grows.
pub trait NodeSource {
    /// Failure to produce a node, such as a missing row or an I/O error.
    type Error;

    /// Returns the hash of the complete subtree `(level, index)`.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;

    /// Returns the hashes of several nodes, in order.
    ///
    /// Stores that can batch reads (one query, one tile fetch) should
    /// override this; the default calls [`node`](Self::node) for each ID.
    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        ids.iter().map(|id| self.node(id.level, id.index)).collect()
    }
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    type Error = S::Error;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        (**self).nodes(ids)
    }
}

/// Errors from generating a proof.
#[derive(Debug, Error)]
pub enum GenerateError<E> {
    /// The requested proof does not exist (index out of range, sizes reversed).
    #[error(transparent)]
    Invalid(#[from] ProofError),
    /// The node source could not provide a node.
    #[error("failed to fetch Merkle tree nodes")]
    Source(#[source] E),
}

/// The stored nodes a proof is made of, and how to turn them into the proof.
///
/// Every proof hash is the root of some subtree. Most of them are complete
/// subtrees and come straight from storage. At most one per proof lies on the
/// right edge of the tree and is incomplete (an "ephemeral" node): its value
/// depends on the tree size, so it is not stored; it is recomputed from the
/// complete subtrees that tile it ([`ephemeral_range`](Self::ephemeral_range)),
/// which [`rehash`](Self::rehash) folds into a single hash.
///
/// Splitting generation into "which IDs" and "combine the hashes" lets a
/// caller fetch the IDs however it likes (asynchronously, batched, from tiles)
/// while keeping the tree logic here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProofNodes {
    /// Complete nodes to fetch, in proof order (bottom of the tree first).
    ids: Vec<NodeId>,
    /// `ids[begin..end]` make up the ephemeral node; empty if there is none.
    begin: usize,
    end: usize,
    /// Aligned position of the ephemeral node.
    ephem: Option<NodeId>,
}

impl ProofNodes {
    /// Complete nodes to fetch, in proof order (bottom of the tree first).
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// The run of [`ids`](Self::ids) that [`rehash`](Self::rehash) folds into
    /// the ephemeral node; empty when the proof has none.
    pub fn ephemeral_range(&self) -> std::ops::Range<usize> {
        self.begin..self.end
    }

    /// The aligned position of the ephemeral node, i.e. the node it becomes
    /// once the tree grows enough to complete it. Informational.
    pub fn ephemeral_node(&self) -> Option<NodeId> {
        self.ephem
    }

    /// Number of hashes in the final proof.
    pub fn proof_len(&self) -> usize {
        let run = self.end - self.begin;
        self.ids.len() - run + usize::from(run > 0)
    }

    /// Turns the hashes of [`ids`](Self::ids), in the same order, into the proof.
    pub fn rehash(&self, mut hashes: Vec<Hash>) -> Result<Vec<Hash>, ProofError> {
        if hashes.len() != self.ids.len() {
            return Err(ProofError::WrongNodeCount {
                got: hashes.len(),
                want: self.ids.len(),
            });
        }
        if self.end > self.begin {
            // The run lists the subtrees left to right with strictly
            // decreasing sizes, so the RFC 9162 split puts everything after
            // the first one into its right child: fold from the right.
            let run = &hashes[self.begin..self.end];
            let mut folded = run[run.len() - 1];
            for left in run[..run.len() - 1].iter().rev() {
                folded = node_hash(left, &folded);
            }
            hashes.splice(self.begin..self.end, [folded]);
        }
        Ok(hashes)
    }

    /// Appends the path from node `(level, index)` up to the root of a tree
    /// of `size` leaves: at each level, the sibling of the current node.
    fn push_path(&mut self, level: u8, index: u64, size: u64) {
        let last = size - 1; // callers guarantee size > 0
        let mut idx = index;
        let mut l = u32::from(level);
        // Stop once the node on the path is the only one at its level: it is
        // the root.
        while shr(last, l) > 0 {
            let sib = idx ^ 1;
            let lvl = l as u8; // l < 64 because shr(last, l) > 0
            if sib < idx || sib < shr(size, l) {
                // A left sibling, or a right sibling that ends within the tree.
                self.ids.push(NodeId::new(lvl, sib));
            } else if sib <= shr(last, l) {
                // A right sibling cut off by the end of the tree.
                self.begin = self.ids.len();
                push_range(&mut self.ids, sib << l, size);
                self.end = self.ids.len();
                self.ephem = Some(NodeId::new(lvl, sib));
            }
            // Otherwise there is no right sibling at this level: RFC 9162's
            // split promotes the node unchanged, so the proof skips the level.
            idx >>= 1;
            l += 1;
        }
    }
}

/// Pushes the complete subtrees tiling `[begin, end)` where `begin` is aligned
/// to a power of two larger than `end - begin`: one per set bit, left to right.
fn push_range(ids: &mut Vec<NodeId>, begin: u64, end: u64) {
    let mut pos = begin;
    let len = end - begin;
    for level in (0..64u8).rev() {
        if (len >> level) & 1 == 1 {
            ids.push(NodeId::new(level, pos >> level));
            pos += 1 << level;
        }
    }
}

/// Lists the nodes making up the inclusion proof of leaf `index` in a tree of
/// `size` leaves (RFC 9162 §2.1.3.1).
pub fn inclusion_nodes(index: u64, size: u64) -> Result<ProofNodes, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut nodes = ProofNodes::default();
    nodes.push_path(0, index, size);
    Ok(nodes)
}

/// Lists the nodes making up the consistency proof from `size1` to `size2`
/// (RFC 9162 §2.1.4.1).
///
/// The proof is built around the smallest complete subtree of the old tree's
/// frontier, `(k, size1 / 2^k - 1)` with `k` the number of trailing zeros of
/// `size1`: it exists unchanged in the new tree. The proof is that node
/// followed by its path to the new root. Its path contains every other
/// frontier node of the old tree as a left sibling, which lets the verifier
/// rebuild both roots from one list. When `size1` is a power of two the node
/// is the old root itself, which the verifier already has, so it is omitted.
///
/// The proof is empty when `size1 == size2` and, by convention, when
/// `size1 == 0` (every tree extends the empty tree; see
/// [`verify_consistency`](super::verify_consistency)).
pub fn consistency_nodes(size1: u64, size2: u64) -> Result<ProofNodes, ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizeOrder { size1, size2 });
    }
    let mut nodes = ProofNodes::default();
    if size1 == 0 || size1 == size2 {
        return Ok(nodes);
    }
    let level = size1.trailing_zeros();
    let index = (size1 >> level) - 1;
    let level = level as u8; // < 64 since size1 > 0
    if index != 0 {
        nodes.ids.push(NodeId::new(level, index));
    }
    nodes.push_path(level, index, size2);
    Ok(nodes)
}

fn fetch<S: NodeSource + ?Sized>(
    src: &S,
    nodes: &ProofNodes,
) -> Result<Vec<Hash>, GenerateError<S::Error>> {
    let hashes = src.nodes(&nodes.ids).map_err(GenerateError::Source)?;
    Ok(nodes.rehash(hashes)?)
}

/// Builds the inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, GenerateError<S::Error>> {
    fetch(src, &inclusion_nodes(index, size)?)
}

/// Builds the consistency proof between trees of `size1` and `size2` leaves.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, GenerateError<S::Error>> {
    fetch(src, &consistency_nodes(size1, size2)?)
}
