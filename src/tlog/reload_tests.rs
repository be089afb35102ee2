//! [`LogService::reload`] on the in-memory backend: a tree added and an old one frozen while
//! appends keep arriving (a Rekor v1 shard rotation as the tlog sees it), and the reloads that
//! must be refused with every tree left as it was.

use std::sync::Arc;
use std::time::Duration;

use super::memory_storage::MemoryStorage;
use super::*;
use crate::signer::test_support::SoftP256;

fn spec(name: &str, signer: &Arc<dyn Signer>, frozen: bool) -> TreeSpec {
    TreeSpec {
        name: name.into(),
        origin: format!("reload.sigvault.test/{name}"),
        note_name: "reload.sigvault.test".into(),
        signer: Arc::clone(signer),
        frozen,
    }
}

fn options() -> ServiceOptions {
    ServiceOptions {
        sequencer: SequencerOptions {
            max_batch: 16,
            max_wait: Duration::from_millis(2),
            lease_ttl: Duration::from_millis(300),
            queue_limit: 4096,
        },
        instance: "reload-test".into(),
        ..ServiceOptions::default()
    }
}

/// A service with one open tree "a", created and sequenced.
async fn started(key: &Arc<dyn Signer>) -> Arc<LogService<MemoryStorage>> {
    let svc = LogService::start(MemoryStorage::new(), vec![spec("a", key, false)], options())
        .await
        .expect("start");
    svc.create_tree("a").await.expect("create a");
    wait_active(&svc, "a").await;
    svc
}

async fn wait_active(svc: &LogService<MemoryStorage>, tree: &str) {
    for _ in 0..500 {
        if svc.tree(tree).is_ok_and(|t| t.is_active()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("tree '{tree}' never became active");
}

const PER_WORKER: u32 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_frozen_under_load_keeps_every_acknowledged_entry_and_refuses_the_rest() {
    let k1: Arc<dyn Signer> = Arc::new(SoftP256::random());
    let k2: Arc<dyn Signer> = Arc::new(SoftP256::random());
    let svc = started(&k1).await;

    // Appenders that move to tree "b" once "a" refuses them as frozen, as Rekor does.
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let svc = Arc::clone(&svc);
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut tree = "a";
            for i in 0..PER_WORKER {
                let data = format!("entry {w}-{i}").into_bytes();
                loop {
                    match svc.append(tree, data.clone(), None).await {
                        Ok(a) => {
                            got.push((tree, a.index, data));
                            break;
                        }
                        Err(TlogError::Frozen(_)) if tree == "a" => tree = "b",
                        Err(e)
                            if e.is_transient()
                                || matches!(
                                    e,
                                    TlogError::UnknownTree(_) | TlogError::NotCreated(_)
                                ) =>
                        {
                            tokio::time::sleep(Duration::from_millis(1)).await
                        }
                        Err(e) => panic!("append to {tree}: {e}"),
                    }
                }
            }
            got
        }));
    }
    // Freeze once "a" holds some entries, well before the appenders are done.
    while svc.head("a").await.expect("head").size < 100 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let changes = svc
        .reload(vec![spec("a", &k1, true), spec("b", &k2, false)])
        .await
        .expect("reload")
        .changes;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes[0].starts_with("tree 'b' added"), "{changes:?}");
    assert!(
        changes[1].starts_with("tree 'a' frozen at size "),
        "{changes:?}"
    );
    let a = svc.tree("a").expect("a");
    assert!(a.is_frozen());
    let frozen_size = svc.head("a").await.expect("head a").size;
    assert!(
        matches!(
            svc.append("a", b"late".to_vec(), None).await,
            Err(TlogError::Frozen(_))
        ),
        "a frozen tree takes no entry"
    );
    svc.create_tree("b").await.expect("create b");

    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("appender"));
    }
    assert_eq!(acked.len(), 8 * PER_WORKER as usize);
    // Every acknowledged entry of "a" is below its final size, and is the entry stored there;
    // every entry of "a" past the sentinel was acknowledged (nothing logged was refused).
    let in_a: Vec<_> = acked.iter().filter(|(t, _, _)| *t == "a").collect();
    assert!(
        !in_a.is_empty(),
        "some entries went to 'a' before the freeze"
    );
    assert!(
        acked.iter().any(|(t, _, _)| *t == "b"),
        "and some to 'b' after"
    );
    assert_eq!(
        in_a.len() as u64,
        frozen_size - 1,
        "a's entries are exactly the acknowledged ones"
    );
    let stored = svc
        .entries("a", 1, frozen_size, frozen_size)
        .await
        .expect("entries a");
    for (_, index, data) in &in_a {
        assert!(*index < frozen_size);
        let e = stored.iter().find(|e| e.index == *index).expect("stored");
        assert_eq!(&e.data, data, "entry {index} of 'a'");
    }
    // The frozen size stays final, and "a" still serves proofs.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(svc.head("a").await.expect("head a").size, frozen_size);
    svc.inclusion_proof("a", 1, frozen_size)
        .await
        .expect("proof in the frozen tree");
    svc.shutdown().await;
}

#[tokio::test]
async fn reloads_that_would_change_a_tree_are_refused_and_change_nothing() {
    let k1: Arc<dyn Signer> = Arc::new(SoftP256::random());
    let k2: Arc<dyn Signer> = Arc::new(SoftP256::random());
    let svc = started(&k1).await;
    let refused = |r: Result<Reloaded, TlogError>, what: &str| match r {
        Err(TlogError::BadRequest(m)) => m,
        other => panic!("{what}: not refused: {other:?}"),
    };
    let m = refused(svc.reload(vec![spec("a", &k2, false)]).await, "another key");
    assert!(m.contains("identity never changes"), "{m}");
    let m = refused(svc.reload(vec![]).await, "a tree dropped");
    assert!(m.contains("no longer configured"), "{m}");
    // A new tree beside a bad change is not added either.
    let m = refused(
        svc.reload(vec![spec("a", &k2, false), spec("b", &k2, false)])
            .await,
        "a change beside an addition",
    );
    assert!(m.contains("'a'"), "{m}");
    assert_eq!(svc.tree_names(), vec!["a".to_string()]);
    let m = refused(
        svc.reload(vec![spec("a", &k1, false), spec("a", &k1, false)])
            .await,
        "a tree twice",
    );
    assert!(m.contains("twice"), "{m}");
    assert!(svc.tree("a").expect("a").state() == TreeState::Open);
    svc.append("a", b"still open".to_vec(), None)
        .await
        .expect("a takes entries");
    // Frozen, a tree stays frozen.
    svc.reload(vec![spec("a", &k1, true)])
        .await
        .expect("freeze");
    let m = refused(svc.reload(vec![spec("a", &k1, false)]).await, "unfrozen");
    assert!(m.contains("stays frozen"), "{m}");
    // An unchanged config is a reload that changes nothing.
    assert!(
        svc.reload(vec![spec("a", &k1, true)])
            .await
            .expect("same")
            .changes
            .is_empty()
    );
    svc.shutdown().await;
}
