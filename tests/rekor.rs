//! `sigvault rekor serve` on a real tlog, MariaDB and SoftHSM2. The Rekor key is made by OpenSC's
//! pkcs11-tool (not our code); SETs and checkpoints are verified with openssl over bytes this
//! test builds by hand from the Rekor documentation, proofs with the RFC 6962 algorithm.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sigvault::http::client::Client;
use sigvault::merkle;

use common::procs::{Service, Tlog, free_port};

const TOKENS: &[&str] = &[
    "rk-main",
    "rk-bad",
    "rk-crash",
    "rk-outage",
    "rk-frozen",
    "rk-hsm",
    "rk-set",
    "rk-set2",
];
const TREE_ID: u64 = 7;

struct Setup {
    tlog: Tlog,
    rekor: Option<Service>,
    config: PathBuf,
    dir: PathBuf,
    index_db: common::TestDb,
    client: Client,
}

impl Setup {
    fn start(&mut self) {
        self.rekor = Some(Service::start(
            &["rekor", "serve"],
            &self.config,
            &self.dir,
            "rekor.log",
        ));
    }

    fn kill9(&mut self) {
        if let Some(mut s) = self.rekor.take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
            std::mem::forget(s);
        }
    }

    async fn post(&self, path: &str, body: &[u8]) -> sigvault::http::client::Response {
        self.client
            .request(
                Method::POST,
                path,
                Some((body.to_vec(), "application/json")),
            )
            .await
            .expect("request")
    }

    /// `POST /api/v1/log/entries` with this proposed entry.
    async fn upload(&self, req: &Value) -> sigvault::http::client::Response {
        let body = serde_json::to_vec(req).expect("json");
        self.post("/api/v1/log/entries", &body).await
    }

    async fn get(&self, path: &str) -> sigvault::http::client::Response {
        self.client
            .request(Method::GET, path, None)
            .await
            .expect("request")
    }

    async fn tree_size(&self) -> u64 {
        let r = self.get("/api/v1/log").await;
        assert_eq!(r.status, 200);
        let v: Value = serde_json::from_slice(&r.body).expect("json");
        v["treeSize"].as_u64().expect("treeSize")
    }
}

async fn setup(test: &str, tag: &str) -> Option<Setup> {
    if !common::have_softhsm() {
        return None;
    }
    common::init_logs();
    let db = common::database(test)?;
    let index_db = common::database(&format!("{test}-index"))?;
    for t in TOKENS {
        common::token(TOKENS, t);
    }
    let token = common::token(TOKENS, tag);
    // The tlog's tree "t" (origin "tlog.test - 7") is signed with this key, which is also the
    // Rekor key: Rekor clients verify checkpoints and SETs with the same key.
    let tlog = Tlog::with_max_entry(&format!("{test}-tlog"), token, &db, 65535);
    let dir = common::scratch(test);
    common::write_private(&dir.join("index.url"), &index_db.url());
    let port = free_port();
    let config = dir.join("rekor.toml");
    std::fs::write(
        &config,
        format!(
            r#"[hsm]
module = "{module}"
[rekor]
listen = "127.0.0.1:{port}"
key = "pkcs11:token={label};object=tlog"
pin = {{ file = "{pin}" }}
public_key_file = "{pubkey}"
tree_id = {TREE_ID}
tlog = ["unix:{sock}"]
tree = "t"
database_url = {{ file = "{dir}/index.url" }}
migrate_on_start = true
max_body_bytes = 200000
"#,
            module = common::module().display(),
            label = token.label,
            pin = token.pin_file.display(),
            pubkey = tlog.spki_pem.display(),
            sock = tlog.socket.display(),
            dir = dir.display(),
        ),
    )
    .expect("write");
    let (ok, o, e) = common::run(
        Command::new(common::sigvault_bin())
            .arg("check-config")
            .arg(&config),
    );
    assert!(ok, "{o}{e}");
    let mut s = Setup {
        tlog,
        rekor: None,
        config,
        dir,
        index_db,
        client: Client::new(
            format!("http://127.0.0.1:{port}").parse().expect("url"),
            None,
        )
        .expect("client")
        .with_timeout(Duration::from_secs(30)),
    };
    // rekor creates its tree at start; the tlog is then active on it.
    s.start();
    s.tlog.wait_active().await;
    Some(s)
}

/// A signing identity: a P-256 key and a self-signed certificate with an email and a URI SAN.
struct Identity {
    key: p256::ecdsa::SigningKey,
    cert_pem: String,
}

fn identity(email: &str) -> Identity {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(&kp.serialize_der()).expect("pkcs8");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![
        rcgen::SanType::Rfc822Name(email.try_into().expect("ia5")),
        rcgen::SanType::URI(
            "https://github.com/example/repo/.github/workflows/ci.yml@refs/heads/main"
                .try_into()
                .expect("ia5"),
        ),
    ];
    let cert = params.self_signed(&kp).expect("cert");
    Identity {
        key,
        cert_pem: cert.pem(),
    }
}

impl Identity {
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.key.sign(msg);
        sig.to_der().as_bytes().to_vec()
    }
    /// The same signature in IEEE P1363 form (r‖s, 64 bytes), as WebCrypto makes it.
    fn sign_p1363(&self, msg: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.key.sign(msg);
        sig.to_bytes().to_vec()
    }
    /// The body of a hashedrekord upload of artifact number `i` (its 4 big-endian bytes), signed
    /// by this identity with its certificate as the verifier.
    fn upload(&self, i: u32) -> Vec<u8> {
        serde_json::to_vec(&hashedrekord(self, &i.to_be_bytes(), &self.cert_pem)).expect("json")
    }
    /// The certificate PEM re-wrapped at 76 columns with CRLF: same DER, different text, which
    /// the log must canonicalize.
    fn odd_pem(&self) -> String {
        let der = pem_der(&self.cert_pem);
        let b = B64.encode(der);
        let lines: Vec<&str> = b
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\r\n{}\r\n-----END CERTIFICATE-----\r\n",
            lines.join("\r\n")
        )
    }
}

