//! The `gcp-kms://` backend: Google Cloud KMS through Google's official client (`google-cloud-kms-v1`,
//! REST over the same reqwest + rustls stack as the rest of the server).
//!
//! Cloud KMS has no GenerateDataKey: the data key is made locally and sealed with `Encrypt`, with the
//! canonical context JSON `{"codec":"tce-v1","namespace":…}` as additional authenticated data, so the
//! wrapped key only opens for the namespace it was made for.
//!
//! What must stay true: every request carries CRC32C checksums of what it sends, and every response is
//! checked before anything in it is used — `verified_plaintext_crc32c` and
//! `verified_additional_authenticated_data_crc32c` must be true, the ciphertext or plaintext must match
//! its checksum (otherwise the response is discarded and the call retried by `Resilient`, as Google
//! asks), and an Encrypt response must name the configured key or one of its versions (otherwise it is
//! rejected). The client's own retries are off, so DESIGN §5's bounds hold. Credentials are Application
//! Default Credentials (Workload Identity on GKE); `anonymous` exists only for the test fake.
//! Key bytes we own are zeroized; the copies inside the client's request and response buffers are not
//! ours to wipe.

use async_trait::async_trait;
use bytes::Bytes;
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_kms_v1::client::KeyManagementService;
use zeroize::Zeroizing;

use super::settings::GcpKmsConfig;
use super::{DataKey, KekUri, KmsBackend, KmsContext, KmsError, Provider, WrappedKey};

/// Checks a CryptoKey resource name: `projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`.
pub fn check_key_name(name: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = name.split('/').collect();
    let [projects, p, locations, l, key_rings, r, crypto_keys, k] = parts.as_slice() else {
        return Err("not a CryptoKey name (a key version or a key ring cannot wrap data keys)");
    };
    let labels = [*projects, *locations, *key_rings, *crypto_keys];
    if labels != ["projects", "locations", "keyRings", "cryptoKeys"] {
        return Err("not a CryptoKey name");
    }
    let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ![p, l, r, k].iter().all(|s| valid(s)) {
        return Err("a name segment is empty or has characters other than letters, digits, '-', '_', '.', ':'");
    }
    Ok(())
}

/// Whether `returned` is `key` itself or one of its versions (`<key>/cryptoKeyVersions/<n>`).
fn names_key(key: &str, returned: &str) -> bool {
    match returned.strip_prefix(key).and_then(|rest| rest.strip_prefix("/cryptoKeyVersions/")) {
        Some(version) => !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()),
        None => returned == key,
    }
}

fn crc32c(bytes: &[u8]) -> i64 {
    i64::from(::crc32c::crc32c(bytes))
}

/// A response that failed its integrity check: discarded, and worth a retry.
fn integrity_failure(kek: &KekUri, what: &'static str) -> KmsError {
    tracing::warn!(kek = %kek, check = what, "Cloud KMS response failed its integrity check; discarded.");
    KmsError::Unavailable { retry_after: std::time::Duration::from_secs(1), source: what.into() }
}

/// Maps a client error: refusals are final, the rest is `Unavailable`.
fn map_error(kek: &KekUri, op: &'static str, err: GaxError) -> KmsError {
    let kek_s = kek.to_string();
    let refused = match err.status().map(|s| s.code) {
        Some(Code::PermissionDenied | Code::Unauthenticated) => KmsError::AccessDenied { kek: kek_s },
        Some(Code::NotFound) => KmsError::KeyNotFound { kek: kek_s },
        Some(Code::FailedPrecondition) => KmsError::KeyDisabled { kek: kek_s },
        Some(Code::InvalidArgument) => KmsError::InvalidCiphertext,
        Some(_) => return unavailable(op, err),
        None if err.is_binding() || err.is_serialization() => KmsError::KeyNotFound { kek: kek_s },
        None => match err.http_status_code() {
            Some(401 | 403) => KmsError::AccessDenied { kek: kek_s },
            Some(404) => KmsError::KeyNotFound { kek: kek_s },
            _ => return unavailable(op, err),
        },
    };
    tracing::warn!(kek = %kek, op, error = %err, "Cloud KMS refused the request.");
    refused
}

fn unavailable(op: &'static str, err: GaxError) -> KmsError {
    KmsError::Unavailable {
        retry_after: std::time::Duration::from_secs(1),
        source: format!("Cloud KMS {op}: {err}").into(),
    }
}

/// Cloud KMS through one client (it pools connections itself).
pub struct GcpBackend {
    client: KeyManagementService,
    keys: Vec<String>,
}

impl GcpBackend {
    /// Builds the client. With ADC nothing is fetched until the first call.
    pub async fn new(config: &GcpKmsConfig, keks: &[KekUri]) -> anyhow::Result<GcpBackend> {
        for kek in keks {
            check_key_name(kek.key_part()).map_err(|reason| anyhow::anyhow!("{kek}: {reason}"))?;
        }
        let mut builder = KeyManagementService::builder().with_retry_policy(NeverRetry);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if config.anonymous {
            builder = builder.with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
        }
        let client = builder.build().await.map_err(|e| anyhow::anyhow!("cannot create the Cloud KMS client: {e}"))?;
        Ok(GcpBackend { client, keys: keks.iter().map(|k| k.key_part().to_owned()).collect() })
    }
}

