//! The token bucket behind `rate-take`, by the generic cell rate algorithm (GCRA): a bucket
//! refills one unit every `interval = period / limit` and is described by its *theoretical
//! arrival time* (TAT), the moment it will be full again. Taking `cost` units moves the TAT
//! `cost` intervals later, giving units back moves it earlier (never before now: full); a
//! take fits if the TAT stays within `capacity` intervals of now.
//!
//! The TAT is kept as two numbers, `TAT = stamp + debt × interval`: the time of the last
//! change in whole microseconds and the units owed then. One Unix-time double would round
//! every take by up to an eighth of a microsecond, always the same way for a given
//! interval: 3000 takes at 7 ms / 3000 drift by over 100 units. Whole microseconds are exact
//! in a double and the debt keeps the precision of the bucket's size.
//!
//! `redis/take.lua` runs the same arithmetic in Lua (whose numbers are doubles), in the
//! same order, so both stores answer alike.

/// A bucket's shape, as the guest gave it: `limit` units per `period_millis`, plus `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    limit: u64,
    period_millis: u64,
    burst: u64,
}

impl Rate {
    /// A zero period refills at once: it is taken as one millisecond. A zero limit never
    /// refills and has no interval; a filter wanting a one-off allowance uses a long period.
    pub fn new(limit: u64, period_millis: u64, burst: u64) -> Result<Self, String> {
        if limit == 0 {
            return Err("rate-take: limit must be at least 1".to_owned());
        }
        Ok(Rate {
            limit,
            period_millis: period_millis.max(1),
            burst,
        })
    }

    pub fn limit(self) -> u64 {
        self.limit
    }

    pub fn period_millis(self) -> u64 {
        self.period_millis
    }

    pub fn burst(self) -> u64 {
        self.burst
    }

    /// Microseconds to refill one unit.
    fn interval(self) -> f64 {
        self.period_millis as f64 * 1000.0 / self.limit as f64
    }

    /// What the bucket holds when full, in units.
    fn capacity(self) -> f64 {
        self.limit as f64 + self.burst as f64
    }
}

/// One `rate-take` call: how much, and whether it may overdraw the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Take {
    pub cost: i64,
    pub force: bool,
}

/// The bucket after a take, as `rate-state` tells the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateState {
    pub allowed: bool,
    /// Whole units left (rounded down); negative when the bucket is in debt.
    pub remaining: i64,
    /// Milliseconds until full again (rounded up).
    pub reset_millis: u64,
    /// When refused: milliseconds until the bucket holds `cost` (rounded up, at least 1).
    /// A cost above the bucket's capacity never fits: then the time until it is full, but
    /// at least one period, so that a client honouring it does not retry at once.
    pub retry_after_millis: u64,
}

/// A bucket that is not full: its TAT as `stamp + debt × interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tat {
    pub stamp_micros: u64,
    /// Units owed at `stamp_micros`; positive.
    pub debt: f64,
}

/// What a take did to a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outcome {
    pub state: RateState,
    /// The bucket to keep after an allowed take, `None` when it is full (no state needed).
    /// A refused take changes nothing.
    pub tat: Option<Tat>,
}

/// Applies `take` at `now_micros` to the bucket `tat` (`None`: full).
pub(crate) fn take(tat: Option<Tat>, now_micros: u64, rate: Rate, take: Take) -> Outcome {
    let interval = rate.interval();
    let capacity = rate.capacity();
    // Rounding slack, in units: far below one unit, far above a double's error at the
    // bucket's size.
    let slack = 1e-9 * capacity;
    let cost = take.cost as f64;
    // What is owed now: the debt less the refill since the stamp. A clock that went back
    // (another host's, or a step) is taken as standing still at the stamp.
    let (now_micros, owed) = match tat {
        None => (now_micros, 0.0),
        Some(tat) => {
            let now = now_micros.max(tat.stamp_micros);
            let elapsed = (now - tat.stamp_micros) as f64;
            (now, (tat.debt - elapsed / interval).max(0.0))
        }
    };
    // Giving units back cannot fill the bucket past full.
    let wanted = (owed + cost).max(0.0);
    let allowed = take.force || take.cost < 0 || wanted <= capacity + slack;
    let after = if allowed { wanted } else { owed };
    let remaining = (capacity - after + slack).floor();
    let reset_millis = millis_ceil(after * interval);
    let retry_after_millis = if allowed {
        0
    } else if cost > capacity {
        reset_millis.max(rate.period_millis)
    } else {
        millis_ceil((owed + cost - capacity) * interval).max(1)
    };
    Outcome {
        state: RateState {
            allowed,
            remaining: remaining as i64,
            reset_millis,
            retry_after_millis,
        },
        tat: (after > 0.0).then_some(Tat {
            stamp_micros: now_micros,
            debt: after,
        }),
    }
}

