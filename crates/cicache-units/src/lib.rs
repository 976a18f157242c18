//! Byte sizes, with one meaning everywhere in cicache (flags, `cicache.yml`, store URLs,
//! docker's own output):
//!
//! | written | means |
//! |---|---|
//! | `1000`, `1000B` | bytes |
//! | `k`/`kB`, `M`/`MB`, `G`/`GB`, `T`/`TB` | SI: 10^3, 10^6, 10^9, 10^12 bytes |
//! | `KiB`, `MiB`, `GiB`, `TiB` | IEC: 2^10, 2^20, 2^30, 2^40 bytes |
//!
//! Units are case-insensitive (`mb` = `MB`; docker prints `kB`), a space between number and
//! unit is allowed, and the number may have a fraction (`1.5GB`, docker's `189.7MB`); a
//! fraction of a byte is dropped. `format_bytes` writes SI units.

use std::fmt;

/// Why a size did not parse. The message names the input and shows valid sizes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    #[error(
        "{input:?} is not a size; write bytes or a number with a unit: 20GB, 512MiB, 1.5G, 1000"
    )]
    NotASize { input: String },
    #[error(
        "{input:?} has an unknown unit {unit:?}; use B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error("{input:?} is larger than {} bytes", u64::MAX)]
    TooLarge { input: String },
}

/// The multiplier of a unit, case-insensitive; `None` for an unknown unit.
fn unit_bytes(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    })
}

/// Parses a size: `20GB` (20·10^9), `512MiB` (512·2^20), `1.5G`, `189.7MB`, `1000` (bytes).
/// See the crate documentation for every unit.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let not_a_size = || SizeError::NotASize {
        input: s.to_string(),
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult = unit_bytes(unit).ok_or_else(|| {
        if num.is_empty() {
            not_a_size()
        } else {
            SizeError::UnknownUnit {
                input: s.to_string(),
                unit: unit.to_string(),
            }
        }
    })?;
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(not_a_size());
    }
    let too_large = || SizeError::TooLarge {
        input: s.to_string(),
    };
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_large())?
    };
    let mut total = int.checked_mul(mult as u128).ok_or_else(too_large)?;
    // The fraction, exactly: digits / 10^len of them, times the unit, rounded down. More
    // than 20 digits of fraction cannot change a u64 result; they are cut.
    let frac = &frac[..frac.len().min(20)];
    if !frac.is_empty() {
        let digits: u128 = frac.parse().map_err(|_| not_a_size())?;
        let scale = 10u128.pow(frac.len() as u32);
        total = total
            .checked_add(digits * mult as u128 / scale)
            .ok_or_else(too_large)?;
    }
    u64::try_from(total).map_err(|_| too_large())
}

/// A size in SI units for people: `999 B`, `1.5 kB`, `12.3 MB`, `4.00 GB` (three significant
/// digits from kB on).
pub fn format_bytes(n: u64) -> String {
    Bytes(n).to_string()
}

/// A byte count that displays as [`format_bytes`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
        let n = self.0;
        if n < 1000 {
            return write!(f, "{n} B");
        }
        let mut v = n as f64 / 1000.0;
        let mut i = 0;
        // 999.95 kB would print as "1000 kB": move on to the next unit first.
        while v >= 999.95 && i + 1 < UNITS.len() {
            v /= 1000.0;
            i += 1;
        }
        let unit = UNITS[i];
        if v >= 99.95 {
            write!(f, "{v:.0} {unit}")
        } else if v >= 9.995 {
            write!(f, "{v:.1} {unit}")
        } else {
            write!(f, "{v:.2} {unit}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_units_are_powers_of_1000() {
        assert_eq!(parse_size("20GB").unwrap(), 20_000_000_000);
        assert_eq!(parse_size("20gb").unwrap(), 20_000_000_000);
        assert_eq!(parse_size("20G").unwrap(), 20_000_000_000);
        assert_eq!(parse_size("1.878kB").unwrap(), 1878);
        assert_eq!(parse_size("189.7MB").unwrap(), 189_700_000);
        assert_eq!(parse_size("8M").unwrap(), 8_000_000);
        assert_eq!(parse_size("2TB").unwrap(), 2_000_000_000_000);
    }

    #[test]
    fn iec_units_are_powers_of_1024() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5 MiB").unwrap(), 1_572_864);
        assert_eq!(parse_size("512kib").unwrap(), 512 * 1024);
        assert_eq!(parse_size("2TiB").unwrap(), 2 << 40);
    }

    #[test]
    fn bare_numbers_are_bytes() {
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size(" 0B ").unwrap(), 0);
        assert_eq!(parse_size("7 b").unwrap(), 7);
        assert_eq!(parse_size(".5kB").unwrap(), 500);
        assert_eq!(parse_size("1.").unwrap(), 1);
        assert_eq!(parse_size(&u64::MAX.to_string()).unwrap(), u64::MAX);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = parse_size("12 parsecs").unwrap_err();
        assert!(matches!(e, SizeError::UnknownUnit { .. }), "{e}");
        assert!(e.to_string().contains("\"parsecs\""), "{e}");
        assert!(e.to_string().contains("MiB"), "{e}");
        for bad in ["GB", "", "lots", ".", "1.2.3MB", "-5MB", "1e3"] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
        let e = parse_size("99999999999999999999G").unwrap_err();
        assert!(matches!(e, SizeError::TooLarge { .. }), "{e}");
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("17EiB").is_err());
        assert!(parse_size("99999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn formats_in_si_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1000), "1.00 kB");
        assert_eq!(format_bytes(1_500), "1.50 kB");
        assert_eq!(format_bytes(12_345_678), "12.3 MB");
        assert_eq!(format_bytes(999_999), "1.00 MB");
        assert_eq!(format_bytes(123_456_789_012), "123 GB");
        assert_eq!(format_bytes(u64::MAX), "18.4 EB");
    }

    #[test]
    fn formatted_sizes_parse_back_close() {
        for n in [1u64, 999, 1000, 4321, 98_765_432, 5_000_000_000_000] {
            let back = parse_size(&format_bytes(n)).unwrap();
            let err = back.abs_diff(n) as f64 / n as f64;
            assert!(err < 0.01, "{n} -> {} -> {back}", format_bytes(n));
        }
    }
}
