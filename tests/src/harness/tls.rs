//! TLS client helpers shared by the HTTPS tests: self-signed certificates, `kubernetes.io/tls`
//! Secrets as YAML, and a GET over TLS that trusts only a given certificate.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Reply;

/// A self-signed certificate for `names`: (PEM chain, PEM key).
pub fn certificate(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::generate_simple_self_signed(names).unwrap();
    (cert.cert.pem(), cert.key_pair.serialize_pem())
}

pub fn tls_secret(ns: &str, name: &str, (chain, key): &(String, String)) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(chain),
        indent(key)
    )
}

/// Trusts only `trusted` (PEM certificates); presents `client` when asked.
fn client_config(trusted: &str, client: Option<&(String, String)>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trusted.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match client {
        None => config.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            config.with_client_auth_cert(chain, key).unwrap()
        }
    }
}

/// Only a TLS handshake with `addr` for `sni`, trusting only `trusted`: how it failed, as
/// the client sees it (a refused connection ends in `UnexpectedEof`; a TLS alert is
/// `InvalidData`).
pub async fn tls_handshake(addr: &str, sni: &str, trusted: &str) -> std::io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(Arc::new(client_config(trusted, None)))
        .connect(name, tcp)
        .await
        .map(drop)
}

/// A GET over TLS to `addr` with `sni`, trusting only `trusted` (a PEM certificate), with
/// `host` as Host. Err when the handshake or the exchange fails.
pub async fn get_tls(addr: &str, sni: &str, host: &str, trusted: &str) -> Result<Reply, String> {
    get_tls_as(addr, sni, host, trusted, None).await
}

/// `get_tls`, presenting `client` (PEM chain, PEM key) when asked for a certificate.
pub async fn get_tls_as(
    addr: &str,
    sni: &str,
    host: &str,
    trusted: &str,
    client: Option<&(String, String)>,
) -> Result<Reply, String> {
    let config = client_config(trusted, client);
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get("/tls")
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}
