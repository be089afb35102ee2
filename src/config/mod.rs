//! Configuration files: TOML, one per service, unknown keys are errors, secrets by path.
//!
//! A file says which service it configures by its top-level table: a ceremony config has a
//! `[ceremony]` table, and later a tlog config a `[tlog]` table, and so on. `[hsm]` is shared.
//! `sigvault check-config FILE` loads a file through [`load`] and runs [`AnyConfig::check`].

pub mod rekor_v2;
pub mod secret;
pub mod tuf;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hsm::{DEFAULT_MODULE, Pkcs11Uri};
use crate::signer::SignatureAlgorithm;
pub use rekor_v2::{RekorV2Config, RekorV2LogConfig, RekorV2Section};
pub use secret::{SecretError, SecretSource};
pub use tuf::TufConfig;

/// A config problem, phrased as what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `[hsm]`: which PKCS#11 module to load, and how long a service bears a token that fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// Path of the PKCS#11 library. Default: Debian's SoftHSM2 module.
    #[serde(default = "default_module")]
    pub module: PathBuf,
    /// A service whose token has failed every signature (a probe once a second included) for
    /// this long exits non-zero, so that systemd restarts it into a fresh module load and login.
    /// Default 10; 1 to 3600. Services only (the ceremony serves nothing).
    #[serde(default)]
    pub exit_after_failing_secs: Option<u64>,
    /// Whether the public-key template of `C_GenerateKeyPair` states the usage attributes
    /// (`CKA_VERIFY`, `CKA_ENCRYPT`, ...). Default true. Some modules derive them from the key
    /// and refuse a template that states them: tpm2-pkcs11 1.9 fails with `CKR_GENERAL_ERROR`
    /// ("User specified and TPM specified attr mismatch"). With false they are left to the
    /// token; either way both halves' usage is read back after generation and a key that could
    /// do more than sign (or verify) is destroyed and refused.
    #[serde(default = "default_true")]
    pub public_key_usage_attributes: bool,
    /// At most this many sessions open at once per token for signing (a signer waits for a free
    /// one beyond that). Default: what the token reports in `CK_TOKEN_INFO.ulMaxSessionCount`
    /// less the one that holds the login, else unbounded. For modules that limit sessions
    /// without saying so; 1 to 1024.
    #[serde(default)]
    pub max_sessions: Option<u32>,
}

impl Default for HsmConfig {
    fn default() -> Self {
        Self {
            module: default_module(),
            exit_after_failing_secs: None,
            public_key_usage_attributes: true,
            max_sessions: None,
        }
    }
}

impl HsmConfig {
    /// How long a token may fail every signature before the service exits.
    pub fn exit_after_failing(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.exit_after_failing_secs.unwrap_or(10))
    }

    /// The token-specific behaviours this config chooses, for [`crate::hsm::Module::load_with`].
    pub fn options(&self) -> crate::hsm::HsmOptions {
        crate::hsm::HsmOptions {
            public_key_usage_attributes: self.public_key_usage_attributes,
            max_sessions: self.max_sessions,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(v) = self.max_sessions
            && !(1..=1024).contains(&v)
        {
            return Err(format!("[hsm] max_sessions must be 1 to 1024, not {v}"));
        }
        match self.exit_after_failing_secs {
            Some(v) if !(1..=3600).contains(&v) => Err(format!(
                "[hsm] exit_after_failing_secs must be 1 to 3600, not {v}"
            )),
            _ => Ok(()),
        }
    }
}

fn default_module() -> PathBuf {
    DEFAULT_MODULE.into()
}

/// A key in a token and the PIN that unlocks the token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// RFC 7512 URI naming token and key, e.g. `pkcs11:token=sigvault-ctlog;object=ctlog`.
    pub key: Pkcs11Uri,
    /// Where the token's user PIN is read from.
    pub pin: SecretSource,
}

/// Curve names as written in config.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum Curve {
    #[serde(rename = "P-256")]
    P256,
    #[serde(rename = "P-384")]
    P384,
}

impl Curve {
    pub fn algorithm(self) -> SignatureAlgorithm {
        match self {
            Self::P256 => SignatureAlgorithm::EcdsaP256Sha256,
            Self::P384 => SignatureAlgorithm::EcdsaP384Sha384,
        }
    }
}

/// A CA key and the certificate the ceremony makes for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    pub key: Pkcs11Uri,
    pub pin: SecretSource,
    /// Key curve.
    pub curve: Curve,
    /// Certificate subject, RFC 4514 (e.g. `CN=sigvault root CA,O=sigvault`).
    pub subject: String,
    /// Validity in days from the ceremony.
    pub validity_days: u32,
}

impl CaConfig {
    pub fn key_config(&self) -> KeyConfig {
        KeyConfig {
            key: self.key.clone(),
            pin: self.pin.clone(),
        }
    }
}

/// `[ceremony]`: every key the appliance needs, and where the public outputs go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonySection {
    /// Directory for root.pem, issuing-ca.pem, *.pub.pem and transcript.json. Must not already
    /// hold any of them.
    pub output_dir: PathBuf,
    pub root: CaConfig,
    pub issuing_ca: CaConfig,
    /// CT log key (P-256): signs SCTs and STHs.
    pub ctlog: KeyConfig,
    /// Rekor key (P-256): signs SETs.
    pub rekor: KeyConfig,
    /// Merkle log key (P-256): signs checkpoints.
    pub tlog: KeyConfig,
    /// The timestamp authority's key and certificate (issued by the root). Optional: an
    /// installation without one adds it later with `sigvault ceremony --add tsa`.
    #[serde(default)]
    pub tsa: Option<TsaKeyConfig>,
    /// The key (P-256) of a Rekor v2 log: the tlog signs that log's checkpoints with it.
    /// Optional: an installation adds it later with `sigvault ceremony --add rekor-v2`.
    #[serde(default)]
    pub rekor_v2: Option<KeyConfig>,
}

