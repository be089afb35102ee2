//! How the repository stands, for `/readyz`, `/metrics` and `sigvault tuf status`: each role's
//! version and how long it has left, the last refresh's outcome, and whether that is ready.
//!
//! Not ready means *act now*, well before clients fail: a role with less than its
//! `warn_before` left (for the online roles that is a refresh that has missed its chances for a
//! quarter of their lifetime; for root and targets, time to gather the offline key holders),
//! a role that does not verify or does not name the newest version below it, a repository that
//! does not load, or a last refresh that failed (the online token went away, its PIN changed).
//! The server holds no key: what the online token is doing it learns from the refresh's record.

use std::fmt::Write as _;

use serde::Deserialize;

use super::metadata::Role;
use super::ops::REFRESH_STATUS_FILE;
use super::repository::Repository;
use crate::config::tuf::TufSection;

/// The refresh's record (`refresh.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct RefreshRecord {
    pub time: i64,
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// One role.
#[derive(Debug, Clone)]
pub struct RoleReport {
    pub role: Role,
    pub version: u64,
    pub expires: String,
    /// Seconds left (negative once expired).
    pub remaining: i64,
    pub current: bool,
}

/// The whole picture at one instant.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub roles: Vec<RoleReport>,
    /// Whether the repository loaded (a broken root chain, a corrupt file does not).
    pub loaded: bool,
    pub refresh: Option<RefreshRecord>,
    /// Why it is not ready; empty when it is.
    pub problems: Vec<String>,
}

/// `3d 4h`, `12m 5s`: a duration for people.
pub fn human(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let (d, h, m, s) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let text = match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    };
    format!("{sign}{text}")
}

/// Look at the repository of `cfg` now.
pub fn report(cfg: &TufSection) -> Report {
    let now = time::OffsetDateTime::now_utc();
    let mut r = Report {
        refresh: std::fs::read(cfg.dir.join(REFRESH_STATUS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
        ..Default::default()
    };
    match Repository::load(&cfg.repository_dir()) {
        Err(e) => r.problems.push(e.to_string()),
        Ok(repo) => {
            r.loaded = true;
            let status = repo.status();
            for role in Role::ALL {
                let Some(s) = status.iter().find(|s| s.role == role) else {
                    r.problems.push(format!("{role}: no metadata"));
                    continue;
                };
                let remaining = s.expires.remaining(now);
                let warn = cfg.warn_before(role).as_secs() as i64;
                if remaining <= 0 {
                    r.problems.push(format!(
                        "{role} version {} EXPIRED at {} ({} ago): clients refuse the repository",
                        s.version,
                        s.expires,
                        human(-remaining)
                    ));
                } else if remaining < warn {
                    let how = match role {
                        Role::Root => "renew it with `sigvault tuf rotate-root` and the root keys",
                        Role::Targets => {
                            "renew it with `sigvault tuf publish` and the targets keys"
                        }
                        _ => "the refresh (sigvault-tuf-refresh.timer) is not renewing it",
                    };
                    r.problems.push(format!(
                        "{role} version {} expires in {} (at {}), less than its warn_before of {}: {how}",
                        s.version,
                        human(remaining),
                        s.expires,
                        human(warn)
                    ));
                }
                if let Some(p) = &s.problem {
                    r.problems
                        .push(format!("{role} version {}: {p}", s.version));
                }
                r.roles.push(RoleReport {
                    role,
                    version: s.version,
                    expires: s.expires.to_tuf_string(),
                    remaining,
                    current: s.problem.is_none(),
                });
            }
        }
    }
    if let Some(rf) = &r.refresh {
        if !rf.ok {
            r.problems.push(format!(
                "the last refresh ({} ago) failed: {}",
                human(now.unix_timestamp() - rf.time),
                rf.error.as_deref().unwrap_or("no reason recorded")
            ));
        }
    }
    r
}

impl Report {
    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }

    /// Plain text: one line per role, then the verdict.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for role in &self.roles {
            let _ = writeln!(
                s,
                "{:<9} version {:<4} expires {} (in {}){}",
                role.role.name(),
                role.version,
                role.expires,
                human(role.remaining),
                if role.current { "" } else { ", NOT CURRENT" }
            );
        }
        if let Some(rf) = &self.refresh {
            let _ = writeln!(
                s,
                "last refresh at {}: {}",
                rf.time,
                if rf.ok { "ok" } else { "FAILED" }
            );
        }
        if self.ready() {
            s.push_str("ready\n");
        } else {
            for p in &self.problems {
                let _ = writeln!(s, "NOT READY: {p}");
            }
        }
        s
    }

    /// Prometheus text.
    pub fn metrics(&self) -> String {
        let mut s = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(String, i64)]| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, v) in samples {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        let per_role = |f: &dyn Fn(&RoleReport) -> i64| -> Vec<(String, i64)> {
            self.roles
                .iter()
                .map(|r| (format!("{{role=\"{}\"}}", r.role.name()), f(r)))
                .collect()
        };
        gauge(
            "sigvault_tuf_expires_in_seconds",
            "Seconds until the role's newest metadata expires (negative once expired).",
            &per_role(&|r| r.remaining),
        );
        gauge(
            "sigvault_tuf_version",
            "The role's newest metadata version.",
            &per_role(&|r| r.version as i64),
        );
        gauge(
            "sigvault_tuf_role_current",
            "1 while the role verifies and names the newest version below it.",
            &per_role(&|r| i64::from(r.current)),
        );
        gauge(
            "sigvault_tuf_repository_loaded",
            "1 while the repository loads (root chain verified, files parse).",
            &[(String::new(), i64::from(self.loaded))],
        );
        if let Some(rf) = &self.refresh {
            gauge(
                "sigvault_tuf_last_refresh_timestamp_seconds",
                "When sigvault tuf refresh last ran (Unix time).",
                &[(String::new(), rf.time)],
            );
            gauge(
                "sigvault_tuf_refresh_failing",
                "1 while the last refresh failed (e.g. the online token is gone).",
                &[(String::new(), i64::from(!rf.ok))],
            );
        }
        gauge(
            "sigvault_tuf_ready",
            "1 while every role is current with more than its warn_before left and the last refresh succeeded.",
            &[(String::new(), i64::from(self.ready()))],
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_people() {
        assert_eq!(human(5), "5s");
        assert_eq!(human(125), "2m 5s");
        assert_eq!(human(3 * 3600 + 61), "3h 1m");
        assert_eq!(human(2 * 86_400 + 7200), "2d 2h");
        assert_eq!(human(-90), "-1m 30s");
    }
}