fn pem_der(pem: &str) -> Vec<u8> {
    let b: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(b.trim()).expect("pem base64")
}

/// Canonical PEM as Go's encoding/pem writes it: 64 columns, LF, trailing newline.
fn canonical_pem(der: &[u8]) -> String {
    let b = B64.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for c in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(c).expect("ascii"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn hashedrekord(id: &Identity, artifact: &[u8], pem: &str) -> Value {
    let digest = Sha256::digest(artifact);
    json!({
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "signature": {
                "content": B64.encode(id.sign(artifact)),
                "publicKey": {"content": B64.encode(pem)},
            },
            "data": {"hash": {"algorithm": "sha256", "value": hex::encode(digest)}},
        },
    })
}

fn pae(t: &str, p: &[u8]) -> Vec<u8> {
    let mut v = format!("DSSEv1 {} {} {} ", t.len(), t, p.len()).into_bytes();
    v.extend_from_slice(p);
    v
}

fn statement(artifact_digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "a.txt", "digest": {"sha256": artifact_digest}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "x"}},
    }))
    .expect("json")
}

fn dsse(id: &Identity, payload: &[u8]) -> (Value, String) {
    let t = "application/vnd.in-toto+json";
    let sig = B64.encode(id.sign(&pae(t, payload)));
    let envelope = serde_json::to_string(&json!({
        "payload": B64.encode(payload),
        "payloadType": t,
        "signatures": [{"sig": sig, "keyid": ""}],
    }))
    .expect("json");
    (
        json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            // sigstore-python sends the computed fields as explicit nulls.
            "spec": {
                "proposedContent": {"envelope": envelope, "verifiers": [B64.encode(&id.cert_pem)]},
                "signatures": null, "envelopeHash": null, "payloadHash": null,
            },
        }),
        sig,
    )
}

fn intoto(id: &Identity, payload: &[u8]) -> (Value, String) {
    let t = "application/vnd.in-toto+json";
    let sig = B64.encode(id.sign(&pae(t, payload)));
    let env_hash = hex::encode(Sha256::digest(b"envelope as the client serialized it"));
    (
        json!({
            "apiVersion": "0.0.2",
            "kind": "intoto",
            "spec": {"content": {
                "envelope": {
                    "payloadType": t,
                    "payload": B64.encode(B64.encode(payload)),
                    "signatures": [{"sig": B64.encode(&sig), "publicKey": B64.encode(&id.cert_pem)}],
                },
                "hash": {"algorithm": "sha256", "value": env_hash},
            }},
        }),
        sig,
    )
}

/// A 32-byte hash given as lowercase hex in a JSON value.
fn hash32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().expect("hex string"))
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

/// A JSON array of hex hashes.
fn hashes32(v: &Value) -> Vec<[u8; 32]> {
    v.as_array().expect("hashes").iter().map(hash32).collect()
}

/// Verify a DER ECDSA signature over `msg` with openssl and a PEM public key.
fn openssl_verify(pubkey: &Path, msg: &[u8], sig: &[u8], dir: &Path) {
    std::fs::write(dir.join("msg"), msg).expect("w");
    std::fs::write(dir.join("sig"), sig).expect("w");
    let (ok, o, e) = common::run(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(pubkey)
            .args(["-signature", "sig", "msg"])
            .current_dir(dir),
    );
    assert!(ok && o.contains("Verified OK"), "openssl: {o}{e}");
}

/// Check one LogEntry map as both clients do; returns (entryID, body bytes, logIndex).
fn check_entry(s: &Setup, v: &Value) -> (String, Vec<u8>, u64) {
    let m = v.as_object().expect("object");
    assert_eq!(m.len(), 1, "exactly one key");
    let (id, e) = m.iter().next().expect("entry");
    let body = B64.decode(e["body"].as_str().expect("body")).expect("b64");
    let uuid = merkle::leaf_hash(&body);
    assert_eq!(id, &format!("{TREE_ID:016x}{}", hex::encode(uuid)));
    let index = e["logIndex"].as_u64().expect("logIndex");
    assert!(index > 0, "no client entry gets index 0");
    let t = e["integratedTime"].as_i64().expect("integratedTime");
    let now = sigvault::rekor::now_secs();
    assert!(t <= now && t > now - 600, "integratedTime {t} vs now {now}");
    let spki = pem_der(&std::fs::read_to_string(&s.tlog.spki_pem).expect("pem"));
    let log_id = hex::encode(Sha256::digest(&spki));
    assert_eq!(e["logID"], log_id.as_str());

    // SET: built here by hand (RFC 8785, keys sorted), verified by openssl.
    let set_payload = format!(
        r#"{{"body":"{}","integratedTime":{t},"logID":"{log_id}","logIndex":{index}}}"#,
        e["body"].as_str().expect("body")
    );
    let set = B64
        .decode(
            e["verification"]["signedEntryTimestamp"]
                .as_str()
                .expect("SET"),
        )
        .expect("b64");
    let d = common::scratch("rekor-verify");
    openssl_verify(&s.tlog.spki_pem, set_payload.as_bytes(), &set, &d);

    // Inclusion proof and checkpoint for exactly that tree size.
    let p = &e["verification"]["inclusionProof"];
    assert_eq!(p["logIndex"].as_u64(), Some(index));
    let size = p["treeSize"].as_u64().expect("treeSize");
    let root = hash32(&p["rootHash"]);
    let hashes = hashes32(&p["hashes"]);
    merkle::verify_inclusion(&uuid, index, size, &hashes, &root).expect("inclusion proof");
    let cp_text = p["checkpoint"].as_str().expect("checkpoint");
    assert_eq!(cp_text.matches("\n\n").count(), 1, "exactly one blank line");
    let cp = s.tlog.openssl_verify(cp_text);
    assert_eq!(cp.origin, format!("tlog.test - {TREE_ID}"));
    assert_eq!(cp.size, size);
    assert_eq!(cp.root, root);
    // The key hint is the first 4 bytes of the log ID.
    let (_, sigs) = sigvault::note::parse_note(cp_text).expect("note");
    assert_eq!(hex::encode(sigs[0].key_hint), log_id[..8]);
    (id.clone(), body, index)
}

