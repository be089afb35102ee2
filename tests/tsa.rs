//! `sigvault tsa serve` end to end on real parts: an installation whose ceremony ran without a
//! TSA gains one with `sigvault ceremony --add tsa` (key in SoftHSM2, certificate from the root
//! token), the service runs as a process, and everything on the wire is checked by tools we did
//! not write: `openssl ts` makes the requests and verifies the tokens, curl posts them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::procs::{Service, free_port};

const TOKENS: &[&str] = &[
    "ts-root",
    "ts-issuing",
    "ts-ctlog",
    "ts-rekor",
    "ts-tlog",
    "ts-tsa",
];

fn key_line(tag: &str, obj: &str) -> String {
    let t = common::token(TOKENS, tag);
    format!(
        "key = \"pkcs11:token={};object={obj}\"\npin = {{ file = \"{}\" }}",
        t.label,
        t.pin_file.display()
    )
}

/// A ceremony config; `tsa` appends a `[ceremony.tsa]` section for that token and label.
fn ceremony_config(dir: &Path, tsa: Option<(&str, &str)>) -> PathBuf {
    let cfg = dir.join("ceremony.toml");
    let mut text = format!(
        "[hsm]\nmodule = \"{}\"\n[ceremony]\noutput_dir = \"{}\"\n[ceremony.root]\n{}\ncurve = \"P-256\"\nsubject = \"CN=tsa test root,O=sigvault\"\nvalidity_days = 3650\n[ceremony.issuing_ca]\n{}\ncurve = \"P-256\"\nsubject = \"CN=tsa test issuing,O=sigvault\"\nvalidity_days = 365\n[ceremony.ctlog]\n{}\n[ceremony.rekor]\n{}\n[ceremony.tlog]\n{}\n",
        common::module().display(),
        dir.join("ceremony").display(),
        key_line("ts-root", "root-ca"),
        key_line("ts-issuing", "issuing-ca"),
        key_line("ts-ctlog", "ctlog"),
        key_line("ts-rekor", "rekor"),
        key_line("ts-tlog", "tlog"),
    );
    if let Some((tag, label)) = tsa {
        text.push_str(&format!(
            "[ceremony.tsa]\n{}\nsubject = \"CN=tsa test timestamping,O=sigvault\"\nvalidity_days = 730\n",
            key_line(tag, label)
        ));
    }
    std::fs::write(&cfg, text).expect("write");
    cfg
}

fn sigvault(args: &[&str], cfg: &Path) -> (bool, String, String) {
    common::run(Command::new(common::sigvault_bin()).args(args).arg(cfg))
}

fn openssl(args: &[&str], dir: &Path) -> (bool, String, String) {
    common::run(Command::new("openssl").args(args).current_dir(dir))
}

/// POST `file` to `url` with curl; returns (HTTP status, response file).
fn post(url: &str, content_type: &str, file: &Path, out: &Path) -> u16 {
    let (ok, code, e) = common::run(
        Command::new("curl")
            .args(["-sS", "-o"])
            .arg(out)
            .args(["-w", "%{http_code}", "-H"])
            .arg(format!("Content-Type: {content_type}"))
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(url),
    );
    assert!(ok, "curl: {e}");
    code.trim().parse().expect("status")
}

fn get(url: &str) -> (u16, String) {
    let (ok, out, e) = common::run(Command::new("curl").args(["-sS", "-w", "\n%{http_code}", url]));
    assert!(ok, "curl: {e}");
    let (body, code) = out.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_owned())
}

