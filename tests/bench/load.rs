//! Load generation shared by the service benchmarks (tests/bench/services.rs, rekor.rs): a job is
//! one request; closed loops measure throughput, open loops latency from each request's
//! scheduled time.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Closed loop: each client sends its next request as soon as the last one is answered. After
/// `warmup`, counts successful requests for `measure` (or until the work runs out); returns
/// (requests/s, successful requests in all).
pub async fn closed_loop(
    bench: &str,
    clients: &[Client],
    job: &Job,
    warmup: Duration,
    measure: Duration,
    tally: &Arc<Tally>,
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
    let (t0, n0) = (Instant::now(), ok.load(Ordering::Relaxed));
    wait(measure).await;
    let (secs, n1) = (t0.elapsed().as_secs_f64(), ok.load(Ordering::Relaxed));
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

/// Open loop: requests issued at `rate` per second for `length`, whether or not earlier ones
/// were answered; returns each request's time from its scheduled start to its answer, ms
/// (infinite for a failed one).
pub async fn open_loop(
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
