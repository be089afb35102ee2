//! sigstore-rs (the `sigstore` crate) as a third real Sigstore client in sigvault's end-to-end
//! test, beside sigstore-python and sigstore-js.
//!
//!   sigstore-rs-client sign --fulcio URL --rekor URL --token-file FILE --bundle OUT ARTIFACT
//!   sigstore-rs-client verify --trusted-root FILE --bundle FILE --identity SAN --issuer ISS ARTIFACT
//!   sigstore-rs-client rekord --rekor URL --rekor-key PEM ARTIFACT
//!
//! Signing talks to the given Fulcio and Rekor with sigstore-rs's own clients (see `sign` for why
//! not through `bundle::sign::SigningContext`, which sigstore-rs 0.14 only builds for public-good).
//! Verifying uses `sigstore::bundle::verify::Verifier::new` with the trusted_root.json loaded by
//! `SigstoreTrustRoot::from_trusted_root_json_unchecked` and an exact SAN + OIDC issuer policy.
//!
//! What sigstore-rs 0.14 checks when it verifies (bundle/verify/verifier.rs): the leaf chains to a
//! CA of the trusted root at its notBefore, its embedded SCT is signed by a CT log key of the
//! trusted root, SAN and issuer (OID 1.3.6.1.4.1.57264.1.1) match, the artifact signature, the
//! tlog body matches the bundle, and the log's integratedTime lies inside the certificate's
//! validity. It does not check the Rekor SET, the inclusion proof nor the checkpoint (TODOs at
//! verifier.rs:196-202), so the Rekor key of the trusted root is parsed but not used.

use std::{fs, path::PathBuf, process::ExitCode};

use anyhow::{anyhow, bail, Context, Result};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use clap::{Parser, Subcommand};
use p256::ecdsa::{signature::DigestSigner, DerSignature, Signature, SigningKey};
use sha2::{Digest, Sha256};
use sigstore::{
    bundle::{
        verify::{policy, Verifier},
        Bundle,
    },
    crypto::{CosignVerificationKey, SigningScheme},
    fulcio::{oauth::OauthTokenProvider, FulcioClient, TokenProvider},
    oauth::IdentityToken,
    rekor::{
        apis::{configuration::Configuration as RekorConfiguration, entries_api::create_log_entry},
        models::{hashedrekord, ProposedEntry},
    },
    trust::sigstore::SigstoreTrustRoot,
};
use sigstore_protobuf_specs::dev::sigstore::{
    bundle::v1::{bundle, verification_material, VerificationMaterial},
    common::v1::{
        HashAlgorithm, HashOutput, MessageSignature, X509Certificate, X509CertificateChain,
    },
    rekor::v1::TransparencyLogEntry,
};
use url::Url;
use x509_cert::{
    attr::{AttributeTypeAndValue, AttributeValue},
    builder::{Builder, RequestBuilder},
    der::{oid::db::rfc3280::EMAIL_ADDRESS, pem::LineEnding, Encode, EncodePem, Tag},
    ext::pkix::BasicConstraints,
    name::{Name, RdnSequence, RelativeDistinguishedName},
};

