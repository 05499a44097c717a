//! Decimal digits appended to a `String` without `fmt`. Used where a number is written on every
//! request or every audit row (the access line, the audit `INSERT`'s `$n` placeholders): `write!`
//! goes through `fmt`'s machinery per number, which showed up in the profiles (docs/performance.md).

/// Appends `value` in decimal, zero-padded to at least `width` digits (`width` 1: no padding).
pub fn push(out: &mut String, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while value > 0 || digits.len() - start < width.max(1) {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::push;

    #[test]
    fn numbers_are_written_like_fmt_with_zero_padding() {
        for (value, width) in [(0, 1), (7, 1), (42, 1), (7, 3), (1234, 2), (999_999, 6), (5, 6), (u64::MAX, 1)] {
            let mut out = String::from("x");
            push(&mut out, value, width);
            assert_eq!(out, format!("x{value:0width$}"), "{value} width {width}");
        }
        let mut zero = String::new();
        push(&mut zero, 0, 0);
        assert_eq!(zero, "0", "width 0 still writes one digit");
    }
}
