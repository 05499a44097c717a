//! Envelope v1: `envelope::parse` then `open` on arbitrary bytes, and a seal → parse → open round trip.
//!
//! The golden vectors' data keys are known: an input whose commitment is one of theirs is opened with
//! that key (so mutations of a real envelope reach the AEAD and, when it opens, the zstd layer and the
//! inner Payload decoder); anything else is opened with a fixed key and must fail on the commitment.
#![no_main]

use std::sync::OnceLock;

use codec_server::codec::aead::Iv;
use codec_server::codec::compression::{self, Compression};
use codec_server::codec::envelope::{self, Edk, EnvelopeError, MAX_EDKS, MAX_NAMESPACE_LEN, SealParams};
use codec_server::kms::{DataKey, Provider};
use codec_server::protocol::Payload;
use libfuzzer_sys::fuzz_target;

/// (commitment, data key) of every golden vector.
fn vector_keys() -> &'static [([u8; 32], [u8; 32])] {
    static KEYS: OnceLock<Vec<([u8; 32], [u8; 32])>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/vectors/envelope-v1.json")).expect("vectors JSON");
        let hex32 = |v: &serde_json::Value| -> [u8; 32] {
            hex::decode(v.as_str().expect("hex string")).expect("hex").try_into().expect("32 bytes")
        };
        vectors.as_array().expect("array").iter().map(|v| (hex32(&v["commitment_hex"]), hex32(&v["dek_hex"]))).collect()
    })
}

const FIXED_DEK: [u8; 32] = [0x42; 32];

/// FIXED_DEK's suite 0x0002 commitment (the same for every payload sealed under it).
fn fixed_dek_per_key_commitment() -> [u8; 32] {
    static COMMITMENT: OnceLock<[u8; 32]> = OnceLock::new();
    *COMMITMENT.get_or_init(|| {
        let edks = [Edk { provider: Provider::Local, kek_ref: "local://k".into(), wrapped: Vec::new() }];
        let params = SealParams {
            suite: envelope::SUITE_AES256GCM_HKDF_SHA512_PER_KEY,
            flags: 0,
            message_id: [0; 32],
            iv: Iv([0; 12]),
            namespace: "n",
            edks: &edks,
        };
        let sealed = envelope::seal(&DataKey::from_bytes(FIXED_DEK), &params, b"").expect("seal");
        envelope::parse(&sealed).expect("parse").commitment
    })
}
/// Inflation budget for the zstd layer (the server's default per-request budget is larger; this keeps
/// every execution fast while still exercising the bound).
const BUDGET: usize = 1 << 20;

fn parse_and_open(data: &[u8]) {
    let Ok(env) = envelope::parse(data) else { return };
    assert!(env.namespace.len() <= MAX_NAMESPACE_LEN);
    assert!(!env.edks.is_empty() && env.edks.len() <= MAX_EDKS);
    let known = vector_keys().iter().find(|(c, _)| *c == env.commitment).map(|(_, k)| *k);
    let dek = DataKey::from_bytes(known.unwrap_or(FIXED_DEK));
    let namespace = env.namespace.clone();
    match env.open(&dek, &namespace) {
        Ok(plain) => {
            let inner = if env.is_compressed() {
                let mut budget = BUDGET;
                match compression::decompress_within(Compression::Zstd, &plain, &mut budget) {
                    Ok(bytes) => {
                        assert!(bytes.len() <= BUDGET);
                        bytes
                    }
                    Err(_) => return,
                }
            } else {
                plain
            };
            let _ = Payload::decode_bounded(inner.into());
            // The AAD binds the request's namespace: another namespace never opens it.
            assert_eq!(env.open(&dek, "fuzz-other-namespace").unwrap_err(), EnvelopeError::Open);
        }
        // Under suite 0x0002 the commitment depends on the key alone, so an input may carry FIXED_DEK's.
        Err(e) if known.is_none() && env.commitment != fixed_dek_per_key_commitment() => {
            assert_eq!(e, EnvelopeError::CommitmentMismatch)
        }
        Err(_) => {}
    }
}

/// Seals `data` under a namespace and EDKs taken from its first bytes, then parses and opens it back.
fn round_trip(data: &[u8]) {
    let (head, plaintext) = data.split_at(data.len().min(8));
    let ns_len = 1 + usize::from(head.first().copied().unwrap_or(0) % 16);
    let namespace: String = "n".repeat(ns_len);
    let edk_count = 1 + usize::from(head.get(1).copied().unwrap_or(0)) % MAX_EDKS;
    let edks: Vec<Edk> = (0..edk_count)
        .map(|i| Edk {
            provider: Provider::from_u8((i % 4) as u8).expect("provider"),
            kek_ref: format!("local://k{i}"),
            wrapped: head.to_vec(),
        })
        .collect();
    let mut message_id = [0u8; 32];
    message_id[..head.len()].copy_from_slice(head);
    let flags = head.get(2).copied().unwrap_or(0) & envelope::FLAG_ZSTD;
    let suite = envelope::SUITES[usize::from(head.get(3).copied().unwrap_or(0) & 1)];
    let params = SealParams { suite, flags, message_id, iv: Iv([7; 12]), namespace: &namespace, edks: &edks };
    let dek = DataKey::from_bytes(FIXED_DEK);
    let sealed = envelope::seal(&dek, &params, plaintext).expect("seal");
    let env = envelope::parse(&sealed).expect("parse what we sealed");
    assert_eq!(env.namespace, namespace);
    assert_eq!(env.edks, edks);
    assert_eq!(env.flags, flags);
    assert_eq!(env.message_id, message_id);
    assert_eq!(env.open(&dek, &namespace).expect("open what we sealed"), plaintext);
    assert_eq!(env.open(&dek, "other").unwrap_err(), EnvelopeError::Open);
}

fuzz_target!(|data: &[u8]| {
    parse_and_open(data);
    round_trip(data);
});
