//! Benchmark: Rekor uploads end to end, as processes, over HTTP: `sigvault rekor serve` on
//! `sigvault tlog serve`, both on the run's private MariaDB (the tlog's database and rekor's
//! search index database, apart), the Rekor key in the run's private SoftHSM2 token dir. Prints:
//!
//! ```text
//! BENCH rekor-upload <entries/s> entries/s limit=<commits/s> ratio=<ours/limit>
//! BENCH rekor-upload-p99 <ms> ms limit=50 ratio=<ms/50>
//! BENCH rekor-v2-upload <entries/s> entries/s limit=<commits/s> ratio=<ours/limit>
//! BENCH rekor-v2-upload-p99 <ms> ms limit=50 ratio=<ms/50>
//! ```
//!
//! * The physical limit is MariaDB's group commit: 16 connections (the tlog's production pool
//!   size), each doing back-to-back single-row `INSERT` + `COMMIT` transactions (~300-byte rows)
//!   into a plain InnoDB table `(id BIGINT PK, leaf_hash BINARY(32), data VARBINARY(1024))` of a
//!   database of its own on the same server; limit = total commits/s, measured in the same run
//!   while the services are idle, the best of six rounds: three after the first upload, before
//!   any load, and three after the uploads. The BENCH lines come after the last.
//! * `rekor-upload`: durable hashedrekord uploads per second, `POST /api/v1/log/entries`, each
//!   answered 201 with its inclusion proof (and checkpoint and SET). Distinct artifacts, one
//!   signing identity (a P-256 key and a self-signed certificate with an email SAN, made with
//!   rcgen), every upload signed and serialized before the clock starts, each a new entry (a 409
//!   duplicate counts as a failure). Closed loop from many concurrent clients, each its own
//!   keep-alive connection; 1 s warm-up, then 10 s measured. Goal: ratio >= 0.5.
//! * `rekor-upload-p99`: p99 latency from a request's *scheduled* time to its 201, open loop at
//!   half the rate just measured, 8 s. A latency: `limit` is the goal (50 ms) and `ratio` =
//!   value / goal, so ratio <= 1 is the goal. A failed request counts as infinitely late.
//! * `rekor-v2-upload`, `rekor-v2-upload-p99`: the same for `sigvault rekor-v2 serve` on the same
//!   tlog (a second tree, `t2`, whose origin is the v2 log's URL): `POST /api/v2/log/entries`
//!   with a hashedRekordRequestV002 (the certificate as DER, the signature over the artifact's
//!   SHA-256), each answered 201 with its TransparencyLogEntry once a checkpoint covering it is
//!   signed; against the same group-commit limit, measured in the same run. Goals as for v1.
//!
//! Set-up: this file writes its own tlog.toml (as `services.rs` does) rather than using
//! `common::procs::Tlog`, whose `batch_max_wait_ms = 10` and `lease_ttl_ms = 2000` are test
//! settings: the tlog runs with the production defaults (pool 16, batches of up to 512 entries or
//! 8 ms, 10 s lease). Its one tree `t` (origin `tlog.test - 7`, note name `tlog.test`) is signed
//! with the Rekor key (object `tlog`, made by OpenSC's pkcs11-tool), which rekor also uses for
//! SETs (`tree_id = 7`); rekor creates the tree at its start. rekor runs with its production
//! defaults but for the addresses, the key and `migrate_on_start`. The load generator runs in
//! this process, on the same two cores as the services and MariaDB.
//!
//! Knobs for experiments (the reported figures use the defaults): `REKOR_BENCH_CLIENTS`
//! (concurrent clients, default 128), `REKOR_BENCH_BATCH_WAIT_MS` (the tlog's
//! `batch_max_wait_ms`, default: the production default).
//!
//! Run through `tests/run.sh bench`. `cargo test --all-targets` runs this file without `--bench`:
//! then it is only a smoke run of the same set-up and code (a handful of uploads, each response's
//! inclusion proof and checkpoint verified, no BENCH lines).

