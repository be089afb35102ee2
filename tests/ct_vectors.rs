//! `sigvault::pki::ct` against google/certificate-transparency-go test data
//! (tests/vectors/ct-go_testdata.json; tests/vectors/README.md says where each value comes from)
//! and against chains made by rcgen.
//!
//! Signatures are checked with the p256/p384 crates, so the encodings we build are proven by code
//! we did not write.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use der::{Decode, DecodePem, Encode};
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use sigvault::pki::ct::{
    self, AddChainResponse, CtError, DigitallySigned, MerkleTreeLeaf, Sct, SignedEntry,
};
use x509_cert::Certificate;

struct Vectors {
    json: serde_json::Value,
}

impl Vectors {
    fn load() -> Self {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/ct-go_testdata.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Self {
            json: serde_json::from_str(&text).expect("vector JSON"),
        }
    }

    fn str(&self, key: &str) -> &str {
        self.json[key]
            .as_str()
            .unwrap_or_else(|| panic!("vector {key} missing"))
    }

    fn cert(&self, key: &str) -> Certificate {
        Certificate::from_pem(self.str(key)).expect(key)
    }

    fn ca(&self) -> Certificate {
        self.cert("ca_cert_pem")
    }
    fn leaf(&self) -> Certificate {
        self.cert("test_cert_pem")
    }
    fn precert(&self) -> Certificate {
        self.cert("test_precert_pem")
    }

    fn sct_bytes(&self, key: &str) -> Vec<u8> {
        hex::decode(self.str(key)).expect("hex")
    }

    fn log_key(&self) -> p256::ecdsa::VerifyingKey {
        p256::ecdsa::VerifyingKey::from_public_key_pem(self.str("log_public_key_pem"))
            .expect("log key")
    }
}

fn der(c: &Certificate) -> Vec<u8> {
    c.to_der().expect("der")
}

/// Verifies a `DigitallySigned` (SHA-256 + ECDSA) with p256.
fn ecdsa_ok(key: &p256::ecdsa::VerifyingKey, ds: &DigitallySigned, msg: &[u8]) -> bool {
    assert_eq!((ds.hash_alg, ds.sig_alg), (ct::HASH_SHA256, ct::SIG_ECDSA));
    let sig = p256::ecdsa::Signature::from_der(&ds.signature).expect("DER ECDSA signature");
    key.verify(msg, &sig).is_ok()
}

