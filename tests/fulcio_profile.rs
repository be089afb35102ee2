//! `sigvault::pki::fulcio` and `sigvault::pki::pop` checked with code we did not write.
//!
//! * Leaf profile: certificates issued from a software P-256 CA (root → issuing intermediate →
//!   leaf) are inspected and chain-verified with the `openssl` command line, and, when Python's
//!   `cryptography` package is importable, parsed by pyca, which also rebuilds the precertificate
//!   TBS from the final certificate and verifies the embedded SCT the way sigstore-python does.
//! * Proof of possession: keys, signatures and CSRs are made by `openssl` (genpkey, dgst,
//!   pkeyutl, req).
//!
//! Without an `openssl` binary the tests print a notice and pass; without pyca the Python part
//! is skipped the same way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use der::Encode;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey;
use sigvault::pki::ct::{self, DigitallySigned, Sct, SignedEntry};
use sigvault::pki::fulcio::{self, OID_OTHERNAME, San, SigstoreExtension};
use sigvault::pki::pop::{self, PopError};
use sigvault::pki::{self as pki, CaKind};
use sigvault::signer::{SignError, SignatureAlgorithm, Signer};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A software P-256 signer, for tests only (production signs through the HSM).
struct SoftP256 {
    key: p256::ecdsa::SigningKey,
    spki: Vec<u8>,
}

impl SoftP256 {
    fn random() -> Self {
        let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .expect("spki")
            .into_vec();
        Self { key, spki }
    }
}

impl Signer for SoftP256 {
    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::EcdsaP256Sha256
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let sig: p256::ecdsa::Signature = self.key.sign(message);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

fn have_openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: no usable `openssl` binary on PATH");
    }
    ok
}

fn have_pyca() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED (python part): python3 with `cryptography` not available");
    }
    ok
}

/// Run a command that must succeed; returns stdout.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn openssl(args: &[&str]) -> String {
    String::from_utf8(run(Command::new("openssl").args(args))).expect("utf8")
}

fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write");
    p
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn alg(signer: &dyn Signer) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: signer.algorithm().x509_oid(),
        parameters: None,
    }
}

struct Ca {
    root: Certificate,
    issuing_key: SoftP256,
    issuing: Certificate,
    ct_key: SoftP256,
}

impl Ca {
    fn new() -> Self {
        let root_key = SoftP256::random();
        let v = pki::validity_from_now(Duration::from_secs(3600)).expect("validity");
        let root = pki::build_ca_certificate(
            CaKind::Root,
            pki::parse_name("CN=fulcio-test root,O=sigvault").expect("name"),
            root_key.public_key_der(),
            v,
            None,
            &root_key,
        )
        .expect("root");
        let issuing_key = SoftP256::random();
        let issuing = pki::build_ca_certificate(
            CaKind::Issuing,
            pki::parse_name("CN=fulcio-test issuing,O=sigvault").expect("name"),
            issuing_key.public_key_der(),
            v,
            Some(&root),
            &root_key,
        )
        .expect("issuing");
        Self {
            root,
            issuing_key,
            issuing,
            ct_key: SoftP256::random(),
        }
    }

    /// Precert, a genuine SCT over it from the test CT key, and the final certificate.
    fn issue(
        &self,
        leaf_spki: &[u8],
        san: &San,
        exts: &[SigstoreExtension],
    ) -> (Certificate, Certificate) {
        let a = alg(&self.issuing_key);
        let tbs = fulcio::leaf_tbs(
            &self.issuing,
            leaf_spki,
            san,
            exts,
            fulcio::validity_for(SystemTime::now()),
            pki::random_serial().expect("serial"),
            a.clone(),
        )
        .expect("leaf tbs");
        let pre = pki::sign_tbs(fulcio::precert(&tbs), a.clone(), &self.issuing_key).expect("pre");
        let entry = SignedEntry::Precert {
            issuer_key_hash: ct::issuer_key_hash(&self.issuing),
            tbs: ct::precert_tbs(&pre).expect("precert tbs"),
        };
        let timestamp = 1_750_000_000_123;
        let signed = ct::sct_signed_data(timestamp, &entry, &[]);
        let sct = Sct {
            version: 0,
            log_id: ct::log_id(self.ct_key.public_key_der()),
            timestamp,
            extensions: vec![],
            signature: DigitallySigned::ecdsa_sha256(self.ct_key.sign(&signed).expect("sct")),
        };
        let fin = pki::sign_tbs(
            fulcio::with_scts(&pre.tbs_certificate, &[sct]).expect("with scts"),
            a,
            &self.issuing_key,
        )
        .expect("final");
        (pre, fin)
    }
}