fn json_of(r: &sigvault::http::client::Response) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekor_entries_of_every_kind_verify_and_are_found() {
    let Some(s) = setup("rekor_kinds", "rk-main").await else {
        return;
    };
    let alice = identity("Alice@Example.org");
    let artifact = b"the artifact bytes\n";

    // hashedrekord, sent with a 76-column CRLF PEM: stored with the canonical PEM.
    let req = hashedrekord(&alice, artifact, &alice.odd_pem());
    let r = s.upload(&req).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // `{"<uuid>":{...}}` and a newline, as upstream's Go encoder writes it (sigstore-rs cuts the
    // entry out by offsets from the end).
    assert!(r.body.starts_with(b"{\"") && r.body.ends_with(b"}}\n"));
    assert_eq!(r.headers["content-type"], "application/json");
    let v = json_of(&r);
    let (hr_id, body, hr_index) = check_entry(&s, &v);
    assert_eq!(r.headers["etag"], hr_id.as_str());
    assert_eq!(
        r.headers["location"],
        format!("/api/v1/log/entries/{hr_id}").as_str()
    );
    let expect = format!(
        r#"{{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{{"data":{{"hash":{{"algorithm":"sha256","value":"{}"}}}},"signature":{{"content":"{}","publicKey":{{"content":"{}"}}}}}}}}"#,
        hex::encode(Sha256::digest(artifact)),
        req["spec"]["signature"]["content"].as_str().expect("sig"),
        B64.encode(canonical_pem(&pem_der(&alice.cert_pem)))
    );
    assert_eq!(String::from_utf8(body.clone()).expect("utf8"), expect);

    // The same entry again (with the canonical PEM this time: same canonical body) → 409.
    let again = hashedrekord(&alice, artifact, &alice.cert_pem);
    let mut again = again;
    again["spec"]["signature"]["content"] = req["spec"]["signature"]["content"].clone();
    let r = s
        .post(
            "/api/v1/log/entries",
            &serde_json::to_vec(&again).expect("json"),
        )
        .await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.headers["location"],
        format!("/api/v1/log/entries/{hr_id}").as_str()
    );
    assert_eq!(json_of(&r)["code"], 409);

    // dsse 0.0.1 (with explicit nulls).
    let art_digest = hex::encode(Sha256::digest(artifact));
    let payload = statement(&art_digest);
    let (req, sig) = dsse(&alice, &payload);
    let env_text = req["spec"]["proposedContent"]["envelope"]
        .as_str()
        .expect("env")
        .to_owned();
    let r = s.upload(&req).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let (_, body, dsse_index) = check_entry(&s, &json_of(&r));
    let b: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(b["kind"], "dsse");
    assert_eq!(
        b["spec"]["payloadHash"]["value"],
        hex::encode(Sha256::digest(&payload)).as_str()
    );
    assert_eq!(
        b["spec"]["envelopeHash"]["value"],
        hex::encode(Sha256::digest(env_text.as_bytes())).as_str()
    );
    assert_eq!(
        b["spec"]["signatures"],
        json!([{"signature": sig, "verifier": B64.encode(canonical_pem(&pem_der(&alice.cert_pem)))}])
    );

    // intoto 0.0.2 (double base64), stored without the payload.
    let (req, sig) = intoto(&alice, &payload);
    let r = s.upload(&req).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let (_, body, intoto_index) = check_entry(&s, &json_of(&r));
    let b: Value = serde_json::from_slice(&body).expect("json");
    let env = &b["spec"]["content"]["envelope"];
    assert!(env.get("payload").is_none());
    assert_eq!(
        B64.decode(env["signatures"][0]["sig"].as_str().expect("sig"))
            .expect("b64"),
        sig.as_bytes()
    );
    assert_eq!(
        b["spec"]["content"]["payloadHash"]["value"],
        hex::encode(Sha256::digest(&payload)).as_str()
    );

    // rekord 0.0.1 (x509): the artifact itself is sent, signed over with SHA-256; the log keeps
    // its digest only, and the certificate as canonical PEM (sent here as CRLF, 76 columns).
    let req = json!({
        "apiVersion": "0.0.1",
        "kind": "rekord",
        "spec": {
            "signature": {
                "format": "x509",
                "content": B64.encode(alice.sign(artifact)),
                "publicKey": {"content": B64.encode(alice.odd_pem())},
            },
            "data": {"content": B64.encode(artifact)},
        },
    });
    let r = s.upload(&req).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let (rk_id, body, _) = check_entry(&s, &json_of(&r));
    let expect = format!(
        r#"{{"apiVersion":"0.0.1","kind":"rekord","spec":{{"data":{{"hash":{{"algorithm":"sha256","value":"{art_digest}"}}}},"signature":{{"content":"{}","format":"x509","publicKey":{{"content":"{}"}}}}}}}}"#,
        req["spec"]["signature"]["content"].as_str().expect("sig"),
        B64.encode(canonical_pem(&pem_der(&alice.cert_pem)))
    );
    assert_eq!(String::from_utf8(body).expect("utf8"), expect);
    let got = json_of(&s.get(&format!("/api/v1/log/entries/{rk_id}")).await);
    check_entry(&s, &got);
    // The same artifact and signature with the (matching) digest beside it: the same entry.
    let mut again = req.clone();
    again["spec"]["data"]["hash"] = json!({"algorithm": "sha256", "value": art_digest});
    let r = s
        .post(
            "/api/v1/log/entries",
            &serde_json::to_vec(&again).expect("json"),
        )
        .await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.headers["location"],
        format!("/api/v1/log/entries/{rk_id}").as_str()
    );

    // ECDSA signatures in IEEE P1363 form (r‖s) are taken too, as upstream takes them, and
    // stored as sent: hashedrekord and rekord.
    let carol = identity("carol@example.org");
    let mut req = hashedrekord(&carol, b"p1363", &carol.cert_pem);
    let p1363 = B64.encode(carol.sign_p1363(b"p1363"));
    req["spec"]["signature"]["content"] = json!(p1363);
    let r = s.upload(&req).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let (_, body, _) = check_entry(&s, &json_of(&r));
    let b: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(b["spec"]["signature"]["content"], p1363.as_str());
    let req = json!({
        "apiVersion": "0.0.1",
        "kind": "rekord",
        "spec": {
            "signature": {
                "format": "x509",
                "content": B64.encode(carol.sign_p1363(b"p1363 rekord")),
                "publicKey": {"content": B64.encode(&carol.cert_pem)},
            },
            "data": {"content": B64.encode(b"p1363 rekord")},
        },
    });
    let r = s.upload(&req).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // GET by entry ID, by UUID and by index: the same body and time.
    let uuid = &hr_id[16..];
    let a = json_of(&s.get(&format!("/api/v1/log/entries/{hr_id}")).await);
    let b = json_of(&s.get(&format!("/api/v1/log/entries/{uuid}")).await);
    let c = json_of(
        &s.get(&format!("/api/v1/log/entries?logIndex={hr_index}"))
            .await,
    );
    for x in [&a, &b, &c] {
        check_entry(&s, x);
        assert_eq!(x[&hr_id]["body"], a[&hr_id]["body"]);
        assert_eq!(x[&hr_id]["integratedTime"], v[&hr_id]["integratedTime"]);
        assert_eq!(x[&hr_id]["logIndex"], hr_index);
    }
    assert_eq!(a[&hr_id]["body"], v[&hr_id]["body"]);
    // Missing entries: 404 with an empty body; index 0 is the sentinel, never an entry.
    for p in [
        format!("/api/v1/log/entries/{}", "ab".repeat(32)),
        "/api/v1/log/entries?logIndex=0".to_owned(),
        "/api/v1/log/entries?logIndex=999999".to_owned(),
        format!("/api/v1/log/entries/{:016x}{uuid}", TREE_ID + 1),
    ] {
        let r = s.get(&p).await;
        assert_eq!(r.status, 404, "{p}");
        assert!(r.body.is_empty());
    }
    assert_eq!(s.get("/api/v1/log/entries/xyz").await.status, 400);

    // entries/retrieve: by UUID, by index, by proposed entry; misses skipped.
    let q = json!({
        "entryUUIDs": [uuid, "cd".repeat(32)],
        "logIndexes": [dsse_index, 999999],
        "entries": [hashedrekord(&alice, b"never logged", &alice.cert_pem)],
    });
    let r = s
        .post(
            "/api/v1/log/entries/retrieve/",
            &serde_json::to_vec(&q).expect("json"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let list = json_of(&r);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2);
    let q = json!({"entryUUIDs": vec![uuid; 11]});
    let r = s
        .post(
            "/api/v1/log/entries/retrieve",
            &serde_json::to_vec(&q).expect("json"),
        )
        .await;
    assert_eq!(r.status, 422);

    // index/retrieve by artifact hash, by certificate, by email (any case), with and/or.
    let search = |q: Value| {
        let s = &s;
        async move {
            let r = s
                .post(
                    "/api/v1/index/retrieve",
                    &serde_json::to_vec(&q).expect("json"),
                )
                .await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let mut ids: Vec<String> = serde_json::from_slice(&r.body).expect("json");
            ids.sort();
            ids
        }
    };
    let ids = search(json!({"hash": format!("sha256:{art_digest}")})).await;
    // hashedrekord and rekord (artifact digest), both attestations (in-toto subject digest).
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.contains(&hr_id) && ids.contains(&rk_id));
    assert_eq!(search(json!({"hash": art_digest})).await, ids);
    let by_key =
        search(json!({"publicKey": {"format": "x509", "content": B64.encode(&alice.cert_pem)}}))
            .await;
    assert_eq!(by_key.len(), 4, "{by_key:?}");
    let by_email = search(json!({"email": "alice@EXAMPLE.org"})).await;
    assert_eq!(by_email, by_key);
    let and =
        search(json!({"email": "alice@example.org", "hash": art_digest, "operator": "and"})).await;
    assert_eq!(and.len(), 4);
    assert!(search(json!({"email": "bob@example.org"})).await.is_empty());
    // A hash that is not a digest and an email that is not an address are 400s, as upstream
    // answers them, not searches that can only come back empty.
    for (q, want) in [
        (json!({"hash": "not-a-digest"}), "hash must be a hex digest"),
        (
            json!({"hash": format!("sha512:{art_digest}")}),
            "hash must be a hex digest",
        ),
        (
            json!({"hash": "zz".repeat(32)}),
            "hash must be a hex digest",
        ),
        (
            json!({"email": "not an address"}),
            "email: not an email address",
        ),
        (
            json!({"email": "alice@localhost"}),
            "email: not an email address",
        ),
    ] {
        let r = s
            .post(
                "/api/v1/index/retrieve",
                &serde_json::to_vec(&q).expect("json"),
            )
            .await;
        let msg = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 400, "{q}: {msg}");
        assert!(msg.contains(want), "{q}: {msg}");
    }
    let _ = (dsse_index, intoto_index);

    // Log info, public key, consistency proofs between two checkpoints.
    let info = json_of(&s.get("/api/v1/log").await);
    assert_eq!(info["treeID"], TREE_ID.to_string().as_str());
    let size1 = info["treeSize"].as_u64().expect("size");
    let root1 = hash32(&info["rootHash"]);
    let cp = s
        .tlog
        .openssl_verify(info["signedTreeHead"].as_str().expect("sth"));
    assert_eq!((cp.size, cp.root), (size1, root1));
    let bob = identity("bob@example.org");
    for i in 0..5u8 {
        let r = s
            .post(
                "/api/v1/log/entries",
                &serde_json::to_vec(&hashedrekord(&bob, &[i; 10], &bob.cert_pem)).expect("json"),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let info2 = json_of(&s.get("/api/v1/log").await);
    let size2 = info2["treeSize"].as_u64().expect("size");
    let root2 = hash32(&info2["rootHash"]);
    let pr = json_of(
        &s.get(&format!(
            "/api/v1/log/proof?firstSize={size1}&lastSize={size2}&treeID={TREE_ID}"
        ))
        .await,
    );
    assert_eq!(pr["rootHash"], info2["rootHash"]);
    let hashes = hashes32(&pr["hashes"]);
    merkle::verify_consistency(size1, size2, &hashes, &root1, &root2).expect("consistency");
    // An older last size gets that size's root.
    let pr = json_of(
        &s.get(&format!("/api/v1/log/proof?firstSize=1&lastSize={size1}"))
            .await,
    );
    assert_eq!(pr["rootHash"], info["rootHash"]);
    assert_eq!(
        s.get(&format!(
            "/api/v1/log/proof?firstSize={size2}&lastSize={size1}"
        ))
        .await
        .status,
        400
    );
    assert_eq!(
        s.get(&format!("/api/v1/log/proof?lastSize={}", size2 + 10))
            .await
            .status,
        400
    );
    let r = s.get("/api/v1/log/publicKey").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/x-pem-file");
    assert_eq!(
        pem_der(std::str::from_utf8(&r.body).expect("utf8")),
        pem_der(&std::fs::read_to_string(&s.tlog.spki_pem).expect("pem"))
    );
    let m = String::from_utf8(s.get("/metrics").await.body.to_vec()).expect("utf8");
    assert!(m.contains("sigvault_rekor_entries_created_total 11"), "{m}");
    assert!(m.contains("sigvault_rekor_duplicates_total 2"), "{m}");
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekor_refuses_bad_input_and_appends_nothing() {
    let Some(s) = setup("rekor_bad", "rk-bad").await else {
        return;
    };
    let alice = identity("alice@example.org");
    let size0 = s.tree_size().await;
    let good = hashedrekord(&alice, b"x", &alice.cert_pem);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        serde_json::to_vec(&v).expect("json")
    };
    cases.push(("garbage", b"{not json".to_vec(), "malformed JSON"));
    cases.push(("array", b"[1,2]".to_vec(), "JSON object"));
    cases.push((
        "unknown kind",
        with(&|v| v["kind"] = json!("rpm")),
        "kind \"rpm\" is not supported",
    ));
    cases.push((
        "unknown version",
        with(&|v| v["apiVersion"] = json!("0.0.9")),
        "apiVersion \"0.0.9\"",
    ));
    cases.push((
        "bad signature",
        with(&|v| {
            v["spec"]["signature"]["content"] = json!(B64.encode(alice.sign(b"something else")))
        }),
        "verifying signature",
    ));
    cases.push((
        "mismatched hash",
        with(&|v| {
            v["spec"]["data"]["hash"]["value"] = json!(hex::encode(Sha256::digest(b"other")))
        }),
        "verifying signature",
    ));
    cases.push((
        "short hash",
        with(&|v| v["spec"]["data"]["hash"]["value"] = json!("abcd")),
        "64 hex digits",
    ));
    cases.push((
        "unknown hash algorithm",
        with(&|v| v["spec"]["data"]["hash"]["algorithm"] = json!("md5")),
        "md5",
    ));
    cases.push((
        "broken PEM",
        with(&|v| {
            v["spec"]["signature"]["publicKey"]["content"] = json!(
                B64.encode("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
            )
        }),
        "PEM",
    ));
    cases.push((
        "DER key",
        with(&|v| {
            v["spec"]["signature"]["publicKey"]["content"] =
                json!(B64.encode(pem_der(&alice.cert_pem)))
        }),
        "DER is not accepted",
    ));
    cases.push((
        "a signature neither DER nor P1363",
        with(&|v| {
            v["spec"]["signature"]["content"] = json!(B64.encode(&alice.sign_p1363(b"x")[..63]))
        }),
        "neither DER nor IEEE P1363",
    ));
    cases.push((
        "a P1363 signature over something else",
        with(&|v| v["spec"]["signature"]["content"] = json!(B64.encode(alice.sign_p1363(b"y")))),
        "verifying signature",
    ));
    cases.push((
        "signature not base64",
        with(&|v| v["spec"]["signature"]["content"] = json!("%%%")),
        "base64",
    ));
    cases.push((
        "missing spec",
        br#"{"kind":"hashedrekord","apiVersion":"0.0.1"}"#.to_vec(),
        "spec",
    ));
    // rekord 0.0.1: a hash alone, a hash that is not the content's, another format, a signature
    // over something else.
    let rekord = json!({
        "apiVersion": "0.0.1",
        "kind": "rekord",
        "spec": {
            "signature": {
                "format": "x509",
                "content": B64.encode(alice.sign(b"x")),
                "publicKey": {"content": B64.encode(&alice.cert_pem)},
            },
            "data": {"content": B64.encode(b"x")},
        },
    });
    let rekord_with = |f: &dyn Fn(&mut Value)| {
        let mut v = rekord.clone();
        f(&mut v);
        serde_json::to_vec(&v).expect("json")
    };
    let x_digest = hex::encode(Sha256::digest(b"x"));
    cases.push((
        "rekord with a hash only",
        rekord_with(&|v| {
            v["spec"]["data"] = json!({"hash": {"algorithm": "sha256", "value": x_digest}})
        }),
        "spec.data.content: missing",
    ));
    cases.push((
        "rekord with another hash",
        rekord_with(&|v| {
            v["spec"]["data"]["hash"] =
                json!({"algorithm": "sha256", "value": hex::encode(Sha256::digest(b"y"))})
        }),
        "SHA mismatch",
    ));
    cases.push((
        "rekord in ssh format",
        rekord_with(&|v| v["spec"]["signature"]["format"] = json!("ssh")),
        "\"ssh\" is not supported",
    ));
    cases.push((
        "rekord signature over other content",
        rekord_with(&|v| v["spec"]["data"]["content"] = json!(B64.encode(b"y"))),
        "verifying signature",
    ));
    let (mut dsse_req, _) = dsse(&alice, b"payload");
    dsse_req["spec"]["proposedContent"]["verifiers"] =
        json!([B64.encode(identity("mallory@example.org").cert_pem)]);
    cases.push((
        "dsse wrong verifier",
        serde_json::to_vec(&dsse_req).expect("json"),
        "no verifier verifies it",
    ));
    let (mut intoto_req, _) = intoto(&alice, b"payload");
    intoto_req["spec"]["content"]["envelope"]["payload"] =
        json!(B64.encode(B64.encode(b"tampered")));
    cases.push((
        "intoto tampered payload",
        serde_json::to_vec(&intoto_req).expect("json"),
        "no verifier verifies it",
    ));
    for (name, body, want) in &cases {
        let r = s.post("/api/v1/log/entries", body).await;
        let text = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 400, "{name}: {text}");
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("{name}: {text}"));
        assert_eq!(v["code"], 400, "{name}");
        assert!(
            v["message"].as_str().expect("message").contains(want),
            "{name}: {text}"
        );
    }
    // Oversize body: refused before it is read in full.
    let big = vec![b' '; 300_000];
    let r = s.post("/api/v1/log/entries", &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(s.tree_size().await, size0, "nothing was appended");
    let m = String::from_utf8(s.get("/metrics").await.body.to_vec()).expect("utf8");
    assert!(
        m.contains(&format!("sigvault_rekor_rejected_total {}", cases.len())),
        "{m}"
    );
    // Search queries with bad input.
    for q in [
        json!({}),
        json!({"operator": "xor", "email": "a@b"}),
        json!({"publicKey": {"format": "pgp", "content": "AAAA"}}),
        json!({"unknown": 1}),
    ] {
        let r = s
            .post(
                "/api/v1/index/retrieve",
                &serde_json::to_vec(&q).expect("json"),
            )
            .await;
        assert_eq!(r.status, 400, "{q}");
    }
}

/// A crash between the log append and the index write: the entry is in the log, the index has
/// not caught up. The index must be repaired from the log, and every entry be found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekor_index_is_repaired_after_a_crash() {
    let Some(mut s) = setup("rekor_crash", "rk-crash").await else {
        return;
    };
    let alice = identity("carol@example.org");
    // Concurrent uploads, and a SIGKILL in their midst.
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let client = s.client.clone();
        let body = serde_json::to_vec(&hashedrekord(&alice, &i.to_be_bytes(), &alice.cert_pem))
            .expect("json");
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(i) * 5)).await;
            client
                .request(
                    Method::POST,
                    "/api/v1/log/entries",
                    Some((body, "application/json")),
                )
                .await
                .ok()
                .filter(|r| r.status == 201)
                .map(|_| i)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.kill9();
    let mut acked = Vec::new();
    for t in tasks {
        if let Ok(Some(i)) = t.await {
            acked.push(i);
        }
    }
    // And the exact crash window, made deterministic: the index loses its last rows and its
    // mark goes back (as if the process died after appending, before indexing).
    let (ok, _, e) = s.index_db.sql(
        "DELETE FROM rekor_index WHERE log_index > 3; UPDATE rekor_indexer SET next_index = LEAST(next_index, 4)",
    );
    assert!(ok, "{e}");
    s.start();
    // Upload more after the restart; the index catches up over the gap.
    for i in 100..103u32 {
        let body = serde_json::to_vec(&hashedrekord(&alice, &i.to_be_bytes(), &alice.cert_pem))
            .expect("json");
        let r = s.post("/api/v1/log/entries", &body).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        acked.push(i);
    }
    // Every entry in the log (acknowledged or not) is found by its artifact digest.
    let size = s.tree_size().await;
    let mut logged = 0;
    let mut not_rekor = 0;
    for index in 1..size {
        let r = s
            .get(&format!("/api/v1/log/entries?logIndex={index}"))
            .await;
        if r.status == 404 {
            // The tlog test helper's own probe entry: not a Rekor entry.
            not_rekor += 1;
            continue;
        }
        let v = json_of(&r);
        let (id, body, _) = check_entry(&s, &v);
        let b: Value = serde_json::from_slice(&body).expect("json");
        let digest = b["spec"]["data"]["hash"]["value"].as_str().expect("digest");
        let r = s
            .post(
                "/api/v1/index/retrieve",
                &serde_json::to_vec(&json!({"hash": digest})).expect("json"),
            )
            .await;
        let ids: Vec<String> = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(ids, vec![id], "entry {index} is indexed");
        logged += 1;
    }
    // Every acknowledged upload is in the log.
    for i in &acked {
        let d = hex::encode(Sha256::digest(i.to_be_bytes()));
        let r = s
            .post(
                "/api/v1/index/retrieve",
                &serde_json::to_vec(&json!({"hash": d})).expect("json"),
            )
            .await;
        let ids: Vec<String> = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(
            ids.len(),
            1,
            "acknowledged upload {i} is logged and indexed"
        );
    }
    assert!(logged >= acked.len());
    assert!(
        not_rekor <= 1,
        "only the helper's probe is not a Rekor entry"
    );
    let (ok, rows, _) = s.index_db.sql("SELECT next_index FROM rekor_indexer");
    assert!(ok);
    assert_eq!(rows.trim(), size.to_string(), "the mark reached the head");
}

