//! Running a blocking round trip from a filter call. Filter calls are synchronous and run
//! on the host's Tokio workers: blocking one in place would stall every task queued on
//! it, so on a multi-thread runtime's worker the worker's other tasks are handed to another
//! thread first (`block_in_place`). Anywhere else the call blocks directly: outside a
//! runtime (tests, tools) nothing waits on the thread, and a current-thread runtime has no
//! other thread to hand its tasks to (`block_in_place` would panic there); the short
//! timeouts and the circuit breaker bound how long it waits.

use tokio::runtime::{Handle, RuntimeFlavor};

pub(super) fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// On a multi-thread runtime with one worker, a task blocking through `run_blocking`
    /// must let another task run meanwhile: here the blocked task waits for the other one.
    #[test]
    fn a_single_worker_keeps_running_tasks_while_one_blocks() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let blocked =
            runtime.spawn(async move { run_blocking(|| rx.recv_timeout(Duration::from_secs(5))) });
        runtime.spawn(async move { tx.send(()).unwrap() });
        let waited = runtime.block_on(blocked).unwrap();
        assert!(waited.is_ok(), "the second task never ran");
    }

    #[test]
    fn blocks_directly_on_a_current_thread_runtime_and_outside_any() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(async { run_blocking(|| 1) }), 1);
        assert_eq!(run_blocking(|| 2), 2);
    }
}
