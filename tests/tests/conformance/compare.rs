//! `http.CompareRoundTrip`: whether a captured reply is what an expectation wants.

use crate::model::Expectation;
use crate::roundtrip::{Captured, is_redirect, is_timeout, method};

/// `http.CompareRoundTrip`: `Ok` when the reply is what `exp` expects.
pub fn compare(exp: &Expectation, cap: &Captured) -> Result<(), String> {
    let codes = exp.status_codes();
    if is_timeout(cap.status) && codes.iter().any(|&c| is_timeout(c)) {
        return Ok(());
    }
    if !codes.contains(&cap.status) {
        return Err(format!(
            "expected status code to be one of {codes:?}, got {}",
            cap.status
        ));
    }
    if cap.status == 200 || cap.status == 204 {
        compare_success(exp, cap)
    } else if is_redirect(cap.status) {
        compare_redirect(exp, cap)
    } else {
        Ok(())
    }
}

fn compare_success(exp: &Expectation, cap: &Captured) -> Result<(), String> {
    let got = &cap.echo;
    let sent = &exp.request;
    // Without an ExpectedRequest, the backend must see the request as sent.
    let (host, method_, path, headers, absent, sni, client_cert) = match &exp.expected_request {
        None => (
            sent.host.as_str(),
            method(exp),
            sent.path.as_str(),
            Some(&sent.headers),
            &[][..],
            sent.sni.as_str(),
            sent.client_cert.as_ref(),
        ),
        Some(er) => (
            er.host.as_str(),
            if er.method.is_empty() {
                "GET"
            } else {
                er.method.as_str()
            },
            er.path.as_deref().unwrap_or(&sent.path),
            er.headers.as_ref(),
            er.absent_headers.as_slice(),
            er.sni.as_str(),
            er.client_cert.as_ref(),
        ),
    };
    if !host.is_empty() && host != got.host {
        return Err(format!("expected host to be {host}, got {}", got.host));
    }
    if path != got.path {
        return Err(format!("expected path to be {path}, got {}", got.path));
    }
    if method_ != got.method {
        return Err(format!(
            "expected method to be {method_}, got {}",
            got.method
        ));
    }
    if exp.namespace != got.namespace {
        return Err(format!(
            "expected namespace to be {}, got {}",
            exp.namespace, got.namespace
        ));
    }
    for (name, want) in headers.into_iter().flatten() {
        match got.header(name) {
            None => {
                return Err(format!(
                    "expected {name} header to be set, actual headers: {:?}",
                    got.headers
                ));
            }
            Some(values) if values.join(",") != *want => {
                return Err(format!(
                    "expected {name} header to be set to {want}, got {}",
                    values.join(",")
                ));
            }
            Some(_) => {}
        }
    }
    // Upstream's IgnoreWhitespace drops spaces only (`strings.ReplaceAll(s, " ", "")`).
    let normalise = |value: &str| {
        if exp.response.ignore_whitespace {
            value.replace(' ', "")
        } else {
            value.to_string()
        }
    };
    let set_response_header = |name: &str| {
        response_header(&cap.headers, name)
            .map(|values| normalise(&values))
            .ok_or_else(|| {
                format!(
                    "expected {name} response header to be set, actual headers: {:?}",
                    cap.headers
                )
            })
    };
    for (name, valid) in &exp.response.valid_header_values {
        let values = set_response_header(name)?;
        if !valid.iter().any(|v| normalise(v) == values) {
            return Err(format!(
                "expected {name} response header to be set to one of {valid:?}, got {values}"
            ));
        }
    }
    for (name, want) in &exp.response.headers {
        let values = set_response_header(name)?;
        if values != normalise(want) {
            return Err(format!(
                "expected {name} response header to be set to {want}, got {values}"
            ));
        }
    }
    for name in &exp.response.absent_headers {
        if let Some(values) = response_header(&cap.headers, name) {
            return Err(format!(
                "expected {name} response header to not be set, got {values}"
            ));
        }
    }
    for name in absent {
        if let Some(values) = got.header(name) {
            return Err(format!(
                "expected {name} header to not be set, got {values:?}"
            ));
        }
    }
    if !got.pod.starts_with(&exp.backend) {
        return Err(format!(
            "expected pod name to start with {}, got {}",
            exp.backend, got.pod
        ));
    }
    // A cleartext request echoes no `tls`, which reads as an empty server name.
    if !sni.is_empty() && sni != got.tls.server_name {
        return Err(format!(
            "expected SNI {sni:?}, the backend saw {:?}",
            got.tls.server_name
        ));
    }
    if let Some(cert) = client_cert {
        let pem = cert.pem.as_ref().ok_or_else(|| {
            format!(
                "the client certificate of Secret {} was not looked up",
                cert.secret
            )
        })?;
        if !got.tls.peer_certificates.contains(pem) {
            return Err(format!(
                "expected client certificate (Secret {}) was not captured: the backend saw {} \
                 certificates",
                cert.secret,
                got.tls.peer_certificates.len()
            ));
        }
    }
    Ok(())
}

