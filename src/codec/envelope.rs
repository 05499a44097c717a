//! Envelope format v1: the bytes in `data` of every payload we seal (`docs/envelope-format.md`).
//!
//! What must stay true: every length is checked against its bound before it is used; the commitment is
//! compared in constant time before the AEAD is opened; the AAD binds the namespace of the *authorized
//! request*, not the one written in the header. Anything this version does not know is rejected. Once
//! shipped, bytes written by this code must decode forever (golden vectors in `docs/vectors/`).

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::aead::{self, IV_LEN, Iv, TAG_LEN};
use super::kdf;
use crate::kms::{DataKey, Provider};

/// "TCE" followed by the format version.
pub const MAGIC: [u8; 4] = *b"TCE\x01";
/// AES-256-GCM, 96-bit IV, 128-bit tag, HKDF-SHA-512 per payload (salted with the message id), key
/// commitment. Written until 0.2; decoded forever.
pub const SUITE_AES256GCM_HKDF_SHA512_COMMIT: u16 = 0x0001;
/// AES-256-GCM, 96-bit random IV, 128-bit tag, encryption key and commitment derived once per data key
/// with HKDF-SHA-512, key commitment. The per-payload key schedule of 0x0001 was the largest
/// per-payload cost (5-7 µs, seven times the AEAD of 1 KiB); a data key seals at most
/// `cache.encrypt.max_payloads` (≤ 2^32) payloads, inside AES-GCM's bound for random 96-bit IVs.
pub const SUITE_AES256GCM_HKDF_SHA512_PER_KEY: u16 = 0x0002;
/// The suites this version decodes.
pub const SUITES: [u16; 2] = [SUITE_AES256GCM_HKDF_SHA512_COMMIT, SUITE_AES256GCM_HKDF_SHA512_PER_KEY];
/// Most payloads one data key may seal under suite 0x0002 (NIST SP 800-38D §8.3 for random IVs).
pub const MAX_PAYLOADS_PER_KEY: u64 = 1 << 32;
/// Flag bit 0: the AEAD plaintext is the zstd-compressed Payload.
pub const FLAG_ZSTD: u8 = 0x01;
/// Length of the per-payload message id.
pub const MESSAGE_ID_LEN: usize = 32;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// At most this many wrapped copies of the DEK.
pub const MAX_EDKS: usize = 4;
/// Longest KEK reference (URI) in an EDK.
pub const MAX_KEK_REF_LEN: usize = 512;
/// Longest wrapped DEK in an EDK.
pub const MAX_WRAPPED_LEN: usize = 1024;
/// Longest namespace (u16 length field, but Temporal and we allow at most 255 bytes).
pub const MAX_NAMESPACE_LEN: usize = 255;

/// Header bytes besides the namespace and the EDKs: magic, suite, flags, message id, namespace length,
/// EDK count, commitment, IV.
const FIXED_HEADER_LEN: usize = 4 + 2 + 1 + MESSAGE_ID_LEN + 2 + 1 + COMMITMENT_LEN + IV_LEN;

const KEY_INFO: &[u8] = b"TCE v1 key";
const COMMIT_INFO: &[u8] = b"TCE v1 commit";
const AAD_LABEL: &[u8] = b"TCE v1";

/// One wrapped copy of the data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edk {
    pub provider: Provider,
    pub kek_ref: String,
    pub wrapped: Vec<u8>,
}

/// What the sealer chooses; the commitment is derived.
#[derive(Clone, Debug)]
pub struct SealParams<'a> {
    /// One of `SUITES`.
    pub suite: u16,
    pub flags: u8,
    pub message_id: [u8; MESSAGE_ID_LEN],
    pub iv: Iv,
    pub namespace: &'a str,
    pub edks: &'a [Edk],
}

/// A parsed envelope. Nothing in it is trusted until `open` succeeds.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub suite: u16,
    pub flags: u8,
    pub message_id: [u8; MESSAGE_ID_LEN],
    pub namespace: String,
    pub edks: Vec<Edk>,
    pub commitment: [u8; COMMITMENT_LEN],
    pub iv: Iv,
    header: &'a [u8],
    ciphertext: &'a [u8],
}

