//! Nantian data plane: takes config from the controller over delta xDS and proxies HTTP
//! through Gateway API routes and WebAssembly filter chains.
//!
//! A request's path through the modules: `listener` (sockets) → `server` (connections,
//! snapshot, routing; `server_h1_direct` for HTTP/1.1 without a body or with a small one, hyper for the rest) → `router` (route tables) → `proxy` with `filter_chain` /
//! `filter_body` (Wasm filters, redirects) → `pick` (session, `balancer`) →
//! `forwarding` + `upstream` (pools). Config
//! arrives through `xds_client`, is validated by `config`, and is assembled into a
//! `snapshot` that `gateway` swaps in.
#![forbid(unsafe_code)]

pub mod admin;
pub mod ai;
pub mod balancer;
mod client_hello;
mod coalesced_body;
pub mod config;
mod config_decode;
mod config_route;
pub mod filter_body;
pub mod filter_chain;
pub mod forwarding;
pub mod gateway;
pub mod grpc_reply;
pub mod hostname;
mod http_date;
mod idle;
pub mod listener;
pub mod metrics;
pub mod mirror;
pub mod pick;
mod prefixed_body;
mod prefixed_io;
pub mod proxy;
pub mod redirect;
mod retry;
pub mod router;
pub mod server;
mod server_h1_direct;
pub mod session;
mod side_wake;
pub mod snapshot;
mod stream_route;
mod timeout;
pub mod tls;
pub mod udp_route;
pub mod upstream;
mod upstream_h1;
mod upstream_h1_direct;
mod upstream_io;
#[cfg(test)]
mod upstream_test_backend;
pub mod upstream_tls;
mod upstream_tls_verify;
pub mod xds_client;

pub use gateway::Gateway;
pub use metrics::Metrics;
