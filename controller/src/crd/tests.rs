//! Each kind round-trips a realistic object, and its schema carries the validation that
//! stops bad input at the API server.

use kube::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ai_service::{PiiAction, PiiDetector, PiiDirection};
use super::*;

/// Parses `yaml`, checks that serialising and parsing again gives the same object, and
/// returns it.
fn round_trip<K: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(yaml: &str) -> K {
    let parsed: K = serde_yaml::from_str(yaml).expect("example parses");
    let written = serde_yaml::to_string(&parsed).expect("serialises");
    let again: K = serde_yaml::from_str(&written).expect("serialised form parses");
    assert_eq!(parsed, again, "round trip changed the object:\n{written}");
    // Nothing of the example was dropped: every field written in it comes back out.
    let input: Value = serde_yaml::from_str(yaml).unwrap();
    let output = serde_json::to_value(&parsed).unwrap();
    assert_subset(&input, &output, "");
    parsed
}

fn assert_subset(want: &Value, got: &Value, path: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let sub = format!("{path}.{k}");
                assert_subset(v, g.get(k).unwrap_or_else(|| panic!("{sub} dropped")), &sub);
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "{path}: length changed");
            for (i, (w, g)) in w.iter().zip(g).enumerate() {
                assert_subset(w, g, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(want, got, "{path} changed"),
    }
}

/// The openAPIV3Schema of a CRD's only version, as JSON.
fn schema<K: CustomResourceExt>() -> Value {
    let crd = serde_json::to_value(K::crd()).unwrap();
    assert_eq!(crd["spec"]["versions"].as_array().unwrap().len(), 1);
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The CEL rules (`x-kubernetes-validations[].rule`) at a schema node.
fn rules(node: &Value) -> Vec<String> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| r["rule"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn has_rule(node: &Value, needle: &str) -> bool {
    rules(node).iter().any(|r| r.contains(needle))
}

/// Every CRD: group, version, scope, status subresource, conditions keyed by type.
#[test]
fn every_crd_is_namespaced_with_status() {
    let crds = crds();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "aiservices.gateway.nantian.dev",
            "tokenpolicies.gateway.nantian.dev",
            "wasmplugins.gateway.nantian.dev",
        ]
    );
    for crd in &crds {
        let json = serde_json::to_value(crd).unwrap();
        let spec = &json["spec"];
        assert_eq!(spec["group"], GROUP);
        assert_eq!(spec["scope"], "Namespaced");
        assert_eq!(spec["names"]["categories"][0], "nantian");
        assert!(spec["names"]["shortNames"][0].is_string());
        let version = &spec["versions"][0];
        assert_eq!(version["name"], VERSION);
        assert_eq!(version["served"], true);
        assert_eq!(version["storage"], true);
        assert!(version["subresources"]["status"].is_object());
        let columns = version["additionalPrinterColumns"].as_array().unwrap();
        assert!(columns.iter().any(|c| c["name"] == "Accepted"));
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"];
        let conditions = &status["properties"]["conditions"];
        assert_eq!(
            conditions["x-kubernetes-list-type"], "map",
            "{}",
            spec["names"]["kind"]
        );
        assert_eq!(conditions["x-kubernetes-list-map-keys"][0], "type");
        assert!(status["properties"]["observedGeneration"].is_object());
        // Descriptions come from the doc comments.
        assert!(version["schema"]["openAPIV3Schema"]["description"].is_string());
    }
}

/// Every schema node describes itself, so `kubectl explain` says what each field means.
#[test]
fn every_spec_field_has_a_description() {
    fn walk(node: &Value, path: &str) {
        if let Some(props) = node["properties"].as_object() {
            for (name, prop) in props {
                let sub = format!("{path}.{name}");
                assert!(prop["description"].is_string(), "{sub} has no description");
                walk(prop, &sub);
            }
        }
        if node["items"].is_object() {
            walk(&node["items"], &format!("{path}[]"));
        }
    }
    for (kind, schema) in [
        ("AIService", schema::<AIService>()),
        ("TokenPolicy", schema::<TokenPolicy>()),
        ("WasmPlugin", schema::<WasmPlugin>()),
    ] {
        walk(&schema["properties"]["spec"], &format!("{kind}.spec"));
    }
}

