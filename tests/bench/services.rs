//! Benchmark: the services end to end, as processes, over HTTP: `sigvault ctlog serve` on
//! `sigvault tlog serve` on the run's private MariaDB, and `sigvault fulcio serve` in front of
//! them, every key in the run's private SoftHSM2 token dir (the key ceremony makes them), the
//! OIDC tokens from the npm provider in tests/idp. Prints:
//!
//! ```text
//! BENCH ctlog-add-pre-chain <subs/s> submissions/s limit=<raw signs/s> ratio=<ours/limit>
//! BENCH ctlog-add-pre-chain-p99 <ms> ms limit=20 ratio=<ms/20>
//! BENCH fulcio-issue <certs/s> certs/s limit=<raw signs/s / 3> ratio=<ours/limit>
//! BENCH fulcio-issue-p99 <ms> ms limit=20 ratio=<ms/20>
//! ```
//!
//! * The physical limit is the HSM: a bare `cryptoki` `C_Sign` loop (`CKM_ECDSA` over a 32-byte
//!   digest) on a P-256 key in a token of the same token dir, 2 threads with one session each,
//!   measured in the same run while the services are idle (the best of six 3 s rounds, three
//!   before the services' rounds and three after). The BENCH lines come after the last. An
//!   `add-pre-chain` costs one HSM signature (the SCT); an issued certificate three
//!   (precertificate, SCT, final certificate), hence `limit / 3` for Fulcio.
//! * `ctlog-add-pre-chain`: distinct precertificates (made before the clock starts, signed with
//!   the ceremony's issuing CA key in SoftHSM2), closed loop from many concurrent clients, each
//!   its own keep-alive connection; 1 s warm-up, then 10 s measured. Goal: ratio >= 0.15.
//! * `fulcio-issue`: `POST /api/v2/signingCert` with a public key and proof of possession (one
//!   OIDC token and one proof reused by every request), each through fulcio -> ctlog -> tlog,
//!   SCT from sigvault's own CT log included; same loop. Goal: ratio >= 0.3.
//! * `*-p99`: p99 latency from a request's *scheduled* time to its answer, open loop at half the
//!   rate just measured. Latencies: `limit` is the goal (20 ms) and `ratio` = value / goal, so
//!   ratio <= 1 is the goal. A failed request counts as infinitely late.
//!
//! The tlog runs with the production defaults (pool 16, batches of up to 512 entries or 8 ms).
//! The load generator runs in this process, on the same two cores as the services and MariaDB.
//! Knobs for experiments (the reported figures use the defaults): `SERVICES_BENCH_CLIENTS`
//! (concurrent clients, default 128), `SERVICES_BENCH_BATCH_WAIT_MS` (the tlog's
//! `batch_max_wait_ms`, default: the production default).
//!
//! Run through `tests/run.sh bench`. `cargo test --all-targets` runs this file without `--bench`:
//! then it is only a smoke run of the same set-up and code (a handful of requests, no BENCH
//! lines).

#[path = "../common/mod.rs"]
mod common;
#[path = "load.rs"]
mod load;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use der::asn1::OctetString;
use der::{Decode, DecodePem, Encode};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use secrecy::SecretString;
use sigvault::hsm::{Module, Pkcs11Uri};
use sigvault::http::client::Client;
use sigvault::signer::{SignatureAlgorithm, Signer};
use x509_cert::Certificate;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::Extension;

use common::procs::{Service, free_port, keygen};
use load::{Job, Load, Outcome, Tally, client, clients, p99};

const TOKENS: &[&str] = &[
    "sv-root",
    "sv-issuing",
    "sv-ctlog",
    "sv-rekor",
    "sv-tlogc",
    "sv-tlog",
    "sv-raw",
];
/// The latency goal of the two p99 lines, ms (their `limit`).
const GOAL_P99_MS: f64 = 20.0;
/// HSM signatures per issued certificate: precertificate, SCT, final certificate.
const SIGNS_PER_CERT: f64 = 3.0;
const EMAIL: &str = "bench@example.com";

/// How long and how hard each phase runs.
struct Plan {
    measuring: bool,
    clients: usize,
    raw: Duration,
    warmup: Duration,
    measure: Duration,
    p99: Duration,
    /// Precertificates made before the first (calibration) round.
    first_pool: usize,
    /// Smoke run: requests per service (closed loop), then per open-loop round.
    smoke_requests: usize,
}

