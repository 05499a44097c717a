//! `temporal.api.common.v1.Payloads` in proto3 JSON (lenient in, exact out) and in protobuf.
//!
//! Written by hand with `prost` derives (no `protoc` on build machines). Metadata is a `BTreeMap` so the
//! protobuf encoding of a payload is deterministic, which golden vectors rely on.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::ProtocolError;
use super::base64_lenient;

/// One Temporal payload: metadata, data and (for SDK external storage) size details.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Payload {
    #[prost(btree_map = "string, bytes", tag = "1")]
    pub metadata: BTreeMap<String, Vec<u8>>,
    /// Shared bytes: decoded from an opened envelope it is a slice of that buffer, not a copy (for a
    /// 1 MiB payload each copy was ~5 % of the request).
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
    #[prost(message, repeated, tag = "3")]
    pub external_payloads: Vec<ExternalPayloadDetails>,
}

/// `Payload.ExternalPayloadDetails`: the Web UI reads `sizeBytes`, so we must carry it through.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ExternalPayloadDetails {
    #[prost(int64, tag = "1")]
    pub size_bytes: i64,
}

/// Why protobuf bytes are not a [`Payload`] we accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InnerPayloadError {
    #[error("not a protobuf Payload")]
    Malformed,
    #[error("more than {limit} {what}")]
    TooManyElements { what: &'static str, limit: usize },
}

impl Payload {
    /// Decodes protobuf bytes (an opened envelope's plaintext) with the same element bounds as the
    /// JSON parser. The fields are counted before anything is built, so 15 MB of empty
    /// `external_payloads` entries are refused without making 5 million of them. `data` is a slice of
    /// `bytes`, not a copy.
    pub fn decode_bounded(bytes: Bytes) -> Result<Payload, InnerPayloadError> {
        let (metadata, external) = count_repeated_fields(&bytes).ok_or(InnerPayloadError::Malformed)?;
        if metadata > MAX_METADATA_ENTRIES {
            return Err(InnerPayloadError::TooManyElements { what: "metadata entries", limit: MAX_METADATA_ENTRIES });
        }
        if external > MAX_EXTERNAL_PAYLOADS {
            return Err(InnerPayloadError::TooManyElements {
                what: "externalPayloads entries",
                limit: MAX_EXTERNAL_PAYLOADS,
            });
        }
        <Payload as prost::Message>::decode(bytes).map_err(|_| InnerPayloadError::Malformed)
    }

    /// The `encoding` metadata value, if it is UTF-8.
    pub fn encoding(&self) -> Option<&str> {
        self.metadata.get("encoding").and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A metadata value as UTF-8 text.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Counts the top-level occurrences of `Payload.metadata` (field 1) and `Payload.external_payloads`
/// (field 3) by walking the wire format; `None` when the bytes are not well-formed protobuf.
fn count_repeated_fields(mut bytes: &[u8]) -> Option<(usize, usize)> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let (mut metadata, mut external) = (0usize, 0usize);
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        let skip = match tag & 7 {
            0 => {
                varint(&mut bytes)?;
                0
            }
            1 => 8,
            2 => usize::try_from(varint(&mut bytes)?).ok()?,
            5 => 4,
            _ => return None,
        };
        bytes = bytes.get(skip..)?;
        match (tag >> 3, tag & 7) {
            (1, 2) => metadata += 1,
            (3, 2) => external += 1,
            _ => {}
        }
    }
    Some((metadata, external))
}

/// The request and response body of `/encode` and `/decode`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payloads {
    pub payloads: Vec<Payload>,
}

/// Most metadata entries one payload may carry (SDKs write a handful); bounds parse work and memory.
pub const MAX_METADATA_ENTRIES: usize = 256;
/// Most `externalPayloads` entries one payload may carry (one per external-storage reference).
pub const MAX_EXTERNAL_PAYLOADS: usize = 1024;

impl Payloads {
    /// [`Payloads::from_json_bounded`] without a payload-count bound (the element bounds still hold),
    /// for replies this server wrote itself.
    pub fn from_json(body: &[u8]) -> Result<Payloads, ProtocolError> {
        Payloads::from_json_bounded(body, usize::MAX)
    }

