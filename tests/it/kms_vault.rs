//! The `vault-transit` backend against a real OpenBao server on loopback (Vault's API): round trips
//! through the HTTP API, the namespace bound by the KMS itself, rotation and `min_decryption_version`,
//! no silent key creation, a KMS that stops mid-test, failover between KEKs, KMS call counts, TLS with a
//! CA bundle, OpenBao namespaces, token renewal / re-login with AppRole, and Kubernetes login (against a
//! FAKE TokenReview API) (SECURITY-TESTS 8, 12, 22, 23, 24).

use std::time::Duration;

use codec_server::config::{Config, Overrides};
use codec_server::kms::instrumented::KmsOp;
use codec_server::kms::vault::{VaultAuthConfig, VaultBackend, VaultBinding, VaultKmsConfig};
use codec_server::kms::{KekUri, KmsBackend, KmsContext, KmsError, Provider, WrappedKey};
use codec_server::protocol::Namespace;
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, payload, to_json};
use crate::support::kms::{calls, edk_keks, retry_after, rewrite_namespace, use_keyring, wrapped};
use crate::support::openbao::{OpenBao, TokenReviewFake};

const PAYMENTS: &str = "vault-transit://transit/payments";

/// A server whose every namespace seals with `keks`, talking to `bao`; `configure` adjusts the rest.
async fn app_with(bao: &OpenBao, keks: &[&str], configure: impl FnOnce(&mut Config)) -> TestApp {
    let vault = bao.kms_config();
    let keks: Vec<String> = keks.iter().map(|k| (*k).to_owned()).collect();
    TestApp::spawn_with(move |c| {
        c.kms.vault = Some(vault);
        use_keyring(c, &keks);
        configure(c);
    })
    .await
}

/// The KMS context as this test writes it independently: `{"codec":"tce-v1","namespace":"<ns>"}`.
fn context_json(namespace: &str) -> String {
    format!(r#"{{"codec":"tce-v1","namespace":"{namespace}"}}"#)
}

fn ctx(namespace: &str) -> KmsContext {
    KmsContext::for_namespace(&Namespace::parse(namespace).expect("valid namespace"))
}

fn kek(uri: &str) -> KekUri {
    KekUri::parse(uri).expect("valid KEK URI")
}

fn ciphertext(sealed: &codec_server::protocol::Payload) -> String {
    String::from_utf8(wrapped(sealed, 0)).expect("a Vault ciphertext is text")
}

#[tokio::test]
async fn payloads_round_trip_through_vault_transit_with_data_keys_from_openbao() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let app = app_with(&bao, &[PAYMENTS], |_| {}).await;
    let originals = vec![payload(b"{\"iban\":\"DE89 3704 0044 0532 0130 00\"}"), payload(b"")];

    let sealed = app.encode("payments", originals.clone()).await;
    app.state.codec.decrypt_cache().clear().await;
    let opened = app.decode("payments", &sealed).await;

    assert_eq!(opened, originals);
    assert_eq!(edk_keks(&sealed[0]), vec![(Provider::VaultTransit, PAYMENTS.to_owned())]);
    assert!(ciphertext(&sealed[0]).starts_with("vault:v1:"), "the EDK is the Transit ciphertext");
    assert_eq!(calls(&app, Provider::VaultTransit, KmsOp::GenerateDataKey).calls, 1);
    assert_eq!(calls(&app, Provider::VaultTransit, KmsOp::Unwrap).calls, 1);
}

#[tokio::test]
async fn openbao_itself_refuses_the_unwrap_when_the_header_namespace_was_rewritten() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let app = app_with(&bao, &[PAYMENTS], |_| {}).await;
    let sealed = app.encode("alpha", vec![payload(b"alpha's secret")]).await.remove(0);
    app.state.codec.decrypt_cache().clear().await;

    // Same length, so the envelope still parses and names namespace `bravo`.
    let forged = rewrite_namespace(&sealed, "bravo");
    let response = app.post_decode("bravo", std::slice::from_ref(&forged)).await;

    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains("decode-failed") && !body.contains("alpha's secret"), "{body}");
    let unwraps = calls(&app, Provider::VaultTransit, KmsOp::Unwrap);
    assert_eq!((unwraps.calls, unwraps.errors), (1, 1), "the request reached OpenBao, which refused it");
    // Straight at OpenBao: the wrapped key opens with alpha's associated data and with nothing else.
    let edk = ciphertext(&sealed);
    assert_eq!(bao.decrypt_status("payments", &edk, &context_json("alpha")).await, 200);
    assert_eq!(bao.decrypt_status("payments", &edk, &context_json("bravo")).await, 400);
}