/// Why an envelope was refused. Messages never include key or payload bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope truncated")]
    Truncated,
    #[error("not an envelope (bad magic)")]
    BadMagic,
    #[error("unknown envelope format version {0}")]
    UnknownVersion(u8),
    #[error("unknown cipher suite {0:#06x}")]
    UnknownSuite(u16),
    #[error("reserved flag bits set ({0:#04x})")]
    ReservedFlags(u8),
    #[error("EDK count {0} outside 1..=4")]
    BadEdkCount(u8),
    #[error("unknown key provider {0}")]
    UnknownProvider(u8),
    #[error("two EDKs name the same KEK")]
    DuplicateKek,
    #[error("{field} length {len} exceeds {max}")]
    FieldTooLong { field: &'static str, len: usize, max: usize },
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("key commitment mismatch")]
    CommitmentMismatch,
    #[error("decryption failed")]
    Open,
    #[error("encryption failed")]
    Seal,
}

/// The keys that open one payload: derived from the DEK and the message id (0x0001) or from the DEK
/// alone, once per key (0x0002).
struct KeySchedule {
    k_enc: Zeroizing<[u8; 32]>,
    commitment: [u8; COMMITMENT_LEN],
}

fn key_schedule(dek: &DataKey, message_id: &[u8; MESSAGE_ID_LEN], suite: u16) -> Result<KeySchedule, EnvelopeError> {
    let mut k_enc = Zeroizing::new([0u8; 32]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    match suite {
        SUITE_AES256GCM_HKDF_SHA512_COMMIT => {
            let prk = kdf::extract(message_id, dek.expose());
            prk.expand_into(&[KEY_INFO, &suite.to_be_bytes()], k_enc.as_mut()).map_err(|_| EnvelopeError::Seal)?;
            prk.expand_into(&[COMMIT_INFO], &mut commitment).map_err(|_| EnvelopeError::Seal)?;
        }
        SUITE_AES256GCM_HKDF_SHA512_PER_KEY => {
            let keys = dek.derived(per_key_schedule).ok_or(EnvelopeError::Seal)?;
            k_enc.copy_from_slice(&keys[..32]);
            commitment.copy_from_slice(&keys[32..]);
        }
        other => return Err(EnvelopeError::UnknownSuite(other)),
    }
    Ok(KeySchedule { k_enc, commitment })
}

/// Suite 0x0002's keys, `k_enc || commitment`: HKDF-SHA-512 with an empty salt over the DEK, the suite in
/// both labels. Computed once per data key and cached with it (`DataKey::derived`).
fn per_key_schedule(dek: &[u8; 32]) -> Option<Zeroizing<[u8; 64]>> {
    let suite = SUITE_AES256GCM_HKDF_SHA512_PER_KEY.to_be_bytes();
    let prk = kdf::extract(&[], dek);
    let mut keys = Zeroizing::new([0u8; 64]);
    let (k_enc, commitment) = keys.split_at_mut(32);
    prk.expand_into(&[KEY_INFO, &suite], k_enc).ok()?;
    prk.expand_into(&[COMMIT_INFO, &suite], commitment).ok()?;
    Some(keys)
}

fn aad(header: &[u8], request_namespace: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + header.len() + 2 + request_namespace.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&(request_namespace.len() as u16).to_be_bytes());
    aad.extend_from_slice(request_namespace.as_bytes());
    aad
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), EnvelopeError> {
    if len > max { Err(EnvelopeError::FieldTooLong { field, len, max }) } else { Ok(()) }
}

/// Seals `plaintext` (the serialized — possibly compressed — Payload) for `params.namespace`.
pub fn seal(dek: &DataKey, params: &SealParams<'_>, plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    seal_with(dek, params, plaintext.len(), |out| out.extend_from_slice(plaintext))
}

