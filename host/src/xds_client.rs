//! Delta-xDS client: one bidirectional stream to the controller.
//!
//! The client keeps the resources of the last *accepted* snapshot. Each DeltaResponse is
//! applied to a copy of them and handed whole to the [`ConfigSink`]; only if the sink
//! accepts it does the copy become the new state (ACK). Otherwise the host NACKs with the
//! sink's reasons and keeps serving the old config. When the stream breaks, the host keeps
//! serving and reconnects with exponential backoff, announcing what it holds so the
//! controller sends only the difference.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nantian_proto::Any;
use nantian_proto::xds::delta_discovery_client::DeltaDiscoveryClient;
use nantian_proto::xds::{DeltaRequest, DeltaResponse, ErrorDetail, Node};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};

/// Every resource of a snapshot, by name.
pub type ResourceMap = BTreeMap<String, Resource>;

#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub version: String,
    pub body: Any,
}

/// Where snapshots go: builds the runtime config from exactly these resources and
/// installs it atomically, or explains why it can't.
pub trait ConfigSink: Send + Sync + 'static {
    fn apply(
        &self,
        resources: &ResourceMap,
        system_version: &str,
    ) -> impl Future<Output = Result<(), ErrorDetail>> + Send;
}

#[derive(Debug, Clone)]
pub struct XdsClientConfig {
    /// e.g. `http://127.0.0.1:18000`, or `https://…` with [`XdsClientConfig::tls`].
    pub endpoint: String,
    /// Mutual TLS: the controller's CA and this host's client certificate.
    pub tls: Option<XdsTlsFiles>,
    pub node: Node,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// PEM files for mutual TLS with the controller.
#[derive(Clone)]
pub struct XdsTlsFiles {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// The key stays out of logs.
impl std::fmt::Debug for XdsTlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsTlsFiles").finish_non_exhaustive()
    }
}

async fn connect(
    config: &XdsClientConfig,
) -> Result<DeltaDiscoveryClient<tonic::transport::Channel>, tonic::transport::Error> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())?;
    if let Some(tls) = &config.tls {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        endpoint = endpoint.tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.ca))
                .identity(Identity::from_pem(&tls.cert, &tls.key)),
        )?;
    }
    Ok(DeltaDiscoveryClient::new(endpoint.connect().await?).max_decoding_message_size(64 << 20))
}

/// Runs forever: connect, stream, and on any failure back off and reconnect.
pub async fn run<S: ConfigSink>(config: XdsClientConfig, sink: Arc<S>) {
    let mut accepted = ResourceMap::new();
    let mut backoff = config.initial_backoff;
    loop {
        match stream_once(&config, sink.as_ref(), &mut accepted).await {
            Ok(()) => {
                warn!(endpoint = %config.endpoint, "xDS stream closed by the controller");
                backoff = config.initial_backoff;
            }
            Err(e) => {
                warn!(endpoint = %config.endpoint, error = %e, ?backoff, "xDS stream failed; serving the last good config")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("request channel closed")]
    Closed,
}

async fn stream_once<S: ConfigSink>(
    config: &XdsClientConfig,
    sink: &S,
    accepted: &mut ResourceMap,
) -> Result<(), StreamError> {
    let mut client = connect(config).await?;
    let (tx, rx) = mpsc::channel::<DeltaRequest>(4);
    let first = DeltaRequest {
        node: Some(config.node.clone()),
        initial_resource_versions: accepted
            .iter()
            .map(|(name, r)| (name.clone(), r.version.clone()))
            .collect(),
        ..Default::default()
    };
    tx.send(first).await.map_err(|_| StreamError::Closed)?;
    let mut responses = client
        .delta_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    info!(endpoint = %config.endpoint, "xDS stream established");

    while let Some(response) = responses.next().await {
        let response = response?;
        let nonce = response.nonce.clone();
        let error_detail = match apply_delta(accepted, response, sink).await {
            Ok(version) => {
                info!(%version, resources = accepted.len(), "config applied (ACK)");
                None
            }
            Err(detail) => {
                warn!(error = %detail.message, "config rejected (NACK); keeping the last good one");
                Some(detail)
            }
        };
        let reply = DeltaRequest {
            response_nonce: nonce,
            error_detail,
            ..Default::default()
        };
        tx.send(reply).await.map_err(|_| StreamError::Closed)?;
    }
    Ok(())
}

/// Applies one delta to a copy of the accepted state; commits the copy only if the sink
/// accepts the resulting snapshot.
async fn apply_delta<S: ConfigSink>(
    accepted: &mut ResourceMap,
    response: DeltaResponse,
    sink: &S,
) -> Result<String, ErrorDetail> {
    let mut next = accepted.clone();
    for name in &response.removed_resources {
        next.remove(name);
    }
    for r in response.resources {
        let Some(body) = r.resource else {
            return Err(ErrorDetail {
                message: format!("resource {} has no body", r.name),
                ..Default::default()
            });
        };
        next.insert(
            r.name,
            Resource {
                version: r.version,
                body,
            },
        );
    }
    sink.apply(&next, &response.system_version_info).await?;
    *accepted = next;
    Ok(response.system_version_info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Accepts any snapshot without a resource named "bad".
    #[derive(Default)]
    struct RecordingSink {
        applied: Mutex<Vec<Vec<String>>>,
    }

    impl ConfigSink for RecordingSink {
        async fn apply(&self, resources: &ResourceMap, _v: &str) -> Result<(), ErrorDetail> {
            if resources.contains_key("bad") {
                return Err(ErrorDetail {
                    message: "bad resource".into(),
                    ..Default::default()
                });
            }
            self.applied
                .lock()
                .unwrap()
                .push(resources.keys().cloned().collect());
            Ok(())
        }
    }

    fn res(name: &str, version: &str) -> nantian_proto::xds::Resource {
        nantian_proto::xds::Resource {
            name: name.into(),
            version: version.into(),
            resource: Some(Any::default()),
        }
    }

    #[tokio::test]
    async fn rejected_delta_leaves_accepted_state_untouched() {
        let sink = RecordingSink::default();
        let mut state = ResourceMap::new();
        let first = DeltaResponse {
            system_version_info: "1".into(),
            resources: vec![res("a", "1"), res("b", "1")],
            ..Default::default()
        };
        assert_eq!(apply_delta(&mut state, first, &sink).await.unwrap(), "1");
        assert_eq!(state.len(), 2);

        let bad = DeltaResponse {
            system_version_info: "2".into(),
            resources: vec![res("bad", "1")],
            removed_resources: vec!["a".into()],
            ..Default::default()
        };
        assert!(apply_delta(&mut state, bad, &sink).await.is_err());
        assert_eq!(state.keys().collect::<Vec<_>>(), ["a", "b"]);

        let removal = DeltaResponse {
            system_version_info: "3".into(),
            removed_resources: vec!["a".into()],
            resources: vec![res("b", "2")],
            ..Default::default()
        };
        apply_delta(&mut state, removal, &sink).await.unwrap();
        assert_eq!(state.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(state["b"].version, "2");
        assert_eq!(sink.applied.lock().unwrap().len(), 2);
    }
}