fn issuer_exts(issuer: &str) -> Vec<SigstoreExtension> {
    vec![
        SigstoreExtension::new(1, issuer),
        SigstoreExtension::new(8, issuer),
    ]
}

const GH_ISSUER: &str = "https://token.actions.githubusercontent.com";
const GH_SAN: &str =
    "https://github.com/octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main";

fn github_exts() -> Vec<SigstoreExtension> {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let mut v = vec![
        SigstoreExtension::new(1, GH_ISSUER),
        SigstoreExtension::new(2, "push"),
        SigstoreExtension::new(3, sha),
        SigstoreExtension::new(4, "Release"),
        SigstoreExtension::new(5, "octo-org/octo-repo"),
        SigstoreExtension::new(6, "refs/heads/main"),
        SigstoreExtension::new(8, GH_ISSUER),
    ];
    let rest: [(u32, &str); 15] = [
        (9, GH_SAN),
        (10, sha),
        (11, "github-hosted"),
        (12, "https://github.com/octo-org/octo-repo"),
        (13, sha),
        (14, "refs/heads/main"),
        (15, "123456"),
        (16, "https://github.com/octo-org"),
        (17, "654321"),
        (18, GH_SAN),
        (19, sha),
        (20, "push"),
        (
            21,
            "https://github.com/octo-org/octo-repo/actions/runs/42/attempts/1",
        ),
        (22, "public"),
        (24, "repo:octo-org/octo-repo:ref:refs/heads/main"),
    ];
    v.extend(rest.iter().map(|(a, s)| SigstoreExtension::new(*a, *s)));
    v
}

/// Text of the extension block that follows `header` in `openssl x509 -text` output.
fn ext_block<'a>(text: &'a str, header: &str) -> Option<(&'a str, String)> {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim_start().starts_with(header) {
            let value = lines.next().unwrap_or("").trim().to_string();
            return Some((l.trim(), value));
        }
    }
    None
}

/// Hex of a key identifier as openssl prints it, without an optional `keyid:` prefix.
fn keyid(v: &str) -> String {
    v.trim_start_matches("keyid:").trim().to_uppercase()
}

/// (offset of the OCTET STRING header, header length, content length) of the extnValue that
/// follows `oid` in `openssl asn1parse` output.
fn extn_value_location(asn1: &str, oid: &str) -> (usize, usize, usize) {
    let mut lines = asn1.lines();
    while let Some(l) = lines.next() {
        if l.contains("OBJECT") && l.trim_end().ends_with(&format!(":{oid}")) {
            let mut next = lines.next().expect("line after OID");
            if next.contains("BOOLEAN") {
                next = lines.next().expect("line after critical");
            }
            assert!(next.contains("OCTET STRING"), "{next}");
            let off: usize = next
                .split(':')
                .next()
                .expect("off")
                .trim()
                .parse()
                .expect("off");
            let field = |name: &str| -> usize {
                let i = next.find(name).expect(name) + name.len();
                next[i..]
                    .trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .expect("num")
                    .parse()
                    .expect("num")
            };
            return (off, field("hl="), field(" l="));
        }
    }
    panic!("OID {oid} not found in asn1parse output");
}

