//! `sigvault rekor-v2 serve` on a real tlog, MariaDB and SoftHSM2. The log key is made by
//! OpenSC's pkcs11-tool; the entries' keys, certificates and signatures by the openssl CLI (not
//! our code); checkpoints are verified with openssl, the canonical body is built here by hand
//! from the rekor-tiles protos, and the read path is checked by rebuilding the tree from the
//! served entry bundles and tiles with the RFC 6962 algorithm.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sigvault::merkle;

use common::procs::{Service, Tlog, free_port};

const TOKENS: &[&str] = &["r2-main"];

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A signer made with openssl: its key, self-signed certificate (DER) and SPKI (DER).
struct Signer {
    dir: PathBuf,
    name: String,
    cert_der: Vec<u8>,
    spki_der: Vec<u8>,
    /// Extra `pkeyutl` options (RSA padding).
    opts: Vec<String>,
}

impl Signer {
    fn new(dir: &Path, name: &str, genkey: &[&str], opts: &[&str]) -> Self {
        let key = format!("{name}.key");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genkey);
        args.extend_from_slice(&["-out", &key]);
        openssl(&args, dir);
        let cert = format!("{name}.crt.der");
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &key,
                "-subj",
                "/CN=rekor-v2 test",
                "-days",
                "1",
                "-outform",
                "DER",
                "-out",
                &cert,
            ],
            dir,
        );
        let spki_der = openssl(&["pkey", "-in", &key, "-pubout", "-outform", "DER"], dir);
        Self {
            dir: dir.into(),
            name: name.into(),
            cert_der: std::fs::read(dir.join(&cert)).expect("cert"),
            spki_der,
            opts: opts.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// openssl's signature over a precomputed digest.
    fn sign_digest(&self, digest: &[u8]) -> Vec<u8> {
        let f = format!("{}.digest", self.name);
        std::fs::write(self.dir.join(&f), digest).expect("write");
        let key = format!("{}.key", self.name);
        let mut args = vec!["pkeyutl", "-sign", "-inkey", &key, "-in", &f];
        for o in &self.opts {
            args.push("-pkeyopt");
            args.push(o);
        }
        openssl(&args, &self.dir)
    }
}

fn request(digest: &[u8], sig: &[u8], verifier: Value) -> Value {
    json!({"hashedRekordRequestV002": {
        "digest": B64.encode(digest),
        "signature": {"content": B64.encode(sig), "verifier": verifier},
    }})
}

fn cert_verifier(s: &Signer, key_details: &str) -> Value {
    json!({"x509Certificate": {"rawBytes": B64.encode(&s.cert_der)}, "keyDetails": key_details})
}

fn key_verifier(s: &Signer, key_details: &str) -> Value {
    json!({"publicKey": {"rawBytes": B64.encode(&s.spki_der)}, "keyDetails": key_details})
}

/// The canonical body as the rekor-tiles protos define it, keys in RFC 8785 order.
fn expected_body(
    alg: &str,
    digest: &[u8],
    sig: &[u8],
    key_details: &str,
    field: &str,
    der: &[u8],
) -> String {
    format!(
        r#"{{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{{"hashedRekordV002":{{"data":{{"algorithm":"{alg}","digest":"{}"}},"signature":{{"content":"{}","verifier":{{"keyDetails":"{key_details}","{field}":{{"rawBytes":"{}"}}}}}}}}}}}}"#,
        B64.encode(digest),
        B64.encode(sig),
        B64.encode(der)
    )
}

fn curl(args: &[&str]) -> (u16, Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/stderr"])
        .args(args)
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = headers
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out.stderr, headers.to_lowercase())
}

fn post(base: &str, body: &[u8], dir: &Path) -> (u16, Value, String) {
    let f = dir.join("body.json");
    std::fs::write(&f, body).expect("write");
    let (code, body, headers) = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", f.display()),
        &format!("{base}/api/v2/log/entries"),
    ]);
    let v = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
    (code, v, headers)
}

