//! HTTP/1.1 client for sigvault's internal APIs, over a Unix socket, loopback TCP or TLS.
//!
//! Built on hyper's connection API rather than a general-purpose client because the services
//! talk over Unix sockets, and because the policy (loopback-only plain HTTP, a pinned CA bundle,
//! optional client certificate) is simpler to enforce when there is nothing else to configure.
//!
//! Internal services pin a CA bundle. Calls out to the public web (OIDC discovery and JWKS) use
//! the system roots instead: [`ClientTls`] without `ca`, or [`Client::new_public`], which can add
//! extra PEM roots (Fulcio's per-issuer `CACert`).

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use super::tls::{self, PemError};

/// Per-request time limit unless [`Client::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body accepted unless [`Client::with_max_response_bytes`] says otherwise.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Idle connections kept for reuse. A caller has as many requests in flight as it has clients
/// waiting (ctlog -> tlog, fulcio -> ctlog, rekor -> tlog: one each), so under load this must
/// cover that concurrency: with 8, 120 of 128 concurrent requests paid for a new connection
/// (socket, connect, accept, close on both sides). An idle connection costs one descriptor and
/// one small task on each side.
const MAX_IDLE: usize = 512;

type BoxError = Box<dyn StdError + Send + Sync>;

/// A client problem, phrased as what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "invalid endpoint {input:?}: {reason} (use unix:/run/sigvault/NAME.sock, \
         http://127.0.0.1:PORT or https://HOST:PORT)"
    )]
    Endpoint { input: String, reason: String },
    #[error("client settings for {endpoint}: {reason}")]
    Config { endpoint: String, reason: String },
    #[error("cannot load {what} from {path}: {reason}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("invalid request: {0}")]
    Request(String),
    #[error("cannot connect to {endpoint}: {source} (is the service running at that address?)")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error(
        "TLS with {endpoint} failed: {reason} (check the CA bundle, the server name and the \
         client certificate)"
    )]
    Tls { endpoint: String, reason: String },
    #[error("{endpoint} did not answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("HTTP exchange with {endpoint} failed: {source}")]
    Protocol { endpoint: String, source: BoxError },
    #[error("response from {endpoint} is larger than {limit} bytes")]
    TooLarge { endpoint: String, limit: usize },
}

impl From<PemError> for ClientError {
    fn from(e: PemError) -> Self {
        ClientError::TlsFile {
            what: e.what,
            path: e.path,
            reason: e.reason,
        }
    }
}

/// Where a service's internal API is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `unix:/run/sigvault/NAME.sock`
    Unix(PathBuf),
    /// `http://127.0.0.1:PORT` — plain HTTP, loopback only.
    Http(SocketAddr),
    /// `https://HOST[:PORT]` — the server certificate must be valid for `host`.
    Https { host: String, port: u16 },
}

impl FromStr for Endpoint {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, ClientError> {
        let err = |reason: &str| ClientError::Endpoint {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if !Path::new(path).is_absolute() {
                return Err(err("a unix socket path must be absolute"));
            }
            return Ok(Self::Unix(path.into()));
        }
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(err("unknown scheme"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(err(
                "only scheme, host and port are allowed (no path or user)",
            ));
        }
        if !https {
            let addr: SocketAddr = authority
                .parse()
                .map_err(|_| err("http:// needs an IP address and port, e.g. 127.0.0.1:7000"))?;
            if !addr.ip().to_canonical().is_loopback() {
                return Err(err(
                    "plain http is only allowed to loopback (127.0.0.0/8, ::1); use https://",
                ));
            }
            return Ok(Self::Http(addr));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| err("unclosed '[' in IPv6 address"))?;
                match after {
                    "" => (host, None),
                    p => (
                        host,
                        Some(p.strip_prefix(':').ok_or_else(|| err("bad port"))?),
                    ),
                }
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| err("bad port"))?,
            None => 443,
        };
        if host.is_empty() || ServerName::try_from(host).is_err() {
            return Err(err("the host must be a DNS name or an IP address"));
        }
        Ok(Self::Https {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Http(a) => write!(f, "http://{a}"),
            Self::Https { .. } => write!(f, "https://{}", self.authority()),
        }
    }
}

