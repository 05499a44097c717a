//! Small helpers shared by the KMS backend tests (`kms_aws`, `kms_gcp`, `kms_faults`): keyring
//! configuration, KMS call counters, and envelope surgery for the namespace-binding cases.

// Shared by several test files: not every test uses every helper.
#![allow(dead_code)]

use codec_server::codec::envelope::{self, MESSAGE_ID_LEN};
use codec_server::config::{Config, KeyringConfig, NamespaceRule};
use codec_server::kms::Provider;
use codec_server::kms::instrumented::{CallCounts, KmsOp};
use codec_server::protocol::Payload;

use crate::helpers::{TestApp, edit_data};

/// Makes `primary` (KEK URIs) the only keyring every namespace uses.
pub fn use_keyring(config: &mut Config, primary: &[String]) {
    config.keyrings.insert("kms".into(), KeyringConfig { primary: primary.to_vec(), decrypt_only: Vec::new() });
    config.namespaces = vec![NamespaceRule {
        pattern: "*".into(),
        keyring: "kms".into(),
        compress: false,
        decode_failure: Default::default(),
    }];
}

/// Counters of one provider and operation.
pub fn calls(app: &TestApp, provider: Provider, op: KmsOp) -> CallCounts {
    app.state.kms_stats.get(provider, op)
}

/// Offset of the namespace length in an envelope: magic, suite, flags, message id.
const NAMESPACE_LEN_AT: usize = 4 + 2 + 1 + MESSAGE_ID_LEN;

/// The same envelope with its header namespace replaced by `to` (same length, so no other field moves).
pub fn rewrite_namespace(sealed: &Payload, to: &str) -> Payload {
    let parsed = envelope::parse(&sealed.data).expect("one of our envelopes");
    assert_eq!(parsed.namespace.len(), to.len(), "the test rewrites in place");
    let at = NAMESPACE_LEN_AT + 2;
    let mut forged = sealed.clone();
    edit_data(&mut forged, |data| data[at..at + to.len()].copy_from_slice(to.as_bytes()));
    assert_eq!(envelope::parse(&forged.data).expect("still parses").namespace, to);
    forged
}

/// The wrapped data key of the envelope's EDK number `i`.
pub fn wrapped(sealed: &Payload, i: usize) -> Vec<u8> {
    envelope::parse(&sealed.data).expect("one of our envelopes").edks[i].wrapped.clone()
}

/// `(provider, KEK URI)` of every EDK of an envelope.
pub fn edk_keks(sealed: &Payload) -> Vec<(Provider, String)> {
    envelope::parse(&sealed.data)
        .expect("one of our envelopes")
        .edks
        .into_iter()
        .map(|e| (e.provider, e.kek_ref))
        .collect()
}

/// The `Retry-After` header of a response, if any.
pub fn retry_after(response: &reqwest::Response) -> Option<String> {
    response.headers().get("retry-after").map(|v| v.to_str().expect("ASCII header").to_owned())
}

/// A payload as Temporal Proxy writes it (`binary/encrypted`): `nonce || AES-256-GCM(dek, Payload)` with
/// no associated data, sealed with RustCrypto's `aes-gcm` (not the server's aws-lc), the Payload
/// `{"encoding": "json/plain"}` + `data` written as protobuf by hand; `wrapped_dek` is the base64 text
/// of the KMS ciphertext, as the proxy stores it.
pub fn sealed_like_the_proxy(kek_uri: &str, wrapped_dek: &str, dek: &[u8; 32], data: &str) -> Payload {
    use aes_gcm::aead::{Aead, KeyInit};
    let data_field = [&[0x12, u8::try_from(data.len()).expect("short data")][..], data.as_bytes()].concat();
    let inner = [&b"\x0a\x16\x0a\x08encoding\x12\x0ajson/plain"[..], &data_field].concat();
    let nonce = [5u8; 12];
    let sealed = aes_gcm::Aes256Gcm::new_from_slice(dek)
        .unwrap()
        .encrypt(&aes_gcm::Nonce::from(nonce), inner.as_slice())
        .unwrap();
    let mut proxy_payload = crate::helpers::payload(b"");
    proxy_payload.metadata.insert("encoding".into(), b"binary/encrypted".to_vec());
    proxy_payload.metadata.insert("encryption-key-id".into(), kek_uri.as_bytes().to_vec());
    proxy_payload.metadata.insert("encryption-dek".into(), wrapped_dek.as_bytes().to_vec());
    proxy_payload.data = [nonce.to_vec(), sealed].concat().into();
    proxy_payload
}
