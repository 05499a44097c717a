//! The Remote Data Encoding protocol as the Web UI, the CLI and workers speak it (DESIGN §3): suffix
//! routing, namespace sources, lenient base64 in and exact base64 out, pass-through of foreign payloads,
//! same count and order.
//!
//! Paths whose exact bytes matter (`//decode`, encoded slashes, dot segments) go through `raw_request`,
//! which writes the request line byte for byte: an HTTP client's URL parser may normalise them.

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use codec_server::codec::ENVELOPE_ENCODING;
use codec_server::protocol::{ExternalPayloadDetails, Payload};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, payload, read_payloads, to_json};

/// A response read off the socket by `raw_request`.
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().expect("error.code").to_owned()
    }

    /// The payloads of a Payloads body.
    pub fn payloads(&self) -> Vec<Payload> {
        codec_server::protocol::Payloads::from_json(&self.body).expect("Payloads JSON").payloads
    }
}

/// How `raw_request` sends the body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    ContentLength,
    /// `Transfer-Encoding: chunked`, in chunks of at most 1000 bytes.
    Chunked,
}

/// Sends one HTTP/1.1 request with exactly this request target and these headers (plus `Host`,
/// `Connection: close` and the body framing), and reads the whole response.
pub async fn raw_request(
    app: &TestApp,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    framing: Framing,
) -> RawResponse {
    let authority = app.address.trim_start_matches("http://").to_owned();
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let mut bytes = match framing {
        Framing::ContentLength => {
            request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let mut bytes = request.into_bytes();
            bytes.extend_from_slice(body);
            bytes
        }
        Framing::Chunked => {
            request.push_str("Transfer-Encoding: chunked\r\n\r\n");
            let mut bytes = request.into_bytes();
            for chunk in body.chunks(1000) {
                bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                bytes.extend_from_slice(chunk);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
            bytes
        }
    };
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&authority).expect("connect");
        // A safety net so a broken server fails the test instead of hanging it; not a timing assertion.
        stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        stream.write_all(&bytes).expect("write request");
        bytes.clear();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("read response");
        response
    })
    .await
    .expect("raw request task");
    parse_response(&response)
}

