//! The PKCS#11 signer against a real SoftHSM2 token: signatures checked by code we did not write
//! (the p256/p384 crates and openssl), non-extractable keys, and the clear errors.

mod common;

use std::process::Command;

use p256::pkcs8::DecodePublicKey;
use secrecy::SecretString;
use sigvault::hsm::{HsmError, HsmOptions, Module, Pkcs11Uri};
use sigvault::signer::{SignatureAlgorithm, Signer};

/// Every token this binary uses (see `common::token`).
const TOKENS: &[&str] = &[
    "p256",
    "p384",
    "sensitive",
    "wrongpin",
    "errors",
    "threads",
    "tokenusage",
    "onesession",
];

fn uri(token: &str, object: &str) -> Pkcs11Uri {
    format!("pkcs11:token={token};object={object}")
        .parse()
        .expect("uri")
}

#[test]
fn p256_signature_verifies_with_p256_crate_and_openssl() {
    if !common::have_softhsm() {
        return;
    }
    let t = common::token(TOKENS, "p256");
    let m = Module::load(&common::module()).expect("load");
    let token = m
        .login(&uri(&t.label, "k"), &SecretString::from(t.pin.clone()))
        .expect("login");
    token
        .generate_ec_key("k", b"\x01", SignatureAlgorithm::EcdsaP256Sha256)
        .expect("generate");
    let signer = token.signer(&uri(&t.label, "k")).expect("signer");
    assert_eq!(signer.algorithm(), SignatureAlgorithm::EcdsaP256Sha256);

    let msg = b"sigvault signs through PKCS#11";
    let sig = signer.sign(msg).expect("sign");

    // 1. RustCrypto's p256 verifies the DER signature against the exported SPKI.
    use p256::ecdsa::signature::Verifier;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(signer.public_key_der()).expect("spki");
    let parsed = p256::ecdsa::Signature::from_der(&sig).expect("DER signature");
    vk.verify(msg, &parsed).expect("p256 verifies");
    let mut other = msg.to_vec();
    other[0] ^= 1;
    assert!(
        vk.verify(&other, &parsed).is_err(),
        "a changed message must fail"
    );

    // 2. openssl verifies it too.
    let dir = common::scratch("openssl");
    let pem = sigvault::pki::spki_pem(signer.public_key_der()).expect("pem");
    std::fs::write(dir.join("pub.pem"), pem).expect("write");
    std::fs::write(dir.join("msg"), msg).expect("write");
    std::fs::write(dir.join("sig"), &sig).expect("write");
    let (ok, out, err) = common::run(
        Command::new("openssl")
            .args([
                "dgst",
                "-sha256",
                "-verify",
                "pub.pem",
                "-signature",
                "sig",
                "msg",
            ])
            .current_dir(&dir),
    );
    assert!(ok, "openssl dgst -verify failed: {out} {err}");
    assert!(out.contains("Verified OK"), "{out}");
}

#[test]
fn p384_signature_verifies_with_p384_crate() {
    if !common::have_softhsm() {
        return;
    }
    let t = common::token(TOKENS, "p384");
    let m = Module::load(&common::module()).expect("load");
    let token = m
        .login(&uri(&t.label, "k"), &SecretString::from(t.pin.clone()))
        .expect("login");
    token
        .generate_ec_key("k", b"\x02", SignatureAlgorithm::EcdsaP384Sha384)
        .expect("generate");
    // Address the key by id only this time.
    let by_id: Pkcs11Uri = format!("pkcs11:token={};id=%02", t.label)
        .parse()
        .expect("uri");
    let signer = token.signer(&by_id).expect("signer");
    assert_eq!(signer.algorithm(), SignatureAlgorithm::EcdsaP384Sha384);
    let sig = signer.sign(b"root").expect("sign");
    use p384::ecdsa::signature::Verifier;
    let vk = p384::ecdsa::VerifyingKey::from_public_key_der(signer.public_key_der()).expect("spki");
    vk.verify(
        b"root",
        &p384::ecdsa::Signature::from_der(&sig).expect("der"),
    )
    .expect("p384 verifies");
}

