//! A new connection to an upstream endpoint: cleartext TCP, or TLS over it when the
//! backend has a TLS policy.
//!
//! Failing to reach the endpoint is a connect error (503); reaching it but failing the
//! TLS handshake or the certificate checks is a TLS error (502), and never a reason to
//! go on in cleartext.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::upstream::{BoxError, UpstreamError};
use crate::upstream_tls::UpstreamTls;

/// An upstream connection's byte stream. An enum rather than a trait object: the
/// cleartext path pays a branch, not an indirect call; the TLS state is boxed so a
/// cleartext connection stays small.
pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Opens a connection to `endpoint`, with `tls` if given, each step within `timeout`.
pub async fn connect(
    endpoint: &Authority,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<UpstreamIo, UpstreamError> {
    match tls {
        None => connect_tcp(endpoint, timeout).await.map(UpstreamIo::Plain),
        // Boxed: the handshake's state is over a kilobyte, and inline it would grow every
        // request future that might connect, cleartext ones included.
        Some(tls) => Box::pin(connect_tls(endpoint, tls, timeout)).await,
    }
}

async fn connect_tls(
    endpoint: &Authority,
    tls: &UpstreamTls,
    timeout: Duration,
) -> Result<UpstreamIo, UpstreamError> {
    let tls_error = |source: BoxError| UpstreamError::Tls {
        endpoint: endpoint.clone(),
        source,
    };
    // Nothing can be verified: don't even connect.
    tls.check_trust().map_err(tls_error)?;
    let tcp = connect_tcp(endpoint, timeout).await?;
    let stream = tls.handshake(tcp, timeout).await.map_err(tls_error)?;
    Ok(UpstreamIo::Tls(Box::new(stream)))
}

async fn connect_tcp(endpoint: &Authority, timeout: Duration) -> Result<TcpStream, UpstreamError> {
    let connect_error = |source: BoxError| UpstreamError::Connect {
        endpoint: endpoint.clone(),
        source,
    };
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(endpoint.as_str()))
        .await
        .map_err(|_| connect_error("connect timed out".into()))?
        .map_err(|e| connect_error(e.into()))?;
    tcp.set_nodelay(true).map_err(|e| connect_error(e.into()))?;
    Ok(tcp)
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            UpstreamIo::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            UpstreamIo::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            UpstreamIo::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            UpstreamIo::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(tcp) => tcp.is_write_vectored(),
            UpstreamIo::Tls(tls) => tls.is_write_vectored(),
        }
    }
}
