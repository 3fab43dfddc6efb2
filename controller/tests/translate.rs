//! Golden tests for the translator: `tests/translate/<case>.in.yaml` (plus the shared
//! `base.yaml`) → `<case>.out.yaml`, the YAML of the whole `Translation`.
//! `NANTIAN_BLESS=1 cargo test --release -p nantian-controller --test translate` rewrites
//! the expected files; review every change before committing it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use nantian_controller::load::load_str;
use nantian_controller::model::Resources;
use nantian_controller::translate::{
    AI_ADAPTER, CORS, HEADER_MODIFIER, PII_MASK, TOKEN_LIMIT, TranslateOptions, Translation,
    translate,
};
use nantian_proto::config::{FilterModule, filter_module};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/translate")
}

fn load_into(res: &mut Resources, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let label = path.file_name().unwrap().to_string_lossy().into_owned();
    let errors = load_str(&label, &text, res);
    assert!(errors.is_empty(), "{label} must load cleanly: {errors:#?}");
}

/// The objects every case shares.
fn base() -> Resources {
    let mut res = Resources::default();
    load_into(&mut res, &cases_dir().join("base.yaml"));
    res
}

/// base.yaml, then the case's own objects.
fn load_case(case: &Path) -> Resources {
    let mut res = base();
    load_into(&mut res, case);
    res
}

/// Fixed options: the n-th Gateway in (namespace, name) order may have 127.0.10.<n> and
/// 127.0.11.<n> allocated (it takes what it asks for), addresses in TEST-NET-1
/// (192.0.2.0/24) cannot be bound, and the built-in filters are modules with fake digests.
fn options(res: &Resources) -> TranslateOptions {
    let mut opts = TranslateOptions::default();
    for (n, key) in res.gateways.keys().enumerate() {
        let n = u8::try_from(n + 1).unwrap();
        opts.addresses.insert(
            key.clone(),
            vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 10, n)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 11, n)),
            ],
        );
    }
    for gw in res.gateways.values() {
        let values = gw
            .spec
            .addresses
            .iter()
            .flatten()
            .filter_map(|a| a.value.as_deref());
        for ip in values.filter_map(|v| v.parse::<IpAddr>().ok()) {
            if matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [192, 0, 2]) {
                opts.unusable_addresses.insert(
                    ip,
                    "it is not an address of any interface of this machine".into(),
                );
            }
        }
    }
    for filter in [HEADER_MODIFIER, CORS, AI_ADAPTER, TOKEN_LIMIT, PII_MASK] {
        opts.filter_modules
            .insert(filter.to_string(), builtin_module(filter));
    }
    opts
}

fn builtin_module(filter: &str) -> FilterModule {
    FilterModule {
        name: format!("module/{filter}@000000000000"),
        sha256: "0".repeat(64),
        source: Some(filter_module::Source::Path(format!(
            "/filters/{filter}.wasm"
        ))),
    }
}

/// YAML through JSON, so oneofs read as plain maps (`wasm: {...}`) rather than YAML tags.
fn to_yaml(translation: &Translation) -> String {
    let value = serde_json::to_value(translation).unwrap();
    serde_yaml::to_string(&value).unwrap()
}

fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<_>, Vec<_>) = (expected.lines().collect(), actual.lines().collect());
    let line = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let from = line.saturating_sub(3);
    let show = |lines: &[&str]| {
        lines
            .iter()
            .enumerate()
            .skip(from)
            .take(8)
            .map(|(i, l)| format!("{:>5} | {l}", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "first difference at line {}\n--- expected\n{}\n+++ actual\n{}",
        line + 1,
        show(&e),
        show(&a)
    )
}

fn case_files() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    cases.sort();
    cases
}

