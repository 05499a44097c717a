//! HKDF-SHA-512 (RFC 5869), the envelope's key schedule.

use aws_lc_rs::hkdf::{HKDF_SHA512, KeyType, Salt};

/// HKDF can expand to at most 255 blocks of the hash length.
pub const MAX_OUTPUT_LEN: usize = 255 * 64;

/// Asked for more output than HKDF-SHA-512 can produce.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("HKDF-SHA-512 output length out of range")]
pub struct KdfError;

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The extracted pseudorandom key, from which several outputs are expanded.
pub struct Prk(aws_lc_rs::hkdf::Prk);

/// HKDF-Extract(salt, ikm).
pub fn extract(salt: &[u8], ikm: &[u8]) -> Prk {
    Prk(Salt::new(HKDF_SHA512, salt).extract(ikm))
}

impl Prk {
    /// HKDF-Expand(prk, info, out.len()), where `info` is the concatenation of the parts.
    pub fn expand_into(&self, info: &[&[u8]], out: &mut [u8]) -> Result<(), KdfError> {
        if out.len() > MAX_OUTPUT_LEN {
            return Err(KdfError);
        }
        if out.is_empty() {
            return Ok(());
        }
        let okm = self.0.expand(info, Len(out.len())).map_err(|_| KdfError)?;
        okm.fill(out).map_err(|_| KdfError)
    }
}

/// One-shot HKDF-SHA-512.
pub fn hkdf_sha512(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>, KdfError> {
    let mut out = vec![0u8; len];
    extract(salt, ikm).expand_into(&[info], &mut out)?;
    Ok(out)
}
