//! C2SP `tlog-tiles` (<https://c2sp.org/tlog-tiles>): paths and layout.
//!
//! A tiled log publishes its tree not as proof endpoints but as immutable
//! static files, "tiles", each holding up to 256 consecutive hashes of one tree
//! level. Tile level `L` holds node level `8 * L`: level-0 tiles hold leaf
//! hashes, and each hash in a level-`L` tile is the root of a full tile at
//! level `L - 1`. The seven node levels in between are not stored; they are
//! recomputed by hashing within a tile. Clients fetch the few tiles a proof
//! touches and compute the proof themselves, which makes the log cacheable
//! and cheap to serve.
//!
//! The rightmost tile of each level is usually *partial* (1 to 255 hashes)
//! and is named with a `.p/<W>` suffix, so that a file name always denotes one
//! immutable content. Entry bundles (the log entries themselves, big-endian
//! `u16` length-prefixed) are laid out exactly like level-0 tiles.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::{HASH_SIZE, Hash, NodeId, NodeSource, root_of, shr};

/// Node levels per tile level.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile (`2^TILE_HEIGHT`).
pub const TILE_WIDTH: u16 = 256;
/// Largest tile level a path may carry.
pub const MAX_TILE_LEVEL: u8 = 63;

/// What a tile holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Hashes of node level `8 * level`: `tile/<L>/...`.
    Hashes {
        /// Tile level, `0..=63`.
        level: u8,
    },
    /// Log entries, parallel to level-0 tiles: `tile/entries/...`.
    Entries,
}

/// A tile or entry bundle, full or partial.
///
/// Fields are private so that every value is valid (level at most 63, width
/// between 1 and 256) and therefore has a well-formed path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileId {
    kind: TileKind,
    index: u64,
    width: u16,
}

/// Why a tile path or tile coordinates were rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum TilePathError {
    /// The path does not start with `tile/`.
    #[error("tile path must start with \"tile/\"")]
    Prefix,
    /// Bad level: not a decimal in `0..=63` without leading zeros.
    #[error("invalid tile level")]
    Level,
    /// Bad index: not `x`-prefixed groups of three digits ending in a plain
    /// group, or too large for 64 bits.
    #[error("invalid tile index")]
    Index,
    /// Bad partial width: not a decimal in `1..=255` without leading zeros.
    #[error("invalid tile width")]
    Width,
    /// Well-formed pieces that do not spell the canonical path, such as an
    /// all-zero leading group (`x000/005` for `005`).
    #[error("non-canonical tile path")]
    NonCanonical,
}

impl TileId {
    /// Tile of hashes at `level`, index `index`, holding `width` hashes
    /// (256 for a full tile).
    pub fn hashes(level: u8, index: u64, width: u16) -> Result<Self, TilePathError> {
        if level > MAX_TILE_LEVEL {
            return Err(TilePathError::Level);
        }
        Self::new(TileKind::Hashes { level }, index, width)
    }

    /// Entry bundle `index`, holding `width` entries (256 when full).
    pub fn entries(index: u64, width: u16) -> Result<Self, TilePathError> {
        Self::new(TileKind::Entries, index, width)
    }

    fn new(kind: TileKind, index: u64, width: u16) -> Result<Self, TilePathError> {
        if width == 0 || width > TILE_WIDTH {
            return Err(TilePathError::Width);
        }
        Ok(Self { kind, index, width })
    }

    /// What the tile holds.
    pub fn kind(&self) -> TileKind {
        self.kind
    }

    /// Position of the tile within its level.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Number of hashes or entries, `1..=256`.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile holds all 256 hashes or entries.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The level-0 tile with the same index and width, or the entry bundle
    /// for a level-0 tile; `None` for hash tiles above level 0.
    pub fn counterpart(&self) -> Option<Self> {
        let kind = match self.kind {
            TileKind::Entries => TileKind::Hashes { level: 0 },
            TileKind::Hashes { level: 0 } => TileKind::Entries,
            TileKind::Hashes { .. } => return None,
        };
        Some(Self { kind, ..*self })
    }

