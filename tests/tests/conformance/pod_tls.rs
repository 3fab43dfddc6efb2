//! The HTTPS settings of an echo-basic Deployment, found the way its pods find them: the
//! container's `TLS_SERVER_CERT`, `TLS_SERVER_PRIVKEY` and `TLS_CLIENT_CACERTS` are paths
//! under its volume mounts, and the mounted volumes project keys of Secrets and ConfigMaps
//! (the setup's `tls-checks-certificate`, `tls-checks-ca-certificate`, ...). echo-basic
//! serves HTTPS only when it has both a certificate and a key.
//!
//! Secrets are read from `stringData`, which is what the replay writes for the setup's
//! certificates (upstream's echo Deployments mount nothing else).

use nantian_e2e::harness::PodTls;
use serde_json::Value;

use crate::manifests;

/// The certificate, key and client CAs `deployment`'s pods serve HTTPS with, read from
/// `objects` (the Secrets and ConfigMaps of the run); `None` when they serve no HTTPS.
/// `tcp`: the pods are echo-basic's TCP test server, which names its key
/// `TLS_SERVER_PRIV_KEY` (and checks no client certificates).
pub fn pod_tls(
    deployment: &Value,
    objects: &[&Value],
    tcp: bool,
) -> Result<Option<PodTls>, String> {
    let pod = &deployment["spec"]["template"]["spec"];
    let Some(container) = pod["containers"].as_array().and_then(|c| c.first()) else {
        return Ok(None);
    };
    let files = PodFiles {
        namespace: manifests::namespace(deployment),
        container,
        volumes: pod["volumes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
        objects,
    };
    let (Some(cert), Some(key)) = (
        env_value(container, "TLS_SERVER_CERT"),
        env_value(
            container,
            if tcp {
                "TLS_SERVER_PRIV_KEY"
            } else {
                "TLS_SERVER_PRIVKEY"
            },
        ),
    ) else {
        return Ok(None);
    };
    let what = |e: String| format!("Deployment {}: {e}", manifests::name(deployment));
    Ok(Some(PodTls {
        cert_pem: files.read(cert).map_err(what)?,
        key_pem: files.read(key).map_err(what)?,
        client_ca_pem: env_value(container, "TLS_CLIENT_CACERTS")
            .filter(|_| !tcp)
            .map(|ca| files.read(ca))
            .transpose()
            .map_err(what)?,
    }))
}

/// A non-empty literal `value` of an environment variable (`valueFrom` is for pod fields).
fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .filter(|v| !v.is_empty())
}

/// The files a container sees through its volume mounts.
struct PodFiles<'a> {
    namespace: &'a str,
    container: &'a Value,
    volumes: &'a [Value],
    objects: &'a [&'a Value],
}

impl PodFiles<'_> {
    /// The contents of the file at `path` in the container.
    fn read(&self, path: &str) -> Result<String, String> {
        let (mount, relative) = self.mount_of(path)?;
        let volume = self
            .volumes
            .iter()
            .find(|v| v["name"] == mount)
            .ok_or_else(|| format!("no volume {mount} for {path}"))?;
        // (kind, the volume's source, the source object's name, where its keys are)
        let (kind, spec, source, data) = if let Some(spec) = volume.get("secret") {
            ("Secret", spec, &spec["secretName"], "stringData")
        } else if let Some(spec) = volume.get("configMap") {
            ("ConfigMap", spec, &spec["name"], "data")
        } else {
            return Err(format!(
                "volume {mount} is neither a Secret nor a ConfigMap"
            ));
        };
        let source = source.as_str().unwrap_or_default();
        let key = projected_key(spec, relative)
            .ok_or_else(|| format!("{kind} volume {mount} projects no file {relative}"))?;
        let object = self
            .objects
            .iter()
            .find(|o| {
                manifests::kind(o) == kind
                    && manifests::namespace(o) == self.namespace
                    && manifests::name(o) == source
            })
            .ok_or_else(|| format!("{kind} {}/{source} does not exist", self.namespace))?;
        object[data][key]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{kind} {}/{source} has no {data} {key}", self.namespace))
    }

    /// The volume mounted where `path` is (the deepest mount containing it) and the path
    /// inside the volume.
    fn mount_of<'p>(&self, path: &'p str) -> Result<(&str, &'p str), String> {
        let mounts = self.container["volumeMounts"].as_array();
        mounts
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let mount_path = m["mountPath"].as_str()?.trim_end_matches('/');
                let relative = path.strip_prefix(mount_path)?.strip_prefix('/')?;
                Some((mount_path.len(), m["name"].as_str()?, relative))
            })
            .max_by_key(|(depth, _, _)| *depth)
            .map(|(_, name, relative)| (name, relative))
            .ok_or_else(|| format!("{path} is on no volume mount"))
    }
}