    /// Parses proto3 JSON leniently: either base64 alphabet, optional padding, unknown fields ignored,
    /// `externalPayloads` kept (int64 as string or number), original proto field names accepted too.
    ///
    /// Counts while parsing: payload `max_payloads + 1`, metadata entry 257 or external entry 1,025
    /// stops the parse, so a body of empty objects cannot make millions of them first. The common shape
    /// goes through a fast path (`payloads_fast`) that returns what serde would; the rest through serde.
    pub fn from_json_bounded(body: &[u8], max_payloads: usize) -> Result<Payloads, ProtocolError> {
        match super::payloads_fast::parse(body, max_payloads) {
            Some(payloads) => Ok(payloads),
            None => Payloads::from_json_bounded_serde(body, max_payloads),
        }
    }

    /// [`Payloads::from_json_bounded`] through serde_json alone, without the fast path for the common
    /// shape (`payloads_fast`); the fuzz target and tests compare the two.
    pub fn from_json_bounded_serde(body: &[u8], max_payloads: usize) -> Result<Payloads, ProtocolError> {
        // serde would also build the struct from a JSON array; proto3 JSON messages are objects only.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ProtocolError::MalformedJson("expected a JSON object".into()));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let raw = serde::de::DeserializeSeed::deserialize(RawPayloadsSeed { max_payloads }, &mut de)
            .and_then(|raw| de.end().map(|()| raw))
            .map_err(|e| match bound_error(&e) {
                Some(Bound::Payloads) => ProtocolError::TooManyPayloads { limit: max_payloads },
                Some(Bound::Metadata) => {
                    ProtocolError::TooManyElements { what: "metadata entries", limit: MAX_METADATA_ENTRIES }
                }
                Some(Bound::External) => {
                    ProtocolError::TooManyElements { what: "externalPayloads entries", limit: MAX_EXTERNAL_PAYLOADS }
                }
                None => ProtocolError::MalformedJson(json_error_summary(&e)),
            })?;
        let payloads = raw.into_iter().enumerate().map(|(index, p)| p.into_payload(index)).collect::<Result<_, _>>()?;
        Ok(Payloads { payloads })
    }

    /// Serializes as protojson does: standard padded base64, int64 as string, metadata keys sorted.
    pub fn to_json(&self) -> Vec<u8> {
        super::reply::to_json(&self.payloads)
    }
}

/// serde's messages name a line and column, never input bytes, so they are safe to return.
fn json_error_summary(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => format!("unexpected shape at line {} column {}", e.line(), e.column()),
        _ => format!("invalid JSON at line {} column {}", e.line(), e.column()),
    }
}

/// Which bound a parse stopped at; carried through serde as a custom error with a fixed marker.
#[derive(Clone, Copy)]
enum Bound {
    Payloads,
    Metadata,
    External,
}

impl Bound {
    const fn marker(self) -> &'static str {
        match self {
            Bound::Payloads => "\u{0}bound:payloads",
            Bound::Metadata => "\u{0}bound:metadata",
            Bound::External => "\u{0}bound:external",
        }
    }
}

fn bound_error(e: &serde_json::Error) -> Option<Bound> {
    let text = e.to_string();
    [Bound::Payloads, Bound::Metadata, Bound::External].into_iter().find(|b| text.starts_with(b.marker()))
}

/// The top-level object: only `payloads` is read, anything else is skipped.
struct RawPayloadsSeed {
    max_payloads: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for RawPayloadsSeed {
    type Value = Vec<RawPayload<'de>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RawPayloadsSeed {
    type Value = Vec<RawPayload<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Payloads object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut payloads = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "payloads" && payloads.is_none() {
                let list: Option<Vec<RawPayload<'de>>> = map.next_value_seed(OptionalSeed(BoundedSeq {
                    limit: self.max_payloads,
                    bound: Bound::Payloads,
                    item: std::marker::PhantomData,
                }))?;
                payloads = Some(list.unwrap_or_default());
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(payloads.unwrap_or_default())
    }
}

