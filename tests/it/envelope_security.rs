//! Envelope robustness (SECURITY-TESTS 4-7, 10): random round trips, every bit flip, every truncation,
//! oversized length fields and unknown values are refused cleanly, and one cached data key never repeats
//! a message id.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use codec_server::auth::{Authorizer, Grant};
use codec_server::codec::aead::Iv;
use codec_server::codec::envelope::{self, Edk, EnvelopeError, FLAG_ZSTD, MESSAGE_ID_LEN, SealParams};
use codec_server::config::NamespaceRule;
use codec_server::kms::keyring::DecodeFailure;
use codec_server::kms::{DataKey, Provider};
use codec_server::protocol::{CodecOp, ExternalPayloadDetails, Namespace, Payload};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use crate::helpers::{TestApp, edit_data, error_code, payload};

const DEK: [u8; 32] = [0x42; 32];

fn grant(namespace: &str, op: CodecOp) -> Grant {
    Authorizer::operator_grant(&Namespace::parse(namespace).expect("valid namespace"), op)
}

fn local_edk(name: &str, wrapped_len: usize) -> Edk {
    Edk { provider: Provider::Local, kek_ref: format!("local://{name}"), wrapped: vec![0xee; wrapped_len] }
}

/// Where the fields of a sealed envelope are (offsets into its bytes).
struct Layout {
    namespace_len_at: usize,
    edk_count_at: usize,
    /// Per EDK: (provider byte, kek_ref length field, wrapped length field).
    edks: Vec<(usize, usize, usize)>,
    commitment_at: usize,
    iv_at: usize,
    ciphertext_at: usize,
}

fn layout(bytes: &[u8]) -> Layout {
    let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]) as usize;
    let namespace_len_at = 4 + 2 + 1 + MESSAGE_ID_LEN;
    let edk_count_at = namespace_len_at + 2 + u16_at(namespace_len_at);
    let mut pos = edk_count_at + 1;
    let mut edks = Vec::new();
    for _ in 0..bytes[edk_count_at] {
        let kek_len_at = pos + 1;
        let wrapped_len_at = kek_len_at + 2 + u16_at(kek_len_at);
        edks.push((pos, kek_len_at, wrapped_len_at));
        pos = wrapped_len_at + 2 + u16_at(wrapped_len_at);
    }
    Layout { namespace_len_at, edk_count_at, edks, commitment_at: pos, iv_at: pos + 32, ciphertext_at: pos + 44 }
}

/// A small envelope (one or more EDKs) sealed for "ns" with `DEK`.
fn small_envelope(edks: &[Edk], plaintext: &[u8]) -> Vec<u8> {
    small_envelope_with(envelope::SUITE_AES256GCM_HKDF_SHA512_COMMIT, edks, plaintext)
}

fn small_envelope_with(suite: u16, edks: &[Edk], plaintext: &[u8]) -> Vec<u8> {
    let params = SealParams { suite, flags: 0, message_id: [7; 32], iv: Iv([9; 12]), namespace: "ns", edks };
    envelope::seal(&DataKey::from_bytes(DEK), &params, plaintext).expect("seal")
}

/// Parses and opens under "ns": the error of whichever step refused the bytes.
fn parse_and_open(bytes: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    envelope::parse(bytes)?.open(&DataKey::from_bytes(DEK), "ns")
}

fn provider() -> impl Strategy<Value = Provider> {
    (0u8..=4).prop_map(|p| Provider::from_u8(p).expect("0..=4 are providers"))
}

fn edk() -> impl Strategy<Value = Edk> {
    (provider(), "[ -~]{0,512}", vec(any::<u8>(), 0..=1024)).prop_map(|(provider, kek_ref, wrapped)| Edk {
        provider,
        kek_ref,
        wrapped,
    })
}

fn namespace() -> impl Strategy<Value = String> {
    // Temporal's alphabet up to the 255-byte bound, and arbitrary printable Unicode (up to 240 bytes).
    prop_oneof!["[A-Za-z0-9._-]{1,255}", "\\PC{0,60}"]
}

fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        1 => Just(vec![0xa5; 64 << 10]),
        8 => vec(any::<u8>(), 0..=64 << 10),
    ]
}

