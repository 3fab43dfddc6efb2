//! Compile once per SHA-256: in memory, and across engines through the cache directory.

use std::sync::Arc;

use nantian_wasm::{EngineConfig, HeadersAction, ModuleOrigin, WasmError, built_filter};

use crate::support::*;

#[test]
fn same_bytes_load_once_per_engine() {
    let engine = engine();
    let bytes = component_bytes(HEADER_MODIFIER);
    let sha = sha256_hex(&bytes);
    let first = engine.load_module("module/hm", &sha, &bytes).unwrap();
    let second = engine
        .load_module("module/hm", &sha.to_uppercase(), &bytes)
        .unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(first.origin(), ModuleOrigin::Compiled);
    assert_eq!(first.sha256(), sha);
    assert_eq!(first.name(), "module/hm");
    let from_file = engine
        .load_module_file("module/hm", &sha, &built_filter(HEADER_MODIFIER))
        .unwrap();
    assert!(Arc::ptr_eq(&first, &from_file));
}

#[test]
fn a_new_engine_loads_the_precompiled_module_from_the_cache_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        cache_dir: Some(dir.path().join("cache")),
        max_instances: 8,
        ..Default::default()
    };
    let bytes = component_bytes(FAULT);
    let sha = sha256_hex(&bytes);

    let first = engine_with(config.clone());
    assert_eq!(
        first.load_module("fault", &sha, &bytes).unwrap().origin(),
        ModuleOrigin::Compiled
    );
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let file_name = cached[0].to_str().unwrap();
    assert!(
        file_name.starts_with(&sha) && file_name.ends_with(".cwasm"),
        "{file_name}"
    );

    let second = engine_with(config);
    let module = second.load_module("fault", &sha, &bytes).unwrap();
    assert_eq!(module.origin(), ModuleOrigin::DiskCache);
    let binding = second.bind(&module, spec("{}")).unwrap();
    let mut req = request("/", &[]);
    assert_eq!(
        binding
            .start()
            .unwrap()
            .on_request_headers(&mut req)
            .unwrap(),
        HeadersAction::Continue
    );
    assert_eq!(header(&req.headers, "x-fault-filter"), Some("ok"));
}

#[test]
fn an_unusable_cache_file_is_replaced_by_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 8,
        ..Default::default()
    };
    let bytes = component_bytes(FAULT);
    let sha = sha256_hex(&bytes);
    engine_with(config.clone())
        .load_module("fault", &sha, &bytes)
        .unwrap();
    let cached = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&cached, b"not a cwasm").unwrap();

    let module = engine_with(config.clone())
        .load_module("fault", &sha, &bytes)
        .unwrap();
    assert_eq!(module.origin(), ModuleOrigin::Compiled);
    let module = engine_with(config)
        .load_module("fault", &sha, &bytes)
        .unwrap();
    assert_eq!(
        module.origin(),
        ModuleOrigin::DiskCache,
        "the bad file was rewritten"
    );
}

#[test]
fn wrong_sha256_is_rejected() {
    let engine = engine();
    let bytes = component_bytes(FAULT);
    let wrong = sha256_hex(b"something else");
    match engine.load_module("module/fault@abc", &wrong, &bytes) {
        Err(err @ WasmError::Sha256Mismatch { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains("module/fault@abc") && message.contains(&wrong),
                "{message}"
            );
        }
        other => panic!("expected a sha256 mismatch, got {other:?}"),
    }
}

#[test]
fn bytes_that_are_not_a_filter_are_rejected_with_the_module_name() {
    let engine = engine();
    let garbage = b"\0asm but not really";
    match engine.load_module("module/garbage", &sha256_hex(garbage), garbage) {
        Err(err @ WasmError::Compile { .. }) => assert!(err.to_string().contains("module/garbage")),
        other => panic!("expected a compile error, got {other:?}"),
    }
    match engine.load_module_file(
        "module/missing",
        "00",
        std::path::Path::new("/nonexistent.wasm"),
    ) {
        Err(err @ WasmError::Read { .. }) => assert!(err.to_string().contains("module/missing")),
        other => panic!("expected a read error, got {other:?}"),
    }
}
