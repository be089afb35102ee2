//! `sigvault tuf` end to end on real parts: every role key generated in its own SoftHSM2 token
//! at test time, the repository served by `sigvault tuf serve`, and python-tuf's ngclient (PyPI
//! `tuf`, tests/clients/tuf) as the client. It updates from root version 1 through two root
//! rotations and a change of targets, and refuses what an attacker or a neglected repository
//! would serve: metadata signed by a key root does not list, a rolled-back snapshot, a stale
//! timestamp after a newer one, a target whose hash does not match, an expired timestamp.
//! With short lifetimes, `refresh` keeps the client updating; with the online token gone,
//! `/readyz` and `/metrics` say so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::procs::{Service, free_port};
use serde_json::{Value, json};
use sigvault::tuf::metadata::{Expires, Metadata, Snapshot, Timestamp};
use sigvault::tuf::sign::{KeySigner, sign};

const TOKENS: &[&str] = &[
    "tf-root-1",
    "tf-root-2",
    "tf-root-3",
    "tf-targets",
    "tf-online",
    "fr-root",
    "fr-targets",
    "fr-online",
];

/// The tests take one token's files away (a vanished HSM), which a PKCS#11 module loading at
/// that moment in another test may trip over: they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// python-tuf's interpreter, from tests/run.sh; `None` (skip) outside it.
fn tuf_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SIGVAULT_TEST_TUF_PYTHON") {
        return Some(p.into());
    }
    assert!(
        std::env::var_os("SIGVAULT_TEST_REQUIRE").is_none(),
        "SIGVAULT_TEST_REQUIRE is set but SIGVAULT_TEST_TUF_PYTHON (python-tuf's venv) is missing"
    );
    eprintln!("skipping: run through tests/run.sh, which installs python-tuf");
    None
}

/// One key entry of the config: `pkcs11:token=<tag's token>;object=<label>`, its PIN file.
fn key(tag: &str, label: &str) -> String {
    let t = common::token(TOKENS, tag);
    format!(
        "key = \"pkcs11:token={};object={label}\"\npin = {{ file = \"{}\" }}\n",
        t.label,
        t.pin_file.display()
    )
}

