//! `sigvault tlog serve` as a real process on real MariaDB and SoftHSM2: the internal API over
//! its Unix socket, the public tlog-tiles API, checkpoint signatures checked with openssl, a
//! SIGKILL mid-stream, killed database connections, and bad input.

mod common;

use common::procs::Tlog;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use base64::Engine;
use sigvault::http::client::{Client, Endpoint};
use sigvault::merkle::{self, Hash};
use sigvault::note;
use sigvault::tlog::api::{BatchAppendResponse, BatchAppendResult, TlogClient, decode_hashes};

const TOKENS: &[&str] = &[
    "svc-crash",
    "svc-db",
    "svc-bad",
    "svc-two",
    "svc-guard",
    "svc-stall",
    "svc-audit",
    "svc-reclaim",
];

/// Both checkpoints of tree "t" verify with openssl, and `t` proves the second extends the first:
/// no fork across `what`.
async fn assert_extends(t: &Tlog, first: &str, second: &str, what: &str) {
    let c1 = t.openssl_verify(first);
    let c2 = t.openssl_verify(second);
    let p = t
        .client()
        .consistency("t", c1.size, c2.size)
        .await
        .expect("consistency");
    merkle::verify_consistency(
        c1.size,
        c2.size,
        &decode_hashes(&p.hashes).expect("h"),
        &c1.root,
        &c2.root,
    )
    .unwrap_or_else(|e| panic!("a fork across {what}: {e}"));
}