#[tokio::test]
async fn an_edk_naming_a_vault_key_outside_the_namespace_keyring_causes_no_kms_call() {
    let bao = OpenBao::start().await;
    bao.create_key("alpha", "aes256-gcm96", false).await;
    bao.create_key("bravo", "aes256-gcm96", false).await;
    let app = app_with(&bao, &["vault-transit://transit/alpha"], |c| {
        c.keyrings.insert(
            "bravo".into(),
            codec_server::config::KeyringConfig {
                primary: vec!["vault-transit://transit/bravo".into()],
                decrypt_only: vec![],
            },
        );
        let mut bravo = c.namespaces[0].clone();
        (bravo.pattern, bravo.keyring) = ("bravo".into(), "bravo".into());
        c.namespaces.insert(0, bravo);
    })
    .await;
    let sealed = app.encode("alpha", vec![payload(b"alpha only")]).await.remove(0);
    app.state.codec.decrypt_cache().clear().await;
    let before = app.kms_calls();

    // Header says bravo; the only EDK names alpha's key, which bravo's keyring does not hold.
    let response = app.post_decode("bravo", &[rewrite_namespace(&sealed, "bravo")]).await;

    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "decode-failed");
    assert_eq!(app.kms_calls(), before, "no KMS call for a KEK outside the keyring");
}

#[tokio::test]
async fn derived_keys_bind_the_namespace_through_the_derivation_context() {
    let bao = OpenBao::start().await;
    bao.create_key("derived", "aes256-gcm96", true).await;
    let vault = bao.kms_config_with("method = \"token\"\ntoken = \"root\"", "binding = \"derivation-context\"");
    let app = TestApp::spawn_with(|c| {
        c.kms.vault = Some(vault);
        use_keyring(c, &["vault-transit://transit/derived".to_owned()]);
    })
    .await;

    let sealed = app.encode("alpha", vec![payload(b"derived")]).await;
    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(app.decode("alpha", &sealed).await, vec![payload(b"derived")]);
    let forged = rewrite_namespace(&sealed[0], "bravo");
    let response = app.post_decode("bravo", &[forged]).await;

    assert_eq!(response.status(), 400);
    let unwraps = calls(&app, Provider::VaultTransit, KmsOp::Unwrap);
    assert_eq!((unwraps.calls, unwraps.errors), (2, 1), "OpenBao derived another key for bravo and refused");
}

#[tokio::test]
async fn after_vault_rotate_payloads_sealed_before_and_after_both_decode() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    // One payload per data key, so the second encode asks OpenBao for a new one.
    let app = app_with(&bao, &[PAYMENTS], |c| c.cache.encrypt.max_payloads = 1).await;

    let before = app.encode("payments", vec![payload(b"before rotation")]).await;
    bao.rotate("payments").await;
    let after = app.encode("payments", vec![payload(b"after rotation")]).await;
    app.state.codec.decrypt_cache().clear().await;

    assert!(ciphertext(&before[0]).starts_with("vault:v1:"));
    assert!(ciphertext(&after[0]).starts_with("vault:v2:"), "new data keys use the new key version");
    let both = [before[0].clone(), after[0].clone()];
    assert_eq!(app.decode("payments", &both).await, vec![payload(b"before rotation"), payload(b"after rotation")]);
    assert_eq!(calls(&app, Provider::VaultTransit, KmsOp::Unwrap).calls, 2);
}

#[tokio::test]
async fn a_raised_min_decryption_version_is_a_clear_refusal_that_leaks_nothing() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let app = app_with(&bao, &[PAYMENTS], |c| c.cache.encrypt.max_payloads = 1).await;
    let old = app.encode("payments", vec![payload(b"card 4111 1111 1111 1111")]).await;
    bao.rotate("payments").await;
    bao.set_min_decryption_version("payments", 2).await;
    app.state.codec.decrypt_cache().clear().await;

    let response = app.post_decode("payments", &old).await;

    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "decode-failed");
    assert_eq!(body["error"]["indexes"], json!([0]));
    let text = body.to_string();
    for leak in ["4111", "vault:", "min_decryption", "policy", "transit"] {
        assert!(!text.contains(leak), "the error body mentions {leak:?}: {text}");
    }
    // Payloads sealed now still round-trip.
    let new = app.encode("payments", vec![payload(b"new")]).await;
    assert_eq!(app.decode("payments", &new).await, vec![payload(b"new")]);
    // For the operator, the backend's error names the KEK and says what happened.
    let backend = VaultBackend::new(&bao.kms_config(), vec![kek(PAYMENTS)]).unwrap();
    let refused = backend.unwrap(&kek(PAYMENTS), &WrappedKey(wrapped(&old[0], 0)), &ctx("payments")).await;
    let error = refused.expect_err("OpenBao refuses the retired key version");
    assert!(matches!(error, KmsError::KeyDisabled { .. }), "{error:?}");
    assert!(error.to_string().contains(PAYMENTS) && error.to_string().contains("retired"), "{error}");
}

