//! `sigvault tsa serve`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::config;
use crate::hsm::{HsmSigner, Module};
use crate::tsa::clock::{ClockPolicy, KernelClock};
use crate::tsa::server::AppState;
use crate::tsa::{Tsa, TsaOptions};

/// The TSA a tsa config describes: its key logged in (a module already loaded is shared, a
/// token already logged in gets a session of its own), its chain and its policy. Also the
/// signer, for the HSM watchdog.
fn load_tsa(cfg: &config::TsaConfig, file: &Path) -> anyhow::Result<(Tsa, HsmSigner)> {
    let t = &cfg.tsa;
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let pin = t.pin.read().context("[tsa] pin")?;
    let token = module.login(&t.key, &pin)?;
    drop(pin);
    let signer = token.signer(&t.key)?;
    let mut chain = Vec::new();
    for f in &t.cert_chain {
        chain.extend(super::ctlog::read_pem_certs(f)?);
    }
    let parse_oid = |p: &str| {
        crate::pki::dotted_oid::parse(p).ok_or_else(|| anyhow::anyhow!("[tsa] policy {p:?}"))
    };
    let options = TsaOptions {
        policy: parse_oid(&t.policy)?,
        accepted_policies: t
            .accepted_policies
            .iter()
            .map(|p| parse_oid(p))
            .collect::<anyhow::Result<_>>()?,
        accuracy: t.accuracy(),
        clock: ClockPolicy {
            require_synchronised: t.require_synchronised_clock,
            max_estimated_error: std::time::Duration::from_millis(t.max_clock_error_ms),
        },
    };
    let tsa = Tsa::new(
        Arc::new(signer.clone()),
        chain,
        options,
        Box::new(KernelClock),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok((tsa, signer))
}

/// On each SIGHUP (`systemctl reload sigvault-tsa`), read `file` again and move to the TSA it
/// describes (a renewed certificate, a rotated key, another policy), or keep the current one
/// and say why when the new config does not load, so a certificate renewal refuses no
/// timestamp request. What a reload does not change: the listener, its TLS, the body limit and
/// `created_status` (restart for those).
async fn reload_on_sighup(
    file: PathBuf,
    state: AppState,
    watched: tokio::sync::watch::Sender<Vec<HsmSigner>>,
) {
    super::each_sighup(|| {
        let (file, state, watched) = (file.clone(), state.clone(), watched.clone());
        async move {
            let f = file.clone();
            let loaded = super::blocking(move || {
                let cfg = config::load_tsa(&f)?;
                load_tsa(&cfg, &f)
            })
            .await;
            match loaded {
                Ok((tsa, signer)) => {
                    if let Err(why) = tsa.readiness() {
                        tracing::warn!("not issuing timestamps for now: {why}");
                    }
                    state.replace_tsa(tsa);
                    let _ = watched.send(vec![signer]);
                    tracing::info!(
                        "reloaded {}: new requests use its key and chain",
                        file.display()
                    );
                }
                Err(e) => tracing::error!(
                    "reload of {} refused, still serving with the TSA loaded before: {e:#}",
                    file.display()
                ),
            }
        }
    })
    .await
}

pub async fn serve(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_tsa(file)?;
    let t = &cfg.tsa;
    if !t.require_synchronised_clock {
        tracing::warn!(
            "the clock check is OFF (require_synchronised_clock = false): tokens carry this host's time whether or not NTP vouches for it; for development only"
        );
    }
    let (tsa, signer) = load_tsa(&cfg, file)?;
    if let Err(why) = tsa.readiness() {
        tracing::warn!("not issuing timestamps for now: {why}");
    }
    let state = AppState::new(tsa, t.created_status);
    let (watched, signers) = tokio::sync::watch::channel(vec![signer]);
    tokio::spawn(reload_on_sighup(file.into(), state.clone(), watched));
    super::serve_public(
        "tsa",
        crate::tsa::server::router(state),
        &t.listen,
        t.tls.as_ref(),
        t.max_body_bytes,
        signers,
        cfg.hsm.exit_after_failing(),
    )
    .await
}
