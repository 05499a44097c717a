//! The `gcp-kms` backend (Google's official client) against the Cloud KMS FAKE in
//! `support/gcp_fake.rs` — a fake, because no GCP KMS emulator exists: AAD binding, CRC32C integrity
//! checks in both directions, the key name of answers, and rotation (SECURITY-TESTS 12, 20).

use std::sync::atomic::Ordering;

use codec_server::config::{Config, Overrides};
use codec_server::kms::Provider;
use codec_server::kms::instrumented::KmsOp;

use crate::helpers::{TestApp, error_code, payload, to_json};
use crate::support::gcp_fake::GcpKmsFake;
use crate::support::kms::{calls, edk_keks, retry_after, rewrite_namespace, use_keyring, wrapped};

/// The encrypt cache's default max age, and a little more: the next encode makes a new data key.
const PAST_DEK_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(301);

/// A server whose every namespace seals with `key` of the FAKE Cloud KMS.
async fn app_with(fake: &GcpKmsFake, key: &str) -> TestApp {
    TestApp::spawn_with(|c| {
        c.kms.gcp.endpoint = Some(fake.endpoint.clone());
        c.kms.gcp.anonymous = true;
        use_keyring(c, &[format!("gcp-kms://{key}")]);
    })
    .await
}

#[tokio::test]
async fn payloads_round_trip_through_the_gcp_kms_fake() {
    let fake = GcpKmsFake::start();
    let key = fake.create_key("codec", "payments");
    let app = app_with(&fake, &key).await;
    let originals = vec![payload(b"{\"iban\":\"DE89 3704 0044 0532 0130 00\"}"), payload(b"second")];

    let sealed = app.encode("payments", originals.clone()).await;
    app.state.codec.decrypt_cache().clear().await;
    let opened = app.decode("payments", &sealed).await;

    assert_eq!(opened, originals);
    assert_eq!(edk_keks(&sealed[0]), vec![(Provider::GcpKms, format!("gcp-kms://{key}"))]);
    assert_eq!((fake.encrypts(), fake.decrypts()), (1, 1));
}

#[tokio::test]
async fn the_kms_refuses_the_unwrap_when_the_header_namespace_was_rewritten() {
    let fake = GcpKmsFake::start();
    let key = fake.create_key("codec", "ns");
    let app = app_with(&fake, &key).await;
    let sealed = app.encode("alpha", vec![payload(b"alpha only")]).await.remove(0);
    app.state.codec.decrypt_cache().clear().await;

    let response = app.post_decode("bravo", &[rewrite_namespace(&sealed, "bravo")]).await;

    assert_eq!(response.status(), 400);
    let unwraps = calls(&app, Provider::GcpKms, KmsOp::Unwrap);
    assert_eq!((unwraps.calls, unwraps.errors), (1, 1), "the AAD named bravo and the KMS refused it");
    assert_eq!(app.decode("alpha", &[sealed]).await, vec![payload(b"alpha only")]);
}

#[tokio::test]
async fn a_ciphertext_checksum_mismatch_is_discarded_and_retried_then_ends_in_503() {
    let fake = GcpKmsFake::start();
    let key = fake.create_key("codec", "crc");
    let app = app_with(&fake, &key).await;

    fake.switches().corrupt_ciphertext_crc.store(1, Ordering::SeqCst);
    let sealed = app.encode("default", vec![payload(b"crc")]).await;
    assert_eq!(fake.encrypts(), 2, "the corrupted answer was discarded and the call made again");
    assert_eq!(app.decode("default", &sealed).await, vec![payload(b"crc")]);

    // Every attempt corrupted: one call and two retries, then 503 with Retry-After and no plaintext.
    app.clock.advance(PAST_DEK_MAX_AGE);
    fake.switches().corrupt_ciphertext_crc.store(100, Ordering::SeqCst);
    let response = app.post("/encode", Some("default"), &to_json(&[payload(b"crc-secret")])).await;
    assert_eq!(response.status(), 503);
    assert!(retry_after(&response).is_some());
    assert!(!response.text().await.unwrap().contains("crc-secret"));
    assert_eq!(fake.encrypts(), 5);
}