/// [`seal`] for a plaintext that `write` appends to the envelope buffer (exactly `plaintext_len`
/// bytes, which size the buffer), so a serialized Payload is written once, straight into the envelope.
pub fn seal_with(
    dek: &DataKey,
    params: &SealParams<'_>,
    plaintext_len: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Result<Vec<u8>, EnvelopeError> {
    let suite = params.suite;
    if !SUITES.contains(&suite) {
        return Err(EnvelopeError::UnknownSuite(suite));
    }
    if params.flags & !FLAG_ZSTD != 0 {
        return Err(EnvelopeError::ReservedFlags(params.flags));
    }
    if params.edks.is_empty() || params.edks.len() > MAX_EDKS {
        return Err(EnvelopeError::BadEdkCount(params.edks.len().min(255) as u8));
    }
    check_len("namespace", params.namespace.len(), MAX_NAMESPACE_LEN)?;
    let keys = key_schedule(dek, &params.message_id, suite)?;

    for edk in params.edks {
        check_len("kek_ref", edk.kek_ref.len(), MAX_KEK_REF_LEN)?;
        check_len("wrapped", edk.wrapped.len(), MAX_WRAPPED_LEN)?;
    }
    let edks_len: usize = params.edks.iter().map(|e| 1 + 2 + e.kek_ref.len() + 2 + e.wrapped.len()).sum();
    let header_len = FIXED_HEADER_LEN + params.namespace.len() + edks_len;
    // Exact size: the ciphertext is sealed in place at the end, so a large payload is never copied twice.
    let mut out = Vec::with_capacity(header_len + plaintext_len + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&suite.to_be_bytes());
    out.push(params.flags);
    out.extend_from_slice(&params.message_id);
    out.extend_from_slice(&(params.namespace.len() as u16).to_be_bytes());
    out.extend_from_slice(params.namespace.as_bytes());
    out.push(params.edks.len() as u8);
    for edk in params.edks {
        out.push(edk.provider as u8);
        out.extend_from_slice(&(edk.kek_ref.len() as u16).to_be_bytes());
        out.extend_from_slice(edk.kek_ref.as_bytes());
        out.extend_from_slice(&(edk.wrapped.len() as u16).to_be_bytes());
        out.extend_from_slice(&edk.wrapped);
    }
    out.extend_from_slice(&keys.commitment);
    out.extend_from_slice(&params.iv.0);
    debug_assert_eq!(out.len(), header_len);
    let aad = aad(&out, params.namespace);
    aead::seal_written(&keys.k_enc, &params.iv, &aad, &mut out, write).map_err(|_| EnvelopeError::Seal)?;
    Ok(out)
}

/// A bounds-checked reader over the envelope bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self.pos.checked_add(n).ok_or(EnvelopeError::Truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or(EnvelopeError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, EnvelopeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A u16-length-prefixed field, refused before reading if longer than `max`.
    fn field(&mut self, name: &'static str, max: usize) -> Result<&'a [u8], EnvelopeError> {
        let len = self.u16()? as usize;
        check_len(name, len, max)?;
        self.take(len)
    }

    fn text(&mut self, name: &'static str, max: usize) -> Result<String, EnvelopeError> {
        let bytes = self.field(name, max)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| EnvelopeError::NotUtf8(name))
    }
}

/// Parses the header; allocates only bounded fields (at most 4 × 1.5 KiB of EDKs).
pub fn parse(bytes: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let mut r = Reader { bytes, pos: 0 };
    let magic: [u8; 4] = r.array()?;
    if magic[..3] != MAGIC[..3] {
        return Err(EnvelopeError::BadMagic);
    }
    if magic[3] != MAGIC[3] {
        return Err(EnvelopeError::UnknownVersion(magic[3]));
    }
    let suite = r.u16()?;
    if !SUITES.contains(&suite) {
        return Err(EnvelopeError::UnknownSuite(suite));
    }
    let flags = r.u8()?;
    if flags & !FLAG_ZSTD != 0 {
        return Err(EnvelopeError::ReservedFlags(flags));
    }
    let message_id = r.array()?;
    let namespace = r.text("namespace", MAX_NAMESPACE_LEN)?;
    let edk_count = r.u8()?;
    if edk_count == 0 || edk_count as usize > MAX_EDKS {
        return Err(EnvelopeError::BadEdkCount(edk_count));
    }
    let mut edks = Vec::with_capacity(edk_count as usize);
    for _ in 0..edk_count {
        let raw_provider = r.u8()?;
        let provider = Provider::from_u8(raw_provider).ok_or(EnvelopeError::UnknownProvider(raw_provider))?;
        let kek_ref = r.text("kek_ref", MAX_KEK_REF_LEN)?;
        let wrapped = r.field("wrapped", MAX_WRAPPED_LEN)?.to_vec();
        // Each KEK wraps the DEK once; repeats would only multiply KMS calls for one payload.
        if edks.iter().any(|e: &Edk| e.provider == provider && e.kek_ref == kek_ref) {
            return Err(EnvelopeError::DuplicateKek);
        }
        edks.push(Edk { provider, kek_ref, wrapped });
    }
    let commitment = r.array()?;
    let iv = Iv(r.array::<IV_LEN>()?);
    let header = &bytes[..r.pos];
    let ciphertext = &bytes[r.pos..];
    if ciphertext.len() < TAG_LEN {
        return Err(EnvelopeError::Truncated);
    }
    Ok(Envelope { suite, flags, message_id, namespace, edks, commitment, iv, header, ciphertext })
}

