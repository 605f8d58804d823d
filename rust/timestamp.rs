//! History timestamps: a local date and time to the microsecond, as `datetime.isoformat()` writes it.

use std::fmt::Write;

/// `date_time` ("YYYY-MM-DDTHH:MM:SS") followed by `.ffffff`, the microseconds, which are left out when
/// they are zero, as `datetime.isoformat()` leaves them out.
pub fn with_micros(date_time: &str, micros: u32) -> String {
    let mut text = String::with_capacity(date_time.len() + 7);
    text.push_str(date_time);
    if micros != 0 {
        let _ = write!(text, ".{micros:06}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::with_micros;

    #[test]
    fn microseconds_are_six_digits_and_left_out_when_zero() {
        let second = "2026-11-22T01:02:03";
        assert_eq!(with_micros(second, 7), "2026-11-22T01:02:03.000007");
        assert_eq!(with_micros(second, 420_000), "2026-11-22T01:02:03.420000");
        assert_eq!(with_micros(second, 999_999), "2026-11-22T01:02:03.999999");
        assert_eq!(with_micros(second, 0), "2026-11-22T01:02:03");
    }
}