#[path = "../common/mod.rs"]
mod common;
#[path = "load.rs"]
mod load;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};
use sigvault::http::client::Client;
use sigvault::{merkle, note};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};

use common::procs::{Service, free_port, keygen};
use load::{Job, Load, Outcome, Tally, client, clients, p99};

const TOKENS: &[&str] = &["rk-bench"];
/// The latency goal of the p99 line, ms (its `limit`).
const GOAL_P99_MS: f64 = 50.0;
/// The tlog tree, its origin and checkpoint signer name, and the tree ID rekor reports.
const TREE: &str = "t";
const TREE_ID: u64 = 7;
const NOTE_NAME: &str = "tlog.test";
/// Connections of the raw group-commit measurement (the tlog's production pool size).
const RAW_CONNECTIONS: usize = 16;
/// Size of each raw row's data, bytes.
const RAW_ROW_SIZE: usize = 300;
const EMAIL: &str = "bench@example.com";

/// Which API an upload goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    /// `POST /api/v1/log/entries` on `sigvault rekor serve`.
    V1,
    /// `POST /api/v2/log/entries` on `sigvault rekor-v2 serve`.
    V2,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::V1 => "/api/v1/log/entries",
            Api::V2 => "/api/v2/log/entries",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Api::V1 => "rekor",
            Api::V2 => "rekor-v2",
        }
    }
}

/// How long and how hard each phase runs.
struct Plan {
    measuring: bool,
    clients: usize,
    raw_warmup: Duration,
    raw: Duration,
    warmup: Duration,
    measure: Duration,
    p99: Duration,
    /// Uploads made before the first (calibration) round.
    first_pool: usize,
    /// Smoke run: uploads in the closed loop, then in the open loop.
    smoke_requests: usize,
}