const AI_SERVICE: &str = r#"
apiVersion: gateway.nantian.dev/v1alpha1
kind: AIService
metadata:
  name: llm
  namespace: team-a
spec:
  backends:
  - name: openai
    provider: openai
    endpoint: https://api.openai.com/v1
    models: [gpt-4o, gpt-4o-mini]
    auth:
      secretRef: {name: openai-key, key: api-key}
    weight: 3
  - name: claude
    provider: anthropic
    endpoint: https://api.anthropic.com
    auth:
      secretRef: {name: anthropic-key, key: api-key}
      header: x-api-key
  - name: local
    provider: ollama
    endpoint: http://ollama.models.svc:11434
    models: [llama3]
    weight: 0
  routing:
  - model: gpt-4*
    backends: [openai]
  - model: claude-*
    backends: [claude]
  - model: "*"
    backends: [openai, local]
  fallback: [claude, local]
  sessionAffinity:
    type: header
    header: x-session-id
status:
  observedGeneration: 2
  conditions:
  - type: Accepted
    status: "True"
    reason: Accepted
    message: ""
    lastTransitionTime: "2026-01-02T03:04:05Z"
    observedGeneration: 2
"#;

#[test]
fn ai_service_round_trips() {
    let svc: AIService = round_trip(AI_SERVICE);
    assert_eq!(svc.spec.backends.len(), 3);
    assert_eq!(svc.spec.backends[0].provider, Provider::OpenAI);
    assert_eq!(svc.spec.backends[1].provider, Provider::Anthropic);
    assert_eq!(svc.spec.backends[1].weight, 1, "weight defaults to 1");
    assert_eq!(svc.spec.backends[2].weight, 0);
    assert_eq!(
        svc.spec.backends[1]
            .auth
            .as_ref()
            .unwrap()
            .header
            .as_deref(),
        Some("x-api-key")
    );
    assert_eq!(svc.spec.routing[2].model, "*");
    assert_eq!(svc.spec.fallback, ["claude", "local"]);
    let affinity = svc.spec.session_affinity.as_ref().unwrap();
    assert_eq!(affinity.type_, AffinityType::Header);
    assert_eq!(affinity.header.as_deref(), Some("x-session-id"));
    assert_eq!(svc.status.unwrap().conditions[0].type_, "Accepted");
}

#[test]
fn ai_service_schema_validates() {
    let schema = schema::<AIService>();
    let spec = &schema["properties"]["spec"];
    assert!(has_rule(
        spec,
        "self.routing.all(r, r.backends.all(n, self.backends.exists("
    ));
    assert!(has_rule(spec, "self.fallback.all(n, self.backends.exists("));
    let backends = &spec["properties"]["backends"];
    assert!(has_rule(backends, "self.exists_one(b, a.name == b.name)"));
    assert_eq!(backends["minItems"], 1);
    assert_eq!(backends["x-kubernetes-list-type"], "map");
    let backend = &backends["items"]["properties"];
    assert_eq!(
        backend["provider"]["enum"],
        serde_json::json!(["openai", "anthropic", "ollama"])
    );
    assert_eq!(backend["weight"]["minimum"].as_f64(), Some(0.0));
    assert_eq!(backend["weight"]["maximum"].as_f64(), Some(1_000_000.0));
    assert_eq!(backend["weight"]["default"], 1);
    assert!(backend["endpoint"]["pattern"].is_string());
    let required = backends["items"]["required"].as_array().unwrap();
    for field in ["name", "provider", "endpoint"] {
        assert!(required.iter().any(|r| r == field), "{field} not required");
    }
    // Routes reach an AIService through their backendRefs only.
    assert!(spec["properties"].get("targetRefs").is_none());
    let affinity = &spec["properties"]["sessionAffinity"];
    assert!(has_rule(
        affinity,
        "has(self.header) == (self.type == 'header')"
    ));
    assert_eq!(
        affinity["properties"]["type"]["enum"],
        serde_json::json!(["header", "user"])
    );
    assert!(affinity["properties"]["header"]["pattern"].is_string());
}

