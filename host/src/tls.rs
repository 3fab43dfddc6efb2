//! TLS termination for HTTPS listeners (rustls): certificates come with the snapshot, one
//! server configuration per socket picks a certificate by SNI among the socket's
//! listeners, and each connection takes the configuration current when it was accepted,
//! so a rotated certificate is served to new connections without rebinding anything.

use std::net::SocketAddr;
use std::sync::Arc;

use nantian_proto::config as pb;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::UnixTime;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, ListenerSpec, invalid};
use crate::hostname::Hostname;

/// Parses one PEM certificate chain and key into a signing key rustls can serve.
pub fn certified_key(pb: &pb::TlsCertificate) -> Result<Arc<CertifiedKey>, ConfigError> {
    let what = if pb.source.is_empty() {
        "certificate"
    } else {
        pb.source.as_str()
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pb.cert_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| invalid("tls certificate", what, format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(
            "tls certificate",
            what,
            "no certificate in tls.crt",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(pb.private_key_pem.as_bytes())
        .map_err(|e| invalid("tls certificate", what, format!("bad private key: {e}")))?;
    let signing_key = ring::sign::any_supported_type(&key).map_err(|e| {
        invalid(
            "tls certificate",
            what,
            format!("unusable private key: {e}"),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| invalid("tls certificate", what, format!("key does not match: {e}")))?;
    Ok(Arc::new(certified))
}

/// Client certificate validation of an HTTPS port (Gateway `tls.frontend`).
#[derive(Debug, Clone)]
pub struct ClientAuth {
    roots: Arc<RootCertStore>,
    /// AllowInsecureFallback: no certificate, or one that fails, is let through.
    insecure_fallback: bool,
}

impl TryFrom<&pb::ClientValidation> for ClientAuth {
    type Error = ConfigError;

    fn try_from(pb: &pb::ClientValidation) -> Result<Self, ConfigError> {
        let mut roots = RootCertStore::empty();
        for pem in &pb.ca_certificates_pem {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert =
                    cert.map_err(|e| invalid("client CA", "ca.crt", format!("bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| invalid("client CA", "ca.crt", e.to_string()))?;
            }
        }
        if roots.is_empty() && !pb.allow_insecure_fallback {
            return Err(invalid(
                "client CA",
                "ca.crt",
                "no CA certificate to validate clients with",
            ));
        }
        Ok(ClientAuth {
            roots: Arc::new(roots),
            insecure_fallback: pb.allow_insecure_fallback,
        })
    }
}

impl ClientAuth {
    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        let provider = Arc::new(ring::default_provider());
        let strict = if self.roots.is_empty() {
            // Fallback mode with no usable CA: every client certificate fails.
            None
        } else {
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .ok()
        };
        match (strict, self.insecure_fallback) {
            (Some(strict), false) => strict,
            (strict, _) => Arc::new(InsecureFallback { strict, provider }),
        }
    }
}

/// AllowInsecureFallback: asks for a client certificate and checks it, but lets the
/// connection through without one or with one that fails (the backend decides).
#[derive(Debug)]
struct InsecureFallback {
    strict: Option<Arc<dyn ClientCertVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for InsecureFallback {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.strict.as_ref().map_or(&[], |s| s.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(strict) = &self.strict
            && let Err(e) = strict.verify_client_cert(end_entity, intermediates, now)
        {
            tracing::debug!("client certificate not valid, let through (insecure fallback): {e}");
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The HTTPS listeners of one socket, for choosing a certificate by SNI.
#[derive(Debug)]
pub struct SniResolver {
    listeners: Vec<SniListener>,
}

#[derive(Debug)]
struct SniListener {
    hostname: Option<Hostname>,
    certificates: Arc<[Arc<CertifiedKey>]>,
}

impl SniResolver {
    /// The listener a name selects, as routing does: an exact hostname, else the longest
    /// wildcard covering it, else a listener without hostname. `None` without a name picks
    /// the listener without hostname, else the first.
    pub fn listener_for(&self, name: Option<&str>) -> Option<usize> {
        let Some(name) = name else {
            return self
                .listeners
                .iter()
                .position(|l| l.hostname.is_none())
                .or((!self.listeners.is_empty()).then_some(0));
        };
        let name = name.to_ascii_lowercase();
        let exact = self
            .listeners
            .iter()
            .position(|l| matches!(&l.hostname, Some(h @ Hostname::Exact(_)) if h.matches(&name)));
        exact
            .or_else(|| {
                self.listeners
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| {
                        matches!(&l.hostname, Some(h @ Hostname::Wildcard(_)) if h.matches(&name))
                    })
                    .max_by_key(|(_, l)| l.hostname.as_ref().map_or(0, Hostname::written_len))
                    .map(|(i, _)| i)
            })
            .or_else(|| self.listeners.iter().position(|l| l.hostname.is_none()))
    }

    /// Whether `host` belongs to another listener than the one `sni` chose for this
    /// connection: the request must be sent on a connection of its own (421 Misdirected
    /// Request), whatever certificates the two listeners have.
    pub fn misdirected(&self, sni: &str, host: &str) -> bool {
        match (self.listener_for(Some(sni)), self.listener_for(Some(host))) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let listener = self.listener_for(hello.server_name())?;
        self.listeners[listener].certificates.first().cloned()
    }
}

/// What a socket with HTTPS listeners needs: its server configuration and resolver.
#[derive(Debug, Clone)]
pub struct BindTls {
    pub config: Arc<ServerConfig>,
    pub resolver: Arc<SniResolver>,
}

/// One `BindTls` per socket that has HTTPS listeners.
pub fn bind_configs(listeners: &[ListenerSpec]) -> std::collections::HashMap<SocketAddr, BindTls> {
    // Client validation is per port in Gateway API: every listener of a socket has the
    // same, so the first one that has it speaks for the socket.
    // TLSRoute sockets (all their listeners are; validation sees to it) offer no ALPN:
    // the bytes inside are the backend's protocol, not HTTP.
    type Socket = (Vec<SniListener>, Option<ClientAuth>, bool);
    let mut by_bind: std::collections::HashMap<SocketAddr, Socket> =
        std::collections::HashMap::new();
    for l in listeners {
        let Some(certificates) = &l.tls else {
            continue;
        };
        for bind in &l.binds {
            let socket = by_bind.entry(*bind).or_default();
            socket.0.push(SniListener {
                hostname: l.hostname.clone(),
                certificates: certificates.clone(),
            });
            if socket.1.is_none() {
                socket.1 = l.client_auth.clone();
            }
            socket.2 |= l.stream.is_some();
        }
    }
    by_bind
        .into_iter()
        .map(|(bind, (listeners, client_auth, streams))| {
            let resolver = Arc::new(SniResolver { listeners });
            (
                bind,
                BindTls {
                    config: server_config(resolver.clone(), client_auth.as_ref(), !streams),
                    resolver,
                },
            )
        })
        .collect()
}

fn server_config(
    resolver: Arc<SniResolver>,
    client_auth: Option<&ClientAuth>,
    http_alpn: bool,
) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = match client_auth {
        Some(auth) => builder.with_client_cert_verifier(auth.verifier()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    if http_alpn {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_pair(names: &[&str]) -> pb::TlsCertificate {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        pb::TlsCertificate {
            source: "ns/secret".into(),
            cert_chain_pem: cert.cert.pem(),
            private_key_pem: cert.key_pair.serialize_pem(),
        }
    }

    fn listener(hostname: Option<&str>, names: &[&str]) -> ListenerSpec {
        ListenerSpec {
            name: format!("l-{hostname:?}").into(),
            binds: vec!["127.0.0.1:443".parse().unwrap()],
            hostname: hostname.map(|h| Hostname::parse(h).unwrap()),
            tls: Some(vec![certified_key(&pem_pair(names)).unwrap()].into()),
            client_auth: None,
            stream: None,
        }
    }

    #[test]
    fn certificates_parse_and_bad_ones_are_named() {
        assert!(certified_key(&pem_pair(&["a.example"])).is_ok());
        let mut bad = pem_pair(&["a.example"]);
        bad.private_key_pem = pem_pair(&["b.example"]).private_key_pem;
        let err = certified_key(&bad).unwrap_err().to_string();
        assert!(err.contains("ns/secret"), "{err}");
        let mut garbage = pem_pair(&["a.example"]);
        garbage.cert_chain_pem = "not pem".into();
        assert!(certified_key(&garbage).is_err());
    }

    #[test]
    fn sni_picks_exact_then_longest_wildcard_then_the_catch_all() {
        let binds = bind_configs(&[
            listener(None, &["default.example"]),
            listener(Some("*.example.com"), &["*.example.com"]),
            listener(Some("*.api.example.com"), &["*.api.example.com"]),
            listener(Some("www.example.com"), &["www.example.com"]),
        ]);
        let resolver = &binds[&"127.0.0.1:443".parse().unwrap()].resolver;
        assert_eq!(resolver.listener_for(Some("www.example.com")), Some(3));
        assert_eq!(resolver.listener_for(Some("WWW.example.com")), Some(3));
        assert_eq!(resolver.listener_for(Some("v1.api.example.com")), Some(2));
        assert_eq!(resolver.listener_for(Some("shop.example.com")), Some(1));
        assert_eq!(resolver.listener_for(Some("other.org")), Some(0));
        assert_eq!(resolver.listener_for(None), Some(0));
        assert!(resolver.misdirected("www.example.com", "shop.example.com"));
        assert!(!resolver.misdirected("shop.example.com", "cart.example.com"));
    }
}