#[derive(Parser)]
#[command(
    name = "sigstore-rs-client",
    version,
    about = "Sign and verify blobs with sigstore-rs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Get a certificate from Fulcio, sign ARTIFACT, log it in Rekor, write a Sigstore bundle.
    Sign {
        /// Fulcio base URL, e.g. http://127.0.0.1:5555
        #[arg(long, value_name = "URL")]
        fulcio: String,
        /// Rekor base URL, e.g. http://127.0.0.1:3000
        #[arg(long, value_name = "URL")]
        rekor: String,
        /// File holding the OIDC identity token (audience "sigstore", with an email claim)
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// Where to write the bundle (JSON)
        #[arg(long, value_name = "OUT")]
        bundle: PathBuf,
        artifact: PathBuf,
    },
    /// Verify a Sigstore bundle for ARTIFACT against a trusted_root.json and an identity.
    Verify {
        /// trusted_root.json (Sigstore protobuf JSON): CAs, CT log keys, Rekor keys
        #[arg(long, value_name = "FILE")]
        trusted_root: PathBuf,
        #[arg(long, value_name = "FILE")]
        bundle: PathBuf,
        /// Exact certificate identity (SAN: email, URI or Sigstore other name)
        #[arg(long, value_name = "SAN")]
        identity: String,
        /// Exact OIDC issuer recorded in the certificate
        #[arg(long, value_name = "ISS")]
        issuer: String,
        artifact: PathBuf,
    },
    /// Log ARTIFACT in Rekor as a `rekord` 0.0.1 entry (format x509, an ephemeral P-256 key, the
    /// artifact sent whole), then check the answer with sigstore-rs: the body it decodes, and
    /// the inclusion proof and checkpoint against the Rekor public key.
    Rekord {
        /// Rekor base URL
        #[arg(long, value_name = "URL")]
        rekor: String,
        /// The Rekor public key (PEM) the checkpoint must verify with
        #[arg(long, value_name = "FILE")]
        rekor_key: PathBuf,
        artifact: PathBuf,
    },
}

fn load_trust_root(path: &PathBuf) -> Result<SigstoreTrustRoot> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SigstoreTrustRoot::from_trusted_root_json_unchecked(&data)
        .with_context(|| format!("parsing trusted root {}", path.display()))
}

/// A base URL that `Url::join` extends instead of replacing its last path segment.
fn base_url(s: &str) -> Result<Url> {
    let with_slash = if s.ends_with('/') {
        s.to_owned()
    } else {
        format!("{s}/")
    };
    Url::parse(&with_slash).with_context(|| format!("bad URL {s}"))
}