fn compare_redirect(exp: &Expectation, cap: &Captured) -> Result<(), String> {
    let Some(want) = &exp.redirect else {
        return Ok(());
    };
    let got = cap.redirect.clone().unwrap_or_default();
    // setRedirectRequestDefaults: unset fields default to what was requested.
    let host = if want.host.is_empty() {
        &got.host
    } else {
        &want.host
    };
    let scheme = if want.scheme.is_empty() {
        cap.request_scheme
    } else {
        &want.scheme
    };
    let request_path = exp.request.path.split('?').next().unwrap_or_default();
    let path = if want.path.is_empty() {
        request_path
    } else {
        &want.path
    };
    if *host != got.host {
        return Err(format!(
            "expected redirected hostname to be {host:?}, got {:?}",
            got.host
        ));
    }
    if want.port.is_empty() {
        let scheme_got = got.scheme.to_ascii_lowercase();
        if scheme_got == "http" && !matches!(got.port.as_str(), "80" | "") {
            return Err(format!(
                "for http scheme, expected redirected port to be 80 or not set, got {:?}",
                got.port
            ));
        }
        if scheme_got == "https" && !matches!(got.port.as_str(), "443" | "") {
            return Err(format!(
                "for https scheme, expected redirected port to be 443 or not set, got {:?}",
                got.port
            ));
        }
    } else if want.port != got.port {
        return Err(format!(
            "expected redirected port to be {:?}, got {:?}",
            want.port, got.port
        ));
    }
    if scheme != got.scheme {
        return Err(format!(
            "expected redirected scheme to be {scheme:?}, got {:?}",
            got.scheme
        ));
    }
    if path != got.path {
        return Err(format!(
            "expected redirected path to be {path:?}, got {:?}",
            got.path
        ));
    }
    Ok(())
}

