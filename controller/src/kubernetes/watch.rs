//! One watch per kind, all writing into one [`Resources`] the reconciler translates.
//!
//! A watch's initial list is buffered and swapped in whole on `InitDone`, so the
//! translator never sees half a re-list (a Gateway whose routes are not listed yet would
//! report them detached). Every change bumps a counter the reconciler waits on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tracing::{info, warn};

use super::kinds::{self, WatchedKind};
use crate::model::{Key, Resources};

/// What the watches have seen so far.
#[derive(Default)]
pub struct Cluster {
    pub resources: Resources,
    /// Kinds whose first list is complete (or that are not installed).
    synced: Vec<&'static str>,
}

impl Cluster {
    /// True once every watched kind has been listed once.
    pub fn synced(&self) -> bool {
        kinds::WATCHED.iter().all(|k| self.synced.contains(&k.kind))
    }
}

/// The shared view of the cluster plus a change counter to wait on.
#[derive(Clone)]
pub struct ClusterView {
    pub cluster: Arc<Mutex<Cluster>>,
    changes: watch::Sender<u64>,
}

impl Default for ClusterView {
    fn default() -> Self {
        ClusterView {
            cluster: Arc::default(),
            changes: watch::channel(0).0,
        }
    }
}

impl ClusterView {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn update(&self, f: impl FnOnce(&mut Cluster)) {
        f(&mut self.cluster.lock().unwrap());
        self.changed();
    }

    /// Starts a watch task per kind. They run until the process ends, re-listing after
    /// errors with kube's default backoff.
    pub fn start(&self, client: &Client) {
        for kind in kinds::WATCHED {
            let view = self.clone();
            let client = client.clone();
            tokio::spawn(async move { view.watch_kind(client, kind).await });
        }
    }

    async fn watch_kind(self, client: Client, kind: &'static WatchedKind) {
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = Api::all_with(client, &resource);
        if !kind.required {
            // An optional CRD may be installed later: look again now and then.
            while !installed(&api).await {
                self.update(|c| {
                    kinds::clear(&mut c.resources, kind);
                    if !c.synced.contains(&kind.kind) {
                        info!(
                            kind = kind.kind,
                            "{}/{} is not served by this cluster: not watched",
                            kind.group,
                            kind.version
                        );
                        c.synced.push(kind.kind);
                    }
                });
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
        let mut buffer: Option<Resources> = None;
        let mut seen: HashMap<Key, SpecFingerprint> = HashMap::new();
        let mut config = watcher::Config::default();
        if let Some(selector) = kind.label_selector {
            config = config.labels(selector);
        }
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => buffer = Some(Resources::default()),
                Ok(Event::InitApply(object)) => {
                    if let Some(f) = SpecFingerprint::of(kind, &object) {
                        seen.insert(kinds::key_of(&object), f);
                    }
                    if let Some(buffer) = buffer.as_mut() {
                        apply_logged(buffer, kind, object);
                    }
                }
                Ok(Event::InitDone) => {
                    let listed = buffer.take().unwrap_or_default();
                    self.update(|c| {
                        kinds::clear(&mut c.resources, kind);
                        c.resources.extend_from(&listed);
                        if !c.synced.contains(&kind.kind) {
                            c.synced.push(kind.kind);
                        }
                    });
                }
                Ok(Event::Apply(object)) => {
                    let key = kinds::key_of(&object);
                    let fingerprint = SpecFingerprint::of(kind, &object);
                    let same = fingerprint.is_some() && seen.get(&key) == fingerprint.as_ref();
                    match fingerprint {
                        Some(f) => seen.insert(key, f),
                        None => seen.remove(&key),
                    };
                    if same {
                        // Only its status (most often ours, just written) changed: the
                        // translator reads no status, so there is nothing to redo.
                        self.cluster.lock().unwrap().resources_apply(kind, object);
                    } else {
                        self.update(|c| apply_logged(&mut c.resources, kind, object));
                    }
                }
                Ok(Event::Delete(object)) => {
                    seen.remove(&kinds::key_of(&object));
                    self.update(|c| kinds::remove(&mut c.resources, kind, &object));
                }
                Err(e) => warn!(kind = kind.kind, error = %e, "watch failed; retrying"),
            }
        }
    }
}

impl Cluster {
    fn resources_apply(&mut self, kind: &WatchedKind, object: DynamicObject) {
        apply_logged(&mut self.resources, kind, object);
    }
}

/// What the translator reads of an object besides its status, for objects that have a
/// `metadata.generation` (bumped by the API server on every spec change): the generation,
/// labels and annotations. `None` for objects without a generation (a Service, a Secret)
/// and for kinds whose status is read (a provisioned Deployment): any change to those
/// counts.
#[derive(PartialEq, Eq)]
struct SpecFingerprint {
    generation: i64,
    labels: Option<std::collections::BTreeMap<String, String>>,
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

impl SpecFingerprint {
    fn of(kind: &WatchedKind, object: &DynamicObject) -> Option<Self> {
        if kind.reads_status {
            return None;
        }
        Some(SpecFingerprint {
            generation: object.metadata.generation?,
            labels: object.metadata.labels.clone(),
            annotations: object.metadata.annotations.clone(),
        })
    }
}

fn apply_logged(res: &mut Resources, kind: &WatchedKind, object: DynamicObject) {
    let key = kinds::key_of(&object);
    if let Err(reason) = kinds::apply(res, kind, object) {
        warn!(
            kind = kind.kind,
            namespace = %key.0,
            name = %key.1,
            "ignoring an object Nantian cannot read: {reason}"
        );
    }
}

/// Whether the API server serves this kind (its CRD is installed).
async fn installed(api: &Api<DynamicObject>) -> bool {
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 404 => false,
        Err(e) => {
            warn!(error = %e, "cannot tell whether a kind is served; assuming it is");
            true
        }
    }
}
