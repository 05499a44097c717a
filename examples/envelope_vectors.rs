//! Generates the golden vectors of envelope v1: suite 0x0001 (`docs/vectors/envelope-v1.json`) and
//! suite 0x0002 (`docs/vectors/envelope-v1-suite2.json`).
//!
//! Run once per suite: `cargo run --example envelope_vectors > docs/vectors/envelope-v1.json`, and with
//! `-- --suite 2 > docs/vectors/envelope-v1-suite2.json`. The vectors are checked in and never
//! regenerated: bytes written by any shipped suite must decode forever. Every input
//! (DEK, message id, IV, EDK bytes) is fixed here — derived from SHA-256 of a label, so the bytes look
//! random but anyone can recompute them — and the envelope is made by `codec::envelope::seal`.
//! `tests/it/crypto_vectors.rs` checks them against the Rust code, and
//! `scripts/verify_envelope_vectors.py` against an independent Python implementation of
//! `docs/envelope-format.md`.

use std::collections::BTreeMap;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use codec_server::codec::aead::Iv;
use codec_server::codec::compression::zstd_compress;
use codec_server::codec::envelope::{
    self, Edk, FLAG_ZSTD, SUITE_AES256GCM_HKDF_SHA512_COMMIT, SUITE_AES256GCM_HKDF_SHA512_PER_KEY, SealParams,
};
use codec_server::codec::kdf;
use codec_server::kms::{DataKey, Provider};
use codec_server::protocol::{ExternalPayloadDetails, Payload};
use prost::Message;
use serde::Serialize;

/// `n` bytes that look random: SHA-256("tce-v1-vectors/<label>/<block>") blocks, concatenated.
fn bytes(label: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut block = 0u32;
    while out.len() < n {
        out.extend_from_slice(digest(&SHA256, format!("tce-v1-vectors/{label}/{block}").as_bytes()).as_ref());
        block += 1;
    }
    out.truncate(n);
    out
}

fn array<const N: usize>(label: &str) -> [u8; N] {
    bytes(label, N).try_into().expect("exact length")
}

/// The inner Payload of a vector, written out so other implementations can check their protobuf.
#[derive(Serialize)]
struct PayloadJson {
    /// Metadata values as UTF-8 text.
    metadata: BTreeMap<String, String>,
    /// `data` as UTF-8 text.
    data: String,
    /// `external_payloads[i].size_bytes`.
    external_payload_sizes: Vec<i64>,
}

