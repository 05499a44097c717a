//! HTTPS with rustls on the aws-lc provider, HTTP/1.1 and HTTP/2 (actix adds the `h2` and `http/1.1`
//! ALPN protocols), and certificate reload without a restart: cert-manager and Kubernetes Secret
//! updates replace the files, a background task notices, and new handshakes get the new certificate.
//!
//! What must stay true: a replacement that cannot be loaded (unreadable, not PEM, key does not match the
//! certificate) keeps the previous certificate serving and logs a warning once per distinct content;
//! startup fails with a message naming the file when the first load fails; no log line or error message
//! carries key material (key parse errors are reported without the parser's detail).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{SHA256, digest};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

use crate::config::TlsConfig;
use crate::metrics::Metrics;

/// Why a certificate/key pair could not be loaded. Messages name the file, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found (expected `-----BEGIN CERTIFICATE-----` blocks, leaf first)")]
    NoCertificate { path: PathBuf },
    #[error("{path}: invalid certificate PEM: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: no usable private key (expected one PEM PKCS#8, PKCS#1 or SEC1 key)")]
    BadKey { path: PathBuf },
    #[error("{key}: the private key does not match the certificate in {cert}, or its type is not supported")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// The files' contents as last seen (a digest, so no second copy of the key stays in memory).
type ContentDigest = [u8; 32];

/// The certificate served to every handshake, replaced when the files change.
pub struct ReloadingCertificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// Digest of the last content tried, loaded or not (a bad file is warned about once, not every tick).
    seen: Mutex<ContentDigest>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertificate").field("cert_file", &self.cert_file).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls provider used for serving: aws-lc-rs, the one already used for AEAD, JWTs and KMS clients.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl ReloadingCertificate {
    /// Loads the pair now; fails if it cannot be loaded.
    pub fn load(config: &TlsConfig, metrics: Arc<Metrics>) -> Result<Arc<ReloadingCertificate>, TlsError> {
        let provider = provider();
        let (digest, key) = read_pair(&config.cert_file, &config.key_file, &provider)?;
        publish_expiry(&metrics, &config.cert_file, &key);
        Ok(Arc::new(ReloadingCertificate {
            cert_file: config.cert_file.clone(),
            key_file: config.key_file.clone(),
            provider,
            current: ArcSwap::from_pointee(key),
            seen: Mutex::new(digest),
            metrics,
        }))
    }

    /// The certificate chain being served (leaf first).
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.load().cert.clone()
    }

    /// Re-reads the files; swaps in the new pair if they changed and load. Returns whether it swapped.
    pub fn reload(&self) -> bool {
        let Ok(digest) = content_digest(&self.cert_file, &self.key_file) else {
            // Unreadable (e.g. mid-update by the kubelet): try again next tick, keep serving.
            return false;
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == digest {
                return false;
            }
            *seen = digest;
        }
        match read_pair(&self.cert_file, &self.key_file, &self.provider) {
            Ok((_, key)) => {
                let fingerprint = leaf_fingerprint(&key);
                publish_expiry(&self.metrics, &self.cert_file, &key);
                self.current.store(Arc::new(key));
                self.metrics.record_tls_reload(true);
                tracing::info!(cert_file = %self.cert_file.display(), fingerprint, "Reloaded the TLS certificate.");
                true
            }
            Err(e) => {
                self.metrics.record_tls_reload(false);
                tracing::warn!(error = %e, "New TLS certificate files cannot be loaded; still serving the previous certificate.");
                false
            }
        }
    }

    /// Checks the files every `interval` until the server (the last holder of this resolver) is gone.
    pub fn watch(self: &Arc<Self>, interval: Duration) {
        let weak: Weak<ReloadingCertificate> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(resolver) = weak.upgrade() else { break };
                // File reads are small; a blocking thread keeps the runtime free.
                let _ = tokio::task::spawn_blocking(move || resolver.reload()).await;
            }
        });
    }
}

