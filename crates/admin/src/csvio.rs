//! Offsets CSV in kafka-consumer-groups' formats: `topic,partition,offset` for one group and
//! `group,topic,partition,offset` for several. No header line is written; a header line is
//! accepted on read. Fields that contain a comma, quote or line break are quoted (RFC 4180).

use std::collections::BTreeSet;

use waterline_core::TopicPartition;

use crate::error::CsvError;

/// One offsets line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRow {
    /// The group, in the 4-column format.
    pub group: Option<String>,
    /// The partition.
    pub tp: TopicPartition,
    /// The offset.
    pub offset: i64,
}

/// Quotes a field when it contains a comma, quote or line break.
pub(crate) fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Writes rows; with `with_group` each line starts with the group.
pub fn write_csv(rows: &[CsvRow], with_group: bool) -> String {
    let mut out = String::new();
    for r in rows {
        if with_group {
            out.push_str(&quote(r.group.as_deref().unwrap_or("")));
            out.push(',');
        }
        out.push_str(&quote(&r.tp.topic));
        out.push(',');
        out.push_str(&r.tp.partition.to_string());
        out.push(',');
        out.push_str(&r.offset.to_string());
        out.push('\n');
    }
    out
}

/// Splits one line into fields, honouring quotes.
fn split_fields(line: &str, line_no: usize) -> Result<Vec<String>, CsvError> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            }
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '"') => {
                return Err(CsvError {
                    line: line_no,
                    message: "stray quote inside an unquoted field".into(),
                });
            }
            (false, c) if was_quoted => {
                return Err(CsvError {
                    line: line_no,
                    message: format!("unexpected '{c}' after a closing quote"),
                });
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(CsvError {
            line: line_no,
            message: "unterminated quoted field".into(),
        });
    }
    fields.push(field);
    Ok(fields)
}

fn is_header(fields: &[String]) -> bool {
    let lower: Vec<String> = fields
        .iter()
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    lower == ["topic", "partition", "offset"] || lower == ["group", "topic", "partition", "offset"]
}

/// Reads offsets CSV. Every line must have the same number of fields (3 or 4); blank lines are
/// skipped; a (topic, partition) may appear once per group.
pub fn parse_csv(text: &str) -> Result<Vec<CsvRow>, CsvError> {
    Ok(parse_csv_lines(text)?
        .into_iter()
        .map(|(_, row)| row)
        .collect())
}

