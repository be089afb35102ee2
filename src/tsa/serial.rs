//! Unique serial numbers for timestamp tokens (RFC 3161 §2.4.2: "unique for each TimeStampToken
//! issued by a given TSA").
//!
//! A serial is 19 bytes: 8 bytes of the issuing time in nanoseconds since the epoch, made
//! strictly increasing within the process, then 11 bytes (88 bits) from the OS CSPRNG, drawn
//! once per process start and kept. So:
//! * within one process, the time part never repeats;
//! * across restarts of one instance, the time part differs unless the clock was set back
//!   between them, and even then the random part differs;
//! * across instances serving side by side (stateless, behind one load balancer), the random
//!   parts differ: two instances collide only if they draw the same 88 bits, about 1 in 10^26.
//!
//! No database or coordination is needed, which keeps the TSA stateless (one HSM signature per
//! token). The top bit of the time part is clear until the year 2262, so the INTEGER is
//! positive and always 19 bytes long.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of process-wide randomness in every serial.
const RANDOM_LEN: usize = 11;

/// Hands out serials; one per TSA process.
pub struct SerialSource {
    last_nanos: AtomicU64,
    instance: [u8; RANDOM_LEN],
}

impl SerialSource {
    /// A source with fresh randomness from the OS.
    pub fn new() -> std::io::Result<Self> {
        let mut instance = [0u8; RANDOM_LEN];
        getrandom::getrandom(&mut instance).map_err(std::io::Error::other)?;
        Ok(Self {
            last_nanos: AtomicU64::new(0),
            instance,
        })
    }

    /// The next serial for a token issued at `now_nanos` (nanoseconds since the epoch).
    pub fn next(&self, now_nanos: u64) -> [u8; 8 + RANDOM_LEN] {
        // Strictly increasing: max(now, last + 1), installed atomically.
        let mut prev = self.last_nanos.load(Ordering::Relaxed);
        let t = loop {
            let t = now_nanos.max(prev.saturating_add(1)) & (u64::MAX >> 1);
            match self.last_nanos.compare_exchange_weak(
                prev,
                t,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break t,
                Err(p) => prev = p,
            }
        };
        let mut out = [0u8; 8 + RANDOM_LEN];
        out[..8].copy_from_slice(&t.to_be_bytes());
        out[8..].copy_from_slice(&self.instance);
        // Never a leading zero byte (a DER INTEGER would have to drop it): the time part's top
        // byte is non-zero from 1972 on; before that (a clock set far back) force a bit.
        out[0] |= if out[0] == 0 { 0x01 } else { 0 };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_unique_in_a_process_and_between_processes() {
        let a = SerialSource::new().expect("rng");
        let b = SerialSource::new().expect("rng");
        let mut seen = std::collections::HashSet::new();
        // The same nanosecond over and over, and a clock that goes back.
        for now in [5u64, 5, 5, 4, 3, 1_700_000_000_000_000_000, 1] {
            assert!(seen.insert(a.next(now)));
            assert!(seen.insert(b.next(now)));
        }
        let s = a.next(1_700_000_000_000_000_000);
        assert!(s[0] != 0 && s[0] & 0x80 == 0, "positive, 19 bytes: {s:?}");
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..4)
                .map(|_| sc.spawn(|| (0..1000).map(|_| a.next(42)).collect::<Vec<_>>()))
                .collect();
            for h in handles {
                for s in h.join().expect("thread") {
                    assert!(seen.insert(s));
                }
            }
        });
    }
}
