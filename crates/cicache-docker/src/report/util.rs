//! Small text helpers shared by the log parsers: escape stripping, pip/docker sizes,
//! durations, RFC 3339 times and base64 (rawjson carries log data as base64).

/// Removes ANSI escape sequences (the classic builder colours stderr red) and keeps what
/// follows the last carriage return (progress bars redraw a line with `\r`).
pub fn clean_line(line: &str) -> String {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let line = match line.rfind('\r') {
        Some(i) => &line[i + 1..],
        None => line,
    };
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte (0x40..=0x7e); other escapes: drop ESC + one char.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Strips a CI timestamp prefix: Jenkins' `[2024-05-01T10:00:00.123Z] ` and
/// GitHub-style `2024-05-01T10:00:00.1234567Z `.
pub fn strip_timestamp_prefix(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix('[')
        && let Some((ts, after)) = rest.split_once("] ")
        && looks_like_timestamp(ts)
    {
        return after;
    }
    if let Some((ts, after)) = line.split_once(' ')
        && ts.ends_with('Z')
        && looks_like_timestamp(ts)
    {
        return after;
    }
    line
}

fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b' ')
        && b[13] == b':'
}

/// Parses a size as pip, uv and docker print it: `12.3 MB`, `64 kB`, `123 bytes`,
/// `17.5MiB`, `1.2GB`. Decimal units are powers of 1000, binary ones of 1024.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "B" | "b" | "bytes" | "byte" => 1.0,
        "kB" | "KB" | "k" | "K" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "TB" => 1e12,
        "KiB" | "kiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = value * mult;
    if !bytes.is_finite() || !(0.0..=1e18).contains(&bytes) {
        return None;
    }
    Some(bytes.round() as u64)
}

/// Parses a BuildKit duration: `1.2s`, `0.0s`, `2m3.5s`, `1h2m3s`.
pub fn parse_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'h' | 'm' | 's' => {
                let v: f64 = num.parse().ok()?;
                num.clear();
                total += v * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                any = true;
            }
            _ => return None,
        }
    }
    if !num.is_empty() || !any || !total.is_finite() {
        return None;
    }
    Some(total)
}

/// `1.20 GB`, `340 MB`, `12.0 kB`, `17 B`: SI units, like docker and pip; the one formatter
/// of every size cicache prints (crates/cicache-units).
pub use cicache_units::format_bytes as human_bytes;

/// `1m12s`, `3.4s`, `1h02m`.
pub fn human_seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "?".to_string();
    }
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        let m = (s / 60.0).floor();
        let rest = (s - m * 60.0).round() as u64;
        // 59.6s rounds to 60: carry into the minutes.
        if rest == 60 {
            format!("{}m00s", m as u64 + 1)
        } else {
            format!("{}m{rest:02}s", m as u64)
        }
    } else {
        let h = (s / 3600.0).floor();
        let m = ((s - h * 3600.0) / 60.0).floor();
        format!("{}h{:02}m", h as u64, m as u64)
    }
}

/// Parses an RFC 3339 time (`2024-05-01T10:00:00.123456789Z`, `...+02:00`) into seconds
/// since the Unix epoch.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(0..=9999).contains(&year) {
        return None;
    }
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else {
        let i = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off.get(1..)?.split_once(':')?;
        let oh: i64 = oh.parse().ok()?;
        let om: i64 = om.parse().ok()?;
        (c, sign * (oh * 3600 + om * 60))
    };
    let mut c = clock.splitn(3, ':');
    let hour: i64 = c.next()?.parse().ok()?;
    let minute: i64 = c.next()?.parse().ok()?;
    let second: f64 = c.next()?.parse().ok()?;
    if hour > 23 || minute > 59 || !(0.0..61.0).contains(&second) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86400 + hour * 3600 + minute * 60 - offset) as f64 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Decodes standard base64 (with or without padding); `None` on any invalid character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bytes = match bytes.iter().position(|&b| b == b'=') {
        Some(i) => &bytes[..i],
        None => &bytes[..],
    };
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8]),
            2 => out.push((acc >> 16) as u8),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("12.3 MB"), Some(12_300_000));
        assert_eq!(parse_size("64 kB"), Some(64_000));
        assert_eq!(parse_size("123 bytes"), Some(123));
        assert_eq!(parse_size("17.5MiB"), Some(18_350_080));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("1e400 MB"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.2s"), Some(1.2));
        assert_eq!(parse_duration("2m3.5s"), Some(123.5));
        assert_eq!(parse_duration("done"), None);
        assert_eq!(parse_duration("1.2"), None);
        assert_eq!(human_seconds(72.0), "1m12s");
        assert_eq!(human_seconds(119.7), "2m00s");
        assert_eq!(human_seconds(3.44), "3.4s");
    }

    #[test]
    fn times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2024-05-01T10:00:01.5Z"), Some(1714557601.5));
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:01.5+02:00"),
            Some(1714557601.5)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn escapes_and_prefixes() {
        assert_eq!(clean_line("\u{1b}[91mboom\u{1b}[0m"), "boom");
        assert_eq!(clean_line("10%\r50%\r100%"), "100%");
        assert_eq!(
            strip_timestamp_prefix("[2024-05-01T10:00:00.123Z] #5 DONE 1.0s"),
            "#5 DONE 1.0s"
        );
        assert_eq!(strip_timestamp_prefix("[stage 1/2] x"), "[stage 1/2] x");
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8K").as_deref(), Some(&b"hello\n"[..]));
        assert_eq!(base64_decode("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64_decode("a*b"), None);
    }
}
