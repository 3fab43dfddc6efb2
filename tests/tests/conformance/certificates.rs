//! The certificates upstream's suite creates at setup (`ConformanceTestSuite.Setup`, after
//! the base manifests): self-signed and CA-signed server certificates in `kubernetes.io/tls`
//! Secrets, client certificates, and CA certificates in ConfigMaps, with upstream's names,
//! namespaces and hosts. They are generated afresh for every run (with rcgen) and go into
//! the base config; the replay keeps each server certificate Secret's certificate so that
//! HTTPS requests can trust exactly it, and each client certificate Secret's pair so that
//! they can present it, like upstream's `GetTLSSecret` + `MakeTLSRequest...`.
//!
//! Differences that no test observes: keys are ECDSA P-256 in PKCS#8 (upstream: RSA 2048 in
//! PKCS#1; rcgen on ring cannot make RSA keys), and Secrets carry `stringData` (what an API
//! server turns into `data`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde_json::{Value, json};

use crate::model::NsName;

const INFRA: &str = "gateway-conformance-infra";
const APP_BACKEND: &str = "gateway-conformance-app-backend";
const WEB_BACKEND: &str = "gateway-conformance-web-backend";

/// One object upstream's setup creates, in its order. Signed certificates use the CA of
/// the latest [`SetupObject::CaConfigMap`] before them, as upstream reuses its `ca`
/// variable.
enum SetupObject {
    /// `MustCreateSelfSignedCertSecret(namespace, name, hosts)`.
    SelfSigned(&'static str, &'static str, &'static [&'static str]),
    /// `MustCreateCACertConfigMap(namespace, name)`: `ca.crt` and `key.crt`.
    CaConfigMap(&'static str, &'static str),
    /// `MustCreateCASignedCertSecret(namespace, name, hosts, ca, caKey)`.
    CaSigned(&'static str, &'static str, &'static [&'static str]),
    /// `MustCreateCASignedClientCertSecret(namespace, name, ca, caKey)`.
    ClientCert(&'static str, &'static str),
}

/// `conformance/utils/suite/suite.go` of the pinned release, in order.
const SETUP: &[SetupObject] = &[
    SetupObject::SelfSigned(WEB_BACKEND, "certificate", &["*"]),
    SetupObject::SelfSigned(
        INFRA,
        "tls-validity-checks-certificate",
        &["*", "*.org", "*.wildcard.org"],
    ),
    SetupObject::CaConfigMap(WEB_BACKEND, "web-backend-cm"),
    // client certificate validation
    SetupObject::CaConfigMap(INFRA, "tls-validity-checks-ca-certificate"),
    SetupObject::ClientCert(INFRA, "tls-validity-checks-client-certificate"),
    SetupObject::CaConfigMap(INFRA, "tls-validity-checks-per-port-ca-certificate"),
    SetupObject::ClientCert(INFRA, "tls-validity-checks-per-port-client-certificate"),
    SetupObject::SelfSigned(
        INFRA,
        "tls-passthrough-checks-certificate",
        &["abc.example.com"],
    ),
    SetupObject::SelfSigned(
        APP_BACKEND,
        "tls-passthrough-checks-certificate",
        &["abc.example.com"],
    ),
    SetupObject::CaConfigMap(INFRA, "tls-checks-ca-certificate"),
    SetupObject::CaSigned(
        INFRA,
        "tls-checks-certificate",
        &[
            "abc.example.com",
            "spiffe://abc.example.com/test-identity",
            "other.example.com",
        ],
    ),
    SetupObject::ClientCert(INFRA, "tls-checks-client-certificate"),
    // TLSRoute mode Terminate
    SetupObject::CaSigned(
        INFRA,
        "tls-terminate-checks-certificate",
        &["tls.example.com"],
    ),
    // BackendTLSPolicy: a CA that signed nothing, to make validation fail
    SetupObject::CaConfigMap(INFRA, "mismatch-ca-certificate"),
];

/// Upstream's `validFor`.
const VALID_FOR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A server certificate of the setup, as a client trusts it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedCertificate {
    /// `tls.crt` of the Secret.
    pub pem: String,
    pub der: rustls::pki_types::CertificateDer<'static>,
    pub names: SubjectNames,
}

/// What a certificate's subjectAltName says it is valid for, as clients check it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectNames {
    /// DNS names, wildcards included.
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// A client certificate of the setup, as a client presents it: the Secret's `tls.crt` and
/// `tls.key` (what upstream's `GetTLSSecret` hands to `tls.X509KeyPair`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The generated objects: what goes into the base config, the certificates of the server
/// certificate Secrets and the pairs of the client certificate Secrets, by Secret.
pub struct Setup {
    pub objects: Vec<Value>,
    pub certificates: BTreeMap<NsName, TrustedCertificate>,
    pub client_certificates: BTreeMap<NsName, ClientCertificate>,
}

