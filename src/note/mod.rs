//! C2SP signed notes and tlog checkpoints, in the form Sigstore clients verify.
//!
//! A checkpoint body is `<origin>\n<size>\n<base64 root>\n[<extension line>\n]*`; a signed note
//! appends a blank line and one line per signature: `— <name> <base64(key hint ‖ signature)>`.
//! For ECDSA keys the 4-byte key hint is the first four bytes of SHA-256 of the DER
//! SubjectPublicKeyInfo — the C2SP type-0x02 key ID, and what Rekor v1 uses (its log ID prefix).
//! The signature is a DER ECDSA-SHA256 signature over the body bytes.
//!
//! Pure code: formatting, parsing and verification. Signing goes through [`crate::signer`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::Digest;

use crate::merkle::Hash;
use crate::signer::{SignError, Signer};

/// The em dash (U+2014) that starts every signature line.
const DASH: &str = "\u{2014}";

/// A tree head to be signed: origin, size, root hash and optional extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines without their trailing newline (e.g. `Timestamp: 1700000000`).
    pub extensions: Vec<String>,
}

/// Why a note or checkpoint was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("note is malformed: {0}")]
    Malformed(&'static str),
    #[error("checkpoint is malformed: {0}")]
    BadCheckpoint(&'static str),
    #[error("no signature by '{0}' with the expected key")]
    NoSignature(String),
    #[error("signature by '{0}' does not verify")]
    BadSignature(String),
    #[error("invalid signer name {0:?} (must be non-empty, without spaces or '+')")]
    BadName(String),
}

/// The 4-byte key hint of an ECDSA key: SHA-256(DER SPKI)[..4].
pub fn ecdsa_key_hint(spki_der: &[u8]) -> [u8; 4] {
    let d = sha2::Sha256::digest(spki_der);
    [d[0], d[1], d[2], d[3]]
}

fn valid_line(s: &str) -> bool {
    !s.is_empty() && !s.contains('\n')
}

impl Checkpoint {
    /// The signed body text.
    pub fn body(&self) -> Result<String, NoteError> {
        if !valid_line(&self.origin) {
            return Err(NoteError::BadCheckpoint("origin is empty or has a newline"));
        }
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            if !valid_line(e) {
                return Err(NoteError::BadCheckpoint(
                    "extension line is empty or has a newline",
                ));
            }
            s.push_str(e);
            s.push('\n');
        }
        Ok(s)
    }

    /// Parse a checkpoint body (the text before the blank line of a note).
    pub fn parse_body(body: &str) -> Result<Self, NoteError> {
        let text = body
            .strip_suffix('\n')
            .ok_or(NoteError::BadCheckpoint("body must end with a newline"))?;
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|l| !l.is_empty());
        let origin = origin.ok_or(NoteError::BadCheckpoint("missing origin"))?;
        let size = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("missing size"))?;
        if size.is_empty() || (size.len() > 1 && size.starts_with('0')) {
            return Err(NoteError::BadCheckpoint("size is not a canonical decimal"));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| NoteError::BadCheckpoint("size is not a decimal number"))?;
        let root = lines
            .next()
            .ok_or(NoteError::BadCheckpoint("missing root hash"))?;
        let root = B64
            .decode(root)
            .ok()
            .and_then(|r| Hash::try_from(r.as_slice()).ok())
            .ok_or(NoteError::BadCheckpoint(
                "root hash is not base64 of 32 bytes",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(NoteError::BadCheckpoint("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// Sign `body` as a note with one ECDSA signature line by `name`.
pub fn sign_note(body: &str, name: &str, signer: &dyn Signer) -> Result<String, SignNoteError> {
    if name.is_empty() || name.contains([' ', '+', '\n', '\t']) {
        return Err(NoteError::BadName(name.into()).into());
    }
    if !body.ends_with('\n') || body.contains("\n\n") {
        return Err(
            NoteError::Malformed("body must end with one newline and have no blank line").into(),
        );
    }
    let sig = signer.sign(body.as_bytes())?;
    let mut blob = ecdsa_key_hint(signer.public_key_der()).to_vec();
    blob.extend_from_slice(&sig);
    Ok(format!("{body}\n{DASH} {name} {}\n", B64.encode(blob)))
}

/// Error from [`sign_note`].
#[derive(Debug, thiserror::Error)]
pub enum SignNoteError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_hint: [u8; 4],
    pub signature: Vec<u8>,
}

/// Split a note into its body (including its final newline) and signature lines.
pub fn parse_note(text: &str) -> Result<(&str, Vec<NoteSignature>), NoteError> {
    let split = text
        .find("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let body = &text[..split + 1];
    let sigs = &text[split + 2..];
    let sigs = sigs.strip_suffix('\n').ok_or(NoteError::Malformed(
        "signature block must end with a newline",
    ))?;
    let mut out = Vec::new();
    for line in sigs.split('\n') {
        let rest = line
            .strip_prefix(DASH)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(NoteError::Malformed(
                "signature line must start with an em dash",
            ))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "signature line needs a name and a signature",
        ))?;
        let blob = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if blob.len() < 5 || name.is_empty() {
            return Err(NoteError::Malformed("signature too short"));
        }
        out.push(NoteSignature {
            name: name.to_owned(),
            key_hint: [blob[0], blob[1], blob[2], blob[3]],
            signature: blob[4..].to_vec(),
        });
    }
    if out.is_empty() {
        return Err(NoteError::Malformed("no signature lines"));
    }
    Ok((body, out))
}

/// Verify that `text` carries a valid ECDSA P-256 signature by `name` with the key `spki_der`,
/// and return the body. Signatures by other names or keys are ignored, as C2SP requires.
pub fn verify_note<'a>(text: &'a str, name: &str, spki_der: &[u8]) -> Result<&'a str, NoteError> {
    use crate::pki::signature::{HashAlg, PublicKey, verify_message};
    let (body, sigs) = parse_note(text)?;
    let hint = ecdsa_key_hint(spki_der);
    let key = PublicKey::p256_from_spki_der(spki_der)
        .map_err(|_| NoteError::BadSignature(name.into()))?;
    let mut found = false;
    for s in sigs.iter().filter(|s| s.name == name && s.key_hint == hint) {
        found = true;
        if verify_message(&key, HashAlg::Sha256, body.as_bytes(), &s.signature).is_ok() {
            return Ok(body);
        }
    }
    if found {
        Err(NoteError::BadSignature(name.into()))
    } else {
        Err(NoteError::NoSignature(name.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transparency-dev/witness `internal/note/note_verifier_test.go`: a rekor.sigstore.dev
    /// checkpoint and its C2SP vkey (type 0x02 = ECDSA, key = DER SPKI).
    const REKOR_VKEY: &str = "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=";
    const REKOR_NOTE: &str = "Rekor\n798034\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n\n\u{2014} rekor.sigstore.dev wNI9ajBEAiARInWIWyCdyG27CO6LPnPekyw20qO0YJfoaPaowGp/XgIgc+qEHS3+GKVClgqq20uDLet7MCoTURUCRdxwWBHHufk=\n";

    fn rekor_spki() -> Vec<u8> {
        let parts: Vec<&str> = REKOR_VKEY.splitn(3, '+').collect();
        let blob = B64.decode(parts[2]).expect("b64");
        assert_eq!(blob[0], 0x02);
        blob[1..].to_vec()
    }

    #[test]
    fn verifies_a_real_rekor_checkpoint() {
        let spki = rekor_spki();
        assert_eq!(hex::encode(ecdsa_key_hint(&spki)), "c0d23d6a");
        let body = verify_note(REKOR_NOTE, "rekor.sigstore.dev", &spki).expect("verify");
        let cp = Checkpoint::parse_body(body).expect("checkpoint");
        assert_eq!(cp.origin, "Rekor");
        assert_eq!(cp.size, 798034);
        assert_eq!(cp.body().expect("body"), body);
    }

    #[test]
    fn tampering_is_detected() {
        let spki = rekor_spki();
        let t = REKOR_NOTE.replace("798034", "798035");
        assert_eq!(
            verify_note(&t, "rekor.sigstore.dev", &spki),
            Err(NoteError::BadSignature("rekor.sigstore.dev".into()))
        );
        assert_eq!(
            verify_note(REKOR_NOTE, "other.name", &spki),
            Err(NoteError::NoSignature("other.name".into()))
        );
        assert!(parse_note("no blank line\n").is_err());
        assert!(Checkpoint::parse_body("o\n01\nAAAA\n").is_err());
        assert!(Checkpoint::parse_body("o\n1\nAAAA\n").is_err());
    }

    #[test]
    fn sign_then_verify_round_trip() {
        let s = crate::signer::test_support::SoftP256::random();
        let cp = Checkpoint {
            origin: "example.org - 1".into(),
            size: 3,
            root: [7u8; 32],
            extensions: vec![],
        };
        let note = sign_note(&cp.body().expect("body"), "example.org", &s).expect("sign");
        assert_eq!(
            note.matches("\n\n").count(),
            1,
            "sigstore-python needs exactly one blank line"
        );
        let body = verify_note(&note, "example.org", s.public_key_der()).expect("verify");
        assert_eq!(Checkpoint::parse_body(body).expect("parse"), cp);
        assert!(sign_note("x\n", "bad name", &s).is_err());
    }
}