#[test]
fn golden_cases() {
    let bless = std::env::var_os("NANTIAN_BLESS").is_some();
    let cases = case_files();
    assert!(
        cases.len() >= 12,
        "expected the golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let res = load_case(case);
        let opts = options(&res);
        let translation = translate(&res, &opts);
        assert_eq!(
            translation,
            translate(&res, &opts),
            "{}: translation must be deterministic",
            case.display()
        );
        let actual = to_yaml(&translation);
        let out = PathBuf::from(case.to_string_lossy().replace(".in.yaml", ".out.yaml"));
        if bless {
            std::fs::write(&out, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&out).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{}: {}",
                out.display(),
                first_difference(&expected, &actual)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (NANTIAN_BLESS=1 rewrites them):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_golden_output_has_an_input() {
    for entry in std::fs::read_dir(cases_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".out.yaml") {
            assert!(
                Path::new(&format!("{stem}.in.yaml")).exists(),
                "{name} has no .in.yaml"
            );
        }
    }
}

const ONE_GATEWAY: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  gatewayClassName: nantian
  listeners:
  - name: http
    port: 80
    protocol: HTTP
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: headers
spec:
  parentRefs:
  - name: gw
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-a
          value: b
    backendRefs:
    - name: web
      port: 80
";

fn status_of<'a>(t: &'a Translation, kind: &str, name: &str) -> &'a serde_json::Value {
    &t.statuses
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .unwrap_or_else(|| panic!("no status for {kind} {name}"))
        .status
}

#[test]
fn gateway_without_an_address_is_not_programmed() {
    let mut res = base();
    assert!(load_str("inline.yaml", ONE_GATEWAY, &mut res).is_empty());
    let mut opts = options(&res);
    opts.addresses.clear();
    let t = translate(&res, &opts);
    assert!(t.gateways.is_empty());
    let status = status_of(&t, "Gateway", "gw");
    let programmed = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Programmed")
        .unwrap();
    assert_eq!(programmed["status"], "False");
    assert_eq!(programmed["reason"], "AddressNotAssigned");
    assert_eq!(status["addresses"], serde_json::json!([]));
}

#[test]
fn header_filters_without_the_module_make_the_route_unsupported() {
    let mut res = base();
    assert!(load_str("inline.yaml", ONE_GATEWAY, &mut res).is_empty());
    let mut opts = options(&res);
    opts.filter_modules = BTreeMap::new();
    let t = translate(&res, &opts);
    let accepted = &status_of(&t, "HTTPRoute", "headers")["parents"][0]["conditions"][0];
    assert_eq!(accepted["type"], "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "UnsupportedValue");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("header-modifier"),
        "{accepted}"
    );
    assert!(t.gateways[0].routes.is_empty());
    assert!(t.gateways[0].modules.is_empty());
}

const AI_ROUTE: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  gatewayClassName: nantian
  listeners:
  - name: http
    port: 80
    protocol: HTTP
---
apiVersion: gateway.nantian.dev/v1alpha1
kind: AIService
metadata:
  name: llm
spec:
  backends:
  - name: local
    provider: ollama
    endpoint: http://127.0.0.1:11434
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: chat
spec:
  parentRefs:
  - name: gw
  rules:
  - backendRefs:
    - group: gateway.nantian.dev
      kind: AIService
      name: llm
";

#[test]
fn an_ai_service_without_the_ai_adapter_module_makes_the_route_unsupported() {
    let mut res = base();
    assert!(load_str("inline.yaml", AI_ROUTE, &mut res).is_empty());
    let mut opts = options(&res);
    opts.filter_modules.remove(AI_ADAPTER);
    let t = translate(&res, &opts);
    let accepted = &status_of(&t, "HTTPRoute", "chat")["parents"][0]["conditions"][0];
    assert_eq!(accepted["type"], "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "UnsupportedValue");
    assert!(
        accepted["message"].as_str().unwrap().contains("ai-adapter"),
        "{accepted}"
    );
    assert!(t.gateways[0].routes.is_empty());
    assert!(t.gateways[0].backends.is_empty());
    // The AIService itself is fine.
    let condition = &status_of(&t, "AIService", "llm")["conditions"][0];
    assert_eq!(condition["status"], "True");
}

#[test]
fn an_ai_service_weighted_zero_gets_no_requests() {
    let mut res = base();
    let text = AI_ROUTE.replace("      name: llm\n", "      name: llm\n      weight: 0\n");
    assert!(load_str("inline.yaml", &text, &mut res).is_empty());
    let t = translate(&res, &options(&res));
    let route = &t.gateways[0].routes[0];
    assert!(route.ai.is_none());
    assert_eq!(route.backends.len(), 1);
    assert_eq!(route.backends[0].weight, 0);
    assert!(
        t.gateways[0].modules.is_empty(),
        "{:?}",
        t.gateways[0].modules
    );
    let resolved = &status_of(&t, "HTTPRoute", "chat")["parents"][0]["conditions"][1];
    assert_eq!(resolved["status"], "True", "{resolved}");
}
