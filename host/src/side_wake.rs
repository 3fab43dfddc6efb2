//! Polling a task's rare events (a stop signal, a watchdog tick) only when one of them
//! woke it.
//!
//! A client connection's task is woken for every request it serves. `tokio::select!`
//! would poll every branch on each of those wake-ups: the stop signal's `Notify` takes a
//! lock to check its registration, the tick's timer is looked at, and neither has
//! anything to say. Here those futures are polled with a waker of their own, which
//! marks them due before waking the task; the task's wake-ups for its own traffic cost
//! one comparison of wakers and one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Wake, Waker};

/// The side events' waker and whether they are due for a poll.
pub struct SideWake {
    shared: Arc<Shared>,
    /// Handed to the side events' futures; wakes `task` through `shared`.
    side: Waker,
    /// The task waker last registered in `shared`, to notice if it changes.
    task: Option<Waker>,
}

struct Shared {
    due: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

impl Default for SideWake {
    fn default() -> Self {
        // Due at first: the side futures must be polled once to register.
        let shared = Arc::new(Shared {
            due: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        SideWake {
            side: Waker::from(shared.clone()),
            shared,
            task: None,
        }
    }
}

impl SideWake {
    /// The waker to poll the side futures with when they are due (one of them woke the
    /// task, or they were never polled, or the task's waker changed); `None` when they
    /// have nothing new. Clears the mark: a wake-up after this call marks them again.
    pub fn due(&mut self, task: &Waker) -> Option<&Waker> {
        if !self
            .task
            .as_ref()
            .is_some_and(|known| known.will_wake(task))
        {
            let mut registered = self
                .shared
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *registered = Some(task.clone());
            self.task = Some(task.clone());
            self.shared.due.store(true, Ordering::Release);
        }
        if !self.shared.due.load(Ordering::Acquire) {
            return None;
        }
        self.shared.due.store(false, Ordering::Release);
        Some(&self.side)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A task waker that counts its wake-ups.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn side_futures_are_due_first_then_only_after_waking_the_task() {
        let counting = Arc::new(Counting::default());
        let task = Waker::from(counting.clone());
        let mut side = SideWake::default();
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let mut changed = pin!(rx.changed());

        let waker = side.due(&task).expect("due before the first poll").clone();
        assert!(
            changed
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        assert!(side.due(&task).is_none(), "nothing happened since");

        tx.send(true).unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 1, "the task was woken");
        let waker = side.due(&task).expect("due after the wake-up").clone();
        assert!(matches!(
            changed.as_mut().poll(&mut Context::from_waker(&waker)),
            Poll::Ready(Ok(()))
        ));
        assert!(side.due(&task).is_none());
    }

    #[test]
    fn a_new_task_waker_makes_the_side_futures_due_again() {
        let first = Waker::from(Arc::new(Counting::default()));
        let second_count = Arc::new(Counting::default());
        let second = Waker::from(second_count.clone());
        let mut side = SideWake::default();
        assert!(side.due(&first).is_some());
        assert!(side.due(&first).is_none());
        assert!(side.due(&second).is_some(), "re-registered and due");
        side.side.wake_by_ref();
        assert_eq!(
            second_count.0.load(Ordering::SeqCst),
            1,
            "wakes the new one"
        );
    }
}
