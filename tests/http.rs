//! sigvault::http over real sockets: Unix, loopback TCP, mutual TLS, limits, systemd notify.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use sigvault::http::client::{Client, ClientError, ClientTls, Endpoint};
use sigvault::http::{ConnectionInfo, HttpError, ListenAddr, Listener, TlsFiles, bind};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

type Served = JoinHandle<Result<(), HttpError>>;

/// Serve `router` in the background; send on the returned channel to shut it down.
fn start(listener: Listener, router: Router) -> (oneshot::Sender<()>, Served) {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(listener.serve(router, async move {
        let _ = rx.await;
    }));
    (tx, task)
}

async fn stop(tx: oneshot::Sender<()>, task: Served) {
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("serve returns after shutdown")
        .expect("serve task")
        .expect("serve result");
}

fn basic_router() -> Router {
    Router::new()
        .route(
            "/conn",
            get(|Extension(info): Extension<ConnectionInfo>| async move { info.id.to_string() }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        )
}

fn client(endpoint: &str) -> Client {
    Client::new(endpoint.parse().expect("endpoint"), None).expect("client")
}

async fn get_text(c: &Client, path: &str) -> String {
    let res = c.request(Method::GET, path, None).await.expect("request");
    assert_eq!(res.status, StatusCode::OK);
    String::from_utf8(res.body.to_vec()).expect("utf-8")
}

#[tokio::test]
async fn unix_socket_reuses_connections_and_serves_concurrently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api.sock");
    // A leftover socket from a dead process is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
    let addr: ListenAddr = format!("unix:{}", path.display()).parse().expect("addr");
    let listener = bind(&addr, None).await.expect("bind");
    assert_eq!(listener.local_addr(), format!("unix:{}", path.display()));
    let meta = std::fs::metadata(&path).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    // While it is served, a second bind is refused rather than stealing the path.
    let (tx, task) = start(listener, basic_router());
    let err = bind(&addr, None).await.expect_err("path in use");
    assert!(err.to_string().contains("another process"), "{err}");

    let c = client(&format!("unix:{}", path.display()));
    let ids: HashSet<String> = {
        let mut ids = HashSet::new();
        for _ in 0..50 {
            ids.insert(get_text(&c, "/conn").await);
        }
        ids
    };
    assert_eq!(ids.len(), 1, "sequential requests share one connection");

    let mut tasks = Vec::new();
    for i in 0..32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("payload {i}").into_bytes();
            let res = c
                .request(Method::POST, "/echo", Some((body.clone(), "text/plain")))
                .await
                .expect("echo");
            assert_eq!(res.status, StatusCode::OK);
            assert_eq!(res.body, body);
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Reused after the burst as well.
    get_text(&c, "/conn").await;

    stop(tx, task).await;
    assert!(!path.exists(), "socket file removed on shutdown");
    let err = c
        .request(Method::GET, "/conn", None)
        .await
        .expect_err("server gone");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn unix_bind_refuses_to_remove_a_regular_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, b"data").expect("write");
    let addr = ListenAddr::Unix(path.clone());
    let err = bind(&addr, None).await.expect_err("refused");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).expect("still there"), b"data");
}

#[tokio::test]
async fn plain_tcp_on_loopback_and_graceful_shutdown() {
    let listener = bind(&"127.0.0.1:0".parse().expect("addr"), None)
        .await
        .expect("bind");
    let ListenAddr::Tcp(sa) = listener.listen_addr().clone() else {
        panic!("tcp listener");
    };
    assert_ne!(sa.port(), 0);
    assert_eq!(listener.local_addr(), format!("tcp:{sa}"));
    let (tx, task) = start(listener, basic_router());
    let c = client(&format!("http://{sa}"));
    let id = get_text(&c, "/conn").await;
    assert_eq!(get_text(&c, "/conn").await, id);

    // A request in flight when shutdown starts still completes.
    let in_flight = {
        let c = c.clone();
        tokio::spawn(async move { get_text(&c, "/slow").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(tx, task).await;
    assert_eq!(in_flight.await.expect("task"), "done");
    assert!(c.request(Method::GET, "/conn", None).await.is_err());
}

#[tokio::test]
async fn plain_tcp_off_loopback_is_refused() {
    for addr in ["0.0.0.0:0", "[::]:0", "tcp:192.0.2.1:7000"] {
        let err = bind(&addr.parse().expect("addr"), None)
            .await
            .expect_err("needs TLS");
        assert!(matches!(err, HttpError::TlsRequired { .. }), "{err}");
        assert!(err.to_string().contains("configure TLS"), "{err}");
    }
    let err = "http://192.0.2.1:80"
        .parse::<Endpoint>()
        .expect_err("client side too");
    assert!(err.to_string().contains("loopback"), "{err}");
}

/// A CA and a leaf it issued, as PEM files in `dir`.
struct Pki {
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(name: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = p.self_signed(&ca_key).expect("CA");
        Self { ca_cert, ca_key }
    }

    /// Writes `<stem>.pem` and `<stem>.key`; returns the certificate DER.
    fn issue(
        &self,
        dir: &Path,
        stem: &str,
        sans: &[&str],
        eku: rcgen::ExtendedKeyUsagePurpose,
    ) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = rcgen::CertificateParams::new(sans).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, stem);
        p.extended_key_usages = vec![eku];
        let cert = p
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("leaf");
        std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).expect("write cert");
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).expect("write key");
        cert.der().to_vec()
    }

    fn write_ca(&self, path: &Path) {
        std::fs::write(path, self.ca_cert.pem()).expect("write CA");
    }
}