/// A namespace that differs from `ns` and still fits the 255-byte bound.
fn other_namespace(ns: &str) -> String {
    if ns.len() < 255 {
        return format!("{ns}x");
    }
    let mut other = ns.to_owned();
    let last = other.pop().expect("non-empty");
    other.push(if last == 'y' { 'z' } else { 'y' });
    other
}

const ENVELOPE_CASES: u32 = 256;
const PAYLOAD_CASES: u32 = 128;

proptest! {
    #![proptest_config(ProptestConfig { cases: ENVELOPE_CASES, ..ProptestConfig::default() })]

    #[test]
    fn random_envelopes_round_trip_and_open_only_in_their_namespace(
        dek in any::<[u8; 32]>(),
        message_id in any::<[u8; 32]>(),
        iv in any::<[u8; 12]>(),
        zstd_flag in any::<bool>(),
        suite in prop::sample::select(envelope::SUITES.to_vec()),
        ns in namespace(),
        edks in vec(edk(), 1..=4),
        plaintext in plaintext(),
    ) {
        let dek = DataKey::from_bytes(dek);
        let flags = if zstd_flag { FLAG_ZSTD } else { 0 };
        let params = SealParams { suite, flags, message_id, iv: Iv(iv), namespace: &ns, edks: &edks };
        let sealed = envelope::seal(&dek, &params, &plaintext).unwrap();

        let parsed = envelope::parse(&sealed).unwrap();
        prop_assert_eq!((parsed.suite, parsed.flags, parsed.message_id, parsed.iv), (suite, flags, message_id, Iv(iv)));
        prop_assert_eq!(&parsed.namespace, &ns);
        prop_assert_eq!(&parsed.edks, &edks);
        prop_assert_eq!(parsed.is_compressed(), zstd_flag);
        prop_assert_eq!(sealed.len(), layout(&sealed).ciphertext_at + plaintext.len() + 16);
        prop_assert!(parsed.open(&dek, &ns).unwrap() == plaintext);
        prop_assert_eq!(parsed.open(&dek, &other_namespace(&ns)).unwrap_err(), EnvelopeError::Open);
    }
}

fn payload_strategy() -> impl Strategy<Value = Payload> {
    let data = prop_oneof![
        vec(any::<u8>(), 0..=8192),
        // Compressible data, so the zstd path is taken in the compressing namespace.
        (any::<u8>(), 0..=8192usize).prop_map(|(b, n)| vec![b; n]),
    ];
    let random = (btree_map("\\PC{0,24}", vec(any::<u8>(), 0..64), 0..6), data, vec(any::<i64>(), 0..3)).prop_map(
        |(metadata, data, sizes)| Payload {
            metadata,
            data: data.into(),
            external_payloads: sizes.into_iter().map(|size_bytes| ExternalPayloadDetails { size_bytes }).collect(),
        },
    );
    prop_oneof![1 => Just(Payload::default()), 9 => random]
}

#[test]
fn random_payloads_round_trip_through_the_codec_with_and_without_compression() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(TestApp::spawn_with(|config| {
        let rule = NamespaceRule {
            pattern: "zipped".into(),
            keyring: config.namespaces[0].keyring.clone(),
            compress: true,
            decode_failure: DecodeFailure::Reject,
        };
        config.namespaces.insert(0, rule);
    }));
    let codec = &app.state.codec;
    let (cases, compressed_seen) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0usize));
    let config = ProptestConfig { cases: PAYLOAD_CASES, ..ProptestConfig::default() };
    proptest!(config, |(payloads in vec(payload_strategy(), 1..=4), zipped in any::<bool>())| {
        cases.set(cases.get() + 1);
        let ns = if zipped { "zipped" } else { "default" };
        let encoded = runtime.block_on(codec.encode(&grant(ns, CodecOp::Encode), payloads.clone())).unwrap();
        prop_assert_eq!(encoded.payloads.len(), payloads.len());
        for sealed in &encoded.payloads {
            prop_assert_eq!(sealed.encoding(), Some(codec_server::codec::ENVELOPE_ENCODING));
            let flags = envelope::parse(&sealed.data).unwrap().flags;
            prop_assert!(zipped || flags == 0, "compressed in a namespace without compression");
            compressed_seen.set(compressed_seen.get() + usize::from(flags & FLAG_ZSTD != 0));
        }
        let decoded = runtime.block_on(codec.decode(&grant(ns, CodecOp::Decode), encoded.payloads)).unwrap();
        prop_assert_eq!(decoded.decoded, payloads.len());
        prop_assert_eq!(decoded.payloads, payloads);
    });
    assert!(cases.get() >= PAYLOAD_CASES, "proptest ran {} cases", cases.get());
    assert!(compressed_seen.get() > 0, "no case exercised the zstd flag");
}

