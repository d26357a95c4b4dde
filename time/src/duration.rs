//! Spans of time as written in workflow files: an amount and a unit, such as `15wd` or `-2wd`.
//!
//! | unit | meaning |
//! |---|---|
//! | `s` | seconds (exact elapsed time) |
//! | `m` | **minutes** (exact elapsed time) — not months |
//! | `h` | hours (exact elapsed time) |
//! | `d` | calendar days in local time |
//! | `wd` | working days on a calendar (see [`crate::calendar`]) |
//! | `w` | weeks: seven calendar days in local time |
//! | `mo` | **months**: calendar months, clamped to the month's last day |
//! | `y` | years: twelve calendar months |
//!
//! The amount is a whole number with an optional leading `-`; there is no
//! whitespace and no fraction. A [`Span`] serializes as its text (`"15wd"`) and
//! `Display` round-trips through `FromStr`. What each unit means when added to an
//! instant is defined in [`crate::deadline`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The unit of a [`Span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// `s`: seconds.
    Seconds,
    /// `m`: minutes (use `mo` for months).
    Minutes,
    /// `h`: hours.
    Hours,
    /// `d`: calendar days.
    Days,
    /// `wd`: working days on a calendar.
    WorkingDays,
    /// `w`: weeks of seven calendar days.
    Weeks,
    /// `mo`: calendar months.
    Months,
    /// `y`: calendar years.
    Years,
}

impl Unit {
    /// Every unit, in the order the error messages list them.
    pub const ALL: [Unit; 8] = [
        Unit::Seconds,
        Unit::Minutes,
        Unit::Hours,
        Unit::Days,
        Unit::WorkingDays,
        Unit::Weeks,
        Unit::Months,
        Unit::Years,
    ];

    /// The suffix written after the amount, e.g. `wd`.
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Minutes => "m",
            Unit::Hours => "h",
            Unit::Days => "d",
            Unit::WorkingDays => "wd",
            Unit::Weeks => "w",
            Unit::Months => "mo",
            Unit::Years => "y",
        }
    }

    /// The length of one unit in seconds, for the units of exact elapsed time (`s`, `m`, `h`).
    pub fn exact_seconds(self) -> Option<i64> {
        match self {
            Unit::Seconds => Some(1),
            Unit::Minutes => Some(60),
            Unit::Hours => Some(3600),
            _ => None,
        }
    }

    fn from_suffix(suffix: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.suffix() == suffix)
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// An amount of a [`Unit`], e.g. `15wd`; negative amounts count backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    amount: i64,
    unit: Unit,
}

impl Span {
    /// A span of `amount` units.
    pub fn new(amount: i64, unit: Unit) -> Span {
        Span { amount, unit }
    }

    /// The signed number of units.
    pub fn amount(&self) -> i64 {
        self.amount
    }

    /// The unit.
    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// The exact length for `s`, `m` and `h` spans; `None` for calendar units or on overflow.
    pub fn exact(&self) -> Option<chrono::TimeDelta> {
        let seconds = self.amount.checked_mul(self.unit.exact_seconds()?)?;
        chrono::TimeDelta::try_seconds(seconds)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.amount, self.unit)
    }
}

/// Why a text is not a [`Span`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    /// The text is empty.
    #[error("empty duration: expected an amount and a unit such as `15wd`")]
    Empty,
    /// No digits before the unit.
    #[error("missing amount in `{text}`: expected digits before the unit, e.g. `15wd`")]
    MissingAmount {
        /// The whole text.
        text: String,
    },
    /// Digits but no unit.
    #[error("missing unit in `{text}`: expected s, m, h, d, wd, w, mo or y")]
    MissingUnit {
        /// The whole text.
        text: String,
    },
    /// The unit is not one of the known suffixes.
    #[error("unknown unit `{unit}` in `{text}`: expected s, m, h, d, wd, w, mo or y")]
    UnknownUnit {
        /// The suffix as written.
        unit: String,
        /// The whole text.
        text: String,
    },
    /// The amount does not fit in 64 bits.
    #[error("amount in `{text}` is out of range")]
    AmountOutOfRange {
        /// The whole text.
        text: String,
    },
}

impl FromStr for Span {
    type Err = SpanError;