/// `[ceremony.tsa]`: the TSA key and the certificate the root issues for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaKeyConfig {
    pub key: Pkcs11Uri,
    pub pin: SecretSource,
    /// Key curve; P-256 (default) or P-384.
    #[serde(default = "default_tsa_curve")]
    pub curve: Curve,
    /// Certificate subject, RFC 4514.
    pub subject: String,
    /// Validity in days from the ceremony; at most what is left of the root's.
    pub validity_days: u32,
}

impl TsaKeyConfig {
    pub fn key_config(&self) -> KeyConfig {
        KeyConfig {
            key: self.key.clone(),
            pin: self.pin.clone(),
        }
    }
}

fn default_tsa_curve() -> Curve {
    Curve::P256
}

/// A whole ceremony config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyConfig {
    #[serde(default)]
    pub hsm: HsmConfig,
    pub ceremony: CeremonySection,
}

impl CeremonyConfig {
    /// The (role, key) pairs in ceremony order: the five every installation has, then the
    /// optional ones configured.
    pub fn roles(&self) -> Vec<(&'static str, KeyConfig)> {
        let c = &self.ceremony;
        let mut roles = vec![
            ("root", c.root.key_config()),
            ("issuing-ca", c.issuing_ca.key_config()),
            ("ctlog", c.ctlog.clone()),
            ("rekor", c.rekor.clone()),
            ("tlog", c.tlog.clone()),
        ];
        if let Some(t) = &c.tsa {
            roles.push(("tsa", t.key_config()));
        }
        if let Some(k) = &c.rekor_v2 {
            roles.push(("rekor-v2", k.clone()));
        }
        roles
    }

