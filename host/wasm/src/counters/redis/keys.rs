//! Redis key layout. Every key of a scope starts with `nantian:<scope>:`, the scope with
//! `%` and `:` percent-encoded so that it ends at the first `:`, and two scopes never
//! share a key whatever their names:
//!
//! - `nantian:<scope>:w:<window millis>:<key>:<window index>`: a fixed-window counter
//!   (`counter-add`), the window index being `unix millis / window millis` on the Redis
//!   server's clock. It expires when its window ends.
//! - `nantian:<scope>:b:<key>`: a token bucket (`rate-take`), `"<stamp micros> <debt>"`
//!   (see `bucket.rs`). It expires when the bucket is full again; absent means full.
//!
//! The guest's key goes in verbatim: it is the last part before the index, which the
//! scripts append after the last `:`.

/// The key prefix of one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScopeKeys {
    prefix: String,
}

impl ScopeKeys {
    pub fn new(scope: &str) -> Self {
        let mut prefix = String::with_capacity(scope.len() + 10);
        prefix.push_str("nantian:");
        for c in scope.chars() {
            match c {
                '%' => prefix.push_str("%25"),
                ':' => prefix.push_str("%3A"),
                c => prefix.push(c),
            }
        }
        prefix.push(':');
        ScopeKeys { prefix }
    }

    /// The window counter's key without its window index (the script adds it).
    pub fn window(&self, key: &str, window_millis: u64) -> String {
        format!("{}w:{window_millis}:{key}", self.prefix)
    }

    pub fn bucket(&self, key: &str) -> String {
        format!("{}b:{key}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_with_separators_do_not_collide() {
        let a = ScopeKeys::new("a:b");
        let b = ScopeKeys::new("a");
        assert_eq!(a.bucket("k"), "nantian:a%3Ab:b:k");
        assert_ne!(a.bucket("k"), b.bucket("b:k"));
        assert_ne!(a.window("k", 1000), b.bucket("w:1000:k"));
        assert_eq!(ScopeKeys::new("50%").bucket("k"), "nantian:50%25:b:k");
        assert_eq!(
            ScopeKeys::new("tokenpolicy/team-a/per-tenant").window("tenant:1", 60_000),
            "nantian:tokenpolicy/team-a/per-tenant:w:60000:tenant:1"
        );
    }
}