/// The rustls server configuration: TLS 1.2 and 1.3, no client certificates, the reloading resolver.
pub fn server_config(resolver: Arc<ReloadingCertificate>) -> anyhow::Result<rustls::ServerConfig> {
    let config = rustls::ServerConfig::builder_with_provider(resolver.provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(config)
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path).map(Zeroizing::new).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn content_digest(cert_file: &Path, key_file: &Path) -> Result<ContentDigest, TlsError> {
    let (cert, key) = (read(cert_file)?, read(key_file)?);
    Ok(pair_digest(&cert, &key))
}

fn pair_digest(cert: &[u8], key: &[u8]) -> ContentDigest {
    let mut input = Zeroizing::new(Vec::with_capacity(cert.len() + key.len() + 16));
    for part in [cert, key] {
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &input).as_ref());
    out
}

fn read_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<(ContentDigest, CertifiedKey), TlsError> {
    let cert_pem = read(cert_file)?;
    let key_pem = read(key_file)?;
    let digest = pair_digest(&cert_pem, &key_pem);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate { path: cert_file.to_owned(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_file.to_owned() });
    }
    // The parser's error text may quote bytes of the file: say only which file is wrong.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::BadKey { path: key_file.to_owned() })?;
    let certified = CertifiedKey::from_der(chain, key, provider)
        .map_err(|_| TlsError::Mismatch { cert: cert_file.to_owned(), key: key_file.to_owned() })?;
    Ok((digest, certified))
}

/// Sets the expiry gauge from the leaf about to be served (hidden, with a warning, if its notAfter
/// cannot be read: rustls serves certificates it does not parse, so this is not a load failure).
fn publish_expiry(metrics: &Metrics, cert_file: &Path, key: &CertifiedKey) {
    let not_after = key.cert.first().and_then(|leaf| not_after(leaf.as_ref()));
    if not_after.is_none() {
        tracing::warn!(cert_file = %cert_file.display(), "Cannot read the certificate's notAfter; no expiry metric.");
    }
    metrics.set_tls_certificate_expiry(not_after);
}

/// The notAfter of a DER certificate as Unix seconds: `Certificate ::= SEQUENCE { tbsCertificate
/// SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE { notBefore,
/// notAfter }, … }, … }` (RFC 5280 §4.1).
fn not_after(der: &[u8]) -> Option<i64> {
    use simple_asn1::ASN1Block::{Explicit, GeneralizedTime, Sequence, UTCTime};
    let blocks = simple_asn1::from_der(der).ok()?;
    let Some(Sequence(_, certificate)) = blocks.first() else { return None };
    let Some(Sequence(_, tbs)) = certificate.first() else { return None };
    let fields = match tbs.first() {
        Some(Explicit(..)) => &tbs[1..],
        _ => &tbs[..],
    };
    let Some(Sequence(_, validity)) = fields.get(3) else { return None };
    match validity.get(1)? {
        UTCTime(_, time) | GeneralizedTime(_, time) => Some(time.assume_utc().unix_timestamp()),
        _ => None,
    }
}

/// First 8 bytes of the leaf certificate's SHA-256, hex: enough to tell certificates apart in logs.
fn leaf_fingerprint(key: &CertifiedKey) -> String {
    key.cert.first().map(|leaf| hex::encode(&digest(&SHA256, leaf.as_ref()).as_ref()[..8])).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_invalid_files_say_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls.crt");
        let key = dir.path().join("tls.key");
        let config =
            TlsConfig { cert_file: cert.clone(), key_file: key.clone(), reload_interval: Duration::from_secs(1) };
        let missing = ReloadingCertificate::load(&config, Arc::default()).unwrap_err().to_string();
        assert!(missing.contains("cannot read") && missing.contains("tls.crt"), "{missing}");

        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n")
            .unwrap();
        let none = ReloadingCertificate::load(&config, Arc::default()).unwrap_err().to_string();
        assert!(none.contains("no PEM certificate") && none.contains("tls.crt"), "{none}");
    }

    fn cert_until(year: i32, month: u8, day: u8) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    #[test]
    fn not_after_reads_utc_and_generalized_times() {
        // Until 2049 notAfter is a UTCTime (two-digit year), from 2050 a GeneralizedTime (RFC 5280 §4.1.2.5).
        assert_eq!(not_after(&cert_until(2031, 5, 17)), Some(1_936_742_400));
        assert_eq!(not_after(&cert_until(2051, 1, 2)), Some(2_556_230_400));
        assert_eq!(not_after(b"not DER"), None);
    }
}
