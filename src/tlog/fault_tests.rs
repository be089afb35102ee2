//! Deterministic fault tests of the log engine on [`MemoryStorage`] (in the manner of
//! sunlight's `TestSequenceErrors`): seeded steps of concurrent appends, with commits that fail
//! before or after persisting, slow commits, transient read failures, lost leases and crashes
//! (the engine dropped between two storage calls and a fresh one started on the same tables).
//! After every step: every acknowledged entry is at the index it was given, with its bytes; the
//! stored tree is the one its entries make, and only grows; every checkpoint served or stored
//! verifies, and no two of one size differ; the inclusion and consistency proofs served verify.
//!
//! `SIGVAULT_FAULT_SEED` and `SIGVAULT_FAULT_STEPS` choose the seed and the number of steps
//! (default: a short run from a fixed seed). The workload and the faults follow from the seed;
//! the engine's own timers run on the real clock (lease renewals, batch deadlines), so a seed
//! replays the same faults against, at most, slightly different batch boundaries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::memory_storage::{CommitFault, MemoryStorage};
use super::*;
use crate::merkle::MemoryTree;
use crate::merkle::{verify_consistency, verify_inclusion};
use crate::note::{Checkpoint, verify_note};
use crate::signer::test_support::SoftP256;

const TREE: &str = "t";
const NOTE_NAME: &str = "faults.sigvault.test";
const TTL: Duration = Duration::from_millis(60);

/// xorshift64*: small, seeded, ours.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True `per_mille` times in 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

fn options(instance: String) -> ServiceOptions {
    ServiceOptions {
        sequencer: SequencerOptions {
            max_batch: 8,
            max_wait: Duration::from_millis(1),
            lease_ttl: TTL,
            queue_limit: 1024,
        },
        max_entry_size: 65_535,
        instance,
        state_dir: None,
    }
}

/// What the test knows to be true of the log.
struct Model {
    key: Vec<u8>,
    /// Acknowledged entries: index -> bytes.
    acked: BTreeMap<u64, Vec<u8>>,
    /// Acknowledged bytes -> index (the identity is the leaf hash).
    index_of: HashMap<Vec<u8>, u64>,
    /// The stored tree as seen at the last check, with its root at every size.
    tree: MemoryTree,
    roots: Vec<Hash>,
    /// Checkpoint body by size, of every checkpoint seen.
    checkpoints: HashMap<u64, String>,
    /// The largest head served.
    served: u64,
    submitted: Vec<Vec<u8>>,
}

#[derive(Default, Debug)]
struct Stats {
    appends: u64,
    acked: u64,
    duplicates: u64,
    refused: u64,
    crashes: u64,
    faults: u64,
    proofs: u64,
    stale: u64,
}

