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

#[test]
fn the_quickstart_loads_and_every_object_is_accepted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let (res, errors) = load_dir(&dir);
    assert!(errors.is_empty(), "{errors:#?}");
    let translation = translate(&res, &options());
    assert_eq!(translation.gateways.len(), 1);
    let conditions = |status: &serde_json::Value| -> Vec<serde_json::Value> {
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
    };
    let mut policies = 0;
    for s in &translation.statuses {
        if s.kind.ends_with("Policy") {
            policies += 1;
            assert!(!conditions(&s.status).is_empty(), "{s:?}");
        }
        for c in conditions(&s.status) {
            if c["type"] == "Accepted" {
                assert_eq!(c["status"], "True", "{} {}: {c}", s.kind, s.name);
            }
        }
    }
    assert_eq!(policies, 1, "the session-persistence example's policy");
}
