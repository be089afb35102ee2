//! The name an instance holds its sequencer leases under.
//!
//! Without a state directory, a fresh name per process (host, pid, random): a process restarted
//! after a crash is a new holder, and takes each tree's lease only once its predecessor's has
//! run out (`lease_ttl_ms`), answering appends with 503 until then.
//!
//! With one, the same name across restarts: kept in `<state_dir>/instance-id`, and claimed for
//! the life of the process by an exclusive `flock(2)` on `<state_dir>/instance.lock`. A process
//! that systemd restarts after a crash is then the holder its predecessor was, and renews that
//! lease at once. The lock is what makes sharing a name safe: only the process holding it uses
//! the name, and the kernel drops the lock when that process dies, so two live processes never
//! hold leases under one name. A second process on the same state directory (a standby sharing
//! it) cannot take the lock and gets a fresh name, as without a state directory. A transaction
//! the dead process left in flight cannot fork the tree either way: a batch commits only while
//! the tree is still at the size it was built on.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

/// The name, and the lock that reserves it (held while this lives).
#[derive(Debug)]
pub struct InstanceName {
    pub name: String,
    /// Whether the name is the state directory's (kept across restarts).
    pub persistent: bool,
    _lock: Option<File>,
}

/// The lease holder name for this process: the state directory's if it can claim it, a fresh
/// one otherwise (and why, for the log).
pub fn claim(state_dir: Option<&Path>) -> (InstanceName, Option<String>) {
    let fresh = |why: Option<String>| {
        (
            InstanceName {
                name: super::default_instance_id(),
                persistent: false,
                _lock: None,
            },
            why,
        )
    };
    let Some(dir) = state_dir else {
        return fresh(None);
    };
    match claim_in(dir) {
        Ok(Some(n)) => (n, None),
        Ok(None) => fresh(Some(format!(
            "another running tlog holds {}: this one takes a fresh lease holder name, so after a \
             crash it waits for its old leases to run out",
            dir.join("instance.lock").display()
        ))),
        Err(e) => fresh(Some(format!(
            "cannot claim a lasting lease holder name in {}: {e}; using a fresh one",
            dir.display()
        ))),
    }
}

fn claim_in(dir: &Path) -> std::io::Result<Option<InstanceName>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(dir)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join("instance.lock"))?;
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if std::io::Error::from(e).kind() == std::io::ErrorKind::WouldBlock => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    // Read under the lock, so two processes starting together agree on the one name.
    let path = dir.join("instance-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(s) if valid_id(s.trim()) => s.trim().to_owned(),
        Ok(_) | Err(_) => {
            let mut r = [0u8; 8];
            getrandom::getrandom(&mut r).map_err(std::io::Error::other)?;
            let id = hex::encode(r);
            let tmp = dir.join("instance-id.tmp");
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            writeln!(f, "{id}")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            id
        }
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    Ok(Some(InstanceName {
        name: format!("{host}:{id}"),
        persistent: true,
        _lock: Some(lock),
    }))
}

fn valid_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_lasts_across_restarts_and_is_never_shared_by_two_live_processes() {
        let dir = tempfile::tempdir().expect("dir");
        let (first, why) = claim(Some(dir.path()));
        assert!(first.persistent && why.is_none(), "{why:?}");
        // A second claimant while the first lives: a fresh name, and the reason.
        let (second, why) = claim(Some(dir.path()));
        assert!(!second.persistent);
        assert_ne!(second.name, first.name);
        assert!(why.expect("why").contains("another running tlog"));
        // The first gone (its lock dropped), the next one is the same holder.
        let name = first.name.clone();
        drop(first);
        let (again, _) = claim(Some(dir.path()));
        assert!(again.persistent);
        assert_eq!(again.name, name);
        // No state directory: a fresh name each time.
        assert_ne!(claim(None).0.name, claim(None).0.name);
    }
}