impl Model {
    fn new(key: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            acked: BTreeMap::new(),
            index_of: HashMap::new(),
            tree: MemoryTree::new(),
            roots: Vec::new(),
            checkpoints: HashMap::new(),
            served: 0,
            submitted: Vec::new(),
        }
    }

    fn root_at(&self, size: u64) -> Result<Hash, String> {
        if size == 0 {
            return Ok(crate::merkle::empty_root());
        }
        self.roots
            .get(size as usize - 1)
            .copied()
            .ok_or_else(|| format!("no stored tree of size {size} seen yet"))
    }

    /// Verify a checkpoint and check it against the stored tree and every other one of its size.
    fn checkpoint(&mut self, text: &str, what: &str) -> Result<Checkpoint, String> {
        let body = verify_note(text, NOTE_NAME, &self.key)
            .map_err(|e| format!("{what}: checkpoint does not verify: {e}"))?;
        let cp = Checkpoint::parse_body(body).map_err(|e| format!("{what}: {e}"))?;
        let root = self.root_at(cp.size)?;
        if cp.root != root {
            return Err(format!(
                "{what}: checkpoint of size {} has root {}, the stored tree {}",
                cp.size,
                hex::encode(cp.root),
                hex::encode(root)
            ));
        }
        match self.checkpoints.get(&cp.size) {
            Some(b) if b != body => {
                return Err(format!(
                    "{what}: two checkpoints of size {} differ:\n{b}\n{body}",
                    cp.size
                ));
            }
            Some(_) => {}
            None => {
                self.checkpoints.insert(cp.size, body.to_owned());
            }
        }
        Ok(cp)
    }

    /// Check the stored tables against what was acknowledged and seen before.
    fn check_storage(&mut self, storage: &MemoryStorage, tree: u64) -> Result<(), String> {
        let (row, entries) = storage
            .snapshot(tree)
            .ok_or_else(|| "the tree is gone".to_string())?;
        if entries.len() as u64 != row.size {
            return Err(format!(
                "the tree row says size {} but {} entries are stored",
                row.size,
                entries.len()
            ));
        }
        let seen = self.tree.size() as usize;
        if entries.len() < seen {
            return Err(format!(
                "the stored tree shrank from {seen} to {}",
                entries.len()
            ));
        }
        for (i, (l, (data, stored))) in self.tree.leaves().iter().zip(&entries).enumerate() {
            if l != stored || crate::merkle::leaf_hash(data) != *stored {
                return Err(format!("stored entry {i} changed"));
            }
        }
        for (data, leaf) in &entries[seen..] {
            if crate::merkle::leaf_hash(data) != *leaf {
                return Err("a stored leaf hash is not its data's".into());
            }
            self.tree.push(*leaf);
            self.roots.push(self.tree.root());
        }
        for (index, data) in &self.acked {
            match entries.get(*index as usize) {
                Some((d, _)) if d == data => {}
                _ => {
                    return Err(format!(
                        "acknowledged entry {index} is not stored at its index"
                    ));
                }
            }
        }
        if row.root != self.root_at(row.size)? {
            return Err("the stored root is not the root of the stored entries".into());
        }
        self.checkpoint(&row.checkpoint, "stored head")?;
        Ok(())
    }
}

/// Errors the faults may cause: the storage failed, the instance is (no longer) active, the
/// batch's commit failed.
fn expected(e: &TlogError) -> bool {
    e.is_transient() || matches!(e, TlogError::Internal(m) if m.starts_with("batch not committed"))
}

type Svc = Arc<LogService<MemoryStorage>>;

async fn start(
    storage: &MemoryStorage,
    signer: &Arc<dyn crate::signer::Signer>,
    instance: String,
) -> Svc {
    let spec = TreeSpec {
        name: TREE.into(),
        origin: "faults.sigvault.test/t".into(),
        note_name: NOTE_NAME.into(),
        signer: Arc::clone(signer),
        frozen: false,
    };
    let mut spec = Some(spec);
    for _ in 0..1000 {
        let s = spec.take().expect("spec");
        let keep = TreeSpec {
            name: s.name.clone(),
            origin: s.origin.clone(),
            note_name: s.note_name.clone(),
            signer: Arc::clone(&s.signer),
            frozen: false,
        };
        match LogService::start(storage.clone(), vec![s], options(instance.clone())).await {
            Ok(svc) => return svc,
            Err(e) if e.is_transient() => spec = Some(keep),
            Err(e) => panic!("the service does not start: {e}"),
        }
    }
    panic!("the service does not start")
}

/// The engine instances sharing the tables: each takes the lease when it is free, so a lost
/// lease is taken over by a real second writer.
const INSTANCES: u32 = 2;

async fn start_all(
    storage: &MemoryStorage,
    signer: &Arc<dyn crate::signer::Signer>,
    generation: u32,
) -> Vec<Svc> {
    let mut out = Vec::new();
    for k in 0..INSTANCES {
        out.push(start(storage, signer, format!("instance-{generation}-{k}")).await);
    }
    out
}

/// Wait (up to `limit`) for an instance to be the active sequencer.
async fn active(svcs: &[Svc], limit: Duration) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if svcs
            .iter()
            .any(|svc| svc.tree(TREE).is_ok_and(|t| t.is_active()))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