#[tokio::test]
async fn encoding_with_a_missing_vault_key_fails_and_creates_no_key() {
    let bao = OpenBao::start().await;
    let secret = payload(b"must never come back unencrypted");
    // The missing key generates the data key (datakey/plaintext) …
    let generating = app_with(&bao, &["vault-transit://transit/ghost"], |_| {}).await;
    let response = generating.post("/encode", Some("payments"), &to_json(std::slice::from_ref(&secret))).await;
    assert_eq!(response.status(), 500);
    assert_eq!(error_code(response).await, "encode-failed");
    // … or wraps one made by another KEK (encrypt, which would create a missing key).
    let wrapping = app_with(&bao, &["local://dev", "vault-transit://transit/phantom"], |_| {}).await;
    let response = wrapping.post("/encode", Some("payments"), &to_json(std::slice::from_ref(&secret))).await;
    assert_eq!(response.status(), 500);
    let body = response.text().await.unwrap();
    assert!(body.contains("encode-failed") && !body.contains("unencrypted"), "{body}");

    assert_eq!(bao.key_names().await, Vec::<String>::new(), "no key was created");
    // What the check prevents: Transit's encrypt, as root, creates a key it does not find.
    bao.root("POST", "transit/encrypt/canary", json!({ "plaintext": "AAAA" })).await;
    assert_eq!(bao.key_names().await, vec!["canary".to_owned()]);
}

#[tokio::test]
async fn health_check_reports_missing_keys_and_keys_that_cannot_bind_the_namespace() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;

    let good = VaultBackend::new(&bao.kms_config(), vec![kek(PAYMENTS)]).unwrap();
    good.health_check().await.expect("an AEAD key with associated-data binding is usable");
    let missing = VaultBackend::new(&bao.kms_config(), vec![kek("vault-transit://transit/nope")]).unwrap();
    assert!(matches!(missing.health_check().await, Err(KmsError::KeyNotFound { .. })));
    let derived = bao.kms_config_with("method = \"token\"\ntoken = \"root\"", "binding = \"derivation-context\"");
    let mismatched = VaultBackend::new(&derived, vec![kek(PAYMENTS)]).unwrap();
    assert!(matches!(mismatched.health_check().await, Err(KmsError::KeyDisabled { .. })), "not a derived key");
    assert_eq!(bao.key_names().await, vec!["payments".to_owned()]);
}

#[tokio::test]
async fn with_openbao_stopped_cached_keys_decode_uncached_get_503_and_everything_recovers() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let app = app_with(&bao, &[PAYMENTS], |c| {
        c.cache.encrypt.max_payloads = 1;
        // A stopped server never answers: each attempt waits this long.
        c.kms.vault.as_mut().unwrap().call_timeout = Duration::from_millis(500);
    })
    .await;
    let warm = app.encode("payments", vec![payload(b"warm")]).await;
    let cold = app.encode("payments", vec![payload(b"cold")]).await;
    app.state.codec.decrypt_cache().clear().await;
    app.decode("payments", &warm).await;

    bao.pause();
    let cached = app.decode("payments", &warm).await;
    let uncached = app.post_decode("payments", &cold).await;
    let status = uncached.status();
    let uncached_retry = retry_after(&uncached);
    let encode = app.post("/encode", Some("payments"), &to_json(&[payload(b"new secret")])).await;
    let encode_status = encode.status();
    let encode_retry = retry_after(&encode);
    let encode_body = encode.text().await.unwrap();
    bao.resume();

    assert_eq!(cached, vec![payload(b"warm")], "a cached data key needs no KMS");
    assert_eq!(status, 503);
    assert!(uncached_retry.is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    assert_eq!(encode_status, 503, "encode never falls back to anything unencrypted");
    assert!(encode_retry.is_some() && !encode_body.contains("new secret") && !encode_body.contains("payloads"));
    assert_eq!(app.decode("payments", &cold).await, vec![payload(b"cold")], "recovered");
    let again = app.encode("payments", vec![payload(b"new secret")]).await;
    assert_eq!(app.decode("payments", &again).await, vec![payload(b"new secret")]);
}

