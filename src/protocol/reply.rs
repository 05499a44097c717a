//! The `/encode` and `/decode` reply, `{"payloads":[…]}`, written as protojson writes it: standard padded
//! base64, int64 as a string, metadata keys sorted.
//!
//! A small reply is written into one buffer. A large one is streamed: the JSON text around the
//! payloads' data is written up front, and the data is base64-encoded a piece at a time while actix
//! sends the reply. Each piece is then encoded, copied into the connection's write buffer and into the
//! socket while it is still in the CPU cache. Written whole, a 1 MiB payload's 1.4 MB of base64 went
//! cold to memory and was read back twice, and the connection's write buffer grew to hold it all.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::Bytes;

use super::Payload;
use super::base64_lenient;

/// Replies whose payload data add up to at least this many bytes are streamed.
pub const STREAM_THRESHOLD: usize = 256 * 1024;
/// Data bytes base64-encoded per piece: a multiple of 3, so the pieces' base64 concatenates to the
/// whole's, and 32 KiB of base64, the size at which actix flushes its write buffer to the socket.
const PIECE: usize = 24 * 1024;

/// The whole reply in one buffer (small replies, the CLI, tests).
pub fn to_json(payloads: &[Payload]) -> Vec<u8> {
    let mut w = JsonWriter::with_capacity_for(payloads);
    w.payloads(payloads);
    w.out
}

/// The reply as an HTTP body: streamed when its data is large, one buffer otherwise.
pub fn body(payloads: &[Payload]) -> BoxBody {
    match payloads.iter().map(|p| p.data.len()).sum::<usize>() >= STREAM_THRESHOLD {
        true => BoxBody::new(StreamedJson::new(payloads)),
        false => BoxBody::new(to_json(payloads)),
    }
}

/// A reply sent in pieces: JSON text, and payload data (shared, not copied) to base64-encode as it goes.
pub struct StreamedJson {
    parts: VecDeque<Part>,
    len: usize,
}

enum Part {
    Text(Bytes),
    Data(Bytes),
}

impl StreamedJson {
    pub fn new(payloads: &[Payload]) -> StreamedJson {
        let mut w = JsonWriter { out: Vec::new(), deferred: Some(Vec::new()) };
        w.payloads(payloads);
        let mut parts = w.deferred.unwrap_or_default();
        parts.push(Part::Text(w.out.into()));
        parts.retain(|p| match p {
            Part::Text(bytes) | Part::Data(bytes) => !bytes.is_empty(),
        });
        let len = parts
            .iter()
            .map(|p| match p {
                Part::Text(text) => text.len(),
                Part::Data(data) => base64_len(data.len()),
            })
            .sum();
        StreamedJson { parts: parts.into(), len }
    }

    /// The exact length of the whole reply (its `Content-Length`), however much of it was sent.
    pub fn content_length(&self) -> usize {
        self.len
    }

    /// Whether every piece has been handed out.
    pub fn is_done(&self) -> bool {
        self.parts.is_empty()
    }

    /// The next piece of the reply.
    pub fn next_piece(&mut self) -> Option<Bytes> {
        match self.parts.front_mut()? {
            Part::Text(text) => {
                let text = std::mem::take(text);
                self.parts.pop_front();
                Some(text)
            }
            Part::Data(data) => {
                let piece = data.split_to(data.len().min(PIECE));
                if data.is_empty() {
                    self.parts.pop_front();
                }
                let mut out = Vec::with_capacity(base64_len(piece.len()));
                base64_lenient::encode_into(&piece, &mut out);
                Some(out.into())
            }
        }
    }
}

impl MessageBody for StreamedJson {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len as u64)
    }

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> {
        Poll::Ready(self.get_mut().next_piece().map(Ok))
    }
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Writes the reply's JSON straight into a buffer. Base64 text never needs JSON escaping, so it is
/// encoded in place instead of through a `String` and serde_json's per-byte escape check (for large
/// payloads those two passes cost more than the AEAD); only metadata keys, which callers choose, go
/// through serde_json's escaping. With `deferred`, each payload's data is left out of the text and
/// recorded as a part of its own, between the text before and after it.
struct JsonWriter {
    out: Vec<u8>,
    deferred: Option<Vec<Part>>,
}

impl JsonWriter {
    fn with_capacity_for(payloads: &[Payload]) -> JsonWriter {
        let estimate: usize = payloads
            .iter()
            .map(|p| {
                40 + base64_len(p.data.len())
                    + p.metadata.iter().map(|(k, v)| k.len() + base64_len(v.len()) + 6).sum::<usize>()
                    + p.external_payloads.len() * 32
            })
            .sum();
        JsonWriter { out: Vec::with_capacity(16 + estimate), deferred: None }
    }

