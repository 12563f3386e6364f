//! ISO-8601 durations (`PnDTnHnMnS`) and the datetimes kafka-consumer-groups accepts
//! (`YYYY-MM-DDTHH:mm:SS[.sss]` with an optional zone), parsed with one-line errors.

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};

use crate::error::TimeParseError;

fn dur_err(input: &str, reason: impl Into<String>) -> TimeParseError {
    TimeParseError::Duration {
        input: input.to_string(),
        reason: reason.into(),
    }
}

fn dt_err(input: &str, reason: impl Into<String>) -> TimeParseError {
    TimeParseError::DateTime {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// Parses an ISO-8601 duration of days, hours, minutes and seconds (`P1D`, `PT1H30M`,
/// `P2DT0.5S`, with an optional leading `-`) into signed milliseconds.
///
/// Years, months and weeks are refused: their length in milliseconds is ambiguous.
pub fn parse_duration_ms(input: &str) -> Result<i64, TimeParseError> {
    let s = input.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let s = s
        .strip_prefix('P')
        .or_else(|| s.strip_prefix('p'))
        .ok_or_else(|| dur_err(input, "must start with P"))?;
    if s.is_empty() {
        return Err(dur_err(input, "no components after P"));
    }
    let mut total: i128 = 0;
    let mut in_time = false;
    let mut seen_any = false;
    // Units must appear in order D, (T) H, M, S; each at most once.
    let mut last_rank = 0u8;
    let mut number = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' | '.' | ',' => number.push(if c == ',' { '.' } else { c }),
            'T' | 't' => {
                if in_time || !number.is_empty() {
                    return Err(dur_err(input, "misplaced T"));
                }
                in_time = true;
            }
            _ => {
                let unit = c.to_ascii_uppercase();
                let (rank, ms_per_unit): (u8, i128) = match (unit, in_time) {
                    ('D', false) => (1, 86_400_000),
                    ('H', true) => (2, 3_600_000),
                    ('M', true) => (3, 60_000),
                    ('S', true) => (4, 1_000),
                    ('Y' | 'W', _) | ('M', false) => {
                        return Err(dur_err(
                            input,
                            "years, months and weeks are not supported; use days",
                        ));
                    }
                    ('H' | 'S', false) => {
                        return Err(dur_err(
                            input,
                            "hours, minutes and seconds need a T before them",
                        ));
                    }
                    ('D', true) => return Err(dur_err(input, "days must come before T")),
                    _ => return Err(dur_err(input, format!("unexpected character '{c}'"))),
                };
                if rank <= last_rank {
                    return Err(dur_err(input, "components out of order or repeated"));
                }
                last_rank = rank;
                if number.is_empty() {
                    return Err(dur_err(input, format!("missing number before {unit}")));
                }
                let millis = parse_decimal_scaled(&number, ms_per_unit)
                    .ok_or_else(|| dur_err(input, format!("bad number '{number}'")))?;
                if number.contains('.') && unit != 'S' {
                    return Err(dur_err(input, "only seconds may have a fraction"));
                }
                total += millis;
                if total > i128::from(i64::MAX) {
                    return Err(dur_err(input, "too large"));
                }
                number.clear();
                seen_any = true;
            }
        }
    }
    if !number.is_empty() {
        return Err(dur_err(input, "number without a unit at the end"));
    }
    if in_time && last_rank < 2 {
        return Err(dur_err(
            input,
            "T must be followed by hours, minutes or seconds",
        ));
    }
    if !seen_any {
        return Err(dur_err(input, "no components"));
    }
    let total = i64::try_from(total).map_err(|_| dur_err(input, "too large"))?;
    Ok(if negative { -total } else { total })
}

/// `digits[.fraction] * scale`, truncating below a millisecond.
fn parse_decimal_scaled(number: &str, scale: i128) -> Option<i128> {
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int.is_empty() && frac.is_empty() || frac.contains('.') || int.len() > 18 {
        return None;
    }
    let int_val: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int_val.checked_mul(scale)?;
    // Fraction: only milliseconds matter (scale >= 1000), so 3 digits suffice for seconds.
    let frac_digits: String = frac.chars().take(9).collect();
    if !frac_digits.is_empty() {
        let f: i128 = frac_digits.parse().ok()?;
        value += f * scale / 10i128.pow(frac_digits.len() as u32);
    }
    Some(value)
}

/// Parses `YYYY-MM-DDTHH:mm:SS[.sss][zone]` into milliseconds since the epoch. The zone is
/// `Z`, `±HH:mm`, `±HHmm` or `±HH`; without a zone the local time zone applies, as in
/// kafka-consumer-groups.
pub fn parse_datetime_ms(input: &str) -> Result<i64, TimeParseError> {
    parse_datetime_ms_in(input, &Local)
}

/// [`parse_datetime_ms`] with an explicit zone for zone-less input (for deterministic tests).
pub fn parse_datetime_ms_in<Tz: TimeZone>(input: &str, local: &Tz) -> Result<i64, TimeParseError> {
    let s = input.trim();
    if s.len() < 19 || !s.is_char_boundary(19) {
        return Err(dt_err(input, "too short"));
    }
    let (head, rest) = s.split_at(19);
    let naive = NaiveDateTime::parse_from_str(head, "%Y-%m-%dT%H:%M:%S")
        .map_err(|e| dt_err(input, e.to_string()))?;
    // Optional fraction.
    let (millis, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
            if digits.is_empty() {
                return Err(dt_err(input, "no digits after '.'"));
            }
            let mut padded: String = digits.chars().take(3).collect();
            while padded.len() < 3 {
                padded.push('0');
            }
            let ms: i64 = padded.parse().map_err(|_| dt_err(input, "bad fraction"))?;
            (ms, &r[digits.len()..])
        }
        None => (0, rest),
    };
    let base = if zone.is_empty() {
        local
            .from_local_datetime(&naive)
            .earliest()
            .ok_or_else(|| dt_err(input, "does not exist in the local time zone"))?
            .timestamp_millis()
    } else {
        let offset = parse_zone(zone).ok_or_else(|| dt_err(input, format!("bad zone '{zone}'")))?;
        let dt: DateTime<FixedOffset> = offset
            .from_local_datetime(&naive)
            .single()
            .ok_or_else(|| dt_err(input, "invalid with this zone"))?;
        dt.timestamp_millis()
    };
    Ok(base + millis)
}

