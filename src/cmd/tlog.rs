//! `sigvault tlog serve` and `sigvault migrate` for the tlog database.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{self, TlogConfig};
use crate::hsm::{HsmSigner, Module, Token};
use crate::signer::{SignatureAlgorithm, Signer};
use crate::store::Store;
use crate::tlog::{LogService, SequencerOptions, ServiceOptions, TreeSpec};

/// Open every tree's checkpoint key, logging in once per token.
pub fn tree_specs(cfg: &TlogConfig) -> anyhow::Result<(Vec<TreeSpec>, Vec<HsmSigner>)> {
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let mut tokens: HashMap<String, Arc<Token>> = HashMap::new();
    let mut specs = Vec::new();
    let mut hsm_signers = Vec::new();
    for t in &cfg.tlog.trees {
        let token = match tokens.get(&t.key.token) {
            Some(tok) => Arc::clone(tok),
            None => {
                let pin = t
                    .pin
                    .read()
                    .with_context(|| format!("tree '{}' pin", t.name))?;
                let tok = module.login(&t.key, &pin)?;
                tokens.insert(t.key.token.clone(), Arc::clone(&tok));
                tok
            }
        };
        let signer = token.signer(&t.key)?;
        if signer.algorithm() != SignatureAlgorithm::EcdsaP256Sha256 {
            anyhow::bail!(
                "tree '{}': checkpoint keys must be ECDSA P-256 (clients verify with SHA-256)",
                t.name
            );
        }
        // Self-test: the key signs, and the signature verifies with the exported public key.
        let probe = b"sigvault tlog start-up self-test";
        let sig = signer.sign(probe)?;
        crate::pki::signature::verify_p256_sha256(signer.public_key_der(), probe, &sig)
            .with_context(|| format!("tree '{}': the HSM key failed its self-test", t.name))?;
        hsm_signers.push(signer.clone());
        specs.push(TreeSpec {
            name: t.name.clone(),
            origin: t.origin.clone(),
            note_name: t.note_name.clone(),
            signer: Arc::new(signer),
            frozen: t.frozen,
        });
    }
    Ok((specs, hsm_signers))
}

/// Connect to the tlog database.
pub async fn connect(cfg: &TlogConfig) -> anyhow::Result<Store> {
    let url = cfg
        .tlog
        .database_url
        .read()
        .context("[tlog] database_url")?;
    Ok(Store::connect(&url, cfg.tlog.database_max_connections).await?)
}

/// `sigvault migrate` for a tlog config.
pub async fn migrate(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_tlog(file)?;
    let store = connect(&cfg).await?;
    store.migrate().await?;
    println!("tlog database is up to date");
    Ok(())
}

