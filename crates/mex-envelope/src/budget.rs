//! Budgets, evidence policies and output specs: the limits a PlannedOperation
//! asks for. They are requests; mex-gates resolves them against the registry's
//! defaults and maximums, which are trusted.

use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactKind, MediaType};

/// Resource budget (contract §3). Absent fields take the registry's defaults.
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

/// What evidence a D0/D1 operation must capture (contract §2).
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

/// Deserializers that bound integers to 2^53-1 (RFC 8785 safe).
pub(crate) mod safe {
    use serde::{Deserialize, Deserializer};

    use crate::MAX_SAFE_INTEGER;

    fn check<E: serde::de::Error>(v: u64) -> Result<u64, E> {
        if v > MAX_SAFE_INTEGER {
            Err(E::custom(format!(
                "{v} is above 2^53-1 ({MAX_SAFE_INTEGER}), the largest integer JSON hashing keeps exact"
            )))
        } else {
            Ok(v)
        }
    }

    pub(crate) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        check(u64::deserialize(d)?)
    }

    pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<u64>::deserialize(d)?.map(check).transpose()
    }
}
