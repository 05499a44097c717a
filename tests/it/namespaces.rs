//! Namespace binding over HTTP (SECURITY-TESTS 11, 13, 14): a payload sealed for one namespace never
//! opens in another — whichever way the request names the namespace, with the header rewritten, with a
//! warm decrypt cache, or mixed into another namespace's request.
//!
//! Every namespace here shares the one dev KEK (`match = "*"`), so only the namespace binding in the
//! AEAD and the KMS context keeps them apart.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use codec_server::codec::envelope::MESSAGE_ID_LEN;
use codec_server::kms::Provider;
use codec_server::kms::instrumented::KmsOp;
use codec_server::kms::keyring::DecodeFailure;
use codec_server::protocol::Payload;
use serde_json::{Value, json};

use crate::helpers::{TestApp, payload, read_payloads, to_json};

/// Offset of the namespace length in envelope v1: magic(4) + suite(2) + flags(1) + message id.
const NAMESPACE_LEN_AT: usize = 4 + 2 + 1 + MESSAGE_ID_LEN;

async fn refused(response: reqwest::Response) -> (Value, String) {
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).expect("JSON error");
    assert_eq!(body["error"]["code"], "decode-failed", "{text}");
    (body, text)
}

fn assert_releases_nothing_of(text: &str, secret: &[u8]) {
    let secret_text = String::from_utf8_lossy(secret);
    assert!(!text.contains(secret_text.as_ref()), "plaintext released: {text}");
    assert!(!text.contains(&STANDARD.encode(secret)), "plaintext released as base64: {text}");
}

/// The sealed payload with the namespace in its envelope header replaced by one of the same length.
fn rewrite_namespace(sealed: &Payload, from: &str, to: &str) -> Payload {
    assert_eq!(from.len(), to.len());
    let mut rewritten = sealed.clone();
    let mut data = rewritten.data.to_vec();
    let len = u16::from_be_bytes([data[NAMESPACE_LEN_AT], data[NAMESPACE_LEN_AT + 1]]) as usize;
    let at = NAMESPACE_LEN_AT + 2;
    assert_eq!(&data[at..at + len], from.as_bytes(), "the envelope names the sealing namespace");
    data[at..at + len].copy_from_slice(to.as_bytes());
    rewritten.data = data.into();
    rewritten
}

fn unwraps(app: &TestApp) -> (u64, u64) {
    let counts = app.state.kms_stats.get(Provider::Local, KmsOp::Unwrap);
    (counts.calls, counts.errors)
}

#[tokio::test]
async fn a_payload_sealed_for_payments_never_opens_in_marketing_by_path_header_or_both() {
    let app = TestApp::spawn().await;
    let secret = b"{\"card\":\"4111 1111 1111 1111\"}";
    let sealed = app.encode("payments", vec![payload(secret)]).await;
    let body = to_json(&sealed);

    let by_path = app.post("/marketing/decode", None, &body).await;
    let by_header = app.post("/decode", Some("marketing"), &body).await;
    let by_both = app.post("/marketing/decode", Some("marketing"), &body).await;

    for response in [by_path, by_header, by_both] {
        let (error, text) = refused(response).await;
        assert_eq!(error["error"]["indexes"], json!([0]));
        assert_releases_nothing_of(&text, secret);
        assert!(!text.contains("4111"), "{text}");
    }
    assert_eq!(app.decode("payments", &sealed).await, vec![payload(secret)], "it does open where it was sealed");
}

#[tokio::test]
async fn a_header_namespace_rewritten_from_a_to_b_never_opens() {
    let app = TestApp::spawn().await;
    let secret = b"\"sealed for aaaa\"";
    let sealed = app.encode("aaaa", vec![payload(secret)]).await;
    let rewritten = rewrite_namespace(&sealed[0], "aaaa", "bbbb");

    let (_, as_b) = refused(app.post_decode("bbbb", std::slice::from_ref(&rewritten)).await).await;
    let (_, as_a) = refused(app.post_decode("aaaa", std::slice::from_ref(&rewritten)).await).await;

    assert_releases_nothing_of(&as_b, secret);
    assert_releases_nothing_of(&as_a, secret);
    assert_eq!(app.decode("aaaa", &sealed).await, vec![payload(secret)], "the unmodified payload opens in aaaa");
}