impl Envelope<'_> {
    /// Checks the commitment (constant time), then opens the AEAD with the request's namespace in the AAD.
    pub fn open(&self, dek: &DataKey, request_namespace: &str) -> Result<Vec<u8>, EnvelopeError> {
        let keys = key_schedule(dek, &self.message_id, self.suite).map_err(|_| EnvelopeError::Open)?;
        if !bool::from(keys.commitment.ct_eq(&self.commitment)) {
            return Err(EnvelopeError::CommitmentMismatch);
        }
        aead::open(&keys.k_enc, &self.iv, &aad(self.header, request_namespace), self.ciphertext)
            .map_err(|_| EnvelopeError::Open)
    }

    /// Whether the AEAD plaintext is zstd-compressed.
    pub fn is_compressed(&self) -> bool {
        self.flags & FLAG_ZSTD != 0
    }
}

/// A fresh random message id.
pub fn random_message_id() -> [u8; MESSAGE_ID_LEN] {
    let mut id = [0u8; MESSAGE_ID_LEN];
    super::random::fill(&mut id);
    id
}

/// A fresh random message id and IV for sealing one payload, from one call to the generator: each call
/// costs ~2.4k instructions whatever its length (half of it DRBG bookkeeping), a few % of a 1 KiB encode.
pub fn random_message_id_and_iv() -> ([u8; MESSAGE_ID_LEN], Iv) {
    let mut bytes = [0u8; MESSAGE_ID_LEN + IV_LEN];
    super::random::fill(&mut bytes);
    let (mut id, mut iv) = ([0u8; MESSAGE_ID_LEN], [0u8; IV_LEN]);
    id.copy_from_slice(&bytes[..MESSAGE_ID_LEN]);
    iv.copy_from_slice(&bytes[MESSAGE_ID_LEN..]);
    (id, Iv(iv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edk(n: u8) -> Edk {
        Edk { provider: Provider::Local, kek_ref: format!("local://k{n}"), wrapped: vec![n; 60] }
    }

    fn sealed_with(suite: u16, dek: &DataKey, ns: &str, plaintext: &[u8]) -> Vec<u8> {
        let edks = [edk(1)];
        let params = SealParams { suite, flags: 0, message_id: [7; 32], iv: Iv([9; 12]), namespace: ns, edks: &edks };
        seal(dek, &params, plaintext).unwrap()
    }

    fn sealed(dek: &DataKey, ns: &str, plaintext: &[u8]) -> Vec<u8> {
        sealed_with(SUITE_AES256GCM_HKDF_SHA512_COMMIT, dek, ns, plaintext)
    }

    #[test]
    fn message_ids_and_ivs_drawn_together_are_fresh_and_distinct() {
        let drawn: Vec<_> = (0..1000).map(|_| random_message_id_and_iv()).collect();
        let ids: std::collections::HashSet<_> = drawn.iter().map(|(id, _)| *id).collect();
        let ivs: std::collections::HashSet<_> = drawn.iter().map(|(_, iv)| iv.0).collect();
        assert_eq!((ids.len(), ivs.len()), (1000, 1000));
        // The IV is not a slice of the id (the two come from different bytes of the draw).
        assert!(drawn.iter().all(|(id, iv)| !id.windows(IV_LEN).any(|w| w == iv.0)));
    }

    #[test]
    fn a_plaintext_written_into_the_envelope_seals_to_the_same_bytes() {
        let dek = DataKey::from_bytes([1; 32]);
        let edks = [edk(1)];
        let params = SealParams {
            suite: SUITE_AES256GCM_HKDF_SHA512_COMMIT,
            flags: 0,
            message_id: [7; 32],
            iv: Iv([9; 12]),
            namespace: "payments",
            edks: &edks,
        };
        let plaintext: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let written = seal_with(&dek, &params, plaintext.len(), |out| out.extend_from_slice(&plaintext)).unwrap();
        // The tail is exactly AES-GCM of the plaintext under the envelope's key, IV and AAD.
        let (header, sealed) = written.split_at(written.len() - plaintext.len() - TAG_LEN);
        let keys = key_schedule(&dek, &params.message_id, params.suite).unwrap();
        let expected = aead::seal(&keys.k_enc, &params.iv, &aad(header, "payments"), &plaintext).unwrap();
        assert_eq!(sealed, expected.as_slice());
        assert_eq!(parse(&written).unwrap().open(&dek, "payments").unwrap(), plaintext);
    }

    #[test]
    fn round_trip_and_namespace_binding() {
        for suite in SUITES {
            let dek = DataKey::from_bytes([1; 32]);
            let bytes = sealed_with(suite, &dek, "payments", b"hello");
            let env = parse(&bytes).unwrap();
            assert_eq!((env.suite, env.namespace.as_str()), (suite, "payments"));
            assert_eq!(env.edks, vec![edk(1)]);
            assert_eq!(env.open(&dek, "payments").unwrap(), b"hello");
            assert_eq!(env.open(&dek, "marketing").unwrap_err(), EnvelopeError::Open);
        }
    }

    #[test]
    fn wrong_key_fails_on_the_commitment_before_the_aead() {
        for suite in SUITES {
            let bytes = sealed_with(suite, &DataKey::from_bytes([1; 32]), "ns", b"x");
            let env = parse(&bytes).unwrap();
            let wrong = DataKey::from_bytes([2; 32]);
            assert_eq!(env.open(&wrong, "ns").unwrap_err(), EnvelopeError::CommitmentMismatch, "suite {suite}");
        }
    }

    #[test]
    fn the_suites_derive_different_keys_and_only_0x0001_depends_on_the_message_id() {
        let dek = DataKey::from_bytes([1; 32]);
        let keys = |suite, id| {
            let k = key_schedule(&dek, &[id; 32], suite).unwrap();
            (*k.k_enc, k.commitment)
        };
        let (v1, v2) = (SUITE_AES256GCM_HKDF_SHA512_COMMIT, SUITE_AES256GCM_HKDF_SHA512_PER_KEY);
        assert_ne!(keys(v1, 1), keys(v1, 2));
        assert_eq!(keys(v2, 1), keys(v2, 2));
        assert_ne!(keys(v1, 1), keys(v2, 1));
        assert_ne!(keys(v2, 1).0, keys(v2, 1).1);
    }

    #[test]
    fn unknown_versions_suites_flags_and_counts_are_rejected() {
        let bytes = sealed(&DataKey::from_bytes([1; 32]), "ns", b"x");
        let with = |i: usize, v: u8| {
            let mut b = bytes.clone();
            b[i] = v;
            parse(&b).map(|_| ()).unwrap_err()
        };
        assert_eq!(with(3, 2), EnvelopeError::UnknownVersion(2));
        assert_eq!(with(0, b'X'), EnvelopeError::BadMagic);
        assert_eq!(with(5, 3), EnvelopeError::UnknownSuite(3));
        assert_eq!(with(4, 1), EnvelopeError::UnknownSuite(0x0101));
        assert_eq!(with(6, 2), EnvelopeError::ReservedFlags(2));
        let count_at = 4 + 2 + 1 + 32 + 2 + 2;
        assert_eq!(with(count_at, 0), EnvelopeError::BadEdkCount(0));
        assert_eq!(with(count_at, 5), EnvelopeError::BadEdkCount(5));
        assert_eq!(with(count_at + 1, 9), EnvelopeError::UnknownProvider(9));
    }

    #[test]
    fn oversized_length_fields_are_refused_before_reading() {
        let mut bytes = sealed(&DataKey::from_bytes([1; 32]), "ns", b"x");
        let kek_len_at = 4 + 2 + 1 + 32 + 2 + 2 + 1 + 1;
        bytes[kek_len_at..kek_len_at + 2].copy_from_slice(&0xffffu16.to_be_bytes());
        assert!(matches!(parse(&bytes).unwrap_err(), EnvelopeError::FieldTooLong { field: "kek_ref", .. }));
    }
}
