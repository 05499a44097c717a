//! Minimal glob matching for namespace rules (and, later, policy patterns): `*` matches any run of
//! characters, `?` exactly one; everything else is literal. No character classes, no path semantics.

/// Whether `text` matches `pattern`. Walks both strings by byte offset, a character at a time, so a
/// match allocates nothing (a namespace pattern is matched on every request).
pub fn matches(pattern: &str, text: &str) -> bool {
    let at = |s: &str, i: usize| s[i..].chars().next();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while let Some(t) = at(text, ti) {
        match at(pattern, pi) {
            Some(p) if p == '?' || p == t => {
                pi += p.len_utf8();
                ti += t.len_utf8();
            }
            Some('*') => {
                star = Some(pi);
                mark = ti;
                pi += 1;
            }
            _ => match star {
                // Let the last `*` take one more character and try again from there.
                Some(s) => {
                    pi = s + 1;
                    mark += at(text, mark).map_or(1, char::len_utf8);
                    ti = mark;
                }
                None => return false,
            },
        }
    }
    pattern[pi..].chars().all(|c| c == '*')
}

/// Whether the pattern has any wildcard.
pub fn is_pattern(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_and_question_mark() {
        assert!(matches("*", ""));
        assert!(matches("pay*", "payments"));
        assert!(matches("*-prod", "payments-prod"));
        assert!(matches("a?c", "abc"));
        assert!(matches("*a*b*", "xxaxxbxx"));
        assert!(!matches("pay*", "repay"));
        assert!(!matches("a?c", "ac"));
        assert!(!matches("prod", "production"));
    }

    #[test]
    fn wildcards_match_characters_not_bytes() {
        assert!(matches("caf?", "café"));
        assert!(matches("*é-prod", "café-prod"));
        assert!(matches("ü*ü", "üxü"));
        assert!(!matches("caf??", "café"));
        assert!(matches("**", "ñ"));
        assert!(!matches("", "ñ"));
        assert!(matches("a*", "a"));
    }
}
