//! Benchmark: sigvault's PKCS#11 signer against a raw `cryptoki` sign loop, same token, same run.
//!
//! Prints `BENCH hsm-sign-p256-<n>t <ops/s> ops/s limit=<raw ops/s> ratio=<ours/raw>` for 1 and 2
//! threads on a SoftHSM2 token. Run through `tests/run.sh bench` (private SoftHSM token dir). Each
//! figure is the median of several interleaved rounds, so drift of the shared VM hits both sides
//! alike.
//!
//! With `SIGVAULT_BENCH_SECOND_MODULE` (a PKCS#11 library), `SIGVAULT_BENCH_SECOND_TOKEN` (the
//! label of an initialised token on it), `SIGVAULT_BENCH_SECOND_PIN_FILE` and
//! `SIGVAULT_BENCH_SECOND_NAME` (e.g. `tpm2`), as `tests/tpm2.sh --bench` sets them, the same is
//! measured on that token too (`BENCH hsm-sign-p256-<n>t-<name> ...`, its limit the raw loop on
//! that token), and each of its figures is printed beside SoftHSM2's of the same run
//! (`BENCH hsm-sign-p256-<n>t-<name>-vs-softhsm <ops/s> ops/s limit=<SoftHSM2's> ratio=...`):
//! the signature rates README's "Running on a real HSM" quotes.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use secrecy::SecretString;
use sigvault::hsm::{HsmOptions, Module, Pkcs11Uri};
use sigvault::signer::{SignatureAlgorithm, Signer};

const THREADS: [usize; 2] = [1, 2];

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and then this is only a
    // quick smoke run of the same code (debug build, short rounds, no BENCH lines).
    let measuring = std::env::args().any(|a| a == "--bench");
    let (round_len, rounds) = if measuring {
        (Duration::from_secs(2), 3)
    } else {
        (Duration::from_millis(100), 1)
    };
    if std::env::var_os("SOFTHSM2_CONF").is_none() {
        eprintln!(
            "run this benchmark through `tests/run.sh bench` (it needs a private SoftHSM token dir)"
        );
        std::process::exit(2);
    }
    let module_path = std::env::var("SIGVAULT_TEST_PKCS11_MODULE")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    let label = format!("bench-{}", std::process::id());
    let pin = format!("bench-pin-{}", std::process::id());
    let st = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            &label,
            "--pin",
            &pin,
            "--so-pin",
            "bench-so",
        ])
        .output()
        .expect("softhsm2-util");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let bench = Bench { round_len, rounds };
    let softhsm = bench.token(Path::new(&module_path), &label, &pin, HsmOptions::default());
    report(measuring, "", &softhsm);

    let Ok(second) = std::env::var("SIGVAULT_BENCH_SECOND_MODULE") else {
        return;
    };
    let var = |k: &str| {
        std::env::var(k)
            .unwrap_or_else(|_| panic!("{k} is needed with SIGVAULT_BENCH_SECOND_MODULE"))
    };
    let name = var("SIGVAULT_BENCH_SECOND_NAME");
    let token = var("SIGVAULT_BENCH_SECOND_TOKEN");
    let pin = std::fs::read_to_string(var("SIGVAULT_BENCH_SECOND_PIN_FILE")).expect("PIN file");
    // The second module may derive the public key's usage itself (tpm2-pkcs11 refuses it stated).
    let options = HsmOptions {
        public_key_usage_attributes: false,
        ..HsmOptions::default()
    };
    let other = bench.token(Path::new(&second), &token, pin.trim_end(), options);
    report(measuring, &format!("-{name}"), &other);
    if measuring {
        for ((threads, theirs, _), (_, soft, _)) in other.iter().zip(&softhsm) {
            println!(
                "BENCH hsm-sign-p256-{threads}t-{name}-vs-softhsm {theirs:.0} ops/s limit={soft:.0} ratio={:.3}",
                theirs / soft
            );
        }
    }
}

/// Per thread count: (threads, ours ops/s, raw ops/s).
type Figures = Vec<(usize, f64, f64)>;

