//! A fast path for the `Payloads` JSON that clients send: `{"payloads":[{"metadata":{…},"data":"…",
//! "externalPayloads":[…]}]}`, whitespace anywhere, fields in any order.
//!
//! It reads that shape only: no escapes, no `null`, no unknown or repeated fields, numbers as plain
//! integers, within every bound. On anything else (a malformed body included) it returns `None` and the
//! caller parses with serde_json, which accepts the rest of proto3 JSON and words every error. So it
//! only ever returns what the serde path returns for the same body; the `payloads` fuzz target checks
//! that.
//!
//! It saves serde's generic machinery per field: 3 % of the instructions of a 1 KiB decode. For a large
//! `data` string it does what serde does, one scan for the closing quote and then the base64 decode.
//! Decoding block by block without the scan was tried (docs/performance.md, session 9): it saved
//! nothing, because the first pass over a cold megabyte pays for fetching it whichever pass that is, and
//! it had to guess the decoded size before knowing it.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::base64_lenient;
use super::payloads::{ExternalPayloadDetails, MAX_EXTERNAL_PAYLOADS, MAX_METADATA_ENTRIES, Payload, Payloads};

/// The payloads, or `None` when the body is not in the common shape (the caller then uses serde_json).
pub fn parse(body: &[u8], max_payloads: usize) -> Option<Payloads> {
    let mut c = Cursor { b: body, i: 0 };
    let mut payloads = None;
    // The only field read is `payloads`, once; serde skips other fields, so they are left to it.
    c.object(|c, key| match key {
        b"payloads" if payloads.is_none() => {
            payloads = Some(c.array(max_payloads, Cursor::payload)?);
            Some(())
        }
        _ => None,
    })?;
    c.skip_ws();
    (c.i == body.len()).then(|| Payloads { payloads: payloads.unwrap_or_default() })
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.i += 1)
    }

    /// After an element: `true` on `,` (another follows), `false` on `close`.
    fn more(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Some(true)
            }
            b if b == close => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A string without escapes or control characters, as its raw bytes.
    fn plain_str(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = &self.b[self.i..];
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        let text = &rest[..end];
        if rest[end] != b'"' || text.iter().any(|&b| b < 0x20) {
            return None;
        }
        self.i += end + 1;
        Some(text)
    }

    /// `{ "key": value, … }`: `field` reads each key's value, and answers `None` for a key it does not
    /// take (unknown or repeated) or a value it cannot read.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.plain_str()?;
            self.eat(b':')?;
            field(self, key)?;
            if !self.more(b'}')? {
                return Some(());
            }
        }
    }

    /// `[ item, … ]` of at most `limit` items.
    fn array<T>(&mut self, limit: usize, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.eat(b'[')?;
        let mut items = Vec::new();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(items);
        }
        loop {
            if items.len() == limit {
                return None;
            }
            items.push(item(self)?);
            if !self.more(b']')? {
                return Some(items);
            }
        }
    }

    fn payload(&mut self) -> Option<Payload> {
        let (mut metadata, mut data, mut external) = (None, None, None);
        self.object(|c, key| match key {
            b"metadata" if metadata.is_none() => {
                metadata = Some(c.metadata()?);
                Some(())
            }
            b"data" if data.is_none() => {
                data = Some(c.base64_data()?);
                Some(())
            }
            b"externalPayloads" | b"external_payloads" if external.is_none() => {
                external = Some(c.array(MAX_EXTERNAL_PAYLOADS, Cursor::external)?);
                Some(())
            }
            _ => None,
        })?;
        Some(Payload {
            metadata: metadata.unwrap_or_default(),
            data: data.unwrap_or_default(),
            external_payloads: external.unwrap_or_default(),
        })
    }

    fn metadata(&mut self) -> Option<BTreeMap<String, Vec<u8>>> {
        let mut entries = BTreeMap::new();
        let mut seen = 0;
        self.object(|c, key| {
            seen += 1;
            if seen > MAX_METADATA_ENTRIES {
                return None;
            }
            let key = std::str::from_utf8(key).ok()?.to_owned();
            let value = base64_lenient::decode(c.plain_str()?).ok()?;
            // A repeated key: the later value wins, as with serde.
            entries.insert(key, value);
            Some(())
        })?;
        Some(entries)
    }

    fn external(&mut self) -> Option<ExternalPayloadDetails> {
        let mut size_bytes = None;
        self.object(|c, key| match key {
            b"sizeBytes" | b"size_bytes" if size_bytes.is_none() => {
                size_bytes = Some(c.int64()?);
                Some(())
            }
            _ => None,
        })?;
        Some(ExternalPayloadDetails { size_bytes: size_bytes.unwrap_or(0) })
    }

    /// An int64 as a plain JSON integer or as a string of one (proto3 JSON writes the string).
    fn int64(&mut self) -> Option<i64> {
        if self.peek()? == b'"' {
            return std::str::from_utf8(self.plain_str()?).ok()?.parse().ok();
        }
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let digits = self.b[self.i..].iter().take_while(|b| b.is_ascii_digit()).count();
        // JSON forbids leading zeros; fractions and exponents are left to serde.
        if digits == 0 || (digits > 1 && self.b[self.i] == b'0') {
            return None;
        }
        self.i += digits;
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        std::str::from_utf8(&self.b[start..self.i]).ok()?.parse().ok()
    }

    /// The `data` string, base64-decoded (either alphabet, padded or not, as the serde path does).
    fn base64_data(&mut self) -> Option<Bytes> {
        self.eat(b'"')?;
        let rest = &self.b[self.i..];
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' {
            return None;
        }
        self.i += end + 1;
        Some(base64_lenient::decode(&rest[..end]).ok()?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long strings in the tests: tens of kilobytes.
    const BLOCK: usize = 16 * 1024;

    /// Bodies in the common shape: the fast path answers, and exactly as serde does.
    #[test]
    fn the_common_shape_parses_as_serde_parses_it() {
        let long: String = (0..3 * BLOCK + 100).map(|i| ['A', 'Q', 'z', '+', '/', '9'][i % 6]).collect();
        let long_padded = format!("{}AQ==", &long[..long.len() / 4 * 4]);
        let bodies = [
            "{}".to_owned(),
            r#" { "payloads" : [ ] } "#.to_owned(),
            r#"{"payloads":[{}]}"#.to_owned(),
            r#"{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg==","b":"-_8","b":"AQ"},"data":"+/8="}]}"#
                .to_owned(),
            r#"{"payloads":[{"data":"eA","externalPayloads":[{"sizeBytes":"12"},{"size_bytes":-3},{}]}, {"data":""}]}"#
                .to_owned(),
            format!(r#"{{"payloads":[{{"data":"{long}"}},{{"data":"{long_padded}","metadata":{{}}}}]}}"#),
            format!("{{\"payloads\":[{{\"data\":\"{}\"}}]}}", "-_".repeat(BLOCK)),
        ];
        for body in &bodies {
            let fast = parse(body.as_bytes(), 8).unwrap_or_else(|| panic!("not the common shape: {body:.80}"));
            assert_eq!(fast, Payloads::from_json_bounded_serde(body.as_bytes(), 8).unwrap(), "{body:.80}");
        }
    }

    /// Everything else is left to serde: escapes, nulls, unknown, repeated or misplaced fields, bounds,
    /// numbers that are not plain integers, bad base64, malformed JSON, trailing bytes.
    #[test]
    fn anything_else_is_left_to_serde() {
        let long_bad = format!("{}!", "A".repeat(2 * BLOCK));
        let bodies = [
            r#"{"payloads":null}"#.to_owned(),
            r#"{"payloads":[{"data":null}]}"#.to_owned(),
            r#"{"payloads":[],"other":1}"#.to_owned(),
            r#"{"other":1,"payloads":[]}"#.to_owned(),
            r#"{"payloads":[],"payloads":[]}"#.to_owned(),
            r#"{"payloads":[{"data":"eA","data":"eA"}]}"#.to_owned(),
            r#"{"payloads":[{"unknown":1}]}"#.to_owned(),
            r#"{"payloads":[{"data":"e\u0041"}]}"#.to_owned(),
            r#"{"payloads":[{"metadata":{"a\"b":"eA"}}]}"#.to_owned(),
            r#"{"payloads":[{"externalPayloads":[{"sizeBytes":1.5}]}]}"#.to_owned(),
            r#"{"payloads":[{"externalPayloads":[{"sizeBytes":01}]}]}"#.to_owned(),
            r#"{"payloads":[{"externalPayloads":[{"sizeBytes":"x"}]}]}"#.to_owned(),
            r#"{"payloads":[{"externalPayloads":[{"sizeBytes":1,"size_bytes":2}]}]}"#.to_owned(),
            r#"{"payloads":[{"data":"%%"}]}"#.to_owned(),
            r#"{"payloads":[{},{},{},{},{},{},{},{},{}]}"#.to_owned(),
            r#"{"payloads":[{}]} x"#.to_owned(),
            r#"{"payloads":[{}]"#.to_owned(),
            r#"{"payloads":[{},]}"#.to_owned(),
            "[]".to_owned(),
            format!(r#"{{"payloads":[{{"data":"{long_bad}"}}]}}"#),
            format!(r#"{{"payloads":[{{"data":"{}"#, "A".repeat(3 * BLOCK)),
            format!("{{\"payloads\":[{{\"data\":\"{}\n\"}}]}}", "A".repeat(8)),
        ];
        for body in &bodies {
            assert_eq!(parse(body.as_bytes(), 8), None, "{body:.80}");
        }
    }
}
