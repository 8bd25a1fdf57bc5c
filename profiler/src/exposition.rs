//! A small, strict parser of the Prometheus text exposition format (and the OpenMetrics text
//! format prometheus-client writes, which the sidecar serves).
//!
//! Strict because a scrape is all or nothing: one line that is not a comment, a blank line or a
//! well-formed sample makes the whole body invalid, so garbage (an HTML error page, a truncated
//! body) is never half-counted. Samples are handed to a callback with borrowed names and label
//! values, so parsing 10,000 sidecars per cycle allocates next to nothing.

use std::borrow::Cow;

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Metric name as exposed (`snug_requests_total`, `..._bucket`).
    pub name: &'a str,
    /// Labels in the order written.
    pub labels: &'a [(&'a str, Cow<'a, str>)],
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
    /// Whether `name` is the previous sample's (a family's samples come one after another), so
    /// a reader can reuse what it made of that name instead of comparing it again.
    pub same_name: bool,
}

impl Sample<'_> {
    /// The value of a label, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// Why a body is not a valid exposition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// Parses `text`, calling `on_sample` for each sample in order. Returns the first error; samples
/// before it have been passed on already, so callers accumulate into a scratch value they drop
/// on error.
pub fn parse(text: &str, on_sample: impl FnMut(&Sample<'_>)) -> Result<(), ParseError> {
    parse_families(text, |_| true, on_sample)
}

/// [`parse`], for a reader of a few families: a family whose metadata (`# HELP`, `# TYPE`,
/// `# UNIT`) names it and that `wanted` refuses is skipped whole, up to the next comment line,
/// without looking at its samples, so they are neither parsed nor checked. Everything else —
/// samples of wanted families, samples without metadata, every comment — is parsed as strictly
/// as by [`parse`] (so a body that is not an exposition at all still fails on its first line).
pub fn parse_families<'a>(
    text: &'a str,
    wanted: impl Fn(&str) -> bool,
    mut on_sample: impl FnMut(&Sample<'_>),
) -> Result<(), ParseError> {
    let mut labels: Vec<(&'a str, Cow<'a, str>)> = Vec::with_capacity(8);
    // The samples of a family come one after another under one name: checked once.
    let mut checked_name = "";
    let mut seen_eof = false;
    let mut rest = text;
    while !rest.is_empty() {
        let start = text.len() - rest.len();
        let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
        rest = after;
        // Counted when needed: skipped families are not read line by line.
        let fail = |reason| ParseError {
            line: 1 + text.as_bytes()[..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            reason,
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if seen_eof {
            if line.is_empty() {
                continue;
            }
            return Err(fail("content after # EOF"));
        }
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            seen_eof = comment.trim() == "EOF";
            let family = check_comment(comment).map_err(fail)?;
            if family.is_some_and(|family| !wanted(family)) {
                // Skip to the next comment: the next family's metadata, or `# EOF`.
                let skipped = match rest.find("\n#") {
                    Some(at) => at + 1,
                    None => rest.len(),
                };
                rest = &rest[skipped..];
            }
            continue;
        }
        labels.clear();
        let previous = checked_name;
        let (name, value) = sample_line(line, &mut labels, &mut checked_name).map_err(fail)?;
        on_sample(&Sample {
            name,
            labels: &labels,
            value,
            // The same slice: `sample_line` found the line to start with the checked name.
            same_name: std::ptr::eq(previous, checked_name) && !previous.is_empty(),
        });
    }
    Ok(())
}

/// Checks a comment line (after `#`); returns the family its metadata names, if it is metadata.
fn check_comment(comment: &str) -> Result<Option<&str>, &'static str> {
    let mut words = comment.split_whitespace();
    match words.next() {
        Some("TYPE") => {
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                return Err("TYPE needs a name and a type");
            };
            if !is_metric_name(name) {
                return Err("invalid metric name in TYPE");
            }
            match kind {
                "counter" | "gauge" | "histogram" | "summary" | "untyped" | "unknown"
                | "gaugehistogram" | "info" | "stateset" => Ok(Some(name)),
                _ => Err("unknown metric type"),
            }
        }
        Some("HELP") | Some("UNIT") => match words.next() {
            Some(name) if is_metric_name(name) => Ok(Some(name)),
            _ => Err("invalid metric name in HELP/UNIT"),
        },
        // Other comments are free text in the Prometheus format.
        _ => Ok(None),
    }
}

