-- Lookups by leaf hash. Most trees deduplicate by the leaf hash itself (identity = leaf), so the
-- unique identity index already finds their entries; only entries whose identity differs from
-- their leaf hash (CT: identity = the certificate, leaf = the timestamped entry) need a row here.
-- This replaces the entries_leaf index, which cost every append a second random-key index write.
CREATE TABLE IF NOT EXISTS leaf_index (
  tree_id BIGINT UNSIGNED NOT NULL,
  leaf_hash BINARY(32) NOT NULL,
  idx BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (tree_id, leaf_hash, idx)
) ENGINE=InnoDB;

INSERT IGNORE INTO leaf_index (tree_id, leaf_hash, idx)
  SELECT tree_id, leaf_hash, idx FROM entries WHERE leaf_hash <> identity_hash;

ALTER TABLE entries DROP INDEX IF EXISTS entries_leaf;