fn parse_zone(zone: &str) -> Option<FixedOffset> {
    if zone == "Z" || zone == "z" {
        return FixedOffset::east_opt(0);
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let colon_ok = match zone[1..].find(':') {
        None => true,
        Some(i) => i == 2 && zone[1..].matches(':').count() == 1,
    };
    if !colon_ok {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if h > 18 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:mm:SS.sssZ` (UTC).
pub fn format_ms(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("{ms}ms"),
    }
}

/// Formats a span in milliseconds compactly, e.g. `1d2h3m4.5s`, `850ms`, `0s`.
pub fn format_span_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let mut rest = ms.unsigned_abs();
    if rest < 1000 {
        return format!("{sign}{rest}ms");
    }
    let days = rest / 86_400_000;
    rest %= 86_400_000;
    let hours = rest / 3_600_000;
    rest %= 3_600_000;
    let mins = rest / 60_000;
    rest %= 60_000;
    let mut out = String::from(sign);
    if days > 0 {
        out.push_str(&format!("{days}d"));
    }
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if mins > 0 {
        out.push_str(&format!("{mins}m"));
    }
    if rest > 0 {
        let secs = rest / 1000;
        let frac = rest % 1000;
        if frac == 0 {
            out.push_str(&format!("{secs}s"));
        } else {
            let f = format!("{frac:03}");
            out.push_str(&format!("{secs}.{}s", f.trim_end_matches('0')));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn durations() {
        for (s, ms) in [
            ("PT15M", 900_000),
            ("P1D", 86_400_000),
            ("P1DT2H30M", 86_400_000 + 2 * 3_600_000 + 30 * 60_000),
            ("PT0.5S", 500),
            ("PT1,25S", 1_250),
            ("-PT1H", -3_600_000),
            ("pt10s", 10_000),
            ("P0D", 0),
        ] {
            assert_eq!(parse_duration_ms(s), Ok(ms), "{s}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for (s, why) in [
            ("", "must start with P"),
            ("P", "no components"),
            ("PT", "T must be followed"),
            ("1H", "must start with P"),
            ("P1H", "need a T"),
            ("P1M", "not supported"),
            ("P1Y", "not supported"),
            ("PT1M1H", "out of order"),
            ("PT5", "without a unit"),
            ("PTH", "missing number"),
            ("PT1.5H", "only seconds"),
            ("P1DT", "T must be followed"),
            ("PT1X", "unexpected character"),
        ] {
            let err = parse_duration_ms(s).unwrap_err().to_string();
            assert!(err.contains(why), "{s}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn datetimes_with_zones() {
        let utc = Utc;
        let base = 1_706_702_400_000; // 2024-01-31T12:00:00Z
        for (s, ms) in [
            ("2024-01-31T12:00:00", base),
            ("2024-01-31T12:00:00.000", base),
            ("2024-01-31T12:00:00.5", base + 500),
            ("2024-01-31T12:00:00.123Z", base + 123),
            ("2024-01-31T13:00:00.000+01:00", base),
            ("2024-01-31T13:00:00+0100", base),
            ("2024-01-31T10:00:00-02", base),
        ] {
            assert_eq!(parse_datetime_ms_in(s, &utc), Ok(ms), "{s}");
        }
    }

    #[test]
    fn bad_datetimes_are_one_line_errors() {
        for s in [
            "yesterday",
            "2024-13-01T00:00:00",
            "2024-01-31 12:00:00",
            "2024-01-31T12:00:00.",
            "2024-01-31T12:00:00+25:00",
            "2024-01-31T12:00:00+1:00",
            "2024-01-31T12:00:00junk",
            "2024-01-31T12:00:0é",
        ] {
            let err = parse_datetime_ms_in(s, &Utc).unwrap_err().to_string();
            assert!(err.starts_with("malformed datetime"), "{s}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_ms(1_706_702_400_123), "2024-01-31T12:00:00.123Z");
        assert_eq!(format_span_ms(0), "0s");
        assert_eq!(format_span_ms(850), "850ms");
        assert_eq!(format_span_ms(90_500), "1m30.5s");
        assert_eq!(format_span_ms(-86_400_000 - 3_600_000), "-1d1h");
    }

    proptest::proptest! {
        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,20}") {
            let _ = parse_duration_ms(&s);
        }

        #[test]
        fn datetime_parser_never_panics(s in "\\PC{0,40}") {
            let _ = parse_datetime_ms_in(&s, &Utc);
        }

        #[test]
        fn durations_round_trip_through_components(d in 0i64..1000, h in 0i64..24, m in 0i64..60, sec in 0i64..60, ms in 0i64..1000) {
            let s = format!("P{d}DT{h}H{m}M{sec}.{ms:03}S");
            let expect = (((d * 24 + h) * 60 + m) * 60 + sec) * 1000 + ms;
            proptest::prop_assert_eq!(parse_duration_ms(&s), Ok(expect));
        }
    }
}
