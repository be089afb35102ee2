//! The repository on disk: the files clients fetch, loaded and verified the way a client would,
//! and written so that a client never sees a half-written state.
//!
//! Layout (consistent snapshots, TUF §5 of the client workflow): `N.root.json` for every root
//! version, `N.targets.json`, `N.snapshot.json`, `timestamp.json`, `targets/<sha256>.<name>`.
//!
//! **Loading** ([`Repository::load`]) checks, in the order a client trusts them: the root chain
//! from version 1 (every version present, each signed by a threshold of its predecessor's root
//! keys and of its own), then the newest targets, snapshot and timestamp against the newest
//! root and against each other (snapshot names the newest targets by version, length and hash;
//! timestamp the newest snapshot). A broken root chain, an unparsable file or a gap is refused
//! ([`RepoError`]). A role that no longer verifies or no longer names the newest version below
//! it is [`RoleState::Stale`]: what a crash half-way through a publication leaves, or the state
//! right after the keys of that role were rotated. Stale is what the next command repairs
//! (refresh for snapshot and timestamp, publish for targets), rolling forward to a new version,
//! never back.
//!
//! **Writing** follows the order that keeps every published state whole: target files, then
//! targets, then snapshot (nothing refers to them yet), then root, then `timestamp.json` last,
//! which makes the new state visible. A versioned file is created once and never replaced (it is
//! served as immutable, and caches may hold it forever); only `timestamp.json` is replaced, by
//! an atomic rename. Every writer holds the state directory's lock ([`Lock`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::metadata::{
    Expires, Metadata, MetadataError, Payload, Role, Root, Snapshot, TargetFile, Targets, Timestamp,
};

/// Why the repository cannot be used (or created).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("no TUF repository in {0} (no 1.root.json): create one with `sigvault tuf init`")]
    NotFound(PathBuf),
    #[error(
        "{0} already holds a TUF repository (or other files): init creates a repository once, and never over an existing one"
    )]
    Exists(PathBuf),
    #[error("the repository is inconsistent: {file}: {reason}")]
    Corrupt { file: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists and differs: a published version is never replaced")]
    WouldReplace { path: PathBuf },
    #[error("another sigvault tuf command holds {0} (waited 30 s)")]
    Locked(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.into(),
        source,
    }
}

/// A role's newest file and whether it can be served as it is.
#[derive(Debug, Clone)]
pub enum RoleState<T> {
    /// Verified under the newest root, and naming the newest version of the role below it.
    Current(Metadata<T>),
    /// The newest file parses but cannot be served as it is; the next command re-signs it.
    Stale {
        latest: Option<Metadata<T>>,
        reason: String,
    },
}

impl<T> RoleState<T> {
    pub fn current(&self) -> Option<&Metadata<T>> {
        match self {
            Self::Current(m) => Some(m),
            Self::Stale { .. } => None,
        }
    }

    /// The newest file, current or not.
    pub fn latest(&self) -> Option<&Metadata<T>> {
        match self {
            Self::Current(m) => Some(m),
            Self::Stale { latest, .. } => latest.as_ref(),
        }
    }

    pub fn problem(&self) -> Option<&str> {
        match self {
            Self::Current(_) => None,
            Self::Stale { reason, .. } => Some(reason),
        }
    }
}

/// One role's state as `/readyz` and `/metrics` report it.
#[derive(Debug, Clone)]
pub struct RoleStatus {
    pub role: Role,
    pub version: u64,
    pub expires: Expires,
    pub problem: Option<String>,
}

/// A loaded repository.
#[derive(Debug, Clone)]
pub struct Repository {
    dir: PathBuf,
    /// Every root, version 1 first; each verified against the one before.
    pub roots: Vec<Metadata<Root>>,
    pub targets: RoleState<Targets>,
    pub snapshot: RoleState<Snapshot>,
    pub timestamp: RoleState<Timestamp>,
}