impl Plan {
    fn new(measuring: bool) -> Self {
        let clients = std::env::var("SERVICES_BENCH_CLIENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(128);
        if measuring {
            Plan {
                measuring,
                clients,
                raw: Duration::from_secs(3),
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(10),
                p99: Duration::from_secs(8),
                first_pool: 4000,
                smoke_requests: 0,
            }
        } else {
            Plan {
                measuring,
                clients: 4,
                raw: Duration::from_millis(200),
                warmup: Duration::ZERO,
                measure: Duration::from_secs(5),
                p99: Duration::from_millis(500),
                first_pool: 1,
                smoke_requests: 8,
            }
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not (smoke run).
    let measuring = std::env::args().any(|a| a == "--bench");
    let have_env = std::env::var_os("SOFTHSM2_CONF").is_some()
        && std::env::var_os("SIGVAULT_TEST_WORK").is_some()
        && std::env::var_os("SIGVAULT_TEST_MYSQL_URL").is_some();
    if !have_env {
        eprintln!(
            "the services benchmark needs a private MariaDB and SoftHSM2 token dir: run it \
             through `tests/run.sh bench` (SIGVAULT_TEST_MYSQL_URL, SOFTHSM2_CONF, \
             SIGVAULT_TEST_WORK)"
        );
        if measuring || std::env::var_os("SIGVAULT_TEST_REQUIRE").is_some() {
            std::process::exit(2);
        }
        eprintln!("services bench smoke run skipped");
        return;
    }
    let plan = Plan::new(measuring);
    let started = Instant::now();
    // Every token this process uses must exist before the PKCS#11 module is first loaded.
    for t in TOKENS {
        common::token(TOKENS, t);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(&plan));
    eprintln!(
        "services bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

async fn run(plan: &Plan) {
    let db = common::database("services_bench").expect("private MariaDB");
    let dir = common::scratch("services-bench");
    let stack = Stack::start(&dir, &db).await;

    // --- The HSM's physical limit, measured while the services are idle. ----------------------
    let module_path = common::module();
    let module = Module::load(&module_path).expect("load module");
    let rt = common::token(TOKENS, "sv-raw");
    let raw_uri: Pkcs11Uri = format!("pkcs11:token={};object=raw", rt.label)
        .parse()
        .expect("uri");
    let raw_token = module
        .login(&raw_uri, &SecretString::from(rt.pin.clone()))
        .expect("login");
    raw_token
        .generate_ec_key("raw", b"\x01", SignatureAlgorithm::EcdsaP256Sha256)
        .expect("generate");
    // Its own cryptoki handle on the same library (process-wide login), kept until the end.
    let raw = Pkcs11::new(&module_path).expect("raw load");
    let _ = raw.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    // The best of three rounds before the services' rounds and three after: a round that shares
    // the cores with something else (the services settling after their start, MariaDB's
    // background flushing, a busy host) once read as little as half, which would flatter every
    // ratio; the best of six is the rate the HSM shows it can reach in this run.
    let raw_rounds = || -> Vec<f64> {
        (0..3)
            .map(|_| load::raw_sign_rate(&raw, &rt.label, plan.raw))
            .collect()
    };
    let before = raw_rounds();

    // The issuing CA key, in its token, signs the precertificates.
    let it = common::token(TOKENS, "sv-issuing");
    let ca_uri: Pkcs11Uri = format!("pkcs11:token={};object=issuing-ca", it.label)
        .parse()
        .expect("uri");
    let ca_token = module
        .login(&ca_uri, &SecretString::from(it.pin.clone()))
        .expect("login");
    let ca: Arc<dyn Signer> = Arc::new(ca_token.signer(&ca_uri).expect("signer"));

    let ct = ctlog_rounds(plan, &stack, &ca).await;
    let fu = fulcio_rounds(plan, &stack).await;
    let after = raw_rounds();
    let limit = before.iter().chain(&after).copied().fold(0.0, f64::max);
    eprintln!(
        "services bench: raw HSM P-256 C_Sign, 2 threads: {limit:.0} signs/s (best of \
         {before:.0?} before the services' rounds and {after:.0?} after)"
    );
    match (ct, fu) {
        (Rounds::Measured(ct), Rounds::Measured(fu)) => {
            println!(
                "BENCH ctlog-add-pre-chain {:.0} submissions/s limit={limit:.0} ratio={:.3}",
                ct.rate,
                ct.rate / limit
            );
            println!(
                "BENCH ctlog-add-pre-chain-p99 {:.1} ms limit={GOAL_P99_MS:.0} ratio={:.3}",
                ct.p99_ms,
                ct.p99_ms / GOAL_P99_MS
            );
            let limit = limit / SIGNS_PER_CERT;
            println!(
                "BENCH fulcio-issue {:.0} certs/s limit={limit:.0} ratio={:.3}",
                fu.rate,
                fu.rate / limit
            );
            println!(
                "BENCH fulcio-issue-p99 {:.1} ms limit={GOAL_P99_MS:.0} ratio={:.3}",
                fu.p99_ms,
                fu.p99_ms / GOAL_P99_MS
            );
        }
        (ct, fu) => println!(
            "services bench smoke run ok ({} CT submissions, {} certificates)",
            ct.requests(),
            fu.requests()
        ),
    }
    drop(raw);
}

/// What a service's rounds came to.
enum Rounds {
    /// The smoke run: requests answered.
    Smoke(u64),
    /// The measured run: closed-loop rate and open-loop p99.
    Measured(Figures),
}

struct Figures {
    rate: f64,
    p99_ms: f64,
}

impl Rounds {
    fn requests(&self) -> u64 {
        match self {
            Rounds::Smoke(n) => *n,
            Rounds::Measured(_) => 0,
        }
    }
}

// --- The services ------------------------------------------------------------------------------

/// tlog, ctlog, the OIDC provider and fulcio, as child processes (stopped on drop, fulcio first).
struct Stack {
    fulcio: Service,
    _idp: Idp,
    ctlog: Service,
    tlog: Service,
    ct_port: u16,
    fulcio_port: u16,
    issuing: Certificate,
    issuing_b64: String,
    /// The whole `signingCert` request body (one token, one proof).
    fulcio_body: Vec<u8>,
}

impl Stack {
    /// Where the CPU goes per request of `what` (ctlog or fulcio): the services, MariaDB, the
    /// load generator.
    fn cpu_meter(&self, what: &str) -> load::CpuMeter {
        let mut procs = vec![
            ("ctlog", self.ctlog.child.id()),
            ("tlog", self.tlog.child.id()),
        ];
        if what == "fulcio" {
            procs.insert(0, ("fulcio", self.fulcio.child.id()));
        }
        load::CpuMeter::new(what, &procs)
    }

    async fn start(dir: &Path, db: &common::TestDb) -> Stack {
        let cer = ceremony(dir);

        // tlog: production defaults but for the tree, the key and the addresses.
        let tt = common::token(TOKENS, "sv-tlog");
        keygen(tt, dir);
        common::write_private(&dir.join("db.url"), &db.url());
        let wait = match std::env::var("SERVICES_BENCH_BATCH_WAIT_MS") {
            Ok(ms) => format!("batch_max_wait_ms = {ms}\n"),
            Err(_) => String::new(),
        };
        let tlog_sock = dir.join("tlog.sock");
        std::fs::write(
            dir.join("tlog.toml"),
            format!(
                "[hsm]\nmodule = \"{module}\"\n[tlog]\ndatabase_url = {{ file = \"{d}/db.url\" }}\nmigrate_on_start = true\ninternal_listen = \"unix:{sock}\"\npublic_listen = \"127.0.0.1:{port}\"\nstate_dir = \"{d}/state\"\n{wait}[[tlog.trees]]\nname = \"ct\"\norigin = \"ctlog.bench/tlog\"\nnote_name = \"ctlog.bench\"\nkey = \"pkcs11:token={label};object=tlog\"\npin = {{ file = \"{pin}\" }}\n",
                module = common::module().display(),
                d = dir.display(),
                sock = tlog_sock.display(),
                port = free_port(),
                label = tt.label,
                pin = tt.pin_file.display(),
            ),
        )
        .expect("write");
        check_config(&dir.join("tlog.toml"));
        let tlog = Service::start(&["tlog", "serve"], &dir.join("tlog.toml"), dir, "tlog.log");

        let ct_port = free_port();
        let ct = common::token(TOKENS, "sv-ctlog");
        std::fs::write(
            dir.join("ctlog.toml"),
            format!(
                "[hsm]\nmodule = \"{}\"\n[ctlog]\nlisten = \"127.0.0.1:{ct_port}\"\nprefix = \"ct\"\nkey = \"pkcs11:token={};object=ctlog\"\npin = {{ file = \"{}\" }}\npublic_key_file = \"{c}/ctlog.pub.pem\"\nroots = [\"{c}/root.pem\"]\ntlog = [\"unix:{}\"]\ntree = \"ct\"\n",
                common::module().display(),
                ct.label,
                ct.pin_file.display(),
                tlog_sock.display(),
                c = cer.display(),
            ),
        )
        .expect("write");
        check_config(&dir.join("ctlog.toml"));
        let ctlog = Service::start(
            &["ctlog", "serve"],
            &dir.join("ctlog.toml"),
            dir,
            "ctlog.log",
        );

        let idp = Idp::start();
        std::fs::write(
            dir.join("identity.yaml"),
            format!(
                "oidc-issuers:\n  {d}:\n    issuer-url: {d}\n    client-id: sigstore\n    type: email\n",
                d = idp.issuer
            ),
        )
        .expect("write");
        let fulcio_port = free_port();
        let it = common::token(TOKENS, "sv-issuing");
        std::fs::write(
            dir.join("fulcio.toml"),
            format!(
                "[hsm]\nmodule = \"{}\"\n[fulcio]\nlisten = \"127.0.0.1:{fulcio_port}\"\nkey = \"pkcs11:token={};object=issuing-ca\"\npin = {{ file = \"{}\" }}\nca_chain = [\"{c}/issuing-ca.pem\", \"{c}/root.pem\"]\nidentity_config = \"{d}/identity.yaml\"\nct_log_url = \"http://127.0.0.1:{ct_port}/ct\"\nct_log_public_key = \"{c}/ctlog.pub.pem\"\n",
                common::module().display(),
                it.label,
                it.pin_file.display(),
                d = dir.display(),
                c = cer.display(),
            ),
        )
        .expect("write");
        check_config(&dir.join("fulcio.toml"));
        let fulcio = Service::start(
            &["fulcio", "serve"],
            &dir.join("fulcio.toml"),
            dir,
            "fulcio.log",
        );

        // One OIDC token and one proof of possession (over the email) for every request.
        let token = idp
            .token(serde_json::json!({
                "aud": "sigstore",
                "sub": "bench-subject",
                "email": EMAIL,
                "email_verified": true,
            }))
            .await;
        let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem");
        let proof = {
            use p256::ecdsa::signature::Signer as _;
            let s: p256::ecdsa::Signature = key.sign(EMAIL.as_bytes());
            B64.encode(s.to_der().as_bytes())
        };
        let fulcio_body = serde_json::json!({
            "credentials": {"oidcIdentityToken": token},
            "publicKeyRequest": {"publicKey": {"algorithm": "ECDSA", "content": pem}, "proofOfPossession": proof}
        })
        .to_string()
        .into_bytes();

        let issuing =
            Certificate::from_pem(std::fs::read(cer.join("issuing-ca.pem")).expect("pem"))
                .expect("cert");
        let issuing_b64 = B64.encode(issuing.to_der().expect("der"));
        Stack {
            fulcio,
            _idp: idp,
            ctlog,
            tlog,
            ct_port,
            fulcio_port,
            issuing,
            issuing_b64,
            fulcio_body,
        }
    }

    fn logs(&self) -> String {
        let tail = |s: &str| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        format!(
            "--- tlog log ---\n{}\n--- ctlog log ---\n{}\n--- fulcio log ---\n{}",
            tail(&self.tlog.log()),
            tail(&self.ctlog.log()),
            tail(&self.fulcio.log())
        )
    }
}

fn check_config(path: &Path) {
    let (ok, o, e) = common::run(
        Command::new(common::sigvault_bin())
            .arg("check-config")
            .arg(path),
    );
    assert!(ok, "check-config {}: {o}{e}", path.display());
}

/// The key ceremony into this process's tokens; returns its output dir.
fn ceremony(dir: &Path) -> PathBuf {
    let t = |tag: &str| common::token(TOKENS, tag);
    let out = dir.join("ceremony");
    let cfg = dir.join("ceremony.toml");
    let key = |tag: &str, obj: &str| {
        format!(
            "key = \"pkcs11:token={};object={obj}\"\npin = {{ file = \"{}\" }}",
            t(tag).label,
            t(tag).pin_file.display()
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "[hsm]\nmodule = \"{}\"\n[ceremony]\noutput_dir = \"{}\"\n[ceremony.root]\n{}\ncurve = \"P-384\"\nsubject = \"CN=bench root,O=sigvault\"\nvalidity_days = 3650\n[ceremony.issuing_ca]\n{}\ncurve = \"P-256\"\nsubject = \"CN=bench issuing,O=sigvault\"\nvalidity_days = 365\n[ceremony.ctlog]\n{}\n[ceremony.rekor]\n{}\n[ceremony.tlog]\n{}\n",
            common::module().display(),
            out.display(),
            key("sv-root", "root-ca"),
            key("sv-issuing", "issuing-ca"),
            key("sv-ctlog", "ctlog"),
            key("sv-rekor", "rekor"),
            key("sv-tlogc", "tlog"),
        ),
    )
    .expect("write");
    let (ok, o, e) = common::run(
        Command::new(common::sigvault_bin())
            .args(["ceremony", "--config"])
            .arg(&cfg),
    );
    assert!(ok, "ceremony: {o}{e}");
    out
}

/// The npm OIDC provider (tests/idp) as a child process.
struct Idp {
    child: Child,
    issuer: String,
    port: u16,
}

impl Idp {
    fn start() -> Idp {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/idp.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node tests/idp/idp.mjs (run tests/run.sh, which installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("idp output");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("idp said {line:?}: {e}"));
        Idp {
            child,
            issuer: v["issuer"].as_str().expect("issuer").to_owned(),
            port: v["port"].as_u64().expect("port") as u16,
        }
    }

    /// Mint a token with these claims.
    async fn token(&self, claims: serde_json::Value) -> String {
        let c = client(self.port);
        let enc: String = claims
            .to_string()
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let body = format!("grant_type=client_credentials&claims={enc}");
        let r = c
            .request(
                Method::POST,
                "/token",
                Some((body.into_bytes(), "application/x-www-form-urlencoded")),
            )
            .await
            .expect("token request");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("token json");
        v["access_token"].as_str().expect("access_token").to_owned()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

// --- Load generation ---------------------------------------------------------------------------

fn failure_kind(
    r: &Result<sigvault::http::client::Response, sigvault::http::client::ClientError>,
) -> Option<String> {
    match r {
        Ok(resp) if resp.status.as_u16() == 200 => None,
        Ok(resp) => Some(format!(
            "HTTP {}: {}",
            resp.status.as_u16(),
            String::from_utf8_lossy(&resp.body)
                .chars()
                .take(120)
                .collect::<String>()
        )),
        Err(e) => Some(e.to_string().chars().take(120).collect()),
    }
}

// --- ctlog -------------------------------------------------------------------------------------

/// Precertificates, used once each.
struct Pool {
    chains: Vec<String>,
    next: AtomicUsize,
}

impl Pool {
    fn take(&self) -> Option<&str> {
        self.chains
            .get(self.next.fetch_add(1, Ordering::Relaxed))
            .map(String::as_str)
    }
}

/// `n` distinct precertificates signed by the issuing CA key (2 threads), each as its
/// add-pre-chain body.
fn make_pool(n: usize, stack: &Stack, ca: &Arc<dyn Signer>) -> Arc<Pool> {
    let started = Instant::now();
    let template = precert_template(&stack.issuing);
    let threads = 2;
    let per = n.div_ceil(threads);
    let mut chains = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                let (template, ca) = (&template, Arc::clone(ca));
                let issuing = &stack.issuing_b64;
                s.spawn(move || {
                    let count = per.min(n.saturating_sub(t * per));
                    (0..count)
                        .map(|_| {
                            let mut tbs = template.clone();
                            let mut serial = [0u8; 16];
                            getrandom::getrandom(&mut serial).expect("rand");
                            serial[0] = 0x42;
                            tbs.serial_number =
                                x509_cert::serial_number::SerialNumber::new(&serial)
                                    .expect("serial");
                            let cert =
                                sigvault::pki::sign_tbs(tbs, template.signature.clone(), &*ca)
                                    .expect("sign precert");
                            format!(
                                "{{\"chain\":[\"{}\",\"{issuing}\"]}}",
                                B64.encode(cert.to_der().expect("der"))
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for p in parts {
            chains.extend(p.join().expect("precert thread"));
        }
    });
    eprintln!(
        "services bench: made {n} precertificates in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Arc::new(Pool {
        chains,
        next: AtomicUsize::new(0),
    })
}

/// A code-signing precertificate's TBS (poisoned), valid for an hour from a minute ago.
fn precert_template(issuer: &Certificate) -> TbsCertificate {
    let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let spki = key.verifying_key().to_public_key_der().expect("spki");
    let from = SystemTime::now() - Duration::from_secs(60);
    TbsCertificate {
        version: Version::V3,
        serial_number: x509_cert::serial_number::SerialNumber::new(&[1]).expect("serial"),
        signature: spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        },
        issuer: issuer.tbs_certificate.subject.clone(),
        validity: x509_cert::time::Validity {
            not_before: x509_cert::time::Time::try_from(from).expect("t"),
            not_after: x509_cert::time::Time::try_from(from + Duration::from_secs(3600))
                .expect("t"),
        },
        subject: "CN=bench leaf".parse().expect("name"),
        subject_public_key_info: spki::SubjectPublicKeyInfoOwned::from_der(spki.as_bytes())
            .expect("spki"),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(vec![
            sigvault::pki::ext_with(
                &x509_cert::ext::pkix::ExtendedKeyUsage(vec![
                    const_oid::db::rfc5280::ID_KP_CODE_SIGNING,
                ]),
                false,
            )
            .expect("eku"),
            Extension {
                extn_id: "1.3.6.1.4.1.11129.2.4.3".parse().expect("oid"),
                critical: true,
                extn_value: OctetString::new(vec![0x05, 0x00]).expect("octets"),
            },
        ]),
    }
}

fn ctlog_job(pool: &Arc<Pool>) -> Job {
    let pool = Arc::clone(pool);
    Arc::new(move |c: Client| {
        let pool = Arc::clone(&pool);
        Box::pin(async move {
            let Some(body) = pool.take() else {
                return Outcome::Exhausted;
            };
            let r = c
                .request(
                    Method::POST,
                    "/ct/ct/v1/add-pre-chain",
                    Some((body.as_bytes().to_vec(), "application/json")),
                )
                .await;
            match failure_kind(&r) {
                None => Outcome::Ok,
                Some(kind) => Outcome::Failed(kind),
            }
        })
    })
}

/// Returns the number of SCTs received.
async fn ctlog_rounds(plan: &Plan, stack: &Stack, ca: &Arc<dyn Signer>) -> Rounds {
    let tally = Arc::new(Tally::default());
    let pool = make_pool(plan.first_pool, stack, ca);
    // The first submission: wait until the tlog holds its lease and the chain is accepted.
    let c = client(stack.ct_port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = pool.take().expect("a precertificate");
    loop {
        let r = c
            .request(
                Method::POST,
                "/ct/ct/v1/add-pre-chain",
                Some((first.as_bytes().to_vec(), "application/json")),
            )
            .await;
        match failure_kind(&r) {
            None => {
                let v: serde_json::Value =
                    serde_json::from_slice(&r.expect("response").body).expect("SCT json");
                assert_eq!(v["sct_version"], 0, "{v}");
                assert!(v["signature"].is_string(), "{v}");
                break;
            }
            Some(kind) if Instant::now() < deadline => {
                eprintln!("services bench: waiting for the CT log: {kind}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(kind) => panic!(
                "the CT log never accepted a precertificate: {kind}\n{}",
                stack.logs()
            ),
        }
    }

    let cl = clients(stack.ct_port, plan.clients);

    let load = Load {
        bench: "services",

        clients: &cl,

        tally: &tally,
    };
    if !plan.measuring {
        let job = ctlog_job(&make_pool(plan.smoke_requests, stack, ca));
        let meter = stack.cpu_meter("ctlog");
        let (_, n) = load
            .closed(&job, plan.warmup, plan.measure, Some(&meter))
            .await;
        let job = ctlog_job(&make_pool(plan.smoke_requests, stack, ca));
        let lat = load.open(&job, 20.0, plan.p99).await;
        tally.report("services", "ctlog");
        assert_eq!(tally.total(), 0, "failed submissions\n{}", stack.logs());
        assert!(n > 0 || !lat.is_empty());
        return Rounds::Smoke(n + lat.len() as u64 + 1);
    }
    // Calibrate on the first pool, then make enough for the measured rounds.
    let (r0, _) = load
        .closed(
            &ctlog_job(&pool),
            Duration::ZERO,
            Duration::from_secs(2),
            None,
        )
        .await;
    eprintln!("services bench: ctlog calibration round {r0:.0} submissions/s");
    let cap = 300_000;
    let n = ((r0 * 1.6 * (plan.warmup + plan.measure).as_secs_f64()) as usize + 2000).min(cap);
    let pool = make_pool(n, stack, ca);
    let (rate, _) = load
        .closed(
            &ctlog_job(&pool),
            plan.warmup,
            plan.measure,
            Some(&stack.cpu_meter("ctlog")),
        )
        .await;
    let half = (rate / 2.0).max(1.0);
    let n = ((half * 1.2 * plan.p99.as_secs_f64()) as usize + 1000).min(cap);
    let pool = make_pool(n, stack, ca);
    let mut lat = load.open(&ctlog_job(&pool), half, plan.p99).await;
    let p = p99(&mut lat);
    tally.report("services", "ctlog");
    eprintln!(
        "services bench: ctlog: {} clients, {rate:.0} submissions/s closed loop; open loop at \
         {half:.0}/s: {} requests, {}",
        plan.clients,
        lat.len(),
        load::shape(&lat)
    );
    Rounds::Measured(Figures { rate, p99_ms: p })
}

// --- fulcio ------------------------------------------------------------------------------------

fn fulcio_job(body: &[u8], budget: u64) -> Job {
    let body: Arc<[u8]> = body.into();
    let left = Arc::new(AtomicU64::new(budget));
    Arc::new(move |c: Client| {
        let (body, left) = (Arc::clone(&body), Arc::clone(&left));
        Box::pin(async move {
            if left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
            {
                return Outcome::Exhausted;
            }
            let r = c
                .request(
                    Method::POST,
                    "/api/v2/signingCert",
                    Some((body.to_vec(), "application/json")),
                )
                .await;
            match failure_kind(&r) {
                None => Outcome::Ok,
                Some(kind) => Outcome::Failed(kind),
            }
        })
    })
}

/// Returns the number of certificates issued.
async fn fulcio_rounds(plan: &Plan, stack: &Stack) -> Rounds {
    let tally = Arc::new(Tally::default());
    // One checked request first: a leaf, the issuing CA and the root, with an SCT embedded.
    let c = client(stack.fulcio_port);
    let r = c
        .request(
            Method::POST,
            "/api/v2/signingCert",
            Some((stack.fulcio_body.clone(), "application/json")),
        )
        .await;
    if let Some(kind) = failure_kind(&r) {
        panic!("fulcio refused the request: {kind}\n{}", stack.logs());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&r.expect("response").body).expect("fulcio json");
    let certs = v["signedCertificateEmbeddedSct"]["chain"]["certificates"]
        .as_array()
        .expect("chain");
    assert_eq!(certs.len(), 3, "leaf, issuing CA, root: {v}");

    let cl = clients(stack.fulcio_port, plan.clients);

    let load = Load {
        bench: "services",

        clients: &cl,

        tally: &tally,
    };
    if !plan.measuring {
        let job = fulcio_job(&stack.fulcio_body, plan.smoke_requests as u64);
        let meter = stack.cpu_meter("fulcio");
        let (_, n) = load
            .closed(&job, plan.warmup, plan.measure, Some(&meter))
            .await;
        let job = fulcio_job(&stack.fulcio_body, plan.smoke_requests as u64);
        let lat = load.open(&job, 20.0, plan.p99).await;
        tally.report("services", "fulcio");
        assert_eq!(tally.total(), 0, "failed requests\n{}", stack.logs());
        return Rounds::Smoke(n + lat.len() as u64 + 1);
    }
    let (rate, _) = load
        .closed(
            &fulcio_job(&stack.fulcio_body, u64::MAX),
            plan.warmup,
            plan.measure,
            Some(&stack.cpu_meter("fulcio")),
        )
        .await;
    let half = (rate / 2.0).max(1.0);
    let mut lat = load
        .open(&fulcio_job(&stack.fulcio_body, u64::MAX), half, plan.p99)
        .await;
    let p = p99(&mut lat);
    tally.report("services", "fulcio");
    eprintln!(
        "services bench: fulcio: {} clients, {rate:.0} certs/s closed loop; open loop at \
         {half:.0}/s: {} requests, {}",
        plan.clients,
        lat.len(),
        load::shape(&lat)
    );
    Rounds::Measured(Figures { rate, p99_ms: p })
}