    fn payloads(&mut self, payloads: &[Payload]) {
        self.raw(b"{\"payloads\":[");
        for (i, p) in payloads.iter().enumerate() {
            if i > 0 {
                self.raw(b",");
            }
            self.payload(p);
        }
        self.raw(b"]}");
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// A JSON string of standard, padded base64.
    fn base64(&mut self, bytes: &[u8]) {
        self.out.push(b'"');
        base64_lenient::encode_into(bytes, &mut self.out);
        self.out.push(b'"');
    }

    /// The payload's data: in place, or as a part of its own when deferred.
    fn data(&mut self, data: &Bytes) {
        match self.deferred.as_mut() {
            Some(parts) => {
                self.out.push(b'"');
                parts.push(Part::Text(std::mem::take(&mut self.out).into()));
                parts.push(Part::Data(data.clone()));
                self.out.push(b'"');
            }
            None => self.base64(data),
        }
    }

    /// A JSON string of caller-chosen text, escaped.
    fn text(&mut self, text: &str) {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, text);
    }

    fn payload(&mut self, p: &Payload) {
        self.raw(b"{\"metadata\":{");
        for (i, (key, value)) in p.metadata.iter().enumerate() {
            if i > 0 {
                self.raw(b",");
            }
            self.text(key);
            self.raw(b":");
            self.base64(value);
        }
        self.raw(b"},\"data\":");
        self.data(&p.data);
        if !p.external_payloads.is_empty() {
            self.raw(b",\"externalPayloads\":[");
            for (i, e) in p.external_payloads.iter().enumerate() {
                if i > 0 {
                    self.raw(b",");
                }
                // Straight into the buffer: no String per entry (writing into a Vec cannot fail).
                let _ = write!(self.out, "{{\"sizeBytes\":\"{}\"}}", e.size_bytes);
            }
            self.raw(b"]");
        }
        self.raw(b"}");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::protocol::ExternalPayloadDetails;

    fn payload(data_len: usize, seed: u8) -> Payload {
        Payload {
            metadata: BTreeMap::from([
                ("encoding".to_owned(), b"json/plain".to_vec()),
                ("a \"quoted\" key".to_owned(), vec![seed; 5]),
            ]),
            data: (0..data_len).map(|i| (i as u8).wrapping_mul(seed)).collect::<Vec<u8>>().into(),
            external_payloads: vec![ExternalPayloadDetails { size_bytes: data_len as i64 }],
        }
    }

    #[test]
    fn the_streamed_reply_is_byte_for_byte_the_whole_one_with_its_exact_length() {
        // Data lengths around the piece size and its base64 padding, empty data, several payloads.
        let cases: Vec<Vec<Payload>> = vec![
            vec![],
            vec![payload(0, 1)],
            vec![payload(1, 3)],
            vec![payload(PIECE - 1, 5), payload(0, 7), payload(PIECE, 9)],
            vec![payload(PIECE + 1, 11), payload(PIECE + 2, 13)],
            vec![payload(5 * PIECE + 2, 15), payload(3, 17), Payload::default()],
        ];
        for payloads in cases {
            let whole = to_json(&payloads);
            let mut streamed = StreamedJson::new(&payloads);
            assert_eq!(streamed.content_length(), whole.len());
            let mut pieces = Vec::new();
            while let Some(piece) = streamed.next_piece() {
                assert!(!piece.is_empty(), "an empty piece");
                assert!(piece.len() <= base64_len(PIECE), "a piece of {} bytes", piece.len());
                pieces.push(piece);
            }
            assert!(streamed.is_done());
            assert_eq!(streamed.content_length(), whole.len(), "the length is the whole reply's");
            assert_eq!(pieces.concat(), whole, "{} payloads", payloads.len());
            let data: usize = payloads.iter().map(|p| p.data.len()).sum();
            assert!(pieces.len() >= data / PIECE, "the data was not sent in pieces");
        }
    }

    #[test]
    fn large_replies_are_streamed_small_ones_are_not() {
        let small = body(&[payload(STREAM_THRESHOLD - 1, 1)]);
        assert!(
            matches!(small.size(), BodySize::Sized(n) if n as usize == to_json(&[payload(STREAM_THRESHOLD - 1, 1)]).len())
        );
        assert!(small.try_into_bytes().is_ok(), "a small reply is one buffer");
        let large = [payload(STREAM_THRESHOLD, 1)];
        let streamed = body(&large);
        assert!(matches!(streamed.size(), BodySize::Sized(n) if n as usize == to_json(&large).len()));
        assert!(streamed.try_into_bytes().is_err(), "a large reply is streamed");
    }
}
