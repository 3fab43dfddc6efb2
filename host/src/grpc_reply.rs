//! What the gateway answers itself (no route, an invalid backend, an upstream failure),
//! said in gRPC to a gRPC client: HTTP 200 with `grpc-status` and `grpc-message` in a
//! headers-only ("Trailers-Only") response, the status chosen as gRPC's HTTP-to-gRPC
//! mapping does (404 → UNIMPLEMENTED, 503 → UNAVAILABLE, ...). A client then sees the
//! reason instead of a transport error.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::filter_chain::full_body;
use crate::upstream::ProxyBody;

/// Marks a response the gateway produced itself, with its reason (the text body).
#[derive(Debug, Clone, Copy)]
pub struct LocalReply(pub &'static str);

/// gRPC status codes the gateway answers with.
mod code {
    pub const UNKNOWN: u8 = 2;
    pub const PERMISSION_DENIED: u8 = 7;
    pub const UNIMPLEMENTED: u8 = 12;
    pub const INTERNAL: u8 = 13;
    pub const UNAVAILABLE: u8 = 14;
    pub const UNAUTHENTICATED: u8 = 16;
}

/// Whether a request is a gRPC call (`content-type: application/grpc` or `+proto` etc.).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `resp` as a gRPC status when the gateway produced it; a backend's response is
/// returned as it is. `grpc_rule`: the request was routed by a GRPCRoute rule, whose
/// invalid backends the spec answers UNAVAILABLE (an HTTPRoute's get 500).
pub fn to_grpc(resp: Response<ProxyBody>, grpc_rule: bool) -> Response<ProxyBody> {
    let Some(LocalReply(reason)) = resp.extensions().get::<LocalReply>().copied() else {
        return resp;
    };
    let status = match resp.status() {
        StatusCode::BAD_REQUEST => code::INTERNAL,
        StatusCode::UNAUTHORIZED => code::UNAUTHENTICATED,
        StatusCode::FORBIDDEN => code::PERMISSION_DENIED,
        StatusCode::NOT_FOUND => code::UNIMPLEMENTED,
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => code::UNAVAILABLE,
        StatusCode::INTERNAL_SERVER_ERROR if grpc_rule => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    };
    let mut out = Response::new(full_body(bytes::Bytes::new()));
    let headers = out.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(status)));
    // grpc-message is percent-encoded; the reasons are plain ASCII text whose only
    // character needing it is the final newline, which is dropped.
    if let Ok(message) = HeaderValue::from_str(reason.trim_end()) {
        headers.insert("grpc-message", message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter_chain::status_response;

    fn grpc_status(resp: &Response<ProxyBody>) -> Option<&str> {
        resp.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[test]
    fn local_replies_become_grpc_statuses() {
        let no_route = to_grpc(status_response(StatusCode::NOT_FOUND, "no route\n"), false);
        assert_eq!(no_route.status(), StatusCode::OK);
        assert_eq!(grpc_status(&no_route), Some("12"));
        assert_eq!(no_route.headers().get("grpc-message").unwrap(), "no route");
        let invalid = status_response(StatusCode::INTERNAL_SERVER_ERROR, "invalid backend\n");
        assert_eq!(grpc_status(&to_grpc(invalid, true)), Some("14"));
        let invalid = status_response(StatusCode::INTERNAL_SERVER_ERROR, "invalid backend\n");
        assert_eq!(grpc_status(&to_grpc(invalid, false)), Some("2"));
    }

    #[test]
    fn backend_responses_pass_unchanged() {
        let mut resp = Response::new(full_body(bytes::Bytes::from_static(b"x")));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        let resp = to_grpc(resp, true);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(grpc_status(&resp), None);
    }

    #[test]
    fn grpc_requests_are_told_by_content_type() {
        let mut headers = HeaderMap::new();
        assert!(!is_grpc(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&headers));
    }
}