    /// The path relative to the log prefix, e.g. `tile/0/x001/x234/067.p/8`.
    pub fn path(&self) -> String {
        let mut path = String::from("tile/");
        match self.kind {
            TileKind::Hashes { level } => path.push_str(&level.to_string()),
            TileKind::Entries => path.push_str("entries"),
        }
        path.push('/');
        path.push_str(&index_path(self.index));
        if !self.is_full() {
            path.push_str(".p/");
            path.push_str(&self.width.to_string());
        }
        path
    }

    /// Parses a path relative to the log prefix, accepting only the canonical
    /// spelling so that each tile has exactly one name.
    pub fn parse(path: &str) -> Result<Self, TilePathError> {
        let rest = path.strip_prefix("tile/").ok_or(TilePathError::Prefix)?;
        let mut segments: Vec<&str> = rest.split('/').collect();
        let first = segments.remove(0);
        let kind = if first == "entries" {
            TileKind::Entries
        } else {
            let level = parse_decimal(first, 2).ok_or(TilePathError::Level)?;
            match u8::try_from(level) {
                Ok(level) if level <= MAX_TILE_LEVEL => TileKind::Hashes { level },
                _ => return Err(TilePathError::Level),
            }
        };

        // A partial tile's last index group carries ".p", and the width
        // follows as one more segment.
        let mut width = TILE_WIDTH;
        if segments.len() >= 2 {
            let n = segments.len();
            if let Some(group) = segments[n - 2].strip_suffix(".p") {
                let w = parse_decimal(segments[n - 1], 3).ok_or(TilePathError::Width)?;
                width = match u16::try_from(w) {
                    Ok(w) if (1..TILE_WIDTH).contains(&w) => w,
                    _ => return Err(TilePathError::Width),
                };
                segments[n - 2] = group;
                segments.truncate(n - 1);
            }
        }

        let (last, groups) = segments.split_last().ok_or(TilePathError::Index)?;
        let mut index: u64 = 0;
        for group in groups {
            let digits = group.strip_prefix('x').ok_or(TilePathError::Index)?;
            index = push_group(index, digits).ok_or(TilePathError::Index)?;
        }
        index = push_group(index, last).ok_or(TilePathError::Index)?;

        let tile = Self::new(kind, index, width)?;
        // Remaining freedom: redundant all-zero leading groups.
        if tile.path() != path {
            return Err(TilePathError::NonCanonical);
        }
        Ok(tile)
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

impl FromStr for TileId {
    type Err = TilePathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Parses a decimal of at most `max_digits` ASCII digits with no leading
/// zeros (except "0" itself).
fn parse_decimal(s: &str, max_digits: usize) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= max_digits
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.bytes().fold(0, |acc, b| acc * 10 + u64::from(b - b'0')))
}

/// Appends a three-digit group to `acc`, or `None` if malformed or too large.
fn push_group(acc: u64, digits: &str) -> Option<u64> {
    if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let group = digits
        .bytes()
        .fold(0, |acc, b| acc * 10 + u64::from(b - b'0'));
    acc.checked_mul(1000)?.checked_add(group)
}

/// Encodes a tile index as path segments: zero-padded groups of three
/// digits, all but the last prefixed with `x` (1234067 → `x001/x234/067`).
///
/// The `x` keeps directory names and file names apart, so tiles can be
/// stored as plain files and served directly.
pub fn index_path(index: u64) -> String {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut out = String::new();
    for (i, group) in groups.iter().rev().enumerate() {
        if i > 0 {
            out.push('/');
        }
        if i + 1 < groups.len() {
            out.push('x');
        }
        out.push_str(&format!("{group:03}"));
    }
    out
}

/// The tile `(level, index)` as it exists in a tree of `size` leaves: full,
/// partial with its width, or `None` if the tree has no hashes there yet.
pub fn tile_for_size(level: u8, index: u64, size: u64) -> Option<TileId> {
    if level > MAX_TILE_LEVEL {
        return None;
    }
    // Number of hashes at node level 8*level in this tree.
    let hashes = shr(size, u32::from(level) * u32::from(TILE_HEIGHT));
    let start = index.checked_mul(u64::from(TILE_WIDTH))?;
    let width = hashes.checked_sub(start)?.min(u64::from(TILE_WIDTH));
    let width = u16::try_from(width).ok()?;
    TileId::hashes(level, index, width).ok()
}

/// Tiles at one level of a tree, as described in the specification's
/// example ("273 full level 0 tiles, one partial level 0 tile of width 112").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelLayout {
    /// Tile level.
    pub level: u8,
    /// Number of full tiles, indices `0..full`.
    pub full: u64,
    /// Width of the partial tile at index `full`, if there is one.
    pub partial: Option<u16>,
}

