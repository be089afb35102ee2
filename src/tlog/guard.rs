//! The rollback guard: what this instance has signed, kept outside the database.
//!
//! Every checkpoint the tlog signs is a promise: the tree at that size has that root, for ever. A
//! database put back from an older backup (or pointed at the wrong database) has forgotten the
//! newest of those promises; sequencing on it would assign indices already covered by published
//! checkpoints to other entries — a fork, which every client and monitor treats as the log's
//! compromise. So each instance records, per tree, the newest head it committed (size and root)
//! in a small file in its own state directory (systemd's `StateDirectory=`), written shortly
//! after each commit (at most once a second, and at shutdown), and before it sequences a tree it
//! checks the database against that record: the database must be at least that large and have
//! the same root at that size. Otherwise it refuses the tree (it stays a standby and says why).
//!
//! The record trails the database by up to about a second of appends, so a database that lost
//! only its last second is not caught; an older backup is.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::Head;
use crate::merkle::Hash;

/// What the record of one tree says: the newest head this instance committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Witnessed {
    pub size: u64,
    pub root: Hash,
}

/// The state directory holding one record per tree (`<tree>.head`).
pub struct Witness {
    dir: PathBuf,
    /// Per tree, the largest size written so far (writes may finish out of order).
    written: Mutex<HashMap<String, u64>>,
}

impl Witness {
    /// Open (and create, mode 0700) the state directory; it must be writable.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let fail = |what: &str, e: std::io::Error| {
            format!(
                "state directory {}: cannot {what}: {e} (set [tlog] state_dir to a directory the service user owns)",
                dir.display()
            )
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail("create it", e))?;
        let probe = dir.join(".writable");
        std::fs::write(&probe, b"").map_err(|e| fail("write to it", e))?;
        let _ = std::fs::remove_file(&probe);
        Ok(Self {
            dir: dir.to_owned(),
            written: Mutex::new(HashMap::new()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, tree: &str) -> PathBuf {
        self.dir.join(format!("{tree}.head"))
    }

    /// The record of `tree`, if this instance ever committed to it.
    pub fn read(&self, tree: &str) -> Result<Option<Witnessed>, String> {
        let path = self.path(tree);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        parse(&text).map(Some).ok_or_else(|| {
            format!(
                "{} is not a head record (size and root lines)",
                path.display()
            )
        })
    }

    /// Record that this instance committed `tree` at `size` with `root`: written to a temporary
    /// file, synced and renamed over the record, so a crash leaves the old record or the new one.
    /// A size not above the one already written is skipped.
    pub fn record(&self, tree: &str, size: u64, root: &Hash) -> std::io::Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.get(tree).is_some_and(|&s| s >= size) {
            return Ok(());
        }
        let path = self.path(tree);
        let tmp = self.dir.join(format!(".{tree}.head.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("size {size}\nroot {}\n", hex::encode(root)).as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        written.insert(tree.to_owned(), size);
        Ok(())
    }
}

/// Keep `tree`'s record up to date with the heads this instance commits (published on `heads`),
/// writing at most once a second. The head `heads` holds when this starts came from the
/// database, unchecked, so it is not recorded: the sequencer publishes a head only after the
/// guard has checked the database, or after committing it.
pub(crate) async fn follow(
    witness: Arc<Witness>,
    tree: String,
    mut heads: watch::Receiver<Option<Arc<Head>>>,
) {
    heads.borrow_and_update();
    while heads.changed().await.is_ok() {
        let head = heads.borrow_and_update().clone();
        if let Some(h) = head {
            witness.record_logged(&tree, h.size, h.root).await;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

impl Witness {
    /// [`Witness::record`] off the async runtime; a failure is logged (the record then trails
    /// further behind, which weakens the guard but loses nothing).
    pub(crate) async fn record_logged(self: &Arc<Self>, tree: &str, size: u64, root: Hash) {
        let (w, t) = (Arc::clone(self), tree.to_owned());
        let error = match tokio::task::spawn_blocking(move || w.record(&t, size, &root)).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(tree, dir = %self.dir.display(), %error, "cannot write the head record");
    }
}

fn parse(text: &str) -> Option<Witnessed> {
    let mut size = None;
    let mut root = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("size", v)) => size = v.parse().ok(),
            Some(("root", v)) => root = hex::decode(v).ok()?.try_into().ok(),
            _ => return None,
        }
    }
    Some(Witnessed {
        size: size?,
        root: root?,
    })
}

/// Check a tree's database state against the record. `root_at` computes the database's root at
/// an earlier size. `Err` carries the reason to refuse the tree.
pub async fn check<F, Fut>(
    tree: &str,
    seen: &Witnessed,
    db_size: u64,
    db_root: &Hash,
    root_at: F,
) -> Result<(), String>
where
    F: FnOnce(u64) -> Fut,
    Fut: std::future::Future<Output = Result<Hash, String>>,
{
    let refuse = |why: String| {
        format!(
            "refusing to sequence tree '{tree}': {why}. Was the database restored from an older backup, \
             or is this the wrong database? Appending now would fork the log. See README, \"Backups and recovery\""
        )
    };
    if db_size < seen.size {
        return Err(refuse(format!(
            "this instance signed checkpoints up to size {}, but the database holds only {db_size} entries",
            seen.size
        )));
    }
    let root = if db_size == seen.size {
        *db_root
    } else {
        root_at(seen.size).await.map_err(|e| {
            refuse(format!(
                "cannot compute the database's root at size {} to compare with what this instance signed: {e}",
                seen.size
            ))
        })?
    };
    if root != seen.root {
        return Err(refuse(format!(
            "at size {} this instance signed root {}, but the database's tree has root {}",
            seen.size,
            hex::encode(seen.root),
            hex::encode(root)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_never_go_back() {
        let d = tempfile::tempdir().expect("tempdir");
        let w = Witness::open(&d.path().join("state")).expect("open");
        assert_eq!(w.read("t").expect("read"), None);
        w.record("t", 10, &[1; 32]).expect("record");
        w.record("t", 5, &[2; 32]).expect("record");
        assert_eq!(
            w.read("t").expect("read"),
            Some(Witnessed {
                size: 10,
                root: [1; 32]
            })
        );
        // A second process (a restart) reads what the first wrote.
        let w2 = Witness::open(&d.path().join("state")).expect("open");
        assert_eq!(w2.read("t").expect("read").map(|s| s.size), Some(10));
        std::fs::write(d.path().join("state/u.head"), "size ten\n").expect("write");
        assert!(w2.read("u").expect_err("garbage").contains("u.head"));
    }

    #[tokio::test]
    async fn check_refuses_a_shorter_or_different_tree() {
        let seen = Witnessed {
            size: 10,
            root: [7; 32],
        };
        let same = |_| async { Ok([7u8; 32]) };
        let other = |_| async { Ok([8u8; 32]) };
        assert!(check("t", &seen, 10, &[7; 32], same).await.is_ok());
        assert!(check("t", &seen, 12, &[9; 32], same).await.is_ok());
        let e = check("t", &seen, 9, &[7; 32], same)
            .await
            .expect_err("behind");
        assert!(e.contains("up to size 10") && e.contains("only 9"), "{e}");
        let e = check("t", &seen, 10, &[8; 32], same)
            .await
            .expect_err("fork");
        assert!(e.contains("at size 10"), "{e}");
        let e = check("t", &seen, 12, &[9; 32], other)
            .await
            .expect_err("fork");
        assert!(e.contains(&hex::encode([8u8; 32])), "{e}");
    }
}
