//! Binding and serving: one accept loop, one task per connection, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::{HttpError, ListenAddr, TlsFiles, check_listen, tls};

/// A TLS handshake must finish within this, or the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send a complete request head within this (hyper's slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// On shutdown, in-flight requests get this long to finish before their connections are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after an accept error that is not about one connection (e.g. out of file descriptors),
/// so the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a handler can learn about the connection a request came on, as an
/// `axum::Extension<ConnectionInfo>`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// Per-listener connection number, for correlating log lines.
    pub id: u64,
    /// The peer's address on TCP; `None` on a Unix socket.
    pub remote: Option<SocketAddr>,
    /// The client's verified certificate chain (leaf first) under mutual TLS.
    pub peer_certificates: Option<Arc<[CertificateDer<'static>]>>,
}

impl ConnectionInfo {
    /// The client's verified leaf certificate (DER), under mutual TLS.
    pub fn client_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.peer_certificates.as_deref().and_then(<[_]>::first)
    }
}

/// A bound, not yet serving, socket. See [`bind`].
pub struct Listener {
    socket: Socket,
    tls: Option<TlsAcceptor>,
    local: ListenAddr,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.local.to_string())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

enum Socket {
    Tcp(TcpListener),
    /// `_file` is held only so that dropping the listener removes the socket file.
    Unix {
        listener: UnixListener,
        _file: SocketFile,
    },
}

/// The socket file we created; removed when dropped, but only if it is still ours (same inode),
/// so a newer instance's socket at the same path is never deleted.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && m.dev() == self.dev
            && m.ino() == self.ino
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove socket file");
        }
    }
}

/// Bind `addr`, with TLS if `tls` is given.
///
/// * `unix:` — a leftover socket file at the path is removed first (anything else there is an
///   error, and so is a socket some process still accepts on); the new socket is chmod 0660.
/// * TCP without TLS — only on loopback; anything else is refused with
///   [`HttpError::TlsRequired`].
/// * TLS files are loaded now, so a bad certificate fails at startup, naming the file.
pub async fn bind(addr: &ListenAddr, tls: Option<&TlsFiles>) -> Result<Listener, HttpError> {
    check_listen(addr, tls)?;
    let tls = tls
        .map(|t| tls::server_config(t).map(|c| TlsAcceptor::from(Arc::new(c))))
        .transpose()?;
    let bind_err = |source| HttpError::Bind {
        addr: addr.to_string(),
        source,
    };
    let (socket, local) = match addr {
        ListenAddr::Tcp(sa) => {
            let l = TcpListener::bind(sa).await.map_err(bind_err)?;
            let local = l.local_addr().map_err(bind_err)?;
            (Socket::Tcp(l), ListenAddr::Tcp(local))
        }
        ListenAddr::Unix(path) => {
            remove_stale_socket(path)?;
            let l = UnixListener::bind(path).map_err(bind_err)?;
            let meta = std::fs::symlink_metadata(path).map_err(bind_err)?;
            let file = SocketFile {
                path: path.clone(),
                dev: meta.dev(),
                ino: meta.ino(),
            };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(
                |e| HttpError::SocketPath {
                    path: path.clone(),
                    reason: format!("cannot chmod the socket to 0660: {e}"),
                },
            )?;
            (
                Socket::Unix {
                    listener: l,
                    _file: file,
                },
                addr.clone(),
            )
        }
    };
    tracing::info!(addr = %local, tls = tls.is_some(), "listening");
    Ok(Listener { socket, tls, local })
}

fn remove_stale_socket(path: &Path) -> Result<(), HttpError> {
    let fail = |reason: String| HttpError::SocketPath {
        path: path.to_owned(),
        reason,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(format!("cannot inspect: {e}"))),
    };
    if !meta.file_type().is_socket() {
        return Err(fail(
            "exists and is not a socket; refusing to remove it (choose another path)".into(),
        ));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(fail(
            "another process is accepting connections on this socket; stop it first".into(),
        ));
    }
    std::fs::remove_file(path).map_err(|e| fail(format!("cannot remove stale socket: {e}")))
}

impl Listener {
    /// The bound address in [`ListenAddr`] syntax, with the real port when port 0 was asked for,
    /// e.g. `tcp:127.0.0.1:41234` or `unix:/run/sigvault/tlog.sock`.
    pub fn local_addr(&self) -> String {
        self.local.to_string()
    }

    /// The bound address (the real port when port 0 was asked for).
    pub fn listen_addr(&self) -> &ListenAddr {
        &self.local
    }

    /// Serve `router` until `shutdown` resolves, then stop accepting, let in-flight requests
    /// finish (at most 10 s) and remove the Unix socket file.
    ///
    /// Accept errors are logged and retried, never fatal: a service should not exit because it
    /// briefly ran out of file descriptors.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), HttpError> {
        let Listener { socket, tls, local } = self;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true);
        let (stop_tx, stop) = watch::channel(false);
        let conn = Conn {
            builder: Arc::new(builder),
            router,
            tls,
            stop,
        };
        let mut tasks = JoinSet::new();
        let mut next_id = 0u64;
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done && e.is_panic() {
                        tracing::error!(error = %e, "connection task panicked");
                    }
                    continue;
                }
                a = accept(&socket) => a,
            };
            next_id += 1;
            match accepted {
                Ok(Accepted::Tcp(stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    tasks.spawn(conn.clone().run(stream, next_id, Some(remote)));
                }
                Ok(Accepted::Unix(stream)) => {
                    tasks.spawn(conn.clone().run(stream, next_id, None));
                }
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(error = %e, "accept failed for one connection");
                }
                Err(e) => {
                    tracing::warn!(addr = %local, error = %e, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
        // Stop accepting (and remove the socket file) before draining.
        drop(socket);
        tracing::info!(addr = %local, connections = tasks.len(), "shutting down");
        let _ = stop_tx.send(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!(
                connections = tasks.len(),
                "closing connections still busy after the shutdown grace period"
            );
            tasks.shutdown().await;
        }
        Ok(())
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept(socket: &Socket) -> std::io::Result<Accepted> {
    match socket {
        Socket::Tcp(l) => l.accept().await.map(|(s, a)| Accepted::Tcp(s, a)),
        Socket::Unix { listener, .. } => listener.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// Errors that concern only the connection being accepted; the next accept can go ahead at once.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
}

/// Everything a connection task needs; cloned per connection.
#[derive(Clone)]
struct Conn {
    builder: Arc<http1::Builder>,
    router: Router,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn run<I>(self, io: I, id: u64, remote: Option<SocketAddr>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut info = ConnectionInfo {
            id,
            remote,
            peer_certificates: None,
        };
        let Some(acceptor) = self.tls.clone() else {
            return self.http(io, info).await;
        };
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(conn = id, ?remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!(conn = id, ?remote, "TLS handshake timed out");
                return;
            }
        };
        info.peer_certificates = stream.get_ref().1.peer_certificates().map(Arc::from);
        self.http(stream, info).await;
    }

    async fn http<I>(mut self, io: I, info: ConnectionInfo)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let id = info.id;
        let router = self.router;
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(info.clone());
            router.clone().oneshot(req)
        });
        let conn = self.builder.serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = async { let _ = self.stop.wait_for(|stop| *stop).await; } => {
                // Finish the request in progress (if any), then close.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(conn = id, error = %e, "connection ended with an error");
        }
    }
}
