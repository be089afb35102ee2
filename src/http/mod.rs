//! HTTP plumbing shared by every sigvault service: listeners, TLS, limits, an internal client and
//! the systemd glue.
//!
//! Each service builds an [`axum::Router`], wraps it in [`with_limits`], [`bind`]s its configured
//! [`ListenAddr`] (optionally with [`TlsFiles`]), tells systemd it is ready
//! ([`notify::sd_notify`]`("READY=1")`) and then [`Listener::serve`]s until
//! [`notify::shutdown_signal`] resolves. Binding is separate from serving so readiness is only
//! signalled once the socket really exists.
//!
//! Policy enforced here rather than in each service:
//! * plain HTTP only on loopback or a Unix socket; anything reachable from the network needs TLS;
//! * Unix sockets are mode 0660 (access is granted through the socket's group) and are removed on
//!   shutdown;
//! * a TLS handshake runs in the connection's own task under a timeout, so a slow or hostile
//!   client never stalls the accept loop;
//! * request bodies, handler time and in-flight requests are bounded ([`with_limits`]).
//!
//! Services call each other through [`client::Client`], which speaks HTTP/1.1 over the same
//! three transports (Unix socket, loopback TCP, TLS with optional client certificate).

mod addr;
pub mod client;
mod limits;
pub mod notify;
mod server;
mod tls;

use std::path::{Path, PathBuf};

pub use addr::ListenAddr;
pub use limits::with_limits;
pub use notify::{sd_notify, shutdown_signal};
pub use server::{ConnectionInfo, Listener, bind};

/// The listen policy without touching the network, for config checks: plain HTTP only on a
/// Unix socket or loopback. [`bind`] enforces the same rule.
pub fn check_listen(addr: &ListenAddr, tls: Option<&TlsFiles>) -> Result<(), HttpError> {
    if tls.is_none() && !addr.is_local() {
        return Err(HttpError::TlsRequired {
            addr: addr.to_string(),
        });
    }
    Ok(())
}

/// Server TLS material, by path (`[tls]` in a service config).
///
/// When `client_ca` is set the server *requires* a client certificate chaining to one of the CAs
/// in that bundle (mutual TLS); connections without one fail the handshake.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for the leaf certificate.
    pub key: PathBuf,
    /// PEM bundle of CAs that client certificates must chain to; enables mutual TLS.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Every file this refers to, for existence checks.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

/// A listener or TLS setup problem, phrased as what to fix.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "invalid listen address {input:?}: {reason} (use unix:/run/sigvault/NAME.sock, \
         tcp:127.0.0.1:PORT or [::1]:PORT)"
    )]
    ListenAddr { input: String, reason: String },
    #[error(
        "refusing to serve plain HTTP on {addr}: without TLS only loopback addresses \
         (127.0.0.0/8, ::1) or unix: sockets are allowed; configure TLS (cert and key) or listen \
         on loopback"
    )]
    TlsRequired { addr: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    SocketPath { path: PathBuf, reason: String },
    #[error("cannot load {what} from {path}: {reason}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS configuration rejected: {0}")]
    TlsConfig(String),
}

/// A JSON parse error as a client may be told it (and the log may keep it): serde's message with
/// every quoted value elided. serde quotes the offending value (`invalid type: string "eyJ..."`),
/// so a request that put its OIDC token in the wrong field would get the token echoed back, and
/// written to the audit trail; what was wrong and where (line, column) is kept.
pub fn json_error_text(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let mut out = String::with_capacity(msg.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in msg.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => quoted = false,
            (true, false, _) => {}
            (false, _, '"') => {
                quoted = true;
                out.push_str("\"…\"");
            }
            (false, _, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod json_error_tests {
    #[test]
    fn quoted_values_never_reach_the_message() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Req {
            credentials: std::collections::BTreeMap<String, String>,
        }
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        for body in [
            format!(r#"{{"credentials": "{token}"}}"#),
            format!(r#"{{"credentials": {{"a": 1}}, "x": "{token}\"q"}}"#),
        ] {
            let e = serde_json::from_str::<Req>(&body).expect_err("wrong shape");
            let text = super::json_error_text(&e);
            assert!(!text.contains("eyJ") && !text.contains("c2ln"), "{text}");
            assert!(text.contains("line 1 column"), "{text}");
        }
    }
}
