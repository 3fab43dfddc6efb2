//! Multi-document Kubernetes YAML → [`Resources`].
//!
//! Documents are split on `---` lines here rather than by the YAML library, so that every
//! error can name its file and absolute line, and so that one bad document is skipped while
//! the others still load.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::crd;
use crate::lb_policy::{BACKEND_LB_POLICY, X_BACKEND_TRAFFIC_POLICY};
use crate::model::{AI_SERVICE, Key, MetaExt, ObjectRef, Resources, TOKEN_POLICY};

/// One document (or List item) that could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct LoadError {
    pub file: String,
    /// 1-based line in `file`; 0 when the file itself could not be read.
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// Loads every `*.yaml` / `*.yml` file directly in `dir` (not recursively), in file-name order.
pub fn load_dir(dir: &Path) -> (Resources, Vec<LoadError>) {
    DirLoader::default().load(dir)
}

/// Loads a directory again and again, parsing only the files whose text changed since the
/// last load: with a thousand routes, parsing is most of the time from an edit to the
/// new config, and an edit usually touches one file.
#[derive(Default)]
pub struct DirLoader {
    files: BTreeMap<PathBuf, ParsedFile>,
}

/// One file as last parsed. Keyed by its text, not its mtime: a rewrite within the
/// mtime's granularity must not be missed.
struct ParsedFile {
    text: String,
    resources: Resources,
    /// Every object defined, with its line, in file order (for duplicates across files).
    objects: Vec<(ObjectRef, usize)>,
    errors: Vec<LoadError>,
}

impl DirLoader {
    /// Like [`load_dir`]; files that vanished are forgotten.
    pub fn load(&mut self, dir: &Path) -> (Resources, Vec<LoadError>) {
        let mut resources = Resources::default();
        let mut errors = Vec::new();
        let read_error = |path: &Path, err: std::io::Error| LoadError {
            file: path.display().to_string(),
            line: 0,
            object: None,
            reason: err.to_string(),
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                errors.push(read_error(dir, err));
                self.files.clear();
                return (resources, errors);
            }
        };
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                p.extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
            })
            .collect();
        paths.sort();
        let mut files = BTreeMap::new();
        for path in paths {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                // Deleted between listing and reading: the next change event reloads anyway.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    errors.push(read_error(&path, err));
                    continue;
                }
            };
            let parsed = match self.files.remove(&path) {
                Some(parsed) if parsed.text == text => parsed,
                _ => ParsedFile::parse(&path.display().to_string(), text),
            };
            // Later files replace objects of earlier ones, and say so.
            for (object, line) in &parsed.objects {
                if resources.contains(object) {
                    errors.push(LoadError {
                        file: path.display().to_string(),
                        line: *line,
                        object: Some(object.clone()),
                        reason: DUPLICATE.into(),
                    });
                }
            }
            errors.extend(parsed.errors.iter().cloned());
            resources.extend_from(&parsed.resources);
            files.insert(path, parsed);
        }
        self.files = files;
        (resources, errors)
    }
}

impl ParsedFile {
    fn parse(file_label: &str, text: String) -> Self {
        let mut resources = Resources::default();
        let mut objects = Vec::new();
        let errors = load_text(file_label, &text, &mut resources, &mut objects);
        ParsedFile {
            text,
            resources,
            objects,
            errors,
        }
    }
}

const DUPLICATE: &str = "duplicate object: this definition replaces an earlier one";

/// Loads the documents of one file's text into `into`; `file_label` names the file in errors.
pub fn load_str(file_label: &str, text: &str, into: &mut Resources) -> Vec<LoadError> {
    load_text(file_label, text, into, &mut Vec::new())
}