/// `null` or the inner value.
struct OptionalSeed<S>(S);

impl<'de, S: serde::de::DeserializeSeed<'de>> serde::de::DeserializeSeed<'de> for OptionalSeed<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, S: serde::de::DeserializeSeed<'de>> serde::de::Visitor<'de> for OptionalSeed<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("null or a value")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

/// A JSON array of at most `limit` items; item `limit + 1` fails the parse before it is built.
struct BoundedSeq<T> {
    limit: usize,
    bound: Bound,
    item: std::marker::PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> serde::de::DeserializeSeed<'de> for BoundedSeq<T> {
    type Value = Vec<T>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for BoundedSeq<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            if items.len() == self.limit {
                return Err(serde::de::Error::custom(self.bound.marker()));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// A JSON object of at most [`MAX_METADATA_ENTRIES`] string values (later duplicates win, as before).
fn bounded_metadata<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, Base64Text<'de>>>, D::Error> {
    struct MetadataVisitor;
    impl<'de> serde::de::Visitor<'de> for MetadataVisitor {
        type Value = Option<BTreeMap<String, Base64Text<'de>>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a metadata object")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries = BTreeMap::new();
            let mut seen = 0usize;
            while let Some((key, value)) = map.next_entry::<String, Base64Text<'de>>()? {
                seen += 1;
                if seen > MAX_METADATA_ENTRIES {
                    return Err(serde::de::Error::custom(Bound::Metadata.marker()));
                }
                entries.insert(key, value);
            }
            Ok(Some(entries))
        }
    }
    d.deserialize_any(MetadataVisitor)
}

fn bounded_external<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<RawExternal>>, D::Error> {
    serde::de::DeserializeSeed::deserialize(
        OptionalSeed(BoundedSeq {
            limit: MAX_EXTERNAL_PAYLOADS,
            bound: Bound::External,
            item: std::marker::PhantomData,
        }),
        d,
    )
}

/// A base64 field (`data`, metadata values) read as the JSON string's raw bytes, borrowed from the
/// request body when it has no escapes (base64 never has), so a large `data` field is not copied before
/// it is decoded. Base64 is ASCII, so the bytes need no UTF-8 check (which cost ~4 % of a 1 MiB
/// decode); anything that is not base64 fails the decoding after.
struct Base64Text<'a>(std::borrow::Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Base64Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = Base64Text<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a base64 string")
            }

            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Base64Text(std::borrow::Cow::Borrowed(v)))
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Base64Text(std::borrow::Cow::Owned(v.to_vec())))
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Base64Text(std::borrow::Cow::Borrowed(v.as_bytes())))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Base64Text(std::borrow::Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        d.deserialize_bytes(BytesVisitor)
    }
}

#[derive(Deserialize)]
struct RawPayload<'a> {
    #[serde(default, borrow, deserialize_with = "bounded_metadata")]
    metadata: Option<BTreeMap<String, Base64Text<'a>>>,
    #[serde(default, borrow)]
    data: Option<Base64Text<'a>>,
    #[serde(default, rename = "externalPayloads", alias = "external_payloads", deserialize_with = "bounded_external")]
    external_payloads: Option<Vec<RawExternal>>,
}

#[derive(Deserialize)]
struct RawExternal {
    #[serde(default, rename = "sizeBytes", alias = "size_bytes")]
    size_bytes: Option<Int64>,
    #[serde(flatten)]
    _rest: BTreeMap<String, IgnoredAny>,
}

/// proto3 JSON writes int64 as a string but accepts numbers too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Int64 {
    Number(i64),
    Text(String),
}