#[test]
fn private_key_value_cannot_be_read() {
    if !common::have_softhsm() {
        return;
    }
    let t = common::token(TOKENS, "sensitive");
    let m = Module::load(&common::module()).expect("load");
    let token = m
        .login(&uri(&t.label, "k"), &SecretString::from(t.pin.clone()))
        .expect("login");
    token
        .generate_ec_key("k", b"\x03", SignatureAlgorithm::EcdsaP256Sha256)
        .expect("generate");

    // Go around sigvault and ask the token directly, as an attacker with the PIN would.
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let ctx = Pkcs11::new(common::module()).expect("load");
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_initialized_token()
        .expect("slots")
        .into_iter()
        .find(|s| ctx.get_token_info(*s).expect("info").label().trim_end() == t.label)
        .expect("slot");
    let session = ctx.open_ro_session(slot).expect("session");
    let _ = session.login(
        cryptoki::session::UserType::User,
        Some(&SecretString::from(t.pin.clone())),
    );
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"k".to_vec()),
        ])
        .expect("find");
    assert_eq!(keys.len(), 1);
    match session.get_attributes(keys[0], &[AttributeType::Value]) {
        Err(_) => {}
        Ok(attrs) => assert!(
            !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
            "the private key value was readable: {attrs:?}"
        ),
    }
    let flags = session
        .get_attributes(
            keys[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
                AttributeType::NeverExtractable,
            ],
        )
        .expect("flags");
    for a in flags {
        match a {
            Attribute::Sensitive(v) => assert!(v, "CKA_SENSITIVE must be true"),
            Attribute::Extractable(v) => assert!(!v, "CKA_EXTRACTABLE must be false"),
            Attribute::Token(v) => assert!(v, "CKA_TOKEN must be true"),
            Attribute::NeverExtractable(v) => assert!(v, "CKA_NEVER_EXTRACTABLE must be true"),
            _ => {}
        }
    }
}

