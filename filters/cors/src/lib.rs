//! Gateway API `CORS` (`HTTPCORSFilter`, feature `HTTPRouteCORS`) as a Nantian filter.
//!
//! Configuration: the HTTPCORSFilter fields in JSON (see [`config`]).
//!
//! - A **preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) never
//!   reaches the backend: an allowed origin gets `204` with the `Access-Control-Allow-*`,
//!   `-Expose-Headers` and `-Max-Age` headers; any other origin gets `403` and no CORS
//!   headers, so the browser drops the actual request.
//! - Any other request goes on; if its `Origin` is allowed, the response gets
//!   `Access-Control-Allow-Origin` (the request's Origin), `-Allow-Credentials` and
//!   `-Expose-Headers`, replacing whatever the backend set.
//! - Every answer carries `Vary: Origin`, since what it holds depends on the Origin: a cache
//!   must not give one origin's response to another.
//!
//! The filter keeps no state between requests.
#![forbid(unsafe_code)]

mod answer;
mod config;
mod origin;

use answer::PreflightRequest;
use config::CorsConfig;
use nantian_filter_sdk::{
    Filter, FilterInfo, HeadersAction, LocalResponse, Phases, Request, Response,
};

/// Preflight answers depend on what was asked as much as on who asked.
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The filter: one validated policy, applied to every request of the route.
pub struct CorsFilter {
    config: CorsConfig,
}

impl Filter for CorsFilter {
    fn new(config: &[u8]) -> Result<Self, String> {
        Ok(CorsFilter {
            config: CorsConfig::parse(config)?,
        })
    }

    fn info(&self) -> FilterInfo {
        FilterInfo::stateless(Phases::REQUEST_HEADERS | Phases::RESPONSE_HEADERS)
    }

    fn on_request_headers(&mut self, req: &Request) -> HeadersAction {
        if req.method() != "OPTIONS" {
            return HeadersAction::Continue;
        }
        let (Some(origin), Some(method)) = (
            req.header("origin"),
            req.header("access-control-request-method"),
        ) else {
            // A plain OPTIONS request: the backend's to answer.
            return HeadersAction::Continue;
        };
        let answer = if self.config.allows_origin(&origin) {
            let headers = req.header_all("access-control-request-headers").join(", ");
            let request = PreflightRequest {
                origin: &origin,
                method: &method,
                headers: headers.trim(),
            };
            self.config
                .preflight_headers(&request)
                .into_iter()
                .fold(LocalResponse::new(204), |answer, (name, value)| {
                    answer.with_header(name, value)
                })
        } else {
            // 403 rather than a bare 204: the refusal then shows as one in access logs
            // and metrics. Both are what the spec allows.
            LocalResponse::new(403)
        };
        HeadersAction::Respond(answer.with_header("vary", PREFLIGHT_VARY))
    }

    fn on_response_headers(&mut self, req: &Request, resp: &Response) -> HeadersAction {
        add_vary_origin(resp);
        if let Some(origin) = req.header("origin")
            && self.config.allows_origin(&origin)
        {
            let headers = self
                .config
                .response_headers(&origin, || response_header_names(resp));
            for (name, value) in headers {
                resp.set_header(name, &value);
            }
        }
        HeadersAction::Continue
    }
}

/// Adds `Origin` to the response's `Vary` unless it is there already (or `Vary: *`).
fn add_vary_origin(resp: &Response) {
    let covered = resp.header_all("vary").iter().any(|value| {
        value
            .split(',')
            .map(str::trim)
            .any(|token| token == "*" || token.eq_ignore_ascii_case("origin"))
    });
    if !covered {
        resp.add_header("vary", "Origin");
    }
}

/// The response's header names, each once, for a credentialed `exposeHeaders: ["*"]`.
fn response_header_names(resp: &Response) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in resp.headers() {
        let name = name.to_ascii_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

nantian_filter_sdk::export_filter!(CorsFilter);