/// [`parse_csv`], with the 1-based line number of each row, so that later checks (an unknown
/// topic, say) can name the line too.
pub fn parse_csv_lines(text: &str) -> Result<Vec<(usize, CsvRow)>, CsvError> {
    let mut rows = Vec::new();
    let mut width: Option<usize> = None;
    let mut seen = BTreeSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_fields(line, line_no)?;
        if rows.is_empty() && width.is_none() && is_header(&fields) {
            width = Some(fields.len());
            continue;
        }
        let err = |message: String| CsvError {
            line: line_no,
            message,
        };
        match (width, fields.len()) {
            (_, n) if n != 3 && n != 4 => {
                return Err(err(format!(
                    "expected 3 fields (topic,partition,offset) or 4 (group,topic,partition,offset), found {n}"
                )));
            }
            (Some(w), n) if w != n => {
                return Err(err(format!("found {n} fields, but earlier lines have {w}")));
            }
            _ => width = Some(fields.len()),
        }
        let (group, rest) = if fields.len() == 4 {
            let g = fields[0].trim().to_string();
            if g.is_empty() {
                return Err(err("empty group".into()));
            }
            (Some(g), &fields[1..])
        } else {
            (None, &fields[..])
        };
        let topic = rest[0].trim();
        if topic.is_empty() {
            return Err(err("empty topic".into()));
        }
        let partition: i32 = rest[1]
            .trim()
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| {
                err(format!(
                    "partition '{}' is not a non-negative integer",
                    rest[1].trim()
                ))
            })?;
        let offset: i64 = rest[2]
            .trim()
            .parse()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| {
                err(format!(
                    "offset '{}' is not a non-negative integer",
                    rest[2].trim()
                ))
            })?;
        let tp = TopicPartition::new(topic, partition);
        if !seen.insert((group.clone(), tp.clone())) {
            return Err(err(format!(
                "{topic} partition {partition} appears twice{}",
                group
                    .as_ref()
                    .map(|g| format!(" for group {g}"))
                    .unwrap_or_default()
            )));
        }
        rows.push((line_no, CsvRow { group, tp, offset }));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(group: Option<&str>, topic: &str, p: i32, o: i64) -> CsvRow {
        CsvRow {
            group: group.map(str::to_string),
            tp: TopicPartition::new(topic, p),
            offset: o,
        }
    }

    #[test]
    fn writes_both_formats() {
        let rows = [row(Some("g1"), "t", 0, 5), row(Some("g,2"), "t", 1, 7)];
        assert_eq!(write_csv(&rows[..1], false), "t,0,5\n");
        assert_eq!(write_csv(&rows, true), "g1,t,0,5\n\"g,2\",t,1,7\n");
    }

    #[test]
    fn reads_both_formats_headers_and_crlf() {
        assert_eq!(
            parse_csv("t,0,5\r\n\nt,1,6\n").unwrap(),
            vec![row(None, "t", 0, 5), row(None, "t", 1, 6)]
        );
        assert_eq!(
            parse_csv("group,topic,partition,offset\n\"g \"\"x\"\"\",t,0,5\n").unwrap(),
            vec![row(Some("g \"x\""), "t", 0, 5)]
        );
    }

    #[test]
    fn rows_carry_their_line_numbers() {
        let got = parse_csv_lines("topic,partition,offset\n\nt,0,5\r\nt,1,6\n").unwrap();
        let lines: Vec<usize> = got.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![3, 4]);
        assert_eq!(got[1].1, row(None, "t", 1, 6));
    }

    #[test]
    fn errors_are_line_numbered() {
        for (text, msg) in [
            ("t,0,5\nt,0\n", "line 2: expected 3 fields"),
            (
                "t,0,5\ng,t,1,5\n",
                "line 2: found 4 fields, but earlier lines have 3",
            ),
            (
                "t,x,5\n",
                "line 1: partition 'x' is not a non-negative integer",
            ),
            ("t,-1,5\n", "line 1: partition '-1'"),
            (
                "t,0,-5\n",
                "line 1: offset '-5' is not a non-negative integer",
            ),
            ("\n\nt,0,5\nt,0,6\n", "line 4: t partition 0 appears twice"),
            ("\"t,0,5\n", "line 1: unterminated quoted field"),
            ("t\"x,0,5\n", "line 1: stray quote"),
            (
                "\"t\"x,0,5\n",
                "line 1: unexpected 'x' after a closing quote",
            ),
            (",0,5\n", "line 1: empty topic"),
        ] {
            let err = parse_csv(text).unwrap_err().to_string();
            assert!(err.starts_with(msg), "{text:?}: {err}");
        }
    }

    proptest! {
        #[test]
        fn write_then_parse_round_trips(
            entries in proptest::collection::btree_map(("[a-z,\" ]{1,8}", "[a-z._-]{1,8}", 0i32..50), 0i64..1_000_000, 0..20),
            with_group in any::<bool>(),
        ) {
            let rows: Vec<CsvRow> = entries
                .into_iter()
                // Fields are trimmed on read, so generated groups must not have edge spaces.
                .filter(|((g, _, _), _)| g.trim() == g.as_str())
                .map(|((g, t, p), o)| row(with_group.then_some(g.as_str()), &t, p, o))
                .collect();
            // Without the group column the (topic, partition) pairs must be unique.
            let mut seen = BTreeSet::new();
            let rows: Vec<CsvRow> = rows.into_iter().filter(|r| seen.insert((r.group.clone(), r.tp.clone()))).collect();
            let text = write_csv(&rows, with_group);
            prop_assert_eq!(parse_csv(&text).unwrap(), rows);
        }

        #[test]
        fn parser_never_panics(text in "\\PC{0,60}") {
            let _ = parse_csv(&text);
        }
    }
}