    fn validate(&self) -> Result<(), String> {
        if self.hsm.exit_after_failing_secs.is_some() {
            return Err(
                "[hsm] exit_after_failing_secs is for the services; the ceremony serves nothing"
                    .into(),
            );
        }
        let c = &self.ceremony;
        if c.root.curve != Curve::P384 {
            tracing::warn!(
                "root CA curve is not P-384 (P-384 is recommended for a root, which outlives every key it certifies)"
            );
        }
        for (name, ca) in [("root", &c.root), ("issuing_ca", &c.issuing_ca)] {
            crate::pki::parse_name(&ca.subject)
                .map_err(|e| format!("[ceremony.{name}] subject: {e}"))?;
            if ca.validity_days == 0 {
                return Err(format!("[ceremony.{name}] validity_days must be > 0"));
            }
        }
        if c.issuing_ca.validity_days > c.root.validity_days {
            return Err(
                "[ceremony.issuing_ca] validity_days exceeds the root's: the issuing CA cannot outlive its root"
                    .into(),
            );
        }
        if c.root.subject == c.issuing_ca.subject {
            return Err("root and issuing CA subjects must differ".into());
        }
        if let Some(t) = &c.tsa {
            crate::pki::parse_name(&t.subject)
                .map_err(|e| format!("[ceremony.tsa] subject: {e}"))?;
            if t.validity_days == 0 || t.validity_days > c.root.validity_days {
                return Err(
                    "[ceremony.tsa] validity_days must be > 0 and no more than the root's".into(),
                );
            }
            if t.subject == c.root.subject || t.subject == c.issuing_ca.subject {
                return Err("[ceremony.tsa] subject must differ from the CAs' subjects".into());
            }
        }
        let roles = self.roles();
        for (i, (a, ka)) in roles.iter().enumerate() {
            if ka.key.object.is_none() {
                return Err(format!(
                    "[ceremony.{a}] key URI needs object=<label>: the ceremony creates keys by label"
                ));
            }
            for (b, kb) in &roles[i + 1..] {
                if ka.key.token == kb.key.token && ka.key.object == kb.key.object {
                    return Err(format!(
                        "[ceremony.{a}] and [ceremony.{b}] name the same key"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `[[tlog.trees]]`: one Merkle tree and the key that signs its checkpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlogTreeConfig {
    /// Short name used in URLs: 1-64 of a-z, 0-9 and '-'.
    pub name: String,
    /// Checkpoint origin line. Rekor v1 clients expect `<hostname> - <tree id>`.
    pub origin: String,
    /// Name on the checkpoint signature line (for Rekor: the host[:port] of its public URL).
    pub note_name: String,
    /// Checkpoint key (ECDSA P-256) and its token's PIN.
    pub key: Pkcs11Uri,
    pub pin: SecretSource,
    /// Frozen: reads only, appends refused (the tree must exist).
    #[serde(default)]
    pub frozen: bool,
}

/// `[tlog]`: the Merkle log service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlogSection {
    /// MariaDB URL `mysql://user:password@host:port/database`, read from a file or credential
    /// because it carries a password.
    pub database_url: SecretSource,
    /// Connection pool size.
    #[serde(default = "default_db_connections")]
    pub database_max_connections: u32,
    /// Apply database migrations at start (otherwise run `sigvault migrate`).
    #[serde(default)]
    pub migrate_on_start: bool,
    /// Internal API listener for ctlog and rekor: `unix:/path` (default) or `host:port`.
    #[serde(default = "default_tlog_internal")]
    pub internal_listen: crate::http::ListenAddr,
    /// TLS for the internal listener; with `client_ca` it requires client certificates (mutual
    /// TLS). Required when `internal_listen` is TCP off loopback.
    #[serde(default)]
    pub internal_tls: Option<crate::http::TlsFiles>,
    /// Public read API (C2SP tlog-tiles, /healthz, /readyz, /metrics).
    #[serde(default = "default_tlog_public")]
    pub public_listen: crate::http::ListenAddr,
    /// TLS for the public listener; required off loopback.
    #[serde(default)]
    pub public_tls: Option<crate::http::TlsFiles>,
    /// Largest entry accepted, bytes (at most 65535, the tlog-tiles entry bundle limit).
    #[serde(default = "default_max_entry")]
    pub max_entry_size: usize,
    /// Most entries integrated in one batch.
    #[serde(default = "default_batch_max")]
    pub batch_max_entries: usize,
    /// Longest an append waits for its batch to fill, milliseconds.
    #[serde(default = "default_batch_wait")]
    pub batch_max_wait_ms: u64,
    /// Sequencer lease length, milliseconds; a standby takes over this long after a crash.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_ms: u64,
    /// Appends allowed to wait per tree before new ones get 503.
    #[serde(default = "default_queue_limit")]
    pub queue_limit: usize,
    /// The rollback guard's directory (records of the heads this instance committed); default:
    /// systemd's `$STATE_DIRECTORY`, else the guard is off.
    #[serde(default)]
    pub state_dir: Option<std::path::PathBuf>,
    /// The trees this service serves.
    pub trees: Vec<TlogTreeConfig>,
}

fn default_db_connections() -> u32 {
    16
}
fn default_tlog_internal() -> crate::http::ListenAddr {
    crate::http::ListenAddr::Unix("/run/sigvault-tlog/tlog.sock".into())
}
fn default_tlog_public() -> crate::http::ListenAddr {
    crate::http::ListenAddr::Tcp(([127, 0, 0, 1], 8090).into())
}
fn default_max_entry() -> usize {
    65_535
}
fn default_batch_max() -> usize {
    512
}
fn default_batch_wait() -> u64 {
    8
}
fn default_lease_ttl() -> u64 {
    10_000
}
fn default_queue_limit() -> usize {
    65_536
}

/// A whole tlog config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlogConfig {
    #[serde(default)]
    pub hsm: HsmConfig,
    pub tlog: TlogSection,
}

impl TlogConfig {
    fn validate(&self) -> Result<(), String> {
        self.hsm.validate()?;
        let t = &self.tlog;
        if t.trees.is_empty() {
            return Err("[tlog] needs at least one [[tlog.trees]]".into());
        }
        for (i, tree) in t.trees.iter().enumerate() {
            if !crate::tlog::valid_tree_name(&tree.name) {
                return Err(format!(
                    "[[tlog.trees]] name {:?} must be 1-64 characters of a-z, 0-9 and '-'",
                    tree.name
                ));
            }
            if t.trees[..i].iter().any(|o| o.name == tree.name) {
                return Err(format!("tree name {:?} is configured twice", tree.name));
            }
            if tree.origin.is_empty() || tree.origin.contains('\n') {
                return Err(format!(
                    "tree {:?}: origin must be one non-empty line",
                    tree.name
                ));
            }
            if tree.note_name.is_empty() || tree.note_name.contains([' ', '+', '\n']) {
                return Err(format!(
                    "tree {:?}: note_name must be non-empty without spaces or '+'",
                    tree.name
                ));
            }
        }
        if t.max_entry_size == 0 || t.max_entry_size > 65_535 {
            return Err(
                "[tlog] max_entry_size must be 1..=65535 (tlog-tiles entry bundles)".into(),
            );
        }
        if t.batch_max_entries == 0 || t.batch_max_wait_ms == 0 || t.queue_limit == 0 {
            return Err(
                "[tlog] batch_max_entries, batch_max_wait_ms and queue_limit must be > 0".into(),
            );
        }
        if t.lease_ttl_ms < 1000 {
            return Err("[tlog] lease_ttl_ms must be at least 1000".into());
        }
        crate::http::check_listen(&t.internal_listen, t.internal_tls.as_ref())
            .map_err(|e| format!("[tlog] internal_listen: {e}"))?;
        crate::http::check_listen(&t.public_listen, t.public_tls.as_ref())
            .map_err(|e| format!("[tlog] public_listen: {e}"))?;
        Ok(())
    }
}

/// `[ctlog]`: the RFC 6962 certificate-transparency log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtlogSection {
    /// Public listener (`host:port`; plain HTTP only on loopback, else set `tls`).
    #[serde(default = "default_ctlog_listen")]
    pub listen: crate::http::ListenAddr,
    #[serde(default)]
    pub tls: Option<crate::http::TlsFiles>,
    /// URL prefix: the API is at `/<prefix>/ct/v1/`. Empty for `/ct/v1/`.
    #[serde(default)]
    pub prefix: String,
    /// The CT log key (ECDSA P-256) that signs SCTs and STHs, and its token's PIN.
    pub key: Pkcs11Uri,
    pub pin: SecretSource,
    /// The published public key (PEM) the HSM key must match, e.g. the ceremony's ctlog.pub.pem.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// PEM files of the accepted roots (the sigvault root first; others allowed).
    pub roots: Vec<PathBuf>,
    /// tlog internal API endpoints: `unix:/path`, `http://127.0.0.1:port` or `https://host:port`.
    /// Several = an active tlog and its standbys.
    pub tlog: Vec<crate::http::client::Endpoint>,
    /// Client TLS for https tlog endpoints (CA, client certificate and key).
    #[serde(default)]
    pub tlog_tls: Option<crate::http::client::ClientTls>,
    /// The tlog tree holding this log.
    #[serde(default = "default_ctlog_tree")]
    pub tree: String,
    /// Create the tree in the tlog at start if it does not exist yet.
    #[serde(default = "default_true")]
    pub create_tree: bool,
    /// Refuse certificates that have expired.
    #[serde(default = "default_true")]
    pub reject_expired: bool,
    /// Accept only certificates whose notAfter is at or after this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_after_start: Option<time::OffsetDateTime>,
    /// Accept only certificates whose notAfter is before this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_after_limit: Option<time::OffsetDateTime>,
    /// Most certificates in a submitted chain.
    #[serde(default = "default_max_chain")]
    pub max_chain_length: usize,
    /// Largest request body, bytes.
    #[serde(default = "default_ct_body")]
    pub max_body_bytes: usize,
}

fn default_ctlog_listen() -> crate::http::ListenAddr {
    crate::http::ListenAddr::Tcp(([127, 0, 0, 1], 6962).into())
}
fn default_ctlog_tree() -> String {
    "ctlog".into()
}
fn default_true() -> bool {
    true
}
fn default_max_chain() -> usize {
    10
}
fn default_ct_body() -> usize {
    512_000
}

/// A whole ctlog config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtlogConfig {
    #[serde(default)]
    pub hsm: HsmConfig,
    pub ctlog: CtlogSection,
}

impl CtlogConfig {
    fn validate(&self) -> Result<(), String> {
        self.hsm.validate()?;
        let c = &self.ctlog;
        if c.prefix.contains('/') || c.prefix.contains(char::is_whitespace) {
            return Err("[ctlog] prefix must be one path segment without '/'".into());
        }
        if c.roots.is_empty() {
            return Err("[ctlog] roots must list at least one PEM file".into());
        }
        if c.tlog.is_empty() {
            return Err("[ctlog] tlog must list at least one endpoint".into());
        }
        if !crate::tlog::valid_tree_name(&c.tree) {
            return Err("[ctlog] tree must be 1-64 characters of a-z, 0-9 and '-'".into());
        }
        if c.max_chain_length == 0 || c.max_body_bytes < 1024 {
            return Err("[ctlog] max_chain_length must be > 0 and max_body_bytes >= 1024".into());
        }
        if let (Some(a), Some(b)) = (c.not_after_start, c.not_after_limit) {
            if a >= b {
                return Err("[ctlog] not_after_start must be before not_after_limit".into());
            }
        }
        crate::http::check_listen(&c.listen, c.tls.as_ref())
            .map_err(|e| format!("[ctlog] listen: {e}"))?;
        Ok(())
    }
}

/// `[fulcio]`: the certificate authority.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FulcioSection {
    /// Listener (plain HTTP only on loopback; else set `tls`). Fulcio is served at the origin root.
    #[serde(default = "default_fulcio_listen")]
    pub listen: crate::http::ListenAddr,
    #[serde(default)]
    pub tls: Option<crate::http::TlsFiles>,
    /// The issuing CA key and its token's PIN.
    pub key: Pkcs11Uri,
    pub pin: SecretSource,
    /// PEM files of the chain: the issuing CA certificate first, then its issuers up to the root
    /// (each file may hold several certificates).
    pub ca_chain: Vec<PathBuf>,
    /// Fulcio's identity config (OIDCIssuers / MetaIssuers, JSON or YAML), read as is.
    pub identity_config: PathBuf,
    /// The CT log's base URL (`http(s)://host:port/<prefix>`); precertificates go to
    /// `<url>/ct/v1/add-pre-chain`.
    pub ct_log_url: String,
    /// The CT log's public key (PEM): every SCT is verified with it before it is embedded.
    pub ct_log_public_key: PathBuf,
    /// Client TLS for an https CT log.
    #[serde(default)]
    pub ct_log_tls: Option<crate::http::client::ClientTls>,
    /// Largest request body, bytes.
    #[serde(default = "default_fulcio_body")]
    pub max_body_bytes: usize,
}

fn default_fulcio_listen() -> crate::http::ListenAddr {
    crate::http::ListenAddr::Tcp(([127, 0, 0, 1], 5555).into())
}
fn default_fulcio_body() -> usize {
    4 << 20
}

/// A whole fulcio config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FulcioConfig {
    #[serde(default)]
    pub hsm: HsmConfig,
    pub fulcio: FulcioSection,
}

impl FulcioConfig {
    fn validate(&self) -> Result<(), String> {
        self.hsm.validate()?;
        let f = &self.fulcio;
        if !(f.ct_log_url.starts_with("http://") || f.ct_log_url.starts_with("https://")) {
            return Err("[fulcio] ct_log_url must be an http:// or https:// URL".into());
        }
        if f.max_body_bytes < 1024 {
            return Err("[fulcio] max_body_bytes must be at least 1024".into());
        }
        if f.ca_chain.is_empty() {
            return Err("[fulcio] ca_chain must list the issuing CA certificate file first".into());
        }
        crate::http::check_listen(&f.listen, f.tls.as_ref())
            .map_err(|e| format!("[fulcio] listen: {e}"))?;
        Ok(())
    }
}

/// `[rekor]`: the Rekor-compatible transparency log (API v1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekorSection {
    /// Listener (plain HTTP only on loopback; else set `tls`). Rekor is served at the origin root.
    #[serde(default = "default_rekor_listen")]
    pub listen: crate::http::ListenAddr,
    #[serde(default)]
    pub tls: Option<crate::http::TlsFiles>,
    /// The Rekor key (ECDSA P-256) that signs entry timestamps (SETs), and its token's PIN. The
    /// tlog signs this log's checkpoints with the same key (its `[[tlog.trees]]` entry).
    pub key: Pkcs11Uri,
    pub pin: SecretSource,
    /// The published public key (PEM) the HSM key must match, e.g. the ceremony's rekor.pub.pem.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// The tree ID clients see (`treeID`, the checkpoint origin's `<host> - <tree_id>`, the
    /// first 16 hex digits of entry IDs). Must match the origin configured for the tlog tree.
    pub tree_id: u64,
    /// tlog internal API endpoints (`unix:/path`, `http://127.0.0.1:port`, `https://host:port`).
    pub tlog: Vec<crate::http::client::Endpoint>,
    /// Client TLS for https tlog endpoints.
    #[serde(default)]
    pub tlog_tls: Option<crate::http::client::ClientTls>,
    /// The tlog tree holding this log.
    #[serde(default = "default_rekor_tree")]
    pub tree: String,
    /// Create the tree in the tlog at start if it does not exist yet.
    #[serde(default = "default_true")]
    pub create_tree: bool,
    /// MariaDB URL of the search index (`mysql://user:password@host:port/database`), from a
    /// file or credential.
    pub database_url: SecretSource,
    #[serde(default = "default_rekor_db_connections")]
    pub database_max_connections: u32,
    /// Create/upgrade the index tables at start (otherwise run `sigvault migrate`).
    #[serde(default)]
    pub migrate_on_start: bool,
    /// Largest request body, bytes.
    #[serde(default = "default_rekor_body")]
    pub max_body_bytes: usize,
    /// The earlier shards of this log, oldest first: frozen tlog trees, each with the key that
    /// signed it (README, "Rotating keys and logs"). The API serves them and the active tree as
    /// one log; new entries go to the active tree (`tree`, `tree_id`, `key` above).
    #[serde(default)]
    pub inactive_shards: Vec<RekorShard>,
}

