//! The configurations under `examples/` load without errors and everything in them is
//! accepted: a broken example is a broken promise.

use std::path::Path;

use nantian_controller::load::load_dir;
use nantian_controller::translate::{
    AI_ADAPTER, CORS, HEADER_MODIFIER, TranslateOptions, translate,
};
use nantian_proto::config::{FilterModule, filter_module};

/// The built-in filters, as modules with fake digests (the host is not started here).
fn options() -> TranslateOptions {
    let mut opts = TranslateOptions::default();
    for filter in [HEADER_MODIFIER, CORS, AI_ADAPTER] {
        let module = FilterModule {
            name: format!("module/{filter}@000000000000"),
            sha256: "0".repeat(64),
            source: Some(filter_module::Source::Path(format!(
                "/filters/{filter}.wasm"
            ))),
        };
        opts.filter_modules.insert(filter.to_string(), module);
    }
    opts
}

/// Loads and translates `examples/<name>`: no load errors, one Gateway, and every
/// condition an object has saying Accepted or ResolvedRefs is True.
fn translate_example(name: &str) -> nantian_controller::translate::Translation {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let (res, errors) = load_dir(&dir);
    assert!(errors.is_empty(), "{errors:#?}");
    let translation = translate(&res, &options());
    assert_eq!(translation.gateways.len(), 1);
    for s in &translation.statuses {
        for c in conditions(&s.status) {
            if c["type"] == "Accepted" || c["type"] == "ResolvedRefs" {
                assert_eq!(c["status"], "True", "{} {}: {c}", s.kind, s.name);
            }
        }
    }
    translation
}

/// An object's own conditions and those of its parents (routes) or ancestors (policies).
fn conditions(status: &serde_json::Value) -> Vec<serde_json::Value> {
    let nested = ["parents", "ancestors"]
        .iter()
        .flat_map(|k| status[k].as_array().cloned().unwrap_or_default())
        .flat_map(|p| p["conditions"].as_array().cloned().unwrap_or_default());
    status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain(nested)
        .collect()
}

#[test]
fn the_quickstart_loads_and_every_object_is_accepted() {
    let translation = translate_example("quickstart");
    let policies: Vec<_> = translation
        .statuses
        .iter()
        .filter(|s| s.kind.ends_with("Policy"))
        .collect();
    assert_eq!(
        policies.len(),
        1,
        "the session-persistence example's policy"
    );
    assert!(!conditions(&policies[0].status).is_empty(), "{policies:?}");
}

#[test]
fn the_ai_gateway_example_loads_and_its_route_reaches_the_ai_service() {
    let translation = translate_example("ai-gateway");
    let ai = translation
        .statuses
        .iter()
        .find(|s| s.kind == "AIService")
        .expect("the AIService's status");
    assert_eq!(conditions(&ai.status).len(), 1, "{ai:?}");
    let gateway = serde_json::to_value(&translation.gateways[0]).unwrap();
    let text = gateway.to_string();
    assert!(text.contains("\"stickyKey\":\"x-user-id\""), "{text}");
    assert!(text.contains("\"provider\":\"anthropic\""), "{text}");
}