/// Serve-side checks: the head, proofs of `fresh` and a few other acknowledged entries, a
/// consistency proof from an earlier checkpoint.
async fn check_served(
    svc: &Svc,
    m: &mut Model,
    rng: &mut Rng,
    fresh: &[u64],
    stats: &mut Stats,
    covering: bool,
) -> Result<(), String> {
    let is_active = || svc.tree(TREE).is_ok_and(|t| t.is_active());
    let was_active = is_active();
    let head = match svc.head(TREE).await {
        Ok(h) => h,
        Err(e) if expected(&e) => return Ok(()),
        Err(e) => return Err(format!("head: {e}")),
    };
    m.checkpoint(&head.checkpoint, "served head")?;
    // A standby serves the stored head, which only grows; so does the active sequencer's (its
    // lease keeps every other writer out). Only an instance losing the lease as it answers may
    // serve an older head, still a checkpoint of this one tree.
    if head.size < m.served {
        if was_active && is_active() {
            return Err(format!(
                "the active sequencer served a head of size {} after one of size {} was served \
                 (stored size {})",
                head.size,
                m.served,
                m.tree.size()
            ));
        }
        stats.stale += 1;
    }
    m.served = m.served.max(head.size);
    let mut picks: Vec<u64> = fresh.to_vec();
    let acked: Vec<u64> = m.acked.keys().copied().collect();
    for _ in 0..3 {
        if !acked.is_empty() {
            picks.push(acked[rng.below(acked.len() as u64) as usize]);
        }
    }
    for index in picks {
        let Some(data) = m.acked.get(&index).cloned() else {
            continue;
        };
        if index >= head.size {
            if !covering {
                stats.stale += 1;
                continue;
            }
            return Err(format!(
                "acknowledged entry {index} is beyond the served head {}",
                head.size
            ));
        }
        match svc.inclusion_proof(TREE, index, head.size).await {
            Ok(p) => {
                verify_inclusion(
                    &crate::merkle::leaf_hash(&data),
                    index,
                    head.size,
                    &p,
                    &head.root,
                )
                .map_err(|e| format!("inclusion proof of {index} at {}: {e}", head.size))?;
                stats.proofs += 1;
            }
            Err(e) if expected(&e) => {}
            Err(e) => return Err(format!("inclusion proof of {index} at {}: {e}", head.size)),
        }
        match svc.entries(TREE, index, index + 1, 1).await {
            Ok(got) if got.len() == 1 && got[0].data == data => {}
            Ok(_) => return Err(format!("entry {index} is not served with its bytes")),
            Err(e) if expected(&e) => {}
            Err(e) => return Err(format!("entry {index}: {e}")),
        }
    }
    let sizes: Vec<u64> = m
        .checkpoints
        .keys()
        .copied()
        .filter(|s| *s <= head.size)
        .collect();
    if !sizes.is_empty() {
        let first = sizes[rng.below(sizes.len() as u64) as usize];
        match svc.consistency_proof(TREE, first, head.size).await {
            Ok(p) => {
                verify_consistency(first, head.size, &p, &m.root_at(first)?, &head.root)
                    .map_err(|e| format!("consistency proof {first} -> {}: {e}", head.size))?;
                stats.proofs += 1;
            }
            Err(e) if expected(&e) => {}
            Err(e) => return Err(format!("consistency proof {first} -> {}: {e}", head.size)),
        }
    }
    Ok(())
}

