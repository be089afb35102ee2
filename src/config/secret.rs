//! Secrets (PINs) referenced from config by path, never inline.
//!
//! A secret is either a file (`{ file = "/etc/sigvault/secrets/ctlog.pin" }`) or a systemd
//! credential (`{ credential = "ctlog-pin" }`, read from `$CREDENTIALS_DIRECTORY/ctlog-pin`, which
//! systemd fills from `LoadCredential=`). The value is held in a [`SecretString`], which zeroizes
//! on drop and prints as `[REDACTED]`.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file readable only by the service user.
    File(PathBuf),
    /// A systemd credential name, read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSourceTable {
    file: Option<PathBuf>,
    credential: Option<String>,
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // Accept only the table form; a bare string would invite inline PINs.
        let v = toml::Value::deserialize(d)?;
        let toml::Value::Table(t) = v else {
            return Err(D::Error::custom(
                "secrets are never written inline: use { file = \"/path/to/pin\" } or { credential = \"name\" }",
            ));
        };
        let t: SecretSourceTable = t.try_into().map_err(D::Error::custom)?;
        match (t.file, t.credential) {
            (Some(f), None) => {
                if f.as_os_str().is_empty() {
                    return Err(D::Error::custom("secret file path is empty"));
                }
                Ok(Self::File(f))
            }
            (None, Some(c)) => {
                if c.is_empty() || c.contains('/') || c == "." || c == ".." {
                    return Err(D::Error::custom(format!(
                        "credential name {c:?} is not a plain file name"
                    )));
                }
                Ok(Self::Credential(c))
            }
            _ => Err(D::Error::custom(
                "a secret needs exactly one of `file` or `credential`",
            )),
        }
    }
}

/// Why a secret could not be read. Messages name the path, never the content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret refers to systemd credential '{0}' but $CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential={0}:<path>, or use {{ file = ... }})"
    )]
    NoCredentialsDirectory(String),
    #[error("cannot read secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secret file {path} is accessible to other users (mode {mode:04o}); run: chmod 0600 {path}"
    )]
    WorldAccessible { path: PathBuf, mode: u32 },
    #[error("secret file {path} is empty")]
    Empty { path: PathBuf },
    #[error("secret file {path} is not valid UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error("secret file {path} is larger than {max} bytes; is it the right file?")]
    TooLarge { path: PathBuf, max: usize },
}

const MAX_SECRET_LEN: usize = 4096;

impl SecretSource {
    /// The path the secret is read from, resolving credentials against `$CREDENTIALS_DIRECTORY`.
    pub fn path(&self) -> Result<PathBuf, SecretError> {
        match self {
            Self::File(p) => Ok(p.clone()),
            Self::Credential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .ok_or_else(|| SecretError::NoCredentialsDirectory(name.clone()))?;
                Ok(Path::new(&dir).join(name))
            }
        }
    }

    /// Check that the secret exists and is private, without keeping its value.
    pub fn check(&self) -> Result<(), SecretError> {
        self.read().map(drop)
    }

    /// Read the secret. One trailing newline (`\n` or `\r\n`) is dropped, as editors add one.
    pub fn read(&self) -> Result<SecretString, SecretError> {
        let path = self.path()?;
        let read_err = |source| SecretError::Read {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o007 != 0 {
            return Err(SecretError::WorldAccessible { path, mode });
        }
        if mode & 0o070 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:04o}"), "secret file is group-accessible");
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(64));
        file.take(MAX_SECRET_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(read_err)?;
        if buf.len() > MAX_SECRET_LEN {
            return Err(SecretError::TooLarge {
                path,
                max: MAX_SECRET_LEN,
            });
        }
        let mut end = buf.len();
        if end > 0 && buf[end - 1] == b'\n' {
            end -= 1;
            if end > 0 && buf[end - 1] == b'\r' {
                end -= 1;
            }
        }
        if end == 0 {
            return Err(SecretError::Empty { path });
        }
        let s = std::str::from_utf8(&buf[..end])
            .map_err(|_| SecretError::NotUtf8 { path: path.clone() })?;
        Ok(SecretString::from(s))
    }
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "file {}", p.display()),
            Self::Credential(c) => write!(f, "credential {c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Debug, Deserialize)]
    struct W {
        pin: SecretSource,
    }

    #[test]
    fn inline_secret_is_refused() {
        let e = toml::from_str::<W>("pin = \"1234\"").expect_err("inline must fail");
        assert!(e.to_string().contains("never written inline"), "{e}");
    }

    #[test]
    fn both_forms_parse() {
        let w: W = toml::from_str("pin = { file = \"/x\" }").expect("file");
        assert_eq!(w.pin, SecretSource::File("/x".into()));
        let w: W = toml::from_str("pin = { credential = \"c\" }").expect("cred");
        assert_eq!(w.pin, SecretSource::Credential("c".into()));
        assert!(toml::from_str::<W>("pin = { credential = \"../c\" }").is_err());
        assert!(toml::from_str::<W>("pin = { file = \"/x\", credential = \"c\" }").is_err());
        assert!(toml::from_str::<W>("pin = { path = \"/x\" }").is_err());
    }

    #[test]
    fn file_modes_and_trailing_newline() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("pin");
        std::fs::write(&p, "s3cret\r\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let s = SecretSource::File(p.clone()).read().expect("read");
        assert_eq!(s.expose_secret(), "s3cret");

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = SecretSource::File(p.clone()).read().expect_err("mode");
        assert!(e.to_string().contains("chmod 0600"), "{e}");

        let missing = SecretSource::File(dir.path().join("nope")).read().err();
        assert!(matches!(missing, Some(SecretError::Read { .. })));

        std::fs::write(&p, "\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            SecretSource::File(p).read(),
            Err(SecretError::Empty { .. })
        ));
    }
}