fn get(url: &str) -> (u16, Vec<u8>, String) {
    curl(&[url])
}

fn checkpoint_size(base: &str) -> u64 {
    let (code, cp, _) = get(&format!("{base}/checkpoint"));
    assert_eq!(code, 200);
    String::from_utf8(cp)
        .expect("utf8")
        .lines()
        .nth(1)
        .expect("size")
        .parse()
        .expect("int")
}

/// Verify a checkpoint's signature with openssl and the exported key; its (origin, size, root).
fn openssl_verify_checkpoint(
    cp: &str,
    spki_pem: &Path,
    name: &str,
    dir: &Path,
) -> (String, u64, Vec<u8>) {
    let (body, sigs) = sigvault::note::parse_note(cp).expect("note");
    assert_eq!(sigs.len(), 1, "{cp}");
    assert_eq!(sigs[0].name, name, "{cp}");
    std::fs::write(dir.join("cp.body"), body).expect("w");
    std::fs::write(dir.join("cp.sig"), &sigs[0].signature).expect("w");
    let out = openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            spki_pem.to_str().expect("path"),
            "-signature",
            "cp.sig",
            "cp.body",
        ],
        dir,
    );
    assert!(String::from_utf8_lossy(&out).contains("Verified OK"));
    let mut lines = body.lines();
    let origin = lines.next().expect("origin").to_owned();
    let size = lines.next().expect("size").parse().expect("size");
    let root = B64.decode(lines.next().expect("root")).expect("b64");
    (origin, size, root)
}

