//! `[tuf]`: the instance's TUF repository (`sigvault tuf ...`, config/tuf.toml).
//!
//! Every role names its keys in PKCS#11 tokens: root and targets are offline roles with a
//! threshold over several keys (split custody: one token per holder), snapshot and timestamp
//! are online roles with one key each, re-signed by `sigvault tuf refresh` without a person.
//! Lifetimes are periods such as `"365d"`, `"12h"`, `"30s"`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{HsmConfig, SecretSource};
use crate::hsm::Pkcs11Uri;
use crate::tuf::metadata::Role;

/// A length of time written `<n><unit>`, unit `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period(pub Duration);

impl Period {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "period {s:?} must be a whole number and a unit: s, m, h or d (e.g. \"12h\", \"365d\")"
            )
        };
        let (n, unit) = s.split_at(s.len().saturating_sub(1));
        let n: u64 = n.parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" => Some(n),
            "m" => n.checked_mul(60),
            "h" => n.checked_mul(3600),
            "d" => n.checked_mul(86_400),
            _ => None,
        }
        .ok_or_else(bad)?;
        // A hundred years is more than any metadata should live; beyond it is a typo.
        if secs == 0 || secs > 100 * 366 * 86_400 {
            return Err(format!("period {s:?} must be between 1s and 100 years"));
        }
        Ok(Self(Duration::from_secs(secs)))
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.as_secs();
        match s {
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One key of an offline role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleKeyConfig {
    /// The key (`pkcs11:token=...;object=<label>`): generated there by `init` or `rotate-root`
    /// when the token holds no key of that label.
    pub key: Pkcs11Uri,
    pub pin: SecretSource,
    /// Root keys only: a key of the current root that signs the next root but is not listed in
    /// it (the key leaving at a rotation). Remove the entry once the rotation is done.
    #[serde(default)]
    pub retired: bool,
}

/// `[tuf.root]` and `[tuf.targets]`: keys held offline, a threshold of them signs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineRoleConfig {
    /// How many of the role's keys must sign (default 1).
    #[serde(default = "one")]
    pub threshold: u64,
    #[serde(default)]
    pub keys: Vec<RoleKeyConfig>,
    /// Lifetime of a new version.
    pub expires: Period,
    /// `/readyz` fails and the metric warns when less than this is left (default: a quarter
    /// of `expires`). Renewing needs the offline keys: leave time to gather their holders.
    #[serde(default)]
    pub warn_before: Option<Period>,
}

fn one() -> u64 {
    1
}

impl OfflineRoleConfig {
    /// The keys the next version lists (not retired).
    pub fn active(&self) -> impl Iterator<Item = &RoleKeyConfig> {
        self.keys.iter().filter(|k| !k.retired)
    }

    pub fn warn_before(&self) -> Duration {
        self.warn_before.map_or(self.expires.0 / 4, |p| p.0)
    }
}

/// `[tuf.snapshot]` and `[tuf.timestamp]`: one key each in the online token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineRoleConfig {
    pub key: Pkcs11Uri,
    pub pin: SecretSource,
    /// Lifetime of a new version.
    pub expires: Period,
    /// `sigvault tuf refresh` re-signs the role once less than this is left (default: half
    /// of `expires`).
    #[serde(default)]
    pub refresh_before: Option<Period>,
    /// `/readyz` fails when less than this is left (default: a quarter of `expires`): the
    /// refresh has then missed its chances for a quarter of the lifetime.
    #[serde(default)]
    pub warn_before: Option<Period>,
}

impl OnlineRoleConfig {
    pub fn refresh_before(&self) -> Duration {
        self.refresh_before.map_or(self.expires.0 / 2, |p| p.0)
    }

    pub fn warn_before(&self) -> Duration {
        self.warn_before.map_or(self.expires.0 / 4, |p| p.0)
    }
}

/// `[tuf]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TufSection {
    /// The state directory: `repository/` (the files served), `transcript.jsonl` (every key
    /// generated and every signature made), `refresh.json` (the last refresh's outcome), `lock`.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// `sigvault tuf serve`'s listener (plain HTTP only on loopback; else set `tls`).
    #[serde(default = "default_listen")]
    pub listen: crate::http::ListenAddr,
    #[serde(default)]
    pub tls: Option<crate::http::TlsFiles>,
    /// How long HTTP caches may keep `timestamp.json` (`Cache-Control: max-age`); 0 makes
    /// them revalidate every time. Versioned files are immutable whatever this says.
    #[serde(default = "default_timestamp_max_age")]
    pub timestamp_max_age_secs: u64,
    pub root: OfflineRoleConfig,
    pub targets: OfflineRoleConfig,
    pub snapshot: OnlineRoleConfig,
    pub timestamp: OnlineRoleConfig,
}