#[tokio::test]
async fn an_answer_the_kms_did_not_verify_is_discarded_and_retried() {
    let fake = GcpKmsFake::start();
    let key = fake.create_key("codec", "verified");
    let app = app_with(&fake, &key).await;

    fake.switches().unverified_plaintext.store(1, Ordering::SeqCst);
    let first = app.encode("default", vec![payload(b"one")]).await;
    assert_eq!(fake.encrypts(), 2, "verifiedPlaintextCrc32c = false: discarded and retried");

    app.clock.advance(PAST_DEK_MAX_AGE);
    fake.switches().unverified_aad.store(1, Ordering::SeqCst);
    let second = app.encode("default", vec![payload(b"two")]).await;
    assert_eq!(fake.encrypts(), 4, "verifiedAdditionalAuthenticatedDataCrc32c = false: discarded and retried");

    assert_ne!(wrapped(&first[0], 0), wrapped(&second[0], 0));
    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(
        app.decode("default", &[first[0].clone(), second[0].clone()]).await,
        vec![payload(b"one"), payload(b"two")]
    );
}

#[tokio::test]
async fn a_plaintext_checksum_mismatch_on_decrypt_is_discarded_and_retried() {
    let fake = GcpKmsFake::start();
    let key = fake.create_key("codec", "plain-crc");
    let app = app_with(&fake, &key).await;
    let sealed = app.encode("default", vec![payload(b"plain")]).await;
    app.state.codec.decrypt_cache().clear().await;

    fake.switches().corrupt_plaintext_crc.store(1, Ordering::SeqCst);
    assert_eq!(app.decode("default", &sealed).await, vec![payload(b"plain")]);

    assert_eq!(fake.decrypts(), 2);
}

#[tokio::test]
async fn an_answer_naming_another_key_is_rejected_without_retry() {
    let fake = GcpKmsFake::start();
    let key = fake.create_key("codec", "named");
    let app = app_with(&fake, &key).await;
    fake.switches().other_key_name.store(true, Ordering::SeqCst);

    let response = app.post("/encode", Some("default"), &to_json(&[payload(b"named-secret")])).await;

    assert_eq!(response.status(), 500);
    assert_eq!(error_code(response).await, "encode-failed");
    assert_eq!(fake.encrypts(), 1);
}

#[tokio::test]
async fn after_key_rotation_old_and_new_payloads_decode() {
    let fake = GcpKmsFake::start();
    let key = fake.create_key("codec", "rotating");
    let app = app_with(&fake, &key).await;
    let before = app.encode("default", vec![payload(b"version 1")]).await;

    fake.rotate(&key);
    app.clock.advance(PAST_DEK_MAX_AGE);
    let after = app.encode("default", vec![payload(b"version 2")]).await;
    app.state.codec.decrypt_cache().clear().await;

    assert_eq!(wrapped(&before[0], 0)[..4], [0, 0, 0, 1], "the fake's ciphertext names version 1");
    assert_eq!(wrapped(&after[0], 0)[..4], [0, 0, 0, 2]);
    assert_eq!(app.decode("default", &before).await, vec![payload(b"version 1")]);
    assert_eq!(app.decode("default", &after).await, vec![payload(b"version 2")]);
}

#[test]
fn the_annotated_gcp_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gcp.toml");
    let (config, _) = Config::load(Some(&path), &Overrides::default()).expect("config/gcp.toml must load");

    assert!(config.keyrings.values().flat_map(|k| &k.primary).all(|uri| uri.starts_with("gcp-kms://projects/")));
    assert!(!config.kms.gcp.anonymous);
}

#[test]
fn anonymous_credentials_are_refused_unless_the_endpoint_is_on_loopback() {
    let mut config = Config::dev();
    use_keyring(&mut config, &["gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k".to_owned()]);
    config.kms.gcp.anonymous = true;
    for endpoint in [None, Some("https://cloudkms.googleapis.com"), Some("http://127.0.0.1.example.com:80")] {
        config.kms.gcp.endpoint = endpoint.map(str::to_owned);
        let message = format!("{:#}", config.validate().unwrap_err());
        assert!(message.contains("[kms.gcp]") && message.contains("loopback"), "{message}");
    }
    for endpoint in ["http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000"] {
        config.kms.gcp.endpoint = Some(endpoint.to_owned());
        config.validate().unwrap_or_else(|e| panic!("{endpoint}: {e:#}"));
    }
    config.keyrings.get_mut("kms").unwrap().primary = vec!["gcp-kms://projects/p/locations/l/keyRings/r".into()];
    let message = format!("{:#}", config.validate().unwrap_err());
    assert!(message.contains("cryptoKeys/<k>"), "{message}");
}