impl Plan {
    fn new(measuring: bool) -> Self {
        let clients = std::env::var("REKOR_BENCH_CLIENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(128);
        if measuring {
            Plan {
                measuring,
                clients,
                raw_warmup: Duration::from_millis(500),
                raw: Duration::from_secs(4),
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
                raw_warmup: Duration::ZERO,
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
            "the rekor benchmark needs a private MariaDB and SoftHSM2 token dir: run it through \
             `tests/run.sh bench` (SIGVAULT_TEST_MYSQL_URL, SOFTHSM2_CONF, SIGVAULT_TEST_WORK)"
        );
        if measuring || std::env::var_os("SIGVAULT_TEST_REQUIRE").is_some() {
            std::process::exit(2);
        }
        eprintln!("rekor bench smoke run skipped");
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
        "rekor bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

async fn run(plan: &Plan) {
    let db = common::database("rekor_bench").expect("private MariaDB");
    let index_db = common::database("rekor_bench_index").expect("private MariaDB");
    let raw_db = common::database("rekor_bench_raw").expect("private MariaDB");
    let dir = common::scratch("rekor-bench");
    let stack = Stack::start(&dir, &db, &index_db);
    let id = Identity::new();
    let uploads = Uploads::new(&id);

    // The first upload: wait until the tlog holds its lease on the new tree; check it in full.
    first_upload(&stack, &uploads).await;

    // --- MariaDB's group-commit rate, measured while the services are idle. -------------------
    let raw = MySqlPoolOptions::new()
        .max_connections(RAW_CONNECTIONS as u32)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&raw_db.url())
        .await
        .expect("connect the raw pool");
    sqlx::query(
        "CREATE TABLE raw_commits (id BIGINT NOT NULL PRIMARY KEY, leaf_hash BINARY(32) NOT NULL, \
         data VARBINARY(1024) NOT NULL) ENGINE=InnoDB",
    )
    .execute(&raw)
    .await
    .expect("create the raw table");
    // The best of three rounds before the uploads and three after, as the services bench does
    // for the HSM: a round that shares the cores with something else reads low, and a low limit
    // would flatter the ratio.
    let next_row = Arc::new(AtomicU64::new(0));
    let mut before = Vec::new();
    for _ in 0..3 {
        before.push(raw_commit_rate(&raw, &next_row, plan.raw_warmup, plan.raw).await);
    }

    let measured = upload_rounds(plan, &stack, &uploads, Api::V1).await;
    first_upload_v2(&stack, &uploads).await;
    let measured_v2 = upload_rounds(plan, &stack, &uploads, Api::V2).await;
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(raw_commit_rate(&raw, &next_row, plan.raw_warmup, plan.raw).await);
    }
    raw.close().await;
    let limit = before.iter().chain(&after).copied().fold(0.0, f64::max);
    eprintln!(
        "rekor bench: raw MariaDB single-row INSERT + COMMIT, {RAW_CONNECTIONS} connections: \
         {limit:.0} commits/s (best of {before:.0?} before the uploads and {after:.0?} after)"
    );
    stack.report();
    for (name, measured) in [("rekor-upload", measured), ("rekor-v2-upload", measured_v2)] {
        match measured {
            Ok((rate, p)) => {
                println!(
                    "BENCH {name} {rate:.0} entries/s limit={limit:.0} ratio={:.3}",
                    rate / limit
                );
                println!(
                    "BENCH {name}-p99 {p:.1} ms limit={GOAL_P99_MS:.0} ratio={:.3}",
                    p / GOAL_P99_MS
                );
            }
            Err(n) => println!("rekor bench smoke run ok ({name}: {n} uploads)"),
        }
    }
}

// --- The services ------------------------------------------------------------------------------

/// tlog, rekor and rekor-v2 as child processes (stopped on drop, the personalities first).
struct Stack {
    rekor: Service,
    rekor_v2: Service,
    tlog: Service,
    port: u16,
    /// Rekor v2's port; its log's URL is `http://127.0.0.1:<port>`, the origin of tree `t2`.
    port_v2: u16,
    /// The Rekor key's SubjectPublicKeyInfo (DER): it signs checkpoints and SETs.
    spki: Vec<u8>,
}

impl Stack {
    /// Where the CPU goes per upload: rekor (v1 or v2), the tlog, MariaDB, the load generator.
    fn cpu_meter(&self, api: Api) -> load::CpuMeter {
        let personality = match api {
            Api::V1 => ("rekor", self.rekor.child.id()),
            Api::V2 => ("rekor-v2", self.rekor_v2.child.id()),
        };
        load::CpuMeter::new("uploads", &[personality, ("tlog", self.tlog.child.id())])
    }

    fn start(dir: &Path, db: &common::TestDb, index_db: &common::TestDb) -> Stack {
        // The Rekor key, generated by pkcs11-tool as object "tlog"; the tlog signs the tree's
        // checkpoints with it, rekor its SETs.
        let tt = common::token(TOKENS, "rk-bench");
        let pem = keygen(tt, dir);
        let spki = std::fs::read(dir.join("tlog.pub.der")).expect("public key DER");

        // tlog: production defaults but for the tree, the key and the addresses.
        common::write_private(&dir.join("db.url"), &db.url());
        let wait = match std::env::var("REKOR_BENCH_BATCH_WAIT_MS") {
            Ok(ms) => format!("batch_max_wait_ms = {ms}\n"),
            Err(_) => String::new(),
        };
        let tlog_sock = dir.join("tlog.sock");
        // Tree t2 is the Rekor v2 log's (the same key signs it here: one token, one bench).
        let port_v2 = free_port();
        std::fs::write(
            dir.join("tlog.toml"),
            format!(
                "[hsm]\nmodule = \"{module}\"\n[tlog]\ndatabase_url = {{ file = \"{d}/db.url\" }}\nmigrate_on_start = true\ninternal_listen = \"unix:{sock}\"\npublic_listen = \"127.0.0.1:{port}\"\nstate_dir = \"{d}/state\"\n{wait}[[tlog.trees]]\nname = \"{TREE}\"\norigin = \"{NOTE_NAME} - {TREE_ID}\"\nnote_name = \"{NOTE_NAME}\"\nkey = \"pkcs11:token={label};object=tlog\"\npin = {{ file = \"{pin}\" }}\n[[tlog.trees]]\nname = \"t2\"\norigin = \"127.0.0.1:{port_v2}\"\nnote_name = \"127.0.0.1:{port_v2}\"\nkey = \"pkcs11:token={label};object=tlog\"\npin = {{ file = \"{pin}\" }}\n",
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

        // rekor: creates the tree at start, then checks its checkpoint key and origin.
        common::write_private(&dir.join("index.url"), &index_db.url());
        let port = free_port();
        std::fs::write(
            dir.join("rekor.toml"),
            format!(
                "[hsm]\nmodule = \"{module}\"\n[rekor]\nlisten = \"127.0.0.1:{port}\"\nkey = \"pkcs11:token={label};object=tlog\"\npin = {{ file = \"{pin}\" }}\npublic_key_file = \"{pem}\"\ntree_id = {TREE_ID}\ntlog = [\"unix:{sock}\"]\ntree = \"{TREE}\"\ndatabase_url = {{ file = \"{d}/index.url\" }}\nmigrate_on_start = true\nmax_body_bytes = 200000\n",
                module = common::module().display(),
                label = tt.label,
                pin = tt.pin_file.display(),
                pem = pem.display(),
                sock = tlog_sock.display(),
                d = dir.display(),
            ),
        )
        .expect("write");
        check_config(&dir.join("rekor.toml"));
        let rekor = Service::start(
            &["rekor", "serve"],
            &dir.join("rekor.toml"),
            dir,
            "rekor.log",
        );
        // rekor-v2: production defaults but for the addresses; creates tree t2 at start.
        std::fs::write(
            dir.join("rekor-v2.toml"),
            format!(
                "[rekor_v2]\nlisten = \"127.0.0.1:{port_v2}\"\ntlog = [\"unix:{sock}\"]\n[[rekor_v2.logs]]\nurl = \"http://127.0.0.1:{port_v2}\"\ntree = \"t2\"\npublic_key_file = \"{pem}\"\n",
                sock = tlog_sock.display(),
                pem = pem.display(),
            ),
        )
        .expect("write");
        check_config(&dir.join("rekor-v2.toml"));
        let rekor_v2 = Service::start(
            &["rekor-v2", "serve"],
            &dir.join("rekor-v2.toml"),
            dir,
            "rekor-v2.log",
        );
        Stack {
            rekor,
            rekor_v2,
            tlog,
            port,
            port_v2,
            spki,
        }
    }

    fn logs(&self) -> String {
        let tail = |s: &str| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        format!(
            "--- tlog log ---\n{}\n--- rekor log ---\n{}\n--- rekor-v2 log ---\n{}",
            tail(&self.tlog.log()),
            tail(&self.rekor.log()),
            tail(&self.rekor_v2.log())
        )
    }

    /// Warnings and errors the services logged, and rekor's counters (stderr, for diagnosis).
    fn report(&self) {
        for (name, log) in [
            ("tlog", self.tlog.log()),
            ("rekor", self.rekor.log()),
            ("rekor-v2", self.rekor_v2.log()),
        ] {
            let bad: Vec<String> = log
                .lines()
                .filter(|l| {
                    let l = l.trim_start();
                    l.starts_with("WARN") || l.starts_with("ERROR")
                })
                .map(str::to_owned)
                .collect();
            if !bad.is_empty() {
                eprintln!(
                    "rekor bench: {name} logged {} warnings/errors, the last: {}",
                    bad.len(),
                    bad[bad.len() - 1]
                );
            }
        }
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

// --- Uploads -----------------------------------------------------------------------------------

/// The one signing identity: a P-256 key and a self-signed certificate with an email SAN.
struct Identity {
    key: p256::ecdsa::SigningKey,
    /// The certificate PEM, base64 (a hashedrekord's `publicKey.content`).
    cert_b64: String,
    /// The certificate DER, base64 (a v2 verifier's `x509Certificate.rawBytes`).
    cert_der_b64: String,
}

impl Identity {
    fn new() -> Identity {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&kp.serialize_der()).expect("pkcs8");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(EMAIL.try_into().expect("ia5"))];
        let cert = params.self_signed(&kp).expect("cert");
        Identity {
            key,
            cert_b64: B64.encode(cert.pem()),
            cert_der_b64: B64.encode(cert.der()),
        }
    }

    /// A Rekor v2 `CreateEntryRequest` for `artifact` (what sigstore-python sends).
    fn hashedrekord_v2(&self, artifact: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.key.sign(artifact);
        serde_json::to_vec(&serde_json::json!({"hashedRekordRequestV002": {
            "digest": B64.encode(Sha256::digest(artifact)),
            "signature": {
                "content": B64.encode(sig.to_der().as_bytes()),
                "verifier": {
                    "x509Certificate": {"rawBytes": self.cert_der_b64},
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                },
            },
        }}))
        .expect("json")
    }

    /// A hashedrekord upload body for `artifact`.
    fn hashedrekord(&self, artifact: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.key.sign(artifact);
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "signature": {
                    "content": B64.encode(sig.to_der().as_bytes()),
                    "publicKey": {"content": self.cert_b64},
                },
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(artifact))}},
            },
        }))
        .expect("json")
    }
}