/// Generates every object of [`SETUP`].
pub fn generate() -> Result<Setup, rcgen::Error> {
    let mut setup = Setup {
        objects: Vec::new(),
        certificates: BTreeMap::new(),
        client_certificates: BTreeMap::new(),
    };
    let mut ca: Option<(Certificate, KeyPair)> = None;
    for object in SETUP {
        match object {
            SetupObject::CaConfigMap(ns, name) => {
                let key = KeyPair::generate()?;
                let cert = ca_params().self_signed(&key)?;
                setup.objects.push(json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": ns},
                    "data": {"ca.crt": cert.pem(), "key.crt": key.serialize_pem()},
                }));
                ca = Some((cert, key));
            }
            SetupObject::SelfSigned(ns, name, hosts) => {
                let key = KeyPair::generate()?;
                let (params, names) = leaf_params(hosts, ExtendedKeyUsagePurpose::ServerAuth)?;
                let cert = params.self_signed(&key)?;
                setup.add_server_secret(ns, name, &cert, &key, names);
            }
            SetupObject::CaSigned(ns, name, hosts) => {
                let (ca_cert, ca_key) = ca.as_ref().expect("a CA comes first in SETUP");
                let key = KeyPair::generate()?;
                let (params, names) = leaf_params(hosts, ExtendedKeyUsagePurpose::ServerAuth)?;
                let cert = params.signed_by(&key, ca_cert, ca_key)?;
                setup.add_server_secret(ns, name, &cert, &key, names);
            }
            SetupObject::ClientCert(ns, name) => {
                let (ca_cert, ca_key) = ca.as_ref().expect("a CA comes first in SETUP");
                let key = KeyPair::generate()?;
                let (params, _) = leaf_params(&[], ExtendedKeyUsagePurpose::ClientAuth)?;
                let cert = params.signed_by(&key, ca_cert, ca_key)?;
                setup.objects.push(tls_secret(ns, name, &cert, &key));
                let client = ClientCertificate {
                    cert_pem: cert.pem(),
                    key_pem: key.serialize_pem(),
                };
                setup.client_certificates.insert(ns_name(ns, name), client);
            }
        }
    }
    Ok(setup)
}

impl Setup {
    fn add_server_secret(
        &mut self,
        ns: &str,
        name: &str,
        cert: &Certificate,
        key: &KeyPair,
        names: SubjectNames,
    ) {
        self.objects.push(tls_secret(ns, name, cert, key));
        let nn = ns_name(ns, name);
        let trusted = TrustedCertificate {
            pem: cert.pem(),
            der: cert.der().clone(),
            names,
        };
        self.certificates.insert(nn, trusted);
    }
}

fn ns_name(ns: &str, name: &str) -> NsName {
    NsName {
        namespace: ns.to_string(),
        name: name.to_string(),
    }
}

fn tls_secret(ns: &str, name: &str, cert: &Certificate, key: &KeyPair) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()},
    })
}

/// `generateCACert`.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from(2024u64));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Kubernetes Gateway API");
    params.distinguished_name.push(DnType::CountryName, "US");
    params
        .distinguished_name
        .push(DnType::CommonName, "gatewayapi");
    set_validity(&mut params);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    params
}

/// `generateRSACert`'s template, with each host sorted into the SAN kind upstream gives it:
/// an IP address, a DNS name (a leading `*.` allowed), or else a URI (`*` is one). Also
/// returns the DNS names and IP addresses, for the client's hostname check.
fn leaf_params(
    hosts: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(CertificateParams, SubjectNames), rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "default");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Acme Co");
    set_validity(&mut params);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![usage];
    let mut names = SubjectNames::default();
    for host in hosts {
        let san = if let Ok(ip) = host.parse::<IpAddr>() {
            names.ips.push(ip);
            SanType::IpAddress(ip)
        } else if is_dns_host(host) {
            names.dns.push(host.to_string());
            SanType::DnsName((*host).try_into()?)
        } else {
            SanType::URI((*host).try_into()?)
        };
        params.subject_alt_names.push(san);
    }
    Ok((params, names))
}