async fn run(seed: u64, steps: u64) -> Result<Stats, (u64, String)> {
    let mut rng = Rng::new(seed);
    let signer: Arc<dyn crate::signer::Signer> = Arc::new(SoftP256::random());
    let mut storage = MemoryStorage::new();
    let mut m = Model::new(signer.public_key_der());
    let mut stats = Stats::default();
    let mut generation = 0;
    let mut svcs = start_all(&storage, &signer, generation).await;
    svcs[0]
        .create_tree(TREE)
        .await
        .map_err(|e| (0, format!("create: {e}")))?;
    for other in &svcs[1..] {
        // Started before the tree existed: it learns of the tree here.
        let _ = other.create_tree(TREE).await;
    }
    let tree = svcs[0]
        .tree(TREE)
        .ok()
        .and_then(|t| t.db_id())
        .ok_or((0, "no tree id".to_string()))?;
    let mut idle = Duration::ZERO;
    for step in 0..steps {
        let fail = |e: String| (step, e);
        // Crashed engines are dropped and fresh ones started on the same tables.
        if storage.is_dead() {
            for svc in svcs.drain(..) {
                svc.abort();
            }
            generation += 1;
            stats.crashes += 1;
            storage = storage.restart();
            svcs = start_all(&storage, &signer, generation).await;
            // Everything acknowledged survives the crash: check all of it now.
            m.check_storage(&storage, tree).map_err(fail)?;
        }
        if !active(&svcs, Duration::from_millis(500)).await {
            idle += Duration::from_millis(500);
            if idle > Duration::from_secs(10) {
                return Err(fail("no engine has been active for 10 s".into()));
            }
        } else {
            idle = Duration::ZERO;
        }

        // Faults for this step.
        if rng.chance(150) {
            stats.faults += 1;
            storage.arm_commit(match rng.below(3) {
                0 => CommitFault::FailBefore,
                1 => CommitFault::FailAfter,
                _ => {
                    CommitFault::Slow(Duration::from_millis(rng.below(2 * TTL.as_millis() as u64)))
                }
            });
        }
        if rng.chance(40) {
            stats.faults += 1;
            storage.fail_call(rng.below(8));
        }
        if rng.chance(25) {
            stats.faults += 1;
            storage.steal_lease(tree, "intruder", TTL);
        }
        if rng.chance(40) {
            stats.faults += 1;
            storage.slow_lease_reply(
                None,
                Duration::from_millis(rng.below(TTL.as_millis() as u64)),
            );
        }
        if rng.chance(15) {
            storage.crash_after(rng.below(12));
        }

        // Concurrent appenders, each to one instance: new entries, and some resubmitted ones.
        let n = 1 + rng.below(6);
        let mut tasks = Vec::new();
        for j in 0..n {
            let data = if !m.submitted.is_empty() && rng.chance(200) {
                m.submitted[rng.below(m.submitted.len() as u64) as usize].clone()
            } else {
                let len = 1 + rng.below(64) as usize;
                let mut d = format!("{seed}/{step}/{j}/").into_bytes();
                d.extend((0..len).map(|_| rng.next() as u8));
                m.submitted.push(d.clone());
                d
            };
            let delay = Duration::from_micros(rng.below(1500));
            let svc = Arc::clone(&svcs[rng.below(svcs.len() as u64) as usize]);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    svc.append(TREE, data.clone(), None),
                )
                .await;
                (data, r)
            }));
        }
        let mut fresh = Vec::new();
        for t in tasks {
            let (data, r) = t
                .await
                .map_err(|e| fail(format!("appender panicked: {e}")))?;
            stats.appends += 1;
            match r {
                Err(_) => return Err(fail("an append did not resolve within 10 s".into())),
                Ok(Err(e)) if expected(&e) => stats.refused += 1,
                Ok(Err(e)) => return Err(fail(format!("append failed unexpectedly: {e}"))),
                Ok(Ok(a)) => {
                    stats.acked += 1;
                    if a.duplicate {
                        stats.duplicates += 1;
                    }
                    if a.leaf_hash != crate::merkle::leaf_hash(&data) {
                        return Err(fail("an append got another entry's leaf hash".into()));
                    }
                    if a.index >= a.head.size {
                        return Err(fail(format!(
                            "entry {} acknowledged (duplicate: {}) with a head of size {} that does not cover it",
                            a.index, a.duplicate, a.head.size
                        )));
                    }
                    if let Some(i) = m.index_of.get(&data) {
                        if *i != a.index {
                            return Err(fail(format!(
                                "the same entry was acknowledged at {i} and at {}",
                                a.index
                            )));
                        }
                    }
                    m.index_of.insert(data.clone(), a.index);
                    if let Some(d) = m.acked.insert(a.index, data.clone()) {
                        if d != data {
                            return Err(fail(format!(
                                "two entries acknowledged at index {}",
                                a.index
                            )));
                        }
                    }
                    m.served = m.served.max(a.head.size);
                    fresh.push(a.index);
                    m.check_storage(&storage, tree).map_err(fail)?;
                    m.checkpoint(&a.head.checkpoint, "append's head")
                        .map_err(fail)?;
                }
            }
        }
        m.check_storage(&storage, tree).map_err(fail)?;
        let svc = Arc::clone(&svcs[rng.below(svcs.len() as u64) as usize]);
        check_served(&svc, &mut m, &mut rng, &fresh, &mut stats, false)
            .await
            .map_err(fail)?;
    }
    // Quiesce: no more faults; an engine must come back and take appends again.
    storage.disarm();
    if storage.is_dead() {
        for svc in svcs.drain(..) {
            svc.abort();
        }
        generation += 1;
        storage = storage.restart();
        svcs = start_all(&storage, &signer, generation).await;
    }
    let end = |e: String| (steps, e);
    if !active(&svcs, Duration::from_secs(5)).await {
        return Err(end("no engine becomes active once the faults stop".into()));
    }
    let svc = svcs
        .iter()
        .find(|s| s.tree(TREE).is_ok_and(|t| t.is_active()))
        .cloned()
        .ok_or_else(|| end("the active engine stood down".into()))?;
    let last = format!("{seed}/final").into_bytes();
    let a = svc
        .append(TREE, last.clone(), None)
        .await
        .map_err(|e| end(format!("append after the faults stopped: {e}")))?;
    m.acked.insert(a.index, last);
    m.check_storage(&storage, tree).map_err(end)?;
    // The active engine's head covers everything acknowledged, and proves all of it.
    let all: Vec<u64> = m.acked.keys().copied().collect();
    check_served(&svc, &mut m, &mut rng, &all, &mut stats, true)
        .await
        .map_err(end)?;
    for svc in svcs {
        svc.shutdown().await;
    }
    Ok(stats)
}