#[test]
fn every_single_bit_flip_of_a_small_envelope_is_refused_by_the_right_check() {
    for suite in envelope::SUITES {
        let bytes = small_envelope_with(suite, &[local_edk("k", 8)], b"hello");
        let at = layout(&bytes);
        assert_eq!(parse_and_open(&bytes).unwrap(), b"hello");
        let mut flips = 0;
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                let err = parse_and_open(&flipped).expect_err("a flipped envelope opened");
                let expected = match i {
                    0..=2 => Some(EnvelopeError::BadMagic),
                    3 => Some(EnvelopeError::UnknownVersion(flipped[3])),
                    // No single flip turns one known suite into the other (0x0001 and 0x0002 differ in two bits).
                    4 | 5 => Some(EnvelopeError::UnknownSuite(u16::from_be_bytes([flipped[4], flipped[5]]))),
                    6 if bit == 0 => Some(EnvelopeError::Open),
                    6 => Some(EnvelopeError::ReservedFlags(flipped[6])),
                    // Suite 0x0001: the message id feeds the key schedule, so the commitment no longer
                    // matches. Suite 0x0002: it is in the AAD only.
                    7..=38 if suite == envelope::SUITE_AES256GCM_HKDF_SHA512_COMMIT => {
                        Some(EnvelopeError::CommitmentMismatch)
                    }
                    7..=38 => Some(EnvelopeError::Open),
                    _ if (at.commitment_at..at.iv_at).contains(&i) => Some(EnvelopeError::CommitmentMismatch),
                    _ if i >= at.iv_at => Some(EnvelopeError::Open),
                    // Namespace, EDK count and EDK fields: a parse error or the AAD check, either is fine.
                    _ => None,
                };
                if let Some(expected) = expected {
                    assert_eq!(err, expected, "suite {suite}: byte {i} bit {bit}");
                }
                flips += 1;
            }
        }
        assert_eq!(flips, bytes.len() * 8);
    }
}

#[tokio::test]
async fn flipped_bits_in_a_sealed_payload_fail_decode_over_http() {
    let app = TestApp::spawn().await;
    let secret = b"card 4111-1111-1111-1111";
    let sealed = app.encode("default", vec![payload(secret)]).await.remove(0);
    let at = layout(&sealed.data);
    let (provider_at, kek_len_at, wrapped_len_at) = at.edks[0];
    let last = sealed.data.len() - 1;
    let positions = [
        (0, 0),
        (3, 1),
        (5, 0),
        (6, 0),
        (6, 7),
        (20, 3),
        (at.namespace_len_at + 1, 0),
        (at.namespace_len_at + 2, 0),
        (at.edk_count_at, 1),
        (provider_at, 0),
        (kek_len_at + 1, 0),
        (kek_len_at + 4, 2),
        (wrapped_len_at + 1, 0),
        (wrapped_len_at + 5, 6),
        (at.commitment_at, 0),
        (at.iv_at + 11, 4),
        (at.ciphertext_at, 0),
        (last, 7),
    ];
    for (i, bit) in positions {
        let mut tampered = sealed.clone();
        edit_data(&mut tampered, |data| data[i] ^= 1 << bit);
        let response = app.post_decode("default", &[payload(b"untouched"), tampered]).await;
        assert_eq!(response.status(), 400, "byte {i} bit {bit}");
        let body = response.text().await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "decode-failed", "byte {i} bit {bit}: {body}");
        assert_eq!(json["error"]["indexes"], serde_json::json!([1]), "byte {i} bit {bit}");
        assert!(!body.contains("4111"), "the plaintext leaked");
    }
    // The untampered payload still decodes: the failures above were the flips, not the setup.
    assert_eq!(app.decode("default", &[sealed]).await, vec![payload(secret)]);
    let garbage = Payload { data: vec![0; 10].into(), ..sealed_like_metadata() };
    assert_eq!(error_code(app.post_decode("default", &[garbage]).await).await, "decode-failed");
}

