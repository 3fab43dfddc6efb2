//! GRPCRoute matches → `config::RouteMatch`es with a `grpc_method`; the host turns each
//! into a match on the gRPC path `/<service>/<method>` and ranks them by GRPCRoute
//! precedence (service characters, method characters, header matches).

use gateway_api::grpcroutes::{
    GrpcRouteRulesMatches, GrpcRouteRulesMatchesHeadersType as HeaderType,
    GrpcRouteRulesMatchesMethodType as MethodType,
};
use nantian_proto::config;

use super::rule::{check_regex, value_match};

/// Matches with GRPCRoute defaults filled in: no matches means one match of every gRPC
/// request; a method match is Exact unless said otherwise; so are header matches.
/// Exact names must be what the CRD's validation admits (standalone mode has no API
/// server to enforce it), regular expressions must compile.
pub(super) fn translate(
    matches: &[GrpcRouteRulesMatches],
) -> Result<Vec<config::RouteMatch>, String> {
    if matches.is_empty() {
        return Ok(vec![any_request()]);
    }
    let mut out = Vec::with_capacity(matches.len());
    for m in matches {
        let grpc_method = match &m.method {
            None => any_method(),
            Some(method) => {
                let regex = matches!(method.r#type, Some(MethodType::RegularExpression));
                let service = method.service.clone().unwrap_or_default();
                let name = method.method.clone().unwrap_or_default();
                if service.is_empty() && name.is_empty() {
                    return Err("a method match needs a service, a method or both".to_string());
                }
                if regex {
                    check_regex("method match service", &service)?;
                    check_regex("method match method", &name)?;
                } else {
                    check_exact_service(&service)?;
                    check_exact_method(&name)?;
                }
                config::GrpcMethodMatch {
                    r#type: if regex { "RegularExpression" } else { "Exact" }.to_string(),
                    service,
                    method: name,
                }
            }
        };
        let mut headers = Vec::new();
        for h in m.headers.iter().flatten() {
            let regex = matches!(h.r#type, Some(HeaderType::RegularExpression));
            if regex {
                check_regex(&format!("header {}", h.name), &h.value)?;
            }
            headers.push(value_match(regex, &h.name, &h.value));
        }
        out.push(config::RouteMatch {
            headers,
            grpc_method: Some(grpc_method),
            ..Default::default()
        });
    }
    Ok(out)
}

fn any_request() -> config::RouteMatch {
    config::RouteMatch {
        grpc_method: Some(any_method()),
        ..Default::default()
    }
}

fn any_method() -> config::GrpcMethodMatch {
    config::GrpcMethodMatch {
        r#type: "Exact".to_string(),
        ..Default::default()
    }
}

/// The CRD's rule for an Exact service: `^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`.
fn check_exact_service(service: &str) -> Result<(), String> {
    if service.is_empty() {
        return Ok(());
    }
    let body = service.strip_prefix('.').unwrap_or(service);
    let valid = body.split('.').all(is_identifier);
    valid
        .then_some(())
        .ok_or_else(|| format!("method match service {service:?} is not a valid gRPC service name"))
}

/// The CRD's rule for an Exact method: `^[A-Za-z_][A-Za-z_0-9]*$`.
fn check_exact_method(method: &str) -> Result<(), String> {
    if method.is_empty() || is_identifier(method) {
        Ok(())
    } else {
        Err(format!(
            "method match method {method:?} is not a valid gRPC method name"
        ))
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_follow_the_crd_validation() {
        assert!(
            check_exact_service("gateway_api_conformance.echo_basic.grpcecho.GrpcEcho").is_ok()
        );
        assert!(check_exact_service(".pkg.Svc").is_ok());
        assert!(check_exact_service("pkg..Svc").is_err());
        assert!(check_exact_service("pkg/Svc").is_err());
        assert!(check_exact_service("1pkg.Svc").is_err());
        assert!(check_exact_method("EchoTwo").is_ok());
        assert!(check_exact_method("Echo.Two").is_err());
    }
}
