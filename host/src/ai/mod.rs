//! LLM traffic to an AIService: the rule's backend is a set of LLM backends chosen by the
//! model a request's body names, with weighted splits, stickiness and ordered fallback.
//! The host routes and sends; translating between APIs is the built-in ai-adapter Wasm
//! filter each backend runs (`filters/ai-adapter`).
//!
//! `spec` validates the IR, `select` orders the backends one request tries, `forward`
//! runs the attempts, `models` answers `GET …/models` from the configuration, `metrics`
//! and `observe` count tokens and time the answers.

mod forward;
mod metrics;
mod models;
mod observe;
mod select;
mod spec;

pub use forward::forward;
pub use metrics::{AiMetrics, BackendSeries, OTHER_MODEL};
pub use select::{AiBackend, AiService, RoutingFields};
pub use spec::{AiBackendSpec, AiServiceSpec, ModelPattern, Provider, StickyKey};
