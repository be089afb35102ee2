//! The clock a timestamp is worth: what the kernel says of its own synchronisation.
//!
//! A TSA's tokens are only as good as its clock. Linux keeps the state NTP (chrony, ntpd,
//! systemd-timesyncd) reports to it in the kernel's time-keeping variables; `adjtimex(2)` with
//! no mode bits reads them without changing anything: the return value is the clock state
//! (`TIME_ERROR` when unsynchronised), `status` carries `STA_UNSYNC` until a daemon declares
//! the clock synchronised, and `esterror`/`maxerror` the estimated and maximum error in
//! microseconds. The service refuses to issue while the clock is unsynchronised or its
//! estimated error exceeds the configured bound.
//!
//! [`ClockSource`] is the seam: the service reads [`KernelClock`]; tests give it readings of
//! their own.

use std::time::Duration;

/// One reading of the kernel's clock-discipline state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReading {
    /// The clock state `adjtimex` returned (`TIME_OK` 0 … `TIME_ERROR` 5).
    pub state: i32,
    /// Whether `STA_UNSYNC` is set in the status word.
    pub unsync_flag: bool,
    /// The kernel's estimated error (`esterror`).
    pub estimated_error: Duration,
    /// The kernel's maximum error (`maxerror`).
    pub maximum_error: Duration,
}

/// `TIME_ERROR`: the clock is not synchronised (adjtimex(2)).
pub const TIME_ERROR: i32 = 5;

impl ClockReading {
    /// Synchronised: neither `TIME_ERROR` nor `STA_UNSYNC`.
    pub fn synchronised(&self) -> bool {
        self.state != TIME_ERROR && !self.unsync_flag
    }
}

/// Where the service reads the clock's state from.
pub trait ClockSource: Send + Sync {
    fn read(&self) -> std::io::Result<ClockReading>;
}

/// The kernel's clock, through `adjtimex(2)` in read-only mode.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelClock;

impl ClockSource for KernelClock {
    fn read(&self) -> std::io::Result<ClockReading> {
        let (state, status, esterror, maxerror) = adjtimex_read()?;
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(ClockReading {
            state,
            unsync_flag: status & libc::STA_UNSYNC != 0,
            estimated_error: micros(esterror),
            maximum_error: micros(maxerror),
        })
    }
}

/// The one `unsafe` block of sigvault: `adjtimex(2)` with `modes = 0`, which only reads. No
/// crate on crates.io wraps the read side of this call, and the service cannot do without it.
#[allow(unsafe_code)]
fn adjtimex_read() -> std::io::Result<(i32, i32, i64, i64)> {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are a valid value (and
    // `modes = 0` is the read-only request); the kernel writes only into the struct we own and
    // pass by a valid, exclusive pointer for the duration of the call.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((state, tx.status, tx.esterror, tx.maxerror))
}

/// What the service requires of its clock before it issues a token.
#[derive(Debug, Clone, Copy)]
pub struct ClockPolicy {
    /// Refuse while the kernel reports the clock unsynchronised or too uncertain.
    pub require_synchronised: bool,
    /// The largest estimated error accepted.
    pub max_estimated_error: Duration,
}

impl ClockPolicy {
    /// `None` when the clock may be used for a token; otherwise why not, in words for the
    /// 503, `/readyz` and the log.
    pub fn refusal(&self, source: &dyn ClockSource) -> Option<String> {
        if !self.require_synchronised {
            return None;
        }
        match source.read() {
            Err(e) => Some(format!(
                "cannot read the kernel's clock state (adjtimex): {e}; no timestamp is issued without it"
            )),
            Ok(r) if !r.synchronised() => Some(format!(
                "the kernel reports the clock unsynchronised ({}); no timestamp is issued until NTP (chrony, systemd-timesyncd) synchronises it",
                if r.state == TIME_ERROR {
                    "adjtimex: TIME_ERROR"
                } else {
                    "adjtimex: STA_UNSYNC"
                }
            )),
            Ok(r) if r.estimated_error > self.max_estimated_error => Some(format!(
                "the kernel estimates the clock's error at {} ms, above the configured bound of {} ms (max_clock_error_ms)",
                r.estimated_error.as_millis(),
                self.max_estimated_error.as_millis()
            )),
            Ok(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(std::io::Result<ClockReading>);
    impl ClockSource for Fixed {
        fn read(&self) -> std::io::Result<ClockReading> {
            match &self.0 {
                Ok(r) => Ok(*r),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            }
        }
    }

    fn reading(state: i32, unsync: bool, est_ms: u64) -> Fixed {
        Fixed(Ok(ClockReading {
            state,
            unsync_flag: unsync,
            estimated_error: Duration::from_millis(est_ms),
            maximum_error: Duration::from_millis(est_ms * 2),
        }))
    }

    const POLICY: ClockPolicy = ClockPolicy {
        require_synchronised: true,
        max_estimated_error: Duration::from_millis(100),
    };

    #[test]
    fn an_unsynchronised_or_uncertain_clock_is_refused() {
        assert_eq!(POLICY.refusal(&reading(0, false, 5)), None);
        let why = POLICY
            .refusal(&reading(TIME_ERROR, true, 5))
            .expect("refused");
        assert!(why.contains("TIME_ERROR"), "{why}");
        let why = POLICY.refusal(&reading(0, true, 5)).expect("refused");
        assert!(why.contains("STA_UNSYNC"), "{why}");
        let why = POLICY.refusal(&reading(0, false, 250)).expect("refused");
        assert!(why.contains("250 ms") && why.contains("100 ms"), "{why}");
        let err = Fixed(Err(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        )));
        assert!(POLICY.refusal(&err).expect("refused").contains("adjtimex"));
        let off = ClockPolicy {
            require_synchronised: false,
            ..POLICY
        };
        assert_eq!(off.refusal(&reading(TIME_ERROR, true, 5000)), None);
    }

    #[test]
    fn the_kernel_clock_can_be_read() {
        // Whatever this machine's state, the read-only call must succeed and agree with itself.
        let r = KernelClock.read().expect("adjtimex");
        assert!((0..=TIME_ERROR).contains(&r.state), "{r:?}");
        if r.state == TIME_ERROR {
            assert!(!r.synchronised());
        }
    }
}
