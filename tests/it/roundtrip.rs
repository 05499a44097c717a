//! Encode → decode over HTTP keeps every payload byte-identical and in order.

use crate::helpers::{TestApp, payload};
use codec_server::codec::ENVELOPE_ENCODING;
use codec_server::protocol::{ExternalPayloadDetails, Payload};

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
