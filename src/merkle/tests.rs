//! Tests: published vectors, a naive RFC 6962 reference, and property tests.

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------
// Naive reference: a direct transcription of the recursive definitions of
// RFC 6962 §2.1 (MTH, PATH, PROOF/SUBPROOF), recording for each proof hash
// which side of the running hash it joins. That "shape" is all a verifier's
// computation depends on, which the mutation tests below rely on.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn ref_mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => empty_root(),
        1 => d[0],
        n => {
            let k = split(n);
            node_hash(&ref_mth(&d[..k]), &ref_mth(&d[k..]))
        }
    }
}

fn ref_path(m: usize, d: &[Hash]) -> Vec<(Hash, Side)> {
    let n = d.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    let mut p;
    if m < k {
        p = ref_path(m, &d[..k]);
        p.push((ref_mth(&d[k..]), Side::Right));
    } else {
        p = ref_path(m - k, &d[k..]);
        p.push((ref_mth(&d[..k]), Side::Left));
    }
    p
}

/// SUBPROOF(m, D[n], b); `None` marks the starting hash of the proof.
fn ref_subproof(m: usize, d: &[Hash], b: bool) -> Vec<(Hash, Option<Side>)> {
    let n = d.len();
    if m == n {
        return if b {
            Vec::new()
        } else {
            vec![(ref_mth(d), None)]
        };
    }
    let k = split(n);
    let mut p;
    if m <= k {
        p = ref_subproof(m, &d[..k], b);
        p.push((ref_mth(&d[k..]), Some(Side::Right)));
    } else {
        p = ref_subproof(m - k, &d[k..], false);
        p.push((ref_mth(&d[..k]), Some(Side::Left)));
    }
    p
}

fn ref_consistency(m: usize, d: &[Hash]) -> Vec<(Hash, Option<Side>)> {
    if m == 0 || m == d.len() {
        Vec::new()
    } else {
        ref_subproof(m, d, true)
    }
}

fn hashes<T>(p: &[(Hash, T)]) -> Vec<Hash> {
    p.iter().map(|(h, _)| *h).collect()
}

fn shape<T: Copy>(p: &[(Hash, T)]) -> Vec<T> {
    p.iter().map(|(_, s)| *s).collect()
}

/// Distinct leaves for generated trees.
fn test_leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn h(s: &str) -> Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).expect("valid hex hash");
    out
}

// ---------------------------------------------------------------------------
// Published vectors.
//
// Leaf inputs, node hashes, roots and compact-tree states: transparency-dev/merkle,
// testonly/constants.go (LeafInputs, NodeHashes, RootHashes, CompactTrees).
// Inclusion and consistency proofs: transparency-dev/merkle,
// cmd/proofgen/main.go (inclusionProofs, consistencyProofs; they are the
// vectors formerly in proof/verify_test.go, with 1-based leaf numbers,
// converted to 0-based indices here). Hasher vectors: transparency-dev/merkle,
// rfc6962/rfc6962_test.go.
// ---------------------------------------------------------------------------

