//! Write Nantian HTTP filters as WebAssembly components.
//!
//! A filter is a type implementing [`Filter`], exported with [`export_filter!`] from a
//! `cdylib` crate built for `wasm32-wasip2`:
//!
//! ```no_run
//! use nantian_filter_sdk::{host, Filter, FilterInfo, HeadersAction, LocalResponse, Phases, Request};
//!
//! /// Answers 429 once a client exceeds `limit` requests per minute.
//! struct RateLimit { limit: i64 }
//!
//! impl Filter for RateLimit {
//!     fn new(config: &[u8]) -> Result<Self, String> {
//!         let limit = std::str::from_utf8(config).ok().and_then(|s| s.trim().parse().ok());
//!         limit.map(|limit| RateLimit { limit }).ok_or_else(|| "config must be a number".into())
//!     }
//!     fn info(&self) -> FilterInfo {
//!         FilterInfo::stateless(Phases::REQUEST_HEADERS)
//!     }
//!     fn on_request_headers(&mut self, req: &Request) -> HeadersAction {
//!         let client = req.header("x-client-id").unwrap_or_default();
//!         // Fails open: with the counter store unreachable, the request goes on.
//!         let count = host::counter_add(&client, 1, std::time::Duration::from_secs(60));
//!         if count.is_ok_and(|count| count > self.limit) {
//!             return HeadersAction::Respond(LocalResponse::new(429).with_body("slow down"));
//!         }
//!         HeadersAction::Continue
//!     }
//! }
//!
//! nantian_filter_sdk::export_filter!(RateLimit);
//! ```
//!
//! The contract itself (phases, isolation, limits) is described in `wit/README.md`.
#![deny(unsafe_code)]

// The generated export macro and bindings name this crate by its public path, which must
// also resolve inside the crate itself.
extern crate self as nantian_filter_sdk;

mod actions;
mod export;
pub mod host;

/// Raw bindings generated from `wit/filter.wit` (world `http-filter`).
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "http-filter",
        pub_export_macro: true,
        export_macro_name: "__export_http_filter",
        default_bindings_module: "nantian_filter_sdk::bindings",
        runtime_path: "nantian_filter_sdk::__private::wit_bindgen::rt",
    });
}

pub use bindings::nantian::filter::http::{Request, Response};
pub use bindings::nantian::filter::types::{
    BodyAction, FilterInfo, HeaderOp, HeadersAction, LocalResponse, LogLevel, Phases,
};

/// An HTTP filter. One value lives in each Wasm instance: it is built by [`Filter::new`]
/// when the host initialises the instance and serves every call made to that instance.
///
/// With `per_request_isolation: false` an instance (and so this value) serves many
/// requests one after another; with `true` it serves exactly one request.
pub trait Filter: Sized + 'static {
    /// Builds the filter from its binding's configuration (JSON for the built-in filters).
    /// An `Err` rejects the configuration: the host refuses the snapshot that carried it.
    fn new(config: &[u8]) -> Result<Self, String>;

    /// The phases this filter takes part in and its isolation mode. Asked once, right
    /// after [`Filter::new`].
    fn info(&self) -> FilterInfo;

    /// The request head arrived. Mutate it through `req`.
    fn on_request_headers(&mut self, req: &Request) -> HeadersAction {
        let _ = req;
        HeadersAction::Continue
    }

    /// One chunk of the request body; `end_of_stream` marks the last one (possibly empty).
    fn on_request_body(
        &mut self,
        req: &Request,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> BodyAction {
        let _ = (req, chunk, end_of_stream);
        BodyAction::Continue
    }

    /// The response head arrived (from the upstream or a local response).
    fn on_response_headers(&mut self, req: &Request, resp: &Response) -> HeadersAction {
        let _ = (req, resp);
        HeadersAction::Continue
    }

    /// One chunk of the response body; `end_of_stream` marks the last one (possibly empty).
    fn on_response_body(
        &mut self,
        req: &Request,
        resp: &Response,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> BodyAction {
        let _ = (req, resp, chunk, end_of_stream);
        BodyAction::Continue
    }
}

/// Exports a [`Filter`] type as the component's `nantian:filter/filter` interface.
/// Use it once, in the filter crate's root.
///
/// Only `wasm32` builds export anything: the export names (`nantian:filter/filter@0.3.0#init`)
/// are not valid native symbols, so native builds (clippy, unit tests of the filter's own
/// logic) just check that the type implements [`Filter`].
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __NantianFilterExport = $crate::__private::FilterExport<$filter>;
            $crate::bindings::__export_http_filter!(
                __NantianFilterExport with_types_in $crate::bindings
            );
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = $crate::__private::assert_filter::<$filter>;
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::FilterExport;
    pub use wit_bindgen;

    /// Names a filter type in native builds, where nothing is exported.
    pub fn assert_filter<F: crate::Filter>() {}
}
