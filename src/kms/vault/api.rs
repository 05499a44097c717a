//! Vault Transit on the wire: the four requests the backend makes, two of them built here because
//! vaultrs lacks them (`datakey/plaintext` with `associated_data`, a key read that accepts key types
//! vaultrs does not know), what a Vault ciphertext looks like, and what Vault's errors mean.
//!
//! What must stay true:
//! - Only `vault:v<n>:<base64>` is sent to Vault as a ciphertext or accepted back as a wrapped key
//!   (`ciphertext`); anything else is `InvalidCiphertext`.
//! - Our response types that hold key material have no `Debug` (vaultrs' `DecryptDataResponse` has one:
//!   never format it); `describe` gives the log the status and Vault's error strings, never a body.
//! - `map_error` is where a failed Transit call becomes the `KmsError` callers branch on (403 denied,
//!   400 "not found" / "disallowed by policy" / anything else, the rest unavailable); its test pins it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use serde::Deserialize;
use vaultrs::api::transit::requests::{DecryptDataRequest, EncryptDataRequest};
use vaultrs::api::transit::responses::{DecryptDataResponse, EncryptDataResponse};
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use crate::kms::{BoxError, DataKey, KekUri, KmsError, WrappedKey};

/// Retry-After suggested when Vault cannot answer (down, sealed, overloaded).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// `POST <mount>/encrypt/<key>`. Creates the key when it is missing and the token may: read it first.
pub(super) async fn encrypt(
    client: Arc<VaultClient>,
    mount: &str,
    key: &str,
    plaintext: &str,
    associated_data: Option<String>,
    context: Option<String>,
) -> Result<EncryptDataResponse, ClientError> {
    let endpoint = EncryptDataRequest {
        mount: mount.to_owned(),
        name: key.to_owned(),
        plaintext: plaintext.to_string(),
        associated_data,
        context,
        ..EncryptDataRequest::default()
    };
    vaultrs::api::exec_with_result(&*client, endpoint).await
}

/// `POST <mount>/decrypt/<key>`.
pub(super) async fn decrypt(
    client: Arc<VaultClient>,
    mount: &str,
    key: &str,
    ciphertext: &str,
    associated_data: Option<String>,
    context: Option<String>,
) -> Result<DecryptDataResponse, ClientError> {
    let endpoint = DecryptDataRequest {
        mount: mount.to_owned(),
        name: key.to_owned(),
        ciphertext: ciphertext.to_owned(),
        associated_data,
        context,
        nonce: None,
    };
    vaultrs::api::exec_with_result(&*client, endpoint).await
}

/// `POST <mount>/datakey/plaintext/<key>` with `body` (`bits`, `associated_data`, `context`).
pub(super) async fn datakey_plaintext(
    client: Arc<VaultClient>,
    mount: &str,
    key: &str,
    body: serde_json::Value,
) -> Result<DataKeyResponse, ClientError> {
    let endpoint = DataKeyPlaintext { mount: mount.to_owned(), name: key.to_owned(), body };
    vaultrs::api::exec_with_result(&*client, endpoint).await
}

/// `GET <mount>/keys/<key>`: the key's metadata. Never creates anything.
pub(super) async fn read_key(client: Arc<VaultClient>, mount: &str, key: &str) -> Result<KeyInfo, ClientError> {
    let endpoint = ReadKey { mount: mount.to_owned(), name: key.to_owned() };
    vaultrs::api::exec_with_result(&*client, endpoint).await
}

/// `POST <mount>/datakey/plaintext/<key>` with `associated_data` (vaultrs' request lacks that field).
struct DataKeyPlaintext {
    mount: String,
    name: String,
    body: serde_json::Value,
}

/// Its response. No `Debug`: it holds a data key.
#[derive(Deserialize)]
pub(super) struct DataKeyResponse {
    pub(super) plaintext: Option<String>,
    pub(super) ciphertext: String,
}

impl Endpoint for DataKeyPlaintext {
    type Response = DataKeyResponse;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        format!("{}/datakey/plaintext/{}", self.mount, self.name)
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::POST
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        serde_json::to_vec(&self.body)
            .map(Some)
            .map_err(|e| rustify::errors::ClientError::DataParseError { source: e.into() })
    }
}

/// `GET <mount>/keys/<key>`, reading only what we check (vaultrs' response type rejects key types it
/// does not know).
struct ReadKey {
    mount: String,
    name: String,
}

#[derive(Deserialize)]
pub(super) struct KeyInfo {
    #[serde(rename = "type")]
    pub(super) key_type: String,
    #[serde(default)]
    pub(super) derived: bool,
    #[serde(default)]
    pub(super) supports_encryption: bool,
}

impl Endpoint for ReadKey {
    type Response = KeyInfo;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        format!("{}/keys/{}", self.mount, self.name)
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::GET
    }
}