const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Root after each size 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Complete-subtree hashes of the 8-leaf tree, by level then index.
const NODES: [&[&str]; 4] = [
    &[
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    &[
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    &[
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];

/// (leaf index, tree size, proof).
const INCLUSION: [(u64, u64, &[&str]); 5] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (size1, size2, proof).
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn vector_tree() -> MemoryTree {
    MemoryTree::from_leaves(
        LEAF_INPUTS
            .iter()
            .map(|s| leaf_hash(&hex::decode(s).expect("valid hex"))),
    )
}

fn hs(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|s| h(s)).collect()
}

#[test]
fn hasher_vectors() {
    assert_eq!(empty_root(), h(ROOTS[0]));
    assert_eq!(
        leaf_hash(b""),
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
    assert_eq!(
        leaf_hash(b"L123456"),
        h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    );
    let (a, b) = (leaf_hash(b"Hello"), leaf_hash(b"World"));
    assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    assert_ne!(node_hash(&a, &b), leaf_hash(&[a, b].concat()));
}

#[test]
fn vector_roots_nodes_and_frontiers() {
    let tree = vector_tree();
    let leaves = tree.leaves().to_vec();
    let mut range = CompactRange::new();
    for size in 0..=8usize {
        assert_eq!(root_of(&leaves[..size]), h(ROOTS[size]), "root_of {size}");
        assert_eq!(range.root(), h(ROOTS[size]), "compact root {size}");
        // The frontier is the list of complete nodes named by node_ids.
        let want: Vec<Hash> = CompactRange::node_ids(size as u64)
            .iter()
            .map(|id| h(NODES[usize::from(id.level)][id.index as usize]))
            .collect();
        assert_eq!(range.hashes(), want.as_slice(), "frontier {size}");
        if size < 8 {
            range.append(leaves[size]).expect("append");
        }
    }
    for (level, row) in NODES.iter().enumerate() {
        for (index, want) in row.iter().enumerate() {
            assert_eq!(tree.node(level as u8, index as u64), Ok(h(want)));
        }
    }
    assert_eq!(tree.root(), h(ROOTS[8]));
}

#[test]
fn vector_inclusion_proofs() {
    let tree = vector_tree();
    for (index, size, proof) in INCLUSION {
        let proof = hs(proof);
        let leaf = tree.leaves()[index as usize];
        let root = h(ROOTS[size as usize]);
        assert_eq!(inclusion_proof(&tree, index, size).expect("gen"), proof);
        assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));

        // Corruptions in the style of transparency-dev/merkle cmd/proofgen.
        let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        let bad = |i: u64, s: u64, l: &Hash, p: &[Hash], r: &Hash| {
            verify_inclusion(l, i, s, p, r).is_err()
        };
        assert!(bad(index.wrapping_sub(1), size, &leaf, &proof, &root));
        assert!(bad(index + 1, size, &leaf, &proof, &root));
        assert!(bad(index ^ 2, size, &leaf, &proof, &root));
        assert!(bad(index, size * 2, &leaf, &proof, &root));
        assert!(bad(index, size / 2, &leaf, &proof, &root));
        assert!(bad(index, size, &leaf_hash(b"WrongLeaf"), &proof, &root));
        assert!(bad(index, size, &leaf, &proof, &empty_root()));
        assert!(bad(index, size, &leaf, &proof, &some));
        assert!(bad(
            index,
            size,
            &leaf,
            &[proof.clone(), vec![root]].concat(),
            &root
        ));
        assert!(bad(
            index,
            size,
            &leaf,
            &[vec![root], proof.clone()].concat(),
            &root
        ));
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i][0] ^= 8;
            assert!(bad(index, size, &leaf, &p, &root));
            let mut p = proof.clone();
            p.remove(i);
            assert!(bad(index, size, &leaf, &p, &root));
            let mut p = proof.clone();
            p.insert(i, some);
            assert!(bad(index, size, &leaf, &p, &root));
        }
    }
}

#[test]
fn vector_consistency_proofs() {
    let tree = vector_tree();
    for (size1, size2, proof) in CONSISTENCY {
        let proof = hs(proof);
        let (r1, r2) = (h(ROOTS[size1 as usize]), h(ROOTS[size2 as usize]));
        assert_eq!(consistency_proof(&tree, size1, size2).expect("gen"), proof);
        assert_eq!(verify_consistency(size1, size2, &proof, &r1, &r2), Ok(()));
        if proof.is_empty() {
            continue;
        }
        let bad = |s1: u64, s2: u64, p: &[Hash], a: &Hash, b: &Hash| {
            verify_consistency(s1, s2, p, a, b).is_err()
        };
        assert!(bad(size1 - 1, size2, &proof, &r1, &r2));
        assert!(bad(size1 + 1, size2, &proof, &r1, &r2));
        assert!(bad(size1 ^ 2, size2, &proof, &r1, &r2));
        assert!(bad(size1, size2 * 2, &proof, &r1, &r2));
        assert!(bad(size1, size2 / 2, &proof, &r1, &r2));
        assert!(bad(size1, size2, &proof, &leaf_hash(b"WrongRoot"), &r2));
        assert!(bad(size1, size2, &proof, &r1, &leaf_hash(b"WrongRoot")));
        assert!(bad(size1, size2, &proof, &r2, &r1));
        assert!(bad(size1, size2, &[], &r1, &r2));
        for extra in [r1, r2, proof[0]] {
            assert!(bad(
                size1,
                size2,
                &[proof.clone(), vec![extra]].concat(),
                &r1,
                &r2
            ));
            assert!(bad(
                size1,
                size2,
                &[vec![extra], proof.clone()].concat(),
                &r1,
                &r2
            ));
        }
        assert!(bad(size1, size2, &proof[..proof.len() - 1], &r1, &r2));
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i][0] ^= 16;
            assert!(bad(size1, size2, &p, &r1, &r2));
        }
    }
}

