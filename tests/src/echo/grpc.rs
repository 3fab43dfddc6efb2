//! The gRPC face of the echo backend: upstream echo-basic's `GrpcEcho` service
//! (`proto/grpcecho.proto`), served by every listener to requests with a gRPC
//! content type. `Echo` and `EchoTwo` answer with what the server saw (the fully
//! qualified method, the metadata, `:authority`, the pod context and the TLS session);
//! `EchoThree` is UNIMPLEMENTED, as upstream's is.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tonic::metadata::KeyAndValueRef;
use tonic::{Status, async_trait};
use tower::Service;

use super::handler::{Connection, Context};
use super::response::TlsAssertions;

/// The generated messages, server and client.
pub mod pb {
    tonic::include_proto!("gateway_api_conformance.echo_basic.grpcecho");
}

/// `/<package>.<service>`, the prefix of every method's path.
pub const SERVICE_PATH: &str = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

/// Whether a request is a gRPC call.
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// What the handlers need of the connection and the request head, which tonic does not
/// keep (`:authority` is not metadata to it).
#[derive(Clone)]
struct Call {
    authority: String,
    tls: Option<Arc<TlsAssertions>>,
}

struct EchoService {
    context: Context,
}

/// Answers one gRPC request.
pub async fn serve(
    mut req: Request<Incoming>,
    context: &Context,
    connection: &Connection,
) -> Response<tonic::body::Body> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    req.extensions_mut().insert(Call {
        authority,
        tls: connection.tls.clone(),
    });
    let mut server = pb::grpc_echo_server::GrpcEchoServer::new(EchoService {
        context: context.clone(),
    });
    match server.call(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

impl EchoService {
    fn echo(&self, method: &str, req: &tonic::Request<pb::EchoRequest>) -> pb::EchoResponse {
        let call = req.extensions().get::<Call>().cloned();
        let authority = call
            .as_ref()
            .map(|c| c.authority.clone())
            .unwrap_or_default();
        // Like grpc-go's incoming metadata: `:authority` first, then every entry.
        let mut headers = vec![pb::Header {
            key: ":authority".to_string(),
            value: authority.clone(),
        }];
        for entry in req.metadata().iter() {
            if let KeyAndValueRef::Ascii(key, value) = entry {
                headers.push(pb::Header {
                    key: key.as_str().to_string(),
                    value: value.to_str().unwrap_or_default().to_string(),
                });
            }
        }
        let tls_assertions = call.and_then(|c| c.tls).map(|t| pb::TlsAssertions {
            version: t.version.clone(),
            negotiated_protocol: t.negotiated_protocol.clone(),
            server_name: t.server_name.clone(),
            cipher_suite: t.cipher_suite.clone(),
            peer_certificates: t.peer_certificates.clone(),
        });
        pb::EchoResponse {
            assertions: Some(pb::Assertions {
                fully_qualified_method: format!("{SERVICE_PATH}/{method}"),
                headers,
                authority,
                context: Some(pb::Context {
                    namespace: self.context.namespace.clone(),
                    ingress: self.context.ingress.clone(),
                    service_name: self.context.service.clone(),
                    pod: self.context.pod.clone(),
                }),
                tls_assertions,
            }),
            request: Some(pb::EchoRequest {}),
        }
    }
}

#[async_trait]
impl pb::grpc_echo_server::GrpcEcho for EchoService {
    async fn echo(
        &self,
        req: tonic::Request<pb::EchoRequest>,
    ) -> Result<tonic::Response<pb::EchoResponse>, Status> {
        Ok(tonic::Response::new(self.echo("Echo", &req)))
    }

    async fn echo_two(
        &self,
        req: tonic::Request<pb::EchoRequest>,
    ) -> Result<tonic::Response<pb::EchoResponse>, Status> {
        Ok(tonic::Response::new(self.echo("EchoTwo", &req)))
    }

    async fn echo_three(
        &self,
        _req: tonic::Request<pb::EchoRequest>,
    ) -> Result<tonic::Response<pb::EchoResponse>, Status> {
        Err(Status::unimplemented("method EchoThree not implemented"))
    }
}
