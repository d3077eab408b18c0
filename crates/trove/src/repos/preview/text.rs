//! CSV, TSV and JSON Lines previews from a bounded prefix of the file: the prefix is cut at
//! its last full line, parsed, and the columns' types inferred from the rows read.

use super::{Column, MAX_ROWS, Table, Unavailable, cell};
use serde_json::Value;

/// The complete lines of a prefix: all of it when it is the whole file, else up to its last
/// newline. A prefix with no newline at all is one line too long to preview.
pub fn complete_lines(prefix: &[u8], whole_file: bool) -> Result<&[u8], Unavailable> {
    if whole_file {
        return Ok(prefix);
    }
    match prefix.iter().rposition(|b| *b == b'\n') {
        Some(i) => Ok(&prefix[..=i]),
        None => Err(Unavailable(format!(
            "the first line is longer than the {} read for a preview",
            super::human_bytes(prefix.len() as u64)
        ))),
    }
}

/// The first rows of delimited text (RFC 4180 quoting; a header row names the columns).
/// `cut` says the text is a prefix: a record left open at its end (a quoted field spanning
/// the cut) is dropped.
pub fn parse_delimited(text: &[u8], delimiter: u8, cut: bool) -> Result<Table, Unavailable> {
    let text = String::from_utf8_lossy(text);
    let mut records = Records::new(&text, delimiter as char);
    let Some(header) = records.next() else {
        return Err(Unavailable("the file is empty".to_owned()));
    };
    let header = header.fields;
    if header.len() > super::MAX_COLUMNS {
        return Err(Unavailable(format!(
            "the file has {} columns, more than the {} a preview shows",
            header.len(),
            super::MAX_COLUMNS
        )));
    }
    let mut raw: Vec<Vec<String>> = Vec::new();
    for record in records.by_ref() {
        if record.open && cut {
            break;
        }
        if record.fields.len() == 1 && record.fields[0].is_empty() {
            continue;
        }
        raw.push(record.fields);
        if raw.len() >= MAX_ROWS {
            break;
        }
    }
    let columns: Vec<Column> = header
        .iter()
        .enumerate()
        .map(|(i, name)| Column {
            name: if name.is_empty() {
                format!("column_{i}")
            } else {
                cell(name)
            },
            dtype: infer_text_type(raw.iter().filter_map(|r| r.get(i).map(String::as_str))),
        })
        .collect();
    let rows = raw
        .iter()
        .map(|r| {
            (0..columns.len())
                .map(|i| r.get(i).map(|v| cell(v)).unwrap_or_default())
                .collect()
        })
        .collect();
    Ok(Table { columns, rows })
}

/// The type a column of text values reads as: the narrowest of `int64`, `float64`, `bool`
/// that every non-empty value parses as, else `string`.
fn infer_text_type<'a>(values: impl Iterator<Item = &'a str> + Clone) -> String {
    let present = values.filter(|v| !v.is_empty());
    let all = |f: fn(&str) -> bool| present.clone().all(f);
    if present.clone().next().is_none() {
        "null"
    } else if all(|v| v.parse::<i64>().is_ok()) {
        "int64"
    } else if all(|v| v.parse::<f64>().is_ok()) {
        "float64"
    } else if all(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "false")) {
        "bool"
    } else {
        "string"
    }
    .to_owned()
}

/// One record of delimited text: its fields, and whether the text ended inside a quote.
struct Record {
    fields: Vec<String>,
    open: bool,
}

/// Records of delimited text, read one character at a time (quotes may span lines).
struct Records<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    delimiter: char,
}

impl<'a> Records<'a> {
    fn new(text: &'a str, delimiter: char) -> Self {
        Records {
            chars: text.chars().peekable(),
            delimiter,
        }
    }
}

impl Iterator for Records<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        self.chars.peek()?;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        loop {
            let Some(c) = self.chars.next() else {
                fields.push(field);
                return Some(Record {
                    fields,
                    open: quoted,
                });
            };
            match (quoted, c) {
                (true, '"') if self.chars.peek() == Some(&'"') => {
                    self.chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') if field.is_empty() => quoted = true,
                (false, c) if c == self.delimiter => fields.push(std::mem::take(&mut field)),
                (false, '\r') if self.chars.peek() == Some(&'\n') => {}
                (false, '\n') => {
                    fields.push(field);
                    return Some(Record {
                        fields,
                        open: false,
                    });
                }
                (false, c) => field.push(c),
            }
        }
    }
}

