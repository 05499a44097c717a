//! The per-payload pieces of a decode request, one by one, so a change to any of them shows its effect:
//! the `Payloads` JSON parse and write (1 and 20 payloads of a 1 KiB "order" document), lenient base64
//! (1 KiB, 1 MiB), the envelope's HKDF-SHA-512 key schedule, AES-256-GCM seal and open (1 KiB, 1 MiB)
//! and the protobuf encoding of a `Payload`. The whole envelope is in `benches/envelope.rs`; the HTTP
//! view is `scripts/bench.sh`. Method and numbers: `docs/performance.md`.
//!
//! `cargo bench --bench payload_pieces` measures; `cargo test --benches` runs every function once.

use std::collections::BTreeMap;
use std::hint::black_box;

use codec_server::codec::aead::{self, Iv};
use codec_server::codec::kdf;
use codec_server::protocol::{Payload, Payloads, base64_lenient};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;

const KEY: [u8; 32] = [0x11; 32];
const AAD: &[u8] = b"TCE v1 benchmark associated data";
const SIZES: [(&str, usize); 2] = [("1 KiB", 1 << 10), ("1 MiB", 1 << 20)];

/// A 1 KiB JSON order, shaped like the documents the official samples' workflows carry.
fn order_json(n: usize) -> Vec<u8> {
    let mut doc = format!(
        r#"{{"orderId":"ORD-{n:08}","customer":{{"id":"C-{n:06}","name":"Customer {n}","email":"customer{n}@example.com","phone":"+1-555-0100"}},"shipping":{{"street":"{n} Main Street","city":"Springfield","zip":"12345","country":"US"}},"items":["#
    );
    for i in 0..6 {
        doc.push_str(&format!(
            r#"{{"sku":"SKU-{i:04}","name":"Item number {i}","qty":{q},"price":{p}.99}},"#,
            q = i + 1,
            p = 10 * i + 9
        ));
    }
    doc.pop();
    doc.push_str(r#"],"status":"PENDING","note":""#);
    while doc.len() < 1024 - 2 {
        doc.push('x');
    }
    doc.push_str("\"}");
    assert_eq!(doc.len(), 1024, "the order document is 1 KiB");
    doc.into_bytes()
}

fn payload(data: Vec<u8>) -> Payload {
    Payload {
        metadata: BTreeMap::from([("encoding".to_owned(), b"json/plain".to_vec())]),
        data: data.into(),
        external_payloads: Vec::new(),
    }
}

fn bench_json(c: &mut Criterion) {
    let mut group = c.benchmark_group("json");
    for count in [1usize, 20] {
        let body = Payloads { payloads: (0..count).map(|n| payload(order_json(n))).collect() }.to_json();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("parse {count}x1KiB"), |b| {
            b.iter(|| Payloads::from_json_bounded(black_box(&body), 1000).expect("parse"))
        });
        let parsed = Payloads::from_json(&body).expect("parse");
        group.bench_function(format!("write {count}x1KiB"), |b| b.iter(|| black_box(&parsed).to_json()));
    }
    group.finish();
}

fn bench_base64(c: &mut Criterion) {
    let mut group = c.benchmark_group("base64");
    for (name, size) in SIZES {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 + i / 253) as u8).collect();
        let text = base64_lenient::encode(&bytes);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("encode {name}"), |b| b.iter(|| base64_lenient::encode(black_box(&bytes))));
        group.bench_function(format!("decode {name}"), |b| {
            b.iter(|| base64_lenient::decode(black_box(&text)).expect("base64"))
        });
        // The `base64` crate, which this server used before base64-simd: the comparison in one run.
        use base64::Engine;
        let scalar = base64::engine::general_purpose::STANDARD;
        group.bench_function(format!("encode {name}, base64 crate"), |b| b.iter(|| scalar.encode(black_box(&bytes))));
        group.bench_function(format!("decode {name}, base64 crate"), |b| {
            b.iter(|| scalar.decode(black_box(&text)).expect("base64"))
        });
    }
    group.finish();
}

fn bench_key_schedule(c: &mut Criterion) {
    // The envelope's per-payload schedule: extract with the message id as salt, then expand the
    // encryption key and the commitment (the labels of docs/envelope-format.md).
    let message_id = [0x42u8; 32];
    c.bench_function("HKDF-SHA-512 key schedule of suite 0x0001 (extract + 2 expands)", |b| {
        b.iter(|| {
            let prk = kdf::extract(black_box(&message_id), &KEY);
            let mut k_enc = [0u8; 32];
            let mut commitment = [0u8; 32];
            prk.expand_into(&[b"TCE v1 key", &1u16.to_be_bytes()], &mut k_enc).expect("expand");
            prk.expand_into(&[b"TCE v1 commit"], &mut commitment).expect("expand");
            (k_enc, commitment)
        })
    });
}

fn bench_aes_key_setup(c: &mut Criterion) {
    // What suite 0x0002 still pays per payload besides the AEAD: the AES key expansion and GHASH table
    // (its key schedule is derived once per data key).
    c.bench_function("AES-256-GCM key setup", |b| {
        b.iter(|| {
            aws_lc_rs::aead::LessSafeKey::new(
                aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, black_box(&KEY)).expect("key"),
            )
        })
    });
}

fn bench_aead(c: &mut Criterion) {
    let iv = Iv([0x22; 12]);
    let mut group = c.benchmark_group("AES-256-GCM");
    for (name, size) in SIZES {
        let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 + i / 253) as u8).collect();
        let sealed = aead::seal(&KEY, &iv, AAD, &plaintext).expect("seal");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("seal {name}"), |b| {
            b.iter(|| aead::seal(&KEY, &iv, AAD, black_box(&plaintext)).expect("seal"))
        });
        group.bench_function(format!("open {name}"), |b| {
            b.iter(|| aead::open(&KEY, &iv, AAD, black_box(&sealed)).expect("open"))
        });
    }
    group.finish();
}

fn bench_protobuf(c: &mut Criterion) {
    let mut group = c.benchmark_group("protobuf Payload");
    for (name, data) in [("1 KiB", order_json(0)), ("1 MiB", vec![b'x'; 1 << 20])] {
        let payload = payload(data);
        let bytes = bytes::Bytes::from(payload.encode_to_vec());
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("encode {name}"), |b| b.iter(|| black_box(&payload).encode_to_vec()));
        group.bench_function(format!("decode {name}"), |b| {
            b.iter(|| Payload::decode_bounded(black_box(bytes.clone())).expect("decode"))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_json,
    bench_base64,
    bench_key_schedule,
    bench_aes_key_setup,
    bench_aead,
    bench_protobuf
);
criterion_main!(benches);
