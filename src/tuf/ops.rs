//! The repository's life: [`init`], [`publish`], [`refresh`] and [`rotate_root`], each one
//! command of `sigvault tuf`.
//!
//! Every command checks all it can before it signs anything (inputs, PINs, tokens, that the
//! configured keys are the ones the current root lists), holds the state directory's lock,
//! signs into memory, records every signature in the transcript, writes in the order
//! [`super::repository`] describes, and loads the result back as a client would: a command
//! that reports success has left a repository whose every role is current.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::inputs::TrustTargets;
use super::keys::{Keyring, KeysError};
use super::metadata::{
    Expires, Metadata, Payload, Role, RoleKeys, Root, Snapshot, TargetFile, Targets, Timestamp,
};
use super::repository::{Lock, RepoError, Repository, RoleState, Writer};
use super::sign::{KeySigner, TufSignError, sign};
use super::transcript::Transcript;
use crate::config::TufConfig;
use crate::hsm::{HsmError, HsmSigner, Module, Pkcs11Uri};

/// Why a command did nothing (or undid what it did).
#[derive(Debug, thiserror::Error)]
pub enum TufError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    Sign(#[from] TufSignError),
    #[error(transparent)]
    Input(#[from] super::inputs::InputError),
    #[error("{0}")]
    Refused(String),
}

impl From<HsmError> for TufError {
    fn from(e: HsmError) -> Self {
        Self::Keys(KeysError::Hsm(e))
    }
}

/// What a command did, line by line, for the operator.
#[derive(Debug, Default)]
pub struct Outcome {
    pub lines: Vec<String>,
    /// Roles signed anew: (role, version).
    pub signed: Vec<(Role, u64)>,
}

impl Outcome {
    fn say(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn expires(cfg: &TufConfig, role: Role) -> Expires {
    Expires::after(now(), cfg.tuf.expires(role))
}

/// Sign `payload`, record it, note it in `out`.
fn sign_role<T: Payload>(
    payload: &T,
    signers: &[&KeySigner<'_>],
    transcript: &mut Transcript,
    out: &mut Outcome,
) -> Result<Metadata<T>, TufError> {
    let m = sign(payload, signers)?;
    transcript.signed(&m, signers)?;
    out.signed.push((T::ROLE, m.signed.version()));
    out.say(format!(
        "signed {} version {} (expires {}) with {}",
        T::ROLE,
        m.signed.version(),
        m.signed.expires(),
        signers
            .iter()
            .map(|s| s.uri.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(m)
}

/// A root payload listing the config's (not retired) keys with the config's thresholds.
fn build_root(
    cfg: &TufConfig,
    version: u64,
    keys: &[(Role, &KeySigner<'_>)],
) -> Result<Root, TufError> {
    let mut root = Root::new(version, expires(cfg, Role::Root));
    for role in Role::ALL {
        let mut keyids = Vec::new();
        for (r, k) in keys {
            if *r == role && !keyids.contains(&k.keyid) {
                root.keys.insert(k.keyid.clone(), k.key.clone());
                keyids.push(k.keyid.clone());
            }
        }
        let threshold = cfg.tuf.offline(role).map_or(1, |r| r.threshold);
        root.roles
            .insert(role.name().into(), RoleKeys { keyids, threshold });
    }
    root.check()
        .map_err(|e| TufError::Refused(format!("the config does not make a valid root: {e}")))?;
    Ok(root)
}

fn targets_of(trust: &TrustTargets) -> BTreeMap<String, TargetFile> {
    trust
        .named()
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), TargetFile::of(bytes)))
        .collect()
}

/// Refuse unless every role of `repo` is current (what each command promises to leave).
fn check_whole(dir: &Path) -> Result<Repository, TufError> {
    let repo = Repository::load(dir)?;
    for s in repo.status() {
        if let Some(p) = s.problem {
            return Err(TufError::Refused(format!(
                "after writing, {} is not current: {p}",
                s.role
            )));
        }
    }
    if repo.timestamp.current().is_none() || repo.snapshot.current().is_none() {
        return Err(TufError::Refused(
            "after writing, the repository is not whole".into(),
        ));
    }
    Ok(repo)
}

/// The online keys (snapshot, timestamp) from their token, checked to be the ones `root`
/// lists for their roles.
fn online_keys(cfg: &TufConfig, root: &Root) -> Result<Vec<(Role, HsmSigner)>, TufError> {
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let t = &cfg.tuf;
    let ring = Keyring::login(
        &module,
        &[
            (&t.snapshot.key, &t.snapshot.pin),
            (&t.timestamp.key, &t.timestamp.pin),
        ],
    )?;
    let mut found = Vec::new();
    for role in [Role::Snapshot, Role::Timestamp] {
        let Some(r) = t.online(role) else { continue };
        let signer = ring.find(&r.key)?.ok_or_else(|| {
            TufError::Refused(format!(
                "the token holds no {role} key {}: keys are made by `sigvault tuf init` or `rotate-root`",
                r.key
            ))
        })?;
        found.push((role, signer));
    }
    for (role, s) in &found {
        let k = KeySigner::new(s, s.uri())?;
        if !root.role(*role).is_ok_and(|r| r.keyids.contains(&k.keyid)) {
            return Err(TufError::Refused(format!(
                "the key {} (key ID {}) is not the {role} key of root version {}: after changing [tuf.{role}], publish the new key with `sigvault tuf rotate-root`",
                s.uri(),
                k.keyid,
                root.version
            )));
        }
    }
    Ok(found)
}

/// Create the repository: every configured key generated in its token, version 1 of root,
/// targets (with `trust`'s files, if given), snapshot and timestamp. Refuses an existing
/// repository and any existing key label, before it creates anything.
pub fn init(cfg: &TufConfig, trust: Option<&TrustTargets>) -> Result<Outcome, TufError> {
    let t = &cfg.tuf;
    let repo_dir = t.repository_dir();
    if repo_dir.join("1.root.json").exists()
        || std::fs::read_dir(&repo_dir).is_ok_and(|mut d| d.next().is_some())
    {
        return Err(RepoError::Exists(repo_dir).into());
    }
    let keys = t.all_keys();
    if let Some((_, uri, _, _)) = keys.iter().find(|k| k.3) {
        return Err(TufError::Refused(format!(
            "{uri} is marked retired, but a new repository has no earlier root for it to sign"
        )));
    }
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let pins: Vec<(&Pkcs11Uri, &crate::config::SecretSource)> =
        keys.iter().map(|(_, u, p, _)| (*u, *p)).collect();
    let mut ring = Keyring::login(&module, &pins)?;
    for (_, uri, _, _) in &keys {
        ring.refuse_existing(uri)?;
    }
    std::fs::create_dir_all(&t.dir).map_err(|source| RepoError::Io {
        path: t.dir.clone(),
        source,
    })?;
    Repository::create_dir(&repo_dir)?;
    let lock = Lock::acquire(&t.dir)?;
    let mut transcript = Transcript::open(&t.dir, "init")?;
    let mut out = Outcome::default();
    let result = (|| -> Result<(), TufError> {
        let mut hsm = Vec::new();
        for (role, uri, _, _) in &keys {
            hsm.push((*role, ring.generate(uri)?));
        }
        let signers: Vec<(Role, KeySigner<'_>)> = hsm
            .iter()
            .map(|(r, s)| Ok((*r, KeySigner::new(s, s.uri())?)))
            .collect::<Result<_, TufError>>()?;
        for (role, k) in &signers {
            transcript.key_generated(*role, k)?;
            out.say(format!(
                "generated the {role} key {} (key ID {})",
                k.uri, k.keyid
            ));
        }
        let by_role = |role: Role| -> Vec<&KeySigner<'_>> {
            signers
                .iter()
                .filter(|(r, _)| *r == role)
                .map(|(_, k)| k)
                .collect()
        };
        let listed: Vec<(Role, &KeySigner<'_>)> = signers.iter().map(|(r, k)| (*r, k)).collect();
        let root = build_root(cfg, 1, &listed)?;
        let root = sign_role(&root, &by_role(Role::Root), &mut transcript, &mut out)?;
        let contents = trust.map(targets_of).unwrap_or_default();
        let targets = Targets::new(1, expires(cfg, Role::Targets), contents);
        let targets = sign_role(&targets, &by_role(Role::Targets), &mut transcript, &mut out)?;
        let snapshot = Snapshot::new(1, expires(cfg, Role::Snapshot), targets.meta_file());
        let snapshot = sign_role(
            &snapshot,
            &by_role(Role::Snapshot),
            &mut transcript,
            &mut out,
        )?;
        let ts = Timestamp::new(1, expires(cfg, Role::Timestamp), snapshot.meta_file());
        let ts = sign_role(&ts, &by_role(Role::Timestamp), &mut transcript, &mut out)?;
        let w = Writer::new(&repo_dir, &lock);
        if let Some(trust) = trust {
            for (name, bytes) in trust.named() {
                w.write_target(name, bytes)?;
                out.say(format!("published the target {name}"));
            }
        }
        w.write(&targets)?;
        w.write(&snapshot)?;
        let root_path = w.write(&root)?;
        w.write(&ts)?;
        check_whole(&repo_dir)?;
        out.say(format!(
            "the repository is in {}; give clients its first root, {} (sigstore trust-instance, tufRootPath, cosign initialize --root)",
            repo_dir.display(),
            root_path.display()
        ));
        Ok(())
    })();
    match result {
        Ok(()) => {
            ring.keep();
            Ok(out)
        }
        Err(e) => {
            let failed = ring.undo();
            let _ = std::fs::remove_dir_all(&repo_dir);
            let _ = transcript.note(&format!(
                "init failed ({e}); the keys it generated were destroyed{}, the repository directory removed",
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(" except {}", failed.join("; "))
                }
            ));
            Err(e)
        }
    }
}

/// Publish `trust` as the targets: a new targets version signed by the targets keys, then a
/// new snapshot and timestamp. Nothing is signed when the current targets already publish
/// exactly these files and are not near expiry.
pub fn publish(cfg: &TufConfig, trust: &TrustTargets) -> Result<Outcome, TufError> {
    let t = &cfg.tuf;
    let lock = Lock::acquire(&t.dir)?;
    let repo = Repository::load(&t.repository_dir())?;
    let root = &repo.root().signed;
    let contents = targets_of(trust);
    let mut out = Outcome::default();
    if let Some(cur) = repo.targets.current() {
        let left = cur.signed.expires.remaining(now());
        if cur.signed.targets == contents && left > t.warn_before(Role::Targets).as_secs() as i64 {
            out.say(format!(
                "unchanged: targets version {} already publishes these files (expires {}); nothing signed",
                cur.signed.version, cur.signed.expires
            ));
            return Ok(out);
        }
    }
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let keys: Vec<(&Pkcs11Uri, &crate::config::SecretSource)> =
        t.targets.keys.iter().map(|k| (&k.key, &k.pin)).collect();
    let ring = Keyring::login(&module, &keys)?;
    let mut hsm = Vec::new();
    for k in &t.targets.keys {
        let s = ring.find(&k.key)?.ok_or_else(|| {
            TufError::Refused(format!(
                "the token holds no targets key {}: new keys are made by `sigvault tuf rotate-root`",
                k.key
            ))
        })?;
        hsm.push(s);
    }
    let online = online_keys(cfg, root)?;
    let targets_role = root
        .role(Role::Targets)
        .map_err(|e| TufError::Refused(e.to_string()))?;
    let targets_signers: Vec<KeySigner<'_>> = hsm
        .iter()
        .map(|s| KeySigner::new(s, s.uri()))
        .collect::<Result<_, _>>()?;
    let listed: Vec<&KeySigner<'_>> = targets_signers
        .iter()
        .filter(|k| targets_role.keyids.contains(&k.keyid))
        .collect();
    if (listed.len() as u64) < targets_role.threshold {
        return Err(TufError::Refused(format!(
            "root version {} needs {} signatures of its targets keys ({}); the configured targets keys give {}: after changing [tuf.targets], run `sigvault tuf rotate-root` first",
            root.version,
            targets_role.threshold,
            targets_role.keyids.join(", "),
            listed.len()
        )));
    }
    let online_signers: Vec<(Role, KeySigner<'_>)> = online
        .iter()
        .map(|(r, s)| Ok((*r, KeySigner::new(s, s.uri())?)))
        .collect::<Result<_, TufError>>()?;
    let online_of = |role: Role| -> Vec<&KeySigner<'_>> {
        online_signers
            .iter()
            .filter(|(r, _)| *r == role)
            .map(|(_, k)| k)
            .collect()
    };
    let mut transcript = Transcript::open(&t.dir, "publish")?;
    let next = |latest: Option<u64>| latest.map_or(1, |v| v + 1);
    let targets = Targets::new(
        next(repo.targets.latest().map(|m| m.signed.version)),
        expires(cfg, Role::Targets),
        contents,
    );
    let targets = sign_role(&targets, &listed, &mut transcript, &mut out)?;
    let snapshot = Snapshot::new(
        next(repo.snapshot.latest().map(|m| m.signed.version)),
        expires(cfg, Role::Snapshot),
        targets.meta_file(),
    );
    let snapshot = sign_role(
        &snapshot,
        &online_of(Role::Snapshot),
        &mut transcript,
        &mut out,
    )?;
    let ts = Timestamp::new(
        next(repo.timestamp.latest().map(|m| m.signed.version)),
        expires(cfg, Role::Timestamp),
        snapshot.meta_file(),
    );
    let ts = sign_role(&ts, &online_of(Role::Timestamp), &mut transcript, &mut out)?;
    let w = Writer::new(repo.dir(), &lock);
    for (name, bytes) in trust.named() {
        w.write_target(name, bytes)?;
        out.say(format!("published the target {name}"));
    }
    w.write(&targets)?;
    w.write(&snapshot)?;
    w.write(&ts)?;
    check_whole(repo.dir())?;
    Ok(out)
}

/// Re-sign what needs it with the online keys: the snapshot when it is stale or has less than
/// its `refresh_before` left, the timestamp when the snapshot changed, it is stale, or it has
/// less than its `refresh_before` left. Running it again at once signs nothing. Every run also
/// proves the online keys sign (a probe signature, verified), so a token that went away shows
/// in `refresh.json` at the next run, not only when a signature is due.
pub fn refresh(cfg: &TufConfig) -> Result<Outcome, TufError> {
    let t = &cfg.tuf;
    let lock = Lock::acquire(&t.dir)?;
    let repo = Repository::load(&t.repository_dir())?;
    let root = &repo.root().signed;
    if let RoleState::Stale { reason, .. } = &repo.targets {
        return Err(TufError::Refused(format!(
            "targets: {reason}; the online keys cannot repair that: run `sigvault tuf publish` with the targets keys"
        )));
    }
    let online = online_keys(cfg, root)?;
    let signers: Vec<(Role, KeySigner<'_>)> = online
        .iter()
        .map(|(r, s)| Ok((*r, KeySigner::new(s, s.uri())?)))
        .collect::<Result<_, TufError>>()?;
    for (role, k) in &signers {
        let probe = b"sigvault tuf refresh: online key probe";
        let sig = hex::encode(k.signer.sign(probe).map_err(TufSignError::from)?);
        if !k.key.verify(probe, &sig).unwrap_or(false) {
            return Err(TufError::Refused(format!(
                "the {role} key {} signed a probe that does not verify",
                k.uri
            )));
        }
    }
    let of = |role: Role| -> Vec<&KeySigner<'_>> {
        signers
            .iter()
            .filter(|(r, _)| *r == role)
            .map(|(_, k)| k)
            .collect()
    };
    let due = |role: Role, state_expires: Option<Expires>, current: bool| -> bool {
        let refresh_before = t.online(role).map_or(0, |r| r.refresh_before().as_secs()) as i64;
        !current || state_expires.is_none_or(|e| e.remaining(now()) < refresh_before)
    };
    let snapshot_due = due(
        Role::Snapshot,
        repo.snapshot.latest().map(|m| m.signed.expires),
        repo.snapshot.current().is_some(),
    );
    let ts_due = snapshot_due
        || due(
            Role::Timestamp,
            repo.timestamp.latest().map(|m| m.signed.expires),
            repo.timestamp.current().is_some(),
        );
    let mut out = Outcome::default();
    if !ts_due {
        let left = |m: Option<Expires>| m.map_or(0, |e| e.remaining(now()));
        out.say(format!(
            "nothing due: the timestamp has {} s left, the snapshot {} s (the online keys sign)",
            left(repo.timestamp.latest().map(|m| m.signed.expires)),
            left(repo.snapshot.latest().map(|m| m.signed.expires)),
        ));
        return Ok(out);
    }
    let Some(targets) = repo.targets.current() else {
        return Err(TufError::Refused("no current targets".into()));
    };
    let mut transcript = Transcript::open(&t.dir, "refresh")?;
    let snapshot_meta = if snapshot_due {
        let version = repo.snapshot.latest().map_or(1, |m| m.signed.version + 1);
        let s = Snapshot::new(version, expires(cfg, Role::Snapshot), targets.meta_file());
        let s = sign_role(&s, &of(Role::Snapshot), &mut transcript, &mut out)?;
        Writer::new(repo.dir(), &lock).write(&s)?;
        s.meta_file()
    } else {
        repo.snapshot
            .current()
            .map(Metadata::meta_file)
            .ok_or_else(|| TufError::Refused("no current snapshot".into()))?
    };
    let version = repo.timestamp.latest().map_or(1, |m| m.signed.version + 1);
    let ts = Timestamp::new(version, expires(cfg, Role::Timestamp), snapshot_meta);
    let ts = sign_role(&ts, &of(Role::Timestamp), &mut transcript, &mut out)?;
    Writer::new(repo.dir(), &lock).write(&ts)?;
    check_whole(repo.dir())?;
    Ok(out)
}

/// The file in the state directory that says how the last refresh went, read by the server.
pub const REFRESH_STATUS_FILE: &str = "refresh.json";

/// [`refresh`], and its outcome recorded in `refresh.json` (time, success or the error) for
/// `sigvault tuf serve` to report: a failing online token shows there.
pub fn refresh_and_record(cfg: &TufConfig) -> Result<Outcome, TufError> {
    let result = refresh(cfg);
    let at = now();
    let status = match &result {
        Ok(out) => json!({
            "time": at.unix_timestamp(),
            "ok": true,
            "signed": out.signed.iter().map(|(r, v)| json!({"role": r.name(), "version": v})).collect::<Vec<_>>(),
        }),
        Err(e) => json!({"time": at.unix_timestamp(), "ok": false, "error": e.to_string()}),
    };
    let mut bytes = serde_json::to_vec_pretty(&status).unwrap_or_default();
    bytes.push(b'\n');
    let path = cfg.tuf.dir.join(REFRESH_STATUS_FILE);
    if let Err(e) = Repository::write_state_file(&path, &bytes) {
        tracing::warn!("cannot record the refresh's outcome: {e}");
    }
    result
}

/// A configured key and what the HSM holds for it.
struct Resolved {
    role: Role,
    retired: bool,
    signer: HsmSigner,
    generated: bool,
}

/// Sign a new root from the config: keys the tokens do not hold yet are generated, the new
/// root is signed by a threshold of the current root's root keys and of its own, and whatever
/// the new keys must re-sign is re-signed (targets if its keys changed; snapshot and timestamp
/// always). With an unchanged config it renews the root's expiry.
pub fn rotate_root(cfg: &TufConfig) -> Result<Outcome, TufError> {
    let t = &cfg.tuf;
    let lock = Lock::acquire(&t.dir)?;
    let repo = Repository::load(&t.repository_dir())?;
    let current = &repo.root().signed;
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let keys = t.all_keys();
    let pins: Vec<(&Pkcs11Uri, &crate::config::SecretSource)> =
        keys.iter().map(|(_, u, p, _)| (*u, *p)).collect();
    let mut ring = Keyring::login(&module, &pins)?;
    // Preflight: which keys exist; a retired key must; the current root's threshold is met.
    let mut existing = Vec::new();
    let mut missing = Vec::new();
    for (role, uri, _, retired) in &keys {
        match ring.find(uri)? {
            Some(s) => existing.push(Resolved {
                role: *role,
                retired: *retired,
                signer: s,
                generated: false,
            }),
            None if *retired => {
                return Err(TufError::Refused(format!(
                    "the retired root key {uri} is not in its token: a retired key must sign the new root as a key of the current one"
                )));
            }
            None => missing.push((*role, (*uri).clone())),
        }
    }
    let cur_root_role = current
        .role(Role::Root)
        .map_err(|e| TufError::Refused(e.to_string()))?;
    let old_signing: Vec<usize> = existing
        .iter()
        .enumerate()
        .filter(|(_, r)| r.role == Role::Root)
        .filter(|(_, r)| {
            KeySigner::new(&r.signer, r.signer.uri())
                .is_ok_and(|k| cur_root_role.keyids.contains(&k.keyid))
        })
        .map(|(i, _)| i)
        .collect();
    if (old_signing.len() as u64) < cur_root_role.threshold {
        return Err(TufError::Refused(format!(
            "root version {} needs {} signatures of its root keys ({}); the configured root keys give {}: list the current root keys (those leaving with retired = true)",
            current.version,
            cur_root_role.threshold,
            cur_root_role.keyids.join(", "),
            old_signing.len()
        )));
    }
    let mut transcript = Transcript::open(&t.dir, "rotate-root")?;
    let mut out = Outcome::default();
    let mut resolved = existing;
    for (role, uri) in &missing {
        let s = ring.generate(uri)?;
        resolved.push(Resolved {
            role: *role,
            retired: false,
            signer: s,
            generated: true,
        });
    }
    let signers: Vec<(&Resolved, KeySigner<'_>)> = resolved
        .iter()
        .map(|r| Ok((r, KeySigner::new(&r.signer, r.signer.uri())?)))
        .collect::<Result<_, TufError>>()?;
    for (r, k) in signers.iter().filter(|(r, _)| r.generated) {
        transcript.key_generated(r.role, k)?;
        out.say(format!(
            "generated the {} key {} (key ID {})",
            r.role, k.uri, k.keyid
        ));
    }
    let listed: Vec<(Role, &KeySigner<'_>)> = signers
        .iter()
        .filter(|(r, _)| !r.retired)
        .map(|(r, k)| (r.role, k))
        .collect();
    let new_root = build_root(cfg, current.version + 1, &listed)?;
    // Signed by the current root's keys that the config names, and by the new root's keys.
    let mut root_signers: Vec<&KeySigner<'_>> = Vec::new();
    for (r, k) in &signers {
        let old = cur_root_role.keyids.contains(&k.keyid);
        let new = !r.retired
            && new_root
                .role(Role::Root)
                .is_ok_and(|n| n.keyids.contains(&k.keyid));
        if r.role == Role::Root && (old || new) && !root_signers.iter().any(|s| s.keyid == k.keyid)
        {
            root_signers.push(k);
        }
    }
    let new_root = sign_role(&new_root, &root_signers, &mut transcript, &mut out)?;
    for by in [current, &new_root.signed] {
        new_root
            .verify_with(by, Role::Root)
            .map_err(|e| TufError::Refused(format!("the new root would not verify: {e}")))?;
    }
    let of = |role: Role| -> Vec<&KeySigner<'_>> {
        signers
            .iter()
            .filter(|(r, _)| r.role == role && !r.retired)
            .map(|(_, k)| k)
            .collect()
    };
    // Targets: re-signed (same files, next version) unless the newest verifies with the new
    // root's targets keys.
    let latest_targets = repo
        .targets
        .latest()
        .ok_or_else(|| TufError::Refused("the repository has no targets metadata".into()))?;
    let new_targets = if latest_targets
        .verify_with(&new_root.signed, Role::Targets)
        .is_ok()
    {
        None
    } else {
        let tg = Targets::new(
            latest_targets.signed.version + 1,
            expires(cfg, Role::Targets),
            latest_targets.signed.targets.clone(),
        );
        Some(sign_role(
            &tg,
            &of(Role::Targets),
            &mut transcript,
            &mut out,
        )?)
    };
    let targets_meta = new_targets
        .as_ref()
        .map_or_else(|| latest_targets.meta_file(), Metadata::meta_file);
    let snapshot = Snapshot::new(
        repo.snapshot.latest().map_or(1, |m| m.signed.version + 1),
        expires(cfg, Role::Snapshot),
        targets_meta,
    );
    let snapshot = sign_role(&snapshot, &of(Role::Snapshot), &mut transcript, &mut out)?;
    let ts = Timestamp::new(
        repo.timestamp.latest().map_or(1, |m| m.signed.version + 1),
        expires(cfg, Role::Timestamp),
        snapshot.meta_file(),
    );
    let ts = sign_role(&ts, &of(Role::Timestamp), &mut transcript, &mut out)?;
    let w = Writer::new(repo.dir(), &lock);
    if let Some(tg) = &new_targets {
        w.write(tg)?;
    }
    w.write(&snapshot)?;
    // From here the new root is public (clients probe for it): its keys are kept whatever follows.
    let root_path = w.write(&new_root)?;
    ring.keep();
    w.write(&ts)?;
    check_whole(repo.dir())?;
    out.say(format!(
        "published root version {} ({}); clients that trust an earlier root follow it by themselves",
        new_root.signed.version,
        root_path.display()
    ));
    Ok(out)
}
