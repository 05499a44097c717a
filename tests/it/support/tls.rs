//! Test certificate authorities made in the test (rcgen on aws-lc): a CA, server certificates for
//! 127.0.0.1 signed by it, and HTTPS clients that trust only one CA and report the peer certificate.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A throwaway CA.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, as PEM, plus the certificate's DER (what a client sees).
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        TestCa { issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA") }
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `127.0.0.1` and `localhost` with common name `cn`, signed by this CA.
    pub fn server_cert(&self, cn: &str) -> ServerCert {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        ServerCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
    }

    /// An HTTPS client that trusts only this CA, opens a new connection (and handshake) per request,
    /// and records the peer certificate.
    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.pem().as_bytes()).expect("CA PEM");
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .tls_info(true)
            .pool_max_idle_per_host(0)
            .build()
            .expect("HTTPS client")
    }
}

impl ServerCert {
    /// Writes the certificate and key files (each replaced by a rename, as a Secret volume update does).
    pub fn write(&self, cert_file: &Path, key_file: &Path) {
        write_atomically(cert_file, self.cert_pem.as_bytes());
        write_atomically(key_file, self.key_pem.as_bytes());
    }
}

/// Replaces `path` with `contents` by writing a sibling file and renaming it over.
pub fn write_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over");
}

/// The DER of the certificate the server presented on this response's connection.
pub fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("tls_info(true) on the client");
    info.peer_certificate().expect("the server presented a certificate").to_vec()
}
