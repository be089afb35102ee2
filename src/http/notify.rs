//! systemd integration: readiness/watchdog notifications and the shutdown signal.
//!
//! The notify protocol is one datagram per message to `$NOTIFY_SOCKET`; it is small enough to
//! speak directly instead of linking libsystemd.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Upper bound on blocking when the receiver's queue is full; systemd drains it quickly.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Tell systemd `state` (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=...`).
///
/// A no-op when `$NOTIFY_SOCKET` is unset (not started by systemd with `Type=notify`). A failure
/// is logged, not returned: a service must not stop because its supervisor is unreachable.
pub fn sd_notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = sd_notify_to(&socket, state) {
        tracing::warn!(socket = ?socket, error = %e, "cannot notify systemd");
    }
}

/// Send `state` to the notify socket `socket`: a path, or `@name` for an abstract socket.
/// [`sd_notify`] calls this with `$NOTIFY_SOCKET`; it is public for tests.
pub fn sd_notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let addr = match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
        Some(b'/') => SocketAddr::from_pathname(socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET must be an absolute path or @abstract-name",
            ));
        }
    };
    let sock = UnixDatagram::unbound()?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification was truncated",
        ));
    }
    Ok(())
}

/// The watchdog interval systemd expects `WATCHDOG=1` within (`WatchdogSec=`), if it is enabled
/// for this process. Ping at half this interval.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse() != Ok(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Resolves on the first SIGTERM (systemd stop) or SIGINT (Ctrl-C).
///
/// The handlers are installed when the future is first polled; before that the default action
/// (terminate) still applies, which is right for a service that is not serving yet.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutdown requested");
        }
        (Err(e), _) | (_, Err(e)) => {
            // Only possible if the runtime has no signal driver; never resolve rather than
            // shutting down at once. systemd's stop then ends with SIGKILL.
            tracing::error!(error = %e, "cannot install SIGTERM/SIGINT handlers");
            std::future::pending::<()>().await;
        }
    }
}
