//! Randomness for keys, message ids and IVs: the operating system's CSPRNG via aws-lc.

/// Fills `buf` with cryptographically secure random bytes.
///
/// aws-lc's generator only fails if the OS entropy source is gone, in which case continuing would be
/// worse than stopping: sealing with predictable IVs must never happen.
pub fn fill(buf: &mut [u8]) {
    if aws_lc_rs::rand::fill(buf).is_err() {
        // Not reachable on supported platforms; refusing to continue is the only safe answer.
        std::process::abort();
    }
}
