//! Calendar arithmetic (proleptic Gregorian, UTC) and HTTP-dates, the one
//! implementation in the policy.

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

fn month(token: &str) -> Option<u32> {
    let lower = token.to_ascii_lowercase();
    MONTHS.iter().position(|m| *m == lower).and_then(|i| u32::try_from(i + 1).ok())
}

/// Milliseconds since the epoch of an HTTP-date (RFC 9110 §5.6.7).
pub fn http_date_ms(value: &str) -> Option<i64> {
    let tokens: Vec<&str> = value.split([' ', ',']).filter(|t| !t.is_empty()).collect();
    // Skip the weekday.
    let rest = tokens.get(1..)?;
    let (year, month, day, time) = match rest {
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [date, time, zone] if date.contains('-') && zone.eq_ignore_ascii_case("GMT") => {
            let mut parts = date.split('-');
            let day: u32 = parts.next()?.parse().ok()?;
            let month = month(parts.next()?)?;
            let yy = parts.next()?;
            let mut year: i64 = yy.parse().ok()?;
            if yy.len() == 2 {
                year += if year < 70 { 2000 } else { 1900 };
            }
            (year, month, day, *time)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [mon, day, time, year] if month(mon).is_some() => (year.parse().ok()?, month(mon)?, day.parse().ok()?, *time),
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [day, mon, year, time, zone] if zone.eq_ignore_ascii_case("GMT") => {
            (year.parse().ok()?, month(mon)?, day.parse().ok()?, *time)
        }
        _ => return None,
    };
    let mut hms = time.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let s: i64 = hms.next()?.parse().ok()?;
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + h) * 60 + m) * 60_000 + s * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, u32::try_from(month).unwrap_or(1), u32::try_from(day).unwrap_or(1))
}

/// `ms` as a Stash timestamp in the form of `sample` (`YYYY-MM-DDTHH:MM:SS`
/// with the sample's `Z` or `±HH:MM` offset): Stash compares its
/// timestamps as text, so a bound must be written in its server's offset.
pub fn timestamp_like(ms: i64, sample: &str) -> Option<String> {
    let (offset_secs, suffix) = if sample.ends_with('Z') {
        (0, "Z")
    } else {
        let tail = sample.get(sample.len().checked_sub(6)?..)?;
        let b = tail.as_bytes();
        let sign = match b[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let h: i64 = tail.get(1..3)?.parse().ok()?;
        let m: i64 = tail.get(4..6)?.parse().ok()?;
        if b[3] != b':' || h > 23 || m > 59 {
            return None;
        }
        (sign * (h * 3600 + m * 60), tail)
    };
    let secs = ms.div_euclid(1000) + offset_secs;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    Some(format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}{suffix}", rest / 3600, rest % 3600 / 60, rest % 60))
}

/// Days in `month` (1-12) of `year`.
pub fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_and_civil_days() {
        assert_eq!(http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777_000));
        assert_eq!(http_date_ms("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in [-1_000_000, -1, 0, 59, 11_016, 19_675, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
    }
}
