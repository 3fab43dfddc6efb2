//! Connections to TLS listeners that carry TLSRoutes, like upstream's `tcp` and `tls`
//! conformance utilities:
//!
//! - [`eventually_valid`] is `tcp.MakeTCPRequestAndExpectEventuallyValidResponse`: dial
//!   (over TLS with the step's SNI and trust), then talk to echo-basic's TCP test server
//!   through the gateway: welcome line, `PING`, `IS_TLS`, `TEST`. Retried until one
//!   connection passes every check.
//! - [`eventually_rejected`] is `tls.MakeTLSConnectionAndExpectEventuallyConnectionRejection`:
//!   a TLS handshake must end in EOF or a reset, which is how a gateway refuses a server
//!   name it has no (usable) route for. A TLS alert or a finished handshake is not a
//!   rejection.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use nantian_e2e::echo::tcp::{TcpAssertions, WELCOME};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::model::TcpExpectation;
use crate::roundtrip::{Attempt, await_consecutive};

/// One attempt's connection and conversation.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the client does TLS: SNI and the trust of its config.
pub struct ClientTls {
    pub server_name: ServerName<'static>,
    pub config: Arc<ClientConfig>,
}

impl ClientTls {
    pub fn new(server_name: &str, config: ClientConfig) -> Result<Self, String> {
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("bad server name {server_name:?}: {e}"))?;
        Ok(ClientTls {
            server_name,
            config: Arc::new(config),
        })
    }
}

/// A client config whose only roots are the PEM certificates in `ca_pem` (Go's
/// `RootCAs` from `AppendCertsFromPEM`), without ALPN, as upstream's TCP client.
pub fn roots_config(ca_pem: &str) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("reading the CA certificate: {e}"))?;
        roots.add(cert).map_err(|e| format!("adding a CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate in ca.crt".into());
    }
    with_roots(roots)
}

fn with_roots(roots: RootCertStore) -> Result<ClientConfig, String> {
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Retries [`exchange`] on fresh connections until one passes [`check`] (upstream's
/// `assert.Eventually`) or `max_time` is up; the error is the last attempt's.
pub async fn eventually_valid(
    addr: &str,
    tls: Option<&ClientTls>,
    expected: &TcpExpectation,
    max_time: Duration,
) -> Result<(), String> {
    await_consecutive(1, max_time, async || {
        tokio::time::timeout(ATTEMPT_TIMEOUT, exchange(addr, tls))
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
            .and_then(|(is_tls, test)| check(is_tls, &test, expected))
            .map_err(|e| Attempt::NotYet(format!("TCP exchange with {addr}: {e}")))
    })
    .await
}

/// One connection's conversation: the `IS_TLS` answer and the `TEST` payload.
async fn exchange(addr: &str, tls: Option<&ClientTls>) -> Result<(bool, TcpAssertions), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp: {e}"))?;
    match tls {
        None => converse(tcp).await,
        Some(tls) => {
            let stream = TlsConnector::from(tls.config.clone())
                .connect(tls.server_name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            converse(stream).await
        }
    }
}

async fn converse<S>(stream: S) -> Result<(bool, TcpAssertions), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read);
    let welcome = read_line(&mut lines).await?;
    if welcome != WELCOME {
        return Err(format!("welcome message {welcome:?}, want {WELCOME:?}"));
    }
    let pong = ask(&mut write, &mut lines, "PING").await?;
    if pong != "PONG\n" {
        return Err(format!("PING answered {pong:?}"));
    }
    let is_tls = match ask(&mut write, &mut lines, "IS_TLS").await?.trim_end() {
        "true" => true,
        "false" => false,
        other => return Err(format!("IS_TLS answered {other:?}")),
    };
    let test = ask(&mut write, &mut lines, "TEST").await?;
    let test = serde_json::from_str(&test).map_err(|e| format!("TEST answered {test:?}: {e}"))?;
    Ok((is_tls, test))
}

/// Sends one command line and reads the answer line.
async fn ask<W, R>(write: &mut W, read: &mut R, command: &str) -> Result<String, String>
where
    W: AsyncWrite + Unpin,
    R: AsyncBufRead + Unpin,
{
    write
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|e| format!("sending {command}: {e}"))?;
    read_line(read).await
}

/// One line, with its `\n`.
async fn read_line<R: AsyncBufRead + Unpin>(read: &mut R) -> Result<String, String> {
    let mut line = String::new();
    match read.read_line(&mut line).await {
        Ok(0) => Err("the connection closed".into()),
        Ok(_) => Ok(line),
        Err(e) => Err(e.to_string()),
    }
}

/// Upstream's checks of one conversation (`WaitForValidTCPResponse`, `assertTestMessage`).
fn check(is_tls: bool, test: &TcpAssertions, expected: &TcpExpectation) -> Result<(), String> {
    if is_tls != expected.backend_is_tls {
        return Err(format!(
            "IS_TLS answered {is_tls}, want {}",
            expected.backend_is_tls
        ));
    }
    if test.namespace != expected.namespace {
        return Err(format!(
            "namespace {:?}, want {:?}",
            test.namespace, expected.namespace
        ));
    }
    if !test.pod.starts_with(&format!("{}-", expected.backend)) {
        return Err(format!(
            "pod {:?} is not of backend {:?}",
            test.pod, expected.backend
        ));
    }
    let server_name = test.tls.as_ref().map(|t| t.server_name.as_str());
    if !expected.hostname.is_empty() && server_name != Some(expected.hostname.as_str()) {
        return Err(format!(
            "the backend saw server name {server_name:?}, want {:?}",
            expected.hostname
        ));
    }
    Ok(())
}

/// Retries a TLS handshake with `server_name` until the gateway ends one with
/// EOF or a reset, or `max_time` is up.
pub async fn eventually_rejected(
    addr: &str,
    server_name: &str,
    max_time: Duration,
) -> Result<(), String> {
    // Go's default roots: none of the suite's certificates chain to them, so a handshake
    // the gateway lets through fails on the certificate, which is not a rejection.
    let tls = ClientTls::new(server_name, with_roots(RootCertStore::empty())?)?;
    await_consecutive(1, max_time, async || {
        tokio::time::timeout(ATTEMPT_TIMEOUT, handshake(addr, &tls))
            .await
            .unwrap_or_else(|_| Err("the handshake timed out".into()))
            .map_err(|e| {
                Attempt::NotYet(format!(
                    "a TLS connection to {addr} for {server_name:?} was not rejected: {e}"
                ))
            })
    })
    .await
}

/// Ok when the handshake ended in a rejection (upstream's `isConnectionRejected`).
async fn handshake(addr: &str, tls: &ClientTls) -> Result<(), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp: {e}"))?;
    match TlsConnector::from(tls.config.clone())
        .connect(tls.server_name.clone(), tcp)
        .await
    {
        Ok(_) => Err("the handshake succeeded".into()),
        Err(e) if is_rejection(&e) => Ok(()),
        Err(e) => Err(format!("the handshake failed otherwise: {e}")),
    }
}

fn is_rejection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    )
}
