//! KMS faults with real servers (DESIGN §5, SECURITY-TESTS 19 and 23): throttling and 5xx are retried
//! a bounded number of times and then answered with 503 + `Retry-After` (encode never returns
//! plaintext); a KMS process stopped mid-test leaves cached data keys working, and encodes arriving
//! together at a hung KMS share one call's failure instead of queueing behind each other; a keyring with KEKs in
//! two KMSs decodes through whichever is up; refusals are remembered briefly so a flood of payloads
//! whose key is refused does not hammer the KMS.

use std::sync::atomic::Ordering;
use std::time::Duration;

use codec_server::kms::Provider;
use codec_server::kms::instrumented::KmsOp;

use crate::helpers::{TestApp, error_code, payload, to_json};
use crate::support::gcp_fake::GcpKmsFake;
use crate::support::kms::{calls, edk_keks, retry_after, use_keyring};
use crate::support::moto::{KmsProxy, MotoServer, use_endpoint};

/// A short deadline, so tests against a frozen KMS wait ~1 s rather than ~6 s.
const SHORT_CALL_TIMEOUT: Duration = Duration::from_millis(300);

/// An app whose KEK is a new key in `moto`, reached through a counting, tampering proxy.
async fn aws_app_behind_proxy(moto: &MotoServer) -> (KmsProxy, TestApp) {
    let key = moto.create_key("eu-west-1").await;
    let proxy = KmsProxy::start(&moto.url);
    let app = aws_app(&proxy.url, &key).await;
    (proxy, app)
}

async fn aws_app(endpoint: &str, arn: &str) -> TestApp {
    TestApp::spawn_with(|c| {
        use_endpoint(c, endpoint);
        c.kms.aws.call_timeout = SHORT_CALL_TIMEOUT;
        use_keyring(c, &[format!("aws-kms://{arn}")]);
    })
    .await
}

#[tokio::test]
async fn throttling_is_retried_and_the_request_still_succeeds() {
    let moto = MotoServer::shared();
    let (proxy, app) = aws_app_behind_proxy(moto).await;
    let sealed = app.encode("default", vec![payload(b"throttled")]).await;
    app.state.codec.decrypt_cache().clear().await;

    proxy.throttle_next(2);
    let opened = app.decode("default", &sealed).await;

    assert_eq!(opened, vec![payload(b"throttled")]);
    assert_eq!(proxy.count("Decrypt"), 3, "two throttled attempts, then one that went through");
    let unwraps = calls(&app, Provider::AwsKms, KmsOp::Unwrap);
    assert_eq!((unwraps.calls, unwraps.errors), (3, 2));
}

#[tokio::test]
async fn a_failing_kms_gets_two_retries_then_503_with_retry_after_and_encode_returns_no_plaintext() {
    let moto = MotoServer::shared();
    let (proxy, app) = aws_app_behind_proxy(moto).await;
    let sealed = app.encode("warm", vec![payload(b"sealed before the outage")]).await;
    app.state.codec.decrypt_cache().clear().await;

    proxy.set_down(true);
    let encode = app.post("/encode", Some("cold"), &to_json(&[payload(b"plaintext-4111")])).await;
    assert_eq!(encode.status(), 503);
    assert_eq!(retry_after(&encode).as_deref(), Some("2"));
    let body = encode.text().await.unwrap();
    assert!(!body.contains("plaintext-4111") && !body.contains("cGxhaW50ZXh0LTQxMTE"), "{body}");
    assert_eq!(proxy.count("GenerateDataKey"), 1 + 3, "one before the outage, then one call and two retries");

    let decode = app.post_decode("warm", &sealed).await;
    assert_eq!(decode.status(), 503);
    assert!(retry_after(&decode).is_some());
    assert_eq!(error_code(decode).await, "kms-unavailable");
    assert_eq!(proxy.count("Decrypt"), 3);

    proxy.set_down(false);
    assert_eq!(app.decode("warm", &sealed).await, vec![payload(b"sealed before the outage")]);
    assert_eq!(app.encode("cold", vec![payload(b"after")]).await.len(), 1);
}

#[tokio::test]
async fn a_stopped_kms_process_leaves_cached_keys_working_fails_uncached_ones_with_503_and_recovers() {
    let moto = MotoServer::start();
    let key = moto.create_key("eu-west-1").await;
    let app = aws_app(&moto.url, &key).await;
    let cached = app.encode("warm", vec![payload(b"cached key")]).await;
    assert_eq!(app.decode("warm", &cached).await, vec![payload(b"cached key")]);
    let uncached = app.encode("cold", vec![payload(b"uncached key")]).await;
    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(app.decode("warm", &cached).await, vec![payload(b"cached key")]);

    // SIGSTOP: the process holds its port but answers nothing, so every call runs into its deadline.
    moto.pause();
    let warm = app.decode("warm", &cached).await;
    let cold = app.post_decode("cold", &uncached).await;
    let cold_status = cold.status();
    let cold_retry_after = retry_after(&cold);
    let still_encodes = app.encode("warm", vec![payload(b"sealed during the outage")]).await;
    moto.resume();

    assert_eq!(warm, vec![payload(b"cached key")], "a cached data key needs no KMS");
    assert_eq!(cold_status, 503);
    assert!(cold_retry_after.is_some());
    assert_eq!(still_encodes.len(), 1, "the cached encrypt data key still seals");
    assert_eq!(app.decode("cold", &uncached).await, vec![payload(b"uncached key")], "recovered");
    assert_eq!(app.decode("warm", &still_encodes).await, vec![payload(b"sealed during the outage")]);
}

