//! Every client-facing error of DESIGN §8 with its status and stable JSON code, the namespace checks of
//! SECURITY-TESTS 31 (refused before any KMS or cache access) and 34 (limits), and error bodies that
//! never carry what was sent.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use codec_server::config::NamespaceRule;
use codec_server::kms::keyring::DecodeFailure;
use codec_server::protocol::Payload;
use serde_json::{Value, json};

use crate::helpers::{TestApp, edit_data, error_code, payload, read_payloads, to_json};
use crate::protocol::{Framing, RawResponse, raw_post, raw_request};

/// Status, parsed JSON error body; asserts the body has the `{"error":{"code","message"}}` shape.
async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(content_type.as_deref(), Some("application/json"), "{status}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
    assert!(body["error"]["code"].is_string(), "{text}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
    (status, body)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap()
}

async fn post_text(app: &TestApp, path: &str, content_type: Option<&str>, body: &str) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).header("x-namespace", "default");
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    request.body(body.to_owned()).send().await.unwrap()
}

fn tamper(sealed: &Payload) -> Payload {
    let mut tampered = sealed.clone();
    edit_data(&mut tampered, |data| *data.last_mut().unwrap() ^= 0x01);
    tampered
}

#[tokio::test]
async fn malformed_json_is_400_malformed_json() {
    let app = TestApp::spawn().await;
    let bodies = [
        "{\"payloads\":[",
        "not json at all",
        "{\"payloads\":\"x\"}",
        "{\"payloads\":[{\"data\":5}]}",
        "{\"payloads\":[{\"metadata\":[\"a\"]}]}",
        "{\"payloads\":[{\"externalPayloads\":[{\"sizeBytes\":\"twelve\"}]}]}",
        "",
    ];
    for body in bodies {
        let (status, error) = error_of(post_text(&app, "/decode", Some("application/json"), body).await).await;
        assert_eq!((status, code(&error)), (400, "malformed-json"), "{body:?}");
    }
}