impl Endpoint {
    /// The `Host` header value: `host:port`, or `localhost` on a Unix socket.
    fn authority(&self) -> String {
        match self {
            Self::Unix(_) => "localhost".into(),
            Self::Http(a) => a.to_string(),
            Self::Https { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Self::Https { host, port } => format!("{host}:{port}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// TLS settings for an `https://` endpoint, by path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM bundle of the CAs the server certificate must chain to. Internal services should
    /// always pin one; when it is omitted the system's root store is used (for calls out to the
    /// public web, e.g. OIDC providers).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS; needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// A response, read in full.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A client for one endpoint. Cheap to clone; clones share the idle connections.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    timeout: Duration,
    max_response_bytes: usize,
}

struct Shared {
    endpoint: Endpoint,
    name: String,
    host: HeaderValue,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.shared.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `endpoint`. `tls` is required for `https://` and refused otherwise (a
    /// setting that would silently be ignored is a config mistake). Files are read now.
    pub fn new(endpoint: Endpoint, tls: Option<&ClientTls>) -> Result<Self, ClientError> {
        let name = endpoint.to_string();
        let config = match (&endpoint, tls) {
            (Endpoint::Https { .. }, Some(files)) => Some(load_client_tls(files, &name)?),
            (Endpoint::Https { .. }, None) => {
                return Err(ClientError::Config {
                    endpoint: name,
                    reason: "an https endpoint needs TLS settings with a CA bundle (ca = \"...\")"
                        .into(),
                });
            }
            (_, Some(_)) => {
                return Err(ClientError::Config {
                    endpoint: name,
                    reason: "TLS settings are only used with an https:// endpoint; remove them or \
                             use https"
                        .into(),
                });
            }
            (_, None) => None,
        };
        Self::with_tls_config(endpoint, config)
    }

    /// A client for a server on the public web: `https://` endpoints are verified against the
    /// system root store plus `extra_roots_pem` (PEM certificates, e.g. an IdP's private CA).
    /// Plain `http://` (loopback only, see [`Endpoint`]) and Unix endpoints take no TLS settings,
    /// so `extra_roots_pem` must then be `None`.
    pub fn new_public(
        endpoint: Endpoint,
        extra_roots_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        let name = endpoint.to_string();
        let config = match (&endpoint, extra_roots_pem) {
            (Endpoint::Https { .. }, extra) => {
                let mut roots = system_roots(&name)?;
                if let Some(pem) = extra {
                    add_pem_roots(&mut roots, pem, &name)?;
                }
                Some(
                    tls::client_config(roots, None).map_err(|e| ClientError::Config {
                        endpoint: name.clone(),
                        reason: e.to_string(),
                    })?,
                )
            }
            (_, Some(_)) => {
                return Err(ClientError::Config {
                    endpoint: name,
                    reason: "extra CA certificates are only used with an https:// endpoint".into(),
                });
            }
            (_, None) => None,
        };
        Self::with_tls_config(endpoint, config)
    }

    fn with_tls_config(
        endpoint: Endpoint,
        config: Option<rustls::ClientConfig>,
    ) -> Result<Self, ClientError> {
        let name = endpoint.to_string();
        let config_err = |reason: &str| ClientError::Config {
            endpoint: name.clone(),
            reason: reason.to_owned(),
        };
        let tls = match (&endpoint, config) {
            (Endpoint::Https { host, .. }, Some(config)) => {
                let server_name = ServerName::try_from(host.clone())
                    .map_err(|_| config_err("the host is not a valid TLS server name"))?;
                Some((TlsConnector::from(Arc::new(config)), server_name))
            }
            (Endpoint::Https { .. }, None) => {
                return Err(config_err("an https endpoint needs TLS settings"));
            }
            (_, _) => None,
        };
        let host = HeaderValue::from_str(&endpoint.authority())
            .map_err(|_| config_err("the host is not a valid Host header"))?;
        Ok(Self {
            shared: Arc::new(Shared {
                endpoint,
                name,
                host,
                tls,
                idle: Mutex::new(Vec::new()),
            }),
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// Limit each request (connecting, sending and reading the whole response) to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Refuse response bodies larger than `limit` bytes.
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// Send one request and read the whole response. `path_and_query` starts with `/`; `body` is
    /// the payload and its content type.
    ///
    /// A request that could not be sent on a reused connection (the server had closed it) is
    /// retried on a fresh one; so is an idempotent request whose reused connection closed
    /// before any response. Nothing else is retried.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<Response, ClientError> {
        if !path_and_query.starts_with('/') {
            return Err(ClientError::Request(format!(
                "path {path_and_query:?} must start with '/'"
            )));
        }
        let uri: Uri = path_and_query
            .parse()
            .map_err(|e| ClientError::Request(format!("path {path_and_query:?}: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, self.shared.host.clone());
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("sigvault/", env!("CARGO_PKG_VERSION"))),
        );
        let payload = match body {
            Some((bytes, content_type)) => {
                let ct = HeaderValue::from_str(content_type).map_err(|_| {
                    ClientError::Request(format!("content type {content_type:?} is not valid"))
                })?;
                headers.insert(header::CONTENT_TYPE, ct);
                Bytes::from(bytes)
            }
            None => Bytes::new(),
        };
        let make = || {
            let mut req = Request::new(Full::new(payload.clone()));
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers.clone();
            req
        };
        tokio::time::timeout(self.timeout, self.send(&method, make))
            .await
            .map_err(|_| ClientError::Timeout {
                endpoint: self.shared.name.clone(),
                timeout: self.timeout,
            })?
    }

    async fn send(
        &self,
        method: &Method,
        make: impl Fn() -> Request<Full<Bytes>>,
    ) -> Result<Response, ClientError> {
        while let Some(mut conn) = self.take_idle() {
            if conn.ready().await.is_err() {
                continue; // closed while parked
            }
            match conn.try_send_request(make()).await {
                Ok(res) => return self.finish(conn, res).await,
                Err(e) if e.message().is_some() => continue, // never sent
                Err(e) => {
                    let e = e.into_error();
                    if !(e.is_incomplete_message() && method.is_idempotent()) {
                        return Err(self.classify(e.into()));
                    }
                    tracing::debug!(endpoint = %self.shared.name, "reused connection closed; retrying");
                }
            }
        }
        let mut conn = self.connect().await?;
        match conn.send_request(make()).await {
            Ok(res) => self.finish(conn, res).await,
            Err(e) => Err(self.classify(e.into())),
        }
    }

    /// Read the body, then park the connection for reuse if it is still usable.
    async fn finish(
        &self,
        conn: SendRequest<Full<Bytes>>,
        res: hyper::Response<Incoming>,
    ) -> Result<Response, ClientError> {
        let (parts, body) = res.into_parts();
        let body = Limited::new(body, self.max_response_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    ClientError::TooLarge {
                        endpoint: self.shared.name.clone(),
                        limit: self.max_response_bytes,
                    }
                } else {
                    self.classify(e)
                }
            })?
            .to_bytes();
        if !conn.is_closed() {
            let mut idle = self
                .shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while let Some(conn) = idle.pop() {
            if !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let connect_err = |source| ClientError::Connect {
            endpoint: self.shared.name.clone(),
            source,
        };
        match &self.shared.endpoint {
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path).await.map_err(connect_err)?;
                self.handshake(s).await
            }
            Endpoint::Http(addr) => {
                let s = TcpStream::connect(addr).await.map_err(connect_err)?;
                let _ = s.set_nodelay(true);
                self.handshake(s).await
            }
            Endpoint::Https { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(connect_err)?;
                let _ = s.set_nodelay(true);
                // Client::new guarantees TLS settings for https.
                let (connector, name) =
                    self.shared
                        .tls
                        .as_ref()
                        .ok_or_else(|| ClientError::Config {
                            endpoint: self.shared.name.clone(),
                            reason: "no TLS settings".into(),
                        })?;
                let s = connector
                    .connect(name.clone(), s)
                    .await
                    .map_err(|e| self.tls_error(&e))?;
                self.handshake(s).await
            }
        }
    }

    async fn handshake<I>(&self, io: I) -> Result<SendRequest<Full<Bytes>>, ClientError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.classify(e.into()))?;
        let name = self.shared.name.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = %name, error = %e, "client connection ended");
            }
        });
        Ok(sender)
    }