/// The tlog going away: uploads and reads get 503 with a clear message (nothing half-done), and
/// work again once it is back. The index database's connections killed: uploads go on, searches
/// recover with the pool's new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekor_answers_503_while_the_tlog_is_down_and_recovers() {
    let Some(mut s) = setup("rekor_outage", "rk-outage").await else {
        return;
    };
    let alice = identity("dave@example.org");
    let upload = |i: u32| alice.upload(i);
    let r = s.post("/api/v1/log/entries", &upload(1)).await;
    assert_eq!(r.status, 201);
    let size = s.tree_size().await;

    s.tlog.kill9();
    let r = s.post("/api/v1/log/entries", &upload(2)).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["retry-after"], "1");
    let v = json_of(&r);
    assert_eq!(v["code"], 503);
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("transparency log unavailable")
    );
    assert_eq!(s.get("/api/v1/log").await.status, 503);
    assert_eq!(s.get("/readyz").await.status, 503);

    // The restarted tlog stands by until the dead instance's lease expires: rekor is not ready
    // then (reads would work, appends would not); once it is, an upload goes through at once.
    s.tlog.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut standby_seen = 0;
    let tlog_standby = || async {
        s.tlog
            .public()
            .request(Method::GET, "/readyz", None)
            .await
            .is_ok_and(|t| String::from_utf8_lossy(&t.body).contains("tree t: standby"))
    };
    loop {
        // The tlog may take over between the two questions: only a tlog that stood by both
        // before and after rekor answered makes rekor's answer a verdict.
        let before = tlog_standby().await;
        let r = s.get("/readyz").await;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        if before && tlog_standby().await {
            standby_seen += 1;
            assert_eq!(r.status, 503, "rekor ready on a standby tlog: {text}");
            assert!(text.contains("not the active sequencer"), "{text}");
        }
        if r.status == 200 {
            assert!(text.starts_with("ready\ntree size "), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("rekor /readyz was 503 on {standby_seen} polls while the tlog stood by");
    let r = s.post("/api/v1/log/entries", &upload(2)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Nothing from the failed attempt was logged: one new Rekor entry.
    let after = s.tree_size().await;
    assert_eq!(after, size + 1);

    // Kill every connection of the index database; the pool reconnects.
    let (ok, ids, e) = s.index_db.sql(&format!(
        "SELECT id FROM information_schema.processlist WHERE db = '{}' AND id <> CONNECTION_ID()",
        s.index_db.database
    ));
    assert!(ok, "{e}");
    for id in ids.split_whitespace() {
        let _ = s.index_db.sql(&format!("KILL CONNECTION {id}"));
    }
    let r = s.post("/api/v1/log/entries", &upload(3)).await;
    assert_eq!(r.status, 201);
    let d = hex::encode(Sha256::digest(3u32.to_be_bytes()));
    let mut found = Vec::new();
    for _ in 0..20 {
        let r = s
            .post(
                "/api/v1/index/retrieve",
                &serde_json::to_vec(&json!({"hash": d})).expect("json"),
            )
            .await;
        if r.status == 200 {
            found = serde_json::from_slice::<Vec<String>>(&r.body).expect("json");
            if !found.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        found.len(),
        1,
        "the index recovered from the lost connections"
    );
}

/// A frozen tree (`frozen = true` in tlog.toml, as after a shard is retired): rekor stays ready
/// and serves every read, refuses uploads with 403 and a clear message, and nothing is appended;
/// the tlog says so on its readiness and refuses appends itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekor_serves_a_frozen_tree_read_only() {
    let Some(mut s) = setup("rekor_frozen", "rk-frozen").await else {
        return;
    };
    let alice = identity("erin@example.org");
    let upload = |i: u32| alice.upload(i);
    let r = s.post("/api/v1/log/entries", &upload(1)).await;
    assert_eq!(r.status, 201);
    let v = json_of(&r);
    let (id, body, index) = check_entry(&s, &v);
    let size = s.tree_size().await;

    // Freeze the tree: the tlog restarts with `frozen = true` on it.
    s.tlog.restart_frozen();

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.get("/readyz").await;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        if r.status == 200 {
            assert!(text.contains("read-only"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = s.post("/api/v1/log/entries", &upload(2)).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    let m = json_of(&r);
    assert_eq!(m["code"], 403);
    assert!(
        m["message"]
            .as_str()
            .expect("message")
            .contains("read-only"),
        "{m}"
    );
    // Reads: by UUID and by index, the same entry as before (a fresh SET each time: ECDSA is
    // randomized); the log's size is unchanged.
    let by_id = s.get(&format!("/api/v1/log/entries/{id}")).await;
    assert_eq!(by_id.status, 200);
    let (id2, body2, index2) = check_entry(&s, &json_of(&by_id));
    assert_eq!((id2, body2, index2), (id.clone(), body, index));
    let by_index = s
        .get(&format!("/api/v1/log/entries?logIndex={index}"))
        .await;
    assert_eq!(by_index.status, 200);
    let (id3, _, index3) = check_entry(&s, &json_of(&by_index));
    assert_eq!((id3, index3), (id.clone(), index));
    assert_eq!(s.tree_size().await, size);

    // The tlog itself: frozen on /readyz, appends refused with 403, the probe says frozen.
    let r = s
        .tlog
        .public()
        .request(Method::GET, "/readyz", None)
        .await
        .expect("readyz");
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("tree t: frozen"));
    let err = s
        .tlog
        .client()
        .append("t", b"into a frozen tree", None, false)
        .await
        .expect_err("frozen");
    assert!(
        matches!(&err, sigvault::tlog::api::TlogClientError::Api { status: 403, message } if message.contains("frozen")),
        "{err}"
    );
    let p = s.tlog.client().sequencer("t").await.expect("probe");
    assert!(p.frozen && !p.active && p.tree_size == size);
    assert_eq!(
        s.tlog.client().head("t").await.expect("head").tree_size,
        size
    );
    s.kill9();
}

/// The HSM goes away (the token's files vanish, as a removed or restarted HSM looks to a running
/// PKCS#11 session): an upload gets a clear 5xx and nothing is appended; the tlog, whose
/// checkpoint key fails, exits non-zero naming the token once it has failed for
/// `[hsm] exit_after_failing_secs` (systemd then restarts it); restarted with the token back, the same
/// upload goes through and everything logged before is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_hsm_goes_away_nothing_is_lost_and_a_restart_recovers() {
    let Some(mut s) = setup("rekor_hsm", "rk-hsm").await else {
        return;
    };
    let alice = identity("frank@example.org");
    let upload = |i: u32| alice.upload(i);
    let r = s.post("/api/v1/log/entries", &upload(1)).await;
    assert_eq!(r.status, 201);
    let (first_id, _, _) = check_entry(&s, &json_of(&r));
    let size = s.tree_size().await;

    let label = &common::token(TOKENS, "rk-hsm").label;
    let away = common::TokenAway::take(label);
    let r = s.post("/api/v1/log/entries", &upload(2)).await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(r.status.as_u16() >= 500, "{} {text}", r.status);
    assert!(text.contains("signing the checkpoint failed"), "{text}");
    // Until it gives up, the tlog says on /readyz why it cannot write, and so does rekor.
    let r = s
        .tlog
        .public()
        .request(Method::GET, "/readyz", None)
        .await
        .expect("tlog readyz");
    let why = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 503, "{why}");
    assert!(why.contains(&common::hsm_failing_phrase(label)), "{why}");
    let r = s.get("/readyz").await;
    let why = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 503, "{why}");
    assert!(why.contains("has failed every signature"), "{why}");

    let started = std::time::Instant::now();
    let status = s
        .tlog
        .wait_exit(Duration::from_secs(30))
        .expect("the tlog exits when its HSM stays unusable");
    assert!(!status.success(), "{status}");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "not at the first failure"
    );
    common::assert_hsm_exit_logged(&s.tlog.log(), label);

    // The token is back; the restarted tlog logs in afresh and the same upload goes through.
    away.restore();
    s.tlog.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.get("/readyz").await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "rekor never ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = s.post("/api/v1/log/entries", &upload(2)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        s.tree_size().await,
        size + 1,
        "the failed upload was not logged"
    );
    assert_eq!(
        s.get(&format!("/api/v1/log/entries/{first_id}"))
            .await
            .status,
        200
    );
    s.kill9();
}

