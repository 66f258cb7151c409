//! RFC 3339 UTC timestamps (`Z` suffix only).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::EnvelopeError;

/// A point in time, always UTC, written as RFC 3339 with a `Z` suffix.
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
}

impl fmt::Display for UtcTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(&Rfc3339) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for UtcTimestamp {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            EnvelopeError::invalid(
                "",
                format!(
                    "{s:?} is not an RFC 3339 UTC timestamp: expected e.g. \"2026-01-31T12:00:00Z\" (UTC, 'Z' suffix)"
                ),
            )
        };
        if !s.ends_with('Z') || s.as_bytes().get(10) != Some(&b'T') {
            return Err(bad());
        }
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self)
            .map_err(|_| bad())
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn utc_only() {
        let t: UtcTimestamp = "2026-01-31T12:00:00Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-01-31T12:00:00Z");
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
}
