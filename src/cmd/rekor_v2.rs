//! `sigvault rekor-v2 serve`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use der::DecodePem;

use crate::config;
use crate::rekor_v2::Log;
use crate::rekor_v2::server::{AppState, LogState};
use crate::tlog::api::TlogClientError;

/// A log's published key (PEM SubjectPublicKeyInfo) as DER; it must be ECDSA P-256, the one key
/// type both sigstore clients verify checkpoints with.
fn read_log_key(pem_file: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(pem_file)
        .with_context(|| format!("cannot read {}", pem_file.display()))?;
    let spki = spki::SubjectPublicKeyInfoOwned::from_pem(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: not a PEM public key: {e}", pem_file.display()))?;
    let der = der::Encode::to_der(&spki)?;
    match crate::pki::pop::PublicKey::from_spki(&spki) {
        Ok(crate::pki::pop::PublicKey::P256(_)) => Ok(der),
        Ok(k) => anyhow::bail!(
            "{}: a {k} key; a Rekor v2 log key must be ECDSA P-256 (what sigstore-python and sigstore-js verify checkpoints with)",
            pem_file.display()
        ),
        Err(e) => anyhow::bail!("{}: {e}", pem_file.display()),
    }
}

pub async fn serve(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_rekor_v2(file)?;
    let r = &cfg.rekor_v2;
    let tlog = super::tlog_client(&r.tlog, r.tlog_tls.as_ref())?;
    let mut logs = Vec::new();
    for l in &r.logs {
        let spki = read_log_key(&l.public_key_file)?;
        if r.create_trees {
            match tlog.create_tree(&l.tree).await {
                Ok(_) => tracing::info!(tree = %l.tree, url = %l.url, "created the log's tree"),
                Err(TlogClientError::Api { status: 409, .. }) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create or find the tree '{}' in the tlog", l.tree)
                    });
                }
            }
        }
        let log = Log::new(&l.url, l.origin(), &l.tree, tlog.clone(), spki);
        let size = log.check_tree().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(
            url = %l.url,
            tree = %l.tree,
            tree_size = size,
            log_id = %hex::encode(log.key_id()),
            "Rekor v2 log checked against its tree"
        );
        logs.push(LogState {
            log: Arc::new(log),
            metrics: Arc::default(),
        });
    }
    super::serve_public(
        "rekor-v2",
        crate::rekor_v2::server::router(AppState { logs }),
        &r.listen,
        r.tls.as_ref(),
        r.max_body_bytes,
        super::fixed_signers(Vec::new()),
        Duration::from_secs(3600),
    )
    .await
}