/// Makes upload bodies for distinct artifacts of this run.
struct Uploads<'a> {
    id: &'a Identity,
    /// Makes this run's artifacts differ from any other run's.
    nonce: String,
    next: AtomicU64,
}

impl<'a> Uploads<'a> {
    fn new(id: &'a Identity) -> Self {
        let mut n = [0u8; 8];
        getrandom::getrandom(&mut n).expect("rand");
        Uploads {
            id,
            nonce: hex::encode(n),
            next: AtomicU64::new(0),
        }
    }

    fn one(&self, api: Api) -> Vec<u8> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let artifact = format!("sigvault rekor bench {} artifact {k:012}\n", self.nonce);
        match api {
            Api::V1 => self.id.hashedrekord(artifact.as_bytes()),
            Api::V2 => self.id.hashedrekord_v2(artifact.as_bytes()),
        }
    }

    /// `n` upload bodies (2 threads), each used once.
    fn pool(&self, n: usize, api: Api) -> Arc<Pool> {
        let started = Instant::now();
        let threads = 2;
        let per = n.div_ceil(threads);
        let mut bodies = Vec::with_capacity(n);
        std::thread::scope(|s| {
            let parts: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let count = per.min(n.saturating_sub(t * per));
                        (0..count).map(|_| self.one(api)).collect::<Vec<_>>()
                    })
                })
                .collect();
            for p in parts {
                bodies.extend(p.join().expect("upload thread"));
            }
        });
        if n > 100 {
            eprintln!(
                "rekor bench: made {n} uploads in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        Arc::new(Pool {
            bodies,
            next: AtomicUsize::new(0),
        })
    }
}