/// From now for [`VALID_FOR`], to the day (rcgen takes dates).
fn set_validity(params: &mut CertificateParams) {
    let (y, m, d) = civil_date(SystemTime::now());
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_date(SystemTime::now() + VALID_FOR);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

/// The UTC calendar date of `t` (Howard Hinnant's `civil_from_days`).
fn civil_date(t: SystemTime) -> (i32, u8, u8) {
    let days = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

/// Upstream's `validateHost`: a DNS-1123 subdomain of DNS-1123 labels, after an optional
/// leading `*.`.
fn is_dns_host(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (1..=253).contains(&name.len()) && name.split('.').all(label_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_become_the_san_kinds_upstream_gives_them() {
        assert!(is_dns_host("*.wildcard.org"));
        assert!(is_dns_host("abc.example.com"));
        assert!(!is_dns_host("*"));
        assert!(!is_dns_host("spiffe://abc.example.com/test-identity"));
        assert!(!is_dns_host("Upper.example.com"));
        let (_, names) = leaf_params(
            &["*", "*.org", "10.0.0.1", "spiffe://a.example/x"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
        .unwrap();
        assert_eq!(names.dns, ["*.org"]);
        assert_eq!(names.ips, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
    }

    /// The DER of `tls.crt` of Secret `name` in the infra namespace.
    fn secret_der(setup: &Setup, name: &str) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        let secret = setup
            .objects
            .iter()
            .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name)
            .unwrap();
        let pem = secret["stringData"]["tls.crt"].as_str().unwrap();
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// A subjectAltName entry as DER: context tag `tag`, length, the name.
    fn san_entry(tag: u8, name: &str) -> Vec<u8> {
        let mut entry = vec![0x80 | tag, name.len() as u8];
        entry.extend_from_slice(name.as_bytes());
        entry
    }

    #[test]
    fn backend_tls_certificate_has_the_sans_the_policies_check() {
        let setup = generate().unwrap();
        let der = secret_der(&setup, "tls-checks-certificate");
        let has = |entry: Vec<u8>| der.windows(entry.len()).any(|w| w == entry.as_slice());
        // dNSName [2] and uniformResourceIdentifier [6] (backendtlspolicy-san.yaml).
        assert!(has(san_entry(2, "abc.example.com")));
        assert!(has(san_entry(2, "other.example.com")));
        assert!(has(san_entry(6, "spiffe://abc.example.com/test-identity")));
        assert!(!has(san_entry(2, "spiffe://abc.example.com/test-identity")));

        // Signed by the CA of tls-checks-ca-certificate, for the policies' hostnames only.
        let ca = setup
            .objects
            .iter()
            .find(|o| o["metadata"]["name"] == "tls-checks-ca-certificate")
            .unwrap();
        let verify = |ca_pem: &str, name: &str| {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let ca = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes());
            roots.add(ca.unwrap()).unwrap();
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let verifier =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
            verifier.verify_server_cert(&der, &[], &name, &[], rustls::pki_types::UnixTime::now())
        };
        use rustls::client::danger::ServerCertVerifier as _;
        let ca_pem = ca["data"]["ca.crt"].as_str().unwrap();
        verify(ca_pem, "abc.example.com").unwrap();
        verify(ca_pem, "other.example.com").unwrap();
        assert!(verify(ca_pem, "mismatch.example.com").is_err());
        let mismatch = setup
            .objects
            .iter()
            .find(|o| o["metadata"]["name"] == "mismatch-ca-certificate")
            .unwrap();
        assert!(
            verify(
                mismatch["data"]["ca.crt"].as_str().unwrap(),
                "abc.example.com"
            )
            .is_err()
        );
    }

    #[test]
    fn certificates_are_stored_as_go_and_the_echo_write_them() {
        // The echo reports a client's certificates as Go's `pem.Encode` writes them, and
        // upstream compares them with the client certificate Secret's `tls.crt` verbatim.
        let setup = generate().unwrap();
        for (nn, pair) in &setup.client_certificates {
            let der = secret_der(&setup, &nn.name);
            assert_eq!(
                nantian_e2e::echo::tls::pem_certificate(&der),
                pair.cert_pem,
                "{nn}"
            );
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(UNIX_EPOCH), (1970, 1, 1));
        let leap_day = UNIX_EPOCH + Duration::from_secs(1_709_164_800); // 2024-02-29
        assert_eq!(civil_date(leap_day), (2024, 2, 29));
        let new_year = UNIX_EPOCH + Duration::from_secs(1_767_225_600 - 1); // 2025-12-31T23:59:59
        assert_eq!(civil_date(new_year), (2025, 12, 31));
    }

    #[test]
    fn setup_makes_upstreams_secrets_and_config_maps() {
        let setup = generate().unwrap();
        let names: Vec<String> = setup
            .objects
            .iter()
            .map(|o| {
                format!(
                    "{} {}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(names.len(), SETUP.len());
        assert!(names.contains(&format!("Secret {WEB_BACKEND}/certificate")));
        assert!(names.contains(&format!("ConfigMap {INFRA}/mismatch-ca-certificate")));
        let secret = &setup.objects[1];
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let validity: NsName = format!("{INFRA}/tls-validity-checks-certificate")
            .parse()
            .unwrap();
        let trusted = &setup.certificates[&validity];
        assert_eq!(secret["stringData"]["tls.crt"], trusted.pem.as_str());
        assert!(
            secret["stringData"]["tls.key"]
                .as_str()
                .unwrap()
                .contains("PRIVATE KEY")
        );
        assert_eq!(trusted.names.dns, ["*.org", "*.wildcard.org"]);
        // Server certificates only: client certificates are not trusted by requests.
        assert_eq!(setup.certificates.len(), 6);
        let client: NsName = format!("{INFRA}/tls-validity-checks-client-certificate")
            .parse()
            .unwrap();
        let secret = setup
            .objects
            .iter()
            .find(|o| o["metadata"]["name"] == client.name.as_str())
            .unwrap();
        assert_eq!(
            secret["stringData"]["tls.crt"],
            setup.client_certificates[&client].cert_pem.as_str()
        );
        assert_eq!(setup.client_certificates.len(), 3);
    }
}