/// The key projected to `relative` by a volume source's `items`, or the key of that name
/// when the source lists none (every key becomes a file).
fn projected_key<'a>(source: &'a Value, relative: &'a str) -> Option<&'a str> {
    match source["items"].as_array() {
        None => Some(relative),
        Some(items) => items
            .iter()
            .find(|i| i["path"] == relative)
            .and_then(|i| i["key"].as_str()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The client certificate test's Deployment, as upstream writes it.
    fn deployment() -> Value {
        manifests::parse_documents(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: tls-backend-with-client-cert-validation, namespace: infra}
spec:
  template:
    spec:
      containers:
      - name: echo
        image: gcr.io/k8s-staging-gateway-api/echo-basic:v1
        volumeMounts:
        - {name: secret-volume, mountPath: /etc/secret-volume}
        - {name: configmap-volume, mountPath: /etc/configmap-volume}
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - {name: TLS_SERVER_CERT, value: /etc/secret-volume/crt}
        - {name: TLS_SERVER_PRIVKEY, value: /etc/secret-volume/key}
        - {name: TLS_CLIENT_CACERTS, value: /etc/configmap-volume/ca}
      volumes:
      - name: secret-volume
        secret:
          secretName: tls-checks-certificate
          items: [{key: tls.crt, path: crt}, {key: tls.key, path: key}]
      - name: configmap-volume
        configMap:
          name: tls-checks-ca-certificate
          items: [{key: ca.crt, path: ca}]
"#,
        )
        .unwrap()
        .remove(0)
    }

    fn objects() -> Vec<Value> {
        vec![
            json!({"kind": "Secret", "metadata": {"namespace": "infra", "name": "tls-checks-certificate"},
                   "stringData": {"tls.crt": "CERT", "tls.key": "KEY"}}),
            json!({"kind": "ConfigMap", "metadata": {"namespace": "infra", "name": "tls-checks-ca-certificate"},
                   "data": {"ca.crt": "CA", "key.crt": "CA KEY"}}),
            json!({"kind": "ConfigMap", "metadata": {"namespace": "other", "name": "tls-checks-ca-certificate"},
                   "data": {"ca.crt": "OTHER CA"}}),
        ]
    }

    #[test]
    fn env_paths_resolve_through_mounts_and_items() {
        let objects = objects();
        let refs: Vec<&Value> = objects.iter().collect();
        let tls = pod_tls(&deployment(), &refs, false).unwrap().unwrap();
        assert_eq!(
            tls,
            PodTls {
                cert_pem: "CERT".into(),
                key_pem: "KEY".into(),
                client_ca_pem: Some("CA".into()),
            }
        );
    }

    #[test]
    fn no_key_means_no_https_and_missing_sources_are_errors() {
        let objects = objects();
        let refs: Vec<&Value> = objects.iter().collect();
        let mut plain = deployment();
        let env = plain["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap();
        env.retain(|e| e["name"] != "TLS_SERVER_PRIVKEY");
        assert_eq!(pod_tls(&plain, &refs, false).unwrap(), None);

        let err = pod_tls(&deployment(), &refs[..1], false).unwrap_err();
        assert!(
            err.contains("ConfigMap infra/tls-checks-ca-certificate does not exist"),
            "{err}"
        );
        let mut unprojected = deployment();
        unprojected["spec"]["template"]["spec"]["containers"][0]["env"][2]["value"] =
            json!("/etc/secret-volume/other");
        let err = pod_tls(&unprojected, &refs, false).unwrap_err();
        assert!(err.contains("projects no file other"), "{err}");
    }

    #[test]
    fn a_volume_without_items_projects_every_key() {
        let objects = objects();
        let refs: Vec<&Value> = objects.iter().collect();
        let mut whole = deployment();
        let spec = &mut whole["spec"]["template"]["spec"];
        spec["volumes"][0]["secret"]
            .as_object_mut()
            .unwrap()
            .remove("items");
        spec["containers"][0]["env"][1]["value"] = json!("/etc/secret-volume/tls.crt");
        spec["containers"][0]["env"][2]["value"] = json!("/etc/secret-volume/tls.key");
        let tls = pod_tls(&whole, &refs, false).unwrap().unwrap();
        assert_eq!(
            (tls.cert_pem.as_str(), tls.key_pem.as_str()),
            ("CERT", "KEY")
        );
    }
}
