//! The `local` backend: KEKs in key files on disk (`<key_dir>/<name>.key`, base64 of 32 random bytes).
//!
//! For development, the embedded default and small installs. Wrapping is AES-256-GCM with the KMS
//! context in the AAD, so a wrapped key only unwraps for the namespace it was made for — the same
//! guarantee the cloud KMSs give through their encryption context.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{DataKey, KekUri, KmsBackend, KmsContext, KmsError, Provider, WrappedKey};
use crate::codec::aead::{self, IV_LEN, Iv};

/// Version byte of the local wrapped-key format: `0x01 || iv(12) || AES-256-GCM(kek, dek) || tag(16)`.
const WRAP_VERSION: u8 = 0x01;
const WRAP_AAD_LABEL: &[u8] = b"tce-local-kek v1";

/// Problems loading or writing key files (startup and `keygen` only).
#[derive(Debug, thiserror::Error)]
pub enum LocalKeyError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("key file {path} must hold base64 of exactly 32 bytes")]
    Format { path: PathBuf },
    #[error("cannot write key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Local KEKs by name.
pub struct LocalBackend {
    keys: HashMap<String, DataKey>,
}

/// The file that holds the KEK `name`.
pub fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.key"))
}

impl LocalBackend {
    /// Loads the named keys from `dir`; every one must exist.
    pub fn load(dir: &Path, names: &[String]) -> Result<LocalBackend, LocalKeyError> {
        let mut keys = HashMap::new();
        for name in names {
            let path = key_path(dir, name);
            let text = Zeroizing::new(
                std::fs::read_to_string(&path).map_err(|source| LocalKeyError::Read { path: path.clone(), source })?,
            );
            let bytes = Zeroizing::new(
                crate::protocol::base64_lenient::decode(text.trim())
                    .map_err(|_| LocalKeyError::Format { path: path.clone() })?,
            );
            let key = DataKey::from_slice(&bytes).ok_or(LocalKeyError::Format { path })?;
            keys.insert(name.clone(), key);
        }
        Ok(LocalBackend { keys })
    }

    fn kek(&self, kek: &KekUri) -> Result<&DataKey, KmsError> {
        self.keys.get(kek.key_part()).ok_or_else(|| KmsError::KeyNotFound { kek: kek.to_string() })
    }
}

/// Writes a new random key file readable only by its owner. Refuses to overwrite: replacing a KEK
/// destroys every payload sealed under it.
pub fn write_new_key(dir: &Path, name: &str) -> Result<PathBuf, LocalKeyError> {
    let path = key_path(dir, name);
    let write_err = |source| LocalKeyError::Write { path: path.clone(), source };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(write_err)?;
    let key = DataKey::random();
    let text = Zeroizing::new(crate::protocol::base64_lenient::encode(key.expose()));
    file.write_all(text.as_bytes()).and_then(|_| file.write_all(b"\n")).map_err(write_err)?;
    Ok(path)
}

fn wrap_aad(kek: &KekUri, ctx: &KmsContext) -> Vec<u8> {
    let name = kek.key_part().as_bytes();
    let ctx = ctx.canonical_json();
    let mut aad = Vec::with_capacity(WRAP_AAD_LABEL.len() + 2 + name.len() + ctx.len());
    aad.extend_from_slice(WRAP_AAD_LABEL);
    aad.extend_from_slice(&(name.len() as u16).to_be_bytes());
    aad.extend_from_slice(name);
    aad.extend_from_slice(ctx.as_bytes());
    aad
}

#[async_trait]
impl KmsBackend for LocalBackend {
    fn provider(&self) -> Provider {
        Provider::Local
    }

    async fn wrap(&self, kek: &KekUri, dek: &DataKey, ctx: &KmsContext) -> Result<WrappedKey, KmsError> {
        let key = self.kek(kek)?;
        let iv = Iv::random();
        let sealed = aead::seal(key.expose(), &iv, &wrap_aad(kek, ctx), dek.expose())
            .map_err(|_| KmsError::InvalidCiphertext)?;
        let mut out = Vec::with_capacity(1 + IV_LEN + sealed.len());
        out.push(WRAP_VERSION);
        out.extend_from_slice(&iv.0);
        out.extend_from_slice(&sealed);
        Ok(WrappedKey(out))
    }

    async fn unwrap(&self, kek: &KekUri, wrapped: &WrappedKey, ctx: &KmsContext) -> Result<DataKey, KmsError> {
        let key = self.kek(kek)?;
        let bytes = &wrapped.0;
        if bytes.len() < 1 + IV_LEN || bytes[0] != WRAP_VERSION {
            return Err(KmsError::InvalidCiphertext);
        }
        let iv = Iv::from_slice(&bytes[1..1 + IV_LEN]).map_err(|_| KmsError::InvalidCiphertext)?;
        let plain = Zeroizing::new(
            aead::open(key.expose(), &iv, &wrap_aad(kek, ctx), &bytes[1 + IV_LEN..])
                .map_err(|_| KmsError::InvalidCiphertext)?,
        );
        DataKey::from_slice(&plain).ok_or(KmsError::InvalidCiphertext)
    }

    async fn health_check(&self) -> Result<(), KmsError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Namespace;

    #[tokio::test]
    async fn wraps_for_one_namespace_only() {
        let dir = tempfile::tempdir().unwrap();
        write_new_key(dir.path(), "main").unwrap();
        assert!(write_new_key(dir.path(), "main").is_err(), "must not overwrite a KEK");
        let backend = LocalBackend::load(dir.path(), &["main".into()]).unwrap();
        let kek = KekUri::parse("local://main").unwrap();
        let a = KmsContext::for_namespace(&Namespace::parse("a").unwrap());
        let b = KmsContext::for_namespace(&Namespace::parse("b").unwrap());
        let (dek, wrapped) = backend.generate_data_key(&kek, &a).await.unwrap();
        assert_eq!(backend.unwrap(&kek, &wrapped, &a).await.unwrap().expose(), dek.expose());
        assert!(matches!(backend.unwrap(&kek, &wrapped, &b).await, Err(KmsError::InvalidCiphertext)));
        let other = KekUri::parse("local://other").unwrap();
        assert!(matches!(backend.unwrap(&other, &wrapped, &a).await, Err(KmsError::KeyNotFound { .. })));
    }
}