fn default_dir() -> PathBuf {
    "/var/lib/sigvault-tuf".into()
}
fn default_listen() -> crate::http::ListenAddr {
    crate::http::ListenAddr::Tcp(([127, 0, 0, 1], 8088).into())
}
fn default_timestamp_max_age() -> u64 {
    60
}

impl TufSection {
    /// The directory served to clients.
    pub fn repository_dir(&self) -> PathBuf {
        self.dir.join("repository")
    }

    /// A role's lifetime.
    pub fn expires(&self, role: Role) -> Duration {
        match role {
            Role::Root => self.root.expires.0,
            Role::Targets => self.targets.expires.0,
            Role::Snapshot => self.snapshot.expires.0,
            Role::Timestamp => self.timestamp.expires.0,
        }
    }

    /// How much of its lifetime a role may have left before readiness fails.
    pub fn warn_before(&self, role: Role) -> Duration {
        match role {
            Role::Root => self.root.warn_before(),
            Role::Targets => self.targets.warn_before(),
            Role::Snapshot => self.snapshot.warn_before(),
            Role::Timestamp => self.timestamp.warn_before(),
        }
    }

    /// The online role's config (snapshot or timestamp).
    pub fn online(&self, role: Role) -> Option<&OnlineRoleConfig> {
        match role {
            Role::Snapshot => Some(&self.snapshot),
            Role::Timestamp => Some(&self.timestamp),
            _ => None,
        }
    }

    /// The offline role's config (root or targets).
    pub fn offline(&self, role: Role) -> Option<&OfflineRoleConfig> {
        match role {
            Role::Root => Some(&self.root),
            Role::Targets => Some(&self.targets),
            _ => None,
        }
    }

    /// Every configured key: (role, key, pin, retired).
    pub fn all_keys(&self) -> Vec<(Role, &Pkcs11Uri, &SecretSource, bool)> {
        let mut v = Vec::new();
        for role in [Role::Root, Role::Targets] {
            for k in self.offline(role).map_or(&[][..], |r| &r.keys) {
                v.push((role, &k.key, &k.pin, k.retired));
            }
        }
        for role in [Role::Snapshot, Role::Timestamp] {
            if let Some(r) = self.online(role) {
                v.push((role, &r.key, &r.pin, false));
            }
        }
        v
    }
}

/// A whole tuf config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TufConfig {
    #[serde(default)]
    pub hsm: HsmConfig,
    pub tuf: TufSection,
}