#[test]
fn wrong_pin_is_a_clear_error_that_names_the_token_not_the_pin() {
    if !common::have_softhsm() {
        return;
    }
    let t = common::token(TOKENS, "wrongpin");
    let m = Module::load(&common::module()).expect("load");
    let bad = "not-the-pin-4711";
    let err = m
        .login(&uri(&t.label, "k"), &SecretString::from(bad.to_owned()))
        .err()
        .expect("wrong PIN must fail");
    assert!(matches!(err, HsmError::WrongPin { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&t.label), "{msg}");
    assert!(!msg.contains(bad), "the PIN leaked into the message: {msg}");
    // And the right PIN still works afterwards (the token is not locked by one failure).
    m.login(&uri(&t.label, "k"), &SecretString::from(t.pin.clone()))
        .expect("right PIN");
}

#[test]
fn unknown_token_missing_key_and_existing_label_are_clear_errors() {
    if !common::have_softhsm() {
        return;
    }
    let t = common::token(TOKENS, "errors");
    let m = Module::load(&common::module()).expect("load");
    let err = m
        .login(
            &uri("no-such-token", "k"),
            &SecretString::from("x".to_owned()),
        )
        .err()
        .expect("unknown token");
    assert!(matches!(err, HsmError::TokenNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-token"));

    let token = m
        .login(&uri(&t.label, "k"), &SecretString::from(t.pin.clone()))
        .expect("login");
    let err = token
        .signer(&uri(&t.label, "absent"))
        .expect_err("missing key");
    assert!(matches!(err, HsmError::KeyNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("absent"));

    token
        .generate_ec_key("k", b"\x04", SignatureAlgorithm::EcdsaP256Sha256)
        .expect("generate");
    let before = token.signer(&uri(&t.label, "k")).expect("signer");
    let err = token
        .generate_ec_key("k", b"\x05", SignatureAlgorithm::EcdsaP256Sha256)
        .expect_err("label taken");
    assert!(matches!(err, HsmError::KeyExists { .. }), "{err:?}");
    let after = token.signer(&uri(&t.label, "k")).expect("signer");
    assert_eq!(
        before.public_key_der(),
        after.public_key_der(),
        "key untouched"
    );
}

#[test]
fn a_file_that_is_not_a_pkcs11_module_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, b"not a shared object").expect("write");
    let err = Module::load(&fake).expect_err("not a module");
    assert!(matches!(err, HsmError::ModuleLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("PKCS#11"), "{err}");
    // A real shared library without C_GetFunctionList is refused too.
    let libc = std::path::Path::new("/lib/x86_64-linux-gnu/libm.so.6");
    if libc.exists() {
        let err = Module::load(libc).expect_err("libm is not PKCS#11");
        assert!(matches!(err, HsmError::ModuleLoad { .. }), "{err:?}");
    }
    let err = Module::load(&dir.path().join("absent.so")).expect_err("missing");
    assert!(matches!(err, HsmError::ModuleMissing { .. }), "{err:?}");
}

#[test]
fn concurrent_signing_from_many_threads() {
    if !common::have_softhsm() {
        return;
    }
    let t = common::token(TOKENS, "threads");
    let m = Module::load(&common::module()).expect("load");
    let token = m
        .login(&uri(&t.label, "k"), &SecretString::from(t.pin.clone()))
        .expect("login");
    token
        .generate_ec_key("k", b"\x06", SignatureAlgorithm::EcdsaP256Sha256)
        .expect("generate");
    let signer = std::sync::Arc::new(token.signer(&uri(&t.label, "k")).expect("signer"));
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(signer.public_key_der()).expect("spki");
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = std::sync::Arc::clone(&signer);
            std::thread::spawn(move || {
                (0..200)
                    .map(|j| {
                        let msg = format!("thread {i} message {j}");
                        let sig = s.sign(msg.as_bytes()).expect("sign");
                        (msg, sig)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    use p256::ecdsa::signature::Verifier;
    let mut n = 0;
    for h in handles {
        for (msg, sig) in h.join().expect("thread") {
            vk.verify(
                msg.as_bytes(),
                &p256::ecdsa::Signature::from_der(&sig).expect("der"),
            )
            .expect("verify");
            n += 1;
        }
    }
    assert_eq!(n, 1600);
}

/// `[hsm] public_key_usage_attributes = false` (for modules such as tpm2-pkcs11 that refuse the
/// public key's usage in the generation template): the template leaves it out, sigvault sets it
/// on the object afterwards, and the key that results is what the full template makes. SoftHSM2
/// left to its defaults marks an EC public key encrypt and wrap, so this also shows the usage is
/// really set and not just the token's.
#[test]
fn token_chosen_public_key_usage_is_set_after_generation() {
    if !common::have_softhsm() {
        return;
    }
    let t = common::token(TOKENS, "tokenusage");
    let opts = HsmOptions {
        public_key_usage_attributes: false,
        ..HsmOptions::default()
    };
    let m = Module::load_with(&common::module(), opts).expect("load");
    assert!(!m.options().public_key_usage_attributes);
    assert!(
        Module::load(&common::module())
            .expect("load")
            .options()
            .public_key_usage_attributes,
        "the options are per handle, not per process"
    );
    let token = m
        .login(&uri(&t.label, "k"), &SecretString::from(t.pin.clone()))
        .expect("login");
    token
        .generate_ec_key("k", b"\x07", SignatureAlgorithm::EcdsaP256Sha256)
        .expect("generate");
    let signer = token.signer(&uri(&t.label, "k")).expect("signer");
    signer.sign(b"usage").expect("sign");

    // Read the public key's usage around sigvault, with pkcs11-tool (OpenSC).
    let (ok, out, err) = common::run(Command::new("pkcs11-tool").args([
        "--module",
        common::module().to_str().expect("path"),
        "--token-label",
        &t.label,
        "--login",
        "--pin",
        &t.pin,
        "--list-objects",
        "--type",
        "pubkey",
    ]));
    assert!(ok, "pkcs11-tool failed: {out} {err}");
    let usage = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage:"))
        .unwrap_or_else(|| panic!("no Usage line: {out}"))
        .trim()
        .to_owned();
    assert_eq!(usage, "verify", "public key usage: {out}");
}

/// `[hsm] max_sessions`: a token limited to one signing session still serves many threads,
/// one signature at a time, and the limit is the one configured.
#[test]
fn a_session_limit_serialises_signers_instead_of_failing() {
    if !common::have_softhsm() {
        return;
    }
    let t = common::token(TOKENS, "onesession");
    let opts = HsmOptions {
        max_sessions: Some(1),
        ..HsmOptions::default()
    };
    let m = Module::load_with(&common::module(), opts).expect("load");
    let token = m
        .login(&uri(&t.label, "k"), &SecretString::from(t.pin.clone()))
        .expect("login");
    assert_eq!(token.max_sessions(), Some(1));
    token
        .generate_ec_key("k", b"\x08", SignatureAlgorithm::EcdsaP256Sha256)
        .expect("generate");
    let signer = std::sync::Arc::new(token.signer(&uri(&t.label, "k")).expect("signer"));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let s = std::sync::Arc::clone(&signer);
            std::thread::spawn(move || {
                for j in 0..50 {
                    s.sign(format!("{i}/{j}").as_bytes()).expect("sign");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    // SoftHSM reports no session limit of its own: without the option there is none.
    let unlimited = Module::load(&common::module())
        .expect("load")
        .login(&uri(&t.label, "k"), &SecretString::from(t.pin.clone()))
        .expect("login");
    assert_eq!(unlimited.max_sessions(), None);
}
