//! Proof verification (RFC 9162 §2.1.3.2 and §2.1.4.2).

use thiserror::Error;

use super::{Hash, empty_root, node_hash};

/// Why a proof was rejected, or could not be generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The "old" tree is larger than the "new" one.
    #[error("tree size {size1} is larger than tree size {size2}")]
    SizeOrder {
        /// First (old) tree size.
        size1: u64,
        /// Second (new) tree size.
        size2: u64,
    },
    /// The proof has the wrong number of hashes for the sizes claimed.
    #[error("proof has {got} hashes, want {want}")]
    WrongProofLength {
        /// Hashes supplied.
        got: usize,
        /// Hashes a proof for these parameters has.
        want: usize,
    },
    /// The number of node hashes passed to [`ProofNodes::rehash`] does not
    /// match the number of IDs.
    ///
    /// [`ProofNodes::rehash`]: super::ProofNodes::rehash
    #[error("got {got} node hashes, want {want}")]
    WrongNodeCount {
        /// Hashes supplied.
        got: usize,
        /// IDs listed.
        want: usize,
    },
    /// The proof does not lead to the expected (new) root.
    #[error("calculated root does not match the expected root")]
    RootMismatch,
    /// The consistency proof does not lead to the old root.
    #[error("calculated old root does not match the expected old root")]
    OldRootMismatch,
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size`
/// leaves (`index < size`).
///
/// Below the level where the paths to `index` and to the last leaf `size - 1`
/// merge, every level has a sibling. Above it, the path runs along the right
/// edge, where a level has a (left) sibling exactly when the corresponding
/// bit of `index` is set; elsewhere the node is promoted with no sibling.
fn inclusion_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Computes the root that an inclusion proof leads to (RFC 9162 §2.1.3.2).
///
/// Useful when the root is not known in advance, for example to compare
/// against several checkpoints. The proof length is checked first so that a
/// truncated or padded proof yields [`ProofError::WrongProofLength`].
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    // `fn_` tracks the position of the running node in its level and `sn`
    // that of the last node of the tree, as the RFC's "fn" and "sn".
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            // The sibling is on the left.
            r = node_hash(p, &r);
            // On the right edge, skip the levels where the node has no
            // sibling and is promoted unchanged.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    Ok(r)
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves whose
/// root is `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion_proof(leaf_hash, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Checks that the tree of `size2` leaves with root `root2` extends the tree
/// of `size1` leaves with root `root1` (RFC 9162 §2.1.4.2).
///
/// Edge cases, which RFC 9162 leaves to the caller:
/// * `size1 == size2` (including both zero): the proof must be empty and the
///   roots equal;
/// * `size1 == 0 < size2`: the proof must be empty and `root1` must be the
///   empty root; every tree extends the empty tree, so nothing else is
///   checked and `root2` is not authenticated.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizeOrder { size1, size2 });
    }
    if size1 == size2 || size1 == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want: 0,
            });
        }
        if size1 == size2 {
            return if root1 == root2 {
                Ok(())
            } else {
                Err(ProofError::RootMismatch)
            };
        }
        return if *root1 == empty_root() {
            Ok(())
        } else {
            Err(ProofError::OldRootMismatch)
        };
    }

    // The proof starts at the old tree's smallest frontier subtree
    // (level `k`, index `seed`), which is the old root when `size1` is a
    // power of two and then not sent.
    let k = size1.trailing_zeros();
    let seed = (size1 >> k) - 1;
    let want = inclusion_len(seed, ((size2 - 1) >> k) + 1) + usize::from(seed != 0);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    let (first, rest) = if seed == 0 {
        (root1, proof)
    } else {
        match proof.split_first() {
            Some(split) => split,
            None => {
                return Err(ProofError::WrongProofLength { got: 0, want });
            }
        }
    };

    // Same walk as for inclusion, starting at the seed node, but also
    // accumulating the old root `fr` from the left siblings only.
    let (mut fn_, mut sn) = (size1 - 1, size2 - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    if fr != *root1 {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