/// Upload bodies, used once each.
struct Pool {
    bodies: Vec<Vec<u8>>,
    next: AtomicUsize,
}

impl Pool {
    fn take(&self) -> Option<&[u8]> {
        self.bodies
            .get(self.next.fetch_add(1, Ordering::Relaxed))
            .map(Vec::as_slice)
    }
}

/// Check a 201 answer as a client would: one entry whose body is the leaf, its inclusion proof
/// verifies against the root of the checkpoint that comes with it, signed with the Rekor key.
fn check_entry(body: &[u8], spki: &[u8]) -> Result<u64, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("json: {e}"))?;
    let m = v.as_object().ok_or("not an object")?;
    let (entry_id, e) = match m.iter().next() {
        Some(x) if m.len() == 1 => x,
        _ => return Err(format!("{} entries in the answer", m.len())),
    };
    let leaf = B64
        .decode(e["body"].as_str().ok_or("no body")?)
        .map_err(|_| "body is not base64")?;
    let uuid = merkle::leaf_hash(&leaf);
    if *entry_id != format!("{TREE_ID:016x}{}", hex::encode(uuid)) {
        return Err(format!("entry ID {entry_id} is not of the body"));
    }
    let p = &e["verification"]["inclusionProof"];
    let index = p["logIndex"].as_u64().ok_or("no logIndex")?;
    let size = p["treeSize"].as_u64().ok_or("no treeSize")?;
    let hex32 = |s: &serde_json::Value| -> Result<[u8; 32], String> {
        hex::decode(s.as_str().ok_or("not a string")?)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| format!("{s} is not a hex hash"))
    };
    let root = hex32(&p["rootHash"])?;
    let hashes = p["hashes"]
        .as_array()
        .ok_or("no hashes")?
        .iter()
        .map(hex32)
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify_inclusion(&uuid, index, size, &hashes, &root)
        .map_err(|e| format!("inclusion proof: {e}"))?;
    let cp = p["checkpoint"].as_str().ok_or("no checkpoint")?;
    let cp_body = note::verify_note(cp, NOTE_NAME, spki).map_err(|e| format!("checkpoint: {e}"))?;
    let cp = note::Checkpoint::parse_body(cp_body).map_err(|e| format!("checkpoint: {e}"))?;
    if (cp.size, cp.root) != (size, root) {
        return Err("the checkpoint is not of the proof's tree".into());
    }
    if e["verification"]["signedEntryTimestamp"].as_str().is_none() {
        return Err("no SET".into());
    }
    Ok(index)
}