/// `[[rekor.inactive_shards]]`: a frozen shard of the Rekor v1 log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekorShard {
    /// Its tlog tree, which the tlog must list with `frozen = true`.
    pub tree: String,
    /// Its tree ID (its checkpoints' origin `<host> - <tree_id>`, its entry IDs' prefix).
    pub tree_id: u64,
    /// Its key, in the same token as `[rekor] key` (opened with the same PIN): it still signs
    /// the entry timestamps of the shard's entries as they are read.
    pub key: Pkcs11Uri,
    /// The published public key it must match (the ceremony's rekor.pub.pem or rekor-<n>.pub.pem).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
}

fn default_rekor_listen() -> crate::http::ListenAddr {
    crate::http::ListenAddr::Tcp(([127, 0, 0, 1], 3000).into())
}
fn default_rekor_tree() -> String {
    "rekor".into()
}
fn default_rekor_db_connections() -> u32 {
    8
}
fn default_rekor_body() -> usize {
    4 << 20
}

/// A whole rekor config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekorConfig {
    #[serde(default)]
    pub hsm: HsmConfig,
    pub rekor: RekorSection,
}

impl RekorConfig {
    fn validate(&self) -> Result<(), String> {
        self.hsm.validate()?;
        let r = &self.rekor;
        if r.tlog.is_empty() {
            return Err("[rekor] tlog must list at least one endpoint".into());
        }
        if !crate::tlog::valid_tree_name(&r.tree) {
            return Err("[rekor] tree must be 1-64 characters of a-z, 0-9 and '-'".into());
        }
        if r.tree_id == 0 || r.tree_id > i64::MAX as u64 {
            return Err("[rekor] tree_id must be between 1 and 2^63-1".into());
        }
        let mut trees = vec![(r.tree.as_str(), r.tree_id)];
        for s in &r.inactive_shards {
            if !crate::tlog::valid_tree_name(&s.tree) {
                return Err(format!(
                    "[[rekor.inactive_shards]] tree {:?}: 1-64 characters of a-z, 0-9 and '-'",
                    s.tree
                ));
            }
            if s.tree_id == 0 || s.tree_id > i64::MAX as u64 {
                return Err(
                    "[[rekor.inactive_shards]] tree_id must be between 1 and 2^63-1".into(),
                );
            }
            if trees.iter().any(|(t, id)| *t == s.tree || *id == s.tree_id) {
                return Err(format!(
                    "[[rekor.inactive_shards]] tree {:?} (tree_id {}): every shard needs its own tree and tree_id",
                    s.tree, s.tree_id
                ));
            }
            // One login opens every shard key; a key in another token would need its own PIN.
            if s.key.token != r.key.token {
                return Err(format!(
                    "[[rekor.inactive_shards]] key {}: must be in the token of [rekor] key ({})",
                    s.key, r.key.token
                ));
            }
            trees.push((s.tree.as_str(), s.tree_id));
        }
        if r.max_body_bytes < 1024 {
            return Err("[rekor] max_body_bytes must be at least 1024".into());
        }
        if r.database_max_connections == 0 {
            return Err("[rekor] database_max_connections must be at least 1".into());
        }
        crate::http::check_listen(&r.listen, r.tls.as_ref())
            .map_err(|e| format!("[rekor] listen: {e}"))?;
        Ok(())
    }
}

