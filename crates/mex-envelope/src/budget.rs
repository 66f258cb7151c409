//! Budgets, evidence policies and output specs: the limits a PlannedOperation
//! asks for. They are requests; mex-gates resolves them against the registry's
//! defaults and maximums, which are trusted.

use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactKind, MediaType};

/// Resource budget (docs/contract.md §3). Absent fields take the registry's defaults.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// CPU time in milliseconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "safe::opt_u64"
    )]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub cpu_time_ms: Option<u64>,
    /// Wall-clock time in milliseconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "safe::opt_u64"
    )]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub wall_time_ms: Option<u64>,
    /// Peak memory in bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "safe::opt_u64"
    )]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub memory_bytes: Option<u64>,
    /// Total bytes of outputs, evidence and logs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "safe::opt_u64"
    )]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub output_bytes: Option<u64>,
}

/// What evidence a D0/D1 operation must capture (docs/contract.md §2).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct EvidencePolicy {
    /// Whether the result must carry evidence; D0 and D1 need `true`.
    pub required: bool,
    /// What to capture, as engine-defined tokens such as `snapshot`,
    /// `screenshot`, `http_transcript` or `sensor_raw`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(regex(pattern = "^[a-z][a-z0-9_]{0,63}$")))]
    pub capture: Vec<EvidenceToken>,
    /// Upper bound on evidence bytes; it counts against the output budget.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "safe::opt_u64"
    )]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub max_bytes: Option<u64>,
}

/// One evidence token: `[a-z][a-z0-9_]*`, at most 64 characters.
pub type EvidenceToken = String;

/// Expected outputs and their limits.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Artifact kinds the outputs may have; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<ArtifactKind>,
    /// Media types the outputs may have; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_types: Vec<MediaType>,
    /// At most this many outputs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "safe::opt_u64"
    )]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub max_outputs: Option<u64>,
    /// At most this many bytes over all outputs; must fit the output budget.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "safe::opt_u64"
    )]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub max_output_bytes: Option<u64>,
}

impl EvidencePolicy {
    pub(crate) fn check_tokens(&self) -> Result<(), (usize, String)> {
        for (i, token) in self.capture.iter().enumerate() {
            let mut chars = token.chars();
            let ok = token.len() <= 64
                && matches!(chars.next(), Some('a'..='z'))
                && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
            if !ok {
                return Err((
                    i,
                    format!(
                        "{token:?} is not an evidence token: expected [a-z][a-z0-9_]* (at most 64 characters), e.g. \"snapshot\""
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Deserializers that bound integers to 2^53-1 (RFC 8785 safe) and say in
/// plain words what a count or a limit must look like. An integral number
/// written with a fraction or exponent (`5000.0`, `5e3`) is the integer it
/// denotes, as in JSON Schema.
pub(crate) mod safe {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};

    use crate::MAX_SAFE_INTEGER;

    const WANT: &str =
        "a whole number from 0 to 9007199254740991 (2^53-1), written without quotes, e.g. 5000";

    struct Whole;

    impl Visitor<'_> for Whole {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(WANT)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            if v > MAX_SAFE_INTEGER {
                return Err(E::custom(format!(
                    "{v} is too large: expected {WANT}; JSON hashing keeps nothing larger exact"
                )));
            }
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            match u64::try_from(v) {
                Ok(u) => self.visit_u64(u),
                Err(_) => Err(E::custom(format!("{v} is negative: expected {WANT}"))),
            }
        }

        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "converts only integral, non-negative values up to 2^53 - 1, which are exact in both types"
        )]
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            if v.is_finite() && v.fract() == 0.0 && v >= 0.0 && v <= MAX_SAFE_INTEGER as f64 {
                return Ok(v as u64);
            }
            let why = if v < 0.0 {
                "is negative"
            } else if v.fract() != 0.0 {
                "is not a whole number"
            } else {
                "is too large"
            };
            Err(E::custom(format!("{v} {why}: expected {WANT}")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            let shown: String = v.chars().take(32).collect();
            Err(E::custom(format!(
                "found the string {shown:?}: expected {WANT}"
            )))
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<u64, E> {
            Err(E::custom(format!("found {v}: expected {WANT}")))
        }
    }

    struct Opt;

    impl<'de> Visitor<'de> for Opt {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(WANT)
        }

        fn visit_none<E: de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
            d.deserialize_any(Whole).map(Some)
        }
    }

    pub(crate) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(Whole)
    }

    pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_option(Opt)
    }
}
