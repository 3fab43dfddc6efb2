//! Wasm filter chains with the real components: the built-in header modifier and the
//! test-only fault filter. Both must be built first:
//! `cargo build --profile filter --target wasm32-wasip2 -p nantian-filter-header-modifier -p nantian-filter-fault`.

use std::path::PathBuf;

use http::{Request, StatusCode};
use nantian_proto::config as pb;
use sha2::{Digest, Sha256};

use crate::support::*;

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // <target>/release/deps/<test binary>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("test binary inside a target dir")
        .to_path_buf()
}

fn module(name: &str, crate_name: &str) -> pb::FilterModule {
    let path = target_dir()
        .join("wasm32-wasip2/filter")
        .join(format!("{crate_name}.wasm"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it with `cargo build --profile filter --target wasm32-wasip2 -p {}`",
            path.display(),
            crate_name.replace('_', "-")
        )
    });
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    pb::FilterModule {
        name: format!("module/{name}@{}", &sha256[..12]),
        sha256,
        source: Some(pb::filter_module::Source::Path(
            path.to_string_lossy().into_owned(),
        )),
    }
}

fn header_modifier() -> pb::FilterModule {
    module("header-modifier", "nantian_filter_header_modifier")
}

fn fault() -> pb::FilterModule {
    module("fault", "nantian_filter_fault")
}

fn wasm(
    display_name: &str,
    module: &pb::FilterModule,
    config: &str,
    fail_policy: &str,
) -> pb::RouteFilter {
    pb::RouteFilter {
        kind: Some(pb::route_filter::Kind::Wasm(pb::WasmFilter {
            display_name: display_name.into(),
            module: module.name.clone(),
            config: config.into(),
            fail_policy: fail_policy.into(),
            ..Default::default()
        })),
    }
}

fn filtered(route: &str, prefix: &str, filters: Vec<pb::RouteFilter>) -> pb::Route {
    let mut r = rule(route, prefix, vec![backend_ref("a", 1)]);
    r.filters = filters;
    r
}

/// A listener, backend `a` (an echo server), both modules, plus `routes`.
async fn base(port: u16) -> (Snapshot, Echo) {
    let a = start_echo("a").await;
    let snapshot = Snapshot::default()
        .with(listener("http", port, ""))
        .with(backend("a", "http", &[a.addr]))
        .with(header_modifier())
        .with(fault());
    (snapshot, a)
}

async fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &'static str) -> Reply {
    let mut req =
        Request::post(format!("http://127.0.0.1:{port}{path}")).header("host", "filters.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&http1_client(), req.body(full(body)).unwrap()).await
}

async fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req =
        Request::get(format!("http://127.0.0.1:{port}{path}")).header("host", "filters.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&http1_client(), req.body(empty()).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_modifiers_run_on_rules_and_backend_refs() {
    let port = free_port();
    let gw = gateway();
    let (snapshot, _a) = base(port).await;
    let hm = header_modifier();
    let request_mod = r#"{"request":{"set":[{"name":"x-set","value":"1"}],"add":[{"name":"x-add","value":"2"}],"remove":["x-remove"]}}"#;
    let response_mod = r#"{"response":{"set":[{"name":"x-resp","value":"yes"}]}}"#;
    let mut on_ref = rule("ref", "/ref", vec![backend_ref("a", 1)]);
    on_ref.backends[0].filters = vec![wasm(
        "RequestHeaderModifier",
        &hm,
        r#"{"request":{"set":[{"name":"x-ref","value":"picked"}]}}"#,
        "FailClosed",
    )];
    snapshot
        .with(filtered(
            "hm",
            "/hm",
            vec![
                wasm("ResponseHeaderModifier", &hm, response_mod, "FailClosed"),
                wasm("RequestHeaderModifier", &hm, request_mod, "FailClosed"),
            ],
        ))
        .with(on_ref)
        .apply(&gw, "1")
        .await
        .unwrap();

    let r = get_with(port, "/hm", &[("x-remove", "1"), ("x-add", "0")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.seen("x-set"), Some("1"));
    assert_eq!(r.seen("x-remove"), None);
    assert!(r.body.contains("x-add: 0\nx-add: 2\n"), "{}", r.body);
    assert_eq!(r.header("x-resp"), "yes");

    let r = get_with(port, "/ref", &[]).await;
    assert_eq!(r.seen("x-ref"), Some("picked"));

    // The header modifier declares its changes at init: the host made them, and no
    // request entered the guest (guest calls are what the filter metrics count).
    let metrics = gw.metrics().encode();
    assert!(
        metrics.contains(
            r#"nantian_filter_calls_total{filter="RequestHeaderModifier",phase="request_headers"} 0"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_filters_follow_their_fail_policy() {
    let port = free_port();
    let gw = gateway();
    let (snapshot, _a) = base(port).await;
    let (f, hm) = (fault(), header_modifier());
    let response_mod = r#"{"response":{"set":[{"name":"x-resp","value":"yes"}]}}"#;
    snapshot
        .with(filtered(
            "closed",
            "/closed",
            vec![wasm("Fault", &f, "{}", "FailClosed")],
        ))
        .with(filtered(
            "open",
            "/open",
            vec![wasm("FaultOpen", &f, "{}", "FailOpen")],
        ))
        .with(filtered(
            "respond",
            "/respond",
            vec![
                wasm("ResponseHeaderModifier", &hm, response_mod, "FailClosed"),
                wasm("Fault", &f, "{}", "FailClosed"),
            ],
        ))
        .apply(&gw, "1")
        .await
        .unwrap();

    let fine = get_with(port, "/closed", &[]).await;
    assert_eq!(fine.status, StatusCode::OK);
    assert_eq!(fine.seen("x-fault-filter"), Some("ok"));
    assert_eq!(
        get_with(port, "/closed", &[("x-fault", "trap")])
            .await
            .status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        get_with(port, "/closed", &[("x-fault", "spin")])
            .await
            .status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let skipped = get_with(port, "/open", &[("x-fault", "trap")]).await;
    assert_eq!(skipped.status, StatusCode::OK, "FailOpen skips the filter");
    assert_eq!(skipped.seen("x-fault-filter"), None);
    // The failed instance was discarded; the next request works.
    assert_eq!(get_with(port, "/closed", &[]).await.status, StatusCode::OK);

    let answered = get_with(port, "/respond", &[("x-fault", "respond")]).await;
    assert_eq!(answered.status.as_u16(), 418);
    assert_eq!(answered.body, "short and stout");
    assert_eq!(answered.header("x-fault-filter"), "responded");
    assert_eq!(
        answered.header("x-resp"),
        "yes",
        "earlier filters see the local response"
    );

    let metrics = gw.metrics().encode();
    for want in [
        r#"nantian_filter_errors_total{filter="Fault",kind="trap"} 1"#,
        r#"nantian_filter_errors_total{filter="Fault",kind="timeout"} 1"#,
        r#"nantian_filter_errors_total{filter="FaultOpen",kind="trap"} 1"#,
        // /closed four times, /respond once.
        r#"nantian_filter_calls_total{filter="Fault",phase="request_headers"} 5"#,
        r#"nantian_requests_total{route="route/test/closed/rule/0",status="500"} 2"#,
    ] {
        assert!(metrics.contains(want), "missing {want}:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_phases_stream_through_filters() {
    let port = free_port();
    let gw = gateway();
    let (snapshot, _a) = base(port).await;
    let f = fault();
    snapshot
        .with(filtered(
            "req-body",
            "/req-body",
            vec![wasm(
                "Upper",
                &f,
                r#"{"phase":"request-body"}"#,
                "FailClosed",
            )],
        ))
        .with(filtered(
            "resp-body",
            "/resp-body",
            vec![wasm(
                "Upper",
                &f,
                r#"{"phase":"response-body"}"#,
                "FailClosed",
            )],
        ))
        .apply(&gw, "1")
        .await
        .unwrap();

    let upper = post(port, "/req-body", &[], "hello request").await;
    assert_eq!(upper.status, StatusCode::OK);
    assert_eq!(upper.body, "HELLO REQUEST");

    let upper = post(port, "/resp-body", &[], "hello response").await;
    assert_eq!(upper.status, StatusCode::OK);
    assert_eq!(upper.body, "HELLO RESPONSE");
    assert!(
        upper.headers.get("content-length").is_none(),
        "a body filter drops content-length"
    );

    let answered = post(port, "/req-body", &[("x-fault", "respond")], "stop here").await;
    assert_eq!(
        answered.status.as_u16(),
        418,
        "a request-body filter can answer"
    );
    let failed = post(port, "/req-body", &[("x-fault", "trap")], "boom").await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_filters_survive_unrelated_config_changes() {
    let port = free_port();
    let gw = gateway();
    let (snapshot, _a) = base(port).await;
    let f = fault();
    let counting = |config: &str| {
        filtered(
            "count",
            "/count",
            vec![wasm("Count", &f, config, "FailClosed")],
        )
    };
    let calls = |r: Reply| r.seen("x-fault-calls").map(str::to_string);

    let v1 = snapshot.clone().with(counting("{}"));
    v1.apply(&gw, "1").await.unwrap();
    assert_eq!(
        calls(get_with(port, "/count", &[]).await).as_deref(),
        Some("1")
    );
    assert_eq!(
        calls(get_with(port, "/count", &[]).await).as_deref(),
        Some("2")
    );

    v1.clone()
        .with(rule("unrelated", "/unrelated", vec![backend_ref("a", 1)]))
        .apply(&gw, "2")
        .await
        .unwrap();
    assert_eq!(
        calls(get_with(port, "/count", &[]).await).as_deref(),
        Some("3"),
        "the same instance serves on after an unrelated change"
    );

    snapshot
        .with(counting(r#"{"isolation":"reuse"}"#))
        .apply(&gw, "3")
        .await
        .unwrap();
    assert_eq!(
        calls(get_with(port, "/count", &[]).await).as_deref(),
        Some("1"),
        "a changed config is a new binding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_and_module_errors_reject_the_snapshot() {
    let port = free_port();
    let gw = gateway();
    let (snapshot, _a) = base(port).await;
    let f = fault();
    let detail = snapshot
        .clone()
        .with(filtered(
            "bad",
            "/bad",
            vec![wasm("Fault", &f, r#"{"fail-init":"nope"}"#, "FailClosed")],
        ))
        .apply(&gw, "1")
        .await
        .unwrap_err();
    assert_eq!(detail.rejected[0].name, "route/test/bad/rule/0");
    assert!(detail.rejected[0].reason.contains("nope"), "{detail:?}");

    let mut wrong_sha = fault();
    wrong_sha.name = "module/fault@wrong".into();
    wrong_sha.sha256 = "0".repeat(64);
    let detail = snapshot.with(wrong_sha).apply(&gw, "2").await.unwrap_err();
    assert_eq!(detail.rejected[0].name, "module/fault@wrong");
    assert!(detail.rejected[0].reason.contains("sha256"), "{detail:?}");
    assert!(!gw.is_ready());
}
