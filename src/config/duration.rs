//! Go `time.ParseDuration` syntax (`5s`, `1m30s`, `1.5h`, `300ms`), which every Dapr resource
//! uses for durations. Negative durations are rejected: no Dapr timeout means anything below zero.

use std::time::Duration;

/// Parses a Go duration string.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad =
        |why: &str| format!("`{text}` is not a duration ({why}); write e.g. 5s, 1m30s, 500ms");
    let s = text.strip_prefix('+').unwrap_or(text);
    if s.starts_with('-') {
        return Err(bad("it is negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(bad("expected a number"));
        }
        let amount: f64 = num.parse().map_err(|_| bad("bad number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        total += amount * nanos_per_unit;
        rest = tail;
    }
    // Go's limit: an int64 of nanoseconds (about 292 years).
    if total > i64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(Duration::from_nanos(total.round() as u64))
}
