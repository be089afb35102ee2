//! PKCS#11 through `cryptoki`: the only place sigvault touches an HSM.
//!
//! Lifecycle, following what SoftHSM and real HSMs need (README.md, "When the HSM goes away"):
//! * the module is loaded once and `C_Initialize`d with `CKF_OS_LOCKING_OK` (without it SoftHSM
//!   turns its mutexes off);
//! * tokens are found by **label**: SoftHSM renumbers slots after `--init-token`;
//! * the user logs in once, on a session that stays open for the token's lifetime (closing the
//!   last session drops the login), and every other session inherits that login;
//! * sessions are not `Sync`, so signing borrows one from a small pool: one per concurrent
//!   signer thread, opened on demand and kept;
//! * SoftHSM has no `CKM_ECDSA_SHA256`: the digest is computed in software and signed with
//!   `CKM_ECDSA`, whose raw r‖s output is converted to DER.
//!
//! What differs between modules is named, not hidden ([`HsmOptions`], README.md "Running on a
//! real HSM"): what a token reports is probed (the key-generation mechanism and its key sizes for
//! the curve, its session limit), what it does not report is a config option (whether its
//! key-generation template may state the public key's usage, a session limit it keeps quiet
//! about), and a token that lacks what sigvault needs is refused with an error naming the token
//! and what it lacks.

pub mod uri;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismInfo;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Limit, Slot};
use der::asn1::{BitString, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use secrecy::SecretString;

use crate::signer::{SignError, SignatureAlgorithm, Signer, raw_ecdsa_to_der};
pub use uri::Pkcs11Uri;

/// Debian's SoftHSM2 module, the default when config names none.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The token-specific behaviours that cannot be probed, chosen in `[hsm]` (see
/// `config::HsmConfig`, which documents each). The defaults suit SoftHSM2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HsmOptions {
    /// State `CKA_VERIFY`, `CKA_ENCRYPT`, `CKA_WRAP`, `CKA_VERIFY_RECOVER` and `CKA_DERIVE` in
    /// the public-key template of `C_GenerateKeyPair` (false: leave them to the token).
    pub public_key_usage_attributes: bool,
    /// Cap on concurrently open signing sessions per token (`None`: what the token reports).
    pub max_sessions: Option<u32>,
}

impl Default for HsmOptions {
    fn default() -> Self {
        Self {
            public_key_usage_attributes: true,
            max_sessions: None,
        }
    }
}

/// How long a signer waits for one of a session-limited token's sessions before failing.
const SESSION_WAIT: Duration = Duration::from_secs(30);

