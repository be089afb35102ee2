//! Load generation shared by the service benchmarks (tests/bench/services.rs, rekor.rs): a job is
//! one request; closed loops measure throughput, open loops latency from each request's
//! scheduled time.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use sigvault::http::client::{Client, Endpoint};

/// What one request came to.
pub enum Outcome {
    Ok,
    /// Failed; the text names how (status or client error), for the error tally.
    Failed(String),
    /// Nothing left to send (precertificates used up, or the smoke run's budget spent).
    Exhausted,
}

pub type Job = Arc<dyn Fn(Client) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// A keep-alive client of `127.0.0.1:port` with a 30 s timeout.
pub fn client(port: u16) -> Client {
    let ep: Endpoint = format!("http://127.0.0.1:{port}")
        .parse()
        .expect("endpoint");
    Client::new(ep, None)
        .expect("client")
        .with_timeout(Duration::from_secs(30))
}

#[derive(Default)]
pub struct Tally {
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    pub fn add(&self, kind: String) {
        *self.errors.lock().expect("tally").entry(kind).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.errors.lock().expect("tally").values().sum()
    }

    pub fn report(&self, bench: &str, what: &str) {
        for (k, n) in self.errors.lock().expect("tally").iter() {
            eprintln!("{bench} bench: {what}: {n} failed: {k}");
        }
    }
}

/// Where the CPU goes during a measured round: the CPU time (user + system, from /proc) each
/// process under test spends per successful request, the load generator (this process) and
/// MariaDB (`SIGVAULT_TEST_DB_PID`, which tests/run.sh sets) included, and how busy the whole
/// machine was. It shows how far a figure is from the machine's budget (all CPUs' time per
/// request) and which process spends it.
pub struct CpuMeter {
    what: String,
    procs: Vec<(String, u32)>,
}

/// One reading: each process's CPU ticks, then the machine's (busy, all) ticks.
struct CpuSample {
    procs: Vec<Option<u64>>,
    machine: Option<(u64, u64)>,
}

impl CpuMeter {
    /// `procs`: (name, pid) of the services under test.
    pub fn new(what: &str, procs: &[(&str, u32)]) -> Self {
        let mut procs: Vec<(String, u32)> =
            procs.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        if let Some(pid) = std::env::var("SIGVAULT_TEST_DB_PID")
            .ok()
            .and_then(|p| p.parse().ok())
        {
            procs.push(("mariadb".into(), pid));
        }
        procs.push(("load generator".into(), std::process::id()));
        Self {
            what: what.into(),
            procs,
        }
    }

    fn sample(&self) -> CpuSample {
        CpuSample {
            procs: self.procs.iter().map(|(_, pid)| proc_ticks(*pid)).collect(),
            machine: machine_ticks(),
        }
    }

    /// The report line for `requests` successful requests between `a` and `b`.
    fn report(&self, bench: &str, a: &CpuSample, b: &CpuSample, requests: u64) -> String {
        let tick_us = 1e6 / clock_ticks_per_second();
        let per = |ticks: u64| ticks as f64 * tick_us / requests.max(1) as f64;
        let mut parts = Vec::new();
        let mut sum = 0.0;
        for (i, (name, _)) in self.procs.iter().enumerate() {
            if let (Some(x), Some(y)) = (a.procs[i], b.procs[i]) {
                let us = per(y.saturating_sub(x));
                sum += us;
                parts.push(format!("{name} {us:.0} µs"));
            }
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let machine = match (a.machine, b.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                let busy = (b1 - b0) as f64 / (t1 - t0) as f64;
                // All CPUs' time over the round, per request: what the machine can give one.
                let budget = per(t1 - t0);
                format!(
                    "; the machine was {:.0}% busy, {cpus} CPUs: {budget:.0} µs of CPU per request",
                    busy * 100.0
                )
            }
            _ => String::new(),
        };
        format!(
            "{bench} bench: {}: CPU per request: {} (sum {sum:.0} µs){machine}",
            self.what,
            parts.join(", ")
        )
    }
}

/// utime + stime of a process, in clock ticks.
fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The machine's (busy, all) clock ticks from the first line of /proc/stat (idle and iowait
/// are not busy).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let all: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((all - idle, all))
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One bench's load generator: its name (for what it prints), its clients and the tally its
/// failed requests go to.
pub struct Load<'a> {
    pub bench: &'a str,
    pub clients: &'a [Client],
    pub tally: &'a Arc<Tally>,
}

impl Load<'_> {
    /// Closed loop: each client sends its next request as soon as the last one is answered.
    /// After `warmup`, counts successful requests for `measure` (or until the work runs out);
    /// returns (requests/s, successful requests in all). With a `cpu` meter, also prints where
    /// the CPU went over the measured part.
    pub async fn closed(
        &self,
        job: &Job,
        warmup: Duration,
        measure: Duration,
        cpu: Option<&CpuMeter>,
    ) -> (f64, u64) {
        closed_loop(
            self.bench,
            self.clients,
            job,
            warmup,
            measure,
            self.tally,
            cpu,
        )
        .await
    }

    /// Open loop: requests issued at `rate` per second for `length`, whether or not earlier
    /// ones were answered; returns each request's time from its scheduled start to its answer,
    /// ms (infinite for a failed one).
    pub async fn open(&self, job: &Job, rate: f64, length: Duration) -> Vec<f64> {
        open_loop(self.clients, job, rate, length, self.tally).await
    }
}

