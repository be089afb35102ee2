//! Command-line wiring: parse arguments, load config, call into the modules. Nothing else.

pub mod ctlog;
pub mod fulcio;
pub mod rekor;
pub mod rekor_v2;
pub mod tlog;
pub mod tsa;
pub mod tuf;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

/// sigvault: an HSM-backed Sigstore appliance.
#[derive(Debug, Parser)]
#[command(name = "sigvault", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a config file and print a verdict; exits non-zero if it is not usable.
    CheckConfig {
        /// The config file (any sigvault service or the ceremony).
        file: PathBuf,
    },
    /// Run the key ceremony: generate every key inside its token, make the CA certificates,
    /// export public keys and a transcript. Never overwrites a key or an output file.
    Ceremony {
        /// The ceremony config (see config/ceremony.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Add one role to an installation whose ceremony already ran: `tsa` (its key is
        /// generated and the root token signs its certificate) or `rekor-v2` (a Rekor v2 log
        /// key, exported as rekor-v2.pub.pem). Nothing else is touched.
        #[arg(long, value_name = "ROLE", conflicts_with_all = ["rotate", "retire"])]
        add: Option<String>,
        /// Make the next generation of a role beside the current one (README, "Rotating keys
        /// and logs"): `issuing-ca` or `tsa` (a new key, its certificate signed by the root
        /// token), `ctlog` or `rekor-v2` (a new log key; give the new log's --url), `rekor` (a
        /// new Rekor v1 shard's key, served at the same URL). Writes the
        /// new file (e.g. issuing-ca-2.pem) and rotate-<role>-<n>.json; overwrites nothing.
        #[arg(long, value_name = "ROLE", conflicts_with = "retire")]
        rotate: Option<String>,
        /// With --rotate: the new key's label (default: the configured label followed by -<n>).
        #[arg(long, requires = "rotate")]
        label: Option<String>,
        /// With --rotate of a log: the URL the new log is served at (its own).
        #[arg(long, requires = "rotate")]
        url: Option<String>,
        /// With --rotate: when the new generation's window starts (RFC 3339; default now).
        #[arg(long, requires = "rotate")]
        start: Option<String>,
        /// With --rotate tsa: a new certificate for the current key instead of a new key.
        #[arg(long, requires = "rotate")]
        renew: bool,
        /// With --rotate of a role with a certificate: its subject (default: the configured
        /// subject, the CN followed by the generation number).
        #[arg(long, requires = "rotate")]
        subject: Option<String>,
        /// End the window of the generation before the newest (retire-<role>-<n>.json): once
        /// nothing uses it any more. Needs no HSM.
        #[arg(long, value_name = "ROLE")]
        retire: Option<String>,
        /// With --retire: the end of the window (RFC 3339; default now).
        #[arg(long, requires = "retire")]
        end: Option<String>,
    },
    /// Create or upgrade a service's database tables (embedded migrations).
    Migrate {
        /// The service config whose database to migrate (tlog or rekor).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The Merkle log service.
    Tlog {
        #[command(subcommand)]
        command: TlogCommand,
    },
    /// The RFC 6962 certificate-transparency log.
    Ctlog {
        #[command(subcommand)]
        command: ServeCommand,
    },
    /// The Fulcio-compatible certificate authority.
    Fulcio {
        #[command(subcommand)]
        command: ServeCommand,
    },
    /// The Rekor-compatible transparency log (API v1).
    Rekor {
        #[command(subcommand)]
        command: ServeCommand,
    },
    /// Rekor v2 (the rekor-tiles API): entries and the tiles read path of each v2 log.
    #[command(name = "rekor-v2")]
    RekorV2 {
        #[command(subcommand)]
        command: ServeCommand,
    },
    /// The RFC 3161 timestamp authority.
    Tsa {
        #[command(subcommand)]
        command: ServeCommand,
    },
    /// The instance's TUF repository: clients bootstrap from its first root.json and follow
    /// every change of trust by themselves.
    Tuf {
        #[command(subcommand)]
        command: TufCommand,
    },
    /// Write the trust files Sigstore clients need: trusted_root.json, signing_config.json
    /// (v0.2) and trust-config.json (the ClientTrustConfig for `sigstore --trust-config`).
    Trust {
        /// The ceremony's output dir (root.pem, issuing-ca.pem, ctlog.pub.pem, rekor.pub.pem).
        #[arg(long)]
        ceremony_dir: PathBuf,
        /// Fulcio's public URL (an origin, no path), e.g. https://fulcio.example.org.
        #[arg(long)]
        fulcio_url: String,
        /// Rekor's public URL, e.g. https://rekor.example.org. Its host[:port] must contain the
        /// Rekor checkpoint signer name (note_name of the Rekor tree in tlog.toml).
        #[arg(long)]
        rekor_url: String,
        /// The CT log's public base URL, http(s)://host[:port]/<prefix>.
        #[arg(long)]
        ctlog_url: String,
        /// The OIDC issuer clients sign in with (e.g. your Dex), listed in the signing config.
        #[arg(long)]
        oidc_url: Option<String>,
        /// The timestamp authority's full endpoint URL (e.g.
        /// https://tsa.example.org/api/v1/timestamp): lists the TSA (the ceremony's tsa.pem) in
        /// the trusted root and the signing config.
        #[arg(long)]
        tsa_url: Option<String>,
        /// The Rekor v2 log's base URL (e.g. https://log2026-1.rekor.example.org): lists it
        /// (the ceremony's rekor-v2.pub.pem) in the trusted root and, before Rekor v1, in the
        /// signing config. Needs --tsa-url: v2 entries carry no signed time.
        #[arg(long)]
        rekor_v2_url: Option<String>,
        /// With --rekor-v2-url: list the v2 log in the trusted root only, so clients keep
        /// signing with Rekor v1 (sigstore-python signs with v2 whenever it is advertised).
        #[arg(long, requires = "rekor_v2_url")]
        rekor_v2_verify_only: bool,
        /// Operator named in the signing config.
        #[arg(long, default_value = "sigvault")]
        operator: String,
        /// Where to write the files.
        #[arg(long, short)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TufCommand {
    /// Create the repository: generate every role's key in its token (refusing existing
    /// labels) and sign version 1 of root, targets, snapshot and timestamp. Refuses if a
    /// repository exists.
    Init {
        /// The TUF config (see config/tuf.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Publish these `sigvault trust` files as the first targets (otherwise none).
        #[arg(long, value_name = "DIR")]
        trust_dir: Option<PathBuf>,
    },
    /// Publish `sigvault trust` output (trusted_root.json, signing_config.json) as the targets
    /// trusted_root.json and signing_config.v0.2.json, checked before anything is signed.
    Publish {
        #[arg(long, short)]
        config: PathBuf,
        /// The directory `sigvault trust --out` wrote.
        #[arg(long, value_name = "DIR")]
        trust_dir: PathBuf,
    },
    /// Re-sign the timestamp (and the snapshot when it nears expiry) with the online keys;
    /// idempotent; what sigvault-tuf-refresh.timer runs.
    Refresh {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Sign a new root from the config, signed by the current and the new root keys; keys
    /// the tokens lack are generated. Also how online keys are rotated and the root renewed.
    RotateRoot {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print each role's version and time left; exits non-zero when not ready.
    Status {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Serve the repository over HTTP (systemd Type=notify).
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Run the service in the foreground (systemd Type=notify).
    Serve {
        /// The service config (see config/tlog.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// The signers the HSM watchdog watches: the current set, which a reload may replace.
pub type Signers = tokio::sync::watch::Receiver<Vec<crate::hsm::HsmSigner>>;

/// Run `reload` once for each SIGHUP (`systemctl reload` sends it), one after the other, for the
/// life of the process. A service that cannot listen for the signal says so: it is then
/// reloaded by restarting.
pub async fn each_sighup<F, Fut>(mut reload: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload by restarting");
        return;
    };
    while hup.recv().await.is_some() {
        reload().await;
    }
}

/// `f` on the blocking pool (a config read and a PKCS#11 login block), its panic an error too.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("the reload task failed: {e}"))?
}

/// A set of signers no reload replaces.
pub fn fixed_signers(signers: Vec<crate::hsm::HsmSigner>) -> Signers {
    tokio::sync::watch::channel(signers).1
}

/// Resolves, with the reason, once the token of one of `signers` has failed every signature for
/// `exit_after` (`[hsm] exit_after_failing_secs`), so that the service exits and systemd restarts
/// it (`Restart=on-failure`) into a fresh module load and login: what recovers a token that went
/// away and came back, which a running PKCS#11 session cannot (SoftHSM2, and many HSMs after a
/// restart, invalidate every handle). While a token is failing it is probed once a second, so a
/// transient fault clears itself with the next good signature and costs no restart.
pub async fn hsm_watchdog(signers: Signers, exit_after: std::time::Duration) -> String {
    use crate::signer::Signer as _;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let current = signers.borrow().clone();
        for s in &current {
            let Some((failing_for, why)) = s.token().failing() else {
                continue;
            };
            let probe = s.clone();
            let recovered = matches!(
                tokio::task::spawn_blocking(move || probe.sign(b"sigvault HSM probe")).await,
                Ok(Ok(_))
            );
            if !recovered && failing_for >= exit_after {
                return format!(
                    "the HSM token '{}' has failed every signature for {} s (last: {why}); exiting so that the service is restarted with a fresh login",
                    s.token().label(),
                    failing_for.as_secs()
                );
            }
        }
    }
}

/// Until SIGTERM/SIGINT (`Ok`) or the HSM watchdog gives up on a token (`Err`, after logging).
pub async fn until_stopped(
    signers: Signers,
    exit_after: std::time::Duration,
) -> anyhow::Result<()> {
    tokio::select! {
        () = crate::http::shutdown_signal() => Ok(()),
        why = hsm_watchdog(signers, exit_after) => {
            tracing::error!("{why}");
            Err(anyhow::anyhow!(why))
        }
    }
}

/// The tlog client a personality's config describes: its endpoints tried in order (active
/// sequencer, then standbys), each with a 30 s timeout (an append waits for its batch to commit).
pub fn tlog_client(
    endpoints: &[crate::http::client::Endpoint],
    tls: Option<&crate::http::client::ClientTls>,
) -> anyhow::Result<crate::tlog::api::TlogClient> {
    let clients = endpoints
        .iter()
        .map(|e| {
            crate::http::client::Client::new(e.clone(), tls)
                .map(|c| c.with_timeout(std::time::Duration::from_secs(30)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::tlog::api::TlogClient::new(clients))
}

/// Serve `router` (wrapped in the request limits) on `listen` until SIGTERM/SIGINT: bind, tell
/// systemd READY=1, and on the signal STOPPING=1 and a graceful shutdown. `name` is for logs.
/// Also stops, with an error, when the HSM behind `signers` stays unusable ([`hsm_watchdog`]).
pub async fn serve_public(
    name: &str,
    router: axum::Router,
    listen: &crate::http::ListenAddr,
    tls: Option<&crate::http::TlsFiles>,
    max_body_bytes: usize,
    signers: Signers,
    exit_after: std::time::Duration,
) -> anyhow::Result<()> {
    let router = crate::http::with_limits(
        router,
        max_body_bytes,
        std::time::Duration::from_secs(30),
        4096,
    );
    let listener = crate::http::bind(listen, tls).await?;
    tracing::info!(listen = %listener.local_addr(), "{name} serving");
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(listener.serve(router, async move {
        let _ = stop_rx.wait_for(|v| *v).await;
    }));
    crate::http::sd_notify("READY=1\nSTATUS=serving");
    let outcome = until_stopped(signers, exit_after).await;
    crate::http::sd_notify("STOPPING=1");
    let _ = stop_tx.send(true);
    let _ = server.await;
    outcome
}

#[derive(Debug, Subcommand)]
pub enum TlogCommand {
    /// Run the service in the foreground (systemd Type=notify).
    Serve {
        /// The service config (see config/tlog.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Audit the trees in the database: every entry, hash tile, root and checkpoint checked
    /// against each other. Reads only; needs no HSM and may run beside the service. Exits
    /// non-zero if anything does not agree.
    Verify {
        /// The service config (see config/tlog.toml): its database and its trees.
        #[arg(long, short)]
        config: PathBuf,
        /// Audit only this tree (default: every tree in the config).
        #[arg(long)]
        tree: Option<String>,
        /// A signed checkpoint of one of the trees as a client, monitor or witness holds it
        /// (the C2SP signed note; repeatable): the tree in the database must extend it, or the
        /// audit fails (the database is behind it, or forked from it).
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
    },
}

/// Log, at start-up, what the database server's settings mean for sigvault
/// ([`crate::store::server_advice`]); never fatal.
fn warn_about_database(advice: Result<Vec<String>, crate::store::StoreError>) {
    match advice {
        Ok(advice) => {
            for a in advice {
                tracing::warn!("database: {a}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the database server's settings"),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sigvault")
        .build()
}

fn run_async(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: under systemd stderr goes to the journal, where escape codes
    // would be noise in every line (and in every log search).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .without_time()
        .try_init();
}

/// Run the CLI; the returned code is the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Ceremony {
            config,
            add,
            rotate,
            label,
            url,
            start,
            renew,
            subject,
            retire,
            end,
        } => {
            let action = match (add, rotate, retire) {
                (Some(role), _, _) => CeremonyAction::Add(role),
                (_, Some(role), _) => CeremonyAction::Rotate {
                    role,
                    label,
                    url,
                    start,
                    renew,
                    subject,
                },
                (_, _, Some(role)) => CeremonyAction::Retire { role, end },
                _ => CeremonyAction::Run,
            };
            ceremony(&config, action)
        }
        Command::Migrate { config } => migrate(&config),
        Command::Tlog {
            command: TlogCommand::Serve { config },
        } => run_async(tlog::serve(&config)),
        Command::Tlog {
            command:
                TlogCommand::Verify {
                    config,
                    tree,
                    checkpoint,
                },
        } => run_async(tlog::verify(&config, tree.as_deref(), &checkpoint)),
        Command::Ctlog {
            command: ServeCommand::Serve { config },
        } => run_async(ctlog::serve(&config)),
        Command::Fulcio {
            command: ServeCommand::Serve { config },
        } => run_async(fulcio::serve(&config)),
        Command::Rekor {
            command: ServeCommand::Serve { config },
        } => run_async(rekor::serve(&config)),
        Command::RekorV2 {
            command: ServeCommand::Serve { config },
        } => run_async(rekor_v2::serve(&config)),
        Command::Tsa {
            command: ServeCommand::Serve { config },
        } => run_async(tsa::serve(&config)),
        Command::Tuf { command } => match command {
            TufCommand::Init { config, trust_dir } => tuf::init(&config, trust_dir.as_deref()),
            TufCommand::Publish { config, trust_dir } => tuf::publish(&config, &trust_dir),
            TufCommand::Refresh { config } => tuf::refresh(&config),
            TufCommand::RotateRoot { config } => tuf::rotate_root(&config),
            TufCommand::Status { config } => tuf::status(&config),
            TufCommand::Serve { config } => run_async(tuf::serve(&config)),
        },
        Command::Trust {
            ceremony_dir,
            fulcio_url,
            rekor_url,
            ctlog_url,
            oidc_url,
            tsa_url,
            rekor_v2_url,
            rekor_v2_verify_only,
            operator,
            out,
        } => {
            let inputs = crate::trust::TrustInputs {
                ceremony_dir,
                fulcio_url,
                rekor_url,
                ctlog_url,
                oidc_url,
                tsa_url,
                rekor_v2_url,
                rekor_v2_verify_only,
                operator,
            };
            match crate::trust::build(&inputs).and_then(|f| crate::trust::write(&f, &out)) {
                Ok(files) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

fn migrate(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(config::AnyConfig::Tlog(_)) => run_async(tlog::migrate(file)),
        Ok(config::AnyConfig::Rekor(_)) => run_async(rekor::migrate(file)),
        Ok(other) => fail(format!(
            "{}: a {} config has no database to migrate",
            file.display(),
            other.kind()
        )),
        Err(e) => fail(e),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let cfg = match config::load(file) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let problems = cfg.check();
    if problems.is_empty() {
        println!("{}: OK ({} config)", file.display(), cfg.kind());
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("error: {}: {p}", file.display());
        }
        eprintln!(
            "{}: NOT OK ({} problem{})",
            file.display(),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    }
}

/// What `sigvault ceremony` was asked to do.
enum CeremonyAction {
    Run,
    Add(String),
    Rotate {
        role: String,
        label: Option<String>,
        url: Option<String>,
        start: Option<String>,
        renew: bool,
        subject: Option<String>,
    },
    Retire {
        role: String,
        end: Option<String>,
    },
}

fn rotating_role(role: &str) -> Result<crate::ceremony::generations::Role, String> {
    use crate::ceremony::generations::Role;
    Role::parse(role).ok_or_else(|| {
        let names: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
        let why = match role {
            "root" => " (a new root is a new trust anchor: rotate it through the TUF root, `sigvault tuf rotate-root`, and a new ceremony)",
            _ => "",
        };
        format!("the roles that rotate are {}; not '{role}'{why}", names.join(", "))
    })
}

fn ceremony(file: &std::path::Path, action: CeremonyAction) -> ExitCode {
    use crate::ceremony::generations::parse_time;
    let cfg = match config::load_ceremony(file) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let done = match &action {
        CeremonyAction::Run | CeremonyAction::Add(_) => "ceremony complete",
        CeremonyAction::Rotate { .. } => "rotation complete",
        CeremonyAction::Retire { .. } => "retirement recorded",
    };
    let outcome = match action {
        CeremonyAction::Run => crate::ceremony::run(&cfg),
        CeremonyAction::Add(role) => crate::ceremony::add(&cfg, &role),
        CeremonyAction::Rotate {
            role,
            label,
            url,
            start,
            renew,
            subject,
        } => {
            let role = match rotating_role(&role) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            let start = match start.as_deref().map(parse_time).transpose() {
                Ok(s) => s,
                Err(e) => return fail(format!("--start: {e}")),
            };
            crate::ceremony::rotate::rotate(
                &cfg,
                &crate::ceremony::rotate::RotateOptions {
                    role,
                    label,
                    url,
                    start,
                    renew,
                    subject,
                },
            )
        }
        CeremonyAction::Retire { role, end } => {
            let role = match rotating_role(&role) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            let end = match end.as_deref().map(parse_time).transpose() {
                Ok(s) => s,
                Err(e) => return fail(format!("--end: {e}")),
            };
            crate::ceremony::rotate::retire(&cfg, role, end)
        }
    };
    match outcome {
        Ok(outcome) => {
            println!(
                "{done}; public outputs in {}:",
                outcome.output_dir.display()
            );
            for f in &outcome.files {
                println!("  {}", f.display());
            }
            if !outcome.next_steps.is_empty() {
                println!("next:");
                for (i, step) in outcome.next_steps.iter().enumerate() {
                    println!("  {}. {step}", i + 1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("ceremony failed, nothing was created: {e}")),
    }
}
