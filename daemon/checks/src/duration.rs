//! Go's `time.ParseDuration`, which is how Consul reads every duration field.

use std::time::Duration;

/// Parses a Go duration string ("10s", "1m30s", "1.5h", "500ms", "0").
///
/// Negative durations are rejected: no check field means anything by them.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let orig = s;
    let invalid = || format!("invalid duration {orig:?}");
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("invalid duration {orig:?}: must not be negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("invalid duration {orig:?}: missing unit")),
            _ => return Err(format!("invalid duration {orig:?}: unknown unit {unit:?}")),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut nanos = int.checked_mul(unit_nanos).ok_or_else(invalid)?;
        // The fraction scaled by the unit, digit by digit, truncated like Go.
        let mut scale = unit_nanos;
        for d in frac_part.bytes().take(30) {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(invalid)?;
        rest = tail;
    }
    // Go durations are int64 nanoseconds: about 292 years.
    if total_nanos > i64::MAX as u128 {
        return Err(format!("invalid duration {orig:?}: too large"));
    }
    Ok(Duration::from_nanos(total_nanos as u64))
}