#[test]
fn ai_service_cel_rules_say_what_is_wrong() {
    let schema = schema::<AIService>();
    let messages: Vec<_> = schema["properties"]["spec"]["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(messages.iter().any(|m| m.contains("routing")));
    assert!(messages.iter().any(|m| m.contains("fallback")));
}

const PII_MASK: &str = r#"
apiVersion: gateway.nantian.dev/v1alpha1
kind: AIService
metadata:
  name: llm
  namespace: team-a
spec:
  backends:
  - name: openai
    provider: openai
    endpoint: https://api.openai.com/v1
  piiMask:
    detectors: [email, phone, creditCard, ssn, ipv4, ipv6, iban]
    custom:
    - name: employee-id
      pattern: EMP-[0-9]{6}
    action: Redact
    actions:
      email: Reject
      employee-id: Mask
    direction: Request
"#;

#[test]
fn ai_service_pii_mask_round_trips() {
    let svc: AIService = round_trip(PII_MASK);
    let pii = svc.spec.pii_mask.unwrap();
    assert_eq!(pii.detectors.as_deref(), Some(&PiiDetector::ALL[..]));
    let names: Vec<_> = PiiDetector::ALL.map(PiiDetector::as_str).into();
    assert_eq!(
        names,
        [
            "email",
            "phone",
            "creditCard",
            "ssn",
            "ipv4",
            "ipv6",
            "iban"
        ]
    );
    assert_eq!(pii.custom[0].name, "employee-id");
    assert_eq!(pii.custom[0].pattern, "EMP-[0-9]{6}");
    assert_eq!(pii.action, PiiAction::Redact);
    assert_eq!(pii.actions["email"], PiiAction::Reject);
    assert_eq!(pii.actions["employee-id"], PiiAction::Mask);
    assert_eq!(pii.direction, PiiDirection::Request);

    // An empty piiMask: every built-in detector, masking, both ways.
    let small: AIService = round_trip(
        r#"
apiVersion: gateway.nantian.dev/v1alpha1
kind: AIService
metadata: {name: small}
spec:
  backends: [{name: local, provider: ollama, endpoint: "http://ollama:11434"}]
  piiMask: {}
"#,
    );
    let pii = small.spec.pii_mask.unwrap();
    assert_eq!(pii.detectors, None);
    assert!(pii.custom.is_empty() && pii.actions.is_empty());
    assert_eq!(pii.action, PiiAction::Mask);
    assert_eq!(pii.direction, PiiDirection::Both);
    // Written back, the defaults are explicit and nothing else appears.
    assert_eq!(
        serde_json::to_value(&pii).unwrap(),
        serde_json::json!({"action": "Mask", "direction": "Both"})
    );
}

#[test]
fn ai_service_pii_mask_schema_validates() {
    let schema = schema::<AIService>();
    let pii = &schema["properties"]["spec"]["properties"]["piiMask"];
    assert!(has_rule(pii, "size(self.detectors) > 0"));
    assert!(has_rule(
        pii,
        "self.actions.all(k, (k in ['email', 'phone', 'creditCard',"
    ));
    assert!(has_rule(pii, "self.custom.exists(c, c.name == k)"));
    let props = &pii["properties"];
    let detectors = &props["detectors"];
    assert_eq!(
        detectors["items"]["enum"],
        serde_json::json!([
            "email",
            "phone",
            "creditCard",
            "ssn",
            "ipv4",
            "ipv6",
            "iban"
        ])
    );
    assert_eq!(detectors["x-kubernetes-list-type"], "set");
    assert_eq!(detectors["maxItems"], 7);
    let custom = &props["custom"];
    assert_eq!(custom["maxItems"], 64);
    assert_eq!(custom["x-kubernetes-list-type"], "map");
    assert!(has_rule(custom, "self.exists_one(b, a.name == b.name)"));
    assert!(has_rule(
        &custom["items"],
        "!(self.name in ['email', 'phone', 'creditcard',"
    ));
    let item = &custom["items"]["properties"];
    assert_eq!(item["name"]["maxLength"], 64);
    assert_eq!(item["name"]["pattern"], DNS_LABEL);
    assert_eq!(item["pattern"]["minLength"], 1);
    assert_eq!(item["pattern"]["maxLength"], 1024);
    let required = custom["items"]["required"].as_array().unwrap();
    assert!(required.iter().any(|r| r == "name") && required.iter().any(|r| r == "pattern"));
    let actions = serde_json::json!(["Mask", "Redact", "Reject"]);
    assert_eq!(props["action"]["enum"], actions);
    assert_eq!(props["action"]["default"], "Mask");
    // A map: built-in or custom detector names to actions, at most one per detector.
    assert_eq!(props["actions"]["type"], "object");
    assert_eq!(props["actions"]["additionalProperties"]["enum"], actions);
    assert_eq!(props["actions"]["maxProperties"], 71);
    assert_eq!(
        props["direction"]["enum"],
        serde_json::json!(["Request", "Response", "Both"])
    );
    assert_eq!(props["direction"]["default"], "Both");
}

const TOKEN_POLICY: &str = r#"
apiVersion: gateway.nantian.dev/v1alpha1
kind: TokenPolicy
metadata:
  name: per-tenant
  namespace: team-a
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: ai
    sectionName: https
  - group: gateway.nantian.dev
    kind: AIService
    name: llm
  limits:
    tokensPerMinute: 20000
    tokensPerDay: 2000000
    requestsPerMinute: 60
  key:
    type: header
    header: x-tenant
  burst: 5000
  onLimit:
    statusCode: 429
    message: token budget spent
    retryAfter: false
  storage:
    type: redis
    redis:
      url: rediss://redis.infra.svc:6380/0
"#;

#[test]
fn token_policy_round_trips() {
    let policy: TokenPolicy = round_trip(TOKEN_POLICY);
    let spec = &policy.spec;
    assert_eq!(spec.target_refs[0].section_name.as_deref(), Some("https"));
    assert_eq!(spec.limits.tokens_per_minute, Some(20_000));
    assert_eq!(spec.limits.tokens_per_hour, None);
    assert_eq!(spec.key.type_, KeyType::Header);
    assert_eq!(spec.burst, Some(5000));
    assert!(!spec.on_limit.as_ref().unwrap().retry_after);
    assert_eq!(spec.storage.as_ref().unwrap().type_, StorageType::Redis);

    // The smallest policy: one target, one limit, a key; onLimit's fields default.
    let small: TokenPolicy = round_trip(
        r#"
apiVersion: gateway.nantian.dev/v1alpha1
kind: TokenPolicy
metadata: {name: small}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat}]
  limits: {tokensPerHour: 100000}
  key: {type: apiKey}
  onLimit: {message: slow down}
"#,
    );
    assert_eq!(small.spec.key.type_, KeyType::ApiKey);
    let on_limit = small.spec.on_limit.unwrap();
    assert_eq!(on_limit.status_code, 429);
    assert!(on_limit.retry_after);
    assert!(small.spec.storage.is_none());
}

