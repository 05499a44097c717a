//! AES-256-GCM with a 96-bit IV and 128-bit tag — the only AEAD the envelope and the local KEK use.
//!
//! Kept behind this small interface so the implementation (aws-lc today, chosen by measurement: see
//! `benches/envelope.rs` and the README) can change without touching the envelope code. Other IV and
//! tag sizes are unrepresentable here.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// IV length in bytes.
pub const IV_LEN: usize = 12;
/// Tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Key length in bytes.
pub const KEY_LEN: usize = 32;

/// A 96-bit GCM IV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iv(pub [u8; IV_LEN]);

impl Iv {
    /// Refuses any other length: GHASH-derived IVs of other sizes are not part of our format.
    pub fn from_slice(bytes: &[u8]) -> Result<Iv, AeadError> {
        bytes.try_into().map(Iv).map_err(|_| AeadError::BadIvLength)
    }

    /// A random IV.
    pub fn random() -> Iv {
        let mut iv = [0u8; IV_LEN];
        super::random::fill(&mut iv);
        Iv(iv)
    }
}

/// AEAD failures; `Open` deliberately says nothing about why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AeadError {
    #[error("IV must be 12 bytes")]
    BadIvLength,
    #[error("decryption failed")]
    Open,
    #[error("encryption failed")]
    Seal,
}

fn key(key: &[u8; KEY_LEN], err: AeadError) -> Result<LessSafeKey, AeadError> {
    // A 32-byte key is always valid for AES-256; the error path exists only to avoid a panic.
    UnboundKey::new(&AES_256_GCM, key).map(LessSafeKey::new).map_err(|_| err)
}

/// Encrypts `plaintext`; returns `ciphertext || tag`.
pub fn seal(k: &[u8; KEY_LEN], iv: &Iv, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AeadError> {
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    seal_written(k, iv, aad, &mut buf, |out| out.extend_from_slice(plaintext))?;
    Ok(buf)
}

/// Lets `write` append the plaintext to `out`, then encrypts what it appended in place and appends the
/// tag: a Payload serialized straight into the envelope is never copied. On failure `out` is left as
/// it was.
pub fn seal_written(
    k: &[u8; KEY_LEN],
    iv: &Iv,
    aad: &[u8],
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>),
) -> Result<(), AeadError> {
    let start = out.len();
    write(out);
    let sealed = key(k, AeadError::Seal).and_then(|key| {
        key.seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv.0), Aad::from(aad), &mut out[start..])
            .map_err(|_| AeadError::Seal)
    });
    match sealed {
        Ok(tag) => {
            out.extend_from_slice(tag.as_ref());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Decrypts `ciphertext || tag`; any failure (including a short input) is `AeadError::Open`.
pub fn open(k: &[u8; KEY_LEN], iv: &Iv, aad: &[u8], ciphertext_and_tag: &[u8]) -> Result<Vec<u8>, AeadError> {
    if ciphertext_and_tag.len() < TAG_LEN {
        return Err(AeadError::Open);
    }
    let (ciphertext, tag) = ciphertext_and_tag.split_at(ciphertext_and_tag.len() - TAG_LEN);
    // Straight from the (shared, read-only) envelope into the plaintext buffer: copying the ciphertext
    // first to open it in place was a whole extra pass over a large payload.
    let mut plaintext = vec![0; ciphertext.len()];
    key(k, AeadError::Open)?
        .open_separate_gather(Nonce::assume_unique_for_key(iv.0), Aad::from(aad), ciphertext, tag, &mut plaintext)
        .map_err(|_| AeadError::Open)?;
    Ok(plaintext)
}