fn report(measuring: bool, suffix: &str, figures: &Figures) {
    for (threads, o, l) in figures {
        assert!(*o > 0.0 && *l > 0.0, "no signatures were made");
        if measuring {
            println!(
                "BENCH hsm-sign-p256-{threads}t{suffix} {o:.0} ops/s limit={l:.0} ratio={:.3}",
                o / l
            );
        } else {
            println!("hsm_sign{suffix} smoke run ok ({threads} thread(s))");
        }
    }
}

struct Bench {
    round_len: Duration,
    rounds: usize,
}

impl Bench {
    /// Generate a P-256 key `bench` on the token `label` of `module_path` and measure sigvault's
    /// signer against the raw loop on it.
    fn token(&self, module_path: &Path, label: &str, pin: &str, options: HsmOptions) -> Figures {
        let uri: Pkcs11Uri = format!("pkcs11:token={label};object=bench")
            .parse()
            .expect("uri");
        let module = Module::load_with(module_path, options).expect("load module");
        let token = module
            .login(&uri, &SecretString::from(pin.to_owned()))
            .expect("login");
        token
            .generate_ec_key("bench", b"\xbe", SignatureAlgorithm::EcdsaP256Sha256)
            .expect("generate");
        let signer = Arc::new(token.signer(&uri).expect("signer"));

        // The raw side: its own cryptoki handle on the same library (same process-wide login),
        // one session per thread, a fixed digest, nothing but C_Sign in the loop.
        let raw = Pkcs11::new(module_path).expect("raw load");
        let _ = raw.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
        let slot = raw
            .get_slots_with_initialized_token()
            .expect("slots")
            .into_iter()
            .find(|s| raw.get_token_info(*s).expect("info").label().trim_end() == label)
            .expect("slot");

        let mut figures = Vec::new();
        for threads in THREADS {
            let mut ours = Vec::new();
            let mut limit = Vec::new();
            for round in 0..self.rounds {
                let raw_round = || {
                    run_threads(
                        self.round_len,
                        threads,
                        || {
                            let session = raw.open_ro_session(slot).expect("session");
                            let key = session
                                .find_objects(&[
                                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                                    Attribute::Label(b"bench".to_vec()),
                                ])
                                .expect("find")[0];
                            (session, key)
                        },
                        |(session, key), stop, count| {
                            let digest = [0x5au8; 32];
                            while !stop.load(Ordering::Relaxed) {
                                session
                                    .sign(&Mechanism::Ecdsa, *key, &digest)
                                    .expect("raw sign");
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                    )
                };
                let ours_round = || {
                    run_threads(
                        self.round_len,
                        threads,
                        || Arc::clone(&signer),
                        |s, stop, count| {
                            let msg = [0xa5u8; 120]; // about the size of an SCT's signed data
                            while !stop.load(Ordering::Relaxed) {
                                s.sign(&msg).expect("sign");
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                    )
                };
                // Alternate which side goes first, so warm-up and drift favour neither.
                if round % 2 == 0 {
                    limit.push(raw_round());
                    ours.push(ours_round());
                } else {
                    ours.push(ours_round());
                    limit.push(raw_round());
                }
            }
            figures.push((threads, median(&mut ours), median(&mut limit)));
        }
        figures
    }
}

/// Run `body` on `threads` threads for one round, after each thread's `setup` (untimed);
/// returns operations per second.
fn run_threads<T, S, F>(round: Duration, threads: usize, setup: S, body: F) -> f64
where
    S: Fn() -> T + Sync,
    F: Fn(&T, &AtomicBool, &AtomicU64) + Sync,
{
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let ready = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let state = setup();
                ready.wait();
                body(&state, &stop, &count);
            });
        }
        ready.wait();
        let start = Instant::now();
        let before = count.load(Ordering::Relaxed);
        std::thread::sleep(round);
        let done = count.load(Ordering::Relaxed) - before;
        let secs = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        done as f64 / secs
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
