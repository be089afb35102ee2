//! `sigvault ctlog serve`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use der::DecodePem;

use crate::config;
use crate::ctlog::{CtLog, Policy};
use crate::hsm::Module;
use crate::signer::{SignatureAlgorithm, Signer};
use crate::tlog::api::TlogClientError;

/// Read every certificate of a PEM file.
pub fn read_pem_certs(path: &Path) -> anyhow::Result<Vec<x509_cert::Certificate>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs = x509_cert::Certificate::load_pem_chain(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate found", path.display());
    }
    Ok(certs)
}

/// Check an HSM key against a published PEM public key.
pub fn check_public_key(signer: &dyn Signer, pem_file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(pem_file)
        .with_context(|| format!("cannot read {}", pem_file.display()))?;
    let spki = spki::SubjectPublicKeyInfoOwned::from_pem(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: not a PEM public key: {e}", pem_file.display()))?;
    let der = der::Encode::to_der(&spki)?;
    if der != signer.public_key_der() {
        anyhow::bail!(
            "the HSM key does not match the published public key {}; refusing to start",
            pem_file.display()
        );
    }
    Ok(())
}

pub async fn serve(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_ctlog(file)?;
    let c = &cfg.ctlog;
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let pin = c.pin.read().context("[ctlog] pin")?;
    let token = module.login(&c.key, &pin)?;
    drop(pin);
    let signer = token.signer(&c.key)?;
    let hsm_signers = vec![signer.clone()];
    if signer.algorithm() != SignatureAlgorithm::EcdsaP256Sha256 {
        anyhow::bail!("the CT log key must be ECDSA P-256");
    }
    if let Some(p) = &c.public_key_file {
        check_public_key(&signer, p)?;
    }
    let mut roots = Vec::new();
    for r in &c.roots {
        roots.extend(read_pem_certs(r)?);
    }
    let tlog = super::tlog_client(&c.tlog, c.tlog_tls.as_ref())?;
    if c.create_tree {
        match tlog.create_tree(&c.tree).await {
            Ok(_) => tracing::info!(tree = %c.tree, "created the CT log's tree"),
            Err(TlogClientError::Api { status: 409, .. }) => {}
            Err(e) => return Err(e).context("cannot create or find the CT log's tree in the tlog"),
        }
    }
    let policy = Policy {
        reject_expired: c.reject_expired,
        not_after_start: c
            .not_after_start
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as u64),
        not_after_limit: c
            .not_after_limit
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as u64),
        max_chain: c.max_chain_length,
    };
    let log = Arc::new(CtLog::new(
        Arc::new(signer),
        roots,
        tlog,
        c.tree.clone(),
        policy,
    )?);
    tracing::info!(log_id = %hex::encode(log.log_id()), "CT log key loaded");
    let state = crate::ctlog::server::AppState {
        log,
        metrics: Arc::default(),
    };
    super::serve_public(
        "ctlog",
        crate::ctlog::server::router(state, &c.prefix),
        &c.listen,
        c.tls.as_ref(),
        c.max_body_bytes,
        super::fixed_signers(hsm_signers),
        cfg.hsm.exit_after_failing(),
    )
    .await
}
