//! A small CSV reader and writer (RFC 4180 quoting), enough for the
//! embedded CodeCarbon tables and the emissions log; it keeps the crate free
//! of a CSV dependency.

/// Splits CSV text into records of fields. Handles quoted fields with
/// commas, doubled quotes and newlines, CRLF line ends and a leading UTF-8
/// byte-order mark. Blank lines are skipped.
pub(crate) fn parse(text: &str) -> Vec<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                if !(record.len() == 1 && record[0].is_empty()) {
                    records.push(std::mem::take(&mut record));
                } else {
                    record.clear();
                }
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// Quotes a field if it holds a comma, a quote or a line break.
pub(crate) fn escape(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quotes_bom_crlf_and_blank_lines() {
        let t = "\u{feff}a,b\r\n\"x, y\",2\n\n\"say \"\"hi\"\"\",\"multi\nline\"\nlast,";
        let r = parse(t);
        assert_eq!(
            r,
            vec![
                vec!["a", "b"],
                vec!["x, y", "2"],
                vec!["say \"hi\"", "multi\nline"],
                vec!["last", ""],
            ]
        );
    }

    #[test]
    fn escape_round_trips() {
        for s in ["plain", "a,b", "q\"uote", "two\nlines", ""] {
            let line = format!("{},z\n", escape(s));
            assert_eq!(parse(&line), vec![vec![s.to_string(), "z".to_string()]]);
        }
    }
}
