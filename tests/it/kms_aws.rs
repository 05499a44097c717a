//! The `aws-kms` backend against a real moto server on loopback: round trips through the HTTP API,
//! the namespace bound by the KMS itself, `KeyId` checks, alias resolution, rotation and KMS call
//! counts (SECURITY-TESTS 8, 12, 21, 22).

use codec_server::config::{Config, Overrides};
use codec_server::kms::Provider;
use codec_server::kms::instrumented::KmsOp;
use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{TestApp, error_code, payload};
use crate::support::kms::{calls, edk_keks, rewrite_namespace, use_keyring, wrapped};
use crate::support::moto::{KmsProxy, MotoServer, use_endpoint};

/// The encrypt cache's default max age, and a little more: the next encode makes a new data key.
const PAST_DEK_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(301);

/// A server whose every namespace seals with the given AWS key ARNs, talking to `endpoint`.
async fn app_with(endpoint: &str, arns: &[&str]) -> TestApp {
    let keks: Vec<String> = arns.iter().map(|arn| format!("aws-kms://{arn}")).collect();
    TestApp::spawn_with(|c| {
        use_endpoint(c, endpoint);
        use_keyring(c, &keks);
    })
    .await
}

#[tokio::test]
async fn payloads_round_trip_through_aws_kms_with_each_call_sent_to_the_region_of_its_key_arn() {
    let moto = MotoServer::shared();
    // moto keeps one keystore per region (taken from the request signature): a call signed for another
    // region than the key's would not find the key.
    let sydney = moto.create_key("ap-southeast-2").await;
    let app = app_with(&moto.url, &[&sydney]).await;
    let originals = vec![payload(b"{\"card\":\"4111 1111 1111 1111\"}"), payload(b"")];

    let sealed = app.encode("payments", originals.clone()).await;
    app.state.codec.decrypt_cache().clear().await;
    let opened = app.decode("payments", &sealed).await;

    assert_eq!(opened, originals);
    assert_eq!(edk_keks(&sealed[0]), vec![(Provider::AwsKms, format!("aws-kms://{sydney}"))]);
    assert_eq!(calls(&app, Provider::AwsKms, KmsOp::GenerateDataKey).calls, 1);
    assert_eq!(calls(&app, Provider::AwsKms, KmsOp::Unwrap).calls, 1);
}

#[tokio::test]
async fn the_kms_itself_refuses_the_unwrap_when_the_header_namespace_was_rewritten() {
    let moto = MotoServer::shared();
    let key = moto.create_key("eu-west-1").await;
    let app = app_with(&moto.url, &[&key]).await;
    let sealed = app.encode("alpha", vec![payload(b"alpha's secret")]).await.remove(0);
    app.state.codec.decrypt_cache().clear().await;

    // Same length, so the envelope still parses and names namespace `bravo`.
    let forged = rewrite_namespace(&sealed, "bravo");
    let response = app.post_decode("bravo", std::slice::from_ref(&forged)).await;

    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "decode-failed");
    let unwraps = calls(&app, Provider::AwsKms, KmsOp::Unwrap);
    assert_eq!((unwraps.calls, unwraps.errors), (1, 1), "the KMS was asked with context bravo and refused");
    // The genuine payload still opens in its own namespace.
    assert_eq!(app.decode("alpha", &[sealed]).await, vec![payload(b"alpha's secret")]);
}

#[tokio::test]
async fn an_edk_whose_kek_is_outside_the_namespace_keyring_makes_no_kms_call() {
    let moto = MotoServer::shared();
    let (key_a, key_b) = (moto.create_key("eu-west-1").await, moto.create_key("eu-west-1").await);
    let sealing = app_with(&moto.url, &[&key_a]).await;
    let sealed = sealing.encode("default", vec![payload(b"under key A")]).await;

    // Another server where the namespace's keyring holds only key B.
    let other = app_with(&moto.url, &[&key_b]).await;
    let response = other.post_decode("default", &sealed).await;

    assert_eq!(response.status(), 400);
    assert_eq!(other.kms_calls(), 0, "key A is never sent to the KMS from a keyring that lacks it");
}

