//! Hostile clients (issue 15): bodies that are never sent or trickle in, more body bytes than the
//! server holds at once, parse and KMS amplification, and poison payloads. Each gets a clear status
//! without the server first spending memory or KMS calls on it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use codec_server::auth::Authorizer;
use codec_server::codec::envelope::{self, Edk, SealParams};
use codec_server::codec::{ENVELOPE_ENCODING, aead};
use codec_server::kms::{DataKey, Provider};
use codec_server::protocol::{CodecOp, ExternalPayloadDetails, Namespace, Payload};
use serde_json::json;

use crate::auth::jwt_config;
use crate::helpers::{TestApp, error_code, payload, to_json};
use crate::protocol::{RawResponse, parse_response};
use crate::support::jwks_server::JwksServer;

/// Opens a connection and sends a request head announcing `content_length` bytes, then `sent` of them.
fn start_post(app: &TestApp, path: &str, headers: &[(&str, &str)], content_length: usize, sent: &[u8]) -> TcpStream {
    let authority = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).expect("connect");
    // A safety net so a broken server fails the test instead of hanging it; not a timing assertion.
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nX-Namespace: default\r\nContent-Length: {content_length}\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(sent).expect("write body part");
    stream
}

/// Reads one response from a connection whose request body may never be completed.
fn read_response(mut stream: TcpStream) -> tokio::task::JoinHandle<RawResponse> {
    tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if bytes.is_empty() => panic!("no response: {e}"),
                Err(_) => break,
            }
            // The error bodies are small: stop once the announced length is in.
            if let Some(split) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&bytes[..split]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if len.is_some_and(|len| bytes.len() >= split + 4 + len) {
                    break;
                }
            }
        }
        parse_response(&bytes)
    })
}

#[tokio::test]
async fn a_caller_without_a_token_is_refused_before_any_of_its_body_is_read() {
    let jwks = JwksServer::start(&["rsa-1"]);
    let url = jwks.url.clone();
    let app = TestApp::spawn_with(move |c| jwt_config(c, &url)).await;
    // 15 MiB announced, 10 bytes sent, the rest never: the answer cannot depend on the body.
    let streams: Vec<_> =
        (0..5).map(|_| start_post(&app, "/decode", &[], 15 * 1024 * 1024 + 1, b"{\"payloads")).collect();
    for stream in streams {
        let response = read_response(stream).await.unwrap();
        assert_eq!(response.status, 401);
        assert_eq!(response.error_code(), "unauthenticated");
    }
    assert_eq!(app.state.protocol.body.in_use(), 0, "no body bytes were reserved for refused callers");
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_at_the_read_deadline() {
    let app = TestApp::spawn_with(|c| c.server.body_read_timeout = Duration::from_secs(1)).await;
    let stream = start_post(&app, "/decode", &[], 1000, b"{\"payloads\":[");
    let response = read_response(stream).await.unwrap();
    assert_eq!(response.status, 408);
    assert_eq!(response.error_code(), "body-timeout");
    assert_eq!(app.state.protocol.body.in_use(), 0, "the reservation is released");
}

#[tokio::test]
async fn body_bytes_in_flight_are_bounded_across_connections() {
    let app = TestApp::spawn_with(|c| {
        c.server.max_body_bytes = 4096;
        c.server.max_inflight_body_bytes = 8192;
    })
    .await;
    let body = to_json(&[payload(&[b'x'; 2000])]).to_string().into_bytes();
    assert!(body.len() < 4096);
    // Two slow uploads hold their announced bytes while they trickle...
    let slow: Vec<_> = (0..2).map(|_| start_post(&app, "/decode", &[], 4000, b"{")).collect();
    for _ in 0..100 {
        if app.state.protocol.body.in_use() == 8000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.state.protocol.body.in_use(), 8000);
    // ...so a third is told to come back, at once and without its body being read.
    let third = read_response(start_post(&app, "/decode", &[], body.len(), &body)).await.unwrap();
    assert_eq!(third.status, 503);
    assert_eq!(third.error_code(), "overloaded");
    assert_eq!(third.header("retry-after"), Some("1"));
    drop(slow);
    for _ in 0..100 {
        if app.state.protocol.body.in_use() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.state.protocol.body.in_use(), 0, "closed connections give their bytes back");
    let after = read_response(start_post(&app, "/decode", &[], body.len(), &body)).await.unwrap();
    assert_eq!(after.status, 200);
}

#[tokio::test]
async fn a_body_of_empty_objects_stops_at_the_payload_limit() {
    let app = TestApp::spawn().await;
    let body = format!("{{\"payloads\":[{}{{}}]}}", "{},".repeat(200_000));
    let response = app.post_text("/decode", Some("default"), body).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "too-many-payloads");
    let many_metadata: serde_json::Map<String, serde_json::Value> =
        (0..100_000).map(|i| (format!("k{i}"), json!(""))).collect();
    let body = json!({ "payloads": [{ "metadata": many_metadata, "data": "" }] });
    let response = app.post("/encode", Some("default"), &body).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "too-many-elements");
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_exhausting_the_stack() {
    let app = TestApp::spawn().await;
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // An ignored unknown field is skipped without recursion (serde_json keeps its brackets in a list,
    // at most one byte per byte of the body); where the parser descends, its recursion limit (128)
    // stops the parse at once.
    let cases = [
        (format!("{{\"payloads\":[],\"unknownField\":{}}}", deep(100_000)), 200),
        (format!("{{\"payloads\":{}}}", deep(100_000)), 400),
        (deep(100_000), 400),
        (format!("{{\"payloads\":[{{\"metadata\":{{\"k\":{}}}}}]}}", deep(1_000)), 400),
    ];
    for (i, (body, status)) in cases.into_iter().enumerate() {
        let response = app.post_text("/decode", Some("default"), body).await;
        assert_eq!(response.status(), status, "case {i}");
        if status == 400 {
            assert_eq!(error_code(response).await, "malformed-json", "case {i}");
        }
    }
    // The server is still there.
    assert_eq!(app.decode("default", &[payload(b"ok")]).await, vec![payload(b"ok")]);
}

