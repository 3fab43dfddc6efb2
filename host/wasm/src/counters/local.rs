//! The in-memory counter store: fixed-window counters and token buckets of every binding
//! of one engine, sharded by key so concurrent requests on different keys rarely wait on
//! the same lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::bucket::{self, Rate, RateState, Take, Tat};

const SHARDS: usize = 64;
/// A shard drops expired entries (ended windows, refilled buckets) when it holds twice as
/// many keys as after its last sweep, and not before holding this many: the cost of a
/// sweep is spread over the keys added since, and memory stays within twice what is live.
const SWEEP_MIN: usize = 256;

/// Whose keys these are. Keys of different namespaces never meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Namespace {
    /// One binding's own counters, dropped with it.
    Binding(u64),
    /// A counter scope's, shared by every binding naming it and kept across bindings.
    Scope(Arc<str>),
}

pub(crate) struct LocalCounters {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Default)]
struct Shard {
    /// (namespace, window length) → key → the key's current window.
    windows: HashMap<(Namespace, u64), HashMap<String, Window>>,
    /// namespace → key → bucket (absent: full).
    buckets: HashMap<Namespace, HashMap<String, Bucket>>,
    /// Keys held in both maps.
    keys: usize,
    /// Sweep when `keys` passes this.
    sweep_at: usize,
}

#[derive(Clone, Copy)]
struct Window {
    /// `now / window_millis` of the window `total` belongs to.
    index: u64,
    total: i64,
}

#[derive(Clone, Copy)]
struct Bucket {
    tat: Tat,
    /// When it is full again, so a sweep can drop it without knowing its rate.
    full_at_micros: u64,
}

impl LocalCounters {
    pub fn new() -> Self {
        LocalCounters {
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        sweep_at: SWEEP_MIN,
                        ..Shard::default()
                    })
                })
                .collect(),
        }
    }

    fn shard(&self, namespace: &Namespace, key: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one((namespace, key)) as usize % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `delta` to `key`'s window containing `now_micros` and returns the new total.
    pub fn add(
        &self,
        namespace: &Namespace,
        key: &str,
        delta: i64,
        window_millis: u64,
        now_micros: u64,
    ) -> i64 {
        let window_millis = window_millis.max(1);
        let index = now_micros / 1000 / window_millis;
        let mut shard = self.shard(namespace, key);
        let keys = shard
            .windows
            .entry((namespace.clone(), window_millis))
            .or_default();
        if let Some(window) = keys.get_mut(key) {
            if window.index != index {
                *window = Window { index, total: 0 };
            }
            window.total = window.total.saturating_add(delta);
            return window.total;
        }
        keys.insert(
            key.to_owned(),
            Window {
                index,
                total: delta,
            },
        );
        shard.added_key(now_micros);
        delta
    }

    /// The total of `key`'s window containing `now_micros` (0 if nothing was added).
    pub fn get(
        &self,
        namespace: &Namespace,
        key: &str,
        window_millis: u64,
        now_micros: u64,
    ) -> i64 {
        let window_millis = window_millis.max(1);
        let index = now_micros / 1000 / window_millis;
        let shard = self.shard(namespace, key);
        shard
            .windows
            .get(&(namespace.clone(), window_millis))
            .and_then(|keys| keys.get(key))
            .filter(|window| window.index == index)
            .map_or(0, |window| window.total)
    }

    /// Takes from the token bucket `key` (see [`bucket::take`]).
    pub fn take(
        &self,
        namespace: &Namespace,
        key: &str,
        rate: Rate,
        take: Take,
        now_micros: u64,
    ) -> RateState {
        let mut shard = self.shard(namespace, key);
        let keys = shard.buckets.entry(namespace.clone()).or_default();
        let current = keys.get(key).map(|bucket| bucket.tat);
        let outcome = bucket::take(current, now_micros, rate, take);
        if !outcome.state.allowed {
            return outcome.state;
        }
        match outcome.tat {
            Some(tat) => {
                let full_at_micros =
                    now_micros.saturating_add(outcome.state.reset_millis.saturating_mul(1000));
                let bucket = Bucket {
                    tat,
                    full_at_micros,
                };
                if keys.insert(key.to_owned(), bucket).is_none() {
                    shard.added_key(now_micros);
                }
            }
            None => {
                if keys.remove(key).is_some() {
                    shard.keys -= 1;
                }
            }
        }
        outcome.state
    }

    /// Drops every counter of a namespace that went away.
    pub fn forget(&self, namespace: &Namespace) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.windows.retain(|(ns, _), _| ns != namespace);
            shard.buckets.remove(namespace);
            shard.count_keys();
        }
    }
}

impl Shard {
    fn added_key(&mut self, now_micros: u64) {
        self.keys += 1;
        if self.keys > self.sweep_at {
            self.sweep(now_micros);
            self.sweep_at = (2 * self.keys).max(SWEEP_MIN);
        }
    }