/// The HSM's signature counter for `label`, from the service's /metrics.
fn signatures(base: &str, label: &str) -> u64 {
    let (_, m) = get(&format!("{base}/metrics"));
    let needle = format!("sigvault_hsm_signatures_total{{token=\"{label}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .unwrap_or_else(|| panic!("no {needle} in\n{m}"))
        .trim()
        .parse()
        .expect("count")
}

fn wait_ready(base: &str, svc: &mut Service, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = svc.child.try_wait().expect("wait") {
            panic!("tsa exited ({st}):\n{}", svc.log());
        }
        let (ok, out, _) = common::run(Command::new("curl").args([
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("{base}/readyz"),
        ]));
        if ok {
            if let Some((body, code)) = out.rsplit_once('\n') {
                if code.trim() == want.to_string() {
                    return body.to_owned();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "tsa never answered {want}:\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tsa_config(dir: &Path, name: &str, port: u16, tsa_tag: &str, extra: &str) -> PathBuf {
    let c = dir.join("ceremony");
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "[hsm]\nmodule = \"{}\"\n[tsa]\nlisten = \"127.0.0.1:{port}\"\n{}\ncert_chain = [\"{c}/tsa.pem\", \"{c}/root.pem\"]\naccepted_policies = [\"1.2.3.4.5\"]\n{extra}",
            common::module().display(),
            key_line(tsa_tag, "tsa"),
            c = c.display(),
        ),
    )
    .expect("write");
    p
}

#[test]
fn an_installation_gains_a_tsa_whose_tokens_openssl_verifies_and_which_refuses_what_rfc3161_refuses()
 {
    if !common::have_softhsm() {
        return;
    }
    for t in TOKENS {
        common::token(TOKENS, t);
    }
    let dir = common::scratch("tsa");
    let c = dir.join("ceremony");

    // --- The ceremony without a TSA, then the TSA added. -----------------------------------
    let cfg = ceremony_config(&dir, None);
    let (ok, o, e) = sigvault(&["ceremony", "--config"], &cfg);
    assert!(ok, "ceremony: {o}{e}");
    let before: Vec<(String, Vec<u8>)> = std::fs::read_dir(&c)
        .expect("dir")
        .map(|e| {
            let p = e.expect("entry").path();
            (p.display().to_string(), std::fs::read(&p).expect("read"))
        })
        .collect();
    let (ok, _, e) = sigvault(&["ceremony", "--add", "tsa", "--config"], &cfg);
    assert!(!ok && e.contains("no [ceremony.tsa] section"), "{e}");
    let cfg = ceremony_config(&dir, Some(("ts-tsa", "tsa")));
    let (ok, _, e) = sigvault(&["ceremony", "--add", "nonsense", "--config"], &cfg);
    assert!(!ok && e.contains("roles that can be added are tsa"), "{e}");
    let (ok, o, e) = sigvault(&["ceremony", "--add", "tsa", "--config"], &cfg);
    assert!(ok, "ceremony --add tsa: {o}{e}");
    for (path, bytes) in &before {
        assert_eq!(
            &std::fs::read(path).expect("read"),
            bytes,
            "{path} was touched"
        );
    }
    let transcript: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.join("transcript-tsa.json")).expect("transcript"),
    )
    .expect("json");
    assert_eq!(transcript["keys"][0]["role"], "tsa");
    assert_eq!(transcript["certificates"][0]["file"], "tsa.pem");
    // Nothing is overwritten: a second addition refuses on the existing file, and one whose
    // files were moved away still refuses on the existing key label.
    let (ok, _, e) = sigvault(&["ceremony", "--add", "tsa", "--config"], &cfg);
    assert!(!ok && e.contains("tsa.pem already exists"), "{e}");
    let moved = dir.join("moved");
    std::fs::create_dir_all(&moved).expect("mkdir");
    for f in ["tsa.pem", "transcript-tsa.json"] {
        std::fs::rename(c.join(f), moved.join(f)).expect("move");
    }
    let (ok, _, e) = sigvault(&["ceremony", "--add", "tsa", "--config"], &cfg);
    assert!(
        !ok && e.contains("already holds a key labelled 'tsa'"),
        "{e}"
    );
    for f in ["tsa.pem", "transcript-tsa.json"] {
        assert!(!c.join(f).exists(), "a refused addition left {f}");
        std::fs::rename(moved.join(f), c.join(f)).expect("move back");
    }

    // The certificate's profile, as openssl reads it.
    let (ok, o, e) = openssl(
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "timestampsign",
            "-CAfile",
            "root.pem",
            "tsa.pem",
        ],
        &c,
    );
    assert!(ok && o.contains("tsa.pem: OK"), "{o}{e}");
    let (_, text, _) = openssl(&["x509", "-in", "tsa.pem", "-noout", "-text"], &c);
    assert!(
        text.contains("X509v3 Extended Key Usage: critical\n                Time Stamping\n"),
        "{text}"
    );
    assert!(
        text.contains("Digital Signature") && text.contains("CA:FALSE"),
        "{text}"
    );

    // --- The service (clock check off: this machine's kernel reports no NTP sync). -----------
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("{base}/api/v1/timestamp");
    let conf = tsa_config(
        &dir,
        "tsa.toml",
        port,
        "ts-tsa",
        "require_synchronised_clock = false\n",
    );
    let (ok, o, e) = sigvault(&["check-config"], &conf);
    assert!(ok, "{o}{e}");
    let mut svc = Service::start(&["tsa", "serve"], &conf, &dir, "tsa.log");
    wait_ready(&base, &mut svc, 200);
    assert!(
        svc.log().contains("the clock check is OFF"),
        "{}",
        svc.log()
    );
    let label = common::token(TOKENS, "ts-tsa").label.clone();

    // The chain, TSA certificate first.
    let (code, chain) = get(&format!("{url}/certchain"));
    let mut want = std::fs::read_to_string(c.join("tsa.pem")).expect("pem");
    want.push_str(&std::fs::read_to_string(c.join("root.pem")).expect("pem"));
    assert_eq!((code, chain), (200, want));

    // A DER request from openssl, with certReq and a nonce; openssl verifies the token.
    std::fs::write(dir.join("artifact"), b"sigvault timestamps this").expect("write");
    let (ok, o, e) = openssl(
        &[
            "ts", "-query", "-data", "artifact", "-sha256", "-cert", "-out", "req.tsq",
        ],
        &dir,
    );
    assert!(ok, "{o}{e}");
    let n0 = signatures(&base, &label);
    assert_eq!(
        post(
            &url,
            "application/timestamp-query",
            &dir.join("req.tsq"),
            &dir.join("resp.tsr")
        ),
        200
    );
    assert_eq!(signatures(&base, &label), n0 + 1, "one signature per token");
    let (ok, text, e) = openssl(&["ts", "-reply", "-in", "resp.tsr", "-text"], &dir);
    assert!(ok, "{text}{e}");
    for want in [
        "Status: Granted.",
        "Version: 1",
        "Policy OID: 1.3.6.1.4.1.57264.2",
        "Hash Algorithm: sha256",
        "Accuracy: 0x01 seconds, 0x64 millis, unspecified micros",
        "Ordering: no",
        "TSA: unspecified",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    let gen_time = text
        .lines()
        .find_map(|l| l.strip_prefix("Time stamp: "))
        .expect("time stamp");
    assert!(
        gen_time.ends_with(" GMT") && !gen_time.contains('.'),
        "genTime in whole seconds UTC: {gen_time}"
    );
    let (_, qtext, _) = openssl(&["ts", "-query", "-in", "req.tsq", "-text"], &dir);
    let nonce = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("Nonce: "))
            .map(str::to_owned)
    };
    assert_eq!(nonce(&text), nonce(&qtext), "nonce echoed");
    let (ok, o, e) = openssl(
        &[
            "ts",
            "-verify",
            "-data",
            "artifact",
            "-in",
            "resp.tsr",
            "-CAfile",
            "ceremony/root.pem",
        ],
        &dir,
    );
    assert!(ok && o.contains("Verification: OK"), "{o}{e}");
    // The token (RFC 3161 §2.4.1: the ContentInfo) and its signed attributes, as openssl
    // shows them: the CMS structure, the ESS signing-certificate attribute, sid by issuer and
    // serial, and the certificate included since certReq asked for it.
    let (ok, o, e) = openssl(
        &[
            "ts",
            "-reply",
            "-in",
            "resp.tsr",
            "-token_out",
            "-out",
            "token.der",
        ],
        &dir,
    );
    assert!(ok, "{o}{e}");
    let (ok, cms, e) = openssl(
        &[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            "token.der",
        ],
        &dir,
    );
    assert!(ok, "{e}");
    for want in [
        "id-smime-ct-TSTInfo",
        "id-smime-aa-signingCertificateV2",
        "messageDigest",
        "contentType",
        "issuerAndSerialNumber",
        "ecdsa-with-SHA256",
    ] {
        assert!(cms.contains(want), "{want:?} missing from\n{cms}");
    }
    assert!(cms.contains("certificates:\n"), "{cms}");
    // Two tokens never share a serial.
    let (ok, o, e) = openssl(&["ts", "-reply", "-in", "resp.tsr", "-text"], &dir);
    assert!(ok, "{o}{e}");
    let serial = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("Serial number: "))
            .map(str::to_owned)
    };
    let s1 = serial(&o);
    assert_eq!(
        post(
            &url,
            "application/timestamp-query",
            &dir.join("req.tsq"),
            &dir.join("resp2.tsr")
        ),
        200
    );
    let (_, o2, _) = openssl(&["ts", "-reply", "-in", "resp2.tsr", "-text"], &dir);
    assert!(s1.is_some() && s1 != serial(&o2), "{s1:?}");
    // A token for another artifact does not verify.
    std::fs::write(dir.join("other"), b"something else").expect("write");
    let (ok, o, _) = openssl(
        &[
            "ts",
            "-verify",
            "-data",
            "other",
            "-in",
            "resp.tsr",
            "-CAfile",
            "ceremony/root.pem",
        ],
        &dir,
    );
    assert!(!ok, "{o}");

    // The JSON request, as sigstore-js sends it (no nonce, no certificates), and with every
    // field; openssl verifies both by digest with the served chain.
    let digest = sha256_of(b"sigvault timestamps this");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    for (name, body, certs) in [
        (
            "js",
            format!(r#"{{"artifactHash":"{b64}","hashAlgorithm":"sha256"}}"#),
            false,
        ),
        (
            "full",
            format!(
                r#"{{"artifactHash":"{b64}","hashAlgorithm":"sha256","nonce":12345,"certificates":true,"tsaPolicyOID":"1.2.3.4.5"}}"#
            ),
            true,
        ),
    ] {
        let req = dir.join(format!("{name}.json"));
        std::fs::write(&req, body).expect("write");
        let resp = dir.join(format!("{name}.tsr"));
        assert_eq!(post(&url, "application/json", &req, &resp), 200, "{name}");
        let (ok, text, e) = openssl(
            &["ts", "-reply", "-in", resp.to_str().expect("p"), "-text"],
            &dir,
        );
        assert!(ok && text.contains("Status: Granted."), "{text}{e}");
        if certs {
            assert!(
                text.contains("Policy OID: 1.2.3.4.5") && text.contains("Nonce: 0x3039"),
                "{text}"
            );
        } else {
            assert!(text.contains("Nonce: unspecified"), "{text}");
        }
        let (ok, o, e) = openssl(
            &[
                "ts",
                "-verify",
                "-digest",
                &hex::encode(digest),
                "-in",
                resp.to_str().expect("p"),
                "-CAfile",
                "ceremony/root.pem",
                "-untrusted",
                "ceremony/tsa.pem",
            ],
            &dir,
        );
        assert!(ok && o.contains("Verification: OK"), "{name}: {o}{e}");
    }

    // --- Refusals: each a rejection with its PKIFailureInfo, nothing signed. -------------
    let n0 = signatures(&base, &label);
    let (ok, o, e) = openssl(
        &[
            "ts", "-query", "-data", "artifact", "-sha1", "-out", "sha1.tsq",
        ],
        &dir,
    );
    assert!(ok, "{o}{e}");
    let (ok, o, e) = openssl(
        &[
            "ts",
            "-query",
            "-data",
            "artifact",
            "-sha256",
            "-tspolicy",
            "1.9.9.9",
            "-out",
            "policy.tsq",
        ],
        &dir,
    );
    assert!(ok, "{o}{e}");
    let good = std::fs::read(dir.join("req.tsq")).expect("req");
    // A digest one byte short: the OCTET STRING of the imprint shortened in place.
    std::fs::write(dir.join("short.tsq"), short_digest(&good)).expect("write");
    // A request with an extension (id-pe-... any OID): [0] IMPLICIT Extensions appended.
    std::fs::write(dir.join("ext.tsq"), with_extension(&good)).expect("write");
    // Version 2.
    let mut v2 = good.clone();
    assert_eq!(v2[2..5], [0x02, 0x01, 0x01]);
    v2[4] = 2;
    std::fs::write(dir.join("v2.tsq"), v2).expect("write");
    std::fs::write(
        dir.join("badalg.json"),
        r#"{"artifactHash":"AAAA","hashAlgorithm":"md5"}"#,
    )
    .expect("write");
    std::fs::write(
        dir.join("badlen.json"),
        r#"{"artifactHash":"AAAA","hashAlgorithm":"sha256"}"#,
    )
    .expect("write");
    for (file, ct, failure) in [
        (
            "sha1.tsq",
            "application/timestamp-query",
            "unrecognized or unsupported algorithm identifier",
        ),
        (
            "short.tsq",
            "application/timestamp-query",
            "the data submitted has the wrong format",
        ),
        (
            "policy.tsq",
            "application/timestamp-query",
            "the requested TSA policy is not supported by the TSA",
        ),
        (
            "ext.tsq",
            "application/timestamp-query",
            "the requested extension is not supported by the TSA",
        ),
        (
            "v2.tsq",
            "application/timestamp-query",
            "transaction not permitted or supported",
        ),
        (
            "badalg.json",
            "application/json",
            "unrecognized or unsupported algorithm identifier",
        ),
        (
            "badlen.json",
            "application/json",
            "the data submitted has the wrong format",
        ),
    ] {
        let out = dir.join(format!("{file}.tsr"));
        assert_eq!(post(&url, ct, &dir.join(file), &out), 400, "{file}");
        let (ok, text, e) = openssl(
            &["ts", "-reply", "-in", out.to_str().expect("p"), "-text"],
            &dir,
        );
        assert!(ok, "{file}: {e}");
        assert!(text.contains("Status: Rejected."), "{file}: {text}");
        assert!(
            text.contains(&format!("Failure info: {failure}")),
            "{file}: {failure:?} missing from\n{text}"
        );
    }
    // Bytes that are not a request at all, an unknown media type, an oversize body.
    std::fs::write(dir.join("junk"), b"hello, is this a timestamp request?").expect("write");
    assert_eq!(
        post(
            &url,
            "application/timestamp-query",
            &dir.join("junk"),
            &dir.join("junk.out")
        ),
        400
    );
    let msg = std::fs::read_to_string(dir.join("junk.out")).expect("body");
    assert!(msg.contains("not an RFC 3161 TimeStampReq"), "{msg}");
    assert_eq!(
        post(
            &url,
            "application/json",
            &dir.join("junk"),
            &dir.join("junk.out")
        ),
        400
    );
    assert_eq!(
        post(
            &url,
            "text/plain",
            &dir.join("req.tsq"),
            &dir.join("junk.out")
        ),
        415
    );
    std::fs::write(dir.join("big"), vec![0x30u8; 64 << 10]).expect("write");
    assert_eq!(
        post(
            &url,
            "application/timestamp-query",
            &dir.join("big"),
            &dir.join("big.out")
        ),
        413
    );
    assert_eq!(
        signatures(&base, &label),
        n0,
        "a refused request was signed"
    );
    let (_, m) = get(&format!("{base}/metrics"));
    for want in [
        "sigvault_tsa_requests_refused_total{failure=\"badAlg\"} 2",
        "sigvault_tsa_requests_refused_total{failure=\"unacceptedExtension\"} 1",
        "sigvault_tsa_timestamps_issued_total 4",
    ] {
        assert!(m.contains(want), "{want:?} missing from\n{m}");
    }
    // The audit trail: a line per token and per refusal.
    let log = svc.log();
    assert!(
        log.contains("issued a timestamp")
            && log.contains("serial=")
            && log.contains("imprint=sha256:"),
        "{log}"
    );
    assert!(
        log.contains("refused a timestamp request") && log.contains("failure=\"unacceptedPolicy\""),
        "{log}"
    );
    svc.stop();

    // --- 201 as an option. ------------------------------------------------------------------
    let port2 = free_port();
    let conf2 = tsa_config(
        &dir,
        "tsa201.toml",
        port2,
        "ts-tsa",
        "require_synchronised_clock = false\ncreated_status = true\n",
    );
    let mut svc2 = Service::start(&["tsa", "serve"], &conf2, &dir, "tsa201.log");
    let base2 = format!("http://127.0.0.1:{port2}");
    wait_ready(&base2, &mut svc2, 200);
    assert_eq!(
        post(
            &format!("{base2}/api/v1/timestamp"),
            "application/timestamp-query",
            &dir.join("req.tsq"),
            &dir.join("r201.tsr")
        ),
        201
    );
    svc2.stop();

    // --- The clock rule on this machine's real adjtimex reading. -----------------------------
    use sigvault::tsa::clock::ClockSource as _;
    let reading = sigvault::tsa::clock::KernelClock.read().expect("adjtimex");
    let port3 = free_port();
    let conf3 = tsa_config(&dir, "tsa-clock.toml", port3, "ts-tsa", "");
    let mut svc3 = Service::start(&["tsa", "serve"], &conf3, &dir, "tsa-clock.log");
    let base3 = format!("http://127.0.0.1:{port3}");
    let n0 = signatures_when_up(&base3, &mut svc3, &label);
    let code = post(
        &format!("{base3}/api/v1/timestamp"),
        "application/timestamp-query",
        &dir.join("req.tsq"),
        &dir.join("clock.tsr"),
    );
    let (_, m) = get(&format!("{base3}/metrics"));
    if reading.synchronised() && reading.estimated_error <= Duration::from_millis(100) {
        assert_eq!(code, 200);
        assert!(m.contains("sigvault_tsa_clock_synchronised 1"), "{m}");
    } else {
        // The machines this runs on report TIME_ERROR / STA_UNSYNC: the service refuses.
        assert_eq!(code, 503, "issued with the kernel reporting {reading:?}");
        let (ok, text, e) = openssl(&["ts", "-reply", "-in", "clock.tsr", "-text"], &dir);
        assert!(
            ok && text.contains("Status: Rejected.")
                && text.contains("Failure info: the TSA's time source is not available"),
            "{text}{e}"
        );
        let why = wait_ready(&base3, &mut svc3, 503);
        assert!(
            why.contains("unsynchronised") || why.contains("above the configured bound"),
            "{why}"
        );
        assert!(m.contains("sigvault_tsa_ready 0"), "{m}");
        assert_eq!(
            signatures(&base3, &label),
            n0,
            "signed while the clock was refused"
        );
    }
    svc3.stop();

    // --- A key that is not the certificate's: refused at start. ---------------------------------
    // The TSA key with the issuing CA's certificate listed first: a certificate of another key.
    let conf4 = dir.join("tsa-mismatch.toml");
    let text = std::fs::read_to_string(&conf3)
        .expect("conf")
        .replace("/tsa.pem", "/issuing-ca.pem");
    std::fs::write(&conf4, text).expect("write");
    let (ok, o, e) = sigvault(&["tsa", "serve", "--config"], &conf4);
    assert!(
        !ok && e.contains("does not match the first certificate of cert_chain"),
        "{o}{e}"
    );

    the_hsm_going_away(&dir, &label);
}