#[tokio::test]
async fn mutual_tls() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = Pki::new("internal");
    pki.write_ca(&d.join("ca.pem"));
    pki.issue(d, "server", &["localhost", "127.0.0.1"], ServerAuth);
    let client_der = pki.issue(d, "client", &["client.internal"], ClientAuth);
    let other = Pki::new("other");
    other.issue(d, "stranger", &["stranger.internal"], ClientAuth);

    let files = TlsFiles {
        cert: d.join("server.pem"),
        key: d.join("server.key"),
        client_ca: Some(d.join("ca.pem")),
    };
    // Off-loopback is fine with TLS; bind loopback here so the test needs no network.
    let listener = bind(&"127.0.0.1:0".parse().expect("addr"), Some(&files))
        .await
        .expect("bind TLS");
    let ListenAddr::Tcp(sa) = listener.listen_addr().clone() else {
        panic!("tcp listener");
    };
    let router = Router::new().route(
        "/whoami",
        get(|Extension(info): Extension<ConnectionInfo>| async move {
            info.client_certificate()
                .map(|c| c.as_ref().to_vec())
                .unwrap_or_default()
        }),
    );
    let (tx, task) = start(listener, router);

    let tls = |cert: Option<&str>| ClientTls {
        ca: Some(d.join("ca.pem")),
        cert: cert.map(|s| d.join(format!("{s}.pem"))),
        key: cert.map(|s| d.join(format!("{s}.key"))),
    };
    let endpoint = |host: &str| -> Endpoint {
        format!("https://{host}:{}", sa.port())
            .parse()
            .expect("endpoint")
    };

    for host in ["localhost", "127.0.0.1"] {
        let c = Client::new(endpoint(host), Some(&tls(Some("client")))).expect("client");
        for _ in 0..3 {
            let res = c.request(Method::GET, "/whoami", None).await.expect("mTLS");
            assert_eq!(res.status, StatusCode::OK);
            assert_eq!(res.body, client_der, "handler sees the client certificate");
        }
    }

    let anonymous = Client::new(endpoint("localhost"), Some(&tls(None))).expect("client");
    let err = anonymous
        .request(Method::GET, "/whoami", None)
        .await
        .expect_err("no client cert");
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");

    let stranger =
        Client::new(endpoint("localhost"), Some(&tls(Some("stranger")))).expect("client");
    let err = stranger
        .request(Method::GET, "/whoami", None)
        .await
        .expect_err("foreign client cert");
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");

    // The client checks the server against its CA bundle, too.
    other.write_ca(&d.join("other-ca.pem"));
    let wrong_ca = ClientTls {
        ca: Some(d.join("other-ca.pem")),
        ..tls(Some("client"))
    };
    let err = Client::new(endpoint("localhost"), Some(&wrong_ca))
        .expect("client")
        .request(Method::GET, "/whoami", None)
        .await
        .expect_err("untrusted server");
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");

    stop(tx, task).await;
}