/// Microseconds → whole milliseconds, rounded up (less a nanosecond of rounding slack);
/// 0 for anything not positive.
fn millis_ceil(micros: f64) -> u64 {
    ((micros - 0.001) / 1000.0).ceil().max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;
    const MILLI: u64 = 1_000;
    /// A realistic Unix time, so the tests see the precision the stores get.
    const T0: u64 = 1_767_225_600 * SECOND;

    /// A bucket driven through [`take`] on an explicit clock.
    struct Bucket {
        rate: Rate,
        tat: Option<Tat>,
    }

    impl Bucket {
        fn new(limit: u64, period_millis: u64, burst: u64) -> Self {
            Bucket {
                rate: Rate::new(limit, period_millis, burst).unwrap(),
                tat: None,
            }
        }

        fn take(&mut self, at: u64, cost: i64, force: bool) -> RateState {
            let outcome = take(self.tat, at, self.rate, Take { cost, force });
            if outcome.state.allowed {
                self.tat = outcome.tat;
            }
            outcome.state
        }
    }

    #[test]
    fn a_fresh_bucket_allows_limit_plus_burst_then_refuses() {
        let mut bucket = Bucket::new(10, 1000, 5);
        for taken in 1..=15 {
            let state = bucket.take(T0, 1, false);
            assert!(state.allowed, "take {taken}");
            assert_eq!(state.remaining, 15 - taken);
        }
        let refused = bucket.take(T0, 1, false);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // One unit refills every 100 ms; the bucket is full again after 1.5 s.
        assert_eq!(refused.retry_after_millis, 100);
        assert_eq!(refused.reset_millis, 1500);
    }

    #[test]
    fn refill_is_proportional_to_elapsed_time() {
        let mut bucket = Bucket::new(10, 1000, 0);
        assert!(bucket.take(T0, 10, false).allowed);
        assert!(!bucket.take(T0, 1, false).allowed);
        // 350 ms refill 3.5 units: 3 whole ones can be taken, not 4.
        let later = T0 + 350 * MILLI;
        assert!(!bucket.take(later, 4, false).allowed);
        let state = bucket.take(later, 3, false);
        assert!(state.allowed);
        assert_eq!(state.remaining, 0);
        // The half unit left is kept: 50 ms more make it a whole one.
        assert!(!bucket.take(later + 49 * MILLI, 1, false).allowed);
        assert!(bucket.take(later + 50 * MILLI, 1, false).allowed);
        // Refill stops at full, however long the bucket is left alone.
        let state = bucket.take(T0 + 3600 * SECOND, 0, false);
        assert_eq!(state.remaining, 10);
        assert_eq!(state.reset_millis, 0);
    }

    #[test]
    fn a_refused_take_changes_nothing() {
        let mut bucket = Bucket::new(2, 1000, 0);
        assert!(bucket.take(T0, 2, false).allowed);
        let tat = bucket.tat;
        for _ in 0..5 {
            assert!(!bucket.take(T0, 1, false).allowed);
        }
        assert_eq!(bucket.tat, tat);
        assert!(bucket.take(T0 + 500 * MILLI, 1, false).allowed);
    }

    #[test]
    fn force_takes_into_debt_and_delays_later_takes() {
        let mut bucket = Bucket::new(10, 1000, 0);
        let state = bucket.take(T0, 25, true);
        assert!(state.allowed);
        assert_eq!(state.remaining, -15);
        // 15 units of debt plus 10 to fill: 2.5 s.
        assert_eq!(state.reset_millis, 2500);
        let refused = bucket.take(T0 + SECOND, 1, false);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, -5);
        // Out of debt at 1.5 s, one unit at 1.6 s.
        assert_eq!(refused.retry_after_millis, 600);
        assert!(bucket.take(T0 + 1600 * MILLI, 1, false).allowed);
    }

    #[test]
    fn negative_costs_refund_up_to_full() {
        let mut bucket = Bucket::new(10, 1000, 0);
        bucket.take(T0, 8, false);
        let state = bucket.take(T0, -3, false);
        assert!(state.allowed);
        assert_eq!(state.remaining, 5);
        let state = bucket.take(T0, -100, false);
        assert_eq!(state.remaining, 10);
        assert_eq!(state.reset_millis, 0);
        assert_eq!(bucket.tat, None, "a full bucket needs no state");
        // A refund also pays back debt.
        bucket.take(T0, 30, true);
        assert_eq!(bucket.take(T0, -25, false).remaining, 5);
    }

    #[test]
    fn a_cost_above_capacity_is_refused_with_at_least_a_period() {
        let mut bucket = Bucket::new(10, 60_000, 5);
        let refused = bucket.take(T0, 16, false);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 15);
        assert_eq!(refused.reset_millis, 0);
        assert_eq!(refused.retry_after_millis, 60_000);
        // With force it goes through.
        assert_eq!(bucket.take(T0, 16, true).remaining, -1);
    }

    #[test]
    fn intervals_that_are_not_round_add_up_exactly() {
        // 3000 units per 7 ms: an interval of 2.333… µs.
        let mut bucket = Bucket::new(3000, 7, 0);
        let allowed = (0..4000)
            .filter(|_| bucket.take(T0, 1, false).allowed)
            .count();
        assert_eq!(allowed, 3000);
        // 7 ms refill the whole bucket, 1 ms three sevenths of it.
        let allowed = (0..4000)
            .filter(|_| bucket.take(T0 + 7 * MILLI, 1, false).allowed)
            .count();
        assert_eq!(allowed, 3000);
        let allowed = (0..4000)
            .filter(|_| bucket.take(T0 + 8 * MILLI, 1, false).allowed)
            .count();
        assert_eq!(allowed, 428);
    }

    #[test]
    fn a_clock_going_back_stands_still() {
        let mut bucket = Bucket::new(10, 1000, 0);
        bucket.take(T0, 10, false);
        assert!(!bucket.take(T0 - SECOND, 1, false).allowed);
        // A refund at the earlier time is made at the stamp's time, so the second
        // between the two is not refilled twice.
        assert_eq!(bucket.take(T0 - SECOND, -1, false).remaining, 1);
        assert_eq!(bucket.take(T0, 0, false).remaining, 1);
    }

    #[test]
    fn zero_limit_is_rejected_and_zero_period_is_one_millisecond() {
        assert!(Rate::new(0, 1000, 5).is_err());
        assert_eq!(Rate::new(1, 0, 0).unwrap().period_millis(), 1);
    }
}