/// Lifetimes of one repository: (expires, refresh_before, warn_before) of snapshot and timestamp.
struct Lifetimes {
    snapshot: (&'static str, &'static str, &'static str),
    timestamp: (&'static str, &'static str, &'static str),
}

const LONG: Lifetimes = Lifetimes {
    snapshot: ("7d", "3d", "1d"),
    timestamp: ("1d", "12h", "6h"),
};

/// A tuf config. `root` lists (tag, label, retired); `online` is the online token's tag and
/// the timestamp key's label; `online_pin` is the online keys' `pin = ...` value.
struct Cfg<'a> {
    dir: &'a Path,
    port: u16,
    root: &'a [(&'a str, &'a str, bool)],
    root_threshold: u64,
    targets: &'a str,
    online: &'a str,
    timestamp_label: &'a str,
    online_pin: String,
    life: &'a Lifetimes,
}

fn write_config(c: &Cfg<'_>, file: &Path) {
    let mut s = format!(
        "[hsm]\nmodule = \"{}\"\n[tuf]\ndir = \"{}\"\nlisten = \"127.0.0.1:{}\"\ntimestamp_max_age_secs = 0\n[tuf.root]\nthreshold = {}\nexpires = \"365d\"\n",
        common::module().display(),
        c.dir.display(),
        c.port,
        c.root_threshold
    );
    for (tag, label, retired) in c.root {
        s.push_str("[[tuf.root.keys]]\n");
        s.push_str(&key(tag, label));
        if *retired {
            s.push_str("retired = true\n");
        }
    }
    s.push_str("[tuf.targets]\nexpires = \"90d\"\n[[tuf.targets.keys]]\n");
    s.push_str(&key(c.targets, "tuf-targets"));
    let online = common::token(TOKENS, c.online);
    for (role, label, (e, r, w)) in [
        ("snapshot", "tuf-snapshot", c.life.snapshot),
        ("timestamp", c.timestamp_label, c.life.timestamp),
    ] {
        s.push_str(&format!(
            "[tuf.{role}]\nkey = \"pkcs11:token={};object={label}\"\npin = {}\nexpires = \"{e}\"\nrefresh_before = \"{r}\"\nwarn_before = \"{w}\"\n",
            online.label, c.online_pin
        ));
    }
    std::fs::write(file, s).expect("write config");
}

/// `sigvault tuf <cmd> --config <cfg> [extra]`, with `env` set.
fn tuf(cmd: &str, cfg: &Path, extra: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut c = Command::new(common::sigvault_bin());
    c.args(["tuf", cmd, "--config"]).arg(cfg).args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    common::run(&mut c)
}

fn ok(r: (bool, String, String), what: &str) -> String {
    assert!(r.0, "{what} failed:\n{}\n{}", r.1, r.2);
    r.1
}

/// `sigvault trust`-shaped files with real DER (a self-signed certificate and its key), whose
/// signing config names `rekor_url`: two different `rekor_url`s make two different targets.
fn trust_dir(dir: &Path, rekor_url: &str) -> PathBuf {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["sigvault.test".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let der = B64.encode(cert.der());
    let spki = B64.encode(key.public_key_der());
    let log = json!({"baseUrl": rekor_url, "hashAlgorithm": "SHA2_256",
        "publicKey": {"rawBytes": spki, "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                      "validFor": {"start": "2026-01-01T00:00:00Z"}},
        "logId": {"keyId": "AAAA"}});
    let ca = json!({"subject": {"organization": "sigvault", "commonName": "test"},
        "uri": "https://fulcio.sigvault.test",
        "certChain": {"certificates": [{"rawBytes": der}]},
        "validFor": {"start": "2026-01-01T00:00:00Z"}});
    let root = json!({"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [log.clone()], "certificateAuthorities": [ca.clone()], "ctlogs": [log],
        "timestampAuthorities": [ca]});
    let svc = |url: &str| {
        json!({"url": url, "majorApiVersion": 1,
            "validFor": {"start": "2026-01-01T00:00:00Z"}, "operator": "sigvault.test"})
    };
    let sc = json!({"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
        "caUrls": [svc("https://fulcio.sigvault.test")], "oidcUrls": [],
        "rekorTlogUrls": [svc(rekor_url)], "rekorTlogConfig": {"selector": "ANY"},
        "tsaUrls": [svc("https://tsa.sigvault.test")], "tsaConfig": {"selector": "ANY"}});
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("trusted_root.json"), root.to_string()).expect("w");
    std::fs::write(dir.join("signing_config.json"), sc.to_string()).expect("w");
    dir.into()
}

fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).expect("read")))
}

/// What the stock client reports: the trusted versions and each target's SHA-256, or the
/// class of the exception it refused with and its message.
#[derive(Debug)]
enum Client {
    Updated { versions: Value, files: Value },
    Refused { error: String, message: String },
}

impl Client {
    fn updated(self, what: &str) -> (Value, Value) {
        match self {
            Client::Updated { versions, files } => (versions, files),
            Client::Refused { error, message } => {
                panic!("{what}: the client refused: {error}: {message}")
            }
        }
    }

    fn refused(self, what: &str) -> (String, String) {
        match self {
            Client::Refused { error, message } => (error, message),
            Client::Updated { versions, .. } => {
                panic!("{what}: the client accepted it (trusts {versions})")
            }
        }
    }
}

/// Run python-tuf's ngclient with its trusted metadata in `state` (bootstrapped from
/// `bootstrap` the first time) against `url`, fetching `targets`.
fn client(
    py: &Path,
    url: &str,
    state: &Path,
    bootstrap: Option<&Path>,
    targets: &[&str],
) -> Client {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/tuf/client.py");
    let mut c = Command::new(py);
    c.arg(script).arg(url).arg(state);
    if let Some(b) = bootstrap {
        c.arg("--bootstrap").arg(b);
    }
    for t in targets {
        c.args(["--target", t]);
    }
    let (_, out, err) = common::run(&mut c);
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("client output is not JSON ({e}):\n{out}\n{err}"));
    match v.get("error") {
        Some(e) => Client::Refused {
            error: e.as_str().unwrap_or_default().into(),
            message: v["message"].as_str().unwrap_or_default().into(),
        },
        None => Client::Updated {
            versions: v["versions"].clone(),
            files: v["files"].clone(),
        },
    }
}