/// Check a Rekor v2 201 as a client would: a TransparencyLogEntry whose inclusion proof for the
/// canonicalized body verifies against its root, and whose checkpoint, signed by the log's key
/// under the log's origin, is for that tree.
fn check_entry_v2(body: &[u8], spki: &[u8], origin: &str) -> Result<u64, String> {
    let e: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("json: {e}"))?;
    let leaf = B64
        .decode(
            e["canonicalizedBody"]
                .as_str()
                .ok_or("no canonicalizedBody")?,
        )
        .map_err(|_| "body is not base64")?;
    let leaf = merkle::leaf_hash(&leaf);
    let p = &e["inclusionProof"];
    let int = |v: &serde_json::Value| -> Result<u64, String> {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{v} is not an integer string"))
    };
    let (index, size) = (int(&p["logIndex"])?, int(&p["treeSize"])?);
    let b64_32 = |v: &serde_json::Value| -> Result<[u8; 32], String> {
        B64.decode(v.as_str().ok_or("not a string")?)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| format!("{v} is not a base64 hash"))
    };
    let root = b64_32(&p["rootHash"])?;
    let hashes = p["hashes"]
        .as_array()
        .ok_or("no hashes")?
        .iter()
        .map(b64_32)
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify_inclusion(&leaf, index, size, &hashes, &root)
        .map_err(|e| format!("inclusion proof: {e}"))?;
    let cp = p["checkpoint"]["envelope"]
        .as_str()
        .ok_or("no checkpoint")?;
    let cp_body = note::verify_note(cp, origin, spki).map_err(|e| format!("checkpoint: {e}"))?;
    let cp = note::Checkpoint::parse_body(cp_body).map_err(|e| format!("checkpoint: {e}"))?;
    if (cp.origin.as_str(), cp.size, cp.root) != (origin, size, root) {
        return Err("the checkpoint is not of the proof's tree".into());
    }
    Ok(index)
}