/// The versions of each versioned role found in a directory.
fn versions(dir: &Path) -> Result<BTreeMap<Role, BTreeSet<u64>>, RepoError> {
    let mut found: BTreeMap<Role, BTreeSet<u64>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((v, rest)) = name.split_once('.') else {
            continue;
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        for role in [Role::Root, Role::Targets, Role::Snapshot] {
            if rest == role.meta_name() && v.to_string() == name[..name.len() - rest.len() - 1] {
                found.entry(role).or_default().insert(v);
            }
        }
    }
    Ok(found)
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, RepoError> {
    let p = dir.join(name);
    std::fs::read(&p).map_err(io(&p))
}

fn parse<T: Payload>(
    dir: &Path,
    name: &str,
    version: Option<u64>,
) -> Result<Metadata<T>, RepoError> {
    let corrupt = |reason: String| RepoError::Corrupt {
        file: name.into(),
        reason,
    };
    let m = Metadata::<T>::parse(read(dir, name)?).map_err(|e| corrupt(e.to_string()))?;
    if let Some(v) = version {
        if m.signed.version() != v {
            return Err(corrupt(format!("holds version {}", m.signed.version())));
        }
    }
    Ok(m)
}

/// Is `name` fit to be a target file name on disk and in a URL?
pub fn valid_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The path of a target's file under consistent snapshots: `targets/<sha256>.<name>`.
pub fn target_path(name: &str, file: &TargetFile) -> Option<String> {
    Some(format!("targets/{}.{name}", file.sha256()?))
}

impl Repository {
    /// Load and verify the repository in `dir` (see the module docs).
    pub fn load(dir: &Path) -> Result<Self, RepoError> {
        if !dir.join("1.root.json").exists() {
            return Err(RepoError::NotFound(dir.into()));
        }
        let found = versions(dir)?;
        let root_versions = found.get(&Role::Root).cloned().unwrap_or_default();
        let newest_root = root_versions.last().copied().unwrap_or(1);
        let mut roots: Vec<Metadata<Root>> = Vec::new();
        for v in 1..=newest_root {
            let name = Role::Root.file_name(v);
            if !root_versions.contains(&v) {
                return Err(RepoError::Corrupt {
                    file: name,
                    reason: format!(
                        "missing, though root version {newest_root} exists: the root chain has a gap"
                    ),
                });
            }
            let root = parse::<Root>(dir, &name, Some(v))?;
            let corrupt = |e: MetadataError| RepoError::Corrupt {
                file: name.clone(),
                reason: e.to_string(),
            };
            root.signed.check().map_err(corrupt)?;
            // Each root is signed by a threshold of its predecessor's root keys and of its own.
            if let Some(prev) = roots.last() {
                root.verify_with(&prev.signed, Role::Root)
                    .map_err(corrupt)?;
            }
            root.verify_with(&root.signed, Role::Root)
                .map_err(corrupt)?;
            roots.push(root);
        }
        let root = &roots[roots.len() - 1].signed;

        let newest = |role: Role| found.get(&role).and_then(|s| s.last().copied());
        let targets = match newest(Role::Targets) {
            None => RoleState::Stale {
                latest: None,
                reason: "no targets metadata".into(),
            },
            Some(v) => {
                let m = parse::<Targets>(dir, &Role::Targets.file_name(v), Some(v))?;
                match Self::check_targets(dir, &m, root) {
                    Ok(()) => RoleState::Current(m),
                    Err(reason) => RoleState::Stale {
                        latest: Some(m),
                        reason,
                    },
                }
            }
        };
        let snapshot = match newest(Role::Snapshot) {
            None => RoleState::Stale {
                latest: None,
                reason: "no snapshot metadata".into(),
            },
            Some(v) => {
                let m = parse::<Snapshot>(dir, &Role::Snapshot.file_name(v), Some(v))?;
                let names_targets = || -> Result<(), String> {
                    m.verify_with(root, Role::Snapshot)
                        .map_err(|e| e.to_string())?;
                    let Some(t) = targets.latest() else {
                        return Err("there is no targets metadata to name".into());
                    };
                    let meta = m.signed.meta.get(&Role::Targets.meta_name());
                    match meta {
                        Some(mf) if mf.version == t.signed.version && mf.matches(&t.bytes) => {
                            Ok(())
                        }
                        Some(mf) => Err(format!(
                            "it names targets version {}, the newest is {} (or its hash differs)",
                            mf.version, t.signed.version
                        )),
                        None => Err("it names no targets.json".into()),
                    }
                };
                match names_targets() {
                    Ok(()) => RoleState::Current(m),
                    Err(reason) => RoleState::Stale {
                        latest: Some(m),
                        reason,
                    },
                }
            }
        };
        let ts_name = Role::Timestamp.file_name(0);
        let timestamp = if dir.join(&ts_name).exists() {
            let m = parse::<Timestamp>(dir, &ts_name, None)?;
            let names_snapshot = || -> Result<(), String> {
                m.verify_with(root, Role::Timestamp)
                    .map_err(|e| e.to_string())?;
                let Some(s) = snapshot.latest() else {
                    return Err("there is no snapshot metadata to name".into());
                };
                match m.signed.meta.get(&Role::Snapshot.meta_name()) {
                    Some(mf) if mf.version == s.signed.version && mf.matches(&s.bytes) => Ok(()),
                    Some(mf) => Err(format!(
                        "it names snapshot version {}, the newest is {} (or its hash differs)",
                        mf.version, s.signed.version
                    )),
                    None => Err("it names no snapshot.json".into()),
                }
            };
            match names_snapshot() {
                Ok(()) => RoleState::Current(m),
                Err(reason) => RoleState::Stale {
                    latest: Some(m),
                    reason,
                },
            }
        } else {
            RoleState::Stale {
                latest: None,
                reason: "timestamp.json is missing".into(),
            }
        };
        Ok(Self {
            dir: dir.into(),
            roots,
            targets,
            snapshot,
            timestamp,
        })
    }

    /// The targets are signed by the root's targets keys, and every target's file is there.
    fn check_targets(dir: &Path, m: &Metadata<Targets>, root: &Root) -> Result<(), String> {
        m.verify_with(root, Role::Targets)
            .map_err(|e| e.to_string())?;
        for (name, file) in &m.signed.targets {
            let path = target_path(name, file)
                .filter(|_| valid_target_name(name))
                .ok_or_else(|| format!("target {name:?} has no usable name or SHA-256"))?;
            let bytes = std::fs::read(dir.join(&path))
                .map_err(|e| format!("the file of target {name:?} ({path}): {e}"))?;
            if TargetFile::of(&bytes) != *file {
                return Err(format!(
                    "the file of target {name:?} ({path}) does not match its length and hash"
                ));
            }
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest root.
    pub fn root(&self) -> &Metadata<Root> {
        &self.roots[self.roots.len() - 1]
    }

    /// Each role's newest version, its expiry and what keeps it from being served, if anything.
    pub fn status(&self) -> Vec<RoleStatus> {
        fn of<T: Payload>(role: Role, s: &RoleState<T>) -> Option<RoleStatus> {
            s.latest().map(|m| RoleStatus {
                role,
                version: m.signed.version(),
                expires: m.signed.expires(),
                problem: s.problem().map(str::to_owned),
            })
        }
        let root = self.root();
        let mut v = vec![RoleStatus {
            role: Role::Root,
            version: root.signed.version,
            expires: root.signed.expires,
            problem: None,
        }];
        v.extend(of(Role::Targets, &self.targets));
        v.extend(of(Role::Snapshot, &self.snapshot));
        v.extend(of(Role::Timestamp, &self.timestamp));
        v
    }

    /// Create the empty repository directory (and `targets/`) for a new repository; refuses a
    /// directory that holds anything.
    pub fn create_dir(dir: &Path) -> Result<(), RepoError> {
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
            if entries.next().is_some() {
                return Err(RepoError::Exists(dir.into()));
            }
        }
        for d in [dir.to_path_buf(), dir.join("targets")] {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).map_err(io(&d))?;
            adopt_owner(&d);
        }
        Ok(())
    }

    /// Write a file of the state directory that is not part of the repository (the last
    /// refresh's outcome), replaced atomically.
    pub fn write_state_file(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
        replace(path, bytes)
    }
}

/// Writes into a repository directory; made from the state directory's [`Lock`], the
/// evidence that no other command writes at the same time.
#[derive(Debug)]
pub struct Writer<'a> {
    dir: PathBuf,
    _lock: &'a Lock,
}

