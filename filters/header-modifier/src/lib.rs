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
//! then `remove` (drop every value). Names are case-insensitive.
//!
//! None of this depends on the request, so the filter does its work once, in `init`: it
//! validates the configuration and declares the changes as `filter-info` header ops,
//! which the host applies to every request and response itself. The filter asks for no
//! phase, so a request never enters it (a guest call would cost more than the change).
#![forbid(unsafe_code)]

mod config;

use config::{FilterConfig, HeaderModifier};
use nantian_filter_sdk::{Filter, FilterInfo, HeaderOp, Phases};

/// The filter: the header changes of one validated configuration.
pub struct HeaderModifierFilter {
    request: Vec<HeaderOp>,
    response: Vec<HeaderOp>,
}

/// The changes of one modifier, in the order the Gateway API applies them.
fn ops(modifier: Option<&HeaderModifier>) -> Vec<HeaderOp> {
    let Some(modifier) = modifier else {
        return Vec::new();
    };
    let set = modifier
        .set
        .iter()
        .map(|h| HeaderOp::set(&h.name, &h.value));
    let add = modifier
        .add
        .iter()
        .map(|h| HeaderOp::add(&h.name, &h.value));
    let remove = modifier.remove.iter().map(HeaderOp::remove);
    set.chain(add).chain(remove).collect()
}

impl Filter for HeaderModifierFilter {
    fn new(config: &[u8]) -> Result<Self, String> {
        let config = FilterConfig::parse(config)?;
        Ok(HeaderModifierFilter {
            request: ops(config.request.as_ref()),
            response: ops(config.response.as_ref()),
        })
    }

    fn info(&self) -> FilterInfo {
        FilterInfo::stateless(Phases::empty())
            .with_request_header_ops(self.request.clone())
            .with_response_header_ops(self.response.clone())
    }
}

nantian_filter_sdk::export_filter!(HeaderModifierFilter);
