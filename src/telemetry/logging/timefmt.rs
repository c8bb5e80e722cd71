//! RFC 3339 timestamps the way Go's `time.RFC3339Nano` prints them (what daprd's logger uses):
//! UTC, nanoseconds with trailing zeros trimmed, no fraction at all on a whole second.
//! Written by hand so that formatting a log line needs neither a date crate nor an allocation.

use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: u64 = 86_400;

/// Writes `t` as e.g. `2023-11-14T22:13:20.123456789Z`.
pub(crate) fn write_rfc3339_nanos(w: &mut impl Write, t: SystemTime) -> fmt::Result {
    // A clock before 1970 is broken; printing the epoch beats failing the log line.
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    let secs_of_day = secs % SECS_PER_DAY;
    write!(
        w,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )?;
    let mut nanos = since_epoch.subsec_nanos();
    if nanos != 0 {
        let mut width = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            width -= 1;
        }
        write!(w, ".{nanos:0width$}")?;
    }
    w.write_char('Z')
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// Howard Hinnant's `civil_from_days`, restricted to non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn format(secs: u64, nanos: u32) -> String {
        let mut s = String::new();
        write_rfc3339_nanos(&mut s, UNIX_EPOCH + Duration::new(secs, nanos)).unwrap();
        s
    }

    #[test]
    fn epoch_has_no_fraction() {
        assert_eq!(format(0, 0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn nanoseconds_are_kept_and_trailing_zeros_trimmed() {
        assert_eq!(
            format(1_700_000_000, 123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(format(1_700_000_000, 500_000_000), "2023-11-14T22:13:20.5Z");
        assert_eq!(format(1_700_000_000, 1_000), "2023-11-14T22:13:20.000001Z");
    }

    #[test]
    fn leap_days_and_year_ends() {
        // 2024-02-29T12:00:00Z and 1999-12-31T23:59:59Z.
        assert_eq!(format(1_709_208_000, 0), "2024-02-29T12:00:00Z");
        assert_eq!(format(946_684_799, 0), "1999-12-31T23:59:59Z");
        assert_eq!(format(951_782_400, 0), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn before_epoch_prints_epoch() {
        let mut s = String::new();
        write_rfc3339_nanos(&mut s, UNIX_EPOCH - Duration::from_secs(5)).unwrap();
        assert_eq!(s, "1970-01-01T00:00:00Z");
    }
}
