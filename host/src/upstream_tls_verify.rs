//! Backend certificate verification by subject alt names (BackendTLSPolicy
//! `subjectAltNames`): the chain is checked exactly as rustls' WebPKI verifier checks it
//! (signatures, validity, a path to the trusted roots, server-auth usage), but the
//! certificate must then carry one of the listed names, and the SNI hostname is not
//! compared at all.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor, verify_server_name,
};
// rustls exports its parsed certificate with the server side's verifier types.
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, SignatureVerificationAlgorithm, UnixTime};

/// One acceptable subject alt name.
#[derive(Debug, Clone)]
pub enum ExpectedName {
    /// A DNS name, matched as for a server name (a certificate's `*.example.com` covers
    /// `a.example.com`).
    Dns(ServerName<'static>),
    /// A wildcard (`*.example.com`, lowercase): the certificate must carry that very
    /// wildcard. A wildcard is a pattern only on the certificate's side.
    DnsWildcard(Box<str>),
    /// A URI SAN, compared byte for byte.
    Uri(Box<str>),
}

#[derive(Debug)]
pub struct SubjectAltNameVerifier {
    /// rustls' own verifier, for the handshake signatures and their schemes.
    webpki: Arc<WebPkiServerVerifier>,
    roots: Arc<RootCertStore>,
    expected: Vec<ExpectedName>,
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
}

impl SubjectAltNameVerifier {
    pub fn new(
        webpki: Arc<WebPkiServerVerifier>,
        roots: Arc<RootCertStore>,
        expected: Vec<ExpectedName>,
        algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Self {
        SubjectAltNameVerifier {
            webpki,
            roots,
            expected,
            algorithms,
        }
    }

    fn carries_expected_name(
        &self,
        parsed: &ParsedCertificate<'_>,
        end_entity: &CertificateDer<'_>,
    ) -> bool {
        // rustls matches DNS names; the raw wildcard and URI names need webpki's view.
        let raw = webpki::EndEntityCert::try_from(end_entity).ok();
        self.expected.iter().any(|name| match name {
            ExpectedName::Dns(server_name) => verify_server_name(parsed, server_name).is_ok(),
            ExpectedName::DnsWildcard(wildcard) => raw.as_ref().is_some_and(|cert| {
                cert.valid_dns_names()
                    .any(|dns| dns.eq_ignore_ascii_case(wildcard))
            }),
            ExpectedName::Uri(uri) => raw
                .as_ref()
                .is_some_and(|cert| cert.valid_uri_names().any(|found| found == &**uri)),
        })
    }
}

impl ServerCertVerifier for SubjectAltNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms,
        )?;
        if !self.carries_expected_name(&parsed, end_entity) {
            return Err(CertificateError::NotValidForName.into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