impl<'a> Writer<'a> {
    pub fn new(dir: &Path, lock: &'a Lock) -> Self {
        Self {
            dir: dir.into(),
            _lock: lock,
        }
    }

    /// Publish a target's file (`targets/<sha256>.<name>`); a file already there with the same
    /// hash is the same file.
    pub fn write_target(&self, name: &str, bytes: &[u8]) -> Result<(), RepoError> {
        let file = TargetFile::of(bytes);
        let rel = target_path(name, &file)
            .filter(|_| valid_target_name(name))
            .ok_or_else(|| RepoError::Corrupt {
                file: name.into(),
                reason: "not a usable target name".into(),
            })?;
        write_once(&self.dir.join(rel), bytes)
    }

    /// Publish one metadata file: a new version file, or `timestamp.json` replaced atomically.
    pub fn write<T: Payload>(&self, m: &Metadata<T>) -> Result<PathBuf, RepoError> {
        let path = self.dir.join(T::ROLE.file_name(m.signed.version()));
        if T::ROLE == Role::Timestamp {
            replace(&path, &m.bytes)?;
        } else {
            write_once(&path, &m.bytes)?;
        }
        Ok(path)
    }
}

/// The root this process writes as: files it creates take the owner of the directory they are
/// created in, so that root running an offline command (init, publish) leaves files the
/// service user (owner of the state directory) can still replace. Best effort: without the
/// right to change owners, the files stay ours.
fn adopt_owner(path: &Path) {
    let (Some(parent), Ok(meta)) = (path.parent(), std::fs::metadata(path)) else {
        return;
    };
    if let Ok(dir) = std::fs::metadata(parent) {
        if dir.uid() != meta.uid() || dir.gid() != meta.gid() {
            let _ = std::os::unix::fs::chown(path, Some(dir.uid()), Some(dir.gid()));
        }
    }
}

