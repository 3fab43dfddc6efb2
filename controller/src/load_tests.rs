use super::*;
use crate::model::MetaExt;

const GOOD_AND_BAD: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: apps
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: apps
spec:
  ports:
  - port: 8080
    name: http
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  gatewayClassName: nantian
  listeners:
  - name: http
    port: not-a-number
    protocol: HTTP
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
  namespace: apps
spec:
  parentRefs:
  - name: gw
";

#[test]
fn multi_document_file_loads_every_good_document() {
    let mut res = Resources::default();
    let errors = load_str("objects.yaml", GOOD_AND_BAD, &mut res);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(res.namespaces.contains_key(&(String::new(), "apps".into())));
    assert!(res.services.contains_key(&("apps".into(), "web".into())));
    // The route after the bad Gateway still loads.
    assert!(res.http_routes.contains_key(&("apps".into(), "r".into())));
    assert!(res.gateways.is_empty());
}

#[test]
fn errors_name_file_absolute_line_object_and_reason() {
    let mut res = Resources::default();
    let errors = load_str("objects.yaml", GOOD_AND_BAD, &mut res);
    let err = &errors[0];
    assert_eq!(err.file, "objects.yaml");
    // `port: not-a-number` is on line 24 of the file.
    assert_eq!(err.line, 24);
    assert_eq!(
        err.object,
        Some(ObjectRef::namespaced("Gateway", "default", "gw"))
    );
    assert!(
        err.reason.contains("spec.listeners[0].port"),
        "{}",
        err.reason
    );
    assert!(!err.reason.contains("at line"), "{}", err.reason);
    let shown = err.to_string();
    assert!(
        shown.starts_with("objects.yaml:24: Gateway default/gw: spec.listeners[0].port"),
        "{shown}"
    );
    let json = serde_json::to_value(err).unwrap();
    assert_eq!(json["line"], 24);
    assert_eq!(json["object"]["kind"], "Gateway");
}

#[test]
fn unparsable_yaml_reports_its_line_and_the_rest_loads() {
    let text = "\
apiVersion: v1
kind: Service
metadata:
  name: a
---
apiVersion: v1
kind: Service
metadata:
  name: [unclosed
---
apiVersion: v1
kind: Service
metadata:
  name: c
";
    let mut res = Resources::default();
    let errors = load_str("f.yaml", text, &mut res);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].line >= 9 && errors[0].line <= 10,
        "{:?}",
        errors[0]
    );
    assert_eq!(errors[0].object, None);
    assert_eq!(res.services.len(), 2);
}

#[test]
fn namespaced_objects_default_to_the_default_namespace() {
    let text = "\
apiVersion: v1
kind: Service
metadata:
  name: web
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: nantian
spec:
  controllerName: gateway.nantian.dev/controller
";
    let mut res = Resources::default();
    assert!(load_str("f.yaml", text, &mut res).is_empty());
    let svc = &res.services[&("default".into(), "web".into())];
    assert_eq!(svc.namespace(), "default");
    assert_eq!(svc.metadata.namespace.as_deref(), Some("default"));
    assert!(
        res.gateway_classes
            .contains_key(&(String::new(), "nantian".into()))
    );
}

#[test]
fn unknown_kinds_and_empty_documents_are_ignored() {
    let text = "\
# leading comment
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec: {}
---
--- # another empty one
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w
";
    let mut res = Resources::default();
    assert!(load_str("f.yaml", text, &mut res).is_empty());
    assert!(res.is_empty());
}

#[test]
fn ai_services_load_and_a_bad_provider_is_an_error_naming_its_line() {
    let text = "\
apiVersion: gateway.nantian.dev/v1alpha1
kind: AIService
metadata:
  name: llm
spec:
  backends:
  - name: local
    provider: ollama
    endpoint: http://127.0.0.1:11434
  sessionAffinity:
    type: user
---
apiVersion: gateway.nantian.dev/v1alpha1
kind: AIService
metadata:
  name: bad
  namespace: apps
spec:
  backends:
  - name: x
    provider: cohere
    endpoint: http://127.0.0.1:1
";
    let mut res = Resources::default();
    let errors = load_str("ai.yaml", text, &mut res);
    let llm = &res.ai_services[&("default".to_string(), "llm".to_string())];
    assert_eq!(llm.namespace(), "default");
    assert_eq!(llm.spec.backends[0].weight, 1);
    assert_eq!(
        llm.spec.session_affinity.as_ref().map(|a| a.type_),
        Some(crate::crd::AffinityType::User)
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 21, "{errors:?}");
    assert_eq!(
        errors[0].object,
        Some(ObjectRef::namespaced("AIService", "apps", "bad"))
    );
    assert!(errors[0].reason.contains("cohere"), "{errors:?}");
}