/// The first rows of JSON Lines: each line one JSON object; the columns are the keys in the
/// order they first appear. A line that is not a JSON object ends the preview with a note.
pub fn parse_json_lines(text: &[u8]) -> Result<Table, Unavailable> {
    let mut objects: Vec<serde_json::Map<String, Value>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (n, line) in text.split(|b| *b == b'\n').enumerate() {
        if objects.len() >= MAX_ROWS {
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // serde_json refuses nesting deeper than 128 levels, so hostile depth is an error here.
        let object = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                return Err(Unavailable(format!("line {} is not a JSON object", n + 1)));
            }
            Err(e) => {
                return Err(Unavailable(format!(
                    "line {} is not valid JSON ({e})",
                    n + 1
                )));
            }
        };
        for key in object.keys() {
            if !names.contains(key) {
                if names.len() >= super::MAX_COLUMNS {
                    return Err(Unavailable(format!(
                        "the rows have more than the {} columns a preview shows",
                        super::MAX_COLUMNS
                    )));
                }
                names.push(key.clone());
            }
        }
        objects.push(object);
    }
    if objects.is_empty() {
        return Err(Unavailable("the file has no rows".to_owned()));
    }
    let columns = names
        .iter()
        .map(|name| Column {
            name: cell(name),
            dtype: infer_json_type(objects.iter().filter_map(|o| o.get(name))),
        })
        .collect();
    let rows = objects
        .iter()
        .map(|o| {
            names
                .iter()
                .map(|name| o.get(name).map(json_cell).unwrap_or_default())
                .collect()
        })
        .collect();
    Ok(Table { columns, rows })
}