/// The RFC 6962 root of an inclusion proof (the client's algorithm, written out here).
fn root_from_proof(index: u64, size: u64, leaf: [u8; 32], hashes: &[Vec<u8>]) -> [u8; 32] {
    let (mut fn_, mut sn, mut r) = (index, size - 1, leaf);
    for p in hashes {
        let p: [u8; 32] = p.as_slice().try_into().expect("32 bytes");
        if fn_ & 1 == 1 || fn_ == sn {
            r = merkle::node_hash(&p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = merkle::node_hash(&r, &p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    assert_eq!(sn, 0, "proof too short");
    r
}

fn wait_ready(base: &str, svc: &mut Service, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = svc.child.try_wait().expect("wait") {
            panic!("rekor-v2 exited ({st}):\n{}", svc.log());
        }
        let (code, body, _) = get(&format!("{base}/readyz"));
        if code == want {
            return String::from_utf8_lossy(&body).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "never answered {want}:\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(dir: &Path, port: u16, url: &str, sock: &Path, key: &Path) -> PathBuf {
    let p = dir.join(format!("rekor-v2-{port}.toml"));
    std::fs::write(
        &p,
        format!(
            "[rekor_v2]\nlisten = \"127.0.0.1:{port}\"\ntlog = [\"unix:{}\"]\nmax_body_bytes = 65536\n[[rekor_v2.logs]]\nurl = \"{url}\"\ntree = \"t\"\npublic_key_file = \"{}\"\n",
            sock.display(),
            key.display()
        ),
    )
    .expect("write");
    p
}

#[test]
fn entries_verified_logged_and_read_back_from_the_tiles_with_every_bad_input_refused() {
    if !common::have_softhsm() {
        return;
    }
    common::init_logs();
    let Some(db) = common::database("rekor-v2") else {
        return;
    };
    let token = common::token(TOKENS, "r2-main");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let origin = format!("127.0.0.1:{port}");
    let mut tlog = Tlog::with_tree("rekor-v2-tlog", token, &db, 65535, &origin, &origin);
    let dir = common::scratch("rekor-v2");

    // --- Start-up refuses a tree that is not the log it claims to be. ------------------------
    let other_port = free_port();
    let wrong = config(
        &dir,
        other_port,
        &format!("http://127.0.0.1:{other_port}"),
        &tlog.socket,
        &tlog.spki_pem,
    );
    let (ok, _, e) = common::run(
        Command::new(common::sigvault_bin())
            .args(["rekor-v2", "serve", "--config"])
            .arg(&wrong),
    );
    assert!(!ok);
    assert!(
        e.contains(&format!("needs note_name = \"127.0.0.1:{other_port}\"")),
        "{e}"
    );

    let conf = config(&dir, port, &base, &tlog.socket, &tlog.spki_pem);
    let (ok, o, e) = common::run(
        Command::new(common::sigvault_bin())
            .arg("check-config")
            .arg(&conf),
    );
    assert!(ok, "check-config: {o}{e}");
    let mut svc = Service::start(&["rekor-v2", "serve"], &conf, &dir, "rekor-v2.log");
    let ready = wait_ready(&base, &mut svc, 200);
    assert!(ready.contains("ready, tree size 1"), "{ready}");

    // --- Entries of each supported kind of key, from openssl. --------------------------------
    let p256 = Signer::new(
        &dir,
        "p256",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &[],
    );
    let p384 = Signer::new(
        &dir,
        "p384",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        &[],
    );
    let rsa = Signer::new(
        &dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        &["digest:sha256"],
    );
    let pss = Signer::new(
        &dir,
        "pss",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
        &[
            "digest:sha256",
            "rsa_padding_mode:pss",
            "rsa_pss_saltlen:digest",
        ],
    );
    let d256 = Sha256::digest(b"artifact one").to_vec();
    let d384 = sha2::Sha384::digest(b"artifact two").to_vec();
    let cases: Vec<(&Signer, &str, &str, Vec<u8>, bool)> = vec![
        (
            &p256,
            "PKIX_ECDSA_P256_SHA_256",
            "SHA2_256",
            d256.clone(),
            true,
        ),
        (
            &p384,
            "PKIX_ECDSA_P384_SHA_384",
            "SHA2_384",
            d384.clone(),
            false,
        ),
        (
            &rsa,
            "PKIX_RSA_PKCS1V15_2048_SHA256",
            "SHA2_256",
            d256.clone(),
            true,
        ),
        (
            &pss,
            "PKIX_RSA_PSS_3072_SHA256",
            "SHA2_256",
            d256.clone(),
            false,
        ),
    ];
    let mut logged: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut first_request = None;
    for (s, kd, alg, digest, as_cert) in &cases {
        let sig = s.sign_digest(digest);
        let (verifier, field, der) = if *as_cert {
            (cert_verifier(s, kd), "x509Certificate", &s.cert_der)
        } else {
            (key_verifier(s, kd), "publicKey", &s.spki_der)
        };
        let req = serde_json::to_vec(&request(digest, &sig, verifier)).expect("json");
        let (code, v, _) = post(&base, &req, &dir);
        assert_eq!(code, 201, "{kd}: {v}");
        // Exactly the fields of TransparencyLogEntry, 64-bit integers as strings.
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "canonicalizedBody",
                "inclusionProof",
                "integratedTime",
                "kindVersion",
                "logId",
                "logIndex"
            ],
            "{v}"
        );
        assert_eq!(v["integratedTime"], "0");
        assert_eq!(
            v["kindVersion"],
            json!({"kind": "hashedrekord", "version": "0.0.2"})
        );
        let spki = openssl(
            &[
                "pkey",
                "-pubin",
                "-in",
                tlog.spki_pem.to_str().expect("p"),
                "-outform",
                "DER",
            ],
            &dir,
        );
        assert_eq!(v["logId"]["keyId"], B64.encode(Sha256::digest(&spki)));
        let index: u64 = v["logIndex"]
            .as_str()
            .expect("string")
            .parse()
            .expect("int");
        assert!(index >= 1, "index 0 is the sentinel");
        let body = B64
            .decode(v["canonicalizedBody"].as_str().expect("b64"))
            .expect("b64");
        assert_eq!(
            String::from_utf8(body.clone()).expect("utf8"),
            expected_body(alg, digest, &sig, kd, field, der),
            "{kd}"
        );
        let p = &v["inclusionProof"];
        assert_eq!(p["logIndex"], v["logIndex"]);
        let size: u64 = p["treeSize"]
            .as_str()
            .expect("string")
            .parse()
            .expect("int");
        let hashes: Vec<Vec<u8>> = p["hashes"]
            .as_array()
            .expect("hashes")
            .iter()
            .map(|h| B64.decode(h.as_str().expect("s")).expect("b64"))
            .collect();
        let root = root_from_proof(index, size, merkle::leaf_hash(&body), &hashes);
        assert_eq!(B64.encode(root), p["rootHash"], "{kd}");
        let (o, cp_size, cp_root) = openssl_verify_checkpoint(
            p["checkpoint"]["envelope"].as_str().expect("envelope"),
            &tlog.spki_pem,
            &origin,
            &dir,
        );
        assert_eq!(
            (o.as_str(), cp_size, cp_root.as_slice()),
            (origin.as_str(), size, root.as_slice())
        );
        logged.push((index, body));
        first_request.get_or_insert(req);
    }

    // --- A resubmission: 409 naming the existing index. --------------------------------------
    let (code, v, headers) = post(&base, first_request.as_deref().expect("one"), &dir);
    assert_eq!(code, 409, "{v}");
    assert!(
        headers.contains(&format!("x-log-index: {}\r\n", logged[0].0)),
        "{headers}"
    );
    assert_eq!(v["code"], 6, "{v}");

    // --- Bad input: 400 with a clear message, and the tree does not grow. --------------------
    let size_before = checkpoint_size(&base);
    let good_sig = p256.sign_digest(&d256);
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dsse",
            br#"{"dsseRequestV002":{"envelope":{"payload":"e30=","payloadType":"x","signatures":[]},"verifiers":[]}}"#.to_vec(),
            "hashedRekordRequestV002 whose digest is the hash of the envelope's PAE",
        ),
        (
            "unknown keyDetails",
            serde_json::to_vec(&request(&d256, &good_sig, cert_verifier(&p256, "PKIX_NOPE"))).expect("j"),
            "unknown keyDetails",
        ),
        (
            "pure Ed25519",
            serde_json::to_vec(&request(&d256, &good_sig, cert_verifier(&p256, "PKIX_ED25519"))).expect("j"),
            "pure Ed25519",
        ),
        (
            "a signature over another digest",
            serde_json::to_vec(&request(&Sha256::digest(b"other"), &good_sig, cert_verifier(&p256, "PKIX_ECDSA_P256_SHA_256"))).expect("j"),
            "signature does not verify",
        ),
        (
            "a digest of the wrong length",
            serde_json::to_vec(&request(&d256[..20], &good_sig, cert_verifier(&p256, "PKIX_ECDSA_P256_SHA_256"))).expect("j"),
            "20 bytes",
        ),
        (
            "a certificate the key details do not name",
            serde_json::to_vec(&request(&d256, &good_sig, cert_verifier(&p256, "PKIX_RSA_PKCS1V15_2048_SHA256"))).expect("j"),
            "the certificate holds an ECDSA P-256 key",
        ),
        (
            "RSA key of another size",
            serde_json::to_vec(&request(&d256, &good_sig, key_verifier(&pss, "PKIX_RSA_PSS_2048_SHA256"))).expect("j"),
            "RSA-3072",
        ),
        (
            "not a certificate",
            serde_json::to_vec(&request(&d256, &good_sig, json!({"x509Certificate": {"rawBytes": "AAAA"}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}))).expect("j"),
            "not a DER X.509 certificate",
        ),
        ("not JSON", b"{nope".to_vec(), "invalid request"),
        (
            "an unknown field",
            br#"{"hashedRekordRequestV002":{"digest":"AAAA","tokenField":"eyJhbGciOiJSUzI1NiJ9.secret"}}"#.to_vec(),
            "unknown field",
        ),
    ];
    for (what, body, want) in &bad {
        let (code, v, _) = post(&base, body, &dir);
        assert_eq!(code, 400, "{what}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{what}: {msg}");
        assert!(
            !msg.contains("eyJ"),
            "{what}: a value was quoted back: {msg}"
        );
        assert_eq!(v["code"], 3, "{what}: {v}");
    }
    let huge = vec![b' '; 70_000];
    let (code, _, _) = post(&base, &huge, &dir);
    assert_eq!(code, 413, "an oversize body");
    assert_eq!(
        checkpoint_size(&base),
        size_before,
        "a refused request grew the tree"
    );

    // --- The read path, rebuilt from the tiles. ----------------------------------------------
    let (code, cp, headers) = get(&format!("{base}/checkpoint"));
    assert_eq!(code, 200);
    assert!(headers.contains("cache-control: no-cache"), "{headers}");
    let cp = String::from_utf8(cp).expect("utf8");
    let (_, size, root) = openssl_verify_checkpoint(&cp, &tlog.spki_pem, &origin, &dir);
    assert_eq!(size, logged.len() as u64 + 1);
    let (code, bundle, headers) = get(&format!("{base}/tile/entries/000.p/{size}"));
    assert_eq!(code, 200);
    assert!(
        headers.contains("cache-control: public, max-age=60"),
        "{headers}"
    );
    let mut entries = Vec::new();
    let mut rest = bundle.as_slice();
    while !rest.is_empty() {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        entries.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    assert_eq!(entries.len() as u64, size);
    for (index, body) in &logged {
        assert_eq!(
            &entries[*index as usize], body,
            "entry {index} in the bundle"
        );
    }
    let leaves: Vec<[u8; 32]> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    assert_eq!(
        merkle::root_of(&leaves).as_slice(),
        root.as_slice(),
        "root from the entry bundle"
    );
    let (code, tile, _) = get(&format!("{base}/tile/0/000.p/{size}"));
    assert_eq!(code, 200);
    assert_eq!(tile, leaves.concat(), "level-0 tile = the leaf hashes");
    let (code, same, _) = get(&format!("{base}/api/v2/tile/0/000.p/{size}"));
    assert_eq!((code, same), (200, tile));
    for (path, want) in [
        ("tile/0/000.p/200", 404),
        ("tile/nope", 400),
        ("tile/entries/x1", 400),
    ] {
        let (code, _, _) = get(&format!("{base}/{path}"));
        assert_eq!(code, want, "{path}");
    }
    let (_, metrics, _) = get(&format!("{base}/metrics"));
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains(&format!(
            "sigvault_rekor_v2_entries_created_total{{log=\"{origin}\"}} 4"
        )),
        "{metrics}"
    );

    // --- A retired (frozen) log: read-only, still served. ------------------------------------
    tlog.restart_frozen();
    let ready = wait_ready(&base, &mut svc, 200);
    assert!(ready.contains("read-only"), "{ready}");
    let sig = p256.sign_digest(&Sha256::digest(b"after the freeze"));
    let req = request(
        &Sha256::digest(b"after the freeze"),
        &sig,
        cert_verifier(&p256, "PKIX_ECDSA_P256_SHA_256"),
    );
    let (code, v, _) = post(&base, &serde_json::to_vec(&req).expect("j"), &dir);
    assert_eq!(code, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("read-only"),
        "{v}"
    );
    assert_eq!(checkpoint_size(&base), size);
    let (code, _, _) = get(&format!("{base}/tile/entries/000.p/{size}"));
    assert_eq!(code, 200);

    // --- The tlog gone: 503, and readiness says why. -----------------------------------------
    tlog.stop();
    let (code, v, headers) = post(&base, &serde_json::to_vec(&req).expect("j"), &dir);
    assert_eq!(code, 503, "{v}");
    assert!(headers.contains("retry-after"), "{headers}");
    let ready = wait_ready(&base, &mut svc, 503);
    assert!(ready.contains("tlog"), "{ready}");
}
