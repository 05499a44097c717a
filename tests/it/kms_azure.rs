//! The `azure-keyvault` backend (Microsoft's official SDK crates) against the Key Vault FAKE in
//! `support/azure_fake.rs` — a fake, because no Key Vault emulator can be installed here. The fake does
//! real RSA-OAEP-256, Key Vault's authentication challenge and the workload-identity token exchange, so
//! these tests drive the production credential and client code over HTTPS on loopback.
//!
//! Key Vault's wrap has no associated data: the namespace binding of an Azure-wrapped data key comes
//! from the envelope's AEAD (a rewritten namespace unwraps at Key Vault, then fails to open).

use codec_server::config::{AzureCredentialKind, Config, KeyringConfig};
use codec_server::kms::Provider;
use codec_server::kms::instrumented::KmsOp;

use crate::helpers::{TestApp, edit_data, error_code, payload, to_json};
use crate::support::azure_fake::{AzureKeyVaultFake, CLIENT_ID, TENANT};
use crate::support::kms::{calls, edk_keks, retry_after, rewrite_namespace, use_keyring, wrapped};

const VAULT: &str = "codec-test.vault.azure.net";
/// The encrypt cache's default max age, and a little more: the next encode makes a new data key.
const PAST_DEK_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(301);

/// `[kms.azure]` pointed at the FAKE, with the workload-identity credential (the AKS path).
fn use_fake(c: &mut Config, fake: &AzureKeyVaultFake) {
    let azure = &mut c.kms.azure;
    azure.endpoint = Some(fake.endpoint.clone());
    azure.authority_host = Some(fake.endpoint.clone());
    azure.ca_file = Some(fake.ca_file.clone());
    azure.credential = Some(AzureCredentialKind::WorkloadIdentity);
    azure.tenant_id = Some(TENANT.into());
    azure.client_id = Some(CLIENT_ID.into());
    azure.federated_token_file = Some(fake.token_file.clone());
}

/// A server whose every namespace seals with `kek` of the FAKE Key Vault.
async fn app_with(fake: &AzureKeyVaultFake, kek: &str) -> TestApp {
    let kek = kek.to_owned();
    TestApp::spawn_with(|c| {
        use_fake(c, fake);
        use_keyring(c, &[kek]);
    })
    .await
}

#[tokio::test]
async fn payloads_round_trip_through_the_azure_key_vault_fake_with_workload_identity() {
    let fake = AzureKeyVaultFake::start(VAULT);
    let kek = fake.create_key("payments");
    let app = app_with(&fake, &kek).await;
    let originals = vec![payload(b"{\"iban\":\"DE89 3704 0044 0532 0130 00\"}"), payload(b"second")];

    let sealed = app.encode("payments", originals.clone()).await;
    app.state.codec.decrypt_cache().clear().await;
    let opened = app.decode("payments", &sealed).await;

    assert_eq!(opened, originals);
    assert_eq!(edk_keks(&sealed[0]), vec![(Provider::AzureKeyVault, kek)]);
    assert_eq!((fake.calls("wrapkey"), fake.calls("unwrapkey")), (1, 1));
    assert_eq!(fake.calls("token"), 1, "one workload-identity token exchange, then cached");
    assert!(fake.api_versions().iter().all(|v| v == "2025-07-01"), "{:?}", fake.api_versions());
    let version = fake.current_version("payments");
    let edk = wrapped(&sealed[0], 0);
    assert_eq!((edk[0], usize::from(edk[1])), (1, version.len()), "format byte and version length");
    assert_eq!(&edk[2..2 + version.len()], version.as_bytes(), "the wrapped key records the key version");
    assert_eq!(edk.len(), 2 + version.len() + 256, "an RSA-2048 OAEP ciphertext");
}

