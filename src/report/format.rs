//! Number, time and text formats shared by the report's sections, and CSV text (written and
//! read back). Pure and deterministic: fixed number formats, times formatted in UTC by hand, no
//! locale. Imports nothing of the report, so every module may use it.

/// Fixed 3 decimals (the paper's precision); `NaN` / `inf` spelled out; never `-0.000`.
pub fn fixed(x: f64, decimals: usize) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let s = format!("{x:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

/// A difference with its sign: `+0.078`, `−0.103` (U+2212 in Markdown), `0.000`.
pub fn signed(x: f64, decimals: usize, unicode_minus: bool) -> String {
    let s = fixed(x, decimals);
    if let Some(abs) = s.strip_prefix('-') {
        if unicode_minus {
            format!("−{abs}")
        } else {
            s
        }
    } else if s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        format!("+{s}")
    } else {
        s
    }
}

/// `333,604`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian, seconds floored).
pub fn utc(unix_s: f64) -> String {
    let secs = unix_s.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `1 h 02 min`, `12 min 05 s`, `45.2 s`.
pub fn duration(s: f64) -> String {
    if !s.is_finite() {
        return fixed(s, 1);
    }
    let whole = s.round() as u64;
    if whole >= 3600 {
        format!("{} h {:02} min", whole / 3600, whole % 3600 / 60)
    } else if whole >= 60 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{} s", fixed(s, 1))
    }
}

/// Text safe inside a Markdown table cell: one line, pipes escaped, at most `max` characters.
pub fn cell(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max || text.trim().lines().count() > 1 {
        out.push('…');
    }
    out.replace('|', "\\|")
}

/// A table row's name in Markdown: `model`, or `model [variant]`.
pub fn row_name(model: &str, variant: &str) -> String {
    if variant.is_empty() {
        cell(model, 200)
    } else {
        cell(&format!("{model} [{variant}]"), 200)
    }
}

/// `1, 2, 3`.
pub fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------
// CSV

/// A CSV field: quoted when it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Reads CSV text as [`csv_field`] writes it back into records of fields: a field may be
/// quoted (`""` inside for a quote) and then hold commas and line breaks; records end at a line
/// break (`\n` or `\r\n`). An unterminated quote, or a quote inside an unquoted field, is an
/// error naming the record.
pub fn read_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut at_start = true; // at the start of a field
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start => {
                at_start = false;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            field.push('"');
                            chars.next();
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                        None => {
                            return Err(format!(
                                "record {}: a quoted field is not closed",
                                records.len() + 1
                            ))
                        }
                    }
                }
                if !matches!(chars.peek(), None | Some(',' | '\n' | '\r')) {
                    return Err(format!(
                        "record {}: text after a quoted field",
                        records.len() + 1
                    ));
                }
            }
            '"' => {
                return Err(format!(
                    "record {}: a quote inside an unquoted field",
                    records.len() + 1
                ))
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                at_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                at_start = true;
            }
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if !at_start || !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

pub fn csv_line(fields: &[String]) -> String {
    let mut l = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    l.push('\n');
    l
}

/// A CSV file's header line.
pub fn csv_header(names: &[&str]) -> String {
    csv_line(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
}

/// An optional number, empty when absent.
pub fn opt(x: Option<f64>, decimals: usize) -> String {
    x.map_or(String::new(), |v| fixed(v, decimals))
}

/// CSV numbers carry 6 decimals (the Markdown rounds the same numbers to 3).
pub const CSV_DECIMALS: usize = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_text_reads_back_into_the_fields_written() {
        let fields = [
            "plain".to_string(),
            "a, b".into(),
            "say \"hi\"".into(),
            "two\nlines".into(),
            String::new(),
        ];
        let text = csv_line(&fields) + &csv_line(&fields[..2]);
        let back = read_csv(&text).unwrap();
        assert_eq!(back, vec![fields.to_vec(), fields[..2].to_vec()]);
        assert_eq!(read_csv("a,b\r\n1,\n").unwrap(), [["a", "b"], ["1", ""]]);
        assert!(read_csv("a,\"b\n").unwrap_err().contains("not closed"));
        assert!(read_csv("a,b\"c\n").unwrap_err().contains("record 1"));
        assert!(read_csv("x\n\"a\"b\n").unwrap_err().contains("record 2"));
    }

    #[test]
    fn number_formats() {
        assert_eq!(fixed(5.2225, 3), "5.223");
        assert_eq!(fixed(-0.0001, 3), "0.000");
        assert_eq!(fixed(f64::NAN, 3), "NaN");
        assert_eq!(signed(0.0784, 3, true), "+0.078");
        assert_eq!(signed(-0.1034, 3, true), "−0.103");
        assert_eq!(signed(-0.1034, 3, false), "-0.103");
        assert_eq!(signed(-0.00001, 3, true), "0.000");
        assert_eq!(thousands(49_889_172_087), "49,889,172,087");
        assert_eq!(thousands(604), "604");
        assert_eq!(duration(45.21), "45.2 s");
        assert_eq!(duration(725.0), "12 min 05 s");
        assert_eq!(duration(3725.0), "1 h 02 min");
    }

    #[test]
    fn utc_by_hand() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000.9), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(4_107_542_400.0), "2100-03-01 00:00:00 UTC");
        assert_eq!(utc(-1.0), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn cells_and_csv_fields_are_escaped() {
        assert_eq!(cell("a|b\nsecond line", 100), "a\\|b…");
        assert_eq!(cell("abcdef", 3), "abc…");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