#[tokio::test]
async fn tls_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = Pki::new("internal");
    pki.issue(
        d,
        "server",
        &["localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let missing = TlsFiles {
        cert: d.join("server.pem"),
        key: d.join("missing.key"),
        client_ca: None,
    };
    let err = bind(&"127.0.0.1:0".parse().expect("addr"), Some(&missing))
        .await
        .expect_err("missing key");
    assert!(err.to_string().contains("missing.key"), "{err}");

    std::fs::write(d.join("empty.pem"), "").expect("write");
    let empty_ca = TlsFiles {
        client_ca: Some(d.join("empty.pem")),
        key: d.join("server.key"),
        ..missing
    };
    let err = bind(&"127.0.0.1:0".parse().expect("addr"), Some(&empty_ca))
        .await
        .expect_err("empty CA");
    assert!(
        err.to_string().contains("empty.pem") && err.to_string().contains("CERTIFICATE"),
        "{err}"
    );

    let err = Client::new(
        "https://localhost:1".parse().expect("endpoint"),
        Some(&ClientTls {
            ca: Some(d.join("nope.pem")),
            cert: None,
            key: None,
        }),
    )
    .expect_err("missing CA");
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[tokio::test]
async fn limits_answer_413_503_and_shed_load() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let holding = Arc::new(AtomicBool::new(false));
    let router = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/sleep",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                let v: Vec<u8> = Vec::new();
                #[allow(clippy::indexing_slicing)]
                let b = v[usize::from(v.is_empty())];
                format!("{b}")
            }),
        )
        .route(
            "/busy",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy: the log is standing by\n",
                )
            }),
        )
        .route(
            "/hold",
            get({
                let (entered, release, holding) =
                    (entered.clone(), release.clone(), holding.clone());
                move || async move {
                    holding.store(true, Ordering::SeqCst);
                    entered.notify_one();
                    release.notified().await;
                    "released"
                }
            }),
        );
    let router = sigvault::http::with_limits(router, 1024, Duration::from_millis(300), 1);
    let listener = bind(&"127.0.0.1:0".parse().expect("addr"), None)
        .await
        .expect("bind");
    let ListenAddr::Tcp(sa) = listener.listen_addr().clone() else {
        panic!("tcp listener");
    };
    let (tx, task) = start(listener, router);
    let c = client(&format!("http://{sa}")).with_timeout(Duration::from_secs(10));

    let json = |body: &Bytes| -> serde_json::Value { serde_json::from_slice(body).expect("JSON") };

    let ok = c
        .request(
            Method::POST,
            "/echo",
            Some((vec![b'a'; 1024], "text/plain")),
        )
        .await
        .expect("at the limit");
    assert_eq!(ok.status, StatusCode::OK);
    let big = c
        .request(
            Method::POST,
            "/echo",
            Some((vec![b'a'; 4096], "text/plain")),
        )
        .await
        .expect("over the limit");
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(&big.body)["code"], 413);

    let slow = c.request(Method::GET, "/sleep", None).await.expect("slow");
    assert_eq!(slow.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&slow.body)["code"], 503);
    assert_eq!(
        json(&slow.body)["message"],
        "request took too long to process"
    );
    // A handler that panics (a bug) gets a 500, and the connection and server go on.
    let panicked = c.request(Method::GET, "/panic", None).await.expect("panic");
    assert_eq!(panicked.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json(&panicked.body)["code"], 500);
    let after = c
        .request(Method::POST, "/echo", Some((b"y".to_vec(), "text/plain")))
        .await
        .expect("after the panic");
    assert_eq!(after.status, StatusCode::OK);
    // A handler's own 503 keeps its body: the reason is not replaced by the timeout's.
    let busy = c.request(Method::GET, "/busy", None).await.expect("busy");
    assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(busy.body, "busy: the log is standing by\n");

    // One request in flight is the limit: a second one is shed at once with Retry-After.
    // (/hold is released before the 300 ms timeout would end it.)
    let first = {
        let c = c.clone();
        tokio::spawn(async move { c.request(Method::GET, "/hold", None).await })
    };
    entered.notified().await;
    assert!(holding.load(Ordering::SeqCst));
    let shed = c
        .request(Method::POST, "/echo", Some((b"x".to_vec(), "text/plain")))
        .await
        .expect("shed");
    release.notify_one();
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers.get("retry-after").expect("Retry-After"), "1");
    assert_eq!(json(&shed.body)["code"], 503);
    let first = first.await.expect("task").expect("held request");
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, "released");

    stop(tx, task).await;
}

#[tokio::test]
async fn client_timeout() {
    let listener = bind(&"127.0.0.1:0".parse().expect("addr"), None)
        .await
        .expect("bind");
    let ListenAddr::Tcp(sa) = listener.listen_addr().clone() else {
        panic!("tcp listener");
    };
    let (tx, task) = start(listener, basic_router());
    let c = client(&format!("http://{sa}")).with_timeout(Duration::from_millis(50));
    let err = c
        .request(Method::GET, "/slow", None)
        .await
        .expect_err("too slow");
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    stop(tx, task).await;
}

#[test]
fn sd_notify_sends_datagrams() {
    use sigvault::http::notify::sd_notify_to;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let rx = UnixDatagram::bind(&path).expect("bind");
    rx.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sd_notify_to(path.as_os_str(), "READY=1").expect("send");
    let mut buf = [0u8; 64];
    let n = rx.recv(&mut buf).expect("recv");
    assert_eq!(&buf[..n], b"READY=1");

    let name = format!("sigvault-test-{}", std::process::id());
    let abs = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).expect("name"))
        .expect("bind abstract");
    abs.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sd_notify_to(format!("@{name}").as_ref(), "STATUS=serving").expect("send");
    let n = abs.recv(&mut buf).expect("recv");
    assert_eq!(&buf[..n], b"STATUS=serving");

    assert!(sd_notify_to("relative".as_ref(), "READY=1").is_err());
}