pub fn parse_response(bytes: &[u8]) -> RawResponse {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = std::str::from_utf8(&bytes[..split]).expect("UTF-8 head");
    let rest = &bytes[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    RawResponse { status, headers, body }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = std::str::from_utf8(&bytes[..line_end]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("hex size");
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

/// A JSON POST through `raw_request`.
pub async fn raw_post(app: &TestApp, target: &str, namespace: Option<&str>, body: &Value) -> RawResponse {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(ns) = namespace {
        headers.push(("X-Namespace", ns));
    }
    raw_request(app, "POST", target, &headers, body.to_string().as_bytes(), Framing::ContentLength).await
}

/// POSTs payloads to `path` with optional `X-Namespace`, through reqwest.
async fn post(app: &TestApp, path: &str, namespace: Option<&str>, payloads: &[Payload]) -> reqwest::Response {
    app.post(path, namespace, &to_json(payloads)).await
}

async fn ok_payloads(response: reqwest::Response) -> Vec<Payload> {
    let status = response.status();
    assert_eq!(status, 200, "expected 200: {}", response.text().await.unwrap_or_default());
    read_payloads(response).await
}

fn assert_sealed(payloads: &[Payload]) {
    for p in payloads {
        assert_eq!(p.encoding(), Some(ENVELOPE_ENCODING), "payload was not sealed");
    }
}

#[tokio::test]
async fn a_configured_path_prefix_in_front_of_encode_and_decode_is_routed_by_suffix() {
    let app = TestApp::spawn_with(|c| c.server.path_prefix = "/codec".into()).await;
    let original = vec![payload(b"\"behind an ingress\"")];

    let sealed = ok_payloads(post(&app, "/codec/encode", Some("default"), &original).await).await;
    assert_sealed(&sealed);
    let opened = ok_payloads(post(&app, "/codec/decode", Some("default"), &sealed).await).await;
    assert_eq!(opened, original);

    // The segment between the prefix and the operation is the namespace.
    let in_payments = ok_payloads(post(&app, "/codec/payments/encode", None, &original).await).await;
    let opened = ok_payloads(post(&app, "/codec/payments/decode", None, &in_payments).await).await;
    assert_eq!(opened, original);
}

#[tokio::test]
async fn a_namespace_path_segment_selects_the_namespace_for_encode_and_decode() {
    let app = TestApp::spawn().await;
    let original = vec![payload(b"{\"order\":17}")];

    let sealed = ok_payloads(post(&app, "/payments/encode", None, &original).await).await;
    assert_sealed(&sealed);
    let opened = ok_payloads(post(&app, "/payments/decode", None, &sealed).await).await;
    assert_eq!(opened, original);

    // It really was sealed for `payments`: another namespace cannot open it.
    let elsewhere = post(&app, "/marketing/decode", None, &sealed).await;
    assert_eq!(elsewhere.status(), 400);
    assert_eq!(error_code(elsewhere).await, "decode-failed");
}

#[tokio::test]
async fn a_doubled_slash_before_the_operation_is_accepted() {
    let app = TestApp::spawn().await;
    let original = vec![payload(b"\"endpoint ended in a slash\"")];

    let encoded = raw_post(&app, "//encode", Some("default"), &to_json(&original)).await;
    assert_eq!(encoded.status, 200, "{}", String::from_utf8_lossy(&encoded.body));
    let sealed = encoded.payloads();
    assert_sealed(&sealed);

    let decoded = raw_post(&app, "//decode", Some("default"), &to_json(&sealed)).await;
    assert_eq!(decoded.status, 200, "{}", String::from_utf8_lossy(&decoded.body));
    assert_eq!(decoded.payloads(), original);

    // The CLI's `http://host/{namespace}/` endpoint gives `/payments//decode`.
    let in_payments = raw_post(&app, "/payments//encode", None, &to_json(&original)).await;
    assert_eq!(in_payments.status, 200);
    let opened = raw_post(&app, "/payments//decode", None, &to_json(&in_payments.payloads())).await;
    assert_eq!(opened.status, 200);
    assert_eq!(opened.payloads(), original);
}

#[tokio::test]
async fn query_strings_do_not_take_part_in_routing() {
    let app = TestApp::spawn().await;
    let original = vec![payload(b"\"the UI appends a query\"")];
    let sealed = ok_payloads(post(&app, "/encode?x=y", Some("default"), &original).await).await;
    assert_sealed(&sealed);

    let opened = ok_payloads(post(&app, "/decode?preserveStorageRefs=true", Some("default"), &sealed).await).await;
    assert_eq!(opened, original);

    let raw = raw_post(&app, "//decode?x=y", Some("default"), &to_json(&sealed)).await;
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
    assert_eq!(raw.payloads(), original);

    let with_namespace = raw_post(&app, "/default/decode?preserveStorageRefs=true", None, &to_json(&sealed)).await;
    assert_eq!(with_namespace.status, 200);
    assert_eq!(with_namespace.payloads(), original);
}

#[tokio::test]
async fn a_namespace_from_the_header_only_and_from_the_path_only_are_the_same_namespace() {
    let app = TestApp::spawn().await;
    let original = vec![payload(b"\"header or path\"")];

    let by_header = ok_payloads(post(&app, "/encode", Some("payments"), &original).await).await;
    let by_path = ok_payloads(post(&app, "/payments/encode", None, &original).await).await;

    assert_eq!(ok_payloads(post(&app, "/payments/decode", None, &by_header).await).await, original);
    assert_eq!(ok_payloads(post(&app, "/decode", Some("payments"), &by_path).await).await, original);
}

#[tokio::test]
async fn a_namespace_in_both_the_path_and_the_header_is_accepted_when_they_are_equal() {
    let app = TestApp::spawn().await;
    let original = vec![payload(b"\"both agree\"")];

    let sealed = ok_payloads(post(&app, "/payments/encode", Some("payments"), &original).await).await;
    let opened = ok_payloads(post(&app, "/payments/decode", Some("payments"), &sealed).await).await;

    assert_eq!(opened, original);
}

#[tokio::test]
async fn behind_an_ingress_that_keeps_its_prefix_ui_and_cli_paths_work_without_configuration() {
    let app = TestApp::spawn().await;
    let original = vec![payload(b"\"forwarded unchanged\"")];

    // The UI's endpoint `https://host/codec`, the CLI's `https://host/codec/{namespace}`, both with X-Namespace.
    let sealed = ok_payloads(post(&app, "/codec/encode", Some("default"), &original).await).await;
    assert_sealed(&sealed);
    let ui = ok_payloads(post(&app, "/codec/decode?preserveStorageRefs=true", Some("default"), &sealed).await).await;
    assert_eq!(ui, original);
    let cli = ok_payloads(post(&app, "/codec/default/decode", Some("default"), &sealed).await).await;
    assert_eq!(cli, original);
    let deep = raw_post(&app, "/team-a//codec/default//decode?x=y", Some("default"), &to_json(&sealed)).await;
    assert_eq!(deep.status, 200, "{}", String::from_utf8_lossy(&deep.body));
    assert_eq!(deep.payloads(), original);

    // Without the header the segment before the operation is the namespace, prefix or not.
    let in_payments = ok_payloads(post(&app, "/codec/payments/encode", None, &original).await).await;
    assert_eq!(ok_payloads(post(&app, "/decode", Some("payments"), &in_payments).await).await, original);
}

#[tokio::test]
async fn without_a_configured_prefix_a_path_segment_that_differs_from_the_header_is_a_prefix() {
    let app = TestApp::spawn().await;
    let original = vec![payload(b"\"the header decides\"")];

    // Sealed through `/payments/encode` with `X-Namespace: marketing`: sealed for marketing only.
    let sealed = ok_payloads(post(&app, "/payments/encode", Some("marketing"), &original).await).await;
    assert_eq!(app.decode("marketing", &sealed).await, original);
    let in_payments = post(&app, "/decode", Some("payments"), &sealed).await;
    assert_eq!(in_payments.status(), 400);
    assert_eq!(error_code(in_payments).await, "decode-failed");
}

#[tokio::test]
async fn with_a_configured_prefix_a_path_namespace_that_differs_from_the_header_is_namespace_mismatch() {
    let app = TestApp::spawn_with(|c| c.server.path_prefix = "/codec".into()).await;
    let kms_before = app.kms_calls();

    for path in ["/payments/decode", "/payments/encode", "/codec/payments/decode"] {
        let response = post(&app, path, Some("marketing"), &[payload(b"1")]).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(error_code(response).await, "namespace-mismatch", "{path}");
    }
    assert_eq!(app.kms_calls(), kms_before);

    // Exact: nothing longer than prefix, namespace, operation.
    let longer = post(&app, "/codec/a/payments/decode", Some("payments"), &[payload(b"1")]).await;
    assert_eq!(longer.status(), 404);
}

#[tokio::test]
async fn a_request_that_names_no_namespace_is_refused_with_missing_namespace() {
    let app = TestApp::spawn().await;

    for path in ["/decode", "/encode", "//decode"] {
        let response = raw_post(&app, path, None, &to_json(&[payload(b"1")])).await;
        assert_eq!(response.status, 400, "{path}");
        assert_eq!(response.error_code(), "missing-namespace", "{path}");
    }
}

#[tokio::test]
async fn a_configured_default_namespace_is_used_when_the_request_names_none() {
    let app = TestApp::spawn_with(|c| c.server.default_namespace = Some("fallback".into())).await;
    let original = vec![payload(b"\"no namespace sent\"")];

    let sealed = ok_payloads(post(&app, "/encode", None, &original).await).await;

    // Sealed for the default namespace: it opens there, named or not, and nowhere else.
    assert_eq!(ok_payloads(post(&app, "/decode", None, &sealed).await).await, original);
    assert_eq!(ok_payloads(post(&app, "/decode", Some("fallback"), &sealed).await).await, original);
    let elsewhere = post(&app, "/decode", Some("other"), &sealed).await;
    assert_eq!(elsewhere.status(), 400);
    assert_eq!(error_code(elsewhere).await, "decode-failed");
}

/// Bytes whose standard base64 uses `+` and `/` and needs padding: `+/+/AQ==`.
const ALPHABET_BYTES: [u8; 4] = [0xfb, 0xff, 0xbf, 0x01];

#[tokio::test]
async fn standard_url_safe_and_unpadded_base64_are_accepted_and_answered_standard_and_padded() {
    let app = TestApp::spawn().await;
    // The same bytes in every variant clients send; `anNvbi9wbGFpbg` is "json/plain" unpadded.
    let variants = ["+/+/AQ==", "+/+/AQ", "-_-_AQ==", "-_-_AQ"];
    let body = json!({ "payloads": variants.iter().map(|d| json!({
        "metadata": {"encoding": "anNvbi9wbGFpbg", "bin": d},
        "data": d,
    })).collect::<Vec<_>>() });

    // Decode passes these foreign payloads through, re-encoded as standard padded base64.
    let response = app.post("/decode", Some("default"), &body).await;
    assert_eq!(response.status(), 200);
    let out: Value = response.json().await.unwrap();
    for p in out["payloads"].as_array().unwrap() {
        assert_eq!(p["data"], "+/+/AQ==");
        assert_eq!(p["metadata"]["bin"], "+/+/AQ==");
        assert_eq!(p["metadata"]["encoding"], "anNvbi9wbGFpbg==");
    }

    // Encode reads every variant as the same bytes.
    let response = app.post("/encode", Some("default"), &body).await;
    assert_eq!(response.status(), 200);
    let sealed_json: Value = response.json().await.unwrap();
    assert_every_base64_field_is_standard_padded(&sealed_json);
    let sealed = codec_server::protocol::Payloads::from_json(sealed_json.to_string().as_bytes()).unwrap().payloads;
    let opened = app.decode("default", &sealed).await;
    assert_eq!(opened.len(), variants.len());
    for p in &opened {
        assert_eq!(p.data, ALPHABET_BYTES.as_slice());
        assert_eq!(p.metadata["bin"], ALPHABET_BYTES);
        assert_eq!(p.encoding(), Some("json/plain"));
    }

    // Sealed data sent back URL-safe and unpadded still opens.
    let url_safe = json!({ "payloads": sealed.iter().map(|p| json!({
        "metadata": p.metadata.iter().map(|(k, v)| (k.clone(), json!(URL_SAFE_NO_PAD.encode(v))))
            .collect::<serde_json::Map<_, _>>(),
        "data": URL_SAFE_NO_PAD.encode(&p.data),
    })).collect::<Vec<_>>() });
    let response = app.post("/decode", Some("default"), &url_safe).await;
    assert_eq!(read_payloads(response).await, opened);
}

fn assert_every_base64_field_is_standard_padded(body: &Value) {
    for p in body["payloads"].as_array().expect("payloads") {
        let mut fields = vec![p["data"].as_str().expect("data")];
        fields.extend(p["metadata"].as_object().expect("metadata").values().map(|v| v.as_str().expect("b64")));
        for field in fields {
            // The strict standard engine refuses URL-safe characters and missing or extra padding.
            assert!(STANDARD.decode(field).is_ok(), "not standard padded base64: {field}");
        }
    }
}

#[tokio::test]
async fn unknown_json_fields_are_ignored() {
    let app = TestApp::spawn().await;
    let body = json!({
        "payloads": [{
            "metadata": {"encoding": "anNvbi9wbGFpbg=="},
            "data": "eyJhIjoxfQ==",
            "someFutureField": {"nested": [1, 2]},
        }],
        "alsoUnknown": true,
    });

    let sealed = read_payloads(app.post("/encode", Some("default"), &body).await).await;
    let opened = app.decode("default", &sealed).await;

    assert_eq!(opened, vec![payload(b"{\"a\":1}")]);
    let passed = app.post("/decode", Some("default"), &body).await;
    assert_eq!(read_payloads(passed).await, vec![payload(b"{\"a\":1}")]);
}

#[tokio::test]
async fn external_payloads_are_preserved_when_decode_passes_a_payload_through() {
    let app = TestApp::spawn().await;
    let body = json!({ "payloads": [{
        "metadata": {"encoding": "anNvbi9wbGFpbg=="},
        "data": "e30=",
        "externalPayloads": [{"sizeBytes": "123"}],
    }]});

    let response = app.post("/decode", Some("default"), &body).await;

    assert_eq!(response.status(), 200);
    let out: Value = response.json().await.unwrap();
    assert_eq!(out["payloads"][0]["externalPayloads"], json!([{"sizeBytes": "123"}]));
}

#[tokio::test]
async fn external_payloads_survive_an_encode_decode_round_trip() {
    let app = TestApp::spawn().await;
    let body = json!({ "payloads": [{
        "metadata": {"encoding": "anNvbi9wbGFpbg=="},
        "data": "e30=",
        "externalPayloads": [{"sizeBytes": "123"}],
    }]});

    let sealed = read_payloads(app.post("/encode", Some("default"), &body).await).await;
    assert_sealed(&sealed);
    let response = app.post_decode("default", &sealed).await;

    assert_eq!(response.status(), 200);
    let out: Value = response.json().await.unwrap();
    assert_eq!(out["payloads"][0]["externalPayloads"], json!([{"sizeBytes": "123"}]));
    assert_eq!(out["payloads"][0]["data"], "e30=");
}

fn foreign_payloads() -> Vec<Payload> {
    let mut protobuf = payload(&[0x0a, 0x03, b'a', b'b', b'c', 0x00, 0xff]);
    protobuf.metadata.insert("encoding".into(), b"json/protobuf".to_vec());
    protobuf.metadata.insert("messageType".into(), b"temporal.api.sdk.v1.ExternalStorageReference".to_vec());
    protobuf.external_payloads = vec![ExternalPayloadDetails { size_bytes: 9 }];
    let mut null = payload(b"");
    null.metadata.insert("encoding".into(), b"binary/null".to_vec());
    let mut other_codec = payload(&[1, 2, 3, 250, 251]);
    other_codec.metadata.insert("encoding".into(), b"binary/someone-elses-codec".to_vec());
    let no_metadata = Payload { data: bytes::Bytes::from_static(b"\x00raw bytes\xff"), ..Payload::default() };
    vec![payload(b"{\"plain\":true}"), null, protobuf, other_codec, no_metadata, Payload::default()]
}

#[tokio::test]
async fn payloads_that_are_not_ours_pass_through_decode_byte_identical() {
    let app = TestApp::spawn().await;
    let originals = foreign_payloads();
    let kms_before = app.kms_calls();

    let response = app.post_decode("default", &originals).await;

    assert_eq!(response.status(), 200);
    assert_eq!(read_payloads(response).await, originals);
    assert_eq!(app.kms_calls(), kms_before, "foreign payloads need no key");
}

#[tokio::test]
async fn responses_are_json_with_exactly_the_payloads_sent_in_their_order() {
    let app = TestApp::spawn().await;
    let secrets: Vec<Payload> = (0..3).map(|i| payload(format!("{{\"secret\":{i}}}").as_bytes())).collect();
    let sealed = app.encode("default", secrets.clone()).await;
    assert_eq!(sealed.len(), 3);
    assert_sealed(&sealed);
    let foreign = foreign_payloads();
    // Foreign and sealed payloads interleaved; the expected answer opens only ours.
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for (i, f) in foreign.iter().enumerate() {
        request.push(f.clone());
        expected.push(f.clone());
        if let Some(s) = sealed.get(i) {
            request.push(s.clone());
            expected.push(secrets[i].clone());
        }
    }
    request.push(sealed[0].clone());
    expected.push(secrets[0].clone());

    let response = app.post_decode("default", &request).await;

    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type.split(';').next().unwrap().trim(), "application/json");
    let opened = read_payloads(response).await;
    assert_eq!(opened.len(), request.len());
    assert_eq!(opened, expected);

    // Encode answers one sealed payload per payload sent, as JSON, too.
    let response = post(&app, "/encode", Some("default"), &request).await;
    assert_eq!(response.headers()["content-type"], "application/json");
    let resealed = read_payloads(response).await;
    assert_eq!(resealed.len(), request.len());
    assert_eq!(app.decode("default", &resealed).await, request);
}

#[tokio::test]
async fn download_is_answered_501_download_unsupported_as_json() {
    let app = TestApp::spawn().await;
    let mut reference = payload(b"{\"key\":\"s3://bucket/x\"}");
    reference.metadata.insert("encoding".into(), b"json/protobuf".to_vec());
    reference.metadata.insert("messageType".into(), b"temporal.api.sdk.v1.ExternalStorageReference".to_vec());

    for path in ["/download", "/default/download?preserveStorageRefs=true"] {
        let response = post(&app, path, Some("default"), std::slice::from_ref(&reference)).await;
        assert_eq!(response.status(), 501, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(error_code(response).await, "download-unsupported", "{path}");
    }
}

#[tokio::test]
async fn healthz_answers_200() {
    let app = TestApp::spawn().await;

    let response = app.client.get(app.url("/healthz")).send().await.unwrap();

    assert_eq!(response.status(), 200);
}