#[tokio::test]
async fn with_one_of_two_keks_down_decode_goes_through_the_other_and_a_lone_kek_down_is_503() {
    let mut bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let app = app_with(&bao, &[PAYMENTS, "local://dev"], |c| {
        c.keyrings.insert(
            "vault-only".into(),
            codec_server::config::KeyringConfig { primary: vec![PAYMENTS.into()], decrypt_only: vec![] },
        );
        let mut ledger = c.namespaces[0].clone();
        (ledger.pattern, ledger.keyring) = ("ledger".into(), "vault-only".into());
        c.namespaces.insert(0, ledger);
    })
    .await;
    let two_keks = app.encode("payments", vec![payload(b"two KEKs")]).await;
    let one_kek = app.encode("ledger", vec![payload(b"one KEK")]).await;
    assert_eq!(edk_keks(&two_keks[0]).len(), 2);
    assert_eq!(edk_keks(&one_kek[0]).len(), 1);

    bao.kill();
    app.state.codec.decrypt_cache().clear().await;
    let opened = app.decode("payments", &two_keks).await;
    let lone = app.post_decode("ledger", &one_kek).await;

    assert_eq!(opened, vec![payload(b"two KEKs")]);
    assert!(calls(&app, Provider::VaultTransit, KmsOp::Unwrap).errors >= 1, "OpenBao was tried first");
    assert_eq!(calls(&app, Provider::Local, KmsOp::Unwrap).calls, 1, "then the local KEK opened it");
    assert_eq!(lone.status(), 503);
    assert!(retry_after(&lone).is_some());
}

#[tokio::test]
async fn ten_thousand_payloads_in_one_namespace_make_one_data_key_call_per_kek() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let app = app_with(&bao, &[PAYMENTS, "local://dev"], |_| {}).await;

    for batch in 0..10 {
        let payloads = (0..1000).map(|i| payload(format!("{{\"n\":{}}}", batch * 1000 + i).as_bytes())).collect();
        assert_eq!(app.encode("payments", payloads).await.len(), 1000);
    }

    assert_eq!(calls(&app, Provider::VaultTransit, KmsOp::GenerateDataKey).calls, 1);
    assert_eq!(calls(&app, Provider::Local, KmsOp::Wrap).calls, 1);
    assert_eq!(app.kms_calls(), 2, "no other KMS call of any kind");
}

#[tokio::test]
async fn two_hundred_concurrent_decodes_of_one_cold_data_key_make_one_unwrap() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let app = app_with(&bao, &[PAYMENTS], |_| {}).await;
    let sealed = app.encode("payments", vec![payload(b"shared data key")]).await;
    app.state.codec.decrypt_cache().clear().await;

    let opened = join_all((0..200).map(|_| app.decode("payments", &sealed))).await;

    assert!(opened.iter().all(|o| *o == vec![payload(b"shared data key")]));
    assert_eq!(calls(&app, Provider::VaultTransit, KmsOp::Unwrap).calls, 1);
}

#[tokio::test]
async fn the_configured_openbao_namespace_is_where_the_keys_are_found() {
    let bao = OpenBao::start().await;
    bao.namespace_with_key("team-a", "payments").await;
    let namespaced = bao.kms_config_with("method = \"token\"\ntoken = \"root\"", "namespace = \"team-a\"");
    let app = TestApp::spawn_with(|c| {
        c.kms.vault = Some(namespaced);
        use_keyring(c, &[PAYMENTS.to_owned()]);
    })
    .await;
    let sealed = app.encode("payments", vec![payload(b"in team-a")]).await;
    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(app.decode("payments", &sealed).await, vec![payload(b"in team-a")]);

    // The same KEK URI without the namespace names a key that does not exist at the root.
    let root = app_with(&bao, &[PAYMENTS], |_| {}).await;
    let response = root.post("/encode", Some("payments"), &to_json(&[payload(b"x")])).await;
    assert_eq!(response.status(), 500);
    assert_eq!(error_code(response).await, "encode-failed");
}