/// `sigvault tlog verify`: audit each configured tree (or `only`), checking it against the signed
/// `checkpoints` given for it, and print one verdict per tree; an error if any tree has a problem
/// or cannot be read.
pub async fn verify(
    file: &Path,
    only: Option<&str>,
    checkpoints: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    let cfg = config::load_tlog(file)?;
    let trees: Vec<_> = cfg
        .tlog
        .trees
        .iter()
        .filter(|t| only.is_none_or(|n| n == t.name))
        .collect();
    if let Some(n) = only {
        if trees.is_empty() {
            anyhow::bail!("there is no tree '{n}' in {}", file.display());
        }
    }
    // Each checkpoint goes to the tree of its origin (its first line).
    let mut seen: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for f in checkpoints {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the checkpoint {}", f.display()))?;
        let origin = text.lines().next().unwrap_or_default();
        let Some(t) = trees.iter().find(|t| t.origin == origin) else {
            anyhow::bail!(
                "{}: its origin {origin:?} is none of the audited trees' origins",
                f.display()
            );
        };
        seen.entry(t.name.as_str())
            .or_default()
            .push((f.display().to_string(), text));
    }
    let store = connect(&cfg).await?;
    let mut bad = Vec::new();
    for t in trees {
        let want = crate::tlog::audit::Expected {
            name: &t.name,
            origin: &t.origin,
            note_name: &t.note_name,
            seen: seen.get(t.name.as_str()).map_or(&[], Vec::as_slice),
        };
        let started = std::time::Instant::now();
        let mut last = started;
        let progress = |done: u64, size: u64| {
            if last.elapsed() >= Duration::from_secs(10) {
                last = std::time::Instant::now();
                eprintln!("tree '{}': {done} of {size} entries checked", t.name);
            }
        };
        match crate::tlog::audit::audit_tree(&store, &want, progress).await {
            Err(e) => {
                println!("tree '{}': cannot be audited: {e}", t.name);
                bad.push(t.name.clone());
            }
            Ok(a) if a.ok() => println!(
                "tree '{}': OK: {} entries and {} hash tiles agree with root {} and its signed \
                 checkpoint (key sha256 {}; {:.1} s)",
                t.name,
                a.size,
                a.tiles,
                a.root,
                a.key_sha256,
                started.elapsed().as_secs_f64()
            ),
            Ok(a) => {
                println!(
                    "tree '{}': {} PROBLEM(S) at size {} (key sha256 {}):",
                    t.name,
                    a.problems.len() as u64 + a.more,
                    a.size,
                    a.key_sha256
                );
                for p in &a.problems {
                    println!("  - {p}");
                }
                if a.more > 0 {
                    println!("  - and {} more", a.more);
                }
                bad.push(t.name.clone());
            }
        }
    }
    // Trees the config does not list are not audited: say so, rather than pass them over.
    if only.is_none() {
        match store.tree_names().await {
            Ok(names) => {
                for n in names {
                    if !cfg.tlog.trees.iter().any(|t| t.name == n) {
                        println!(
                            "tree '{n}': in the database but not in {}: not audited",
                            file.display()
                        );
                    }
                }
            }
            Err(e) => {
                println!("cannot list the trees in the database: {e}");
                bad.push("(the list of trees)".into());
            }
        }
    }
    store.close().await;
    if bad.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("the audit failed for: {}", bad.join(", "))
    }
}

/// The rollback guard's directory: `[tlog] state_dir`, else the first directory systemd made
/// for the unit's `StateDirectory=` (`$STATE_DIRECTORY`), else none (the guard is off).
fn state_dir(configured: Option<&Path>) -> Option<std::path::PathBuf> {
    if let Some(d) = configured {
        return Some(d.to_owned());
    }
    let from_systemd = std::env::var_os("STATE_DIRECTORY")?;
    let first = from_systemd.to_str()?.split(':').next()?;
    (!first.is_empty()).then(|| first.into())
}

/// On each SIGHUP (`systemctl reload sigvault-tlog`), read `file` again and move to the trees it
/// lists ([`LogService::reload`]): a new tree (a Rekor v1 shard, a new CT log, a new Rekor v2
/// log) is served, a tree now `frozen = true` stops taking entries, and no running tree stops
/// answering meanwhile. A config that does not load, or changes what a reload cannot, is
/// refused and logged, and every tree stays as it was. The new trees' keys join the HSM
/// watchdog. What a reload does not change: the listeners, their TLS, the database, the batch
/// and lease settings (restart for those).
async fn reload_on_sighup(
    file: std::path::PathBuf,
    svc: Arc<LogService>,
    watched: tokio::sync::watch::Sender<Vec<HsmSigner>>,
) {
    super::each_sighup(|| {
        let (file, svc, watched) = (file.clone(), Arc::clone(&svc), watched.clone());
        async move {
            let f = file.clone();
            let loaded = super::blocking(move || {
                let cfg = config::load_tlog(&f)?;
                tree_specs(&cfg)
            })
            .await;
            let (specs, signers) = match loaded {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(
                        "reload of {} refused, the trees are as they were: {e:#}",
                        file.display()
                    );
                    return;
                }
            };
            let before = svc.tree_names();
            let new_signers: Vec<HsmSigner> = specs
                .iter()
                .zip(signers)
                .filter(|(spec, _)| !before.contains(&spec.name))
                .map(|(_, s)| s)
                .collect();
            match svc.reload(specs).await {
                Ok(done) => {
                    watched.send_modify(|w| w.extend(new_signers));
                    if done.changes.is_empty() && done.unfinished.is_empty() {
                        tracing::info!("reloaded {}: nothing changed", file.display());
                    }
                    for c in done.changes {
                        tracing::info!("reloaded {}: {c}", file.display());
                    }
                    for e in done.unfinished {
                        tracing::error!("reload of {} did not finish: {e}", file.display());
                    }
                    crate::http::sd_notify("READY=1\nSTATUS=serving (reloaded)");
                }
                Err(e) => tracing::error!(
                    "reload of {} refused, the trees are as they were: {e}",
                    file.display()
                ),
            }
        }
    })
    .await
}

