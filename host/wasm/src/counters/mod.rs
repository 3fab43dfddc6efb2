//! Counters for filters: fixed-window counters (`counter-add`, `counter-get`) and token
//! buckets (`rate-take`), kept where the binding's [`CounterScope`] says:
//!
//! - no scope: in this host's memory, private to the binding, dropped with it;
//! - a scope: in this host's memory under the scope's name, shared by the bindings naming
//!   it and kept across configuration changes (idle keys are swept as new ones come);
//! - a scope with a Redis URL: in that Redis server, shared by every host using it.

mod bucket;
mod local;
mod redis;
mod scope;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

pub use self::scope::CounterScope;

pub(crate) use self::bucket::{Rate, RateState, Take};
use self::local::{LocalCounters, Namespace};
use self::redis::{RedisCounters, ScopeKeys};

/// The counter store could not be reached; the message is the guest's `Err`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CounterError(pub String);

/// Where one binding's counters live.
pub(crate) enum Counters {
    Local {
        store: Arc<LocalCounters>,
        namespace: Namespace,
    },
    Redis {
        store: Arc<RedisCounters>,
        keys: ScopeKeys,
    },
}

impl Counters {
    /// Adds `delta` to `key`'s current window of `window_millis` (aligned to the Unix
    /// epoch) and returns the window's new total.
    pub fn add(&self, key: &str, delta: i64, window_millis: u64) -> Result<i64, CounterError> {
        match self {
            Counters::Local { store, namespace } => {
                Ok(store.add(namespace, key, delta, window_millis, now_micros()))
            }
            Counters::Redis { store, keys } => store.add(keys, key, delta, window_millis),
        }
    }

    /// The total of `key`'s current window, unchanged.
    pub fn get(&self, key: &str, window_millis: u64) -> Result<i64, CounterError> {
        match self {
            Counters::Local { store, namespace } => {
                Ok(store.get(namespace, key, window_millis, now_micros()))
            }
            Counters::Redis { store, keys } => store.get(keys, key, window_millis),
        }
    }

    /// Takes from the token bucket `key`.
    pub fn take(&self, key: &str, rate: Rate, take: Take) -> Result<RateState, CounterError> {
        match self {
            Counters::Local { store, namespace } => {
                Ok(store.take(namespace, key, rate, take, now_micros()))
            }
            Counters::Redis { store, keys } => store.take(keys, key, rate, take),
        }
    }
}

/// A binding's private counters go with it.
impl Drop for Counters {
    fn drop(&mut self) {
        if let Counters::Local {
            store,
            namespace: namespace @ Namespace::Binding(_),
        } = self
        {
            store.forget(namespace);
        }
    }
}

/// The counter stores of one engine: its memory, and one Redis store per distinct URL,
/// shared by the bindings naming it and closed when the last of them goes.
pub(crate) struct CounterStores {
    local: Arc<LocalCounters>,
    redis: Mutex<HashMap<String, Weak<RedisCounters>>>,
}

impl CounterStores {
    pub fn new() -> Self {
        CounterStores {
            local: Arc::new(LocalCounters::new()),
            redis: Mutex::new(HashMap::new()),
        }
    }

    /// The counters of a new binding: private ones under `binding_id` without a scope. An
    /// empty scope or an invalid Redis URL is an error saying which.
    pub fn for_binding(
        &self,
        scope: Option<&CounterScope>,
        binding_id: u64,
    ) -> Result<Counters, String> {
        let Some(scope) = scope else {
            return Ok(Counters::Local {
                store: self.local.clone(),
                namespace: Namespace::Binding(binding_id),
            });
        };
        if scope.scope.is_empty() {
            return Err("counter scope must not be empty".to_owned());
        }
        match scope.redis_url.as_deref() {
            None => Ok(Counters::Local {
                store: self.local.clone(),
                namespace: Namespace::Scope(Arc::from(scope.scope.as_str())),
            }),
            Some(url) => Ok(Counters::Redis {
                store: self.redis(url)?,
                keys: ScopeKeys::new(&scope.scope),
            }),
        }
    }

    fn redis(&self, url: &str) -> Result<Arc<RedisCounters>, String> {
        let mut stores = self.redis.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = stores.get(url).and_then(Weak::upgrade) {
            return Ok(store);
        }
        let store = Arc::new(RedisCounters::open(url)?);
        stores.retain(|_, store| store.strong_count() > 0);
        stores.insert(url.to_owned(), Arc::downgrade(&store));
        Ok(store)
    }
}

/// Microseconds since the Unix epoch: windows are aligned to it, so a host's local day
/// window is a UTC day as it is in Redis.
fn now_micros() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_share_counters_by_scope_and_store() {
        let stores = CounterStores::new();
        let private = stores.for_binding(None, 1).unwrap();
        let scoped = stores
            .for_binding(Some(&CounterScope::local("s")), 2)
            .unwrap();
        let same_scope = stores
            .for_binding(Some(&CounterScope::local("s")), 3)
            .unwrap();
        private.add("k", 1, 60_000).unwrap();
        scoped.add("k", 5, 60_000).unwrap();
        assert_eq!(same_scope.add("k", 1, 60_000), Ok(6));
        assert_eq!(private.get("k", 60_000), Ok(1));
        // A binding going away takes its private counters, not its scope's.
        drop(private);
        drop(scoped);
        assert_eq!(stores.for_binding(None, 1).unwrap().get("k", 60_000), Ok(0));
        assert_eq!(same_scope.get("k", 60_000), Ok(6));
    }

    #[test]
    fn one_redis_store_per_url_while_it_is_used() {
        let stores = CounterStores::new();
        let store_of = |counters: &Counters| match counters {
            Counters::Redis { store, .. } => Arc::as_ptr(store),
            Counters::Local { .. } => panic!("not a Redis store"),
        };
        let url = "redis://127.0.0.1:1";
        let a = stores
            .for_binding(Some(&CounterScope::redis("a", url)), 1)
            .unwrap();
        let b = stores
            .for_binding(Some(&CounterScope::redis("b", url)), 2)
            .unwrap();
        let other = stores
            .for_binding(Some(&CounterScope::redis("a", "redis://127.0.0.1:2")), 3)
            .unwrap();
        assert_eq!(store_of(&a), store_of(&b));
        assert_ne!(store_of(&a), store_of(&other));
        drop((a, b));
        assert!(stores.redis.lock().unwrap()[url].upgrade().is_none());
    }

    #[test]
    fn empty_scopes_and_bad_urls_are_refused_with_the_reason() {
        let stores = CounterStores::new();
        let error = |scope: CounterScope| stores.for_binding(Some(&scope), 1).err().unwrap();
        assert!(error(CounterScope::local("")).contains("must not be empty"));
        let bad_scheme = error(CounterScope::redis("s", "http://u:pw@host:6379"));
        assert!(bad_scheme.contains("redis://"), "{bad_scheme}");
        assert!(!bad_scheme.contains("pw"), "{bad_scheme}");
        let bad_port = error(CounterScope::redis("s", "redis://host:99999"));
        assert!(bad_port.contains("invalid Redis URL"), "{bad_port}");
    }
}