#[async_trait]
impl KmsBackend for GcpBackend {
    fn provider(&self) -> Provider {
        Provider::GcpKms
    }

    async fn wrap(&self, kek: &KekUri, dek: &DataKey, ctx: &KmsContext) -> Result<WrappedKey, KmsError> {
        let key = kek.key_part();
        let aad = ctx.canonical_json().into_bytes();
        let response = self
            .client
            .encrypt()
            .set_name(key)
            .set_plaintext(Bytes::copy_from_slice(dek.expose()))
            .set_plaintext_crc32c(crc32c(dek.expose()))
            .set_additional_authenticated_data_crc32c(crc32c(&aad))
            .set_additional_authenticated_data(aad)
            .send()
            .await
            .map_err(|e| map_error(kek, "Encrypt", e))?;
        if !response.verified_plaintext_crc32c {
            return Err(integrity_failure(kek, "Encrypt: plaintext CRC32C not verified by the KMS"));
        }
        if !response.verified_additional_authenticated_data_crc32c {
            return Err(integrity_failure(kek, "Encrypt: AAD CRC32C not verified by the KMS"));
        }
        if response.ciphertext_crc32c != Some(crc32c(&response.ciphertext)) {
            return Err(integrity_failure(kek, "Encrypt: ciphertext CRC32C mismatch"));
        }
        if !names_key(key, &response.name) {
            tracing::error!(kek = %kek, returned = %response.name, "Cloud KMS encrypted with another key; response discarded.");
            return Err(KmsError::UntrustedResponse { kek: kek.to_string(), reason: "the response names another key" });
        }
        if response.ciphertext.is_empty() {
            return Err(KmsError::UntrustedResponse { kek: kek.to_string(), reason: "no ciphertext in the response" });
        }
        Ok(WrappedKey(response.ciphertext.to_vec()))
    }

    async fn unwrap(&self, kek: &KekUri, wrapped: &WrappedKey, ctx: &KmsContext) -> Result<DataKey, KmsError> {
        // Temporal Proxy's data keys carry no AAD (an empty AAD is none, for Cloud KMS).
        let aad = if ctx.is_bound() { ctx.canonical_json().into_bytes() } else { Vec::new() };
        let response = self
            .client
            .decrypt()
            .set_name(kek.key_part())
            .set_ciphertext(Bytes::copy_from_slice(&wrapped.0))
            .set_ciphertext_crc32c(crc32c(&wrapped.0))
            .set_additional_authenticated_data_crc32c(crc32c(&aad))
            .set_additional_authenticated_data(aad)
            .send()
            .await
            .map_err(|e| map_error(kek, "Decrypt", e))?;
        // `Bytes` cannot be zeroized in place; copy out once and zeroize the copy we own.
        let plaintext = Zeroizing::new(response.plaintext.to_vec());
        if response.plaintext_crc32c != Some(crc32c(&plaintext)) {
            return Err(integrity_failure(kek, "Decrypt: plaintext CRC32C mismatch"));
        }
        DataKey::from_slice(&plaintext)
            .ok_or(KmsError::UntrustedResponse { kek: kek.to_string(), reason: "the plaintext is not a 32-byte key" })
    }

    /// Every configured key can be read (`GetCryptoKey`) and has an enabled primary version.
    async fn health_check(&self) -> Result<(), KmsError> {
        for key in &self.keys {
            let kek =
                KekUri::parse(&format!("gcp-kms://{key}")).map_err(|_| KmsError::KeyNotFound { kek: key.clone() })?;
            let crypto_key = self
                .client
                .get_crypto_key()
                .set_name(key)
                .send()
                .await
                .map_err(|e| map_error(&kek, "GetCryptoKey", e))?;
            if crypto_key.primary.is_none() {
                return Err(KmsError::KeyDisabled { kek: kek.to_string() });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "projects/p/locations/europe-west1/keyRings/codec/cryptoKeys/payments";

    #[test]
    fn accepts_crypto_key_names_only() {
        assert!(check_key_name(KEY).is_ok());
        for bad in [
            "projects/p/locations/l/keyRings/r",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
            "projects//locations/l/keyRings/r/cryptoKeys/k",
            "project/p/locations/l/keyRings/r/cryptoKeys/k",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k?x",
        ] {
            assert!(check_key_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_response_must_name_the_configured_key_or_one_of_its_versions() {
        assert!(names_key(KEY, KEY));
        assert!(names_key(KEY, &format!("{KEY}/cryptoKeyVersions/7")));
        for other in [
            "projects/p/locations/europe-west1/keyRings/codec/cryptoKeys/payments2/cryptoKeyVersions/1",
            "projects/p/locations/europe-west1/keyRings/codec/cryptoKeys/other/cryptoKeyVersions/1",
            &format!("{KEY}/cryptoKeyVersions/"),
            &format!("{KEY}/cryptoKeyVersions/1/x"),
            "",
        ] {
            assert!(!names_key(KEY, other), "{other}");
        }
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // The check value of CRC-32C (iSCSI) for "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