#[test]
fn token_policy_schema_validates() {
    let schema = schema::<TokenPolicy>();
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["targetRefs"]["minItems"], 1);
    assert!(has_rule(&spec["targetRefs"], "t.kind == 'AIService'"));
    assert!(has_rule(&spec["targetRefs"], "exists_one"));
    let limits = &spec["limits"];
    assert!(has_rule(
        limits,
        "has(self.tokensPerMinute) || has(self.tokensPerHour)"
    ));
    assert_eq!(
        limits["properties"]["tokensPerMinute"]["minimum"].as_f64(),
        Some(1.0)
    );
    let key = &spec["key"];
    assert!(has_rule(key, "has(self.header) == (self.type == 'header')"));
    assert_eq!(
        key["properties"]["type"]["enum"],
        serde_json::json!(["header", "apiKey", "user", "model"])
    );
    let on_limit = &spec["onLimit"]["properties"];
    assert_eq!(on_limit["statusCode"]["default"], 429);
    assert_eq!(on_limit["statusCode"]["minimum"].as_f64(), Some(400.0));
    assert_eq!(on_limit["statusCode"]["maximum"].as_f64(), Some(599.0));
    assert!(has_rule(
        &spec["storage"],
        "has(self.redis) == (self.type == 'redis')"
    ));
    assert_eq!(
        spec["storage"]["properties"]["type"]["enum"],
        serde_json::json!(["local", "redis"])
    );
    let required = schema["properties"]["spec"]["required"].as_array().unwrap();
    for field in ["targetRefs", "limits", "key"] {
        assert!(required.iter().any(|r| r == field), "{field} not required");
    }
}

