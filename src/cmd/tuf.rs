//! `sigvault tuf ...`: the TUF repository's commands.

use std::path::Path;
use std::process::ExitCode;

use crate::config;
use crate::tuf::{inputs, ops, status};

fn print(out: &ops::Outcome) {
    for l in &out.lines {
        println!("{l}");
    }
}

fn done(what: &str, r: Result<ops::Outcome, ops::TufError>) -> ExitCode {
    match r {
        Ok(out) => {
            print(&out);
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(format!("tuf {what}: {e}")),
    }
}

fn load(file: &Path) -> Result<config::TufConfig, ExitCode> {
    config::load_tuf(file).map_err(super::fail)
}

/// `sigvault tuf init --config F [--trust-dir DIR]`.
pub fn init(file: &Path, trust_dir: Option<&Path>) -> ExitCode {
    let cfg = match load(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The inputs are checked before any PIN is read or key made.
    let trust = match trust_dir.map(inputs::read_trust_dir).transpose() {
        Ok(t) => t,
        Err(e) => return super::fail(format!("tuf init: {e}; nothing was created")),
    };
    done("init", ops::init(&cfg, trust.as_ref()))
}

/// `sigvault tuf publish --config F --trust-dir DIR`.
pub fn publish(file: &Path, trust_dir: &Path) -> ExitCode {
    let cfg = match load(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let trust = match inputs::read_trust_dir(trust_dir) {
        Ok(t) => t,
        Err(e) => return super::fail(format!("tuf publish: {e}; nothing was signed")),
    };
    done("publish", ops::publish(&cfg, &trust))
}

/// `sigvault tuf refresh --config F`: what the timer runs.
pub fn refresh(file: &Path) -> ExitCode {
    let cfg = match load(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    done("refresh", ops::refresh_and_record(&cfg))
}

/// `sigvault tuf rotate-root --config F`.
pub fn rotate_root(file: &Path) -> ExitCode {
    let cfg = match load(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    done("rotate-root", ops::rotate_root(&cfg))
}

/// `sigvault tuf status --config F`: the roles' versions and time left; non-zero when not
/// ready (as `/readyz` would answer).
pub fn status(file: &Path) -> ExitCode {
    let cfg = match load(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let r = status::report(&cfg.tuf);
    print!("{}", r.text());
    if r.ready() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `sigvault tuf serve --config F`: the repository over HTTP until SIGTERM. It holds no key
/// and loads no PKCS#11 module: what the online token does, it reads from the refresh's record.
pub async fn serve(file: &Path) -> anyhow::Result<()> {
    let cfg = config::load_tuf(file)?;
    let report = status::report(&cfg.tuf);
    if !report.ready() {
        for p in &report.problems {
            tracing::warn!("not ready: {p}");
        }
    }
    let t = cfg.tuf.clone();
    let state = crate::tuf::server::AppState {
        cfg: std::sync::Arc::new(cfg.tuf),
        metrics: std::sync::Arc::default(),
        last: std::sync::Arc::default(),
    };
    super::serve_public(
        "tuf",
        crate::tuf::server::router(state),
        &t.listen,
        t.tls.as_ref(),
        4096,
        super::fixed_signers(Vec::new()),
        std::time::Duration::from_secs(3600),
    )
    .await
}
