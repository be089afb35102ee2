//! Benchmark: the timestamp authority as a process, over HTTP: `sigvault tsa serve` with its key
//! made by the key ceremony in the run's private SoftHSM2 token dir. Prints:
//!
//! ```text
//! BENCH tsa-timestamp <timestamps/s> timestamps/s limit=<raw signs/s> ratio=<ours/limit>
//! BENCH tsa-timestamp-p99 <ms> ms limit=10 ratio=<ms/10>
//! ```
//!
//! * The physical limit is the HSM: a bare `cryptoki` `C_Sign` loop (`CKM_ECDSA` over a 32-byte
//!   digest) on a P-256 key in a token of the same token dir, 2 threads with one session each,
//!   measured in the same run while the TSA is idle (the best of six 3 s rounds, three before
//!   the TSA's rounds and three after). A timestamp costs one HSM signature and no database.
//! * `tsa-timestamp`: DER `TimeStampReq`s (made by `openssl ts -query`, SHA-256, a nonce,
//!   certReq) posted to `/api/v1/timestamp` by 128 concurrent clients, each its own keep-alive
//!   connection, closed loop; 1 s warm-up, then 10 s measured. Each answer must be a 200 token.
//!   Goal: ratio >= 0.6.
//! * `tsa-timestamp-p99`: p99 from a request's *scheduled* time to its token, open loop at half
//!   the rate just measured; a latency, so `limit` is the goal (10 ms) and ratio <= 1 meets it.
//!
//! The TSA runs with the clock check off (these machines' kernels report the clock
//! unsynchronised); the check is one adjtimex(2) call per request when on. The load generator
//! runs in this process, on the same two cores. `TSA_BENCH_CLIENTS` changes the client count.
//!
//! Run through `tests/run.sh bench`. `cargo test --all-targets` runs this file without `--bench`:
//! then it is only a smoke run (a handful of requests, no BENCH lines).

#[path = "../common/mod.rs"]
mod common;
#[path = "load.rs"]
mod load;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::Method;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use secrecy::SecretString;
use sigvault::hsm::{Module, Pkcs11Uri};
use sigvault::http::client::Client;
use sigvault::signer::SignatureAlgorithm;

use common::procs::{Service, free_port};
use load::{Job, Load, Outcome, Tally, client, clients, p99};

const TOKENS: &[&str] = &[
    "tb-root",
    "tb-issuing",
    "tb-ctlog",
    "tb-rekor",
    "tb-tlog",
    "tb-tsa",
    "tb-raw",
];
/// The latency goal of the p99 line, ms (its `limit`).
const GOAL_P99_MS: f64 = 10.0;

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let have_env = std::env::var_os("SOFTHSM2_CONF").is_some()
        && std::env::var_os("SIGVAULT_TEST_WORK").is_some();
    if !have_env {
        eprintln!(
            "the tsa benchmark needs a private SoftHSM2 token dir: run it through `tests/run.sh \
             bench` (SOFTHSM2_CONF, SIGVAULT_TEST_WORK)"
        );
        if measuring || std::env::var_os("SIGVAULT_TEST_REQUIRE").is_some() {
            std::process::exit(2);
        }
        eprintln!("tsa bench smoke run skipped");
        return;
    }
    for t in TOKENS {
        common::token(TOKENS, t);
    }
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(measuring));
    eprintln!(
        "tsa bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

fn key_line(tag: &str, obj: &str) -> String {
    let t = common::token(TOKENS, tag);
    format!(
        "key = \"pkcs11:token={};object={obj}\"\npin = {{ file = \"{}\" }}",
        t.label,
        t.pin_file.display()
    )
}

/// The ceremony, TSA included, into this process's tokens; returns its output dir.
fn ceremony(dir: &Path) -> PathBuf {
    let cfg = dir.join("ceremony.toml");
    std::fs::write(
        &cfg,
        format!(
            "[hsm]\nmodule = \"{}\"\n[ceremony]\noutput_dir = \"{}\"\n[ceremony.root]\n{}\ncurve = \"P-256\"\nsubject = \"CN=bench root,O=sigvault\"\nvalidity_days = 3650\n[ceremony.issuing_ca]\n{}\ncurve = \"P-256\"\nsubject = \"CN=bench issuing,O=sigvault\"\nvalidity_days = 365\n[ceremony.ctlog]\n{}\n[ceremony.rekor]\n{}\n[ceremony.tlog]\n{}\n[ceremony.tsa]\n{}\nsubject = \"CN=bench tsa,O=sigvault\"\nvalidity_days = 365\n",
            common::module().display(),
            dir.join("ceremony").display(),
            key_line("tb-root", "root-ca"),
            key_line("tb-issuing", "issuing-ca"),
            key_line("tb-ctlog", "ctlog"),
            key_line("tb-rekor", "rekor"),
            key_line("tb-tlog", "tlog"),
            key_line("tb-tsa", "tsa"),
        ),
    )
    .expect("write");
    let (ok, o, e) = common::run(
        Command::new(common::sigvault_bin())
            .args(["ceremony", "--config"])
            .arg(&cfg),
    );
    assert!(ok, "ceremony: {o}{e}");
    dir.join("ceremony")
}

fn job(body: Arc<[u8]>, budget: u64) -> Job {
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
            match c
                .request(
                    Method::POST,
                    "/api/v1/timestamp",
                    Some((body.to_vec(), "application/timestamp-query")),
                )
                .await
            {
                // A granted TimeStampResp starts SEQUENCE { SEQUENCE { INTEGER 0 } ...
                Ok(r) if r.status.as_u16() == 200 && r.body.len() > 100 => Outcome::Ok,
                Ok(r) => Outcome::Failed(format!("HTTP {}", r.status.as_u16())),
                Err(e) => Outcome::Failed(e.to_string().chars().take(120).collect()),
            }
        })
    })
}