/// Fetch the tiles a tree of `size` needs and compute its root from them, as a tiles client would.
async fn root_from_public_tiles(public: &Client, size: u64) -> Hash {
    use sigvault::merkle::tiles::{TileId, tile_for_size};
    let ids = merkle::CompactRange::node_ids(size);
    let mut tiles = std::collections::HashMap::new();
    for id in &ids {
        let loc = merkle::tiles::node_location(*id);
        let t: TileId = tile_for_size(loc.tile_level, loc.tile_index, size).expect("tile");
        if tiles.contains_key(&t) {
            continue;
        }
        let r = public
            .request(Method::GET, &format!("/t/{}", t.path()), None)
            .await
            .expect("tile");
        assert_eq!(
            r.status,
            200,
            "{} -> {}",
            t.path(),
            String::from_utf8_lossy(&r.body)
        );
        let cc = r
            .headers
            .get("cache-control")
            .expect("cache-control")
            .to_str()
            .expect("s");
        assert_eq!(cc.contains("immutable"), t.is_full(), "{cc}");
        tiles.insert(
            t,
            merkle::tiles::decode_tile(&r.body, t.width()).expect("tile data"),
        );
    }
    let src = merkle::tiles::TileSource::new(size, |t: &TileId| -> Result<Vec<Hash>, String> {
        tiles
            .get(t)
            .cloned()
            .ok_or_else(|| format!("missing {}", t.path()))
    });
    merkle::CompactRange::from_source(&src, size)
        .expect("compact")
        .root()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_append_tiles_and_survive_sigkill() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_svc_crash") else {
        return;
    };
    let mut tlog = Tlog::new("svc-crash", common::token(TOKENS, "svc-crash"), &db);
    let c = tlog.client();
    let created = c.create_tree("t").await.expect("create");
    assert_eq!(created.tree_size, 1);
    let again = c.create_tree("t").await.expect_err("second create");
    assert!(
        matches!(
            again,
            sigvault::tlog::api::TlogClientError::Api { status: 409, .. }
        ),
        "{again}"
    );
    tlog.wait_active().await;

    // 1000 concurrent appends through the socket, with proofs.
    let mut tasks = Vec::new();
    for w in 0..20 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut v = Vec::new();
            for i in 0..50 {
                let data = format!("w{w}-e{i}").into_bytes();
                let r = c.append("t", &data, None, true).await.expect("append");
                v.push((data, r));
            }
            v
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("join"));
    }
    for (data, r) in &acked {
        let cp = note::Checkpoint::parse_body(note::parse_note(&r.checkpoint).expect("note").0)
            .expect("cp");
        assert_eq!(cp.size, r.tree_size);
        let proof = decode_hashes(r.inclusion_proof.as_ref().expect("proof")).expect("hashes");
        merkle::verify_inclusion(&merkle::leaf_hash(data), r.index, cp.size, &proof, &cp.root)
            .expect("inclusion");
    }

    // The public checkpoint verifies with openssl; the root from the public tiles matches it.
    let public = tlog.public();
    let r = public
        .request(Method::GET, "/t/checkpoint", None)
        .await
        .expect("checkpoint");
    assert_eq!(r.status, 200);
    let cp_text = String::from_utf8(r.body.to_vec()).expect("utf8");
    let cp = tlog.openssl_verify(&cp_text);
    assert_eq!(root_from_public_tiles(&public, cp.size).await, cp.root);
    // The first entry bundle holds the sentinel and then our entries, u16-length-prefixed.
    let r = public
        .request(Method::GET, "/t/tile/entries/000.p/3", None)
        .await
        .expect("bundle");
    assert_eq!(r.status, 200);
    let first_len = u16::from_be_bytes([r.body[0], r.body[1]]) as usize;
    assert!(String::from_utf8_lossy(&r.body[2..2 + first_len]).contains("sentinel"));
    let r = public
        .request(Method::GET, "/t/tile/0/x999/000", None)
        .await
        .expect("missing tile");
    assert_eq!(r.status, 404);
    let r = public
        .request(Method::GET, "/t/tile/0/0001", None)
        .await
        .expect("bad path");
    assert_eq!(r.status, 400);
    let r = public
        .request(Method::GET, "/readyz", None)
        .await
        .expect("readyz");
    assert!(String::from_utf8_lossy(&r.body).contains("tree t: active"));
    let r = public
        .request(Method::GET, "/metrics", None)
        .await
        .expect("metrics");
    let m = String::from_utf8_lossy(&r.body).into_owned();
    for name in [
        "sigvault_tlog_appends_total",
        "sigvault_tlog_queue_depth{tree=\"t\"}",
        "sigvault_tlog_last_batch_size{tree=\"t\"}",
        "sigvault_tlog_integration_seconds_bucket{tree=\"t\",le=\"+Inf\"}",
        "sigvault_tlog_prepare_seconds_count{tree=\"t\"}",
        "sigvault_tlog_commit_seconds_bucket{tree=\"t\",le=\"0.01\"}",
        "sigvault_tlog_tree_size{tree=\"t\"}",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }

    // A stream of appends; SIGKILL in the middle of it.
    let streamer = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut ok = Vec::new();
            for i in 0.. {
                let data = format!("stream-{i}").into_bytes();
                match c.append("t", &data, None, false).await {
                    Ok(r) => ok.push((data, r.index, r.checkpoint)),
                    Err(_) => break,
                }
            }
            ok
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    tlog.kill9();
    let streamed = streamer.await.expect("join");
    assert!(
        streamed.len() > 10,
        "the stream made progress before the kill ({})",
        streamed.len()
    );

    // Restart: every acknowledged entry is where it was acknowledged, the tree is consistent with
    // every checkpoint seen before the crash, and appends resume.
    tlog.start();
    tlog.wait_active().await;
    let c = tlog.client();
    let mut all: Vec<(Vec<u8>, u64)> = streamed.iter().map(|(d, i, _)| (d.clone(), *i)).collect();
    all.extend(acked.iter().map(|(d, r)| (d.clone(), r.index)));
    for (data, index) in &all {
        let e = c.entries("t", *index, index + 1).await.expect("entry");
        let got = base64::engine::general_purpose::STANDARD
            .decode(&e.entries[0].data)
            .expect("b64");
        assert_eq!(&got, data, "entry {index} moved or changed");
    }
    let after = c
        .append("t", b"after the crash", None, true)
        .await
        .expect("append after restart");
    let new_cp = tlog.openssl_verify(&after.checkpoint);
    let mut seen: Vec<String> = streamed.iter().map(|s| s.2.clone()).collect();
    seen.extend(acked.iter().map(|(_, r)| r.checkpoint.clone()));
    seen.sort();
    seen.dedup();
    for old in seen.iter().step_by((seen.len() / 20).max(1)) {
        let old = tlog.openssl_verify(old);
        let p = c
            .consistency("t", old.size, new_cp.size)
            .await
            .expect("consistency");
        merkle::verify_consistency(
            old.size,
            new_cp.size,
            &decode_hashes(&p.hashes).expect("h"),
            &old.root,
            &new_cp.root,
        )
        .expect("consistent across the crash");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_database_connections_give_clear_errors_then_recover_without_a_fork() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_svc_db") else {
        return;
    };
    let tlog = Tlog::new("svc-db", common::token(TOKENS, "svc-db"), &db);
    let c = tlog.client();
    c.create_tree("t").await.expect("create");
    tlog.wait_active().await;
    let before = c.append("t", b"before", None, false).await.expect("append");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (c, stop) = (c.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut ok, mut errs) = (0u32, Vec::new());
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                match c
                    .append("t", format!("during {i}").as_bytes(), None, false)
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => errs.push(e.to_string()),
                }
            }
            (ok, errs)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Kill every connection of the tlog's database user, twice, a moment apart.
    for _ in 0..2 {
        let (ok, out, e) = db.sql(&format!(
            "SELECT id FROM information_schema.processlist WHERE user = '{}'",
            tlog.db_user
        ));
        assert!(ok, "{e}");
        for id in out.split_whitespace() {
            let _ = db.sql(&format!("KILL CONNECTION {id}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, errs) = writer.await.expect("join");
    assert!(ok > 0, "appends went through around the kills");
    for e in &errs {
        assert!(
            e.contains("503")
                || e.contains("unavailable")
                || e.contains("database")
                || e.contains("not the active"),
            "unclear error: {e}"
        );
    }
    // Recovery: appends succeed again and the tree never forked.
    tlog.wait_active().await;
    let after = c
        .append("t", b"after", None, false)
        .await
        .expect("append after");
    let a = tlog.openssl_verify(&before.checkpoint);
    let b = tlog.openssl_verify(&after.checkpoint);
    let p = c
        .consistency("t", a.size, b.size)
        .await
        .expect("consistency");
    merkle::verify_consistency(
        a.size,
        b.size,
        &decode_hashes(&p.hashes).expect("h"),
        &a.root,
        &b.root,
    )
    .expect("no fork");
    assert_eq!(root_from_public_tiles(&tlog.public(), b.size).await, b.root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_and_write_nothing() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_svc_bad") else {
        return;
    };
    let tlog = Tlog::new("svc-bad", common::token(TOKENS, "svc-bad"), &db);
    let c = tlog.client();
    c.create_tree("t").await.expect("create");
    tlog.wait_active().await;
    let size = c.head("t").await.expect("head").tree_size;
    let raw = tlog.internal_raw();
    let post = |path: &'static str, body: &'static [u8]| {
        let raw = raw.clone();
        async move {
            raw.request(
                Method::POST,
                path,
                Some((body.to_vec(), "application/json")),
            )
            .await
            .expect("request")
        }
    };
    let too_many = format!(
        "{{\"entries\":[{}]}}",
        vec![r#"{"data":"aGk="}"#; 1025].join(",")
    );
    let too_many: &'static [u8] = Box::leak(too_many.into_bytes().into_boxed_slice());
    let cases: Vec<(sigvault::http::client::Response, u16, &str)> = vec![
        (
            post("/v1/trees/t/entries", b"{not json").await,
            400,
            "malformed",
        ),
        (
            post("/v1/trees/t/entries/batch", b"{not json").await,
            400,
            "malformed batch",
        ),
        (
            post("/v1/trees/t/entries/batch", br#"{"entries":[]}"#).await,
            400,
            "1 to 1024 appends, not 0",
        ),
        (
            post("/v1/trees/t/entries/batch", too_many).await,
            400,
            "not 1025",
        ),
        (
            post(
                "/v1/trees/nope/entries/batch",
                br#"{"entries":[{"data":"aGk="}]}"#,
            )
            .await,
            404,
            "unknown tree",
        ),
        (
            post("/v1/trees/t/entries", br#"{"data":"!!!"}"#).await,
            400,
            "base64",
        ),
        (
            post("/v1/trees/t/entries", br#"{"data":"aGk=","colour":1}"#).await,
            400,
            "unknown field",
        ),
        (
            post(
                "/v1/trees/t/entries",
                br#"{"data":"aGk=","identity":"abc"}"#,
            )
            .await,
            400,
            "identity",
        ),
        (
            post("/v1/trees/nope/entries", br#"{"data":"aGk="}"#).await,
            404,
            "unknown tree",
        ),
        (
            raw.request(Method::GET, "/v1/trees/nope/sequencer", None)
                .await
                .expect("request"),
            404,
            "unknown tree",
        ),
        (
            raw.request(
                Method::POST,
                "/v1/trees/t/entries",
                Some((
                    format!(
                        "{{\"data\":\"{}\"}}",
                        base64::engine::general_purpose::STANDARD.encode(vec![7u8; 2049])
                    )
                    .into_bytes(),
                    "application/json",
                )),
            )
            .await
            .expect("r"),
            413,
            "exceeds",
        ),
        (
            raw.request(
                Method::GET,
                "/v1/trees/t/proof/inclusion?index=1&size=999",
                None,
            )
            .await
            .expect("r"),
            400,
            "beyond",
        ),
        (
            raw.request(
                Method::GET,
                "/v1/trees/t/proof/consistency?first=2&second=1",
                None,
            )
            .await
            .expect("r"),
            400,
            "larger",
        ),
        (
            raw.request(Method::GET, "/v1/trees/t/proof/inclusion?size=1", None)
                .await
                .expect("r"),
            400,
            "exactly one",
        ),
        (
            raw.request(Method::GET, "/v1/trees/t/entries?start=5&end=1", None)
                .await
                .expect("r"),
            400,
            "below",
        ),
        (
            raw.request(Method::POST, "/v1/trees/other", None)
                .await
                .expect("r"),
            404,
            "unknown tree",
        ),
    ];
    for (resp, status, words) in cases {
        let body = String::from_utf8_lossy(&resp.body).into_owned();
        assert_eq!(resp.status.as_u16(), status, "{words}: {body}");
        assert!(body.contains(words), "expected {words:?} in {body}");
        assert!(body.starts_with('{'), "JSON error body: {body}");
    }
    // A body far over the cap: the server answers 413 without reading it all and closes the
    // connection, so the client sees either the 413 or the connection closing under its write.
    for path in ["/v1/trees/t/entries", "/v1/trees/t/entries/batch"] {
        match raw
            .request(
                Method::POST,
                path,
                Some((vec![b'x'; 8 << 20], "application/json")),
            )
            .await
        {
            Ok(r) => assert_eq!(r.status.as_u16(), 413, "{path}"),
            Err(e) => assert!(
                !e.to_string().contains("timed out"),
                "{path}: the server should refuse at once (413 or closing the connection under \
                 the write): {e}"
            ),
        }
    }
    // In a batch, an entry over the size cap is refused on its own (413), and only it.
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 2049]);
    let r = raw
        .request(
            Method::POST,
            "/v1/trees/t/entries/batch",
            Some((
                format!(r#"{{"entries":[{{"data":"{big}"}},{{"data":"YmlnLW5laWdoYm91cg=="}}]}}"#)
                    .into_bytes(),
                "application/json",
            )),
        )
        .await
        .expect("batch with an oversize entry");
    assert_eq!(
        r.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let b: BatchAppendResponse = serde_json::from_slice(&r.body).expect("batch response");
    assert!(
        matches!(&b.results[..], [BatchAppendResult::Error(e), BatchAppendResult::Ok(_)]
            if e.code == 413 && e.message.contains("exceeds")),
        "{b:?}"
    );
    let size = size + 1;
    assert_eq!(
        c.head("t").await.expect("head").tree_size,
        size,
        "only the neighbour of the oversize entry was written"
    );

    // A batch answers each append on its own: a bad one fails alone, a copy within the batch
    // is a duplicate of the first.
    let r = post(
        "/v1/trees/t/entries/batch",
        br#"{"entries":[{"data":"YjE=","proof":true},{"data":"!!!"},{"data":"YjE="}]}"#,
    )
    .await;
    assert_eq!(
        r.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let b: BatchAppendResponse = serde_json::from_slice(&r.body).expect("batch response");
    let [first, bad, copy] = &b.results[..] else {
        panic!("three results: {b:?}");
    };
    let (BatchAppendResult::Ok(first), BatchAppendResult::Ok(copy)) = (first, copy) else {
        panic!("the good appends succeed: {b:?}");
    };
    assert!(!first.duplicate && copy.duplicate && first.index == copy.index);
    assert!(first.inclusion_proof.is_some() && copy.inclusion_proof.is_none());
    assert!(
        matches!(bad, BatchAppendResult::Error(e) if e.code == 400 && e.message.contains("base64")),
        "{bad:?}"
    );
    assert_eq!(c.head("t").await.expect("head").tree_size, size + 1);

    // Concurrent appends through the client are coalesced into batch requests and each gets
    // its own index.
    let public = tlog.public();
    let batch_requests = || async {
        let m = public
            .request(Method::GET, "/metrics", None)
            .await
            .expect("metrics");
        String::from_utf8_lossy(&m.body)
            .lines()
            .find_map(|l| l.strip_prefix("sigvault_tlog_batch_requests_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("batch request counter")
    };
    let before = batch_requests().await;
    let mut tasks = Vec::new();
    for i in 0..300u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.append("t", format!("coalesced {i}").as_bytes(), None, i % 2 == 0)
                .await
                .expect("append")
        }));
    }
    let mut indices = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.expect("task");
        assert!(!r.duplicate);
        indices.insert(r.index);
    }
    assert_eq!(indices.len(), 300);
    assert_eq!(c.head("t").await.expect("head").tree_size, size + 301);
    let batches = batch_requests().await - before;
    assert!(
        (1..100).contains(&batches),
        "300 concurrent appends should go out in a few batch requests, not {batches}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_one_tree_standby_takes_over_after_sigkill() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_svc_two") else {
        return;
    };
    let mut a = Tlog::new("svc-two", common::token(TOKENS, "svc-two"), &db);
    a.client().create_tree("t").await.expect("create");
    a.wait_active().await;
    let b = a.standby();
    // Only one integrates: the standby refuses appends while A holds the lease.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = b
        .client()
        .append("t", b"to b", None, false)
        .await
        .expect_err("standby refuses");
    assert!(
        err.to_string().contains("not the active sequencer"),
        "{err}"
    );
    let r = b
        .public()
        .request(Method::GET, "/readyz", None)
        .await
        .expect("readyz");
    assert!(String::from_utf8_lossy(&r.body).contains("tree t: standby"));
    // Reads work on the standby (they come from the database).
    assert!(b.client().head("t").await.expect("head").tree_size >= 1);
    // ...but it does not claim to sequence: what the personalities' readiness asks.
    let err = b.client().sequencer("t").await.expect_err("standby");
    assert!(
        err.is_transient() && err.to_string().contains("not the active sequencer"),
        "{err}"
    );
    let s = a.client().sequencer("t").await.expect("A sequences");
    assert!(s.active && s.tree_size >= 1);

    // A client that knows both fails over when A dies.
    let both = TlogClient::new(vec![
        Client::new(Endpoint::Unix(a.socket.clone()), None).expect("a"),
        Client::new(Endpoint::Unix(b.socket.clone()), None).expect("b"),
    ]);
    let first = both
        .append("t", b"before", None, false)
        .await
        .expect("append via A");
    // The standby listed first answers 503, so the client finds A.
    let standby_first = TlogClient::new(vec![
        Client::new(Endpoint::Unix(b.socket.clone()), None).expect("b"),
        Client::new(Endpoint::Unix(a.socket.clone()), None).expect("a"),
    ]);
    assert_eq!(
        standby_first
            .sequencer("t")
            .await
            .expect("A found")
            .tree_size,
        first.index + 1
    );
    a.kill9();
    let started = Instant::now();
    let second = loop {
        match both.append("t", b"after", None, false).await {
            Ok(r) => break r,
            Err(e) if e.is_transient() && started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no takeover: {e}\n{}", b.log()),
        }
    };
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "takeover within the lease time"
    );
    assert_eq!(second.index, first.index + 1);
    assert!(
        b.client()
            .sequencer("t")
            .await
            .expect("B sequences now")
            .active
    );
    assert_extends(&b, &first.checkpoint, &second.checkpoint, "the takeover").await;
}

/// An operator restores the tlog database from an older backup (`mariadb-dump`, then `mariadb`
/// from that dump) and starts the tlog again: the rollback guard refuses to sequence the tree,
/// and says why on /readyz, on the sequencer probe and in its log; nothing is appended, and it
/// leaves the tree's lease alone. Put back to the newest state, it sequences again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restored_from_an_older_backup_is_refused() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_svc_guard") else {
        return;
    };
    let dump = |file: &std::path::Path| db.dump(file);
    let restore = |file: &std::path::Path| db.restore(file);
    let mut tlog = Tlog::new("svc-guard", common::token(TOKENS, "svc-guard"), &db);
    let c = tlog.client();
    c.create_tree("t").await.expect("create");
    tlog.wait_active().await;
    for i in 0..5 {
        c.append("t", format!("early {i}").as_bytes(), None, false)
            .await
            .expect("append");
    }
    let old = tlog.dir.join("old.sql");
    dump(&old);
    for i in 0..10 {
        c.append("t", format!("late {i}").as_bytes(), None, false)
            .await
            .expect("append");
    }
    let newest = c.head("t").await.expect("head");
    tlog.stop();
    let new = tlog.dir.join("new.sql");
    dump(&new);

    restore(&old);
    tlog.start();
    let public = tlog.public();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        let r = public
            .request(Method::GET, "/readyz", None)
            .await
            .expect("readyz");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        if r.status == 503 || Instant::now() > deadline {
            break (r.status, text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(
        ready.1.contains("tree t: refused")
            && ready
                .1
                .contains(&format!("up to size {}", newest.tree_size))
            && ready.1.contains("older backup"),
        "{}",
        ready.1
    );
    let err = tlog.client().sequencer("t").await.expect_err("refused");
    assert!(
        err.to_string().contains("refusing to sequence tree 't'"),
        "{err}"
    );
    let err = tlog
        .client()
        .append("t", b"after the restore", None, false)
        .await
        .expect_err("nothing appended");
    assert!(err.is_transient(), "{err}");
    let head = tlog.client().head("t").await.expect("head");
    assert!(
        head.tree_size < newest.tree_size,
        "the old backup is in place"
    );
    let log = tlog.log();
    assert_eq!(
        log.matches("refusing to sequence tree").count(),
        1,
        "said once in the log:\n{log}"
    );
    // While it refuses, it leaves the lease alone (a healthy standby could take it): it does
    // not take it every second only to hand it back.
    let lease = || {
        let (ok, out, e) = db.sql("SELECT holder, expires_at FROM leases");
        assert!(ok, "{e}");
        out
    };
    let before = lease();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        lease(),
        before,
        "the refusing instance took the lease again"
    );

    // The newest state back in place, while it runs: it sequences again, on top of what it
    // signed, without a restart.
    restore(&new);
    tlog.wait_active().await;
    let r = tlog
        .client()
        .append("t", b"after the right restore", None, false)
        .await
        .expect("append");
    assert!(
        r.index >= newest.tree_size,
        "{} < {}",
        r.index,
        newest.tree_size
    );
    let r = public
        .request(Method::GET, "/readyz", None)
        .await
        .expect("readyz");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// The database stalls (another session holds a write lock on the entries table for a moment):
/// the sequencer cannot integrate, the append queue (`queue_limit = 8` here) fills, and further
/// appends are refused at once with 503 and `Retry-After` (a whole batch request too, as one 503
/// rather than a list of refusals), instead of piling up. Once the lock is released every append
/// that was taken is acknowledged at its own index and nothing else was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_database_fills_the_queue_and_further_appends_get_503() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_svc_stall") else {
        return;
    };
    let mut tlog = Tlog::new("svc-stall", common::token(TOKENS, "svc-stall"), &db);
    let c = tlog.client();
    c.create_tree("t").await.expect("create");
    tlog.restart_with("queue_limit = 8");
    tlog.wait_active().await;
    let size = c.head("t").await.expect("head").tree_size;

    // The stock client holds the lock for 1 s (well within the test tlog's 2 s lease).
    let mut lock = std::process::Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--host={}", db.host))
        .arg(format!("--port={}", db.port))
        .arg(format!("--user={}", db.user))
        .arg(format!("--password={}", db.password))
        .arg(format!("--database={}", db.database))
        .arg("-e")
        .arg("LOCK TABLES entries WRITE; SELECT SLEEP(1); UNLOCK TABLES;")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("mariadb");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, e) = db.sql(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'",
        );
        assert!(ok, "{e}");
        if out.trim() != "0" {
            break; // the lock is held
        }
        assert!(Instant::now() < deadline, "the lock was never taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let singles: Vec<_> = (0..40u32)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.append("t", format!("stall {i}").as_bytes(), None, false)
                    .await
            })
        })
        .collect();
    // Until the queue is full (the public /metrics says how deep it is).
    let public = tlog.public();
    loop {
        let r = public
            .request(Method::GET, "/metrics", None)
            .await
            .expect("metrics");
        let m = String::from_utf8_lossy(&r.body).into_owned();
        let depth: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix("sigvault_tlog_queue_depth{tree=\"t\"} "))
            .expect("queue depth")
            .parse()
            .expect("number");
        if depth >= 8 {
            break;
        }
        assert!(Instant::now() < deadline, "the queue never filled: {depth}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let raw = tlog.internal_raw();
    let entries: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"data":"{}"}}"#,
                base64::engine::general_purpose::STANDARD.encode(format!("batch {i}"))
            )
        })
        .collect();
    let r = raw
        .request(
            Method::POST,
            "/v1/trees/t/entries/batch",
            Some((
                format!(r#"{{"entries":[{}]}}"#, entries.join(",")).into_bytes(),
                "application/json",
            )),
        )
        .await
        .expect("batch");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 503, "{text}");
    assert_eq!(r.headers["retry-after"], "1");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["code"], 503, "{text}");
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("too many appends waiting"),
        "{text}"
    );

    assert!(lock.wait().expect("mariadb").success(), "the lock was held");
    let mut indexes = Vec::new();
    let mut refused = 0;
    for t in singles {
        match t.await.expect("task") {
            Ok(a) => indexes.push(a.index),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("503") && msg.contains("too many appends waiting"),
                    "{msg}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the queue never filled");
    assert!(!indexes.is_empty(), "nothing was taken");
    indexes.sort_unstable();
    let want: Vec<u64> = (size..size + indexes.len() as u64).collect();
    assert_eq!(indexes, want, "each taken append at its own index");
    assert_eq!(
        c.head("t").await.expect("head").tree_size,
        size + indexes.len() as u64,
        "nothing refused was written"
    );
}