impl PayloadJson {
    fn to_payload(&self) -> Payload {
        Payload {
            metadata: self.metadata.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect(),
            data: self.data.as_bytes().to_vec().into(),
            external_payloads: self
                .external_payload_sizes
                .iter()
                .map(|&s| ExternalPayloadDetails { size_bytes: s })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct EdkJson {
    provider: u8,
    kek_ref: String,
    wrapped_hex: String,
}

#[derive(Serialize)]
struct Vector {
    description: String,
    /// Absent in the suite 0x0001 file (written before there was a second suite).
    #[serde(skip_serializing_if = "Option::is_none")]
    suite: Option<u16>,
    dek_hex: String,
    message_id_hex: String,
    iv_hex: String,
    namespace: String,
    flags: u8,
    edks: Vec<EdkJson>,
    /// The Payload whose protobuf serialization (zstd-compressed when flag bit 0 is set) is the plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<PayloadJson>,
    /// The AEAD plaintext (after compression when flag bit 0 is set).
    plaintext_hex: String,
    /// Intermediate values, for implementers debugging their key schedule and AAD.
    k_enc_hex: String,
    commitment_hex: String,
    aad_hex: String,
    envelope_hex: String,
}

struct Case {
    description: &'static str,
    label: &'static str,
    namespace: String,
    flags: u8,
    edks: Vec<Edk>,
    payload: Option<PayloadJson>,
    /// Raw plaintext for cases without a Payload.
    raw: Vec<u8>,
}

fn local_edk(label: &str, name: &str) -> Edk {
    // The local backend's wrapped format: 0x01 || iv(12) || AES-256-GCM(kek, dek) || tag(16) = 61 bytes.
    let mut wrapped = vec![0x01];
    wrapped.extend(bytes(&format!("{label}/local-wrapped"), 60));
    Edk { provider: Provider::Local, kek_ref: format!("local://{name}"), wrapped }
}

fn aws_edk(label: &str, region: &str, key_id: &str) -> Edk {
    // AWS KMS ciphertext blobs of a 32-byte data key are about 184 bytes.
    Edk {
        provider: Provider::AwsKms,
        kek_ref: format!("aws-kms://arn:aws:kms:{region}:111122223333:key/{key_id}"),
        wrapped: bytes(&format!("{label}/aws-{region}"), 184),
    }
}

fn gcp_edk(label: &str) -> Edk {
    Edk {
        provider: Provider::GcpKms,
        kek_ref: "gcp-kms://projects/acme-prod/locations/europe-west1/keyRings/temporal/cryptoKeys/payments".into(),
        wrapped: bytes(&format!("{label}/gcp"), 113),
    }
}

fn vault_edk(label: &str) -> Edk {
    // Vault Transit returns text: "vault:v<version>:<base64>".
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes(&format!("{label}/vault"), 60));
    Edk {
        provider: Provider::VaultTransit,
        kek_ref: "vault-transit://transit/payments".into(),
        wrapped: format!("vault:v1:{b64}").into_bytes(),
    }
}

fn hello_world() -> PayloadJson {
    PayloadJson {
        metadata: BTreeMap::from([("encoding".into(), "json/plain".into())]),
        data: r#"{"hello":"world"}"#.into(),
        external_payload_sizes: vec![],
    }
}

fn cases() -> Vec<Case> {
    let repetitive = PayloadJson {
        metadata: BTreeMap::from([
            ("encoding".into(), "json/plain".into()),
            ("messageType".into(), "orders.v1.OrderPlaced".into()),
        ]),
        data: format!("[{}]", vec![r#"{"sku":"ABC-123","qty":1,"price":"9.99"}"#; 40].join(",")),
        external_payload_sizes: vec![],
    };
    vec![
        Case {
            description: "empty plaintext, one local EDK",
            label: "empty",
            namespace: "default".into(),
            flags: 0,
            edks: vec![local_edk("empty", "dev")],
            payload: None,
            raw: Vec::new(),
        },
        Case {
            description: "serialized Payload (encoding=json/plain, data {\"hello\":\"world\"}), one AWS KMS EDK",
            label: "hello",
            namespace: "payments".into(),
            flags: 0,
            edks: vec![aws_edk("hello", "eu-west-1", "1234abcd-12ab-34cd-56ef-1234567890ab")],
            payload: Some(hello_world()),
            raw: Vec::new(),
        },
        Case {
            description: "two EDKs (home-region and DR-region AWS KMS keys) wrapping the same DEK",
            label: "two-edks",
            namespace: "payments-prod".into(),
            flags: 0,
            edks: vec![
                aws_edk("two-edks", "eu-west-1", "1234abcd-12ab-34cd-56ef-1234567890ab"),
                aws_edk("two-edks", "eu-central-1", "0987dcba-09fe-87dc-65ba-ab0987654321"),
            ],
            payload: Some(hello_world()),
            raw: Vec::new(),
        },
        Case {
            description: "255-byte namespace (the longest allowed), one Vault Transit EDK",
            label: "long-namespace",
            namespace: format!("team-{}", "n".repeat(250)),
            flags: 0,
            edks: vec![vault_edk("long-namespace")],
            payload: Some(hello_world()),
            raw: Vec::new(),
        },
        Case {
            description: "compressed: flag bit 0, plaintext = zstd (level 3) of a serialized Payload",
            label: "zstd",
            namespace: "orders".into(),
            flags: FLAG_ZSTD,
            edks: vec![gcp_edk("zstd")],
            payload: Some(repetitive),
            raw: Vec::new(),
        },
        Case {
            description: "four EDKs, one per provider (local, aws-kms, gcp-kms, vault-transit); Payload with \
                          two metadata entries and external payload sizes",
            label: "four-edks",
            namespace: "my_ns.a1b2c".into(),
            flags: 0,
            edks: vec![
                local_edk("four-edks", "main"),
                aws_edk("four-edks", "us-east-1", "mrk-1234abcd12ab34cd56ef1234567890ab"),
                gcp_edk("four-edks"),
                vault_edk("four-edks"),
            ],
            payload: Some(PayloadJson {
                metadata: BTreeMap::from([
                    ("encoding".into(), "json/protobuf".into()),
                    ("messageType".into(), "temporal.api.sdk.v1.ExternalStorageReference".into()),
                ]),
                data: r#"{"driverName":"s3","key":"ab/cd"}"#.into(),
                external_payload_sizes: vec![123, 4096],
            }),
            raw: Vec::new(),
        },
        Case {
            description: "1000 bytes of raw binary plaintext (not a Payload: the envelope itself does not care)",
            label: "binary",
            namespace: "default".into(),
            flags: 0,
            edks: vec![local_edk("binary", "dev")],
            payload: None,
            raw: bytes("binary/plaintext", 1000),
        },
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let suite = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["--suite", "1"] => SUITE_AES256GCM_HKDF_SHA512_COMMIT,
        ["--suite", "2"] => SUITE_AES256GCM_HKDF_SHA512_PER_KEY,
        _ => panic!("usage: envelope_vectors [--suite 1|2]"),
    };
    let mut vectors = Vec::new();
    for case in cases() {
        let dek_bytes: [u8; 32] = array(&format!("{}/dek", case.label));
        let message_id: [u8; 32] = array(&format!("{}/message-id", case.label));
        let iv = Iv(array(&format!("{}/iv", case.label)));
        let plaintext = match (&case.payload, case.flags & FLAG_ZSTD != 0) {
            (Some(p), false) => p.to_payload().encode_to_vec(),
            (Some(p), true) => zstd_compress(&p.to_payload().encode_to_vec()),
            (None, _) => case.raw.clone(),
        };
        let dek = DataKey::from_bytes(dek_bytes);
        let params =
            SealParams { suite, flags: case.flags, message_id, iv, namespace: &case.namespace, edks: &case.edks };
        let sealed = envelope::seal(&dek, &params, &plaintext).expect("seal");

        // The documented key schedules, with the one-shot HKDF (independent of the envelope code's).
        let (salt, key_info, commit_info) = match suite {
            SUITE_AES256GCM_HKDF_SHA512_COMMIT => {
                (message_id.to_vec(), [&b"TCE v1 key"[..], &suite.to_be_bytes()].concat(), b"TCE v1 commit".to_vec())
            }
            _ => (
                Vec::new(),
                [&b"TCE v1 key"[..], &suite.to_be_bytes()].concat(),
                [&b"TCE v1 commit"[..], &suite.to_be_bytes()].concat(),
            ),
        };
        let k_enc = kdf::hkdf_sha512(&salt, &dek_bytes, &key_info, 32).expect("hkdf");
        let commitment = kdf::hkdf_sha512(&salt, &dek_bytes, &commit_info, 32).expect("hkdf");
        let header_len = sealed.len() - plaintext.len() - 16;
        let mut aad = b"TCE v1".to_vec();
        aad.extend_from_slice(&sealed[..header_len]);
        aad.extend_from_slice(&(case.namespace.len() as u16).to_be_bytes());
        aad.extend_from_slice(case.namespace.as_bytes());

        vectors.push(Vector {
            description: case.description.into(),
            suite: (suite != SUITE_AES256GCM_HKDF_SHA512_COMMIT).then_some(suite),
            dek_hex: hex::encode(dek_bytes),
            message_id_hex: hex::encode(message_id),
            iv_hex: hex::encode(iv.0),
            namespace: case.namespace.clone(),
            flags: case.flags,
            edks: case
                .edks
                .iter()
                .map(|e| EdkJson {
                    provider: e.provider as u8,
                    kek_ref: e.kek_ref.clone(),
                    wrapped_hex: hex::encode(&e.wrapped),
                })
                .collect(),
            payload: case.payload,
            plaintext_hex: hex::encode(&plaintext),
            k_enc_hex: hex::encode(k_enc),
            commitment_hex: hex::encode(commitment),
            aad_hex: hex::encode(aad),
            envelope_hex: hex::encode(&sealed),
        });
    }
    println!("{}", serde_json::to_string_pretty(&vectors).expect("JSON"));
}
