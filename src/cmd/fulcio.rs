//! `sigvault fulcio serve`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use der::DecodePem;

use crate::config;
use crate::fulcio::{Ca, CtLogClient};
use crate::hsm::Module;
use crate::http::client::{Client, Endpoint};

/// Split `http(s)://host:port/prefix` into a client endpoint and the path prefix.
pub fn split_url(url: &str) -> anyhow::Result<(Endpoint, String)> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("{url} is not an http(s) URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let endpoint: Endpoint = format!("{scheme}://{authority}")
        .parse()
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    Ok((endpoint, path.to_owned()))
}

/// The CA a fulcio config describes: its key logged in (a module already loaded is shared, a
/// token already logged in is logged in again on a session of its own), its chain, its issuers
/// and its CT log. Also the signer, for the HSM watchdog.
fn load_ca(cfg: &config::FulcioConfig) -> anyhow::Result<(Ca, crate::hsm::HsmSigner)> {
    let f = &cfg.fulcio;
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let pin = f.pin.read().context("[fulcio] pin")?;
    let token = module.login(&f.key, &pin)?;
    drop(pin);
    let signer = token.signer(&f.key)?;
    let mut chain = Vec::new();
    for file in &f.ca_chain {
        chain.extend(super::ctlog::read_pem_certs(file)?);
    }
    let identity = std::fs::read_to_string(&f.identity_config)
        .with_context(|| format!("cannot read {}", f.identity_config.display()))?;
    let identity = crate::oidc::config::parse_identity_config(&identity)
        .map_err(|e| anyhow::anyhow!("{}: {e}", f.identity_config.display()))?;
    let verifier = crate::oidc::Verifier::new(identity, crate::oidc::VerifierOptions::default());
    let ct_pem = std::fs::read_to_string(&f.ct_log_public_key)
        .with_context(|| format!("cannot read {}", f.ct_log_public_key.display()))?;
    let ct_key = der::Encode::to_der(
        &spki::SubjectPublicKeyInfoOwned::from_pem(ct_pem.as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a PEM public key: {e}",
                f.ct_log_public_key.display()
            )
        })?,
    )?;
    let (endpoint, prefix) = split_url(&f.ct_log_url)?;
    let client =
        Client::new(endpoint, f.ct_log_tls.as_ref())?.with_timeout(Duration::from_secs(30));
    let ca = Ca::new(
        Arc::new(signer.clone()),
        chain,
        verifier,
        CtLogClient {
            client,
            prefix,
            public_key: ct_key,
        },
    )?;
    Ok((ca, signer))
}

/// On each SIGHUP (`systemctl reload sigvault-fulcio`), read `file` again and move to the CA it
/// describes (a rotated issuing CA, another CT log, new issuers), or keep the current one and
/// say why when the new config does not load. What a reload does not change: the listener, its
/// TLS and the body limit (restart for those).
async fn reload_on_sighup(
    file: std::path::PathBuf,
    state: crate::fulcio::server::AppState,
    watched: tokio::sync::watch::Sender<Vec<crate::hsm::HsmSigner>>,
) {
    super::each_sighup(|| {
        let (file, state, watched) = (file.clone(), state.clone(), watched.clone());
        async move {
            let f = file.clone();
            let loaded = super::blocking(move || {
                let cfg = config::load_fulcio(&f)?;
                load_ca(&cfg)
            })
            .await;
            match loaded {
                Ok((ca, signer)) => {
                    let issuer = ca.issuer_name();
                    state.replace_ca(ca);
                    let _ = watched.send(vec![signer]);
                    tracing::info!(issuing_ca = %issuer, "reloaded {}: new requests use this CA", file.display());
                }
                Err(e) => tracing::error!(
                    "reload of {} refused, still serving with the CA loaded before: {e:#}",
                    file.display()
                ),
            }
        }
    })
    .await
}

pub async fn serve(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_fulcio(file)?;
    let f = &cfg.fulcio;
    let (ca, signer) = load_ca(&cfg)?;
    let state = crate::fulcio::server::AppState::new(ca);
    let (watched, signers) = tokio::sync::watch::channel(vec![signer]);
    tokio::spawn(reload_on_sighup(file.into(), state.clone(), watched));
    super::serve_public(
        "fulcio",
        crate::fulcio::server::router(state),
        &f.listen,
        f.tls.as_ref(),
        f.max_body_bytes,
        signers,
        cfg.hsm.exit_after_failing(),
    )
    .await
}