/// The checks common to every leaf; returns the `openssl x509 -text` output of the final cert.
fn check_leaf_with_openssl(dir: &Path, ca: &Ca, pre: &Certificate, fin: &Certificate) -> String {
    let root = write(dir, "root.pem", pki::cert_pem(&ca.root).expect("pem"));
    let inter = write(dir, "inter.pem", pki::cert_pem(&ca.issuing).expect("pem"));
    let leaf = write(dir, "leaf.pem", pki::cert_pem(fin).expect("pem"));
    let pre_p = write(dir, "pre.pem", pki::cert_pem(pre).expect("pem"));

    // The chain verifies (root trusted, intermediate untrusted).
    let out = openssl(&[
        "verify",
        "-CAfile",
        s(&root),
        "-untrusted",
        s(&inter),
        s(&leaf),
    ]);
    assert!(out.contains(": OK"), "{out}");

    let text = openssl(&["x509", "-in", s(&leaf), "-noout", "-text"]);
    let subject = openssl(&["x509", "-in", s(&leaf), "-noout", "-subject"]);
    assert_eq!(subject.trim(), "subject=", "empty subject expected");
    assert!(text.contains("Version: 3 (0x2)"), "{text}");

    let (h, v) = ext_block(&text, "X509v3 Key Usage").expect("KU");
    assert!(h.ends_with("critical"), "{h}");
    assert_eq!(v, "Digital Signature");
    let (h, v) = ext_block(&text, "X509v3 Extended Key Usage").expect("EKU");
    assert!(!h.ends_with("critical"), "{h}");
    assert_eq!(v, "Code Signing");
    let (h, _) = ext_block(&text, "X509v3 Subject Alternative Name").expect("SAN");
    assert!(h.ends_with("critical"), "SAN must be critical: {h}");
    let (_, ski) = ext_block(&text, "X509v3 Subject Key Identifier").expect("SKI present");
    assert!(!ski.is_empty());
    let (_, aki) = ext_block(&text, "X509v3 Authority Key Identifier").expect("AKI");
    let inter_text = openssl(&["x509", "-in", s(&inter), "-noout", "-text"]);
    let (_, inter_ski) = ext_block(&inter_text, "X509v3 Subject Key Identifier").expect("CA SKI");
    assert_eq!(
        keyid(&aki),
        keyid(&inter_ski),
        "AKI must equal the issuer's SKI"
    );
    assert!(!text.contains("Basic Constraints"), "{text}");
    assert!(!text.contains("Poison"), "{text}");
    assert!(
        text.contains("CT Precertificate SCTs"),
        "SCT list expected: {text}"
    );

    // Issuer of the leaf = subject of the issuing CA.
    let issuer = openssl(&["x509", "-in", s(&leaf), "-noout", "-issuer"]);
    let inter_subject = openssl(&["x509", "-in", s(&inter), "-noout", "-subject"]);
    assert_eq!(
        issuer.trim().trim_start_matches("issuer="),
        inter_subject.trim().trim_start_matches("subject=")
    );

    // The precertificate carries a critical poison, and nothing else differs but that extension.
    let pre_text = openssl(&["x509", "-in", s(&pre_p), "-noout", "-text"]);
    let (h, v) = ext_block(&pre_text, "CT Precertificate Poison").expect("poison");
    assert!(h.ends_with("critical"), "{h}");
    assert_eq!(v, "NULL");
    assert!(!pre_text.contains("CT Precertificate SCTs"));
    assert_eq!(
        ct::precert_tbs(pre).expect("precert tbs"),
        ct::final_cert_tbs_for_sct(fin).expect("final tbs")
    );
    assert_eq!(
        pre.tbs_certificate.serial_number,
        fin.tbs_certificate.serial_number
    );

    // Validity: exactly 10 minutes.
    let nb = fin.tbs_certificate.validity.not_before.to_unix_duration();
    let na = fin.tbs_certificate.validity.not_after.to_unix_duration();
    assert_eq!(na - nb, Duration::from_secs(600));
    text
}

