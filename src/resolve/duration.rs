//! Go's `time.ParseDuration`, because Dapr resources spell every duration that way ("5s",
//! "1m30s", "800ms", "1.5h").

use std::time::Duration;

/// Nanoseconds per unit, longest unit names first so "ms" is not read as "m" + "s".
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µs, MICRO SIGN (what Go prints)
    ("\u{3bc}s", 1_000), // μs, GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go accepts at most `i64::MAX` nanoseconds (about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string (`[-+]?(number unit)+`, or a bare `0`).
///
/// Returns `None` for anything Go rejects and for negative durations, which
/// [`std::time::Duration`] cannot hold (`-0s` is zero and accepted).
pub fn parse_go_duration(input: &str) -> Option<Duration> {
    let (negative, mut rest) = match input.as_bytes().first()? {
        b'-' => (true, &input[1..]),
        b'+' => (false, &input[1..]),
        _ => (false, input),
    };
    // Go special-cases a bare zero: it needs no unit.
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, after) = component(rest)?;
        total = total.checked_add(nanos)?;
        rest = after;
    }
    if total > MAX_NANOS || (negative && total != 0) {
        return None;
    }
    let secs = u64::try_from(total / 1_000_000_000).ok()?;
    // The remainder is below 1e9, so it always fits in u32.
    let sub = u32::try_from(total % 1_000_000_000).ok()?;
    Some(Duration::new(secs, sub))
}

/// One `number unit` pair; returns its nanoseconds and the unparsed rest.
fn component(s: &str) -> Option<(u128, &str)> {
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (int_digits, after_int) = s.split_at(int_len);
    let (frac_digits, after_number) = match after_int.strip_prefix('.') {
        Some(f) => {
            let len = f.bytes().take_while(u8::is_ascii_digit).count();
            f.split_at(len)
        }
        None => ("", after_int),
    };
    // Go requires at least one digit on either side of the dot.
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let unit_len = after_number
        .char_indices()
        .find(|(_, c)| *c == '.' || c.is_ascii_digit())
        .map_or(after_number.len(), |(i, _)| i);
    let (unit, rest) = after_number.split_at(unit_len);
    let per_unit = UNITS.iter().find(|(name, _)| *name == unit)?.1;

    let int: u128 = if int_digits.is_empty() {
        0
    } else {
        int_digits.parse().ok()?
    };
    let mut nanos = int.checked_mul(per_unit)?;
    // Digits past the 18th are far below a nanosecond for every unit; Go drops them too.
    let frac_digits = &frac_digits[..frac_digits.len().min(18)];
    if !frac_digits.is_empty() {
        let frac: u128 = frac_digits.parse().ok()?;
        let scale = 10u128.pow(u32::try_from(frac_digits.len()).ok()?);
        nanos = nanos.checked_add(frac * per_unit / scale)?;
    }
    Some((nanos, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn parses_what_go_parses() {
        assert_eq!(parse_go_duration("5s"), ms(5_000));
        assert_eq!(parse_go_duration("1m30s"), ms(90_000));
        assert_eq!(parse_go_duration("800ms"), ms(800));
        assert_eq!(parse_go_duration("1.5h"), ms(5_400_000));
        assert_eq!(parse_go_duration(".5s"), ms(500));
        assert_eq!(parse_go_duration("1.s"), ms(1_000));
        assert_eq!(parse_go_duration("+2h45m"), ms(9_900_000));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("-0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("3us"), Some(Duration::from_micros(3)));
        assert_eq!(parse_go_duration("3µs"), Some(Duration::from_micros(3)));
        assert_eq!(parse_go_duration("3μs"), Some(Duration::from_micros(3)));
        assert_eq!(parse_go_duration("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_go_duration("1h1m1s1ms"), ms(3_661_001));
        assert_eq!(
            parse_go_duration("0.000000001s"),
            Some(Duration::from_nanos(1))
        );
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "", "5", "s", ".s", "-", "+", "5 s", "5S", "5sec", "1d", "1.2.3s", "--5s", " 5s",
        ] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rejects_negative_and_overflowing() {
        assert_eq!(parse_go_duration("-5s"), None);
        assert_eq!(parse_go_duration("9999999999h"), None);
        assert!(parse_go_duration("2562047h").is_some());
        assert_eq!(parse_go_duration("2562048h"), None);
    }
}