#[tokio::test]
async fn a_rewritten_namespace_unwraps_at_key_vault_but_never_opens() {
    let fake = AzureKeyVaultFake::start(VAULT);
    let kek = fake.create_key("ns");
    let app = app_with(&fake, &kek).await;
    let sealed = app.encode("alpha", vec![payload(b"alpha only")]).await.remove(0);
    app.state.codec.decrypt_cache().clear().await;

    let response = app.post_decode("bravo", &[rewrite_namespace(&sealed, "bravo")]).await;

    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "decode-failed");
    // Key Vault's wrap has no AAD, so the KMS cannot refuse: the envelope's AEAD does.
    let unwraps = calls(&app, Provider::AzureKeyVault, KmsOp::Unwrap);
    assert_eq!((unwraps.calls, unwraps.errors), (1, 0), "Key Vault unwrapped; the AEAD refused");
    assert_eq!(app.decode("alpha", &[sealed]).await, vec![payload(b"alpha only")]);
}

#[tokio::test]
async fn a_tampered_wrapped_key_fails_with_decode_failed() {
    let fake = AzureKeyVaultFake::start(VAULT);
    let kek = fake.create_key("tamper");
    let app = app_with(&fake, &kek).await;
    let sealed = app.encode("default", vec![payload(b"tamper-secret")]).await.remove(0);
    app.state.codec.decrypt_cache().clear().await;

    // Flip one bit of the RSA ciphertext inside the EDK (its last byte).
    let edk = wrapped(&sealed, 0);
    let at = sealed.data.windows(edk.len()).position(|w| w == edk.as_slice()).expect("the EDK in the envelope");
    let mut tampered = sealed.clone();
    edit_data(&mut tampered, |data| data[at + edk.len() - 1] ^= 1);
    assert_ne!(wrapped(&tampered, 0), edk);

    let response = app.post_decode("default", &[tampered]).await;

    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains("\"decode-failed\"") && !body.contains("tamper-secret"), "{body}");
    assert_eq!(fake.calls("unwrapkey"), 1, "Key Vault really tried and refused (RSA-OAEP)");
    let unwraps = calls(&app, Provider::AzureKeyVault, KmsOp::Unwrap);
    assert_eq!((unwraps.calls, unwraps.errors), (1, 1), "a refusal is final: no retry");
}

#[tokio::test]
async fn the_fake_down_gives_503_with_retry_after_and_recovers() {
    let mut fake = AzureKeyVaultFake::start(VAULT);
    let kek = fake.create_key("outage");
    let app = app_with(&fake, &kek).await;
    let cached = app.encode("warm", vec![payload(b"cached")]).await;
    let uncached = app.encode("cold", vec![payload(b"uncached")]).await;
    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(app.decode("warm", &cached).await, vec![payload(b"cached")]);

    fake.stop().await;
    assert_eq!(app.decode("warm", &cached).await, vec![payload(b"cached")], "cached keys still work");
    let cold = app.post_decode("cold", &uncached).await;
    assert_eq!(cold.status(), 503);
    assert!(retry_after(&cold).is_some());
    assert_eq!(error_code(cold).await, "kms-unavailable");
    app.clock.advance(PAST_DEK_MAX_AGE);
    let encode = app.post("/encode", Some("warm"), &to_json(&[payload(b"outage-secret")])).await;
    assert_eq!(encode.status(), 503);
    assert!(!encode.text().await.unwrap().contains("outage-secret"), "encode never returns plaintext");

    fake.restart();
    assert_eq!(app.decode("cold", &uncached).await, vec![payload(b"uncached")], "recovered");
}

