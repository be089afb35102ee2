//! Rotation and retirement: a new generation of a role's key (and certificate), beside the old
//! one, never in its place; and the end of an old generation's window once nothing uses it.
//!
//! The protocol an operator follows (README, "Rotating keys and logs"): `--rotate ROLE` makes
//! generation n (a new key in the role's token, its certificate signed by the root when the role
//! has one, or its public key exported when it is a log) and records when its window starts;
//! `sigvault trust` then lists both generations, the old one's window still open, and the trust
//! is published (TUF); the services move to the new generation; `--retire ROLE` records the end
//! of the old window (now, by default), and the trust is published again. Windows therefore
//! overlap by construction: nothing a client holds was ever made outside the window trust gives.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;
use x509_cert::Certificate;

use super::generations::{
    self, Generation, RETIREMENT_FORMAT, ROTATION_FORMAT, Retirement, Role, RotationHead,
};
use super::{
    CeremonyError, CeremonyOutcome, CertRecord, KeyRecord, Undo, days, export_public_key,
    load_root, login_all, make_key, now_rfc3339, refuse_existing, refuse_existing_keys,
    tsa_certificate, write_cert, write_new,
};
use crate::config::{CeremonyConfig, KeyConfig};
use crate::hsm::{HsmSigner, Module, Pkcs11Uri, Token};
use crate::pki::{self, CaKind};
use crate::signer::Signer as _;

/// What `--rotate` was asked for.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    pub role: Role,
    /// The new key's label in the role's token (default: the configured label and `-<n>`).
    pub label: Option<String>,
    /// The new log's URL (logs only, required for them).
    pub url: Option<String>,
    /// When the new generation's window starts (default: now).
    pub start: Option<OffsetDateTime>,
    /// TSA only: a new certificate for the current key instead of a new key.
    pub renew: bool,
    /// Certificate subject (default: the configured one, its CN followed by the generation).
    pub subject: Option<String>,
}

#[derive(serde::Serialize)]
struct RotationRecord {
    #[serde(flatten)]
    head: RotationHead,
    renewed: bool,
    sigvault_version: &'static str,
    started_at: String,
    finished_at: String,
    hsm_module: String,
    steps: Vec<String>,
    keys: Vec<KeyRecord>,
    certificates: Vec<CertRecord>,
    files: BTreeMap<String, String>,
}

fn other(m: impl Into<String>) -> CeremonyError {
    CeremonyError::Other(m.into())
}

fn read_generations(cfg: &CeremonyConfig, role: Role) -> Result<Vec<Generation>, CeremonyError> {
    generations::generations(&cfg.ceremony.output_dir, role).map_err(|e| other(e.to_string()))
}

/// The configured key (token, PIN) of `role`.
fn role_key(cfg: &CeremonyConfig, role: Role) -> Result<KeyConfig, CeremonyError> {
    let c = &cfg.ceremony;
    let missing = |section: &str| {
        other(format!(
            "--rotate {}: the config has no [ceremony.{section}] section",
            role.as_str()
        ))
    };
    Ok(match role {
        Role::IssuingCa => c.issuing_ca.key_config(),
        Role::Ctlog => c.ctlog.clone(),
        Role::Rekor => c.rekor.clone(),
        Role::RekorV2 => c.rekor_v2.clone().ok_or_else(|| missing("rekor_v2"))?,
        Role::Tsa => c
            .tsa
            .as_ref()
            .map(|t| t.key_config())
            .ok_or_else(|| missing("tsa"))?,
    })
}

/// `CN=x,O=y` → `CN=x <n>,O=y`: a new issuing CA whose name differs from the old one's, so
/// that no path builder can take one for the other.
fn numbered_subject(subject: &str, n: u32) -> Result<String, CeremonyError> {
    let Some(rest) = subject.strip_prefix("CN=") else {
        return Err(other(format!(
            "the configured subject {subject:?} does not start with CN=: give the new one with --subject"
        )));
    };
    let end = rest.find(',').unwrap_or(rest.len());
    if rest[..end].contains('\\') {
        return Err(other(
            "the configured subject's CN has escapes: give the new one with --subject",
        ));
    }
    Ok(format!("CN={} {n}{}", &rest[..end], &rest[end..]))
}

fn check_url(url: &str) -> Result<String, CeremonyError> {
    let u = url.trim_end_matches('/');
    let ok = ["https://", "http://"].iter().any(|s| {
        u.strip_prefix(s)
            .is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
    });
    if !ok {
        return Err(other(format!(
            "--url must be the new log's http(s) URL, got {url:?}"
        )));
    }
    Ok(u.to_owned())
}