/// All values of a response header joined with `,`, like upstream's `strings.Join`.
fn response_header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClientCert;
    use crate::model::{ExpectedRedirect, ExpectedRequest, from_yaml};
    use crate::roundtrip::{EchoedRequest, EchoedTls, Target, parse_location};

    fn target() -> Target {
        Target {
            ip: "127.0.100.1".into(),
            port: 80,
            tls: None,
        }
    }

    fn echo(pod: &str, ns: &str, path: &str, headers: &[(&str, &[&str])]) -> Captured {
        Captured {
            status: 200,
            headers: http::HeaderMap::new(),
            echo: EchoedRequest {
                path: path.into(),
                host: "127.0.100.1".into(),
                method: "GET".into(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                    .collect(),
                namespace: ns.into(),
                pod: pod.into(),
                tls: EchoedTls::default(),
            },
            redirect: None,
            request_scheme: "http",
        }
    }

    fn exp(yaml: &str) -> Expectation {
        from_yaml(yaml).unwrap()
    }

    #[test]
    fn backend_is_a_pod_prefix_and_namespace_must_match() {
        let e = exp("request: {path: /}\nbackend: infra-backend-v1\nnamespace: infra");
        assert!(compare(&e, &echo("infra-backend-v1-nantian-0", "infra", "/", &[])).is_ok());
        let wrong_pod = compare(&e, &echo("infra-backend-v2-nantian-0", "infra", "/", &[]));
        assert!(
            wrong_pod
                .unwrap_err()
                .contains("pod name to start with infra-backend-v1")
        );
        let wrong_ns = compare(&e, &echo("infra-backend-v1-nantian-0", "web", "/", &[]));
        assert!(wrong_ns.unwrap_err().contains("namespace"));
    }

    /// An echo over TLS with server name `sni`, presented `peers`.
    fn over_tls(sni: &str, peers: &[&str]) -> Captured {
        let mut c = echo("p", "ns", "/", &[]);
        c.echo.tls = EchoedTls {
            server_name: sni.into(),
            peer_certificates: peers.iter().map(|p| p.to_string()).collect(),
        };
        c
    }

    fn resolve(cert: &mut Option<ClientCert>, pem: &str) {
        cert.as_mut().unwrap().pem = Some(pem.into());
    }

    #[test]
    fn sni_of_the_request_is_compared_without_an_expected_request() {
        let e =
            exp("request: {host: abc.example.com, path: /, sni: abc.example.com}\nnamespace: ns");
        let mut c = over_tls("abc.example.com", &[]);
        c.echo.host = "abc.example.com".into();
        compare(&e, &c).unwrap();
        c.echo.tls.server_name = "other.example.com".into();
        let err = compare(&e, &c).unwrap_err();
        assert!(err.contains("SNI \"abc.example.com\""), "{err}");
        // A cleartext backend saw no server name at all.
        c.echo.tls = EchoedTls::default();
        assert!(compare(&e, &c).unwrap_err().contains("SNI"));
        // Upstream's SNI check is skipped for an empty expectation.
        let any = exp("request: {host: abc.example.com, path: /}\nnamespace: ns");
        compare(&any, &c).unwrap();
    }

    #[test]
    fn an_expected_request_replaces_the_sent_sni() {
        let e = exp(
            "request: {host: https-listener.org, path: /, sni: https-listener.org}\nexpectedRequest: {sni: abc.example.com}\nnamespace: ns",
        );
        compare(&e, &over_tls("abc.example.com", &[])).unwrap();
        let err = compare(&e, &over_tls("https-listener.org", &[])).unwrap_err();
        assert!(err.contains("abc.example.com"), "{err}");
    }

    #[test]
    fn client_certs_must_be_among_the_peer_certificates() {
        let mut e = exp("request: {path: /, clientCert: ns/client}\nnamespace: ns");
        let unresolved = compare(&e, &over_tls("", &["PEM"])).unwrap_err();
        assert!(unresolved.contains("not looked up"), "{unresolved}");
        resolve(&mut e.request.client_cert, "PEM");
        compare(&e, &over_tls("", &["CA PEM", "PEM"])).unwrap();
        let err = compare(&e, &over_tls("", &["OTHER"])).unwrap_err();
        assert!(
            err.contains("Secret ns/client") && err.contains("not captured"),
            "{err}"
        );
        assert!(compare(&e, &over_tls("", &[])).is_err());

        let mut expected = exp(
            "request: {path: /, clientCert: ns/client}\nexpectedRequest: {clientCert: ns/x}\nnamespace: ns",
        );
        resolve(
            &mut expected.expected_request.as_mut().unwrap().client_cert,
            "X",
        );
        // The request's own certificate no longer counts, the expected request's does.
        compare(&expected, &over_tls("", &["X"])).unwrap();
        assert!(compare(&expected, &over_tls("", &["PEM"])).is_err());
    }

    #[test]
    fn status_mismatch_is_reported_and_other_codes_skip_body_checks() {
        let e = exp("request: {path: /}\nresponse: {statusCodes: [404]}");
        let mut c = echo("x", "y", "/elsewhere", &[]);
        assert!(
            compare(&e, &c)
                .unwrap_err()
                .contains("one of [404], got 200")
        );
        c.status = 404;
        assert!(compare(&e, &c).is_ok());
    }

    #[test]
    fn query_is_part_of_the_compared_path() {
        let e = exp("request: {path: '/?animal=whale'}\nbackend: v1\nnamespace: ns");
        assert!(compare(&e, &echo("v1-a-b", "ns", "/?animal=whale", &[])).is_ok());
        assert!(compare(&e, &echo("v1-a-b", "ns", "/", &[])).is_err());
    }

    #[test]
    fn request_headers_join_values_and_absent_headers_fail_when_present() {
        let mut e = exp("request: {path: /add, headers: {X-Header-Add: some}}\nnamespace: ns");
        e.expected_request = Some(ExpectedRequest {
            headers: Some([("x-header-add".to_string(), "some,added".to_string())].into()),
            absent_headers: vec!["X-Header-Remove".into()],
            ..ExpectedRequest::default()
        });
        let ok = echo("p", "ns", "/add", &[("X-Header-Add", &["some", "added"])]);
        assert!(compare(&e, &ok).is_ok());
        let not_removed = echo(
            "p",
            "ns",
            "/add",
            &[
                ("X-Header-Add", &["some", "added"]),
                ("X-Header-Remove", &["v"]),
            ],
        );
        assert!(
            compare(&e, &not_removed)
                .unwrap_err()
                .contains("X-Header-Remove")
        );
        let unjoined = echo("p", "ns", "/add", &[("X-Header-Add", &["some"])]);
        assert!(compare(&e, &unjoined).is_err());
    }

    #[test]
    fn response_headers_are_joined_and_absent_ones_checked() {
        let e = exp(
            "request: {path: /}\nnamespace: ns\nresponse: {headers: {X-Add: 'a,b'}, absentHeaders: [X-Gone]}",
        );
        let mut c = echo("p", "ns", "/", &[]);
        c.headers.append("x-add", "a".parse().unwrap());
        c.headers.append("x-add", "b".parse().unwrap());
        assert!(compare(&e, &c).is_ok());
        c.headers.insert("x-gone", "1".parse().unwrap());
        assert!(compare(&e, &c).unwrap_err().contains("X-Gone"));
    }

    #[test]
    fn valid_header_values_accept_any_listed_value_spaces_ignored_on_request() {
        let e = exp(
            "request: {path: /}\nnamespace: ns\nresponse: {validHeaderValues: {Allow: ['GET, PUT', 'PUT, GET']}}",
        );
        let mut c = echo("p", "ns", "/", &[]);
        c.headers.insert("allow", "PUT, GET".parse().unwrap());
        assert!(compare(&e, &c).is_ok());
        c.headers.insert("allow", "PUT,GET".parse().unwrap());
        assert!(compare(&e, &c).unwrap_err().contains("one of"));
        let mut lenient = e.clone();
        lenient.response.ignore_whitespace = true;
        assert!(compare(&lenient, &c).is_ok());
        c.headers.remove("allow");
        assert!(compare(&lenient, &c).unwrap_err().contains("to be set"));
    }

    #[test]
    fn a_local_answer_compares_as_an_empty_echo_of_the_sent_method() {
        let e = exp(
            "request: {path: /cors, method: OPTIONS}\nexpectedRequest: {method: OPTIONS, path: ''}\nresponse: {statusCodes: [200, 204]}",
        );
        let mut c = echo("", "", "", &[]);
        c.status = 204;
        c.echo.method = "OPTIONS".into();
        assert!(compare(&e, &c).is_ok());
        let forwarded = echo("infra-backend-v1-nantian-0", "ns", "/cors", &[]);
        assert!(compare(&e, &forwarded).unwrap_err().contains("path"));
    }

    #[test]
    fn redirects_compare_host_scheme_port_and_default_path() {
        let mut e = exp("request: {path: /hostname-redirect}\nresponse: {statusCodes: [302]}");
        e.redirect = Some(ExpectedRedirect {
            host: "example.org".into(),
            ..ExpectedRedirect::default()
        });
        let capture = |location: &str| Captured {
            status: 302,
            headers: http::HeaderMap::new(),
            echo: EchoedRequest::default(),
            redirect: Some(parse_location(location, &target()).unwrap()),
            request_scheme: "http",
        };
        assert!(compare(&e, &capture("http://example.org/hostname-redirect")).is_ok());
        assert!(compare(&e, &capture("http://example.org:80/hostname-redirect")).is_ok());
        let port = compare(&e, &capture("http://example.org:8080/hostname-redirect"));
        assert!(port.unwrap_err().contains("port"));
        let path = compare(&e, &capture("http://example.org/"));
        assert!(path.unwrap_err().contains("path"));
        let relative = compare(&e, &capture("/hostname-redirect"));
        assert!(relative.unwrap_err().contains("hostname"));
    }

    #[test]
    fn redirect_scheme_defaults_to_the_requests() {
        let mut e = exp("request: {path: /p}\nresponse: {statusCodes: [302]}");
        e.redirect = Some(ExpectedRedirect {
            host: "example.org".into(),
            ..ExpectedRedirect::default()
        });
        let capture = |location: &str, request_scheme| Captured {
            status: 302,
            headers: http::HeaderMap::new(),
            echo: EchoedRequest::default(),
            redirect: Some(parse_location(location, &target()).unwrap()),
            request_scheme,
        };
        assert!(compare(&e, &capture("https://example.org/p", "https")).is_ok());
        assert!(compare(&e, &capture("https://example.org:443/p", "https")).is_ok());
        let port = compare(&e, &capture("https://example.org:8443/p", "https"));
        assert!(port.unwrap_err().contains("443 or not set"));
        let scheme = compare(&e, &capture("http://example.org/p", "https"));
        assert!(scheme.unwrap_err().contains("scheme"));
        e.redirect.as_mut().unwrap().scheme = "http".into();
        assert!(compare(&e, &capture("http://example.org/p", "https")).is_ok());
    }
}