#[tokio::test]
async fn encodes_arriving_together_at_a_hung_kms_share_one_call_instead_of_queueing_behind_each_other() {
    let moto = MotoServer::start();
    let (proxy, app) = aws_app_behind_proxy(&moto).await;

    // SIGSTOP: every call runs into its 300 ms deadline, so one call with its two retries takes over 1 s,
    // and the 20 encodes below all arrive while the first one's call is running.
    moto.pause();
    let body = to_json(&[payload(b"sealed in an outage")]);
    let encodes = futures_util::future::join_all((0..20).map(|_| app.post("/encode", Some("cold"), &body))).await;
    moto.resume();

    let statuses: Vec<u16> = encodes.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    assert!(encodes.iter().all(|r| retry_after(r).is_some()));
    // The encodes that waited for the failed call got its failure. Calling in turn, as before, made
    // 60 calls (20 x 3) and answered the last encode after ~20 s.
    let attempts = proxy.count("GenerateDataKey");
    assert!((3..=9).contains(&attempts), "{attempts} GenerateDataKey calls for 20 encodes");
    assert_eq!(app.encode("cold", vec![payload(b"after the outage")]).await.len(), 1, "recovered");
}

#[tokio::test]
async fn a_stopped_gcp_kms_leaves_cached_keys_working_fails_uncached_ones_with_503_and_recovers() {
    let mut fake = GcpKmsFake::start();
    let key = fake.create_key("codec", "outage");
    let app = TestApp::spawn_with(|c| {
        c.kms.gcp.endpoint = Some(fake.endpoint.clone());
        c.kms.gcp.anonymous = true;
        use_keyring(c, &[format!("gcp-kms://{key}")]);
    })
    .await;
    let cached = app.encode("warm", vec![payload(b"cached")]).await;
    let uncached = app.encode("cold", vec![payload(b"uncached")]).await;
    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(app.decode("warm", &cached).await, vec![payload(b"cached")]);

    fake.stop().await;
    assert_eq!(app.decode("warm", &cached).await, vec![payload(b"cached")]);
    let cold = app.post_decode("cold", &uncached).await;
    assert_eq!(cold.status(), 503);
    assert!(retry_after(&cold).is_some());

    fake.restart();
    assert_eq!(app.decode("cold", &uncached).await, vec![payload(b"uncached")]);
}

#[tokio::test]
async fn with_kek_in_two_kms_decode_goes_through_the_one_that_is_up_and_503_when_both_are_down() {
    let moto = MotoServer::shared();
    let aws_key = moto.create_key("eu-west-1").await;
    let proxy = KmsProxy::start(&moto.url);
    let mut fake = GcpKmsFake::start();
    let gcp_key = fake.create_key("codec", "dr");
    let app = TestApp::spawn_with(|c| {
        use_endpoint(c, &proxy.url);
        c.kms.gcp.endpoint = Some(fake.endpoint.clone());
        c.kms.gcp.anonymous = true;
        use_keyring(c, &[format!("aws-kms://{aws_key}"), format!("gcp-kms://{gcp_key}")]);
    })
    .await;
    let sealed = app.encode("default", vec![payload(b"two keks")]).await;
    let providers: Vec<Provider> = edk_keks(&sealed[0]).into_iter().map(|(p, _)| p).collect();
    assert_eq!(providers, vec![Provider::AwsKms, Provider::GcpKms], "every primary KEK wrapped the data key");

    // AWS down: the first EDK fails after its retries, the second opens the payload.
    proxy.set_down(true);
    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(app.decode("default", &sealed).await, vec![payload(b"two keks")]);
    assert_eq!(fake.decrypts(), 1);

    // Both down: 503.
    fake.stop().await;
    app.state.codec.decrypt_cache().clear().await;
    let response = app.post_decode("default", &sealed).await;
    assert_eq!(response.status(), 503);
    assert!(retry_after(&response).is_some());

    // AWS back, GCP still down: the first EDK opens it.
    proxy.set_down(false);
    assert_eq!(app.decode("default", &sealed).await, vec![payload(b"two keks")]);
}

#[tokio::test]
async fn a_flood_of_payloads_whose_key_is_refused_makes_one_kms_call() {
    let fake = GcpKmsFake::start();
    let key = fake.create_key("codec", "revoked");
    let app = TestApp::spawn_with(|c| {
        c.kms.gcp.endpoint = Some(fake.endpoint.clone());
        c.kms.gcp.anonymous = true;
        use_keyring(c, &[format!("gcp-kms://{key}")]);
    })
    .await;
    // 50 payloads under one data key carry the same EDK bytes.
    let sealed = app.encode("default", (0..50).map(|i| payload(format!("{i}").as_bytes())).collect()).await;
    app.state.codec.decrypt_cache().clear().await;

    fake.switches().permission_denied.store(true, Ordering::SeqCst);
    let response = app.post_decode("default", &sealed).await;

    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["indexes"].as_array().map(Vec::len), Some(50));
    assert_eq!(fake.decrypts(), 1, "the refusal was remembered for the other 49");
}
