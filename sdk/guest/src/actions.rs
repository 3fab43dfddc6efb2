//! Constructors for the generated WIT records, so filters read like prose.

use crate::{FilterInfo, HeaderOp, LocalResponse, Phases};

impl FilterInfo {
    /// Instances are reused across requests (cheapest); keep no per-request state
    /// outside one request's body phases.
    pub fn stateless(phases: Phases) -> Self {
        FilterInfo {
            phases,
            per_request_isolation: false,
            request_header_ops: Vec::new(),
            response_header_ops: Vec::new(),
        }
    }

    /// Every request gets a fresh instance: nothing survives from one request to the next.
    pub fn per_request(phases: Phases) -> Self {
        FilterInfo {
            per_request_isolation: true,
            ..FilterInfo::stateless(phases)
        }
    }

    /// Header changes the host makes to every request without calling the filter (see
    /// `filter-info` in `wit/filter.wit`): for changes that do not depend on the request.
    pub fn with_request_header_ops(mut self, ops: Vec<HeaderOp>) -> Self {
        self.request_header_ops = ops;
        self
    }

    /// The same for every response.
    pub fn with_response_header_ops(mut self, ops: Vec<HeaderOp>) -> Self {
        self.response_header_ops = ops;
        self
    }
}

impl HeaderOp {
    /// Replace every value of `name` with `value`.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> Self {
        HeaderOp::Set((name.into(), value.into()))
    }

    /// Append a value to `name`, keeping existing ones.
    pub fn add(name: impl Into<String>, value: impl Into<String>) -> Self {
        HeaderOp::Add((name.into(), value.into()))
    }

    /// Remove every value of `name`.
    pub fn remove(name: impl Into<String>) -> Self {
        HeaderOp::Remove(name.into())
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
