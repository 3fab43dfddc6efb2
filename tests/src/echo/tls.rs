//! The HTTPS side of the echo server, like echo-basic with `TLS_SERVER_CERT` and
//! `TLS_SERVER_PRIVKEY` (and optionally `TLS_CLIENT_CACERTS`): Go's `ListenAndServeTLS`
//! with its defaults, and the `tls` object echo-basic adds to the echo of a request that
//! came over TLS (`tlsStateToAssertions`), which the BackendTLSPolicy conformance tests read
//! to see the SNI and the client certificate a gateway used.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ProtocolVersion, RootCertStore, ServerConfig, ServerConnection};

use super::response::TlsAssertions;
use super::websocket::accept_key::base64_encode;

/// The server side of echo-basic's `listenAndServeTLS`, from PEM: the certificate chain and
/// its key; with `client_ca`, client certificates are asked for and, when given, must chain
/// to one of its certificates (Go's `VerifyClientCertIfGiven`: a client without one is
/// still served). ALPN offers `h2` and `http/1.1`, as Go's HTTP server does.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("reading the server certificate")?;
    if chain.is_empty() {
        bail!("no certificate in the server certificate file");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("reading the server key")?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(cert.context("reading the client CA certificates")?)
                    .context("adding a client CA certificate")?;
            }
            // Go's `AppendCertsFromPEM` fails the same way.
            if roots.is_empty() {
                bail!("no certificate in the client CA file");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("the server certificate and key do not go together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// echo-basic's `tlsStateToAssertions` for one handshaken connection.
pub fn assertions(connection: &ServerConnection) -> TlsAssertions {
    TlsAssertions {
        version: connection
            .protocol_version()
            .map(version_name)
            .unwrap_or_default(),
        peer_certificates: connection
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|cert| pem_certificate(cert))
            .collect(),
        server_name: connection.server_name().unwrap_or_default().to_owned(),
        negotiated_protocol: connection
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
        cipher_suite: connection
            .negotiated_cipher_suite()
            .map(|suite| cipher_suite_name(suite.suite()))
            .unwrap_or_default(),
    }
}

/// The names echo-basic gives TLS versions (`TLSv1.3`); other versions are unnamed there.
fn version_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        ProtocolVersion::TLSv1_1 => "TLSv1.1",
        ProtocolVersion::TLSv1_0 => "TLSv1.0",
        _ => "",
    }
    .to_owned()
}

/// Go's `tls.CipherSuiteName`: the IANA name (rustls calls the TLS 1.3 suites `TLS13_...`,
/// Go and IANA `TLS_...`), or `0x` and four hex digits for a suite it does not know.
pub fn cipher_suite_name(suite: rustls::CipherSuite) -> String {
    match suite.as_str() {
        Some(name) => match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_owned(),
        },
        None => format!("0x{:04X}", u16::from(suite)),
    }
}

/// Go's `pem.Encode` of a `CERTIFICATE` block: base64 in lines of 64 characters, each line
/// ending in `\n`. The conformance suite compares these strings with a Secret's `tls.crt`
/// as they are, so the layout matters.
pub fn pem_certificate(der: &[u8]) -> String {
    let encoded = base64_encode(der);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        // Base64 is ASCII, so every chunk is a whole string.
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_lines_are_64_characters() {
        let pem = pem_certificate(&[7u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        // 100 bytes are 136 base64 characters.
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 64);
        assert_eq!(lines[3].len(), 8);
        assert_eq!(lines[4], "-----END CERTIFICATE-----");
        assert!(pem.ends_with("-----\n"));
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(der.as_ref(), &[7u8; 100]);
    }

    #[test]
    fn cipher_suites_have_go_names() {
        use rustls::CipherSuite;
        assert_eq!(
            cipher_suite_name(CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            cipher_suite_name(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
        );
        assert_eq!(cipher_suite_name(CipherSuite::Unknown(0xabcd)), "0xABCD");
    }
}