/// The TSA's token goes away (a removed or restarted HSM): requests get 503 with a rejection
/// `systemFailure`, `/readyz` names the token, and after `exit_after_failing_secs` the service
/// exits for systemd to restart it; nothing is issued meanwhile.
fn the_hsm_going_away(dir: &Path, label: &str) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let conf = tsa_config(
        dir,
        "tsa-hsm.toml",
        port,
        "ts-tsa",
        "require_synchronised_clock = false\n",
    );
    let text = std::fs::read_to_string(&conf).expect("conf").replacen(
        "[hsm]\n",
        "[hsm]\nexit_after_failing_secs = 2\n",
        1,
    );
    std::fs::write(&conf, text).expect("write");
    let mut svc = Service::start(&["tsa", "serve"], &conf, dir, "tsa-hsm.log");
    wait_ready(&base, &mut svc, 200);
    let away = common::TokenAway::take(label);
    let url = format!("{base}/api/v1/timestamp");
    assert_eq!(
        post(
            &url,
            "application/timestamp-query",
            &dir.join("req.tsq"),
            &dir.join("hsm.tsr")
        ),
        503
    );
    let (ok, text, e) = openssl(&["ts", "-reply", "-in", "hsm.tsr", "-text"], dir);
    assert!(
        ok && text.contains("Failure info: the request cannot be handled due to system failure"),
        "{text}{e}"
    );
    let why = wait_ready(&base, &mut svc, 503);
    assert!(why.contains(&common::hsm_failing_phrase(label)), "{why}");
    let st = svc.wait_exit(Duration::from_secs(20));
    away.restore();
    assert!(
        st.is_some_and(|s| !s.success()),
        "still running: {}",
        svc.log()
    );
    common::assert_hsm_exit_logged(&svc.log(), label);
}

