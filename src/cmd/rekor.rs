//! `sigvault rekor serve`, and the rekor parts of `sigvault migrate`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::config::{self, RekorConfig};
use crate::hsm::{HsmSigner, Module};
use crate::rekor::Rekor;
use crate::rekor::index::IndexerHandle;
use crate::rekor::server::AppState;
use crate::rekor::shard::{Shard, ShardError, frozen_size};
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

/// What stays for the life of the process: the index database and the tlog client (a reload
/// does not change them).
struct Fixed {
    store: IndexStore,
    tlog: TlogClient,
}

/// The log a rekor config describes, its keys logged in (a module already loaded is shared),
/// every earlier shard's tree frozen in the tlog, the active one created if asked. Each shard's
/// index follower is the one `previous` already runs for it, or a new one. Also the signers, for
/// the HSM watchdog. `wait_frozen`: how long to wait for an earlier shard's tree to be frozen
/// (a reload that follows the tlog's at once; at start-up, none).
async fn build(
    cfg: &RekorConfig,
    fixed: &Fixed,
    previous: Option<&Rekor>,
    wait_frozen: std::time::Duration,
) -> anyhow::Result<(Rekor, Vec<HsmSigner>)> {
    let r = &cfg.rekor;
    let (signer, earlier) = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || open_keys(&cfg)).await??
    };
    let mut hsm_signers = vec![signer.clone()];
    hsm_signers.extend(earlier.iter().map(|(_, k)| k.clone()));
    let tlog = &fixed.tlog;
    // The earlier shards' sizes first, before the new tree is made: started before the tlog has
    // frozen the old tree, the service stops here, having created nothing.
    let mut sizes = Vec::new();
    for (tree, _) in &earlier {
        let until = tokio::time::Instant::now() + wait_frozen;
        let size = loop {
            match frozen_size(tlog, tree).await {
                Err(ShardError::NotFrozen(_)) if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => break other?,
            }
        };
        sizes.push(size);
    }
    if r.create_tree {
        match tlog.create_tree(&r.tree).await {
            Ok(_) => tracing::info!(tree = %r.tree, "created Rekor's tree"),
            Err(TlogClientError::Api { status: 409, .. }) => {}
            Err(e) => return Err(e).context("cannot create or find Rekor's tree in the tlog"),
        }
    }
    let indexer = |tree: &str, tree_id: u64, offset: u64| {
        previous
            .and_then(|p| {
                p.shards()
                    .iter()
                    .find(|s| s.tree() == tree && s.tree_id() == tree_id && s.offset() == offset)
            })
            .and_then(|s| s.indexer().cloned())
            .unwrap_or_else(|| {
                IndexerHandle::spawn(
                    fixed.store.clone(),
                    tlog.clone(),
                    tree.to_owned(),
                    tree_id,
                    offset,
                )
            })
    };
    let mut shards = Vec::new();
    let mut offset = 0;
    for (((tree, k), size), s) in earlier.into_iter().zip(sizes).zip(&r.inactive_shards) {
        shards.push(Shard::new(
            Arc::new(k),
            tree.clone(),
            s.tree_id,
            offset,
            Some(size),
            Some(indexer(&tree, s.tree_id, offset)),
        )?);
        offset += size;
    }
    shards.push(Shard::new(
        Arc::new(signer),
        r.tree.clone(),
        r.tree_id,
        offset,
        None,
        Some(indexer(&r.tree, r.tree_id, offset)),
    )?);
    let rekor = Rekor::sharded(tlog.clone(), shards)?;
    if let Some(p) = previous {
        rekor.extends(p)?;
    }
    Ok((rekor, hsm_signers))
}

/// The active key and each earlier shard's (tree, key), logged in and checked (blocking).
#[allow(clippy::type_complexity)]
fn open_keys(cfg: &RekorConfig) -> anyhow::Result<(HsmSigner, Vec<(String, HsmSigner)>)> {
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
        earlier.push((s.tree.clone(), k));
    }
    Ok((signer, earlier))
}

/// On each SIGHUP (`systemctl reload sigvault-rekor`), read `file` again and move to the shards
/// it lists: after a shard rotation (the tlog reloaded first, with the old tree frozen and the
/// new one added), uploads go to the new shard and the old one is served read-only, with no
/// request refused meanwhile (an upload refused by the just-frozen tree waits for this and goes
/// to the new shard). The new shard list must extend the running one (the same shards, in the
/// same order, then new ones), since every global log index depends on the shards before it. A
/// config that does not load is refused and logged, and the running log kept. What a reload
/// does not change: the listener, its TLS, the body limit, the index database and the tlog
/// client (restart for those).
async fn reload_on_sighup(
    file: PathBuf,
    fixed: Fixed,
    state: AppState,
    watched: tokio::sync::watch::Sender<Vec<HsmSigner>>,
) {
    let fixed = Arc::new(fixed);
    super::each_sighup(|| {
        let (file, fixed, state, watched) = (
            file.clone(),
            Arc::clone(&fixed),
            state.clone(),
            watched.clone(),
        );
        async move {
            let current = state.rekor();
            let loaded = match config::load_rekor(&file) {
                Ok(cfg) => match build(&cfg, &fixed, Some(&current), RELOAD_WAIT_FROZEN).await {
                    Ok((rekor, signers)) => match rekor.check_tree().await {
                        Ok(_) => Ok((rekor, signers)),
                        Err(e) => Err(anyhow::anyhow!("{e}")),
                    },
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.into()),
            };
            match loaded {
                Ok((rekor, signers)) => {
                    let shards = rekor.shards().len();
                    let first = rekor.shards().last().map_or(0, |s| s.offset());
                    state.replace(Arc::new(rekor));
                    let _ = watched.send(signers);
                    tracing::info!(
                        shards,
                        first_index = first,
                        "reloaded {}: uploads go to its active shard",
                        file.display()
                    );
                    crate::http::sd_notify("READY=1\nSTATUS=serving (reloaded)");
                }
                Err(e) => tracing::error!(
                    "reload of {} refused, still serving the log loaded before: {e:#}",
                    file.display()
                ),
            }
        }
    })
    .await
}

/// How long a reload waits for the tlog to finish freezing an earlier shard's tree (it commits
/// the batch in flight first), when both are reloaded one after the other.
const RELOAD_WAIT_FROZEN: std::time::Duration = std::time::Duration::from_secs(15);

pub async fn serve(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_rekor(file)?;
    let r = &cfg.rekor;
    let store = connect(&cfg).await?;
    super::warn_about_database(store.server_advice().await);
    if r.migrate_on_start {
        store.migrate().await?;
    }
    let fixed = Fixed {
        store,
        tlog: tlog_client(&cfg)?,
    };
    let (rekor, hsm_signers) = build(&cfg, &fixed, None, std::time::Duration::ZERO).await?;
    let rekor = Arc::new(rekor);
    let host = rekor
        .check_tree()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(
        log_id = %rekor.log_id_hex(),
        tree_id = r.tree_id,
        shards = rekor.shards().len(),
        first_index = rekor.shards().last().map_or(0, |s| s.offset()),
        checkpoint_name = %host,
        "Rekor keys loaded and the tlog trees checked"
    );
    let state = AppState::new(rekor);
    let (watched, signers) = tokio::sync::watch::channel(hsm_signers);
    tokio::spawn(reload_on_sighup(file.into(), fixed, state.clone(), watched));
    super::serve_public(
        "rekor",
        crate::rekor::server::router(state),
        &r.listen,
        r.tls.as_ref(),
        r.max_body_bytes,
        signers,
        cfg.hsm.exit_after_failing(),
    )
    .await
}
