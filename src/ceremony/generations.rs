//! The generations of each key that rotates, read back from the ceremony's records.
//!
//! Generation 1 of a role is what the ceremony (or `--add`) made: `issuing-ca.pem`,
//! `ctlog.pub.pem`, `rekor-v2.pub.pem`, `tsa.pem`. Each rotation adds generation n ≥ 2 as a new
//! file (`issuing-ca-2.pem`, `ctlog-2.pub.pem`, ...) and a record `rotate-<role>-<n>.json` that
//! says when it starts and, for a log, the URL it is served at; retiring a generation writes
//! `retire-<role>-<n>.json` with the end of its window. Nothing is ever rewritten: the state of
//! the installation is the set of files, so `sigvault trust` rebuilds the same multi-entry trust
//! root from them every time, and the witnessed printouts of each step stay true.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The roles whose keys rotate (the root does not: a new root is a new installation, delivered
/// to clients by a TUF root rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    IssuingCa,
    Ctlog,
    /// Rekor v1: each generation is a shard (a new tree with a new key) of the one log, served
    /// at the same URL, so unlike the other logs it records no URL of its own.
    Rekor,
    RekorV2,
    Tsa,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::IssuingCa,
        Role::Ctlog,
        Role::Rekor,
        Role::RekorV2,
        Role::Tsa,
    ];

    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::IssuingCa => "issuing-ca",
            Role::Ctlog => "ctlog",
            Role::Rekor => "rekor",
            Role::RekorV2 => "rekor-v2",
            Role::Tsa => "tsa",
        }
    }

    /// Whether the role's material is a certificate the root signs (else an exported key).
    pub fn has_certificate(self) -> bool {
        matches!(self, Role::IssuingCa | Role::Tsa)
    }

    /// Whether each generation is a log of its own, served at its own URL (a Rekor v1 shard is
    /// not: it is served as part of the one log, at its URL).
    pub fn is_log(self) -> bool {
        matches!(self, Role::Ctlog | Role::RekorV2)
    }

    /// The public file of generation `n` in the ceremony directory.
    pub fn file(self, n: u32) -> String {
        let base = self.as_str();
        let ext = if self.has_certificate() {
            "pem"
        } else {
            "pub.pem"
        };
        if n <= 1 {
            format!("{base}.{ext}")
        } else {
            format!("{base}-{n}.{ext}")
        }
    }

    pub fn rotation_record(self, n: u32) -> String {
        format!("rotate-{}-{n}.json", self.as_str())
    }

    pub fn retirement_record(self, n: u32) -> String {
        format!("retire-{}-{n}.json", self.as_str())
    }
}

pub const ROTATION_FORMAT: &str = "sigvault-rotation/v1";
pub const RETIREMENT_FORMAT: &str = "sigvault-retirement/v1";

/// The fields of a rotation record that later steps read (the record holds more: the steps,
/// the key and certificate records, the file hashes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationHead {
    pub format: String,
    pub role: String,
    pub generation: u32,
    pub file: String,
    pub key_label: String,
    /// Where the new log is served (logs only).
    #[serde(default)]
    pub url: Option<String>,
    /// RFC 3339: the start of the new generation's window.
    pub start: String,
}

/// A retirement record: the end of one generation's window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Retirement {
    pub format: String,
    pub role: String,
    pub generation: u32,
    /// RFC 3339: the end of the window.
    pub end: String,
    pub recorded_at: String,
}

/// One generation of a role.
#[derive(Debug, Clone)]
pub struct Generation {
    pub role: Role,
    pub number: u32,
    /// Its certificate or public key file.
    pub file: PathBuf,
    /// The key's label in its token (generation 1: not recorded here, the ceremony's config).
    pub key_label: Option<String>,
    /// The log's URL (generations ≥ 2 of a log; generation 1's is the one `sigvault trust` is
    /// given).
    pub url: Option<String>,
    /// The start of its window (generation 1: none recorded; `sigvault trust` uses the
    /// certificate's notBefore as it always has).
    pub start: Option<OffsetDateTime>,
    /// The end of its window, once retired.
    pub end: Option<OffsetDateTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerationsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Bad { path: PathBuf, message: String },
}

pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time (e.g. 2027-01-01T00:00:00Z): {e}"))
}