/// A crash after each number of storage calls in turn (0, 1, 2, ...) while concurrent appends,
/// duplicates among them, are being sequenced: after the restart nothing acknowledged is lost or
/// moved, every proof of it verifies, and the fresh engine goes on appending where the stored
/// tree ends.
#[test]
fn a_crash_between_any_two_storage_calls_loses_nothing_acknowledged() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let signer: Arc<dyn crate::signer::Signer> = Arc::new(SoftP256::random());
        let mut rng = Rng::new(23);
        let mut stats = Stats::default();
        for k in 0..32u64 {
            let why = |e: String| format!("crash after {k} calls: {e}");
            let storage = MemoryStorage::new();
            let svc = start(&storage, &signer, format!("before-{k}")).await;
            svc.create_tree(TREE).await.expect("create");
            assert!(active(std::slice::from_ref(&svc), Duration::from_secs(2)).await);
            let tree = svc.tree(TREE).expect("tree").db_id().expect("id");
            let mut m = Model::new(signer.public_key_der());
            let first = svc
                .append(TREE, b"first".to_vec(), None)
                .await
                .expect("append");
            m.acked.insert(first.index, b"first".to_vec());
            storage.crash_after(k);
            let mut tasks = Vec::new();
            for j in 0..20u8 {
                let data = if j % 7 == 6 {
                    b"first".to_vec()
                } else {
                    vec![b'e', j, k as u8]
                };
                let svc = Arc::clone(&svc);
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(u64::from(j) * 700)).await;
                    (data.clone(), svc.append(TREE, data, None).await)
                }));
            }
            for t in tasks {
                let (data, r) = t.await.expect("appender");
                match r {
                    Ok(a) => {
                        assert!(
                            a.index < a.head.size,
                            "{}",
                            why("head does not cover".into())
                        );
                        if let Some(d) = m.acked.insert(a.index, data.clone()) {
                            assert_eq!(d, data, "{}", why("two entries at one index".into()));
                        }
                    }
                    Err(e) => assert!(expected(&e), "{}", why(format!("append: {e}"))),
                }
            }
            if !storage.is_dead() {
                storage.crash();
            }
            svc.abort();
            drop(svc);
            let storage = storage.restart();
            let svc = start(&storage, &signer, format!("after-{k}")).await;
            assert!(
                active(std::slice::from_ref(&svc), Duration::from_secs(2)).await,
                "{}",
                why("the fresh engine does not become active".into())
            );
            m.check_storage(&storage, tree)
                .map_err(why)
                .expect("stored");
            let all: Vec<u64> = m.acked.keys().copied().collect();
            check_served(&svc, &mut m, &mut rng, &all, &mut stats, true)
                .await
                .map_err(why)
                .expect("served");
            let size = m.tree.size();
            let next = svc
                .append(TREE, b"next".to_vec(), None)
                .await
                .expect("append after");
            assert_eq!(
                next.index,
                size,
                "{}",
                why("the next entry is not at the end".into())
            );
            m.check_storage(&storage, tree)
                .map_err(why)
                .expect("stored after");
            svc.shutdown().await;
        }
    });
}