/// [`load_str`], noting every object loaded and its line in `objects`.
fn load_text(
    file_label: &str,
    text: &str,
    into: &mut Resources,
    objects: &mut Vec<(ObjectRef, usize)>,
) -> Vec<LoadError> {
    let mut errors = Vec::new();
    for doc in split_documents(text) {
        let ctx = DocContext {
            file: file_label,
            first_line: doc.first_line,
        };
        let value: Value = match serde_yaml::from_str(&doc.text) {
            Ok(value) => value,
            Err(err) => {
                errors.push(*ctx.yaml_error(None, &err));
                continue;
            }
        };
        if value.is_null() {
            // Only comments or whitespace.
            continue;
        }
        let is_list = header(&value).is_ok_and(|h| h.kind == "List" && h.group.is_empty());
        if is_list {
            errors.extend(load_list_items(&ctx, &value, into, objects));
        } else if let Err(err) = load_value(&ctx, Some(&doc.text), &value, into, objects) {
            errors.push(*err);
        }
    }
    errors
}

/// One `---`-separated document and the line it starts on.
struct Document {
    text: String,
    first_line: usize,
}

fn split_documents(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = Document {
        text: String::new(),
        first_line: 1,
    };
    for (index, line) in text.lines().enumerate() {
        if is_separator(line) {
            docs.push(std::mem::replace(
                &mut current,
                Document {
                    text: String::new(),
                    first_line: index + 2,
                },
            ));
        } else {
            current.text.push_str(line);
            current.text.push('\n');
        }
    }
    docs.push(current);
    docs
}

/// `---`, optionally followed by whitespace or a comment.
fn is_separator(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("---") else {
        return false;
    };
    let rest = rest.trim();
    rest.is_empty() || rest.starts_with('#')
}

struct DocContext<'a> {
    file: &'a str,
    first_line: usize,
}

impl DocContext<'_> {
    // Boxed: LoadError is large and travels in Results until it is collected.
    fn error(&self, line: usize, object: Option<ObjectRef>, reason: String) -> Box<LoadError> {
        Box::new(LoadError {
            file: self.file.to_string(),
            line,
            object,
            reason,
        })
    }

    /// A serde_yaml error, with its document-relative line made absolute and the
    /// library's own " at line N column M" suffix dropped (the line is carried separately).
    fn yaml_error(&self, object: Option<ObjectRef>, err: &serde_yaml::Error) -> Box<LoadError> {
        let line = err
            .location()
            .map(|loc| self.first_line + loc.line().saturating_sub(1))
            .unwrap_or(self.first_line);
        let message = err.to_string();
        let reason = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_string(),
            None => message,
        };
        self.error(line, object, reason)
    }
}

/// apiVersion, kind and identity of a document, read before its typed parse so that
/// errors can name the object.
struct Header {
    group: String,
    kind: String,
    name: Option<String>,
    namespace: Option<String>,
}

fn header(value: &Value) -> Result<Header, String> {
    let Value::Mapping(_) = value else {
        return Err("document is not a mapping".to_string());
    };
    let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let api_version = field(value, "apiVersion").ok_or("missing apiVersion")?;
    let kind = field(value, "kind").ok_or("missing kind")?;
    let group = match api_version.split_once('/') {
        Some((group, _version)) => group.to_string(),
        None => String::new(),
    };
    let metadata = value.get("metadata");
    Ok(Header {
        group,
        kind,
        name: metadata.and_then(|m| field(m, "name")),
        namespace: metadata.and_then(|m| field(m, "namespace")),
    })
}

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const GATEWAY_X_GROUP: &str = "gateway.networking.x-k8s.io";

/// Whether a kind is namespaced, for the kinds we keep; `None` for kinds we ignore.
fn scope(group: &str, kind: &str) -> Option<bool> {
    match (group, kind) {
        ("", "Namespace") | (GATEWAY_GROUP, "GatewayClass") => Some(false),
        ("", "Service" | "Secret" | "ConfigMap")
        | (
            GATEWAY_GROUP,
            "Gateway" | "HTTPRoute" | "GRPCRoute" | "TLSRoute" | "TCPRoute" | "UDPRoute"
            | "ReferenceGrant" | "BackendTLSPolicy" | "ListenerSet" | BACKEND_LB_POLICY,
        )
        | (GATEWAY_X_GROUP, X_BACKEND_TRAFFIC_POLICY)
        | (crd::GROUP, AI_SERVICE | TOKEN_POLICY)
        | ("discovery.k8s.io", "EndpointSlice") => Some(true),
        _ => None,
    }
}

