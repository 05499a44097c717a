//! Test certificate authorities made in the test (rcgen on aws-lc): a CA, server certificates for
//! 127.0.0.1 signed by it, HTTPS clients that trust only one CA and report the peer certificate, and
//! the test app served over HTTPS with certificate files it re-reads every 50 ms.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codec_server::config::TlsConfig;
use codec_server::protocol::Payload;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

use super::prometheus::{self, Sample};
use crate::helpers::{TestApp, read_payloads, to_json};

/// Bound on waiting for the reloader to notice changed files (it normally takes ~50-100 ms).
const RELOAD_DEADLINE: Duration = Duration::from_secs(20);

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
        self.server_cert_with(cn, |_| {})
    }

    /// The same, valid until midnight UTC of `(year, month, day)`.
    pub fn server_cert_until(&self, cn: &str, (year, month, day): (i32, u8, u8)) -> ServerCert {
        self.server_cert_with(cn, |params| params.not_after = rcgen::date_time_ymd(year, month, day))
    }

    fn server_cert_with(&self, cn: &str, adjust: impl FnOnce(&mut CertificateParams)) -> ServerCert {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        adjust(&mut params);
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

/// A server whose certificate files live in its own directory and are re-read every 50 ms.
pub struct HttpsApp {
    _app: TestApp,
    base: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// The dev server over HTTPS with `initial` as its certificate.
pub async fn spawn_https(initial: &ServerCert) -> HttpsApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    initial.write(&cert_file, &key_file);
    let tls = TlsConfig {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        reload_interval: Duration::from_millis(50),
    };
    let app = TestApp::spawn_with(move |c| c.server.tls = Some(tls)).await;
    let base = app.address.replacen("http://", "https://", 1);
    HttpsApp { _app: app, base, cert_file, key_file, _dir: dir }
}

impl HttpsApp {
    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Decodes `sealed` over HTTPS with `client` (an `Err` when the handshake fails).
    pub async fn decode(&self, client: &reqwest::Client, sealed: &[Payload]) -> reqwest::Result<reqwest::Response> {
        client
            .post(self.url("/decode"))
            .header("content-type", "application/json")
            .header("x-namespace", "default")
            .body(to_json(sealed).to_string())
            .send()
            .await
    }

    /// Encodes over HTTPS and asserts success.
    pub async fn encode(&self, client: &reqwest::Client, payloads: Vec<Payload>) -> Vec<Payload> {
        let response = client
            .post(self.url("/encode"))
            .header("content-type", "application/json")
            .header("x-namespace", "default")
            .body(to_json(&payloads).to_string())
            .send()
            .await
            .expect("HTTPS encode");
        assert_eq!(response.status(), 200);
        read_payloads(response).await
    }

    /// Scrapes `/metrics` over HTTPS.
    pub async fn metrics(&self, client: &reqwest::Client) -> Vec<Sample> {
        let response = client.get(self.url("/metrics")).send().await.expect("scrape over HTTPS");
        prometheus::parse(&response.text().await.expect("body"))
    }

    /// Waits until the reloader has seen changed files `count` more times with `result` than `before`.
    pub async fn wait_for_reloads(&self, client: &reqwest::Client, result: &str, before: f64) {
        let until = Instant::now() + RELOAD_DEADLINE;
        while tls_reloads(&self.metrics(client).await, result) <= before {
            assert!(
                Instant::now() < until,
                "the certificate files were not re-read ({result}) within {RELOAD_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `codec_tls_certificate_expiry_timestamp_seconds`, if exported.
pub fn tls_expiry(samples: &[Sample]) -> Option<f64> {
    samples.iter().find(|s| s.name == "codec_tls_certificate_expiry_timestamp_seconds").map(|s| s.value)
}

/// `codec_tls_certificate_reloads_total{result}`.
pub fn tls_reloads(samples: &[Sample], result: &str) -> f64 {
    prometheus::value(samples, "codec_tls_certificate_reloads_total", &[("result", result)])
}