/// Everything that can go wrong talking to a PKCS#11 module, phrased so an operator knows what
/// to fix. PINs never appear in these messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    #[error("PKCS#11 module {path} does not exist; set [hsm] module to your HSM's PKCS#11 library")]
    ModuleMissing { path: PathBuf },
    #[error(
        "cannot load {path} as a PKCS#11 module ({reason}); set [hsm] module to a PKCS#11 library such as {DEFAULT_MODULE}"
    )]
    ModuleLoad { path: PathBuf, reason: String },
    #[error(
        "PKCS#11 module {path} failed to initialise ({reason}); its own configuration or its way to the device is wrong (SoftHSM2: SOFTHSM2_CONF must name a readable config whose tokendir exists; tpm2-pkcs11: TPM2_PKCS11_STORE, TPM2_PKCS11_TCTI and a TPM or resource manager that accepts one more connection; README.md, \"Running on a real HSM\")"
    )]
    Initialize { path: PathBuf, reason: String },
    #[error(
        "no initialised token labelled '{label}' in module {module} (tokens present: {present}); check the token= part of the key URI or run the ceremony"
    )]
    TokenNotFound {
        label: String,
        module: PathBuf,
        present: String,
    },
    #[error("more than one token is labelled '{label}'; add serial= to the key URI")]
    TokenAmbiguous { label: String },
    #[error("wrong PIN for token '{token}'; check the pin file or credential configured for it")]
    WrongPin { token: String },
    #[error(
        "the user PIN of token '{token}' is locked; the token's security officer must reset it"
    )]
    PinLocked { token: String },
    #[error("no private key {what} in token '{token}'")]
    KeyNotFound { token: String, what: String },
    #[error("more than one private key matches {what} in token '{token}'; add id= to the key URI")]
    KeyAmbiguous { token: String, what: String },
    #[error(
        "token '{token}' already holds a key labelled '{label}'; sigvault never overwrites keys"
    )]
    KeyExists { token: String, label: String },
    #[error("token '{token}' does not support mechanism {mechanism}")]
    MechanismNotSupported { token: String, mechanism: String },
    #[error(
        "token '{token}' cannot {what} {curve} keys: its {mechanism} {reason}; sigvault needs {curve} for this key (choose another curve in the config, or another token)"
    )]
    CurveNotSupported {
        token: String,
        curve: &'static str,
        mechanism: &'static str,
        what: &'static str,
        reason: String,
    },
    #[error(
        "token '{token}' made key '{label}' with {attribute} = {value}, which sigvault refuses (a private key must be sensitive, never extractable, and only sign; a public key only verify); the key was destroyed{hint}"
    )]
    KeyUsageRefused {
        token: String,
        label: String,
        attribute: &'static str,
        value: bool,
        hint: &'static str,
    },
    #[error("token '{token}' refused to generate key '{label}' ({reason}){hint}")]
    GenerateFailed {
        token: String,
        label: String,
        reason: String,
        hint: &'static str,
    },
    #[error(
        "token '{token}' has no free session ({limit} open for signing, none returned within {} s); the token limits sessions: lower the signing concurrency or raise [hsm] max_sessions if the token allows more",
        SESSION_WAIT.as_secs()
    )]
    SessionsExhausted { token: String, limit: usize },
    #[error(
        "token '{token}' refused another session (CKR_SESSION_COUNT with {open} open); set [hsm] max_sessions to at most {open} for this token"
    )]
    SessionCount { token: String, open: usize },
    #[error("key {what} in token '{token}' is not an EC key on P-256 or P-384")]
    UnsupportedKey { token: String, what: String },
    #[error(
        "no public key object for {what} in token '{token}'; sigvault needs it to export the SPKI"
    )]
    PublicKeyMissing { token: String, what: String },
    #[error("PKCS#11 {op} failed on token '{token}': {reason}")]
    Pkcs11 {
        token: String,
        op: &'static str,
        reason: String,
    },
}

fn ck<'a>(token: &'a str, op: &'static str) -> impl FnOnce(CkError) -> HsmError + 'a {
    move |e| HsmError::Pkcs11 {
        token: token.to_owned(),
        op,
        reason: e.to_string(),
    }
}

/// A loaded and initialised PKCS#11 module. Cheap to clone.
#[derive(Clone)]
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
    options: HsmOptions,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("path", &self.path).finish()
    }
}

impl Module {
    /// Load `path` and call `C_Initialize` with OS locking. A module is loaded once per process:
    /// later calls with the same path share the first instance (a PKCS#11 library has one
    /// global state per process, whatever number of handles the process holds).
    pub fn load(path: &Path) -> Result<Self, HsmError> {
        Self::load_with(path, HsmOptions::default())
    }

    /// [`Module::load`] with the token-specific behaviours `options` chooses. The options are
    /// this handle's (and its tokens'), not the process's: two configs may load one module
    /// with different options.
    pub fn load_with(path: &Path, options: HsmOptions) -> Result<Self, HsmError> {
        let mut m = Self::load_shared(path)?;
        m.options = options;
        Ok(m)
    }

