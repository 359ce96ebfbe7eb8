//! Durations written as `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"2d"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

use crate::error::with_hint;

const HINT: &str = "write a number with a unit: \"500ms\", \"30s\", \"5m\", \"1h30m\", \"2d\"";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("`{0}` is not a duration")]
    Syntax(String),
    #[error("unknown unit `{0}` in duration")]
    Unit(String),
    #[error("duration is too long")]
    Overflow,
}

/// Parses a sequence of `<integer><unit>` groups; units are ms, s, m, h, d.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::Syntax(text.to_owned()));
        }
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| DurationError::Overflow)?;
        let tail = tail.trim_start();
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(DurationError::Syntax(text.to_owned())),
            other => return Err(DurationError::Unit(other.to_owned())),
        };
        let millis = number
            .checked_mul(millis_per_unit)
            .ok_or(DurationError::Overflow)?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or(DurationError::Overflow)?;
        rest = tail.trim_start();
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it (`1h30m`, `500ms`).
pub fn format(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    out
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string like \"30s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(|e| E::custom(with_hint(e, HINT)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(with_hint(
            format!("a bare number ({v}) has no unit"),
            format!("write \"{v}s\" for seconds"),
        )))
    }
}

/// `#[serde(deserialize_with = "crate::duration::deserialize")]`
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// The same for `Option<Duration>` fields (with `#[serde(default)]`).
pub(crate) fn deserialize_option<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    d.deserialize_any(DurationVisitor).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_durations() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("30"), Err(DurationError::Syntax("30".into())));
        assert_eq!(parse("s"), Err(DurationError::Syntax("s".into())));
        assert_eq!(parse("3 weeks"), Err(DurationError::Unit("weeks".into())));
        assert_eq!(parse("1.5s"), Err(DurationError::Syntax("1.5s".into())));
        assert_eq!(parse("99999999999999999999d"), Err(DurationError::Overflow));
        assert_eq!(parse("999999999999999999d"), Err(DurationError::Overflow));
    }

    #[test]
    fn formats_back() {
        for text in ["1h30m", "500ms", "2d", "1m1s", "0s"] {
            assert_eq!(parse(text).map(format).as_deref(), Ok(text));
        }
    }
}
