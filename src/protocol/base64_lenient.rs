//! Base64 as clients really send it: standard or URL-safe alphabet, padded or not.
//!
//! Output is always standard, padded base64 (what protojson writes and every client reads).
//! `base64-simd` (already in the tree through the AWS SDK) does the work with AVX2/SSE4.1/NEON chosen at
//! run time: base64 in and out was the largest cost of large payloads, several times the AES-GCM work.
//! It is as strict as the `base64` crate: canonical trailing bits, correct padding when present.

use base64_simd::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Not base64 in either alphabet, or badly padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64")]
pub struct InvalidBase64;

/// Decodes standard or URL-safe base64, with or without padding.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, InvalidBase64> {
    let bytes = text.as_ref();
    let padded = bytes.last() == Some(&b'=');
    let (standard, url_safe) = if padded { (STANDARD, URL_SAFE) } else { (STANDARD_NO_PAD, URL_SAFE_NO_PAD) };
    // Standard first (what protojson writes); the URL-safe alphabet only when that fails, so a text that
    // mixes the two alphabets fails both.
    standard.decode_to_vec(bytes).or_else(|_| url_safe.decode_to_vec(bytes)).map_err(|_| InvalidBase64)
}

/// Encodes as standard, padded base64.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode_to_string(bytes)
}

/// Appends standard, padded base64 of `bytes` to `out`, encoding in place (no intermediate `String`).
pub fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    STANDARD.encode_append(bytes, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_variant_of_the_same_bytes() {
        let bytes = [0xfb, 0xff, 0xbf, 0x01];
        for text in ["+/+/AQ==", "+/+/AQ", "-_-_AQ==", "-_-_AQ"] {
            assert_eq!(decode(text).unwrap(), bytes, "{text}");
        }
        assert_eq!(encode(&bytes), "+/+/AQ==");
        assert_eq!(decode("").unwrap(), b"");
        for n in 0..10 {
            let input = &bytes.repeat(3)[..n];
            let mut out = b"x".to_vec();
            encode_into(input, &mut out);
            assert_eq!(out, [b"x".as_slice(), encode(input).as_bytes()].concat(), "{n} bytes");
            assert_eq!(decode(encode(input)).unwrap(), input);
        }
    }

    #[test]
    fn agrees_with_the_base64_crate_on_long_inputs_of_every_length() {
        use base64::Engine;
        for n in [31, 32, 33, 47, 48, 49, 95, 96, 97, 1000, 4099] {
            let input: Vec<u8> = (0..n).map(|i| (i * 7 + i / 5) as u8).collect();
            let expected = base64::engine::general_purpose::STANDARD.encode(&input);
            assert_eq!(encode(&input), expected, "{n} bytes");
            assert_eq!(decode(&expected).unwrap(), input, "{n} bytes");
            let unpadded = expected.trim_end_matches('=');
            assert_eq!(decode(unpadded).unwrap(), input, "{n} bytes, unpadded");
            let url = base64::engine::general_purpose::URL_SAFE.encode(&input);
            assert_eq!(decode(&url).unwrap(), input, "{n} bytes, URL-safe");
        }
    }

    #[test]
    fn rejects_garbage_mixed_alphabets_bad_padding_and_non_canonical_bits() {
        for text in ["not base64!", "+/-_", "A", "AQ=", "AQ===", "AR==", "AR", "A Q==", "AQ==\n", "=AQ"] {
            assert!(decode(text).is_err(), "{text:?} was accepted");
        }
    }
}
