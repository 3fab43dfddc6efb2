//! Gateway API `RequestHeaderModifier` / `ResponseHeaderModifier` as a Nantian filter.
//!
//! Configuration (JSON; either key may be absent):
//!
//! ```json
//! {"request":  {"set": [{"name": "X-A", "value": "1"}], "add": [...], "remove": ["X-B"]},
//!  "response": {"set": [...], "add": [...], "remove": [...]}}
//! ```
//!
//! Each modifier applies `set` (replace every value), then `add` (append one more value),
//! then `remove` (drop every value). Names are case-insensitive. The filter takes part
//! only in the header phases it has work for, and keeps no state between requests.
#![forbid(unsafe_code)]

mod config;

use config::{FilterConfig, HeaderModifier};
use nantian_filter_sdk::{Filter, FilterInfo, HeadersAction, Phases, Request, Response};

/// The filter: one validated configuration, applied to every request/response.
pub struct HeaderModifierFilter {
    config: FilterConfig,
}

/// The header operations both HTTP messages support.
trait HeaderTarget {
    fn set(&self, name: &str, value: &str);
    fn add(&self, name: &str, value: &str);
    fn remove(&self, name: &str);
}

impl HeaderTarget for Request {
    fn set(&self, name: &str, value: &str) {
        self.set_header(name, value);
    }
    fn add(&self, name: &str, value: &str) {
        self.add_header(name, value);
    }
    fn remove(&self, name: &str) {
        self.remove_header(name);
    }
}

impl HeaderTarget for Response {
    fn set(&self, name: &str, value: &str) {
        self.set_header(name, value);
    }
    fn add(&self, name: &str, value: &str) {
        self.add_header(name, value);
    }
    fn remove(&self, name: &str) {
        self.remove_header(name);
    }
}

fn apply(modifier: &HeaderModifier, target: &impl HeaderTarget) {
    for header in &modifier.set {
        target.set(&header.name, &header.value);
    }
    for header in &modifier.add {
        target.add(&header.name, &header.value);
    }
    for name in &modifier.remove {
        target.remove(name);
    }
}

impl Filter for HeaderModifierFilter {
    fn new(config: &[u8]) -> Result<Self, String> {
        Ok(HeaderModifierFilter {
            config: FilterConfig::parse(config)?,
        })
    }

    fn info(&self) -> FilterInfo {
        let mut phases = Phases::empty();
        if self.config.request.as_ref().is_some_and(|m| !m.is_empty()) {
            phases |= Phases::REQUEST_HEADERS;
        }
        if self.config.response.as_ref().is_some_and(|m| !m.is_empty()) {
            phases |= Phases::RESPONSE_HEADERS;
        }
        FilterInfo::stateless(phases)
    }

    fn on_request_headers(&mut self, req: &Request) -> HeadersAction {
        if let Some(modifier) = &self.config.request {
            apply(modifier, req);
        }
        HeadersAction::Continue
    }

    fn on_response_headers(&mut self, _req: &Request, resp: &Response) -> HeadersAction {
        if let Some(modifier) = &self.config.response {
            apply(modifier, resp);
        }
        HeadersAction::Continue
    }
}

nantian_filter_sdk::export_filter!(HeaderModifierFilter);
