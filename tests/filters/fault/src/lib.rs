//! A test-only filter that misbehaves on demand, so the host's failure handling can be
//! tested against a real component.
//!
//! Configuration (JSON, every key optional):
//! `{"phase": "request-headers" | "response-headers" | "request-body" | "response-body" | "none",
//!   "isolation": "reuse" | "per-request", "fail-init": "reason", "declare": "header-name"}`.
//! With `declare`, `init` declares a header op setting that header to `declared` on every
//! request and response, and the request-header phase reports the value it saw there in
//! `x-fault-saw-declared`.
//!
//! At call time the request header `x-fault` picks the behaviour: `trap` panics, `spin`
//! loops forever, `oom` allocates until the memory limit, `print` writes to stdout and
//! stderr, `respond` answers 418 locally, `bad-header` sets a header with an invalid
//! name. Some values exercise host APIs and then carry on: `rewrite` records what the
//! request looked like in `x-fault-seen` and changes its path and authority, `count`
//! bumps a counter and reports it in `x-fault-count`, `status` sets the response status
//! to 203. Carrying on, the header phases set `x-fault-filter: ok` on their message and
//! the body phases upper-case every chunk.
//! It also counts the calls its instance served in `x-fault-calls`, which shows whether
//! instances are reused.
#![forbid(unsafe_code)]

use std::time::Duration;

use nantian_filter_sdk::{
    BodyAction, Filter, FilterInfo, HeaderOp, HeadersAction, LocalResponse, Phases, Request,
    Response, host,
};

/// The misbehaving filter; `calls` counts the calls this instance has served.
#[derive(Debug)]
pub struct FaultFilter {
    phase: Phases,
    per_request: bool,
    declare: Option<String>,
    calls: u64,
}

fn parse_config(config: &[u8]) -> Result<FaultFilter, String> {
    let text = std::str::from_utf8(config).map_err(|e| e.to_string())?;
    if let Some(reason) = string_field(text, "fail-init") {
        return Err(format!("fail-init: {reason}"));
    }
    let phase = match string_field(text, "phase").as_deref() {
        None | Some("request-headers") => Phases::REQUEST_HEADERS,
        Some("response-headers") => Phases::RESPONSE_HEADERS,
        Some("request-body") => Phases::REQUEST_BODY,
        Some("response-body") => Phases::RESPONSE_BODY,
        Some("none") => Phases::empty(),
        Some(other) => return Err(format!("unknown phase {other:?}")),
    };
    let per_request = match string_field(text, "isolation").as_deref() {
        None | Some("reuse") => false,
        Some("per-request") => true,
        Some(other) => return Err(format!("unknown isolation {other:?}")),
    };
    Ok(FaultFilter {
        phase,
        per_request,
        declare: string_field(text, "declare"),
        calls: 0,
    })
}

/// The string value of `"key": "value"` in a flat JSON object: enough for a test filter
/// and it keeps the component free of a JSON dependency.
fn string_field(text: &str, key: &str) -> Option<String> {
    let quoted = format!("\"{key}\"");
    let after_key = &text[text.find(&quoted)? + quoted.len()..];
    let after_colon = after_key.trim_start().strip_prefix(':')?.trim_start();
    let value = after_colon.strip_prefix('"')?;
    Some(value[..value.find('"')?].to_string())
}

fn misbehave(req: &Request, fault: &str) -> Option<HeadersAction> {
    match fault {
        "trap" => panic!("fault filter asked to trap"),
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        "print" => {
            println!("fault filter writes to stdout");
            eprintln!("fault filter writes to stderr");
            None
        }
        "bad-header" => {
            req.set_header("bad name", "value");
            None
        }
        "rewrite" => {
            let seen = format!(
                "{} {} {} {}",
                req.method(),
                req.scheme(),
                req.authority(),
                req.path()
            );
            req.set_header("x-fault-seen", &seen);
            req.set_path("/rewritten?x=1");
            req.set_authority("rewritten.example");
            None
        }
        "count" => {
            let count = match host::counter_add("hits", 1, Duration::from_secs(60)) {
                Ok(count) => count.to_string(),
                Err(e) => e.to_string(),
            };
            req.set_header("x-fault-count", &count);
            None
        }
        "respond" => Some(HeadersAction::Respond(
            LocalResponse::new(418)
                .with_header("x-fault-filter", "responded")
                .with_body("short and stout"),
        )),
        _ => None,
    }
}

impl FaultFilter {
    fn run(&mut self, req: &Request) -> Option<HeadersAction> {
        self.calls += 1;
        req.header("x-fault")
            .and_then(|fault| misbehave(req, &fault))
    }
}

fn body_action(action: HeadersAction) -> BodyAction {
    match action {
        HeadersAction::Continue => BodyAction::Continue,
        HeadersAction::Respond(response) => BodyAction::Respond(response),
    }
}

impl Filter for FaultFilter {
    fn new(config: &[u8]) -> Result<Self, String> {
        parse_config(config)
    }

    fn info(&self) -> FilterInfo {
        let info = if self.per_request {
            FilterInfo::per_request(self.phase)
        } else {
            FilterInfo::stateless(self.phase)
        };
        match &self.declare {
            Some(name) => info
                .with_request_header_ops(vec![HeaderOp::set(name, "declared")])
                .with_response_header_ops(vec![HeaderOp::set(name, "declared")]),
            None => info,
        }
    }

    fn on_request_headers(&mut self, req: &Request) -> HeadersAction {
        if let Some(action) = self.run(req) {
            return action;
        }
        req.set_header("x-fault-filter", "ok");
        req.set_header("x-fault-calls", &self.calls.to_string());
        if let Some(name) = &self.declare {
            let saw = req.header(name).unwrap_or_else(|| "nothing".into());
            req.set_header("x-fault-saw-declared", &saw);
        }
        HeadersAction::Continue
    }

    fn on_request_body(&mut self, req: &Request, chunk: Vec<u8>, _end: bool) -> BodyAction {
        match self.run(req) {
            Some(action) => body_action(action),
            None => BodyAction::Replace(chunk.to_ascii_uppercase()),
        }
    }

    fn on_response_body(
        &mut self,
        req: &Request,
        _resp: &Response,
        chunk: Vec<u8>,
        _end: bool,
    ) -> BodyAction {
        match self.run(req) {
            Some(action) => body_action(action),
            None => BodyAction::Replace(chunk.to_ascii_uppercase()),
        }
    }

    fn on_response_headers(&mut self, req: &Request, resp: &Response) -> HeadersAction {
        if let Some(action) = self.run(req) {
            return action;
        }
        if req.header("x-fault").as_deref() == Some("status") {
            resp.set_status(203);
        }
        resp.set_header("x-fault-filter", "ok");
        resp.set_header("x-fault-calls", &self.calls.to_string());
        HeadersAction::Continue
    }
}

nantian_filter_sdk::export_filter!(FaultFilter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flat_config() {
        let f =
            parse_config(br#"{"phase": "response-headers", "isolation":"per-request"}"#).unwrap();
        assert_eq!(f.phase, Phases::RESPONSE_HEADERS);
        assert!(f.per_request);
        assert!(
            parse_config(br#"{"fail-init": "nope"}"#)
                .unwrap_err()
                .contains("nope")
        );
        assert!(parse_config(b"{}").unwrap().phase == Phases::REQUEST_HEADERS);
    }
}
