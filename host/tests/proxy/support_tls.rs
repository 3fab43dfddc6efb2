//! TLS fixtures: a test PKI made with rcgen, and the echo backend behind rustls, which
//! reports per connection the SNI it was asked for, whether the client presented a
//! certificate and whether the session was resumed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use nantian_proto::config as pb;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::crypto::ring;
use rustls::server::WebPkiClientVerifier;
use rustls::{HandshakeKind, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

/// A certificate authority that issues server and client certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// An issued certificate with its key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for these DNS names and URIs.
    pub fn server(&self, dns: &[&str], uris: &[&str]) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "backend");
        for name in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*name).try_into().unwrap()));
        }
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().unwrap()));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    pub fn client(&self, name: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

impl Issued {
    /// As the gateway's backend client certificate.
    pub fn as_pb(&self) -> pb::TlsCertificate {
        pb::TlsCertificate {
            source: "test/client-cert".into(),
            cert_chain_pem: self.cert_pem.clone(),
            private_key_pem: self.key_pem.clone(),
        }
    }
}

/// One TLS connection the backend accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub sni: Option<String>,
    pub client_certificate: bool,
    pub resumed: bool,
    pub alpn: Option<String>,
}

pub struct TlsEcho {
    pub addr: SocketAddr,
    /// Completed handshakes, in order.
    pub accepted: Arc<Mutex<Vec<Accepted>>>,
    /// `/hold` as in `support::Echo`.
    pub arrived: Arc<Notify>,
    pub release: Arc<Notify>,
}

impl TlsEcho {
    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().unwrap().clone()
    }
}

/// The echo backend (see `support::start_echo`) over TLS with `server`'s certificate,
/// requiring a client certificate from `client_ca` when given. HTTP/1.1 and HTTP/2 by
/// ALPN.
pub async fn start_tls_echo(
    name: &'static str,
    server: &Issued,
    client_ca: Option<&Ca>,
) -> TlsEcho {
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.cert.der().clone()).unwrap();
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone()));
    let mut config = builder
        .with_single_cert(vec![server.der.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let log = accepted.clone();
    let hold = crate::support::Hold::default();
    let (arrived, release) = (hold.arrived.clone(), hold.release.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, log, hold) = (acceptor.clone(), log.clone(), hold.clone());
            tokio::spawn(async move {
                // A handshake the client aborts (a certificate it rejects) ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (_, session) = tls.get_ref();
                let sni = session.server_name().map(str::to_string);
                log.lock().unwrap().push(Accepted {
                    sni: sni.clone(),
                    client_certificate: session.peer_certificates().is_some(),
                    resumed: session.handshake_kind() == Some(HandshakeKind::Resumed),
                    alpn: session
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned()),
                });
                let service = hyper::service::service_fn(move |req| {
                    let (sni, hold) = (sni.clone(), hold.clone());
                    async move {
                        let mut resp = crate::support::echo(name, hold, req).await?;
                        if let Some(sni) = sni {
                            resp.headers_mut().insert("x-sni", sni.parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsEcho {
        addr,
        accepted,
        arrived,
        release,
    }
}

/// Backend TLS settings trusting `ca_pem` and sending `hostname` as SNI.
pub fn backend_tls(hostname: &str, ca_pem: &[&str]) -> pb::BackendTls {
    pb::BackendTls {
        hostname: hostname.into(),
        ca_certificates_pem: ca_pem.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

pub fn san(kind: &str, value: &str) -> pb::SubjectAltName {
    pb::SubjectAltName {
        r#type: kind.into(),
        value: value.into(),
    }
}