#[tokio::test]
async fn vault_over_tls_is_trusted_through_the_configured_ca_bundle_and_nothing_else() {
    let bao = OpenBao::start_tls().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let app = app_with(&bao, &[PAYMENTS], |_| {}).await;
    let sealed = app.encode("payments", vec![payload(b"over TLS")]).await;
    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(app.decode("payments", &sealed).await, vec![payload(b"over TLS")]);

    let untrusting = app_with(&bao, &[PAYMENTS], |c| c.kms.vault.as_mut().unwrap().ca_bundle = None).await;
    let response = untrusting.post("/encode", Some("payments"), &to_json(&[payload(b"x")])).await;

    assert_eq!(response.status(), 503, "the dev CA is not a system root");
    assert!(calls(&untrusting, Provider::VaultTransit, KmsOp::GenerateDataKey).errors >= 1, "OpenBao was tried");
}

/// AppRole login for `role` with these token settings.
async fn approle_config(bao: &OpenBao, role: &str, token_settings: Value) -> VaultKmsConfig {
    let (role_id, secret_id) = bao.approle(role, token_settings).await;
    bao.kms_config_with(&format!("method = \"approle\"\nrole_id = \"{role_id}\"\nsecret_id = \"{secret_id}\""), "")
}

/// Polls `done` every 50 ms for at most 60 s (the token TTLs are real time, in seconds).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_approle_token_is_renewed_before_its_ttl_and_replaced_by_a_new_login_at_its_max_ttl() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let config = approle_config(&bao, "codec", json!({ "token_ttl": "2s", "token_max_ttl": "8s" })).await;
    let backend = VaultBackend::new(&config, vec![kek(PAYMENTS)]).unwrap();
    let started = tokio::time::Instant::now();
    let (dek, wrapped) = backend.generate_data_key(&kek(PAYMENTS), &ctx("payments")).await.unwrap();
    assert_eq!(backend.token_stats().logins, 1);

    // Past the first token's 2 s TTL: it still works because it was renewed.
    eventually("the token was renewed and its first TTL has passed", || {
        backend.token_stats().renewals >= 1 && started.elapsed() > Duration::from_millis(2500)
    })
    .await;
    let stats = backend.token_stats();
    let unwrapped = backend.unwrap(&kek(PAYMENTS), &wrapped, &ctx("payments")).await.unwrap();
    assert_eq!(unwrapped.expose(), dek.expose());
    assert_eq!(stats.logins, 1, "renewal kept the first token alive past its TTL (the new login comes near 8 s)");

    // Renewal cannot pass the 8 s max TTL: the backend logs in again before the token dies.
    eventually("a second login happened", || backend.token_stats().logins >= 2).await;
    eventually("the first token's max TTL has passed", || started.elapsed() > Duration::from_millis(8500)).await;
    let unwrapped = backend.unwrap(&kek(PAYMENTS), &wrapped, &ctx("payments")).await.unwrap();
    assert_eq!(unwrapped.expose(), dek.expose());
}

#[tokio::test]
async fn a_token_that_vault_stops_accepting_is_replaced_by_a_new_login() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    // Each token is good for two requests, then OpenBao revokes it.
    let config = approle_config(&bao, "short", json!({ "token_num_uses": 2, "token_ttl": "1h" })).await;
    let backend = VaultBackend::new(&config, vec![kek(PAYMENTS)]).unwrap();

    let (dek, wrapped) = backend.generate_data_key(&kek(PAYMENTS), &ctx("payments")).await.unwrap();
    backend.unwrap(&kek(PAYMENTS), &wrapped, &ctx("payments")).await.unwrap();
    let third = backend.unwrap(&kek(PAYMENTS), &wrapped, &ctx("payments")).await.unwrap();

    assert_eq!(third.expose(), dek.expose());
    assert_eq!(backend.token_stats().logins, 2, "the refused call logged in again and was retried once");
}