/// A payload that claims to be ours.
fn sealed_like_metadata() -> Payload {
    Payload {
        metadata: BTreeMap::from([("encoding".into(), codec_server::codec::ENVELOPE_ENCODING.as_bytes().to_vec())]),
        ..Payload::default()
    }
}

#[test]
fn every_truncation_and_any_trailing_garbage_is_a_clean_error() {
    let bytes = small_envelope(&[local_edk("k", 8), local_edk("dr", 12)], b"hello world");
    let at = layout(&bytes);
    for len in 0..bytes.len() {
        let err = parse_and_open(&bytes[..len]).expect_err("a truncated envelope opened");
        // Inside the header, or fewer than 16 bytes of ciphertext left: the parser says so; a cut
        // in the ciphertext proper fails the tag check.
        let expected = if len < at.ciphertext_at + 16 { EnvelopeError::Truncated } else { EnvelopeError::Open };
        assert_eq!(err, expected, "truncated to {len} of {}", bytes.len());
    }
    for garbage in [&[0u8][..], &[0xff; 16], &bytes[..], &vec![0x5a; 1 << 20]] {
        let extended = [&bytes[..], garbage].concat();
        assert_eq!(parse_and_open(&extended), Err(EnvelopeError::Open), "{} trailing bytes", garbage.len());
    }
}

#[test]
fn oversized_length_fields_are_refused_before_reading_the_field() {
    let bytes = small_envelope(&[local_edk("k", 8)], b"hello");
    let at = layout(&bytes);
    let (_, kek_len_at, wrapped_len_at) = at.edks[0];
    // Plenty of bytes after the field, so only the bound can refuse it (no read of 64 KiB).
    let padded = [&bytes[..], &vec![0u8; 70_000]].concat();
    let with_len = |at: usize, len: u16| {
        let mut b = padded.clone();
        b[at..at + 2].copy_from_slice(&len.to_be_bytes());
        envelope::parse(&b).map(|_| ()).unwrap_err()
    };
    let too_long = |field, len, max| EnvelopeError::FieldTooLong { field, len, max };
    assert_eq!(with_len(at.namespace_len_at, 0xffff), too_long("namespace", 0xffff, 255));
    assert_eq!(with_len(at.namespace_len_at, 256), too_long("namespace", 256, 255));
    assert_eq!(with_len(kek_len_at, 0xffff), too_long("kek_ref", 0xffff, 512));
    assert_eq!(with_len(kek_len_at, 513), too_long("kek_ref", 513, 512));
    assert_eq!(with_len(wrapped_len_at, 0xffff), too_long("wrapped", 0xffff, 1024));
    assert_eq!(with_len(wrapped_len_at, 1025), too_long("wrapped", 1025, 1024));

    // Within the bound but past the end of the input: truncated, not a read out of bounds.
    let short = |at: usize, len: u16| {
        let mut b = bytes.clone();
        b[at..at + 2].copy_from_slice(&len.to_be_bytes());
        parse_and_open(&b).unwrap_err()
    };
    assert_eq!(short(at.namespace_len_at, 255), EnvelopeError::Truncated);
    assert_eq!(short(kek_len_at, 512), EnvelopeError::Truncated);
    assert_eq!(short(wrapped_len_at, 1024), EnvelopeError::Truncated);
}

