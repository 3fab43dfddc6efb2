//! The Helm chart (`charts/nantian/`) through the real `helm` (built by `cargo xtask test`,
//! named by `NANTIAN_HELM`): it lints clean, what it renders is accepted by a real API
//! server, and its values reach the controller's Deployment as documented.
//!
//! Skipped (loudly) without helm or the control-plane binaries; failed instead under `CI`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use nantian_e2e::kube::{apply_yaml_in, shared_or_skip};
use serde_json::Value;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/nantian")
}

/// The helm binary, or `None` (after saying so) when this machine has none.
fn helm_or_skip(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("NANTIAN_HELM")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    if found.is_none() {
        let msg =
            "no helm binary (NANTIAN_HELM); run the tests with `cargo xtask test`, which builds it";
        if std::env::var_os("CI").is_some() {
            panic!("{test}: {msg} (CI is set: the chart tests must not be skipped)");
        }
        let _ = writeln!(std::io::stderr().lock(), "\n!!! SKIP {test}: {msg}\n");
    }
    found
}

/// `helm <args>`: Ok(stdout) or Err(stderr).
fn helm(binary: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(binary)
        .args(args)
        // No user config or repositories leak into the run.
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("nantian-helm-config"),
        )
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("nantian-helm-cache"),
        )
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `helm template` of the chart as release `nantian` in `namespace`, with `values`
/// (`key=value`, as `--set` takes them) and `extra` arguments.
fn render(
    binary: &Path,
    namespace: &str,
    values: &[&str],
    extra: &[&str],
) -> Result<String, String> {
    let chart = chart();
    let mut args = vec![
        "template",
        "nantian",
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
    ];
    for value in values {
        args.extend(["--set", value]);
    }
    args.extend(extra);
    helm(binary, &args)
}

/// The rendered documents as JSON.
fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn controller_deployment(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("the chart renders the controller's Deployment")
}

/// The value following `flag` in the controller container's args.
fn flag<'a>(deployment: &'a Value, flag: &str) -> Option<&'a str> {
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1)?.as_str()
}

#[test]
fn the_chart_lints_clean() {
    let Some(helm_bin) = helm_or_skip("the_chart_lints_clean") else {
        return;
    };
    let out = helm(&helm_bin, &["lint", "--strict", chart().to_str().unwrap()])
        .unwrap_or_else(|e| panic!("helm lint --strict failed:\n{e}"));
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn values_reach_the_controller_deployment() {
    let Some(helm_bin) = helm_or_skip("values_reach_the_controller_deployment") else {
        return;
    };
    let defaults = documents(&render(&helm_bin, "gw-system", &[], &[]).unwrap());
    let deployment = controller_deployment(&defaults);
    assert_eq!(deployment["metadata"]["namespace"], "gw-system");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        flag(deployment, "--gateway-service-type"),
        Some("LoadBalancer")
    );
    assert_eq!(flag(deployment, "--resync-seconds"), Some("60"));
    assert!(
        flag(deployment, "--xds-tls-secret").is_some(),
        "mTLS by default"
    );
    assert!(
        defaults.iter().any(|d| d["kind"] == "GatewayClass"
            && d["spec"]["controllerName"] == "gateway.nantian.dev/controller"),
        "the GatewayClass by default"
    );

    let custom = documents(
        &render(
            &helm_bin,
            "gw-system",
            &[
                "controller.replicas=1",
                "controller.resyncSeconds=15",
                "gateway.serviceType=ClusterIP",
                "xds.tls.enabled=false",
                "gatewayClass.create=false",
                "host.image.repository=registry.example/host",
                "host.image.tag=1.2.3",
            ],
            &[],
        )
        .unwrap(),
    );
    let deployment = controller_deployment(&custom);
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        flag(deployment, "--gateway-service-type"),
        Some("ClusterIP")
    );
    assert_eq!(flag(deployment, "--resync-seconds"), Some("15"));
    assert_eq!(flag(deployment, "--xds-tls-secret"), None);
    assert_eq!(
        flag(deployment, "--host-image"),
        Some("registry.example/host:1.2.3")
    );
    assert!(!custom.iter().any(|d| d["kind"] == "GatewayClass"));

    let bad = render(&helm_bin, "gw-system", &["xds.tls.mode=bogus"], &[]).unwrap_err();
    assert!(
        bad.contains("xds.tls.mode must be generate or provided"),
        "{bad}"
    );
}

#[tokio::test]
async fn what_the_chart_renders_is_accepted_by_the_api_server() {
    let test = "what_the_chart_renders_is_accepted_by_the_api_server";
    let Some(helm_bin) = helm_or_skip(test) else {
        return;
    };
    let Some(kube) = shared_or_skip(test).await else {
        return;
    };
    let client = kube.client().await.unwrap();
    let ns = kube.create_namespace("helm").await.unwrap();
    let rendered = render(&helm_bin, &ns, &[], &["--include-crds"]).unwrap();
    let applied = apply_yaml_in(&client, &ns, &rendered)
        .await
        .unwrap_or_else(|e| panic!("the API server refused the rendered chart: {e:#}"));
    let kinds: Vec<&str> = applied
        .iter()
        .filter_map(|o| o.types.as_ref().map(|t| t.kind.as_str()))
        .collect();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "GatewayClass",
    ] {
        assert!(kinds.contains(&kind), "{kind} not rendered: {kinds:?}");
    }
}
