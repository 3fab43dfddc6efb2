//! Runs the real filter components (header-modifier and the test-only fault filter)
//! through the public API. Build them first:
//! `cargo build --profile filter --target wasm32-wasip2 -p nantian-filter-header-modifier -p nantian-filter-fault`.

mod bench;
mod cache;
mod calls;
mod failures;
mod instances;
mod support;