    fn load_shared(path: &Path) -> Result<Self, HsmError> {
        static LOADED: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();
        if !path.exists() {
            return Err(HsmError::ModuleMissing { path: path.into() });
        }
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.into());
        let mut loaded = LOADED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(m) = loaded.get(&key) {
            return Ok(m.clone());
        }
        let m = Self::load_uncached(path)?;
        loaded.insert(key, m.clone());
        Ok(m)
    }

    fn load_uncached(path: &Path) -> Result<Self, HsmError> {
        let ctx = Pkcs11::new(path).map_err(|e| HsmError::ModuleLoad {
            path: path.into(),
            reason: match e {
                CkError::LibraryLoading(l) => l.to_string(),
                other => other.to_string(),
            },
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(HsmError::Initialize {
                    path: path.into(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(Self {
            ctx,
            path: path.into(),
            options: HsmOptions::default(),
        })
    }

    /// The token-specific behaviours this handle uses.
    pub fn options(&self) -> HsmOptions {
        self.options
    }

    /// The module's file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Labels of every initialised token, for error messages and diagnostics.
    pub fn token_labels(&self) -> Vec<String> {
        let Ok(slots) = self.ctx.get_slots_with_initialized_token() else {
            return Vec::new();
        };
        slots
            .into_iter()
            .filter_map(|s| self.ctx.get_token_info(s).ok())
            .map(|i| i.label().trim_end().to_owned())
            .collect()
    }

    fn find_slot(&self, uri: &Pkcs11Uri) -> Result<Slot, HsmError> {
        // Another process may be writing to some token of the same store (SoftHSM's file store
        // is shared): a slot whose info cannot be read right now is skipped, and the scan is
        // retried a few times before giving up, so one busy token does not hide ours.
        let mut last_err = None;
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(50 << attempt));
            }
            let slots = match self.ctx.get_slots_with_token() {
                Ok(s) => s,
                Err(e) => {
                    last_err = Some(e.to_string());
                    continue;
                }
            };
            let mut found = Vec::new();
            let mut present = Vec::new();
            let mut unreadable = false;
            for slot in slots {
                let info = match self.ctx.get_token_info(slot) {
                    Ok(i) => i,
                    Err(e) => {
                        unreadable = true;
                        last_err = Some(e.to_string());
                        continue;
                    }
                };
                if !info.token_initialized() {
                    continue;
                }
                let label = info.label().trim_end();
                present.push(label.to_owned());
                let matches = label == uri.token
                    && uri
                        .serial
                        .as_deref()
                        .is_none_or(|s| info.serial_number().trim_end() == s)
                    && uri
                        .manufacturer
                        .as_deref()
                        .is_none_or(|s| info.manufacturer_id().trim_end() == s)
                    && uri
                        .model
                        .as_deref()
                        .is_none_or(|s| info.model().trim_end() == s);
                if matches {
                    found.push(slot);
                }
            }
            match found.as_slice() {
                [slot] => return Ok(*slot),
                [] if unreadable => continue,
                [] => {
                    return Err(HsmError::TokenNotFound {
                        label: uri.token.clone(),
                        module: self.path.clone(),
                        present: if present.is_empty() {
                            "none".into()
                        } else {
                            present.join(", ")
                        },
                    });
                }
                _ => {
                    return Err(HsmError::TokenAmbiguous {
                        label: uri.token.clone(),
                    });
                }
            }
        }
        Err(HsmError::Pkcs11 {
            token: uri.token.clone(),
            op: "C_GetTokenInfo",
            reason: last_err.unwrap_or_else(|| "token list unreadable".into()),
        })
    }

    /// Open the token named by `uri` and log in as the user with `pin`.
    pub fn login(&self, uri: &Pkcs11Uri, pin: &SecretString) -> Result<Arc<Token>, HsmError> {
        let slot = self.find_slot(uri)?;
        let label = uri.token.clone();
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(ck(&label, "C_OpenSession"))?;
        match session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _)) => {
                return Err(HsmError::WrongPin { token: label });
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(HsmError::PinLocked { token: label });
            }
            Err(e) => return Err(ck(&label, "C_Login")(e)),
        }
        let max_sessions = self.session_limit(slot, &label);
        let token = Arc::new(Token {
            module: self.clone(),
            slot,
            label,
            login: Mutex::new(session),
            pool: Mutex::new(Pool::default()),
            pool_freed: Condvar::new(),
            max_sessions,
            failing: Mutex::new(None),
            failing_flag: std::sync::atomic::AtomicBool::new(false),
            signatures: std::sync::atomic::AtomicU64::new(0),
            failures: std::sync::atomic::AtomicU64::new(0),
        });
        let mut live = LOGGED_IN.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|t| t.strong_count() > 0);
        live.push(Arc::downgrade(&token));
        Ok(token)
    }
}