/// Finding 1: a lease renewal whose answer came late (the database granted it at once, the reply
/// took most of the TTL) made the sequencer count its lease from the reply, so it went on
/// believing itself active, and serving and acknowledging as the sequencer, after the database's
/// lease had expired and another instance could take it.
#[test]
fn a_late_lease_reply_does_not_stretch_the_lease() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ttl = Duration::from_millis(300);
        let signer: Arc<dyn crate::signer::Signer> = Arc::new(SoftP256::random());
        let storage = MemoryStorage::new();
        let spec = TreeSpec {
            name: TREE.into(),
            origin: "faults.sigvault.test/t".into(),
            note_name: NOTE_NAME.into(),
            signer,
            frozen: false,
        };
        let mut opts = options("a".into());
        opts.sequencer.lease_ttl = ttl;
        let a = LogService::start(storage.clone(), vec![spec], opts)
            .await
            .expect("start");
        a.create_tree(TREE).await.expect("create");
        assert!(active(std::slice::from_ref(&a), Duration::from_secs(2)).await);
        let tree = a.tree(TREE).expect("tree").db_id().expect("id");
        // A's next renewal takes effect at once and answers 0.9 TTL later.
        storage.slow_lease_reply(Some("a"), ttl * 9 / 10);
        let until = tokio::time::Instant::now() + ttl * 4;
        while tokio::time::Instant::now() < until {
            if storage.acquire_lease(tree, "b", ttl).await.expect("lease") {
                assert!(
                    !a.tree(TREE).expect("tree").is_active(),
                    "another instance holds the lease while this one still acts as the sequencer"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        a.shutdown().await;
    });
}