/// sigstore-rs 0.14's one-call signer, `bundle::sign::SigningContext`, cannot be pointed at our
/// services: `SigningContext::new(FulcioClient, RekorConfiguration, Keyring)` is public, but its
/// `Keyring` lives in `crypto::keyring`, a `pub(crate)` module with no re-export (crypto/mod.rs:137),
/// so outside the crate only `SigningContext::production()` (public-good Fulcio, Rekor and TUF
/// root) can be built (upstream issue sigstore/sigstore-rs#562, still open on main).
/// So this runs the steps of `SigningSession::materials` / `sign_digest` / `SigningArtifact::
/// to_bundle` (bundle/sign.rs:86-189, 341-372) with sigstore-rs's public clients: its Fulcio
/// client (`FulcioClient::request_cert_v2`), its Rekor client (`entries_api::create_log_entry`)
/// and its Rekor-entry-to-bundle conversion (`TransparencyLogEntry: TryFrom<LogEntry>`). The one
/// step left out is the SCT check before signing (sign.rs:139-144): `verify_sct` and `Keyring`
/// are crate-private too. `verify` checks the SCT against the trusted root.
async fn sign(
    fulcio: &str,
    rekor: &str,
    token_file: &PathBuf,
    bundle_out: &PathBuf,
    artifact: &PathBuf,
) -> Result<()> {
    let raw = fs::read_to_string(token_file)
        .with_context(|| format!("reading token file {}", token_file.display()))?;
    let token = IdentityToken::try_from(raw.trim()).context("parsing the identity token")?;
    let email = token.unverified_claims().email.clone();
    eprintln!("signing as {email}");

    // 1. An ephemeral P-256 key and a CSR for it (subject emailAddress, as sign.rs:90-114 does).
    let private_key = SigningKey::from(p256::SecretKey::random(&mut rand_core::OsRng));
    let subject: Name = RdnSequence::from(vec![RelativeDistinguishedName::try_from(vec![
        AttributeTypeAndValue {
            oid: EMAIL_ADDRESS,
            value: AttributeValue::new(Tag::Utf8String, email.as_bytes())?,
        },
    ])?]);
    let mut csr = RequestBuilder::new(subject, &private_key)?;
    csr.add_extension(&BasicConstraints {
        ca: false,
        path_len_constraint: None,
    })?;
    let csr = csr.build::<DerSignature>()?;

    // 2. Fulcio: sigstore-rs's client, our URL. The token provider only serves the v1
    //    request_cert; request_cert_v2 sends the IdentityToken it is given.
    let fulcio_client = FulcioClient::new(
        base_url(fulcio)?,
        TokenProvider::Oauth(OauthTokenProvider::default()),
    );
    let certs = fulcio_client
        .request_cert_v2(csr, &token)
        .await
        .context("getting a certificate from Fulcio")?;
    let cert_der = certs.cert.to_der()?;
    let cert_pem = certs.cert.to_pem(LineEnding::LF)?;

    // 3. Sign the artifact's SHA-256 digest.
    let mut hasher = Sha256::new();
    let mut file =
        fs::File::open(artifact).with_context(|| format!("opening {}", artifact.display()))?;
    std::io::copy(&mut file, &mut hasher)?;
    let digest = hasher.clone().finalize().to_vec();
    let signature: Signature = private_key.sign_digest(hasher);
    let signature = signature.to_der().as_bytes().to_vec();

    // 4. Rekor: a hashedrekord 0.0.1 entry, with sigstore-rs's client, our URL.
    let rekor_config = RekorConfiguration {
        base_path: rekor.trim_end_matches('/').to_owned(),
        ..Default::default()
    };
    let entry = ProposedEntry::Hashedrekord {
        api_version: "0.0.1".to_owned(),
        spec: hashedrekord::Spec {
            signature: hashedrekord::Signature {
                content: BASE64.encode(&signature),
                public_key: hashedrekord::PublicKey::new(BASE64.encode(&cert_pem)),
            },
            data: hashedrekord::Data {
                hash: hashedrekord::Hash {
                    algorithm: hashedrekord::AlgorithmKind::sha256,
                    value: hex::encode(&digest),
                },
            },
        },
    };
    let log_entry = create_log_entry(&rekor_config, entry)
        .await
        .map_err(|e| anyhow!("logging in Rekor: {e}"))?;
    let tlog_entry = TransparencyLogEntry::try_from(log_entry)
        .map_err(|()| anyhow!("Rekor returned a malformed LogEntry"))?;

    // 5. The bundle, as SigningArtifact::to_bundle builds it (v0.2, leaf certificate only).
    let bundle = Bundle {
        media_type: "application/vnd.dev.sigstore.bundle+json;version=0.2".to_owned(),
        verification_material: Some(VerificationMaterial {
            timestamp_verification_data: None,
            tlog_entries: vec![tlog_entry],
            content: Some(verification_material::Content::X509CertificateChain(
                X509CertificateChain {
                    certificates: vec![X509Certificate {
                        raw_bytes: cert_der,
                    }],
                },
            )),
        }),
        content: Some(bundle::Content::MessageSignature(MessageSignature {
            message_digest: Some(HashOutput {
                algorithm: HashAlgorithm::Sha2256.into(),
                digest,
            }),
            signature,
        })),
    };
    let json = serde_json::to_string_pretty(&bundle).context("serializing the bundle")?;
    fs::write(bundle_out, json + "\n")
        .with_context(|| format!("writing {}", bundle_out.display()))?;
    eprintln!("wrote {} ({})", bundle_out.display(), bundle.media_type);
    Ok(())
}

async fn verify(
    trusted_root: &PathBuf,
    bundle_path: &PathBuf,
    identity: &str,
    issuer: &str,
    artifact: &PathBuf,
) -> Result<()> {
    let trust = load_trust_root(trusted_root)?;
    let data =
        fs::read(bundle_path).with_context(|| format!("reading {}", bundle_path.display()))?;
    let bundle: Bundle = serde_json::from_slice(&data)
        .with_context(|| format!("parsing bundle {}", bundle_path.display()))?;

    // The Rekor configuration is unused by sigstore-rs 0.14's verifier (it never goes online).
    let verifier = Verifier::new(RekorConfiguration::default(), trust)
        .context("building a verifier from the trusted root")?;
    let id_policy = policy::Identity::new(identity, issuer);
    let file = tokio::fs::File::open(artifact)
        .await
        .with_context(|| format!("opening {}", artifact.display()))?;
    // offline = true: the bundle must carry its own log entry (sigstore-rs has no online lookup).
    verifier
        .verify(file, bundle, &id_policy, true)
        .await
        .map_err(|e| anyhow!("verification failed: {e}"))?;
    Ok(())
}

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, BIT STRING of 66
/// bytes); the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

