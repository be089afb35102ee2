//! The four top-level TUF roles' metadata (TUF specification 1.0, §4): field names and formats
//! as the specification and its clients (python-tuf, tuf-js, go-tuf) define them, and the signed
//! envelope around each.
//!
//! A file is `{"signatures": [{"keyid", "sig"}], "signed": {...}}`; the signatures are over the
//! canonical JSON of `signed` ([`super::canonical`]). [`Metadata::parse`] keeps the file's bytes
//! (what snapshot and timestamp hash) and the canonical bytes of `signed` *as parsed* (what a
//! client verifies), next to the typed payload. Parsing is strict: sigvault reads only the
//! metadata it wrote, so an unknown field means a file that is not ours.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::canonical;
use super::key::Key;

/// The specification version written into every role (python-tuf's and tuf-js's own; clients
/// accept any 1.x).
pub const SPEC_VERSION: &str = "1.0.31";

/// The four top-level roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Root, Role::Targets, Role::Snapshot, Role::Timestamp];

    /// The role's name, as in root's `roles` and in `_type`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Targets => "targets",
            Role::Snapshot => "snapshot",
            Role::Timestamp => "timestamp",
        }
    }

    /// The file a version of this role is published as, with consistent snapshots:
    /// `N.root.json`, `N.targets.json`, `N.snapshot.json`, and `timestamp.json` (never versioned:
    /// it is the one file a client fetches without knowing its version).
    pub fn file_name(self, version: u64) -> String {
        match self {
            Role::Timestamp => "timestamp.json".into(),
            other => format!("{version}.{}.json", other.name()),
        }
    }

    /// The name this role's file has in snapshot and timestamp `meta`.
    pub fn meta_name(self) -> String {
        format!("{}.json", self.name())
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An expiry instant, to the second, in UTC, written `YYYY-MM-DDTHH:MM:SSZ` (the only form
/// python-tuf parses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expires(i64);

const EXPIRES_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

impl Expires {
    /// `secs` seconds after the Unix epoch.
    pub fn from_unix(secs: i64) -> Self {
        Self(secs)
    }

    /// `lifetime` from `now`, rounded down to the second.
    pub fn after(now: time::OffsetDateTime, lifetime: std::time::Duration) -> Self {
        Self(
            now.unix_timestamp()
                .saturating_add(lifetime.as_secs() as i64),
        )
    }

    pub fn unix(self) -> i64 {
        self.0
    }

    /// Seconds from `now` until this instant (negative once past).
    pub fn remaining(self, now: time::OffsetDateTime) -> i64 {
        self.0 - now.unix_timestamp()
    }

    /// The wire form.
    pub fn to_tuf_string(self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| t.format(EXPIRES_FORMAT).ok())
            .unwrap_or_default()
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        time::PrimitiveDateTime::parse(s, EXPIRES_FORMAT)
            .map(|t| Self(t.assume_utc().unix_timestamp()))
            .map_err(|_| format!("expires {s:?} is not YYYY-MM-DDTHH:MM:SSZ"))
    }
}

impl std::fmt::Display for Expires {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_tuf_string())
    }
}

impl Serialize for Expires {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_tuf_string())
    }
}

impl<'de> Deserialize<'de> for Expires {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A role's keys and threshold in root's `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u64,
}

/// `root` (§4.3): the keys of every top-level role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: Expires,
    pub consistent_snapshot: bool,
    pub keys: BTreeMap<String, Key>,
    pub roles: BTreeMap<String, RoleKeys>,
}

/// One target file in `targets` (§4.5): its length and hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
}

impl TargetFile {
    /// The description of `bytes`: length and SHA-256.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            length: bytes.len() as u64,
            hashes: BTreeMap::from([("sha256".to_owned(), hex::encode(Sha256::digest(bytes)))]),
        }
    }

    /// The SHA-256 (hex), the one hash sigvault writes and the consistent-snapshot file prefix.
    pub fn sha256(&self) -> Option<&str> {
        self.hashes.get("sha256").map(String::as_str)
    }
}

/// `targets` (§4.5), without delegations (sigvault delegates nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: Expires,
    pub targets: BTreeMap<String, TargetFile>,
}

/// A metadata file as snapshot and timestamp describe it (§4.4, §4.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
}

impl MetaFile {
    /// Does `bytes` match the length and hashes given (those that are)? Only SHA-256 is known;
    /// another hash listed alone is a mismatch, never a pass.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        if self.length.is_some_and(|l| l != bytes.len() as u64) {
            return false;
        }
        match &self.hashes {
            None => true,
            Some(h) => h
                .get("sha256")
                .is_some_and(|want| *want == hex::encode(Sha256::digest(bytes))),
        }
    }
}

/// `snapshot` (§4.4): the version of `targets.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: Expires,
    pub meta: BTreeMap<String, MetaFile>,
}

/// `timestamp` (§4.6): the version of `snapshot.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timestamp {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: Expires,
    pub meta: BTreeMap<String, MetaFile>,
}