fn http_get(url: &str) -> (u16, String) {
    let (ok, out, e) = common::run(Command::new("curl").args(["-sS", "-w", "\n%{http_code}", url]));
    assert!(ok, "curl {url}: {e}");
    let (body, code) = out.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.into())
}

/// A P-256 key outside every token: the attacker's, which no root lists.
struct Attacker {
    pair: ring::signature::EcdsaKeyPair,
    spki: Vec<u8>,
}

impl Attacker {
    fn new() -> Self {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("gen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("parse");
        // SubjectPublicKeyInfo of an uncompressed P-256 point: the fixed DER header, then it.
        let mut spki =
            hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").expect("hex");
        spki.extend_from_slice(pair.public_key().as_ref());
        Self { pair, spki }
    }
}

impl sigvault::signer::Signer for Attacker {
    fn algorithm(&self) -> sigvault::signer::SignatureAlgorithm {
        sigvault::signer::SignatureAlgorithm::EcdsaP256Sha256
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, sigvault::signer::SignError> {
        let rng = ring::rand::SystemRandom::new();
        self.pair
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| sigvault::signer::SignError::Malformed(e.to_string()))
    }
}

/// Sign a timestamp (version, snapshot file it names) with `signer`, as whoever holds it would.
fn forged_timestamp(
    signer: &dyn sigvault::signer::Signer,
    version: u64,
    snapshot_file: &Path,
) -> Vec<u8> {
    let snapshot: Metadata<Snapshot> =
        Metadata::parse(std::fs::read(snapshot_file).expect("snapshot")).expect("parse");
    let ts = Timestamp::new(
        version,
        Expires::after(time::OffsetDateTime::now_utc(), Duration::from_secs(3600)),
        snapshot.meta_file(),
    );
    let k = KeySigner::new(signer, "forger").expect("key");
    sign(&ts, &[&k]).expect("sign").bytes
}

fn json_file(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json")
}

fn version_of(p: &Path) -> u64 {
    json_file(p)["signed"]["version"].as_u64().expect("version")
}

/// A token's files moved out of the token store: to a process that starts now, the token is
/// not there (SoftHSM2 reads every directory of its store, so [`common::TokenAway`]'s rename
/// inside it only breaks sessions already open). Put back on `restore` or drop.
struct OutOfStore {
    dir: PathBuf,
    away: PathBuf,
}

impl OutOfStore {
    fn take(label: &str, away: &Path) -> Self {
        let dir = common::token_dir(label);
        std::fs::rename(&dir, away).expect("take the token away");
        Self {
            dir,
            away: away.into(),
        }
    }

    fn restore(self) {}
}

impl Drop for OutOfStore {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.away, &self.dir);
    }
}

/// The private and public objects `label` names in token `tag`, as OpenSC's pkcs11-tool reads
/// them: (kind, usage) pairs and whether the private half is sensitive and never extractable.
fn key_attributes(tag: &str, label: &str) -> (Vec<(String, String)>, bool) {
    let t = common::token(TOKENS, tag);
    let (ok, o, e) = common::run(
        Command::new("pkcs11-tool")
            .arg("--module")
            .arg(common::module())
            .args(["--token-label", &t.label, "--login", "--pin", &t.pin])
            .args(["--list-objects", "--label", label]),
    );
    assert!(ok, "pkcs11-tool: {o}{e}");
    // pkcs11-tool lists every object; keep the blocks (from "... Object;" on) of this label.
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for l in o.lines() {
        if l.contains("Object;") {
            blocks.push(vec![l]);
        } else if let Some(b) = blocks.last_mut() {
            b.push(l);
        }
    }
    blocks.retain(|b| b.iter().any(|l| l.trim() == format!("label:      {label}")));
    let mut usages: Vec<(String, String)> = blocks
        .iter()
        .filter(|b| b[0].contains("Key Object"))
        .map(|b| {
            let kind = b[0].split(';').next().unwrap_or(b[0]).trim().to_owned();
            let usage = b
                .iter()
                .find_map(|l| l.trim().strip_prefix("Usage:"))
                .unwrap_or_default()
                .trim()
                .to_owned();
            (kind, usage)
        })
        .collect();
    usages.sort();
    let sealed = blocks
        .iter()
        .filter(|b| b[0].contains("Private Key"))
        .all(|b| {
            b.iter().any(|l| {
                l.trim() == "Access:     sensitive, always sensitive, never extractable, local"
            })
        });
    (usages, sealed)
}

