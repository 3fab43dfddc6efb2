//! The `Date` header of responses the gateway writes itself, formatted once per second.
//!
//! Every HTTP/1.1 response carries a `Date` (RFC 9110 §6.6.1), and reading the clock for
//! each one costs two system-clock reads per request in hyper. Here one thread stores the
//! current second; each worker thread keeps the formatted text and formats it again only
//! when that second moved. Per response this is one relaxed atomic load.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT`: always this long.
pub const DATE_LEN: usize = 29;

static NOW_SECS: AtomicU64 = AtomicU64::new(0);
static TICKER: OnceLock<()> = OnceLock::new();

thread_local! {
    static FORMATTED: RefCell<(u64, [u8; DATE_LEN])> = const { RefCell::new((0, [0; DATE_LEN])) };
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Starts the thread that keeps the current second (once per process).
fn ensure_ticking() {
    TICKER.get_or_init(|| {
        NOW_SECS.store(unix_secs(), Ordering::Relaxed);
        let started = std::thread::Builder::new()
            .name("http-date".into())
            .spawn(|| {
                loop {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    NOW_SECS.store(now.as_secs(), Ordering::Relaxed);
                    // Wake just after the next second starts.
                    let into_second = Duration::from_nanos(u64::from(now.subsec_nanos()));
                    std::thread::sleep(Duration::from_secs(1) - into_second);
                }
            });
        if started.is_err() {
            // Without the thread the date would freeze; the caller reads the clock itself.
            NOW_SECS.store(u64::MAX, Ordering::Relaxed);
        }
    });
}

/// Appends the current date, as an HTTP-date, to `out`.
pub fn append_date(out: &mut Vec<u8>) {
    ensure_ticking();
    let mut secs = NOW_SECS.load(Ordering::Relaxed);
    if secs == u64::MAX {
        secs = unix_secs();
    }
    FORMATTED.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            cached.1.copy_from_slice(&text.as_bytes()[..DATE_LEN]);
            cached.0 = secs;
        }
        out.extend_from_slice(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_an_http_date_of_now() {
        let mut out = Vec::new();
        append_date(&mut out);
        assert_eq!(out.len(), DATE_LEN);
        let parsed = httpdate::parse_http_date(std::str::from_utf8(&out).unwrap()).unwrap();
        let skew = SystemTime::now()
            .duration_since(parsed)
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_secs(3), "date off by {skew:?}");
    }
}
