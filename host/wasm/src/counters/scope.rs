//! A binding's counter scope, as configured: the name its counters are kept under and,
//! optionally, the Redis server that keeps them.

/// Where a binding's counters live when they are not private to it.
///
/// Bindings with equal `scope` share their counters, which outlive any one binding (a
/// configuration change re-creates bindings, not scopes). With `redis_url` the counters are
/// in that Redis server, shared by every host using it; without, in this host's memory.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct CounterScope {
    /// Names the counters, e.g. `tokenpolicy/team-a/per-tenant`. Must not be empty.
    pub scope: String,
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://…` for TLS (always verified
    /// against the system's roots).
    pub redis_url: Option<String>,
}

impl CounterScope {
    /// A scope kept in this host's memory.
    pub fn local(scope: impl Into<String>) -> Self {
        CounterScope {
            scope: scope.into(),
            redis_url: None,
        }
    }

    /// A scope kept in the Redis server at `redis_url`.
    pub fn redis(scope: impl Into<String>, redis_url: impl Into<String>) -> Self {
        CounterScope {
            scope: scope.into(),
            redis_url: Some(redis_url.into()),
        }
    }
}

/// Without the URL's password: the configuration is logged and dumped.
impl std::fmt::Debug for CounterScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterScope")
            .field("scope", &self.scope)
            .field("redis_url", &self.redis_url.as_deref().map(redact_password))
            .finish()
    }
}

/// `url` with the password of its user info replaced by `***`, for logs and messages.
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user_info = &rest[..at];
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_nothing_else() {
        assert_eq!(
            redact_password("redis://user:s3cr@t@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact_password("rediss://:pw@host"), "rediss://:***@host");
        assert_eq!(
            redact_password("redis://host:6379/1?x=a@b"),
            "redis://host:6379/1?x=a@b"
        );
        assert_eq!(redact_password("redis://user@host"), "redis://user@host");
        let debug = format!("{:?}", CounterScope::redis("s", "redis://u:hunter2@h"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
