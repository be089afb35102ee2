//! An integrity audit of one tree as the database holds it (`sigvault tlog verify`): what a
//! restored backup, a promoted replica or a suspicion of tampering calls for.
//!
//! It reads, never writes, and needs neither the HSM nor a running service. From the tree's row
//! it takes the size `S`, the root and the signed checkpoint, and then checks, independently of
//! the sequencer's own code paths:
//! * the checkpoint verifies with the tree's public key (under the configured note name) and
//!   names the configured origin, `S` and the root;
//! * entries `0..S` are all there, each `leaf_hash` column is the RFC 6962 leaf hash of its data,
//!   and the Merkle tree of those leaves has the stored root;
//! * every hash tile of the tree at `S` holds the hashes recomputed from the entries (a tile is
//!   rebuilt level by level: a full tile's 256 hashes hash up to one hash of the tile above);
//! * every entry whose leaf hash differs from its identity can be found by its leaf hash;
//! * the tree extends every signed checkpoint given from elsewhere (a client's, a monitor's, a
//!   witness's): the database is not behind it, and has its root at its size (no fork).
//!
//! It may run while the service appends: entries below `S` never change, and a partial tile only
//! grows (a narrower version is a prefix of the wider one), so the stored tile is compared as a
//! prefix where it is partial at `S`.

use sha2::{Digest, Sha256};

use super::storage::{LogStorage, StoreError};
use crate::merkle::tiles::TILE_WIDTH;
use crate::merkle::{self, CompactRange, Hash};
use crate::note::{self, Checkpoint};

/// Entries read per query.
const CHUNK: u64 = 10_000;
/// Problems listed in full; the rest are only counted.
const MAX_LISTED: usize = 20;
/// Tiles compared per query.
const TILE_QUERY: usize = 200;

/// What the audit of one tree found.
#[derive(Debug, Default)]
pub struct Audit {
    /// The tree size audited (the stored head's at the start).
    pub size: u64,
    /// The stored root, hex.
    pub root: String,
    /// SHA-256 of the tree's public key (DER SubjectPublicKeyInfo), hex: compare it with the
    /// published key.
    pub key_sha256: String,
    /// Hash tiles compared.
    pub tiles: u64,
    /// The first problems found, each a sentence.
    pub problems: Vec<String>,
    /// Problems found beyond those listed.
    pub more: u64,
}

impl Audit {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        } else {
            self.more += 1;
        }
    }
}

/// What the configuration says of the tree, and what others saw of it.
pub struct Expected<'a> {
    pub name: &'a str,
    pub origin: &'a str,
    pub note_name: &'a str,
    /// Signed checkpoints of this tree that clients, monitors or witnesses hold (`(where it
    /// came from, its text)`): the tree in the database must extend each of them.
    pub seen: &'a [(String, String)],
}