/// Parses one sample line; `checked_name` is the last metric name found valid, so a family's
/// name is checked once, not on every line.
fn sample_line<'a>(
    line: &'a str,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
    checked_name: &mut &'a str,
) -> Result<(&'a str, f64), &'static str> {
    let ends_name = |b: &u8| matches!(b, b'{' | b' ' | b'\t');
    // Most lines carry the name of the line before: one comparison finds where it ends.
    let name = if !checked_name.is_empty()
        && line.starts_with(*checked_name)
        && line
            .as_bytes()
            .get(checked_name.len())
            .is_some_and(ends_name)
    {
        // Checked already; `checked_name` stays the slice it is (see `same_name`).
        &line[..checked_name.len()]
    } else {
        let name_end = line
            .bytes()
            .position(|b| ends_name(&b))
            .ok_or("sample without a value")?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err("invalid metric name");
        }
        *checked_name = name;
        name
    };
    let name_end = name.len();
    let mut rest = &line[name_end..];
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = label_set(after_brace, labels)?;
    }
    // Most samples are counts: one space and digits.
    if let Some(count) = rest.strip_prefix(' ').and_then(small_integer) {
        return Ok((name, count));
    }
    // OpenMetrics exemplars follow ` # `; they carry nothing the profiler uses. (A `#` cannot
    // occur in a value or a timestamp, and label values are behind us.)
    let rest = match rest.bytes().position(|b| b == b'#') {
        Some(hash) => &rest[..hash],
        None => rest,
    };
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("sample without a value")?)?;
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<f64>().map_err(|_| "invalid timestamp")?;
    }
    if fields.next().is_some() {
        return Err("trailing fields after the timestamp");
    }
    Ok((name, value))
}

/// Parses `a="x",b="y"}` (after the opening brace); returns what follows the closing brace.
/// One pass over the bytes: a label name is read while its characters are name characters,
/// so the usual line (no blanks inside the braces) costs no trimming.
fn label_set<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<&'a str, &'static str> {
    loop {
        rest = skip_blanks(rest);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let bytes = rest.as_bytes();
        let name_len = bytes
            .iter()
            .position(|b| !is_label_char(*b))
            .unwrap_or(bytes.len());
        let name = &rest[..name_len];
        let after_name = skip_blanks(&rest[name_len..]);
        let Some(after_eq) = after_name.strip_prefix('=') else {
            return Err(if after_name.contains('=') {
                "invalid label name"
            } else {
                "label without '='"
            });
        };
        // Every byte of `name` is a label character already: it is a name unless it is empty
        // or starts with a digit.
        if name.as_bytes().first().is_none_or(u8::is_ascii_digit) {
            return Err("invalid label name");
        }
        let body = skip_blanks(after_eq)
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let (value, after_value) = quoted(body)?;
        labels.push((name, value));
        rest = skip_blanks(after_value);
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label");
        }
    }
}

/// `text` without leading blanks; the common case (none) is one comparison.
fn skip_blanks(text: &str) -> &str {
    match text.as_bytes().first() {
        Some(b' ' | b'\t') => text.trim_start_matches([' ', '\t']),
        _ => text,
    }
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A quoted label value up to its closing quote (escapes `\\`, `\"`, `\n`).
fn quoted(body: &str) -> Result<(Cow<'_, str>, &str), &'static str> {
    let bytes = body.as_bytes();
    let mut owned: Option<String> = None;
    // `body[..copied]` is in `owned` already (unescaped) once an escape forced an owned value.
    let mut copied = 0;
    let mut from = 0;
    loop {
        let at = from
            + bytes[from..]
                .iter()
                .position(|b| matches!(b, b'"' | b'\\'))
                .ok_or("unterminated label value")?;
        if bytes[at] == b'"' {
            let value = match owned {
                Some(mut s) => {
                    s.push_str(&body[copied..at]);
                    Cow::Owned(s)
                }
                None => Cow::Borrowed(&body[..at]),
            };
            return Ok((value, &body[at + 1..]));
        }
        let unescaped = match bytes.get(at + 1) {
            Some(b'\\') => '\\',
            Some(b'"') => '"',
            Some(b'n') => '\n',
            _ => return Err("invalid escape in label value"),
        };
        let s = owned.get_or_insert_with(String::new);
        s.push_str(&body[copied..at]);
        s.push(unescaped);
        from = at + 2;
        copied = from;
    }
}

/// Digits only, few enough to be exact as an `f64`.
fn small_integer(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 15 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = bytes.iter().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    Some(n as f64)
}

fn parse_value(text: &str) -> Result<f64, &'static str> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| "invalid sample value"),
    }
}

