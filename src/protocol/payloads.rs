//! `temporal.api.common.v1.Payloads` in proto3 JSON (lenient in, exact out) and in protobuf.
//!
//! Written by hand with `prost` derives (no `protoc` on build machines). Metadata is a `BTreeMap` so the
//! protobuf encoding of a payload is deterministic, which golden vectors rely on.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::ProtocolError;
use super::base64_lenient;

/// One Temporal payload: metadata, data and (for SDK external storage) size details.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Payload {
    #[prost(btree_map = "string, bytes", tag = "1")]
    pub metadata: BTreeMap<String, Vec<u8>>,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub external_payloads: Vec<ExternalPayloadDetails>,
}

/// `Payload.ExternalPayloadDetails`: the Web UI reads `sizeBytes`, so we must carry it through.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ExternalPayloadDetails {
    #[prost(int64, tag = "1")]
    pub size_bytes: i64,
}

impl Payload {
    /// The `encoding` metadata value, if it is UTF-8.
    pub fn encoding(&self) -> Option<&str> {
        self.metadata.get("encoding").and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A metadata value as UTF-8 text.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// The request and response body of `/encode` and `/decode`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payloads {
    pub payloads: Vec<Payload>,
}

impl Payloads {
    /// Parses proto3 JSON leniently: either base64 alphabet, optional padding, unknown fields ignored,
    /// `externalPayloads` kept (int64 as string or number), original proto field names accepted too.
    pub fn from_json(body: &[u8]) -> Result<Payloads, ProtocolError> {
        // serde would also build the struct from a JSON array; proto3 JSON messages are objects only.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ProtocolError::MalformedJson("expected a JSON object".into()));
        }
        let raw: RawPayloads =
            serde_json::from_slice(body).map_err(|e| ProtocolError::MalformedJson(json_error_summary(&e)))?;
        let payloads = raw
            .payloads
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(index, p)| p.into_payload(index))
            .collect::<Result<_, _>>()?;
        Ok(Payloads { payloads })
    }

    /// Serializes as protojson does: standard padded base64, int64 as string.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing owned strings and maps into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// serde's messages name a line and column, never input bytes, so they are safe to return.
fn json_error_summary(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => format!("unexpected shape at line {} column {}", e.line(), e.column()),
        _ => format!("invalid JSON at line {} column {}", e.line(), e.column()),
    }
}

#[derive(Deserialize)]
struct RawPayloads {
    #[serde(default)]
    payloads: Option<Vec<RawPayload>>,
}

#[derive(Deserialize)]
struct RawPayload {
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default, rename = "externalPayloads", alias = "external_payloads")]
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

impl RawPayload {
    fn into_payload(self, index: usize) -> Result<Payload, ProtocolError> {
        let metadata = self
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| match base64_lenient::decode(&v) {
                Ok(bytes) => Ok((k, bytes)),
                Err(_) => Err(ProtocolError::InvalidBase64 { index, field: format!("metadata.{k}") }),
            })
            .collect::<Result<_, _>>()?;
        let data = match self.data {
            Some(text) => base64_lenient::decode(&text)
                .map_err(|_| ProtocolError::InvalidBase64 { index, field: "data".into() })?,
            None => Vec::new(),
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

impl Serialize for Payloads {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("payloads", &self.payloads.iter().map(JsonPayload).collect::<Vec<_>>())?;
        map.end()
    }
}

struct JsonPayload<'a>(&'a Payload);

impl Serialize for JsonPayload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = serializer.serialize_map(None)?;
        let metadata: BTreeMap<&str, String> =
            p.metadata.iter().map(|(k, v)| (k.as_str(), base64_lenient::encode(v))).collect();
        map.serialize_entry("metadata", &metadata)?;
        map.serialize_entry("data", &base64_lenient::encode(&p.data))?;
        if !p.external_payloads.is_empty() {
            let details: Vec<BTreeMap<&str, String>> =
                p.external_payloads.iter().map(|e| BTreeMap::from([("sizeBytes", e.size_bytes.to_string())])).collect();
            map.serialize_entry("externalPayloads", &details)?;
        }
        map.end()
    }
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
    fn protobuf_encoding_is_deterministic_and_round_trips() {
        let p = Payload {
            metadata: BTreeMap::from([("b".into(), b"2".to_vec()), ("a".into(), b"1".to_vec())]),
            data: b"x".to_vec(),
            external_payloads: vec![ExternalPayloadDetails { size_bytes: 5 }],
        };
        let bytes = p.encode_to_vec();
        assert_eq!(bytes, p.clone().encode_to_vec());
        assert_eq!(Payload::decode(bytes.as_slice()).unwrap(), p);
    }
}
