//! A circuit breaker: after a failed round trip, calls fail at once for [`OPEN_FOR`], then
//! one call tries the server again. While Redis is down, requests pay one timeout per
//! second between them, not one each.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long calls fail fast after a failure before one is let through to try again.
pub(super) const OPEN_FOR: Duration = Duration::from_secs(1);

pub(super) struct Breaker {
    state: Mutex<State>,
}

enum State {
    Closed,
    /// Calls are refused until `until`; the next call then goes through and moves
    /// `until` on, so that only it waits on the server.
    Open {
        until: Instant,
        cause: Arc<str>,
    },
}

/// What a success or a failure changed: outages are logged once, not per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Nothing,
    OutageStarted,
    Recovered,
}

impl Breaker {
    pub fn new() -> Self {
        Breaker {
            state: Mutex::new(State::Closed),
        }
    }

    /// Whether a call may go to the server at `now`; if not, the failure it waits out.
    pub fn admit(&self, now: Instant) -> Result<(), Arc<str>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *state {
            State::Closed => Ok(()),
            State::Open { until, cause } if now < *until => Err(cause.clone()),
            State::Open { until, .. } => {
                *until = now + OPEN_FOR;
                Ok(())
            }
        }
    }

    pub fn succeeded(&self) -> Change {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *state, State::Closed) {
            State::Closed => Change::Nothing,
            State::Open { .. } => Change::Recovered,
        }
    }

    pub fn failed(&self, now: Instant, cause: &str) -> Change {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let change = match &*state {
            State::Closed => Change::OutageStarted,
            State::Open { .. } => Change::Nothing,
        };
        *state = State::Open {
            until: now + OPEN_FOR,
            cause: Arc::from(cause),
        };
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_refuses_calls_until_one_probe_after_the_open_period() {
        let breaker = Breaker::new();
        let t0 = Instant::now();
        assert!(breaker.admit(t0).is_ok());
        assert_eq!(breaker.failed(t0, "refused"), Change::OutageStarted);
        let refused = breaker.admit(t0 + OPEN_FOR / 2).unwrap_err();
        assert_eq!(&*refused, "refused");
        // One probe after the period; the calls beside it still fail fast.
        assert!(breaker.admit(t0 + OPEN_FOR).is_ok());
        assert!(breaker.admit(t0 + OPEN_FOR).is_err());
        // The probe fails: the outage goes on, not logged again.
        assert_eq!(breaker.failed(t0 + OPEN_FOR, "timed out"), Change::Nothing);
        assert_eq!(
            &*breaker.admit(t0 + OPEN_FOR * 3 / 2).unwrap_err(),
            "timed out"
        );
        assert!(breaker.admit(t0 + OPEN_FOR * 2).is_ok());
        assert_eq!(breaker.succeeded(), Change::Recovered);
        assert!(breaker.admit(t0 + OPEN_FOR * 2).is_ok());
        assert_eq!(breaker.succeeded(), Change::Nothing);
    }
}