/// Write `bytes` to a temporary file beside `path`, synced, world-readable (the repository is
/// public), owned as the directory is.
fn temp_beside(path: &Path, bytes: &[u8]) -> Result<PathBuf, RepoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    adopt_owner(&tmp);
    Ok(tmp)
}

fn sync_dir(dir: &Path) -> Result<(), RepoError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Create `path` with `bytes`, atomically and only if it does not exist (a hard link of a
/// complete temporary file: readers see nothing or all of it). The same bytes already there
/// are accepted (a repeated step after a crash).
fn write_once(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    if let Ok(existing) = std::fs::read(path) {
        return if existing == bytes {
            Ok(())
        } else {
            Err(RepoError::WouldReplace { path: path.into() })
        };
    }
    let tmp = temp_beside(path, bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(RepoError::WouldReplace { path: path.into() });
        }
        Err(e) => return Err(io(path)(e)),
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Replace `path` with `bytes` atomically (rename of a complete temporary file).
fn replace(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let tmp = temp_beside(path, bytes)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The state directory's lock, held by every command that writes: one writer at a time (the
/// timer's refresh and an operator's publish may meet). An advisory `flock`, released when the
/// process ends however it ends.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Take the exclusive lock, waiting up to 30 s for another command to finish.
    pub fn acquire(state_dir: &Path) -> Result<Self, RepoError> {
        let path = state_dir.join("lock");
        let file = match OpenOptions::new().read(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(io(&path))?;
                f.set_permissions(std::fs::Permissions::from_mode(0o644))
                    .map_err(io(&path))?;
                adopt_owner(&path);
                f
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Self { _file: file }),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(RepoError::Locked(path));
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }

    /// A shared lock for a reader that wants a settled view (the server's status), without
    /// waiting: `None` while a writer holds the lock or there is no lock file yet.
    pub fn try_shared(state_dir: &Path) -> Option<SharedLock> {
        let file = File::open(state_dir.join("lock")).ok()?;
        flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).ok()?;
        Some(SharedLock { _file: file })
    }
}

/// `flock(2)` on an open file, through rustix because the MSRV predates `File::try_lock`. The
/// lock goes with the descriptor, so dropping the file releases it.
fn flock(file: &File, op: rustix::fs::FlockOperation) -> std::io::Result<()> {
    rustix::fs::flock(file, op).map_err(std::io::Error::from)
}

/// See [`Lock::try_shared`].
#[derive(Debug)]
pub struct SharedLock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_are_plain() {
        for ok in ["trusted_root.json", "signing_config.v0.2.json", "a-b_c.1"] {
            assert!(valid_target_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a b", "x\n"] {
            assert!(!valid_target_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn versioned_files_are_written_once() {
        let dir = std::env::temp_dir().join(format!("sigvault-tuf-repo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Repository::create_dir(&dir).expect("create");
        assert!(matches!(
            {
                std::fs::write(dir.join("x"), "x").expect("w");
                Repository::create_dir(&dir)
            },
            Err(RepoError::Exists(_))
        ));
        let p = dir.join("1.targets.json");
        write_once(&p, b"one").expect("first");
        write_once(&p, b"one").expect("the same bytes again");
        assert!(matches!(
            write_once(&p, b"two"),
            Err(RepoError::WouldReplace { .. })
        ));
        assert_eq!(std::fs::read(&p).expect("r"), b"one");
        let t = dir.join("timestamp.json");
        replace(&t, b"a").expect("a");
        replace(&t, b"b").expect("b");
        assert_eq!(std::fs::read(&t).expect("r"), b"b");
        let mode = std::fs::metadata(&t).expect("m").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        let found = versions(&dir).expect("versions");
        assert_eq!(found.get(&Role::Targets).map(|s| s.len()), Some(1));
        let lock = Lock::acquire(&dir).expect("lock");
        assert!(Lock::try_shared(&dir).is_none(), "a writer holds it");
        drop(lock);
        assert!(Lock::try_shared(&dir).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
