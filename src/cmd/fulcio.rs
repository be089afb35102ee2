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

pub async fn serve(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_fulcio(file)?;
    let f = &cfg.fulcio;
    let module = Module::load_with(&cfg.hsm.module, cfg.hsm.options())?;
    let pin = f.pin.read().context("[fulcio] pin")?;
    let token = module.login(&f.key, &pin)?;
    drop(pin);
    let signer = Arc::new(token.signer(&f.key)?);
    let hsm_signers = vec![(*signer).clone()];
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
    let ca = Arc::new(Ca::new(
        signer,
        chain,
        verifier,
        CtLogClient {
            client,
            prefix,
            public_key: ct_key,
        },
    )?);
    let state = crate::fulcio::server::AppState {
        ca,
        metrics: Arc::default(),
    };
    super::serve_public(
        "fulcio",
        crate::fulcio::server::router(state),
        &f.listen,
        f.tls.as_ref(),
        f.max_body_bytes,
        hsm_signers,
        cfg.hsm.exit_after_failing(),
    )
    .await
}