/// `sigvault tlog verify` audits a tree beside the running service: it passes on an intact tree,
/// and each kind of tampering in the database (an entry's data, a hash tile, a missing entry, a
/// missing leaf-hash index row, a checkpoint that no longer matches its signature) fails it with
/// a message that names the entry, tile or checkpoint. Undone, the audit passes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_audits_the_tree_and_names_what_was_tampered_with() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_svc_audit") else {
        return;
    };
    let mut tlog = Tlog::new("svc-audit", common::token(TOKENS, "svc-audit"), &db);
    let c = tlog.client();
    c.create_tree("t").await.expect("create");
    tlog.wait_active().await;
    // 700 entries (and the sentinel and the probe): two full tiles at level 0 and a partial one,
    // a partial tile at level 1.
    // Every tenth has an identity of its own (as CT entries do), so it needs a leaf_index row.
    let mut tasks = Vec::new();
    for w in 0..10u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..70u32 {
                let data = format!("audit w{w} e{i}").into_bytes();
                let identity =
                    (i % 10 == 0).then(|| merkle::leaf_hash(&[&data[..], b"id"].concat()));
                c.append("t", &data, identity.as_ref(), false)
                    .await
                    .expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let early = c.head("t").await.expect("head");
    assert_eq!(early.tree_size, 702);
    let early_cp = tlog.dir.join("checkpoint-702");
    std::fs::write(&early_cp, &early.checkpoint).expect("checkpoint");
    let backup = tlog.dir.join("at-702.sql");
    db.dump(&backup);

    let config = tlog.config.clone();
    let verify = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::sigvault_bin());
        cmd.args(["tlog", "verify", "--config"]).arg(&config);
        cmd.args(args);
        let (ok, out, err) = common::run(&mut cmd);
        (ok, format!("{out}{err}"))
    };
    let (ok, out) = verify(&[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("tree 't': OK: 702 entries and 4 hash tiles agree with root"),
        "{out}"
    );
    // Beside appends: what the audit reads at the start stays checkable while the tree grows.
    let busy = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 0..300u32 {
                c.append("t", format!("during the audit {i}").as_bytes(), None, false)
                    .await
                    .expect("append");
            }
        })
    };
    for _ in 0..3 {
        let (ok, out) = verify(&[]);
        assert!(ok, "{out}");
    }
    busy.await.expect("appends");
    let late = c.head("t").await.expect("head");
    assert_eq!(late.tree_size, 1002);
    let late_cp = tlog.dir.join("checkpoint-1002");
    std::fs::write(&late_cp, &late.checkpoint).expect("checkpoint");
    // The tree extends the checkpoints clients were given on the way.
    let (ok, out) = verify(&[
        "--checkpoint",
        early_cp.to_str().expect("path"),
        "--checkpoint",
        late_cp.to_str().expect("path"),
    ]);
    assert!(ok, "{out}");
    // A checkpoint must be the tree's, signed by its key.
    let forged = tlog.dir.join("checkpoint-forged");
    std::fs::write(&forged, early.checkpoint.replacen("\n702\n", "\n703\n", 1)).expect("forged");
    let (ok, out) = verify(&["--checkpoint", forged.to_str().expect("path")]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("checkpoint-forged: does not verify with the tree's key"),
        "{out}"
    );
    // The log's key signing another tree at a size it signed before (a split view), given first,
    // beside the honest checkpoint of that size: it is named, the honest one is not.
    let t = common::token(TOKENS, "svc-audit");
    let uri: sigvault::hsm::Pkcs11Uri = format!("pkcs11:token={};object=tlog", t.label)
        .parse()
        .expect("uri");
    let module = sigvault::hsm::Module::load(&common::module()).expect("module");
    let token = module
        .login(&uri, &secrecy::SecretString::from(t.pin.clone()))
        .expect("login");
    let signer = token.signer(&uri).expect("signer");
    let other = note::Checkpoint {
        origin: "tlog.test - 7".into(),
        size: 702,
        root: [7; 32],
        extensions: Vec::new(),
    };
    let split_cp = tlog.dir.join("checkpoint-split");
    std::fs::write(
        &split_cp,
        note::sign_note(&other.body().expect("body"), "tlog.test", &signer).expect("sign"),
    )
    .expect("split");
    let (ok, out) = verify(&[
        "--checkpoint",
        split_cp.to_str().expect("path"),
        "--checkpoint",
        early_cp.to_str().expect("path"),
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("checkpoint-split: at size 702 the database's tree has root")
            && out.contains("the log has forked"),
        "{out}"
    );
    assert!(!out.contains("checkpoint-702"), "{out}");
    let stranger = tlog.dir.join("checkpoint-stranger");
    std::fs::write(
        &stranger,
        early.checkpoint.replacen("tlog.test - 7", "elsewhere", 1),
    )
    .expect("stranger");
    let (ok, out) = verify(&["--checkpoint", stranger.to_str().expect("path")]);
    assert!(
        !ok && out.contains("is none of the audited trees' origins"),
        "{out}"
    );
    // Reading is all it needs: a database user with SELECT alone audits the same tree.
    let (ok, _, e) = db.sql(&format!(
        "CREATE USER 'ro_audit'@'127.0.0.1' IDENTIFIED BY 'ro-pass'; \
         GRANT SELECT ON `{}`.* TO 'ro_audit'@'127.0.0.1'",
        db.database
    ));
    assert!(ok, "{e}");
    common::write_private(
        &tlog.dir.join("ro.url"),
        &format!(
            "mysql://ro_audit:ro-pass@{}:{}/{}",
            db.host, db.port, db.database
        ),
    );
    let ro_config = tlog.dir.join("tlog-ro.toml");
    let text = std::fs::read_to_string(&tlog.config).expect("config");
    assert!(text.contains("/db.url"), "{text}");
    std::fs::write(&ro_config, text.replace("/db.url", "/ro.url")).expect("ro config");
    let (ok, out, err) = common::run(
        std::process::Command::new(common::sigvault_bin())
            .args(["tlog", "verify", "--config"])
            .arg(&ro_config),
    );
    assert!(ok && out.contains("tree 't': OK"), "{out}{err}");

    // A tree the config does not list is named as not audited (and fails nothing).
    let (ok, _, e) = db.sql(
        "INSERT INTO trees (name, origin, key_spki, created_at, size, root, checkpoint, updated_at) \
         VALUES ('stray', 'elsewhere', X'00', UTC_TIMESTAMP(6), 0, REPEAT(X'00', 32), '', UTC_TIMESTAMP(6))",
    );
    assert!(ok, "{e}");
    let (ok, out) = verify(&[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("tree 'stray': in the database but not in") && out.contains("not audited"),
        "{out}"
    );
    let (ok, _, e) = db.sql("DELETE FROM trees WHERE name = 'stray'");
    assert!(ok, "{e}");

    // A checkpoint file that is not there, and a database that cannot be reached: a clear
    // error and a non-zero exit, nothing audited.
    let (ok, out) = verify(&["--checkpoint", "/nonexistent/checkpoint"]);
    assert!(
        !ok && out.contains("cannot read the checkpoint /nonexistent/checkpoint"),
        "{out}"
    );
    common::write_private(
        &tlog.dir.join("down.url"),
        &format!(
            "mysql://ro_audit:ro-pass@127.0.0.1:{}/x",
            common::procs::free_port()
        ),
    );
    let down_config = tlog.dir.join("tlog-down.toml");
    std::fs::write(&down_config, text.replace("/db.url", "/down.url")).expect("down config");
    let (ok, out, err) = common::run(
        std::process::Command::new(common::sigvault_bin())
            .args(["tlog", "verify", "--config"])
            .arg(&down_config),
    );
    assert!(!ok && !out.contains("OK"), "{out}{err}");
    // Not sqlx's pool timeout alone: the reason a plain connection gets.
    assert!(
        err.contains("cannot connect to MariaDB at 127.0.0.1:") && err.contains("refused"),
        "{out}{err}"
    );

    let (ok, out) = verify(&["--tree", "nosuch"]);
    assert!(!ok && out.contains("there is no tree 'nosuch'"), "{out}");

    // Each tampering, the words the audit must say, and its undoing.
    let idx = "SELECT MIN(idx) FROM entries WHERE leaf_hash <> identity_hash";
    let (_, with_identity, _) = db.sql(idx);
    let with_identity: u64 = with_identity
        .trim()
        .parse()
        .expect("an entry with an identity");
    let cases = [
        (
            "UPDATE entries SET data = REVERSE(data) WHERE idx = 5".to_owned(),
            "entry 5: the stored leaf hash is not the hash of its data".to_owned(),
            "UPDATE entries SET data = REVERSE(data) WHERE idx = 5".to_owned(),
        ),
        (
            "UPDATE tiles SET hashes = REVERSE(hashes) WHERE level = 0 AND idx = 1".to_owned(),
            "hash tile 0/1 (256 hashes) does not hold the hashes of the entries".to_owned(),
            "UPDATE tiles SET hashes = REVERSE(hashes) WHERE level = 0 AND idx = 1".to_owned(),
        ),
        (
            "UPDATE entries SET idx = idx + 1000000 WHERE idx = 600".to_owned(),
            "entry 600 is missing".to_owned(),
            "UPDATE entries SET idx = idx - 1000000 WHERE idx = 1000600".to_owned(),
        ),
        (
            format!("DELETE FROM leaf_index WHERE idx = {with_identity}"),
            format!("entry {with_identity}: no leaf_index row"),
            format!(
                "INSERT INTO leaf_index (tree_id, leaf_hash, idx) \
                 SELECT tree_id, leaf_hash, idx FROM entries WHERE idx = {with_identity}"
            ),
        ),
        (
            "UPDATE trees SET checkpoint = REPLACE(checkpoint, '\\n1002\\n', '\\n1003\\n')"
                .to_owned(),
            "the stored checkpoint does not verify with the tree's key".to_owned(),
            "UPDATE trees SET checkpoint = REPLACE(checkpoint, '\\n1003\\n', '\\n1002\\n')"
                .to_owned(),
        ),
    ];
    for (tamper, says, undo) in &cases {
        let (ok, _, e) = db.sql(tamper);
        assert!(ok, "{tamper}: {e}");
        let (ok, out) = verify(&[]);
        assert!(!ok, "the audit passed after {tamper}:\n{out}");
        assert!(
            out.contains(says),
            "after {tamper}, expected {says:?} in:\n{out}"
        );
        assert!(out.contains("the audit failed for: t"), "{out}");
        let (ok, _, e) = db.sql(undo);
        assert!(ok, "{undo}: {e}");
        let (ok, out) = verify(&["--tree", "t"]);
        assert!(ok, "after undoing {tamper}:\n{out}");
    }
    // The service was left alone throughout: it still appends.
    c.append("t", b"after the audit", None, false)
        .await
        .expect("append");

    // Entry 5 rewritten with its leaf hash to match: the entries alone look whole, but the tree
    // no longer has the root the early checkpoint signed.
    // (MariaDB assigns left to right: the second assignment reads the new data.)
    let rewrite = "UPDATE entries SET data = REVERSE(data), \
                   leaf_hash = UNHEX(SHA2(CONCAT(X'00', data), 256)) WHERE idx = 5";
    let (ok, _, e) = db.sql(rewrite);
    assert!(ok, "{e}");
    let (ok, out) = verify(&["--checkpoint", early_cp.to_str().expect("path")]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("checkpoint-702: at size 702 the database's tree has root")
            && out.contains("the log has forked"),
        "{out}"
    );
    assert!(!out.contains("entry 5: the stored leaf hash"), "{out}");

    // The database put back from the backup taken at 702: the audit passes on its own, but not
    // against the checkpoint published at 1002.
    tlog.stop();
    db.restore(&backup);
    let (ok, out) = verify(&["--checkpoint", early_cp.to_str().expect("path")]);
    assert!(ok && out.contains("OK: 702 entries"), "{out}");
    let (ok, out) = verify(&["--checkpoint", late_cp.to_str().expect("path")]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "checkpoint-1002: the log signed size 1002 but the database holds only 702: it is \
             behind what was published"
        ),
        "{out}"
    );
}

