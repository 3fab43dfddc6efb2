//! Runs the real filter components (header-modifier and the test-only fault filter)
//! through the public API; the Redis tests start a `redis-server` (skipped without one,
//! except under `CI`). Build the filters first:
//! `cargo build --profile filter --target wasm32-wasip2 -p nantian-filter-header-modifier -p nantian-filter-fault`.

mod bench;
mod cache;
mod calls;
mod counters;
mod failures;
mod instances;
// The end-to-end tests' `redis-server` helper (std only, so it can be shared this way);
// these tests use part of it.
#[allow(dead_code)]
#[path = "../../../../tests/src/redis.rs"]
mod redis_server;
mod support;