fn ext_ids(c: &Certificate) -> Vec<String> {
    c.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .map(|e| e.extn_id.to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ct-go vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn vectors_parse_and_classify() {
    let v = Vectors::load();
    assert_eq!(ct::is_precert(&v.ca()), Ok(false));
    assert_eq!(ct::is_precert(&v.leaf()), Ok(false));
    assert_eq!(ct::is_precert(&v.precert()), Ok(true));
    assert!(ct::has_poison_extension(&v.precert()));
    assert!(ct::embedded_scts(&v.leaf()).expect("no list").is_empty());
    assert_eq!(ct::precert_tbs(&v.leaf()), Err(CtError::NotPrecert));
}

#[test]
fn issued_by_accepts_real_pairs_and_rejects_tampering() {
    let v = Vectors::load();
    let (ca, leaf, pre) = (v.ca(), v.leaf(), v.precert());
    ct::verify_issued_by(&leaf, &ca).expect("cert <- CA (RSA/SHA-1)");
    ct::verify_issued_by(&pre, &ca).expect("precert <- CA, poison ignored");
    ct::verify_issued_by(&ca, &ca).expect("self-signed CA");

    // A flipped signature byte.
    let mut bytes = der(&leaf);
    let n = bytes.len();
    bytes[n - 10] ^= 0x01;
    let bad = Certificate::from_der(&bytes).expect("still DER");
    let err = ct::verify_issued_by(&bad, &ca).expect_err("tampered signature");
    assert!(matches!(err, CtError::BadSignature { .. }), "{err}");
    assert!(err.to_string().contains("does not verify"), "{err}");

    // A tampered TBS (serial number changed) no longer matches the signature either.
    let mut t = leaf.clone();
    t.tbs_certificate.serial_number =
        x509_cert::serial_number::SerialNumber::new(&[0x07]).expect("serial");
    assert!(matches!(
        ct::verify_issued_by(&t, &ca),
        Err(CtError::BadSignature { .. })
    ));

    // The wrong issuer: the leaf is not the precert's issuer (name differs, not a CA).
    let err = ct::verify_issued_by(&pre, &leaf).expect_err("wrong issuer");
    assert!(matches!(err, CtError::IssuerMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("Certificate Transparency CA"),
        "{err}"
    );

    // A non-CA issuer whose name does match: give the leaf the CA's subject.
    let mut fake = leaf.clone();
    fake.tbs_certificate.subject = ca.tbs_certificate.subject.clone();
    let err = ct::verify_issued_by(&pre, &fake).expect_err("not a CA");
    assert!(matches!(err, CtError::NotCa(_)), "{err}");
}

#[test]
fn verify_chain_with_vectors() {
    let v = Vectors::load();
    let (ca, leaf, pre) = (v.ca(), v.leaf(), v.precert());
    assert_eq!(
        ct::verify_chain(&[leaf.clone(), ca.clone()], std::slice::from_ref(&ca)),
        Ok(0)
    );
    assert_eq!(
        ct::verify_chain(std::slice::from_ref(&leaf), std::slice::from_ref(&ca)),
        Ok(0)
    );
    assert_eq!(
        ct::verify_chain(&[pre.clone(), ca.clone()], &[leaf.clone(), ca.clone()]),
        Ok(1)
    );
    let err = ct::verify_chain(std::slice::from_ref(&leaf), std::slice::from_ref(&pre))
        .expect_err("no root");
    assert!(matches!(err, CtError::UnknownRoot { .. }), "{err}");
    assert!(
        err.to_string().contains("not one of this log's 1 root(s)"),
        "{err}"
    );
    assert_eq!(
        ct::verify_chain(&[], std::slice::from_ref(&ca)),
        Err(CtError::EmptyChain)
    );
    // Wrong order.
    let err = ct::verify_chain(&[ca.clone(), leaf.clone()], std::slice::from_ref(&ca))
        .expect_err("order");
    assert!(
        matches!(
            err,
            CtError::ChainLink {
                index: 0,
                next: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn scts_decode_reencode_and_verify() {
    let v = Vectors::load();
    let key = v.log_key();
    let spki = p256::pkcs8::EncodePublicKey::to_public_key_der(&key).expect("spki");
    let log_id = ct::log_id(spki.as_bytes());
    let (ca, leaf, pre) = (v.ca(), v.leaf(), v.precert());

    // Final certificate: x509_entry.
    let raw = v.sct_bytes("test_cert_sct_tls_hex");
    let sct = Sct::decode(&raw).expect("cert SCT");
    assert_eq!(sct.encode(), raw, "re-encoding is byte-identical");
    assert_eq!(sct.log_id, log_id);
    assert_eq!(sct.version, 0);
    let entry = SignedEntry::X509(der(&leaf));
    assert!(ecdsa_ok(
        &key,
        &sct.signature,
        &ct::sct_signed_data(sct.timestamp, &entry, &sct.extensions)
    ));
    assert!(ecdsa_ok(&key, &sct.signature, &sct.signed_data(&entry)));
    // The same SCT does not verify for another timestamp.
    assert!(!ecdsa_ok(
        &key,
        &sct.signature,
        &ct::sct_signed_data(sct.timestamp + 1, &entry, &[])
    ));

    // Precertificate: precert_entry over issuer_key_hash(CA) and the TBS without poison.
    let raw = v.sct_bytes("test_precert_sct_tls_hex");
    let psct = Sct::decode(&raw).expect("precert SCT");
    assert_eq!(psct.encode(), raw);
    let tbs = ct::precert_tbs(&pre).expect("precert TBS");
    let pentry = SignedEntry::Precert {
        issuer_key_hash: ct::issuer_key_hash(&ca),
        tbs: tbs.clone(),
    };
    assert!(ecdsa_ok(&key, &psct.signature, &psct.signed_data(&pentry)));
    // With the poison left in, or the wrong issuer key hash, it does not verify.
    let with_poison = SignedEntry::Precert {
        issuer_key_hash: ct::issuer_key_hash(&ca),
        tbs: pre.tbs_certificate.to_der().expect("tbs"),
    };
    assert!(!ecdsa_ok(
        &key,
        &psct.signature,
        &psct.signed_data(&with_poison)
    ));
    let wrong_issuer = SignedEntry::Precert {
        issuer_key_hash: ct::issuer_key_hash(&leaf),
        tbs,
    };
    assert!(!ecdsa_ok(
        &key,
        &psct.signature,
        &psct.signed_data(&wrong_issuer)
    ));

    // List form and JSON form.
    let list = ct::sct_list_encode(&[sct.clone(), psct.clone()]);
    assert_eq!(
        ct::sct_list_decode(&list),
        Ok(vec![sct.clone(), psct.clone()])
    );
    let json = AddChainResponse::from(&sct);
    assert_eq!(json.id, B64.encode(log_id));
    assert_eq!(json.extensions, "");
    let text = serde_json::to_string(&json).expect("json");
    let back: AddChainResponse = serde_json::from_str(&text).expect("json back");
    assert_eq!(Sct::try_from(&back), Ok(sct.clone()));
    let sig = B64.decode(&json.signature).expect("b64");
    assert_eq!(DigitallySigned::decode(&sig), Ok(sct.signature.clone()));
}

#[test]
fn leaf_hashes_match_vectors() {
    let v = Vectors::load();
    let (ca, leaf, pre) = (v.ca(), v.leaf(), v.precert());
    let sct = Sct::decode(&v.sct_bytes("test_cert_sct_tls_hex")).expect("sct");
    let psct = Sct::decode(&v.sct_bytes("test_precert_sct_tls_hex")).expect("sct");

    let cert_leaf = MerkleTreeLeaf {
        timestamp: sct.timestamp,
        entry: SignedEntry::X509(der(&leaf)),
        extensions: Vec::new(),
    };
    assert_eq!(
        B64.encode(cert_leaf.leaf_hash()),
        v.str("test_cert_b64_leaf_hash")
    );

    let pre_leaf = MerkleTreeLeaf {
        timestamp: psct.timestamp,
        entry: SignedEntry::Precert {
            issuer_key_hash: ct::issuer_key_hash(&ca),
            tbs: ct::precert_tbs(&pre).expect("tbs"),
        },
        extensions: Vec::new(),
    };
    assert_eq!(
        B64.encode(pre_leaf.leaf_hash()),
        v.str("test_precert_b64_leaf_hash")
    );

    for l in [cert_leaf, pre_leaf] {
        let enc = l.encode();
        assert_eq!(MerkleTreeLeaf::decode(&enc), Ok(l.clone()));
        let mut longer = enc.clone();
        longer.push(0);
        assert!(matches!(
            MerkleTreeLeaf::decode(&longer),
            Err(CtError::TrailingBytes { count: 1, .. })
        ));
        for cut in [1, 2, 9, 11, 13, 40, enc.len() - 3, enc.len() - 1] {
            let err = MerkleTreeLeaf::decode(&enc[..cut]).expect_err("truncated");
            assert!(matches!(err, CtError::Truncated { .. }), "cut {cut}: {err}");
        }
    }
}

#[test]
fn pilot_sth_verifies() {
    let v = Vectors::load();
    let sth = &v.json["pilot_sth"];
    let key = p256::ecdsa::VerifyingKey::from_public_key_pem(v.str("pilot_public_key_pem"))
        .expect("pilot key");
    let root: [u8; 32] = B64
        .decode(sth["sha256_root_hash"].as_str().expect("root"))
        .expect("b64")
        .try_into()
        .expect("32 bytes");
    let ds = DigitallySigned::decode(
        &B64.decode(sth["tree_head_signature"].as_str().expect("sig"))
            .expect("b64"),
    )
    .expect("DigitallySigned");
    let ts = sth["timestamp"].as_u64().expect("ts");
    let size = sth["tree_size"].as_u64().expect("size");
    assert!(ecdsa_ok(&key, &ds, &ct::sth_signed_data(ts, size, &root)));
    assert!(!ecdsa_ok(
        &key,
        &ds,
        &ct::sth_signed_data(ts, size + 1, &root)
    ));
    assert_eq!(
        ds.encode(),
        B64.decode(sth["tree_head_signature"].as_str().expect("sig"))
            .expect("b64")
    );
}

#[test]
fn precert_tbs_removes_only_the_poison() {
    let v = Vectors::load();
    let pre = v.precert();
    let tbs_der = ct::precert_tbs(&pre).expect("tbs");
    let got = x509_cert::TbsCertificate::from_der(&tbs_der).expect("still a TBSCertificate");
    let mut want_ids = ext_ids(&pre);
    let poison = ct::POISON.to_string();
    assert_eq!(want_ids.last(), Some(&poison));
    want_ids.retain(|i| *i != poison);
    let got_ids: Vec<String> = got
        .extensions
        .iter()
        .flatten()
        .map(|e| e.extn_id.to_string())
        .collect();
    assert_eq!(got_ids, want_ids);
    // Independently: the decoded TBS minus the poison, re-encoded by the der crate.
    let mut indep = pre.tbs_certificate.clone();
    if let Some(exts) = indep.extensions.as_mut() {
        exts.retain(|e| e.extn_id != ct::POISON);
    }
    assert_eq!(indep.to_der().expect("der"), tbs_der);
    // A non-critical poison is refused.
    let mut soft = pre.clone();
    for e in soft.tbs_certificate.extensions.iter_mut().flatten() {
        if e.extn_id == ct::POISON {
            e.critical = false;
        }
    }
    assert_eq!(ct::is_precert(&soft), Err(CtError::PoisonNotCritical));
    assert_eq!(ct::precert_tbs(&soft), Err(CtError::PoisonNotCritical));
}

#[test]
fn extra_data_round_trips() {
    let v = Vectors::load();
    let (ca, pre) = (der(&v.ca()), der(&v.precert()));
    let x = ct::encode_x509_extra_data(std::slice::from_ref(&ca));
    assert_eq!(&x[..3], &((ca.len() + 3) as u32).to_be_bytes()[1..]);
    assert_eq!(ct::decode_x509_extra_data(&x), Ok(vec![ca.clone()]));
    let p = ct::encode_precert_extra_data(&pre, std::slice::from_ref(&ca));
    let d = ct::decode_precert_extra_data(&p).expect("precert extra");
    assert_eq!(
        (d.pre_certificate, d.chain),
        (pre.clone(), vec![ca.clone()])
    );
    assert!(ct::decode_precert_extra_data(&p[..p.len() - 1]).is_err());
    let mut longer = x.clone();
    longer.push(0);
    assert!(ct::decode_x509_extra_data(&longer).is_err());
}

// ---------------------------------------------------------------------------------------------
// rcgen-made chains: ECDSA P-256/P-384, RSA SHA-256, precert → final certificate
// ---------------------------------------------------------------------------------------------

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn params(cn: &str, ca: Option<rcgen::BasicConstraints>) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "sigvault test");
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x42, cn.len() as u8]));
    if let Some(bc) = ca {
        p.is_ca = rcgen::IsCa::Ca(bc);
    }
    p
}

fn root(cn: &str, alg: &'static rcgen::SignatureAlgorithm, bc: rcgen::BasicConstraints) -> Ca {
    let key = rcgen::KeyPair::generate_for(alg).expect("key");
    let cert = params(cn, Some(bc)).self_signed(&key).expect("root");
    Ca { cert, key }
}

fn issue(p: rcgen::CertificateParams, key: &rcgen::KeyPair, by: &Ca) -> rcgen::Certificate {
    p.signed_by(key, &by.cert, &by.key).expect("issue")
}

fn parse(c: &rcgen::Certificate) -> Certificate {
    Certificate::from_der(c.der()).expect("parse rcgen cert")
}

#[test]
fn ecdsa_chains() {
    use rcgen::BasicConstraints::{Constrained, Unconstrained};
    let r384 = root("root P-384", &rcgen::PKCS_ECDSA_P384_SHA384, Constrained(1));
    let ikey = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let inter = Ca {
        cert: issue(
            params("intermediate P-256", Some(Constrained(0))),
            &ikey,
            &r384,
        ),
        key: ikey,
    };
    let lkey = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let leaf = parse(&issue(params("leaf", None), &lkey, &inter));
    let (root_c, inter_c) = (parse(&r384.cert), parse(&inter.cert));

    ct::verify_issued_by(&leaf, &inter_c).expect("P-256/SHA-256");
    ct::verify_issued_by(&inter_c, &root_c).expect("P-384/SHA-384");
    let other = parse(&root("other", &rcgen::PKCS_ECDSA_P256_SHA256, Unconstrained).cert);
    let roots = [other.clone(), root_c.clone()];
    assert_eq!(
        ct::verify_chain(&[leaf.clone(), inter_c.clone()], &roots),
        Ok(1)
    );
    assert_eq!(
        ct::verify_chain(&[leaf.clone(), inter_c.clone(), root_c.clone()], &roots),
        Ok(1)
    );
    assert_eq!(
        ct::verify_chain(std::slice::from_ref(&inter_c), &roots),
        Ok(1)
    );
    // The intermediate left out: the leaf's issuer is not a root.
    let err =
        ct::verify_chain(std::slice::from_ref(&leaf), &roots).expect_err("missing intermediate");
    assert!(matches!(err, CtError::UnknownRoot { .. }), "{err}");
    assert!(err.to_string().contains("intermediate P-256"), "{err}");

    // A root with the same name but another key.
    let impostor = parse(&root("root P-384", &rcgen::PKCS_ECDSA_P384_SHA384, Constrained(1)).cert);
    let err = ct::verify_chain(
        &[leaf.clone(), inter_c.clone()],
        std::slice::from_ref(&impostor),
    )
    .expect_err("impostor");
    assert!(
        err.to_string().contains("a root with that name exists"),
        "{err}"
    );
    assert!(matches!(
        ct::verify_issued_by(&inter_c, &impostor),
        Err(CtError::BadSignature { .. })
    ));

    // Path length: a root with pathlen 0 cannot have an intermediate below it.
    let r0 = root(
        "root pathlen 0",
        &rcgen::PKCS_ECDSA_P256_SHA256,
        Constrained(0),
    );
    let i0key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let i0 = Ca {
        cert: issue(
            params("inter under pathlen 0", Some(Unconstrained)),
            &i0key,
            &r0,
        ),
        key: i0key,
    };
    let l0 = parse(&issue(params("leaf0", None), &lkey, &i0));
    let err =
        ct::verify_chain(&[l0.clone(), parse(&i0.cert)], &[parse(&r0.cert)]).expect_err("pathlen");
    assert!(err.to_string().contains("at most 0 intermediate"), "{err}");
    assert_eq!(
        ct::verify_chain(&[parse(&i0.cert)], &[parse(&r0.cert)]),
        Ok(0)
    );

    // A non-CA certificate used as an intermediate.
    let nkey = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let not_ca = Ca {
        cert: issue(params("not a CA", None), &nkey, &inter),
        key: nkey,
    };
    let under = parse(&issue(params("under a non-CA", None), &lkey, &not_ca));
    let err = ct::verify_chain(&[under, parse(&not_ca.cert), inter_c.clone()], &roots)
        .expect_err("non-CA");
    assert!(
        matches!(&err, CtError::ChainLink { index: 0, source, .. } if matches!(**source, CtError::NotCa(_))),
        "{err}"
    );

    // Ed25519 is not accepted, with a clear message.
    let ed = root("ed root", &rcgen::PKCS_ED25519, Unconstrained);
    let ed_leaf = parse(&issue(params("ed leaf", None), &lkey, &ed));
    let err = ct::verify_issued_by(&ed_leaf, &parse(&ed.cert)).expect_err("ed25519");
    assert!(
        matches!(err, CtError::UnsupportedSignatureAlgorithm(_)),
        "{err}"
    );
    assert!(err.to_string().contains("1.3.101.112"), "{err}");
}

/// A test-only RNG over the OS generator, for RSA key generation.
struct OsRng;

impl rsa::rand_core::RngCore for OsRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        getrandom::getrandom(dest).expect("getrandom");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for OsRng {}

#[test]
fn rsa_sha256_chain() {
    use rsa::pkcs8::EncodePrivateKey;
    let sk = rsa::RsaPrivateKey::new(&mut OsRng, 2048).expect("rsa keygen");
    let pkcs8 = sk.to_pkcs8_der().expect("pkcs8");
    let key = rcgen::KeyPair::try_from(pkcs8.as_bytes()).expect("rcgen RSA key");
    assert_eq!(key.algorithm(), &rcgen::PKCS_RSA_SHA256);
    let cert = params("rsa root", Some(rcgen::BasicConstraints::Unconstrained))
        .self_signed(&key)
        .expect("rsa root");
    let rsa_root = Ca { cert, key };
    let lkey = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let leaf = parse(&issue(params("leaf of rsa", None), &lkey, &rsa_root));
    assert_eq!(
        leaf.signature_algorithm.oid.to_string(),
        "1.2.840.113549.1.1.11"
    );
    assert_eq!(
        ct::verify_chain(std::slice::from_ref(&leaf), &[parse(&rsa_root.cert)]),
        Ok(0)
    );
    let mut bytes = der(&leaf);
    let n = bytes.len();
    bytes[n - 1] ^= 0x80;
    let bad = Certificate::from_der(&bytes).expect("der");
    assert!(matches!(
        ct::verify_issued_by(&bad, &parse(&rsa_root.cert)),
        Err(CtError::BadSignature { .. })
    ));
}

#[test]
fn precert_to_final_certificate_round_trip() {
    use p256::ecdsa::signature::Signer;
    let root = root(
        "ct root",
        &rcgen::PKCS_ECDSA_P384_SHA384,
        rcgen::BasicConstraints::Unconstrained,
    );
    let lkey = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let template = || {
        let mut p = params("fulcio leaf", None);
        p.custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[2, 5, 29, 99],
                vec![0x05, 0x00],
            ));
        p
    };
    let mut poison = rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 3],
        vec![0x05, 0x00],
    );
    poison.set_criticality(true);
    let mut pp = template();
    pp.custom_extensions.push(poison);
    let pre = parse(&issue(pp, &lkey, &root));
    assert_eq!(ct::is_precert(&pre), Ok(true));
    let root_c = parse(&root.cert);
    assert_eq!(
        ct::verify_chain(
            &[pre.clone(), root_c.clone()],
            std::slice::from_ref(&root_c)
        ),
        Ok(0)
    );

    // The log signs an SCT over the precert entry.
    let log_key = p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).expect("log key");
    let log_spki =
        p256::pkcs8::EncodePublicKey::to_public_key_der(log_key.verifying_key()).expect("spki");
    let entry = SignedEntry::Precert {
        issuer_key_hash: ct::issuer_key_hash(&root_c),
        tbs: ct::precert_tbs(&pre).expect("tbs"),
    };
    let ts = 1_700_000_000_000;
    let sig: p256::ecdsa::Signature = log_key.sign(&ct::sct_signed_data(ts, &entry, &[]));
    let sct = Sct {
        version: 0,
        log_id: ct::log_id(log_spki.as_bytes()),
        timestamp: ts,
        extensions: Vec::new(),
        signature: DigitallySigned::ecdsa_sha256(sig.to_der().as_bytes().to_vec()),
    };

    // The final certificate: same template, SCT list instead of the poison.
    let mut fp = template();
    fp.custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2],
            ct::sct_list_extension_value(std::slice::from_ref(&sct)).expect("ext value"),
        ));
    let fin = parse(&issue(fp, &lkey, &root));
    assert_eq!(ct::is_precert(&fin), Ok(false));
    assert_eq!(ct::embedded_scts(&fin), Ok(vec![sct.clone()]));
    let rebuilt = ct::final_cert_tbs_for_sct(&fin).expect("rebuilt TBS");
    assert_eq!(rebuilt, ct::precert_tbs(&pre).expect("tbs"));
    let verifier_entry = SignedEntry::Precert {
        issuer_key_hash: ct::issuer_key_hash(&root_c),
        tbs: rebuilt,
    };
    assert!(ecdsa_ok(
        log_key.verifying_key(),
        &sct.signature,
        &sct.signed_data(&verifier_entry)
    ));
    assert_eq!(
        ct::final_cert_tbs_for_sct(&pre),
        Err(CtError::UnexpectedPoison)
    );
    assert_eq!(ct::final_cert_tbs_for_sct(&root_c), Err(CtError::NoSctList));
}