#[test]
fn missing_kind_name_and_non_mappings_are_errors() {
    let text = "\
apiVersion: v1
metadata:
  name: nokind
---
apiVersion: v1
kind: Service
metadata:
  namespace: apps
---
- just
- a list
";
    let mut res = Resources::default();
    let errors = load_str("f.yaml", text, &mut res);
    let summary: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (1, "missing kind"),
            (5, "metadata.name is required"),
            (10, "document is not a mapping"),
        ]
    );
    assert_eq!(
        errors[1].to_string(),
        "f.yaml:5: Service apps/: metadata.name is required"
    );
}

#[test]
fn list_items_load_and_bad_items_are_reported() {
    let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: a
- apiVersion: v1
  kind: Service
  metadata:
    name: b
  spec:
    ports: 7
";
    let mut res = Resources::default();
    let errors = load_str("list.yaml", text, &mut res);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].reason.starts_with("items[1]: "),
        "{}",
        errors[0].reason
    );
    assert_eq!(errors[0].line, 1);
    assert_eq!(
        errors[0].object,
        Some(ObjectRef::namespaced("Service", "default", "b"))
    );
    assert!(res.services.contains_key(&("default".into(), "a".into())));
}

#[test]
fn duplicates_are_reported_and_the_later_one_wins() {
    let text = "\
apiVersion: v1
kind: Service
metadata:
  name: a
  labels: {v: one}
---
apiVersion: v1
kind: Service
metadata:
  name: a
  labels: {v: two}
";
    let mut res = Resources::default();
    let errors = load_str("f.yaml", text, &mut res);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 7);
    assert!(errors[0].reason.contains("duplicate"));
    let svc = &res.services[&("default".into(), "a".into())];
    assert_eq!(svc.labels()["v"], "two");
}

#[test]
fn wrong_api_version_for_a_core_kind_is_an_error() {
    let text = "\
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata:
  name: s
addressType: IPv4
";
    let mut res = Resources::default();
    let errors = load_str("f.yaml", text, &mut res);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].reason.contains("discovery.k8s.io/v1"),
        "{}",
        errors[0].reason
    );
}

#[test]
fn load_dir_reads_yaml_files_in_name_order_and_names_them_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\nkind: Service\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "kind: [broken").unwrap();
    std::fs::create_dir(dir.path().join("nested.yaml")).unwrap();

    let (res, errors) = load_dir(dir.path());
    assert_eq!(res.services.len(), 2);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].file.ends_with("a.yaml"), "{}", errors[0].file);
    assert_eq!(errors[0].line, 6);
    assert_eq!(errors[0].reason, "missing apiVersion");
}

#[test]
fn load_dir_on_a_missing_directory_reports_it() {
    let (res, errors) = load_dir(Path::new("/nonexistent/nantian-test-dir"));
    assert!(res.is_empty());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, 0);
}

fn service_yaml(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: {port}\n"
    )
}

fn service_port(res: &Resources, name: &str) -> i32 {
    res.services[&("default".to_string(), name.to_string())]
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()[0]
        .port
}

#[test]
fn a_dir_loader_sees_edits_removals_and_duplicates_across_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, service_yaml("web", 80)).unwrap();
    std::fs::write(&b, service_yaml("api", 90)).unwrap();
    let mut loader = DirLoader::default();

    let (res, errors) = loader.load(dir.path());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        (service_port(&res, "web"), service_port(&res, "api")),
        (80, 90)
    );

    // Same length, same second: only the text tells the edit apart.
    std::fs::write(&a, service_yaml("web", 81)).unwrap();
    let (res, _) = loader.load(dir.path());
    assert_eq!(
        (service_port(&res, "web"), service_port(&res, "api")),
        (81, 90)
    );

    // b now redefines web: the later file wins, and that is reported on every load,
    // cached or not.
    std::fs::write(&b, service_yaml("web", 99)).unwrap();
    for _ in 0..2 {
        let (res, errors) = loader.load(dir.path());
        assert_eq!(service_port(&res, "web"), 99);
        assert!(!res.services.contains_key(&("default".into(), "api".into())));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].file.ends_with("b.yaml"));
        assert_eq!((errors[0].line, errors[0].reason.as_str()), (1, DUPLICATE));
    }

    std::fs::remove_file(&b).unwrap();
    let (res, errors) = loader.load(dir.path());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(res.services.len(), 1);
    assert_eq!(service_port(&res, "web"), 81);
}