impl Module {
    /// How many signing sessions may be open at once on `slot`: `[hsm] max_sessions` if set,
    /// else what the token reports (`ulMaxSessionCount`, less the session holding the login),
    /// else unbounded.
    fn session_limit(&self, slot: Slot, label: &str) -> Option<usize> {
        if let Some(n) = self.options.max_sessions {
            return Some(n as usize);
        }
        let reported = match self.ctx.get_token_info(slot).map(|i| i.max_session_count()) {
            Ok(Limit::Max(n)) => n,
            _ => return None,
        };
        let n = usize::try_from(reported.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .max(1);
        tracing::info!(
            token = label,
            max_sessions = n,
            "the token limits sessions; signing uses at most this many at once"
        );
        Some(n)
    }
}

/// Every token this process is logged in to, for [`metrics_text`].
static LOGGED_IN: Mutex<Vec<std::sync::Weak<Token>>> = Mutex::new(Vec::new());

/// Prometheus lines for the tokens this process is logged in to, per token label (two logins to
/// one token count together): signatures made, signatures failed, and whether the token is
/// failing now (its last signature failed). What an operator alerts on before the watchdog
/// restarts the service.
pub fn metrics_text() -> String {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering;
    /// Per label: signatures, failures, failing now.
    type Tally = (u64, u64, bool);
    let mut by_label: std::collections::BTreeMap<String, Tally> = std::collections::BTreeMap::new();
    for t in LOGGED_IN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(std::sync::Weak::upgrade)
    {
        let e = by_label.entry(t.label.clone()).or_default();
        e.0 += t.signatures.load(Ordering::Relaxed);
        e.1 += t.failures.load(Ordering::Relaxed);
        e.2 |= t.failing_flag.load(Ordering::Relaxed);
    }
    let mut out = String::new();
    let mut series = |name: &str, kind: &str, help: &str, pick: &dyn Fn(&Tally) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (label, v) in &by_label {
            let label = label.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{token=\"{label}\"}} {}", pick(v));
        }
    };
    series(
        "sigvault_hsm_signatures_total",
        "counter",
        "Signatures the HSM token made for this process.",
        &|v| v.0,
    );
    series(
        "sigvault_hsm_signature_failures_total",
        "counter",
        "Signatures the HSM token failed (session, device or key errors).",
        &|v| v.1,
    );
    series(
        "sigvault_hsm_failing",
        "gauge",
        "1 while the token's last signature failed (the service exits when it lasts).",
        &|v| u64::from(v.2),
    );
    out
}

/// A logged-in token. Holds the session that carries the login, and a pool of signing sessions.
pub struct Token {
    module: Module,
    slot: Slot,
    label: String,
    /// The session that holds the login. Kept open for the token's lifetime; also used for the
    /// rare management operations (find, generate), serialised by the mutex.
    login: Mutex<Session>,
    /// Sessions for signing: idle ones are taken for one operation and put back after.
    pool: Mutex<Pool>,
    /// Signalled when a session is returned or closed, for signers waiting at the limit.
    pool_freed: Condvar,
    /// At most this many signing sessions open at once (see [`Module::session_limit`]).
    max_sessions: Option<usize>,
    /// Set by a failed signature and cleared by the next good one: since when, and why, the
    /// token has been failing (see [`Token::failing`]).
    failing: Mutex<Option<(std::time::Instant, String)>>,
    /// Fast path for the signer: whether `failing` is set.
    failing_flag: std::sync::atomic::AtomicBool,
    /// Signatures made and failed, for `/metrics`.
    signatures: std::sync::atomic::AtomicU64,
    failures: std::sync::atomic::AtomicU64,
}

/// The signing sessions of a token: the idle ones, and how many are open in all (idle or lent).
#[derive(Default)]
struct Pool {
    idle: Vec<Session>,
    open: usize,
}

/// Upper bound on idle pooled sessions; more concurrent signers than this still work, their
/// extra sessions are closed after use.
const MAX_IDLE_SESSIONS: usize = 64;

/// How a key is described in messages: by the URI's object label and/or id.
fn describe(uri: &Pkcs11Uri) -> String {
    let mut parts = Vec::new();
    if let Some(o) = &uri.object {
        parts.push(format!("labelled '{o}'"));
    }
    if let Some(id) = &uri.id {
        parts.push(format!("with id {}", hex::encode(id)));
    }
    parts.join(" ")
}