/// `sigvault tlog serve`.
pub async fn serve(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_tlog(file)?;
    let t = &cfg.tlog;
    let (specs, hsm_signers) = tree_specs(&cfg)?;
    let store = connect(&cfg).await?;
    super::warn_about_database(store.server_advice().await);
    if t.migrate_on_start {
        store.migrate().await?;
    }
    let opts = ServiceOptions {
        sequencer: SequencerOptions {
            max_batch: t.batch_max_entries,
            max_wait: Duration::from_millis(t.batch_max_wait_ms),
            lease_ttl: Duration::from_millis(t.lease_ttl_ms),
            queue_limit: t.queue_limit,
        },
        max_entry_size: t.max_entry_size,
        instance: String::new(),
        state_dir: state_dir(t.state_dir.as_deref()),
    };
    // Held until the process exits: see `tlog::instance`.
    let (instance, why) = crate::tlog::instance::claim(opts.state_dir.as_deref());
    if let Some(why) = why {
        tracing::warn!("{why}");
    }
    let opts = ServiceOptions {
        instance: instance.name.clone(),
        ..opts
    };
    tracing::info!(
        holder = %opts.instance,
        lasting = instance.persistent,
        "sequencer leases are held under this name"
    );
    match &opts.state_dir {
        Some(d) => tracing::info!(dir = %d.display(), "rollback guard on: head records kept here"),
        None => tracing::warn!(
            "rollback guard off: no [tlog] state_dir and no systemd StateDirectory; nothing stops \
             this instance from sequencing on a database restored from an older backup (a fork)"
        ),
    }
    let svc = LogService::start(store, specs, opts).await?;
    let state = crate::tlog::server::AppState {
        svc: Arc::clone(&svc),
        metrics: Arc::default(),
    };
    // Base64 in JSON is 4/3 of the entry and its extra data, plus room for the other fields.
    let max_body = (t.max_entry_size + crate::tlog::MAX_EXTRA_SIZE) * 4 / 3 + 4096;
    let internal = crate::http::with_limits(
        crate::tlog::server::internal_router(state.clone()),
        max_body,
        Duration::from_secs(30),
        8192,
    );
    let public = crate::http::with_limits(
        crate::tlog::server::public_router(state),
        4096,
        Duration::from_secs(30),
        4096,
    );
    let internal_l = crate::http::bind(&t.internal_listen, t.internal_tls.as_ref()).await?;
    let public_l = crate::http::bind(&t.public_listen, t.public_tls.as_ref()).await?;
    tracing::info!(
        internal = %internal_l.local_addr(),
        public = %public_l.local_addr(),
        trees = ?svc.tree_names(),
        "tlog serving"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let a = tokio::spawn(internal_l.serve(internal, wait(stop_rx.clone())));
    let b = tokio::spawn(public_l.serve(public, wait(stop_rx.clone())));
    crate::http::sd_notify("READY=1\nSTATUS=serving");
    let (watched, signers) = tokio::sync::watch::channel(hsm_signers);
    tokio::spawn(reload_on_sighup(file.into(), Arc::clone(&svc), watched));
    let outcome = super::until_stopped(signers, cfg.hsm.exit_after_failing()).await;
    tracing::info!("shutting down");
    crate::http::sd_notify("STOPPING=1");
    let _ = stop_tx.send(true);
    svc.shutdown().await;
    let _ = a.await;
    let _ = b.await;
    outcome
}