/// Rekor's own token fails after the tlog has made the entry durable (here the tlog signs its
/// checkpoints in another token holding the same key, as a second HSM partition or a session that
/// broke on one side only would): the upload answers 503 and the entry stays logged; the retry
/// answers 409 pointing at it; once rekor has exited and been restarted with its token back, the
/// entry is served with a SET that verifies, at the index the tlog gave it, and found by search.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_set_cannot_be_signed_the_logged_entry_is_kept_and_served_after_a_restart() {
    if !common::have_softhsm() {
        return;
    }
    // One P-256 key in two tokens: the tlog signs with the first, rekor with the second.
    let keys = common::scratch("rekor_set_key");
    let pem = keys.join("key.pem");
    let (ok, o, e) = common::run(Command::new("openssl").args([
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        pem.to_str().expect("path"),
    ]));
    assert!(ok, "openssl genpkey: {o}{e}");
    for tag in ["rk-set", "rk-set2"] {
        common::procs::import_key(common::token(TOKENS, tag), &pem);
    }
    let Some(mut s) = setup("rekor_set", "rk-set").await else {
        return;
    };
    let (tlog_token, own) = (
        common::token(TOKENS, "rk-set"),
        common::token(TOKENS, "rk-set2"),
    );
    s.kill9();
    let config = std::fs::read_to_string(&s.config)
        .expect("config")
        .replace(
            &tlog_token.pin_file.display().to_string(),
            &own.pin_file.display().to_string(),
        )
        .replace(&tlog_token.label, &own.label)
        .replacen("[hsm]\n", "[hsm]\nexit_after_failing_secs = 2\n", 1);
    assert!(config.contains(&own.label));
    std::fs::write(&s.config, config).expect("write");
    s.start();

    let alice = identity("grace@example.org");
    let upload = |i: u32| alice.upload(i);
    let r = s.post("/api/v1/log/entries", &upload(1)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    check_entry(&s, &json_of(&r));
    let size = s.tree_size().await;

    let away = common::TokenAway::take(&own.label);
    let r = s.post("/api/v1/log/entries", &upload(2)).await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 503, "{text}");
    assert!(text.contains("error signing"), "{text}");
    assert_eq!(s.tree_size().await, size + 1, "the entry is logged");

    // The client's retry learns where the entry is; reading it needs a SET, which cannot be made.
    let r = s.post("/api/v1/log/entries", &upload(2)).await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    let location = r.headers["location"].to_str().expect("ascii").to_owned();
    let r = s.get(&location).await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let r = s.get("/readyz").await;
    let why = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 503, "{why}");
    assert!(
        why.contains(&common::hsm_failing_phrase(&own.label)),
        "{why}"
    );

    let rekor = s.rekor.as_mut().expect("rekor");
    let status = rekor
        .wait_exit(Duration::from_secs(30))
        .expect("rekor exits when its HSM stays unusable");
    assert!(!status.success(), "{status}");
    common::assert_hsm_exit_logged(&rekor.log(), &own.label);
    s.rekor = None;

    away.restore();
    s.start();
    let r = s.get(&location).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (id, body, index) = check_entry(&s, &json_of(&r));
    assert_eq!(location, format!("/api/v1/log/entries/{id}"));
    assert_eq!(index, size, "at the index the tlog gave it");
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(2u32.to_be_bytes())));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s
            .post(
                "/api/v1/index/retrieve",
                &serde_json::to_vec(&json!({ "hash": hash })).expect("json"),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let found: Vec<String> = serde_json::from_slice(&r.body).expect("uuids");
        if found.iter().any(|u| id.ends_with(u.as_str())) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never indexed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!body.is_empty());
    s.kill9();
}