/// `[tsa]`: the RFC 3161 timestamp authority.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaSection {
    /// Listener (plain HTTP only on loopback; else set `tls`).
    #[serde(default = "default_tsa_listen")]
    pub listen: crate::http::ListenAddr,
    #[serde(default)]
    pub tls: Option<crate::http::TlsFiles>,
    /// The TSA key (made by the ceremony) and its token's PIN.
    pub key: Pkcs11Uri,
    pub pin: SecretSource,
    /// PEM files of the chain: the TSA certificate first, then its issuers up to the root.
    pub cert_chain: Vec<PathBuf>,
    /// Policy OID of tokens whose request names none.
    #[serde(default = "default_tsa_policy")]
    pub policy: String,
    /// Further policy OIDs a request may ask for; any other is refused (unacceptedPolicy).
    #[serde(default)]
    pub accepted_policies: Vec<String>,
    /// Refuse to issue while the kernel reports the clock unsynchronised or its estimated
    /// error above `max_clock_error_ms`. Only a development stack turns this off.
    #[serde(default = "default_true")]
    pub require_synchronised_clock: bool,
    /// Largest estimated clock error (adjtimex `esterror`) accepted, milliseconds.
    #[serde(default = "default_max_clock_error")]
    pub max_clock_error_ms: u64,
    /// The accuracy every token states, milliseconds; default 1000 + max_clock_error_ms (genTime
    /// is in whole seconds, truncated, so at least 1000).
    #[serde(default)]
    pub accuracy_ms: Option<u64>,
    /// Answer a granted request with 201 Created (upstream timestamp-authority's habit) instead
    /// of 200.
    #[serde(default)]
    pub created_status: bool,
    /// Largest request body, bytes.
    #[serde(default = "default_tsa_body")]
    pub max_body_bytes: usize,
}

