-- The Merkle log service's tables (sigvault tlog). One database for the tlog service.

-- A tree: created once, with the public key that signs its checkpoints. `size`, `root` and
-- `checkpoint` are the latest integrated state; they only change together with the entries and
-- tiles they describe, in one transaction (compare-and-set on `size`).
CREATE TABLE IF NOT EXISTS trees (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  origin VARCHAR(255) NOT NULL,
  key_spki VARBINARY(1024) NOT NULL,
  created_at DATETIME(6) NOT NULL,
  size BIGINT UNSIGNED NOT NULL,
  root BINARY(32) NOT NULL,
  checkpoint TEXT NOT NULL,
  updated_at DATETIME(6) NOT NULL,
  UNIQUE KEY trees_name (name)
) ENGINE=InnoDB;

-- Entries by index. `identity_hash` is what deduplicates (the personality chooses it; the leaf
-- hash by default).
CREATE TABLE IF NOT EXISTS entries (
  tree_id BIGINT UNSIGNED NOT NULL,
  idx BIGINT UNSIGNED NOT NULL,
  leaf_hash BINARY(32) NOT NULL,
  identity_hash BINARY(32) NOT NULL,
  data MEDIUMBLOB NOT NULL,
  PRIMARY KEY (tree_id, idx),
  UNIQUE KEY entries_identity (tree_id, identity_hash),
  KEY entries_leaf (tree_id, leaf_hash)
) ENGINE=InnoDB;

-- C2SP tlog-tiles hash tiles: the latest content of each tile (a partial tile grows in place;
-- any narrower version is a prefix of it, so every published width can be served).
CREATE TABLE IF NOT EXISTS tiles (
  tree_id BIGINT UNSIGNED NOT NULL,
  level TINYINT UNSIGNED NOT NULL,
  idx BIGINT UNSIGNED NOT NULL,
  hashes MEDIUMBLOB NOT NULL,
  PRIMARY KEY (tree_id, level, idx)
) ENGINE=InnoDB;

-- One active sequencer per tree: whoever holds an unexpired lease.
CREATE TABLE IF NOT EXISTS leases (
  tree_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  holder VARCHAR(128) NOT NULL,
  expires_at DATETIME(6) NOT NULL
) ENGINE=InnoDB;