fn is_metric_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_alphabetic() || matches!(b, b'_' | b':'))
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Owned = (String, Vec<(String, String)>, f64);

    fn collect(text: &str) -> Result<Vec<Owned>, ParseError> {
        let mut out = Vec::new();
        parse(text, |s| {
            let labels = s
                .labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            out.push((s.name.to_owned(), labels, s.value));
        })?;
        Ok(out)
    }

    #[test]
    fn reads_samples_labels_and_special_values() {
        let text = "# HELP a_total Requests.\n# TYPE a_total counter\n\
                    a_total{port=\"4700\",class=\"2xx\"} 12\n\
                    b_bucket{le=\"+Inf\"} 3 1700000000\n\
                    c 1.5e3\n\
                    d{x=\"q\\\"u\\\\o\\nte\",} NaN\n# EOF\n";
        let samples = collect(text).unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].1[1], ("class".into(), "2xx".into()));
        assert_eq!(samples[0].2, 12.0);
        assert_eq!(samples[1].1[0], ("le".into(), "+Inf".into()));
        assert_eq!(samples[1].2, 3.0);
        assert_eq!(samples[2].2, 1500.0);
        assert_eq!(samples[3].1[0].1, "q\"u\\o\nte");
        assert!(samples[3].2.is_nan());
    }

    #[test]
    fn counts_parse_like_any_other_number() {
        let samples = collect(
            "a 0\na 007\na 123456789012345\na 1234567890123456789\na 12 1700000000\na 3.5\n",
        )
        .unwrap();
        let values: Vec<f64> = samples.iter().map(|s| s.2).collect();
        assert_eq!(
            values,
            [
                0.0,
                7.0,
                123456789012345.0,
                1234567890123456789.0,
                12.0,
                3.5
            ]
        );
        assert!(collect("a 12x\n").is_err());
        assert!(collect("a{x=\"1\"} 12 13 14\n").is_err());
        assert!(collect("a{x=\"1\"} \n").is_err());
        assert!(
            collect("b 1\na 1\n1a 1\n").is_err(),
            "a name is checked when it changes"
        );
    }

    #[test]
    fn exemplars_are_ignored() {
        let samples = collect("a_bucket{le=\"1\"} 4 # {trace_id=\"x\"} 0.5\n").unwrap();
        assert_eq!(samples[0].2, 4.0);
    }

    #[test]
    fn garbage_is_rejected_with_its_line() {
        for (text, line) in [
            ("<html><body>502 Bad Gateway</body></html>", 1),
            ("a 1\nb{x=\"1\" 2\n", 2),
            ("a{x=1} 2\n", 1),
            ("a 1 2 3\n", 1),
            ("a one\n", 1),
            ("1abc 2\n", 1),
            ("# TYPE a bogus\n", 1),
            ("a 1\n# EOF\nb 2\n", 3),
            ("a{x=\"\\q\"} 1\n", 1),
            ("a{x=\"open} 1\n", 1),
        ] {
            let err = collect(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }

    #[test]
    fn families_not_wanted_are_skipped_unread() {
        let text = "# HELP skip_me A family nobody reads.\n# TYPE skip_me counter\n\
                    skip_me_total{x=\"1\"} 1\nnot even { a sample\n\
                    # TYPE keep histogram\nkeep_bucket{le=\"+Inf\"} 2\nkeep_count 2\n# EOF\n";
        let mut seen = Vec::new();
        parse_families(
            text,
            |family| family == "keep",
            |s| seen.push((s.name.to_owned(), s.value)),
        )
        .unwrap();
        assert_eq!(
            seen,
            [
                ("keep_bucket".to_owned(), 2.0),
                ("keep_count".to_owned(), 2.0)
            ]
        );
        assert_eq!(collect(text).unwrap_err().line, 4, "parse reads it all");
        // Wanted families, and lines after a skipped family, are as strict as ever, with the
        // right line numbers.
        let bad = "# TYPE skip_me gauge\nskip_me 1\nskip_me 2\n# TYPE keep gauge\nkeep x\n";
        let err = parse_families(bad, |family| family == "keep", |_| {}).unwrap_err();
        assert_eq!(err.line, 5);
        assert!(parse_families("<html>", |_| false, |_| {}).is_err());
    }

    #[test]
    fn blanks_inside_label_sets_are_allowed() {
        let samples = collect("a{ x = \"1\" ,\ty=\"2\" } 3\n").unwrap();
        assert_eq!(
            samples[0].1,
            [("x".into(), "1".into()), ("y".into(), "2".into())]
        );
        assert!(collect("a{x y=\"1\"} 3\n").is_err());
        assert!(collect("a{x} 3\n").is_err());
    }

    #[test]
    fn empty_body_has_no_samples() {
        assert!(collect("").unwrap().is_empty());
        assert!(collect("# EOF\n").unwrap().is_empty());
    }
}