    /// Drops ended windows and full buckets, then the maps left empty.
    fn sweep(&mut self, now_micros: u64) {
        let now_millis = now_micros / 1000;
        self.windows.retain(|(_, window_millis), keys| {
            let index = now_millis / window_millis;
            keys.retain(|_, window| window.index >= index);
            !keys.is_empty()
        });
        self.buckets.retain(|_, keys| {
            keys.retain(|_, bucket| bucket.full_at_micros > now_micros);
            !keys.is_empty()
        });
        self.count_keys();
    }

    fn count_keys(&mut self) {
        self.keys = self.windows.values().map(HashMap::len).sum::<usize>()
            + self.buckets.values().map(HashMap::len).sum::<usize>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn scope(name: &str) -> Namespace {
        Namespace::Scope(Arc::from(name))
    }

    fn keys_held(store: &LocalCounters) -> usize {
        store.shards.iter().map(|s| s.lock().unwrap().keys).sum()
    }

    #[test]
    fn counts_within_a_window_and_resets_in_the_next() {
        let store = LocalCounters::new();
        let ns = Namespace::Binding(1);
        assert_eq!(store.add(&ns, "k", 2, 1000, 10_500 * MS), 2);
        assert_eq!(store.add(&ns, "k", 3, 1000, 10_999 * MS), 5);
        assert_eq!(store.get(&ns, "k", 1000, 10_999 * MS), 5);
        assert_eq!(store.get(&ns, "k", 1000, 11_000 * MS), 0);
        assert_eq!(store.add(&ns, "k", 1, 1000, 11_000 * MS), 1);
    }

    #[test]
    fn keys_are_private_to_namespace_and_window_length() {
        let store = LocalCounters::new();
        store.add(&Namespace::Binding(1), "k", 5, 1000, 0);
        assert_eq!(store.get(&Namespace::Binding(2), "k", 1000, 0), 0);
        assert_eq!(store.get(&Namespace::Binding(1), "k", 60_000, 0), 0);
        store.forget(&Namespace::Binding(1));
        assert_eq!(store.get(&Namespace::Binding(1), "k", 1000, 0), 0);
    }

    #[test]
    fn a_scope_is_shared_by_name_and_outlives_forgotten_bindings() {
        let store = LocalCounters::new();
        let rate = Rate::new(2, 60_000, 0).unwrap();
        let one = Take {
            cost: 1,
            force: false,
        };
        store.add(&scope("team-a"), "k", 5, 1000, 0);
        store.add(&Namespace::Binding(1), "k", 1, 1000, 0);
        assert!(store.take(&scope("team-a"), "k", rate, one, 0).allowed);
        // Another binding naming the same scope gets a namespace equal to the first one.
        assert_eq!(store.add(&scope("team-a"), "k", 1, 1000, 0), 6);
        assert_eq!(store.get(&scope("team-b"), "k", 1000, 0), 0);
        assert_eq!(store.take(&scope("team-a"), "k", rate, one, 0).remaining, 0);
        assert!(store.take(&scope("team-b"), "k", rate, one, 0).allowed);
        store.forget(&Namespace::Binding(1));
        assert_eq!(store.get(&Namespace::Binding(1), "k", 1000, 0), 0);
        assert_eq!(store.get(&scope("team-a"), "k", 1000, 0), 6);
        assert!(!store.take(&scope("team-a"), "k", rate, one, 0).allowed);
    }

    #[test]
    fn buckets_refill_on_the_given_clock_and_full_ones_are_dropped() {
        let store = LocalCounters::new();
        let ns = scope("s");
        let rate = Rate::new(10, 1000, 0).unwrap();
        let take = |cost, at| store.take(&ns, "k", rate, Take { cost, force: false }, at);
        assert!(take(10, 0).allowed);
        assert!(!take(1, 99 * MS).allowed);
        assert!(take(1, 100 * MS).allowed);
        assert_eq!(keys_held(&store), 1);
        // Given back in full: nothing left to keep.
        assert_eq!(take(-10, 100 * MS).remaining, 10);
        assert_eq!(keys_held(&store), 0);
    }

    #[test]
    fn expired_entries_are_swept_as_keys_are_added() {
        let store = LocalCounters::new();
        let ns = Namespace::Binding(7);
        let rate = Rate::new(1, 10, 0).unwrap();
        let old = SWEEP_MIN * SHARDS;
        for i in 0..old {
            store.add(&ns, &format!("window-{i}"), 1, 10, 0);
            let take = Take {
                cost: 1,
                force: false,
            };
            store.take(&ns, &format!("bucket-{i}"), rate, take, 0);
        }
        assert_eq!(keys_held(&store), 2 * old);
        // A second later every window has ended and every bucket refilled: the shards drop
        // them as new keys double their size.
        let new = 4 * old;
        for i in 0..new {
            store.add(&ns, &format!("new-{i}"), 1, 10, 1000 * MS);
        }
        assert_eq!(keys_held(&store), new);
    }
}