/// Checks of the raw Sigstore extension encodings, located with `openssl asn1parse`.
fn check_sigstore_exts_with_openssl(dir: &Path, fin: &Certificate, exts: &[SigstoreExtension]) {
    let der = fin.to_der().expect("der");
    let leaf_der = write(dir, "leaf.der", &der);
    let asn1 = openssl(&["asn1parse", "-inform", "DER", "-in", s(&leaf_der)]);
    for e in exts {
        let oid = format!("1.3.6.1.4.1.57264.1.{}", e.oid_arc);
        let (off, hl, len) = extn_value_location(&asn1, &oid);
        let content = &der[off + hl..off + hl + len];
        if e.oid_arc <= 6 {
            assert_eq!(
                content,
                e.value.as_bytes(),
                "{oid}: raw UTF-8 bytes expected"
            );
        } else {
            let inner = openssl(&[
                "asn1parse",
                "-inform",
                "DER",
                "-in",
                s(&leaf_der),
                "-strparse",
                &off.to_string(),
            ]);
            let first = inner.lines().next().expect("line");
            assert!(first.contains("UTF8STRING"), "{oid}: {first}");
            assert!(
                first.trim_end().ends_with(&format!(":{}", e.value)),
                "{oid}: {first}"
            );
        }
    }
    // Arc 7 never appears as an extension.
    assert!(!asn1.contains(":1.3.6.1.4.1.57264.1.7\n"));
}