impl TufConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.hsm.exit_after_failing_secs.is_some() {
            return Err("[hsm] exit_after_failing_secs is for services that sign while they serve; sigvault tuf serve holds no key (the refresh signs, and reports a failing token in refresh.json)".into());
        }
        let t = &self.tuf;
        if !t.dir.is_absolute() {
            return Err(format!(
                "[tuf] dir {} must be an absolute path",
                t.dir.display()
            ));
        }
        for role in [Role::Root, Role::Targets] {
            let Some(r) = t.offline(role) else { continue };
            let active = r.active().count() as u64;
            if r.keys.is_empty() {
                return Err(format!(
                    "[tuf.{role}] needs at least one [[tuf.{role}.keys]]"
                ));
            }
            // Before the threshold: a retired targets key would otherwise read as too few keys.
            if role != Role::Root && r.keys.iter().any(|k| k.retired) {
                return Err(format!(
                    "[tuf.{role}] retired applies to root keys only (a {role} key leaves by being removed from the list)"
                ));
            }
            if r.threshold == 0 || r.threshold > active {
                return Err(format!(
                    "[tuf.{role}] threshold {} must be between 1 and the number of its keys that are not retired ({active})",
                    r.threshold
                ));
            }
            let w = r.warn_before();
            if w >= r.expires.0 {
                return Err(format!(
                    "[tuf.{role}] warn_before must be shorter than expires"
                ));
            }
        }
        for role in [Role::Snapshot, Role::Timestamp] {
            let Some(r) = t.online(role) else { continue };
            let (w, f, e) = (r.warn_before(), r.refresh_before(), r.expires.0);
            if !(w < f && f < e) {
                return Err(format!(
                    "[tuf.{role}] needs warn_before ({}) < refresh_before ({}) < expires ({}): the refresh must renew the role before readiness warns",
                    Period(w),
                    Period(f),
                    Period(e)
                ));
            }
        }
        if t.timestamp.expires > t.snapshot.expires {
            return Err("[tuf.timestamp] expires should not exceed [tuf.snapshot] expires: a timestamp outliving its snapshot is worth nothing".into());
        }
        let keys = t.all_keys();
        for (i, (role, uri, _, _)) in keys.iter().enumerate() {
            if uri.object.is_none() {
                return Err(format!(
                    "[tuf.{role}] key {uri} needs object=<label>: keys are generated and found by label"
                ));
            }
            if let Some((other, _, _, _)) = keys[..i]
                .iter()
                .find(|(_, u, _, _)| u.token == uri.token && u.object == uri.object)
            {
                return Err(format!(
                    "[tuf.{role}] key {uri} is also a [tuf.{other}] key: every role has keys of its own"
                ));
            }
        }
        crate::http::check_listen(&t.listen, t.tls.as_ref())
            .map_err(|e| format!("[tuf] listen: {e}"))?;
        Ok(())
    }

    /// What `check-config` verifies on the machine: the module, the online keys' PINs (what
    /// the timer's refresh reads), the TLS files. The offline keys' PINs are not expected on
    /// the appliance: `init`, `publish` and `rotate-root` read them first thing, before they
    /// touch anything.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if !self.hsm.module.exists() {
            problems.push(format!(
                "[hsm] module {} does not exist",
                self.hsm.module.display()
            ));
        }
        for role in [Role::Snapshot, Role::Timestamp] {
            if let Some(r) = self.tuf.online(role) {
                if let Err(e) = r.pin.check() {
                    problems.push(format!("[tuf.{role}] pin: {e}"));
                }
            }
        }
        if let Some(tls) = &self.tuf.tls {
            for f in tls.files() {
                if !f.exists() {
                    problems.push(format!("[tuf] tls: {} does not exist", f.display()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(Period::parse("90s").expect("s").0.as_secs(), 90);
        assert_eq!(Period::parse("15m").expect("m").0.as_secs(), 900);
        assert_eq!(Period::parse("12h").expect("h").0.as_secs(), 43_200);
        assert_eq!(Period::parse("365d").expect("d").0.as_secs(), 31_536_000);
        for bad in ["", "d", "12", "1.5h", "-1d", "0s", "1w", "99999d", " 1d"] {
            assert!(Period::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Period::parse("36h").expect("h").to_string(), "36h");
        assert_eq!(Period::parse("48h").expect("h").to_string(), "2d");
    }

    #[test]
    fn the_shipped_example_is_valid_and_mistakes_are_named() {
        let p = std::path::Path::new("tuf.toml");
        let example = include_str!("../../config/tuf.toml");
        let cfg = match super::super::parse(p, example).expect("example") {
            super::super::AnyConfig::Tuf(c) => c,
            other => panic!("{}", other.kind()),
        };
        assert_eq!(cfg.tuf.root.threshold, 2);
        assert_eq!(
            cfg.tuf.timestamp.refresh_before(),
            Duration::from_secs(12 * 3600)
        );
        let err = |from: &str, to: &str| {
            assert!(example.contains(from), "{from}");
            super::super::parse(p, &example.replacen(from, to, 1))
                .expect_err(to)
                .to_string()
        };
        assert!(err("threshold = 2", "threshold = 3").contains("threshold 3"));
        assert!(err("expires = \"1d\"", "expires = \"30d\"").contains("should not exceed"));
        assert!(
            err("object=tuf-timestamp", "object=tuf-snapshot")
                .contains("is also a [tuf.snapshot] key")
        );
        assert!(
            err("warn_before = \"6h\"", "warn_before = \"13h\"")
                .contains("warn_before (13h) < refresh_before (12h)")
        );
        assert!(
            err(
                "[[tuf.targets.keys]]\n",
                "[[tuf.targets.keys]]\nretired = true\n"
            )
            .contains("root keys only")
        );
        assert!(err("[tuf]\n", "[tuf]\ncolour = 1\n").contains("unknown field `colour`"));
    }
}