const WASM_PLUGIN: &str = r#"
apiVersion: gateway.nantian.dev/v1alpha1
kind: WasmPlugin
metadata:
  name: jwt
  namespace: team-a
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: public
  url: oci://ghcr.io/example/jwt-filter:1.2.0
  sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
  pluginConfig:
    issuer: https://auth.example.com
    audiences: [chat, search]
    clockSkew: {seconds: 30}
  phase: Authn
  priority: 10
  failStrategy: FailClosed
  limits:
    memory: 16Mi
    time: 5ms
"#;

#[test]
fn wasm_plugin_round_trips() {
    let plugin: WasmPlugin = round_trip(WASM_PLUGIN);
    let spec = &plugin.spec;
    assert_eq!(spec.phase, Phase::Authn);
    assert_eq!(spec.priority, 10);
    assert_eq!(spec.fail_strategy, FailStrategy::FailClosed);
    let config = spec.plugin_config.as_ref().unwrap();
    assert_eq!(config["clockSkew"]["seconds"], 30);
    assert_eq!(spec.limits.as_ref().unwrap().time.as_deref(), Some("5ms"));

    // From a ConfigMap, everything else defaulted.
    let local: WasmPlugin = round_trip(
        r#"
apiVersion: gateway.nantian.dev/v1alpha1
kind: WasmPlugin
metadata: {name: local}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat}]
  configMapRef: {name: filters, key: audit.wasm}
"#,
    );
    assert_eq!(local.spec.phase, Phase::Default);
    assert_eq!(local.spec.priority, 0);
    assert_eq!(local.spec.fail_strategy, FailStrategy::FailClosed);
    assert!(local.spec.url.is_none() && local.spec.plugin_config.is_none());
}

#[test]
fn wasm_plugin_schema_validates() {
    let schema = schema::<WasmPlugin>();
    let spec = &schema["properties"]["spec"];
    assert!(has_rule(spec, "has(self.url) != has(self.configMapRef)"));
    assert!(has_rule(spec, "!has(self.url) || has(self.sha256)"));
    let props = &spec["properties"];
    assert_eq!(props["targetRefs"]["minItems"], 1);
    assert_eq!(props["sha256"]["pattern"], "^[a-f0-9]{64}$");
    assert!(
        props["url"]["pattern"]
            .as_str()
            .unwrap()
            .contains("https|oci")
    );
    assert_eq!(props["pluginConfig"]["type"], "object");
    assert_eq!(
        props["pluginConfig"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
    assert_eq!(
        props["phase"]["enum"],
        serde_json::json!(["Authn", "Authz", "Default"])
    );
    assert_eq!(
        props["failStrategy"]["enum"],
        serde_json::json!(["FailClosed", "FailOpen"])
    );
    assert_eq!(props["failStrategy"]["default"], "FailClosed");
    assert!(props["limits"]["properties"]["memory"]["pattern"].is_string());
    assert!(props["limits"]["properties"]["time"]["pattern"].is_string());
}

/// The patterns accept the documented examples and refuse near misses.
#[test]
fn patterns_match_the_documented_forms() {
    let wasm = schema::<WasmPlugin>();
    let props = &wasm["properties"]["spec"]["properties"];
    let pattern = |node: &Value| regex::Regex::new(node["pattern"].as_str().unwrap()).unwrap();
    let memory = pattern(&props["limits"]["properties"]["memory"]);
    assert!(memory.is_match("16Mi") && memory.is_match("65536") && !memory.is_match("16 MiB"));
    let time = pattern(&props["limits"]["properties"]["time"]);
    assert!(time.is_match("5ms") && time.is_match("1m30s") && !time.is_match("5"));
    let url = pattern(&props["url"]);
    assert!(url.is_match("https://example.com/f.wasm") && url.is_match("oci://ghcr.io/a/b:1"));
    assert!(!url.is_match("http://example.com/f.wasm"));

    let ai = schema::<AIService>();
    let props = &ai["properties"]["spec"]["properties"];
    let model = pattern(&props["routing"]["items"]["properties"]["model"]);
    for ok in ["gpt-4o", "gpt-4*", "*"] {
        assert!(model.is_match(ok), "{ok}");
    }
    for bad in ["gpt-*-mini", "**"] {
        assert!(!model.is_match(bad), "{bad}");
    }
    let endpoint = pattern(&props["backends"]["items"]["properties"]["endpoint"]);
    assert!(endpoint.is_match("http://ollama.models.svc:11434"));
    assert!(!endpoint.is_match("ollama:11434"));
}