#[tokio::test]
async fn decrypt_always_names_the_key_and_an_answer_for_another_key_is_rejected() {
    let moto = MotoServer::shared();
    let key = moto.create_key("eu-west-1").await;
    let proxy = KmsProxy::start(&moto.url);
    let app = app_with(&proxy.url, &[&key]).await;
    let sealed = app.encode("default", vec![payload(b"secret-4111")]).await;
    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(app.decode("default", &sealed).await, vec![payload(b"secret-4111")]);

    let decrypts: Vec<_> = proxy.requests().into_iter().filter(|(action, _)| action == "Decrypt").collect();
    assert_eq!(decrypts.len(), 1);
    for (_, body) in &decrypts {
        assert_eq!(body["KeyId"], json!(key), "Decrypt names the configured key");
        assert_eq!(body["EncryptionContext"], json!({"codec": "tce-v1", "namespace": "default"}));
    }

    // From now on the "KMS" answers as if another key had been used.
    let other_key = moto.create_key("eu-west-1").await;
    proxy.rewrite_key_id(&other_key);
    app.state.codec.decrypt_cache().clear().await;
    let response = app.post_decode("default", &sealed).await;
    assert_eq!(response.status(), 400);
    assert!(!response.text().await.unwrap().contains("secret-4111"));
    assert_eq!(proxy.count("Decrypt"), 2, "a rejected answer is not retried");

    // A data key whose GenerateDataKey answer names another key is not used either.
    app.clock.advance(PAST_DEK_MAX_AGE);
    let response = app.post("/encode", Some("default"), &crate::helpers::to_json(&[payload(b"secret-4111")])).await;
    assert_eq!(response.status(), 500);
    assert_eq!(error_code(response).await, "encode-failed");
}

#[tokio::test]
async fn an_alias_arn_is_resolved_once_and_decrypt_names_the_key_behind_it() {
    let moto = MotoServer::shared();
    let key = moto.create_key("eu-west-1").await;
    let alias = moto.create_alias("eu-west-1", &format!("codec-{}", &key[key.len() - 12..]), &key).await;
    let proxy = KmsProxy::start(&moto.url);
    let app = app_with(&proxy.url, &[&alias]).await;

    let sealed = app.encode("default", vec![payload(b"via alias")]).await;
    for _ in 0..2 {
        app.state.codec.decrypt_cache().clear().await;
        assert_eq!(app.decode("default", &sealed).await, vec![payload(b"via alias")]);
    }

    assert_eq!(
        edk_keks(&sealed[0]),
        vec![(Provider::AwsKms, format!("aws-kms://{alias}"))],
        "the EDK records the URI as configured"
    );
    assert_eq!(proxy.count("DescribeKey"), 1);
    for (action, body) in proxy.requests() {
        if action != "DescribeKey" {
            assert_eq!(body["KeyId"], json!(key), "{action} names the resolved key ARN");
        }
    }
}

#[tokio::test]
async fn on_demand_rotation_between_encodes_leaves_old_and_new_payloads_decodable() {
    let moto = MotoServer::shared();
    let key = moto.create_key("eu-west-1").await;
    let app = app_with(&moto.url, &[&key]).await;
    let before = app.encode("default", vec![payload(b"before rotation")]).await;

    moto.call("eu-west-1", "RotateKeyOnDemand", json!({ "KeyId": key })).await;
    let rotations = moto.call("eu-west-1", "ListKeyRotations", json!({ "KeyId": key })).await;
    assert_eq!(rotations["Rotations"].as_array().map(Vec::len), Some(1));
    app.clock.advance(PAST_DEK_MAX_AGE);
    let after = app.encode("default", vec![payload(b"after rotation")]).await;
    assert_ne!(wrapped(&before[0], 0), wrapped(&after[0], 0), "a new data key after the rotation");

    app.state.codec.decrypt_cache().clear().await;
    assert_eq!(app.decode("default", &before).await, vec![payload(b"before rotation")]);
    assert_eq!(app.decode("default", &after).await, vec![payload(b"after rotation")]);
}

#[tokio::test]
async fn ten_thousand_payloads_in_one_namespace_make_one_data_key_call_per_kek() {
    let moto = MotoServer::shared();
    let (home, dr) = (moto.create_key("eu-west-1").await, moto.create_key("us-east-1").await);
    let app = app_with(&moto.url, &[&home, &dr]).await;

    let mut sealed = Vec::new();
    for batch in 0..10 {
        let payloads = (0..1000).map(|i| payload(format!("{{\"n\":{}}}", batch * 1000 + i).as_bytes())).collect();
        sealed.extend(app.encode("orders", payloads).await);
    }

    assert_eq!(sealed.len(), 10_000);
    assert_eq!(calls(&app, Provider::AwsKms, KmsOp::GenerateDataKey).calls, 1, "the first KEK made the data key");
    assert_eq!(calls(&app, Provider::AwsKms, KmsOp::Wrap).calls, 1, "the second KEK wrapped it once");
    let keks = edk_keks(&sealed[9_999]);
    assert_eq!(keks.len(), 2);
    assert!(sealed.iter().all(|s| wrapped(s, 0) == wrapped(&sealed[0], 0)));
}

