//! A client of the `GrpcEcho` service, for the tests and the conformance replay: one call
//! on a fresh connection, like upstream's `grpc.DefaultClient.SendRPC`, with an optional
//! `:authority` and request metadata.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::Code;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::Endpoint;

use super::grpc::pb;
use super::grpc::pb::grpc_echo_client::GrpcEchoClient;

/// The three methods of `GrpcEcho`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoMethod {
    Echo,
    EchoTwo,
    EchoThree,
}

impl EchoMethod {
    pub fn name(self) -> &'static str {
        match self {
            EchoMethod::Echo => "Echo",
            EchoMethod::EchoTwo => "EchoTwo",
            EchoMethod::EchoThree => "EchoThree",
        }
    }
}

/// One call to make.
#[derive(Debug, Clone)]
pub struct GrpcCall {
    pub addr: SocketAddr,
    /// Sent as `:authority` (upstream's `grpc.WithAuthority`); default: `addr`.
    pub authority: Option<String>,
    pub method: EchoMethod,
    /// Request metadata; names are lowercased, as gRPC metadata keys are.
    pub metadata: Vec<(String, String)>,
    pub timeout: Duration,
}

/// How a call ended: its status code, and the reply when it is OK.
#[derive(Debug, Clone)]
pub struct GrpcOutcome {
    pub code: Code,
    pub message: String,
    pub response: Option<pb::EchoResponse>,
}

/// Connects and makes the call. Err: no connection could be made, or the call could not
/// be built (bad metadata); a call that ends with a non-OK status is an Ok outcome.
pub async fn call(call: &GrpcCall) -> Result<GrpcOutcome, String> {
    let authority = call
        .authority
        .clone()
        .unwrap_or_else(|| call.addr.to_string());
    let endpoint = Endpoint::from_shared(format!("http://{}", call.addr))
        .map_err(|e| e.to_string())?
        .origin(
            format!("http://{authority}")
                .parse()
                .map_err(|e| format!("authority {authority:?}: {e}"))?,
        )
        .connect_timeout(call.timeout)
        .timeout(call.timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {}: {e}", call.addr))?;
    let mut client = GrpcEchoClient::new(channel);
    let mut request = tonic::Request::new(pb::EchoRequest {});
    for (name, value) in &call.metadata {
        let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|e| format!("metadata name {name:?}: {e}"))?;
        let value = MetadataValue::try_from(value.as_str())
            .map_err(|e| format!("metadata value {value:?}: {e}"))?;
        request.metadata_mut().append(key, value);
    }
    let result = match call.method {
        EchoMethod::Echo => client.echo(request).await,
        EchoMethod::EchoTwo => client.echo_two(request).await,
        EchoMethod::EchoThree => client.echo_three(request).await,
    };
    Ok(match result {
        Ok(response) => GrpcOutcome {
            code: Code::Ok,
            message: String::new(),
            response: Some(response.into_inner()),
        },
        Err(status) => GrpcOutcome {
            code: status.code(),
            message: status.message().to_string(),
            response: None,
        },
    })
}