/// A tlog SIGKILLed and started again on its state directory (what systemd's `Restart=` does) is
/// the lease holder it was: it sequences again at once, not after its old leases run out. The
/// lease here is a minute long, so waiting it out would fail the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_tlog_takes_its_own_leases_back_at_once() {
    if !common::have_softhsm() {
        return;
    }
    let Some(db) = common::database("tlog_svc_reclaim") else {
        return;
    };
    let mut a = Tlog::new("svc-reclaim", common::token(TOKENS, "svc-reclaim"), &db);
    a.stop();
    let config = std::fs::read_to_string(&a.config).expect("config");
    assert!(config.contains("lease_ttl_ms = 2000\n"));
    std::fs::write(
        &a.config,
        config.replace("lease_ttl_ms = 2000\n", "lease_ttl_ms = 60000\n"),
    )
    .expect("write");
    a.start();
    a.client().create_tree("t").await.expect("create");
    a.wait_active().await;
    let first = a
        .client()
        .append("t", b"before", None, false)
        .await
        .expect("append");
    a.kill9();
    a.start();
    let started = Instant::now();
    let second = loop {
        match a.client().append("t", b"after", None, false).await {
            Ok(r) => break r,
            Err(e) if e.is_transient() && started.elapsed() < Duration::from_secs(50) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no append after the restart: {e}\n{}", a.log()),
        }
    };
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "sequencing again {:?} after the restart: the old lease was waited out\n{}",
        started.elapsed(),
        a.log()
    );
    assert_eq!(second.index, first.index + 1);
    assert!(a.log().contains("lasting=true"), "{}", a.log());
    assert_extends(&a, &first.checkpoint, &second.checkpoint, "the restart").await;
}