#[test]
fn unknown_versions_suites_flags_edk_counts_and_providers_are_rejected_by_name() {
    let bytes = small_envelope(&[local_edk("k", 8), local_edk("dr", 8)], b"hello");
    let at = layout(&bytes);
    let with = |i: usize, v: u8| {
        let mut b = bytes.clone();
        b[i] = v;
        envelope::parse(&b).map(|_| ()).unwrap_err()
    };
    for version in [0x00, 0x02, 0xff] {
        assert_eq!(with(3, version), EnvelopeError::UnknownVersion(version));
    }
    for suite in [0x0000u16, 0x0003, 0x0101, 0xffff] {
        let mut b = bytes.clone();
        b[4..6].copy_from_slice(&suite.to_be_bytes());
        assert_eq!(envelope::parse(&b).map(|_| ()).unwrap_err(), EnvelopeError::UnknownSuite(suite));
    }
    for flags in (1..8).map(|bit| 1u8 << bit).chain([0x03, 0xff]) {
        assert_eq!(with(6, flags), EnvelopeError::ReservedFlags(flags));
    }
    for count in [0, 5, 255] {
        assert_eq!(with(at.edk_count_at, count), EnvelopeError::BadEdkCount(count));
    }
    for (edk, &(provider_at, _, _)) in at.edks.iter().enumerate() {
        for provider in [5, 0x80, 0xff] {
            assert_eq!(with(provider_at, provider), EnvelopeError::UnknownProvider(provider), "EDK {edk}");
        }
    }

    // A well-formed fifth EDK does not make five acceptable.
    let last_edk_end = at.commitment_at;
    let fifth = [&[0u8][..], &1u16.to_be_bytes(), b"x", &0u16.to_be_bytes()].concat();
    let mut five = [&bytes[..last_edk_end], &fifth, &fifth, &fifth, &bytes[last_edk_end..]].concat();
    five[at.edk_count_at] = 5;
    assert_eq!(envelope::parse(&five).map(|_| ()).unwrap_err(), EnvelopeError::BadEdkCount(5));

    // The sealer refuses what the parser refuses.
    let dek = DataKey::from_bytes(DEK);
    let edks: Vec<Edk> = (0..5).map(|i| local_edk(&format!("k{i}"), 8)).collect();
    let seal = |flags, edks: &[Edk]| {
        let suite = envelope::SUITE_AES256GCM_HKDF_SHA512_PER_KEY;
        let params = SealParams { suite, flags, message_id: [1; 32], iv: Iv([2; 12]), namespace: "ns", edks };
        envelope::seal(&dek, &params, b"x").unwrap_err()
    };
    assert_eq!(seal(0x02, &edks[..1]), EnvelopeError::ReservedFlags(0x02));
    assert_eq!(seal(0, &[]), EnvelopeError::BadEdkCount(0));
    assert_eq!(seal(0, &edks), EnvelopeError::BadEdkCount(5));
    let params =
        SealParams { suite: 3, flags: 0, message_id: [1; 32], iv: Iv([2; 12]), namespace: "ns", edks: &edks[..1] };
    assert_eq!(envelope::seal(&dek, &params, b"x").unwrap_err(), EnvelopeError::UnknownSuite(3));
}

#[tokio::test]
async fn a_million_encryptions_under_one_cached_data_key_never_repeat_a_message_id() {
    const BATCHES: usize = 1000;
    const PER_BATCH: usize = 1000;
    let app = TestApp::spawn().await;
    let codec = &app.state.codec;
    let grant = grant("default", CodecOp::Encode);
    let mut ids: HashSet<[u8; MESSAGE_ID_LEN]> = HashSet::with_capacity(BATCHES * PER_BATCH);
    let started = Instant::now();
    for _ in 0..BATCHES {
        let batch = vec![payload(b"{}"); PER_BATCH];
        let encoded = codec.encode(&grant, batch).await.expect("encode");
        assert_eq!(encoded.payloads.len(), PER_BATCH);
        for sealed in &encoded.payloads {
            ids.insert(envelope::parse(&sealed.data).expect("our envelope").message_id);
        }
    }
    // Reported, never asserted (no timed assertions): see docs/benchmarks.md.
    eprintln!("10^6 encryptions and parses took {:?}", started.elapsed());
    assert_eq!(ids.len(), BATCHES * PER_BATCH, "a message id repeated");
    assert_eq!(codec.encrypt_cache().keys_created(), 1, "the million payloads did not share one data key");
}
