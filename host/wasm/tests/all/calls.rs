//! What a successful call does to the request and response.

use bytes::Bytes;
use nantian_wasm::{BodyAction, EngineConfig, FilterInfo, HeadersAction, LocalResponse, Phases};

use crate::support::*;

#[test]
fn header_modifier_declares_its_changes_and_the_host_makes_them() {
    let engine = engine();
    let binding = bind(
        &engine,
        HEADER_MODIFIER,
        r#"{"request":{"set":[{"name":"X-Set","value":"v"}],"remove":["x-gone"]},
            "response":{"add":[{"name":"x-added","value":"a"}]}}"#,
    );
    // No phase: the guest is never entered per request.
    assert_eq!(
        binding.info(),
        FilterInfo {
            phases: Phases::default(),
            per_request_isolation: false
        }
    );
    assert_eq!(
        binding.active_phases(),
        Phases {
            request_headers: true,
            response_headers: true,
            ..Phases::default()
        }
    );
    assert_eq!(binding.display_name(), "test");
    let mut req = request("/a", &[("x-gone", "1"), ("x-set", "old"), ("x-kept", "k")]);
    let mut resp = response(200, &[("x-added", "upstream")]);
    let mut active = binding.start().unwrap();
    assert_eq!(
        active.on_request_headers(&mut req).unwrap(),
        HeadersAction::Continue
    );
    assert_eq!(
        active.on_response_headers(&mut req, &mut resp).unwrap(),
        HeadersAction::Continue
    );
    assert_eq!(header(&req.headers, "x-set"), Some("v"));
    assert_eq!(header(&req.headers, "x-gone"), None);
    assert_eq!(header(&req.headers, "x-kept"), Some("k"));
    assert_eq!(req.uri, "/a");
    let added: Vec<_> = resp.headers.get_all("x-added").iter().collect();
    assert_eq!(added, ["upstream", "a"]);
}

