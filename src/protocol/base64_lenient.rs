//! Base64 as clients really send it: standard or URL-safe alphabet, padded or not.
//!
//! Output is always standard, padded base64 (what protojson writes and every client reads).

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes standard or URL-safe base64, with or without padding.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if text.contains(['-', '_']) { URL_SAFE_LENIENT.decode(text) } else { STANDARD_LENIENT.decode(text) }
}

/// Encodes as standard, padded base64.
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
    }

    #[test]
    fn rejects_garbage_and_mixed_alphabets() {
        assert!(decode("not base64!").is_err());
        assert!(decode("+/-_").is_err());
        assert!(decode("A").is_err());
    }
}
