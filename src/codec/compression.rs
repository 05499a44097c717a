//! Bounded (de)compression: zstd for our envelope's optional flag, zlib/gzip/snappy for the inner
//! layers of legacy sample payloads.
//!
//! What must stay true: no decoder ever produces more than the caller's bound — a decompression bomb
//! fails with `TooLarge` after reading at most `max + 1` bytes of output.

use std::io::Read;

/// Decompression failures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompressionError {
    #[error("decompressed size exceeds the limit of {max} bytes")]
    TooLarge { max: usize },
    #[error("corrupt {0} data")]
    Corrupt(&'static str),
}

/// The compressions we can undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Zlib,
    Gzip,
    /// Snappy block format (Go's `snappy.Encode`, Python's `snappy.compress`).
    Snappy,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Zlib => "zlib",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
        }
    }
}

/// zstd level 3: a good speed/ratio balance for JSON payloads.
pub fn zstd_compress(data: &[u8]) -> Vec<u8> {
    // Compressing from memory into memory only fails on allocation failure; fall back to "no gain",
    // which makes the caller store the payload uncompressed.
    zstd::bulk::compress(data, 3).unwrap_or_else(|_| data.to_vec())
}

fn read_bounded(mut reader: impl Read, max: usize, kind: Compression) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    (&mut reader).take(limit).read_to_end(&mut out).map_err(|_| CompressionError::Corrupt(kind.name()))?;
    if out.len() > max {
        return Err(CompressionError::TooLarge { max });
    }
    Ok(out)
}

/// Decompresses `data`, producing at most `max` bytes.
pub fn decompress(kind: Compression, data: &[u8], max: usize) -> Result<Vec<u8>, CompressionError> {
    match kind {
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|_| CompressionError::Corrupt("zstd"))?;
            read_bounded(decoder, max, kind)
        }
        Compression::Zlib => read_bounded(flate2::read::ZlibDecoder::new(data), max, kind),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(data), max, kind),
        Compression::Snappy => {
            // The block format states its length up front: check it before allocating.
            let len = snap::raw::decompress_len(data).map_err(|_| CompressionError::Corrupt("snappy"))?;
            if len > max {
                return Err(CompressionError::TooLarge { max });
            }
            snap::raw::Decoder::new().decompress_vec(data).map_err(|_| CompressionError::Corrupt("snappy"))
        }
    }
}

/// Decompresses within a shared budget of output bytes and charges it. A refusal empties the budget, so
/// a request full of bombs costs at most one budget of inflation work in total.
pub fn decompress_within(kind: Compression, data: &[u8], budget: &mut usize) -> Result<Vec<u8>, CompressionError> {
    match decompress(kind, data, *budget) {
        Ok(bytes) => {
            *budget -= bytes.len();
            Ok(bytes)
        }
        Err(e) => {
            *budget = 0;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_within_the_bound() {
        let data = b"hello hello hello hello".repeat(10);
        assert_eq!(decompress(Compression::Zstd, &zstd_compress(&data), data.len()).unwrap(), data);
        assert_eq!(decompress(Compression::Zlib, &zlib(&data), data.len()).unwrap(), data);
        let snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Compression::Snappy, &snappy, data.len()).unwrap(), data);
    }

    #[test]
    fn bombs_stop_at_the_bound() {
        let bomb = vec![0u8; 64 << 20];
        for (kind, packed) in [
            (Compression::Zstd, zstd_compress(&bomb)),
            (Compression::Zlib, zlib(&bomb)),
            (Compression::Snappy, snap::raw::Encoder::new().compress_vec(&bomb).unwrap()),
        ] {
            assert!(packed.len() < 4 << 20);
            assert_eq!(decompress(kind, &packed, 1 << 20), Err(CompressionError::TooLarge { max: 1 << 20 }));
        }
    }

    #[test]
    fn corrupt_input_is_an_error() {
        for kind in [Compression::Zstd, Compression::Zlib, Compression::Gzip, Compression::Snappy] {
            assert!(decompress(kind, b"definitely not compressed", 1000).is_err(), "{kind:?}");
        }
    }
}
