//! The fuzz driver for the targets of `sigvault::fuzz` (every parser that sees untrusted bytes).
//!
//! For each target: every file of `tests/fuzz/corpus/<target>/` and `tests/fuzz/regressions/<target>/`
//! is replayed, then inputs mutated from them run for `SIGVAULT_FUZZ_EXECS` executions (a few
//! thousand in `cargo test`, seed 1, so CI is deterministic). An input whose outcome label the
//! target has not given before joins the in-memory corpus: the guidance that takes mutation
//! past each parser's first check. A panic is a crash: the input is written to
//! `target/fuzz-crashes/<target>/<hash>` and the run fails. One line per target:
//!
//! `FUZZ <target> execs=<n> crashes=<n> labels=<n> corpus=<n> secs=<s>`
//!
//! Long runs (README, "Fuzzing"): `tests/run.sh fuzz` (release build, 10^7 executions per target,
//! a fresh seed each time, printed). Environment: `SIGVAULT_FUZZ_EXECS`, `SIGVAULT_FUZZ_SEED`,
//! `SIGVAULT_FUZZ_TARGET` (one target by name), `SIGVAULT_FUZZ_SAVE=DIR` (write the grown corpus
//! there, to pick new seeds from).
//!
//! Why not a coverage-guided engine: cargo-fuzz needs a nightly compiler and afl.rs's `cargo afl`
//! builds AFL++ and its LLVM instrumentation at install time; this driver needs neither and runs
//! in every `cargo test`. The outcome labels are a coarse stand-in for coverage.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sigvault::fuzz::{TARGETS, Target};

/// Inputs longer than this are cut: the services' body limits are far below, and long inputs
/// only slow the run.
const MAX_INPUT: usize = 64 * 1024;
/// The in-memory corpus stops growing here (oldest seeds kept).
const MAX_CORPUS: usize = 4096;
/// And the set of outcome labels seen, so a target whose refusals quote much of the input does
/// not fill the memory.
const MAX_LABELS: usize = 100_000;

/// Bytes that mean something to the parsers: DER tags and lengths, JSON, PEM, TOML, note and
/// path syntax.
const DICTIONARY: &[&[u8]] = &[
    b"\x30\x82",
    b"\x30\x81",
    b"\x30\x80",
    b"\x02\x01\x00",
    b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02",
    b"\x04\x00",
    b"\x05\x00",
    b"\xa0\x03",
    b"\x01\x01\xff",
    b"\x17\x0d",
    b"\x18\x0f",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"\"\\u0000\"",
    b"-----BEGIN CERTIFICATE-----\n",
    b"-----END CERTIFICATE-----\n",
    b"-----BEGIN PUBLIC KEY-----\n",
    b"\n\n",
    b"\xe2\x80\x94 ",
    b"tile/",
    b"/entries/",
    b".p/",
    b"x001/",
    b"=",
    b"[[",
    b"]]",
    b"\n",
    b".",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
];

/// xorshift64*: small, seeded, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                input.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                let i = rng.below(len + 1);
                let j = rng.below(other.len());
                let n = 1 + rng.below((other.len() - j).min(256));
                input.splice(i..len.max(i).min(i + n), other[j..j + n].iter().copied());
            }
            6 => {
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                let i = rng.below(len + 1);
                input.splice(i..i, word.iter().copied());
            }
            7 if len > 0 => {
                // An interesting value over a byte: DER lengths and counts live there.
                let i = rng.below(len);
                input[i] = [0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0xff][rng.below(7)];
            }
            8 if len > 0 => input.truncate(rng.below(len)),
            _ if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                input.swap(a, b);
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(MAX_INPUT);
}

fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// FNV-1a, to name saved inputs.
fn name_of(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

struct Outcome {
    execs: u64,
    crashes: usize,
    labels: usize,
    corpus: usize,
    secs: f64,
}

fn run(name: &str, target: Target, execs: u64, seed: u64, root: &Path) -> Outcome {
    let started = Instant::now();
    let mut corpus = read_dir_files(&root.join("tests/fuzz/corpus").join(name));
    corpus.extend(read_dir_files(
        &root.join("tests/fuzz/regressions").join(name),
    ));
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let crash_dir = root.join("target/fuzz-crashes").join(name);
    let mut labels = HashSet::new();
    let mut crashes = 0usize;
    let done = std::cell::Cell::new(0u64);
    let exec = |input: &[u8], labels: &mut HashSet<String>| -> Option<bool> {
        done.set(done.get() + 1);
        match catch_unwind(AssertUnwindSafe(|| target(input))) {
            Ok(l) if labels.len() < MAX_LABELS => Some(labels.insert(l)),
            Ok(_) => Some(false),
            Err(p) => {
                let why = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                let _ = std::fs::create_dir_all(&crash_dir);
                let file = crash_dir.join(name_of(input));
                let _ = std::fs::write(&file, input);
                eprintln!("CRASH {name}: {why} (input in {})", file.display());
                None
            }
        }
    };
    let seeds = corpus.len();
    let show = std::env::var_os("SIGVAULT_FUZZ_SHOW_SEEDS").is_some();
    for (i, input) in corpus.iter().enumerate() {
        if show {
            let l = catch_unwind(AssertUnwindSafe(|| target(input))).unwrap_or_default();
            println!("seed {name} #{i}: {l}");
        }
        if exec(input, &mut labels).is_none() {
            crashes += 1;
        }
    }
    let mut rng = Rng(seed ^ name_of(name.as_bytes()).len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
    for _ in 0..rng.below(16) {
        rng.next();
    }
    // Mix the target's name in, so targets do not walk the same sequence.
    for b in name.bytes() {
        rng.0 = rng.0.rotate_left(5) ^ u64::from(b);
        rng.next();
    }
    while done.get() < execs {
        let parent = rng.below(corpus.len());
        let other = rng.below(corpus.len());
        let mut input = corpus[parent].clone();
        let donor = corpus[other].clone();
        mutate(&mut rng, &mut input, &donor);
        match exec(&input, &mut labels) {
            Some(true) if corpus.len() < MAX_CORPUS => corpus.push(input),
            Some(_) => {}
            None => crashes += 1,
        }
    }
    if let Ok(dir) = std::env::var("SIGVAULT_FUZZ_SAVE") {
        let dir = Path::new(&dir).join(name);
        let _ = std::fs::create_dir_all(&dir);
        for c in &corpus[seeds..] {
            let _ = std::fs::write(dir.join(name_of(c)), c);
        }
    }
    Outcome {
        execs: done.get(),
        crashes,
        labels: labels.len(),
        corpus: corpus.len(),
        secs: started.elapsed().as_secs_f64(),
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let execs: u64 = std::env::var("SIGVAULT_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let seed: u64 = std::env::var("SIGVAULT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let only = std::env::var("SIGVAULT_FUZZ_TARGET").ok();
    if let Some(t) = &only {
        assert!(
            TARGETS.iter().any(|(n, _)| n == t),
            "no fuzz target {t}; targets: {}",
            TARGETS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // A panic is counted and its input saved; the default hook's backtrace would only drown
    // the FUZZ lines.
    std::panic::set_hook(Box::new(|_| {}));
    println!("fuzz: seed {seed}, {execs} executions per target");
    let selected: Vec<(&str, Target)> = TARGETS
        .iter()
        .filter(|(n, _)| only.as_deref().is_none_or(|o| o == *n))
        .copied()
        .collect();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total_crashes = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(name, target)) = selected.get(i) else {
                        break;
                    };
                    let o = run(name, target, execs, seed, &root);
                    total_crashes.fetch_add(o.crashes, Ordering::Relaxed);
                    println!(
                        "FUZZ {name} execs={} crashes={} labels={} corpus={} secs={:.1}",
                        o.execs, o.crashes, o.labels, o.corpus, o.secs
                    );
                }
            });
        }
    });
    let crashes = total_crashes.load(Ordering::Relaxed);
    if crashes > 0 {
        eprintln!(
            "fuzz: {crashes} crashing input(s) saved under target/fuzz-crashes/; each becomes a regression (tests/fuzz/regressions/<target>/) with its fix"
        );
        std::process::exit(1);
    }
}
