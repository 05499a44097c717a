//! The request body parser (`Payloads::from_json_bounded`, lenient base64) and the protobuf
//! `Payload::decode_bounded`, on the same bytes.
//!
//! Properties: the fast path for the common shape returns only what the serde path returns; what
//! parses respects the bounds, and what we write back (`to_json`, exact protojson)
//! parses to the same payloads; a protobuf Payload that decodes re-encodes to the same Payload.
#![no_main]

use codec_server::protocol::payloads::{MAX_EXTERNAL_PAYLOADS, MAX_METADATA_ENTRIES};
use codec_server::protocol::{Payload, Payloads, payloads_fast};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use prost::bytes::Bytes;

/// A small payload bound, so the bound's own error path is reached too.
const MAX_PAYLOADS: usize = 8;

fuzz_target!(|data: &[u8]| {
    // The fast path for the common shape answers only what serde_json's path answers.
    if let Some(fast) = payloads_fast::parse(data, MAX_PAYLOADS) {
        assert_eq!(Payloads::from_json_bounded_serde(data, MAX_PAYLOADS).as_ref().ok(), Some(&fast));
    }
    if let Ok(parsed) = Payloads::from_json_bounded(data, MAX_PAYLOADS) {
        assert!(parsed.payloads.len() <= MAX_PAYLOADS);
        for p in &parsed.payloads {
            assert!(p.metadata.len() <= MAX_METADATA_ENTRIES);
            assert!(p.external_payloads.len() <= MAX_EXTERNAL_PAYLOADS);
        }
        let written = parsed.to_json();
        let again = Payloads::from_json_bounded(&written, MAX_PAYLOADS).expect("our own JSON parses");
        assert_eq!(again, parsed);
    }
    if let Ok(p) = Payload::decode_bounded(Bytes::copy_from_slice(data)) {
        assert!(p.metadata.len() <= MAX_METADATA_ENTRIES);
        assert!(p.external_payloads.len() <= MAX_EXTERNAL_PAYLOADS);
        assert_eq!(Payload::decode_bounded(p.encode_to_vec().into()).as_ref(), Ok(&p));
    }
});
