//! The transcript: one JSON line per key generated and per signature made, appended and synced
//! before the file it belongs to is published, so that nothing is ever published that the
//! transcript does not show. It holds what a witness checks (key IDs, key URIs, the SHA-256 of
//! the bytes signed and of the file, the signature), never a PIN.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::metadata::{Metadata, Payload, Role};
use super::repository::RepoError;
use super::sign::KeySigner;

/// The transcript file of a state directory, opened for appending.
#[derive(Debug)]
pub struct Transcript {
    path: PathBuf,
    file: std::fs::File,
    command: &'static str,
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Transcript {
    /// The file's name in the state directory.
    pub const FILE: &'static str = "transcript.jsonl";

    /// Open (or create) the transcript of `state_dir`; `command` names the lines' command.
    pub fn open(state_dir: &Path, command: &'static str) -> Result<Self, RepoError> {
        let path = state_dir.join(Self::FILE);
        let io = |source| RepoError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.len() == 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io)?;
            if let Ok(dir) = std::fs::metadata(state_dir) {
                if dir.uid() != meta.uid() {
                    let _ = std::os::unix::fs::chown(&path, Some(dir.uid()), Some(dir.gid()));
                }
            }
        }
        Ok(Self {
            path,
            file,
            command,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&mut self, mut line: serde_json::Value) -> Result<(), RepoError> {
        line["time"] = json!(now());
        line["command"] = json!(self.command);
        line["sigvault_version"] = json!(env!("CARGO_PKG_VERSION"));
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        let io = |source| RepoError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// A key generated in its token.
    pub fn key_generated(&mut self, role: Role, k: &KeySigner<'_>) -> Result<(), RepoError> {
        self.append(json!({
            "event": "generated-key",
            "role": role.name(),
            "keyid": k.keyid,
            "key": k.uri,
            "public_key_sha256": hex::encode(Sha256::digest(k.signer.public_key_der())),
        }))
    }

    /// Every signature of `m`, made by `signers` (matched by key ID).
    pub fn signed<T: Payload>(
        &mut self,
        m: &Metadata<T>,
        signers: &[&KeySigner<'_>],
    ) -> Result<(), RepoError> {
        for sig in &m.signatures {
            let uri = signers
                .iter()
                .find(|s| s.keyid == sig.keyid)
                .map(|s| s.uri.as_str())
                .unwrap_or_default();
            self.append(json!({
                "event": "signed",
                "role": T::ROLE.name(),
                "version": m.signed.version(),
                "expires": m.signed.expires().to_tuf_string(),
                "file": T::ROLE.file_name(m.signed.version()),
                "signed_sha256": hex::encode(Sha256::digest(&m.canonical)),
                "file_sha256": hex::encode(Sha256::digest(&m.bytes)),
                "keyid": sig.keyid,
                "key": uri,
                "signature": sig.sig,
            }))?;
        }
        Ok(())
    }

    /// A free-form note (a command that stopped half-way, what it undid).
    pub fn note(&mut self, what: &str) -> Result<(), RepoError> {
        self.append(json!({"event": "note", "note": what}))
    }
}