fn default_tsa_listen() -> crate::http::ListenAddr {
    crate::http::ListenAddr::Tcp(([127, 0, 0, 1], 3003).into())
}
fn default_tsa_policy() -> String {
    crate::tsa::DEFAULT_POLICY.into()
}
fn default_max_clock_error() -> u64 {
    100
}
fn default_tsa_body() -> usize {
    16 << 10
}

impl TsaSection {
    /// The accuracy tokens state.
    pub fn accuracy(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.accuracy_ms.unwrap_or(1000 + self.max_clock_error_ms))
    }
}

/// A whole tsa config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaConfig {
    #[serde(default)]
    pub hsm: HsmConfig,
    pub tsa: TsaSection,
}

impl TsaConfig {
    fn validate(&self) -> Result<(), String> {
        self.hsm.validate()?;
        let t = &self.tsa;
        for p in std::iter::once(&t.policy).chain(&t.accepted_policies) {
            crate::pki::dotted_oid::parse(p)
                .ok_or_else(|| format!("[tsa] policy {p:?} is not a dotted OID"))?;
        }
        if t.cert_chain.is_empty() {
            return Err("[tsa] cert_chain must list the TSA certificate file first".into());
        }
        if !(1..=60_000).contains(&t.max_clock_error_ms) {
            return Err("[tsa] max_clock_error_ms must be 1 to 60000".into());
        }
        if let Some(a) = t.accuracy_ms {
            if !(1000..=3_600_000).contains(&a) {
                return Err(
                    "[tsa] accuracy_ms must be 1000 to 3600000 (genTime has one-second precision)"
                        .into(),
                );
            }
        }
        if t.max_body_bytes < 1024 {
            return Err("[tsa] max_body_bytes must be at least 1024".into());
        }
        crate::http::check_listen(&t.listen, t.tls.as_ref())
            .map_err(|e| format!("[tsa] listen: {e}"))?;
        Ok(())
    }
}

/// Any config file sigvault knows, detected by its top-level service table.
#[derive(Debug)]
pub enum AnyConfig {
    Ceremony(Box<CeremonyConfig>),
    Tlog(Box<TlogConfig>),
    Ctlog(Box<CtlogConfig>),
    Fulcio(Box<FulcioConfig>),
    Rekor(Box<RekorConfig>),
    Tsa(Box<TsaConfig>),
    RekorV2(Box<RekorV2Config>),
    Tuf(Box<TufConfig>),
}

/// The service tables sigvault recognises (only those whose service exists).
pub const KNOWN_KINDS: &[&str] = &[
    "ceremony", "tlog", "ctlog", "fulcio", "rekor", "tsa", "rekor_v2", "tuf",
];

/// Read and parse a config file of any kind.
pub fn load(path: &Path) -> Result<AnyConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    parse(path, &text)
}

/// Read a file that must be a fulcio config.
pub fn load_fulcio(path: &Path) -> Result<FulcioConfig, ConfigError> {
    match load(path)? {
        AnyConfig::Fulcio(c) => Ok(*c),
        other => Err(ConfigError::Invalid {
            path: path.into(),
            message: format!("this is a {} config, not a fulcio config", other.kind()),
        }),
    }
}

/// Read a file that must be a rekor config.
pub fn load_rekor(path: &Path) -> Result<RekorConfig, ConfigError> {
    match load(path)? {
        AnyConfig::Rekor(c) => Ok(*c),
        other => Err(ConfigError::Invalid {
            path: path.into(),
            message: format!("this is a {} config, not a rekor config", other.kind()),
        }),
    }
}

/// Read a file that must be a ctlog config.
pub fn load_ctlog(path: &Path) -> Result<CtlogConfig, ConfigError> {
    match load(path)? {
        AnyConfig::Ctlog(c) => Ok(*c),
        other => Err(ConfigError::Invalid {
            path: path.into(),
            message: format!("this is a {} config, not a ctlog config", other.kind()),
        }),
    }
}

/// Read a file that must be a tlog config.
pub fn load_tlog(path: &Path) -> Result<TlogConfig, ConfigError> {
    match load(path)? {
        AnyConfig::Tlog(c) => Ok(*c),
        other => Err(ConfigError::Invalid {
            path: path.into(),
            message: format!("this is a {} config, not a tlog config", other.kind()),
        }),
    }
}

/// Read a file that must be a rekor-v2 config (table `[rekor_v2]`).
pub fn load_rekor_v2(path: &Path) -> Result<RekorV2Config, ConfigError> {
    match load(path)? {
        AnyConfig::RekorV2(c) => Ok(*c),
        other => Err(ConfigError::Invalid {
            path: path.into(),
            message: format!("this is a {} config, not a rekor-v2 config", other.kind()),
        }),
    }
}

/// Read a file that must be a tsa config.
pub fn load_tsa(path: &Path) -> Result<TsaConfig, ConfigError> {
    match load(path)? {
        AnyConfig::Tsa(c) => Ok(*c),
        other => Err(ConfigError::Invalid {
            path: path.into(),
            message: format!("this is a {} config, not a tsa config", other.kind()),
        }),
    }
}

/// Read a file that must be a tuf config.
pub fn load_tuf(path: &Path) -> Result<TufConfig, ConfigError> {
    match load(path)? {
        AnyConfig::Tuf(c) => Ok(*c),
        other => Err(ConfigError::Invalid {
            path: path.into(),
            message: format!("this is a {} config, not a tuf config", other.kind()),
        }),
    }
}

/// Read a file that must be a ceremony config.
pub fn load_ceremony(path: &Path) -> Result<CeremonyConfig, ConfigError> {
    match load(path)? {
        AnyConfig::Ceremony(c) => Ok(*c),
        other => Err(ConfigError::Invalid {
            path: path.into(),
            message: format!("this is a {} config, not a ceremony config", other.kind()),
        }),
    }
}

