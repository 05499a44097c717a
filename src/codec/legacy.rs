//! Decrypt-only support for payloads written by Temporal's sample encryption codecs, so teams can
//! migrate to this server without rewriting history.
//!
//! The Go, Python, TypeScript, .NET and Java samples all write `encoding = binary/encrypted`,
//! `encryption-key-id = <id>` and `data = nonce(12) || AES-256-GCM(key, proto(Payload)) || tag` with no
//! AAD. The Go sample can add a zlib layer (`binary/zlib`); other SDKs' codecs use `binary/snappy` or
//! `binary/gzip`. We unwrap those inner layers with a depth bound and a size bound per layer.

use std::collections::HashMap;

use super::aead::{self, IV_LEN, Iv};
use super::compression::{self, Compression, CompressionError};
use crate::kms::DataKey;
use crate::protocol::{Namespace, Payload};

/// Encoding written by the sample codecs.
pub const LEGACY_ENCODING: &str = "binary/encrypted";
/// Metadata key naming the static key.
pub const KEY_ID_METADATA: &str = "encryption-key-id";

/// Legacy decoding failures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LegacyError {
    #[error("legacy payload could not be decrypted")]
    Decrypt,
    #[error("legacy payload does not contain a Payload")]
    NotAPayload,
    #[error("legacy payload nests compression deeper than {max}")]
    TooDeep { max: usize },
    #[error(transparent)]
    Compression(#[from] CompressionError),
}

/// A static key and the namespaces (names or globs) it may open payloads in.
pub struct LegacyKey {
    pub key: DataKey,
    pub namespaces: Vec<String>,
}

/// Static keys by key id, plus the depth bound for inner layers.
pub struct LegacyKeys {
    keys: HashMap<String, LegacyKey>,
    max_depth: usize,
}

impl LegacyKeys {
    /// Keys by id; `max_depth` bounds nested compression layers.
    pub fn new(keys: HashMap<String, LegacyKey>, max_depth: usize) -> LegacyKeys {
        LegacyKeys { keys, max_depth }
    }

    /// Whether any legacy key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Decodes a sample-codec payload. `Ok(None)` when it is not one, or its key id is not ours or not
    /// allowed in `namespace` (Temporal convention: pass it through unchanged). Decompression draws on
    /// `budget` (bytes left for the whole request).
    pub fn decode(
        &self,
        payload: &Payload,
        namespace: &Namespace,
        budget: &mut usize,
    ) -> Result<Option<Payload>, LegacyError> {
        if payload.encoding() != Some(LEGACY_ENCODING) {
            return Ok(None);
        }
        let Some(entry) = payload.metadata_str(KEY_ID_METADATA).and_then(|id| self.keys.get(id)) else {
            return Ok(None);
        };
        if !entry.namespaces.iter().any(|p| crate::glob::matches(p, namespace.as_str())) {
            return Ok(None);
        }
        let key = &entry.key;
        let data = &payload.data;
        if data.len() < IV_LEN {
            return Err(LegacyError::Decrypt);
        }
        let iv = Iv::from_slice(&data[..IV_LEN]).map_err(|_| LegacyError::Decrypt)?;
        let plain = aead::open(key.expose(), &iv, &[], &data[IV_LEN..]).map_err(|_| LegacyError::Decrypt)?;
        let inner = Payload::decode_bounded(plain.into()).map_err(|_| LegacyError::NotAPayload)?;
        self.unwrap_compression(inner, budget).map(Some)
    }

    /// Undoes `binary/zlib`, `binary/snappy` and `binary/gzip` layers, at most `max_depth` of them.
    pub fn unwrap_compression(&self, mut payload: Payload, budget: &mut usize) -> Result<Payload, LegacyError> {
        for depth in 0.. {
            let kind = match payload.encoding() {
                Some("binary/zlib") => Compression::Zlib,
                Some("binary/snappy") => Compression::Snappy,
                Some("binary/gzip") => Compression::Gzip,
                _ => return Ok(payload),
            };
            if depth == self.max_depth {
                break;
            }
            let bytes = compression::decompress_within(kind, &payload.data, budget)?;
            payload = Payload::decode_bounded(bytes.into()).map_err(|_| LegacyError::NotAPayload)?;
        }
        Err(LegacyError::TooDeep { max: self.max_depth })
    }
}