/// The first Rekor v2 upload, once rekor-v2 is ready; its answer checked in full.
async fn first_upload_v2(stack: &Stack, uploads: &Uploads<'_>) {
    let c = client(stack.port_v2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c
        .request(Method::GET, "/readyz", None)
        .await
        .is_ok_and(|r| r.status == 200)
    {
        assert!(
            Instant::now() < deadline,
            "rekor-v2 never became ready\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c
        .request(
            Method::POST,
            Api::V2.path(),
            Some((uploads.one(Api::V2), "application/json")),
        )
        .await;
    if let Some(kind) = failure_kind(&r) {
        panic!("the first Rekor v2 upload: {kind}\n{}", stack.logs());
    }
    let origin = format!("127.0.0.1:{}", stack.port_v2);
    let index = check_entry_v2(&r.expect("response").body, &stack.spki, &origin)
        .unwrap_or_else(|e| panic!("the first Rekor v2 upload's answer: {e}"));
    assert!(index > 0, "no client entry gets index 0");
}

async fn first_upload(stack: &Stack, uploads: &Uploads<'_>) {
    let c = client(stack.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Ready means a tlog instance sequences the tree: then the first upload goes through.
    while !c
        .request(Method::GET, "/readyz", None)
        .await
        .is_ok_and(|r| r.status == 200)
    {
        assert!(
            Instant::now() < deadline,
            "rekor never became ready\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = uploads.one(Api::V1);
    loop {
        let r = c
            .request(
                Method::POST,
                "/api/v1/log/entries",
                Some((body.clone(), "application/json")),
            )
            .await;
        match failure_kind(&r) {
            None => {
                let index = check_entry(&r.expect("response").body, &stack.spki)
                    .unwrap_or_else(|e| panic!("the first upload's answer: {e}"));
                assert!(index > 0, "no client entry gets index 0");
                return;
            }
            Some(kind) if Instant::now() < deadline => {
                eprintln!("rekor bench: waiting for the log: {kind}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(kind) => panic!("rekor never accepted an upload: {kind}\n{}", stack.logs()),
        }
    }
}

// --- The raw limit -----------------------------------------------------------------------------

/// MariaDB's group-commit rate: `RAW_CONNECTIONS` tasks, each on its own connection doing
/// back-to-back single-row `INSERT` + `COMMIT` transactions (row ids from `next`, shared by the
/// rounds); after `warmup`, commits per second over `len`.
async fn raw_commit_rate(
    raw: &MySqlPool,
    next: &Arc<AtomicU64>,
    warmup: Duration,
    len: Duration,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..RAW_CONNECTIONS {
        let (raw, stop, done, next) = (
            raw.clone(),
            Arc::clone(&stop),
            Arc::clone(&done),
            Arc::clone(next),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = raw.acquire().await.expect("raw connection");
            while !stop.load(Ordering::Relaxed) {
                let id = next.fetch_add(1, Ordering::Relaxed);
                let data = raw_row(id);
                let mut tx = sqlx::Acquire::begin(&mut *conn).await.expect("begin");
                sqlx::query("INSERT INTO raw_commits (id, leaf_hash, data) VALUES (?, ?, ?)")
                    .bind(id as i64)
                    .bind(merkle::leaf_hash(&data).to_vec())
                    .bind(data)
                    .execute(&mut *tx)
                    .await
                    .expect("raw insert");
                tx.commit().await.expect("raw commit");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    let (t0, c0) = (Instant::now(), done.load(Ordering::Relaxed));
    tokio::time::sleep(len).await;
    let (t1, c1) = (Instant::now(), done.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("raw task");
    }
    let rate = (c1 - c0) as f64 / (t1 - t0).as_secs_f64();
    assert!(rate > 0.0, "no raw commit in the round");
    rate
}

/// A distinct ~300-byte row.
fn raw_row(n: u64) -> Vec<u8> {
    let mut v = format!("sigvault rekor bench raw row {n:020} ").into_bytes();
    v.resize(RAW_ROW_SIZE, b'x');
    v
}

// --- Load generation ---------------------------------------------------------------------------

/// `None` for a 201 with an inclusion proof, else what went wrong.
fn failure_kind(
    r: &Result<sigvault::http::client::Response, sigvault::http::client::ClientError>,
) -> Option<String> {
    match r {
        Ok(resp)
            if resp.status.as_u16() == 201
                && memchr_str(&resp.body, b"\"inclusionProof\"").is_some() =>
        {
            None
        }
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

fn memchr_str(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// --- rekor -------------------------------------------------------------------------------------

/// Upload the pool's bodies one each to `api`; with `check` (the smoke run: the key, and the v2
/// log's origin), check every answer in full.
fn upload_job(pool: &Arc<Pool>, api: Api, check: Option<(&[u8], &str)>) -> Job {
    let pool = Arc::clone(pool);
    let check: Option<(Arc<[u8]>, Arc<str>)> = check.map(|(k, o)| (k.into(), o.into()));
    Arc::new(move |c: Client| {
        let (pool, check) = (Arc::clone(&pool), check.clone());
        Box::pin(async move {
            let Some(body) = pool.take() else {
                return Outcome::Exhausted;
            };
            let r = c
                .request(
                    Method::POST,
                    api.path(),
                    Some((body.to_vec(), "application/json")),
                )
                .await;
            match (failure_kind(&r), check) {
                (None, None) => Outcome::Ok,
                (None, Some((spki, origin))) => {
                    let body = &r.expect("response").body;
                    let checked = match api {
                        Api::V1 => check_entry(body, &spki),
                        Api::V2 => check_entry_v2(body, &spki, &origin),
                    };
                    match checked {
                        Ok(_) => Outcome::Ok,
                        Err(e) => Outcome::Failed(format!("bad answer: {e}")),
                    }
                }
                (Some(kind), _) => Outcome::Failed(kind),
            }
        })
    })
}

/// The measured rounds: `Ok` with the closed-loop rate and the open-loop p99 (ms); in the smoke
/// run `Err` with the number of entries uploaded.
async fn upload_rounds(
    plan: &Plan,
    stack: &Stack,
    uploads: &Uploads<'_>,
    api: Api,
) -> Result<(f64, f64), u64> {
    let name = api.name();
    let tally = Arc::new(Tally::default());
    let port = match api {
        Api::V1 => stack.port,
        Api::V2 => stack.port_v2,
    };
    let cl = clients(port, plan.clients);
    let load = Load {
        bench: name,
        clients: &cl,
        tally: &tally,
    };
    if !plan.measuring {
        let origin = format!("127.0.0.1:{}", stack.port_v2);
        let check = Some((stack.spki.as_slice(), origin.as_str()));
        let job = upload_job(&uploads.pool(plan.smoke_requests, api), api, check);
        let meter = stack.cpu_meter(api);
        let (_, n) = load
            .closed(&job, plan.warmup, plan.measure, Some(&meter))
            .await;
        let job = upload_job(&uploads.pool(plan.smoke_requests, api), api, check);
        let lat = load.open(&job, 20.0, plan.p99).await;
        tally.report("rekor", name);
        assert_eq!(tally.total(), 0, "failed uploads\n{}", stack.logs());
        assert_eq!(n + lat.len() as u64, 2 * plan.smoke_requests as u64);
        return Err(n + lat.len() as u64 + 1);
    }
    // Calibrate on a first pool, then make enough for the measured rounds.
    let (r0, _) = load
        .closed(
            &upload_job(&uploads.pool(plan.first_pool, api), api, None),
            Duration::ZERO,
            Duration::from_secs(2),
            None,
        )
        .await;
    eprintln!("rekor bench: {name}: calibration round {r0:.0} uploads/s");
    let cap = 300_000;
    let n = ((r0 * 1.6 * (plan.warmup + plan.measure).as_secs_f64()) as usize + 2000).min(cap);
    let pool = uploads.pool(n, api);
    let (rate, _) = load
        .closed(
            &upload_job(&pool, api, None),
            plan.warmup,
            plan.measure,
            Some(&stack.cpu_meter(api)),
        )
        .await;
    let half = (rate / 2.0).max(1.0);
    let n = ((half * 1.2 * plan.p99.as_secs_f64()) as usize + 1000).min(cap);
    let pool = uploads.pool(n, api);
    let mut lat = load
        .open(&upload_job(&pool, api, None), half, plan.p99)
        .await;
    let p = p99(&mut lat);
    tally.report("rekor", name);
    eprintln!(
        "rekor bench: {name}: {} clients, {rate:.0} uploads/s closed loop; open loop at {half:.0}/s: {} \
         requests, {}",
        plan.clients,
        lat.len(),
        load::shape(&lat)
    );
    Ok((rate, p))
}