async fn closed_loop(
    bench: &str,
    clients: &[Client],
    job: &Job,
    warmup: Duration,
    measure: Duration,
    tally: &Arc<Tally>,
    cpu: Option<&CpuMeter>,
) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicUsize::new(clients.len()));
    let mut tasks = Vec::new();
    for c in clients {
        let (c, job, stop, ok, running, tally) = (
            c.clone(),
            Arc::clone(job),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&running),
            Arc::clone(tally),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match job(c.clone()).await {
                    Outcome::Ok => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Failed(kind) => tally.add(kind),
                    Outcome::Exhausted => break,
                }
            }
            running.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    let wait = |d: Duration| {
        let running = Arc::clone(&running);
        async move {
            let end = Instant::now() + d;
            while Instant::now() < end && running.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait(warmup).await;
    let c0 = cpu.map(CpuMeter::sample);
    let (t0, n0) = (Instant::now(), ok.load(Ordering::Relaxed));
    wait(measure).await;
    let (secs, n1) = (t0.elapsed().as_secs_f64(), ok.load(Ordering::Relaxed));
    if let (Some(m), Some(c0)) = (cpu, c0) {
        eprintln!("{}", m.report(bench, &c0, &m.sample(), n1 - n0));
    }
    stop.store(true, Ordering::Relaxed);
    if running.load(Ordering::Relaxed) == 0 && secs + 0.05 < measure.as_secs_f64() {
        eprintln!(
            "{bench} bench: the work ran out after {secs:.1} s of the {:.0} s round",
            measure.as_secs_f64()
        );
    }
    for t in tasks {
        t.await.expect("client task");
    }
    ((n1 - n0) as f64 / secs, ok.load(Ordering::Relaxed))
}

async fn open_loop(
    clients: &[Client],
    job: &Job,
    rate: f64,
    length: Duration,
    tally: &Arc<Tally>,
) -> Vec<f64> {
    let n = (rate * length.as_secs_f64()).ceil().max(1.0) as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let c = clients[i as usize % clients.len()].clone();
        let (job, tally) = (Arc::clone(job), Arc::clone(tally));
        tasks.push(tokio::spawn(async move {
            match job(c).await {
                Outcome::Ok => Some(due.elapsed().as_secs_f64() * 1e3),
                Outcome::Failed(kind) => {
                    tally.add(kind);
                    Some(f64::INFINITY)
                }
                Outcome::Exhausted => None,
            }
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Some(ms) = t.await.expect("request task") {
            lat.push(ms);
        }
    }
    lat
}

pub fn p99(lat: &mut [f64]) -> f64 {
    assert!(!lat.is_empty(), "no latencies");
    lat.sort_by(f64::total_cmp);
    let i = ((lat.len() as f64 * 0.99).ceil() as usize).clamp(1, lat.len()) - 1;
    lat[i]
}

pub fn clients(port: u16, n: usize) -> Vec<Client> {
    // One client each (its own connection pool), so every task keeps its keep-alive connection.
    (0..n).map(|_| client(port)).collect()
}

/// The latency distribution (sorted by [`p99`]) in one line: p50, p90, p99, p99.9 and max.
pub fn shape(sorted: &[f64]) -> String {
    let at = |q: f64| {
        let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i]
    };
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        sorted[sorted.len() - 1]
    )
}

/// Bare `C_Sign` (CKM_ECDSA, 32-byte digest) on the `raw` key of token `label`: 2 threads, one
/// session each, for `round`; signatures per second.
#[allow(dead_code)] // not every bench measures the HSM
pub fn raw_sign_rate(raw: &Pkcs11, label: &str, round: Duration) -> f64 {
    let slot = raw
        .get_slots_with_initialized_token()
        .expect("slots")
        .into_iter()
        .find(|s| raw.get_token_info(*s).expect("info").label().trim_end() == label)
        .expect("slot");
    let threads = 2;
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let ready = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let session = raw.open_ro_session(slot).expect("session");
                let key = session
                    .find_objects(&[
                        Attribute::Class(ObjectClass::PRIVATE_KEY),
                        Attribute::Label(b"raw".to_vec()),
                    ])
                    .expect("find")[0];
                let digest = [0x5au8; 32];
                ready.wait();
                while !stop.load(Ordering::Relaxed) {
                    session
                        .sign(&Mechanism::Ecdsa, key, &digest)
                        .expect("raw sign");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        ready.wait();
        let start = Instant::now();
        std::thread::sleep(round);
        let done = count.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        done as f64 / secs
    })
}
