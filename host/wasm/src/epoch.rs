//! The engine's one background thread: it advances the epoch every tick, which is what
//! lets a store's deadline interrupt a filter that runs too long.
//!
//! Guest code only runs inside a binding (its instances' `init` and phase calls), so the
//! thread ticks only while at least one binding is alive and sleeps otherwise: a host
//! with no filters configured pays nothing for a timer firing every millisecond.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ticks the epoch of an engine while it is held, until dropped.
pub(crate) struct EpochTicker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Live [`TickerHold`]s.
    holders: usize,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps the epoch ticking while alive (one per binding).
pub(crate) struct TickerHold {
    shared: Arc<Shared>,
}

impl Drop for TickerHold {
    fn drop(&mut self) {
        self.shared.lock().holders -= 1;
    }
}

impl EpochTicker {
    pub fn start(engine: wasmtime::Engine, tick: Duration) -> std::io::Result<Self> {
        Self::start_with(tick, move || engine.increment_epoch())
    }

    /// The ticker with any action per tick (tests count them).
    fn start_with(tick: Duration, on_tick: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nantian-wasm-epoch".into())
            .spawn(move || run(&thread_shared, tick, on_tick))?;
        Ok(EpochTicker {
            shared,
            thread: Some(thread),
        })
    }

    /// Starts ticking (if it was idle) until the returned hold is dropped.
    pub fn hold(&self) -> TickerHold {
        let mut state = self.shared.lock();
        state.holders += 1;
        if state.holders == 1 {
            self.shared.changed.notify_all();
        }
        TickerHold {
            shared: self.shared.clone(),
        }
    }
}

fn run(shared: &Shared, tick: Duration, on_tick: impl Fn()) {
    let mut state = shared.lock();
    loop {
        if state.stop {
            return;
        }
        if state.holders == 0 {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        // A full tick between increments, even if woken early: a deadline must never
        // fire before its budget.
        let next = Instant::now() + tick;
        loop {
            let now = Instant::now();
            if now >= next || state.stop {
                break;
            }
            state = shared
                .changed
                .wait_timeout(state, next - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if !state.stop {
            on_tick();
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread only waits and ticks; it sees `stop` within a tick.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Whether `ticks` moves within 200 ms.
    fn advances(ticks: &AtomicU64) -> bool {
        let before = ticks.load(Ordering::SeqCst);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            if ticks.load(Ordering::SeqCst) != before {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    #[test]
    fn ticks_only_while_held() {
        let ticks = Arc::new(AtomicU64::new(0));
        let counted = ticks.clone();
        let ticker = EpochTicker::start_with(Duration::from_millis(1), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        assert!(!advances(&ticks), "no holder: no ticks");
        let first = ticker.hold();
        let second = ticker.hold();
        drop(first);
        assert!(advances(&ticks), "held: ticking");
        drop(second);
        // A tick already under way may still land; after that, silence.
        std::thread::sleep(Duration::from_millis(5));
        assert!(!advances(&ticks), "released: no ticks");
        drop(ticker);
    }
}
