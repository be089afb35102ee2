//! The key ceremony end to end: softhsm/ceremony.sh on a fresh state dir, its outputs checked with
//! openssl, a second run refused with every key untouched, and bad input refused with nothing
//! half-created.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

use common::dev_ceremony as run_ceremony;

fn openssl(args: &[&str], dir: &Path) -> (bool, String, String) {
    common::run(Command::new("openssl").args(args).current_dir(dir))
}

fn spki_der_of_pub_pem(path: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(path)
        .output()
        .expect("openssl");
    assert!(out.status.success());
    out.stdout
}

fn spki_der_of_cert(path: &Path) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -noout -pubkey | openssl pkey -pubin -outform DER",
            path.display()
        ))
        .output()
        .expect("openssl");
    assert!(out.status.success());
    out.stdout
}

fn list_dir(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .map(|r| {
            r.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn ceremony_outputs_verify_with_openssl_and_a_second_run_touches_nothing() {
    if !common::have_softhsm() {
        return;
    }
    let state = common::scratch("ceremony");
    let (ok, out, err) = run_ceremony(&state, "cer-");
    assert!(ok, "ceremony failed:\n{out}\n{err}");
    let c = state.join("ceremony");
    assert_eq!(
        list_dir(&c),
        [
            "ctlog.pub.pem",
            "issuing-ca.pem",
            "rekor-v2.pub.pem",
            "rekor.pub.pem",
            "root.pem",
            "tlog.pub.pem",
            "transcript.json",
            "tsa.pem"
        ]
    );

    // PINs are private.
    use std::os::unix::fs::MetadataExt;
    for role in ["root", "issuing-ca", "ctlog", "rekor", "tlog", "tsa"] {
        let meta = std::fs::metadata(state.join(format!("secrets/{role}.pin"))).expect("pin");
        assert_eq!(meta.mode() & 0o077, 0, "{role}.pin must be 0600");
    }

    // openssl verifies the chain: the root against itself, the issuing CA against the root.
    let (ok, o, e) = openssl(
        &["verify", "-x509_strict", "-CAfile", "root.pem", "root.pem"],
        &c,
    );
    assert!(ok, "{o}{e}");
    let (ok, o, e) = openssl(
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            "root.pem",
            "issuing-ca.pem",
        ],
        &c,
    );
    assert!(ok && o.contains("issuing-ca.pem: OK"), "{o}{e}");

    // The profile, as openssl reads it.
    let (_, root_txt, _) = openssl(&["x509", "-in", "root.pem", "-noout", "-text"], &c);
    assert!(root_txt.contains("CA:TRUE, pathlen:1"), "{root_txt}");
    assert!(
        root_txt.contains("Certificate Sign, CRL Sign"),
        "{root_txt}"
    );
    assert!(root_txt.contains("NIST CURVE: P-384"), "{root_txt}");
    assert!(root_txt.contains("Subject Key Identifier"), "{root_txt}");
    assert!(!root_txt.contains("Extended Key Usage"), "{root_txt}");
    let (_, ca_txt, _) = openssl(&["x509", "-in", "issuing-ca.pem", "-noout", "-text"], &c);
    assert!(ca_txt.contains("CA:TRUE, pathlen:0"), "{ca_txt}");
    assert!(ca_txt.contains("Code Signing"), "{ca_txt}");
    assert!(ca_txt.contains("NIST CURVE: P-256"), "{ca_txt}");
    assert!(ca_txt.contains("Authority Key Identifier"), "{ca_txt}");
    assert!(
        ca_txt.contains("Signature Algorithm: ecdsa-with-SHA384"),
        "{ca_txt}"
    );
    // The TSA certificate, issued by the root: RFC 3161's profile, as openssl checks it.
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
    // About ten years for the root.
    let (_, end, _) = openssl(
        &[
            "x509",
            "-in",
            "root.pem",
            "-noout",
            "-checkend",
            "315000000",
        ],
        &c,
    );
    assert!(end.contains("will not expire"), "{end}");

    // The transcript agrees with the files.
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.join("transcript.json")).expect("read"))
            .expect("json");
    assert_eq!(t["sigvault_version"], env!("CARGO_PKG_VERSION"));
    for f in [
        "root.pem",
        "issuing-ca.pem",
        "ctlog.pub.pem",
        "rekor.pub.pem",
        "tlog.pub.pem",
        "tsa.pem",
        "rekor-v2.pub.pem",
    ] {
        let want = hex::encode(sha2::Sha256::digest(
            std::fs::read(c.join(f)).expect("read"),
        ));
        assert_eq!(t["files"][f], want, "{f}");
    }
    let keys = t["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 7);
    let mut spkis = std::collections::BTreeMap::new();
    for k in keys {
        let role = k["role"].as_str().expect("role");
        let spki = match role {
            "root" => spki_der_of_cert(&c.join("root.pem")),
            "issuing-ca" => spki_der_of_cert(&c.join("issuing-ca.pem")),
            "tsa" => spki_der_of_cert(&c.join("tsa.pem")),
            r => spki_der_of_pub_pem(&c.join(format!("{r}.pub.pem"))),
        };
        assert_eq!(
            k["public_key_sha256"],
            hex::encode(sha2::Sha256::digest(&spki)),
            "{role}"
        );
        spkis.insert(role.to_owned(), spki);
    }

    // Every key is sign-only and never extractable, as OpenSC's pkcs11-tool reads it back from
    // its token: the private half "Usage: sign" (no decrypt, unwrap or derive, which SoftHSM2
    // would grant by default), the public half "Usage: verify".
    for role in ["root", "issuing-ca", "ctlog", "rekor", "tlog", "tsa"] {
        let pin = std::fs::read_to_string(state.join(format!("secrets/{role}.pin"))).expect("pin");
        let (ok, o, e) = common::run(
            Command::new("pkcs11-tool")
                .arg("--module")
                .arg(common::module())
                .args([
                    "--token-label",
                    &format!("cer-{role}"),
                    "--login",
                    "--pin",
                    pin.trim(),
                ])
                .arg("--list-objects")
                .env("SOFTHSM2_CONF", state.join("softhsm2.conf")),
        );
        assert!(ok, "pkcs11-tool {role}: {o}{e}");
        let mut usages: Vec<(&str, &str)> = o
            .lines()
            .filter(|l| l.contains("Key Object"))
            .zip(o.lines().filter_map(|l| l.trim().strip_prefix("Usage:")))
            .map(|(kind, u)| (kind.split(';').next().unwrap_or(kind), u.trim()))
            .collect();
        usages.sort();
        // The tlog's token holds the Rekor v2 log key beside its own: the tlog signs with both.
        let pairs = if role == "tlog" { 2 } else { 1 };
        let want: Vec<(&str, &str)> = [("Private Key Object", "sign")]
            .repeat(pairs)
            .into_iter()
            .chain([("Public Key Object", "verify")].repeat(pairs))
            .collect();
        assert_eq!(usages, want, "{role}:\n{o}");
        assert!(
            o.contains("Access:     sensitive, always sensitive, never extractable, local"),
            "{role}:\n{o}"
        );
    }

    // A second run refuses, and creates and changes nothing.
    let before: Vec<Vec<u8>> = list_dir(&c)
        .iter()
        .map(|f| std::fs::read(c.join(f)).expect("read"))
        .collect();
    let (ok, out, err) = run_ceremony(&state, "cer-");
    assert!(!ok, "a second ceremony must refuse:\n{out}");
    assert!(err.contains("never overwrites"), "{err}");
    let after: Vec<Vec<u8>> = list_dir(&c)
        .iter()
        .map(|f| std::fs::read(c.join(f)).expect("read"))
        .collect();
    assert_eq!(before, after);

    // Even with the outputs moved away, the existing keys stop it before anything is created.
    std::fs::rename(&c, state.join("ceremony.old")).expect("move");
    let (ok, _, err) = run_ceremony(&state, "cer-");
    assert!(!ok);
    assert!(err.contains("already holds a key labelled"), "{err}");
    assert!(
        list_dir(&c).is_empty(),
        "nothing half-created: {:?}",
        list_dir(&c)
    );

    // Every key in the tokens is still the one the first run exported.
    let spki_now = exported_spkis(&state);
    for (role, spki) in &spkis {
        assert_eq!(spki_now.get(role), Some(spki), "{role} key changed");
    }
}

/// Ask the tokens themselves (through the sigvault library, in a child process pointed at the
/// state dir's SoftHSM config) for each role's public key.
fn exported_spkis(state: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let out = Command::new(std::env::current_exe().expect("self"))
        .args([
            "--exact",
            "print_token_spkis_helper",
            "--nocapture",
            "--include-ignored",
        ])
        .env("SOFTHSM2_CONF", state.join("softhsm2.conf"))
        .env("SIGVAULT_HELPER_STATE", state)
        .output()
        .expect("helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SPKI "))
        .map(|l| {
            let (role, hex_der) = l.split_once(' ').expect("line");
            (role.to_owned(), hex::decode(hex_der).expect("hex"))
        })
        .collect()
}