#[tokio::test]
async fn a_503_from_key_vault_is_retried_twice_then_answered_with_503() {
    let fake = AzureKeyVaultFake::start(VAULT);
    let kek = fake.create_key("throttled");
    let app = app_with(&fake, &kek).await;
    let sealed = app.encode("default", vec![payload(b"x")]).await;
    app.state.codec.decrypt_cache().clear().await;
    let before = fake.calls("unwrapkey");

    fake.switches().unavailable.store(true, std::sync::atomic::Ordering::SeqCst);
    let response = app.post_decode("default", &sealed).await;

    assert_eq!(response.status(), 503);
    assert_eq!(calls(&app, Provider::AzureKeyVault, KmsOp::Unwrap).calls, 3, "one call and two retries");
    assert_eq!(fake.calls("unwrapkey"), before, "the 503s came before any key operation");
}

#[tokio::test]
async fn a_kek_outside_the_namespaces_keyring_is_never_sent_to_key_vault() {
    let fake = AzureKeyVaultFake::start(VAULT);
    let theirs = fake.create_key("theirs");
    let ours = fake.create_key("ours");
    // Sealed by a server whose keyring has `theirs`.
    let sealed = app_with(&fake, &theirs).await.encode("default", vec![payload(b"theirs")]).await;
    let app = app_with(&fake, &ours).await;
    let key_operations = || ["unwrapkey", "decrypt", "wrapkey", "encrypt"].map(|op| fake.calls(op));
    let before = key_operations();

    let response = app.post_decode("default", &sealed).await;

    assert_eq!(response.status(), 400);
    assert_eq!(key_operations(), before, "not one key operation reached Key Vault");
    assert_eq!(calls(&app, Provider::AzureKeyVault, KmsOp::Unwrap).calls, 0);
}

#[tokio::test]
async fn after_key_rotation_old_and_new_payloads_decode() {
    let fake = AzureKeyVaultFake::start(VAULT);
    let kek = fake.create_key("rotating");
    let app = app_with(&fake, &kek).await;
    let before = app.encode("default", vec![payload(b"version 1")]).await;
    let v1 = fake.current_version("rotating");

    let v2 = fake.rotate("rotating");
    app.clock.advance(PAST_DEK_MAX_AGE);
    let after = app.encode("default", vec![payload(b"version 2")]).await;
    app.state.codec.decrypt_cache().clear().await;

    assert_eq!(&wrapped(&before[0], 0)[2..2 + v1.len()], v1.as_bytes());
    assert_eq!(&wrapped(&after[0], 0)[2..2 + v2.len()], v2.as_bytes());
    assert_eq!(app.decode("default", &before).await, vec![payload(b"version 1")]);
    assert_eq!(app.decode("default", &after).await, vec![payload(b"version 2")]);
}

#[tokio::test]
async fn a_pinned_key_version_wraps_with_that_version_only() {
    let fake = AzureKeyVaultFake::start(VAULT);
    let kek = fake.create_key("pinned");
    let v1 = fake.current_version("pinned");
    fake.rotate("pinned");
    let app = app_with(&fake, &format!("{kek}/{v1}")).await;

    let sealed = app.encode("default", vec![payload(b"pinned")]).await;

    assert_eq!(&wrapped(&sealed[0], 0)[2..2 + v1.len()], v1.as_bytes());
    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(app.decode("default", &sealed).await, vec![payload(b"pinned")]);
}

#[tokio::test]
async fn a_key_without_the_wrap_permission_is_refused_without_retry() {
    let fake = AzureKeyVaultFake::start(VAULT);
    let kek = fake.create_key_with_ops("encrypt-only", &["encrypt", "decrypt"]);
    let app = app_with(&fake, &kek).await;

    let response = app.post("/encode", Some("default"), &to_json(&[payload(b"refused-secret")])).await;

    assert_eq!(response.status(), 500);
    assert_eq!(error_code(response).await, "encode-failed");
    assert_eq!(fake.calls("wrapkey"), 1, "403 is final");
}

