//! MariaDB storage for the Merkle log service, through sqlx. The only module that names sqlx.
//!
//! Writes happen in exactly two places, each one transaction: [`Store::create_tree`] and
//! [`Store::commit_batch`]. A batch commit re-checks, under row locks, that the caller still holds
//! the tree's lease and that the tree is still at the size the caller extended; entries, tiles and
//! the new checkpoint then become visible together or not at all. That is what keeps a crash, a
//! lost connection or a second sequencer from ever forking the tree.

pub mod rekor;

use std::collections::HashMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{Acquire, Row};

use crate::merkle::Hash;
use crate::tlog::storage::LogStorage;
/// The value types of the log's storage seam, defined by the log ([`crate::tlog::storage`]).
pub use crate::tlog::storage::{
    AuditEntry, NewEntry, NewHead, StoreError, StoredEntry, TileWrite, TreeRow,
};

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e.to_string()),
            _ => Self::Db(e.to_string()),
        }
    }
}

fn hash_of(v: Vec<u8>, what: &str) -> Result<Hash, StoreError> {
    Hash::try_from(v.as_slice()).map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

/// Handle on the tlog database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: MySqlPool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations");

impl Store {
    /// Connect to `url` (`mysql://user:password@host:port/database`).
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Self, StoreError> {
        Ok(Self {
            pool: connect_pool(url, max_connections).await?,
        })
    }

    /// Apply the embedded migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Db(format!("migration failed: {e}")))
    }

    /// Close the pool (tests; graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The database server's settings that matter to sigvault ([`server_advice`]).
    pub async fn server_advice(&self) -> Result<Vec<String>, StoreError> {
        server_advice(&self.pool).await
    }

    /// Liveness of the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Look a tree up by name.
    pub async fn tree(&self, name: &str) -> Result<Option<TreeRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, origin, key_spki, size, root, checkpoint FROM trees WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<TreeRow, StoreError> {
            Ok(TreeRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                origin: r.try_get("origin")?,
                key_spki: r.try_get("key_spki")?,
                size: r.try_get("size")?,
                root: hash_of(r.try_get("root")?, "tree root")?,
                checkpoint: r.try_get("checkpoint")?,
            })
        })
        .transpose()
    }

    /// The names of every tree in the database.
    pub async fn tree_names(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM trees ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| Ok(r.try_get("name")?)).collect()
    }

    /// Create a tree with its first entry (the sentinel), tile and checkpoint, once.
    pub async fn create_tree(
        &self,
        name: &str,
        origin: &str,
        key_spki: &[u8],
        sentinel: &NewEntry,
        tile: &TileWrite,
        head: &NewHead<'_>,
    ) -> Result<TreeRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "INSERT INTO trees (name, origin, key_spki, created_at, size, root, checkpoint, updated_at) \
             VALUES (?, ?, ?, UTC_TIMESTAMP(6), ?, ?, ?, UTC_TIMESTAMP(6))",
        )
        .bind(name)
        .bind(origin)
        .bind(key_spki)
        .bind(head.size)
        .bind(&head.root[..])
        .bind(head.checkpoint)
        .execute(&mut *tx)
        .await;
        let id = match res {
            Ok(r) => r.last_insert_id(),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                return Err(StoreError::TreeExists(name.into()));
            }
            Err(e) => return Err(e.into()),
        };
        insert_entries(&mut tx, id, std::slice::from_ref(sentinel)).await?;
        upsert_tiles(&mut tx, id, std::slice::from_ref(tile)).await?;
        sqlx::query(
            "INSERT INTO leases (tree_id, holder, expires_at) VALUES (?, '', UTC_TIMESTAMP(6))",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.tree(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("tree '{name}' vanished after creation")))
    }

    /// Take or renew the sequencer lease of `tree` for `ttl`, if it is free, expired or ours.
    pub async fn acquire_lease(
        &self,
        tree: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE leases SET holder = ?, expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND \
             WHERE tree_id = ? AND (holder = ? OR expires_at < UTC_TIMESTAMP(6))",
        )
        .bind(holder)
        .bind(ttl.as_micros() as u64)
        .bind(tree)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Give the lease up (graceful shutdown) so a standby can take over at once.
    pub async fn release_lease(&self, tree: u64, holder: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE leases SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND WHERE tree_id = ? AND holder = ?",
        )
        .bind(tree)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Existing entries' indices for these identity hashes.
    pub async fn existing_identities(
        &self,
        tree: u64,
        ids: &[Hash],
    ) -> Result<HashMap<Hash, u64>, StoreError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            let mut qb = sqlx::QueryBuilder::<sqlx::MySql>::new(
                "SELECT identity_hash, idx FROM entries WHERE tree_id = ",
            );
            qb.push_bind(tree);
            qb.push(" AND identity_hash IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(&id[..]);
            }
            qb.push(")");
            for r in qb.build().fetch_all(&self.pool).await? {
                out.insert(
                    hash_of(r.try_get("identity_hash")?, "identity hash")?,
                    r.try_get("idx")?,
                );
            }
        }
        Ok(out)
    }

    /// Commit a batch: entries, tiles and the new head, atomically, if `holder` still holds the
    /// lease and the tree is still at `old_size`.
    ///
    /// Five round trips: BEGIN, the entries, the tiles, one `UPDATE` of the tree row that is
    /// also the check (it matches only while `holder`'s lease is unexpired and the size is still
    /// `old_size`; the row locks it takes make that check and the new head one atomic step), and
    /// COMMIT. A writer that lost its lease fails at that `UPDATE`, or earlier on the new
    /// holder's rows (a duplicate index); either way nothing it wrote survives, and the failure
    /// is reported as the lost lease or the moved size it is.
    pub async fn commit_batch(
        &self,
        tree: u64,
        holder: &str,
        old_size: u64,
        entries: &[NewEntry],
        tiles: &[TileWrite],
        head: &NewHead<'_>,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let written: Result<u64, StoreError> = async {
            let mut tx = conn.begin().await?;
            insert_entries(&mut tx, tree, entries).await?;
            upsert_tiles(&mut tx, tree, tiles).await?;
            let updated = sqlx::query(
                "UPDATE trees t JOIN leases l ON l.tree_id = t.id \
                 SET t.size = ?, t.root = ?, t.checkpoint = ?, t.updated_at = UTC_TIMESTAMP(6) \
                 WHERE t.id = ? AND t.size = ? AND l.holder = ? AND l.expires_at > UTC_TIMESTAMP(6)",
            )
            .bind(head.size)
            .bind(&head.root[..])
            .bind(head.checkpoint)
            .bind(tree)
            .bind(old_size)
            .bind(holder)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                tx.commit().await?;
            }
            Ok(updated)
        }
        .await;
        // A failed transaction rolls back when its connection goes back to the pool.
        drop(conn);
        match written {
            Ok(1) => Ok(()),
            // The check did not match, or a write failed (a duplicate index is what a writer
            // that lost its lease meets): name the cause if it is one of those two.
            Ok(_) => Err(self
                .writer_conflict(tree, holder, old_size)
                .await
                .unwrap_or_else(|| {
                    StoreError::Corrupt(format!("tree {tree}: the head update matched no row"))
                })),
            Err(e) => Err(self
                .writer_conflict(tree, holder, old_size)
                .await
                .unwrap_or(e)),
        }
    }

    /// Why a batch could not commit, if another writer is the reason: the lease is not (or no
    /// longer) `holder`'s, or the tree has moved past `old_size`. `None` when neither holds or
    /// the database cannot tell.
    async fn writer_conflict(&self, tree: u64, holder: &str, old_size: u64) -> Option<StoreError> {
        let row = sqlx::query(
            "SELECT t.size, l.holder, l.expires_at > UTC_TIMESTAMP(6) AS valid \
             FROM trees t LEFT JOIN leases l ON l.tree_id = t.id WHERE t.id = ?",
        )
        .bind(tree)
        .fetch_optional(&self.pool)
        .await
        .ok()??;
        let held = matches!(
            (row.try_get::<Option<String>, _>("holder"), row.try_get::<Option<i64>, _>("valid")),
            (Ok(Some(h)), Ok(Some(1))) if h == holder
        );
        if !held {
            return Some(StoreError::LeaseLost(tree));
        }
        let size: u64 = row.try_get("size").ok()?;
        (size != old_size).then_some(StoreError::SizeMismatch {
            tree,
            expected: old_size,
            actual: size,
        })
    }

    /// Hash tiles by (level, index), as stored (latest width).
    pub async fn tiles(
        &self,
        tree: u64,
        keys: &[(u8, u64)],
    ) -> Result<HashMap<(u8, u64), Vec<u8>>, StoreError> {
        let mut out = HashMap::new();
        for chunk in keys.chunks(200) {
            let mut qb = sqlx::QueryBuilder::<sqlx::MySql>::new(
                "SELECT level, idx, hashes FROM tiles WHERE tree_id = ",
            );
            qb.push_bind(tree);
            qb.push(" AND (level, idx) IN (");
            let mut sep = qb.separated(", ");
            for (l, i) in chunk {
                sep.push("(");
                sep.push_bind_unseparated(*l);
                sep.push_unseparated(", ");
                sep.push_bind_unseparated(*i);
                sep.push_unseparated(")");
            }
            qb.push(")");
            for r in qb.build().fetch_all(&self.pool).await? {
                let level: u8 = r.try_get("level")?;
                let idx: u64 = r.try_get("idx")?;
                out.insert((level, idx), r.try_get("hashes")?);
            }
        }
        Ok(out)
    }

    /// Entries with indices in `[start, end)`, in order.
    pub async fn entries(
        &self,
        tree: u64,
        start: u64,
        end: u64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let rows = self
            .entry_rows("idx, data, extra", tree, start, end)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(StoredEntry {
                    index: r.try_get("idx")?,
                    data: r.try_get("data")?,
                    extra: r.try_get("extra")?,
                })
            })
            .collect()
    }

    /// Entries with indices in `[start, end)` in order, with the hashes stored beside them, for
    /// an integrity audit ([`crate::tlog::audit`]).
    pub async fn audit_entries(
        &self,
        tree: u64,
        start: u64,
        end: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self
            .entry_rows("idx, leaf_hash, identity_hash, data", tree, start, end)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AuditEntry {
                    index: r.try_get("idx")?,
                    leaf_hash: r.try_get("leaf_hash")?,
                    identity_hash: r.try_get("identity_hash")?,
                    data: r.try_get("data")?,
                })
            })
            .collect()
    }

    /// `columns` of the entries with indices in `[start, end)`, in order.
    async fn entry_rows(
        &self,
        columns: &'static str,
        tree: u64,
        start: u64,
        end: u64,
    ) -> Result<Vec<sqlx::mysql::MySqlRow>, StoreError> {
        let sql = format!(
            "SELECT {columns} FROM entries WHERE tree_id = ? AND idx >= ? AND idx < ? ORDER BY idx"
        );
        Ok(sqlx::query(&sql)
            .bind(tree)
            .bind(start)
            .bind(end)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Indices (the lowest few, at most `limit`) of entries below `size` whose leaf hash differs
    /// from their identity but that have no `leaf_index` row, so a lookup by leaf hash would
    /// miss them.
    pub async fn unindexed_leaves(
        &self,
        tree: u64,
        size: u64,
        limit: u32,
    ) -> Result<Vec<u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.idx FROM entries e WHERE e.tree_id = ? AND e.idx < ? \
               AND e.leaf_hash <> e.identity_hash \
               AND NOT EXISTS (SELECT 1 FROM leaf_index l \
                 WHERE l.tree_id = e.tree_id AND l.leaf_hash = e.leaf_hash AND l.idx = e.idx) \
             ORDER BY e.idx LIMIT ?",
        )
        .bind(tree)
        .bind(size)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|r| Ok(r.try_get("idx")?)).collect()
    }

    /// The lowest index of an entry with this leaf hash, if any.
    pub async fn index_of_leaf(&self, tree: u64, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        // An entry whose identity is its leaf hash is found through the identity index; the
        // others through leaf_index (see migration 0003).
        let r = sqlx::query(
            "SELECT MIN(idx) AS idx FROM ( \
               SELECT idx FROM entries WHERE tree_id = ? AND identity_hash = ? AND leaf_hash = ? \
               UNION ALL \
               SELECT idx FROM leaf_index WHERE tree_id = ? AND leaf_hash = ? \
             ) AS found",
        )
        .bind(tree)
        .bind(&leaf[..])
        .bind(&leaf[..])
        .bind(tree)
        .bind(&leaf[..])
        .fetch_one(&self.pool)
        .await?;
        Ok(r.try_get::<Option<u64>, _>("idx")?)
    }
}

