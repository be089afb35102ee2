//! The Merkle log engine on a real MariaDB and a real SoftHSM2 token: concurrent appends,
//! proofs verified against signed checkpoints, dedup, two sequencers on one tree, bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sigvault::hsm::{Module, Pkcs11Uri};
use sigvault::merkle;
use sigvault::note;
use sigvault::signer::{SignatureAlgorithm, Signer};
use sigvault::store::{NewEntry, NewHead, Store, StoreError, TileWrite};
use sigvault::tlog::{LogService, SequencerOptions, ServiceOptions, TlogError, TreeSpec};

const TOKENS: &[&str] = &["tlog"];

/// One checkpoint key per test binary, in a real token.
fn signer() -> Arc<dyn Signer> {
    static S: std::sync::OnceLock<Arc<sigvault::hsm::HsmSigner>> = std::sync::OnceLock::new();
    let s = S.get_or_init(|| {
        let t = common::token(TOKENS, "tlog");
        let uri: Pkcs11Uri = format!("pkcs11:token={};object=tlog", t.label)
            .parse()
            .expect("uri");
        let m = Module::load(&common::module()).expect("module");
        let token = m
            .login(&uri, &SecretString::from(t.pin.clone()))
            .expect("login");
        token
            .generate_ec_key("tlog", b"\x01", SignatureAlgorithm::EcdsaP256Sha256)
            .expect("keygen");
        Arc::new(token.signer(&uri).expect("signer"))
    });
    Arc::clone(s) as Arc<dyn Signer>
}

async fn store_for(db: &common::TestDb) -> Store {
    let s = Store::connect(&SecretString::from(db.url()), 16)
        .await
        .expect("connect");
    s.migrate().await.expect("migrate");
    s
}

fn spec(name: &str) -> TreeSpec {
    TreeSpec {
        name: name.into(),
        origin: format!("test.example - {name}"),
        note_name: "test.example".into(),
        signer: signer(),
        frozen: false,
    }
}

fn opts(instance: &str) -> ServiceOptions {
    ServiceOptions {
        sequencer: SequencerOptions {
            max_batch: 512,
            max_wait: Duration::from_millis(10),
            lease_ttl: Duration::from_secs(2),
            queue_limit: 100_000,
        },
        max_entry_size: 4096,
        instance: instance.into(),
        state_dir: None,
    }
}