#[tokio::test]
async fn invalid_base64_is_400_invalid_base64_naming_the_payload_index() {
    let app = TestApp::spawn().await;
    let ok = json!({"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "e30="});
    let cases = [
        (json!({"payloads": [ok, ok, {"data": "%%%not-base64"}]}), "payload 2"),
        (json!({"payloads": [ok, {"metadata": {"encoding": "a b c"}, "data": "e30="}]}), "payload 1"),
        (json!({"payloads": [{"data": "+/-_"}]}), "payload 0"),
    ];
    for (body, index) in cases {
        for path in ["/decode", "/encode"] {
            let (status, error) = error_of(app.post(path, Some("default"), &body).await).await;
            assert_eq!((status, code(&error)), (400, "invalid-base64"), "{body}");
            let message = error["error"]["message"].as_str().unwrap();
            assert!(message.contains(index), "message `{message}` should name {index}");
        }
    }
}

#[tokio::test]
async fn a_malformed_envelope_is_400_decode_failed_naming_its_index() {
    let app = TestApp::spawn().await;
    let mut garbage = payload(b"this is not an envelope, only garbage bytes of some length");
    garbage.metadata.insert("encoding".into(), b"binary/kms-envelope".to_vec());
    let mut bad_version = payload(b"TCE\x02\x00\x01\x00rest");
    bad_version.metadata.insert("encoding".into(), b"binary/kms-envelope".to_vec());
    let kms_before = app.kms_calls();

    let response = app.post_decode("default", &[payload(b"1"), garbage, payload(b"2"), bad_version]).await;

    let (status, error) = error_of(response).await;
    assert_eq!((status, code(&error)), (400, "decode-failed"));
    assert_eq!(error["error"]["indexes"], json!([1, 3]));
    assert_eq!(app.kms_calls(), kms_before, "a malformed envelope never reaches a KMS");
}

#[tokio::test]
async fn a_tampered_sealed_payload_is_400_decode_failed() {
    let app = TestApp::spawn().await;
    let sealed = app.encode("default", vec![payload(b"\"tamper-target-plaintext\""), payload(b"2")]).await;
    let tampered = tamper(&sealed[1]);

    let response = app.post_decode("default", &[sealed[0].clone(), tampered]).await;

    let (status, error) = error_of(response).await;
    assert_eq!((status, code(&error)), (400, "decode-failed"));
    assert_eq!(error["error"]["indexes"], json!([1]));
    assert!(!error.to_string().contains("tamper-target-plaintext"), "nothing of the request is released");
}

#[tokio::test]
async fn keep_encoded_returns_a_tampered_payload_unchanged_with_200() {
    let app = TestApp::spawn_with(|c| c.namespaces[0].decode_failure = DecodeFailure::KeepEncoded).await;
    let originals = vec![payload(b"\"one\""), payload(b"\"two\"")];
    let sealed = app.encode("default", originals.clone()).await;
    let tampered = tamper(&sealed[0]);

    let response = app.post_decode("default", &[tampered.clone(), sealed[1].clone()]).await;

    assert_eq!(response.status(), 200);
    assert_eq!(read_payloads(response).await, vec![tampered, originals[1].clone()]);
}

#[tokio::test]
async fn unknown_routes_are_404_not_found() {
    let app = TestApp::spawn().await;
    let body = to_json(&[payload(b"1")]);

    // `/a/b/decode` is a codec route (suffix routing); only the last segment decides.
    for path in ["/", "/nope", "/decoder", "/a/b/decoder", "/decode/x", "/encode/extra"] {
        let (status, error) = error_of(app.post(path, Some("default"), &body).await).await;
        assert_eq!((status, code(&error)), (404, "not-found"), "POST {path}");
    }
    let (status, error) = error_of(app.client.get(app.url("/metrics-typo")).send().await.unwrap()).await;
    assert_eq!((status, code(&error)), (404, "not-found"));
}

#[tokio::test]
async fn a_wrong_method_on_a_codec_path_is_405_with_an_allow_header() {
    let app = TestApp::spawn().await;

    for (method, path) in [
        (reqwest::Method::GET, "/decode"),
        (reqwest::Method::GET, "/default/encode"),
        (reqwest::Method::PUT, "/decode"),
        (reqwest::Method::DELETE, "/encode?x=y"),
    ] {
        let response = app.client.request(method.clone(), app.url(path)).send().await.unwrap();
        let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        let (status, error) = error_of(response).await;
        assert_eq!((status, code(&error)), (405, "method-not-allowed"), "{method} {path}");
        let allow = allow.unwrap_or_else(|| panic!("{method} {path}: no Allow header"));
        assert!(allow.split(',').any(|m| m.trim() == "POST"), "Allow: {allow}");
    }
}

#[tokio::test]
async fn a_wrong_method_on_healthz_is_405_allowing_only_get() {
    let app = TestApp::spawn().await;

    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let response = app.client.request(method.clone(), app.url("/healthz")).send().await.unwrap();
        let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        let (status, error) = error_of(response).await;
        assert_eq!((status, code(&error)), (405, "method-not-allowed"), "{method}");
        assert_eq!(allow.as_deref(), Some("GET"), "{method}");
    }
}

fn body_of_size(size: usize) -> String {
    let prefix = "{\"payloads\":[{\"data\":\"";
    let suffix = "\"}]}";
    format!("{prefix}{}{suffix}", "A".repeat((size - prefix.len() - suffix.len()) / 4 * 4))
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_body_too_large_with_content_length_or_chunked() {
    let app = TestApp::spawn_with(|c| c.server.max_body_bytes = 4096).await;
    let under = body_of_size(4000);
    let over = body_of_size(6000);
    assert!(under.len() <= 4096 && over.len() > 4096);

    let fits = post_text(&app, "/decode", Some("application/json"), &under).await;
    assert_eq!(fits.status(), 200, "a body within the limit is served");

    let (status, error) = error_of(post_text(&app, "/decode", Some("application/json"), &over).await).await;
    assert_eq!((status, code(&error)), (413, "body-too-large"));

    for framing in [Framing::Chunked, Framing::ContentLength] {
        let headers = [("Content-Type", "application/json"), ("X-Namespace", "default")];
        let response = raw_request(&app, "POST", "/encode", &headers, over.as_bytes(), framing).await;
        assert_eq!(response.status, 413);
        assert_eq!(response.error_code(), "body-too-large");
        let fits = raw_request(&app, "POST", "/decode", &headers, under.as_bytes(), framing).await;
        assert_eq!(fits.status, 200);
    }
}

#[tokio::test]
async fn more_payloads_than_the_limit_is_400_too_many_payloads() {
    let app = TestApp::spawn_with(|c| c.server.max_payloads = 3).await;
    let three: Vec<Payload> = (0..3).map(|i| payload(&[b'0' + i])).collect();
    let four: Vec<Payload> = (0..4).map(|i| payload(&[b'0' + i])).collect();
    let kms_before = app.kms_calls();

    for path in ["/decode", "/encode"] {
        let (status, error) = error_of(app.post(path, Some("default"), &to_json(&four)).await).await;
        assert_eq!((status, code(&error)), (400, "too-many-payloads"), "{path}");
    }
    assert_eq!(app.kms_calls(), kms_before, "refused before any key is made");
    assert_eq!(app.decode("default", &three).await, three);
}

#[tokio::test]
async fn a_content_type_other_than_json_is_415_unsupported_media_type() {
    let app = TestApp::spawn().await;
    let body = to_json(&[payload(b"1")]).to_string();

    for content_type in [Some("text/plain"), None, Some("application/x-www-form-urlencoded"), Some("application/jsonx")]
    {
        for path in ["/decode", "/encode"] {
            let (status, error) = error_of(post_text(&app, path, content_type, &body).await).await;
            assert_eq!((status, code(&error)), (415, "unsupported-media-type"), "{content_type:?} {path}");
        }
    }
    let with_charset = post_text(&app, "/decode", Some("application/json; charset=utf-8"), &body).await;
    assert_eq!(with_charset.status(), 200);
}

#[tokio::test]
async fn an_invalid_namespace_is_400_invalid_namespace() {
    let app = TestApp::spawn().await;
    let body = to_json(&[payload(b"1")]);

    for header in ["a b", "../x", "a/b", "-lead", ".hidden", "ns%2F", &"n".repeat(256)] {
        let (status, error) = error_of(app.post("/decode", Some(header), &body).await).await;
        assert_eq!((status, code(&error)), (400, "invalid-namespace"), "X-Namespace: {header}");
    }
    for path in ["/a%2Fb/decode", "/..%2Fetc/decode", "/%2E%2E/decode", "/../decode", "/./encode", "/a%20b/encode"] {
        let response = raw_post(&app, path, None, &body).await;
        assert_eq!((response.status, response.error_code()), (400, "invalid-namespace".into()), "{path}");
    }
}

#[tokio::test]
async fn an_unknown_namespace_is_refused_before_any_kms_or_cache_access() {
    let app = TestApp::spawn_with(|c| {
        c.namespaces = vec![NamespaceRule {
            pattern: "payments".into(),
            keyring: "dev".into(),
            compress: false,
            decode_failure: DecodeFailure::Reject,
        }]
    })
    .await;
    let sealed = app.encode("payments", vec![payload(b"\"payments only\"")]).await;
    let cache = app.state.codec.decrypt_cache();
    let before = (app.kms_calls(), cache.hits(), cache.misses());

    for path in ["/decode", "/encode"] {
        let (status, error) = error_of(app.post(path, Some("marketing"), &to_json(&sealed)).await).await;
        assert_eq!((status, code(&error)), (400, "unknown-namespace"), "{path}");
    }
    let (status, error) = error_of(app.post("/marketing/decode", None, &to_json(&sealed)).await).await;
    assert_eq!((status, code(&error)), (400, "unknown-namespace"));

    assert_eq!((app.kms_calls(), cache.hits(), cache.misses()), before, "no KMS call and no cache lookup");
    assert_eq!(app.decode("payments", &sealed).await, vec![payload(b"\"payments only\"")]);
}

#[tokio::test]
async fn namespace_traversal_and_encoded_slashes_are_refused_without_a_kms_call() {
    let app = TestApp::spawn().await;
    let body = to_json(&[payload(b"\"would need a data key\"")]);
    let kms_before = app.kms_calls();

    let mut responses: Vec<(String, RawResponse)> = Vec::new();
    for path in ["/..%2Fetc/encode", "/a%2Fb/encode", "/..%2F..%2Fdecode/encode", "/%2e%2e/encode", "/../encode"] {
        responses.push((path.to_owned(), raw_post(&app, path, None, &body).await));
    }
    for header in ["../x", "..", "a/../b", "..%2Fx"] {
        responses.push((format!("X-Namespace: {header}"), raw_post(&app, "/encode", Some(header), &body).await));
    }

    for (what, response) in &responses {
        assert_eq!(response.status, 400, "{what}");
        assert_eq!(response.error_code(), "invalid-namespace", "{what}");
    }
    assert_eq!(app.kms_calls(), kms_before, "no data key was made for a refused namespace");
}

#[tokio::test]
async fn error_bodies_are_json_with_a_code_and_a_message_and_never_echo_what_was_sent() {
    let app = TestApp::spawn_with(|c| {
        c.server.max_payloads = 2;
        c.server.max_body_bytes = 4096;
        c.server.path_prefix = "/codec".into(); // exact routing, so the first case is a namespace mismatch
    })
    .await;
    let secret = b"\"SECRET-4111-1111-1111-1111\"";
    let secret_b64 = STANDARD.encode(secret);
    let sealed = app.encode("payments", vec![payload(secret)]).await;
    let tampered = tamper(&sealed[0]);
    let secret_json = to_json(&[payload(secret)]);
    let big = format!("{{\"payloads\":[{{\"data\":\"{}\"}}]}}", secret_b64.repeat(200));

    let responses = vec![
        app.post("/payments/decode", Some("marketing"), &secret_json).await,
        app.post("/decode", None, &secret_json).await,
        app.post("/decode", Some("../x"), &secret_json).await,
        app.post("/encode", Some("payments"), &to_json(&[payload(secret), payload(secret), payload(secret)])).await,
        app.post("/decode", Some("payments"), &json!({"payloads": [{"data": secret_b64}, {"data": "%%"}]})).await,
        app.post("/decode", Some("marketing"), &to_json(&sealed)).await,
        app.post_decode("payments", &[tampered]).await,
        post_text(&app, "/decode", Some("text/plain"), &secret_json.to_string()).await,
        post_text(&app, "/decode", Some("application/json"), &format!("{{\"payloads\":[{secret_b64}")).await,
        post_text(&app, "/decode", Some("application/json"), &big).await,
        app.post("/no/such/route/x", Some("payments"), &secret_json).await,
        app.post("/download", Some("payments"), &secret_json).await,
    ];
    for response in responses {
        let (status, error) = error_of(response).await;
        assert!(status >= 400, "{error}");
        let text = error.to_string();
        assert!(!text.contains("SECRET-4111") && !text.contains(&secret_b64), "{status}: {text}");
        assert!(!text.contains(&secret_b64[..16]), "{status}: {text}");
    }
    assert_eq!(error_code(app.post_decode("marketing", &sealed).await).await, "decode-failed");
}