/// Parse config text (`path` is only for messages).
pub fn parse(path: &Path, text: &str) -> Result<AnyConfig, ConfigError> {
    let perr = |message: String| ConfigError::Parse {
        path: path.into(),
        message,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| perr(e.to_string().trim_end().to_owned()))?;
    let kinds: Vec<&str> = KNOWN_KINDS
        .iter()
        .copied()
        .filter(|k| table.contains_key(*k))
        .collect();
    let kind = match kinds.as_slice() {
        [k] => *k,
        [] => {
            return Err(perr(format!(
                "no service table found: a sigvault config has exactly one of [{}]",
                KNOWN_KINDS.join("], [")
            )));
        }
        many => {
            return Err(perr(format!(
                "more than one service table ({}): use one file per service",
                many.join(", ")
            )));
        }
    };
    let cfg = match kind {
        "ceremony" => {
            let c: CeremonyConfig =
                toml::from_str(text).map_err(|e| perr(e.to_string().trim_end().to_owned()))?;
            c.validate().map_err(|message| ConfigError::Invalid {
                path: path.into(),
                message,
            })?;
            AnyConfig::Ceremony(Box::new(c))
        }
        "tlog" => {
            let c: TlogConfig =
                toml::from_str(text).map_err(|e| perr(e.to_string().trim_end().to_owned()))?;
            c.validate().map_err(|message| ConfigError::Invalid {
                path: path.into(),
                message,
            })?;
            AnyConfig::Tlog(Box::new(c))
        }
        "ctlog" => {
            let c: CtlogConfig =
                toml::from_str(text).map_err(|e| perr(e.to_string().trim_end().to_owned()))?;
            c.validate().map_err(|message| ConfigError::Invalid {
                path: path.into(),
                message,
            })?;
            AnyConfig::Ctlog(Box::new(c))
        }
        "fulcio" => {
            let c: FulcioConfig =
                toml::from_str(text).map_err(|e| perr(e.to_string().trim_end().to_owned()))?;
            c.validate().map_err(|message| ConfigError::Invalid {
                path: path.into(),
                message,
            })?;
            AnyConfig::Fulcio(Box::new(c))
        }
        "rekor" => {
            let c: RekorConfig =
                toml::from_str(text).map_err(|e| perr(e.to_string().trim_end().to_owned()))?;
            c.validate().map_err(|message| ConfigError::Invalid {
                path: path.into(),
                message,
            })?;
            AnyConfig::Rekor(Box::new(c))
        }
        "tsa" => {
            let c: TsaConfig =
                toml::from_str(text).map_err(|e| perr(e.to_string().trim_end().to_owned()))?;
            c.validate().map_err(|message| ConfigError::Invalid {
                path: path.into(),
                message,
            })?;
            AnyConfig::Tsa(Box::new(c))
        }
        "rekor_v2" => {
            let c: RekorV2Config =
                toml::from_str(text).map_err(|e| perr(e.to_string().trim_end().to_owned()))?;
            c.validate().map_err(|message| ConfigError::Invalid {
                path: path.into(),
                message,
            })?;
            AnyConfig::RekorV2(Box::new(c))
        }
        "tuf" => {
            let c: TufConfig =
                toml::from_str(text).map_err(|e| perr(e.to_string().trim_end().to_owned()))?;
            c.validate().map_err(|message| ConfigError::Invalid {
                path: path.into(),
                message,
            })?;
            AnyConfig::Tuf(Box::new(c))
        }
        _ => unreachable!("kind comes from KNOWN_KINDS"),
    };
    Ok(cfg)
}