async fn wait_active(svc: &LogService, tree: &str) {
    for _ in 0..200 {
        if svc.tree(tree).expect("tree").is_active() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("tree {tree} never became active");
}

fn verify_cp(text: &str) -> note::Checkpoint {
    let body = note::verify_note(text, "test.example", signer().public_key_der())
        .expect("checkpoint signature");
    note::Checkpoint::parse_body(body).expect("checkpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_stable_and_provable() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_concurrent") else {
        return;
    };
    let store = store_for(&db).await;
    let svc = LogService::start(store.clone(), vec![spec("t")], opts("a"))
        .await
        .expect("start");
    let head = svc.create_tree("t").await.expect("create");
    assert_eq!(head.size, 1, "sentinel at index 0");
    assert!(matches!(
        svc.create_tree("t").await,
        Err(TlogError::TreeExists(_))
    ));
    wait_active(&svc, "t").await;

    // 3000 appends from 30 concurrent writers.
    let mut tasks = Vec::new();
    for w in 0..30 {
        let svc = Arc::clone(&svc);
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..100 {
                let data = format!("writer {w} entry {i}").into_bytes();
                let r = svc.append("t", data.clone(), None).await.expect("append");
                got.push((r.index, data, r.head.checkpoint.clone(), r.head.size));
            }
            got
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("join"));
    }
    assert_eq!(acked.len(), 3000);
    let mut indices: Vec<u64> = acked.iter().map(|a| a.0).collect();
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len(), 3000, "every entry got its own index");
    assert_eq!(indices[0], 1, "index 0 is the sentinel");
    assert_eq!(*indices.last().expect("last"), 3000);

    let head = svc.head("t").await.expect("head");
    let cp = verify_cp(&head.checkpoint);
    assert_eq!(cp.size, 3001);
    assert_eq!(cp.origin, "test.example - t");

    // Every acknowledged entry is stored at its index, and its inclusion proof verifies against
    // the latest checkpoint and against the checkpoint it was acknowledged with.
    let mut checkpoints: Vec<(u64, String)> = acked.iter().map(|a| (a.3, a.2.clone())).collect();
    checkpoints.sort();
    checkpoints.dedup();
    for (index, data, cp_text, size) in &acked {
        let stored = svc.entries("t", *index, index + 1, 1).await.expect("entry");
        assert_eq!(&stored[0].data, data);
        let leaf = merkle::leaf_hash(data);
        let proof = svc
            .inclusion_proof("t", *index, cp.size)
            .await
            .expect("proof");
        merkle::verify_inclusion(&leaf, *index, cp.size, &proof, &cp.root)
            .expect("inclusion at head");
        let then = verify_cp(cp_text);
        assert_eq!(then.size, *size);
        let proof = svc
            .inclusion_proof("t", *index, then.size)
            .await
            .expect("proof");
        merkle::verify_inclusion(&leaf, *index, then.size, &proof, &then.root)
            .expect("inclusion at ack");
    }
    // Consistency between every pair of checkpoints seen (sampled if there are many).
    let cps: Vec<note::Checkpoint> = checkpoints.iter().map(|(_, t)| verify_cp(t)).collect();
    let step = (cps.len() / 12).max(1);
    for a in cps.iter().step_by(step) {
        for b in cps.iter().step_by(step) {
            if a.size <= b.size {
                let p = svc
                    .consistency_proof("t", a.size, b.size)
                    .await
                    .expect("consistency");
                merkle::verify_consistency(a.size, b.size, &p, &a.root, &b.root)
                    .expect("consistent");
            }
        }
    }
    // The root computed from the stored tiles equals the checkpoint's.
    let id = svc.tree("t").expect("t").db_id().expect("id");
    let cache = sigvault::tlog::reader::TileCache::default();
    let root = sigvault::tlog::reader::root_at(&store, &cache, id, cp.size)
        .await
        .expect("root");
    assert_eq!(root, cp.root);
    // The active sequencer serves proofs from tiles it holds in memory; a reader with nothing
    // cached (as a standby is) reads them from the database: both give the same proofs.
    for index in (1..cp.size).step_by(97) {
        for size in [index + 1, cp.size / 2 + 1, cp.size] {
            if index >= size {
                continue;
            }
            let fresh = sigvault::tlog::reader::TileCache::default();
            let from_db = sigvault::tlog::reader::inclusion_proof(&store, &fresh, id, index, size)
                .await
                .expect("proof from the database");
            let served = svc.inclusion_proof("t", index, size).await.expect("proof");
            assert_eq!(from_db, served, "index {index} size {size}");
        }
    }
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_return_the_original_index_and_bad_input_writes_nothing() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_dedup") else {
        return;
    };
    let store = store_for(&db).await;
    let svc = LogService::start(store, vec![spec("d")], opts("a"))
        .await
        .expect("start");
    // Before creation: a clear error.
    assert!(matches!(
        svc.append("d", b"x".to_vec(), None).await,
        Err(TlogError::NotCreated(_))
    ));
    svc.create_tree("d").await.expect("create");
    wait_active(&svc, "d").await;
    let a = svc
        .append("d", b"hello".to_vec(), None)
        .await
        .expect("append");
    let b = svc
        .append("d", b"hello".to_vec(), None)
        .await
        .expect("again");
    assert!(!a.duplicate && b.duplicate);
    assert_eq!(a.index, b.index);
    // Same identity, other bytes: the first one wins.
    let id = [9u8; 32];
    let c = svc
        .append("d", b"one".to_vec(), Some(id))
        .await
        .expect("id");
    let d = svc
        .append("d", b"two".to_vec(), Some(id))
        .await
        .expect("id again");
    assert_eq!(c.index, d.index);
    assert!(d.duplicate);
    let size = svc.head("d").await.expect("head").size;
    assert_eq!(size, 3);

    // Bad input: each refused, nothing written.
    assert!(matches!(
        svc.append("d", vec![0; 5000], None).await,
        Err(TlogError::TooLarge { .. })
    ));
    assert!(matches!(
        svc.append("d", Vec::new(), None).await,
        Err(TlogError::BadRequest(_))
    ));
    assert!(matches!(
        svc.append("nope", b"x".to_vec(), None).await,
        Err(TlogError::UnknownTree(_))
    ));
    assert!(matches!(
        svc.inclusion_proof("d", 1, 99).await,
        Err(TlogError::BadRequest(_))
    ));
    assert!(matches!(
        svc.inclusion_proof("d", 5, 3).await,
        Err(TlogError::BadRequest(_))
    ));
    assert!(matches!(
        svc.consistency_proof("d", 3, 2).await,
        Err(TlogError::BadRequest(_))
    ));
    assert!(matches!(
        svc.consistency_proof("d", 1, 4).await,
        Err(TlogError::BadRequest(_))
    ));
    assert_eq!(svc.head("d").await.expect("head").size, 3);

    // 2000 appends of 1000 entries (each twice, 1000 apart) sent at once, not waiting for each
    // other: batches (of at most 512) are pipelined, so copies are integrated while the batch
    // holding their originals is still committing. Each entry gets one index, exactly one append of it is
    // new, and every answer's head covers the index it names.
    let svc = Arc::new(svc);
    let mut tasks = Vec::new();
    for j in 0..2000u64 {
        let svc = Arc::clone(&svc);
        tasks.push(tokio::spawn(async move {
            let k = j % 1000;
            let r = svc
                .append("d", format!("dup {k}").into_bytes(), None)
                .await
                .expect("append");
            assert!(r.index < r.head.size, "the head covers the entry");
            vec![(k, r.index, r.duplicate)]
        }));
    }
    let mut by_entry: std::collections::HashMap<u64, Vec<(u64, bool)>> = Default::default();
    for t in tasks {
        for (k, index, dup) in t.await.expect("writer") {
            by_entry.entry(k).or_default().push((index, dup));
        }
    }
    assert_eq!(by_entry.len(), 1000);
    for (k, acks) in &by_entry {
        assert_eq!(acks.len(), 2);
        assert!(
            acks.iter().all(|a| a.0 == acks[0].0),
            "entry {k}: one index"
        );
        assert_eq!(
            acks.iter().filter(|a| !a.1).count(),
            1,
            "entry {k}: one new"
        );
        let stored = svc
            .entries("d", acks[0].0, acks[0].0 + 1, 1)
            .await
            .expect("entry");
        assert_eq!(stored[0].data, format!("dup {k}").into_bytes());
    }
    assert_eq!(svc.head("d").await.expect("head").size, size + 1000);
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sequencers_one_tree_standby_takes_over() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_two") else {
        return;
    };
    let store = store_for(&db).await;
    let a = LogService::start(store.clone(), vec![spec("s")], opts("instance-a"))
        .await
        .expect("a");
    a.create_tree("s").await.expect("create");
    wait_active(&a, "s").await;
    let store_b = store_for(&db).await;
    let b = LogService::start(store_b, vec![spec("s")], opts("instance-b"))
        .await
        .expect("b");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(a.tree("s").expect("s").is_active());
    assert!(
        !b.tree("s").expect("s").is_active(),
        "only one sequencer at a time"
    );
    assert!(matches!(
        b.append("s", b"x".to_vec(), None).await,
        Err(TlogError::NotActive(_))
    ));
    let first = a
        .append("s", b"from a".to_vec(), None)
        .await
        .expect("a appends");

    // A dies without releasing its lease: its sequencer stops, the lease expires, B takes over.
    a.tree("s").expect("s");
    drop_without_release(a).await;
    wait_active(&b, "s").await;
    let second = b
        .append("s", b"from b".to_vec(), None)
        .await
        .expect("b appends");
    assert_eq!(second.index, first.index + 1);
    let cp1 = verify_cp(&first.head.checkpoint);
    let cp2 = verify_cp(&second.head.checkpoint);
    let p = b
        .consistency_proof("s", cp1.size, cp2.size)
        .await
        .expect("consistency");
    merkle::verify_consistency(cp1.size, cp2.size, &p, &cp1.root, &cp2.root)
        .expect("no fork across the takeover");
    b.shutdown().await;
}