#[test]
fn declared_changes_come_before_the_filters_own_phase() {
    let engine = engine();
    let binding = bind(&engine, FAULT, r#"{"declare":"x-decl"}"#);
    let mut req = request("/", &[("x-decl", "client")]);
    let mut active = binding.start().unwrap();
    active.on_request_headers(&mut req).unwrap();
    assert_eq!(header(&req.headers, "x-decl"), Some("declared"));
    // The guest ran after the host's change, and saw it.
    assert_eq!(
        header(&req.headers, "x-fault-saw-declared"),
        Some("declared")
    );
    assert_eq!(header(&req.headers, "x-fault-filter"), Some("ok"));
    let mut resp = response(200, &[]);
    active.on_response_headers(&mut req, &mut resp).unwrap();
    assert_eq!(header(&resp.headers, "x-decl"), Some("declared"));
}

#[test]
fn a_filter_without_phases_never_occupies_an_instance() {
    // One instance in the whole engine, held by the binding's own init and then idle.
    let engine = engine_with(EngineConfig {
        max_instances: 1,
        ..Default::default()
    });
    let binding = bind(&engine, FAULT, r#"{"phase":"none","declare":"x-decl"}"#);
    let mut actives: Vec<_> = (0..4).map(|_| binding.start().unwrap()).collect();
    for active in &mut actives {
        let mut req = request("/", &[]);
        active.on_request_headers(&mut req).unwrap();
        assert_eq!(header(&req.headers, "x-decl"), Some("declared"));
        assert_eq!(
            header(&req.headers, "x-fault-filter"),
            None,
            "guest entered"
        );
    }
}

#[test]
fn undeclared_phases_are_not_entered() {
    let engine = engine();
    let binding = bind(&engine, FAULT, r#"{"phase":"request-headers"}"#);
    let mut active = binding.start().unwrap();
    let mut req = request("/", &[]);
    let mut resp = response(200, &[]);
    assert_eq!(
        active.on_response_headers(&mut req, &mut resp).unwrap(),
        HeadersAction::Continue
    );
    let chunk = Bytes::from_static(b"abc");
    assert_eq!(
        active
            .on_request_body(&mut req, chunk.clone(), true)
            .unwrap(),
        BodyAction::Continue
    );
    assert_eq!(
        active
            .on_response_body(&mut req, &mut resp, chunk, true)
            .unwrap(),
        BodyAction::Continue
    );
    assert!(resp.headers.is_empty());
    // The first call the filter sees is this one.
    active.on_request_headers(&mut req).unwrap();
    assert_eq!(header(&req.headers, "x-fault-calls"), Some("1"));
}

#[test]
fn response_headers_phase_sees_request_and_changes_response() {
    let engine = engine();
    let binding = bind(&engine, FAULT, r#"{"phase":"response-headers"}"#);
    let mut active = binding.start().unwrap();
    let mut req = request("/", &[("x-fault", "status")]);
    let mut resp = response(200, &[("x-upstream", "1")]);
    active.on_response_headers(&mut req, &mut resp).unwrap();
    assert_eq!(resp.status, 203);
    assert_eq!(header(&resp.headers, "x-fault-filter"), Some("ok"));
    assert_eq!(header(&resp.headers, "x-upstream"), Some("1"));
    assert_eq!(header(&req.headers, "x-fault"), Some("status"));
}

#[test]
fn body_phases_replace_chunks() {
    let engine = engine();
    let request_body = bind(&engine, FAULT, r#"{"phase":"request-body"}"#);
    assert!(request_body.info().phases.request_body);
    let mut req = request("/", &[]);
    let mut active = request_body.start().unwrap();
    assert_eq!(
        active
            .on_request_body(&mut req, Bytes::from_static(b"abc"), false)
            .unwrap(),
        BodyAction::Replace(Bytes::from_static(b"ABC"))
    );
    assert_eq!(
        active
            .on_request_body(&mut req, Bytes::new(), true)
            .unwrap(),
        BodyAction::Replace(Bytes::new())
    );

    let response_body = bind(&engine, FAULT, r#"{"phase":"response-body"}"#);
    let mut resp = response(200, &[]);
    let mut active = response_body.start().unwrap();
    assert_eq!(
        active
            .on_response_body(&mut req, &mut resp, Bytes::from_static(b"data: x\n"), true)
            .unwrap(),
        BodyAction::Replace(Bytes::from_static(b"DATA: X\n"))
    );
}

#[test]
fn local_responses_come_back_typed() {
    let engine = engine();
    let binding = bind(&engine, FAULT, "{}");
    let mut req = request("/", &[("x-fault", "respond")]);
    let action = binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap();
    assert_eq!(
        action,
        HeadersAction::Respond(LocalResponse {
            status: 418,
            headers: vec![("x-fault-filter".into(), "responded".into())],
            body: Bytes::from_static(b"short and stout"),
        })
    );
    let body_binding = bind(&engine, FAULT, r#"{"phase":"request-body"}"#);
    let action = body_binding
        .start()
        .unwrap()
        .on_request_body(&mut req, Bytes::new(), true)
        .unwrap();
    assert!(matches!(
        action,
        BodyAction::Respond(LocalResponse { status: 418, .. })
    ));
}

#[test]
fn request_resource_reads_and_rewrites_http1_requests() {
    let engine = engine();
    let binding = bind(&engine, FAULT, "{}");
    let mut req = request(
        "/a?b=1",
        &[("host", "origin.example"), ("x-fault", "rewrite")],
    );
    binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap();
    assert_eq!(
        header(&req.headers, "x-fault-seen"),
        Some("GET http origin.example /a?b=1")
    );
    assert_eq!(req.uri, "/rewritten?x=1");
    assert_eq!(header(&req.headers, "host"), Some("rewritten.example"));
}

#[test]
fn request_resource_rewrites_absolute_uris_and_reads_scheme_extension() {
    let engine = engine();
    let binding = bind(&engine, FAULT, "{}");
    let mut req = request("https://origin.example/a", &[("x-fault", "rewrite")]);
    binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap();
    assert_eq!(
        header(&req.headers, "x-fault-seen"),
        Some("GET https origin.example /a")
    );
    assert_eq!(req.uri, "https://rewritten.example/rewritten?x=1");
    assert_eq!(header(&req.headers, "host"), None);

    let mut req = request("/b", &[("host", "h.example"), ("x-fault", "rewrite")]);
    req.extensions.insert(http::uri::Scheme::HTTPS);
    binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap();
    assert_eq!(
        header(&req.headers, "x-fault-seen"),
        Some("GET https h.example /b")
    );
}

#[test]
fn counters_are_private_to_a_binding() {
    let engine = engine();
    let first = bind(&engine, FAULT, "{}");
    let second = bind(&engine, FAULT, "{}");
    let count = |binding: &std::sync::Arc<nantian_wasm::FilterBinding>| {
        let mut req = request("/", &[("x-fault", "count")]);
        binding
            .start()
            .unwrap()
            .on_request_headers(&mut req)
            .unwrap();
        header(&req.headers, "x-fault-count").unwrap().to_owned()
    };
    assert_eq!(count(&first), "1");
    assert_eq!(count(&first), "2");
    assert_eq!(count(&second), "1");
}

#[test]
fn guest_stdout_and_stderr_go_to_the_log_without_failing() {
    let engine = engine();
    let binding = bind(&engine, FAULT, "{}");
    let mut req = request("/", &[("x-fault", "print")]);
    binding
        .start()
        .unwrap()
        .on_request_headers(&mut req)
        .unwrap();
    assert_eq!(header(&req.headers, "x-fault-filter"), Some("ok"));
}
