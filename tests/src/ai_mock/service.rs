//! An AIService in front of mock providers, as the AI end-to-end tests configure it: one
//! Gateway, one HTTPRoute whose only backend is AIService `llm`, a backend per mock with
//! its key in a Secret.

use super::{AiMockProcess, Provider};
use crate::harness::yaml;

/// A running mock provider and the key it demands.
pub struct KeyedMock {
    pub process: AiMockProcess,
    pub key: String,
}

impl KeyedMock {
    /// Starts `nantian-ai-mock` for `provider`, answering as `name` and demanding the key
    /// `sk-<name>-secret`.
    pub fn start(provider: Provider, name: &str) -> KeyedMock {
        let key = format!("sk-{name}-secret");
        let process = AiMockProcess::start(provider, &["--api-key", &key, "--name", name])
            .expect("start nantian-ai-mock");
        KeyedMock { process, key }
    }
}

/// A backend of AIService `llm` in namespace `ns` for `mock`: its entry under
/// `spec.backends` (`models` in YAML flow form, e.g. `[gpt-4o]`) and the Secret
/// `<name>-key` holding the mock's key.
pub fn backend(
    ns: &str,
    name: &str,
    mock: &KeyedMock,
    models: &str,
    weight: Option<u32>,
) -> (String, String) {
    let weight = weight.map_or(String::new(), |w| format!("    weight: {w}\n"));
    let entry = format!(
        "  - name: {name}\n    provider: {}\n    endpoint: {}\n    models: {models}\n{weight}    auth:\n      secretRef: {{name: {name}-key, key: api-key}}\n",
        mock.process.provider.as_str(),
        mock.process.base_url(),
    );
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-key, namespace: {ns}}}\nstringData:\n  api-key: {}\n",
        mock.key
    );
    (entry, secret)
}

/// The whole standalone config: Gateway `gw` on `address`:8080 in namespace `ns`, HTTPRoute
/// `llm` to AIService `llm` with `backends` (from [`backend`]) and `spec_tail` (more YAML
/// lines of its spec: routing, fallback, piiMask…), and the backends' Secrets.
pub fn config(ns: &str, address: &str, backends: &[(String, String)], spec_tail: &str) -> String {
    let entries: String = backends.iter().map(|(e, _)| e.as_str()).collect();
    let secrets: String = backends.iter().map(|(_, s)| s.as_str()).collect();
    format!(
        r#"{class}{gateway}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: llm, namespace: {ns}}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - backendRefs:
    - {{group: gateway.nantian.dev, kind: AIService, name: llm}}
---
apiVersion: gateway.nantian.dev/v1alpha1
kind: AIService
metadata: {{name: llm, namespace: {ns}}}
spec:
  backends:
{entries}{spec_tail}
{secrets}"#,
        class = yaml::GATEWAY_CLASS,
        gateway = yaml::gateway(ns, "gw", address, &[("http", 8080, None)]),
    )
}