#[test]
fn a_stock_client_follows_rotations_and_refuses_attacks() {
    if !common::have_softhsm() {
        return;
    }
    let Some(py) = tuf_python() else { return };
    let _serial = serial();
    let w = common::scratch("tuf-main");
    let state = w.join("state");
    let repo = state.join("repository");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let pin_line = |tag: &str| {
        format!(
            "{{ file = \"{}\" }}",
            common::token(TOKENS, tag).pin_file.display()
        )
    };
    let base = Cfg {
        dir: &state,
        port,
        root: &[
            ("tf-root-1", "tuf-root", false),
            ("tf-root-2", "tuf-root", false),
        ],
        root_threshold: 2,
        targets: "tf-targets",
        online: "tf-online",
        timestamp_label: "tuf-timestamp",
        online_pin: pin_line("tf-online"),
        life: &LONG,
    };
    let cfg1 = w.join("tuf-1.toml");
    write_config(&base, &cfg1);
    let (ok_, out, err) = common::run(
        Command::new(common::sigvault_bin())
            .arg("check-config")
            .arg(&cfg1),
    );
    assert!(ok_, "check-config: {out}{err}");

    // Bad input is refused before anything is signed or generated: no repository, no key.
    let broken = trust_dir(&w.join("broken"), "https://rekor.sigvault.test");
    let mut root: Value = json_file(&broken.join("trusted_root.json"));
    root["tlogs"][0]["publicKey"]["rawBytes"] = json!("bm90IGEga2V5");
    std::fs::write(broken.join("trusted_root.json"), root.to_string()).expect("w");
    let (okb, _, e) = tuf(
        "init",
        &cfg1,
        &["--trust-dir", broken.to_str().expect("utf-8")],
        &[],
    );
    assert!(!okb, "a broken trusted root must be refused");
    assert!(
        e.contains("trusted_root.json") && e.contains("nothing was created"),
        "{e}"
    );
    let no_sc = trust_dir(&w.join("no-sc"), "https://rekor.sigvault.test");
    std::fs::remove_file(no_sc.join("signing_config.json")).expect("rm");
    let (okb, _, e) = tuf(
        "init",
        &cfg1,
        &["--trust-dir", no_sc.to_str().expect("utf-8")],
        &[],
    );
    assert!(!okb && e.contains("signing_config.json"), "{e}");
    assert!(!repo.exists(), "nothing may be created for bad input");
    assert!(key_attributes("tf-root-1", "tuf-root").0.is_empty());

    // init: every key generated in its token, sign-only and never extractable.
    let trust1 = trust_dir(&w.join("trust-1"), "https://rekor.sigvault.test");
    let out = ok(
        tuf(
            "init",
            &cfg1,
            &["--trust-dir", trust1.to_str().expect("utf-8")],
            &[],
        ),
        "init",
    );
    assert!(out.contains("generated the root key"), "{out}");
    for (tag, label) in [
        ("tf-root-1", "tuf-root"),
        ("tf-root-2", "tuf-root"),
        ("tf-targets", "tuf-targets"),
        ("tf-online", "tuf-snapshot"),
        ("tf-online", "tuf-timestamp"),
    ] {
        let (usages, sealed) = key_attributes(tag, label);
        assert_eq!(
            usages,
            [
                ("Private Key Object".to_owned(), "sign".to_owned()),
                ("Public Key Object".to_owned(), "verify".to_owned())
            ],
            "{tag} {label}"
        );
        assert!(
            sealed,
            "{tag} {label}: the private key must be sensitive and never extractable"
        );
    }
    let root1 = repo.join("1.root.json");
    assert!(root1.exists());
    // A second init refuses, and changes nothing.
    let before = std::fs::read(repo.join("timestamp.json")).expect("ts");
    let (again, _, e) = tuf(
        "init",
        &cfg1,
        &["--trust-dir", trust1.to_str().expect("utf-8")],
        &[],
    );
    assert!(!again, "a second init must refuse");
    assert!(e.contains("exists") || e.contains("already"), "{e}");
    assert_eq!(
        std::fs::read(repo.join("timestamp.json")).expect("ts"),
        before
    );
    assert_eq!(version_of(&repo.join("timestamp.json")), 1);

    let server = Service::start(&["tuf", "serve"], &cfg1, &w, "serve.log");
    let (code, body) = http_get(&format!("{url}/readyz"));
    assert_eq!(code, 200, "{body}");

    // The stock client bootstraps from root version 1 and fetches both targets, byte for byte.
    let alice = w.join("alice");
    let targets = ["trusted_root.json", "signing_config.v0.2.json"];
    let (v, files) = client(&py, &url, &alice, Some(&root1), &targets).updated("bootstrap");
    assert_eq!(v["root"], 1);
    assert_eq!(v["targets"], 1);
    assert_eq!(
        files["trusted_root.json"],
        sha256_file(&trust1.join("trusted_root.json"))
    );
    assert_eq!(
        files["signing_config.v0.2.json"],
        sha256_file(&trust1.join("signing_config.json"))
    );

    // A change of targets: publish, and the client follows.
    let trust2 = trust_dir(&w.join("trust-2"), "https://rekor2.sigvault.test");
    ok(
        tuf(
            "publish",
            &cfg1,
            &["--trust-dir", trust2.to_str().expect("utf-8")],
            &[],
        ),
        "publish",
    );
    let (v, files) = client(&py, &url, &alice, None, &targets).updated("new targets");
    assert_eq!(v["targets"], 2);
    assert_eq!(
        files["signing_config.v0.2.json"],
        sha256_file(&trust2.join("signing_config.json"))
    );
    // Publishing the same files again signs nothing.
    let out = ok(
        tuf(
            "publish",
            &cfg1,
            &["--trust-dir", trust2.to_str().expect("utf-8")],
            &[],
        ),
        "publish again",
    );
    assert!(out.contains("unchanged"), "{out}");

    // Rotation 1: root-3 joins, root-1 leaves (it signs the new root as a key of the old one).
    let cfg2 = w.join("tuf-2.toml");
    write_config(
        &Cfg {
            root: &[
                ("tf-root-1", "tuf-root", true),
                ("tf-root-2", "tuf-root", false),
                ("tf-root-3", "tuf-root", false),
            ],
            ..base_clone(&base)
        },
        &cfg2,
    );
    let out = ok(tuf("rotate-root", &cfg2, &[], &[]), "rotate-root 1");
    assert!(out.contains("published root version 2"), "{out}");
    let (v, _) = client(&py, &url, &alice, None, &targets).updated("root 2");
    assert_eq!(v["root"], 2);

    // Rotation 2: root-1 gone for good, and a new timestamp key in the online token.
    let cfg3 = w.join("tuf-3.toml");
    write_config(
        &Cfg {
            root: &[
                ("tf-root-2", "tuf-root", false),
                ("tf-root-3", "tuf-root", false),
            ],
            timestamp_label: "tuf-timestamp-2",
            ..base_clone(&base)
        },
        &cfg3,
    );
    let out = ok(tuf("rotate-root", &cfg3, &[], &[]), "rotate-root 2");
    assert!(out.contains("published root version 3"), "{out}");
    let r3 = json_file(&repo.join("3.root.json"));
    assert_eq!(
        r3["signed"]["roles"]["root"]["keyids"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let (v, _) = client(&py, &url, &alice, None, &targets).updated("root 3");
    assert_eq!(v["root"], 3);
    // A client that only ever knew root version 1 walks the whole chain.
    let bob = w.join("bob");
    let (v, files) = client(&py, &url, &bob, Some(&root1), &targets).updated("1 to 3");
    assert_eq!(v["root"], 3);
    assert_eq!(
        files["trusted_root.json"],
        sha256_file(&trust2.join("trusted_root.json"))
    );
    // The old timestamp key no longer counts: refresh with cfg1 refuses to sign with it.
    let (old_key, _, e) = tuf("refresh", &cfg1, &[], &[]);
    assert!(
        !old_key && e.contains("not the timestamp key of root version 3"),
        "{e}"
    );

    // Attacks, each served in place of the real timestamp.json, which is put back afterwards.
    let ts_path = repo.join("timestamp.json");
    let real_ts = std::fs::read(&ts_path).expect("ts");
    let trusted_ts = version_of(&ts_path);
    let snapshots: Vec<u64> = (1..100)
        .filter(|n| repo.join(format!("{n}.snapshot.json")).exists())
        .collect();
    let newest_snapshot = *snapshots.last().expect("snapshots");
    // 1. Signed by a key that root does not list.
    let attacker = Attacker::new();
    std::fs::write(
        &ts_path,
        forged_timestamp(
            &attacker,
            trusted_ts + 1,
            &repo.join(format!("{newest_snapshot}.snapshot.json")),
        ),
    )
    .expect("w");
    let (err, msg) = client(&py, &url, &alice, None, &targets).refused("untrusted key");
    assert_eq!(err, "UnsignedMetadataError", "{msg}");
    // 2. A rollback: a newer timestamp, signed with the real online key, naming an older
    //    snapshot.
    let online = common::token(TOKENS, "tf-online");
    let module = sigvault::hsm::Module::load(&common::module()).expect("module");
    let uri: sigvault::hsm::Pkcs11Uri =
        format!("pkcs11:token={};object=tuf-timestamp-2", online.label)
            .parse()
            .expect("uri");
    let token = module
        .login(&uri, &secrecy::SecretString::from(online.pin.clone()))
        .expect("login");
    let real_key = token.signer(&uri).expect("signer");
    std::fs::write(
        &ts_path,
        forged_timestamp(
            &real_key,
            trusted_ts + 1,
            &repo.join(format!("{}.snapshot.json", snapshots[0])),
        ),
    )
    .expect("w");
    let (err, msg) = client(&py, &url, &alice, None, &targets).refused("rollback");
    assert_eq!(err, "BadVersionNumberError", "{msg}");
    assert!(msg.contains("snapshot"), "{msg}");
    // 3. A stale timestamp served after a newer one (a freeze): version 1, validly signed.
    std::fs::write(&ts_path, &real_ts).expect("w");
    ok(tuf("refresh", &cfg3, &[], &[]), "refresh");
    // Refresh re-signs only what is due: nothing yet. A new publish makes a newer timestamp.
    let trust3 = trust_dir(&w.join("trust-3"), "https://rekor3.sigvault.test");
    ok(
        tuf(
            "publish",
            &cfg3,
            &["--trust-dir", trust3.to_str().expect("utf-8")],
            &[],
        ),
        "publish 3",
    );
    let (v, _) = client(&py, &url, &alice, None, &targets).updated("before the freeze");
    assert_eq!(v["timestamp"], trusted_ts + 1);
    let newest_ts = std::fs::read(&ts_path).expect("ts");
    std::fs::write(&ts_path, &real_ts).expect("w");
    let (err, msg) = client(&py, &url, &alice, None, &targets).refused("freeze");
    assert_eq!(err, "BadVersionNumberError", "{msg}");
    assert!(msg.contains("timestamp"), "{msg}");
    std::fs::write(&ts_path, &newest_ts).expect("w");
    // 4. A target whose bytes are not what targets.json lists (same length, one byte changed),
    //    to a client that has not cached it yet.
    let tr_hash = sha256_file(&trust3.join("trusted_root.json"));
    let tr_file = repo.join(format!("targets/{tr_hash}.trusted_root.json"));
    let good = std::fs::read(&tr_file).expect("target");
    let mut bad = good.clone();
    let i = bad.iter().position(|b| *b == b'A').expect("an A");
    bad[i] = b'B';
    std::fs::write(&tr_file, &bad).expect("w");
    let carol = w.join("carol");
    let (err, msg) = client(&py, &url, &carol, Some(&root1), &targets).refused("bad target");
    assert_eq!(err, "LengthOrHashMismatchError", "{msg}");
    std::fs::write(&tr_file, &good).expect("w");
    let (v, _) = client(&py, &url, &carol, None, &targets).updated("after the attacks");
    assert_eq!(v["root"], 3);

    // The transcript shows every key generated and every signature made, and no PIN.
    let transcript = std::fs::read_to_string(state.join("transcript.jsonl")).expect("transcript");
    let lines: Vec<Value> = transcript
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["event"] == "generated-key")
            .count(),
        7,
        "5 at init, root-3 and timestamp-2 at the rotations:\n{transcript}"
    );
    let signed = |role: &str, n: u64| {
        lines
            .iter()
            .any(|l| l["event"] == "signed" && l["role"] == role && l["version"] == n)
    };
    for role in ["root", "targets", "snapshot"] {
        let newest = (1..100u64)
            .rfind(|n| repo.join(format!("{n}.{role}.json")).exists())
            .expect("versions");
        assert!(
            signed(role, newest),
            "{role} {newest} is not in the transcript"
        );
    }
    assert!(signed("timestamp", version_of(&ts_path)));
    for tag in ["tf-root-1", "tf-root-2", "tf-targets", "tf-online"] {
        assert!(!transcript.contains(&common::token(TOKENS, tag).pin));
    }

    // A trust dir that holds a bad signing config changes nothing in a live repository.
    let bad_sc = trust_dir(&w.join("bad-sc"), "ftp://rekor.sigvault.test");
    let before = std::fs::read(&ts_path).expect("ts");
    let (okp, _, e) = tuf(
        "publish",
        &cfg3,
        &["--trust-dir", bad_sc.to_str().expect("utf-8")],
        &[],
    );
    assert!(!okp && e.contains("nothing was signed"), "{e}");
    assert_eq!(std::fs::read(&ts_path).expect("ts"), before);
    drop(server);
}

