//! Wall-clock time and the Hub's datetime format (`2024-05-01T12:00:00.000Z`; the client's
//! parser refuses `+00:00` offsets).

use time::OffsetDateTime;

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn now_secs() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

/// Formats unix milliseconds as ISO-8601 UTC with a `Z`.
pub fn format_ms(ms: i64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

pub fn format_secs(secs: i64) -> String {
    format_ms(secs.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
        assert_eq!(format_secs(1_714_564_800), "2024-05-01T12:00:00.000Z");
    }
}
