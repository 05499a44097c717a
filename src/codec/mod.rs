//! Sealing and opening payloads: the envelope, the legacy sample formats, and the service that runs
//! them for one authorized request.
//!
//! What must stay true: every operation takes a `Grant` and uses only its namespace; encode never
//! returns a payload it did not seal; decode passes through payloads that are not ours unchanged and
//! never releases a payload that did not open under the request's namespace.

pub mod aead;
pub mod compression;
pub mod envelope;
pub mod kdf;
pub mod legacy;
pub mod proxy;
pub mod random;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use crate::auth::Grant;
use crate::kms::decrypt_cache::{DecryptCache, cache_key};
use crate::kms::encrypt_cache::{EncryptCache, LeaseError};
use crate::kms::keyring::{DecodeFailure, KeyringRegistry, NamespaceKeys};
use crate::kms::{DataKey, KmsContext, KmsError, WrappedKey};
use crate::protocol::{Namespace, Payload};
use compression::{Compression, CompressionError};
use envelope::{Envelope, EnvelopeError, FLAG_ZSTD, SealParams};
use legacy::{LegacyError, LegacyKeys};

/// `encoding` of every payload we seal.
pub const ENVELOPE_ENCODING: &str = "binary/kms-envelope";
/// Metadata naming the keyring (display and routing only; never trusted).
pub const KEY_ID_METADATA: &str = "encryption-key-id";

/// Why a whole request failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("namespace {0} has no keyring configured")]
    UnknownNamespace(String),
    #[error("key service unavailable")]
    Unavailable { retry_after: Duration },
    #[error("payloads at indexes {indexes:?} could not be decoded")]
    DecodeFailed { indexes: Vec<usize> },
    #[error("payload {index} is larger than one data key may seal")]
    PayloadTooLarge { index: usize },
    #[error("the payloads need more than {limit} data keys unwrapped in one request; send fewer per request")]
    TooManyDataKeys { limit: usize },
    #[error("encryption failed")]
    EncodeFailed(#[source] KmsErrorOrEnvelope),
}

