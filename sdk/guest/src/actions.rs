//! Constructors for the generated WIT records, so filters read like prose.

use crate::{FilterInfo, LocalResponse, Phases};

impl FilterInfo {
    /// Instances are reused across requests (cheapest); keep no per-request state
    /// outside one request's body phases.
    pub fn stateless(phases: Phases) -> Self {
        FilterInfo {
            phases,
            per_request_isolation: false,
        }
    }

    /// Every request gets a fresh instance: nothing survives from one request to the next.
    pub fn per_request(phases: Phases) -> Self {
        FilterInfo {
            phases,
            per_request_isolation: true,
        }
    }
}

impl LocalResponse {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (names are case-insensitive; repeated names become several values).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}