/// pyca checks: SAN value and criticality, and the embedded SCT verified over the TBS that pyca
/// rebuilds from the final certificate (as sigstore-python does).
fn check_with_pyca(dir: &Path, ca: &Ca, fin: &Certificate, san: &San) {
    if !have_pyca() {
        return;
    }
    let leaf = write(dir, "leaf-py.pem", pki::cert_pem(fin).expect("pem"));
    let inter = write(
        dir,
        "inter-py.pem",
        pki::cert_pem(&ca.issuing).expect("pem"),
    );
    let ctkey = write(
        dir,
        "ct.pem",
        pki::spki_pem(ca.ct_key.public_key_der()).expect("pem"),
    );
    let (kind, value) = match san {
        San::Email(v) => ("email", v.clone()),
        San::Uri(v) => ("uri", v.clone()),
        San::OtherName { value, .. } => ("othername", value.clone()),
    };
    let script = r#"
import sys, hashlib, struct
from cryptography import x509
from cryptography.x509.oid import ExtensionOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
leaf_p, inter_p, ct_p, kind, value = sys.argv[1:6]
leaf = x509.load_pem_x509_certificate(open(leaf_p, 'rb').read())
inter = x509.load_pem_x509_certificate(open(inter_p, 'rb').read())
ct_key = serialization.load_pem_public_key(open(ct_p, 'rb').read())
san = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
assert san.critical, 'SAN not critical'
names = list(san.value)
assert len(names) == 1, names
n = names[0]
if kind == 'email':
    assert isinstance(n, x509.RFC822Name) and n.value == value, n
elif kind == 'uri':
    assert isinstance(n, x509.UniformResourceIdentifier) and n.value == value, n
else:
    assert isinstance(n, x509.OtherName), n
    assert n.type_id.dotted_string == '1.3.6.1.4.1.57264.1.7', n
    assert n.value == b'\x0c' + bytes([len(value.encode())]) + value.encode(), n.value
assert leaf.subject.rfc4514_string() == '', leaf.subject
assert leaf.version == x509.Version.v3
ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
assert ku.critical and ku.value.digital_signature
eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
assert x509.oid.ExtendedKeyUsageOID.CODE_SIGNING in list(eku.value)
aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
iski = inter.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
assert aki.key_identifier == iski.digest
try:
    leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    raise AssertionError('BasicConstraints present')
except x509.ExtensionNotFound:
    pass
iss = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier('1.3.6.1.4.1.57264.1.1'))
scts = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
assert len(scts) == 1
sct = list(scts)[0]
issuer_key_hash = hashlib.sha256(inter.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
tbs = leaf.tbs_precertificate_bytes
ts = int(sct.timestamp.replace(tzinfo=__import__('datetime').timezone.utc).timestamp() * 1000)
signed = (b'\x00\x00' + struct.pack('>Q', ts) + b'\x00\x01' + issuer_key_hash
          + len(tbs).to_bytes(3, 'big') + tbs + struct.pack('>H', len(sct.extension_bytes))
          + sct.extension_bytes)
ct_key.verify(sct.signature, signed, ec.ECDSA(hashes.SHA256()))
print('pyca OK', iss.value.value.decode())
"#;
    let out = run(Command::new("python3").args([
        "-c",
        script,
        s(&leaf),
        s(&inter),
        s(&ctkey),
        kind,
        &value,
    ]));
    let out = String::from_utf8(out).expect("utf8");
    assert!(out.starts_with("pyca OK"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Leaf profile
// ---------------------------------------------------------------------------------------------

#[test]
fn email_leaf_profile_checked_by_openssl_and_pyca() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new();
    let leaf_key = SoftP256::random();
    let issuer = "https://dex.example/auth";
    let mut exts = issuer_exts(issuer);
    exts.push(SigstoreExtension::new(24, "alice@example.com"));
    let san = San::Email("alice@example.com".into());
    let (pre, fin) = ca.issue(leaf_key.public_key_der(), &san, &exts);
    let text = check_leaf_with_openssl(dir.path(), &ca, &pre, &fin);
    let (_, v) = ext_block(&text, "X509v3 Subject Alternative Name").expect("SAN");
    assert_eq!(v, "email:alice@example.com");
    check_sigstore_exts_with_openssl(dir.path(), &fin, &exts);
    check_with_pyca(dir.path(), &ca, &fin, &san);
}

#[test]
fn github_leaf_profile_checked_by_openssl_and_pyca() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new();
    let leaf_key = SoftP256::random();
    let exts = github_exts();
    let san = San::Uri(GH_SAN.into());
    let (pre, fin) = ca.issue(leaf_key.public_key_der(), &san, &exts);
    let text = check_leaf_with_openssl(dir.path(), &ca, &pre, &fin);
    let (_, v) = ext_block(&text, "X509v3 Subject Alternative Name").expect("SAN");
    assert_eq!(v, format!("URI:{GH_SAN}"));
    check_sigstore_exts_with_openssl(dir.path(), &fin, &exts);
    check_with_pyca(dir.path(), &ca, &fin, &san);

    // The Sigstore extensions follow the SAN in the given order, poison / SCT list last.
    let ids: Vec<String> = fin
        .tbs_certificate
        .extensions
        .as_ref()
        .expect("exts")
        .iter()
        .map(|e| e.extn_id.to_string())
        .collect();
    let mut expected: Vec<String> = [
        "2.5.29.15",
        "2.5.29.37",
        "2.5.29.14",
        "2.5.29.35",
        "2.5.29.17",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.extend(
        exts.iter()
            .map(|e| format!("1.3.6.1.4.1.57264.1.{}", e.oid_arc)),
    );
    expected.push(ct::SCT_LIST.to_string());
    assert_eq!(ids, expected);
}

#[test]
fn username_othername_leaf_checked_by_openssl_and_pyca() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let ca = Ca::new();
    let leaf_key = SoftP256::random();
    let exts = issuer_exts("https://login.example");
    let san = San::OtherName {
        type_id: OID_OTHERNAME,
        value: "alice!example.com".into(),
    };
    let (pre, fin) = ca.issue(leaf_key.public_key_der(), &san, &exts);
    check_leaf_with_openssl(dir.path(), &ca, &pre, &fin);
    check_sigstore_exts_with_openssl(dir.path(), &fin, &exts);
    check_with_pyca(dir.path(), &ca, &fin, &san);
}

#[test]
fn leaf_key_from_openssl_p384_is_embedded_verbatim() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let k = Key::generate(
        dir.path(),
        "p384",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    );
    let key = pop::parse_public_key(&k.pub_pem()).expect("parse");
    let spki = key.spki_der();
    assert_eq!(spki, k.pub_der(), "canonical SPKI = openssl's DER");
    let ca = Ca::new();
    let (pre, fin) = ca.issue(
        &spki,
        &San::Email("a@b.example".into()),
        &issuer_exts("https://i"),
    );
    check_leaf_with_openssl(dir.path(), &ca, &pre, &fin);
    assert_eq!(
        fin.tbs_certificate
            .subject_public_key_info
            .to_der()
            .expect("der"),
        spki
    );
}

