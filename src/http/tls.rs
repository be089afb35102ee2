//! rustls configuration for both ends, always with the ring provider chosen explicitly.
//!
//! Choosing the provider per config (instead of relying on a process-wide default) keeps us
//! independent of whichever other crate in the process might install a different one.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::{HttpError, TlsFiles};

/// A PEM file that could not be used; converted into the caller's error type.
#[derive(Debug)]
pub(crate) struct PemError {
    pub what: &'static str,
    pub path: PathBuf,
    pub reason: String,
}

impl From<PemError> for HttpError {
    fn from(e: PemError) -> Self {
        HttpError::TlsFile {
            what: e.what,
            path: e.path,
            reason: e.reason,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn open(path: &Path, what: &'static str) -> Result<BufReader<File>, PemError> {
    File::open(path).map(BufReader::new).map_err(|e| PemError {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// All certificates in a PEM file; an empty file is an error.
pub(crate) fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let fail = |reason: String| PemError {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = rustls_pemfile::certs(&mut open(path, what)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn load_key(
    path: &Path,
    what: &'static str,
) -> Result<PrivateKeyDer<'static>, PemError> {
    rustls_pemfile::private_key(&mut open(path, what)?)
        .map_err(|e| format!("not valid PEM: {e}"))
        .and_then(|k| k.ok_or_else(|| "no PRIVATE KEY block found".to_owned()))
        .map_err(|reason| PemError {
            what,
            path: path.to_owned(),
            reason,
        })
}

/// A root store holding every certificate of a PEM bundle.
pub(crate) fn load_roots(path: &Path, what: &'static str) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, what)? {
        roots.add(cert).map_err(|e| PemError {
            what,
            path: path.to_owned(),
            reason: format!("unusable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// Server config: TLS 1.2 + 1.3, ALPN `http/1.1`, client certificates required iff `client_ca`.
pub(crate) fn server_config(files: &TlsFiles) -> Result<ServerConfig, HttpError> {
    let chain = load_certs(&files.cert, "the server certificate chain")?;
    let key = load_key(&files.key, "the server private key")?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| HttpError::TlsConfig(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = load_roots(ca, "the client CA bundle")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| HttpError::TlsFile {
                    what: "the client CA bundle",
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| HttpError::TlsFile {
            what: "the server private key",
            path: files.key.clone(),
            reason: format!("does not fit certificate {}: {e}", files.cert.display()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Client config: trust exactly `roots`, optionally present a certificate.
pub(crate) fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