async fn run(measuring: bool) {
    let dir = common::scratch("tsa-bench");
    let cer = ceremony(&dir);
    let port = free_port();
    let conf = dir.join("tsa.toml");
    std::fs::write(
        &conf,
        format!(
            "[hsm]\nmodule = \"{}\"\n[tsa]\nlisten = \"127.0.0.1:{port}\"\n{}\ncert_chain = [\"{c}/tsa.pem\", \"{c}/root.pem\"]\nrequire_synchronised_clock = false\n",
            common::module().display(),
            key_line("tb-tsa", "tsa"),
            c = cer.display()
        ),
    )
    .expect("write");
    let svc = Service::start(&["tsa", "serve"], &conf, &dir, "tsa.log");

    // The request: openssl's, with a nonce and certReq, as a real client makes it.
    std::fs::write(dir.join("artifact"), b"bench").expect("write");
    let (ok, o, e) = common::run(
        Command::new("openssl")
            .args([
                "ts", "-query", "-data", "artifact", "-sha256", "-cert", "-out", "req.tsq",
            ])
            .current_dir(&dir),
    );
    assert!(ok, "openssl ts -query: {o}{e}");
    let body: Arc<[u8]> = std::fs::read(dir.join("req.tsq")).expect("req").into();

    // Wait for the first token.
    let c = client(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c
            .request(
                Method::POST,
                "/api/v1/timestamp",
                Some((body.to_vec(), "application/timestamp-query")),
            )
            .await;
        match r {
            Ok(r) if r.status.as_u16() == 200 => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!(
                "the TSA never granted a token: {:?}\n{}",
                other.map(|r| r.status),
                svc.log()
            ),
        }
    }

    // The raw limit, on a key of its own in a token of the same store.
    let module_path = common::module();
    let module = Module::load(&module_path).expect("module");
    let rt = common::token(TOKENS, "tb-raw");
    let uri: Pkcs11Uri = format!("pkcs11:token={};object=raw", rt.label)
        .parse()
        .expect("uri");
    let token = module
        .login(&uri, &SecretString::from(rt.pin.clone()))
        .expect("login");
    token
        .generate_ec_key("raw", b"\x01", SignatureAlgorithm::EcdsaP256Sha256)
        .expect("generate");
    let raw = Pkcs11::new(&module_path).expect("raw load");
    let _ = raw.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let round = if measuring {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(200)
    };
    let raw_rounds = || -> Vec<f64> {
        (0..3)
            .map(|_| load::raw_sign_rate(&raw, &rt.label, round))
            .collect()
    };
    let before = raw_rounds();

    let n_clients = if measuring {
        std::env::var("TSA_BENCH_CLIENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(128)
    } else {
        4
    };
    let tally = Arc::new(Tally::default());
    let cl = clients(port, n_clients);
    let load = Load {
        bench: "tsa",
        clients: &cl,
        tally: &tally,
    };
    let meter = load::CpuMeter::new("tsa", &[("tsa", svc.child.id())]);
    if !measuring {
        let (_, n) = load
            .closed(
                &job(Arc::clone(&body), 16),
                Duration::ZERO,
                Duration::from_secs(5),
                Some(&meter),
            )
            .await;
        let lat = load
            .open(
                &job(Arc::clone(&body), 16),
                20.0,
                Duration::from_millis(500),
            )
            .await;
        tally.report("tsa", "timestamps");
        assert_eq!(tally.total(), 0, "failed requests\n{}", svc.log());
        println!(
            "tsa bench smoke run ok ({} timestamps)",
            n + lat.len() as u64
        );
        return;
    }
    let (rate, _) = load
        .closed(
            &job(Arc::clone(&body), u64::MAX),
            Duration::from_secs(1),
            Duration::from_secs(10),
            Some(&meter),
        )
        .await;
    let half = (rate / 2.0).max(1.0);
    let mut lat = load
        .open(
            &job(Arc::clone(&body), u64::MAX),
            half,
            Duration::from_secs(8),
        )
        .await;
    let p = p99(&mut lat);
    tally.report("tsa", "timestamps");
    eprintln!(
        "tsa bench: {n_clients} clients, {rate:.0} timestamps/s closed loop; open loop at {half:.0}/s: {} requests, {}",
        lat.len(),
        load::shape(&lat)
    );
    let after = raw_rounds();
    let limit = before.iter().chain(&after).copied().fold(0.0, f64::max);
    eprintln!(
        "tsa bench: raw HSM P-256 C_Sign, 2 threads: {limit:.0} signs/s (best of {before:.0?} before the TSA's rounds and {after:.0?} after)"
    );
    println!(
        "BENCH tsa-timestamp {rate:.0} timestamps/s limit={limit:.0} ratio={:.3}",
        rate / limit
    );
    println!(
        "BENCH tsa-timestamp-p99 {p:.1} ms limit={GOAL_P99_MS:.0} ratio={:.3}",
        p / GOAL_P99_MS
    );
    drop(raw);
}
