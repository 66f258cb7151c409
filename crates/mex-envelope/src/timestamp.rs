//! RFC 3339 UTC timestamps (`Z` suffix only), millisecond precision.
//!
//! Written in one fixed-width form, `2026-11-27T12:00:00.120Z` (always three
//! fractional digits), so that sorting the text sorts by time. Parsing also
//! accepts the shorter spellings older records contain (`...:00Z`,
//! `...:00.12Z`); digits beyond the millisecond are dropped.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::EnvelopeError;

/// A point in time, always UTC, to the millisecond, written as RFC 3339 with
/// a `Z` suffix and exactly three fractional digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTimestamp(OffsetDateTime);

impl UtcTimestamp {
    /// Now, truncated to whole milliseconds.
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        let millis = now.millisecond();
        Self(now.replace_millisecond(millis).unwrap_or(now))
    }

    /// From a Unix time in milliseconds; `None` when out of range.
    pub fn from_unix_millis(ms: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .map(Self)
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// The underlying `time` value.
    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }

    /// The shortest RFC 3339 spelling (fractional digits trimmed of trailing
    /// zeros, none at all on a whole second): how timestamps were written
    /// before the fixed-width form. Only for recomputing digests of records
    /// written then; everything else uses `Display`.
    pub fn to_shortest_rfc3339(&self) -> Option<String> {
        self.0.format(&Rfc3339).ok()
    }
}

impl fmt::Display for UtcTimestamp {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, always 24 characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        let year = t.year();
        if !(0..=9999).contains(&year) {
            return Err(fmt::Error);
        }
        write!(
            f,
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl FromStr for UtcTimestamp {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            EnvelopeError::invalid(
                "",
                format!(
                    "{} is not an RFC 3339 UTC timestamp: expected e.g. \"2026-01-31T12:00:00Z\" (UTC, 'Z' suffix)",
                    crate::excerpt(s)
                ),
            )
        };
        if !s.ends_with('Z') || s.as_bytes().get(10) != Some(&b'T') {
            return Err(bad());
        }
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| bad())?;
        let t = t.replace_millisecond(t.millisecond()).map_err(|_| bad())?;
        Ok(Self(t))
    }
}

impl Serialize for UtcTimestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UtcTimestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(|e: EnvelopeError| match e {
            EnvelopeError::Invalid { message, .. } => serde::de::Error::custom(message),
            other => serde::de::Error::custom(other),
        })
    }
}

impl JsonSchema for UtcTimestamp {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("UtcTimestamp")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "pattern": "Z$",
            "description": "RFC 3339 timestamp in UTC with a Z suffix.",
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation panics, which is the test failing"
    )]
    use super::*;

    #[test]
    fn utc_only() {
        let t: UtcTimestamp = "2026-01-31T12:00:00Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-01-31T12:00:00.000Z");
        assert!("2026-01-31T12:00:00+01:00".parse::<UtcTimestamp>().is_err());
        assert!("2026-01-31T12:00:00+00:00".parse::<UtcTimestamp>().is_err());
        assert!("2026-01-31 12:00:00Z".parse::<UtcTimestamp>().is_err());
        let now = UtcTimestamp::now();
        assert_eq!(now.to_string().parse::<UtcTimestamp>().unwrap(), now);
        assert_eq!(
            UtcTimestamp::from_unix_millis(now.unix_millis()).unwrap(),
            now
        );
    }

    #[test]
    fn fixed_width_millis_so_text_order_is_time_order() {
        let cases = [
            (
                "2026-11-27T12:00:00Z",
                "2026-11-27T12:00:00.000Z",
                "2026-11-27T12:00:00Z",
            ),
            (
                "2026-11-27T12:00:00.1Z",
                "2026-11-27T12:00:00.100Z",
                "2026-11-27T12:00:00.1Z",
            ),
            (
                "2026-11-27T12:00:00.12Z",
                "2026-11-27T12:00:00.120Z",
                "2026-11-27T12:00:00.12Z",
            ),
            (
                "2026-11-27T12:00:00.123Z",
                "2026-11-27T12:00:00.123Z",
                "2026-11-27T12:00:00.123Z",
            ),
            (
                "2026-11-27T12:00:00.123999Z",
                "2026-11-27T12:00:00.123Z",
                "2026-11-27T12:00:00.123Z",
            ),
            (
                "0001-01-01T00:00:00Z",
                "0001-01-01T00:00:00.000Z",
                "0001-01-01T00:00:00Z",
            ),
        ];
        for (input, fixed, shortest) in cases {
            let t: UtcTimestamp = input.parse().unwrap();
            assert_eq!(t.to_string(), fixed, "{input}");
            assert_eq!(t.to_string().len(), 24, "{input}");
            assert_eq!(t.to_shortest_rfc3339().unwrap(), shortest, "{input}");
            assert_eq!(fixed.parse::<UtcTimestamp>().unwrap(), t, "{input}");
        }
        // Text order is time order: 12:00:00.900 < 12:00:01.000 as text too
        // (the shortest form sorts "12:00:00.9Z" after "12:00:01Z").
        let mut times: Vec<UtcTimestamp> = [1_000i64, 900, 0, 120, 99_999, 5, 1_001]
            .iter()
            .map(|ms| UtcTimestamp::from_unix_millis(1_795_780_800_000 + ms).unwrap())
            .collect();
        let mut texts: Vec<String> = times.iter().map(ToString::to_string).collect();
        times.sort();
        texts.sort();
        let sorted: Vec<String> = times.iter().map(ToString::to_string).collect();
        assert_eq!(texts, sorted);
        let json = serde_json::to_string(&times[0]).unwrap();
        assert_eq!(json, "\"2026-11-27T12:00:00.000Z\"");
    }
}