/// The cause of an encode failure, for the log.
#[derive(Debug, thiserror::Error)]
pub enum KmsErrorOrEnvelope {
    /// Shared with the other encodes that waited for the same KMS call (`LeaseError`).
    #[error(transparent)]
    Kms(#[from] Arc<KmsError>),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// Why one payload did not decode (logged with its index; clients only see the index).
#[derive(Debug, thiserror::Error)]
pub enum PayloadFailure {
    #[error("malformed envelope: {0}")]
    Malformed(EnvelopeError),
    #[error("sealed for another namespace")]
    WrongNamespace,
    #[error("no EDK names a KEK of this namespace's keyring")]
    NoAllowedKek,
    #[error("KMS refused the unwrap: {0}")]
    Kms(Arc<KmsError>),
    #[error("key commitment mismatch")]
    Commitment,
    #[error("authentication failed")]
    Open,
    #[error("inner payload refused: {0}")]
    InnerPayload(#[from] crate::protocol::payloads::InnerPayloadError),
    #[error(transparent)]
    Compression(#[from] CompressionError),
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    #[error("KMS unavailable")]
    Unavailable { retry_after: Duration },
    #[error("the request's budget of KMS unwraps is spent")]
    UnwrapBudgetSpent,
    #[error("Temporal Proxy payload: {0}")]
    Proxy(#[from] proxy::ProxyFormatError),
}

/// The result of an encode.
#[derive(Debug)]
pub struct Encoded {
    pub payloads: Vec<Payload>,
    /// KEK URIs that wrap the data keys used.
    pub kek_refs: BTreeSet<String>,
}

/// The result of a decode.
#[derive(Debug)]
pub struct Decoded {
    pub payloads: Vec<Payload>,
    /// How many payloads were ours (or legacy) and opened.
    pub decoded: usize,
    /// Indexes returned unchanged because they failed and the namespace keeps them encoded.
    pub kept_encoded: Vec<usize>,
    /// KEK URIs whose data keys opened payloads.
    pub kek_refs: BTreeSet<String>,
}

/// Payloads handled since start, by outcome (`/metrics`).
#[derive(Debug, Default)]
pub struct PayloadCounts {
    /// Sealed by encode.
    pub sealed: AtomicU64,
    /// Opened by decode (ours or legacy).
    pub opened: AtomicU64,
    /// Returned unchanged by decode because they are not ours.
    pub passed_through: AtomicU64,
    /// Failed to open (rejected, or kept encoded under `decode_failure = "keep-encoded"`).
    pub failed: AtomicU64,
}

impl PayloadCounts {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Runs encode and decode for authorized requests.
pub struct Codec {
    registry: KeyringRegistry,
    counts: PayloadCounts,
    encrypt_cache: EncryptCache,
    decrypt_cache: DecryptCache,
    legacy: LegacyKeys,
    /// Decompressed bytes one decode request may produce in total (zstd envelopes and legacy layers).
    max_decompressed_bytes: usize,
    /// KMS unwraps (decrypt-cache misses) one decode request may cause.
    max_unwraps_per_request: usize,
    /// The envelope suite encode writes.
    seal_suite: u16,
}

impl Codec {
    /// Assembles the codec from its parts.
    pub fn new(
        registry: KeyringRegistry,
        encrypt_cache: EncryptCache,
        decrypt_cache: DecryptCache,
        legacy: LegacyKeys,
        max_decompressed_bytes: usize,
        max_unwraps_per_request: usize,
        seal_suite: u16,
    ) -> Codec {
        Codec {
            registry,
            counts: PayloadCounts::default(),
            encrypt_cache,
            decrypt_cache,
            legacy,
            max_decompressed_bytes,
            max_unwraps_per_request,
            seal_suite,
        }
    }

    /// Payloads handled so far (metrics, tests).
    pub fn payload_counts(&self) -> &PayloadCounts {
        &self.counts
    }

    /// The encrypt-side DEK cache (metrics, tests).
    pub fn encrypt_cache(&self) -> &EncryptCache {
        &self.encrypt_cache
    }

    /// The decrypt-side DEK cache (metrics, tests).
    pub fn decrypt_cache(&self) -> &DecryptCache {
        &self.decrypt_cache
    }

    fn keys(&self, namespace: &Namespace) -> Result<Arc<NamespaceKeys>, CodecError> {
        self.registry.resolve(namespace).ok_or_else(|| CodecError::UnknownNamespace(namespace.to_string()))
    }

    /// Seals every payload for the grant's namespace, in order.
    pub async fn encode(&self, grant: &Grant, payloads: Vec<Payload>) -> Result<Encoded, CodecError> {
        let namespace = grant.namespace();
        let keys = self.keys(namespace)?;
        let mut sealed = Vec::with_capacity(payloads.len());
        let mut kek_refs = BTreeSet::new();
        for (index, payload) in payloads.iter().enumerate() {
            // Uncompressed (the default), the Payload is serialized later, straight into the envelope.
            let (flags, compressed) = match keys.compress {
                true => {
                    let plaintext = payload.encode_to_vec();
                    match compression::zstd_compress(&plaintext) {
                        packed if packed.len() < plaintext.len() => (FLAG_ZSTD, Some(packed)),
                        _ => (0, Some(plaintext)),
                    }
                }
                false => (0, None),
            };
            let plaintext_len = compressed.as_ref().map_or_else(|| payload.encoded_len(), Vec::len);
            let lease = self.encrypt_cache.lease(namespace, &keys.keyring, plaintext_len as u64).await.map_err(
                |e| match e {
                    LeaseError::PayloadTooLarge { .. } => CodecError::PayloadTooLarge { index },
                    LeaseError::Kms(e) if e.is_unavailable() => {
                        CodecError::Unavailable { retry_after: retry_after(&e) }
                    }
                    LeaseError::Kms(e) => CodecError::EncodeFailed(e.into()),
                },
            )?;
            let (message_id, iv) = envelope::random_message_id_and_iv();
            let params = SealParams {
                suite: self.seal_suite,
                flags,
                message_id,
                iv,
                namespace: namespace.as_str(),
                edks: &lease.edks,
            };
            let data = match &compressed {
                Some(body) => envelope::seal(&lease.dek, &params, body),
                None => envelope::seal_with(&lease.dek, &params, plaintext_len, |out| payload.encode_raw(out)),
            }
            .map_err(|e| CodecError::EncodeFailed(e.into()))?;
            kek_refs.extend(lease.edks.iter().map(|e| e.kek_ref.clone()));
            let metadata = BTreeMap::from([
                ("encoding".to_owned(), ENVELOPE_ENCODING.as_bytes().to_vec()),
                (KEY_ID_METADATA.to_owned(), keys.keyring.name.as_bytes().to_vec()),
            ]);
            sealed.push(Payload { metadata, data: data.into(), external_payloads: Vec::new() });
        }
        PayloadCounts::add(&self.counts.sealed, sealed.len());
        Ok(Encoded { payloads: sealed, kek_refs })
    }

    /// Opens our payloads and legacy sample payloads; passes everything else through unchanged.
    pub async fn decode(&self, grant: &Grant, payloads: Vec<Payload>) -> Result<Decoded, CodecError> {
        let namespace = grant.namespace();
        let keys = self.keys(namespace)?;
        let mut out = Vec::with_capacity(payloads.len());
        let mut failed = Vec::new();
        let mut unavailable = None;
        let mut decoded = 0;
        let mut kek_refs = BTreeSet::new();
        let mut budget = RequestBudget {
            decompressed: self.max_decompressed_bytes,
            unwraps: self.max_unwraps_per_request,
            attempted: Vec::new(),
            last_key: None,
        };
        for (index, payload) in payloads.into_iter().enumerate() {
            match self.decode_one(namespace, &keys, &payload, &mut kek_refs, &mut budget).await {
                Ok(Some(opened)) => {
                    decoded += 1;
                    out.push(opened);
                }
                Ok(None) => out.push(payload),
                // The rest would wait on the same KMS: answer 503 now instead of calling it again.
                Err(PayloadFailure::Unavailable { retry_after }) => {
                    tracing::warn!(%namespace, index, "KMS unavailable while decoding a payload.");
                    unavailable = Some(retry_after);
                    break;
                }
                Err(PayloadFailure::UnwrapBudgetSpent) => {
                    tracing::warn!(%namespace, index, limit = self.max_unwraps_per_request, "Decode needs more KMS unwraps than one request may make.");
                    return Err(CodecError::TooManyDataKeys { limit: self.max_unwraps_per_request });
                }
                Err(failure) => {
                    tracing::warn!(%namespace, index, reason = %failure, "Payload could not be decoded.");
                    failed.push(index);
                    out.push(payload);
                }
            }
        }
        if let Some(retry_after) = unavailable {
            return Err(CodecError::Unavailable { retry_after });
        }
        PayloadCounts::add(&self.counts.opened, decoded);
        PayloadCounts::add(&self.counts.failed, failed.len());
        PayloadCounts::add(&self.counts.passed_through, out.len() - decoded - failed.len());
        if !failed.is_empty() && keys.decode_failure == DecodeFailure::Reject {
            return Err(CodecError::DecodeFailed { indexes: failed });
        }
        Ok(Decoded { payloads: out, decoded, kept_encoded: failed, kek_refs })
    }

    async fn decode_one(
        &self,
        namespace: &Namespace,
        keys: &NamespaceKeys,
        payload: &Payload,
        kek_refs: &mut BTreeSet<String>,
        budget: &mut RequestBudget,
    ) -> Result<Option<Payload>, PayloadFailure> {
        match payload.encoding() {
            Some(ENVELOPE_ENCODING) => {
                self.open_envelope(namespace, keys, &payload.data, kek_refs, budget).await.map(Some)
            }
            Some(legacy::LEGACY_ENCODING) if proxy::is_proxy_payload(payload) => {
                self.open_proxy_payload(namespace, keys, payload, kek_refs, budget).await
            }
            Some(legacy::LEGACY_ENCODING) => Ok(self.legacy.decode(payload, namespace, &mut budget.decompressed)?),
            _ => Ok(None),
        }
    }

    async fn open_envelope(
        &self,
        namespace: &Namespace,
        keys: &NamespaceKeys,
        data: &Bytes,
        kek_refs: &mut BTreeSet<String>,
        budget: &mut RequestBudget,
    ) -> Result<Payload, PayloadFailure> {
        let envelope = envelope::parse(data).map_err(PayloadFailure::Malformed)?;
        // The AAD would refuse it anyway; refusing here saves a KMS call for a payload from elsewhere.
        if envelope.namespace != namespace.as_str() {
            return Err(PayloadFailure::WrongNamespace);
        }
        let ctx = KmsContext::for_namespace(namespace);
        let mut last = PayloadFailure::NoAllowedKek;
        for edk in &envelope.edks {
            // Only KEKs of this namespace's keyring: the payload cannot choose the key.
            let Some(kek) = keys.keyring.kek_for(edk) else { continue };
            // The wrapped bytes are copied only on a cache miss, when the KMS call really happens.
            let unwrap = async { kek.backend.unwrap(&kek.uri, &WrappedKey(edk.wrapped.clone()), &ctx).await };
            let dek = match self.data_key(namespace, envelope.suite, edk, &ctx, budget, unwrap).await? {
                Ok(dek) => dek,
                Err(e) if e.is_unavailable() => {
                    last = PayloadFailure::Unavailable { retry_after: retry_after(&e) };
                    continue;
                }
                Err(e) => {
                    last = PayloadFailure::Kms(e);
                    continue;
                }
            };
            // A commitment mismatch (the EDKs disagree about the key) fails here: never try another EDK.
            let opened = if data.len() >= BLOCKING_THRESHOLD || envelope.is_compressed() {
                // Compressed: a small envelope may inflate to the whole decompression budget.
                let budget = &mut budget.decompressed;
                open_on_blocking_pool(data.clone(), dek, namespace.as_str().to_owned(), budget).await
            } else {
                open_payload(&envelope, &dek, namespace.as_str(), &mut budget.decompressed)
            };
            // Most payloads of a request share a KEK: copy its name only the first time.
            if opened.is_ok() && !kek_refs.contains(&edk.kek_ref) {
                kek_refs.insert(edk.kek_ref.clone());
            }
            return opened;
        }
        Err(last)
    }

    /// The data key for `edk`: the request's last one if the EDK is the same (a request's payloads
    /// usually share one data key, so this skips the cache key's SHA-256 and the lookups), else from
    /// the decrypt cache, else from `unwrap` (the KMS). Each distinct data key missing from the cache
    /// may cost a KMS call, so one request gets a bounded number of them (a key tried before in this
    /// request is answered by the caches). The outer error is the spent budget.
    async fn data_key<F>(
        &self,
        namespace: &Namespace,
        suite: u16,
        edk: &envelope::Edk,
        ctx: &KmsContext,
        budget: &mut RequestBudget,
        unwrap: F,
    ) -> Result<Result<Arc<DataKey>, Arc<KmsError>>, PayloadFailure>
    where
        F: Future<Output = Result<DataKey, KmsError>>,
    {
        let same = |last: &&LastKey| last.suite == suite && last.bound == ctx.is_bound() && last.edk == *edk;
        if let Some(last) = budget.last_key.as_ref().filter(same) {
            // Still a payload that needed no unwrap: counted as a cache hit.
            self.decrypt_cache.count_hit();
            return Ok(Ok(last.dek.clone()));
        }
        let key = cache_key(suite, edk, ctx);
        let found = match self.decrypt_cache.cached(namespace, &key).await {
            Some(dek) => Ok(dek),
            None => {
                if !budget.attempted.contains(&key) {
                    budget.unwraps = budget.unwraps.checked_sub(1).ok_or(PayloadFailure::UnwrapBudgetSpent)?;
                    budget.attempted.push(key);
                }
                self.decrypt_cache.get_or_unwrap(namespace, key, unwrap).await
            }
        };
        if let Ok(dek) = &found {
            let last = LastKey { suite, bound: ctx.is_bound(), edk: edk.clone(), dek: dek.clone() };
            budget.last_key = Some(last);
        }
        Ok(found)
    }

    /// A Temporal Proxy payload: only with a decrypt-only KEK of this namespace's keyring spelled as the
    /// proxy spells it; any other key id comes back unchanged without a KMS call (see `proxy`).
    async fn open_proxy_payload(
        &self,
        namespace: &Namespace,
        keys: &NamespaceKeys,
        payload: &Payload,
        kek_refs: &mut BTreeSet<String>,
        budget: &mut RequestBudget,
    ) -> Result<Option<Payload>, PayloadFailure> {
        let key_id = payload.metadata_str(KEY_ID_METADATA).unwrap_or_default();
        let Some(kek) = keys.keyring.proxy_kek(key_id) else { return Ok(None) };
        let edk = envelope::Edk {
            provider: kek.uri.provider(),
            kek_ref: key_id.to_owned(),
            wrapped: proxy::wrapped_dek(payload)?,
        };
        // The proxy binds no context at the KMS; the unbound context keeps these keys apart in the cache.
        let ctx = KmsContext::unbound(namespace);
        let unwrap = async { kek.backend.unwrap(&kek.uri, &WrappedKey(edk.wrapped.clone()), &ctx).await };
        let dek = match self.data_key(namespace, proxy::CACHE_SUITE, &edk, &ctx, budget, unwrap).await? {
            Ok(dek) => dek,
            Err(e) if e.is_unavailable() => return Err(PayloadFailure::Unavailable { retry_after: retry_after(&e) }),
            Err(e) => return Err(PayloadFailure::Kms(e)),
        };
        let inner = Payload::decode_bounded(proxy::open(&dek, &payload.data)?.into())?;
        kek_refs.insert(key_id.to_owned());
        Ok(Some(inner))
    }
}

/// What one decode request may still spend.
struct RequestBudget {
    /// Decompressed bytes (zstd envelopes and legacy layers).
    decompressed: usize,
    /// KMS unwraps (decrypt-cache misses of distinct data keys).
    unwraps: usize,
    /// Data keys already charged in this request (at most the unwrap budget, so a short list).
    attempted: Vec<crate::kms::decrypt_cache::CacheKey>,
    /// The data key last found for this request (see `Codec::data_key`); compared by value.
    last_key: Option<LastKey>,
}

/// An EDK of this request's namespace, how it was unwrapped, and the data key it unwrapped to.
struct LastKey {
    suite: u16,
    bound: bool,
    edk: envelope::Edk,
    dek: Arc<DataKey>,
}

/// Uncompressed envelopes at least this large are opened on the blocking thread pool, so AES over many
/// megabytes does not stall the HTTP worker and every request queued on it (compressed ones always are:
/// zstd may inflate to the whole decompression budget). Below it the AES (~0.15 ms per MiB) costs less
/// than the hand-off: at 256 KiB a 1 MiB decode spent ~5 % more CPU on the pool's wake-ups than inline,
/// and the worker already parses and base64-decodes the same bytes inline.
const BLOCKING_THRESHOLD: usize = 4 * 1024 * 1024;

/// Opens a parsed envelope with its data key: AEAD, then zstd within the budget, then the inner Payload.
fn open_payload(
    envelope: &Envelope<'_>,
    dek: &DataKey,
    namespace: &str,
    budget: &mut usize,
) -> Result<Payload, PayloadFailure> {
    let plaintext = envelope.open(dek, namespace).map_err(|e| match e {
        EnvelopeError::CommitmentMismatch => PayloadFailure::Commitment,
        _ => PayloadFailure::Open,
    })?;
    let plaintext = match envelope.is_compressed() {
        true => compression::decompress_within(Compression::Zstd, &plaintext, budget)?,
        false => plaintext,
    };
    Ok(Payload::decode_bounded(plaintext.into())?)
}

/// [`open_payload`] on the blocking pool, for a shared handle on the envelope bytes; the budget left
/// comes back.
async fn open_on_blocking_pool(
    data: Bytes,
    dek: Arc<DataKey>,
    namespace: String,
    budget: &mut usize,
) -> Result<Payload, PayloadFailure> {
    let mut remaining = *budget;
    let task = tokio::task::spawn_blocking(move || {
        let opened = envelope::parse(&data)
            .map_err(PayloadFailure::Malformed)
            .and_then(|envelope| open_payload(&envelope, &dek, &namespace, &mut remaining));
        (opened, remaining)
    });
    match task.await {
        Ok((opened, remaining)) => {
            *budget = remaining;
            opened
        }
        // The task panicked or the runtime is shutting down: nothing was released.
        Err(_) => Err(PayloadFailure::Open),
    }
}

fn retry_after(e: &KmsError) -> Duration {
    match e {
        KmsError::Unavailable { retry_after, .. } => *retry_after,
        _ => Duration::from_secs(1),
    }
}