/// The tiles making up a tree of `size` leaves, lowest level first.
///
/// Entry bundles follow the level-0 layout.
pub fn layout(size: u64) -> Vec<LevelLayout> {
    let mut out = Vec::new();
    let mut hashes = size; // hashes at node level 8*level
    let mut level = 0u8;
    while hashes > 0 {
        let partial = (hashes % u64::from(TILE_WIDTH)) as u16;
        out.push(LevelLayout {
            level,
            full: hashes / u64::from(TILE_WIDTH),
            partial: (partial > 0).then_some(partial),
        });
        hashes /= u64::from(TILE_WIDTH);
        level += 1;
    }
    out
}

/// The hash tiles that differ between trees of `old_size` and `new_size`
/// leaves, i.e. what a sequencer must write (with their new widths) after
/// integrating leaves `[old_size, new_size)`. Entry bundles to write are the
/// [`counterpart`](TileId::counterpart)s of the level-0 tiles returned.
pub fn changed_tiles(old_size: u64, new_size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    if new_size <= old_size {
        return out;
    }
    for lvl in layout(new_size) {
        let count = lvl.full + u64::from(lvl.partial.is_some());
        // Tiles wholly before the old size's last (possibly partial) tile
        // were already full and cannot change.
        let first = lvl.full.min(shr(
            old_size,
            (u32::from(lvl.level) + 1) * u32::from(TILE_HEIGHT),
        ));
        for index in first..count {
            let new = tile_for_size(lvl.level, index, new_size);
            if new != tile_for_size(lvl.level, index, old_size) {
                out.extend(new);
            }
        }
    }
    out
}

/// Where a node's hash is found in the tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLocation {
    /// Tile level (`node level / 8`).
    pub tile_level: u8,
    /// Tile index within that level.
    pub tile_index: u64,
    /// Position of the first tile hash covered by the node.
    pub offset: u8,
    /// Number of tile hashes the node covers: 1 when the node is stored in the
    /// tile itself, `2^(level % 8)` when it must be recomputed from them.
    pub span: u16,
}

impl NodeLocation {
    /// Smallest tile width that contains the node.
    pub fn min_width(&self) -> u16 {
        u16::from(self.offset) + self.span
    }
}

/// Locates complete node `id` in the tiles.
pub fn node_location(id: NodeId) -> NodeLocation {
    let sub = u32::from(id.level % TILE_HEIGHT);
    let per_tile = u32::from(TILE_HEIGHT) - sub; // log2 of nodes per tile
    NodeLocation {
        tile_level: id.level / TILE_HEIGHT,
        tile_index: id.index >> per_tile,
        offset: ((id.index << sub) & 0xff) as u8,
        span: 1 << sub,
    }
}

/// Computes the hash of a node from the hashes of the tile that holds it,
/// or `None` if the tile is too short.
pub fn hash_in_tile(tile: &[Hash], loc: &NodeLocation) -> Option<Hash> {
    let start = usize::from(loc.offset);
    let covered = tile.get(start..start + usize::from(loc.span))?;
    // The span is a power of two, so this is a complete subtree.
    Some(root_of(covered))
}

/// Reads the hashes of `tile` from a node source, e.g. to publish tiles from
/// a [`MemoryTree`](super::MemoryTree).
///
/// For an entry bundle this returns the leaf hashes of its entries (its
/// level-0 counterpart), which is what a bundle is checked against.
pub fn tile_hashes<S: NodeSource + ?Sized>(src: &S, tile: &TileId) -> Result<Vec<Hash>, S::Error> {
    let level = match tile.kind {
        TileKind::Hashes { level } => level,
        TileKind::Entries => 0,
    };
    let node_level = level * TILE_HEIGHT;
    let base = tile.index * u64::from(TILE_WIDTH);
    let ids: Vec<NodeId> = (0..u64::from(tile.width))
        .map(|i| NodeId::new(node_level, base + i))
        .collect();
    src.nodes(&ids)
}

