use std::sync::Arc;

use nantian_wasm::{
    BindingSpec, EngineConfig, FilterBinding, FilterModule, WasmEngine, built_filter,
};
use sha2::{Digest, Sha256};

pub const FAULT: &str = "nantian-filter-fault";
pub const HEADER_MODIFIER: &str = "nantian-filter-header-modifier";

pub fn engine() -> WasmEngine {
    engine_with(EngineConfig {
        max_instances: 64,
        ..Default::default()
    })
}

pub fn engine_with(config: EngineConfig) -> WasmEngine {
    WasmEngine::new(config).expect("engine")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn component_bytes(crate_name: &str) -> Vec<u8> {
    std::fs::read(built_filter(crate_name)).expect("read component")
}

pub fn module(engine: &WasmEngine, crate_name: &str) -> Arc<FilterModule> {
    let bytes = component_bytes(crate_name);
    engine
        .load_module(crate_name, &sha256_hex(&bytes), &bytes)
        .expect("load module")
}

pub fn spec(config: &str) -> BindingSpec {
    BindingSpec {
        display_name: "test".into(),
        config: config.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn bind(engine: &WasmEngine, crate_name: &str, config: &str) -> Arc<FilterBinding> {
    engine
        .bind(&module(engine, crate_name), spec(config))
        .expect("bind")
}

pub fn request(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder().uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("request").into_parts().0
}

pub fn response(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("response").into_parts().0
}

pub fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ascii header"))
}