/// Not a test on its own: run by `exported_spkis` in a child process whose SOFTHSM2_CONF is
/// the ceremony's private one.
#[test]
#[ignore = "helper run by the ceremony test in a child process"]
fn print_token_spkis_helper() {
    let Some(state) = std::env::var_os("SIGVAULT_HELPER_STATE") else {
        return;
    };
    let state = PathBuf::from(state);
    let cfg = sigvault::config::load_ceremony(&state.join("ceremony.toml")).expect("config");
    let m = sigvault::hsm::Module::load(&cfg.hsm.module).expect("module");
    for (role, k) in cfg.roles() {
        let pin = k.pin.read().expect("pin");
        let token = m.login(&k.key, &pin).expect("login");
        let s = token.signer(&k.key).expect("signer");
        use sigvault::signer::Signer;
        println!("SPKI {role} {}", hex::encode(s.public_key_der()));
    }
}

#[test]
fn bad_input_is_refused_with_one_clear_line_and_nothing_created() {
    if !common::have_softhsm() {
        return;
    }
    // A good ceremony state to break in different ways.
    let state = common::scratch("badinput");
    let (ok, out, err) = run_ceremony(&state, "bad-");
    assert!(ok, "{out}{err}");
    let good_cfg = std::fs::read_to_string(state.join("ceremony.toml")).expect("cfg");
    let softhsm_conf = state.join("softhsm2.conf");

    let try_cfg = |name: &str, text: &str| -> (bool, String, String, PathBuf) {
        let dir = common::scratch(name);
        let out_dir = dir.join("out");
        let text = text.replace(
            &format!("output_dir = \"{}\"", state.join("ceremony").display()),
            &format!("output_dir = \"{}\"", out_dir.display()),
        );
        let cfg = dir.join("ceremony.toml");
        std::fs::write(&cfg, text).expect("write");
        let (ok, o, e) = common::run(
            Command::new(common::sigvault_bin())
                .args(["ceremony", "--config"])
                .arg(&cfg)
                .env("SOFTHSM2_CONF", &softhsm_conf),
        );
        (ok, o, e, out_dir)
    };
    let check = |name: &str, text: &str, want: &str| {
        let (ok, o, e, out_dir) = try_cfg(name, text);
        assert!(!ok, "{name}: must fail:\n{o}{e}");
        let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{name}: one error line expected:\n{e}");
        assert!(e.contains(want), "{name}: expected {want:?} in:\n{e}");
        assert!(
            list_dir(&out_dir).is_empty(),
            "{name}: created {:?}",
            list_dir(&out_dir)
        );
    };

    check("malformed", "[ceremony\noutput_dir = 1", "TOML");
    check(
        "unknownkey",
        &good_cfg.replace("[ceremony.tlog]", "[ceremony.tlog]\ncolor = \"red\""),
        "unknown field `color`",
    );
    let missing_pin = state.join("secrets/does-not-exist.pin");
    check(
        "missingpin",
        &good_cfg.replace(
            &state.join("secrets/rekor.pin").display().to_string(),
            &missing_pin.display().to_string(),
        ),
        "does-not-exist.pin",
    );
    let open_pin = common::scratch("openpin").join("root.pin");
    std::fs::copy(state.join("secrets/root.pin"), &open_pin).expect("copy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open_pin, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    check(
        "worldpin",
        &good_cfg.replace(
            &state.join("secrets/root.pin").display().to_string(),
            &open_pin.display().to_string(),
        ),
        "chmod 0600",
    );
    check(
        "unknowntoken",
        &good_cfg.replace("token=bad-ctlog", "token=bad-nonexistent"),
        "no initialised token labelled 'bad-nonexistent'",
    );
    let fake = common::scratch("fakemod").join("libnot-pkcs11.so");
    std::fs::write(&fake, "hello").expect("write");
    check(
        "notamodule",
        &good_cfg.replace(
            "/usr/lib/softhsm/libsofthsm2.so",
            &fake.display().to_string(),
        ),
        "as a PKCS#11 module",
    );
    let wrong_pin = common::scratch("wrongpin").join("tlog.pin");
    common::write_private(&wrong_pin, "definitely-wrong");
    check(
        "wrongpin",
        &good_cfg.replace(
            &state.join("secrets/tlog.pin").display().to_string(),
            &wrong_pin.display().to_string(),
        ),
        "wrong PIN for token 'bad-tlog'",
    );
    // check-config reports the same problems without touching the HSM.
    let (ok, _, e) = common::run(
        Command::new(common::sigvault_bin())
            .arg("check-config")
            .arg(state.join("does-not-exist.toml")),
    );
    assert!(!ok && e.contains("cannot read config"), "{e}");
}

#[test]
fn version_and_check_config_on_the_shipped_example() {
    let (ok, out, _) = common::run(Command::new(common::sigvault_bin()).arg("--version"));
    assert!(ok);
    assert_eq!(
        out.trim(),
        format!("sigvault {}", env!("CARGO_PKG_VERSION"))
    );
    // The shipped example parses (its PIN files do not exist here, so the verdict is NOT OK, and
    // says which files are missing).
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ceremony.toml");
    let (ok, _, err) = common::run(
        Command::new(common::sigvault_bin())
            .arg("check-config")
            .arg(&example),
    );
    assert!(!ok);
    assert!(err.contains("NOT OK") && err.contains("root.pin"), "{err}");
}