/// Serializes tile hashes: their concatenation.
pub fn encode_tile(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// Why tile contents were rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("tile has {got} bytes, want {want}")]
pub struct TileDataError {
    /// Bytes received.
    pub got: usize,
    /// Bytes a tile of the expected width has.
    pub want: usize,
}

/// Parses the contents of a hash tile of `width` hashes, which must be
/// exactly `32 * width` bytes (a tile's width is known from its path).
pub fn decode_tile(data: &[u8], width: u16) -> Result<Vec<Hash>, TileDataError> {
    let want = usize::from(width) * HASH_SIZE;
    if data.len() != want {
        return Err(TileDataError {
            got: data.len(),
            want,
        });
    }
    Ok(data
        .chunks_exact(HASH_SIZE)
        .map(|chunk| {
            let mut h = [0u8; HASH_SIZE];
            h.copy_from_slice(chunk);
            h
        })
        .collect())
}

/// Errors of [`TileSource`].
#[derive(Debug, Error)]
pub enum TileSourceError<E> {
    /// The node is not a complete node of the tree of the given size.
    #[error("node {0} is not in the tree")]
    NotInTree(NodeId),
    /// The fetched tile holds fewer hashes than its ID says.
    #[error("tile {0} is shorter than its width")]
    ShortTile(TileId),
    /// Fetching the tile failed.
    #[error("failed to fetch tile")]
    Fetch(#[source] E),
}

/// A [`NodeSource`] over the tiles of a tree of a fixed size, which is how a
/// client (or a server without a node table) answers proof requests.
///
/// `fetch` is called once per node with the tile, at the width it has in this
/// tree, that holds the node; it should cache, since the nodes of one proof
/// often share tiles.
pub struct TileSource<F> {
    size: u64,
    fetch: F,
}

impl<F, E> TileSource<F>
where
    F: Fn(&TileId) -> Result<Vec<Hash>, E>,
{
    /// Reads nodes of the tree of `size` leaves through `fetch`.
    pub fn new(size: u64, fetch: F) -> Self {
        Self { size, fetch }
    }
}

impl<F, E> NodeSource for TileSource<F>
where
    F: Fn(&TileId) -> Result<Vec<Hash>, E>,
{
    type Error = TileSourceError<E>;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        let id = NodeId::new(level, index);
        let loc = node_location(id);
        let tile = tile_for_size(loc.tile_level, loc.tile_index, self.size)
            .filter(|t| t.width() >= loc.min_width())
            .ok_or(TileSourceError::NotInTree(id))?;
        let hashes = (self.fetch)(&tile).map_err(TileSourceError::Fetch)?;
        hash_in_tile(&hashes, &loc).ok_or(TileSourceError::ShortTile(tile))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MemoryTree, consistency_proof, inclusion_proof, leaf_hash};
    use super::*;

    fn tile(level: u8, index: u64, width: u16) -> TileId {
        TileId::hashes(level, index, width).expect("valid tile")
    }

    // Examples from C2SP/C2SP tlog-tiles.md (https://c2sp.org/tlog-tiles).
    #[test]
    fn spec_examples() {
        assert_eq!(index_path(1234067), "x001/x234/067");
        assert_eq!(tile(0, 1234067, 256).path(), "tile/0/x001/x234/067");

        // "a tree of size 70,000 will be represented by 273 full level 0
        // tiles, one partial level 0 tile of width 112, one full level 1
        // tile, one partial level 1 tile of width 17, and one partial level 2
        // tile of width 1."
        let l = |level, full, partial| LevelLayout {
            level,
            full,
            partial,
        };
        assert_eq!(
            layout(70_000),
            vec![l(0, 273, Some(112)), l(1, 1, Some(17)), l(2, 0, Some(1))]
        );
        // "a tree of size 256 will be represented by a full level 0 tile and
        // a partial level 1 tile of width 1."
        assert_eq!(layout(256), vec![l(0, 1, None), l(1, 0, Some(1))]);
        assert_eq!(layout(0), vec![]);

        assert_eq!(tile_for_size(0, 273, 70_000), Some(tile(0, 273, 112)));
        assert_eq!(tile_for_size(0, 272, 70_000), Some(tile(0, 272, 256)));
        assert_eq!(tile_for_size(0, 274, 70_000), None);
        assert_eq!(tile_for_size(2, 0, 70_000), Some(tile(2, 0, 1)));
        assert_eq!(tile_for_size(3, 0, 70_000), None);
    }

    #[test]
    fn paths() {
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(5), "005");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(index_path(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
        assert_eq!(tile(1, 3, 17).path(), "tile/1/003.p/17");
        assert_eq!(
            TileId::entries(1234067, 8).expect("valid").path(),
            "tile/entries/x001/x234/067.p/8"
        );
        assert_eq!(
            TileId::entries(7, 256).expect("valid").to_string(),
            "tile/entries/007"
        );
        assert_eq!(TileId::hashes(64, 0, 1), Err(TilePathError::Level));
        assert_eq!(TileId::hashes(0, 0, 0), Err(TilePathError::Width));
        assert_eq!(TileId::entries(0, 257), Err(TilePathError::Width));
        assert_eq!(
            tile(0, 4, 9).counterpart(),
            Some(TileId::entries(4, 9).expect("valid"))
        );
        assert_eq!(tile(1, 4, 9).counterpart(), None);
    }

    #[test]
    fn parse_accepts_canonical_paths() {
        let good = [
            "tile/0/000",
            "tile/0/001",
            "tile/63/999",
            "tile/0/x001/000",
            "tile/0/x001/x234/067",
            "tile/0/x001/x234/067.p/1",
            "tile/12/x001/x234/067.p/255",
            "tile/entries/000",
            "tile/entries/x999/999.p/8",
            "tile/0/x018/x446/x744/x073/x709/x551/615",
        ];
        for path in good {
            let parsed: TileId = path.parse().expect(path);
            assert_eq!(parsed.path(), path);
        }
        let t = TileId::parse("tile/2/x001/x234/067.p/8").expect("valid");
        assert_eq!(t.kind(), TileKind::Hashes { level: 2 });
        assert_eq!((t.index(), t.width(), t.is_full()), (1234067, 8, false));
        assert_eq!(
            TileId::parse("tile/0/x018/x446/x744/x073/x709/x551/615").map(|t| t.index()),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn parse_rejects_malformed_paths() {
        use TilePathError::*;
        let bad = [
            ("", Prefix),
            ("/tile/0/000", Prefix),
            ("tiles/0/000", Prefix),
            ("tile/00/000", Level),
            ("tile/01/000", Level),
            ("tile/64/000", Level),
            ("tile/100/000", Level),
            ("tile/-1/000", Level),
            ("tile/+1/000", Level),
            ("tile//000", Level),
            ("tile/0", Index),
            ("tile/0/", Index),
            ("tile/0/0", Index),
            ("tile/0/00", Index),
            ("tile/0/0000", Index),
            ("tile/0/1234", Index),
            ("tile/0/+12", Index),
            ("tile/0/x000", Index),
            ("tile/0/001/234", Index),
            ("tile/0/x001/x234", Index),
            ("tile/0/x01/234", Index),
            ("tile/0/x001/234/", Index),
            ("tile/0/000.p", Index),
            ("tile/0/000.p/1/2", Index),
            ("tile/0/x001.p/5", Index),
            ("tile/0/x018/x446/x744/x073/x709/x551/616", Index),
            ("tile/0/x001/x000/x000/x000/x000/x000/x000/000", Index),
            ("tile/0/000.p/0", Width),
            ("tile/0/000.p/00", Width),
            ("tile/0/000.p/08", Width),
            ("tile/0/000.p/256", Width),
            ("tile/0/000.p/1000", Width),
            ("tile/0/000.p/", Width),
            ("tile/0/000.p/+5", Width),
            ("tile/entries/000.p/0", Width),
            ("tile/0/x000/005", NonCanonical),
            ("tile/entries/x000/x000/999", NonCanonical),
        ];
        for (path, want) in bad {
            assert_eq!(TileId::parse(path), Err(want), "{path:?}");
        }
    }

    #[test]
    fn node_locations() {
        let loc = |level, index| node_location(NodeId::new(level, index));
        let nl = |tile_level, tile_index, offset, span| NodeLocation {
            tile_level,
            tile_index,
            offset,
            span,
        };
        assert_eq!(loc(0, 300), nl(0, 1, 44, 1));
        assert_eq!(loc(8, 3), nl(1, 0, 3, 1));
        // Node (3, 40) covers leaves [320, 328): hashes 64..72 of tile 0/1.
        assert_eq!(loc(3, 40), nl(0, 1, 64, 8));
        assert_eq!(loc(7, 1), nl(0, 0, 128, 128));
        assert_eq!(loc(15, 3), nl(1, 1, 128, 128));
        assert_eq!(loc(3, 40).min_width(), 72);
    }

    #[test]
    fn changed_tiles_match_brute_force() {
        // A tile changes exactly when its width at the two sizes differs.
        let key = |t: &TileId| (format!("{:?}", t.kind()), t.index());
        for old in (0..700u64).step_by(7) {
            for new in [old, old + 1, old + 255, old + 256, old + 300, 1023] {
                let mut want = Vec::new();
                if new > old {
                    for level in 0..3u8 {
                        for index in 0..8u64 {
                            let t = tile_for_size(level, index, new);
                            if t != tile_for_size(level, index, old) {
                                want.extend(t);
                            }
                        }
                    }
                }
                let mut got = changed_tiles(old, new);
                got.sort_by_key(key);
                want.sort_by_key(key);
                assert_eq!(got, want, "{old} -> {new}");
            }
        }
        assert_eq!(changed_tiles(70_000, 70_001), vec![tile(0, 273, 113)]);
        assert_eq!(
            changed_tiles(255, 256),
            vec![tile(0, 0, 256), tile(1, 0, 1)]
        );
        assert_eq!(changed_tiles(256, 257), vec![tile(0, 1, 1)]);
        assert_eq!(changed_tiles(5, 5), vec![]);
    }

    #[test]
    fn tile_encoding_round_trips() {
        let hashes: Vec<Hash> = (0u8..3).map(|i| [i; 32]).collect();
        let bytes = encode_tile(&hashes);
        assert_eq!(bytes.len(), 96);
        assert_eq!(decode_tile(&bytes, 3), Ok(hashes));
        assert_eq!(
            decode_tile(&bytes[..95], 3),
            Err(TileDataError { got: 95, want: 96 })
        );
    }

    #[test]
    fn proofs_from_tiles_match_memory_tree() {
        const SIZE: u64 = 70_000;
        let tree = MemoryTree::from_leaves((0..SIZE).map(|i| leaf_hash(&i.to_be_bytes())));

        // Tiles published for the full tree have the widths of the layout.
        for lvl in layout(SIZE) {
            if let Some(w) = lvl.partial {
                let t = tile(lvl.level, lvl.full, w);
                assert_eq!(tile_hashes(&tree, &t).expect("tile").len(), usize::from(w));
            }
        }
        let bundle = TileId::entries(2, 10).expect("valid");
        assert_eq!(
            tile_hashes(&tree, &bundle).expect("leaves"),
            tree.leaves()[512..522].to_vec()
        );
        assert_eq!(
            tile_hashes(&tree, &tile(3, 0, 1)),
            Err(super::super::MissingNode(NodeId::new(24, 0)))
        );

        let fetch = |t: &TileId| tile_hashes(&tree, t);
        for size in [1, 255, 256, 257, 65_535, 65_536, 65_537, 69_999, SIZE] {
            let src = TileSource::new(size, fetch);
            for index in [0, 1, size / 3, size / 2, size - 1] {
                if index >= size {
                    continue;
                }
                assert_eq!(
                    inclusion_proof(&src, index, size).expect("tiles"),
                    inclusion_proof(&tree, index, size).expect("memory"),
                    "inclusion {index} in {size}"
                );
            }
            for size1 in [1, 2, 255, 256, 300, size / 2, size - 1] {
                if size1 <= size {
                    assert_eq!(
                        consistency_proof(&src, size1, size).expect("tiles"),
                        consistency_proof(&tree, size1, size).expect("memory"),
                        "consistency {size1} -> {size}"
                    );
                }
            }
        }
        // Nodes beyond the tree's size are refused rather than misread.
        let src = TileSource::new(300, fetch);
        assert!(matches!(
            src.node(0, 300),
            Err(TileSourceError::NotInTree(_))
        ));
        assert!(matches!(src.node(6, 4), Err(TileSourceError::NotInTree(_))));
        assert!(src.node(5, 8).is_ok());
    }
}