impl AnyConfig {
    /// Which service this config is for.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ceremony(_) => "ceremony",
            Self::Tlog(_) => "tlog",
            Self::Ctlog(_) => "ctlog",
            Self::Fulcio(_) => "fulcio",
            Self::Rekor(_) => "rekor",
            Self::Tsa(_) => "tsa",
            Self::RekorV2(_) => "rekor-v2",
            Self::Tuf(_) => "tuf",
        }
    }

    /// Checks that need the machine: the module file exists, every PIN source is readable and
    /// private. Returns every problem found, not just the first.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            Self::Ceremony(c) => {
                if !c.hsm.module.exists() {
                    problems.push(format!(
                        "[hsm] module {} does not exist",
                        c.hsm.module.display()
                    ));
                }
                for (role, k) in c.roles() {
                    if let Err(e) = k.pin.check() {
                        problems.push(format!("[ceremony.{role}] pin: {e}"));
                    }
                }
            }
            Self::Tlog(c) => {
                if !c.hsm.module.exists() {
                    problems.push(format!(
                        "[hsm] module {} does not exist",
                        c.hsm.module.display()
                    ));
                }
                if let Err(e) = c.tlog.database_url.check() {
                    problems.push(format!("[tlog] database_url: {e}"));
                }
                for t in &c.tlog.trees {
                    if let Err(e) = t.pin.check() {
                        problems.push(format!("tree {:?} pin: {e}", t.name));
                    }
                }
                for (what, tls) in [
                    ("internal_tls", &c.tlog.internal_tls),
                    ("public_tls", &c.tlog.public_tls),
                ] {
                    if let Some(tls) = tls {
                        for f in tls.files() {
                            if !f.exists() {
                                problems
                                    .push(format!("[tlog] {what}: {} does not exist", f.display()));
                            }
                        }
                    }
                }
            }
            Self::Ctlog(c) => {
                let t = &c.ctlog;
                if !c.hsm.module.exists() {
                    problems.push(format!(
                        "[hsm] module {} does not exist",
                        c.hsm.module.display()
                    ));
                }
                if let Err(e) = t.pin.check() {
                    problems.push(format!("[ctlog] pin: {e}"));
                }
                for f in t.roots.iter().chain(t.public_key_file.iter()) {
                    if !f.exists() {
                        problems.push(format!("[ctlog] {} does not exist", f.display()));
                    }
                }
                if let Some(tls) = &t.tls {
                    for f in tls.files() {
                        if !f.exists() {
                            problems.push(format!("[ctlog] tls: {} does not exist", f.display()));
                        }
                    }
                }
            }
            Self::Fulcio(c) => {
                let f = &c.fulcio;
                if !c.hsm.module.exists() {
                    problems.push(format!(
                        "[hsm] module {} does not exist",
                        c.hsm.module.display()
                    ));
                }
                if let Err(e) = f.pin.check() {
                    problems.push(format!("[fulcio] pin: {e}"));
                }
                for p in f
                    .ca_chain
                    .iter()
                    .chain([&f.identity_config, &f.ct_log_public_key])
                {
                    if !p.exists() {
                        problems.push(format!("[fulcio] {} does not exist", p.display()));
                    }
                }
                if let Some(tls) = &f.tls {
                    for p in tls.files() {
                        if !p.exists() {
                            problems.push(format!("[fulcio] tls: {} does not exist", p.display()));
                        }
                    }
                }
            }
            Self::Rekor(c) => {
                let r = &c.rekor;
                if !c.hsm.module.exists() {
                    problems.push(format!(
                        "[hsm] module {} does not exist",
                        c.hsm.module.display()
                    ));
                }
                if let Err(e) = r.pin.check() {
                    problems.push(format!("[rekor] pin: {e}"));
                }
                if let Err(e) = r.database_url.check() {
                    problems.push(format!("[rekor] database_url: {e}"));
                }
                let tls_files = r.tls.iter().flat_map(|t| t.files());
                for p in r
                    .public_key_file
                    .iter()
                    .map(|p| p.as_path())
                    .chain(tls_files)
                {
                    if !p.exists() {
                        problems.push(format!("[rekor] {} does not exist", p.display()));
                    }
                }
            }
            Self::Tsa(c) => {
                let t = &c.tsa;
                if !c.hsm.module.exists() {
                    problems.push(format!(
                        "[hsm] module {} does not exist",
                        c.hsm.module.display()
                    ));
                }
                if let Err(e) = t.pin.check() {
                    problems.push(format!("[tsa] pin: {e}"));
                }
                let tls_files = t.tls.iter().flat_map(|t| t.files());
                for p in t.cert_chain.iter().map(|p| p.as_path()).chain(tls_files) {
                    if !p.exists() {
                        problems.push(format!("[tsa] {} does not exist", p.display()));
                    }
                }
            }
            Self::RekorV2(c) => {
                let r = &c.rekor_v2;
                let keys = r.logs.iter().map(|l| l.public_key_file.as_path());
                let tls_files = r.tls.iter().flat_map(|t| t.files());
                for p in keys.chain(tls_files) {
                    if !p.exists() {
                        problems.push(format!("[rekor_v2] {} does not exist", p.display()));
                    }
                }
            }
            Self::Tuf(c) => c.check(&mut problems),
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
[ceremony]
output_dir = "/tmp/x"
[ceremony.root]
key = "pkcs11:token=r;object=root"
pin = { file = "/p/root" }
curve = "P-384"
subject = "CN=root,O=sigvault"
validity_days = 3650
[ceremony.issuing_ca]
key = "pkcs11:token=i;object=ca"
pin = { file = "/p/i" }
curve = "P-256"
subject = "CN=issuing,O=sigvault"
validity_days = 1000
[ceremony.ctlog]
key = "pkcs11:token=c;object=ctlog"
pin = { credential = "ctlog-pin" }
[ceremony.rekor]
key = "pkcs11:token=k;object=rekor"
pin = { file = "/p/k" }
[ceremony.tlog]
key = "pkcs11:token=t;object=tlog"
pin = { file = "/p/t" }
"#;

    #[test]
    fn good_config_parses() {
        let c = parse(Path::new("x.toml"), GOOD).expect("parse");
        assert_eq!(c.kind(), "ceremony");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let p = Path::new("x.toml");
        let bad = GOOD.replace("validity_days = 1000", "validity_days = 1000\ncolour = 1");
        let e = parse(p, &bad).expect_err("unknown key").to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let bad = GOOD.replace("\"P-256\"", "\"P-521\"");
        assert!(parse(p, &bad).is_err());
        let bad = GOOD.replace("validity_days = 1000", "validity_days = 4000");
        let e = parse(p, &bad).expect_err("outlive").to_string();
        assert!(e.contains("outlive"), "{e}");
        let bad = GOOD.replace("token=t;object=tlog", "token=c;object=ctlog");
        assert!(parse(p, &bad).is_err());
        let e = parse(p, "[hsm]\n").expect_err("no kind").to_string();
        assert!(e.contains("no service table"), "{e}");
        let e = parse(p, "this is = = not toml").expect_err("syntax");
        assert!(matches!(e, ConfigError::Parse { .. }));
        let bad = GOOD.replace("pin = { file = \"/p/k\" }", "pin = \"1234\"");
        let e = parse(p, &bad).expect_err("inline pin").to_string();
        assert!(e.contains("never written inline"), "{e}");
    }

    #[test]
    fn the_hsm_watchdog_grace_is_bounded_and_for_services_only() {
        let p = Path::new("rekor.toml");
        let example = include_str!("../../config/rekor.toml");
        let with = |v: &str| {
            example.replace(
                "exit_after_failing_secs = 10",
                &format!("exit_after_failing_secs = {v}"),
            )
        };
        match parse(p, &with("30")).expect("30 s") {
            AnyConfig::Rekor(c) => assert_eq!(c.hsm.exit_after_failing().as_secs(), 30),
            other => panic!("{}", other.kind()),
        }
        for v in ["0", "3601"] {
            let e = parse(p, &with(v)).expect_err(v).to_string();
            assert!(
                e.contains("exit_after_failing_secs must be 1 to 3600"),
                "{e}"
            );
        }
        let bad = GOOD.replace("[hsm]\n", "[hsm]\nexit_after_failing_secs = 30\n");
        let e = parse(p, &bad).expect_err("ceremony").to_string();
        assert!(e.contains("the ceremony serves nothing"), "{e}");
    }
}