/// What every role's payload has.
pub trait Payload: Serialize + DeserializeOwned + Clone {
    const ROLE: Role;
    fn version(&self) -> u64;
    fn expires(&self) -> Expires;
    fn header(&self) -> (&str, &str);
}

macro_rules! payload {
    ($t:ty, $role:expr) => {
        impl Payload for $t {
            const ROLE: Role = $role;
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> Expires {
                self.expires
            }
            fn header(&self) -> (&str, &str) {
                (&self.type_, &self.spec_version)
            }
        }
    };
}
payload!(Root, Role::Root);
payload!(Targets, Role::Targets);
payload!(Snapshot, Role::Snapshot);
payload!(Timestamp, Role::Timestamp);

impl Root {
    /// A new root payload (version and expiry set by the caller).
    pub fn new(version: u64, expires: Expires) -> Self {
        Self {
            type_: Role::Root.name().into(),
            spec_version: SPEC_VERSION.into(),
            version,
            expires,
            consistent_snapshot: true,
            keys: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }

    /// The keys and threshold of `role`.
    pub fn role(&self, role: Role) -> Result<&RoleKeys, MetadataError> {
        self.roles
            .get(role.name())
            .ok_or_else(|| MetadataError::Invalid(format!("root lists no {role} role")))
    }

    /// What python-tuf also requires of a root, plus sigvault's own rule that snapshots are
    /// consistent: the four roles, each with a threshold it can meet from keys root lists.
    pub fn check(&self) -> Result<(), MetadataError> {
        let bad = |m: String| Err(MetadataError::Invalid(m));
        if !self.consistent_snapshot {
            return bad("root does not set consistent_snapshot (sigvault publishes consistent snapshots only)".into());
        }
        if self.roles.len() != 4 {
            return bad(format!(
                "root must list exactly the four top-level roles, lists {:?}",
                self.roles.keys().collect::<Vec<_>>()
            ));
        }
        for role in Role::ALL {
            let r = self.role(role)?;
            if r.threshold == 0 || r.threshold > r.keyids.len() as u64 {
                return bad(format!(
                    "root's {role} role has threshold {} over {} keys",
                    r.threshold,
                    r.keyids.len()
                ));
            }
            for (i, id) in r.keyids.iter().enumerate() {
                if !self.keys.contains_key(id) {
                    return bad(format!(
                        "root's {role} role names key {id}, which root does not list"
                    ));
                }
                if r.keyids[..i].contains(id) {
                    return bad(format!("root's {role} role names key {id} twice"));
                }
            }
        }
        Ok(())
    }
}

fn header<T: Payload>(version: u64, expires: Expires) -> (String, String, u64, Expires) {
    (T::ROLE.name().into(), SPEC_VERSION.into(), version, expires)
}

impl Targets {
    pub fn new(version: u64, expires: Expires, targets: BTreeMap<String, TargetFile>) -> Self {
        let (type_, spec_version, version, expires) = header::<Self>(version, expires);
        Self {
            type_,
            spec_version,
            version,
            expires,
            targets,
        }
    }
}

impl Snapshot {
    /// A snapshot naming `targets`.
    pub fn new(version: u64, expires: Expires, targets: MetaFile) -> Self {
        let (type_, spec_version, version, expires) = header::<Self>(version, expires);
        Self {
            type_,
            spec_version,
            version,
            expires,
            meta: BTreeMap::from([(Role::Targets.meta_name(), targets)]),
        }
    }
}

impl Timestamp {
    /// A timestamp naming `snapshot`.
    pub fn new(version: u64, expires: Expires, snapshot: MetaFile) -> Self {
        let (type_, spec_version, version, expires) = header::<Self>(version, expires);
        Self {
            type_,
            spec_version,
            version,
            expires,
            meta: BTreeMap::from([(Role::Snapshot.meta_name(), snapshot)]),
        }
    }
}

/// One signature in the envelope: the key's ID and the hex DER signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub keyid: String,
    pub sig: String,
}

/// Why a metadata file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("not TUF metadata of sigvault's form: {0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{role} metadata: {got} of the {need} signatures its threshold needs verify with the role's keys ({keyids})"
    )]
    Threshold {
        role: Role,
        got: u64,
        need: u64,
        keyids: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    signatures: Vec<Signature>,
    signed: serde_json::Value,
}

/// A parsed, not yet verified, metadata file.
#[derive(Debug, Clone)]
pub struct Metadata<T> {
    pub signed: T,
    pub signatures: Vec<Signature>,
    /// The canonical JSON of `signed`, as parsed: the bytes the signatures are over.
    pub canonical: Vec<u8>,
    /// The file as published: what snapshot and timestamp describe by length and hash.
    pub bytes: Vec<u8>,
}

