//! Data-key caching: limits force new keys, cold caches make one KMS call, and a payload cannot pick
//! its KEK (SECURITY-TESTS 8, 9, 15, 16).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use codec_server::codec::envelope::{self, Edk, SealParams};
use codec_server::codec::{ENVELOPE_ENCODING, aead};
use codec_server::config::{KeyringConfig, NamespaceRule};
use codec_server::kms::instrumented::KmsOp;
use codec_server::kms::local::LocalBackend;
use codec_server::kms::{DataKey, KekUri, KmsBackend, KmsContext, Provider, WrappedKey};
use codec_server::protocol::{Namespace, Payload};
use futures_util::future::join_all;
use prost::Message;

use crate::helpers::{TestApp, error_code, payload};

fn data_key_calls(app: &TestApp) -> u64 {
    app.state.kms_stats.get(Provider::Local, KmsOp::GenerateDataKey).calls
}

fn unwrap_calls(app: &TestApp) -> u64 {
    app.state.kms_stats.get(Provider::Local, KmsOp::Unwrap).calls
}

/// The wrapped DEK of a sealed payload identifies the data key it was sealed with.
fn wrapped_dek(sealed: &Payload) -> Vec<u8> {
    envelope::parse(&sealed.data).unwrap().edks[0].wrapped.clone()
}

#[tokio::test]
async fn a_thousand_concurrent_encodes_on_a_cold_cache_make_one_data_key() {
    let app = TestApp::spawn().await;
    let requests = (0..1000).map(|i| app.encode("default", vec![payload(format!("{{\"n\":{i}}}").as_bytes())]));
    let sealed: Vec<Payload> = join_all(requests).await.into_iter().flatten().collect();

    assert_eq!(sealed.len(), 1000);
    assert_eq!(data_key_calls(&app), 1);
    assert_eq!(app.state.codec.encrypt_cache().keys_created(), 1);
    let distinct: std::collections::HashSet<_> = sealed.iter().map(wrapped_dek).collect();
    assert_eq!(distinct.len(), 1);
}

#[tokio::test]
async fn the_payload_limit_forces_a_new_key_and_is_never_exceeded_under_concurrency() {
    // The hard limit alone: no renewal ahead of it.
    let app = TestApp::spawn_with(|c| {
        c.cache.encrypt.max_payloads = 10;
        c.cache.encrypt.renew_before = Duration::ZERO;
    })
    .await;
    let requests = (0..500).map(|_| app.encode("default", vec![payload(b"{}")]));
    let sealed: Vec<Payload> = join_all(requests).await.into_iter().flatten().collect();

    let mut per_key: HashMap<Vec<u8>, usize> = HashMap::new();
    for s in &sealed {
        *per_key.entry(wrapped_dek(s)).or_default() += 1;
    }
    assert!(per_key.values().all(|n| *n <= 10), "a key sealed more than 10 payloads: {per_key:?}");
    assert_eq!(per_key.len(), 50, "500 payloads at 10 per key need exactly 50 keys");
    assert_eq!(data_key_calls(&app), 50);
}

#[tokio::test]
async fn max_payloads_of_one_gives_a_fresh_data_key_per_payload() {
    let app = TestApp::spawn_with(|c| c.cache.encrypt.max_payloads = 1).await;
    let sealed = app.encode("default", vec![payload(b"1"), payload(b"2"), payload(b"3")]).await;
    assert_eq!(data_key_calls(&app), 3);
    let distinct: std::collections::HashSet<_> = sealed.iter().map(wrapped_dek).collect();
    assert_eq!(distinct.len(), 3);
}

#[tokio::test]
async fn payloads_of_one_request_under_alternating_data_keys_each_open_with_their_own_key() {
    // One data key per payload, so three keys; the decoder keeps the last key of a request for the
    // next payload with the same EDK, and must never hand a payload the key of another.
    let app = TestApp::spawn_with(|c| c.cache.encrypt.max_payloads = 1).await;
    let plain = [payload(b"\"a\""), payload(b"\"b\""), payload(b"\"c\"")];
    let sealed = app.encode("default", plain.to_vec()).await;
    assert_eq!(sealed.iter().map(wrapped_dek).collect::<std::collections::HashSet<_>>().len(), 3);
    let order = [0, 1, 1, 0, 2, 2, 2, 1, 0];
    let request: Vec<Payload> = order.iter().map(|&i| sealed[i].clone()).collect();
    let cache = app.state.codec.decrypt_cache();
    let (hits, misses, unwraps) = (cache.hits(), cache.misses(), unwrap_calls(&app));

    let decoded = app.decode("default", &request).await;
    assert_eq!(decoded, order.iter().map(|&i| plain[i].clone()).collect::<Vec<_>>());
    // Every payload is counted once, as a key found or a key unwrapped; each key is unwrapped once.
    assert_eq!((cache.hits() - hits) + (cache.misses() - misses), order.len() as u64);
    assert_eq!(unwrap_calls(&app) - unwraps, cache.misses() - misses);
    assert!(cache.misses() - misses <= 3);

    // A payload whose EDK matches the last one but whose ciphertext was sealed under another key fails
    // the tag check: reusing the key by EDK opens nothing it should not.
    let mut forged = sealed[1].clone();
    let foreign = envelope::parse(&sealed[0].data).unwrap();
    let own = envelope::parse(&forged.data).unwrap();
    assert_ne!(foreign.edks, own.edks);
    forged.data = splice_edks(&sealed[1].data, &own.edks[0].wrapped, &foreign.edks[0].wrapped).into();
    let response = app.post_decode("default", &[sealed[0].clone(), forged]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "decode-failed");
}

