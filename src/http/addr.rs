//! Where a service listens: `unix:/path`, `tcp:IP:PORT` or a bare `IP:PORT`.
//!
//! Host names are refused on purpose: a listen address that depends on DNS can silently change
//! which interface (and so which network) a service is exposed on.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use super::HttpError;

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes including the NUL).
const MAX_UNIX_PATH: usize = 107;

/// A listen address from config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A Unix domain socket at an absolute path.
    Unix(PathBuf),
    /// A TCP address (IP literal and port; port 0 picks a free port).
    Tcp(SocketAddr),
}

impl ListenAddr {
    /// Is this reachable only from this machine (a Unix socket or a loopback IP)?
    pub fn is_local(&self) -> bool {
        match self {
            Self::Unix(_) => true,
            Self::Tcp(a) => a.ip().to_canonical().is_loopback(),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = HttpError;

    fn from_str(s: &str) -> Result<Self, HttpError> {
        let err = |reason: &str| HttpError::ListenAddr {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(err("a unix socket path must be absolute"));
            }
            if path.as_os_str().len() > MAX_UNIX_PATH {
                return Err(err("a unix socket path must be at most 107 bytes long"));
            }
            return Ok(Self::Unix(path));
        }
        let tcp = s.strip_prefix("tcp:").unwrap_or(s);
        tcp.parse::<SocketAddr>().map(Self::Tcp).map_err(|_| {
            if tcp.contains('/') {
                err("a path needs the unix: prefix")
            } else if tcp.rsplit_once(':').is_some_and(|(h, _)| h.contains(':')) {
                err("an IPv6 address must be in brackets, e.g. [::1]:7000")
            } else {
                err("expected an IP address and port; host names are not accepted")
            }
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        let p = |s: &str| s.parse::<ListenAddr>().expect(s);
        assert_eq!(
            p("unix:/run/x.sock"),
            ListenAddr::Unix("/run/x.sock".into())
        );
        assert_eq!(
            p("tcp:127.0.0.1:7000"),
            ListenAddr::Tcp("127.0.0.1:7000".parse().expect("addr"))
        );
        assert_eq!(
            p("[::1]:7000"),
            ListenAddr::Tcp("[::1]:7000".parse().expect("addr"))
        );
        assert_eq!(p("tcp:[::1]:7000").to_string(), "tcp:[::1]:7000");
        assert!(p("[::1]:7000").is_local());
        assert!(!p("0.0.0.0:7000").is_local());
        assert!(p("[::ffff:127.0.0.1]:1").is_local());
    }

    #[test]
    fn rejects_with_reasons() {
        let e = |s: &str| s.parse::<ListenAddr>().expect_err(s).to_string();
        assert!(e("unix:run/x.sock").contains("absolute"));
        assert!(e(&format!("unix:/{}", "a".repeat(120))).contains("107"));
        assert!(e("localhost:7000").contains("host names"));
        assert!(e("::1:7000").contains("brackets"));
        assert!(e("/run/x.sock").contains("unix:"));
        assert!(e("127.0.0.1").contains("port"));
    }
}
