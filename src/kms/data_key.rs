//! Key material types. A data key never prints, never serializes, and is zeroized when dropped.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use zeroize::{Zeroize, Zeroizing};

/// Length of every data key (AES-256).
pub const DATA_KEY_LEN: usize = 32;

/// A 256-bit data-encryption key (DEK). Share it with `Arc`; there is deliberately no `Clone`.
pub struct DataKey {
    bytes: Box<[u8; DATA_KEY_LEN]>,
    /// Keys the codec derives from this one, once (the envelope's per-key schedule); zeroized with it.
    derived: OnceLock<Zeroizing<[u8; DERIVED_LEN]>>,
    probe: Option<Arc<DropProbe>>,
}

/// Length of the key material derived once per data key.
pub const DERIVED_LEN: usize = 64;

impl DataKey {
    /// Wraps existing key bytes (from a KMS response or a key file).
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> DataKey {
        DataKey { bytes: Box::new(bytes), derived: OnceLock::new(), probe: None }
    }

    /// Takes key bytes from a slice of exactly 32 bytes, zeroizing nothing of the caller's (callers own
    /// their buffers and should zeroize them).
    pub fn from_slice(bytes: &[u8]) -> Option<DataKey> {
        let array: [u8; DATA_KEY_LEN] = bytes.try_into().ok()?;
        Some(DataKey::from_bytes(array))
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn random() -> DataKey {
        let mut bytes = [0u8; DATA_KEY_LEN];
        crate::codec::random::fill(&mut bytes);
        let key = DataKey::from_bytes(bytes);
        bytes.zeroize();
        key
    }

    /// The raw key, for the AEAD and KDF only.
    pub fn expose(&self) -> &[u8; DATA_KEY_LEN] {
        &self.bytes
    }

    /// Key material derived from this key by `derive`, computed on first use and cached with the key
    /// (cached keys are shared by every request, so this saves a key schedule per payload). There is one
    /// slot: every caller must pass the same derivation. `None` when the derivation fails.
    pub fn derived(
        &self,
        derive: impl FnOnce(&[u8; DATA_KEY_LEN]) -> Option<Zeroizing<[u8; DERIVED_LEN]>>,
    ) -> Option<&[u8; DERIVED_LEN]> {
        if let Some(keys) = self.derived.get() {
            return Some(keys);
        }
        let keys = derive(&self.bytes)?;
        Some(self.derived.get_or_init(|| keys))
    }

    /// Attaches a probe that records, at drop, whether the bytes were zeroized (tests of cache eviction).
    pub fn with_drop_probe(mut self, probe: Arc<DropProbe>) -> DataKey {
        self.probe = Some(probe);
        self
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
        if let Some(probe) = &self.probe {
            probe.record(self.bytes.iter().all(|b| *b == 0));
        }
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Counts drops of the keys it is attached to, and how many of them were zeroized at that moment.
#[derive(Debug, Default)]
pub struct DropProbe {
    dropped: AtomicUsize,
    zeroized: AtomicUsize,
}

impl DropProbe {
    fn record(&self, zeroized: bool) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        if zeroized {
            self.zeroized.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Keys dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Keys whose bytes were all zero when the drop finished.
    pub fn zeroized(&self) -> usize {
        self.zeroized.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = DataKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{key:?}"), "DataKey(<redacted>)");
    }

    #[test]
    fn drop_zeroizes() {
        let probe = Arc::new(DropProbe::default());
        drop(DataKey::random().with_drop_probe(probe.clone()));
        assert_eq!((probe.dropped(), probe.zeroized()), (1, 1));
    }
}
