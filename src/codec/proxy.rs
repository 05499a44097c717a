//! Temporal Proxy's sealed payloads, read only: teams that ran the proxy have histories full of them.
//!
//! The proxy writes `encoding = binary/encrypted`, `encryption-key-id = <its KEK URI>` and
//! `encryption-dek = base64(KMS ciphertext of the data key)`; `data = nonce(12) || AES-256-GCM(data key,
//! proto(Payload))` with no associated data, and the data key wrapped with no KMS context (its
//! `pkg/codec/encryptor.go` and `pkg/crypto/dek.go`). The samples' legacy format has the same encoding
//! but no `encryption-dek`, which is how the two are told apart.
//!
//! What must stay true: nothing in this format binds a namespace, so a payload opens only with a KEK
//! listed (as the proxy spells it) among the `decrypt_only` KEKs of the keyring of the namespace it is
//! decoded in; any other `encryption-key-id` is never sent to a KMS and the payload comes back unchanged.

use base64::Engine;

use super::aead::{self, IV_LEN, Iv};
use crate::kms::DataKey;
use crate::protocol::Payload;

/// Metadata holding the wrapped data key.
pub const DEK_METADATA: &str = "encryption-dek";
/// Decrypt-cache suite marker for proxy data keys (our envelopes use their suite id, 0x0001…).
pub const CACHE_SUITE: u16 = 0xfe01;

/// Why a proxy payload could not be opened (logged; clients see the payload index only).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyFormatError {
    #[error("encryption-dek is not base64")]
    WrappedKey,
    #[error("data is shorter than a nonce and a tag")]
    Truncated,
    #[error("authentication failed")]
    Open,
}

/// Whether the payload is in the proxy's format (both key-material entries present and non-empty).
pub fn is_proxy_payload(payload: &Payload) -> bool {
    let present = |k: &str| payload.metadata.get(k).is_some_and(|v| !v.is_empty());
    present(DEK_METADATA) && present(super::KEY_ID_METADATA)
}

/// The wrapped data key carried in the metadata.
pub fn wrapped_dek(payload: &Payload) -> Result<Vec<u8>, ProxyFormatError> {
    let text = payload.metadata.get(DEK_METADATA).ok_or(ProxyFormatError::WrappedKey)?;
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| ProxyFormatError::WrappedKey)
}

/// Opens `nonce || ciphertext || tag` with the data key; the plaintext is the protobuf of the original Payload.
pub fn open(dek: &DataKey, data: &[u8]) -> Result<Vec<u8>, ProxyFormatError> {
    if data.len() < IV_LEN + 16 {
        return Err(ProxyFormatError::Truncated);
    }
    let iv = Iv::from_slice(&data[..IV_LEN]).map_err(|_| ProxyFormatError::Truncated)?;
    aead::open(dek.expose(), &iv, &[], &data[IV_LEN..]).map_err(|_| ProxyFormatError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_what_an_independent_aes_gcm_sealed_and_refuses_tampering() {
        use aes_gcm::aead::{Aead, KeyInit};
        let key = [7u8; 32];
        let nonce = [3u8; 12];
        let inner = b"\x12\x05hello".to_vec();
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
        let sealed = cipher.encrypt(&aes_gcm::Nonce::from(nonce), inner.as_slice()).unwrap();
        let data = [nonce.to_vec(), sealed].concat();
        let dek = DataKey::from_bytes(key);
        assert_eq!(open(&dek, &data).unwrap(), inner);
        let mut bad = data.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(open(&dek, &bad), Err(ProxyFormatError::Open));
        assert_eq!(open(&dek, &data[..20]), Err(ProxyFormatError::Truncated));
    }

    #[test]
    fn only_payloads_with_both_key_entries_are_the_proxys() {
        let mut p = Payload::default();
        p.metadata.insert("encoding".into(), b"binary/encrypted".to_vec());
        p.metadata.insert("encryption-key-id".into(), b"test-key".to_vec());
        assert!(!is_proxy_payload(&p), "the samples' legacy format");
        p.metadata.insert(DEK_METADATA.into(), b"AAAA".to_vec());
        assert!(is_proxy_payload(&p));
        assert_eq!(wrapped_dek(&p).unwrap(), vec![0, 0, 0]);
        p.metadata.insert(DEK_METADATA.into(), b"%%".to_vec());
        assert_eq!(wrapped_dek(&p), Err(ProxyFormatError::WrappedKey));
    }
}