// ---------------------------------------------------------------------------------------------
// Proof of possession
// ---------------------------------------------------------------------------------------------

/// A private key made by openssl.
struct Key {
    dir: PathBuf,
    name: String,
    path: PathBuf,
}

impl Key {
    fn generate(dir: &Path, name: &str, genpkey_args: &[&str]) -> Self {
        let path = dir.join(format!("{name}.key"));
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genpkey_args);
        args.extend_from_slice(&["-out", s(&path)]);
        openssl(&args);
        Self {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            path,
        }
    }

    fn pub_pem(&self) -> Vec<u8> {
        run(Command::new("openssl").args(["pkey", "-in", s(&self.path), "-pubout"]))
    }

    fn pub_der(&self) -> Vec<u8> {
        run(Command::new("openssl").args([
            "pkey",
            "-in",
            s(&self.path),
            "-pubout",
            "-outform",
            "DER",
        ]))
    }

    /// `openssl dgst -<digest> -sign` (DER ECDSA / PKCS#1 v1.5 RSA).
    fn sign_dgst(&self, digest: &str, msg: &[u8]) -> Vec<u8> {
        let m = write(&self.dir, &format!("{}.msg", self.name), msg);
        run(Command::new("openssl").args([
            "dgst",
            &format!("-{digest}"),
            "-sign",
            s(&self.path),
            s(&m),
        ]))
    }

    /// `openssl pkeyutl -sign -rawin` (Ed25519).
    fn sign_raw(&self, msg: &[u8]) -> Vec<u8> {
        let m = write(&self.dir, &format!("{}.msg", self.name), msg);
        run(Command::new("openssl").args([
            "pkeyutl",
            "-sign",
            "-rawin",
            "-inkey",
            s(&self.path),
            "-in",
            s(&m),
        ]))
    }

    /// A PEM CSR signed by openssl; `digest` None lets openssl choose (Ed25519).
    fn csr(&self, digest: Option<&str>) -> Vec<u8> {
        let mut args = vec![
            "req".to_string(),
            "-new".into(),
            "-key".into(),
            s(&self.path).into(),
            "-subj".into(),
            "/CN=ignored".into(),
        ];
        if let Some(d) = digest {
            args.push(format!("-{d}"));
        }
        run(Command::new("openssl").args(&args))
    }
}

fn der_of_pem(pem: &[u8]) -> Vec<u8> {
    der::pem::decode_vec(pem).expect("pem").1
}