    /// A transport error; reported as TLS if rustls is anywhere in its cause chain (a rejected
    /// client certificate surfaces only when the first response is read).
    fn classify(&self, err: BoxError) -> ClientError {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(err.as_ref());
        while let Some(e) = cur {
            if let Some(tls) = as_rustls(e) {
                return ClientError::Tls {
                    endpoint: self.shared.name.clone(),
                    reason: tls.to_string(),
                };
            }
            cur = e.source();
        }
        ClientError::Protocol {
            endpoint: self.shared.name.clone(),
            source: err,
        }
    }

    fn tls_error(&self, e: &std::io::Error) -> ClientError {
        ClientError::Tls {
            endpoint: self.shared.name.clone(),
            reason: as_rustls(e).map_or_else(|| e.to_string(), ToString::to_string),
        }
    }
}

/// The rustls error inside `e`, looking through `io::Error` wrappers (whose `source()` skips
/// the wrapped error itself).
fn as_rustls<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The system's trusted roots (rustls-native-certs), loaded once per process. Certificates the
/// platform lists but rustls cannot use are skipped, as browsers do; an empty result is an error.
fn system_roots(endpoint: &str) -> Result<rustls::RootCertStore, ClientError> {
    static ROOTS: OnceLock<Result<rustls::RootCertStore, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "problem reading the system CA certificates");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (_added, ignored) = roots.add_parsable_certificates(found.certs);
            if ignored > 0 {
                tracing::debug!(ignored, "unusable system CA certificates skipped");
            }
            if roots.is_empty() {
                Err(
                    "no usable CA certificates in the system root store (install the \
                     ca-certificates package, or set a CA bundle)"
                        .to_owned(),
                )
            } else {
                Ok(roots)
            }
        })
        .clone()
        .map_err(|reason| ClientError::Config {
            endpoint: endpoint.to_owned(),
            reason,
        })
}