/// The parts of [`Cfg`] a variant keeps.
fn base_clone<'a>(c: &Cfg<'a>) -> Cfg<'a> {
    Cfg {
        dir: c.dir,
        port: c.port,
        root: c.root,
        root_threshold: c.root_threshold,
        targets: c.targets,
        online: c.online,
        timestamp_label: c.timestamp_label,
        online_pin: c.online_pin.clone(),
        life: c.life,
    }
}

const SHORT: Lifetimes = Lifetimes {
    snapshot: ("40s", "20s", "10s"),
    timestamp: ("8s", "5s", "2s"),
};

#[test]
fn the_refresh_keeps_clients_updating_and_a_lost_online_token_shows() {
    if !common::have_softhsm() {
        return;
    }
    let Some(py) = tuf_python() else { return };
    let _serial = serial();
    let w = common::scratch("tuf-fresh");
    let state = w.join("state");
    let repo = state.join("repository");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // The online PIN as sigvault-tuf-refresh.service gets it: a systemd credential.
    let creds = w.join("credentials");
    std::fs::create_dir_all(&creds).expect("mkdir");
    common::write_private(
        &creds.join("tuf-online-pin"),
        &common::token(TOKENS, "fr-online").pin,
    );
    let cfg = w.join("tuf.toml");
    write_config(
        &Cfg {
            dir: &state,
            port,
            root: &[("fr-root", "tuf-root", false)],
            root_threshold: 1,
            targets: "fr-targets",
            online: "fr-online",
            timestamp_label: "tuf-timestamp",
            online_pin: "{ credential = \"tuf-online-pin\" }".into(),
            life: &SHORT,
        },
        &cfg,
    );
    let env = [("CREDENTIALS_DIRECTORY", creds.as_path())];
    let trust = trust_dir(&w.join("trust"), "https://rekor.sigvault.test");
    ok(
        tuf(
            "init",
            &cfg,
            &["--trust-dir", trust.to_str().expect("utf-8")],
            &env,
        ),
        "init",
    );
    // Without the credential the online PIN is missing, and the refresh says so.
    let (okr, _, e) = tuf("refresh", &cfg, &[], &[]);
    assert!(!okr && e.contains("CREDENTIALS_DIRECTORY"), "{e}");
    let _server = Service::start(&["tuf", "serve"], &cfg, &w, "serve.log");
    let dave = w.join("dave");
    let root1 = repo.join("1.root.json");
    client(&py, &url, &dave, Some(&root1), &["trusted_root.json"]).updated("bootstrap");

    // The refresh, run as the timer would (here every second), keeps the timestamp fresh past
    // several of its 8 s lifetimes, and the client keeps updating.
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(20) {
        ok(tuf("refresh", &cfg, &[], &env), "refresh");
        let (v, _) = client(&py, &url, &dave, None, &["trusted_root.json"]).updated("fresh");
        seen.push(v["timestamp"].as_u64().expect("version"));
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]) && seen.last() > seen.first(),
        "the timestamp must be re-signed before it expires: {seen:?}"
    );
    assert!(
        *seen.last().expect("seen") >= 4,
        "20 s of an 8 s timestamp renewed at 5 s left: {seen:?}"
    );
    let (code, body) = http_get(&format!("{url}/readyz"));
    assert_eq!(code, 200, "{body}");
    let (_, m) = http_get(&format!("{url}/metrics"));
    assert!(m.contains("sigvault_tuf_refresh_failing 0"), "{m}");
    assert!(m.contains("sigvault_tuf_ready 1"), "{m}");

    // The online token goes away: the refresh fails, and readiness and the metric say so.
    let label = common::token(TOKENS, "fr-online").label.clone();
    let away = OutOfStore::take(&label, &w.join("online-token-away"));
    let (okr, _, e) = tuf("refresh", &cfg, &[], &env);
    assert!(!okr, "a refresh without its token must fail");
    assert!(e.contains(&label), "the error names the token: {e}");
    let (code, body) = http_get(&format!("{url}/readyz"));
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("the last refresh") && body.contains("failed"),
        "{body}"
    );
    let (_, m) = http_get(&format!("{url}/metrics"));
    assert!(m.contains("sigvault_tuf_refresh_failing 1"), "{m}");
    assert!(m.contains("sigvault_tuf_ready 0"), "{m}");

    // Nobody re-signs: the timestamp expires, and the client refuses it (a freeze cannot last).
    std::thread::sleep(Duration::from_secs(9));
    let (err, msg) = client(&py, &url, &dave, None, &["trusted_root.json"]).refused("expired");
    assert_eq!(err, "ExpiredMetadataError", "{msg}");
    let (code, body) = http_get(&format!("{url}/readyz"));
    assert_eq!(code, 503);
    assert!(
        body.contains("timestamp") && body.contains("EXPIRED"),
        "{body}"
    );
    let (_, m) = http_get(&format!("{url}/metrics"));
    assert!(
        m.lines()
            .any(|l| l.starts_with("sigvault_tuf_expires_in_seconds{role=\"timestamp\"} -")),
        "{m}"
    );

    // The token is back: the next refresh repairs everything without a person.
    away.restore();
    ok(tuf("refresh", &cfg, &[], &env), "refresh after the outage");
    client(&py, &url, &dave, None, &["trusted_root.json"]).updated("after the outage");
    let (code, body) = http_get(&format!("{url}/readyz"));
    assert_eq!(code, 200, "{body}");
    let (okst, out, _) = tuf("status", &cfg, &[], &[]);
    assert!(okst, "{out}");
    assert!(out.contains("timestamp") && out.contains("ready"), "{out}");
}