/// Finding 2: a sequencer waiting on a slow commit went on calling itself active after its lease
/// had run out and another instance had taken over and committed: it kept serving its older head
/// as the latest (so a proof for the new instance's entries was refused as "beyond the current
/// size") and taking appends.
#[test]
fn a_sequencer_past_its_lease_is_not_active() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ttl = Duration::from_millis(150);
        let signer: Arc<dyn crate::signer::Signer> = Arc::new(SoftP256::random());
        let storage = MemoryStorage::new();
        let spec = |name: &str| {
            let mut o = options(name.into());
            o.sequencer.lease_ttl = ttl;
            (
                TreeSpec {
                    name: TREE.into(),
                    origin: "faults.sigvault.test/t".into(),
                    note_name: NOTE_NAME.into(),
                    signer: Arc::clone(&signer),
                    frozen: false,
                },
                o,
            )
        };
        let (sa, oa) = spec("a");
        let a = LogService::start(storage.clone(), vec![sa], oa)
            .await
            .expect("start a");
        a.create_tree(TREE).await.expect("create");
        let (sb, ob) = spec("b");
        let b = LogService::start(storage.clone(), vec![sb], ob)
            .await
            .expect("start b");
        let _ = b.create_tree(TREE).await;
        assert!(active(std::slice::from_ref(&a), Duration::from_secs(2)).await);
        // A's next commit takes three lease lengths.
        storage.arm_commit(CommitFault::Slow(ttl * 4));
        let slow = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.append(TREE, b"slow".to_vec(), None).await })
        };
        // The next batch waits for that commit, and the sequencer with it: no renewal.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let next = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.append(TREE, b"next".to_vec(), None).await })
        };
        assert!(
            active(std::slice::from_ref(&b), ttl * 3).await,
            "b does not take over"
        );
        let got = b
            .append(TREE, b"on b".to_vec(), None)
            .await
            .expect("append on b");
        assert!(
            !a.tree(TREE).expect("tree").is_active(),
            "a still calls itself active after b took the lease over"
        );
        let head = a.head(TREE).await.expect("head on a");
        assert!(head.size > got.index, "a serves a head behind b's commit");
        a.inclusion_proof(TREE, got.index, head.size)
            .await
            .expect("a proves b's entry");
        let r = slow.await.expect("appender");
        assert!(
            r.is_err(),
            "a's commit after its lease ran out was acknowledged"
        );
        // The batch that waited behind it was built on it: refused too, or integrated again
        // once a has the lease back; never acknowledged at an index b has used.
        if let Ok(n) = next.await.expect("appender") {
            assert_ne!(n.index, got.index, "two entries acknowledged at one index");
        }
        a.shutdown().await;
        b.shutdown().await;
    });
}

/// Finding 3: after a commit that failed once it had persisted, an idle sequencer noticed the
/// failure only at the next append; until then it stayed active and served its older head as the
/// latest, behind the tree it had itself stored and signed.
#[test]
fn an_idle_sequencer_reloads_after_a_failed_commit() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let signer: Arc<dyn crate::signer::Signer> = Arc::new(SoftP256::random());
        let storage = MemoryStorage::new();
        let a = start(&storage, &signer, "a".into()).await;
        a.create_tree(TREE).await.expect("create");
        assert!(active(std::slice::from_ref(&a), Duration::from_secs(2)).await);
        let tree = a.tree(TREE).expect("tree").db_id().expect("id");
        storage.arm_commit(CommitFault::FailAfter);
        let r = a.append(TREE, b"persisted".to_vec(), None).await;
        assert!(r.is_err(), "the failed commit was acknowledged");
        let stored = storage.snapshot(tree).expect("tree").0.size;
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let t = a.tree(TREE).expect("tree");
            if t.is_active() && t.cached_head().is_some_and(|h| h.size == stored) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "the sequencer still serves size {:?} (active: {}), the stored tree is {stored}",
                t.cached_head().map(|h| h.size),
                t.is_active()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(a.head(TREE).await.expect("head").size, stored);
        a.shutdown().await;
    });
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn engine_survives_storage_faults() {
    let seed = env_u64("SIGVAULT_FAULT_SEED").unwrap_or(0x5eed_2026);
    let steps = env_u64("SIGVAULT_FAULT_STEPS").unwrap_or(300);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let started = std::time::Instant::now();
    match rt.block_on(run(seed, steps)) {
        Ok(stats) => eprintln!(
            "fault test: seed {seed}, {steps} steps in {:.1} s: {stats:?}",
            started.elapsed().as_secs_f64()
        ),
        Err((step, why)) => panic!(
            "fault test failed at step {step} of seed {seed}: {why}\n\
             reproduce with SIGVAULT_FAULT_SEED={seed} SIGVAULT_FAULT_STEPS={steps}"
        ),
    }
}