/// Add every certificate of a PEM text to `roots`; a text without any is an error.
fn add_pem_roots(
    roots: &mut rustls::RootCertStore,
    pem: &[u8],
    endpoint: &str,
) -> Result<(), ClientError> {
    let err = |reason: String| ClientError::Config {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("extra CA certificates are not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err(
            "no CERTIFICATE block in the extra CA certificates".into()
        ));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| err(format!("unusable extra CA certificate: {e}")))?;
    }
    Ok(())
}

fn load_client_tls(files: &ClientTls, endpoint: &str) -> Result<rustls::ClientConfig, ClientError> {
    let roots = match &files.ca {
        Some(ca) => tls::load_roots(ca, "the CA bundle")?,
        None => system_roots(endpoint)?,
    };
    let identity = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => Some((
            tls::load_certs(cert, "the client certificate chain")?,
            tls::load_key(key, "the client private key")?,
        )),
        (None, None) => None,
        _ => {
            return Err(ClientError::Config {
                endpoint: endpoint.to_owned(),
                reason: "a client certificate needs both cert and key".into(),
            });
        }
    };
    tls::client_config(roots, identity).map_err(|e| ClientError::Config {
        endpoint: endpoint.to_owned(),
        reason: format!("client certificate and key do not fit together: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let p = |s: &str| s.parse::<Endpoint>().expect(s);
        assert_eq!(p("unix:/run/a.sock"), Endpoint::Unix("/run/a.sock".into()));
        assert_eq!(
            p("http://127.0.0.1:7000/"),
            Endpoint::Http("127.0.0.1:7000".parse().expect("addr"))
        );
        assert_eq!(
            p("https://tlog.internal"),
            Endpoint::Https {
                host: "tlog.internal".into(),
                port: 443
            }
        );
        let v6 = p("https://[::1]:8443");
        assert_eq!(
            v6,
            Endpoint::Https {
                host: "::1".into(),
                port: 8443
            }
        );
        assert_eq!(v6.to_string(), "https://[::1]:8443");
    }

    #[test]
    fn rejects_endpoints_with_reasons() {
        let e = |s: &str| s.parse::<Endpoint>().expect_err(s).to_string();
        assert!(e("http://10.0.0.1:80").contains("loopback"));
        assert!(e("http://localhost:80").contains("IP address"));
        assert!(e("https://h:1/api").contains("no path"));
        assert!(e("ftp://h").contains("scheme"));
        assert!(e("unix:a.sock").contains("absolute"));
        assert!(e("https://h:x").contains("port"));
    }
}
