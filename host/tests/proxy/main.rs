//! In-process integration tests: a real `Gateway` on loopback, configured with hand-built
//! snapshots, in front of echo backends started by the tests. One binary (modules below)
//! to keep link time down.

mod backend_tls;
mod config_swap;
mod filters;
mod http1;
mod idle;
mod routing;
mod support;
mod support_tls;