/// `data` with the wrapped-key bytes `from` replaced by `to` (same length), as a forger would.
fn splice_edks(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = data.windows(from.len()).position(|w| w == from).expect("wrapped key in the envelope");
    let mut out = data.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    out
}

#[tokio::test]
async fn the_age_limit_forces_a_new_key_with_time_stepped_not_slept() {
    let app = TestApp::spawn_with(|c| {
        c.cache.encrypt.max_age = Duration::from_secs(300);
        c.cache.encrypt.renew_before = Duration::ZERO;
    })
    .await;
    let first = app.encode("default", vec![payload(b"a")]).await;
    app.clock.advance(Duration::from_secs(299));
    let second = app.encode("default", vec![payload(b"b")]).await;
    assert_eq!(wrapped_dek(&first[0]), wrapped_dek(&second[0]), "still within max_age");
    app.clock.advance(Duration::from_secs(1));
    let third = app.encode("default", vec![payload(b"c")]).await;
    assert_ne!(wrapped_dek(&second[0]), wrapped_dek(&third[0]), "max_age reached: new key");
    assert_eq!(data_key_calls(&app), 2);
}

#[tokio::test]
async fn the_next_key_is_made_in_the_background_before_the_age_limit() {
    let app = TestApp::spawn().await;
    let first = app.encode("default", vec![payload(b"a")]).await;
    // Past max_age - renew_before (5 min - 1 min, jittered by up to 15 s), before max_age.
    app.clock.advance(Duration::from_secs(270));
    let second = app.encode("default", vec![payload(b"b")]).await;
    assert_eq!(wrapped_dek(&first[0]), wrapped_dek(&second[0]), "the old key serves while the next is made");
    let cache = app.state.codec.encrypt_cache();
    for _ in 0..500 {
        if cache.rotations(codec_server::kms::encrypt_cache::RotationReason::Scheduled) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let third = app.encode("default", vec![payload(b"c")]).await;
    assert_ne!(wrapped_dek(&second[0]), wrapped_dek(&third[0]), "the renewed key is in use");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("codec_dek_rotations_total{reason=\"scheduled\"} 1"), "{metrics}");
    assert!(metrics.contains("codec_dek_rotations_total{reason=\"on-demand\"} 1"), "only the cold start waited");
    assert_eq!(data_key_calls(&app), 2);
}

#[tokio::test]
async fn the_byte_limit_forces_a_new_key() {
    let app = TestApp::spawn_with(|c| {
        c.server.max_body_bytes = 4096;
        c.cache.encrypt.max_bytes = 5000;
        c.cache.encrypt.renew_before = Duration::ZERO;
    })
    .await;
    let body = vec![b'x'; 2000];
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(wrapped_dek(&app.encode("default", vec![payload(&body)]).await[0]));
    }
    // ~2 KB of plaintext per payload, 5000 bytes per key: two payloads per key.
    assert_eq!(keys[0], keys[1]);
    assert_ne!(keys[1], keys[2]);
    assert_eq!(keys[2], keys[3]);
    assert_ne!(keys[3], keys[4]);
    assert_eq!(data_key_calls(&app), 3);
}

#[tokio::test]
async fn two_hundred_concurrent_decodes_of_one_cold_key_make_one_unwrap() {
    let app = TestApp::spawn().await;
    let sealed = app.encode("default", (0..200).map(|i| payload(&[i as u8])).collect()).await;
    assert_eq!(unwrap_calls(&app), 0);
    let decodes = sealed.iter().map(|s| app.decode("default", std::slice::from_ref(s)));
    let opened: Vec<Payload> = join_all(decodes).await.into_iter().flatten().collect();
    assert_eq!(opened.len(), 200);
    assert_eq!(unwrap_calls(&app), 1);
}