/// Wait for /metrics to answer (the service is up, ready or not) and return the counter.
fn signatures_when_up(base: &str, svc: &mut Service, label: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = svc.child.try_wait().expect("wait") {
            panic!("tsa exited ({st}):\n{}", svc.log());
        }
        let (ok, out, _) =
            common::run(Command::new("curl").args(["-sf", &format!("{base}/metrics")]));
        if ok && out.contains("sigvault_hsm_signatures_total") {
            return signatures(base, label);
        }
        assert!(Instant::now() < deadline, "no /metrics:\n{}", svc.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sha256_of(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// `req` (a TimeStampReq whose lengths all fit in one byte) with the imprint's digest one byte
/// shorter: the OCTET STRING `04 20 <32 bytes>` becomes `04 1f <31 bytes>` and the enclosing
/// lengths shrink by one.
fn short_digest(req: &[u8]) -> Vec<u8> {
    let at = req
        .windows(2)
        .position(|w| w == [0x04, 0x20])
        .expect("imprint octet string");
    let mut out = req.to_vec();
    out.remove(at + 2);
    out[at + 1] = 0x1f;
    // Outer SEQUENCE (offset 1) and messageImprint SEQUENCE (the one right after the version).
    out[1] -= 1;
    let mi = 5;
    assert_eq!(out[mi], 0x30);
    out[mi + 1] -= 1;
    out
}

/// `req` with `[0] IMPLICIT Extensions { Extension { 1.2.3.4, OCTET STRING 05 00 } }`.
fn with_extension(req: &[u8]) -> Vec<u8> {
    let ext = [
        0xa0, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x04, 0x02, 0x05, 0x00,
    ];
    let mut out = req.to_vec();
    out.extend_from_slice(&ext);
    out[1] += ext.len() as u8;
    out
}