#[test]
fn pop_accepts_every_allowed_key_type() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let msg = b"alice@example.com";
    let cases: Vec<(Key, &str, Option<&str>)> = vec![
        (
            Key::generate(
                d,
                "p256",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            ),
            "ECDSA P-256",
            Some("sha256"),
        ),
        (
            Key::generate(
                d,
                "p384",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            ),
            "ECDSA P-384",
            Some("sha384"),
        ),
        (
            Key::generate(
                d,
                "p521",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            ),
            "ECDSA P-521",
            Some("sha512"),
        ),
        (
            Key::generate(
                d,
                "rsa2048",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            ),
            "RSA-2048",
            Some("sha256"),
        ),
        (
            Key::generate(
                d,
                "rsa3072",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
            ),
            "RSA-3072",
            Some("sha256"),
        ),
        (
            Key::generate(
                d,
                "rsa4096",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
            ),
            "RSA-4096",
            Some("sha256"),
        ),
        (
            Key::generate(d, "ed25519", &["-algorithm", "ED25519"]),
            "Ed25519",
            None,
        ),
    ];
    for (k, label, digest) in &cases {
        let from_pem =
            pop::parse_public_key(&k.pub_pem()).unwrap_or_else(|e| panic!("{label}: {e}"));
        let from_der =
            pop::parse_public_key(&k.pub_der()).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(from_pem, from_der, "{label}");
        assert_eq!(from_der.to_string(), *label);
        assert_eq!(from_der.spki_der(), k.pub_der(), "{label}: canonical SPKI");

        let sig = match digest {
            Some(dg) => k.sign_dgst(dg, msg),
            None => k.sign_raw(msg),
        };
        pop::verify_pop(&from_der, msg, &sig).unwrap_or_else(|e| panic!("{label}: {e}"));
        // A signature over another subject is refused.
        let err = pop::verify_pop(&from_der, b"mallory@example.com", &sig).expect_err(label);
        assert!(matches!(err, PopError::BadSignature(_)), "{label}: {err}");
        assert!(err.to_string().contains("could not be verified"), "{err}");

        // The CSR made by openssl verifies, PEM and DER, and yields the same key.
        let csr = k.csr(*digest);
        let key = pop::verify_csr(&csr).unwrap_or_else(|e| panic!("{label} CSR: {e}"));
        assert_eq!(key, from_der, "{label}");
        let csr_der = der_of_pem(&csr);
        assert_eq!(pop::verify_csr(&csr_der).expect("der csr"), from_der);

        // A flipped byte in the CSR's signature is refused.
        let mut tampered = csr_der.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        let err = pop::verify_csr(&tampered).expect_err("tampered");
        assert!(
            matches!(err, PopError::BadCsrSignature(_)),
            "{label}: {err}"
        );
        assert!(
            err.to_string()
                .starts_with("invalid certificate signing request signature"),
            "{err}"
        );
        // A flipped byte in the signed part (inside the public key) is refused too.
        let mut tampered = csr_der.clone();
        let mid = tampered.len() / 2;
        tampered[mid] ^= 0x01;
        assert!(pop::verify_csr(&tampered).is_err(), "{label}");
    }
}

