//! The local store behind `counter-add` / `counter-get`: fixed-window counters, sharded by
//! key so concurrent requests on different keys never wait on the same lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

const SHARDS: usize = 64;
/// Above this many keys a shard drops windows that have ended before adding a new key, so
/// keys that stop being used do not accumulate.
const SWEEP_ABOVE: usize = 4096;

/// Counters of every binding of one engine. Keys are namespaced per binding.
pub(crate) struct CounterStore {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

/// (binding namespace, window length) → key → the key's current window.
type Shard = HashMap<(u64, u64), HashMap<String, Window>>;

#[derive(Clone, Copy)]
struct Window {
    /// `now / window_millis` of the window `total` belongs to.
    index: u64,
    total: i64,
}

impl CounterStore {
    pub fn new() -> Self {
        CounterStore {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, namespace: u64, key: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one((namespace, key)) as usize % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `delta` to `key`'s window containing `now_millis` and returns the new total.
    pub fn add(
        &self,
        namespace: u64,
        key: &str,
        delta: i64,
        window_millis: u64,
        now_millis: u64,
    ) -> i64 {
        let window_millis = window_millis.max(1);
        let index = now_millis / window_millis;
        let mut shard = self.shard(namespace, key);
        let keys = shard.entry((namespace, window_millis)).or_default();
        if let Some(window) = keys.get_mut(key) {
            if window.index != index {
                *window = Window { index, total: 0 };
            }
            window.total = window.total.saturating_add(delta);
            return window.total;
        }
        if keys.len() >= SWEEP_ABOVE {
            keys.retain(|_, window| window.index >= index);
        }
        keys.insert(
            key.to_owned(),
            Window {
                index,
                total: delta,
            },
        );
        delta
    }

    /// The total of `key`'s window containing `now_millis` (0 if nothing was added).
    pub fn get(&self, namespace: u64, key: &str, window_millis: u64, now_millis: u64) -> i64 {
        let window_millis = window_millis.max(1);
        let index = now_millis / window_millis;
        let shard = self.shard(namespace, key);
        shard
            .get(&(namespace, window_millis))
            .and_then(|keys| keys.get(key))
            .filter(|window| window.index == index)
            .map_or(0, |window| window.total)
    }

    /// Drops every counter of a binding that went away.
    pub fn forget(&self, namespace: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.retain(|(ns, _), _| *ns != namespace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_a_window_and_resets_in_the_next() {
        let store = CounterStore::new();
        assert_eq!(store.add(1, "k", 2, 1000, 10_500), 2);
        assert_eq!(store.add(1, "k", 3, 1000, 10_999), 5);
        assert_eq!(store.get(1, "k", 1000, 10_999), 5);
        assert_eq!(store.get(1, "k", 1000, 11_000), 0);
        assert_eq!(store.add(1, "k", 1, 1000, 11_000), 1);
    }

    #[test]
    fn keys_are_private_to_namespace_and_window_length() {
        let store = CounterStore::new();
        store.add(1, "k", 5, 1000, 0);
        assert_eq!(store.get(2, "k", 1000, 0), 0);
        assert_eq!(store.get(1, "k", 60_000, 0), 0);
        store.forget(1);
        assert_eq!(store.get(1, "k", 1000, 0), 0);
    }

    #[test]
    fn stale_windows_are_swept_when_a_shard_is_full() {
        let store = CounterStore::new();
        for i in 0..2 * SWEEP_ABOVE * SHARDS {
            store.add(7, &format!("old-{i}"), 1, 10, 0);
        }
        store.add(7, "new", 1, 10, 1_000);
        let total: usize = store
            .shards
            .iter()
            .map(|s| s.lock().unwrap().values().map(HashMap::len).sum::<usize>())
            .sum();
        assert!(
            total < 2 * SWEEP_ABOVE * SHARDS,
            "stale keys were dropped, {total} left"
        );
    }
}