/// Audit tree `want.name`. `Err` only when the database cannot be read (or the tree does not
/// exist); whatever is wrong with the data itself is in [`Audit::problems`].
pub async fn audit_tree<S: LogStorage>(
    store: &S,
    want: &Expected<'_>,
    mut progress: impl FnMut(u64, u64),
) -> Result<Audit, StoreError> {
    let row = store.tree(want.name).await?.ok_or_else(|| {
        StoreError::Corrupt(format!("there is no tree '{}' in the database", want.name))
    })?;
    let mut a = Audit {
        size: row.size,
        root: hex::encode(row.root),
        key_sha256: hex::encode(Sha256::digest(&row.key_spki)),
        ..Audit::default()
    };
    if row.origin != want.origin {
        a.problem(format!(
            "the stored origin is {:?}, the configured one {:?}",
            row.origin, want.origin
        ));
    }
    check_checkpoint(
        &mut a,
        &row.checkpoint,
        want,
        &row.key_spki,
        row.size,
        &row.root,
    );
    if row.size == 0 {
        a.problem("the tree is empty: every tree starts with a sentinel entry".into());
    }

    // Size -> (root, source) of the valid checkpoints seen elsewhere that the stored tree covers.
    let mut watch = std::collections::BTreeMap::new();
    for (from, text) in want.seen {
        match seen_checkpoint(text, want, &row.key_spki) {
            Err(why) => a.problem(format!("checkpoint {from}: {why}")),
            Ok(cp) if cp.size > row.size => a.problem(format!(
                "checkpoint {from}: the log signed size {} but the database holds only {}: it \
                 is behind what was published (restored from an older backup?); appending to \
                 this tree would fork it",
                cp.size, row.size
            )),
            Ok(cp) => watch
                .entry(cp.size)
                .or_insert_with(Vec::new)
                .push((cp.root, from.clone())),
        }
    }

    let mut compact = CompactRange::new();
    let mut tiles = TileRebuild::default();
    let mut next = 0u64;
    let mut at_size = |compact: &CompactRange, a: &mut Audit| {
        let size = compact.size();
        if let Some(seen) = watch.remove(&size) {
            let root = compact.root();
            for (want_root, from) in seen.into_iter().filter(|(r, _)| *r != root) {
                a.problem(format!(
                    "checkpoint {from}: at size {size} the database's tree has root {}, the \
                     checkpoint {}: the log has forked",
                    hex::encode(root),
                    hex::encode(want_root)
                ));
            }
        }
    };
    while next < row.size {
        let end = (next + CHUNK).min(row.size);
        for e in store.audit_entries(row.id, next, end).await? {
            if e.index < next {
                continue; // cannot happen with a primary key; never count an entry twice
            }
            if e.index > next {
                a.problem(missing(next, e.index));
                // Keep the indices of what follows right: a missing leaf's place is lost, so
                // the root and tiles cannot match; they are reported below.
                while next < e.index {
                    append(&mut compact, &mut tiles, [0; 32], &mut a);
                    next += 1;
                    at_size(&compact, &mut a);
                }
            }
            let leaf = merkle::leaf_hash(&e.data);
            if e.leaf_hash != leaf {
                a.problem(format!(
                    "entry {}: the stored leaf hash is not the hash of its data (the data or the hash was changed)",
                    e.index
                ));
            }
            if e.identity_hash.len() != 32 {
                a.problem(format!(
                    "entry {}: the identity hash is not 32 bytes",
                    e.index
                ));
            }
            append(&mut compact, &mut tiles, leaf, &mut a);
            next += 1;
            at_size(&compact, &mut a);
        }
        if next < end {
            a.problem(missing(next, end));
            while next < end {
                append(&mut compact, &mut tiles, [0; 32], &mut a);
                next += 1;
                at_size(&compact, &mut a);
            }
        }
        compare_tiles(store, row.id, &mut tiles, false, &mut a).await?;
        progress(next, row.size);
    }
    tiles.finish();
    compare_tiles(store, row.id, &mut tiles, true, &mut a).await?;

    if compact.root() != row.root {
        a.problem(format!(
            "the entries hash to root {} at size {}, but the stored head says {}",
            hex::encode(compact.root()),
            row.size,
            a.root
        ));
    }
    let unindexed = store.unindexed_leaves(row.id, row.size, 5).await?;
    if let Some(first) = unindexed.first() {
        a.problem(format!(
            "entry {first}{}: no leaf_index row, so a proof by leaf hash would not find it",
            if unindexed.len() > 1 {
                " (and others)"
            } else {
                ""
            }
        ));
    }
    Ok(a)
}

fn missing(from: u64, to: u64) -> String {
    if to == from + 1 {
        format!("entry {from} is missing")
    } else {
        format!("entries {from} to {} are missing", to - 1)
    }
}

fn append(compact: &mut CompactRange, tiles: &mut TileRebuild, leaf: Hash, a: &mut Audit) {
    if let Err(e) = compact.append(leaf) {
        a.problem(format!("the tree cannot grow past {}: {e}", compact.size()));
    }
    tiles.push(0, leaf);
}

