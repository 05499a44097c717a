//! The samples' `binary/encrypted` decoder with its zlib/gzip/snappy layers, and the Temporal Proxy
//! format, as `codec::decode` runs them.
//!
//! The first byte picks a mode; the rest is the input:
//! 0. a protobuf Payload as stored in history, decoded with the legacy keys (tampered ciphertext);
//! 1. the inner plaintext, sealed here with the fixed legacy key, then decoded: reaches
//!    `Payload::decode_bounded` and the nested decompression within the budget;
//! 2. Temporal Proxy `data` opened with a fixed data key (tampered ciphertext);
//! 3. the proxy's inner plaintext, sealed here, then opened and decoded as the server does;
//! 4+. one decompression (the second byte picks the kind) within the budget.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use codec_server::codec::aead::{self, Iv};
use codec_server::codec::compression::{self, Compression};
use codec_server::codec::legacy::{KEY_ID_METADATA, LEGACY_ENCODING, LegacyError, LegacyKey, LegacyKeys};
use codec_server::codec::proxy;
use codec_server::kms::DataKey;
use codec_server::protocol::{Namespace, Payload};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use prost::bytes::Bytes;

const LEGACY_KEY: [u8; 32] = [0x5a; 32];
const LEGACY_KEY_ID: &str = "fuzz-key";
const PROXY_DEK: [u8; 32] = [0x3c; 32];
const IV: [u8; 12] = [0x01; 12];
/// Per-request decompression budget (smaller than the server's default so executions stay fast).
const BUDGET: usize = 1 << 20;
/// The configuration default for nested layers.
const MAX_DEPTH: usize = 4;

fn keys() -> &'static LegacyKeys {
    static KEYS: OnceLock<LegacyKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = LegacyKey { key: DataKey::from_bytes(LEGACY_KEY), namespaces: vec!["default".into(), "pay*".into()] };
        LegacyKeys::new(HashMap::from([(LEGACY_KEY_ID.to_owned(), key)]), MAX_DEPTH)
    })
}

fn namespace() -> Namespace {
    Namespace::parse("default").expect("namespace")
}

fn legacy_payload(data: Vec<u8>) -> Payload {
    let mut p = Payload { data: data.into(), ..Payload::default() };
    p.metadata.insert("encoding".into(), LEGACY_ENCODING.as_bytes().to_vec());
    p.metadata.insert(KEY_ID_METADATA.into(), LEGACY_KEY_ID.as_bytes().to_vec());
    p
}

fn sealed(key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let iv = Iv(IV);
    [IV.as_slice(), &aead::seal(key, &iv, &[], plaintext).expect("seal")].concat()
}

fn is_compressed(p: &Payload) -> bool {
    matches!(p.encoding(), Some("binary/zlib" | "binary/snappy" | "binary/gzip"))
}

fn decode_legacy(payload: &Payload) {
    let mut budget = BUDGET;
    match keys().decode(payload, &namespace(), &mut budget) {
        Ok(Some(inner)) => assert!(!is_compressed(&inner), "a compressed layer came back"),
        Ok(None) | Err(_) => {}
    }
    assert!(budget <= BUDGET);
}

fn decompress(kind: u8, data: &[u8]) {
    let kind = match kind % 4 {
        0 => Compression::Zstd,
        1 => Compression::Zlib,
        2 => Compression::Gzip,
        _ => Compression::Snappy,
    };
    let limit = 1 << 16;
    let mut budget = limit;
    match compression::decompress_within(kind, data, &mut budget) {
        Ok(bytes) => assert_eq!(budget + bytes.len(), limit),
        Err(_) => assert_eq!(budget, 0),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode {
        0 => {
            if let Ok(payload) = Payload::decode_bounded(Bytes::copy_from_slice(rest)) {
                decode_legacy(&payload);
                let _ = proxy::is_proxy_payload(&payload);
                let _ = proxy::wrapped_dek(&payload);
            }
        }
        1 => {
            let payload = legacy_payload(sealed(&LEGACY_KEY, rest));
            decode_legacy(&payload);
            let mut budget = BUDGET;
            let direct = keys().decode(&payload, &namespace(), &mut budget);
            if Payload::decode_bounded(Bytes::copy_from_slice(rest)).is_err() {
                assert_eq!(direct, Err(LegacyError::NotAPayload));
            }
        }
        2 => {
            let _ = proxy::open(&DataKey::from_bytes(PROXY_DEK), rest);
        }
        3 => {
            let dek = DataKey::from_bytes(PROXY_DEK);
            let plain = proxy::open(&dek, &sealed(&PROXY_DEK, rest)).expect("open what we sealed");
            assert_eq!(plain, rest);
            if let Ok(inner) = Payload::decode_bounded(plain.into()) {
                // Re-encoding a decoded Payload decodes to the same Payload.
                assert_eq!(Payload::decode_bounded(inner.encode_to_vec().into()).as_ref(), Ok(&inner));
            }
        }
        _ => {
            if let Some((&kind, packed)) = rest.split_first() {
                decompress(kind, packed);
            }
        }
    }
});
