//! Rotations and retirements (`sigvault ceremony --rotate ROLE`, `--retire ROLE`) on a
//! development ceremony's tokens: what they write, that they never overwrite or reuse a label,
//! that bad times and roles are refused with nothing written, and what `sigvault trust` makes of
//! the records. (tests/lifecycle.sh does the same on a running stack, with the clients.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Ceremony {
    state: PathBuf,
}

impl Ceremony {
    fn new(prefix: &str) -> Option<Self> {
        if !common::have_softhsm() {
            return None;
        }
        let state = common::scratch("rotation");
        let (ok, out, err) = common::dev_ceremony(&state, prefix);
        assert!(ok, "ceremony failed:\n{out}\n{err}");
        Some(Self { state })
    }

    fn dir(&self) -> PathBuf {
        self.state.join("ceremony")
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        common::run(
            Command::new(common::sigvault_bin())
                .env("SOFTHSM2_CONF", self.state.join("softhsm2.conf"))
                .arg("ceremony")
                .arg("--config")
                .arg(self.state.join("ceremony.toml"))
                .args(args),
        )
    }

    fn files(&self) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(self.dir())
            .expect("ceremony dir")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).expect("read"),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir().join(name)).expect(name)).expect("json")
    }

    /// A refusal: the command fails, its message contains `why`, and no file changed.
    fn refused(&self, args: &[&str], why: &str) {
        let before = self.files();
        let (ok, out, err) = self.run(args);
        assert!(!ok, "{args:?} was accepted:\n{out}\n{err}");
        assert!(err.contains(why), "{args:?}: expected {why:?} in:\n{err}");
        assert!(
            self.files() == before,
            "{args:?} was refused but changed the ceremony dir"
        );
    }

    fn trust(&self, out: &Path) -> Value {
        let (ok, o, e) = common::run(
            Command::new(common::sigvault_bin())
                .arg("trust")
                .arg("--ceremony-dir")
                .arg(self.dir())
                .args([
                    "--fulcio-url",
                    "https://fulcio.example",
                    "--rekor-url",
                    "https://rekor.example",
                    "--ctlog-url",
                    "https://ctlog.example/sigvault",
                    "--oidc-url",
                    "https://oidc.example",
                    "--tsa-url",
                    "https://tsa.example/api/v1/timestamp",
                    "--rekor-v2-url",
                    "https://rekor-v2.example",
                    "--operator",
                    "rotation test",
                    "--out",
                ])
                .arg(out),
        );
        assert!(ok, "trust failed:\n{o}\n{e}");
        serde_json::from_slice(&std::fs::read(out.join("trusted_root.json")).expect("root"))
            .expect("json")
    }
}

fn openssl_verify(dir: &Path, cert: &str) -> bool {
    Command::new("openssl")
        .args(["verify", "-CAfile", "root.pem", cert])
        .current_dir(dir)
        .output()
        .expect("openssl")
        .status
        .success()
}