impl Token {
    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn with_mgmt<T>(&self, f: impl FnOnce(&Session) -> Result<T, HsmError>) -> Result<T, HsmError> {
        let guard = self.login.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// Since when, and why, signing with this token has been failing: `None` while the last
    /// signature succeeded. An HSM that went away (a removed token, a network HSM that dropped
    /// its sessions or restarted) shows here; the services exit when it lasts (see
    /// `cmd::hsm_watchdog`), so systemd restarts them into a fresh login once it is back.
    pub fn failing(&self) -> Option<(std::time::Duration, String)> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(since, why)| (since.elapsed(), why.clone()))
    }

    fn note_failure(&self, why: &str) {
        self.failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::error!(token = %self.label, error = %why, "the HSM failed to sign");
            *f = Some((std::time::Instant::now(), why.to_owned()));
            self.failing_flag
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn note_success(&self) {
        self.signatures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.failing_flag.load(std::sync::atomic::Ordering::Relaxed) {
            let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
            if f.take().is_some() {
                tracing::info!(token = %self.label, "the HSM signs again");
            }
            self.failing_flag
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// An idle signing session, or a new one while the token's limit allows, or (at the limit)
    /// the next one another signer returns.
    fn take_session(&self) -> Result<Session, HsmError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = std::time::Instant::now() + SESSION_WAIT;
        loop {
            if let Some(s) = pool.idle.pop() {
                return Ok(s);
            }
            if self.max_sessions.is_none_or(|max| pool.open < max) {
                break;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(HsmError::SessionsExhausted {
                    token: self.label.clone(),
                    limit: pool.open,
                });
            }
            pool = self
                .pool_freed
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        pool.open += 1;
        let open = pool.open;
        drop(pool);
        match self.module.ctx.open_ro_session(self.slot) {
            Ok(s) => Ok(s),
            Err(e) => {
                self.session_closed();
                Err(match e {
                    CkError::Pkcs11(RvError::SessionCount, _) => HsmError::SessionCount {
                        token: self.label.clone(),
                        // This one was refused; the login's session is open besides.
                        open: open - 1,
                    },
                    e => ck(&self.label, "C_OpenSession")(e),
                })
            }
        }
    }

    fn put_session(&self, s: Session) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.idle.len() < MAX_IDLE_SESSIONS {
            pool.idle.push(s);
        } else {
            pool.open -= 1;
        }
        drop(pool);
        self.pool_freed.notify_one();
    }

    /// A lent session was dropped (closed) instead of returned.
    fn session_closed(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.open = pool.open.saturating_sub(1);
        drop(pool);
        self.pool_freed.notify_one();
    }

    /// The most signing sessions this token opens at once (`None`: unbounded).
    pub fn max_sessions(&self) -> Option<usize> {
        self.max_sessions
    }

    fn key_template(uri: &Pkcs11Uri, class: ObjectClass) -> Vec<Attribute> {
        let mut t = vec![Attribute::Class(class), Attribute::KeyType(KeyType::EC)];
        if let Some(o) = &uri.object {
            t.push(Attribute::Label(o.as_bytes().to_vec()));
        }
        if let Some(id) = &uri.id {
            t.push(Attribute::Id(id.clone()));
        }
        t
    }

    /// Whether any object (key of any class) with this label already exists on the token.
    pub fn object_exists(&self, label: &str) -> Result<bool, HsmError> {
        self.with_mgmt(|s| {
            let found = s
                .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
                .map_err(ck(&self.label, "C_FindObjects"))?;
            Ok(!found.is_empty())
        })
    }

    fn require_mechanism(&self, m: MechanismType, name: &str) -> Result<MechanismInfo, HsmError> {
        // Ask for this one mechanism: C_GetMechanismInfo answers CKR_MECHANISM_INVALID when the
        // token lacks it (listing all mechanisms would trip over vendor-defined ones).
        match self.module.ctx.get_mechanism_info(self.slot, m) {
            Ok(info) => Ok(info),
            Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => {
                Err(HsmError::MechanismNotSupported {
                    token: self.label.clone(),
                    mechanism: name.into(),
                })
            }
            Err(e) => Err(ck(&self.label, "C_GetMechanismInfo")(e)),
        }
    }

    /// Probe that the token can generate and sign with keys of `alg`'s curve: the mechanisms
    /// exist, claim the function, and their key-size range (in bits, for EC) holds the curve's.
    pub fn require_curve(&self, alg: SignatureAlgorithm) -> Result<(), HsmError> {
        let bits = alg.scalar_len() * 8;
        for (m, name, what, can) in [
            (
                MechanismType::ECC_KEY_PAIR_GEN,
                "CKM_EC_KEY_PAIR_GEN",
                "generate",
                MechanismInfo::generate_key_pair as fn(&MechanismInfo) -> bool,
            ),
            (
                MechanismType::ECDSA,
                "CKM_ECDSA",
                "sign with",
                MechanismInfo::sign,
            ),
        ] {
            let info = self.require_mechanism(m, name)?;
            let refuse = |reason: String| HsmError::CurveNotSupported {
                token: self.label.clone(),
                curve: alg.curve_name(),
                mechanism: name,
                what,
                reason,
            };
            if !can(&info) {
                return Err(refuse(format!("lacks the {what} flag")));
            }
            // A module that reports no range (both 0) is not held to one.
            let (min, max) = (info.min_key_size(), info.max_key_size());
            if (min, max) != (0, 0) && !(min..=max).contains(&bits) {
                return Err(refuse(format!(
                    "takes key sizes {min} to {max} bits, not {bits}"
                )));
            }
        }
        Ok(())
    }

    /// Generate an EC key pair inside the token: the private half is a token object,
    /// sensitive, never extractable, usable only to sign. Refuses if the label is taken; checks
    /// what the token made (see [`Token::check_generated`]).
    pub fn generate_ec_key(
        &self,
        label: &str,
        id: &[u8],
        alg: SignatureAlgorithm,
    ) -> Result<GeneratedKey, HsmError> {
        self.require_curve(alg)?;
        if self.object_exists(label)? {
            return Err(HsmError::KeyExists {
                token: self.label.clone(),
                label: label.into(),
            });
        }
        let params = alg.curve_oid().to_der().map_err(|e| HsmError::Pkcs11 {
            token: self.label.clone(),
            op: "encode EC params",
            reason: e.to_string(),
        })?;
        let label_b = label.as_bytes().to_vec();
        // Every usage attribute is stated, not left to the token's defaults: SoftHSM2 (and other
        // modules) otherwise mark an EC private key decrypt and unwrap as well. A signing key
        // signs and nothing else; its public half only verifies. A module that derives the
        // public half's usage itself and refuses it stated ([`HsmOptions`]) gets a template
        // without it, and the usage is set on the object once made (tpm2-pkcs11 1.9 marks an EC
        // public key encrypt and not verify); what the token made is checked below either way.
        let public_usage = [
            Attribute::Verify(true),
            Attribute::VerifyRecover(false),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Derive(false),
        ];
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::EcParams(params),
            Attribute::Label(label_b.clone()),
            Attribute::Id(id.to_vec()),
        ];
        if self.module.options.public_key_usage_attributes {
            public.extend(public_usage.iter().cloned());
        }
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::SignRecover(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Label(label_b),
            Attribute::Id(id.to_vec()),
        ];
        let (pub_h, priv_h) = self.with_mgmt(|s| {
            s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                .map_err(|e| HsmError::GenerateFailed {
                    token: self.label.clone(),
                    label: label.into(),
                    reason: e.to_string(),
                    hint: if self.module.options.public_key_usage_attributes {
                        "; if this module refuses usage attributes in the public-key template \
                         (tpm2-pkcs11 does, with CKR_GENERAL_ERROR), set \
                         [hsm] public_key_usage_attributes = false"
                    } else {
                        ""
                    },
                })
        })?;
        let key = GeneratedKey {
            public: pub_h,
            private: priv_h,
        };
        let set_usage = || {
            if self.module.options.public_key_usage_attributes {
                return Ok(());
            }
            self.with_mgmt(|s| {
                s.update_attributes(key.public, &public_usage)
                    .map_err(|e| HsmError::GenerateFailed {
                        token: self.label.clone(),
                        label: label.into(),
                        reason: format!(
                            "C_SetAttributeValue of the public key's usage, which the template left out \
                             ([hsm] public_key_usage_attributes = false): {e}"
                        ),
                        hint: "",
                    })
            })
        };
        if let Err(e) = set_usage().and_then(|()| self.check_generated(label, key)) {
            if let Err(d) = self.destroy_generated(key) {
                tracing::error!(token = %self.label, key = label, error = %d, "could not destroy a refused key");
            }
            return Err(e);
        }
        Ok(key)
    }

    /// Read back the usage of a key pair just made and refuse one that could do more than
    /// sign: the template asked for that, but a module may ignore an attribute or (with
    /// `public_key_usage_attributes = false`) choose the public half's itself. Attributes a
    /// module does not have for the object count as false; the private key's sensitivity,
    /// extractability and signing must be readable.
    fn check_generated(&self, label: &str, key: GeneratedKey) -> Result<(), HsmError> {
        use AttributeType as T;
        let read = |h: ObjectHandle, types: &[AttributeType]| {
            self.with_mgmt(|s| {
                s.get_attributes(h, types)
                    .map_err(ck(&self.label, "C_GetAttributeValue"))
            })
        };
        let flag = |attrs: &[Attribute], t: AttributeType| -> Option<bool> {
            attrs.iter().find_map(|a| match (a, t) {
                (Attribute::Sensitive(v), T::Sensitive)
                | (Attribute::Extractable(v), T::Extractable)
                | (Attribute::Sign(v), T::Sign)
                | (Attribute::SignRecover(v), T::SignRecover)
                | (Attribute::Decrypt(v), T::Decrypt)
                | (Attribute::Unwrap(v), T::Unwrap)
                | (Attribute::Derive(v), T::Derive)
                | (Attribute::Encrypt(v), T::Encrypt)
                | (Attribute::Wrap(v), T::Wrap)
                | (Attribute::VerifyRecover(v), T::VerifyRecover) => Some(*v),
                _ => None,
            })
        };
        let refuse = |attribute: &'static str, value: bool| HsmError::KeyUsageRefused {
            token: self.label.clone(),
            label: label.into(),
            attribute,
            value,
            hint: if self.module.options.public_key_usage_attributes {
                ""
            } else {
                "; this token chose the public key's usage itself ([hsm] public_key_usage_attributes = false)"
            },
        };
        let private = [
            (T::Sensitive, "CKA_SENSITIVE", true, true),
            (T::Extractable, "CKA_EXTRACTABLE", false, true),
            (T::Sign, "CKA_SIGN", true, true),
            (T::SignRecover, "CKA_SIGN_RECOVER", false, false),
            (T::Decrypt, "CKA_DECRYPT", false, false),
            (T::Unwrap, "CKA_UNWRAP", false, false),
            (T::Derive, "CKA_DERIVE", false, false),
        ];
        let public = [
            (T::Encrypt, "CKA_ENCRYPT", false, false),
            (T::Wrap, "CKA_WRAP", false, false),
            (T::VerifyRecover, "CKA_VERIFY_RECOVER", false, false),
            (T::Derive, "CKA_DERIVE", false, false),
        ];
        for (handle, checks) in [(key.private, &private[..]), (key.public, &public[..])] {
            let types: Vec<_> = checks.iter().map(|c| c.0).collect();
            let attrs = read(handle, &types)?;
            for &(t, name, want, required) in checks {
                match flag(&attrs, t) {
                    Some(v) if v != want => return Err(refuse(name, v)),
                    None if required => return Err(refuse(name, !want)),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Destroy a key pair generated in this run (used only to undo a ceremony that failed
    /// half-way, so nothing half-created stays behind).
    pub fn destroy_generated(&self, key: GeneratedKey) -> Result<(), HsmError> {
        self.with_mgmt(|s| {
            s.destroy_object(key.private)
                .map_err(ck(&self.label, "C_DestroyObject"))?;
            s.destroy_object(key.public)
                .map_err(ck(&self.label, "C_DestroyObject"))
        })
    }

    /// Fill `buf` from the token's random number generator.
    pub fn random(&self, buf: &mut [u8]) -> Result<(), HsmError> {
        self.with_mgmt(|s| {
            s.generate_random_slice(buf)
                .map_err(ck(&self.label, "C_GenerateRandom"))
        })
    }

    /// Find the private key named by `uri` and build a signer for it.
    pub fn signer(self: &Arc<Self>, uri: &Pkcs11Uri) -> Result<HsmSigner, HsmError> {
        let what = describe(uri);
        let (private, public) = self.with_mgmt(|s| {
            let privs = s
                .find_objects(&Self::key_template(uri, ObjectClass::PRIVATE_KEY))
                .map_err(ck(&self.label, "C_FindObjects"))?;
            let private = match privs.as_slice() {
                [h] => *h,
                [] => {
                    return Err(HsmError::KeyNotFound {
                        token: self.label.clone(),
                        what: what.clone(),
                    });
                }
                _ => {
                    return Err(HsmError::KeyAmbiguous {
                        token: self.label.clone(),
                        what: what.clone(),
                    });
                }
            };
            // Look the public half up by the private key's own id and label, so a URI that names
            // only one of them still pairs the right objects.
            let attrs = s
                .get_attributes(private, &[AttributeType::Id, AttributeType::Label])
                .map_err(ck(&self.label, "C_GetAttributeValue"))?;
            let mut tmpl = vec![
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
            ];
            tmpl.extend(attrs);
            let pubs = s
                .find_objects(&tmpl)
                .map_err(ck(&self.label, "C_FindObjects"))?;
            match pubs.as_slice() {
                [h] => Ok((private, *h)),
                _ => Err(HsmError::PublicKeyMissing {
                    token: self.label.clone(),
                    what: what.clone(),
                }),
            }
        })?;
        let (alg, spki) = self.export_spki(public, &what)?;
        let info = self.require_mechanism(MechanismType::ECDSA, "CKM_ECDSA")?;
        if !info.sign() {
            return Err(HsmError::CurveNotSupported {
                token: self.label.clone(),
                curve: alg.curve_name(),
                mechanism: "CKM_ECDSA",
                what: "sign with",
                reason: "lacks the sign flag".into(),
            });
        }
        Ok(HsmSigner {
            token: Arc::clone(self),
            key: private,
            alg,
            spki,
            uri: uri.to_string(),
        })
    }

    /// Read `CKA_EC_PARAMS` and `CKA_EC_POINT` of a public key object and build the DER SPKI.
    fn export_spki(
        &self,
        public: ObjectHandle,
        what: &str,
    ) -> Result<(SignatureAlgorithm, Vec<u8>), HsmError> {
        let attrs = self.with_mgmt(|s| {
            s.get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
                .map_err(ck(&self.label, "C_GetAttributeValue"))
        })?;
        let mut params = None;
        let mut point = None;
        for a in attrs {
            match a {
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                _ => {}
            }
        }
        let unsupported = || HsmError::UnsupportedKey {
            token: self.label.clone(),
            what: what.into(),
        };
        let params = params.ok_or_else(unsupported)?;
        let point = point.ok_or_else(unsupported)?;
        let oid = ObjectIdentifier::from_der(&params).map_err(|_| unsupported())?;
        let alg = SignatureAlgorithm::from_curve_oid(&oid).ok_or_else(unsupported)?;
        let point_len = 1 + 2 * alg.scalar_len();
        // PKCS#11 says CKA_EC_POINT is a DER OCTET STRING; some modules return the raw point.
        let raw = if point.len() == point_len && point[0] == 0x04 {
            point
        } else {
            OctetString::from_der(&point)
                .map_err(|_| unsupported())?
                .into_bytes()
        };
        if raw.len() != point_len || raw[0] != 0x04 {
            return Err(unsupported());
        }
        let spki = spki::SubjectPublicKeyInfoOwned {
            algorithm: spki::AlgorithmIdentifierOwned {
                oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
                parameters: Some(der::Any::from(&oid)),
            },
            subject_public_key: BitString::from_bytes(&raw).map_err(|_| unsupported())?,
        };
        let der = spki.to_der().map_err(|_| unsupported())?;
        Ok((alg, der))
    }
}

/// Handles of a key pair just generated (see [`Token::generate_ec_key`]).
#[derive(Debug, Clone, Copy)]
pub struct GeneratedKey {
    public: ObjectHandle,
    private: ObjectHandle,
}

/// A [`Signer`] backed by a private key inside a PKCS#11 token.
#[derive(Clone)]
pub struct HsmSigner {
    token: Arc<Token>,
    key: ObjectHandle,
    alg: SignatureAlgorithm,
    spki: Vec<u8>,
    uri: String,
}

impl std::fmt::Debug for HsmSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmSigner")
            .field("key", &self.uri)
            .field("alg", &self.alg)
            .finish()
    }
}

impl HsmSigner {
    /// The key's URI, for logs and transcripts.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The token this key lives in.
    pub fn token(&self) -> &Arc<Token> {
        &self.token
    }

    /// Sign a digest already computed with the algorithm's hash; returns raw r‖s.
    fn sign_digest_raw(&self, digest: &[u8]) -> Result<Vec<u8>, SignError> {
        let failed = |reason: String| {
            self.token.note_failure(&reason);
            SignError::Device {
                token: self.token.label.clone(),
                key: self.uri.clone(),
                reason,
            }
        };
        let session = self
            .token
            .take_session()
            .map_err(|e| failed(e.to_string()))?;
        // Mechanism holds raw pointers and is not Sync: build it per call.
        match session.sign(&Mechanism::Ecdsa, self.key, digest) {
            Ok(sig) => {
                self.token.put_session(session);
                self.token.note_success();
                Ok(sig)
            }
            // A failed session is dropped (closed), not returned to the pool.
            Err(e) => {
                drop(session);
                self.token.session_closed();
                Err(failed(e.to_string()))
            }
        }
    }
}

impl Signer for HsmSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn failing(&self) -> Option<String> {
        self.token.failing().map(|(for_how_long, why)| {
            format!(
                "the HSM token '{}' has failed every signature for {} s: {why}",
                self.token.label,
                for_how_long.as_secs()
            )
        })
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let digest = self.alg.digest(message);
        let raw = self.sign_digest_raw(&digest)?;
        raw_ecdsa_to_der(&raw, self.alg.scalar_len())
    }
}
