//! The echo backend behind `nantian-echo`: a Rust counterpart of the Gateway API
//! conformance `echo-basic` server (same JSON, `/health`, `/status/<code>`, `?delay=`,
//! `X-Echo-Set-Header`, WebSocket echo, an h2c-only listener mode, HTTPS with an optional
//! client certificate check and the `tls` object, the request log the mirror tests read,
//! and echo-basic's gRPC `GrpcEcho` service for requests with a gRPC content type),
//! echo-basic's TCP test server for the TLSRoute tests (`tcp`), a UDP echo for the UDPRoute
//! tests, plus a fixed-body [`BENCH_PATH`] for the benchmark. The e2e tests, the
//! conformance replay and the benchmark all use it.

#![forbid(unsafe_code)]

pub mod delay;
pub mod grpc;
pub mod grpc_client;
pub mod handler;
pub mod process;
pub mod request_log;
pub mod response;
pub mod server;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod websocket;

pub use handler::{BENCH_BODY, BENCH_PATH, Context};
pub use process::EchoProcess;
pub use request_log::RequestLog;
pub use response::{EchoResponse, TlsAssertions};
pub use server::{EchoServer, ListenerMode, ListenerSpec};
