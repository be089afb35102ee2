-- Rekor's search index: lookup key -> log entries. `k` is SHA-256 of the lower-cased key text
-- (an artifact digest "sha256:<hex>", a public-key fingerprint, an email, a SAN), so any key fits
-- a fixed-width primary key.
CREATE TABLE IF NOT EXISTS rekor_index (
    k         BINARY(32)      NOT NULL,
    log_index BIGINT UNSIGNED NOT NULL,
    uuid      BINARY(32)      NOT NULL,
    PRIMARY KEY (k, log_index)
) ENGINE=InnoDB;

-- How far the index follows the log: every entry below next_index is indexed. Advanced in the
-- same transaction as the rows it covers, so a crash never leaves a gap behind the mark.
CREATE TABLE IF NOT EXISTS rekor_indexer (
    tree_id    BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    next_index BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB;
