//! Keyrings (which KEKs wrap new data keys, which may still unwrap old ones) and the rules that map
//! namespaces to them.
//!
//! What must stay true: on decode, an EDK whose KEK is not in the namespace's keyring is never sent to
//! a KMS — the payload cannot choose the key.

use std::collections::HashMap;
use std::sync::Arc;

use super::{DataKey, KekUri, KmsBackend, KmsContext, KmsError};
use crate::codec::envelope::Edk;
use crate::protocol::Namespace;

/// A KEK and the backend that holds it.
#[derive(Clone)]
pub struct Kek {
    pub uri: KekUri,
    pub backend: Arc<dyn KmsBackend>,
}

/// A named set of KEKs. Every primary KEK wraps each new DEK; decrypt-only KEKs only unwrap.
pub struct Keyring {
    pub name: String,
    pub primary: Vec<Kek>,
    pub decrypt_only: Vec<Kek>,
}

impl Keyring {
    /// The KEK of this keyring that an EDK names, if any (exact provider and URI match).
    pub fn kek_for(&self, edk: &Edk) -> Option<&Kek> {
        self.primary
            .iter()
            .chain(&self.decrypt_only)
            .find(|k| !k.uri.is_proxy() && k.uri.provider() == edk.provider && k.uri.as_str() == edk.kek_ref)
    }

    /// The decrypt-only KEK written exactly as Temporal Proxy wrote `key_id`, if this keyring has one.
    pub fn proxy_kek(&self, key_id: &str) -> Option<&Kek> {
        self.decrypt_only.iter().find(|k| k.uri.is_proxy() && k.uri.as_str() == key_id)
    }

    /// Makes a new DEK wrapped by every primary KEK (the first generates it, the others wrap it).
    pub async fn new_data_key(&self, ctx: &KmsContext) -> Result<(DataKey, Vec<Edk>), KmsError> {
        let Some((first, rest)) = self.primary.split_first() else {
            return Err(KmsError::KeyNotFound { kek: format!("keyring {} has no primary KEK", self.name) });
        };
        let (dek, wrapped) = first.backend.generate_data_key(&first.uri, ctx).await?;
        let mut edks = vec![edk(first, wrapped.0)];
        for kek in rest {
            let wrapped = kek.backend.wrap(&kek.uri, &dek, ctx).await?;
            edks.push(edk(kek, wrapped.0));
        }
        Ok((dek, edks))
    }
}

fn edk(kek: &Kek, wrapped: Vec<u8>) -> Edk {
    Edk { provider: kek.uri.provider(), kek_ref: kek.uri.as_str().to_owned(), wrapped }
}

/// What to do when one of our payloads cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DecodeFailure {
    /// Fail the request with 400 naming the failing indexes.
    #[default]
    Reject,
    /// Return that payload unchanged.
    KeepEncoded,
}

/// Everything the codec needs to know about one namespace.
pub struct NamespaceKeys {
    pub keyring: Arc<Keyring>,
    pub compress: bool,
    pub decode_failure: DecodeFailure,
}

/// Maps namespaces to their keys: exact names first, then patterns in configuration order.
#[derive(Default)]
pub struct KeyringRegistry {
    exact: HashMap<String, Arc<NamespaceKeys>>,
    patterns: Vec<(String, Arc<NamespaceKeys>)>,
}

impl KeyringRegistry {
    /// Adds a rule for a namespace name or glob.
    pub fn add_rule(&mut self, pattern: &str, keys: Arc<NamespaceKeys>) {
        if crate::glob::is_pattern(pattern) {
            self.patterns.push((pattern.to_owned(), keys));
        } else {
            self.exact.entry(pattern.to_owned()).or_insert(keys);
        }
    }

    /// The keys of a namespace, or `None` when no rule covers it (the request is refused).
    pub fn resolve(&self, namespace: &Namespace) -> Option<Arc<NamespaceKeys>> {
        if let Some(keys) = self.exact.get(namespace.as_str()) {
            return Some(keys.clone());
        }
        self.patterns.iter().find(|(p, _)| crate::glob::matches(p, namespace.as_str())).map(|(_, k)| k.clone())
    }
}