async fn rekord(rekor: &str, rekor_key: &PathBuf, artifact: &PathBuf) -> Result<()> {
    let data = fs::read(artifact).with_context(|| format!("reading {}", artifact.display()))?;
    let key_pem =
        fs::read(rekor_key).with_context(|| format!("reading {}", rekor_key.display()))?;
    let rekor_key =
        CosignVerificationKey::from_pem(&key_pem, &SigningScheme::ECDSA_P256_SHA256_ASN1)
            .map_err(|e| anyhow!("parsing the Rekor key: {e}"))?;

    let private_key = SigningKey::from(p256::SecretKey::random(&mut rand_core::OsRng));
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(
        private_key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes(),
    );
    let public_pem = x509_cert::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &spki)
        .map_err(|e| anyhow!("PEM-encoding the key: {e}"))?;
    let signature: Signature = private_key.sign_digest(Sha256::new_with_prefix(&data));
    let digest = hex::encode(Sha256::digest(&data));

    let rekor_config = RekorConfiguration {
        base_path: rekor.trim_end_matches('/').to_owned(),
        ..Default::default()
    };
    let entry = ProposedEntry::Rekord {
        api_version: "0.0.1".to_owned(),
        spec: serde_json::json!({
            "signature": {
                "format": "x509",
                "content": BASE64.encode(signature.to_der().as_bytes()),
                "publicKey": {"content": BASE64.encode(&public_pem)},
            },
            "data": {"content": BASE64.encode(&data)},
        }),
    };
    let log_entry = create_log_entry(&rekor_config, entry)
        .await
        .map_err(|e| anyhow!("logging in Rekor: {e}"))?;

    // What sigstore-rs decoded from the body: a rekord entry of this artifact's digest.
    let body = serde_json::to_value(&log_entry.body)?;
    if body["kind"] != "rekord" || body["spec"]["data"]["hash"]["value"] != digest.as_str() {
        bail!("the logged body is not this artifact's rekord entry: {body}");
    }
    if body["spec"]["data"].get("content").is_some() {
        bail!("the logged body keeps the artifact itself: {body}");
    }
    // sigstore-rs re-encodes the body canonically, hashes it as the leaf, and checks the proof
    // to the root and the checkpoint's signature.
    log_entry
        .verify_inclusion(&rekor_key)
        .map_err(|e| anyhow!("inclusion proof or checkpoint does not verify: {e}"))?;
    println!(
        "OK: rekord entry {} at index {}: inclusion proof and checkpoint verify",
        log_entry.uuid.as_deref().unwrap_or("(no UUID)"),
        log_entry.log_index
    );
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Sign {
            fulcio,
            rekor,
            token_file,
            bundle,
            artifact,
        } => sign(&fulcio, &rekor, &token_file, &bundle, &artifact).await,
        Command::Verify {
            trusted_root,
            bundle,
            identity,
            issuer,
            artifact,
        } => {
            if identity.is_empty() || issuer.is_empty() {
                bail!("--identity and --issuer must not be empty");
            }
            verify(&trusted_root, &bundle, &identity, &issuer, &artifact).await?;
            println!(
                "OK: {} (identity {identity}, issuer {issuer})",
                artifact.display()
            );
            Ok(())
        }
        Command::Rekord {
            rekor,
            rekor_key,
            artifact,
        } => rekord(&rekor, &rekor_key, &artifact).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sigstore-rs-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}