fn ns(name: &str) -> Namespace {
    Namespace::parse(name).unwrap()
}

#[tokio::test]
async fn a_sealed_poison_payload_is_refused_when_opened_instead_of_blowing_up_the_response() {
    let app = TestApp::spawn_with(|c| c.namespaces[0].compress = true).await;
    // Sealed through the library (the HTTP encode path refuses such a payload before sealing it).
    let poison = Payload { external_payloads: vec![ExternalPayloadDetails::default(); 200_000], ..payload(b"poison") };
    let grant = Authorizer::operator_grant(&ns("default"), CodecOp::Encode);
    let sealed = app.state.codec.encode(&grant, vec![poison]).await.unwrap().payloads;
    assert!(sealed[0].data.len() < 10_000, "compressed to {} bytes", sealed[0].data.len());
    let response = app.post_decode("default", &[sealed[0].clone(), sealed[0].clone(), sealed[0].clone()]).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "decode-failed");
    assert_eq!(body["error"]["indexes"], json!([0, 1, 2]));
    assert!(body.to_string().len() < 1000);
}

/// An envelope for `default` under the dev KEK whose wrapped keys are garbage.
fn forged_envelope(edks: &[Edk]) -> Payload {
    let params = SealParams {
        suite: envelope::SUITE_AES256GCM_HKDF_SHA512_PER_KEY,
        flags: 0,
        message_id: envelope::random_message_id(),
        iv: aead::Iv::random(),
        namespace: "default",
        edks,
    };
    let data = envelope::seal(&DataKey::random(), &params, b"x").unwrap();
    let mut p = payload(b"");
    p.metadata.insert("encoding".into(), ENVELOPE_ENCODING.as_bytes().to_vec());
    p.data = data.into();
    p
}

fn garbage_edk(n: u32) -> Edk {
    Edk { provider: Provider::Local, kek_ref: "local://dev".into(), wrapped: n.to_be_bytes().repeat(12) }
}

#[tokio::test]
async fn forged_envelopes_cannot_multiply_kms_calls() {
    let app = TestApp::spawn().await;
    let before = app.kms_calls();

    // Four EDKs naming the same KEK: refused as malformed, no KMS call.
    let repeated = forged_envelope(&[garbage_edk(1), garbage_edk(2), garbage_edk(3), garbage_edk(4)]);
    let response = app.post_decode("default", &vec![repeated; 50]).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "decode-failed");
    assert_eq!(app.kms_calls(), before, "duplicate KEK references never reach the KMS");

    // 1,000 envelopes, each with its own garbage data key: at most 32 unwraps, then the request stops.
    let forged: Vec<Payload> = (0..1000).map(|i| forged_envelope(&[garbage_edk(i)])).collect();
    let response = app.post_decode("default", &forged).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "too-many-data-keys");
    let calls = app.kms_calls() - before;
    assert!(calls <= 32, "{calls} unwraps for one request");
}