#[test]
fn rotations_add_generations_and_never_overwrite() {
    let Some(c) = Ceremony::new("rot-") else {
        return;
    };
    let gen1_ca = std::fs::read(c.dir().join("issuing-ca.pem")).expect("gen 1");

    // The issuing CA: a new key, a certificate signed by the root, a record.
    let (ok, out, err) = c.run(&["--rotate", "issuing-ca"]);
    assert!(ok, "rotate issuing-ca:\n{out}\n{err}");
    assert!(openssl_verify(&c.dir(), "issuing-ca-2.pem"));
    assert_eq!(
        std::fs::read(c.dir().join("issuing-ca.pem")).expect("gen 1"),
        gen1_ca,
        "generation 1 untouched"
    );
    let rec = c.json("rotate-issuing-ca-2.json");
    assert_eq!(rec["format"], "sigvault-rotation/v1");
    assert_eq!(rec["generation"], 2);
    assert_eq!(rec["key_label"], "issuing-ca-2");
    assert_eq!(rec["file"], "issuing-ca-2.pem");
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in", "issuing-ca-2.pem"])
        .current_dir(c.dir())
        .output()
        .expect("openssl");
    assert!(String::from_utf8_lossy(&subject.stdout).contains("issuing CA 2"));

    // No-overwrite: the label that now exists, and generation 1's label, are refused.
    c.refused(
        &["--rotate", "issuing-ca", "--label", "issuing-ca-2"],
        "already holds a key labelled 'issuing-ca-2'",
    );
    c.refused(
        &["--rotate", "issuing-ca", "--label", "issuing-ca"],
        "already holds a key labelled 'issuing-ca'",
    );

    // A log needs its own URL; with one it gets a new key and its public key file.
    c.refused(&["--rotate", "ctlog"], "--url");
    let (ok, out, err) = c.run(&[
        "--rotate",
        "ctlog",
        "--url",
        "https://ctlog.example/sigvault2",
    ]);
    assert!(ok, "rotate ctlog:\n{out}\n{err}");
    assert!(c.dir().join("ctlog-2.pub.pem").exists());
    assert_ne!(
        std::fs::read(c.dir().join("ctlog-2.pub.pem")).expect("new"),
        std::fs::read(c.dir().join("ctlog.pub.pem")).expect("old"),
        "a new key"
    );

    // The TSA renewed: the same key, a new certificate.
    let (ok, out, err) = c.run(&["--rotate", "tsa", "--renew"]);
    assert!(ok, "renew tsa:\n{out}\n{err}");
    let spki = |f: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl x509 -in '{f}' -noout -pubkey | openssl pkey -pubin -outform DER"
            ))
            .current_dir(c.dir())
            .output()
            .expect("openssl")
            .stdout
    };
    assert_eq!(spki("tsa.pem"), spki("tsa-2.pem"), "--renew keeps the key");
    assert!(openssl_verify(&c.dir(), "tsa-2.pem"));

    // Bad input: refused with one clear line, nothing written.
    c.refused(
        &["--rotate", "issuing-ca", "--start", "next tuesday"],
        "--start",
    );
    c.refused(&["--rotate", "issuing-ca", "--renew"], "--renew");
    c.refused(&["--rotate", "root"], "tuf rotate-root");
    c.refused(&["--rotate", "no-such-role"], "the roles that rotate are");
    c.refused(&["--retire", "issuing-ca", "--end", "yesterday"], "--end");
    c.refused(
        &["--retire", "issuing-ca", "--end", "2001-01-01T00:00:00Z"],
        "the windows must overlap",
    );
    c.refused(
        &["--retire", "rekor-v2"],
        "has one generation: rotate it first",
    );

    // A retirement ends generation 1; trust lists both CAs, the old one with its end.
    let (ok, out, err) = c.run(&["--retire", "issuing-ca"]);
    assert!(ok, "retire issuing-ca:\n{out}\n{err}");
    assert_eq!(
        c.json("retire-issuing-ca-1.json")["format"],
        "sigvault-retirement/v1"
    );
    let out = common::scratch("rotation-trust");
    let root = c.trust(&out);
    let cas = root["certificateAuthorities"].as_array().expect("CAs");
    assert_eq!(cas.len(), 2, "{cas:?}");
    let ends: Vec<bool> = cas
        .iter()
        .map(|ca| ca["validFor"].get("end").is_some())
        .collect();
    assert_eq!(
        ends.iter().filter(|e| **e).count(),
        1,
        "one CA ended: {cas:?}"
    );
    c.refused(&["--retire", "issuing-ca"], "is already retired");
    let logs = root["ctlogs"].as_array().expect("ctlogs");
    assert_eq!(logs.len(), 2, "both CT logs: {logs:?}");
    assert_ne!(logs[0]["logId"], logs[1]["logId"]);
    let tsas = root["timestampAuthorities"].as_array().expect("TSAs");
    assert_eq!(tsas.len(), 2, "both TSA certificates: {tsas:?}");
}
