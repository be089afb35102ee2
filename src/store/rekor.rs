//! Rekor's search index on MariaDB (its own database and migrations, apart from the tlog's).
//!
//! The index follows the log: [`IndexStore::apply`] writes the rows of a run of entries and
//! moves the `next_index` mark past them in one transaction. Rows are keyed by (key, index), so
//! writing a run twice (two rekor instances, or a retry after a crash) changes nothing.

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::mysql::MySqlPool;

use super::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/rekor_migrations");

/// One entry's index rows.
#[derive(Debug, Clone)]
pub struct IndexedEntry {
    pub log_index: u64,
    pub uuid: [u8; 32],
    pub keys: Vec<String>,
}

/// The rekor index database.
#[derive(Clone)]
pub struct IndexStore {
    pool: MySqlPool,
}

/// The row key of an index key text.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.to_lowercase().as_bytes()).into()
}

impl IndexStore {
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Self, StoreError> {
        Ok(Self {
            pool: super::connect_pool(url, max_connections).await?,
        })
    }

    /// The database server's settings that matter to sigvault ([`super::server_advice`]).
    pub async fn server_advice(&self) -> Result<Vec<String>, StoreError> {
        super::server_advice(&self.pool).await
    }

    /// Create or upgrade the index tables.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Db(format!("migration failed: {e}")))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Every entry below this index is indexed.
    pub async fn next_index(&self, tree_id: u64) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT next_index FROM rekor_indexer WHERE tree_id = ?")
            .bind(tree_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("next_index")?,
            None => 0,
        })
    }

    /// Index `entries` (which cover `[from, to)` of the log, gaps being entries with no keys) and
    /// move the mark to `to`, atomically. A mark already past `to` is left alone.
    pub async fn apply(
        &self,
        tree_id: u64,
        to: u64,
        entries: &[IndexedEntry],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<([u8; 32], u64, [u8; 32])> = entries
            .iter()
            .flat_map(|e| e.keys.iter().map(|k| (key_hash(k), e.log_index, e.uuid)))
            .collect();
        for chunk in rows.chunks(500) {
            let mut q = String::from("INSERT IGNORE INTO rekor_index (k, log_index, uuid) VALUES ");
            for i in 0..chunk.len() {
                q.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
            }
            let mut query = sqlx::query(&q);
            for (k, i, u) in chunk {
                query = query.bind(&k[..]).bind(*i).bind(&u[..]);
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO rekor_indexer (tree_id, next_index) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE next_index = GREATEST(next_index, VALUES(next_index))",
        )
        .bind(tree_id)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Entries (index, uuid) filed under `key`, at most `limit`, oldest first.
    pub async fn lookup(&self, key: &str, limit: u32) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        let rows = sqlx::query(
            "SELECT log_index, uuid FROM rekor_index WHERE k = ? ORDER BY log_index LIMIT ?",
        )
        .bind(&key_hash(key)[..])
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let i: u64 = r.try_get("log_index")?;
                let u: Vec<u8> = r.try_get("uuid")?;
                let u: [u8; 32] = u
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("index uuid is not 32 bytes".into()))?;
                Ok((i, u))
            })
            .collect()
    }
}