/// A checkpoint held elsewhere: signed by the tree's key under its name, for its origin.
fn seen_checkpoint(text: &str, want: &Expected<'_>, spki: &[u8]) -> Result<Checkpoint, String> {
    let body = note::verify_note(text, want.note_name, spki).map_err(|e| {
        format!(
            "does not verify with the tree's key under the name {:?}: {e}",
            want.note_name
        )
    })?;
    let cp = Checkpoint::parse_body(body).map_err(|e| format!("cannot be read: {e}"))?;
    if cp.origin != want.origin {
        return Err(format!(
            "is for origin {:?}, not {:?}",
            cp.origin, want.origin
        ));
    }
    Ok(cp)
}

/// The stored checkpoint: as one seen elsewhere, and for the stored head.
fn check_checkpoint(
    a: &mut Audit,
    text: &str,
    want: &Expected<'_>,
    spki: &[u8],
    size: u64,
    root: &Hash,
) {
    match seen_checkpoint(text, want, spki) {
        Err(why) => a.problem(format!("the stored checkpoint {why}")),
        Ok(cp) if cp.size != size || cp.root != *root => a.problem(format!(
            "the checkpoint is for size {} root {}, the stored head for size {size} root {}",
            cp.size,
            hex::encode(cp.root),
            hex::encode(root)
        )),
        Ok(_) => {}
    }
}

/// The hash tiles, rebuilt from the leaves: per level, the hashes of the tile being filled, and
/// the tiles waiting to be compared with the stored ones.
#[derive(Default)]
struct TileRebuild {
    /// Per tile level: (index of the tile being filled, its hashes so far).
    open: Vec<(u64, Vec<Hash>)>,
    /// (level, index, hashes, whether the tree at the audited size has the tile whole).
    pending: Vec<(u8, u64, Vec<Hash>, bool)>,
}

impl TileRebuild {
    fn push(&mut self, level: usize, hash: Hash) {
        while self.open.len() <= level {
            self.open.push((0, Vec::new()));
        }
        let (index, hashes) = &mut self.open[level];
        hashes.push(hash);
        if hashes.len() == usize::from(TILE_WIDTH) {
            let full = std::mem::take(hashes);
            let idx = *index;
            *index += 1;
            // 256 hashes are a perfect subtree: its root is the node one tile level up.
            let up = merkle::root_of(&full);
            self.pending.push((level as u8, idx, full, true));
            self.push(level + 1, up);
        }
    }

    /// The partial tiles at the audited size join the pending ones.
    fn finish(&mut self) {
        for (level, (index, hashes)) in self.open.iter_mut().enumerate() {
            if !hashes.is_empty() {
                self.pending
                    .push((level as u8, *index, std::mem::take(hashes), false));
            }
        }
    }
}

/// Compare the pending tiles with the stored ones (all of them when `all`, else in full
/// queries only).
async fn compare_tiles<S: LogStorage>(
    store: &S,
    tree: u64,
    t: &mut TileRebuild,
    all: bool,
    a: &mut Audit,
) -> Result<(), StoreError> {
    while t.pending.len() >= TILE_QUERY || (all && !t.pending.is_empty()) {
        let n = t.pending.len().min(TILE_QUERY);
        let batch: Vec<_> = t.pending.drain(..n).collect();
        let keys: Vec<(u8, u64)> = batch.iter().map(|(l, i, _, _)| (*l, *i)).collect();
        let stored = store.tiles(tree, &keys).await?;
        for (level, index, hashes, full) in batch {
            a.tiles += 1;
            let want: Vec<u8> = hashes.concat();
            let Some(got) = stored.get(&(level, index)) else {
                a.problem(format!("hash tile {level}/{index} is missing"));
                continue;
            };
            // Where the tile is partial at the audited size, the stored one may have grown
            // since: only its prefix is ours to check.
            let agrees = if full {
                *got == want
            } else {
                got.len() >= want.len() && got[..want.len()] == want[..]
            };
            if !agrees {
                a.problem(format!(
                    "hash tile {level}/{index} ({} hashes) does not hold the hashes of the entries",
                    got.len() / 32
                ));
            }
        }
    }
    Ok(())
}
