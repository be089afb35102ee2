//! `sigvault rekor serve`, and the rekor parts of `sigvault migrate`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::config::{self, RekorConfig};
use crate::hsm::Module;
use crate::rekor::Rekor;
use crate::rekor::index::IndexerHandle;
use crate::rekor::shard::{Shard, frozen_size};
use crate::signer::{SignatureAlgorithm, Signer};
use crate::store::rekor::IndexStore;
use crate::tlog::api::{TlogClient, TlogClientError};

/// Connect to the rekor index database.
pub async fn connect(cfg: &RekorConfig) -> anyhow::Result<IndexStore> {
    let url = cfg
        .rekor
        .database_url
        .read()
        .context("[rekor] database_url")?;
    Ok(IndexStore::connect(&url, cfg.rekor.database_max_connections).await?)
}

/// `sigvault migrate` for a rekor config.
pub async fn migrate(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_rekor(file)?;
    let store = connect(&cfg).await?;
    store.migrate().await?;
    println!("rekor index database is up to date");
    Ok(())
}

/// The tlog client a rekor config describes.
pub fn tlog_client(cfg: &RekorConfig) -> anyhow::Result<TlogClient> {
    super::tlog_client(&cfg.rekor.tlog, cfg.rekor.tlog_tls.as_ref())
}

pub async fn serve(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_rekor(file)?;
    let r = &cfg.rekor;
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let pin = r.pin.read().context("[rekor] pin")?;
    let token = module.login(&r.key, &pin)?;
    drop(pin);
    let signer = token.signer(&r.key)?;
    if signer.algorithm() != SignatureAlgorithm::EcdsaP256Sha256 {
        anyhow::bail!("the Rekor key must be ECDSA P-256 (Sigstore clients verify SETs with it)");
    }
    if let Some(p) = &r.public_key_file {
        super::ctlog::check_public_key(&signer, p)?;
    }
    // The earlier shards' keys, in the same token: each still signs its entries' SETs.
    let mut earlier = Vec::new();
    for s in &r.inactive_shards {
        let k = token
            .signer(&s.key)
            .with_context(|| format!("[[rekor.inactive_shards]] tree '{}' key", s.tree))?;
        if k.algorithm() != SignatureAlgorithm::EcdsaP256Sha256 {
            anyhow::bail!("the key of shard '{}' must be ECDSA P-256", s.tree);
        }
        if let Some(p) = &s.public_key_file {
            super::ctlog::check_public_key(&k, p)?;
        }
        earlier.push((s, k));
    }
    let mut hsm_signers = vec![signer.clone()];
    hsm_signers.extend(earlier.iter().map(|(_, k)| k.clone()));
    let store = connect(&cfg).await?;
    super::warn_about_database(store.server_advice().await);
    if r.migrate_on_start {
        store.migrate().await?;
    }
    let tlog = tlog_client(&cfg)?;
    // The earlier shards' sizes first, before the new tree is made: started before the tlog has
    // frozen the old tree, the service stops here, having created nothing.
    let mut sizes = Vec::new();
    for (s, _) in &earlier {
        sizes.push(frozen_size(&tlog, &s.tree).await?);
    }
    if r.create_tree {
        match tlog.create_tree(&r.tree).await {
            Ok(_) => tracing::info!(tree = %r.tree, "created Rekor's tree"),
            Err(TlogClientError::Api { status: 409, .. }) => {}
            Err(e) => return Err(e).context("cannot create or find Rekor's tree in the tlog"),
        }
    }
    let mut shards = Vec::new();
    let mut offset = 0;
    for ((s, k), size) in earlier.into_iter().zip(sizes) {
        let indexer = IndexerHandle::spawn(
            store.clone(),
            tlog.clone(),
            s.tree.clone(),
            s.tree_id,
            offset,
        );
        shards.push(Shard::new(
            Arc::new(k),
            s.tree.clone(),
            s.tree_id,
            offset,
            Some(size),
            Some(indexer),
        )?);
        offset += size;
    }
    let indexer = IndexerHandle::spawn(store, tlog.clone(), r.tree.clone(), r.tree_id, offset);
    shards.push(Shard::new(
        Arc::new(signer),
        r.tree.clone(),
        r.tree_id,
        offset,
        None,
        Some(indexer),
    )?);
    let rekor = Arc::new(Rekor::sharded(tlog, shards)?);
    let host = rekor
        .check_tree()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(
        log_id = %rekor.log_id_hex(),
        tree_id = r.tree_id,
        shards = rekor.shards().len(),
        first_index = offset,
        checkpoint_name = %host,
        "Rekor keys loaded and the tlog trees checked"
    );
    let state = crate::rekor::server::AppState {
        rekor,
        metrics: Arc::default(),
    };
    super::serve_public(
        "rekor",
        crate::rekor::server::router(state),
        &r.listen,
        r.tls.as_ref(),
        r.max_body_bytes,
        super::fixed_signers(hsm_signers),
        cfg.hsm.exit_after_failing(),
    )
    .await
}
