//! Closing client connections that sit idle or never finish a request head.
//!
//! hyper's own `header_read_timeout` arms a fresh timer for every request head (a boxed
//! sleep registered in and removed from Tokio's timer wheel each time), which cost about a
//! microsecond per request. Instead each connection counts what it does — requests
//! started, responses not yet fully written — and one coarse per-connection tick looks
//! at the counters: a connection with nothing in flight and no new request for
//! [`IDLE_TICKS`] ticks is idle (keep-alive) or stuck in a request head (slowloris), and
//! is shut down. Per request this is a few relaxed atomic operations (the counters and the
//! guard's handle on them).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::{BoxError, ProxyBody};

/// How often a connection's counters are looked at.
pub const IDLE_TICK: Duration = Duration::from_secs(10);
/// Quiet ticks before a graceful shutdown (GOAWAY on HTTP/2, close when idle on
/// HTTP/1.1); one more quiet tick after that drops the connection outright.
pub const IDLE_TICKS: u32 = 3;

/// What one client connection is doing, as its watchdog sees it.
#[derive(Debug, Default)]
pub struct Activity {
    started: AtomicU64,
    in_flight: AtomicU32,
}

impl Activity {
    /// Marks a request as started; the guard ends it when dropped (with the response
    /// body, once hyper has written it, or with the request if it never got that far).
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn snapshot(&self) -> (u64, bool) {
        (
            self.started.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed) > 0,
        )
    }
}

pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the watchdog wants done after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Shutdown,
    Drop,
}

/// Counts quiet ticks for one connection.
#[derive(Debug, Default)]
pub struct Watchdog {
    last_started: u64,
    quiet: u32,
}

impl Watchdog {
    pub fn tick(&mut self, activity: &Activity) -> Verdict {
        let (started, busy) = activity.snapshot();
        if busy || started != self.last_started {
            self.last_started = started;
            self.quiet = 0;
            return Verdict::Keep;
        }
        self.quiet += 1;
        match self.quiet {
            q if q < IDLE_TICKS => Verdict::Keep,
            q if q == IDLE_TICKS => Verdict::Shutdown,
            _ => Verdict::Drop,
        }
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
/// Not boxed again: hyper serves this type directly.
pub struct ServedBody {
    inner: ProxyBody,
    _in_flight: InFlight,
}

impl ServedBody {
    pub fn new(inner: ProxyBody, in_flight: InFlight) -> Self {
        ServedBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl Body for ServedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_connections_are_shut_down_then_dropped() {
        let activity = Arc::new(Activity::default());
        let mut dog = Watchdog::default();
        for _ in 1..IDLE_TICKS {
            assert_eq!(dog.tick(&activity), Verdict::Keep);
        }
        assert_eq!(dog.tick(&activity), Verdict::Shutdown);
        assert_eq!(dog.tick(&activity), Verdict::Drop);
    }

    #[test]
    fn a_new_request_or_one_in_flight_keeps_the_connection() {
        let activity = Arc::new(Activity::default());
        let mut dog = Watchdog::default();
        for _ in 1..IDLE_TICKS {
            dog.tick(&activity);
        }
        drop(activity.start());
        assert_eq!(dog.tick(&activity), Verdict::Keep, "a request started");
        let long_response = activity.start();
        for _ in 0..IDLE_TICKS * 3 {
            assert_eq!(dog.tick(&activity), Verdict::Keep, "still streaming");
        }
        drop(long_response);
        for _ in 1..IDLE_TICKS {
            assert_eq!(dog.tick(&activity), Verdict::Keep);
        }
        assert_eq!(dog.tick(&activity), Verdict::Shutdown);
    }
}