/// Simulate a crash: abort the sequencer tasks so the lease is not released.
async fn drop_without_release(svc: Arc<LogService>) {
    svc.abort();
}

/// The store's batch commit is the safety net under the sequencer: it writes only for the
/// holder of an unexpired lease and only at the size the batch was built on; anything else
/// fails with the named cause and leaves no row behind, including a stale writer whose entries
/// collide with the new holder's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commits_only_for_the_lease_holder_at_its_size() {
    let Some(db) = common::database("tlog_commit_checks") else {
        return;
    };
    let store = store_for(&db).await;
    let entry = |i: u64, tag: u8| NewEntry {
        index: i,
        leaf_hash: [tag; 32],
        identity_hash: [tag ^ 0x80; 32],
        data: vec![tag; 3],
        extra: None,
    };
    let tile = |n: usize, tag: u8| TileWrite {
        level: 0,
        index: 0,
        hashes: vec![tag; 32 * n],
    };
    let cp = |n: u64| format!("checkpoint at {n}");
    fn head(n: u64, c: &str) -> NewHead<'_> {
        NewHead {
            size: n,
            root: [n as u8; 32],
            checkpoint: c,
        }
    }
    let c1 = cp(1);
    let row = store
        .create_tree(
            "t",
            "test.example - t",
            b"key",
            &entry(0, 0),
            &tile(1, 0),
            &head(1, &c1),
        )
        .await
        .expect("create the tree");
    let tree = row.id;
    let ttl = Duration::from_secs(60);
    assert!(store.acquire_lease(tree, "a", ttl).await.expect("lease"));
    let state = || async {
        let t = store
            .tree("t")
            .await
            .expect("read the tree")
            .expect("the tree");
        let n = store.entries(tree, 0, 100).await.expect("entries").len();
        let tiles = store.tiles(tree, &[(0, 0)]).await.expect("tiles");
        (t.size, t.checkpoint, n, tiles[&(0, 0)].len() / 32)
    };

    // Not the lease holder.
    let c2 = cp(2);
    let err = store
        .commit_batch(tree, "b", 1, &[entry(1, 1)], &[tile(2, 1)], &head(2, &c2))
        .await
        .expect_err("b does not hold the lease");
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    assert_eq!(state().await, (1, c1.clone(), 1, 1));

    // The holder, but built on a size the tree is not at.
    let c6 = cp(6);
    let err = store
        .commit_batch(tree, "a", 5, &[entry(5, 5)], &[tile(6, 5)], &head(6, &c6))
        .await
        .expect_err("the tree is not at size 5");
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 5,
                actual: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(state().await, (1, c1.clone(), 1, 1));

    // The holder at the right size commits entries, tile and head together.
    store
        .commit_batch(tree, "a", 1, &[entry(1, 1)], &[tile(2, 1)], &head(2, &c2))
        .await
        .expect("a commits");
    assert_eq!(state().await, (2, c2.clone(), 2, 2));

    // a's lease ends and b takes over and commits index 2; a's stale batch for index 2 meets
    // b's row and fails as the lost lease it is, writing nothing.
    store.release_lease(tree, "a").await.expect("release");
    assert!(store.acquire_lease(tree, "b", ttl).await.expect("lease"));
    let c3 = cp(3);
    store
        .commit_batch(tree, "b", 2, &[entry(2, 2)], &[tile(3, 2)], &head(3, &c3))
        .await
        .expect("b commits");
    let stale = cp(33);
    let err = store
        .commit_batch(
            tree,
            "a",
            2,
            &[entry(2, 9)],
            &[tile(3, 9)],
            &head(3, &stale),
        )
        .await
        .expect_err("a's lease is gone");
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    assert_eq!(state().await, (3, c3.clone(), 3, 3));
    let stored = store.entries(tree, 2, 3).await.expect("entries");
    assert_eq!(stored[0].data, vec![2; 3], "b's entry stays");

    // An expired lease no longer lets its holder write.
    assert!(
        store
            .acquire_lease(tree, "b", Duration::from_millis(1))
            .await
            .expect("lease")
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let c4 = cp(4);
    let err = store
        .commit_batch(tree, "b", 3, &[entry(3, 3)], &[tile(4, 3)], &head(4, &c4))
        .await
        .expect_err("b's lease expired");
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    assert_eq!(state().await, (3, c3, 3, 3));
}