pub fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, GenerationsError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(GenerationsError::Read {
                path: path.into(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| GenerationsError::Bad {
            path: path.into(),
            message: e.to_string(),
        })
}

/// Every generation of `role` in `dir`, oldest first; empty when the role was never made.
/// Generation n ≥ 2 exists when its rotation record does; the numbers have no gaps.
pub fn generations(dir: &Path, role: Role) -> Result<Vec<Generation>, GenerationsError> {
    let mut out = Vec::new();
    if dir.join(role.file(1)).exists() {
        out.push(Generation {
            role,
            number: 1,
            file: dir.join(role.file(1)),
            key_label: None,
            url: None,
            start: None,
            end: None,
        });
    } else {
        return Ok(out);
    }
    for n in 2.. {
        let path = dir.join(role.rotation_record(n));
        let Some(head) = read_json::<RotationHead>(&path)? else {
            break;
        };
        let bad = |message: String| GenerationsError::Bad {
            path: path.clone(),
            message,
        };
        if head.format != ROTATION_FORMAT || head.role != role.as_str() || head.generation != n {
            return Err(bad(format!(
                "not the rotation record of {} generation {n}",
                role.as_str()
            )));
        }
        if head.file != role.file(n) {
            return Err(bad(format!("names {}, not {}", head.file, role.file(n))));
        }
        let start = parse_time(&head.start).map_err(bad)?;
        out.push(Generation {
            role,
            number: n,
            file: dir.join(&head.file),
            key_label: Some(head.key_label),
            url: head.url,
            start: Some(start),
            end: None,
        });
    }
    for g in &mut out {
        let path = dir.join(role.retirement_record(g.number));
        if let Some(r) = read_json::<Retirement>(&path)? {
            if r.format != RETIREMENT_FORMAT || r.role != role.as_str() || r.generation != g.number
            {
                return Err(GenerationsError::Bad {
                    path,
                    message: format!(
                        "not the retirement record of {} generation {}",
                        role.as_str(),
                        g.number
                    ),
                });
            }
            g.end = Some(parse_time(&r.end).map_err(|message| GenerationsError::Bad {
                path: path.clone(),
                message,
            })?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(Role::IssuingCa.file(1), "issuing-ca.pem");
        assert_eq!(Role::IssuingCa.file(2), "issuing-ca-2.pem");
        assert_eq!(Role::Ctlog.file(3), "ctlog-3.pub.pem");
        assert_eq!(Role::RekorV2.file(1), "rekor-v2.pub.pem");
        assert_eq!(Role::Rekor.file(1), "rekor.pub.pem");
        assert_eq!(Role::Rekor.file(2), "rekor-2.pub.pem");
        assert_eq!(Role::parse("rekor"), Some(Role::Rekor));
        assert_eq!(Role::Tsa.rotation_record(2), "rotate-tsa-2.json");
        assert_eq!(Role::parse("rekor-v2"), Some(Role::RekorV2));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn generations_are_read_in_order_and_checked() {
        let dir = std::env::temp_dir().join(format!("sigvault-gen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        assert!(generations(&dir, Role::Ctlog).expect("read").is_empty());
        std::fs::write(dir.join("ctlog.pub.pem"), "x").expect("write");
        let head = |n: u32, file: &str| RotationHead {
            format: ROTATION_FORMAT.into(),
            role: "ctlog".into(),
            generation: n,
            file: file.into(),
            key_label: format!("ctlog-{n}"),
            url: Some(format!("https://ct{n}.example.org/log")),
            start: "2027-01-01T00:00:00Z".into(),
        };
        let write = |name: &str, v: &dyn erased::Ser| {
            std::fs::write(dir.join(name), v.json()).expect("write")
        };
        write("rotate-ctlog-2.json", &head(2, "ctlog-2.pub.pem"));
        // A gap (no generation 3) ends the list: generation 4 is not read.
        write("rotate-ctlog-4.json", &head(4, "ctlog-4.pub.pem"));
        let r = Retirement {
            format: RETIREMENT_FORMAT.into(),
            role: "ctlog".into(),
            generation: 1,
            end: "2027-01-02T00:00:00Z".into(),
            recorded_at: "2027-01-02T00:00:00Z".into(),
        };
        write("retire-ctlog-1.json", &r);
        let g = generations(&dir, Role::Ctlog).expect("read");
        assert_eq!(g.len(), 2);
        assert_eq!(
            g[0].end.map(format_time).as_deref(),
            Some("2027-01-02T00:00:00Z")
        );
        assert_eq!(g[1].url.as_deref(), Some("https://ct2.example.org/log"));
        assert!(g[1].end.is_none());
        // A record that names another file is refused, naming the record.
        write("rotate-ctlog-3.json", &head(3, "ctlog-2.pub.pem"));
        let e = generations(&dir, Role::Ctlog).expect_err("must be refused");
        assert!(e.to_string().contains("rotate-ctlog-3.json"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    mod erased {
        pub trait Ser {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Ser for T {
            fn json(&self) -> String {
                serde_json::to_string(self).expect("json")
            }
        }
    }
}