/// Temporal Proxy's Azure payloads: the data key sealed as Go CDK's `azurekeyvault` keeper seals it
/// (Key Vault `encrypt`, RSA-OAEP-256, no context — computed here from the key's public half), the
/// payload sealed with RustCrypto's `aes-gcm` (not the server's aws-lc), the Payload protobuf written by
/// hand; a `decrypt_only` KEK spelled as the proxy spells it opens it with Key Vault's `decrypt`.
#[tokio::test]
async fn a_temporal_proxy_payload_with_an_azure_kek_opens_through_a_decrypt_only_kek() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    let fake = AzureKeyVaultFake::start(VAULT);
    let ours = fake.create_key("ours");
    fake.create_key_with_ops("proxy-kek", &["encrypt", "decrypt"]);
    let proxy_uri = format!("azurekeyvault://{VAULT}/keys/proxy-kek");
    let dek = [7u8; 32];
    let wrapped_dek = fake.encrypt_with_public_key("proxy-kek", &dek);
    let proxy_payload =
        crate::support::kms::sealed_like_the_proxy(&proxy_uri, &B64.encode(&wrapped_dek), &dek, "\"azure\"");

    let app = TestApp::spawn_with(|c| {
        use_fake(c, &fake);
        c.keyrings.insert("migrated".into(), KeyringConfig { primary: vec![ours], decrypt_only: vec![proxy_uri] });
        c.namespaces[0].keyring = "migrated".into();
    })
    .await;

    assert_eq!(app.decode("default", std::slice::from_ref(&proxy_payload)).await, vec![payload(b"\"azure\"")]);
    assert_eq!((fake.calls("decrypt"), fake.calls("unwrapkey")), (1, 0), "opened with decrypt, as Go CDK sealed");

    let mut tampered = proxy_payload.clone();
    let mut bad_dek = wrapped_dek.clone();
    bad_dek[0] ^= 1;
    tampered.metadata.insert("encryption-dek".into(), B64.encode(&bad_dek).into_bytes());
    let response = app.post_decode("default", &[tampered]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "decode-failed");
}

#[test]
fn the_annotated_azure_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/azure.toml");
    let (config, _) =
        Config::load(Some(&path), &codec_server::config::Overrides::default()).expect("config/azure.toml must load");

    assert!(
        config.keyrings.values().flat_map(|k| &k.primary).all(|uri| uri.starts_with("azure-keyvault://")),
        "every primary KEK is an Azure key"
    );
    assert!(config.kms.azure.endpoint.is_none() && config.kms.azure.ca_file.is_none());
}

#[test]
fn azure_endpoints_follow_the_endpoint_rules_and_are_https_only() {
    let mut config = Config::dev();
    use_keyring(&mut config, &["azure-keyvault://codec-prod.vault.azure.net/keys/payments".to_owned()]);
    for bad in ["http://127.0.0.1.nip.io:8443", "http://kv.internal:8443", "http://127.0.0.1:8443", "ftp://127.0.0.1/"]
    {
        config.kms.azure.endpoint = Some(bad.to_owned());
        let message = format!("{:#}", config.validate().unwrap_err());
        assert!(message.contains("kms.azure.endpoint"), "{bad}: {message}");
    }
    config.kms.insecure_allow_plaintext_http = true;
    config.kms.azure.endpoint = Some("http://kv.internal:8443".into());
    let message = format!("{:#}", config.validate().unwrap_err());
    assert!(message.contains("https"), "the SDK refuses tokens over http whatever the opt-out: {message}");
    config.kms.azure.endpoint = Some("https://127.0.0.1:8443".into());
    config.validate().unwrap();

    config.kms.azure.credential = Some(AzureCredentialKind::ClientSecret);
    let message = format!("{:#}", config.validate().unwrap_err());
    assert!(message.contains("client_secret"), "{message}");

    config.kms.azure.credential = None;
    config.keyrings.get_mut("kms").unwrap().primary = vec!["azure-keyvault://codec-prod.example.com/keys/k".into()];
    let message = format!("{:#}", config.validate().unwrap_err());
    assert!(message.contains("vault.azure.net"), "{message}");
}