/// The log engine's storage on MariaDB: each call is the inherent method of the same name.
impl LogStorage for Store {
    async fn ping(&self) -> Result<(), StoreError> {
        Store::ping(self).await
    }
    async fn tree(&self, name: &str) -> Result<Option<TreeRow>, StoreError> {
        Store::tree(self, name).await
    }
    async fn create_tree(
        &self,
        name: &str,
        origin: &str,
        key_spki: &[u8],
        sentinel: &NewEntry,
        tile: &TileWrite,
        head: &NewHead<'_>,
    ) -> Result<TreeRow, StoreError> {
        Store::create_tree(self, name, origin, key_spki, sentinel, tile, head).await
    }
    async fn acquire_lease(
        &self,
        tree: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        Store::acquire_lease(self, tree, holder, ttl).await
    }
    async fn release_lease(&self, tree: u64, holder: &str) -> Result<(), StoreError> {
        Store::release_lease(self, tree, holder).await
    }
    async fn existing_identities(
        &self,
        tree: u64,
        ids: &[Hash],
    ) -> Result<HashMap<Hash, u64>, StoreError> {
        Store::existing_identities(self, tree, ids).await
    }
    async fn commit_batch(
        &self,
        tree: u64,
        holder: &str,
        old_size: u64,
        entries: &[NewEntry],
        tiles: &[TileWrite],
        head: &NewHead<'_>,
    ) -> Result<(), StoreError> {
        Store::commit_batch(self, tree, holder, old_size, entries, tiles, head).await
    }
    async fn tiles(
        &self,
        tree: u64,
        keys: &[(u8, u64)],
    ) -> Result<HashMap<(u8, u64), Vec<u8>>, StoreError> {
        Store::tiles(self, tree, keys).await
    }
    async fn entries(
        &self,
        tree: u64,
        start: u64,
        end: u64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        Store::entries(self, tree, start, end).await
    }
    async fn audit_entries(
        &self,
        tree: u64,
        start: u64,
        end: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        Store::audit_entries(self, tree, start, end).await
    }
    async fn unindexed_leaves(
        &self,
        tree: u64,
        size: u64,
        limit: u32,
    ) -> Result<Vec<u64>, StoreError> {
        Store::unindexed_leaves(self, tree, size, limit).await
    }
    async fn index_of_leaf(&self, tree: u64, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        Store::index_of_leaf(self, tree, leaf).await
    }
}