async fn wait_refused(svc: &LogService, tree: &str) -> String {
    for _ in 0..200 {
        if let Some(why) = svc.tree(tree).expect("tree").refusal() {
            return why;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("tree {tree} was never refused");
}

/// The rollback guard: an instance that has committed a tree up to some size refuses to
/// sequence it on a database that is behind that (an older backup) or that holds another tree
/// at that size, and to create it on a database without it; on the right database it goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_guard_refuses_an_older_or_other_database() {
    if !common::have_softhsm() {
        return;
    }
    let (Some(live), Some(backup), Some(other), Some(empty)) = (
        common::database("tlog_guard_live"),
        common::database("tlog_guard_backup"),
        common::database("tlog_guard_other"),
        common::database("tlog_guard_empty"),
    ) else {
        return;
    };
    let state = tempfile::tempdir().expect("tempdir");
    let guarded = |instance: &str| ServiceOptions {
        state_dir: Some(state.path().join("tlog")),
        ..opts(instance)
    };
    let entry = |i: usize| format!("entry {i}").into_bytes();

    // The "backup": the same tree with only its first 5 entries, written by an instance
    // without the guard (the same sentinel, the same entries in the same order).
    let b = LogService::start(store_for(&backup).await, vec![spec("t")], opts("old"))
        .await
        .expect("start");
    b.create_tree("t").await.expect("create");
    wait_active(&b, "t").await;
    for i in 0..5 {
        b.append("t", entry(i), None).await.expect("append");
    }
    b.shutdown().await;
    // Another database with the same tree name and origin, but other entries.
    let o = LogService::start(store_for(&other).await, vec![spec("t")], opts("old"))
        .await
        .expect("start");
    o.create_tree("t").await.expect("create");
    wait_active(&o, "t").await;
    for i in 0..30 {
        o.append("t", format!("other {i}").into_bytes(), None)
            .await
            .expect("append");
    }
    o.shutdown().await;

    // The guarded instance commits 20 entries to the live database; at shutdown its record
    // says size 21 (sentinel included). A standby on another "host" (its own state dir) that
    // never sequences records what it sees the active one commit.
    let live_store = store_for(&live).await;
    let a = LogService::start(live_store.clone(), vec![spec("t")], guarded("a"))
        .await
        .expect("start");
    a.create_tree("t").await.expect("create");
    wait_active(&a, "t").await;
    let standby_state = tempfile::tempdir().expect("tempdir");
    let standby_opts = |instance: &str| ServiceOptions {
        state_dir: Some(standby_state.path().to_owned()),
        ..opts(instance)
    };
    let s = LogService::start(live_store.clone(), vec![spec("t")], standby_opts("s"))
        .await
        .expect("standby");
    for i in 0..20 {
        a.append("t", entry(i), None).await.expect("append");
    }
    let seen = a.head("t").await.expect("head");
    assert_eq!(seen.size, 21);
    let expected = format!("size 21\nroot {}\n", hex::encode(seen.root));
    // While A is still the active sequencer, the standby has recorded its head.
    assert!(!s.tree("t").expect("t").is_active());
    let standby_record = standby_state.path().join("t.head");
    for _ in 0..200 {
        if std::fs::read_to_string(&standby_record).is_ok_and(|r| r == expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        std::fs::read_to_string(&standby_record).expect("standby record"),
        expected,
        "the standby recorded the head it saw"
    );
    assert!(!s.tree("t").expect("t").is_active(), "it only watched");
    s.abort();
    a.shutdown().await;
    let record = std::fs::read_to_string(state.path().join("tlog/t.head")).expect("record");
    assert_eq!(record, expected, "the record holds the last committed head");

    // Put on the backup, it refuses the tree: no lease kept, appends refused, nothing written.
    let backup_store = store_for(&backup).await;
    let r = LogService::start(backup_store.clone(), vec![spec("t")], guarded("a"))
        .await
        .expect("start");
    let why = wait_refused(&r, "t").await;
    assert!(
        why.contains("up to size 21") && why.contains("only 6 entries") && why.contains("backup"),
        "{why}"
    );
    assert!(!r.tree("t").expect("t").is_active());
    assert!(matches!(
        r.append("t", entry(99), None).await,
        Err(TlogError::NotActive(_))
    ));
    assert_eq!(
        backup_store.tree("t").await.expect("row").expect("t").size,
        6
    );
    r.shutdown().await;

    // So does the standby, though it never sequenced this tree: it refuses while standing by.
    let r = LogService::start(backup_store.clone(), vec![spec("t")], standby_opts("s2"))
        .await
        .expect("start");
    let why = wait_refused(&r, "t").await;
    assert!(why.contains("up to size 21"), "{why}");
    r.shutdown().await;
    assert_eq!(
        backup_store.tree("t").await.expect("row").expect("t").size,
        6
    );

    // On a database whose tree is longer but has another root at size 21: refused too.
    let r = LogService::start(store_for(&other).await, vec![spec("t")], guarded("a"))
        .await
        .expect("start");
    let why = wait_refused(&r, "t").await;
    assert!(
        why.contains("at size 21") && why.contains(&hex::encode(seen.root)),
        "{why}"
    );
    r.shutdown().await;

    // On a database without the tree, creating it again is refused and writes nothing.
    let empty_store = store_for(&empty).await;
    let r = LogService::start(empty_store.clone(), vec![spec("t")], guarded("a"))
        .await
        .expect("start");
    match r.create_tree("t").await {
        Err(TlogError::Refused(why)) => assert!(why.contains("no such tree"), "{why}"),
        other => panic!("create on an empty database: {:?}", other.map(|h| h.size)),
    }
    assert!(empty_store.tree("t").await.expect("query").is_none());
    r.shutdown().await;

    // Back on the live database it sequences again, and the record follows.
    let a = LogService::start(live_store, vec![spec("t")], guarded("a"))
        .await
        .expect("start");
    wait_active(&a, "t").await;
    assert!(a.tree("t").expect("t").refusal().is_none());
    let r = a.append("t", entry(20), None).await.expect("append");
    assert_eq!(r.index, 21);
    a.shutdown().await;
    let record = std::fs::read_to_string(state.path().join("tlog/t.head")).expect("record");
    assert!(record.starts_with("size 22\n"), "{record}");
}

/// A state directory the service cannot write is refused at start, with the path and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_dir_is_refused_at_start() {
    let Some(db) = common::database("tlog_guard_dir") else {
        return;
    };
    if !common::have_softhsm() {
        return;
    }
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    let bad = file.path().join("state");
    let opts = ServiceOptions {
        state_dir: Some(bad.clone()),
        ..opts("a")
    };
    match LogService::start(store_for(&db).await, vec![spec("t")], opts).await {
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains(&bad.display().to_string()) && m.contains("state_dir"),
                "{m}"
            );
        }
        Ok(_) => panic!("started with an unwritable state directory"),
    }
}
