//! Determinism levels (docs/contract.md §2).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, de};

/// A determinism level, ordered `D0 < D1 < D2 < D3`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
pub enum DeterminismLevel {
    /// Live: not replayable unless evidence capture freezes the claim.
    D0,
    /// Best-effort: replay relies on captured evidence.
    D1,
    /// Structural: a canonical form gives stable hashes.
    D2,
    /// Bitwise: identical inputs, config and environment give identical bytes.
    D3,
}

impl DeterminismLevel {
    /// D0 and D1 results must carry evidence, and their operations an evidence policy.
    pub fn requires_evidence(self) -> bool {
        matches!(self, Self::D0 | Self::D1)
    }

    /// The text form, `"D0"`..`"D3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::D0 => "D0",
            Self::D1 => "D1",
            Self::D2 => "D2",
            Self::D3 => "D3",
        }
    }
}

impl<'de> Deserialize<'de> for DeterminismLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named_variant(
            d,
            &["D0", "D1", "D2", "D3"],
            &[Self::D0, Self::D1, Self::D2, Self::D3],
        )
    }
}

/// Read a unit-only enum from its name, a JSON string, and from nothing
/// else: the derived reading would also take `{"D3": null}` (serde's
/// externally tagged form), which the published schema refuses, so the
/// schema and mex would disagree on which documents are valid.
pub(crate) fn named_variant<'de, D: Deserializer<'de>, T: Copy>(
    d: D,
    names: &'static [&'static str],
    values: &'static [T],
) -> Result<T, D::Error> {
    d.deserialize_str(Named { names, values })
}

struct Named<T: 'static> {
    names: &'static [&'static str],
    values: &'static [T],
}

impl<T: Copy> de::Visitor<'_> for Named<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "one of the strings {}", self.names.join(", "))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.names
            .iter()
            .position(|name| *name == v)
            .and_then(|i| self.values.get(i).copied())
            .ok_or_else(|| E::unknown_variant(v, self.names))
    }
}

impl std::fmt::Display for DeterminismLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::DeterminismLevel::*;

    #[test]
    fn ordered_and_evidence() {
        assert!(D0 < D1 && D1 < D2 && D2 < D3);
        assert!(D0.requires_evidence() && D1.requires_evidence());
        assert!(!D2.requires_evidence() && !D3.requires_evidence());
        assert_eq!(serde_json::to_string(&D2).ok().as_deref(), Some("\"D2\""));
    }

    /// Every variant, listed through a `match` with no wildcard: a new
    /// variant does not compile here until it is listed.
    fn every<T: Copy>(all: &[T], listed: fn(T)) -> Vec<T> {
        all.iter().copied().inspect(|v| listed(*v)).collect()
    }

    fn round_trips<T>(values: &[T])
    where
        T: Copy + PartialEq + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    {
        for v in values {
            let name = serde_json::to_value(v).ok();
            let back = name
                .clone()
                .and_then(|n| serde_json::from_value::<T>(n).ok());
            assert_eq!(
                back,
                Some(*v),
                "{v:?} is written as {name:?} but not read back"
            );
        }
    }

    /// The names `named_variant` reads are a second list of the names serde
    /// writes: every variant of every enum read that way must read back what
    /// it writes.
    #[test]
    fn named_variants_read_what_serde_writes() {
        use crate::{ArtifactKind as K, Classification as C};
        round_trips(&every(&[D0, D1, D2, D3], |v| match v {
            D0 | D1 | D2 | D3 => {}
        }));
        round_trips(&every(
            &[
                K::File,
                K::ToolOutput,
                K::Transcript,
                K::DatasetSlice,
                K::PromptPayload,
                K::Report,
                K::Bundle,
            ],
            |v| match v {
                K::File
                | K::ToolOutput
                | K::Transcript
                | K::DatasetSlice
                | K::PromptPayload
                | K::Report
                | K::Bundle => {}
            },
        ));
        round_trips(&every(&[C::Low, C::Medium, C::High], |v| match v {
            C::Low | C::Medium | C::High => {}
        }));
    }
}