#[test]
fn consistency_edge_cases() {
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    let e = empty_root();
    assert_eq!(verify_consistency(0, 0, &[], &a, &a), Ok(()));
    assert_eq!(verify_consistency(1, 1, &[], &b, &b), Ok(()));
    assert_eq!(
        verify_consistency(1, 1, &[], &a, &b),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(verify_consistency(0, 5, &[], &e, &a), Ok(()));
    assert_eq!(
        verify_consistency(0, 1, &[], &a, &b),
        Err(ProofError::OldRootMismatch)
    );
    assert!(verify_consistency(0, 1, &[e], &e, &e).is_err());
    assert!(verify_consistency(1, 1, &[e], &e, &e).is_err());
    assert_eq!(
        verify_consistency(2, 1, &[], &a, &b),
        Err(ProofError::SizeOrder { size1: 2, size2: 1 })
    );
    assert_eq!(
        verify_inclusion(&a, 0, 0, &[], &a),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    // A one-leaf tree's root is its leaf hash.
    assert_eq!(verify_inclusion(&a, 0, 1, &[], &a), Ok(()));
    let tree = MemoryTree::from_leaves(test_leaves(4));
    assert!(matches!(
        consistency_proof(&tree, 3, 2),
        Err(GenerateError::Invalid(ProofError::SizeOrder { .. }))
    ));
    assert!(matches!(
        inclusion_proof(&tree, 2, 5),
        Err(GenerateError::Source(MissingNode(_)))
    ));
}

#[test]
fn huge_tree_arithmetic_does_not_overflow() {
    // Node lists and length checks at the top of the u64 range.
    for (index, size) in [
        (0, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (1 << 63, (1 << 63) + 1),
    ] {
        let nodes = inclusion_nodes(index, size).expect("nodes");
        let zeros = vec![[0u8; 32]; nodes.proof_len()];
        assert_eq!(
            verify_inclusion(&[0; 32], index, size, &zeros, &[1; 32]),
            Err(ProofError::RootMismatch)
        );
    }
    let nodes = consistency_nodes(u64::MAX - 1, u64::MAX).expect("nodes");
    let zeros = vec![[0u8; 32]; nodes.proof_len()];
    assert!(matches!(
        verify_consistency(u64::MAX - 1, u64::MAX, &zeros, &[1; 32], &[1; 32]),
        Err(ProofError::OldRootMismatch | ProofError::RootMismatch)
    ));
    assert_eq!(CompactRange::node_ids(u64::MAX).len(), 64);
}

// ---------------------------------------------------------------------------
// Exhaustive checks against the reference on small trees.
// ---------------------------------------------------------------------------

#[test]
fn roots_match_reference_up_to_300() {
    let leaves = test_leaves(300);
    let tree = MemoryTree::from_leaves(leaves.iter().copied());
    let mut range = CompactRange::new();
    let mut visited = Vec::new();
    for size in 0..=300usize {
        let want = ref_mth(&leaves[..size]);
        assert_eq!(range.root(), want, "compact root at {size}");
        assert_eq!(root_of(&leaves[..size]), want, "root_of at {size}");
        assert_eq!(range.size(), size as u64);

        // Rebuilding from stored hashes gives the same state.
        let rebuilt =
            CompactRange::from_hashes(size as u64, range.hashes().to_vec()).expect("rebuild");
        assert_eq!(rebuilt, range);
        let loaded = CompactRange::from_source(&tree, size as u64).expect("load");
        assert_eq!(loaded, range);

        if size < 300 {
            range
                .append_with(leaves[size], |id, hash| visited.push((id, *hash)))
                .expect("append");
        }
    }
    // Appending reports every complete node exactly once, with its hash.
    assert_eq!(visited.len(), 2 * 300 - 300usize.count_ones() as usize);
    for (id, hash) in visited {
        assert_eq!(tree.node(id.level, id.index), Ok(hash));
    }
    assert_eq!(tree.root(), ref_mth(&leaves));
    assert!(matches!(
        CompactRange::from_hashes(5, vec![[0; 32]]),
        Err(CompactRangeError::WrongHashCount { want: 2, .. })
    ));
}

#[test]
fn proofs_match_reference_up_to_64() {
    let leaves = test_leaves(64);
    let tree = MemoryTree::from_leaves(leaves.iter().copied());
    for size in 1..=64u64 {
        let d = &leaves[..size as usize];
        let root = ref_mth(d);
        for index in 0..size {
            let want = hashes(&ref_path(index as usize, d));
            let got = inclusion_proof(&tree, index, size).expect("inclusion");
            assert_eq!(got, want, "inclusion {index} in {size}");
            let nodes = inclusion_nodes(index, size).expect("nodes");
            assert_eq!(nodes.proof_len(), got.len());
            verify_inclusion(&d[index as usize], index, size, &got, &root).expect("verify");
        }
        for size1 in 0..=size {
            let want = hashes(&ref_consistency(size1 as usize, d));
            let got = consistency_proof(&tree, size1, size).expect("consistency");
            assert_eq!(got, want, "consistency {size1} -> {size}");
            let root1 = ref_mth(&d[..size1 as usize]);
            verify_consistency(size1, size, &got, &root1, &root).expect("verify");
        }
    }
}

// ---------------------------------------------------------------------------
// Property tests: honest proofs verify, mutated ones do not.
// ---------------------------------------------------------------------------

fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1u64..=300).prop_flat_map(|n| (Just(n), 0..n))
}

fn sizes() -> impl Strategy<Value = (u64, u64)> {
    (1u64..=300).prop_flat_map(|n| (0..=n, Just(n)))
}

fn inclusion_shape(index: u64, size: u64) -> Vec<Side> {
    // Only the shape is needed; leaf values do not matter.
    shape(&ref_path(index as usize, &vec![[0; 32]; size as usize]))
}

fn consistency_shape(size1: u64, size2: u64) -> Vec<Option<Side>> {
    shape(&ref_consistency(
        size1 as usize,
        &vec![[0; 32]; size2 as usize],
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn inclusion_proofs_verify_and_resist_mutation(
        (size, index) in size_and_index(),
        other_index in 0u64..300,
        other_size in 1u64..600,
        pos in any::<prop::sample::Index>(),
        byte in 0usize..32,
    ) {
        let leaves = test_leaves(size);
        let tree = MemoryTree::from_leaves(leaves.iter().copied());
        let root = tree.root();
        let leaf = leaves[index as usize];
        let proof = inclusion_proof(&tree, index, size).expect("proof");
        prop_assert_eq!(&proof, &hashes(&ref_path(index as usize, &leaves)));
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
        prop_assert_eq!(root_from_inclusion_proof(&leaf, index, size, &proof), Ok(root));

        // Any flipped bit in a proof hash, the leaf or the root.
        if !proof.is_empty() {
            let mut p = proof.clone();
            p[pos.index(proof.len())][byte] ^= 1;
            prop_assert_eq!(
                verify_inclusion(&leaf, index, size, &p, &root),
                Err(ProofError::RootMismatch)
            );
        }
        let mut l = leaf;
        l[byte] ^= 0x80;
        prop_assert!(verify_inclusion(&l, index, size, &proof, &root).is_err());
        let mut r = root;
        r[byte] ^= 0x80;
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &r).is_err());

        // Dropped or extra hash, anywhere.
        if !proof.is_empty() {
            let mut p = proof.clone();
            p.remove(pos.index(proof.len()));
            let is_length_error = matches!(
                verify_inclusion(&leaf, index, size, &p, &root),
                Err(ProofError::WrongProofLength { .. })
            );
            prop_assert!(is_length_error);
        }
        let mut p = proof.clone();
        p.insert(pos.index(proof.len() + 1), leaf);
        prop_assert!(verify_inclusion(&leaf, index, size, &p, &root).is_err());

        // Wrong index or size. The verifier's computation depends only on the
        // proof's shape, so it must succeed exactly when the shapes coincide
        // (which for a different index in the same tree never happens).
        let want_shape = inclusion_shape(index, size);
        let other_index = other_index % size;
        if other_index != index {
            prop_assert!(inclusion_shape(other_index, size) != want_shape);
            prop_assert!(verify_inclusion(&leaf, other_index, size, &proof, &root).is_err());
        }
        if other_size != size {
            let result = verify_inclusion(&leaf, index, other_size, &proof, &root);
            if index >= other_size {
                prop_assert!(
                    matches!(result, Err(ProofError::IndexOutOfRange { .. })),
                    "expected IndexOutOfRange"
                );
            } else {
                prop_assert_eq!(
                    result.is_ok(),
                    inclusion_shape(index, other_size) == want_shape
                );
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_and_resist_mutation(
        (size1, size2) in sizes(),
        other_size1 in 1u64..300,
        other_size2 in 1u64..600,
        pos in any::<prop::sample::Index>(),
        byte in 0usize..32,
    ) {
        let leaves = test_leaves(size2);
        let tree = MemoryTree::from_leaves(leaves.iter().copied());
        let root2 = tree.root();
        let root1 = root_of(&leaves[..size1 as usize]);
        let proof = consistency_proof(&tree, size1, size2).expect("proof");
        prop_assert_eq!(&proof, &hashes(&ref_consistency(size1 as usize, &leaves)));
        prop_assert_eq!(consistency_nodes(size1, size2).expect("ids").proof_len(), proof.len());
        prop_assert_eq!(verify_consistency(size1, size2, &proof, &root1, &root2), Ok(()));

        // Extra hash anywhere, also for the trivial (empty) proofs.
        let mut p = proof.clone();
        p.insert(pos.index(proof.len() + 1), root1);
        prop_assert!(verify_consistency(size1, size2, &p, &root1, &root2).is_err());

        if size1 == 0 || size1 == size2 {
            return Ok(());
        }
        // Swapped roots, flipped roots.
        prop_assert!(verify_consistency(size1, size2, &proof, &root2, &root1).is_err());
        let (mut r1, mut r2) = (root1, root2);
        r1[byte] ^= 2;
        r2[byte] ^= 2;
        // (When size1 is a power of two, root1 seeds both computations, so a
        // bad root1 can surface as a mismatch of either root.)
        prop_assert!(verify_consistency(size1, size2, &proof, &r1, &root2).is_err());
        prop_assert!(verify_consistency(size1, size2, &proof, &root1, &r2).is_err());

        // Flipped bit in any proof hash; dropped hash.
        let i = pos.index(proof.len());
        let mut p = proof.clone();
        p[i][byte] ^= 4;
        prop_assert!(verify_consistency(size1, size2, &p, &root1, &root2).is_err());
        let mut p = proof.clone();
        p.remove(i);
        let is_length_error = matches!(
            verify_consistency(size1, size2, &p, &root1, &root2),
            Err(ProofError::WrongProofLength { .. })
        );
        prop_assert!(is_length_error);

        // Wrong sizes: accepted exactly when the proof shape is unchanged.
        let want_shape = consistency_shape(size1, size2);
        let s1 = other_size1 % (size2 - 1) + 1; // in 1..size2
        if s1 != size1 {
            prop_assert_eq!(
                verify_consistency(s1, size2, &proof, &root1, &root2).is_ok(),
                consistency_shape(s1, size2) == want_shape
            );
        }
        let s2 = other_size2.max(size1 + 1);
        if s2 != size2 {
            prop_assert_eq!(
                verify_consistency(size1, s2, &proof, &root1, &root2).is_ok(),
                consistency_shape(size1, s2) == want_shape
            );
        }
    }
}

#[test]
fn roots_do_not_commit_to_tree_size() {
    // Documented limitation rather than a bug: a tree hash does not encode
    // the tree size, so a proof can verify under another size whose proof has
    // the same shape. Leaf 0 of a 3-leaf tree has siblings [leaf 1, leaf 2];
    // read as a 4-leaf tree, leaf 2 plays the role of the subtree [2, 4).
    // Signed checkpoints bind the size to the root, which is why callers must
    // take the size from the checkpoint, never from the proof's sender.
    let leaves = test_leaves(3);
    let tree = MemoryTree::from_leaves(leaves.iter().copied());
    let proof = inclusion_proof(&tree, 0, 3).expect("proof");
    assert_eq!(
        verify_inclusion(&leaves[0], 0, 4, &proof, &tree.root()),
        Ok(())
    );
}