/// A wrapped key as Vault writes it: `vault:v<version>:<base64>`.
pub(super) fn ciphertext(wrapped: &WrappedKey) -> Result<&str, KmsError> {
    let text = std::str::from_utf8(&wrapped.0).map_err(|_| KmsError::InvalidCiphertext)?;
    let rest = text.strip_prefix("vault:v").ok_or(KmsError::InvalidCiphertext)?;
    let (version, body) = rest.split_once(':').ok_or(KmsError::InvalidCiphertext)?;
    let version_ok = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
    let body_ok = !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    (version_ok && body_ok).then_some(text).ok_or(KmsError::InvalidCiphertext)
}

/// 32 key bytes from Vault's base64 plaintext.
pub(super) fn data_key(kek: &KekUri, plaintext: &str) -> Result<DataKey, KmsError> {
    let bytes = Zeroizing::new(STANDARD.decode(plaintext).unwrap_or_default());
    DataKey::from_slice(&bytes).ok_or_else(|| {
        tracing::error!(%kek, "Vault returned a plaintext that is not a 32-byte key.");
        KmsError::InvalidCiphertext
    })
}

pub(super) fn status(e: &ClientError) -> Option<u16> {
    match e {
        ClientError::APIError { code, .. } => Some(*code),
        ClientError::RestClientError { source: rustify::errors::ClientError::ServerResponseError { code, .. } } => {
            Some(*code)
        }
        _ => None,
    }
}

/// What went wrong, for the log: the status and Vault's error strings, or the transport failure.
/// Never a response body.
pub(super) fn describe(e: &ClientError) -> String {
    match e {
        ClientError::APIError { code, errors } => format!("Vault answered {code}: {}", errors.join("; ")),
        ClientError::RestClientError { source } => match source {
            rustify::errors::ClientError::ServerResponseError { code, .. } => format!("Vault answered {code}"),
            rustify::errors::ClientError::RequestError { source, .. } => format!("request failed: {source:#}"),
            rustify::errors::ClientError::ResponseParseError { .. } => "unexpected response body".into(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

pub(super) fn unavailable(e: ClientError) -> KmsError {
    KmsError::Unavailable { retry_after: RETRY_AFTER, source: BoxError::from(describe(&e)) }
}

/// Vault's answer as a `KmsError` (Vault reports most refusals as 400 with a message).
pub(super) fn map_error(kek: &KekUri, e: ClientError) -> KmsError {
    let errors = match &e {
        ClientError::APIError { errors, .. } => errors.join("; "),
        _ => String::new(),
    };
    let kek_name = kek.to_string();
    match status(&e) {
        Some(403) => {
            tracing::warn!(%kek, error = %describe(&e), "Vault denied access.");
            KmsError::AccessDenied { kek: kek_name }
        }
        Some(404) => KmsError::KeyNotFound { kek: kek_name },
        Some(400) if errors.contains("not found") => KmsError::KeyNotFound { kek: kek_name },
        Some(400) if errors.contains("disallowed by policy") => {
            tracing::warn!(
                %kek,
                "Vault refused to decrypt: the key version that wrapped this data key is below the key's \
                 min_decryption_version."
            );
            KmsError::KeyDisabled { kek: kek_name }
        }
        Some(400) => {
            tracing::info!(%kek, error = %describe(&e), "Vault rejected the wrapped key.");
            KmsError::InvalidCiphertext
        }
        _ => {
            tracing::warn!(%kek, error = %describe(&e), "Vault call failed.");
            unavailable(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vault_ciphertexts_reach_vault() {
        for good in ["vault:v1:AAAA", "vault:v12:ab+/cd=="] {
            assert!(ciphertext(&WrappedKey(good.as_bytes().to_vec())).is_ok(), "{good}");
        }
        for bad in ["", "vault:v1:", "vault:vx:AAAA", "vault:AAAA", "x:v1:AAAA", "vault:v1:AA\"}", "vault:v1:A A"] {
            assert!(ciphertext(&WrappedKey(bad.as_bytes().to_vec())).is_err(), "{bad:?}");
        }
        assert!(ciphertext(&WrappedKey(vec![0xff, 0xfe])).is_err());
    }

    #[test]
    fn vault_refusals_map_to_what_callers_branch_on() {
        let kek = KekUri::parse("vault-transit://transit/k").unwrap();
        let api = |code, msg: &str| ClientError::APIError { code, errors: vec![msg.to_owned()] };
        assert!(matches!(map_error(&kek, api(403, "permission denied")), KmsError::AccessDenied { .. }));
        assert!(matches!(map_error(&kek, api(400, "encryption key not found")), KmsError::KeyNotFound { .. }));
        assert!(matches!(
            map_error(&kek, api(400, "ciphertext or signature version is disallowed by policy (too old)")),
            KmsError::KeyDisabled { .. }
        ));
        assert!(matches!(
            map_error(&kek, api(400, "cipher: message authentication failed")),
            KmsError::InvalidCiphertext
        ));
        for code in [429, 500, 502, 503] {
            assert!(map_error(&kek, api(code, "x")).is_unavailable(), "{code}");
        }
        assert!(map_error(&kek, ClientError::ResponseEmptyError).is_unavailable());
    }
}