#[tokio::test]
async fn a_decrypt_cache_warmed_in_one_namespace_is_never_used_by_another() {
    let app = TestApp::spawn().await;
    let secret = b"\"warm in aaaa\"";
    let sealed = app.encode("aaaa", vec![payload(secret)]).await;
    let cache = app.state.codec.decrypt_cache();

    // Warm A: one miss and one unwrap, then a hit without a KMS call.
    let (hits, misses, (calls, _)) = (cache.hits(), cache.misses(), unwraps(&app));
    assert_eq!(app.decode("aaaa", &sealed).await, vec![payload(secret)]);
    assert_eq!((cache.hits(), cache.misses(), unwraps(&app).0), (hits, misses + 1, calls + 1));
    assert_eq!(app.decode("aaaa", &sealed).await, vec![payload(secret)]);
    assert_eq!((cache.hits(), cache.misses(), unwraps(&app).0), (hits + 1, misses + 1, calls + 1));

    // The same payload under B is refused and never finds A's entry.
    let hits = cache.hits();
    let (_, text) = refused(app.post_decode("bbbb", &sealed).await).await;
    assert_releases_nothing_of(&text, secret);
    assert_eq!(cache.hits(), hits);

    // With its header rewritten to B, the same EDK bytes reach B's cache: a miss, then the KMS refuses
    // the unwrap (context of B), and nothing is cached.
    let rewritten = rewrite_namespace(&sealed[0], "aaaa", "bbbb");
    for round in 1..=2 {
        let (hits, misses, (calls, errors)) = (cache.hits(), cache.misses(), unwraps(&app));
        let (_, text) = refused(app.post_decode("bbbb", std::slice::from_ref(&rewritten)).await).await;
        assert_releases_nothing_of(&text, secret);
        assert_eq!(cache.hits(), hits, "round {round}: B never hit A's entry");
        assert_eq!(cache.misses(), misses + 1, "round {round}");
        assert_eq!(unwraps(&app), (calls + 1, errors + 1), "round {round}: the KMS refused B's context");
    }
}

#[tokio::test]
async fn one_payload_from_another_namespace_fails_the_request_naming_its_index() {
    let app = TestApp::spawn().await;
    let a_secret = b"\"secret of namespace aaaa\"";
    let b_secrets = [b"\"first of bbbb\"".as_slice(), b"\"second of bbbb\"".as_slice()];
    let from_a = app.encode("aaaa", vec![payload(a_secret)]).await;
    let from_b = app.encode("bbbb", b_secrets.iter().map(|s| payload(s)).collect()).await;
    let request = vec![from_b[0].clone(), from_a[0].clone(), from_b[1].clone(), payload(b"\"plain\"")];

    let (error, text) = refused(app.post_decode("bbbb", &request).await).await;

    assert_eq!(error["error"]["indexes"], json!([1]));
    assert_releases_nothing_of(&text, a_secret);
    for secret in b_secrets {
        assert_releases_nothing_of(&text, secret);
    }
}

#[tokio::test]
async fn with_keep_encoded_a_payload_from_another_namespace_comes_back_sealed_while_the_others_open() {
    let app = TestApp::spawn_with(|c| c.namespaces[0].decode_failure = DecodeFailure::KeepEncoded).await;
    let a_secret = b"\"secret of namespace aaaa\"";
    let b_plain = [payload(b"\"first of bbbb\""), payload(b"\"second of bbbb\"")];
    let from_a = app.encode("aaaa", vec![payload(a_secret)]).await;
    let from_b = app.encode("bbbb", b_plain.to_vec()).await;
    let request = vec![from_b[0].clone(), from_a[0].clone(), from_b[1].clone(), payload(b"\"plain\"")];

    let response = app.post_decode("bbbb", &request).await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_releases_nothing_of(&text, a_secret);
    let opened = codec_server::protocol::Payloads::from_json(text.as_bytes()).unwrap().payloads;
    assert_eq!(opened, vec![b_plain[0].clone(), from_a[0].clone(), b_plain[1].clone(), payload(b"\"plain\"")]);
    // And the kept payload still opens where it belongs.
    let response = app.post_decode("aaaa", &opened[1..2]).await;
    assert_eq!(read_payloads(response).await, vec![payload(a_secret)]);
}

#[tokio::test]
async fn a_path_prefix_never_changes_the_namespace_that_keys_policy_and_audit_use() {
    use crate::audit::flushed_rows;
    use crate::support::jwks_server::JwksServer;
    use crate::support::tokens::token;

    let jwks = JwksServer::start(&["rsa-1"]);
    let url = jwks.url.clone();
    let app = TestApp::spawn_with(move |c| crate::auth::jwt_config(c, &url)).await;
    let secret = b"\"payments only\"";
    let call = |path: &'static str, ns: &'static str, email: &'static str, id: &'static str, body: Value| {
        let request = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .header("x-namespace", ns)
            .header("x-request-id", id)
            .header("authorization", format!("Bearer {}", token(email)))
            .body(body.to_string());
        async move { request.send().await.expect("request") }
    };
    let sealed = read_payloads(
        call("/codec/encode", "payments", "writer@example.com", "seal", to_json(&[payload(secret)])).await,
    )
    .await;

    // alice may decode `payments`; no rule lets anyone decode `marketing`. A `payments` segment in the path
    // is a prefix when the header names `marketing`: the policy of `marketing` decides, and it refuses.
    let crafted = call("/payments/decode", "marketing", "alice@example.com", "crafted", to_json(&sealed)).await;
    assert_eq!(crafted.status(), 403);
    assert!(!crafted.text().await.unwrap().contains("payments only"));
    let behind_prefix = call("/codec/payments/decode", "payments", "alice@example.com", "ok", to_json(&sealed)).await;
    assert_eq!(read_payloads(behind_prefix).await, vec![payload(secret)]);

    let rows = flushed_rows(&app).await;
    let namespace_of = |id: &str| rows.iter().find(|r| r.request_id == id).map(|r| r.namespace.clone());
    assert_eq!(namespace_of("crafted").as_deref(), Some("marketing"), "the audit names the namespace that was checked");
    assert_eq!(namespace_of("ok").as_deref(), Some("payments"));
}