impl RawPayload<'_> {
    fn into_payload(self, index: usize) -> Result<Payload, ProtocolError> {
        let metadata = self
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| match base64_lenient::decode(&v.0) {
                Ok(bytes) => Ok((k, bytes)),
                Err(_) => Err(ProtocolError::InvalidBase64 { index, field: metadata_field_name(&k) }),
            })
            .collect::<Result<_, _>>()?;
        let data = match self.data {
            Some(text) => base64_lenient::decode(&text.0)
                .map_err(|_| ProtocolError::InvalidBase64 { index, field: "data".into() })?
                .into(),
            None => Bytes::new(),
        };
        let external_payloads = self
            .external_payloads
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let size_bytes = match e.size_bytes {
                    None => 0,
                    Some(Int64::Number(n)) => n,
                    Some(Int64::Text(t)) => t.parse().map_err(|_| ProtocolError::InvalidExternalSize { index })?,
                };
                Ok(ExternalPayloadDetails { size_bytes })
            })
            .collect::<Result<_, _>>()?;
        Ok(Payload { metadata, data, external_payloads })
    }
}

/// `metadata.<key>` for an error message, with the caller's key escaped and shortened: it reaches logs,
/// and a raw newline or ESC byte there would let a caller forge log lines.
fn metadata_field_name(key: &str) -> String {
    let mut name = String::from("metadata.");
    for c in key.chars().take(64) {
        name.extend(c.escape_debug());
    }
    if key.chars().nth(64).is_some() {
        name.push('…');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn lenient_input_exact_output() {
        let body = br#"{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg"},"data":"-_8","unknown":1,
            "externalPayloads":[{"sizeBytes":"123"},{"size_bytes":7}]}],"extra":{}}"#;
        let parsed = Payloads::from_json(body).unwrap();
        let p = &parsed.payloads[0];
        assert_eq!(p.encoding(), Some("json/plain"));
        assert_eq!(p.data, vec![0xfb, 0xff]);
        assert_eq!(p.external_payloads.iter().map(|e| e.size_bytes).collect::<Vec<_>>(), vec![123, 7]);
        let out: serde_json::Value = serde_json::from_slice(&parsed.to_json()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"+/8=",
                "externalPayloads":[{"sizeBytes":"123"},{"sizeBytes":"7"}]}]})
        );
    }

    #[test]
    fn missing_fields_mean_empty() {
        assert_eq!(Payloads::from_json(b"{}").unwrap().payloads.len(), 0);
        assert_eq!(Payloads::from_json(br#"{"payloads":[{}]}"#).unwrap().payloads[0], Payload::default());
    }

    #[test]
    fn errors_name_the_payload_and_field() {
        let err = Payloads::from_json(br#"{"payloads":[{},{"data":"%%"}]}"#).unwrap_err();
        assert!(matches!(err, ProtocolError::InvalidBase64 { index: 1, ref field } if field == "data"));
        assert!(matches!(Payloads::from_json(b"{\"payloads\":[").unwrap_err(), ProtocolError::MalformedJson(_)));
        assert!(matches!(Payloads::from_json(b" [] ").unwrap_err(), ProtocolError::MalformedJson(_)));
    }

    #[test]
    fn counts_are_bounded_while_parsing() {
        let many = format!("{{\"payloads\":[{}{{}}]}}", "{},".repeat(1000));
        assert_eq!(Payloads::from_json_bounded(many.as_bytes(), 1001).unwrap().payloads.len(), 1001);
        assert!(matches!(
            Payloads::from_json_bounded(many.as_bytes(), 1000),
            Err(ProtocolError::TooManyPayloads { limit: 1000 })
        ));
        // Stops at item 1,001 even when the rest of the body is not JSON at all.
        let truncated = format!("{{\"payloads\":[{}{{}}, garbage", "{},".repeat(1000));
        assert!(matches!(
            Payloads::from_json_bounded(truncated.as_bytes(), 1000),
            Err(ProtocolError::TooManyPayloads { .. })
        ));
        let entries: Vec<String> = (0..=MAX_METADATA_ENTRIES).map(|i| format!("\"k{i}\":\"\"")).collect();
        let body = format!("{{\"payloads\":[{{\"metadata\":{{{}}}}}]}}", entries.join(","));
        assert!(matches!(Payloads::from_json(body.as_bytes()), Err(ProtocolError::TooManyElements { .. })));
        let body = format!("{{\"payloads\":[{{\"metadata\":{{{}}}}}]}}", entries[..MAX_METADATA_ENTRIES].join(","));
        assert_eq!(Payloads::from_json(body.as_bytes()).unwrap().payloads[0].metadata.len(), MAX_METADATA_ENTRIES);
        let external = vec!["{}"; MAX_EXTERNAL_PAYLOADS + 1].join(",");
        let body = format!("{{\"payloads\":[{{\"externalPayloads\":[{external}]}}]}}");
        assert!(matches!(Payloads::from_json(body.as_bytes()), Err(ProtocolError::TooManyElements { .. })));
        assert_eq!(
            Payloads::from_json(br#"{"payloads":null,"x":[1]}"#).unwrap(),
            Payloads::default(),
            "null means empty"
        );
        assert!(Payloads::from_json(br#"{"payloads":[{"metadata":null,"externalPayloads":null}]}"#).is_ok());
        assert!(matches!(Payloads::from_json(br#"{"payloads":[]} x"#), Err(ProtocolError::MalformedJson(_))));
    }

    #[test]
    fn a_metadata_key_in_an_error_cannot_forge_a_log_line() {
        let body = br#"{"payloads":[{"metadata":{"k\n2026-01-01 INFO Decoded payloads user=admin@example.com\u001b[0m":"%%"}}]}"#;
        let err = Payloads::from_json(body).unwrap_err().to_string();
        assert!(!err.contains('\n') && !err.contains('\u{1b}'), "{err}");
        assert!(err.contains("\\n"), "escaped, still readable: {err}");
    }

    #[test]
    fn inner_payloads_are_counted_before_they_are_built() {
        use prost::Message;
        let poison = Payload {
            external_payloads: vec![ExternalPayloadDetails::default(); MAX_EXTERNAL_PAYLOADS + 1],
            ..Payload::default()
        };
        assert_eq!(
            Payload::decode_bounded(poison.encode_to_vec().into()),
            Err(InnerPayloadError::TooManyElements { what: "externalPayloads entries", limit: MAX_EXTERNAL_PAYLOADS })
        );
        let metadata = (0..=MAX_METADATA_ENTRIES).map(|i| (format!("k{i}"), vec![])).collect();
        let many = Payload { metadata, ..Payload::default() };
        assert!(matches!(
            Payload::decode_bounded(many.encode_to_vec().into()),
            Err(InnerPayloadError::TooManyElements { .. })
        ));
        let fine = Payload {
            metadata: BTreeMap::from([("encoding".into(), b"json/plain".to_vec())]),
            data: vec![7; 300].into(),
            external_payloads: vec![ExternalPayloadDetails { size_bytes: -1 }; 3],
        };
        assert_eq!(Payload::decode_bounded(fine.encode_to_vec().into()).unwrap(), fine);
        for bad in [&[0x0a, 0x05][..], &[0xff; 11][..], &[0x0b][..]] {
            assert_eq!(
                Payload::decode_bounded(Bytes::copy_from_slice(bad)),
                Err(InnerPayloadError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn decoded_data_is_a_slice_of_the_opened_buffer_not_a_copy() {
        let p = Payload { data: vec![9; 4096].into(), ..Payload::default() };
        let buffer = Bytes::from(prost::Message::encode_to_vec(&p));
        let decoded = Payload::decode_bounded(buffer.clone()).unwrap();
        assert_eq!(decoded, p);
        let within = buffer.as_ptr_range();
        assert!(within.contains(&decoded.data.as_ptr()), "data was copied out of the buffer");
    }

    #[test]
    fn protobuf_encoding_is_deterministic_and_round_trips() {
        let p = Payload {
            metadata: BTreeMap::from([("b".into(), b"2".to_vec()), ("a".into(), b"1".to_vec())]),
            data: Bytes::from_static(b"x"),
            external_payloads: vec![ExternalPayloadDetails { size_bytes: 5 }],
        };
        let bytes = p.encode_to_vec();
        assert_eq!(bytes, p.clone().encode_to_vec());
        assert_eq!(Payload::decode(bytes.as_slice()).unwrap(), p);
    }
}