/// Make generation n of `opts.role`. Refuses before anything is created when a file or a key
/// label it would make exists; rolls back what it made when a later step fails.
pub fn rotate(
    cfg: &CeremonyConfig,
    opts: &RotateOptions,
) -> Result<CeremonyOutcome, CeremonyError> {
    let started_at = now_rfc3339();
    let role = opts.role;
    let out = &cfg.ceremony.output_dir;
    for f in ["root.pem", "transcript.json"] {
        if !out.join(f).exists() {
            return Err(other(format!(
                "{} does not exist: --rotate renews what a ceremony made (run the ceremony first)",
                out.join(f).display()
            )));
        }
    }
    let gens = read_generations(cfg, role)?;
    let Some(current) = gens.last() else {
        return Err(other(format!(
            "there is no {} to rotate in {} (add it first: sigvault ceremony --add {})",
            role.as_str(),
            out.display(),
            role.as_str()
        )));
    };
    let n = current.number + 1;
    let new_file = role.file(n);
    let record_file = role.rotation_record(n);
    refuse_existing(out, &[new_file.as_str(), record_file.as_str()])?;

    if opts.renew && role != Role::Tsa {
        return Err(other(
            "--renew (a new certificate for the same key) is for the TSA; the other roles rotate to a new key",
        ));
    }
    if opts.renew && opts.label.is_some() {
        return Err(other(
            "--renew keeps the current key: --label makes no sense with it",
        ));
    }
    let url = match (&opts.url, role.is_log()) {
        (Some(u), true) => {
            let u = check_url(u)?;
            if gens.iter().any(|g| g.url.as_deref() == Some(u.as_str())) {
                return Err(other(format!(
                    "{u} is already the URL of an earlier {} generation: a new log needs a URL of its own",
                    role.as_str()
                )));
            }
            Some(u)
        }
        (None, true) => {
            return Err(other(format!(
                "--rotate {} makes a new log: give its URL with --url (its own, e.g. a new host or path)",
                role.as_str()
            )));
        }
        (Some(_), false) => {
            return Err(other(format!(
                "--url is for the logs (ctlog, rekor-v2); {} keeps its URL (a Rekor v1 shard is served at the log's URL)",
                role.as_str()
            )));
        }
        (None, false) => None,
    };
    let start = opts.start.unwrap_or_else(OffsetDateTime::now_utc);
    if let Some(prev) = current.start
        && start < prev
    {
        return Err(other(format!(
            "--start {} is before the start of generation {} ({}): windows follow each other",
            generations::format_time(start),
            current.number,
            generations::format_time(prev)
        )));
    }

    let configured = role_key(cfg, role)?;
    let configured_label = configured.key.object.clone().unwrap_or_default();
    let label = if opts.renew {
        current
            .key_label
            .clone()
            .unwrap_or_else(|| configured_label.clone())
    } else {
        opts.label
            .clone()
            .unwrap_or_else(|| format!("{configured_label}-{n}"))
    };
    let mut key = configured.clone();
    key.key = Pkcs11Uri {
        token: configured.key.token.clone(),
        object: Some(label.clone()),
        ..Default::default()
    };

    let mut steps = vec![format!(
        "rotating '{}' to generation {n} ({})",
        role.as_str(),
        if opts.renew {
            "a new certificate for the current key"
        } else {
            "a new key"
        }
    )];
    let mut roles: Vec<(&'static str, KeyConfig)> = Vec::new();
    if role.has_certificate() {
        roles.push(("root", cfg.ceremony.root.key_config()));
    }
    roles.push((role.as_str(), key.clone()));
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let tokens = login_all(&module, &roles, &mut steps)?;
    let root = if role.has_certificate() {
        Some(load_root(cfg, &tokens, &mut steps)?)
    } else {
        None
    };
    let token: &Arc<Token> = &tokens[&key.key.token];
    if !opts.renew {
        refuse_existing_keys(&roles[roles.len() - 1..], &tokens)?;
        super::require_curves(cfg, &roles[roles.len() - 1..], &tokens)?;
    }

    let mut undo = Undo::default();
    let result = (|| {
        let (signer, mut record): (HsmSigner, KeyRecord) = if opts.renew {
            let signer = token.signer(&key.key)?;
            steps.push(format!("kept the current key '{label}'"));
            let record = KeyRecord {
                role: role.as_str(),
                token: key.key.token.clone(),
                label: label.clone(),
                id: String::new(),
                uri: key.key.to_string(),
                curve: super::role_algorithm(cfg, role.as_str()).curve_name(),
                public_key_file: None,
                public_key_sha256: pki::sha256_hex(signer.public_key_der()),
            };
            (signer, record)
        } else {
            make_key(cfg, role.as_str(), &key, token, &mut undo, &mut steps)?
        };
        let mut files = BTreeMap::new();
        let mut certificates = Vec::new();
        match &root {
            Some((root, root_signer)) => {
                let cert = new_certificate(cfg, opts, n, &signer, root, root_signer, &mut steps)?;
                certificates.push(write_cert(
                    out,
                    role.as_str(),
                    &new_file,
                    &cert,
                    &mut undo,
                    &mut steps,
                    &mut files,
                )?);
            }
            None => export_public_key(
                out,
                &new_file,
                &signer,
                &mut record,
                &mut undo,
                &mut steps,
                &mut files,
            )?,
        }
        let rec = RotationRecord {
            head: RotationHead {
                format: ROTATION_FORMAT.into(),
                role: role.as_str().into(),
                generation: n,
                file: new_file.clone(),
                key_label: label.clone(),
                url: url.clone(),
                start: generations::format_time(start),
            },
            renewed: opts.renew,
            sigvault_version: env!("CARGO_PKG_VERSION"),
            started_at: started_at.clone(),
            finished_at: now_rfc3339(),
            hsm_module: module.path().display().to_string(),
            steps: steps.clone(),
            keys: vec![record],
            certificates,
            files,
        };
        let json = serde_json::to_string_pretty(&rec).map_err(|e| other(e.to_string()))?;
        write_new(&out.join(&record_file), json.as_bytes(), &mut undo)
    })();
    match result {
        Ok(()) => Ok(CeremonyOutcome {
            output_dir: out.clone(),
            files: undo.files,
            next_steps: rotation_advice(role, &key.key, &new_file, url.as_deref()),
        }),
        Err(e) => {
            undo.rollback();
            Err(e)
        }
    }
}

/// The certificate of generation `n`: the issuing CA's (root-signed, within the root's
/// validity) or the TSA's.
fn new_certificate(
    cfg: &CeremonyConfig,
    opts: &RotateOptions,
    n: u32,
    signer: &HsmSigner,
    root: &Certificate,
    root_signer: &HsmSigner,
    steps: &mut Vec<String>,
) -> Result<Certificate, CeremonyError> {
    let root_end = root.tbs_certificate.validity.not_after.to_unix_duration();
    let cert = match opts.role {
        Role::IssuingCa => {
            let ca = &cfg.ceremony.issuing_ca;
            let subject = match &opts.subject {
                Some(s) => s.clone(),
                None => numbered_subject(&ca.subject, n)?,
            };
            let cert = pki::build_ca_certificate(
                CaKind::Issuing,
                pki::parse_name(&subject)?,
                signer.public_key_der(),
                pki::validity_from_now(days(ca.validity_days))?,
                Some(root),
                root_signer,
            )?;
            steps.push(format!(
                "signed the issuing CA certificate '{subject}' with the root key"
            ));
            cert
        }
        Role::Tsa => {
            let mut tsa = cfg
                .ceremony
                .tsa
                .clone()
                .ok_or_else(|| other("the config has no [ceremony.tsa] section"))?;
            if let Some(s) = &opts.subject {
                tsa.subject = s.clone();
            }
            tsa_certificate(&tsa, signer, root, root_signer, steps)?
        }
        Role::Ctlog | Role::Rekor | Role::RekorV2 => {
            return Err(other("a log key has no certificate"));
        }
    };
    if cert.tbs_certificate.validity.not_after.to_unix_duration() > root_end {
        return Err(other(
            "the new certificate would outlive the root: lower validity_days (or renew the root first)",
        ));
    }
    if !pki::cert_matches_key(&cert, signer.public_key_der()) {
        return Err(other("the new certificate does not carry the new key"));
    }
    Ok(cert)
}

/// What the operator changes next, printed after a rotation.
fn rotation_advice(role: Role, key: &Pkcs11Uri, file: &str, url: Option<&str>) -> Vec<String> {
    let trust = "run `sigvault trust` with the same arguments as before (it lists every generation from the records) and publish the result (`sigvault tuf publish`)".to_string();
    let retire = format!(
        "once nothing uses the previous generation any more: `sigvault ceremony --retire {}`, then `sigvault trust` and `sigvault tuf publish` again",
        role.as_str()
    );
    let url = url.unwrap_or_default();
    let switch = match role {
        Role::IssuingCa => format!(
            "in fulcio.toml set key = \"{key}\" and ca_chain's first file to {file}, then `systemctl reload sigvault-fulcio` (no request is refused meanwhile)"
        ),
        Role::Tsa => format!(
            "in tsa.toml set key = \"{key}\" and the certificate chain's first file to {file}, then `systemctl restart sigvault-tsa`"
        ),
        Role::Ctlog => format!(
            "serve the new log at {url}: a new tree in tlog.toml, a ctlog config with key = \"{key}\", public_key_file = {file} and that tree; then in fulcio.toml set ct_log_url = \"{url}\" and ct_log_public_key = {file} and `systemctl reload sigvault-fulcio`"
        ),
        Role::Rekor => format!(
            "start the new shard: in tlog.toml add a tree (origin \"<rekor host> - <new tree_id>\", the same note_name) with key = \"{key}\" and mark the current Rekor tree frozen = true, restart the tlog; in rekor.toml move the current tree, tree_id, key and public_key_file into a [[rekor.inactive_shards]] entry and set key = \"{key}\", public_key_file = {file}, the new tree and tree_id; restart sigvault-rekor"
        ),
        Role::RekorV2 => format!(
            "serve the new log at {url}: a new tree in tlog.toml (origin and note name: the URL without its scheme) signed with key = \"{key}\", and a [[rekor_v2.logs]] entry with public_key_file = {file}; mark the old tree frozen = true once the signing config names the new log"
        ),
    };
    vec![trust, switch, retire]
}

/// Record the end of the window of every generation before the newest that is still open:
/// what `sigvault trust` writes as their `validFor.end`. Needs no HSM. The end may not fall
/// before the newest generation's start (the windows must overlap, or signatures made in the gap
/// would verify under neither); a generation is retired once, and the newest never.
pub fn retire(
    cfg: &CeremonyConfig,
    role: Role,
    end: Option<OffsetDateTime>,
) -> Result<CeremonyOutcome, CeremonyError> {
    let out = &cfg.ceremony.output_dir;
    let gens = read_generations(cfg, role)?;
    let Some((newest, older)) = gens.split_last().filter(|(_, o)| !o.is_empty()) else {
        return Err(other(format!(
            "{} has one generation: rotate it first (--rotate {}); the newest generation is never retired",
            role.as_str(),
            role.as_str()
        )));
    };
    let open: Vec<&Generation> = older.iter().filter(|g| g.end.is_none()).collect();
    if open.is_empty() {
        return Err(other(format!(
            "every {} generation before the newest ({}) is already retired",
            role.as_str(),
            newest.number
        )));
    }
    let end = end.unwrap_or_else(OffsetDateTime::now_utc);
    if let Some(start) = newest.start
        && end < start
    {
        return Err(other(format!(
            "the end {} is before generation {}'s start {}: the windows must overlap",
            generations::format_time(end),
            newest.number,
            generations::format_time(start)
        )));
    }
    let mut undo = Undo::default();
    for g in &open {
        let rec = Retirement {
            format: RETIREMENT_FORMAT.into(),
            role: role.as_str().into(),
            generation: g.number,
            end: generations::format_time(end),
            recorded_at: now_rfc3339(),
        };
        let json = serde_json::to_string_pretty(&rec).map_err(|e| other(e.to_string()))?;
        if let Err(e) = write_new(
            &out.join(role.retirement_record(g.number)),
            json.as_bytes(),
            &mut undo,
        ) {
            undo.rollback();
            return Err(e);
        }
    }
    let numbers: Vec<String> = open.iter().map(|g| g.number.to_string()).collect();
    Ok(CeremonyOutcome {
        output_dir: out.clone(),
        files: undo.files,
        next_steps: vec![format!(
            "run `sigvault trust` and `sigvault tuf publish`: {} generation(s) {} are then trusted for what was made until {}",
            role.as_str(),
            numbers.join(", "),
            generations::format_time(end)
        )],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_numbered() {
        assert_eq!(
            numbered_subject("CN=sigvault issuing CA,O=Example Org", 2).expect("ok"),
            "CN=sigvault issuing CA 2,O=Example Org"
        );
        assert_eq!(numbered_subject("CN=x", 3).expect("ok"), "CN=x 3");
        assert!(numbered_subject("O=Example Org,CN=x", 2).is_err());
    }

    #[test]
    fn log_urls_are_checked() {
        assert_eq!(
            check_url("https://log2027.rekor.example.org/").expect("ok"),
            "https://log2027.rekor.example.org"
        );
        for bad in ["log.example.org", "https://", "ftp://x"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
