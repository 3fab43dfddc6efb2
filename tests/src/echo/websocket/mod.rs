//! Just enough WebSocket (RFC 6455) for the echo backend and the tests that talk to it.

pub mod accept_key;
pub mod client;
pub mod frame;
pub mod server;

pub use client::WebSocketClient;
pub use frame::{Frame, FrameError, Opcode};
