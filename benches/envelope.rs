//! Envelope and AES-256-GCM throughput: what one payload costs to seal and open, next to the raw AEAD
//! of aws-lc-rs (what `codec::aead` uses) and of RustCrypto `aes-gcm` (the alternative), at 1 KiB,
//! 64 KiB and 1 MiB. Results and the machine they were measured on: `docs/benchmarks.md`.
//!
//! `cargo bench --bench envelope` measures; `cargo test --benches` runs every function once.

use std::hint::black_box;

use aes_gcm::aead::{Aead, KeyInit, Payload as AeadPayload};
use codec_server::codec::aead::{self, Iv};
use codec_server::codec::envelope::{self, Edk, SealParams};
use codec_server::kms::{DataKey, Provider};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [(&str, usize); 3] = [("1 KiB", 1 << 10), ("64 KiB", 64 << 10), ("1 MiB", 1 << 20)];
const KEY: [u8; 32] = [0x11; 32];
const AAD: &[u8] = b"TCE v1 benchmark associated data";

fn edks() -> Vec<Edk> {
    // Shaped like a real AWS KMS EDK (~184-byte ciphertext blob).
    vec![Edk {
        provider: Provider::AwsKms,
        kek_ref: "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
        wrapped: vec![0xab; 184],
    }]
}

fn bench(c: &mut Criterion) {
    let dek = DataKey::from_bytes(KEY);
    let edks = edks();
    let rustcrypto = aes_gcm::Aes256Gcm::new_from_slice(&KEY).expect("32-byte key");
    let nonce = aes_gcm::Nonce::from([0x22; 12]);
    for (name, size) in SIZES {
        let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 + i / 253) as u8).collect();
        let mut group = c.benchmark_group(format!("seal-open/{name}"));
        group.throughput(Throughput::Bytes(size as u64));

        // The whole per-payload cost: fresh message id and IV, key schedule, header, AEAD.
        group.bench_function("envelope seal", |b| {
            b.iter(|| {
                let params = SealParams {
                    suite: envelope::SUITE_AES256GCM_HKDF_SHA512_PER_KEY,
                    flags: 0,
                    message_id: envelope::random_message_id(),
                    iv: Iv::random(),
                    namespace: "payments-prod",
                    edks: &edks,
                };
                envelope::seal(&dek, &params, black_box(&plaintext)).expect("seal")
            })
        });

        let params = SealParams {
            suite: envelope::SUITE_AES256GCM_HKDF_SHA512_PER_KEY,
            flags: 0,
            message_id: envelope::random_message_id(),
            iv: Iv::random(),
            namespace: "payments-prod",
            edks: &edks,
        };
        let sealed = envelope::seal(&dek, &params, &plaintext).expect("seal");
        group.bench_function("envelope open (parse+open)", |b| {
            b.iter(|| {
                let parsed = envelope::parse(black_box(&sealed)).expect("parse");
                parsed.open(&dek, "payments-prod").expect("open")
            })
        });

        let iv = Iv([0x22; 12]);
        group.bench_function("AES-256-GCM seal, aws-lc-rs (codec::aead)", |b| {
            b.iter(|| aead::seal(&KEY, &iv, AAD, black_box(&plaintext)).expect("seal"))
        });
        group.bench_function("AES-256-GCM seal, RustCrypto aes-gcm 0.11", |b| {
            b.iter(|| rustcrypto.encrypt(&nonce, AeadPayload { msg: black_box(&plaintext), aad: AAD }).expect("seal"))
        });
        group.finish();

        // The two AEADs must agree, or the comparison measures different work.
        assert_eq!(
            aead::seal(&KEY, &iv, AAD, &plaintext).expect("seal"),
            rustcrypto.encrypt(&nonce, AeadPayload { msg: &plaintext, aad: AAD }).expect("seal")
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