/// The first rows of a `.json` file holding one array of objects (`[{"a": 1}, …]`), read
/// element by element from `bytes` — the whole file, or a prefix of it when `whole` is
/// false, whose last, cut element is left out. Anything else is a note.
pub fn parse_json_array(bytes: &[u8], whole: bool) -> Result<Table, Unavailable> {
    let skip_ws = |at: usize| {
        at + bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count()
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut at = skip_ws(0);
    if bytes.get(at) != Some(&b'[') {
        return Err(Unavailable(
            "the file is not a JSON array of objects (JSON Lines files end in .jsonl)".to_owned(),
        ));
    }
    at = skip_ws(at + 1);
    let mut lines = Vec::new();
    while lines.len() < MAX_ROWS && at < bytes.len() && bytes[at] != b']' {
        let mut stream = serde_json::Deserializer::from_slice(&bytes[at..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                if !value.is_object() {
                    return Err(Unavailable(format!(
                        "element {} of the array is not a JSON object",
                        lines.len() + 1
                    )));
                }
                lines.push(value);
                at = skip_ws(at + stream.byte_offset());
                match bytes.get(at) {
                    Some(b',') => at = skip_ws(at + 1),
                    Some(b']') | None => {}
                    Some(_) => {
                        return Err(Unavailable(
                            "the JSON array is malformed after element ".to_owned()
                                + &lines.len().to_string(),
                        ));
                    }
                }
            }
            // The prefix ends inside this element: the rows so far are the preview.
            Some(Err(e)) if e.is_eof() && !whole => break,
            Some(Err(e)) => {
                return Err(Unavailable(format!(
                    "element {} of the array is not valid JSON ({e})",
                    lines.len() + 1
                )));
            }
            None => break,
        }
    }
    // The rows become JSON Lines, so both formats share one table builder.
    let mut text = Vec::new();
    for value in &lines {
        text.extend_from_slice(value.to_string().as_bytes());
        text.push(b'\n');
    }
    parse_json_lines(&text)
}

/// A JSON value in a cell: strings as they are, everything else as compact JSON.
pub fn json_cell(value: &Value) -> String {
    match value {
        Value::String(s) => cell(s),
        other => cell(&other.to_string()),
    }
}

/// The type of a column of JSON values, named as the Hub's viewer names Arrow types.
fn infer_json_type<'a>(values: impl Iterator<Item = &'a Value>) -> String {
    let mut seen: Option<&'static str> = None;
    for value in values {
        let this = match value {
            Value::Null => continue,
            Value::Bool(_) => "bool",
            Value::Number(n) if n.is_i64() || n.is_u64() => "int64",
            Value::Number(_) => "float64",
            Value::String(_) => "string",
            Value::Array(_) => "list",
            Value::Object(_) => "struct",
        };
        seen = Some(match (seen, this) {
            (None, t) => t,
            (Some(a), b) if a == b => a,
            (Some("int64" | "float64"), "int64" | "float64") => "float64",
            _ => "mixed",
        });
    }
    seen.unwrap_or("null").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_types_and_a_cut_prefix() {
        let text = b"id,name,score,ok\n1,\"Smith, J\",0.5,true\n2,\"say \"\"hi\"\"\nthere\",2,false\n3,\"cut";
        let table = parse_delimited(text, b',', true).expect("table");
        let types: Vec<(&str, &str)> = table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.dtype.as_str()))
            .collect();
        assert_eq!(
            types,
            vec![
                ("id", "int64"),
                ("name", "string"),
                ("score", "float64"),
                ("ok", "bool")
            ]
        );
        assert_eq!(table.rows.len(), 2, "the record open at the cut is dropped");
        assert_eq!(table.rows[0][1], "Smith, J");
        assert_eq!(table.rows[1][1], "say \"hi\"\nthere");
    }

    #[test]
    fn a_line_longer_than_the_prefix_is_a_note_not_an_error() {
        let prefix = vec![b'a'; 1 << 20];
        let err = complete_lines(&prefix, false).expect_err("no full line");
        assert!(err.0.contains("first line is longer"), "{}", err.0);
        assert_eq!(complete_lines(b"a\nb", false).expect("cut"), b"a\n");
        assert_eq!(complete_lines(b"a\nb", true).expect("whole"), b"a\nb");
    }

    #[test]
    fn invalid_utf8_is_shown_with_replacement_characters() {
        let table = parse_delimited(b"na\xffme\nval\xfe\n", b',', false).expect("table");
        assert_eq!(table.columns[0].name, "na\u{fffd}me");
        assert_eq!(table.rows, vec![vec!["val\u{fffd}".to_owned()]]);
    }

    #[test]
    fn rows_are_capped() {
        let mut text = String::from("n\n");
        for i in 0..500 {
            text.push_str(&format!("{i}\n"));
        }
        let table = parse_delimited(text.as_bytes(), b',', false).expect("table");
        assert_eq!(table.rows.len(), MAX_ROWS);
        let mut lines = String::new();
        for i in 0..500 {
            lines.push_str(&format!("{{\"n\":{i}}}\n"));
        }
        assert_eq!(
            parse_json_lines(lines.as_bytes())
                .expect("table")
                .rows
                .len(),
            MAX_ROWS
        );
    }

    #[test]
    fn json_lines_columns_types_and_nested_values() {
        let text = b"{\"a\":1,\"b\":\"x\",\"c\":{\"k\":[1,2]}}\n{\"a\":2.5,\"d\":null}\n";
        let table = parse_json_lines(text).expect("table");
        let types: Vec<(&str, &str)> = table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.dtype.as_str()))
            .collect();
        assert_eq!(
            types,
            vec![
                ("a", "float64"),
                ("b", "string"),
                ("c", "struct"),
                ("d", "null")
            ]
        );
        assert_eq!(table.rows[0][2], "{\"k\":[1,2]}");
        assert_eq!(table.rows[1][1], "");
    }

    #[test]
    fn json_arrays_of_objects() {
        let table = parse_json_array(
            b" [ {\"a\": 1, \"b\": \"x\"},\n {\"a\": 2, \"c\": [1]} ]\n",
            true,
        )
        .expect("table");
        assert_eq!(table.columns.len(), 3);
        assert_eq!(table.columns[0].name, "a");
        assert_eq!(table.rows, vec![vec!["1", "x", ""], vec!["2", "", "[1]"]]);
        // A prefix cut inside the third element shows the first two.
        let cut = parse_json_array(b"[{\"a\": 1}, {\"a\": 2}, {\"a\": \"thr", false).expect("cut");
        assert_eq!(cut.rows.len(), 2);
        // The same bytes as a whole file are broken.
        assert!(parse_json_array(b"[{\"a\": 1}, {\"a\": \"thr", true).is_err());
        let many: String = format!(
            "[{}]",
            (0..150)
                .map(|i| format!("{{\"i\": {i}}}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            parse_json_array(many.as_bytes(), true)
                .expect("rows")
                .rows
                .len(),
            MAX_ROWS
        );
    }

    #[test]
    fn json_that_is_not_an_array_of_objects_is_a_note() {
        for bad in [
            &b"{\"a\": 1}"[..],
            b"[1, 2]",
            b"[{\"a\": 1} {\"a\": 2}]",
            b"",
            b"[]",
            b"nope",
        ] {
            assert!(
                parse_json_array(bad, true).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("[{}]", "[".repeat(10_000));
        assert!(parse_json_array(deep.as_bytes(), true).is_err());
    }

    #[test]
    fn hostile_json_lines_are_notes() {
        let deep = format!("{}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse_json_lines(deep.as_bytes()).expect_err("too deep");
        assert!(err.0.contains("line 1"), "{}", err.0);
        let err = parse_json_lines(b"{\"a\":1}\n\xff\xfe\n").expect_err("not utf-8");
        assert!(err.0.contains("line 2 is not valid JSON"), "{}", err.0);
        let err = parse_json_lines(b"[1,2]\n").expect_err("not an object");
        assert!(err.0.contains("not a JSON object"), "{}", err.0);
        assert!(parse_json_lines(b"\n\n").is_err());
    }

    #[test]
    fn long_cells_are_truncated() {
        let long = "x".repeat(10_000);
        let text = format!("a\n{long}\n");
        let table = parse_delimited(text.as_bytes(), b',', false).expect("table");
        assert!(table.rows[0][0].chars().count() <= super::super::MAX_CELL_CHARS + 1);
        assert!(table.rows[0][0].ends_with('…'));
    }
}