#[tokio::test]
async fn kubernetes_auth_logs_in_with_the_service_account_jwt_read_again_at_every_login() {
    let bao = OpenBao::start().await;
    bao.create_key("payments", "aes256-gcm96", false).await;
    let review = TokenReviewFake::start("temporal", "codec-server", "6d1c5e0a-4c55-4f0e-9b1e-2f1f3c0c7a11");
    // Each token is good for two requests, so the third call needs a new login.
    let token = json!({ "token_num_uses": 2, "token_ttl": "1h" });
    bao.kubernetes_role(&review.url, "codec", "temporal", "codec-server", token).await;
    let dir = tempfile::tempdir().unwrap();
    let jwt_file = dir.path().join("token");
    let auth = |file: &std::path::Path| {
        format!("method = \"kubernetes\"\nrole = \"codec\"\njwt_file = {:?}", file.display().to_string())
    };
    let backend = VaultBackend::new(&bao.kms_config_with(&auth(&jwt_file), ""), vec![kek(PAYMENTS)]).unwrap();
    let first = review.issue(1);
    std::fs::write(&jwt_file, format!("{first}\n")).unwrap();

    let (dek, wrapped) = backend.generate_data_key(&kek(PAYMENTS), &ctx("payments")).await.unwrap();
    // The kubelet rotates the projected token; the next login must send the new one.
    let second = review.issue(2);
    std::fs::write(&jwt_file, &second).unwrap();
    backend.unwrap(&kek(PAYMENTS), &wrapped, &ctx("payments")).await.unwrap();
    let third = backend.unwrap(&kek(PAYMENTS), &wrapped, &ctx("payments")).await.unwrap();

    assert_eq!(third.expose(), dek.expose());
    assert_eq!(backend.token_stats().logins, 2);
    assert_eq!(review.reviewed(), vec![first, second], "each login sent the token then in the file");
    // A token the cluster does not vouch for gets no Vault token.
    let stranger = dir.path().join("stranger");
    let unvouched = review.unvouched(3);
    std::fs::write(&stranger, &unvouched).unwrap();
    let refused = VaultBackend::new(&bao.kms_config_with(&auth(&stranger), ""), vec![kek(PAYMENTS)]).unwrap();
    let error = refused.generate_data_key(&kek(PAYMENTS), &ctx("payments")).await.map(|_| ()).unwrap_err();
    assert!(matches!(error, KmsError::AccessDenied { .. }), "{error:?}");
    assert_eq!(review.reviewed().last(), Some(&unvouched), "OpenBao asked the cluster, which said no");
}

#[test]
fn a_vault_kek_without_a_kms_vault_section_is_refused_with_how_to_fix_it() {
    let mut config = Config::dev();
    use_keyring(&mut config, &[PAYMENTS.to_owned()]);

    let message = format!("{:#}", config.validate().unwrap_err());

    assert!(message.contains("keyrings.kms") && message.contains("[kms.vault]"), "{message}");
    assert!(message.contains("approle") && message.contains("config/vault.toml"), "{message}");
}

#[test]
fn the_annotated_vault_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vault.toml");
    let (config, _) = Config::load(Some(&path), &Overrides::default()).expect("config/vault.toml must load");

    let vault = config.kms.vault.expect("a [kms.vault] section");
    assert_eq!(vault.binding, VaultBinding::AssociatedData);
    assert!(matches!(vault.auth, VaultAuthConfig::Kubernetes { ref role, .. } if role == "codec-server"));
    assert!(config.keyrings.values().flat_map(|k| &k.primary).all(|uri| uri.starts_with("vault-transit://")));
}

#[test]
fn check_config_takes_the_approle_secret_id_from_a_file_and_never_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vault.toml");
    let secret = dir.path().join("secret-id");
    std::fs::write(&secret, "5ecre7-1d-from-a-file\n").unwrap();
    let toml = format!(
        "data_dir = {:?}\n[auth]\nmode = \"disabled\"\n[kms.vault]\naddress = \"https://vault.example.com:8200\"\n\
         [kms.vault.auth]\nmethod = \"approle\"\nrole_id = \"codec\"\nsecret_id = \"from-the-file\"\n\
         [keyrings.k]\nprimary = [\"{PAYMENTS}\"]\n[[namespaces]]\nmatch = \"*\"\nkeyring = \"k\"\n",
        dir.path().display().to_string()
    );
    std::fs::write(&file, toml).unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_codec-server"))
        .args(["check-config", "--config", file.to_str().unwrap()])
        .env("CODEC_KMS__VAULT__AUTH__SECRET_ID_FILE", &secret)
        .env_remove("CODEC_CONFIG")
        .output()
        .expect("run codec-server");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("method = \"approle\"") && stdout.contains("secret_id = \"<redacted>\""), "{stdout}");
    assert!(!stdout.contains("5ecre7") && !stdout.contains("from-the-file"), "{stdout}");
}