/// Parses one object (a document, or a List item when `text` is None) into `into`.
fn load_value(
    ctx: &DocContext<'_>,
    text: Option<&str>,
    value: &Value,
    into: &mut Resources,
    objects: &mut Vec<(ObjectRef, usize)>,
) -> Result<(), Box<LoadError>> {
    let h = header(value).map_err(|reason| ctx.error(ctx.first_line, None, reason))?;
    let Some(namespaced) = scope(&h.group, &h.kind) else {
        tracing::debug!(file = ctx.file, line = ctx.first_line, kind = %h.kind, "ignoring unsupported kind");
        return Ok(());
    };
    let namespace = namespaced.then(|| h.namespace.clone().unwrap_or_else(|| "default".into()));
    let object = ObjectRef {
        kind: h.kind.clone(),
        namespace: namespace.clone(),
        name: h.name.clone().unwrap_or_default(),
    };
    if h.name.as_deref().is_none_or(str::is_empty) {
        return Err(ctx.error(
            ctx.first_line,
            Some(object),
            "metadata.name is required".into(),
        ));
    }
    let duplicate = into.contains(&object);
    let key: Key = object.key();
    macro_rules! insert {
        ($map:ident) => {{
            let mut parsed = parse(ctx, text, value, &object)?;
            set_namespace(&mut parsed, &namespace);
            into.$map.insert(key, parsed);
        }};
    }
    match h.kind.as_str() {
        "Namespace" => insert!(namespaces),
        "GatewayClass" => insert!(gateway_classes),
        "Gateway" => insert!(gateways),
        "HTTPRoute" => insert!(http_routes),
        "GRPCRoute" => insert!(grpc_routes),
        "TLSRoute" => insert!(tls_routes),
        "TCPRoute" => insert!(tcp_routes),
        "UDPRoute" => insert!(udp_routes),
        "ReferenceGrant" => insert!(reference_grants),
        "Service" => insert!(services),
        "EndpointSlice" => insert!(endpoint_slices),
        "Secret" => insert!(secrets),
        "ConfigMap" => insert!(config_maps),
        "BackendTLSPolicy" => insert!(backend_tls_policies),
        "ListenerSet" => insert!(listener_sets),
        BACKEND_LB_POLICY => insert!(backend_lb_policies),
        X_BACKEND_TRAFFIC_POLICY => insert!(backend_traffic_policies),
        AI_SERVICE => insert!(ai_services),
        TOKEN_POLICY => insert!(token_policies),
        _ => unreachable!("scope() admitted only the kinds above"),
    }
    objects.push((object.clone(), ctx.first_line));
    if duplicate {
        return Err(ctx.error(ctx.first_line, Some(object), DUPLICATE.into()));
    }
    Ok(())
}

fn load_list_items(
    ctx: &DocContext<'_>,
    list: &Value,
    into: &mut Resources,
    objects: &mut Vec<(ObjectRef, usize)>,
) -> Vec<LoadError> {
    let Some(items) = list.get("items").and_then(Value::as_sequence) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            load_value(ctx, None, item, into, objects)
                .err()
                .map(|mut err| {
                    err.reason = format!("items[{i}]: {}", err.reason);
                    *err
                })
        })
        .collect()
}

/// Typed parse: from the document text when we have it (serde_yaml then reports the exact
/// line of a bad field), else from the already-parsed value.
fn parse<T: DeserializeOwned>(
    ctx: &DocContext<'_>,
    text: Option<&str>,
    value: &Value,
    object: &ObjectRef,
) -> Result<T, Box<LoadError>> {
    let parsed = match text {
        Some(text) => serde_yaml::from_str(text),
        None => serde_yaml::from_value(value.clone()),
    };
    parsed.map_err(|err| ctx.yaml_error(Some(object.clone()), &err))
}

/// Namespaced objects written without a namespace live in "default", as `kubectl apply`
/// would put them.
fn set_namespace<T: MetaExt>(object: &mut T, namespace: &Option<String>) {
    if let Some(ns) = namespace {
        object.meta_mut().namespace = Some(ns.clone());
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