impl<T: Payload> Metadata<T> {
    /// Parse a file of this role.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, MetadataError> {
        let malformed = |e: String| MetadataError::Malformed(e);
        let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        let canonical = canonical::encode(&env.signed).map_err(|e| malformed(e.to_string()))?;
        let signed: T = serde_json::from_value(env.signed).map_err(|e| malformed(e.to_string()))?;
        let (type_, spec) = signed.header();
        if type_ != T::ROLE.name() {
            return Err(malformed(format!(
                "_type is {type_:?}, expected {:?}",
                T::ROLE.name()
            )));
        }
        let spec_major_is_1 = spec.split('.').next() == Some("1")
            && (2..=3).contains(&spec.split('.').count())
            && spec
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !spec_major_is_1 {
            return Err(malformed(format!("spec_version {spec:?} is not 1.x")));
        }
        if signed.version() == 0 {
            return Err(malformed("version 0 (versions start at 1)".into()));
        }
        Ok(Self {
            signed,
            signatures: env.signatures,
            canonical,
            bytes,
        })
    }

    /// How snapshot or timestamp describe this file: version, length and SHA-256.
    pub fn meta_file(&self) -> MetaFile {
        MetaFile {
            version: self.signed.version(),
            length: Some(self.bytes.len() as u64),
            hashes: Some(BTreeMap::from([(
                "sha256".to_owned(),
                hex::encode(Sha256::digest(&self.bytes)),
            )])),
        }
    }

    /// Check that the signatures of `role`'s keys in `root` reach its threshold (each key
    /// counted once, as the specification says); returns the key IDs that verified.
    pub fn verify_with(&self, root: &Root, role: Role) -> Result<Vec<String>, MetadataError> {
        let r = root.role(role)?;
        let mut good = Vec::new();
        for id in &r.keyids {
            let Some(key) = root.keys.get(id) else {
                continue;
            };
            let verified = self
                .signatures
                .iter()
                .filter(|s| s.keyid == *id)
                .any(|s| key.verify(&self.canonical, &s.sig).unwrap_or(false));
            if verified {
                good.push(id.clone());
            }
        }
        if (good.len() as u64) < r.threshold {
            return Err(MetadataError::Threshold {
                role,
                got: good.len() as u64,
                need: r.threshold,
                keyids: r.keyids.join(", "),
            });
        }
        Ok(good)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_has_the_one_form_python_tuf_parses() {
        let e = Expires::parse("2030-01-02T03:04:05Z").expect("parse");
        assert_eq!(e.to_tuf_string(), "2030-01-02T03:04:05Z");
        assert_eq!(e.unix(), 1_893_553_445);
        for bad in [
            "2030-01-02T03:04:05.5Z",
            "2030-01-02T03:04:05+00:00",
            "2030-01-02 03:04:05Z",
            "2030-01-02T03:04:05",
        ] {
            assert!(Expires::parse(bad).is_err(), "{bad}");
        }
        let now = time::OffsetDateTime::from_unix_timestamp(1000).expect("t");
        assert_eq!(
            Expires::after(now, std::time::Duration::from_millis(90_900)).unix(),
            1090
        );
        assert_eq!(Expires::from_unix(1090).remaining(now), 90);
    }

    #[test]
    fn file_names_follow_consistent_snapshots() {
        assert_eq!(Role::Root.file_name(3), "3.root.json");
        assert_eq!(Role::Snapshot.file_name(9), "9.snapshot.json");
        assert_eq!(Role::Timestamp.file_name(9), "timestamp.json");
        assert_eq!(Role::Targets.meta_name(), "targets.json");
    }

    #[test]
    fn parsing_is_strict() {
        let ok = br#"{"signatures":[],"signed":{"_type":"timestamp","spec_version":"1.0.31","version":2,"expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":1}}}}"#;
        let m = Metadata::<Timestamp>::parse(ok.to_vec()).expect("parse");
        assert_eq!(m.signed.version, 2);
        assert_eq!(m.canonical, br#"{"_type":"timestamp","expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":1}},"spec_version":"1.0.31","version":2}"#);
        let s = String::from_utf8(ok.to_vec()).expect("utf8");
        for (bad, why) in [
            (s.replace("\"timestamp\"", "\"snapshot\""), "_type"),
            (s.replace("1.0.31", "2.0.0"), "spec_version"),
            (s.replace("\"version\":2", "\"version\":0"), "version 0"),
            (
                s.replace("\"meta\"", "\"extra\":1,\"meta\""),
                "unknown field",
            ),
            (s.replace("\"version\":2", "\"version\":2.0"), "floating"),
        ] {
            let e = Metadata::<Timestamp>::parse(bad.into_bytes()).expect_err(why);
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
        assert!(Metadata::<Root>::parse(ok.to_vec()).is_err());
    }

    #[test]
    fn meta_files_match_length_and_sha256_only() {
        let bytes = b"some file".to_vec();
        let m = MetaFile {
            version: 1,
            length: Some(9),
            hashes: Some(BTreeMap::from([(
                "sha256".into(),
                hex::encode(Sha256::digest(&bytes)),
            )])),
        };
        assert!(m.matches(&bytes));
        assert!(!m.matches(b"some filf"));
        assert!(!m.matches(b"some file!"));
        let other_hash_only = MetaFile {
            hashes: Some(BTreeMap::from([("sha512".into(), "00".into())])),
            ..m.clone()
        };
        assert!(!other_hash_only.matches(&bytes));
        assert!(
            MetaFile {
                version: 1,
                length: None,
                hashes: None
            }
            .matches(&bytes)
        );
    }
}