/// Two namespaces, each with its own keyring and local KEK; the key directory is shared so a second
/// server can be configured differently over the same keys.
fn two_keyrings(c: &mut codec_server::config::Config, key_dir: &std::path::Path) {
    c.kms.local.key_dir = Some(key_dir.to_path_buf());
    c.keyrings.clear();
    c.keyrings.insert("ring-a".into(), KeyringConfig { primary: vec!["local://ka".into()], decrypt_only: vec![] });
    c.keyrings.insert("ring-b".into(), KeyringConfig { primary: vec!["local://kb".into()], decrypt_only: vec![] });
    c.namespaces = vec![
        NamespaceRule {
            pattern: "alpha".into(),
            keyring: "ring-a".into(),
            compress: false,
            decode_failure: Default::default(),
        },
        NamespaceRule {
            pattern: "*".into(),
            keyring: "ring-b".into(),
            compress: false,
            decode_failure: Default::default(),
        },
    ];
}

#[tokio::test]
async fn an_edk_whose_kek_is_outside_the_namespace_keyring_gets_no_kms_call() {
    let keys = tempfile::tempdir().unwrap();
    let sealer = TestApp::spawn_with(|c| two_keyrings(c, keys.path())).await;
    let sealed = sealer.encode("alpha", vec![payload(b"{\"secret\":1}")]).await;
    assert_eq!(envelope::parse(&sealed[0].data).unwrap().edks[0].kek_ref, "local://ka");

    // Same keys, but now `alpha` maps to ring-b: the payload's KEK is not in its keyring.
    let reader = TestApp::spawn_with(|c| {
        two_keyrings(c, keys.path());
        c.namespaces.remove(0);
    })
    .await;
    let response = reader.post_decode("alpha", &sealed).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "decode-failed");
    assert_eq!(reader.kms_calls(), 0, "a KEK outside the keyring must never reach a KMS");
}

/// Seals `plaintext` under `sealing_dek`, with EDKs that wrap *different* DEKs (an attacker's envelope).
async fn envelope_with_disagreeing_edks(
    backend: &LocalBackend,
    namespace: &Namespace,
    edks: &[(&str, &DataKey)],
    sealing_dek: &DataKey,
) -> Payload {
    let ctx = KmsContext::for_namespace(namespace);
    let mut wrapped = Vec::new();
    for (kek, dek) in edks {
        let uri = KekUri::parse(kek).unwrap();
        let WrappedKey(bytes) = backend.wrap(&uri, dek, &ctx).await.unwrap();
        wrapped.push(Edk { provider: Provider::Local, kek_ref: (*kek).into(), wrapped: bytes });
    }
    let plaintext = payload(b"{\"evil\":true}").encode_to_vec();
    let params = SealParams {
        suite: envelope::SUITE_AES256GCM_HKDF_SHA512_PER_KEY,
        flags: 0,
        message_id: envelope::random_message_id(),
        iv: aead::Iv::random(),
        namespace: namespace.as_str(),
        edks: &wrapped,
    };
    let data = envelope::seal(sealing_dek, &params, &plaintext).unwrap();
    let mut sealed = payload(&data);
    sealed.metadata.insert("encoding".into(), ENVELOPE_ENCODING.as_bytes().to_vec());
    sealed
}

#[tokio::test]
async fn edks_that_unwrap_to_different_keys_fail_on_every_path_without_falling_through() {
    let keys = tempfile::tempdir().unwrap();
    let both = |c: &mut codec_server::config::Config| {
        two_keyrings(c, keys.path());
        c.keyrings.get_mut("ring-a").unwrap().decrypt_only = vec!["local://kb".into()];
    };
    let app = TestApp::spawn_with(both).await;
    let backend = Arc::new(LocalBackend::load(keys.path(), &["ka".into(), "kb".into()]).unwrap());
    let ns = Namespace::parse("alpha").unwrap();
    let (dek1, dek2) = (DataKey::random(), DataKey::random());

    // Sealed under DEK1, but the first EDK (kb) wraps DEK2: the commitment check stops it, and the
    // decoder must not go on to the second EDK.
    let attack =
        envelope_with_disagreeing_edks(&backend, &ns, &[("local://kb", &dek2), ("local://ka", &dek1)], &dek1).await;
    let response = app.post_decode("alpha", std::slice::from_ref(&attack)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(unwrap_calls(&app), 1, "no fall-through to another EDK after a commitment mismatch");

    // The other orientation: sealed under DEK2 with ka (first) wrapping DEK1.
    let attack =
        envelope_with_disagreeing_edks(&backend, &ns, &[("local://ka", &dek1), ("local://kb", &dek2)], &dek2).await;
    let response = app.post_decode("alpha", std::slice::from_ref(&attack)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(unwrap_calls(&app), 2);
}
