//! Reading Temporal Proxy's payloads: a decrypt-only KEK spelled as the proxy spells it opens them,
//! under our policies and audit like any other decode. The payloads are made by an independent
//! implementation (tests/fixtures/temporal-proxy/seal.py: Python `cryptography` + boto3 against moto),
//! in exactly the proxy's format, never by this server.

use std::path::Path;
use std::process::Command;

use codec_server::config::{KeyringConfig, NamespaceRule};
use codec_server::kms::Provider;
use codec_server::kms::instrumented::KmsOp;
use codec_server::protocol::{Payload, Payloads};

use crate::helpers::{TestApp, edit_data, payload};
use crate::support::kms::calls;
use crate::support::moto::{MotoServer, use_endpoint};

const REGION: &str = "us-east-1";

/// Payloads sealed as Temporal Proxy seals them, under `key_arn`, recorded with `kek_uri`.
fn proxy_sealed(moto: &MotoServer, key_arn: &str, kek_uri: &str, texts: &[&str]) -> Vec<Payload> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/test-env.sh` (it installs cryptography and boto3 with moto)",
        python.display()
    );
    let output = Command::new(&python)
        .arg(repo.join("tests/fixtures/temporal-proxy/seal.py"))
        .args([moto.url.as_str(), REGION, key_arn, kek_uri])
        .args(texts)
        .output()
        .expect("run seal.py");
    assert!(output.status.success(), "seal.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = std::str::from_utf8(&output.stdout).unwrap().lines().collect();
    let body = format!("{{\"payloads\":[{}]}}", lines.join(","));
    Payloads::from_json(body.as_bytes()).expect("seal.py output").payloads
}

/// `proxied-*` namespaces may open the proxy's payloads; every other namespace has no proxy KEK.
async fn app(moto: &MotoServer, primary_arn: &str, proxy_kek: &str) -> TestApp {
    let (primary, proxy) = (format!("aws-kms://{primary_arn}"), proxy_kek.to_owned());
    TestApp::spawn_with(move |c| {
        use_endpoint(c, &moto.url);
        c.keyrings
            .insert("migrated".into(), KeyringConfig { primary: vec![primary.clone()], decrypt_only: vec![proxy] });
        c.keyrings.insert("fresh".into(), KeyringConfig { primary: vec![primary], decrypt_only: vec![] });
        let rule = |pattern: &str, keyring: &str| NamespaceRule {
            pattern: pattern.into(),
            keyring: keyring.into(),
            compress: false,
            decode_failure: Default::default(),
        };
        c.namespaces = vec![rule("proxied-*", "migrated"), rule("*", "fresh")];
    })
    .await
}

fn unwraps(app: &TestApp) -> u64 {
    calls(app, Provider::AwsKms, KmsOp::Unwrap).calls
}

#[tokio::test]
async fn a_decrypt_only_proxy_kek_opens_the_proxys_payloads_and_refuses_tampered_ones() {
    let moto = MotoServer::shared();
    let proxy_key = moto.create_key(REGION).await;
    let ours = moto.create_key(REGION).await;
    let kek_uri = format!("awskms:///{proxy_key}?region={REGION}");
    let sealed = proxy_sealed(moto, &proxy_key, &kek_uri, &["{\"card\":\"4111\"}", "\"second\""]);
    assert_eq!(sealed[0].encoding(), Some("binary/encrypted"));
    let app = app(moto, &ours, &kek_uri).await;

    let opened = app.decode("proxied-payments", &sealed).await;
    assert_eq!(opened, vec![payload(b"{\"card\":\"4111\"}"), payload(b"\"second\"")]);
    assert_eq!(unwraps(&app), 1, "one data key for both payloads");

    let mut tampered = sealed[1].clone();
    edit_data(&mut tampered, |data| *data.last_mut().unwrap() ^= 1);
    let response = app.post_decode("proxied-payments", &[sealed[0].clone(), tampered]).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "decode-failed");
    assert_eq!(body["error"]["indexes"], serde_json::json!([1]));
}

#[tokio::test]
async fn a_proxy_payload_naming_a_kek_outside_the_namespaces_keyring_never_reaches_the_kms() {
    let moto = MotoServer::shared();
    let proxy_key = moto.create_key(REGION).await;
    let other_key = moto.create_key(REGION).await;
    let ours = moto.create_key(REGION).await;
    let kek_uri = format!("awskms:///{proxy_key}?region={REGION}");
    let app = app(moto, &ours, &kek_uri).await;

    // Sealed under the configured proxy KEK, but decoded in a namespace whose keyring lacks it.
    let sealed = proxy_sealed(moto, &proxy_key, &kek_uri, &["secret"]);
    assert_eq!(app.decode("payments", &sealed).await, sealed, "unchanged, still sealed");
    // Sealed under a KEK this server does not list at all.
    let foreign_uri = format!("awskms:///{other_key}?region={REGION}");
    let foreign = proxy_sealed(moto, &other_key, &foreign_uri, &["secret"]);
    assert_eq!(app.decode("proxied-payments", &foreign).await, foreign, "unchanged, still sealed");
    // The key id spelled differently (our scheme) is not the proxy's KEK either.
    let mut respelled = sealed[0].clone();
    respelled.metadata.insert("encryption-key-id".into(), format!("aws-kms://{proxy_key}").into_bytes());
    assert_eq!(app.decode("proxied-payments", std::slice::from_ref(&respelled)).await, vec![respelled]);
    assert_eq!(unwraps(&app), 0, "no KMS call for any of them");
}

#[tokio::test]
async fn a_proxy_kek_cannot_be_a_primary_kek() {
    let mut config = codec_server::config::Config::dev();
    config.keyrings.get_mut("dev").unwrap().primary =
        vec!["awskms:///arn:aws:kms:us-east-1:123456789012:key/abcd?region=us-east-1".into()];
    let message = format!("{:#}", config.validate().unwrap_err());
    assert!(message.contains("decrypt_only"), "{message}");
}

/// A GCP-wrapped proxy payload: the data key wrapped by the KMS fake's `:encrypt` with no AAD (as Go
/// CDK's gcpkms keeper calls it), the payload sealed with RustCrypto's `aes-gcm` (not the server's
/// aws-lc), the Payload protobuf written by hand.
#[cfg(feature = "gcp-kms")]
#[tokio::test]
async fn a_gcp_wrapped_proxy_payload_opens_through_the_gcp_kms_fake() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    let fake = crate::support::gcp_fake::GcpKmsFake::start();
    let key = fake.create_key("proxy", "payloads");
    let kek_uri = format!("gcpkms://{key}");
    let dek = [9u8; 32];
    let wrapped: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/{key}:encrypt", fake.endpoint))
        .json(&serde_json::json!({ "plaintext": B64.encode(dek) }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wrapped = wrapped["ciphertext"].as_str().expect("ciphertext").to_owned();
    let proxy_payload = crate::support::kms::sealed_like_the_proxy(&kek_uri, &wrapped, &dek, "\"gcp\"");

    let (endpoint, proxy) = (fake.endpoint.clone(), kek_uri);
    let app = TestApp::spawn_with(move |c| {
        c.kms.gcp.endpoint = Some(endpoint);
        c.kms.gcp.anonymous = true;
        c.keyrings.get_mut("dev").unwrap().decrypt_only = vec![proxy];
    })
    .await;
    assert_eq!(app.decode("default", &[proxy_payload]).await, vec![payload(b"\"gcp\"")]);
    assert_eq!(fake.decrypts(), 1);
}