    fn from_str(text: &str) -> Result<Span, SpanError> {
        if text.is_empty() {
            return Err(SpanError::Empty);
        }
        let unsigned = text.strip_prefix('-').unwrap_or(text);
        let digits_end = unsigned
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(unsigned.len());
        let (digits, suffix) = unsigned.split_at(digits_end);
        if digits.is_empty() {
            return Err(SpanError::MissingAmount { text: text.into() });
        }
        if suffix.is_empty() {
            return Err(SpanError::MissingUnit { text: text.into() });
        }
        let unit = Unit::from_suffix(suffix).ok_or_else(|| SpanError::UnknownUnit {
            unit: suffix.into(),
            text: text.into(),
        })?;
        // Parse sign and digits together so that i64::MIN is accepted.
        let signed = &text[..text.len() - suffix.len()];
        let amount = signed
            .parse::<i64>()
            .map_err(|_| SpanError::AmountOutOfRange { text: text.into() })?;
        Ok(Span { amount, unit })
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Span, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text`; on success checks the amount, unit and that `Display` gives `text` back.
    fn check(text: &str, expect: Result<(i64, Unit), &str>) {
        let got = text.parse::<Span>();
        match (got, expect) {
            (Ok(span), Ok((amount, unit))) => {
                assert_eq!((span.amount(), span.unit()), (amount, unit), "{text}");
                assert_eq!(span.to_string(), text, "display must round-trip");
            }
            (Err(e), Err(message)) => assert_eq!(e.to_string(), message, "{text}"),
            (got, expect) => panic!("{text}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn parses_every_unit() {
        check("15wd", Ok((15, Unit::WorkingDays)));
        check("-2wd", Ok((-2, Unit::WorkingDays)));
        check("0d", Ok((0, Unit::Days)));
        check("30m", Ok((30, Unit::Minutes)));
        check("1mo", Ok((1, Unit::Months)));
        check("18mo", Ok((18, Unit::Months)));
        check("2y", Ok((2, Unit::Years)));
        check("90s", Ok((90, Unit::Seconds)));
        check("6h", Ok((6, Unit::Hours)));
        check("3w", Ok((3, Unit::Weeks)));
        check("-9223372036854775808s", Ok((i64::MIN, Unit::Seconds)));
    }

    #[test]
    fn rejects_with_clear_messages() {
        check(
            "3x",
            Err("unknown unit `x` in `3x`: expected s, m, h, d, wd, w, mo or y"),
        );
        check(
            "3 d",
            Err("unknown unit ` d` in `3 d`: expected s, m, h, d, wd, w, mo or y"),
        );
        check(
            "3M",
            Err("unknown unit `M` in `3M`: expected s, m, h, d, wd, w, mo or y"),
        );
        check(
            "wd",
            Err("missing amount in `wd`: expected digits before the unit, e.g. `15wd`"),
        );
        check(
            "-",
            Err("missing amount in `-`: expected digits before the unit, e.g. `15wd`"),
        );
        check(
            "+3d",
            Err("missing amount in `+3d`: expected digits before the unit, e.g. `15wd`"),
        );
        check(
            "15",
            Err("missing unit in `15`: expected s, m, h, d, wd, w, mo or y"),
        );
        check(
            "1.5d",
            Err("unknown unit `.5d` in `1.5d`: expected s, m, h, d, wd, w, mo or y"),
        );
        check(
            "99999999999999999999d",
            Err("amount in `99999999999999999999d` is out of range"),
        );
        check(
            "",
            Err("empty duration: expected an amount and a unit such as `15wd`"),
        );
    }

    #[test]
    fn serde_uses_the_text() {
        let span: Span = serde_json::from_str("\"-2wd\"").unwrap();
        assert_eq!(span, Span::new(-2, Unit::WorkingDays));
        assert_eq!(serde_json::to_string(&span).unwrap(), "\"-2wd\"");
        let err = serde_json::from_str::<Span>("\"3x\"").unwrap_err();
        assert!(err.to_string().starts_with("unknown unit `x`"), "{err}");
        assert!(serde_json::from_str::<Span>("15").is_err());
    }

    #[test]
    fn exact_lengths() {
        assert_eq!(
            Span::new(90, Unit::Minutes).exact(),
            Some(chrono::TimeDelta::minutes(90))
        );
        assert_eq!(Span::new(1, Unit::Days).exact(), None);
        assert_eq!(Span::new(i64::MAX, Unit::Hours).exact(), None);
    }
}
