//! TLS from the host to a backend (Gateway API BackendTLSPolicy): the rustls client
//! configuration one backend's connections use, built when a snapshot is decoded so that
//! a bad CA bundle, subject alt name or client certificate NACKs the snapshot instead of
//! failing requests later.
//!
//! The configuration (and with it rustls' session cache, for resumption) lives as long
//! as the backend's connection pools: `gateway` keeps both while the settings they were
//! built from are equal, and builds new ones, with new connections, when they change.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use nantian_proto::config as pb;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::ring;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::warn;

use crate::config::{ConfigError, UpstreamProtocol, invalid};
use crate::hostname::Hostname;
use crate::upstream::BoxError;
use crate::upstream_tls_verify::{ExpectedName, SubjectAltNameVerifier};

/// How one backend's connections are secured.
pub struct UpstreamTls {
    /// What this was built from; equal settings keep the backend's pools.
    settings: pb::BackendTls,
    /// Sent as SNI, and the name the certificate must match unless subject alt names
    /// are given.
    server_name: ServerName<'static>,
    trust: Trust,
}

enum Trust {
    Verify(TlsConnector),
    /// No CA certificate to verify with (no bundle, no system roots): every connection
    /// fails before it starts, as rustls cannot verify without roots and the policy
    /// forbids trusting the peer or falling back to cleartext.
    Nothing,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("hostname", &self.settings.hostname)
            .field("subject_alt_names", &self.settings.subject_alt_names.len())
            .field("verifies", &matches!(self.trust, Trust::Verify(_)))
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Validates `settings` and builds the client configuration for a backend speaking
    /// `protocol` (HTTP/1.1 offers ALPN `http/1.1`, `h2c` offers `h2`).
    pub fn new(settings: &pb::BackendTls, protocol: UpstreamProtocol) -> Result<Self, ConfigError> {
        let server_name = server_name(&settings.hostname)?;
        let expected: Vec<ExpectedName> = settings
            .subject_alt_names
            .iter()
            .map(expected_name)
            .collect::<Result<_, _>>()?;
        let roots = roots(settings)?;
        let client_key = settings
            .client_certificate
            .as_ref()
            .map(crate::tls::certified_key)
            .transpose()?;
        let trust = if roots.is_empty() {
            Trust::Nothing
        } else {
            let provider = Arc::new(ring::default_provider());
            let webpki =
                WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| invalid("backend CA", "ca.crt", e))?;
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions");
            let builder = if expected.is_empty() {
                // Standard verification against the hostname.
                builder.with_webpki_verifier(webpki)
            } else {
                // The same chain checks; the names checked are the subject alt names.
                let verifier = SubjectAltNameVerifier::new(
                    webpki,
                    roots,
                    expected,
                    provider.signature_verification_algorithms.all,
                );
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
            };
            let mut config = match client_key {
                Some(key) => builder
                    .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key))),
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![match protocol {
                UpstreamProtocol::Http1 => b"http/1.1".to_vec(),
                UpstreamProtocol::H2c => b"h2".to_vec(),
            }];
            Trust::Verify(TlsConnector::from(Arc::new(config)))
        };
        Ok(UpstreamTls {
            settings: settings.clone(),
            server_name,
            trust,
        })
    }

    /// Whether both were built from the same settings.
    pub fn same_settings(&self, other: &UpstreamTls) -> bool {
        self.settings == other.settings
    }

    /// Refuses at once when nothing can be verified, without connecting.
    pub fn check_trust(&self) -> Result<(), BoxError> {
        match self.trust {
            Trust::Verify(_) => Ok(()),
            Trust::Nothing => Err(NOTHING_TRUSTED.into()),
        }
    }

    /// The TLS handshake on a fresh connection, certificate verification included.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, BoxError> {
        let Trust::Verify(connector) = &self.trust else {
            return Err(NOTHING_TRUSTED.into());
        };
        let handshake = connector.connect(self.server_name.clone(), tcp);
        let tls = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| "TLS handshake timed out")??;
        Ok(tls)
    }
}

const NOTHING_TRUSTED: &str = "no CA certificate to verify the backend with";

/// A DNS name (not a wildcard, not an IP address), as BackendTLSPolicy requires.
fn server_name(hostname: &str) -> Result<ServerName<'static>, ConfigError> {
    if hostname.is_empty() {
        return Err(invalid(
            "backend tls hostname",
            hostname,
            "must not be empty",
        ));
    }
    match Hostname::parse(hostname)? {
        Hostname::Exact(name) => ServerName::try_from(name.to_string())
            .map_err(|e| invalid("backend tls hostname", hostname, e)),
        Hostname::Wildcard(_) => Err(invalid(
            "backend tls hostname",
            hostname,
            "must not be a wildcard",
        )),
    }
}

fn expected_name(san: &pb::SubjectAltName) -> Result<ExpectedName, ConfigError> {
    match san.r#type.as_str() {
        "Hostname" => match Hostname::parse(&san.value)? {
            Hostname::Exact(name) => ServerName::try_from(name.to_string())
                .map(ExpectedName::Dns)
                .map_err(|e| invalid("subject alt name", &san.value, e)),
            Hostname::Wildcard(_) => Ok(ExpectedName::DnsWildcard(
                san.value.to_ascii_lowercase().into(),
            )),
        },
        "URI" if is_absolute_uri(&san.value) => Ok(ExpectedName::Uri(san.value.as_str().into())),
        "URI" => Err(invalid(
            "subject alt name",
            &san.value,
            "not an absolute URI (scheme:rest)",
        )),
        other => Err(ConfigError::Unsupported {
            field: "subject alt name type",
            value: other.to_string(),
        }),
    }
}

/// RFC 3986 `scheme ":" rest`, without whitespace; the certificate must carry exactly it.
fn is_absolute_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut scheme_chars = scheme.chars();
    scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The CA certificates to trust: the bundles, plus the system's when asked.
fn roots(settings: &pb::BackendTls) -> Result<Arc<RootCertStore>, ConfigError> {
    if settings.ca_certificates_pem.is_empty() && settings.system_roots {
        // Shared as it is: no copy of the system store per backend and snapshot.
        return Ok(system_roots().clone());
    }
    let mut roots = if settings.system_roots {
        RootCertStore::clone(system_roots())
    } else {
        RootCertStore::empty()
    };
    for pem in &settings.ca_certificates_pem {
        let mut found = false;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert =
                cert.map_err(|e| invalid("backend CA", "ca.crt", format!("bad PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid("backend CA", "ca.crt", e))?;
            found = true;
        }
        if !found {
            return Err(invalid(
                "backend CA",
                "ca.crt",
                "no PEM certificate in the bundle",
            ));
        }
    }
    Ok(Arc::new(roots))
}

/// The system's trusted CAs (e.g. /etc/ssl/certs), read once on first use. Unreadable
/// ones are skipped; none at all leaves backends that rely on them unverifiable (their
/// connections fail), never unverified.
fn system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            warn!("reading the system CA certificates: {e}");
        }
        let mut roots = RootCertStore::empty();
        let (_, unusable) = roots.add_parsable_certificates(found.certs);
        if unusable > 0 {
            warn!("{unusable} system CA certificate(s) could not be used");
        }
        if roots.is_empty() {
            warn!("no system CA certificates found; backends trusting them will not verify");
        }
        Arc::new(roots)
    });
    &ROOTS
}

#[cfg(test)]
#[path = "upstream_tls_tests.rs"]
mod tests;