#[tokio::test]
async fn two_hundred_concurrent_decodes_of_one_cold_data_key_make_one_unwrap() {
    let moto = MotoServer::shared();
    let key = moto.create_key("eu-west-1").await;
    let app = app_with(&moto.url, &[&key]).await;
    let sealed = app.encode("default", (0..200).map(|i| payload(format!("{i}").as_bytes())).collect()).await;
    app.state.codec.decrypt_cache().clear().await;

    let decodes = sealed.iter().map(|s| app.decode("default", std::slice::from_ref(s)));
    let opened: Vec<_> = join_all(decodes).await.into_iter().flatten().collect();

    assert_eq!(opened.len(), 200);
    assert_eq!(opened[199], payload(b"199"));
    assert_eq!(calls(&app, Provider::AwsKms, KmsOp::Unwrap).calls, 1);
}

#[test]
fn the_annotated_aws_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/aws.toml");
    let (config, _) = Config::load(Some(&path), &Overrides::default()).expect("config/aws.toml must load");

    assert!(config.keyrings.values().flat_map(|k| &k.primary).all(|uri| uri.starts_with("aws-kms://arn:aws:kms:")));
    assert_eq!(config.kms.aws.call_timeout, std::time::Duration::from_secs(2));
}

#[test]
fn a_malformed_key_arn_or_half_of_a_static_credential_is_refused_with_how_to_fix_it() {
    let mut config = Config::dev();
    use_keyring(&mut config, &["aws-kms://alias/payments".to_owned()]);
    let message = format!("{:#}", config.validate().unwrap_err());
    assert!(message.contains("aws-kms://arn:aws:kms:<region>:<account>:key/<key-id>"), "{message}");

    let mut config = Config::dev();
    config.kms.aws.access_key_id = Some("AKIA".into());
    let message = format!("{:#}", config.validate().unwrap_err());
    assert!(message.contains("[kms.aws]") && message.contains("secret_access_key"), "{message}");
}

#[tokio::test]
async fn a_missing_kek_is_named_in_a_startup_warning_and_the_server_still_starts() {
    use crate::support::server_process::ServerProcess;

    // The local KEK seals (so serving can be checked); the AWS KEK does not exist. Only the missing key
    // is on the shared moto server, so other tests' use of it cannot change what this one sees.
    let moto = MotoServer::shared();
    let missing = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-4000-8000-00000000dead";
    let keys = format!(
        "[kms.aws]\nendpoint_url = {url:?}\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n\n\
         [keyrings.main]\nprimary = [\"local://main\"]\ndecrypt_only = [\"aws-kms://{missing}\"]\n\n\
         [[namespaces]]\nmatch = \"*\"\nkeyring = \"main\"\n",
        url = moto.url,
    );
    let server = ServerProcess::start_with_keys("", &keys, &[("AWS_EC2_METADATA_DISABLED", "true")]);

    let named = |log: &[serde_json::Value]| {
        log.iter().any(|line| {
            line["level"] == "WARN" && line["fields"]["error"].as_str().is_some_and(|e| e.contains(missing))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40); // first check: 10 s after start
    while !named(&server.json_log()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = server.json_log();
    assert!(named(&log), "no startup warning names {missing}:\n{}", server.log().join("\n"));
    let warning = log.iter().find(|l| l["fields"]["error"].as_str().is_some_and(|e| e.contains(missing))).unwrap();
    assert!(warning["fields"]["fix"].as_str().is_some_and(|f| f.contains("[keyrings]")), "{warning}");
    assert!(
        log.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("Startup check failed"))),
        "{}",
        server.log().join("\n")
    );

    // Still serving: encode works with the key that exists.
    let response = reqwest::Client::new()
        .post(server.url("/encode"))
        .header("content-type", "application/json")
        .header("x-namespace", "default")
        .body(crate::helpers::to_json(&[payload(b"still up")]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
