//! gRPC calls through a Gateway, after upstream's `conformance/utils/grpc`: one call per
//! attempt on a fresh connection (`DefaultClient.SendRPC`), compared like
//! `compareResponse` (the status code; for OK, the fully qualified method, the namespace
//! and the pod-name prefix), retried until consistent (`AwaitConvergence`).

use std::time::Duration;

use futures::StreamExt;
use nantian_e2e::echo::grpc::SERVICE_PATH;
use nantian_e2e::echo::grpc_client::{self, EchoMethod, GrpcCall, GrpcOutcome};
use tonic::Code;

use crate::model::{GrpcExpectation, GrpcMethod};
use crate::roundtrip::{Target, await_convergence};
use crate::weight;

/// Calls of the weighted-distribution sample, and how many run at once (upstream's
/// `weight` package numbers).
const TOTAL_CALLS: usize = 500;
const CONCURRENT_CALLS: usize = 10;

/// Every expectation, concurrently (upstream runs them as parallel subtests); Err lists
/// the ones that did not converge.
pub async fn expect_all_eventually(
    target: &Target,
    expectations: &[GrpcExpectation],
    max_time: Duration,
) -> Result<(), String> {
    let checks = expectations.iter().enumerate().map(|(i, exp)| async move {
        expect_eventually(target, exp, max_time)
            .await
            .map_err(|e| format!("[{i} {}] {e}", describe(exp)))
    });
    let failures: Vec<String> = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}/{} expectations failed: {}",
            failures.len(),
            expectations.len(),
            failures.join("; ")
        ))
    }
}

/// `grpc.MakeRequestAndExpectEventuallyConsistentResponse` for one expectation.
pub async fn expect_eventually(
    target: &Target,
    exp: &GrpcExpectation,
    max_time: Duration,
) -> Result<(), String> {
    await_convergence(max_time, async || {
        let outcome = send(target, exp, &[], max_time).await?;
        compare(exp, &outcome)
    })
    .await
}

/// [`TOTAL_CALLS`] calls matching `exp`, each with a random `x-jitter` metadata entry
/// (upstream's `grpc.AddEntropy`); the answering pods, or the first failure.
pub async fn sample(
    target: &Target,
    exp: &GrpcExpectation,
    max_time: Duration,
) -> Result<Vec<String>, String> {
    let results: Vec<Result<String, String>> = futures::stream::iter(0..TOTAL_CALLS)
        .map(|_| async move {
            let jitter = [(
                "x-jitter".to_string(),
                (weight::random() % 10_000).to_string(),
            )];
            let outcome = send(target, exp, &jitter, max_time).await?;
            if outcome.code != Code::Ok {
                return Err(format!(
                    "expected OK response, got {} ({})",
                    go_name(outcome.code),
                    outcome.message
                ));
            }
            Ok(outcome
                .response
                .and_then(|r| r.assertions)
                .and_then(|a| a.context)
                .map(|c| c.pod)
                .unwrap_or_default())
        })
        .buffer_unordered(CONCURRENT_CALLS)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn send(
    target: &Target,
    exp: &GrpcExpectation,
    extra: &[(String, String)],
    timeout: Duration,
) -> Result<GrpcOutcome, String> {
    let addr = target
        .socket_addr()
        .parse()
        .map_err(|e| format!("gateway address {}: {e}", target.socket_addr()))?;
    let call = GrpcCall {
        addr,
        authority: exp.authority.clone(),
        method: match exp.method {
            GrpcMethod::Echo => EchoMethod::Echo,
            GrpcMethod::EchoTwo => EchoMethod::EchoTwo,
            GrpcMethod::EchoThree => EchoMethod::EchoThree,
        },
        metadata: exp
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(extra.iter().cloned())
            .collect(),
        timeout,
    };
    grpc_client::call(&call).await
}

/// Upstream's `compareResponse`.
fn compare(exp: &GrpcExpectation, got: &GrpcOutcome) -> Result<(), String> {
    let got_code = go_name(got.code);
    if exp.code != got_code {
        return Err(format!(
            "expected status code to be {}, but got {got_code} ({})",
            exp.code, got.message
        ));
    }
    if got.code != Code::Ok {
        return Ok(());
    }
    let assertions = got
        .response
        .as_ref()
        .and_then(|r| r.assertions.clone())
        .unwrap_or_default();
    let want_method = format!("{SERVICE_PATH}/{}", method_name(exp.method));
    if assertions.fully_qualified_method != want_method {
        return Err(format!(
            "expected path to be {want_method}, got {}",
            assertions.fully_qualified_method
        ));
    }
    let context = assertions.context.unwrap_or_default();
    if !exp.namespace.is_empty() && exp.namespace != context.namespace {
        return Err(format!(
            "expected namespace to be {}, got {}",
            exp.namespace, context.namespace
        ));
    }
    if !context.pod.starts_with(&exp.backend) {
        return Err(format!(
            "expected pod name to start with {}, got {}",
            exp.backend, context.pod
        ));
    }
    Ok(())
}

fn method_name(m: GrpcMethod) -> &'static str {
    match m {
        GrpcMethod::Echo => "Echo",
        GrpcMethod::EchoTwo => "EchoTwo",
        GrpcMethod::EchoThree => "EchoThree",
    }
}

