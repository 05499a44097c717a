//! Encode → decode over HTTP keeps every payload byte-identical and in order.

use crate::helpers::{TestApp, edit_data, payload};
use codec_server::codec::ENVELOPE_ENCODING;
use codec_server::protocol::{ExternalPayloadDetails, Payload, Payloads};

#[tokio::test]
async fn payloads_from_empty_to_4_mib_round_trip_with_their_metadata() {
    let app = TestApp::spawn().await;
    let mut big = vec![0u8; 4 << 20];
    for (i, b) in big.iter_mut().enumerate() {
        *b = (i * 7 + i / 251) as u8;
    }
    let mut with_meta = payload(b"{\"card\":\"4111\"}");
    with_meta.metadata.insert("messageType".into(), vec![0, 255, 1]);
    with_meta.external_payloads = vec![ExternalPayloadDetails { size_bytes: 42 }];
    let originals = vec![Payload::default(), payload(b""), with_meta, payload(&big)];

    let sealed = app.encode("default", originals.clone()).await;

    assert_eq!(sealed.len(), originals.len());
    for (s, o) in sealed.iter().zip(&originals) {
        assert_eq!(s.encoding(), Some(ENVELOPE_ENCODING));
        assert!(s.external_payloads.is_empty());
        if o.data.len() >= 4 {
            assert!(!s.data.windows(o.data.len().min(64)).any(|w| w == &o.data[..o.data.len().min(64)]));
        }
    }
    let opened = app.decode("default", &sealed).await;
    assert_eq!(opened, originals);
}

#[tokio::test]
async fn compressed_namespaces_round_trip_and_share_one_decompression_budget_per_request() {
    let app = TestApp::spawn_with(|c| {
        c.namespaces[0].compress = true;
        c.server.max_decompressed_bytes = 1 << 20;
    })
    .await;
    let big = |c: u8| payload(&vec![c; 600 << 10]);
    let sealed = app.encode("default", vec![big(b'a'), big(b'b'), big(b'c')]).await;
    for s in &sealed {
        let env = codec_server::codec::envelope::parse(&s.data).unwrap();
        assert!(env.is_compressed(), "a compressible payload is stored compressed");
        assert!(s.data.len() < 64 << 10);
    }
    // Each payload alone fits the 1 MiB budget...
    for (s, c) in sealed.iter().zip([b'a', b'b', b'c']) {
        assert_eq!(app.decode("default", std::slice::from_ref(s)).await, vec![big(c)]);
    }
    // ...but one request may not inflate more than 1 MiB in total.
    let response = app.post_decode("default", &sealed).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "decode-failed");
    assert_eq!(body["error"]["indexes"], serde_json::json!([1, 2]));
}

/// Large envelopes are opened off the HTTP worker (DESIGN: no blocking on request threads); the move must
/// keep every check: compression, the per-request decompression budget and tamper detection.
#[tokio::test]
async fn large_compressed_envelopes_open_within_the_budget_and_tampering_is_still_caught() {
    // 3 MiB of hex digits: about half compressible, so the sealed envelope is still well over 256 KiB.
    let mut raw = vec![0u8; 3 << 20];
    codec_server::codec::random::fill(&mut raw);
    let text: Vec<u8> = raw.iter().map(|b| b"0123456789abcdef"[usize::from(b & 15)]).collect();
    let app = TestApp::spawn_with(|c| {
        c.namespaces[0].compress = true;
        c.server.max_decompressed_bytes = 4 << 20;
    })
    .await;
    let originals = vec![payload(&text), payload(b"small")];
    let sealed = app.encode("big", originals.clone()).await;
    assert!(sealed[0].data.len() > 1 << 20 && sealed[0].data.len() < text.len(), "compressed but large");
    assert_eq!(app.decode("big", &sealed).await, originals);

    // Two of them need 6 MiB of decompression: over the 4 MiB budget for the request.
    let twice = [sealed[0].clone(), sealed[0].clone()];
    let response = app.post_decode("big", &twice).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["indexes"], serde_json::json!([1]), "the second one ran out of budget: {body}");

    let mut tampered = sealed.clone();
    let middle = tampered[0].data.len() / 2;
    edit_data(&mut tampered[0], |data| data[middle] ^= 0x40);
    let response = app.post_decode("big", &tampered).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["indexes"], serde_json::json!([0]));
}

/// Replies over 256 KiB of data are streamed in pieces (`protocol::reply`): still one exact
/// `Content-Length` (no chunked encoding, which some proxies buffer), and byte for byte the same payloads.
#[tokio::test]
async fn large_replies_are_streamed_with_their_exact_content_length() {
    let app = TestApp::spawn().await;
    let mut text = vec![0u8; 700 << 10];
    codec_server::codec::random::fill(&mut text);
    let originals = vec![payload(&text), payload(b"small"), payload(&text[..300 << 10])];
    let sealed = app.encode("default", originals.clone()).await;
    let response = app.post_decode("default", &sealed).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("transfer-encoding").is_none(), "{:?}", response.headers());
    let declared: usize = response.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let body = response.bytes().await.unwrap();
    assert_eq!(declared, body.len());
    assert_eq!(Payloads::from_json(&body).unwrap().payloads, originals);
}
