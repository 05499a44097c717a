//! Reads Prometheus text exposition the way a scraper would: families declared with `# TYPE`, samples
//! as `name{label="value",…} number`. Written independently of the server's encoder.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the exposition; panics with the offending line when it is not well formed, when a sample
/// belongs to no declared family, or when a series appears twice.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut families = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line: {line}"));
            assert!(["counter", "gauge", "histogram"].contains(&kind), "unknown type: {line}");
            families.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.trim().is_empty() && !line.starts_with('#'), "unexpected line: {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value is not a number: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("closing brace"))),
            None => (series, BTreeMap::new()),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|base| families.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(families.contains_key(family), "sample of an undeclared family: {line}");
        assert!(seen.insert(series.to_owned()), "series appears twice: {line}");
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    samples
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad labels: {text}"));
        let end = after.find('"').unwrap_or_else(|| panic!("unterminated label: {text}"));
        labels.insert(key.to_owned(), after[..end].to_owned());
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The value of the series `name` whose labels include all of `labels`; 0 when absent (a counter that
/// has not been incremented yet may not be listed).
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v)))
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?} matches several series: {matching:?}");
    matching.first().map_or(0.0, |s| s.value)
}
