//! `sigvault tsa serve`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::config;
use crate::hsm::Module;
use crate::tsa::clock::{ClockPolicy, KernelClock};
use crate::tsa::{Tsa, TsaOptions};

pub async fn serve(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_tsa(file)?;
    let t = &cfg.tsa;
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let pin = t.pin.read().context("[tsa] pin")?;
    let token = module.login(&t.key, &pin)?;
    drop(pin);
    let signer = token.signer(&t.key)?;
    let hsm_signers = vec![signer.clone()];
    let mut chain = Vec::new();
    for f in &t.cert_chain {
        chain.extend(super::ctlog::read_pem_certs(f)?);
    }
    let parse_oid = |p: &str| {
        const_oid::ObjectIdentifier::new(p).map_err(|_| anyhow::anyhow!("[tsa] policy {p:?}"))
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
    if !t.require_synchronised_clock {
        tracing::warn!(
            "the clock check is OFF (require_synchronised_clock = false): tokens carry this host's time whether or not NTP vouches for it; for development only"
        );
    }
    let tsa = Tsa::new(Arc::new(signer), chain, options, Box::new(KernelClock))
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if let Err(why) = tsa.readiness() {
        tracing::warn!("not issuing timestamps for now: {why}");
    }
    let state = crate::tsa::server::AppState {
        tsa: Arc::new(tsa),
        metrics: Arc::default(),
        created_status: t.created_status,
    };
    super::serve_public(
        "tsa",
        crate::tsa::server::router(state),
        &t.listen,
        t.tls.as_ref(),
        t.max_body_bytes,
        super::fixed_signers(hsm_signers),
        cfg.hsm.exit_after_failing(),
    )
    .await
}