#[test]
fn pop_ecdsa_with_wrong_hash_is_refused() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let k = Key::generate(
        dir.path(),
        "p256",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let key = pop::parse_public_key(&k.pub_pem()).expect("key");
    // A PoP signature made with SHA-384 over a P-256 key does not verify (SHA-256 is required).
    let sig = k.sign_dgst("sha384", b"sub");
    assert!(matches!(
        pop::verify_pop(&key, b"sub", &sig),
        Err(PopError::BadSignature(_))
    ));
    // A CSR of a P-256 key signed with ecdsa-with-SHA384 is a disallowed pair.
    let err = pop::verify_csr(&k.csr(Some("sha384"))).expect_err("disallowed pair");
    assert!(matches!(err, PopError::AlgorithmNotPermitted(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("ecdsa-with-SHA384")
            && msg.contains("ECDSA P-256")
            && msg.contains("ecdsa-with-SHA256"),
        "{msg}"
    );
    // And RSA with SHA-512 likewise.
    let r = Key::generate(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let err = pop::verify_csr(&r.csr(Some("sha512"))).expect_err("disallowed pair");
    assert!(matches!(err, PopError::AlgorithmNotPermitted(_)), "{err}");
}

#[test]
fn pop_weak_and_unsupported_keys_are_refused() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();

    // RSA-1024: too small, for the key route and the CSR route.
    let k = Key::generate(
        d,
        "rsa1024",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    );
    let err = pop::parse_public_key(&k.pub_pem()).expect_err("rsa1024");
    assert!(matches!(err, PopError::WeakKey(_)), "{err}");
    assert!(err.to_string().contains("1024 bits"), "{err}");
    let err = pop::verify_csr(&k.csr(Some("sha256"))).expect_err("rsa1024 csr");
    assert!(matches!(err, PopError::WeakKey(_)), "{err}");

    // RSA with e = 3.
    let k = Key::generate(
        d,
        "rsa-e3",
        &[
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-pkeyopt",
            "rsa_keygen_pubexp:3",
        ],
    );
    let err = pop::parse_public_key(&k.pub_der()).expect_err("e=3");
    assert!(err.to_string().contains("exponent 3"), "{err}");

    // RSA-2056: an accepted key size (multiple of 8) without a permitted signing algorithm.
    let k = Key::generate(
        d,
        "rsa2056",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2056"],
    );
    let key = pop::parse_public_key(&k.pub_pem()).expect("2056 parses");
    let sig = k.sign_dgst("sha256", b"sub");
    let err = pop::verify_pop(&key, b"sub", &sig).expect_err("2056 not permitted");
    assert!(matches!(err, PopError::AlgorithmNotPermitted(_)), "{err}");

    // DSA: unsupported key type, with a clear message.
    let params = d.join("dsa.params");
    openssl(&[
        "genpkey",
        "-genparam",
        "-algorithm",
        "DSA",
        "-pkeyopt",
        "dsa_paramgen_bits:2048",
        "-out",
        s(&params),
    ]);
    let k = Key::generate(d, "dsa", &["-paramfile", s(&params)]);
    let err = pop::parse_public_key(&k.pub_pem()).expect_err("dsa");
    assert!(matches!(err, PopError::UnsupportedKey(_)), "{err}");
    assert!(
        err.to_string().starts_with("unsupported key type DSA"),
        "{err}"
    );
    let err = pop::verify_csr(&k.csr(Some("sha256"))).expect_err("dsa csr");
    assert!(
        err.to_string().starts_with("unsupported key type DSA"),
        "{err}"
    );

    // Ed448 and X25519 are not supported either; secp256k1 is an unsupported curve.
    let k = Key::generate(d, "ed448", &["-algorithm", "ED448"]);
    let err = pop::parse_public_key(&k.pub_pem()).expect_err("ed448");
    assert!(
        err.to_string().starts_with("unsupported key type Ed448"),
        "{err}"
    );
    let k = Key::generate(d, "x25519", &["-algorithm", "X25519"]);
    let err = pop::parse_public_key(&k.pub_der()).expect_err("x25519");
    assert!(
        err.to_string().starts_with("unsupported key type X25519"),
        "{err}"
    );
    let k = Key::generate(
        d,
        "k256",
        &[
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:secp256k1",
        ],
    );
    let err = pop::parse_public_key(&k.pub_pem()).expect_err("secp256k1");
    assert!(matches!(err, PopError::UnsupportedKey(_)), "{err}");
    assert!(err.to_string().contains("1.3.132.0.10"), "{err}");
}

#[test]
fn sigstore_python_style_csr_is_accepted() {
    // sigstore-python sends a P-256 CSR with an empty subject and a critical
    // BasicConstraints(CA:false) extension request, signed with ECDSA-SHA256 (what sigstore-python sends).
    if !have_pyca() {
        return;
    }
    let script = r#"
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
k = ec.generate_private_key(ec.SECP256R1())
csr = (x509.CertificateSigningRequestBuilder()
       .subject_name(x509.Name([]))
       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
       .sign(k, hashes.SHA256()))
import sys
sys.stdout.write(csr.public_bytes(serialization.Encoding.PEM).decode())
sys.stdout.write('\n---\n')
sys.stdout.write(k.public_key().public_bytes(serialization.Encoding.PEM,
    serialization.PublicFormat.SubjectPublicKeyInfo).decode())
"#;
    let out = String::from_utf8(run(Command::new("python3").args(["-c", script]))).expect("utf8");
    let (csr, key_pem) = out.split_once("\n---\n").expect("two parts");
    let key = pop::verify_csr(csr.as_bytes()).expect("sigstore-python CSR");
    assert_eq!(key, pop::parse_public_key(key_pem.as_bytes()).expect("key"));
    assert_eq!(key.to_string(), "ECDSA P-256");
}