async fn insert_entries(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    tree: u64,
    entries: &[NewEntry],
) -> Result<(), StoreError> {
    // Keep each statement well under max_allowed_packet (16 MiB by default).
    let mut start = 0;
    while start < entries.len() {
        let mut bytes = 0;
        let mut end = start;
        while end < entries.len()
            && (end == start || bytes + entries[end].data.len() < 4 << 20)
            && end - start < 1000
        {
            bytes += entries[end].data.len();
            end += 1;
        }
        let mut qb = sqlx::QueryBuilder::<sqlx::MySql>::new(
            "INSERT INTO entries (tree_id, idx, leaf_hash, identity_hash, data, extra) ",
        );
        qb.push_values(&entries[start..end], |mut b, e| {
            b.push_bind(tree)
                .push_bind(e.index)
                .push_bind(&e.leaf_hash[..])
                .push_bind(&e.identity_hash[..])
                .push_bind(&e.data[..])
                .push_bind(e.extra.as_deref());
        });
        qb.build().execute(&mut **tx).await?;
        start = end;
    }
    // Leaf-hash lookups for entries that the identity index cannot find (migration 0003).
    let other: Vec<&NewEntry> = entries
        .iter()
        .filter(|e| e.leaf_hash != e.identity_hash)
        .collect();
    for chunk in other.chunks(1000) {
        let mut qb = sqlx::QueryBuilder::<sqlx::MySql>::new(
            "INSERT INTO leaf_index (tree_id, leaf_hash, idx) ",
        );
        qb.push_values(chunk, |mut b, e| {
            b.push_bind(tree)
                .push_bind(&e.leaf_hash[..])
                .push_bind(e.index);
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn upsert_tiles(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    tree: u64,
    tiles: &[TileWrite],
) -> Result<(), StoreError> {
    for chunk in tiles.chunks(200) {
        let mut qb = sqlx::QueryBuilder::<sqlx::MySql>::new(
            "INSERT INTO tiles (tree_id, level, idx, hashes) ",
        );
        qb.push_values(chunk, |mut b, t| {
            b.push_bind(tree)
                .push_bind(t.level)
                .push_bind(t.index)
                .push_bind(&t.hashes[..]);
        });
        qb.push(" ON DUPLICATE KEY UPDATE hashes = VALUES(hashes)");
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Smallest InnoDB redo log that sigvault's write pattern runs well with. Below it InnoDB must
/// flush pages to free redo space while batches commit: with MariaDB's default (96 MiB) the CT
/// log's p99 in the services bench was 18-23 ms, with 1 GiB (config/mariadb.cnf) 12-14 ms in
/// most runs.
pub const MIN_REDO_LOG_BYTES: u64 = 512 << 20;

/// What the database server's settings mean for sigvault, one sentence each (empty when all is
/// well): the services log these at start-up. `config/mariadb.cnf` has the recommended settings.
pub async fn server_advice(pool: &MySqlPool) -> Result<Vec<String>, StoreError> {
    let row = sqlx::query(
        "SELECT CAST(@@innodb_flush_log_at_trx_commit AS UNSIGNED) AS flush, \
         CAST(@@innodb_log_file_size AS UNSIGNED) AS redo",
    )
    .fetch_one(pool)
    .await?;
    Ok(advice(row.try_get("flush")?, row.try_get("redo")?))
}

/// [`server_advice`] for given values of `innodb_flush_log_at_trx_commit` and
/// `innodb_log_file_size`.
pub fn advice(flush_log_at_trx_commit: u64, redo_log_bytes: u64) -> Vec<String> {
    let mut out = Vec::new();
    if flush_log_at_trx_commit != 1 {
        out.push(format!(
            "innodb_flush_log_at_trx_commit is {flush_log_at_trx_commit}, not 1: a commit is not \
             on disk when MariaDB acknowledges it, so a crash of the database host can lose \
             entries sigvault already acknowledged (set it to 1; see config/mariadb.cnf)"
        ));
    }
    if redo_log_bytes < MIN_REDO_LOG_BYTES {
        out.push(format!(
            "innodb_log_file_size is {} MiB: with less than {} MiB commits stall while InnoDB \
             flushes pages to free redo space, and tail latencies grow (1 GiB recommended; see \
             config/mariadb.cnf)",
            redo_log_bytes >> 20,
            MIN_REDO_LOG_BYTES >> 20
        ));
    }
    out
}

/// A connection pool for `url` (`mysql://user:password@host:port/database`); the password never
/// appears in an error.
async fn connect_pool(url: &SecretString, max_connections: u32) -> Result<MySqlPool, StoreError> {
    let opts: MySqlConnectOptions = url
        .expose_secret()
        .parse()
        .map_err(|e: sqlx::Error| StoreError::Url(redact(&e.to_string())))?;
    let pool = MySqlPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(opts.clone())
        .await;
    match pool {
        Ok(p) => Ok(p),
        // The pool retries until its timeout and keeps the reason to itself ("pool timed out"):
        // one plain connection says why (refused, access denied, unknown database, ...).
        Err(sqlx::Error::PoolTimedOut) => {
            use sqlx::ConnectOptions;
            let why = match tokio::time::timeout(Duration::from_secs(5), opts.connect()).await {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => "it answered only after 5 s of retries".into(),
                Err(_) => "no answer within 5 s".into(),
            };
            Err(StoreError::Unavailable(format!(
                "cannot connect to MariaDB at {}:{} as {}: {}",
                opts.get_host(),
                opts.get_port(),
                opts.get_username(),
                redact(&why)
            )))
        }
        Err(e) => Err(StoreError::Unavailable(redact(&e.to_string()))),
    }
}

/// Remove a password from a message that may quote a URL.
fn redact(msg: &str) -> String {
    match (msg.find("://"), msg.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://<redacted>{}", &msg[..s], &msg[at..]),
        _ => msg.to_owned(),
    }
}