/// A code as grpc-go's `codes.Code.String()` spells it, which the cases use.
fn go_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Upstream's `GetTestCaseName`, for failure messages.
fn describe(exp: &GrpcExpectation) -> String {
    let authority = exp.authority.as_deref().unwrap_or_default();
    let mut out = format!(
        "request to '{authority}{SERVICE_PATH}/{}'",
        method_name(exp.method)
    );
    if !exp.metadata.is_empty() {
        let pairs: Vec<String> = exp
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        out.push_str(&format!(" with headers '{{{}}}'", pairs.join(",")));
    }
    if exp.backend.is_empty() {
        out.push_str(&format!(" should receive a {}", exp.code));
    } else {
        out.push_str(&format!(" should go to {}", exp.backend));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nantian_e2e::echo::grpc::pb;

    fn expectation(code: &str, backend: &str) -> GrpcExpectation {
        GrpcExpectation {
            method: GrpcMethod::EchoTwo,
            authority: None,
            metadata: Default::default(),
            code: code.into(),
            backend: backend.into(),
            namespace: "infra".into(),
        }
    }

    fn ok(method: &str, pod: &str, namespace: &str) -> GrpcOutcome {
        GrpcOutcome {
            code: Code::Ok,
            message: String::new(),
            response: Some(pb::EchoResponse {
                assertions: Some(pb::Assertions {
                    fully_qualified_method: format!("{SERVICE_PATH}/{method}"),
                    context: Some(pb::Context {
                        pod: pod.into(),
                        namespace: namespace.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                request: None,
            }),
        }
    }

    #[test]
    fn compares_like_upstream() {
        let exp = expectation("OK", "grpc-infra-backend-v2");
        assert!(
            compare(
                &exp,
                &ok("EchoTwo", "grpc-infra-backend-v2-nantian-0", "infra")
            )
            .is_ok()
        );
        assert!(
            compare(
                &exp,
                &ok("Echo", "grpc-infra-backend-v2-nantian-0", "infra")
            )
            .is_err()
        );
        assert!(
            compare(
                &exp,
                &ok("EchoTwo", "grpc-infra-backend-v1-nantian-0", "infra")
            )
            .is_err()
        );
        assert!(
            compare(
                &exp,
                &ok("EchoTwo", "grpc-infra-backend-v2-nantian-0", "other")
            )
            .is_err()
        );
        let unimplemented = GrpcOutcome {
            code: Code::Unimplemented,
            message: "no route".into(),
            response: None,
        };
        assert!(compare(&exp, &unimplemented).is_err());
        assert!(compare(&expectation("Unimplemented", ""), &unimplemented).is_ok());
    }
}
